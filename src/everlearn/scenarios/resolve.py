"""A scenario resolved once for a run on one backend: the scenario as registered, each task's env
spaces, the observation and action layout they make together, and the info key that scores
each task. Everything below the plan (checks, trainers, recorder, data loading) is handed this
object, not the scenario's name.

Each part is read on first use, not on creation: the config checks refuse an impossible run
(a Gymnasium-only env on the functional path, say) before any env is made for it.
"""

from __future__ import annotations

import functools

from everlearn.core.errors import ConfigError
from everlearn.envs.gymnasium_context import make_task_env
from everlearn.envs.layout import Layout, scenario_layout
from everlearn.envs.sources import EnvSpaces, env_identity, task_spaces
from everlearn.scenarios import Scenario, Task, get_scenario

SUCCESS_KEYS = ("success", "is_success")  # what Meta-World and Gymnasium-Robotics report
PROBE_STEPS = 1_000  # random steps in which an env must report success to be scored by it


def success_key(task: Task, backend: str) -> str | None:
    """The info key whose success rate is the task's performance: the task's own
    `success_key`, else `success` / `is_success` where the env reports one within a random
    episode (Gymnasium path), else None (performance is the normalised return)."""
    if task.success_key is not None:
        return task.success_key
    if backend == "jax":  # gymnax envs report no success
        return None
    env = make_task_env(task)
    env.action_space.seed(0)
    try:
        _, info = env.reset(seed=0)
        for _ in range(PROBE_STEPS):
            found = [key for key in SUCCESS_KEYS if key in info]
            if found:
                return found[0]
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            if terminated or truncated:
                _, info = env.reset()
        return next((key for key in SUCCESS_KEYS if key in info), None)
    finally:
        env.close()


class ResolvedScenario:
    """`scenario` (its given scores only: a run's measured ones are the plan's) on `backend`."""

    def __init__(self, scenario: Scenario, backend: str) -> None:
        self.scenario, self.backend = scenario, backend

    @functools.cached_property
    def spaces(self) -> tuple[EnvSpaces, ...]:
        """Each task's env spaces; tasks on one env (differing by context only) share one
        reading of it."""
        by_env: dict[str, EnvSpaces] = {}
        for task in self.scenario.tasks:
            if env_identity(task) not in by_env:
                by_env[env_identity(task)] = task_spaces(task, self.backend)
        return tuple(by_env[env_identity(task)] for task in self.scenario.tasks)

    @functools.cached_property
    def layout(self) -> Layout:
        """The agent's observation and action layout over all the scenario's tasks."""
        try:
            return scenario_layout([t.name for t in self.scenario.tasks], list(self.spaces))
        except ValueError as e:
            raise ConfigError(f"scenario '{self.scenario.name}': {e}") from None

    @functools.cached_property
    def success_keys(self) -> tuple[str | None, ...]:
        """Per task, the info key whose success rate is its performance (None: the return)."""
        return tuple(success_key(t, self.backend) for t in self.scenario.tasks)

    @property
    def episode_limits(self) -> list[int | None]:
        """Each task's episode step limit (None where its env has none)."""
        return [spaces.max_episode_steps for spaces in self.spaces]


@functools.lru_cache(maxsize=16)
def resolve(scenario_name: str, backend: str) -> ResolvedScenario:
    """The resolved scenario of this name (or file path) on this backend, one per process:
    runs of one process (tests, sweeps, resume) share it and the trainers built on it."""
    return ResolvedScenario(get_scenario(scenario_name), backend)


def scenario_layout_for(scenario_name: str, backend: str) -> Layout:
    """The scenario's observation and action layout (`resolve(...).layout`)."""
    return resolve(scenario_name, backend).layout
