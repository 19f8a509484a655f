"""`Task` (one stationary problem) and `Scenario` (the ordered tasks an agent lives through)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Task:
    """An environment plus the context that defines one problem on it.

    `env` names the environment (`everlearn.envs.sources`: a built-in family, a gymnax id, a
    registered Gymnasium id, or `module:Class`), made with `kwargs` after importing `imports`;
    `env_factory` lets any Python callable returning a `gymnasium.Env` be a task on the
    Gymnasium path (then `env` is only a label).
    `random_score` and `reference_score` are mean episode returns of a uniform-random policy and
    of a good policy; they define normalised performance `(R - random) / (reference - random)`.
    Left out, a run measures them (`everlearn.training.scores`). Where the env reports success
    (`info[success_key]`, or `success` / `is_success`), performance is the success rate.
    `dataset` makes the task offline: the agent learns from this dataset instead of stepping
    the env, which serves only to evaluate it — a local Minari dataset id, or a built-in
    recipe for this task, "random", "medium" or "expert" (`everlearn.data.recipes`). A
    scenario may put offline tasks before online ones: offline pre-training, then online
    fine-tuning (docs/offline.md).
    """

    name: str
    env: str
    random_score: float | None = None
    reference_score: float | None = None
    physics: Mapping[str, float] = field(default_factory=dict)
    obs_perm: tuple[int, ...] | None = None
    obs_scale: tuple[float, ...] | None = None
    action_map: tuple[int, ...] | None = None
    # Continuous actions: per-dimension factor on the agent's action (-1 reverses an actuator).
    action_scale: tuple[float, ...] | None = None
    reward_scale: float = 1.0
    reward_shift: float = 0.0
    env_factory: Callable[[], Any] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    success_key: str | None = None
    dataset: str | None = None

    def normalise(self, returns: np.ndarray | float) -> np.ndarray:
        return (np.asarray(returns) - self.random_score) / (
            self.reference_score - self.random_score
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "env": self.env}
        if self.kwargs:
            out["kwargs"] = dict(self.kwargs)
        if self.imports:
            out["import"] = list(self.imports)
        if self.physics:
            out["physics"] = dict(self.physics)
        for key in ("obs_perm", "obs_scale", "action_map", "action_scale"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key))
        if self.reward_scale != 1.0 or self.reward_shift != 0.0:
            out["reward"] = {"scale": self.reward_scale, "shift": self.reward_shift}
        if self.success_key is not None:
            out["success_key"] = self.success_key
        if self.dataset is not None:
            out["dataset"] = self.dataset
        for key in ("random_score", "reference_score"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Scenario:
    """Ordered tasks with a step budget each; says what the agent may see of the task changes."""

    name: str
    description: str
    tasks: tuple[Task, ...]
    steps_per_task: int
    boundaries_visible: bool = True
    task_ids_visible: bool = False
    # A drifting scenario: the tasks are waypoints of a context that changes a little every
    # episode. Waypoint k is the context at the middle of interval k (the k-th `steps_per_task`
    # steps); in between, each episode starts with the linear interpolation at its first step
    # (before the middle of the first interval and after that of the last: the end waypoints).
    # The evaluator measures every waypoint, so the performance matrix samples the drift.
    drift: bool = False
    # Which metrics convention heads the run's summary and report ("everlearn" or
    # "continual-world", `everlearn.evaluation.metrics`); both are always computed.
    metrics: str = "everlearn"

    def __post_init__(self):
        if not self.tasks:
            raise ValueError(f"scenario '{self.name}' has no tasks")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario '{self.name}' names a task twice ({names}); give each "
                             "task its own name")
        if self.drift and self.offline:
            raise ValueError(f"scenario '{self.name}': a drifting scenario cannot be offline "
                             "(its context changes every episode); remove drift or datasets")
        if self.drift:
            keys = {tuple(sorted(t.physics)) for t in self.tasks}
            others = {(t.env, t.obs_perm, t.obs_scale, t.action_map, t.action_scale,
                       t.reward_scale, t.reward_shift, t.env_factory,
                       json.dumps(dict(t.kwargs), sort_keys=True, default=str))
                      for t in self.tasks}
            if len(keys) != 1 or len(others) != 1:
                raise ValueError(f"drifting scenario '{self.name}': waypoints must set the "
                                 "same physical parameters and differ in nothing else")

    @property
    def env(self) -> str:
        """The environments of the tasks, in order of first appearance."""
        return ", ".join(dict.fromkeys(t.env for t in self.tasks))

    @property
    def offline(self) -> bool:
        """Some task learns from a dataset instead of stepping its env (a task without one
        learns online: offline pre-training, then online fine-tuning)."""
        return any(t.dataset is not None for t in self.tasks)

    @property
    def scored(self) -> bool:
        """Every task has its random and reference score."""
        return all(t.random_score is not None and t.reference_score is not None
                   for t in self.tasks)

    def with_scores(self, random: list[float], reference: list[float]) -> "Scenario":
        """The scenario with these normalisation scores (where a run measured them)."""
        tasks = tuple(replace(t, random_score=float(r), reference_score=float(f))
                      for t, r, f in zip(self.tasks, random, reference))
        return replace(self, tasks=tasks)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def drift_positions(self, segment: int, evals_per_task: int) -> tuple[float, float]:
        """Where the drift is (in waypoints) at the start and end of training segment `segment`
        (1-based; `evals_per_task` segments per interval)."""
        last = self.num_tasks - 1
        return tuple(float(np.clip(s / evals_per_task - 0.5, 0, last))
                     for s in (segment - 1, segment))

    def normalise(self, returns: np.ndarray) -> np.ndarray:
        """Normalise raw returns whose last axis runs over this scenario's tasks."""
        rand = np.array([t.random_score for t in self.tasks])
        ref = np.array([t.reference_score for t in self.tasks])
        return (np.asarray(returns) - rand) / (ref - rand)
