"""The HTML report of a run directory: one self-contained file plus the same figures as PNGs.

The run directory is read by `run_data` (never through the run machinery: a report can be
rebuilt from a copied run directory on a machine without JAX), the figures are drawn by
`figures`, and the page is rendered by the Jinja2 template `templates/report.html.j2`: this
module gathers what the page shows (its context) and writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from everlearn.core.files import atomic_write
from everlearn.report.figures import (
    diagnostics_figure,
    learning_speed_figure,
    matrix_figure,
    performance_figure,
    write_figures,
)
from everlearn.report.run_data import RunData, load_run, read_performance_matrix
from everlearn.report.templating import render

__all__ = ["write_report"]

# Display order and one-line definitions (DESIGN.md, "Metrics"); unknown metrics go last.
METRIC_INFO: dict[str, tuple[str, str]] = {
    "average_performance": (
        "Average performance",
        "mean normalised performance over all tasks at the end of the run (higher is better)",
    ),
    "forgetting": (
        "Forgetting",
        "drop in a task's performance from the end of its training to the end of the run, "
        "averaged over all tasks but the last (lower is better)",
    ),
    "forward_transfer": (
        "Forward transfer",
        "AUC during a task's training relative to a from-scratch single-task reference "
        "(> 0: earlier tasks helped)",
    ),
    "backward_transfer": (
        "Backward transfer",
        "change in performance on earlier tasks after training later ones (< 0: forgetting)",
    ),
}


CW_METRIC_INFO: dict[str, str] = {
    "average_performance": "mean over tasks of the mean of the last {w} evaluations",
    "forgetting": "a task's performance over the last {w} evaluations of its own training "
                  "minus over the last {w} of the run, averaged over all tasks (the last "
                  "contributes its own 0)",
    "forward_transfer": "mean over tasks of (mean AUC − mean AUC_ref) / (1 − mean AUC_ref), "
                        "AUCs averaged over seeds first",
}


def _metrics_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """everlearn's metrics, in METRIC_INFO's order, then any others by name."""
    aggregate = summary.get("aggregate", {})
    per_seed = summary.get("per_seed", {})
    seeds = summary.get("seeds", [])
    names = [m for m in METRIC_INFO if m in aggregate]
    names += sorted(m for m in aggregate if m not in METRIC_INFO)
    rows = []
    for name in names:
        title, definition = METRIC_INFO.get(name, (name.replace("_", " ").capitalize(), ""))
        agg = aggregate[name]
        rows.append({"title": title, "definition": definition, "point": agg.get("iqm"),
                     "ci_low": agg.get("ci_low"), "ci_high": agg.get("ci_high"),
                     "per_seed": per_seed.get(name) or [None] * len(seeds)})
    return rows


def _cw_metrics_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The same run in Continual World's convention (`continual_world_metrics`)."""
    cw = summary["continual_world"]
    seeds = summary.get("seeds", [])
    rows = []
    for name, definition in CW_METRIC_INFO.items():
        if name not in cw["aggregate"]:
            continue
        agg = cw["aggregate"][name]
        rows.append({"title": METRIC_INFO[name][0],
                     "definition": definition.format(w=cw["final_evals"]),
                     "point": agg["mean"], "ci_low": agg["ci_low"], "ci_high": agg["ci_high"],
                     "per_seed": cw["per_seed"].get(name) or [None] * len(seeds)})
    return rows


def _metric_tables(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics tables in the order the run's convention puts them."""
    seeds = summary.get("seeds", [])
    tables = [{"kind": "everlearn", "rows": _metrics_rows(summary), "seeds": seeds,
               "has_forward_transfer": "forward_transfer" in summary.get("aggregate", {})}]
    if "continual_world" in summary:
        cw = {"kind": "continual-world", "rows": _cw_metrics_rows(summary), "seeds": seeds,
              "confidence": round(100 * summary["continual_world"]["confidence"])}
        cw_first = summary.get("metrics_convention") == "continual-world"
        tables.insert(0 if cw_first else 1, cw)
    return tables


def _normalisation_rows(task_names: list[str], info: dict[str, Any]) -> list[dict[str, Any]]:
    """Which scores normalise each task's returns, and where they came from."""
    norm = info.get("normalisation")
    if not norm:
        return []
    rows = []
    for i, name in enumerate(task_names):
        source = norm.get("source", [{}] * len(task_names))[i]
        rows.append({"task": name,
                     "random": norm["random"][i],
                     "random_from": str(source.get("random_score", "given")),
                     "reference": norm["reference"][i],
                     "reference_from": str(source.get("reference_score", "given"))})
    return rows


def _progress(data: RunData) -> str:
    """Where an unfinished run stands, as a sentence (empty before any evaluation)."""
    last = data.evals[-1] if data.evals else None
    if last is None:
        return ""
    total = len(data.task_names) * data.steps_per_task if data.steps_per_task else None
    doing = ("before training" if last["eval_index"] == 0
             else f"while training task {last['task_index'] + 1}")
    return (f" Last evaluation at step {last['step']:,}"
            + (f" of {total:,}" if total else "") + f", {doing}.")


def _render(data: RunData, figures: dict[str, tuple[str, int]]) -> str:
    """The page; `figures` maps a figure's name to its data URI and display width."""
    info, summary = data.info, data.summary or {}
    scenario = info.get("scenario", {})
    scenario_name = scenario.get("name") or summary.get("scenario", "?")
    agent = info.get("agent") or summary.get("agent", "?")
    return render(
        "report.html.j2",
        title=f"everlearn report: {scenario_name} / {agent}",
        scenario_name=str(scenario_name), agent=str(agent),
        backend=str(info.get("backend") or summary.get("backend", "?")),
        seeds=info.get("seeds") or summary.get("seeds", []),
        created=info.get("created"),
        tasks=", ".join(f"{i + 1}. {name}" for i, name in enumerate(data.task_names)),
        budget=(f" · {data.steps_per_task:,} env steps per task" if data.steps_per_task
                else ""),
        description=scenario.get("description"),
        wall_time_s=summary.get("wall_time_s"),
        finished=data.finished,
        metric_tables=_metric_tables(summary) if data.finished else [],
        progress="" if data.finished else _progress(data),
        normalisation=_normalisation_rows(data.task_names, info),
        figures=figures,
        command=str(info["command"]) if info.get("command") else None,
        config_text=data.config_text,
        versions={"everlearn": info.get("everlearn_version", "?"),
                  **info.get("versions", {})})


def write_report(run_dir: Path) -> Path:
    """Write `run_dir/report.html` (self-contained) and `run_dir/figures/*.png`.

    Works on unfinished runs too (no summary.json): then from metrics.jsonl alone.
    Returns the path of report.html.
    """
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    figures: dict[str, Figure] = {}
    if data.evals:
        figures["performance"] = performance_figure(data)
    if data.summary and data.summary.get("task_auc"):
        figures["learning_speed"] = learning_speed_figure(np.asarray(data.summary["task_auc"]))
    diagnostics = diagnostics_figure(data)
    if diagnostics is not None:
        figures["diagnostics"] = diagnostics
    matrix = read_performance_matrix(data)
    if matrix is not None:
        figures["matrix"] = matrix_figure(matrix, data.task_names)

    embedded = write_figures(figures, run_dir / "figures")
    path = run_dir / "report.html"
    atomic_write(path, _render(data, embedded).encode("utf-8"))
    return path
