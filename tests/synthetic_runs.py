"""A synthetic run directory, as the run loop writes it, with made-up learning curves: report
and comparison tests build on it without training anything (fast).

Importable from every test folder (`from synthetic_runs import make_run_dir`): pytest puts
tests/ on sys.path for tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ["cartpole-short", "cartpole-heavy", "acrobot-slow"]


def make_run_dir(root: Path, *, seeds: tuple[int, ...] = (0, 1), evals_per_task: int = 2,
                 steps_per_task: int = 1000, finished: bool = True) -> Path:
    """A run directory as the run loop writes it, with made-up learning curves."""
    rng = np.random.default_rng(0)
    n, E = len(TASKS), evals_per_task
    num_evals = n * E + 1
    # Each task rises while trained and decays afterwards; unclipped, so it can leave [0, 1].
    curves = np.zeros((len(seeds), num_evals, n))
    for e in range(1, num_evals):
        trained = (e - 1) // E
        curves[:, e] = curves[:, e - 1] * 0.8
        curves[:, e, trained] = min(1.0, curves[0, e - 1, trained] + 0.55)
    curves += rng.normal(0, 0.05, curves.shape)

    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("agent: dqn\nscenario: cartpole-trio\nseeds: [0, 1]\n")
    (root / "run.json").write_text(json.dumps({
        "everlearn_version": "0.1.0", "versions": {"jax": "0.7.0", "numpy": "2.3.0"},
        "created": "2025-01-02T03:04:05+00:00",
        "scenario": {"name": "cartpole-trio", "description": "Three classic-control tasks.",
                     "steps_per_task": steps_per_task,
                     "tasks": [{"name": t, "env": "CartPole-v1"} for t in TASKS]},
        "agent": "dqn", "backend": "jax", "seeds": list(seeds), "evals_per_task": E,
        "segment_steps": steps_per_task // E,
    }))
    lines = [json.dumps({"kind": "start"})]  # an unknown kind: must be ignored
    for e in range(num_evals):
        lines.append(json.dumps({
            "kind": "eval", "eval_index": e, "step": e * steps_per_task // E,
            "task_index": max((e - 1) // E, 0), "returns": (curves[:, e] * 500).tolist(),
            "normalised": curves[:, e].tolist(),
            "train": {} if e == 0 else {"loss": [0.1] * len(seeds)}, "wall_time": 0.5 * e,
        }))
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        matrix = np.clip(curves[:, [(k + 1) * E for k in range(n)]], 0, 1)
        aggregate = {
            "average_performance": {"iqm": 0.6789, "ci_low": 0.61, "ci_high": 0.7},
            "forgetting": {"iqm": 0.2345, "ci_low": 0.2, "ci_high": 0.25},
            "backward_transfer": {"iqm": -0.2345, "ci_low": -0.25, "ci_high": -0.2},
        }
        (root / "summary.json").write_text(json.dumps({
            "scenario": "cartpole-trio", "agent": "dqn", "seeds": list(seeds), "tasks": TASKS,
            "eval_steps": [e * steps_per_task // E for e in range(num_evals)],
            "task_boundaries": [(k + 1) * steps_per_task for k in range(n)],
            "per_seed": {"average_performance": [0.66, 0.69], "forgetting": [0.22, 0.24],
                         "backward_transfer": [-0.22, -0.24], "forward_transfer": None},
            "aggregate": aggregate, "performance_matrix": matrix.tolist(),
            "reference": {"curves": np.linspace(0, 0.9, E + 1)[None, None].repeat(n, 1)
                          .repeat(len(seeds), 0).tolist()},
            "wall_time_s": 12.5,
        }))
    return root
