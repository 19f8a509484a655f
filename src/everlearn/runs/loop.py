"""The segment loop of a run: train a segment, check it, log its evaluation, hand it to the
observers (checkpoint, progress, TensorBoard, recording), cross task boundaries; then the
reference runs, the summary and the report. Stopping (divergence, a failing env, an
interrupt) keeps the last good checkpoint and says how to resume."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from everlearn.core.checkpoint import save_checkpoint
from everlearn.core.errors import EnvFailed, RunStopped
from everlearn.report import write_report
from everlearn.runs.failures import divergence, write_error_log
from everlearn.runs.plan import RunPlan
from everlearn.runs.summary import write_summary
from everlearn.runs.tensorboard import TensorBoardLog
from everlearn.training.reference import normalise_reference, reference_curves

console = Console(stderr=True)


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  {task.fields[rate]:>7} steps/s  last eval {task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


@contextlib.contextmanager
def _interrupts_as_keyboard_interrupt():
    """SIGTERM (a cluster's preemption, `kill`) stops a run as Ctrl-C does: with a checkpoint
    of its finished segments and a clean exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_segments(plan: RunPlan, run_dir: Path, state: Any, start: int, *, quiet: bool,
             stop_after: int | None, tensorboard: bool = False, recorder=None) -> Path:
    config, scenario, trainer = plan.config, plan.scenario, plan.trainer
    seeds, seg_steps = config.seeds, plan.segment_steps
    log_path = run_dir / "metrics.jsonl"
    # Wall time counts on from what the killed process had spent (the last logged evaluation).
    spent = 0.0
    if start > 0:
        spent = json.loads(log_path.read_text().splitlines()[-1])["wall_time"]
    t_start = time.perf_counter() - spent
    live_log = (TensorBoardLog(run_dir, [t.name for t in scenario.tasks], start) if tensorboard
                else None)

    def log_eval(segment: int, state: Any, returns: np.ndarray, train: dict) -> str:
        normalised = scenario.normalise(returns)
        record = {
            "kind": "eval", "eval_index": segment, "step": segment * seg_steps,
            "task_index": max(plan.task_of(segment), 0),
            "returns": returns.tolist(), "normalised": normalised.tolist(),
            "train": {k: np.asarray(v).tolist() for k, v in train.items()},
        }
        if config.diagnostics:
            record["diagnostics"] = trainer.diagnostics(state)
        record["wall_time"] = time.perf_counter() - t_start
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if live_log is not None:
            live_log.write(record)
        return f"{np.clip(normalised, 0, 1).mean():.2f}"

    # The newest checkpoint's segment (None: none yet), and the newest finished segment with
    # its state, kept as one tuple so that an interrupt never sees one without the other.
    saved: int | None = start if start > 0 else None
    finished: tuple[int, Any] | None = (start, state) if start > 0 else None

    def checkpoint(segment: int, state: Any) -> None:
        nonlocal saved
        at_task_end = segment % config.evals_per_task == 0
        save_checkpoint(run_dir / "checkpoints", state,
                        {"segment": segment, "step": segment * seg_steps}, keep=at_task_end)
        saved = segment

    def where(segment: int) -> str:
        task = plan.task_of(max(segment, 1))
        return f"task {task + 1} '{scenario.tasks[task].name}'"

    def stopped(what: str, advice: str, error: BaseException | None = None,
                exit_code: int = 1) -> RunStopped:
        kept = ("it stopped before its first checkpoint" if saved is None else
                f"its last good checkpoint is segment {saved} (step {saved * seg_steps:,})")
        message = f"{what}; {kept}; {advice}"
        log = write_error_log(run_dir, message, error)
        return RunStopped(f"{message} (details: {log})", exit_code)

    resume = f"'everlearn resume {run_dir}' continues from there"
    phase, segment, reference = "training", start, None
    closing_log = contextlib.closing(live_log) if live_log else contextlib.nullcontext()
    with progress_bar(quiet) as progress, _interrupts_as_keyboard_interrupt(), closing_log:
        total = plan.total_segments * seg_steps
        bar = progress.add_task("start", total=total, completed=start * seg_steps,
                                rate="-", last="-")
        try:
            if start == 0:
                last = log_eval(0, state, trainer.evaluate(state, seeds, 0), {})
                checkpoint(0, state)
                finished = (0, state)
                progress.update(bar, last=last)
            for segment in range(start + 1, plan.total_segments + 1):
                if stop_after is not None and segment > start + stop_after:
                    return run_dir
                task = plan.task_of(segment)
                progress.update(bar, description=f"task {task + 1}/{scenario.num_tasks} "
                                                 f"{scenario.tasks[task].name}")
                t0 = time.perf_counter()
                drift = (scenario.drift_positions(segment, config.evals_per_task)
                         if scenario.drift else None)
                if recorder is None:
                    state, train_metrics = trainer.train_segment(state, task, drift)
                else:
                    state, train_metrics, transitions = trainer.record_segment(state, task,
                                                                               drift)
                diverged = divergence(train_metrics, state.agent.params, len(seeds))
                if diverged:  # nothing of this segment is logged or checkpointed
                    what, bad = diverged
                    raise stopped(
                        f"training diverged in the segment ending at step "
                        f"{segment * seg_steps:,} ({where(segment)}): {what} became NaN or "
                        f"infinite for seed{'s' if len(bad) > 1 else ''} "
                        f"{', '.join(str(seeds[i]) for i in bad)}",
                        f"lower the learning rate ({config.agent}.learning_rate) and start a "
                        "new run")
                rate = seg_steps * len(seeds) / (time.perf_counter() - t0)
                if recorder is not None:
                    recorder.add(segment, task, transitions)
                last = log_eval(segment, state, trainer.evaluate(state, seeds, segment),
                                train_metrics)
                task_ends = segment % config.evals_per_task == 0 and task + 1 < scenario.num_tasks
                if task_ends and scenario.boundaries_visible and config.acts_at_boundaries():
                    # the methods' task hooks, and the agent's own (an exploration restart)
                    state = trainer.task_boundary(state, task, task + 1)
                finished = (segment, state)
                written = []  # the datasets of a recorded task, once its end is checkpointed
                if segment % config.evals_per_task == 0 or segment % config.checkpoint_every == 0:
                    checkpoint(segment, state)
                    written = recorder.flush(segment) if recorder is not None else []
                progress.update(bar, advance=seg_steps, rate=f"{rate:,.0f}", last=last)
                if not quiet and not console.is_terminal:  # logs get a line where a bar can't draw
                    console.print(f"step {segment * seg_steps:>9,} task {task + 1} "
                                  f"{rate:>9,.0f} steps/s  mean normalised eval {last}")
                if written and not quiet:
                    console.print(f"recorded task {task + 1}: {len(written)} Minari dataset(s) "
                                  f"under {recorder.namespace}/", highlight=False)

            if config.reference:
                phase = "the reference runs"
                ref_bar = progress.add_task("reference runs",
                                            total=plan.total_segments * seg_steps,
                                            rate="-", last="-")
                reference = normalise_reference(scenario, reference_curves(
                    plan.reference_trainer, config, scenario, seg_steps,
                    on_segment=lambda task, e: progress.update(ref_bar, advance=seg_steps),
                ))
        except EnvFailed as e:
            if phase != "training":
                at = f"during {phase}"
            elif e.step is None:
                at = f"while evaluating after step {segment * seg_steps:,} ({where(segment)})"
            else:
                at = f"at step {(segment - 1) * seg_steps + e.step:,} ({where(segment)})"
            raise stopped(f"{e} {at}", f"fix the env; {resume}", e.__cause__) from None
        except KeyboardInterrupt:
            if finished is not None and (saved is None or finished[0] > saved):
                checkpoint(*finished)  # keep the work of every finished segment
            raise stopped(f"interrupted during {phase}", resume, exit_code=130) from None

    write_summary(run_dir, plan, reference, wall_time_s=time.perf_counter() - t_start)
    (run_dir / "error.log").unlink(missing_ok=True)  # a stop that resume has since made good
    report = write_report(run_dir)
    if not quiet:
        console.print(f"report: {report}")
    return run_dir

