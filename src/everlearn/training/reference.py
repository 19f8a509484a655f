"""Single-task reference runs for forward transfer, cached across runs.

For each task, a fresh agent (same seeds) trains on that task alone for the same budget with
the same evaluation grid; its curve on that task gives AUC_i^ref. A task that repeats an
earlier one (the same env and context under another name: the second round of `cw20` or
`minatar-sequence`) shares that task's reference, as Continual World's CW20 uses CW10's. It
explores from the start of its task, as a continual run's agent does on every task with
`explore_each_task`. The trainer of the main run is reused, so no program is compiled twice.
Raw returns are cached under `$EVERLEARN_CACHE` (default `~/.cache/everlearn`) keyed by
everything they depend on, and normalised on use: a changed normalisation score never meets a
stale normalised curve.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from everlearn.agents.common import boundary_settings
from everlearn.core.files import atomic_write
from everlearn.core.version import __version__


def cache_dir() -> Path:
    return Path(os.environ.get("EVERLEARN_CACHE", Path.home() / ".cache" / "everlearn"))


def task_identity(task: Any) -> dict[str, Any]:
    """What a task's returns depend on: its description without the normalisation scores."""
    described = task.describe()
    for key in ("random_score", "reference_score"):
        described.pop(key, None)
    return described


def reference_key(config: Any, scenario: Any, segment_steps: int) -> str:
    agent_config = config.agent_config().model_dump(mode="json")
    # A single-task run meets no task boundary: what an agent does at one changes nothing.
    for key in boundary_settings(config.agent_config()):
        agent_config.pop(key)
    payload = {
        "version": __version__,
        "returns": "raw",
        "tasks": [task_identity(t) for t in scenario.tasks],
        "agent": config.agent,
        "agent_config": agent_config,
        "backend": config.backend,
        "seeds": config.seeds,
        "evals_per_task": config.evals_per_task,
        "eval_episodes": config.eval_episodes,
        "segment_steps": segment_steps,
        "repeated_tasks": "shared",
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def reference_curves(
    trainer: Any,
    config: Any,
    scenario: Any,
    segment_steps: int,
    on_segment: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Single-task curves of raw returns, float[num_seeds, num_tasks, evals_per_task + 1]
    (normalise them with `normalise_reference`)."""
    path = cache_dir() / "references" / f"{reference_key(config, scenario, segment_steps)}.json"
    if path.exists():
        return np.asarray(json.loads(path.read_text())["returns"])
    seeds, n = config.seeds, scenario.num_tasks
    returns = np.zeros((len(seeds), n, config.evals_per_task + 1))
    first_of: dict[str, int] = {}  # a task that repeats an earlier one shares its reference
    for task in range(n):
        identity = json.dumps(task_identity(scenario.tasks[task]) | {"name": None},
                              sort_keys=True)
        if identity in first_of:
            returns[:, task] = returns[:, first_of[identity]]
            if on_segment:  # progress counts it as done
                for e in range(1, config.evals_per_task + 1):
                    on_segment(task, e)
            continue
        first_of[identity] = task
        state = trainer.init(seeds)
        returns[:, task, 0] = trainer.evaluate(state, seeds, 0)[:, task]
        for e in range(1, config.evals_per_task + 1):
            state, _ = trainer.train_segment(state, task)
            returns[:, task, e] = trainer.evaluate(state, seeds, e)[:, task]
            if on_segment:
                on_segment(task, e)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"returns": returns.tolist()}))
    return returns


def normalise_reference(scenario: Any, returns: np.ndarray) -> np.ndarray:
    """Raw reference curves [seeds, tasks, evals] normalised with the scenario's scores."""
    return scenario.normalise(np.moveaxis(returns, 1, -1)).swapaxes(-1, -2)
