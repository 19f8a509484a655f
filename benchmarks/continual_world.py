"""Continual World (CW10) with SAC and `--preset continual-world`, next to the published numbers.

One `everlearn run --scenario cw10 --agent sac --preset continual-world --reference` per method,
all seeds in it, at the budget `--steps-per-task` (CW's is 1M). Each run's `--reference` trains
SAC alone on every task with the same budget (CW's reference runs for forward transfer; computed
once, then cached), so the results file first shows what the budget allows: single-task SAC's
final success on each of the ten tasks. Then each method's average performance, forgetting and
forward transfer in Continual World's convention (means over seeds with 90% bootstrap CIs;
docs/continual_world.md), beside the published CW20 numbers (the authors' results file).

Resumable: run directories live under `--runs-dir`; the same command again keeps finished runs
and resumes an interrupted one from its last checkpoint (`everlearn resume`).

Run: `.venv/bin/python benchmarks/continual_world.py --steps-per-task 5000 --seeds 0-2`.
The published budget is one command (hundreds of CPU-hours; see the results file):
`.venv/bin/python benchmarks/continual_world.py --steps-per-task 1000000 --seeds 0-4`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from everlearn.core.errors import RunStopped
from everlearn.evaluation.metrics import final_window
from everlearn.runs.config import build_config
from everlearn.scenarios import get_scenario
from machine import results_header
from resumable import log, run_or_resume

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "continual_world.md"
# CW20, from the authors' results file (awarelab/continual_world,
# examples/results/report_2021_12_15__20_06_56/results.csv): mean [90% CI].
PUBLISHED_CW20 = {
    "packnet": ((0.80, 0.79, 0.82), (-0.00, -0.01, 0.01), (0.18, 0.14, 0.21)),
    "ewc": ((0.60, 0.57, 0.64), (0.02, -0.00, 0.05), (-0.18, -0.25, -0.13)),
    "mas": ((0.51, 0.49, 0.53), (0.00, -0.01, 0.02), (-0.52, -0.58, -0.47)),
    "l2": ((0.43, 0.39, 0.47), (0.02, 0.00, 0.03), (-0.73, -0.84, -0.62)),
    "replay": ((0.12, 0.09, 0.15), (0.07, 0.05, 0.10), (-1.34, -1.43, -1.26)),
    "agem": ((0.07, 0.06, 0.08), (0.71, 0.70, 0.73), (0.15, 0.12, 0.18)),
    "fine-tuning": ((0.05, 0.05, 0.06), (0.73, 0.72, 0.75), (0.20, 0.17, 0.23)),
}
METRICS = ("average_performance", "forgetting", "forward_transfer")
# label: the run's --method list. L2, EWC and MAS are CW's own (`cw_regularisation.py`: CW's
# coefficients, actor's shared layers, anchored at the last task end).
METHOD_SETS = {"fine-tuning": [], "l2": ["cw_l2"], "ewc": ["cw_ewc"], "mas": ["cw_mas"],
               "packnet": ["packnet"], "agem": ["agem"], "replay": ["replay"]}


def run_label(label: str, methods: list[str], args) -> dict:
    def make_config():
        return build_config(
            None, {"scenario": args.scenario, "agent": "sac", "seeds": args.seeds,
                   "reference": True, "methods": methods},
            [f"steps_per_task={args.steps_per_task}", *args.set], preset="continual-world")

    return run_or_resume(args.runs_dir / label, make_config, quiet=args.quiet)


def single_task_success(summary: dict) -> tuple[np.ndarray, int]:
    """Final success of SAC trained alone on each task, per reference seed [seeds, tasks]: the
    mean of the last evaluations (their count is returned too), as CW takes final
    performance."""
    curves = np.asarray(summary["reference"]["curves"])  # [seeds, tasks, E + 1]
    window = final_window(curves.shape[-1] - 1)
    return curves[:, :, -window:].mean(axis=-1), window


def interval(stats: dict) -> str:
    return f"{stats['mean']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def published(label: str, metric: int) -> str:
    if label not in PUBLISHED_CW20:
        return ""
    mean, low, high = PUBLISHED_CW20[label][metric]
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def markdown(rows: dict[str, dict], args, wall_s: float) -> str:
    first = next(iter(rows.values()))
    tasks = first["tasks"]
    success, window = single_task_success(first)
    title = f"Continual World ({first['scenario']}) with SAC, Continual World's protocol"
    lines = [
        *results_header(title, wall_s),
        f"- Scenario `{args.scenario}`, `--preset continual-world`, steps per task "
        f"{args.steps_per_task:,} (CW: 1,000,000), seeds {args.seeds}; overrides: "
        f"{', '.join(args.set) or 'none'}; methods at everlearn's default strengths.",
        "",
        "## What the budget allows: single-task SAC",
        "",
        "SAC trained on each task alone with the same budget and protocol (the runs' forward-"
        f"transfer references), final success (mean of the last {window} evaluations), mean over "
        f"{success.shape[0]} seeds [min, max]:",
        "",
        "| task | success |",
        "|---|---|",
        *[f"| {t} | {success[:, i].mean():.2f} [{success[:, i].min():.2f}, "
          f"{success[:, i].max():.2f}] |" for i, t in enumerate(tasks)],
        f"| mean | {success.mean():.2f} |",
        "",
        "## Methods",
        "",
        "Continual World's convention: mean over seeds [90% bootstrap CI]; performance is "
        "success at the end, forgetting averages all tasks, forward transfer normalises "
        "seed-averaged AUCs. Published: CW20 (the authors' results file, 1M steps per task).",
        "",
        "| method | performance | published | forgetting | published | forward transfer | "
        "published | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, summary in rows.items():
        cw = summary["continual_world"]["aggregate"]
        cells = []
        for k, metric in enumerate(METRICS):
            cells += [interval(cw[metric]) if metric in cw else "", published(label, k)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {summary['wall_time_s']:.0f} |")
    lines += ["", "Wall time includes the reference runs where they were computed (the first "
              "run; the others read them from the cache).", ""]
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="cw10")
    p.add_argument("--methods", nargs="+", default=["fine-tuning", "l2", "ewc", "packnet"],
                   choices=list(METHOD_SETS))
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--steps-per-task", type=int, default=5000)
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "continual_world")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    name = get_scenario(args.scenario).name  # an unknown scenario fails here, before any run
    args.runs_dir = args.runs_dir / f"{name}-{args.steps_per_task}-seeds{args.seeds}"
    t0 = time.perf_counter()
    rows = {}
    for label in args.methods:
        try:
            summary = run_label(label, METHOD_SETS[label], args)
        except RunStopped as e:  # Ctrl-C, or a failure the run names: the same command resumes
            log(f"{label}: {e}")
            log("the same command resumes it and runs the rest")
            return e.exit_code
        rows[label] = summary
        cw = summary["continual_world"]["aggregate"]
        log(f"{label}: " + "  ".join(f"{m} {interval(cw[m])}" for m in METRICS if m in cw))
    text = markdown(rows, args, time.perf_counter() - t0)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
