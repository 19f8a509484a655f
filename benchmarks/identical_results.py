"""Byte-identical results between two commits: a fixed set of small runs, a killed-and-resumed
run and a small sweep, each made by both commits' code on this machine, compared file by file
with wall times, dates, versions and paths left out.

    python benchmarks/identical_results.py c392b0b HEAD
    python benchmarks/identical_results.py c392b0b .     # against the uncommitted work tree

Each commit's source is checked out as a git worktree under benchmarks/runs/identical/ and run
with this checkout's virtual environment (PYTHONPATH points at the worktree's src/); a commit's
results are kept there by commit hash, so a second comparison against the same commit reuses
them (--fresh runs them again). Exit code 0 when every file matches, 1 otherwise (the first
differing line of each file is printed).

Why this set: it covers both env paths, both kinds of agent (on-policy PPO, off-policy DQN),
methods that change the network (multi_head) and the loss (ewc), the reference runs and
measured scores, a run from data with a method that takes data (offline_mix), resume after
SIGKILL and the sweep's comparison: every caller of the code that the structural step moves.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "runs" / "identical"
PYTHON = REPO / ".venv" / "bin" / "python"
# The tests' XLA flags (tests/conftest.py): faster compiles; both commits run the same flags.
XLA_FLAGS = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"

SMALL = ["--set", "steps_per_task=2048", "--set", "evals_per_task=2", "--set", "eval_episodes=2"]
DQN = ["--set", "steps_per_task=1500", "--set", "evals_per_task=2", "--set", "eval_episodes=2",
       "--set", "dqn.learning_starts=500"]
OFFLINE_SCENARIO = """\
name: pendulum-random-data
description: "Pendulum: from its random dataset (offline), then online"
steps_per_task: 1000
tasks:
  - {name: standard-offline, env: Pendulum-v1, dataset: random, random_score: -1200, reference_score: -150}
  - {name: standard-online, env: Pendulum-v1, random_score: -1200, reference_score: -150}
"""
OFFLINE = ["--set", "evals_per_task=2", "--set", "eval_episodes=2",
           "--set", "td3_bc.learning_starts=200", "--method", "offline_mix",
           "--set", "offline_mix.dataset=random"]
SWEEP = """\
scenarios: [cartpole-contexts]
agents: [ppo]
methods: [[], ewc, [multi_head, packnet]]
seeds: 0-1
reference: false
set: {steps_per_task: 2048, evals_per_task: 2, eval_episodes: 2}
"""

# name -> the `everlearn` arguments (after the command); "{out}" is the case's directory.
CASES: dict[str, list[str]] = {
    "ppo-plain": ["run", "--scenario", "cartpole-contexts", "--agent", "ppo", "--seeds", "0-1",
                  "--reference", *SMALL, "--out", "{out}"],
    "ppo-ewc-multi-head": ["run", "--scenario", "cartpole-contexts", "--agent", "ppo",
                           "--seeds", "0-1", "--method", "ewc", "--method", "multi_head",
                           *SMALL, "--out", "{out}"],
    "dqn": ["run", "--scenario", "cartpole-contexts", "--agent", "dqn", "--seeds", "0-1",
            *DQN, "--out", "{out}"],
    "td3-bc-offline-mix": ["run", "--scenario", "{offline_scenario}", "--agent", "td3_bc",
                           "--seeds", "0-1", *OFFLINE, "--out", "{out}"],
    "ppo-gymnasium": ["run", "--scenario", "cartpole-contexts", "--agent", "ppo",
                      "--backend", "gymnasium", "--seeds", "0-1", *SMALL, "--out", "{out}"],
    "sweep": ["sweep", "{sweep_file}", "--out", "{out}", "--workers", "1"],
}
# Killed by SIGKILL once its second checkpoint is written, then resumed.
KILLED = ("ppo-killed-resumed",
          ["run", "--scenario", "cartpole-contexts", "--agent", "ppo", "--seeds", "0-1",
           "--set", "steps_per_task=4096", "--set", "evals_per_task=4",
           "--set", "checkpoint_every=1", "--set", "eval_episodes=2", "--out", "{out}"])

# Keys whose values differ between two runs of the same code.
VOLATILE = {"wall_time", "wall_time_s", "created", "command", "versions", "everlearn_version",
            "commit", "generated", "elapsed_s", "duration_s", "times", "ended"}
COMMIT = re.compile(r"[0-9a-f]{40}( \(with uncommitted changes\))?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC")


def _resolve(rev: str) -> str:
    return subprocess.check_output(["git", "-C", str(REPO), "rev-parse", rev], text=True).strip()


def _environment(src: Path, side: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(src), EVERLEARN_CACHE=str(side / "cache"),
               MINARI_DATASETS_PATH=str(side / "minari"), XLA_FLAGS=XLA_FLAGS,
               PYTHONHASHSEED="0")
    return env


def _everlearn(args: list[str], env: dict, cwd: Path, log) -> subprocess.Popen:
    return subprocess.Popen([str(PYTHON), "-m", "everlearn.cli", *args], env=env, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)


def _run_side(sha: str, side: Path) -> None:
    """Every case with commit `sha`'s code (".": this work tree's); raw outputs under
    side/out/<case>."""
    tree = REPO if sha == "." else side / "tree"
    if not tree.exists():
        subprocess.check_call(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f",
                               str(tree), sha], stdout=subprocess.DEVNULL)
    env = _environment(tree / "src", side)
    out = side / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (side / "offline.yaml").write_text(OFFLINE_SCENARIO)
    (side / "sweep.yaml").write_text(SWEEP)
    fill = {"offline_scenario": str(side / "offline.yaml"), "sweep_file": str(side / "sweep.yaml")}
    with open(side / "log.txt", "w") as log:
        for name, args in CASES.items():
            t0 = time.perf_counter()
            argv = [a.format(out=str(out / name), **fill) for a in args]
            code = _everlearn(argv, env, side, log).wait()
            print(f"  {sha[:7]} {name}: exit {code}, {time.perf_counter() - t0:.0f} s", flush=True)
            if code != 0:
                raise SystemExit(f"{name} failed with {sha[:7]}'s code; see {side / 'log.txt'}")
        name, args = KILLED
        run_dir = out / name
        t0 = time.perf_counter()
        proc = _everlearn([a.format(out=str(run_dir)) for a in args], env, side, log)
        while proc.poll() is None and not (run_dir / "checkpoints" / "segment-2.msgpack").exists():
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        code = _everlearn(["resume", str(run_dir)], env, side, log).wait()
        print(f"  {sha[:7]} {name}: resumed, exit {code}, {time.perf_counter() - t0:.0f} s",
              flush=True)
        if code != 0:
            raise SystemExit(f"{name} failed to resume with {sha[:7]}'s code")
    (side / "done").write_text(sha)


def _strip(value, root: str):
    if isinstance(value, dict):
        return {k: _strip(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<ROOT>")
    return value


def _normalised(path: Path, root: str) -> list[str]:
    """The lines of a result file that the same code must reproduce."""
    text = path.read_text()
    if path.suffix == ".json":
        return json.dumps(_strip(json.loads(text), root), indent=1, sort_keys=True).splitlines()
    if path.suffix == ".jsonl":
        return [json.dumps(_strip(json.loads(line), root), sort_keys=True)
                for line in text.splitlines() if line.strip()]
    text = text.replace(" (with uncommitted changes)", "")  # which commit made it: not a result
    return _without_time_columns(COMMIT.sub("<COMMIT>", DATE.sub("<DATE>", text.replace(root, "<ROOT>"))).splitlines())


def _without_time_columns(lines: list[str]) -> list[str]:
    """Markdown tables less their wall-time columns (a header cell naming "wall" or "time")."""
    out, dropped = [], set()
    for line in lines:
        if not line.startswith("|"):
            dropped = set()
            out.append(line)
            continue
        cells = line.strip().strip("|").split("|")
        if not dropped and not set(line) <= set("|-: "):
            dropped = {i for i, c in enumerate(cells) if "wall" in c or "time" in c} or {-1}
        out.append("|".join(c for i, c in enumerate(cells) if i not in dropped))
    return out


COMPARED = ("metrics.jsonl", "summary.json", "config.yaml", "run.json", "comparison.json",
            "comparison.md", "status.json")


def _results(side: Path) -> dict[str, list[str]]:
    out, root = side / "out", str(side)
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name in COMPARED:
            files[str(path.relative_to(out))] = _normalised(path, root)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="a commit (e.g. c392b0b)")
    parser.add_argument("after", nargs="?", default="HEAD", help="a commit (default HEAD)")
    parser.add_argument("--fresh", action="store_true", help="run both commits again")
    args = parser.parse_args()
    sides = []
    for rev in (args.before, args.after):
        sha = "." if rev == "." else _resolve(rev)
        side = WORK / ("worktree" if sha == "." else sha)
        if args.fresh or sha == "." or not (side / "done").is_file():
            print(f"running the cases with {rev} ({sha[:7]})", flush=True)
            _run_side(sha, side)
        else:
            print(f"reusing the results of {rev} ({sha[:7]}) in {side}")
        sides.append(_results(side))
    if not sides[0]:
        raise SystemExit(f"no result files under {WORK}")
    before, after = sides
    problems = 0
    for name in sorted(before.keys() | after.keys()):
        if name not in before or name not in after:
            print(f"DIFFERS {name}: only in {'after' if name in after else 'before'}")
            problems += 1
            continue
        a, b = before[name], after[name]
        if a != b:
            problems += 1
            line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"DIFFERS {name} at line {line + 1}:\n  before: {a[line][:300] if line < len(a) else '(end)'}"
                  f"\n  after:  {b[line][:300] if line < len(b) else '(end)'}")
    print(f"{len(before)} result files compared; {problems} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
