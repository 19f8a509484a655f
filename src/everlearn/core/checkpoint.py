"""Checkpoints: the run state as msgpack (flax.serialization, no pickle) plus a JSON index.

Files are written to a temporary name and renamed, so a kill never leaves a half-written
checkpoint; `latest.json` is replaced last and names the newest complete checkpoint. Each
checkpoint's SHA-256 is also kept beside it (`segment-N.msgpack.sha256`), so that where the
newest checkpoint or `latest.json` is damaged, `load_checkpoint` falls back to the newest intact
older one and says so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from flax import serialization

from everlearn.core.files import atomic_write


def save_checkpoint(directory: Path, state: Any, meta: dict[str, Any], keep: bool) -> Path:
    """Write `state` and point `latest.json` at it; drop the previous non-kept checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"segment-{meta['segment']:05d}.msgpack"
    blob = serialization.to_bytes(state)
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write(directory / name, blob)
    atomic_write(directory / f"{name}.sha256", digest)
    index_path = directory / "latest.json"
    previous = _read_index(index_path)
    index = {**meta, "file": name, "sha256": digest, "keep": keep}
    atomic_write(index_path, json.dumps(index, indent=1))
    if previous and not previous.get("keep") and previous.get("file") not in (None, name):
        (directory / previous["file"]).unlink(missing_ok=True)
        (directory / f"{previous['file']}.sha256").unlink(missing_ok=True)
    return directory / name


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return index if isinstance(index, dict) else None


class NoCheckpoint(ValueError):
    """The run stopped before it wrote its first checkpoint."""


def load_checkpoint(directory: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """The newest intact checkpoint and its index. Where the one `latest.json` names is damaged
    (or `latest.json` itself is), the newest older intact one, with `index["fallback"]`: one
    line saying what was wrong and where the run resumes instead."""
    index_path = directory / "latest.json"
    files = sorted(directory.glob("segment-*.msgpack"), reverse=True)
    if not index_path.exists() and not files:
        raise NoCheckpoint(f"no checkpoint in '{directory}': the run stopped before its first "
                           "checkpoint")
    try:
        return _load_latest(directory, template)
    except _Mismatch as e:  # the run's config changed: no older checkpoint fits either
        raise ValueError(str(e)) from None
    except ValueError as damage:
        named = (_read_index(index_path) or {}).get("file")
        for path in files:
            if path.name == named:
                continue
            state = _load_intact(path, template)
            if state is not None:
                segment = int(path.stem.split("-")[1])
                return state, {"segment": segment, "file": path.name,
                               "fallback": f"{damage}; resuming from the newest intact "
                                           f"checkpoint, segment {segment}, instead"}
        raise damage


def load_checkpoint_file(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """One named checkpoint (`<run>/checkpoints/segment-N.msgpack`), checked against its
    checksum: its state and {"segment", "file"}; one line where it is damaged or another
    run's."""
    path = Path(path)
    state = _load_intact(path, template)
    if state is None:
        raise ValueError(f"checkpoint '{path}' is damaged or holds another run's state; "
                         "pick another of the run's checkpoints")
    return state, {"segment": int(path.stem.split("-")[1]), "file": path.name}


class _Mismatch(ValueError):
    """The checkpoint is intact but holds another run's state structure."""


def _load_latest(directory: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    index_path = directory / "latest.json"
    if not index_path.exists():
        raise ValueError(f"'{index_path}' is missing")
    try:
        index = json.loads(index_path.read_text())
        blob = (directory / index["file"]).read_bytes()
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint index '{index_path}' is unreadable ({e}); "
                         "delete it to resume from scratch") from None
    if hashlib.sha256(blob).hexdigest() != index["sha256"]:
        raise ValueError(f"checkpoint '{directory / index['file']}' is corrupt (checksum "
                         "mismatch); delete it and latest.json to restart the run")
    try:
        state = serialization.from_bytes(template, blob)
    except Exception as e:  # noqa: BLE001 - any decoding failure means the same thing
        raise _Mismatch(f"checkpoint '{directory / index['file']}' does not match this run "
                        f"({type(e).__name__}); was the config changed?") from None
    return state, index


def _load_intact(path: Path, template: Any) -> Any | None:
    """The state in checkpoint `path` if its recorded checksum (where kept) matches and it
    decodes, else None."""
    try:
        blob = path.read_bytes()
        digest = Path(f"{path}.sha256")
        if digest.exists() and digest.read_text().strip() != hashlib.sha256(blob).hexdigest():
            return None
        return serialization.from_bytes(template, blob)
    except Exception:  # noqa: BLE001 - unreadable or undecodable: not intact
        return None
