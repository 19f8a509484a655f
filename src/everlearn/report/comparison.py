"""The comparison of a sweep's cells as data: loading the cells and the statistics.

Reads a sweep directory as the sweep writes it — `sweep.json` (the grid), `status.json` (each
cell's state) and `cells/NAME/`, each an ordinary run directory — and never imports the run or
sweep machinery. A cell has finished when its summary.json exists (the run's last write).

Per scenario, one row per finished cell, in everlearn's convention whatever convention a run's
own report leads with: the interquartile mean over seeds with a 95% stratified-bootstrap CI
(rliable) of average performance, forgetting, forward transfer (runs with `--reference`) and
learning speed; the probability that a seed of the row beats a seed of the baseline on average
performance (rliable's probability of improvement); and rliable's performance profiles.
Nothing here writes a file: `comparison_writer` turns this into comparison.json, .md and .html.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from everlearn.evaluation.metrics import bootstrap_rng, interquartile_mean_ci
from everlearn.report.run_data import read_json

__all__ = ["BOOTSTRAP_REPS", "METRICS", "PROFILE_TAUS", "Cell", "Comparison", "Row",
           "ScenarioTable", "cell_counts", "load_comparison", "performance_profiles"]

# The compared metrics, in the tables' order (their titles: `comparison_writer.COLUMNS`).
METRICS = ("average_performance", "forgetting", "forward_transfer", "learning_speed")
BOOTSTRAP_REPS = 2000  # draws per bootstrap interval, as in run summaries
PROFILE_TAUS = np.linspace(0.0, 1.0, 101)


@dataclass
class Cell:
    """One cell of the grid (sweep.json) with its state (status.json) and results."""

    name: str
    run_dir: Path
    scenario: str
    agent: str
    methods: list[str]
    label: str
    overrides: dict[str, Any]
    status: str
    attempts: int | None
    error: str | None
    wall_time_s: float | None
    summary: dict[str, Any] | None  # None until the cell's run has finished
    # sweep.json's flag (no method, no settings of its own, nothing varied); older sweep
    # directories lack it: then no methods and no overrides.
    fine_tuning: bool | None = None

    @property
    def is_fine_tuning(self) -> bool:
        if self.fine_tuning is not None:
            return self.fine_tuning
        return not self.methods and not self.overrides


@dataclass
class Row:
    """A finished cell as one line of a scenario's table."""

    name: str  # the cell's label; "agent/label" when the sweep has several agents
    cell: Cell
    metrics: dict[str, dict[str, Any] | None]  # METRICS' keys; None where not measured
    improvement: dict[str, Any] | None = None  # over the scenario's baseline


@dataclass
class ScenarioTable:
    """One scenario's rows and the baseline their probability of improvement is over."""

    scenario: str
    tasks: list[str]
    rows: list[Row]
    baseline: Row | None  # None where the named baseline did not finish in this scenario


def _read_sweep(sweep_dir: Path) -> dict[str, Any]:
    if not sweep_dir.is_dir():
        raise ValueError(f"{sweep_dir} is not a sweep directory: no such directory")
    path = sweep_dir / "sweep.json"
    try:
        sweep = read_json(path)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if sweep is None:
        raise ValueError(f"{sweep_dir} is not a sweep directory: it has no sweep.json")
    cells = sweep.get("cells")
    if not isinstance(cells, list):
        raise ValueError(f"{path} has no list of cells")
    for i, cell in enumerate(cells):
        missing = [key for key in ("name", "scenario", "agent", "label") if key not in cell]
        if missing:
            raise ValueError(f"{path}: cell {i + 1} has no {', '.join(missing)}")
    return sweep


def _read_cells(sweep_dir: Path, sweep: dict[str, Any]) -> list[Cell]:
    try:
        states = (read_json(sweep_dir / "status.json") or {}).get("cells", {})
    except json.JSONDecodeError:  # a sweep killed mid-write: the summaries still say enough
        states = {}
    cells = []
    for entry in sweep["cells"]:
        run_dir = sweep_dir / "cells" / entry["name"]
        state = states.get(entry["name"], {})
        summary = read_json(run_dir / "summary.json")
        status = "done" if summary is not None else state.get("status", "pending")
        error = state.get("error")
        if status == "done" and summary is None:
            error = f"no summary.json in cells/{entry['name']}"
        cells.append(Cell(
            name=entry["name"], run_dir=run_dir, scenario=entry["scenario"],
            agent=entry["agent"], methods=list(entry.get("methods", [])), label=entry["label"],
            overrides=dict(entry.get("overrides", {})), status=status,
            attempts=state.get("attempts"), error=error,
            wall_time_s=state.get("wall_time_s") or (summary or {}).get("wall_time_s"),
            summary=summary, fine_tuning=entry.get("fine_tuning")))
    return cells


def _metrics(summary: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """{column: IQM, CI and per-seed values}. A run's summary already holds the IQM and CI of
    its own metrics (the same computation); learning speed is aggregated here."""
    per_seed = dict(summary.get("per_seed", {}))
    if summary.get("task_auc"):
        per_seed["learning_speed"] = np.mean(summary["task_auc"], axis=1).tolist()
    out: dict[str, dict[str, Any] | None] = {}
    for key in METRICS:
        values = per_seed.get(key)
        if values is None or None in values:  # forward transfer needs reference runs
            out[key] = None
            continue
        aggregate = (summary.get("aggregate", {}).get(key) or interquartile_mean_ci(
            np.asarray(values, dtype=np.float64), reps=BOOTSTRAP_REPS))
        out[key] = {"iqm": aggregate["iqm"], "ci_low": aggregate["ci_low"],
                    "ci_high": aggregate["ci_high"], "per_seed": values}
    return out


def _performance(row: Row) -> np.ndarray:
    """Per-seed average performance as rliable wants scores: [runs, tasks] with one "task"."""
    return np.asarray(row.metrics["average_performance"]["per_seed"], dtype=np.float64)[:, None]


def _probability_of_improvement(row: Row, baseline: Row) -> dict[str, Any]:
    """P(a seed of `row` beats a seed of `baseline`), with a 95% CI from independent
    bootstraps of both; the baseline against itself is 0.5, with no interval."""
    from rliable import library, metrics

    if row is baseline:
        point = metrics.probability_of_improvement(_performance(row), _performance(row))
        return {"probability": float(point), "ci_low": None, "ci_high": None}
    with bootstrap_rng() as random_state:
        point, interval = library.get_interval_estimates(
            {"row": [_performance(row), _performance(baseline)]},
            lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
            reps=BOOTSTRAP_REPS, random_state=random_state)
    return {"probability": float(point["row"][0]), "ci_low": float(interval["row"][0, 0]),
            "ci_high": float(interval["row"][1, 0])}


def performance_profiles(rows: list[Row]) -> tuple[dict[str, np.ndarray],
                                                    dict[str, np.ndarray]]:
    """rliable's performance profiles of per-seed average performance, with 95% CIs."""
    from rliable import library

    with bootstrap_rng():
        return library.create_performance_profile(
            {row.name: _performance(row) for row in rows}, PROFILE_TAUS, reps=BOOTSTRAP_REPS,
            # rliable's score distribution (the share of runs above τ), vectorised over τ:
            # its own function loops over τ in Python, 50 times slower.
            custom_profile_func=lambda scores, taus: (scores.reshape(-1, 1) > taus).mean(0))


def _task_names(summary: dict[str, Any]) -> list[str]:
    if summary.get("tasks"):
        return list(summary["tasks"])
    return [f"task {i + 1}" for i in range(len(summary.get("performance_matrix", [[]])[0]))]


def _baseline_row(rows: list[Row], baseline: str | None) -> Row | None:
    if baseline is not None:
        return next((row for row in rows if row.name == baseline), None)
    return next((row for row in rows if row.cell.is_fine_tuning), rows[0])


def _scenario_tables(cells: list[Cell], baseline: str | None) -> list[ScenarioTable]:
    several_agents = len({cell.agent for cell in cells}) > 1
    finished = [cell for cell in cells if cell.summary is not None]
    # A baseline that did not finish is still a row name (its scenarios show "—"), so that a
    # sweep whose baseline failed reports the failure, not an unknown name.
    names = list(dict.fromkeys(
        f"{cell.agent}/{cell.label}" if several_agents else cell.label for cell in cells))
    if baseline is not None and baseline not in names:
        raise ValueError(f"unknown baseline {baseline!r}; the rows are: "
                         + ", ".join(map(repr, names)))
    tables = []
    for scenario in dict.fromkeys(cell.scenario for cell in finished):
        rows = [Row(name=f"{cell.agent}/{cell.label}" if several_agents else cell.label,
                    cell=cell, metrics=_metrics(cell.summary))
                for cell in finished if cell.scenario == scenario]
        base = _baseline_row(rows, baseline)
        if base is not None:
            for row in rows:
                row.improvement = _probability_of_improvement(row, base)
        tables.append(ScenarioTable(scenario=scenario, rows=rows, baseline=base,
                                    tasks=_task_names(rows[0].cell.summary)))
    return tables


def cell_counts(cells: list[Cell]) -> str:
    states = ", ".join(f"{n} {status}" for status, n in Counter(c.status for c in cells).items())
    return f"{len(cells)} cells: {states}" if cells else "0 cells"


@dataclass
class Comparison:
    """A sweep directory compared: its grid, every cell, and one table per scenario."""

    sweep_dir: Path
    sweep: dict[str, Any]  # sweep.json
    cells: list[Cell]
    tables: list[ScenarioTable]

    @property
    def unfinished(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.summary is None]


def load_comparison(sweep_dir: Path, baseline: str | None = None) -> Comparison:
    """Read `sweep_dir` and compute every scenario's table (see `write_comparison`).

    Raises ValueError, with one line, for a directory that is not a sweep directory, a sweep
    with no finished cell, or an unknown baseline (the line lists the valid names).
    """
    sweep_dir = Path(sweep_dir)
    sweep = _read_sweep(sweep_dir)
    cells = _read_cells(sweep_dir, sweep)
    if all(cell.summary is None for cell in cells):
        raise ValueError(f"{sweep_dir}: no cell has finished yet ({cell_counts(cells)})")
    return Comparison(sweep_dir=sweep_dir, sweep=sweep, cells=cells,
                      tables=_scenario_tables(cells, baseline))
