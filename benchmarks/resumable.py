"""Benchmark runs that survive interruption (`everlearn.runs.run.run_or_resume`), with a line
of log saying which of the three cases each run was."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from everlearn.runs.config import RunConfig
from everlearn.runs.run import run_or_resume as _run_or_resume


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_or_resume(out: Path, make_config: Callable[[], RunConfig], quiet: bool = True) -> dict:
    """The summary of the run in `out`: read when finished, resumed when interrupted, else the
    run `make_config()` describes, started there."""
    if (out / "summary.json").is_file():
        log(f"{out.name}: finished earlier ({out})")
    elif (out / "config.yaml").is_file():
        log(f"{out.name}: resuming {out}")
    return _run_or_resume(out, make_config, quiet=quiet)
