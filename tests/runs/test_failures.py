"""A run that cannot go on (a diverged loss, a failing env, Ctrl-C or SIGTERM) stops with one
line naming what happened and where, keeps its last good checkpoint, and writes nothing wrong
into the log or the summary (issue 15, part 5). Each of these used to be a traceback, a run
that "succeeded" with NaN losses, or a lost segment."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.core.errors import RunStopped
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import resume_run, start_run

HERE = Path(__file__).parent
FAULTY = str(HERE / "scenario_files" / "faulty.yaml")
# The shapes of test_run_end_to_end.py: its compiled programs serve these runs too.
SMALL = [
    "steps_per_task=1024", "evals_per_task=2", "eval_episodes=2", "checkpoint_every=1",
    "ppo.num_envs=4", "ppo.num_steps=32", "ppo.num_epochs=2",
]


def _config(scenario: str = "cartpole-contexts", extra: tuple[str, ...] = ()):
    return build_config(None, {"scenario": scenario, "agent": "ppo", "seeds": "0-1"},
                        [*SMALL, *extra])


@contextlib.contextmanager
def fault(mode: str):
    """Make task 2's training envs in the faulty scenario fail during task 2: each seed has
    its own 4 training envs (the seeds step together), each taking 128 steps per segment (PPO,
    4 envs x 32 steps x 4 updates), so 128 in segment 3 and 256 by the end of segment 4, where
    the fault after 200 comes; its evaluation envs take one episode of at most 20 steps per
    evaluation."""
    from everlearn.scenarios import get_scenario

    get_scenario(FAULTY)  # its folder goes on sys.path, as a run's import of the env needs
    faulty = importlib.import_module("faulty")
    faulty.FAULT.update(mode=mode, tilt=0.5, after=200,
                        generation=faulty.FAULT["generation"] + 1)
    try:
        yield
    finally:
        faulty.FAULT.update(mode=None)


def _eval_indices(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["eval_index"] for line in lines]


def _latest(run_dir: Path) -> int:
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["segment"]


def _on_segment(monkeypatch, config, segment: int, action):
    """Call `action(state, metrics)` on the result of training segment `segment` (1-based)."""
    trainer = make_plan(config).trainer  # the cached trainer start_run uses
    original, calls = trainer.train_segment, []

    def train_segment(state, task, drift=None):
        calls.append(task)
        state, metrics = original(state, task, drift)
        return action(state, metrics) if len(calls) == segment else (state, metrics)

    monkeypatch.setattr(trainer, "train_segment", train_segment)


def test_a_nan_loss_stops_the_run_naming_step_task_and_loss(tmp_path, monkeypatch):
    config = _config()

    def poison_seed_1(state, metrics):
        params = jax.tree.map(lambda x: x.at[1].set(jnp.nan), state.agent.params)
        metrics = {**metrics, "value_loss": np.array([0.5, np.nan])}
        return state.replace(agent=state.agent.replace(params=params)), metrics

    _on_segment(monkeypatch, config, 3, poison_seed_1)
    with pytest.raises(RunStopped) as stop:
        start_run(config, tmp_path / "run", quiet=True)
    message = str(stop.value)
    assert "training diverged in the segment ending at step 1,536 (task 2 'long-pole-inverted')" in message
    assert "value_loss became NaN or infinite for seed 1" in message
    assert "last good checkpoint is segment 2 (step 1,024)" in message
    assert "\n" not in message and stop.value.exit_code == 1
    assert _eval_indices(tmp_path / "run") == [0, 1, 2]  # nothing of segment 3
    assert _latest(tmp_path / "run") == 2
    assert not (tmp_path / "run" / "summary.json").exists()
    assert (tmp_path / "run" / "error.log").read_text().startswith("training diverged")


def test_nan_rewards_from_an_env_stop_the_run(tmp_path):
    """A real NaN, from the data: the env's rewards turn NaN during task 2."""
    with fault("nan"):
        with pytest.raises(RunStopped, match=r"ending at step 2,048 \(task 2 'tilted'\): \w+ "
                                             r"became NaN or infinite for seed"):
            start_run(_config(FAULTY), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "summary.json").exists()
    assert all(np.isfinite(json.loads(line)["returns"]).all()
               for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())


def test_an_exception_in_a_users_env_names_env_task_and_step_and_the_run_resumes(tmp_path):
    config = _config(FAULTY)
    with fault("raise"):
        with pytest.raises(RunStopped) as stop:
            start_run(config, tmp_path / "run", quiet=True)
    message = str(stop.value)
    assert ("env 'faulty:Faulty' of task 'tilted' raised RuntimeError: sensor offline at step 1,"
            in message and "(task 2 'tilted')" in message)
    assert "'everlearn resume" in message and "\n" not in message
    assert "sensor offline" in (tmp_path / "run" / "error.log").read_text().split("\n", 2)[2]
    resume_run(tmp_path / "run", quiet=True)  # the env is fixed: resume finishes the run
    assert not (tmp_path / "run" / "error.log").exists()  # made good
    whole = start_run(config, tmp_path / "whole", quiet=True)
    assert _eval_indices(tmp_path / "run") == list(range(5))
    summaries = [json.loads((d / "summary.json").read_text())["per_seed"]
                 for d in (tmp_path / "run", whole)]
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_checkpoint_the_finished_segments_and_exit_cleanly(
        tmp_path, monkeypatch, signum):
    """Checkpoints at task ends only; the signal arrives during segment 4 of 8, so segment 3
    (mid-task 2) is checkpointed on the way out, and resume equals the uninterrupted run."""
    config = _config(extra=("checkpoint_every=100",))
    run_dir = tmp_path / "run"

    sent = []

    def signal_me(state, metrics):
        sent.append(signum)
        os.kill(os.getpid(), signum)  # as Ctrl-C (SIGINT) or a cluster's preemption would
        return state, metrics

    _on_segment(monkeypatch, config, 4, signal_me)
    # Ctrl-C as in a terminal, whatever SIGINT handler the process holds (a process started in
    # the background of a non-interactive shell inherits SIGINT ignored; CI once saw this run
    # go on through the signal).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sets = [a for s in [*SMALL, "checkpoint_every=100"] for a in ("--set", s)]
    try:
        result = CliRunner().invoke(app, ["run", "--seeds", "0-1", *sets, "--out",
                                          str(run_dir)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent == [signum], "the run did not train through the patched trainer"
    assert result.exit_code == 130, result.output
    assert "interrupted during training; its last good checkpoint is segment 3" in result.output
    assert _latest(run_dir) == 3 and _eval_indices(run_dir) == [0, 1, 2, 3]
    monkeypatch.undo()
    resume_run(run_dir, quiet=True)
    whole = start_run(config, tmp_path / "whole", quiet=True)
    a, b = (json.loads((d / "summary.json").read_text())["per_seed"] for d in (run_dir, whole))
    assert a == b


def test_a_damaged_run_json_is_named_in_one_line(tmp_path):
    """It was `Expecting ',' delimiter: line 1 column 710`, naming no file."""
    from everlearn.core.errors import ConfigError

    run_dir = start_run(_config(), tmp_path / "run", quiet=True, stop_after=1)
    (run_dir / "run.json").write_text('{"everlearn_version": 1,,')
    with pytest.raises(ConfigError, match=f"'{run_dir / 'run.json'}' is damaged"):
        resume_run(run_dir, quiet=True)
