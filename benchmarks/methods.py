"""Continual-learning methods compared with PPO, one run per method: the loop that produced
`results/minatar.md` (its header has the command). The classic-control table,
`results/methods.md`, is now the sweep `sweeps/methods.yaml` and its comparison (`everlearn
sweep`, `everlearn compare`); the MinAtar table moves to a sweep file when it is rerun.

For every scenario, in this order: fine-tuning (no method), each method that applies to PPO with
its default settings, then the combination of the two single methods with the highest average
performance (skipping pairs that cannot compose), and any `--pairs`. Each is one
`everlearn run` with `--seeds 0-9` (the seeds run as one vmapped program) and `--reference`
(forward transfer; the single-task references are computed once per scenario and cached). The
table gives the interquartile mean over seeds with a
95% stratified-bootstrap confidence interval (rliable) of average performance, forgetting and
forward transfer, and the wall time of each run.

Run: `.venv/bin/python benchmarks/methods.py` (about an hour on 2 cores; `--quick` for a smoke
version). Writes benchmarks/results/methods.md; run directories go to --runs-dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from everlearn.methods import METHODS
from everlearn.runs.checks import agents_for
from everlearn.runs.config import build_config
from machine import COMMIT_AT_START, invocation, results_header
from resumable import log, run_or_resume

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "methods.md"
METRICS = ["average_performance", "forgetting", "forward_transfer"]
# Rows without a commit ran in the first full table (2026-11-25), before rows named theirs.
FIRST_TABLE = "2026-11-25 table"


def run_one(scenario: str, label: str, methods: list[str], args, runs_dir: Path) -> dict:
    """One run, or the finished or interrupted one already in `runs_dir` (`resumable`)."""

    def make_config():
        return build_config(None, {"scenario": scenario, "agent": "ppo", "seeds": args.seeds,
                                   "reference": True, "methods": methods}, args.set)

    out = runs_dir / f"{scenario}-{label.replace('+', '-')}"
    summary = run_or_resume(out, make_config)
    row = {"scenario": scenario, "label": label, "methods": methods, "run_dir": str(out),
           "commit": COMMIT_AT_START, "wall_time_s": summary["wall_time_s"],
           **{m: summary["aggregate"][m] for m in METRICS}}
    log(f"{scenario:18s} {label:22s} " + "  ".join(
        f"{m} {row[m]['iqm']:.3f} [{row[m]['ci_low']:.3f}, {row[m]['ci_high']:.3f}]"
        for m in METRICS) + f"  {row['wall_time_s']:.0f} s")
    return row


def strongest_pair(rows: list[dict]) -> list[str] | None:
    """The two single methods with the highest average performance that can be used together.
    (Ranking by forgetting alone rewards methods that stop learning: a pair that keeps the
    first task and learns nothing after it forgets nothing.)"""
    singles = sorted((r for r in rows if len(r["methods"]) == 1),
                     key=lambda r: -r["average_performance"]["iqm"])
    for i, first in enumerate(singles):
        for second in singles[i + 1:]:
            pair = [first["methods"][0], second["methods"][0]]
            networks = [METHODS[m].network for m in pair if METHODS[m].network]
            if len(networks) <= 1:  # task_id_input and multi_head both reshape the networks
                return pair
    return None


def cell(stats: dict) -> str:
    return f"{stats['iqm']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def markdown(rows: list[dict], args, wall_s: float) -> str:
    if args.append and args.out.is_file():  # keep the first invocation's header, say what ran
        previous = args.out.read_text().splitlines()
        head = previous[:next(i for i, line in enumerate(previous) if line.startswith("- Seeds"))]
        head.append(f"- Rows added by: {invocation(wall_s)} at commit {COMMIT_AT_START}")
    else:
        head = results_header("Continual-learning methods with PPO (everlearn)", wall_s)
    lines = [
        *head,
        f"- Seeds {args.seeds}, each run with `--reference`; overrides: "
        f"{', '.join(args.set) or 'none'}; methods at their default settings "
        "(`everlearn list`, docs/methods.md).",
        "",
        "Interquartile mean over seeds [95% stratified-bootstrap CI]. Average performance and "
        "forgetting are normalised (0 = random policy, 1 = reference score); forward transfer is "
        "against single-task PPO runs with the same budget. Higher is better except for "
        "forgetting. **bold**: forgetting CI entirely below fine-tuning's.", "",
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        group = [r for r in rows if r["scenario"] == scenario]
        base = next(r for r in group if not r["methods"])
        lines += [f"## {scenario}", "",
                  "| method | average performance | forgetting | forward transfer | wall s | "
                  "ran at |",
                  "|---|---|---|---|---|---|"]
        for r in group:
            better = r["methods"] and r["forgetting"]["ci_high"] < base["forgetting"]["ci_low"]
            forgetting = f"**{cell(r['forgetting'])}**" if better else cell(r["forgetting"])
            lines.append(f"| {r['label']} | {cell(r['average_performance'])} | {forgetting} | "
                         f"{cell(r['forward_transfer'])} | {r['wall_time_s']:.0f} | "
                         f"{r.get('commit') or FIRST_TABLE} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=["cartpole-contexts", "acrobot-contexts"])
    p.add_argument("--methods", nargs="*", help="single methods to compare (default: every "
                   "method that applies to PPO; none: fine-tuning and --pairs only)")
    p.add_argument("--pairs", nargs="+", default=[], metavar="A+B",
                   help="extra combinations to run, e.g. multi_head+bc_replay")
    p.add_argument("--no-singles", action="store_true",
                   help="skip fine-tuning, the single methods and the automatic pair (with "
                   "--append and --pairs)")
    p.add_argument("--append", type=Path,
                   help="a methods.json from an earlier invocation: keep its rows and add these")
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 3 seeds, 8k steps per task")
    p.add_argument("--runs-dir", type=Path, help="where run directories go (default: a "
                   "temporary folder); the same command with the same --runs-dir keeps "
                   "finished runs and resumes interrupted ones")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = "0-2"
        args.set += ["steps_per_task=8192", "evals_per_task=4", "eval_episodes=4"]
    methods = (args.methods if args.methods is not None
               else [n for n, e in METHODS.items() if "ppo" in agents_for(e)])
    unknown = [m for m in methods if m not in METHODS or "ppo" not in agents_for(METHODS[m])]
    if unknown:
        p.error(f"not a PPO method: {', '.join(unknown)}; choose from "
                f"{', '.join(n for n, e in METHODS.items() if 'ppo' in agents_for(e))}")
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="everlearn-methods-"))
    log(f"run directories under {runs_dir}")

    t0 = time.perf_counter()
    rows: list[dict] = json.loads(args.append.read_text()) if args.append else []
    for scenario in args.scenarios:
        # A rerun replaces the appended rows of the same scenario and label.
        labels = ((["fine-tuning", *methods] if not args.no_singles else []) + args.pairs)
        rows = [r for r in rows if not (r["scenario"] == scenario and r["label"] in labels)]
        if not args.no_singles:
            rows.append(run_one(scenario, "fine-tuning", [], args, runs_dir))
            for name in methods:
                rows.append(run_one(scenario, name, [name], args, runs_dir))
            pair = strongest_pair([r for r in rows if r["scenario"] == scenario])
            if pair and set(pair) in [set(extra.split("+")) for extra in args.pairs]:
                pair = None  # asked for in --pairs already (the order of a pair is immaterial)
            if pair:
                label = "+".join(pair)
                rows = [r for r in rows if not (r["scenario"] == scenario
                                                and r["label"] == label)]
                rows.append(run_one(scenario, label, pair, args, runs_dir))
        for extra in args.pairs:
            rows.append(run_one(scenario, extra, extra.split("+"), args, runs_dir))
    text = markdown(rows, args, time.perf_counter() - t0)
    print("\n" + text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
