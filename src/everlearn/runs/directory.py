"""The run directory: its name, the versions it records, the log kept in step with the newest
checkpoint on resume, and the refusal of a config edited after the run started."""

from __future__ import annotations

import json
import platform
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import jax

from everlearn.core.errors import ConfigError
from everlearn.core.files import atomic_write
from everlearn.runs.config import RunConfig


def package_versions() -> dict[str, str]:
    names = ["jax", "jaxlib", "flax", "optax", "gymnax", "gymnasium", "numpy", "pydantic",
             "rliable"]
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["jax_devices"] = ", ".join(str(d) for d in jax.devices())
    return out


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.scenario}-{config.agent}-{config.backend}-{stamp}"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"'{path}' is damaged ({e}); it cannot be resumed") from None


def refuse_edited_config(run_dir: Path, started: dict, now: dict) -> None:
    """A resumed run must go on with the config it started with: its results would otherwise
    belong to neither config."""

    def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    before, after = flat(started), flat(now)
    keys = [key for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]
    if keys and all(key not in before for key in keys):  # settings this everlearn added since
        raise ConfigError(f"'{run_dir}' was started by an earlier everlearn, without the settings "
                          f"{', '.join(keys)}; finish it with the version that started it, or "
                          "start it again with 'everlearn run'")
    changed = [f"{key}: {before.get(key, '(absent)')} -> {after.get(key, '(absent)')}"
               for key in keys]
    if changed:
        raise ConfigError(f"'{run_dir / 'config.yaml'}' was edited after the run started "
                          f"({'; '.join(changed)}); restore it, or start a new run with the "
                          "new config")


def truncate_log(log: Path, done: int | None) -> None:
    """Keep exactly one log line per evaluation 0..`done`, the ones checkpoint `done` follows:
    evaluations after it belong to work that is being redone, a line torn by the kill is
    dropped, and none is kept from segment 0 (its checkpoint is the initial state, whose
    evaluation `run_segments` writes again) or without a checkpoint (`done` None)."""
    kept: list[str] = []
    if done and not log.is_file():
        raise ConfigError(f"'{log}' is missing: the evaluations up to checkpoint segment {done} "
                          "cannot be rebuilt; start the run again with 'everlearn run'")
    if done:
        seen: set[int] = set()
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            eval_index = record.get("eval_index")
            if eval_index is not None and eval_index <= done and eval_index not in seen:
                seen.add(eval_index)
                kept.append(line)
        if seen != set(range(done + 1)):
            missing = sorted(set(range(done + 1)) - seen)
            raise ConfigError(f"'{log}' lacks evaluations {missing} that checkpoint segment "
                              f"{done} follows; the log cannot be resumed")
    atomic_write(log, "".join(line + "\n" for line in kept))

