"""Reliability campaign (issue 15): kills, corrupted run state and fuzzed configs.

1. Kills: an `everlearn run` process is SIGKILLed at a random moment (uniform over the length
   of an uninterrupted run, so every phase gets hit: start-up and compiling, before the first
   checkpoint, mid-run, while the summary and report are written), then `everlearn resume`
   (or `everlearn run` again, where the kill came before the run directory held its config)
   finishes it. Its summary and its log must equal the uninterrupted run's: no evaluation lost,
   none duplicated.
2. Corruption: a run stopped mid-way, then one kind of damage to its directory, then
   `everlearn resume`: each case must end in a fallback that gives the uninterrupted result or
   in a one-line refusal (exit code 2), never in a traceback or a silently different result.
3. Fuzzed configs: random `--set key=value` (every key of the run, the agents and the methods;
   values at and beyond the edges of every range, and junk) and random option values, each
   checked with `everlearn run --dry-run`: accepted (and then valid by what the key means,
   `tests/runs/config_oracle.py`) or refused with exit code 2 in one line; never a traceback.

Run: `.venv/bin/python benchmarks/reliability.py` (`--kills 2 --configs 50` for a smoke run).
Writes benchmarks/results/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from machine import results_header

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests" / "runs"))
from config_oracle import allowed, settable_keys  # noqa: E402

DEFAULT_OUT = ROOT / "results" / "reliability.md"
# A small run of 16 segments (4 tasks x 4 evaluations), checkpoints every 2 evaluations.
RUN = ["--scenario", "cartpole-contexts", "--agent", "ppo", "--seeds", "0-1",
       *[a for s in ["steps_per_task=2048", "evals_per_task=4", "eval_episodes=2",
                     "checkpoint_every=2", "ppo.num_envs=4", "ppo.num_steps=32",
                     "ppo.num_epochs=2"] for a in ("--set", s)]]
EVERLEARN = [sys.executable, "-m", "everlearn.cli"]


def everlearn(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*EVERLEARN, *args], capture_output=True, text=True, timeout=timeout)


def in_process(*args: str) -> subprocess.CompletedProcess:
    """The command run in this process: resumes share one compiled program, so the campaign
    pays XLA's compile time once, not once per case (the kills are real processes)."""
    from typer.testing import CliRunner

    from everlearn.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output = "Traceback\n" + "".join(traceback.format_exception(result.exception))
    else:
        output = result.output
    return subprocess.CompletedProcess(args, result.exit_code, "", output)


def outcome(run_dir: Path) -> tuple[dict, list[dict]]:
    """The summary and the log without wall times (they differ between processes)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_time_s")
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in log:
        record.pop("wall_time")
    return summary, log


def phase_at_kill(run_dir: Path) -> str:
    if not (run_dir / "config.yaml").is_file():
        return "start-up (no run directory yet)"
    if (run_dir / "report.html").is_file():
        return "after the end"
    if (run_dir / "summary.json").is_file():
        return "writing the report"
    latest = run_dir / "checkpoints" / "latest.json"
    if not latest.is_file():
        return "before the first checkpoint"
    segment = json.loads(latest.read_text())["segment"]
    return "after the last checkpoint (summary)" if segment == 16 else f"after checkpoint {segment}"


def kills(count: int, rng: random.Random, work: Path) -> tuple[list[str], dict]:
    """`count` kills that land before the run's end (a kill that comes after it is listed,
    not counted; the window then shrinks to the quickest run seen)."""
    whole = work / "whole"
    t0 = time.perf_counter()
    done = everlearn("run", *RUN, "--out", str(whole))
    assert done.returncode == 0, done.stderr
    length = time.perf_counter() - t0
    expected = outcome(whole)
    rows, tally, attempt = [], Counter(), 0
    while tally["kills"] < count and attempt < 3 * count:
        attempt += 1
        run_dir = work / f"killed-{attempt}"
        at = rng.uniform(0.3, length)
        proc = subprocess.Popen([*EVERLEARN, "run", *RUN, "--out", str(run_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        finished_first = proc.wait() == 0
        phase = phase_at_kill(run_dir)
        if finished_first:
            length = min(length, at)
            rows.append(f"| - | {at:.1f} | the run had ended (not counted) | - |")
            print(f"kill at {at:.1f}s came after the end: not counted", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            continue
        tally["kills"] += 1
        if (run_dir / "config.yaml").is_file():
            finish = in_process("resume", str(run_dir))
        else:  # killed before it wrote its config: the user runs it again
            finish = in_process("run", *RUN, "--out", str(run_dir))
        if finish.returncode != 0:
            verdict = f"FAILED: {finish.stderr.strip().splitlines()[-1:]}"
            tally["failed"] += 1
        else:
            summary, log = outcome(run_dir)
            indices = [r["eval_index"] for r in log]
            lost = len(set(range(17)) - set(indices))
            duplicated = len(indices) - len(set(indices))
            same = (summary, log) == expected
            tally["identical"] += same
            tally["lost lines"] += lost
            tally["duplicated lines"] += duplicated
            verdict = "identical" if same else f"DIFFERENT (lost {lost}, duplicated {duplicated})"
        rows.append(f"| {tally['kills']} | {at:.1f} | {phase} | {verdict} |")
        print(f"kill {tally['kills']}/{count} at {at:.1f}s ({phase}): {verdict}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    tally["length_s"] = length
    return rows, tally


# -- corruption ---------------------------------------------------------------------------------

def _newest_checkpoint(run_dir: Path) -> Path:
    return max((run_dir / "checkpoints").glob("segment-*.msgpack"))


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(100, len(data), 997):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


CORRUPTIONS = {
    "newest checkpoint truncated":
        lambda d: _newest_checkpoint(d).write_bytes(_newest_checkpoint(d).read_bytes()[:500]),
    "newest checkpoint bytes flipped": lambda d: _flip_bytes(_newest_checkpoint(d)),
    "newest checkpoint's checksum deleted":
        lambda d: Path(str(_newest_checkpoint(d)) + ".sha256").unlink(),
    "latest.json garbage": lambda d: (d / "checkpoints" / "latest.json").write_text("{\"seg"),
    "latest.json deleted": lambda d: (d / "checkpoints" / "latest.json").unlink(),
    "every checkpoint deleted": lambda d: shutil.rmtree(d / "checkpoints"),
    "metrics.jsonl torn last line":
        lambda d: (d / "metrics.jsonl").write_text((d / "metrics.jsonl").read_text()[:-40]),
    "metrics.jsonl line duplicated":
        lambda d: (d / "metrics.jsonl").write_text(
            (d / "metrics.jsonl").read_text().splitlines()[0] + "\n"
            + (d / "metrics.jsonl").read_text()),
    "metrics.jsonl deleted": lambda d: (d / "metrics.jsonl").unlink(),
    "metrics.jsonl emptied": lambda d: (d / "metrics.jsonl").write_text(""),
    "config.yaml edited (learning rate)":
        lambda d: _edit(d / "config.yaml", "learning_rate: 0.001", "learning_rate: 0.5"),
    "config.yaml YAML syntax error": lambda d: _edit(d / "config.yaml", "agent: ppo", "agent: [ppo"),
    "config.yaml not UTF-8": lambda d: (d / "config.yaml").write_bytes(b"\xff\xfe\x00agent"),
    "config.yaml deleted": lambda d: (d / "config.yaml").unlink(),
    "run.json garbage": lambda d: (d / "run.json").write_text("{\"everlearn_version\": 1,,"),
    "run.json deleted": lambda d: (d / "run.json").unlink(),
}


def corruption(work: Path) -> list[tuple[str, str, str]]:
    whole = work / "whole"
    expected = outcome(whole)
    base = work / "stopped"
    proc = subprocess.Popen([*EVERLEARN, "run", *RUN, "--out", str(base)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = base / "checkpoints" / "latest.json"
    while proc.poll() is None:  # stop it after checkpoint 6 of 16
        if latest.is_file() and json.loads(latest.read_text() or "{}").get("segment", 0) >= 6:
            proc.send_signal(signal.SIGKILL)
        time.sleep(0.05)
    results = []
    cases = {**CORRUPTIONS, "a second writer holds the lock": None}
    for name, damage in cases.items():
        run_dir = work / "case"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(base, run_dir)
        holder = None
        if damage is None:
            holder = subprocess.Popen(
                [sys.executable, "-c", "import sys, time; from everlearn.runs.lock import "
                 "run_lock; from pathlib import Path\nwith run_lock(Path(sys.argv[1])):\n"
                 "    print('held', flush=True); time.sleep(120)", str(run_dir)],
                stdout=subprocess.PIPE, text=True)
            holder.stdout.readline()
        else:
            damage(run_dir)
        result = in_process("resume", str(run_dir))
        if holder is not None:
            holder.kill()
            holder.wait()
        message = " ".join((result.stderr.strip().splitlines() or [""])[-1:])
        lines = [line for line in result.stderr.splitlines()
                 if line.strip() and not line.startswith(("resuming", "report:"))]
        if result.returncode == 0:
            verdict = ("recovered, same result" if outcome(run_dir) == expected
                       else "SILENT: different result")
            said = [line for line in lines if "intact" in line or "again" in line]
            message = said[0] if said else "(nothing said)"
        elif result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr:
            verdict = "refused in one line"
        else:
            verdict = f"TRACEBACK or exit {result.returncode}"
        results.append((name, verdict, message))
        print(f"{name}: {verdict}: {message}", flush=True)
    return results


# -- fuzzed configs -----------------------------------------------------------------------------

def fuzz(count: int, rng: random.Random) -> tuple[Counter, list[str]]:
    from typer.testing import CliRunner

    from everlearn.cli import app

    keys = settable_keys()
    edges = [0, 1, -1, 2, 0.5, 1.5, -0.5, 1e-12, 0.999, 1.0001, 2**31, 2**32, 10**15, 256,
             ".nan", ".inf", "-.inf", "true", "false", "null", "[]", "[0]", "[64, 64]",
             "[1, x", "{a: 1}", "abc", "''", "0-3", "3e-4", "-3e-4", "1e400"]
    options = {"--seeds": ["4294967296", "0-99999999", "-1", "3-1", "0,0", "x", "0-3", "7"],
               "--scenario": ["nope", "/", "/dev/null", "pendulum-drift", "acrobot-contexts"],
               "--agent": ["sac", "dqn", "x"], "--backend": ["gymnasium", "torch"],
               "--method": ["ewc", "nope", "packnet"], "--config": ["/", "/dev/null", "x.yaml"]}
    tally, refused_examples = Counter(), []
    runner = CliRunner()
    for _ in range(count):
        args = ["run", "--dry-run"]
        agent = rng.choice(["ppo", "dqn", "sac", "td3"])
        sets = []
        for _ in range(rng.randint(1, 3)):
            key, needs = rng.choice(keys)
            if needs[:1] == ["--agent"]:
                agent = needs[1]
            elif needs:
                args += needs
            value = rng.choice(edges) if rng.random() < 0.7 else rng.choice(
                [rng.randint(-5, 10**6), rng.uniform(-2, 2), 10 ** rng.uniform(-8, 8)])
            sets.append((key, value))
        args += ["--agent", agent, "--scenario",
                 "pendulum-contexts" if agent in ("sac", "td3") else "cartpole-contexts"]
        if rng.random() < 0.2:
            option = rng.choice(list(options))
            args += [option, rng.choice(options[option])]
        for key, value in sets:
            args += ["--set", f"{key}={value}"]
        result = runner.invoke(app, args)
        if result.exit_code == 0:
            import yaml

            bad = []
            for key, value in sets:
                try:
                    parsed = yaml.safe_load(str(value))
                except yaml.YAMLError:
                    parsed = value
                if allowed(key, parsed) is False:
                    bad.append(f"{key}={value}")
            tally["accepted invalid" if bad else "accepted"] += 1
            if bad:
                refused_examples.append("ACCEPTED INVALID: " + " ".join(args))
        elif (result.exit_code == 2 and result.output.startswith("error: ")
              and result.output.count("\n") == 1):
            tally["refused in one line"] += 1
            if len(refused_examples) < 12 and rng.random() < 0.1:
                refused_examples.append(result.output.strip())
        else:
            tally["traceback or other exit"] += 1
            refused_examples.append(f"TRACEBACK ({' '.join(args)}): {result.exception!r}")
    return tally, refused_examples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--configs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kill_rows, kill_tally = kills(args.kills, rng, work)
        cases = corruption(work)
    config_tally, examples = fuzz(args.configs, rng)

    silent = sum("SILENT" in v or "TRACEBACK" in v for _, v, _ in cases)
    lines = [
        *results_header("Reliability: kills, corrupted run state, fuzzed configs",
                        time.perf_counter() - t0), "",
        "## Summary", "",
        "| check | result | target |", "|---|---|---|",
        f"| random SIGKILLs, then resume | {kill_tally['identical']} of {kill_tally['kills']} "
        "summaries "
        f"and logs identical to the uninterrupted run; {kill_tally['lost lines']} lost and "
        f"{kill_tally['duplicated lines']} duplicated lines; {kill_tally['failed']} failed | "
        "all identical, 0 lost, 0 duplicated |",
        f"| corruption cases | {len(cases) - silent} of {len(cases)} detected (fallback to the "
        f"same result, or one-line refusal); {silent} silent or traceback | 0 silent |",
        f"| fuzzed configs (`run --dry-run`) | {args.configs:,}: "
        f"{config_tally['refused in one line']:,} refused in one line, "
        f"{config_tally['accepted']:,} accepted valid, {config_tally['accepted invalid']} "
        f"accepted invalid, {config_tally['traceback or other exit']} tracebacks | "
        "0 tracebacks, 0 accepted invalid |",
        "",
        f"## Kills (`everlearn run {' '.join(RUN)}` as a process, SIGKILLed at a time drawn "
        f"uniformly from 0.3 s to the quickest uninterrupted run seen, "
        f"{kill_tally['length_s']:.1f} s)", "",
        "| kill | at s | what the run was doing | resumed result |", "|---|---|---|---|",
        *kill_rows, "",
        "## Corruption (a run SIGKILLed after checkpoint 6 of 16, one damage, then `everlearn "
        "resume`)", "",
        "| damage | outcome | what resume said |", "|---|---|---|",
        *[f"| {n} | {v} | {m.replace('|', '/')} |" for n, v, m in cases], "",
        "## Fuzzed configs: sample messages", "",
        *[f"- `{e}`" for e in examples[:15]], "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines[:lines.index("## Summary") + 7]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
