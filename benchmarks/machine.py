"""What every benchmark records next to its figures: the machine, versions and load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        return len(os.sched_getaffinity(0))


def mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by *other* processes while a measurement runs (total busy CPU time
    minus this process's own CPU time, per second of wall time)."""

    def __enter__(self):
        self.busy, self.own, self.wall = (_busy_cpu_seconds(), time.process_time(),
                                          time.perf_counter())
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        self.cores = max((_busy_cpu_seconds() - self.busy - own) / wall, 0.0)
        return False


def virtual_machine() -> bool:
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def machine_description() -> str:
    mem = mem_total_gib()
    mem_s = f", {mem:.1f} GiB RAM" if mem else ""
    vm = ", virtual machine" if virtual_machine() else ""
    return f"{platform.platform()}; {nproc()} CPUs ({cpu_model()}{vm}){mem_s}; no GPU used"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ["everlearn", "jax", "jaxlib", "flax", "optax", "gymnax", "gymnasium", "numpy",
                 "torch", "stable-baselines3", "d3rlpy"]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def wait_for_quiet_machine(max_load: float, waits: int, wait_s: float) -> list[float]:
    """Wait (at most `waits` times) while the 1-minute load average from other jobs is high."""
    seen = []
    for attempt in range(waits + 1):
        load = loadavg()[0]
        seen.append(load)
        if load <= max_load or attempt == waits:
            if load > max_load:
                print(f"[load] 1-min load {load:.2f} > {max_load}: measuring anyway "
                      "(numbers will be pessimistic)", flush=True)
            return seen
        print(f"[load] 1-min load {load:.2f} > {max_load} (other jobs?): waiting {wait_s:.0f}s "
              f"({attempt + 1}/{waits})", flush=True)
        time.sleep(wait_s)
    return seen


def _git_commit() -> str:
    """The commit of the working tree, `-dirty` where src/ has uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, text=True,
                               capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("-dirty" if dirty else "")


# Read when the benchmark starts, so later commits do not relabel its results.
COMMIT_AT_START = _git_commit()


def results_header(title: str, wall_s: float | None) -> list[str]:
    """The opening lines of a results page: title, date, machine, versions, the commit the
    measured code is at, and the command."""
    return [
        f"# {title}", "",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine_description()}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()
                                   if v != "not installed"),
        f"- Commit: {COMMIT_AT_START}",
        f"- Command: {invocation(wall_s)}",
    ]


def invocation(wall_s: float | None) -> str:
    """How this script was run, and how long it took (None: a tabulation, not timed)."""
    command = f"`python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`"
    return command if wall_s is None else f"{command} ({wall_s / 60:.0f} min wall)"
