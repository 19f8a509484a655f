"""The figures of reports, drawn with matplotlib and embedded as PNGs.

Figure objects are rendered straight to PNG (Agg): no pyplot, so no global state and no
matplotlib.use(), which would switch the backend of a notebook that imports this module.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from everlearn.core.files import atomic_write
from everlearn.report.run_data import RunData, task_boundaries

# Figures are saved at 150 dpi but shown at 100 px per inch (the 9 in wide curves at 900 px),
# so they stay sharp on high-density screens and their text keeps its point size.
FIGURE_DPI = 150
DISPLAY_PX_PER_INCH = 100


def category_colours(n: int) -> list[Any]:
    """n distinct colours, one per task (or per method), in a fixed order."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def performance_figure(data: RunData) -> Figure:
    """Per-task normalised performance over env steps, mean over seeds with a min-max band."""
    steps = np.array([e["step"] for e in data.evals], dtype=np.float64)
    curves = np.array([e["normalised"] for e in data.evals], dtype=np.float64)  # [eval, seed, task]
    n = len(data.task_names)
    colours = category_colours(n)
    boundaries = task_boundaries(data)

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
        for boundary in task_boundaries(data)[:-1]:
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


def performance_profile_figure(profiles: dict[str, np.ndarray],
                               intervals: dict[str, np.ndarray], taus: np.ndarray,
                               score_name: str) -> Figure:
    """rliable's performance profile: for each method, the fraction of its seeds whose score is
    above τ, with a 95% stratified-bootstrap band. `intervals[method]` is [2, len(taus)]."""
    from rliable import (
        plot_utils,  # imports pyplot (never switches a backend): only when used
    )

    colours = dict(zip(profiles, category_colours(len(profiles))))
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    # No `linewidth`: rliable pops it from its kwargs for the first method only.
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=intervals, ax=ax, colors=colours,
        xlabel=f"{score_name} τ", ylabel=f"fraction of seeds with {score_name} > τ",
        labelsize=10, ticklabelsize=9, wrect=5, hrect=5)
    ax.set_xlim(taus[0], taus[-1])
    fig.legend(loc="outside lower center", ncol=min(len(profiles), 4), frameon=False,
               fontsize=8.5)
    return fig


def write_figures(figures: dict[str, Figure], figure_dir: Path) -> dict[str, tuple[str, int]]:
    """Save each figure as `figure_dir/NAME.png`; returns {name: (PNG data URI, display width
    in px)} for embedding them in a self-contained page."""
    figure_dir.mkdir(exist_ok=True)
    embedded: dict[str, tuple[str, int]] = {}
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
        png = buffer.getvalue()
        atomic_write(figure_dir / f"{name}.png", png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        embedded[name] = (uri, round(fig.get_figwidth() * DISPLAY_PX_PER_INCH))
    return embedded


def fmt(value: Any) -> str:
    """A number for a table: three decimals, or a dash where there is none."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.3f}"


