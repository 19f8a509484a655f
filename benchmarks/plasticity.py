"""Loss of plasticity: plain PPO against each intervention on `cartpole-plasticity`, tabulated
from the sweep `benchmarks/sweeps/plasticity.yaml`.

`cartpole-plasticity` is 24 short CartPole tasks, each with a fresh random observation
permutation, signs, scales and action mapping, so nothing transfers and each task must be
learned anew. The sweep runs each variant (plain PPO; each plasticity method; the layer-norm and
elephant network options) as one cell with seeds 0-9 vmapped. PPO uses ReLU units here, the
setting where dormant neurons appear (ReDo and continual backprop act on them).

Per seed: learning speed of a task = the area under its own learning curve (summary.json's
`task_auc`); early = mean over the first 6 tasks, late = mean over the last 6, and their
difference; final dormant ratio (τ = 0.025) and effective rank of the actor's last hidden
layer (the last evaluation's diagnostics). Each as the interquartile mean over seeds with a 95%
stratified-bootstrap CI (rliable). Figure: learning speed per task for each variant.

Run:
    everlearn sweep benchmarks/sweeps/plasticity.yaml --out benchmarks/runs/plasticity
    .venv/bin/python benchmarks/plasticity.py benchmarks/runs/plasticity
Writes benchmarks/results/plasticity.md, plasticity.json and plasticity.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from everlearn.evaluation.metrics import interquartile_mean_ci
from machine import invocation, results_header
from methods import cell
from resumable import log

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "plasticity.md"
EDGE = 6  # tasks at each end of the sequence compared


def variant_row(label: str, run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    auc = np.asarray(summary["task_auc"])  # [seed, task]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["diagnostics"]
    per_seed = {
        "early": auc[:, :EDGE].mean(axis=1),
        "late": auc[:, -EDGE:].mean(axis=1),
        "late_minus_early": auc[:, -EDGE:].mean(axis=1) - auc[:, :EDGE].mean(axis=1),
        "dormant": np.asarray(last["dormant_0.025/actor"], dtype=float),
        "srank": np.asarray(last["srank/actor"], dtype=float),
    }
    row = {"label": label, "run_dir": str(run_dir), "wall_time_s": summary["wall_time_s"],
           "task_auc_mean": auc.mean(axis=0).tolist(),
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


def markdown(rows: list[dict], sweep_dir: Path, sweep: dict) -> str:
    lines = [
        *results_header("Loss of plasticity: PPO and interventions on cartpole-plasticity "
                        "(everlearn)", None),
        f"- Sweep: `{sweep['command']}` at commit {sweep.get('commit')}; executor: "
        f"{json.loads((sweep_dir / 'status.json').read_text())['executor']}",
        f"- Seeds {sweep['cells'][0]['seeds'][0]}-{sweep['cells'][0]['seeds'][-1]}; PPO with "
        "ReLU units; settings in benchmarks/sweeps/plasticity.yaml",
        "",
        f"Learning speed = area under a task's own learning curve; early / late = mean over the "
        f"first / last {EDGE} of 24 tasks. Dormant ratio (τ = 0.025) and effective rank of the "
        "actor's last hidden layer at the end. Interquartile mean over seeds [95% "
        "stratified-bootstrap CI]. wall s: the cell's own run time (two cells ran side by side).",
        "",
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
    p.add_argument("sweep_dir", type=Path, help="the sweep directory of "
                   "benchmarks/sweeps/plasticity.yaml (everlearn sweep --out)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    sweep = json.loads((args.sweep_dir / "sweep.json").read_text())
    status = json.loads((args.sweep_dir / "status.json").read_text())["cells"]
    unfinished = [c["name"] for c in sweep["cells"] if status[c["name"]]["status"] != "done"]
    if unfinished:
        p.error(f"cells not finished: {', '.join(unfinished)}; run the sweep command again")
    rows = [variant_row(c["label"], args.sweep_dir / "cells" / c["name"])
            for c in sweep["cells"]]
    text = markdown(rows, args.sweep_dir, sweep)
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
