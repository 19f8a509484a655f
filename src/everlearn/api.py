"""The Python API: `everlearn.run`, `resume`, `load_run`, `sweep` and `RunResult`, the
command line's `run`, `resume` and `sweep` for notebooks and scripts.

    import everlearn

    result = everlearn.run("cartpole-contexts", "ppo", seeds="0-4",
                           settings={"ppo.learning_rate": 3e-4})
    result.aggregate          # one row per metric: iqm, ci_low, ci_high
    result.curves             # long form: seed, eval_index, step, task, normalised, return

Each call builds the config exactly as `everlearn run` does (`settings` are its `--set
key=value` pairs) and writes the same run directory; errors are the same one-line
`ConfigError`s and `ValueError`s.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["RunResult", "SweepResult", "load_run", "resume", "run", "sweep"]


def _set_value(value: Any) -> str:
    """`value` as the text after `--set key=`, which the config reads back (YAML) as `value`
    itself: 1e-05 as a float (PyYAML reads `1e-05` as text), "3" as text, [1, 2] as a list."""
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _sets(settings: Mapping[str, Any] | None) -> list[str]:
    return [f"{key}={_set_value(value)}" for key, value in (settings or {}).items()]


def run(scenario: str | os.PathLike, agent: str | None = None, methods: Iterable[str] = (),
        seeds: str | int | Iterable[int] | None = None, settings: Mapping[str, Any] | None = None,
        out: str | os.PathLike | None = None, *, backend: str | None = None,
        reference: bool | None = None, preset: str | None = None,
        quiet: bool = False) -> RunResult:
    """Run `agent` through `scenario` (a built-in name, or a scenario YAML file) and return
    the finished run. `agent`: ppo, dqn, sac, ... (`everlearn list`; None: ppo, or the
    preset's); `methods`: continual-learning methods to compose; `seeds`: "0-4", "0,3,7",
    [0, 3, 7] or 3 (seed 3 alone; None: seed 0, or the preset's); `settings`: `{"ppo.learning_rate": 3e-4,
    "steps_per_task": 50_000}`, as `--set` pairs; `out`: the run directory (default
    runs/<scenario>-<agent>-<backend>-<time>); `preset`: a published protocol's settings.
    An interrupted run is finished with `everlearn.resume(run_dir)`."""
    from everlearn.runs.config import build_config
    from everlearn.runs.run import start_run

    if isinstance(methods, str):  # one method by name, not its letters
        methods = [methods]
    if seeds is not None and not isinstance(seeds, (str, int)):
        seeds = list(seeds)
    config = build_config(None, {"scenario": os.fspath(scenario), "agent": agent,
                                 "seeds": seeds, "backend": backend,
                                 "reference": reference, "methods": list(methods) or None},
                          _sets(settings), preset)
    run_dir = start_run(config, None if out is None else Path(out), quiet=quiet)
    return load_run(run_dir)


def resume(run_dir: str | os.PathLike, *, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its newest checkpoint and return the finished run."""
    from everlearn.runs.run import resume_run

    run_dir = Path(run_dir)
    resume_run(run_dir, quiet=quiet)
    return load_run(run_dir)


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """The finished run in `run_dir` (its summary.json and metrics.jsonl)."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        if (run_dir / "config.yaml").is_file():
            raise ValueError(f"'{run_dir}' is an unfinished run (no summary.json); "
                             f"everlearn.resume('{run_dir}') finishes it")
        raise ValueError(f"'{run_dir}' is not a run directory (no summary.json); give the "
                         "directory everlearn.run(..., out=...) wrote")
    return RunResult(run_dir, json.loads(summary_path.read_text()))


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, summary.json, and its numbers as pandas DataFrames."""

    run_dir: Path
    summary: dict

    def __repr__(self) -> str:
        s = self.summary
        return (f"RunResult({str(self.run_dir)!r}: {s['scenario']}, {s['agent']}, "
                f"{len(s['seeds'])} seed(s))")

    @property
    def seeds(self) -> list[int]:
        return list(self.summary["seeds"])

    @property
    def tasks(self) -> list[str]:
        return list(self.summary["tasks"])

    @property
    def aggregate(self) -> pd.DataFrame:
        """One row per metric: its interquartile mean over seeds and 95% bootstrap CI (iqm,
        ci_low, ci_high)."""
        frame = pd.DataFrame.from_dict(self.summary["aggregate"], orient="index")
        frame.index.name = "metric"
        return frame

    @property
    def per_seed(self) -> pd.DataFrame:
        """One row per seed, one column per metric."""
        return pd.DataFrame(self.summary["per_seed"],
                            index=pd.Index(self.seeds, name="seed"))

    @property
    def performance_matrix(self) -> pd.DataFrame:
        """Long form: seed, after_task, task, performance (the normalised score on `task`
        after training on `after_task`, clipped to [0, 1])."""
        tasks = self.tasks
        rows = [(seed, tasks[k], tasks[i], value)
                for seed, matrix in zip(self.seeds, self.summary["performance_matrix"])
                for k, row in enumerate(matrix) for i, value in enumerate(row)]
        return pd.DataFrame(rows, columns=["seed", "after_task", "task", "performance"])

    @property
    def curves(self) -> pd.DataFrame:
        """Long form, from metrics.jsonl: seed, eval_index, step, task, normalised, return
        (one row per evaluation, seed and task)."""
        return self._curves.copy()

    @cached_property
    def _curves(self) -> pd.DataFrame:
        tasks, rows = self.tasks, []
        lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        for record in (json.loads(line) for line in lines if line.strip()):
            if record.get("kind") != "eval":
                continue
            for s, seed in enumerate(self.seeds):
                for i, task in enumerate(tasks):
                    rows.append((seed, record["eval_index"], record["step"], task,
                                 record["normalised"][s][i], record["returns"][s][i]))
        return pd.DataFrame(rows, columns=["seed", "eval_index", "step", "task",
                                           "normalised", "return"])

    @property
    def report(self) -> Path:
        """The run's HTML report."""
        return self.run_dir / "report.html"


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its directory, the status of every cell (status.json's "cells"),
    the comparison files and comparison.json's contents (None when every cell failed)."""

    sweep_dir: Path
    status: dict
    comparison: dict | None
    comparison_paths: tuple[Path, ...]

    @property
    def failed(self) -> dict[str, str]:
        """The cells that failed twice, with their errors."""
        return {name: s["error"] for name, s in self.status.items() if s["status"] == "failed"}

    def cell(self, name: str) -> RunResult:
        """The run of one cell (a name of `status`)."""
        return load_run(self.sweep_dir / "cells" / name)


def _absolute_paths(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep given as a dict names its files relative to the working directory; the file
    it is written to lies elsewhere, and a sweep file's paths are relative to the file."""
    spec = dict(spec)

    def absolute(name: Any) -> Any:
        if isinstance(name, (str, os.PathLike)) and Path(name).is_file():
            return str(Path(name).resolve())
        return name

    if "config" in spec:
        spec["config"] = absolute(spec["config"])
    if isinstance(spec.get("scenarios"), (list, tuple)):
        spec["scenarios"] = [absolute(s) for s in spec["scenarios"]]
    return spec


def sweep(file_or_dict: str | os.PathLike | Mapping[str, Any],
          out: str | os.PathLike | None = None, *, executor: str = "local",
          workers: int | None = None, **options: Any) -> SweepResult:
    """Run a sweep (a sweep YAML file, or the same as a dict; docs/sweeps.md) and write its
    comparison, as `everlearn sweep` does; the same call again resumes it. `out`: the sweep
    directory (default sweeps/<file name>; needed for a dict). `options`: run_sweep's
    address, cpus_per_cell, skip_invalid, baseline, tensorboard, quiet. Cells that failed
    twice are in `.failed`; a comparison is written when any cell finished."""
    from everlearn.core.errors import ConfigError
    from everlearn.report import write_comparison
    from everlearn.sweeps import run_sweep

    if isinstance(file_or_dict, Mapping):
        if out is None:
            raise ConfigError("a sweep given as a dict needs out= (its sweep directory)")
        with tempfile.TemporaryDirectory() as tmp:
            sweep_file = Path(tmp) / f"{Path(out).name or 'sweep'}.yaml"
            sweep_file.write_text(yaml.safe_dump(_absolute_paths(file_or_dict),
                                                 sort_keys=False))
            sweep_dir, status = run_sweep(sweep_file, Path(out), executor=executor,
                                          workers=workers, **options)
    else:
        sweep_dir, status = run_sweep(Path(file_or_dict), None if out is None else Path(out),
                                      executor=executor, workers=workers, **options)
    comparison, paths = None, ()
    if any(s["status"] != "failed" for s in status.values()):
        paths = tuple(write_comparison(sweep_dir, options.get("baseline")))
        json_path = next(p for p in paths if p.suffix == ".json")
        comparison = json.loads(json_path.read_text())
    return SweepResult(Path(sweep_dir), status, comparison, paths)
