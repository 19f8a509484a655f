"""A real two-node Ray cluster on this machine, a sweep on it, and the worker node stopped while
it runs a cell. Run by tests/sweeps/test_executors.py inside its own network namespace
(`unshare -n`), where the only interface is loopback: Ray's servers, which bind every
interface, can then be reached on 127.0.0.1 only.

    unshare -n python ray_cluster_sweep.py WORKDIR SWEEP_FILE SWEEP_DIR

Writes WORKDIR/result.json: the sweep's exit code and whether a cell was running on the worker
node when it was stopped. Every Ray process it started is stopped before it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ADDRESS = "127.0.0.1:6379"  # a fresh network namespace: every port is free


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def runs_a_cell(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if b"run_shipped_cell" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """`ray start --block` stops its node's processes on SIGTERM; the session's process group
    is killed after it in case one is left."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def alive_nodes() -> int:
    out = subprocess.run([BIN / "ray", "status", "--address", ADDRESS], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0 or "Active:" not in out.stdout:
        return 0
    active = out.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
    return sum(line.strip().startswith("1 node_") for line in active.splitlines())


def main(workdir: Path, sweep_file: Path, sweep_dir: Path) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "RAY_TMPDIR": str(workdir / "ray"), "RAY_USAGE_STATS_ENABLED": "0"}
    (workdir / "ray").mkdir(parents=True, exist_ok=True)
    nodes: list[subprocess.Popen] = []
    log = open(workdir / "ray.log", "w")
    result = {"sweep_exit_code": None, "worker_node_was_running_a_cell": False}
    try:
        nodes.append(subprocess.Popen(
            [BIN / "ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
             "--port=6379", "--num-cpus=1", "--include-dashboard=false",
             "--disable-usage-stats"], env=env, stdout=log, stderr=log, start_new_session=True))
        wait_for(lambda: alive_nodes() == 1, 120, "the head node")
        worker = subprocess.Popen(
            [BIN / "ray", "start", "--block", f"--address={ADDRESS}", "--num-cpus=1"],
            env=env, stdout=log, stderr=log, start_new_session=True)
        nodes.append(worker)
        wait_for(lambda: alive_nodes() == 2, 120, "the worker node")
        sweep = subprocess.Popen(
            [BIN / "everlearn", "sweep", sweep_file, "--out", sweep_dir, "--executor", "ray",
             "--address", ADDRESS], env=env, stdout=log, stderr=log)
        try:
            wait_for(lambda: runs_a_cell(descendants(worker.pid)), 180,
                     "a cell on the worker node")
            result["worker_node_was_running_a_cell"] = True
            time.sleep(2)  # well into the cell (JAX import and compilation take longer)
            stop(worker)
            result["sweep_exit_code"] = sweep.wait(480)
        finally:
            if sweep.poll() is None:
                sweep.kill()
    finally:
        for node in reversed(nodes):
            stop(node)
        log.close()
        (workdir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:4])))
