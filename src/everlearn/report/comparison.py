"""The comparison of a sweep's cells: comparison.json, comparison.md and comparison.html.

Reads a sweep directory as the sweep writes it — `sweep.json` (the grid), `status.json` (each
cell's state) and `cells/NAME/`, each an ordinary run directory — and never imports the run or
sweep machinery. A cell has finished when its summary.json exists (the run's last write).

Per scenario, one row per finished cell, in everlearn's convention whatever convention a run's
own report leads with: the interquartile mean over seeds with a 95% stratified-bootstrap CI
(rliable) of average performance, forgetting, forward transfer (runs with `--reference`) and
learning speed; the probability that a seed of the row beats a seed of the baseline on average
performance (rliable's probability of improvement); rliable's performance profiles; and the
performance matrices side by side.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from everlearn.core.files import atomic_write
from everlearn.evaluation.metrics import bootstrap_rng, interquartile_mean_ci
from everlearn.report.figures import (
    fmt,
    matrix_figure,
    performance_profile_figure,
    write_figures,
)
from everlearn.report.html import CSS, METRIC_INFO, figure_html, format_date, html_page
from everlearn.report.run_data import read_json

__all__ = ["write_comparison"]

# The columns, in order: (key, title, definition). The run report's words where it has them.
COLUMNS: list[tuple[str, str, str]] = [
    *((key, *METRIC_INFO[key]) for key in
      ("average_performance", "forgetting", "forward_transfer")),
    ("learning_speed", "Learning speed (AUC)",
     "area under each task's own learning curve during its training, averaged over tasks "
     "(higher: learns new tasks faster)"),
]
IMPROVEMENT_DEFINITION = ("probability that a seed of the method has a higher average "
                          "performance than a seed of the baseline (rliable; 0.5: no "
                          "difference)")
BOOTSTRAP_REPS = 2000  # draws per bootstrap interval, as in run summaries
PROFILE_TAUS = np.linspace(0.0, 1.0, 101)
# Matrices are shown two to a row: at two thirds of their size, two small ones fit the page.
MATRIX_SCALE = 2 / 3

EXTRA_CSS = """
.ci { color: #666; font-size: .85em; }
.compare th { white-space: normal; vertical-align: bottom; }
.compare th, .compare td { padding: .35em .5em; }
.matrices { display: flex; flex-wrap: wrap; gap: 0 1.2em; align-items: flex-start; }
.matrices figure { margin: .6em 0; }
"""


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
    metrics: dict[str, dict[str, Any] | None]  # COLUMNS' keys; None where not measured
    improvement: dict[str, Any] | None = None  # over the scenario's baseline


@dataclass
class ScenarioTable:
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
    for key, _, _ in COLUMNS:
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


def _performance_profiles(rows: list[Row]) -> tuple[dict[str, np.ndarray],
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


# ----------------------------------------------------------------------------- outputs


def _comparison_json(sweep_dir: Path, sweep: dict[str, Any], tables: list[ScenarioTable],
                     unfinished: list[Cell]) -> dict[str, Any]:
    return {
        "sweep_dir": str(sweep_dir.resolve()),
        **{key: sweep.get(key) for key in ("command", "commit", "everlearn_version", "created")},
        "convention": "everlearn: interquartile mean over seeds with 95% stratified-bootstrap "
                      "CIs (rliable); probability of improvement on per-seed average "
                      "performance",
        "scenarios": [{
            "scenario": table.scenario, "tasks": table.tasks,
            "baseline": None if table.baseline is None else table.baseline.name,
            "rows": [{
                "name": row.name, "cell": row.cell.name, "agent": row.cell.agent,
                "methods": row.cell.methods, "label": row.cell.label,
                "overrides": row.cell.overrides, "seeds": row.cell.summary.get("seeds"),
                "metrics": row.metrics, "probability_of_improvement": row.improvement,
                "wall_time_s": row.cell.wall_time_s,
            } for row in table.rows],
        } for table in tables],
        "unfinished": [{"cell": cell.name, "scenario": cell.scenario, "agent": cell.agent,
                        "label": cell.label, "status": cell.status, "attempts": cell.attempts,
                        "error": cell.error} for cell in unfinished],
    }


def _with_ci(stats: dict[str, Any] | None, point: str = "iqm") -> tuple[str, str]:
    """(the value, its CI in brackets or '') as text; a dash where there is no value."""
    if stats is None:
        return "—", ""
    if stats.get("ci_low") is None:
        return fmt(stats[point]), ""
    return fmt(stats[point]), f"[{fmt(stats['ci_low'])}, {fmt(stats['ci_high'])}]"


def _wall_time(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:,.0f}"


def _cell_counts(cells: list[Cell]) -> str:
    states = ", ".join(f"{n} {status}" for status, n in Counter(c.status for c in cells).items())
    return f"{len(cells)} cells: {states}" if cells else "0 cells"


def _seed_note(rows: list[Row]) -> str:
    counts = sorted({len(row.cell.summary.get("seeds", [])) for row in rows})
    return (f"{counts[0]} seeds" if len(counts) == 1
            else f"{counts[0]}–{counts[-1]} seeds (by cell)")


def _md(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _machine(sweep_dir: Path, sweep: dict[str, Any]) -> str:
    """The executor (status.json) and the machine that drove the sweep (sweep.json)."""
    executor = (read_json(sweep_dir / "status.json") or {}).get("executor", "unknown executor")
    machine = sweep.get("machine") or {}
    where = (f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs"
             if machine else "unknown machine")
    return f"{executor}; driver: {where}"


def _markdown(sweep_dir: Path, sweep: dict[str, Any], cells: list[Cell],
              tables: list[ScenarioTable], unfinished: list[Cell]) -> str:
    lines = [f"# Comparison of `{sweep_dir}`", "",
             f"- command: `{sweep.get('command') or 'unknown'}`",
             f"- compared by: `{' '.join(['everlearn', *sys.argv[1:]])}`",
             f"- commit: `{sweep.get('commit') or 'unknown'}`"
             + (" (with uncommitted changes)" if (sweep.get("code") or {}).get("dirty") else ""),
             f"- ran on: {_machine(sweep_dir, sweep)}",
             f"- everlearn {sweep.get('everlearn_version', '?')} · "
             f"{format_date(sweep.get('created'))} · {_cell_counts(cells)}", ""]
    titles = [title[0].lower() + title[1:] for _, title, _ in COLUMNS]
    header = f"| method | {' | '.join(titles)} | P(improvement over baseline) | wall s |"
    for table in tables:
        lines += [f"## {table.scenario}", "", header,
                  "|:--|" + "--:|" * (len(COLUMNS) + 2)]
        for row in table.rows:
            name = row.name + (" (baseline)" if row is table.baseline else "")
            values = [" ".join(_with_ci(row.metrics[key])).strip() for key, _, _ in COLUMNS]
            values.append(" ".join(_with_ci(row.improvement, "probability")).strip())
            values.append(_wall_time(row.cell.wall_time_s))
            lines.append(f"| {_md(name)} | " + " | ".join(values) + " |")
        baseline = ("the baseline did not finish in this scenario" if table.baseline is None
                    else f"baseline {table.baseline.name}")
        lines += ["", f"Interquartile mean over {_seed_note(table.rows)} [95% "
                      f"stratified-bootstrap CI]; {baseline}. P(improvement over baseline): "
                      f"{IMPROVEMENT_DEFINITION}.", ""]
    if unfinished:
        lines += ["## Cells not finished", "", "| cell | scenario | method | status | "
                  "attempts | error |", "|---|---|---|---|--:|---|"]
        lines += [f"| {_md(c.name)} | {_md(c.scenario)} | {_md(c.label)} | {c.status} | "
                  f"{c.attempts if c.attempts is not None else '—'} | {_md(c.error or '')} |"
                  for c in unfinished]
        lines.append("")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "scenario"


def _profile_name(index: int, table: ScenarioTable) -> str:
    return f"profile-{index + 1}-{_slug(table.scenario)}"  # scenarios may be file paths


def _figures(sweep_dir: Path, tables: list[ScenarioTable]) -> dict[str, tuple[str, int]]:
    """Draw and save every figure: {name: (PNG data URI, display width)}."""
    figures = {}
    for i, table in enumerate(tables):
        profiles, intervals = _performance_profiles(table.rows)
        figures[_profile_name(i, table)] = performance_profile_figure(
            profiles, intervals, PROFILE_TAUS, "average performance")
        for row in table.rows:
            matrix = row.cell.summary.get("performance_matrix")
            if matrix:
                figures[f"matrix-{row.cell.name}"] = matrix_figure(
                    np.asarray(matrix, dtype=np.float64), table.tasks)
    return write_figures(figures, sweep_dir / "figures")


def _html_table(table: ScenarioTable) -> str:
    e = html.escape
    baseline = "baseline" if table.baseline is None else e(table.baseline.name)
    head = ("<tr><th>method</th>"
            + "".join(f"<th class=num>{e(title)}</th>" for _, title, _ in COLUMNS)
            + f"<th class=num>P(improvement over {baseline})</th>"
            "<th class=num>wall&nbsp;s</th></tr>")
    rows = []
    for row in table.rows:
        name = e(row.name)
        if (row.cell.run_dir / "report.html").is_file():
            name = f"<a href=\"cells/{e(row.cell.name)}/report.html\">{name}</a>"
        if row is table.baseline:
            name += " <span class=ci>(baseline)</span>"
        cells = []
        for stats, point in ([(row.metrics[key], "iqm") for key, _, _ in COLUMNS]
                             + [(row.improvement, "probability")]):
            value, ci = _with_ci(stats, point)
            cells.append(f"<td class=num>{value}<div class=ci>{ci}</div></td>")
        rows.append(f"<tr><td>{name}</td>{''.join(cells)}"
                    f"<td class=num>{_wall_time(row.cell.wall_time_s)}</td></tr>")
    return (f"<div class=scroll><table class='metrics compare'>{head}{''.join(rows)}</table>"
            f"</div><p class=note>Interquartile mean over {_seed_note(table.rows)} and its 95% "
            "stratified-bootstrap CI (rliable); definitions below. A method's name links to its "
            "cell's run report.</p>")


def _render(sweep_dir: Path, sweep: dict[str, Any], cells: list[Cell],
            tables: list[ScenarioTable], unfinished: list[Cell],
            figures: dict[str, tuple[str, int]]) -> str:
    e = html.escape
    parts = [f"<h1>Comparison · {e(sweep_dir.name)}</h1>",
             f"<p class=sub>{e(str(sweep_dir.resolve()))}</p>",
             f"<p class=sub>command: <code>{e(sweep.get('command') or 'unknown')}</code></p>",
             f"<p class=sub>commit <code>{e(sweep.get('commit') or 'unknown')}</code> · "
             f"everlearn {e(sweep.get('everlearn_version', '?'))} · "
             f"{e(format_date(sweep.get('created')))} · {e(_cell_counts(cells))}</p>"]
    for i, table in enumerate(tables):
        tasks = ", ".join(f"{k + 1}. {name}" for k, name in enumerate(table.tasks))
        parts += [f"<h2>{e(table.scenario)}</h2>", f"<p class=sub>tasks: {e(tasks)}</p>",
                  _html_table(table)]
        parts.append(figure_html(
            *figures[_profile_name(i, table)], "performance profiles",
            "Performance profiles (rliable): the fraction of each method's seeds whose average "
            "performance is above τ, with 95% stratified-bootstrap bands. A curve above "
            "another is better at every threshold."))
        matrices = []
        for row in table.rows:
            key = f"matrix-{row.cell.name}"
            if key in figures:
                uri, width = figures[key]
                matrices.append(figure_html(uri, round(width * MATRIX_SCALE),
                                            f"performance matrix of {row.name}", e(row.name)))
        if matrices:
            parts.append("<h3>Performance matrices</h3><p class=note>R[k, i]: performance on "
                         "task i right after training task k, mean over seeds, clipped to "
                         "[0, 1]; the same colour scale in every panel.</p>"
                         f"<div class=matrices>{''.join(matrices)}</div>")
    if unfinished:
        rows = "".join(
            f"<tr><td>{e(c.name)}</td><td>{e(c.scenario)}</td><td>{e(c.agent)}</td>"
            f"<td>{e(c.label)}</td><td>{e(c.status)}</td>"
            f"<td class=num>{c.attempts if c.attempts is not None else '—'}</td>"
            f"<td>{e(c.error or '')}</td></tr>" for c in unfinished)
        parts += ["<h2>Cells not finished</h2>",
                  "<div class=scroll><table class=metrics><tr><th>cell</th><th>scenario</th>"
                  "<th>agent</th><th>method</th><th>status</th><th class=num>attempts</th>"
                  f"<th>error</th></tr>{rows}</table></div>"]
    definitions = [*((title, definition) for _, title, definition in COLUMNS),
                   ("P(improvement over baseline)", IMPROVEMENT_DEFINITION),
                   ("wall s", "the cell's wall time as the sweep recorded it")]
    parts += ["<h2>Definitions</h2>", "<table>" + "".join(
        f"<tr><td><b>{e(title)}</b></td><td class=def>{e(definition)}</td></tr>"
        for title, definition in definitions) + "</table>"]
    return html_page(f"everlearn comparison: {sweep_dir.name}", parts, CSS + EXTRA_CSS)


def write_comparison(sweep_dir: Path, baseline: str | None = None,
                     out: Path | None = None) -> list[Path]:
    """Write comparison.json, comparison.md and comparison.html (self-contained; its figures
    also as `figures/*.png`) into `sweep_dir`, and return the three paths. `out`: a path stem
    for the three files instead (`benchmarks/results/methods` -> methods.json, .md, .html).

    `baseline` names the row (a cell's label; "agent/label" in a sweep of several agents) that
    every row's probability of improvement is measured against; by default the fine-tuning
    row (no methods, no overrides) of each scenario, else its first row.

    Raises ValueError, with one line, for a directory that is not a sweep directory, a sweep
    with no finished cell, or an unknown baseline (the line lists the valid names).
    """
    sweep_dir = Path(sweep_dir)
    sweep = _read_sweep(sweep_dir)
    cells = _read_cells(sweep_dir, sweep)
    unfinished = [cell for cell in cells if cell.summary is None]
    if len(unfinished) == len(cells):
        raise ValueError(f"{sweep_dir}: no cell has finished yet ({_cell_counts(cells)})")
    tables = _scenario_tables(cells, baseline)
    figures = _figures(sweep_dir, tables)

    stem = Path(out) if out is not None else sweep_dir / "comparison"
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{ext}") for ext in ("json", "md", "html")]
    atomic_write(paths[0], json.dumps(
        _comparison_json(sweep_dir, sweep, tables, unfinished), indent=1) + "\n")
    atomic_write(paths[1], _markdown(sweep_dir, sweep, cells, tables, unfinished))
    atomic_write(paths[2], _render(sweep_dir, sweep, cells, tables, unfinished, figures))
    return paths
