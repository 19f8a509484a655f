"""The comparison of a sweep's cells as files: comparison.json, .md and .html.

`comparison` reads the sweep directory and computes the statistics; this module writes them:
the JSON as data, the Markdown as text, and the HTML page (with the performance profiles and
the performance matrices side by side, drawn by `figures`) through the Jinja2 template
`templates/comparison.html.j2`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from everlearn.core.files import atomic_write
from everlearn.report.comparison import (
    PROFILE_TAUS,
    Cell,
    Comparison,
    Row,
    ScenarioTable,
    cell_counts,
    load_comparison,
    performance_profiles,
)
from everlearn.report.figures import fmt, matrix_figure, performance_profile_figure, write_figures
from everlearn.report.html import METRIC_INFO
from everlearn.report.run_data import read_json
from everlearn.report.templating import format_date, render

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
# Matrices are shown two to a row: at two thirds of their size, two small ones fit the page.
MATRIX_SCALE = 2 / 3


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
             f"{format_date(sweep.get('created'))} · {cell_counts(cells)}", ""]
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
        profiles, intervals = performance_profiles(table.rows)
        figures[_profile_name(i, table)] = performance_profile_figure(
            profiles, intervals, PROFILE_TAUS, "average performance")
        for row in table.rows:
            matrix = row.cell.summary.get("performance_matrix")
            if matrix:
                figures[f"matrix-{row.cell.name}"] = matrix_figure(
                    np.asarray(matrix, dtype=np.float64), table.tasks)
    return write_figures(figures, sweep_dir / "figures")


def _html_row(row: Row, table: ScenarioTable) -> dict[str, Any]:
    """A row of a scenario's HTML table: its name, link and (value, CI) cells."""
    stats = [(row.metrics[key], "iqm") for key, _, _ in COLUMNS]
    stats.append((row.improvement, "probability"))
    return {"name": row.name,
            "link": (f"cells/{row.cell.name}/report.html"
                     if (row.cell.run_dir / "report.html").is_file() else None),
            "is_baseline": row is table.baseline,
            "per_seed": [_with_ci(s, point) for s, point in stats],
            "wall_time": _wall_time(row.cell.wall_time_s)}


def _render(comparison: Comparison, figures: dict[str, tuple[str, int]]) -> str:
    sweep_dir, sweep = comparison.sweep_dir, comparison.sweep
    scenarios = []
    for i, table in enumerate(comparison.tables):
        scenarios.append({
            "name": table.scenario,
            "tasks": ", ".join(f"{k + 1}. {name}" for k, name in enumerate(table.tasks)),
            "baseline": None if table.baseline is None else table.baseline.name,
            "rows": [_html_row(row, table) for row in table.rows],
            "seed_note": _seed_note(table.rows),
            "profile": figures[_profile_name(i, table)],
            "matrices": [(row.name, figures[f"matrix-{row.cell.name}"]) for row in table.rows
                         if f"matrix-{row.cell.name}" in figures]})
    definitions = [*((title, definition) for _, title, definition in COLUMNS),
                   ("P(improvement over baseline)", IMPROVEMENT_DEFINITION),
                   ("wall s", "the cell's wall time as the sweep recorded it")]
    return render(
        "comparison.html.j2", title=f"everlearn comparison: {sweep_dir.name}",
        name=sweep_dir.name, path=str(sweep_dir.resolve()),
        command=sweep.get("command") or "unknown", commit=sweep.get("commit") or "unknown",
        version=sweep.get("everlearn_version", "?"), created=sweep.get("created"),
        counts=cell_counts(comparison.cells), columns=[title for _, title, _ in COLUMNS],
        scenarios=scenarios, unfinished=comparison.unfinished, definitions=definitions,
        matrix_scale=MATRIX_SCALE)


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
    comparison = load_comparison(sweep_dir, baseline)
    sweep, cells, tables = comparison.sweep, comparison.cells, comparison.tables
    unfinished = comparison.unfinished
    figures = _figures(sweep_dir, tables)

    stem = Path(out) if out is not None else sweep_dir / "comparison"
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{ext}") for ext in ("json", "md", "html")]
    atomic_write(paths[0], json.dumps(
        _comparison_json(sweep_dir, sweep, tables, unfinished), indent=1) + "\n")
    atomic_write(paths[1], _markdown(sweep_dir, sweep, cells, tables, unfinished))
    atomic_write(paths[2], _render(comparison, figures))
    return paths
