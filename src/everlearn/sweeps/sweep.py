"""Running a sweep: the sweep directory, the retry rule, progress, and resume.

Sweep directory:
  sweep.yaml      the sweep file as given         sweep.json   code version, command, cells
  status.json     every cell's status, attempts, error and time (rewritten as cells change)
  cells/NAME/     each cell's complete run directory (`everlearn report`/`resume` work on it)
  comparison.*    the comparison, written at the end (`everlearn compare`)

The same command again skips finished cells and resumes interrupted ones from their last
checkpoint (a resumed run's numbers equal an uninterrupted one's), so a killed sweep ends with
the comparison an uninterrupted sweep gives. A cell that fails is retried once, then recorded
as failed with its error, and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from everlearn.core.errors import ConfigError
from everlearn.core.files import atomic_write
from everlearn.core.version import __version__
from everlearn.runs.lock import LOCK_NAME, run_lock
from everlearn.sweeps.spec import Cell

console = Console(stderr=True)
ATTEMPTS = 2  # a failed cell is retried once


def code_version() -> dict[str, Any]:
    """everlearn's version, and the git commit when it runs from a checkout."""
    source = Path(__file__).resolve().parent
    version: dict[str, Any] = {"everlearn": __version__, "commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            version["commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "-C", str(source), "status", "--porcelain",
                                     "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            version["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _cell_record(cell: Cell) -> dict[str, Any]:
    """What the sweep directory records of a cell (sweep.json; `everlearn compare` reads it)."""
    return {"name": cell.name, "scenario": cell.scenario, "agent": cell.agent,
            "methods": cell.methods, "label": cell.label, "overrides": cell.overrides,
            "seeds": cell.seeds, "env_steps": cell.env_steps, "fine_tuning": cell.fine_tuning,
            "build_args": cell.build_args}


def _refuse_foreign_directory(sweep_dir: Path) -> None:
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise ConfigError(f"--out '{sweep_dir}' is a file; give a directory path")
    if (sweep_dir.is_dir() and not (sweep_dir / "sweep.json").is_file()
            and any(p.name != LOCK_NAME for p in sweep_dir.iterdir())):
        raise ConfigError(f"--out '{sweep_dir}' exists and is not a sweep directory; choose "
                          "another --out")


def _files_read(cells: list[Cell]) -> dict[str, str]:
    """sha256 of every scenario and config file the cells read: the cells' arguments name
    them by path, so an edited file would otherwise pass for the same sweep."""
    paths = set()
    for cell in cells:
        args = cell.build_args
        paths.update(p for p in (args.get("config_file"), args["overrides"]["scenario"])
                     if p and Path(p).is_file())
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in sorted(paths)}


def prepare_directory(sweep_dir: Path, sweep_text: str, cells: list[Cell]) -> dict[str, Any]:
    """Create the sweep directory, or check that an existing one holds this very sweep; the
    status of every cell (finished ones from their run directories)."""
    sweep_dir = Path(sweep_dir)
    _refuse_foreign_directory(sweep_dir)
    record = [_cell_record(c) for c in cells]
    info_path = sweep_dir / "sweep.json"
    version = code_version()
    files = _files_read(cells)
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        # The same sweep: the same cells built from the same arguments (other recorded fields
        # may grow with later versions without making an old sweep directory foreign).
        def identity(cells: list[dict]) -> list:
            return [(c["name"], c["build_args"]) for c in cells]

        if identity(info["cells"]) != identity(record):
            raise ConfigError(f"'{sweep_dir}' holds another sweep (its cells differ from this "
                              "sweep file's); choose another --out, or rerun its own sweep.yaml")
        edited = [p for p, digest in info.get("files", {}).items()
                  if files.get(p) != digest]
        if edited:
            raise ConfigError(f"'{edited[0]}' changed since '{sweep_dir}' started; its finished "
                              "cells used the old file: restore it, or choose another --out")
        if version["commit"] != info["code"]["commit"]:
            console.print(f"note: '{sweep_dir}' was started at commit {info['code']['commit']}"
                          f", resumed at {version['commit']}; sweep.json records both")
        info.setdefault("resumed", []).append(
            {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": version})
    else:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(sweep_dir / "sweep.yaml", sweep_text)
        info = {"everlearn_version": __version__, "code": version,
                "commit": version["commit"],
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["everlearn", *sys.argv[1:]]),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "python": platform.python_version()},
                "files": files, "cells": record}
    atomic_write(info_path, json.dumps(info, indent=1))
    (sweep_dir / "cells").mkdir(exist_ok=True)
    status_path = sweep_dir / "status.json"
    old = json.loads(status_path.read_text())["cells"] if status_path.is_file() else {}
    status = {}
    for cell in cells:
        run_dir = sweep_dir / "cells" / cell.name
        done = (run_dir / "summary.json").is_file()
        previous = old.get(cell.name, {})
        if done and previous.get("status") == "done":
            status[cell.name] = previous  # its attempts, times and node, as they were
            continue
        status[cell.name] = {
            "status": "done" if done else "pending",
            "attempts": 0, "error": None,
            "wall_time_s": previous.get("wall_time_s") if done else None,
            "resumed": (run_dir / "config.yaml").is_file() and not done,
        }
    return status


def _steps_done(run_dir: Path, cell: Cell) -> int:
    """Env steps (× seeds) a running cell has logged: the last evaluation line's step."""
    log = run_dir / "metrics.jsonl"
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode(errors="ignore").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"]) * len(cell.seeds)
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[cells]}  {task.fields[rate]} env steps/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet)


def run_cells(sweep_dir: Path, cells: list[Cell], status: dict[str, dict], executor: Any, *,
              quiet: bool = False, poll_s: float = 1.0) -> dict[str, dict]:
    """Run every cell not done through `executor` (LocalPool or RayCluster), retrying a failed
    one once; `status.json` follows every change. Returns the final status."""
    sweep_dir = Path(sweep_dir)
    by_name = {c.name: c for c in cells}
    status_path = sweep_dir / "status.json"

    def save() -> None:
        atomic_write(status_path, json.dumps({"executor": executor.describe(),
                                              "cells": status}, indent=1))

    # Cells wait here, not in the executor, so that "running" means running.
    queue = [c for c in cells if status[c.name]["status"] != "done"]
    total_steps = sum(c.env_steps for c in cells)
    done_steps = sum(c.env_steps for c in cells if status[c.name]["status"] == "done")
    running: dict[Any, Cell] = {}
    started = time.perf_counter()
    base_steps = done_steps  # env steps finished before this invocation: not in the rate

    def counts() -> str:
        states = [s["status"] for s in status.values()]
        return (f"cells {states.count('done')}/{len(cells)} done, {len(running)} running, "
                f"{states.count('failed')} failed")

    def fill() -> None:
        while queue and len(running) < executor.capacity:
            submit(queue.pop(0))

    def submit(cell: Cell) -> None:
        entry = status[cell.name]
        entry.update(status="running", attempts=entry["attempts"] + 1)
        entry["times"] = {"submitted": time.time()}
        running[executor.submit(cell.to_dict(), sweep_dir / "cells" / cell.name)] = cell

    with _progress(quiet) as progress:
        bar = progress.add_task("sweep", total=total_steps or 1, completed=done_steps,
                                cells=counts(), rate="-")
        fill()
        save()
        while running:
            for handle in executor.wait(list(running), timeout=poll_s):
                cell = running.pop(handle)
                outcome = executor.outcome(handle, sweep_dir / "cells" / cell.name)
                entry = status[cell.name]
                # Epoch seconds of the last attempt: the executor's overhead is the gap between
                # submitted and started, and between ended and received (Ray's shipping).
                entry["times"].update(started=outcome.get("started_at"),
                                      ended=outcome.get("ended_at"), received=time.time())
                if outcome.get("node"):  # where a Ray task ran
                    entry["node"] = outcome["node"]
                if outcome["ok"]:
                    entry.update(status="done", error=None,
                                 wall_time_s=outcome.get("wall_time_s"))
                    done_steps += cell.env_steps
                elif entry["attempts"] < ATTEMPTS:
                    if not quiet:
                        console.print(f"cell {cell.name} failed ({outcome['error']}); "
                                      "retrying it once")
                    entry.update(status="pending", error=outcome["error"])
                    queue.insert(0, cell)
                else:
                    entry.update(status="failed", error=outcome["error"])
                    if not quiet:
                        console.print(f"[red]cell {cell.name} failed twice:[/] "
                                      f"{outcome['error']}", highlight=False)
                fill()
                save()
                if outcome["ok"] and not quiet and not console.is_terminal:  # logs: no bar
                    console.print(f"{time.strftime('%H:%M:%S')} {cell.name} done "
                                  f"({counts()})", highlight=False, soft_wrap=True)
            live = sum(_steps_done(sweep_dir / "cells" / c.name, c) for c in running.values()
                       ) if executor.reports_steps else 0
            elapsed = time.perf_counter() - started
            rate = (done_steps + live - base_steps) / elapsed if elapsed > 0 else 0.0
            progress.update(bar, completed=done_steps + live, cells=counts(),
                            rate=f"{rate:,.0f}" if rate else "-")
    return status


def interrupted(status: dict[str, dict], sweep_dir: Path) -> None:
    """Ctrl-C: running cells are recorded as interrupted (the rerun resumes them)."""
    for entry in status.values():
        if entry["status"] == "running":
            entry["status"] = "interrupted"
    path = Path(sweep_dir) / "status.json"
    if path.is_file():
        data = json.loads(path.read_text())
        data["cells"] = status
        atomic_write(path, json.dumps(data, indent=1))


def run_sweep(sweep_file: Path, out: Path | None = None, *, executor: str = "local",
              workers: int | None = None, address: str | None = None,
              cpus_per_cell: float = 1.0, skip_invalid: bool = False,
              baseline: str | None = None, tensorboard: bool = False,
              quiet: bool = False) -> tuple[Path, dict[str, dict]]:
    """Check every cell, then run the ones not finished; returns the sweep directory and the
    status of every cell. Nothing is written when a cell is invalid (unless `skip_invalid`)."""
    from everlearn.sweeps.spec import check_cells, expand, read_sweep_file

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor '{executor}' is not one of: local, ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: give at least 1")
    if tensorboard:
        from everlearn.runs.tensorboard import require_tensorboard

        require_tensorboard()
    sweep_file = Path(sweep_file)
    sweep = read_sweep_file(sweep_file)
    cells, problems = check_cells(expand(sweep, sweep_file))
    for problem in problems:  # one line each, then the verdict
        console.print(f"{'skipped' if skip_invalid else 'invalid'}: {problem}",
                      highlight=False, soft_wrap=True)
    if problems and not skip_invalid:
        raise ConfigError(f"{len(problems)} invalid cell(s) (above), nothing ran; fix the sweep "
                          "file, or run the others with --skip-invalid")
    if not cells:
        raise ConfigError(f"sweep file '{sweep_file}' has no valid cell")
    several_agents = len({c.agent for c in cells}) > 1
    rows = list(dict.fromkeys(f"{c.agent}/{c.label}" if several_agents else c.label
                              for c in cells))  # the comparison's row names
    if baseline is not None and baseline not in rows:
        raise ConfigError(f"--baseline '{baseline}' is not a row of this sweep; the rows are: "
                          + ", ".join(f"'{r}'" for r in rows))
    sweep_dir = Path(out) if out else Path("sweeps") / sweep_file.stem
    _refuse_foreign_directory(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(sweep_dir):  # one sweep process per sweep directory
        status = prepare_directory(sweep_dir, sweep_file.read_text(), cells)
        devices = _cpu_devices_per_cell(sweep_dir, executor, workers, len(cells), cpus_per_cell)
        if executor == "ray":
            from everlearn.sweeps.ray_cluster import RayCluster

            pool = RayCluster(address or "auto", cpus_per_cell, devices, tensorboard=tensorboard)
        else:
            from everlearn.sweeps.local import LocalPool, default_workers

            pool = LocalPool(workers or default_workers(len(cells)), devices,
                             tensorboard=tensorboard)
        if not quiet:
            todo = [name for name, s in status.items() if s["status"] != "done"]
            resumed = sum(status[name]["resumed"] for name in todo)
            console.print(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} "
                          f"finished earlier, {resumed} to resume; {pool.describe()}",
                          highlight=False)
        try:
            status = run_cells(sweep_dir, cells, status, pool, quiet=quiet)
        except BaseException:
            # Ctrl-C, or an error of the machinery itself: stop the workers (their runs keep
            # their checkpoints) and record the running cells as interrupted.
            pool.close(cancel=True)
            interrupted(status, sweep_dir)
            raise
        pool.close()
    return sweep_dir, status


def _cpu_devices_per_cell(sweep_dir: Path, executor: str, workers: int | None,
                          num_cells: int, cpus_per_cell: float) -> int:
    """XLA CPU devices per cell, chosen by the sweep's first invocation and kept by every
    later one: the compiled code, and so the numbers, depend on the count, and a resumed run
    must go on with the code it started with."""
    from everlearn.sweeps.local import default_workers

    info = json.loads((sweep_dir / "sweep.json").read_text())
    if "cpu_devices_per_cell" not in info:
        if executor == "ray":
            info["cpu_devices_per_cell"] = max(1, int(cpus_per_cell))
        else:
            info["cpu_devices_per_cell"] = max(
                1, (os.cpu_count() or 1) // (workers or default_workers(num_cells)))
        atomic_write(sweep_dir / "sweep.json", json.dumps(info, indent=1))
    return info["cpu_devices_per_cell"]
