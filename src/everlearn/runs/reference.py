"""Single-task reference runs for forward transfer, cached across runs.

For each task, a fresh agent (same seeds) trains on that task alone for the same budget with
the same evaluation grid; its curve on that task gives AUC_i^ref. The trainer of the main run
is reused, so no program is compiled twice. Results are cached under
`$EVERLEARN_CACHE` (default `~/.cache/everlearn`) keyed by everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from everlearn import __version__
from everlearn.runs.checkpoint import atomic_write


def cache_dir() -> Path:
    return Path(os.environ.get("EVERLEARN_CACHE", Path.home() / ".cache" / "everlearn"))


def reference_key(config: Any, scenario: Any, segment_steps: int) -> str:
    payload = {
        "version": __version__,
        "tasks": [t.describe() for t in scenario.tasks],
        "agent": config.agent,
        "agent_config": config.agent_config().model_dump(mode="json"),
        "backend": config.backend,
        "seeds": config.seeds,
        "evals_per_task": config.evals_per_task,
        "eval_episodes": config.eval_episodes,
        "segment_steps": segment_steps,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def reference_curves(
    trainer: Any,
    config: Any,
    scenario: Any,
    segment_steps: int,
    on_segment: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Normalised single-task curves, float[num_seeds, num_tasks, evals_per_task + 1]."""
    path = cache_dir() / "references" / f"{reference_key(config, scenario, segment_steps)}.json"
    if path.exists():
        return np.asarray(json.loads(path.read_text())["curves"])
    seeds, n = config.seeds, scenario.num_tasks
    curves = np.zeros((len(seeds), n, config.evals_per_task + 1))
    for task in range(n):
        state = trainer.init(seeds)
        curves[:, task, 0] = scenario.normalise(trainer.evaluate(state, seeds, 0))[:, task]
        for e in range(1, config.evals_per_task + 1):
            state, _ = trainer.train_segment(state, task)
            returns = trainer.evaluate(state, seeds, e)
            curves[:, task, e] = scenario.normalise(returns)[:, task]
            if on_segment:
                on_segment(task, e)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"curves": curves.tolist()}))
    return curves
