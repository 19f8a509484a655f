"""What runs one sweep cell, in a local pool's worker process or in a Ray task.

A pool worker sets its XLA CPU device count in `init_worker`, before JAX starts its backend
(`import everlearn` would otherwise give it one device per core, as a lone run gets).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ERROR_FILE = "sweep_error.txt"  # the traceback of a cell's failed attempt, in its run directory


def init_worker(cpu_devices: int) -> None:
    """A local pool worker: its share of the cores as XLA CPU devices, and death with the sweep
    process (a killed `everlearn sweep` must not leave workers writing its cells, which the
    rerun would then find locked)."""
    os.environ["JAX_NUM_CPU_DEVICES"] = str(cpu_devices)  # for processes it may start
    import jax  # imported by `import everlearn` already, but its backend is not started yet

    jax.config.update("jax_num_cpu_devices", cpu_devices)
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep process's to handle


def run_cell(cell: dict[str, Any], run_dir: str, tensorboard: bool = False) -> dict[str, Any]:
    """Run (or resume, or read) one cell in `run_dir`. Never raises: a failure comes back as
    one line, with the traceback written into the run directory."""
    from everlearn.runs.run import run_or_resume
    from everlearn.sweeps.spec import Cell

    start, started_at = time.perf_counter(), time.time()
    spec = Cell.from_dict(cell)
    error_file = Path(run_dir) / ERROR_FILE
    error_file.unlink(missing_ok=True)  # an earlier attempt's
    try:
        summary = run_or_resume(Path(run_dir), spec.config, quiet=True, tensorboard=tensorboard)
    except BaseException as e:  # noqa: BLE001 - reported to the sweep, which retries once
        if isinstance(e, KeyboardInterrupt):
            raise
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        error_file.write_text(traceback.format_exc())
        message = " ".join(f"{type(e).__name__}: {e}".split())
        return {"ok": False, "error": message, "seconds": time.perf_counter() - start,
                "started_at": started_at, "ended_at": time.time()}
    return {"ok": True, "error": None, "seconds": time.perf_counter() - start,
            "started_at": started_at, "ended_at": time.time(),
            "wall_time_s": summary.get("wall_time_s")}
