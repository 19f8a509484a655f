"""The local executor: a pool of worker processes on this machine.

Each worker gets an equal share of the cores as its XLA CPU device count, so the pool does not
oversubscribe them, and lives for the whole sweep, so cells of the same shapes that land on it
reuse its compiled programs (`runs.plan._trainer` is cached per process). Workers are started
with `spawn` (JAX's threads do not survive a fork) and die with the sweep process.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from everlearn.sweeps.worker import init_worker, run_cell


def default_workers(num_cells: int) -> int:
    return max(1, min(num_cells, os.cpu_count() or 1))


class LocalPool:
    """Cells run in `run_dir`s of the sweep directory itself: a killed sweep leaves their
    checkpoints where the rerun resumes them."""

    name = "local"
    reports_steps = True  # the driver can read running cells' metrics.jsonl for progress

    def __init__(self, workers: int, cpu_devices: int, tensorboard: bool = False):
        self.workers, self.cpu_devices, self.tensorboard = workers, cpu_devices, tensorboard
        self.capacity = workers  # cells at a time
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=init_worker, initargs=(self.cpu_devices,))

    def describe(self) -> str:
        return (f"local pool of {self.workers} worker process(es), {self.cpu_devices} XLA CPU "
                f"device(s) each")

    def submit(self, cell: dict[str, Any], run_dir: Path) -> cf.Future:
        try:
            return self._pool.submit(run_cell, cell, str(run_dir), self.tensorboard)
        except cf.process.BrokenProcessPool:
            self._restart()
            return self._pool.submit(run_cell, cell, str(run_dir), self.tensorboard)

    def _restart(self) -> None:
        """A worker died (killed, out of memory): the pool is broken and every cell it ran
        fails this attempt. The other workers were sent SIGTERM and checkpoint their runs:
        wait for them to exit (releasing their run directories) before a new pool starts."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new_pool()

    def wait(self, handles: list[cf.Future], timeout: float) -> list[cf.Future]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: cf.Future, run_dir: Path) -> dict[str, Any]:
        try:
            return handle.result()
        except cf.process.BrokenProcessPool as e:
            if getattr(self._pool, "_broken", False):
                self._restart()
            return {"ok": False, "error": f"the worker process died ({e})", "seconds": None}

    def close(self, *, cancel: bool = False) -> None:
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        if cancel:
            # Ctrl-C: SIGTERM, which a run takes as an interrupt and answers with a checkpoint
            # of its finished segments; SIGKILL for a worker that has not exited in 30 s.
            for process in processes:
                process.terminate()
            deadline = time.monotonic() + 30
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
