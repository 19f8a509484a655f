"""Offline-to-online recipes (issue 14 part 5b), on the standard Pendulum or Hopper: normalised
return of the online task against online env steps, per recipe, as an interquartile mean over
seeds with a 95% stratified-bootstrap CI (rliable, as `everlearn compare`), read from the run
directories. The table's points are fractions of the online budget (0, 5%, 10%, 20%, 30%, 50%,
75%, 100%) and the dip is each seed's lowest evaluation in its first half.

    python benchmarks/offline.py --online /work/bench-runs/o2o_online \
        --pretrained /work/bench-runs/o2o_pretrained --rae /work/bench-runs/o2o_rae \
        --jsrl /work/bench-runs/o2o_jsrl --out benchmarks/results/offline_to_online

`--online`: a sweep of `benchmarks/sweeps/offline_to_online_online.yaml` (TD3 from scratch and
RLPD-style on `pendulum-stationary`; `offline_to_online_hopper_online.yaml` on Hopper);
`--pretrained`: a sweep of `benchmarks/sweeps/offline_to_online_pretrained.yaml` (TD3+BC
fine-tuning and WSRL on `pendulum-offline-to-online`; `offline_to_online_hopper_pretrained.yaml`
on Hopper); `--rae`: a run directory of RaE (`everlearn run ... --method
offline_mix --set offline_mix.run=...`); `--jsrl`: a run directory of JSRL on TD3+BC (`everlearn
run --scenario pendulum-offline-to-online --agent td3_bc --method jsrl ...`); `--run
LABEL=RUN_DIR` (repeatable): any other recipe's run directory, under that label. Writes OUT.md
and OUT.json; `--header FILE` puts a file's text (the commands, commit, machine) at the top of
OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from everlearn.evaluation.metrics import interquartile_mean_ci

# the table's online steps, as fractions of the online budget (10,000 on Pendulum: 0, 500, ...)
POINT_FRACTIONS = (0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1)


def online_curve(run: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(online steps [E], normalised return of the online task [seeds, E], summary) of a run.
    The pre-trained scenario's online task is its last; its online steps count from the end of
    the offline task (the evaluation there is online step 0)."""
    summary = json.loads((run / "summary.json").read_text())
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("kind") == "eval"]
    online_task = len(summary["tasks"]) - 1
    start = summary["task_boundaries"][online_task - 1] if online_task else 0  # task ends
    steps, values = [], []
    for e in evals:
        if e["step"] < start:
            continue
        steps.append(e["step"] - start)
        values.append(np.asarray(e["normalised"], dtype=np.float64)[:, online_task])
    return np.asarray(steps), np.stack(values, axis=1), summary


def fmt(stats: dict) -> str:
    return f"{stats['iqm']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--online", type=Path, required=True)
    parser.add_argument("--pretrained", type=Path, required=True)
    parser.add_argument("--rae", type=Path)
    parser.add_argument("--jsrl", type=Path)
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=RUN_DIR",
                        help="one more recipe: its row label and run directory (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/offline_to_online"))
    parser.add_argument("--header", type=Path)
    args = parser.parse_args()

    runs: dict[str, Path] = {}
    for label, sweep, suffix in [
        ("TD3 from scratch", args.online, "fine-tuning"),
        ("RLPD-style (TD3, offline_mix 0.5 + layer norm)", args.online, "rlpd"),
        ("TD3+BC fine-tuning (BC term kept online)", args.pretrained, "fine-tuning"),
        ("WSRL-style 5k warm-up (TD3+BC, BC term kept online)", args.pretrained, "wsrl"),
    ]:
        cell = [c for c in sorted((sweep / "cells").iterdir()) if c.name.endswith(suffix)]
        if cell and (cell[0] / "summary.json").exists():
            runs[label] = cell[0]
    if args.rae and (args.rae / "summary.json").exists():
        runs["RaE (TD3, offline_mix 0.5 of the scratch run's seed-0 buffer)"] = args.rae
    if args.jsrl and (args.jsrl / "summary.json").exists():
        runs["JSRL (TD3+BC, the pre-trained policy guides)"] = args.jsrl
    for entry in args.run:
        label, _, run = entry.partition("=")
        if not label or not (Path(run) / "summary.json").exists():
            raise SystemExit(f"--run {entry!r}: give LABEL=RUN_DIR of a finished run")
        runs[label] = Path(run)

    curves_by_label = {label: online_curve(run) for label, run in runs.items()}
    budget = max(int(steps.max()) for steps, _, _ in curves_by_label.values())
    points = [round(budget * f) for f in POINT_FRACTIONS]
    dip_end = budget // 2
    normalisation = {(s["normalisation"]["random"][-1], s["normalisation"]["reference"][-1])
                     for _, _, s in curves_by_label.values()}
    if len(normalisation) != 1:
        raise SystemExit(f"the runs normalise their online task differently: {normalisation}")
    (random_score, reference_score), = normalisation

    table, curves, record = [], [], {}
    for label, run in runs.items():
        steps, values, summary = curves_by_label[label]
        row = {"recipe": label, "run": str(run), "scenario": summary["scenario"],
               "seeds": int(values.shape[0]), "steps": steps.tolist(),
               "per_seed": values.tolist(), "points": {}}
        cells = []
        for point in points:
            idx = np.flatnonzero(steps == point)
            if idx.size:
                stats = interquartile_mean_ci(values[:, idx[0]])
                row["points"][str(point)] = stats
                cells.append(fmt(stats))
            else:
                cells.append("—")
        dip = interquartile_mean_ci(values[:, (steps > 0) & (steps <= dip_end)].min(axis=1))
        mean = interquartile_mean_ci(values[:, steps > 0].mean(axis=1))
        row["min_first_half"], row["mean_online"] = dip, mean
        cells += [fmt(dip), fmt(mean)]
        table.append(f"| {label} | " + " | ".join(cells) + " |")
        curves.append(f"| {label} | " + " | ".join(
            f"{np.mean(values[:, i]):.2f}" for i in range(len(steps))) + " |")
        curve_steps = steps
        record[label] = row

    header = args.header.read_text() if args.header else ""
    lines = [header.rstrip(), "",
             "## Normalised return of the online task against online env steps", "",
             "| recipe | " + " | ".join(f"{p:,}" for p in points)
             + f" | min over (0, {dip_end:,}] (dip) | mean over (0, {budget:,}] |",
             "|:--|" + "--:|" * (len(points) + 2), *table, "",
             "Interquartile mean over seeds [95% stratified-bootstrap CI] (rliable, 2,000 "
             "resamples, as `everlearn compare`). Online step 0: the pre-trained recipes' "
             "evaluation at the end of the offline task; the online-only recipes' untrained "
             f"policy. \"min over (0, {dip_end:,}]\": each seed's lowest evaluation in the first "
             f"{dip_end:,} online steps (the fine-tuning dip). Normalised: (return − random) / "
             f"(reference − random), random {random_score:g}, reference {reference_score:g}; 10 "
             "evaluation episodes per point.", "",
             "### Every evaluation (mean over seeds)", "",
             "| recipe | " + " | ".join(f"{s:,}" for s in curve_steps) + " |",
             "|:--|" + "--:|" * len(curve_steps), *curves, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines).lstrip() + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": platform.platform(), "recipes": record}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
