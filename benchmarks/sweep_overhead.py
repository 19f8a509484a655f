"""Throughput of the sweep machinery (issue 13 part 7): a local sweep of 8 small cells against
the same 8 runs one after another, and the Ray executor's overhead per cell.

Cells: PPO on cartpole-contexts, fine-tuning and seven methods, seeds 0-3, 4,096 steps per
task (each run about 15-25 s here, compilation included: the regime where a sweep's process
start and compilation matter most).

- one after another: `everlearn run` per cell, each its own process with every core (what a
  loop of commands does);
- `everlearn sweep` (local pool, default: one worker per core, one XLA CPU device each), and
  with `--workers 1`;
- `everlearn sweep --executor ray` on a one-node Ray cluster started here with as many CPUs as
  cores, in its own network namespace (loopback only; needs `unshare -n`, i.e. root): per cell,
  submit-to-start (task scheduling, worker start, import) and end-to-receive (the run
  directory's tar through Ray), from status.json's times.

Run: `.venv/bin/python benchmarks/sweep_overhead.py` on a quiet machine (about 10 min on 2
cores). Writes benchmarks/results/sweeps.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from machine import results_header, wait_for_quiet_machine
from resumable import log

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEFAULT_OUT = ROOT / "results" / "sweeps.md"
SWEEP = {
    "scenarios": ["cartpole-contexts"],
    "agents": ["ppo"],
    "methods": [[], "ewc", "online_ewc", "mas", "l2_init", "agem", "multi_head",
                "task_id_input"],
    "seeds": "0-3",
    "reference": False,
    "set": {"steps_per_task": 4096, "evals_per_task": 2, "eval_episodes": 2},
}


def timed(command: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-1500:]}")
    return time.perf_counter() - t0


def one_after_another(workdir: Path) -> float:
    total = 0.0
    for i, methods in enumerate(SWEEP["methods"]):
        names = [methods] if isinstance(methods, str) else methods
        command = [str(BIN / "everlearn"), "run", "--scenario", SWEEP["scenarios"][0],
                   "--agent", "ppo", "--seeds", SWEEP["seeds"], "--no-reference",
                   "--out", str(workdir / f"run-{i}")]
        for name in names:
            command += ["--method", name]
        for key, value in SWEEP["set"].items():
            command += ["--set", f"{key}={value}"]
        total += timed(command)
    return total


def ray_inside(workdir: Path, sweep_file: Path) -> int:
    """In a fresh network namespace: a one-node cluster, the sweep on it, the cluster stopped."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "RAY_TMPDIR": str(workdir / "ray"), "RAY_USAGE_STATS_ENABLED": "0"}
    (workdir / "ray").mkdir(exist_ok=True)
    head = subprocess.Popen([BIN / "ray", "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", "--port=6379",
                             f"--num-cpus={os.cpu_count()}", "--include-dashboard=false",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(120):
            if subprocess.run([BIN / "ray", "status", "--address", "127.0.0.1:6379"],
                              capture_output=True, env=env).returncode == 0:
                break
            time.sleep(1)
        wall = timed([str(BIN / "everlearn"), "sweep", str(sweep_file), "--out",
                      str(workdir / "ray-sweep"), "--executor", "ray", "--address",
                      "127.0.0.1:6379"], env)
        (workdir / "ray-wall.json").write_text(json.dumps(wall))
    finally:
        head.terminate()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
    return 0


def ray_overheads(sweep_dir: Path) -> dict[str, list[float]]:
    status = json.loads((sweep_dir / "status.json").read_text())["cells"]
    times = [s["times"] for s in status.values()]
    return {"submit_to_start": [t["started"] - t["submitted"] for t in times],
            "end_to_receive": [t["received"] - t["ended"] for t in times],
            "cell_seconds": [t["ended"] - t["started"] for t in times]}


def markdown(rows: dict, ray: dict | None, wall_s: float) -> str:
    serial = rows["one after another (`everlearn run` × 8)"]
    lines = [*results_header("Sweep machinery: 8 small cells, local pool and Ray", wall_s),
             f"- Load: 1-minute load average before measuring {rows.pop('_load'):.2f}", "",
             "Cells: PPO on cartpole-contexts, fine-tuning and 7 methods, seeds 0-3 (vmapped), "
             "4,096 steps per task, no reference runs (benchmarks/sweep_overhead.py). "
             "Wall time of the whole command(s), process start and compilation included.", "",
             "| how | wall s | × one after another |", "|---|--:|--:|"]
    for how, wall in rows.items():
        lines.append(f"| {how} | {wall:.0f} | {wall / serial:.2f} |")
    if ray:
        lines += ["", "Ray executor, per cell (one node, this machine, as many CPUs as cores): "
                  "median [min, max] seconds.", "",
                  "| interval | median | min | max |", "|---|--:|--:|--:|"]
        for key, label in (("submit_to_start", "submit → task starts (scheduling, worker)"),
                           ("end_to_receive", "task ends → run directory unpacked on the driver"),
                           ("cell_seconds", "the cell itself (for scale)")):
            values = np.asarray(ray[key])
            lines.append(f"| {label} | {np.median(values):.2f} | {values.min():.2f} | "
                         f"{values.max():.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--ray-inside", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ray_inside:
        return ray_inside(*args.ray_inside)
    load = wait_for_quiet_machine(max_load=0.5, waits=10, wait_s=30)[-1]
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="elsw-", dir="/tmp"))
    sweep_file = workdir / "eight.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    rows: dict[str, float] = {"_load": load}
    log("one after another")
    rows["one after another (`everlearn run` × 8)"] = one_after_another(workdir)
    log("local sweep, default workers")
    rows[f"`everlearn sweep` (local, {os.cpu_count()} workers × 1 XLA device)"] = timed(
        [str(BIN / "everlearn"), "sweep", str(sweep_file), "--out", str(workdir / "local")])
    log("local sweep, 1 worker")
    rows["`everlearn sweep --workers 1`"] = timed(
        [str(BIN / "everlearn"), "sweep", str(sweep_file), "--out", str(workdir / "local1"),
         "--workers", "1"])
    ray = None
    if not args.no_ray:
        log("ray sweep")
        subprocess.run(["unshare", "-n", sys.executable, __file__, "--ray-inside",
                        str(workdir), str(sweep_file)], check=True)
        rows[f"`everlearn sweep --executor ray` (1 node, {os.cpu_count()} CPUs)"] = json.loads(
            (workdir / "ray-wall.json").read_text())
        ray = ray_overheads(workdir / "ray-sweep")
    text = markdown(rows, ray, time.perf_counter() - t0)
    print(text)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
