"""Loss of plasticity: plain PPO against each intervention on `cartpole-plasticity`.

`cartpole-plasticity` is 24 short CartPole tasks, each with a fresh random observation
permutation, signs, scales and action mapping, so nothing transfers and each task must be
learned anew. For every variant (plain PPO; each plasticity method; the layer-norm and elephant
network options) one `everlearn run --seeds 0-9` (seeds vmapped). PPO uses ReLU units here, the
setting where dormant neurons appear (ReDo and continual backprop act on them).

Per seed: learning speed of a task = the area under its own learning curve (summary.json's
`task_auc`); early = mean over the first 6 tasks, late = mean over the last 6, and their
difference; final dormant ratio (τ = 0.025) and effective rank of the actor's last hidden
layer (the last evaluation's diagnostics). Each as the interquartile mean over seeds with a 95%
stratified-bootstrap CI (rliable). Figure: learning speed per task for each variant.

Run: `.venv/bin/python benchmarks/plasticity.py` (`--quick` for a smoke version). Writes
benchmarks/results/plasticity.md, plasticity.json and plasticity.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import results_header
from methods import cell, log

from everlearn.evaluation.metrics import interquartile_mean_ci
from everlearn.runs.config import build_config
from everlearn.runs.run import start_run

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "plasticity.md"
SCENARIO = "cartpole-plasticity"
EDGE = 6  # tasks at each end of the sequence compared

# name -> (methods, extra --set overrides)
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    "plain": ([], []),
    "redo": (["redo"], []),
    "shrink_perturb": (["shrink_perturb"], []),
    "continual_backprop": (["continual_backprop"], []),
    "upgd": (["upgd"], []),
    "l2_init": (["l2_init"], []),
    "layer_norm": ([], ["ppo.layer_norm=true"]),
    "elephant": ([], ["ppo.activation=elephant"]),
}


def run_variant(label: str, args, runs_dir: Path) -> dict:
    methods, sets = VARIANTS[label]
    config = build_config(None, {"scenario": SCENARIO, "agent": "ppo", "seeds": args.seeds,
                                 "methods": methods},
                          ["ppo.activation=relu", *args.set, *sets])
    out = runs_dir / label.replace(" ", "-")
    start_run(config, out, quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    auc = np.asarray(summary["task_auc"])  # [seed, task]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["diagnostics"]
    per_seed = {
        "early": auc[:, :EDGE].mean(axis=1),
        "late": auc[:, -EDGE:].mean(axis=1),
        "late_minus_early": auc[:, -EDGE:].mean(axis=1) - auc[:, :EDGE].mean(axis=1),
        "dormant": np.asarray(last["dormant_0.025/actor"], dtype=float),
        "srank": np.asarray(last["srank/actor"], dtype=float),
    }
    row = {"label": label, "methods": methods, "sets": sets, "run_dir": str(out),
           "wall_time_s": summary["wall_time_s"], "task_auc_mean": auc.mean(axis=0).tolist(),
           **{k: interquartile_mean_ci(v) for k, v in per_seed.items()}}
    log(f"{label:20s} early {cell(row['early'])}  late {cell(row['late'])}  "
        f"dormant {cell(row['dormant'])}  srank {cell(row['srank'])}  {row['wall_time_s']:.0f} s")
    return row


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    for row in rows:
        auc = np.asarray(row["task_auc_mean"])
        ax.plot(np.arange(1, len(auc) + 1), auc, marker="o", markersize=3, linewidth=1.4,
                label=row["label"])
    ax.set_xlabel("task (in training order)")
    ax.set_ylabel("learning-curve AUC (mean over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(axis="y", color="0.88", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(loc="outside right center", frameon=False, fontsize=8.5)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict], args, wall_s: float) -> str:
    lines = [
        *results_header("Loss of plasticity: PPO and interventions on cartpole-plasticity "
                        "(everlearn)", wall_s),
        f"- Seeds {args.seeds}; PPO with ReLU units; overrides: {', '.join(args.set) or 'none'}",
        "",
        f"Learning speed = area under a task's own learning curve; early / late = mean over the "
        f"first / last {EDGE} of 24 tasks. Dormant ratio (τ = 0.025) and effective rank of the "
        "actor's last hidden layer at the end. Interquartile mean over seeds [95% "
        "stratified-bootstrap CI].", "",
        "| variant | early speed | late speed | late − early | dormant | srank | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {cell(r['early'])} | {cell(r['late'])} | "
                     f"{cell(r['late_minus_early'])} | {cell(r['dormant'])} | "
                     f"{cell(r['srank'])} | {r['wall_time_s']:.0f} |")
    lines += ["", "![learning speed per task](plasticity.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   metavar="VARIANT", help=f"default: all of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--quick", action="store_true",
                   help="smoke version: 2 seeds, 2k steps per task")
    p.add_argument("--runs-dir", type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = "0-1"
        args.set += ["steps_per_task=2048", "evals_per_task=2", "eval_episodes=2"]
    else:
        args.set = ["evals_per_task=4", "eval_episodes=3", *args.set]
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="everlearn-plasticity-"))
    log(f"run directories under {runs_dir}")
    t0 = time.perf_counter()
    rows = [run_variant(label, args, runs_dir) for label in args.variants]
    text = markdown(rows, args, time.perf_counter() - t0)
    print("\n" + text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        figure(rows, args.out.with_suffix(".png"))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
