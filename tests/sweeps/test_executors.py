"""Sweeps for real: a local pool, a sweep killed with SIGKILL and run again, and a two-node Ray
cluster with its worker node stopped mid-sweep. Every one must end with the numbers of the
uninterrupted local sweep (the same cells, one XLA CPU device per cell in both executors)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
SWEEP = {
    "scenarios": ["cartpole-contexts"],
    "agents": ["ppo"],
    "methods": [[], ["ewc"]],
    "seeds": "0-1",
    "reference": False,
    "set": {"steps_per_task": 2048, "evals_per_task": 2, "eval_episodes": 2},
    "grid": {"ewc.strength": [1, 10]},
}
NUM_CELLS = 3  # the grid applies to the cells with ewc only
# The three sweeps below compile the same programs (same cells, one XLA device each): a
# persistent compilation cache shared by their processes compiles each once. A cached program
# is the same executable, so the numbers do not change.
COMPILATION_CACHE = Path(tempfile.mkdtemp(prefix="everlearn-sweep-xla-"))
atexit.register(shutil.rmtree, COMPILATION_CACHE, True)
ENV = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(COMPILATION_CACHE)}


def sweep_command(sweep_file: Path, out: Path, *extra: str) -> list[str]:
    return [str(BIN / "everlearn"), "sweep", str(sweep_file), "--out", str(out), *extra]


def results(sweep_dir: Path) -> dict[str, dict]:
    """Each cell's numbers (its summary without the wall time)."""
    status = json.loads((sweep_dir / "status.json").read_text())["cells"]
    out = {}
    for name in status:
        summary = json.loads((sweep_dir / "cells" / name / "summary.json").read_text())
        out[name] = {k: summary[k] for k in ("per_seed", "aggregate", "performance_matrix")}
    return out


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "small.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return path


@pytest.fixture(scope="module")
def uninterrupted(sweep_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "sweep"
    done = subprocess.run(sweep_command(sweep_file, out, "--workers", "2", "--tensorboard"),
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_local_sweep_runs_every_cell_and_compares_them(uninterrupted):
    status = json.loads((uninterrupted / "status.json").read_text())
    assert status["executor"].startswith("local pool of 2 worker process(es), 1 XLA CPU")
    assert len(status["cells"]) == NUM_CELLS
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in status["cells"].values())
    for name in status["cells"]:
        run_dir = uninterrupted / "cells" / name
        assert (run_dir / "report.html").is_file() and (run_dir / "checkpoints").is_dir()
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # --tensorboard
    for suffix in ("html", "md", "json"):
        assert (uninterrupted / f"comparison.{suffix}").stat().st_size > 0
    info = json.loads((uninterrupted / "sweep.json").read_text())
    assert info["code"]["everlearn"] and "sweep" in info["command"]


def latest_segment(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["segment"]
    except (OSError, ValueError, KeyError):
        return -1


def test_a_killed_sweep_resumes_to_the_same_numbers(sweep_file, uninterrupted, tmp_path):
    out = tmp_path / "sweep"
    sweep = subprocess.Popen(sweep_command(sweep_file, out, "--workers", "2"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        # Kill when one cell has finished and another is part-way (past its first checkpoint).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sweep.poll() is None:
            cells = sorted((out / "cells").glob("*")) if (out / "cells").is_dir() else []
            finished = [c for c in cells if (c / "summary.json").is_file()]
            midway = [c for c in cells if not (c / "summary.json").is_file()
                      and latest_segment(c) >= 2]
            if finished and midway:
                break
            time.sleep(0.2)
        assert sweep.poll() is None, "the sweep ended before it could be killed mid-way"
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    # Its workers die with it: nothing holds a cell's lock when the sweep runs again. One
    # worker this time: the cells keep the sweep's first device count (1), not 2 cores' worth.
    time.sleep(1)
    again = subprocess.run(sweep_command(sweep_file, out, "--workers", "1"),
                           capture_output=True, text=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "to resume" in again.stderr and "0 to resume" not in again.stderr
    assert "1 worker process(es), 1 XLA CPU device(s)" in " ".join(again.stderr.split())
    assert results(out) == results(uninterrupted)
    assert comparable(out / "comparison.json") == comparable(uninterrupted / "comparison.json")


def comparable(path: Path) -> dict:
    """A comparison.json without what differs between two invocations of the same sweep."""
    def strip(tree):
        if isinstance(tree, dict):
            return {k: strip(v) for k, v in tree.items()
                    if k not in ("wall_time_s", "sweep_dir", "command", "created")}
        if isinstance(tree, list):
            return [strip(v) for v in tree]
        return tree
    return strip(json.loads(path.read_text()))


def _can_make_network_namespace() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _can_make_network_namespace(),
                    reason="needs `unshare -n` (root): the test cluster lives in a network "
                           "namespace so that Ray can be reached on loopback only")
def test_ray_cluster_sweep_survives_its_worker_node(sweep_file, uninterrupted):
    pytest.importorskip("ray", reason="the ray extra: pip install 'everlearn[ray]'")
    # A short path: Ray's socket paths under it must stay below the 107-byte limit.
    workdir = Path(tempfile.mkdtemp(prefix="elray-", dir="/tmp"))
    try:
        done = subprocess.run(
            ["unshare", "-n", sys.executable, str(Path(__file__).with_name(
                "ray_cluster_sweep.py")), str(workdir), str(sweep_file), str(workdir / "sweep")],
            capture_output=True, text=True, timeout=1000, env=ENV)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads((workdir / "result.json").read_text())
        assert result == {"sweep_exit_code": 0, "worker_node_was_running_a_cell": True}, (
            (workdir / "ray.log").read_text()[-3000:])
        status = json.loads((workdir / "sweep" / "status.json").read_text())
        assert status["executor"].startswith("Ray cluster of 2 node(s), 2 CPU(s)")
        assert all(s["status"] == "done" for s in status["cells"].values())
        # The run directories came back through Ray, complete.
        for name in status["cells"]:
            run_dir = workdir / "sweep" / "cells" / name
            assert (run_dir / "report.html").is_file()
            assert (run_dir / "checkpoints" / "latest.json").is_file()
        assert results(workdir / "sweep") == results(uninterrupted)
    finally:
        _kill_processes_of(workdir)  # the script stops its cluster; this is for when it could not
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_processes_of(workdir: Path) -> None:
    """SIGKILL every process started with RAY_TMPDIR under `workdir` (the cluster's)."""
    marker = f"RAY_TMPDIR={workdir}/ray".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
