"""The HTML report of a run directory: one self-contained file plus the same figures as PNGs.

Reads what the run loop writes (config.yaml, run.json, metrics.jsonl and, once the run has
finished, summary.json) and never imports the run machinery: a report can be rebuilt from a
copied run directory on a machine without JAX.
"""

from __future__ import annotations

import base64
import html
import io
import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
# Figure objects rendered straight to PNG (Agg): no pyplot, so no global state and no
# matplotlib.use(), which would switch the backend of a notebook that imports this module.
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from everlearn.evaluation.metrics import task_end_evals
from everlearn.files import atomic_write

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

# Figures are saved at 150 dpi but shown at 100 px per inch (the 9 in wide curves at 900 px),
# so they stay sharp on high-density screens and their text keeps its point size.
FIGURE_DPI = 150
DISPLAY_PX_PER_INCH = 100


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


def _read_json(path: Path) -> Any | None:
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
    info = _read_json(run_dir / "run.json") or {}
    summary = _read_json(run_dir / "summary.json")
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


def _task_boundaries(data: RunData) -> list[float]:
    """Env step (per seed) at which each task's training ends."""
    if data.summary is not None and data.summary.get("task_boundaries"):
        return [float(b) for b in data.summary["task_boundaries"]]
    if data.steps_per_task:
        return [float((k + 1) * data.steps_per_task) for k in range(len(data.task_names))]
    return []


def _performance_matrix(data: RunData) -> np.ndarray | None:
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


def _task_colours(n: int) -> list[Any]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def performance_figure(data: RunData) -> Figure:
    """Per-task normalised performance over env steps, mean over seeds with a min-max band."""
    steps = np.array([e["step"] for e in data.evals], dtype=np.float64)
    curves = np.array([e["normalised"] for e in data.evals], dtype=np.float64)  # [eval, seed, task]
    n = len(data.task_names)
    colours = _task_colours(n)
    boundaries = _task_boundaries(data)

    fig = Figure(figsize=(9, 4.6), layout="constrained")
    ax = fig.add_subplot()
    starts = [0.0, *boundaries[:-1]]
    # Shade every other training interval and name it, so the schedule reads at a glance.
    for k, (lo, hi) in enumerate(zip(starts, boundaries)):
        if k % 2 == 0:
            ax.axvspan(lo, hi, color="0.94", zorder=0)
        if k > 0:
            ax.axvline(lo, color="0.45", linestyle="--", linewidth=0.9, zorder=1)
        label = data.task_names[k] if n <= 6 else str(k + 1)
        ax.text((lo + hi) / 2, 1.0, label, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=8.5 if n <= 6 else 8, color="0.3", clip_on=False)
    for i in range(n):
        if curves.size == 0:
            break
        per_seed = curves[:, :, i]
        ax.fill_between(steps, per_seed.min(axis=1), per_seed.max(axis=1), color=colours[i],
                        alpha=0.18, linewidth=0, zorder=2)
        ax.plot(steps, per_seed.mean(axis=1), color=colours[i], linewidth=1.8,
                marker="o" if len(steps) <= 40 else None, markersize=3,
                label=f"{i + 1}. {data.task_names[i]}", zorder=3)

    reference = (data.summary or {}).get("reference")
    if reference and reference.get("curves") and boundaries:
        ref = np.asarray(reference["curves"], dtype=np.float64).mean(axis=0)  # [task, eval]
        for i in range(min(n, ref.shape[0], len(boundaries))):
            xs = np.linspace(starts[i], boundaries[i], ref.shape[1])
            ax.plot(xs, ref[i], color=colours[i], linestyle=":", linewidth=1.6, zorder=3)
        # One grey legend entry for all reference curves, rather than one in task 1's colour.
        ax.plot([], [], color="0.4", linestyle=":", linewidth=1.6, label="single-task reference")

    ax.set_ylim(-0.1, 1.1)
    ax.set_xlim(0, max([*boundaries, *steps.tolist(), 1.0]))
    ax.axhline(0, color="0.75", linewidth=0.6, zorder=1)
    ax.axhline(1, color="0.75", linewidth=0.6, zorder=1)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("normalised performance")
    ax.grid(axis="y", color="0.88", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    # Below the axes so a long task list never covers the curves.
    # As many columns as the longest label allows: ~130 characters fit across 9 in at 8.5 pt.
    longest = max((len(f"{i + 1}. {t}") for i, t in enumerate(data.task_names)), default=10)
    ncol = max(1, min(n + bool(reference), 5, 130 // (longest + 8)))
    fig.legend(loc="outside lower center", ncol=ncol, frameon=False, fontsize=8.5)
    return fig


# Diagnostics panels: (title, which logged names, how several names combine per seed).
_DIAGNOSTIC_PANELS = [
    ("dormant neurons, τ = 0.025", "dormant_0.025/"),
    ("dormant neurons, τ = 0", "dormant_0/"),
    ("effective rank (last hidden layer)", "srank/"),
    ("mean |weight| (over layers)", "weight_magnitude/"),
    ("gradient norm", "gradient_norm"),
    ("policy entropy", "policy_entropy"),
]


def _diagnostic_series(evals: list[dict[str, Any]], prefix: str) -> dict[str, np.ndarray]:
    """{label: values [eval, seed]} for the logged diagnostics starting with `prefix`; weight
    magnitudes are averaged over a network's layers. Missing values (before data) are NaN."""
    names = sorted({n for e in evals for n in e.get("diagnostics", {}) if n.startswith(prefix)})
    groups: dict[str, list[str]] = {}
    for name in names:
        rest = name[len(prefix):]
        label = rest.split("/")[0] if prefix == "weight_magnitude/" else (rest or prefix)
        groups.setdefault(label, []).append(name)

    def value(e: dict, name: str, seeds: int) -> list[float]:
        got = e.get("diagnostics", {}).get(name) or [None] * seeds
        return [np.nan if v is None else v for v in got]

    seeds = len(evals[0]["returns"]) if evals else 0
    return {label: np.mean([[value(e, n, seeds) for e in evals] for n in members], axis=0)
            for label, members in groups.items()}


def diagnostics_figure(data: RunData) -> Figure | None:
    """Plasticity diagnostics over env steps: mean over seeds with a min-max band."""
    evals = [e for e in data.evals if e.get("diagnostics")]
    if not evals:
        return None
    steps = np.array([e["step"] for e in evals], dtype=np.float64)
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True).ravel()
    colours = {"actor": "tab:blue", "critic": "tab:orange", "q": "tab:green"}
    for ax, (title, prefix) in zip(axes, _DIAGNOSTIC_PANELS):
        for label, values in _diagnostic_series(evals, prefix).items():
            colour = colours.get(label, "0.3")
            with warnings.catch_warnings():  # evaluations before any data are all-NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.fill_between(steps, np.nanmin(values, axis=1), np.nanmax(values, axis=1),
                                color=colour, alpha=0.18, linewidth=0)
                ax.plot(steps, np.nanmean(values, axis=1), color=colour, linewidth=1.5,
                        label=label if "/" in prefix else None)
        for boundary in _task_boundaries(data)[:-1]:
            ax.axvline(boundary, color="0.45", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncol=len(labels),
                   frameon=False, fontsize=8.5)
    fig.supxlabel("env steps (per seed)", fontsize=9)
    return fig


def learning_speed_figure(task_auc: np.ndarray) -> Figure:
    """Area under each task's own learning curve against the task's position: a falling line
    is an agent losing the ability to learn. task_auc [seed, task]."""
    tasks = np.arange(1, task_auc.shape[1] + 1)
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(tasks, task_auc.min(axis=0), task_auc.max(axis=0), color="tab:purple",
                    alpha=0.18, linewidth=0)
    ax.plot(tasks, task_auc.mean(axis=0), color="tab:purple", marker="o", markersize=3,
            linewidth=1.6, label="mean over seeds")
    if len(tasks) >= 3:
        slope, intercept = np.polyfit(tasks, task_auc.mean(axis=0), 1)
        ax.plot(tasks, intercept + slope * tasks, color="0.4", linestyle="--", linewidth=1,
                label=f"linear fit, slope {slope:+.4f} per task")
    ax.set_xlabel("task (in training order)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("learning-curve AUC")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(axis="y", color="0.88", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8.5, loc="lower left")
    return fig


def matrix_figure(matrix: np.ndarray, task_names: list[str]) -> Figure:
    """Heatmap of the performance matrix R[k, i] averaged over seeds."""
    mean = matrix.mean(axis=0)  # rows not yet reached are NaN for every seed and stay NaN
    n = len(task_names)
    side = min(max(4.0, 1.0 + 0.8 * n), 6.4)  # with the labels and colour bar: at most 9 in
    fig = Figure(figsize=(side + 2.6, side), layout="constrained")
    ax = fig.add_subplot()
    # Rows of tasks not finished yet are NaN: a neutral grey rather than white gaps.
    cmap = colormaps["viridis"].with_extremes(bad="0.9")
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, vmin=0, vmax=1)
    ticks = range(n)
    short = [name if len(name) <= 18 else name[:17] + "…" for name in task_names]
    # Column labels collide once names are longer than a cell is wide: slant them.
    slant = n > 2 and max(map(len, short)) > 6
    ax.set_xticks(ticks, [f"{i + 1}. {s}" for i, s in enumerate(short)],
                  rotation=30 if slant else 0, ha="right" if slant else "center",
                  rotation_mode="anchor")
    ax.set_yticks(ticks, [f"after {k + 1}. {s}" for k, s in enumerate(short)])
    ax.set_xlabel("performance on task i")
    ax.set_ylabel("after training task k")
    ax.tick_params(length=0)
    if n <= 12:  # beyond that, numbers no longer fit in the cells
        size = 10 if n <= 6 else 8
        for k in range(n):
            for i in range(n):
                v = mean[k, i]
                if np.isfinite(v):
                    # Viridis is dark at the bottom: white text there, black on the yellow end.
                    ax.text(i, k, f"{v:.2f}", ha="center", va="center", fontsize=size,
                            color="white" if v < 0.55 else "black")
    fig.colorbar(image, ax=ax, shrink=0.85, label="normalised performance (clipped to [0, 1])")
    return fig


def _png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.3f}"


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
        cells = "".join(f"<td class=num>{_fmt(v)}</td>" for v in values)
        rows.append(
            f"<tr><td><b>{html.escape(title)}</b><div class=def>{html.escape(definition)}</div>"
            f"</td><td class=num><b>{_fmt(agg.get('iqm'))}</b></td>"
            f"<td class=num>[{_fmt(agg.get('ci_low'))}, {_fmt(agg.get('ci_high'))}]</td>"
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
        cells = "".join(f"<td class=num>{_fmt(v)}</td>" for v in values)
        title = METRIC_INFO[name][0]
        rows.append(
            f"<tr><td><b>{html.escape(title)}</b><div class=def>"
            f"{html.escape(definition.format(w=cw['final_evals']))}</div></td>"
            f"<td class=num><b>{_fmt(agg['mean'])}</b></td>"
            f"<td class=num>[{_fmt(agg['ci_low'])}, {_fmt(agg['ci_high'])}]</td>{cells}</tr>")
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
            cells.append(f"<td class=num>{_fmt(value)}</td>"
                         f"<td>{e(str(source.get(label, 'given')))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ("<h2>Normalisation</h2><p class=note>performance = (return − random) / "
            "(reference − random), per task:</p><div class=scroll><table class=metrics><tr>"
            "<th>task</th><th class=num>random</th><th>from</th><th class=num>reference</th>"
            f"<th>from</th></tr>{''.join(rows)}</table></div>")


def _date(created: str | None) -> str:
    if not created:
        return "date unknown"
    try:
        return datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return created


def _figure_html(uri: str, width_px: int, alt: str, caption: str) -> str:
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
        f" · {e(_date(info.get('created')))}</p>",
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
        parts.append(_figure_html(
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
        parts.append(_figure_html(*figures["matrix"], "performance matrix", e(caption)))
    else:
        parts.append("<p>No task has finished training yet.</p>")

    if "learning_speed" in figures:
        parts.append("<h2>Learning speed per task</h2>")
        parts.append(_figure_html(
            *figures["learning_speed"], "learning speed per task",
            "Area under each task's own learning curve (mean normalised performance, clipped "
            "to [0, 1], over the task's training interval), in training order; band: min–max "
            "over seeds. A falling line is an agent that learns new tasks ever more slowly."))

    if "diagnostics" in figures:
        parts.append("<h2>Plasticity diagnostics</h2>")
        parts.append(_figure_html(
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

    title = f"everlearn report: {scenario_name} / {agent}"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{e(str(title))}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


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
    matrix = _performance_matrix(data)
    if matrix is not None:
        figures["matrix"] = matrix_figure(matrix, data.task_names)

    figure_dir = run_dir / "figures"
    figure_dir.mkdir(exist_ok=True)
    embedded: dict[str, tuple[str, int]] = {}
    for name, fig in figures.items():
        png = _png_bytes(fig)
        atomic_write(figure_dir / f"{name}.png", png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        embedded[name] = (uri, round(fig.get_figwidth() * DISPLAY_PX_PER_INCH))

    path = run_dir / "report.html"
    atomic_write(path, _render(data, embedded).encode("utf-8"))
    return path
