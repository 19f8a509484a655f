"""summary.json: the metrics of a run per seed and aggregated, from exactly one log line per
evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from everlearn.core.files import atomic_write
from everlearn.evaluation.metrics import (
    clip01,
    continual_world_metrics,
    interquartile_mean_ci,
    performance_matrix,
    summarise_seed,
    task_auc,
    task_end_evals,
)

if TYPE_CHECKING:
    from everlearn.runs.plan import RunPlan


def read_curves(run_dir: Path) -> tuple[np.ndarray, list[int]]:
    """Normalised evaluation curves [num_seeds, num_evals, num_tasks] and their steps, from
    exactly one log line per evaluation 0, 1, ..., n (anything else is refused: a summary
    computed from a duplicated or missing evaluation would be silently wrong)."""
    path = run_dir / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"'{path}' is damaged ({e}); resume the run to rebuild it") from None
    evals = sorted((r for r in records if r.get("kind") == "eval"),
                   key=lambda r: r["eval_index"])
    indices = [r["eval_index"] for r in evals]
    if indices != list(range(len(evals))):
        raise ValueError(f"'{path}' does not hold exactly one line per evaluation (found "
                         f"evaluation indices {indices}); resume the run to rebuild it")
    curves = np.stack([np.asarray(r["normalised"]) for r in evals], axis=1)
    return curves, [r["step"] for r in evals]


def write_summary(run_dir: Path, plan: RunPlan, reference: np.ndarray | None,
                  wall_time_s: float) -> dict:
    config, scenario = plan.config, plan.scenario
    curves, steps = read_curves(run_dir)
    per_seed_rows = [
        summarise_seed(curves[s], config.evals_per_task,
                       None if reference is None else reference[s])
        for s in range(len(config.seeds))
    ]
    metrics = list(per_seed_rows[0])
    per_seed = {m: [row[m] for row in per_seed_rows] for m in metrics}
    E = config.evals_per_task
    matrix = clip01(performance_matrix(curves, E))  # [seed, k, i]
    summary = {
        "scenario": scenario.name,
        "agent": config.agent,
        "backend": config.backend,
        "seeds": config.seeds,
        "tasks": [t.name for t in scenario.tasks],
        "eval_steps": steps,
        "task_boundaries": [end * plan.segment_steps
                            for end in task_end_evals(scenario.num_tasks, E)],
        "per_seed": per_seed,
        "aggregate": {m: interquartile_mean_ci(np.asarray(v)) for m, v in per_seed.items()},
        # Both conventions are always computed; this one is the run's headline.
        "metrics_convention": plan.metrics_convention,
        "continual_world": continual_world_metrics(curves, E, reference),
        "performance_matrix": matrix.tolist(),
        # Learning speed: the area under each task's own learning curve, per seed and task.
        "task_auc": [task_auc(curves[s], E).tolist() for s in range(len(config.seeds))],
        "reference": None if reference is None else {"curves": reference.tolist()},
        "normalisation": {"random": [t.random_score for t in scenario.tasks],
                          "reference": [t.reference_score for t in scenario.tasks]},
        "wall_time_s": wall_time_s,
    }
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=1))
    return summary

