"""The HTML report of a run directory: one self-contained file plus the same figures as PNGs.

The run directory is read by `run_data` (never through the run machinery: a report can be
rebuilt from a copied run directory on a machine without JAX) and the figures are drawn by
`figures`. The page's building blocks (CSS, `figure_html`, `html_page`) serve the sweep
comparison too.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from everlearn.core.files import atomic_write
from everlearn.report.figures import (
    diagnostics_figure,
    fmt,
    learning_speed_figure,
    matrix_figure,
    performance_figure,
    write_figures,
)
from everlearn.report.run_data import RunData, load_run, read_performance_matrix

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


def _metrics_table(summary: dict[str, Any]) -> str:
    aggregate = summary.get("aggregate", {})
    per_seed = summary.get("per_seed", {})
    seeds = summary.get("seeds", [])
    names = [m for m in METRIC_INFO if m in aggregate]
    names += sorted(m for m in aggregate if m not in METRIC_INFO)
    head = "".join(f"<th class=num>seed {html.escape(str(s))}</th>" for s in seeds)
    rows = []
    for name in names:
        title, definition = METRIC_INFO.get(name, (name.replace("_", " ").capitalize(), ""))
        agg = aggregate[name]
        values = per_seed.get(name) or [None] * len(seeds)
        cells = "".join(f"<td class=num>{fmt(v)}</td>" for v in values)
        rows.append(
            f"<tr><td><b>{html.escape(title)}</b><div class=def>{html.escape(definition)}</div>"
            f"</td><td class=num><b>{fmt(agg.get('iqm'))}</b></td>"
            f"<td class=num>[{fmt(agg.get('ci_low'))}, {fmt(agg.get('ci_high'))}]</td>"
            f"{cells}</tr>"
        )
    if "forward_transfer" not in aggregate:
        rows.append(f"<tr><td colspan={3 + len(seeds)} class=def>Forward transfer not computed: "
                    "the run had no single-task reference runs.</td></tr>")
    # Wrapped so that many seeds scroll sideways instead of widening the page.
    return (f"<div class=scroll><table class=metrics><tr><th>metric</th><th class=num>IQM</th>"
            f"<th class=num>95% CI</th>{head}</tr>{''.join(rows)}</table></div>")


CW_METRIC_INFO: dict[str, str] = {
    "average_performance": "mean over tasks of the mean of the last {w} evaluations",
    "forgetting": "a task's performance over the last {w} evaluations of its own training "
                  "minus over the last {w} of the run, averaged over all tasks (the last "
                  "contributes its own 0)",
    "forward_transfer": "mean over tasks of (mean AUC − mean AUC_ref) / (1 − mean AUC_ref), "
                        "AUCs averaged over seeds first",
}


def _cw_metrics_table(summary: dict[str, Any]) -> str:
    """The same run in Continual World's convention (`continual_world_metrics`)."""
    cw = summary["continual_world"]
    seeds = summary.get("seeds", [])
    head = "".join(f"<th class=num>seed {html.escape(str(s))}</th>" for s in seeds)
    rows = []
    for name, definition in CW_METRIC_INFO.items():
        if name not in cw["aggregate"]:
            continue
        agg = cw["aggregate"][name]
        values = cw["per_seed"].get(name) or [None] * len(seeds)
        cells = "".join(f"<td class=num>{fmt(v)}</td>" for v in values)
        title = METRIC_INFO[name][0]
        rows.append(
            f"<tr><td><b>{html.escape(title)}</b><div class=def>"
            f"{html.escape(definition.format(w=cw['final_evals']))}</div></td>"
            f"<td class=num><b>{fmt(agg['mean'])}</b></td>"
            f"<td class=num>[{fmt(agg['ci_low'])}, {fmt(agg['ci_high'])}]</td>{cells}</tr>")
    confidence = round(100 * cw["confidence"])
    return (f"<div class=scroll><table class=metrics><tr><th>metric (Continual World)</th>"
            f"<th class=num>mean</th><th class=num>{confidence}% CI</th>{head}</tr>"
            f"{''.join(rows)}</table></div><p class=note>Continual World's convention "
            f"(Wołczyk et al., 2021): means across seeds with {confidence}% bootstrap CIs, the "
            "numbers to set beside its tables.</p>")


def _versions_table(info: dict[str, Any]) -> str:
    versions = {"everlearn": info.get("everlearn_version", "?"), **info.get("versions", {})}
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in versions.items())
    return f"<table class=versions>{rows}</table>"


def _normalisation_table(task_names: list[str], info: dict[str, Any]) -> str:
    """Which scores normalise each task's returns, and where they came from."""
    norm = info.get("normalisation")
    if not norm:
        return ""
    e = html.escape
    rows = []
    for i, name in enumerate(task_names):
        source = norm.get("source", [{}] * len(task_names))[i]
        cells = [f"<td>{e(name)}</td>"]
        for key, label in (("random", "random_score"), ("reference", "reference_score")):
            value = norm[key][i]
            cells.append(f"<td class=num>{fmt(value)}</td>"
                         f"<td>{e(str(source.get(label, 'given')))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ("<h2>Normalisation</h2><p class=note>performance = (return − random) / "
            "(reference − random), per task:</p><div class=scroll><table class=metrics><tr>"
            "<th>task</th><th class=num>random</th><th>from</th><th class=num>reference</th>"
            f"<th>from</th></tr>{''.join(rows)}</table></div>")


def format_date(created: str | None) -> str:
    """An ISO timestamp as `2025-01-02 03:04 UTC`; what is not one is shown as it is."""
    if not created:
        return "date unknown"
    try:
        return datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return created


def figure_html(uri: str, width_px: int, alt: str, caption: str) -> str:
    """An embedded figure with its caption (`caption` is HTML: escape it first)."""
    return (f'<figure><img src="{uri}" style="width: {width_px}px" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #222; max-width: 960px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.sub { color: #555; margin: .2em 0; }
.banner { background: #fff4d6; border: 1px solid #e8c96a; padding: .6em 1em; border-radius: 4px;
          margin: 1em 0; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { padding: .35em .7em; border-bottom: 1px solid #e4e4e4; text-align: left;
         vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.def { color: #666; font-size: .85em; max-width: 30em; }
.note { color: #666; font-size: .85em; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: .9em; margin-top: .3em; max-width: 900px; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .8em 1em; overflow-x: auto;
      font-size: 13px; line-height: 1.4; }
.versions td { font-family: ui-monospace, monospace; font-size: 13px; padding: .15em .7em; }
"""


def html_page(title: str, parts: list[str], css: str = CSS) -> str:
    """A self-contained page: `parts` are HTML fragments, one after the other."""
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _render(data: RunData, figures: dict[str, tuple[str, int]]) -> str:
    """The page; `figures` maps a figure's name to its data URI and display width."""
    info, summary = data.info, data.summary or {}
    scenario = info.get("scenario", {})
    scenario_name = scenario.get("name") or summary.get("scenario", "?")
    agent = info.get("agent") or summary.get("agent", "?")
    backend = info.get("backend") or summary.get("backend", "?")
    seeds = info.get("seeds") or summary.get("seeds", [])
    e = html.escape
    parts = [
        f"<h1>{e(str(scenario_name))} · {e(str(agent))}</h1>",
        f"<p class=sub>backend <b>{e(str(backend))}</b> · seeds {e(', '.join(map(str, seeds)))}"
        f" · {e(format_date(info.get('created')))}</p>",
    ]
    tasks = ", ".join(f"{i + 1}. {name}" for i, name in enumerate(data.task_names))
    budget = (f" · {data.steps_per_task:,} env steps per task" if data.steps_per_task else "")
    parts.append(f"<p class=sub>tasks: {e(tasks)}{e(budget)}</p>")
    if scenario.get("description"):
        parts.append(f"<p>{e(scenario['description'])}</p>")
    if "wall_time_s" in summary:
        parts.append(f"<p class=sub>wall time {summary['wall_time_s']:,.1f} s</p>")

    parts.append("<h2>Metrics</h2>")
    if data.finished:
        tables = [_metrics_table(summary)
                  + "<p class=note>everlearn's convention. IQM: interquartile mean across "
                  "seeds; 95% CI: stratified bootstrap (rliable). Computed on performances "
                  "clipped to [0, 1].</p>"]
        if "continual_world" in summary:
            cw_first = summary.get("metrics_convention") == "continual-world"
            tables.insert(0 if cw_first else 1, _cw_metrics_table(summary))
        parts.extend(tables)
    else:
        last = data.evals[-1] if data.evals else None
        progress = ""
        if last is not None:
            total = len(data.task_names) * data.steps_per_task if data.steps_per_task else None
            doing = ("before training" if last["eval_index"] == 0
                     else f"while training task {last['task_index'] + 1}")
            progress = (f" Last evaluation at step {last['step']:,}"
                        + (f" of {total:,}" if total else "") + f", {doing}.")
        parts.append(f"<div class=banner><b>Run not finished</b>: no summary.json yet, so no "
                     f"aggregate metrics; the figures use metrics.jsonl alone.{e(progress)}</div>")

    parts.append(_normalisation_table(data.task_names, info))
    parts.append("<h2>Per-task performance over time</h2>")
    if "performance" in figures:
        parts.append(figure_html(
            *figures["performance"], "per-task performance over time",
            "Normalised performance of each task (unclipped) against env steps per seed. Lines: "
            "mean over seeds; shaded bands: min–max over seeds. Dashed verticals mark task "
            "boundaries; grey bands and the labels above the plot show which task is being "
            "trained. Dotted lines, where present: the single-task from-scratch reference "
            "(mean over seeds) in that task's interval."))
    else:
        parts.append("<p>No evaluations logged yet.</p>")

    parts.append("<h2>Performance matrix</h2>")
    if "matrix" in figures:
        caption = ("R[k, i]: normalised performance (clipped to [0, 1]) on task i right after "
                   "training task k, mean over seeds. Below the diagonal: retention of earlier "
                   "tasks; above it: zero-shot performance on tasks not yet trained.")
        if not data.finished:
            caption += " Grey rows: tasks not finished yet."
        parts.append(figure_html(*figures["matrix"], "performance matrix", e(caption)))
    else:
        parts.append("<p>No task has finished training yet.</p>")

    if "learning_speed" in figures:
        parts.append("<h2>Learning speed per task</h2>")
        parts.append(figure_html(
            *figures["learning_speed"], "learning speed per task",
            "Area under each task's own learning curve (mean normalised performance, clipped "
            "to [0, 1], over the task's training interval), in training order; band: min–max "
            "over seeds. A falling line is an agent that learns new tasks ever more slowly."))

    if "diagnostics" in figures:
        parts.append("<h2>Plasticity diagnostics</h2>")
        parts.append(figure_html(
            *figures["diagnostics"], "plasticity diagnostics over time",
            "Measured at every evaluation on the agent's latest 256 training rows, per network: "
            "share of τ-dormant hidden neurons, effective rank (srank, δ = 0.01) of the last "
            "hidden layer, mean absolute weight; and the agent's loss-gradient norm and policy "
            "entropy there. Lines: mean over seeds; bands: min–max; dashed: task boundaries."))

    parts.append("<h2>Config</h2>")
    if info.get("command"):
        parts.append(f"<p class=sub>command: <code>{e(str(info['command']))}</code></p>")
    parts.append(f"<pre>{e(data.config_text)}</pre>" if data.config_text is not None
                 else "<p>(no config.yaml in the run directory)</p>")
    parts.append("<h2>Versions</h2>")
    parts.append(_versions_table(info))

    return html_page(f"everlearn report: {scenario_name} / {agent}", parts)


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
