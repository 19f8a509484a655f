"""Benchmark runs that survive interruption: a run directory that holds a summary is read, one
that holds a started run is resumed from its last checkpoint, and a missing one is started."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from everlearn.runs.config import RunConfig
from everlearn.runs.run import resume_run, start_run


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_or_resume(out: Path, make_config: Callable[[], RunConfig], quiet: bool = True) -> dict:
    """The summary of the run in `out`: read when finished, resumed when interrupted, else the
    run `make_config()` describes, started there. A resumed run keeps the config it started
    with (`everlearn resume` refuses an edited one)."""
    summary_path = out / "summary.json"
    if summary_path.is_file():
        log(f"{out.name}: finished earlier ({out})")
    elif (out / "config.yaml").is_file():
        log(f"{out.name}: resuming {out}")
        resume_run(out, quiet=quiet)
    else:
        start_run(make_config(), out, quiet=quiet)
    return json.loads(summary_path.read_text())
