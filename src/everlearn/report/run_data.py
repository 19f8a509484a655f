"""Reading a run directory for reports: what the run loop writes (config.yaml, run.json,
metrics.jsonl and, once the run has finished, summary.json).

Never imports the run machinery: a report can be rebuilt from a copied run directory on a
machine without JAX.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from everlearn.evaluation.metrics import task_end_evals


@dataclass
class RunData:
    """Everything the report shows, read from a run directory."""

    run_dir: Path
    config_text: str | None
    info: dict[str, Any]
    evals: list[dict[str, Any]]
    summary: dict[str, Any] | None
    task_names: list[str] = field(default_factory=list)
    steps_per_task: int | None = None
    evals_per_task: int | None = None

    @property
    def finished(self) -> bool:
        return self.summary is not None


def read_json(path: Path) -> Any | None:
    """The parsed file, or None where there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def _read_evals(path: Path) -> list[dict[str, Any]]:
    """Eval records sorted by eval_index; on a repeated index the later line wins (resume)."""
    if not path.is_file():
        return []
    by_index: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a run killed mid-write can leave a torn last line
            continue
        if record.get("kind") == "eval":
            by_index[int(record["eval_index"])] = record
    return [by_index[i] for i in sorted(by_index)]


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    info = read_json(run_dir / "run.json") or {}
    summary = read_json(run_dir / "summary.json")
    scenario = info.get("scenario", {})
    tasks = [t.get("name", f"task {i + 1}") for i, t in enumerate(scenario.get("tasks", []))]
    if summary is not None and summary.get("tasks"):
        tasks = list(summary["tasks"])
    data = RunData(
        run_dir=run_dir,
        config_text=config_path.read_text() if config_path.is_file() else None,
        info=info,
        evals=_read_evals(run_dir / "metrics.jsonl"),
        summary=summary,
        task_names=tasks,
        steps_per_task=scenario.get("steps_per_task"),
        evals_per_task=info.get("evals_per_task"),
    )
    if not data.task_names and data.evals:  # no run.json: fall back to the width of the logs
        data.task_names = [f"task {i + 1}" for i in range(len(data.evals[0]["normalised"][0]))]
    return data


def task_boundaries(data: RunData) -> list[float]:
    """Env step (per seed) at which each task's training ends."""
    if data.summary is not None and data.summary.get("task_boundaries"):
        return [float(b) for b in data.summary["task_boundaries"]]
    if data.steps_per_task:
        return [float((k + 1) * data.steps_per_task) for k in range(len(data.task_names))]
    return []


def read_performance_matrix(data: RunData) -> np.ndarray | None:
    """R[seed, k, i] in [0, 1]; rows of tasks not yet finished are NaN (unfinished runs)."""
    if data.summary is not None and data.summary.get("performance_matrix"):
        return np.asarray(data.summary["performance_matrix"], dtype=np.float64)
    n, per_task = len(data.task_names), data.evals_per_task
    if not data.evals or not per_task or n == 0:
        return None
    # The summary's rows: the evaluation at the end of each task (those that have ended).
    by_index = {e["eval_index"]: e for e in data.evals}
    seeds = len(data.evals[0]["normalised"])
    matrix = np.full((seeds, n, n), np.nan)
    for k, end in enumerate(task_end_evals(n, per_task)):
        record = by_index.get(end)
        if record is not None:
            matrix[:, k, :] = np.clip(np.asarray(record["normalised"], dtype=np.float64), 0, 1)
    return None if np.isnan(matrix).all() else matrix
