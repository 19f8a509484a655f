"""Writing files so that a kill never leaves a half-written one (run directories, reports,
caches)."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write next to the target, flush to disk, then rename: a reader (or a resume after a
    kill) never sees a half-written file. A plain open, not mkstemp (which makes 0600 files),
    so the file gets the umask's mode like any other; the pid keeps concurrent writers apart."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
