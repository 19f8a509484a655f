"""Checkpoints: the run state as msgpack (flax.serialization, no pickle) plus a JSON index.

Files are written to a temporary name and renamed, so a kill never leaves a half-written
checkpoint; `latest.json` is replaced last and names the newest complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from flax import serialization


def atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory: Path, state: Any, meta: dict[str, Any], keep: bool) -> Path:
    """Write `state` and point `latest.json` at it; drop the previous non-kept checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"segment-{meta['segment']:05d}.msgpack"
    blob = serialization.to_bytes(state)
    atomic_write(directory / name, blob)
    index_path = directory / "latest.json"
    previous = json.loads(index_path.read_text()) if index_path.exists() else None
    index = {**meta, "file": name, "sha256": hashlib.sha256(blob).hexdigest(), "keep": keep}
    atomic_write(index_path, json.dumps(index, indent=1))
    if previous and not previous.get("keep") and previous["file"] != name:
        (directory / previous["file"]).unlink(missing_ok=True)
    return directory / name


class NoCheckpoint(ValueError):
    """The run stopped before it wrote its first checkpoint."""


def load_checkpoint(directory: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    index_path = directory / "latest.json"
    if not index_path.exists():
        if any(directory.glob("segment-*.msgpack")):
            raise ValueError(f"'{index_path}' is missing but checkpoints exist; restore it or "
                             "delete the checkpoints to restart the run")
        raise NoCheckpoint(f"no checkpoint in '{directory}': the run stopped before its first "
                           "checkpoint")
    try:
        index = json.loads(index_path.read_text())
        blob = (directory / index["file"]).read_bytes()
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint index '{index_path}' is unreadable ({e}); "
                         "delete it to resume from scratch") from None
    if hashlib.sha256(blob).hexdigest() != index["sha256"]:
        raise ValueError(f"checkpoint '{directory / index['file']}' is corrupt (checksum "
                         "mismatch); delete it and latest.json to restart the run")
    try:
        state = serialization.from_bytes(template, blob)
    except Exception as e:  # noqa: BLE001 - any decoding failure means the same thing
        raise ValueError(f"checkpoint '{directory / index['file']}' does not match this run "
                         f"({type(e).__name__}); was the config changed?") from None
    return state, index
