"""One writer per run directory: an advisory lock that `run` and `resume` hold while they write.

`fcntl.flock` on `<run dir>/.lock`: the kernel drops the lock when its holder exits, however it
exits (a SIGKILL included), so a lock is never stale; the file keeps the holder's process id
only to name it in the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirectoryBusy(ValueError):
    """Another process writes this run directory."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock, or raise `RunDirectoryBusy` naming the holder."""
    path = Path(run_dir) / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirectoryBusy(f"run directory '{run_dir}' is being written by process "
                                   f"{holder}; wait for it to end (or stop it) before running "
                                   "or resuming it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock
