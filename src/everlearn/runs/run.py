"""A run's lifecycle: one agent on one scenario for a set of seeds, started, resumed or
continued as one path (`start_run`, `resume_run`, `run_or_resume`); the plan, checks, run
directory, segment loop and summary are modules of their own beside this one.

Run directory:
  config.yaml      the resolved config          run.json      scenario, versions, seeds
  metrics.jsonl    one line per evaluation, appended and flushed as the run goes
  checkpoints/     run state (msgpack) at each task end and every `checkpoint_every` evals
  summary.json     metrics per seed and aggregated (IQM, 95% bootstrap CI)
  report.html      the report, plus figures/*.png

The run advances in segments of `segment_steps` env steps per seed, evaluating every task after
each. `resume` reloads the newest checkpoint, drops log lines written after it, and continues:
the result equals that of an uninterrupted run with the same config.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import yaml

from everlearn.core.checkpoint import NoCheckpoint, load_checkpoint
from everlearn.core.errors import ConfigError
from everlearn.core.files import atomic_write
from everlearn.core.version import __version__
from everlearn.runs.checks import check_config, check_memory
from everlearn.runs.config import RunConfig
from everlearn.runs.directory import (
    default_run_dir,
    package_versions,
    read_json,
    refuse_edited_config,
    truncate_log,
)
from everlearn.runs.lock import LOCK_NAME, run_lock
from everlearn.runs.loop import console, run_segments
from everlearn.runs.plan import RunPlan, budget_note, load_config, make_plan
from everlearn.runs.prepare import make_datasets, score_sources, with_measured_scores
from everlearn.runs.summary import read_curves, write_summary
from everlearn.runs.tensorboard import require_tensorboard
from everlearn.scenarios.resolve import scenario_layout_for

# `make_plan`, `load_config`, `budget_note`, `check_config`, `check_memory`, `make_datasets`,
# `scenario_layout_for`, `read_curves` and `write_summary` moved to runs/plan.py, checks.py,
# prepare.py, scenarios/resolve.py and summary.py in the structural step (issue 29); re-exported here
# for one release.
__all__ = ["start_run", "resume_run", "run_or_resume", "make_recorder", "make_datasets",
           "make_plan", "load_config", "budget_note", "check_config", "check_memory",
           "scenario_layout_for", "read_curves", "write_summary"]


def start_run(config: RunConfig, run_dir: Path | None = None, *, quiet: bool = False,
              stop_after: int | None = None, tensorboard: bool = False,
              record: str | None = None) -> Path:
    """Validate everything, create the run directory, and run to the end (or `stop_after`
    segments, which leaves the directory as a kill after that checkpoint would);
    `tensorboard`: also write TensorBoard event files; `record`: a Minari namespace to record
    the run's transitions under (`everlearn.data.record`). Both are kept in run.json, so a
    resumed run goes on with them."""
    if tensorboard:
        require_tensorboard()
    plan = make_plan(config)  # fails before anything is written
    check_memory(plan)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config)
    recorder = make_recorder(plan, run_dir, record)
    if recorder is not None:
        recorder.check_new()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out '{run_dir}' is a file; give a directory path")
    if run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise ConfigError(f"run directory '{run_dir}' already exists and is not empty; "
                          "choose another --out or 'everlearn resume' it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory '{run_dir}': {e.strerror}") from None
    note = budget_note(plan)
    if note and not quiet:
        console.print(note, highlight=False, soft_wrap=True)
    sources = score_sources(plan)
    try:
        make_datasets(plan.scenario, plan.config, quiet)
        if not plan.scenario.scored:
            plan = with_measured_scores(plan, quiet)
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing half-written stays behind
        raise
    with run_lock(run_dir):  # one writer per run directory
        return _begin(plan, run_dir, sources, quiet=quiet, stop_after=stop_after,
                      tensorboard=tensorboard, recorder=recorder)


def make_recorder(plan: RunPlan, run_dir: Path, namespace: str | None):
    """The recorder of a run recording under `namespace` (`--record`); None when it does not."""
    if namespace is None:
        return None
    from everlearn.data.record import RunRecorder

    config = plan.config
    about = {"run": str(Path(run_dir).resolve()), "agent": config.agent,
             "methods": list(config.methods), "backend": config.backend}
    return RunRecorder(run_dir, namespace, plan.scenario, config.seeds,
                       list(plan.resolved.spaces), plan.resolved.layout,
                       config.evals_per_task, about)


def _begin(plan: RunPlan, run_dir: Path, sources: list[dict[str, str]], *, quiet: bool,
           stop_after: int | None, tensorboard: bool, recorder=None) -> Path:
    """Write the new run directory's config and run.json, then run from the initial state."""
    config = plan.config  # with `reference` on where the scores needed the reference runs
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    info = {
        "everlearn_version": __version__,
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "scenario": {
            "name": plan.scenario.name,
            "description": plan.scenario.description,
            "steps_per_task": plan.segment_steps * config.evals_per_task,
            "boundaries_visible": plan.scenario.boundaries_visible,
            "task_ids_visible": plan.scenario.task_ids_visible,
            "tasks": [t.describe() for t in plan.scenario.tasks],
        },
        # How each task's returns are normalised, and where the scores came from.
        "normalisation": {
            "random": [t.random_score for t in plan.scenario.tasks],
            "reference": [t.reference_score for t in plan.scenario.tasks],
            "source": sources,
        },
        "agent": config.agent,
        "backend": config.backend,
        "seeds": config.seeds,
        "evals_per_task": config.evals_per_task,
        "segment_steps": plan.segment_steps,
        # The config the run started with: resume refuses an edited config.yaml.
        "config": config.to_dict(),
        "tensorboard": tensorboard,
        "record": recorder.namespace if recorder is not None else None,
    }
    state = plan.trainer.init(config.seeds)
    buffer = getattr(state.agent, "buffer", None)
    if buffer is not None:  # off-policy agents: the replay buffer is allocated up front
        per_seed, capacity = buffer.nbytes // len(config.seeds), buffer.reward.shape[-1]
        info["replay_buffer"] = {"capacity": capacity, "bytes_per_seed": per_seed}
        if not quiet:
            console.print(f"replay buffer: {capacity:,} transitions, "
                          f"{per_seed / 2**20:,.1f} MiB per seed")
    atomic_write(run_dir / "run.json", json.dumps(info, indent=1))
    return run_segments(plan, run_dir, state, 0, quiet=quiet, stop_after=stop_after,
                    tensorboard=tensorboard, recorder=recorder)


def resume_run(run_dir: Path, *, quiet: bool = False, stop_after: int | None = None) -> Path:
    """Continue a run from its newest intact checkpoint; the result equals that of the
    uninterrupted run from every stopping point: before the first checkpoint (the run starts
    again from its config), at segment 0, mid-run, and while the summary was being written."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml)")
    with run_lock(run_dir):  # one writer per run directory
        info = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
        config = load_config(run_dir)
        if "config" in info:
            refuse_edited_config(run_dir, info["config"], config.to_dict())
        # The normalisation scores the run measured, if any.
        plan = make_plan(config, info.get("normalisation"))
        make_datasets(plan.scenario, plan.config, quiet)  # a recipe is made again where it is missing
        template = plan.trainer.init(plan.config.seeds)
        try:
            state, index = load_checkpoint(run_dir / "checkpoints", template)
        except NoCheckpoint:
            state = template
            if not quiet:
                console.print(f"{run_dir} stopped before its first checkpoint: starting it again")
            done = None
        except ValueError as e:
            raise ConfigError(str(e)) from None
        else:
            done = index["segment"]
            if "fallback" in index and not quiet:
                console.print(index["fallback"], highlight=False, soft_wrap=True)
        truncate_log(run_dir / "metrics.jsonl", done)
        start = done or 0
        if not quiet and done is not None:
            console.print(f"resuming {run_dir} from segment {start}/{plan.total_segments}")
        tensorboard = bool(info.get("tensorboard"))
        if tensorboard:
            require_tensorboard()
        recorder = make_recorder(plan, run_dir, info.get("record"))
        if recorder is not None:  # segments after the checkpoint are redone, and recorded again
            recorder.rollback(done)
            if done:
                recorder.flush(done)
        return run_segments(plan, run_dir, state, start, quiet=quiet, stop_after=stop_after,
                        tensorboard=tensorboard, recorder=recorder)


def run_or_resume(run_dir: Path, make_config: Callable[[], RunConfig], *,
                  quiet: bool = True, tensorboard: bool = False) -> dict:
    """The summary of the run in `run_dir`: read when it finished, resumed from its last
    checkpoint when it was interrupted, else started from `make_config()` (benchmarks and
    sweeps rerun with the same command keep finished runs and finish interrupted ones). A
    resumed run keeps the config it started with (resume refuses an edited one)."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        if (run_dir / "config.yaml").is_file():
            resume_run(run_dir, quiet=quiet)
        else:
            start_run(make_config(), run_dir, quiet=quiet, tensorboard=tensorboard)
    return read_json(run_dir / "summary.json")


