"""The Ray executor: one Ray task per cell on an existing Ray cluster (`pip install
'everlearn[ray]'`).

Nodes need not share a filesystem: a task runs its cell in a temporary directory on its node
and returns the whole run directory (metrics, summary, report, final checkpoint) as a gzipped
tar, which the driver unpacks into the sweep directory. A cell the driver holds a partial run
of (an interrupted local sweep) ships that run along, and the task resumes it from its last
checkpoint. A node that dies mid-task is Ray's to handle: the task is retried on another node
(`max_retries`); a cell that fails by itself is retried once by the sweep.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from everlearn.core.errors import ConfigError
from everlearn.runs.lock import LOCK_NAME

NODE_FAILURE_RETRIES = 3


def pack(run_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(Path(run_dir).rglob("*")):
            if path.is_file() and path.name != LOCK_NAME:
                tar.add(path, arcname=str(path.relative_to(run_dir)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, run_dir: Path) -> None:
    """Replace `run_dir` by the shipped run (unpacked next to it first: a kill mid-way leaves
    the old directory or the new one, never a mix)."""
    run_dir = Path(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(staging, filter="data")
    old = run_dir.with_name(f".{run_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a kill during an earlier unpack
    if run_dir.exists():
        run_dir.rename(old)
    staging.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def run_shipped_cell(cell: dict[str, Any], partial: bytes | None,
                     tensorboard: bool = False) -> tuple[dict, bytes]:
    """The Ray task: run the cell on this node (resuming `partial` if given) and ship the run
    directory back."""
    from everlearn.sweeps.worker import run_cell

    with tempfile.TemporaryDirectory(prefix="everlearn-cell-") as tmp:
        run_dir = Path(tmp) / cell["name"]
        if partial is not None:
            unpack(partial, run_dir)
        outcome = run_cell(cell, str(run_dir), tensorboard)
        import ray

        outcome["node"] = ray.get_runtime_context().get_node_id()
        return outcome, pack(run_dir) if run_dir.exists() else b""


class RayCluster:
    name = "ray"
    reports_steps = False  # running cells live on other nodes

    def __init__(self, address: str, cpus_per_cell: float = 1.0, cpu_devices: int = 1,
                 tensorboard: bool = False):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'everlearn[ray]'") from None
        self._ray, self.tensorboard = ray, tensorboard
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError(f"cannot connect to the Ray cluster at '{address}' "
                              f"({' '.join(str(e).split())[:200]}); start one with 'ray start "
                              "--head' or give --address HOST:PORT") from None
        gpus = ray.cluster_resources().get("GPU", 0)
        self._task = ray.remote(run_shipped_cell).options(
            num_cpus=cpus_per_cell, num_gpus=1 if gpus else 0,
            max_retries=NODE_FAILURE_RETRIES, retry_exceptions=False,
            # The sweep's device count per cell (one per CPU a task holds, unless a local
            # invocation of the same sweep chose another first).
            runtime_env={"env_vars": {"JAX_NUM_CPU_DEVICES": str(cpu_devices)}})
        # Cells in flight at a time: what the cluster's CPUs hold when the sweep starts (Ray
        # queues any more; a node that leaves makes the queue longer, not the sweep fail).
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_cell))
        # As the sweep found it (nodes may leave and join while it runs).
        self._description = (f"Ray cluster of {len(ray.nodes())} node(s), "
                             f"{ray.cluster_resources().get('CPU', 0):g} CPU(s)"
                             f"{f', {gpus:g} GPU(s)' if gpus else ''}")

    def describe(self) -> str:
        return self._description

    def submit(self, cell: dict[str, Any], run_dir: Path):
        partial = pack(run_dir) if (Path(run_dir) / "config.yaml").is_file() else None
        return self._task.remote(cell, partial, self.tensorboard)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def outcome(self, handle, run_dir: Path) -> dict[str, Any]:
        try:
            outcome, shipped = self._ray.get(handle)
        except self._ray.exceptions.RayError as e:
            return {"ok": False, "error": " ".join(f"{type(e).__name__}: {e}".split())[:500],
                    "seconds": None}
        if shipped:
            try:
                unpack(shipped, run_dir)
            except (OSError, tarfile.TarError) as e:  # counts as a failed attempt
                return {"ok": False, "error": f"cannot unpack the cell's run directory: {e}",
                        "seconds": outcome.get("seconds")}
        return outcome

    def close(self, *, cancel: bool = False) -> None:
        self._ray.shutdown()  # the driver's tasks end with it
