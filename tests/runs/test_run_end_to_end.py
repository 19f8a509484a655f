"""End-to-end runs on both paths, resume equality, and the default scenario's forgetting."""

import json
from pathlib import Path

import numpy as np
import pytest
from flax import serialization

from everlearn.runs.config import build_config
from everlearn.runs.run import resume_run, start_run

# Small and shared: one compiled program per path for every run in this module.
SMALL = [
    "steps_per_task=1024", "evals_per_task=2", "eval_episodes=2", "checkpoint_every=1",
    "ppo.num_envs=4", "ppo.num_steps=32", "ppo.num_epochs=2",
]


def _config(backend: str, reference: bool = False):
    return build_config(None, {"scenario": "cartpole-contexts", "agent": "ppo", "seeds": "0-1",
                               "backend": backend, "reference": reference}, SMALL)


def _final_state(run_dir: Path) -> bytes:
    index = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    return (run_dir / "checkpoints" / index["file"]).read_bytes()


def _evals(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in lines]


@pytest.mark.parametrize("backend", ["jax", "gymnasium"])
def test_run_writes_a_complete_run_directory(tmp_path, backend):
    run_dir = start_run(_config(backend, reference=True), tmp_path / "run", quiet=True)
    for name in ("config.yaml", "run.json", "metrics.jsonl", "summary.json", "report.html"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert set(summary["aggregate"]) == {"average_performance", "forgetting",
                                         "backward_transfer", "forward_transfer"}
    for stats in summary["aggregate"].values():
        assert stats["ci_low"] <= stats["iqm"] <= stats["ci_high"]
    assert np.asarray(summary["performance_matrix"]).shape == (2, 4, 4)
    assert len(_evals(run_dir)) == 1 + 4 * 2  # before training, then 2 per task
    # checkpoints: every task end is kept
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("*.msgpack"))
    assert kept == [f"segment-{k:05d}.msgpack" for k in (0, 2, 4, 6, 8)]


@pytest.mark.parametrize("backend", ["jax", "gymnasium"])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, backend):
    config = _config(backend)
    whole = start_run(config, tmp_path / "whole", quiet=True)
    # Stop after 3 segments (mid-task 2), exactly as a kill after that checkpoint would leave it,
    # then leave a stray evaluation line from work after the checkpoint, as a kill can.
    killed = start_run(config, tmp_path / "killed", quiet=True, stop_after=3)
    assert not (killed / "summary.json").exists()
    with open(killed / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "eval", "eval_index": 4, "normalised": []}) + "\n")
    resume_run(killed, quiet=True)
    assert _final_state(killed) == _final_state(whole)
    assert _evals(killed) == _evals(whole)
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["per_seed"] == b["per_seed"]


def test_fine_tuning_forgets_on_the_default_scenario(tmp_path):
    """The default scenario must give continual methods something to fix (forgetting >= 0.3)."""
    config = build_config(None, {"scenario": "cartpole-contexts", "seeds": "0-1"},
                          ["steps_per_task=51200", "evals_per_task=2", "eval_episodes=5"])
    run_dir = start_run(config, tmp_path / "run", quiet=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.mean(summary["per_seed"]["forgetting"]) >= 0.3, summary["per_seed"]
    matrix = np.asarray(summary["performance_matrix"]).mean(axis=0)
    assert matrix[0, 0] >= 0.8, matrix  # the first task was learned before it was forgotten


def test_checkpoint_is_msgpack_not_pickle(tmp_path):
    run_dir = start_run(_config("jax"), tmp_path / "run", quiet=True, stop_after=1)
    blob = _final_state(run_dir)
    assert isinstance(serialization.msgpack_restore(blob), dict)
    assert not blob.startswith(b"\x80")  # pickle protocol marker


def test_resume_after_a_real_sigkill(tmp_path):
    """Kill an `everlearn run` process with SIGKILL after a checkpoint; resume must finish
    with the same evaluations and final state as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    killed = tmp_path / "killed"
    many_segments = [*SMALL, "evals_per_task=8"]  # 32 short segments: time to kill mid-run
    sets = [a for s in many_segments for a in ("--set", s)]
    cmd = [sys.executable, "-m", "everlearn.cli", "run", "--scenario", "cartpole-contexts",
           "--seeds", "0-1", *sets, "--out", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "EVERLEARN_CACHE": str(tmp_path / "cache")})
    index = killed / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if index.exists() and json.loads(index.read_text())["segment"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    resume_run(killed, quiet=True)
    config = build_config(None, {"scenario": "cartpole-contexts", "seeds": "0-1"},
                          many_segments)
    whole = start_run(config, tmp_path / "whole", quiet=True)
    assert _final_state(killed) == _final_state(whole)
    assert _evals(killed) == _evals(whole)


def _summary(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k != "wall_time_s"}


@pytest.fixture(scope="module")
def whole_jax_run(tmp_path_factory) -> Path:
    return start_run(_config("jax"), tmp_path_factory.mktemp("whole") / "run", quiet=True)


@pytest.mark.parametrize("stop", ["before-first-checkpoint", "segment-0", "during-summary"])
def test_resume_from_every_stopping_point_equals_uninterrupted_run(tmp_path, whole_jax_run,
                                                                    stop):
    """A resume from segment 0 used to evaluate segment 0 a second time and write a summary
    from the duplicated line (issue 15); a run killed before its first checkpoint could not
    be resumed at all."""
    sparse = build_config(None, {"scenario": "cartpole-contexts", "agent": "ppo",
                                 "seeds": "0-1", "backend": "jax"},
                          [*SMALL, "checkpoint_every=100"])  # checkpoints at task ends only
    killed = tmp_path / "killed"
    if stop == "segment-0":  # segments 0 and 1 evaluated, newest checkpoint: segment 0
        start_run(sparse, killed, quiet=True, stop_after=1)
        assert json.loads((killed / "checkpoints" / "latest.json").read_text())["segment"] == 0
    elif stop == "before-first-checkpoint":  # config and evaluation 0 written, no checkpoint
        start_run(sparse, killed, quiet=True, stop_after=1)
        for path in (killed / "checkpoints").iterdir():
            path.unlink()
    else:  # the whole run trained; the kill came while the summary was being written
        start_run(sparse, killed, quiet=True)
        (killed / "summary.json").unlink()
        (killed / "report.html").unlink()
    resume_run(killed, quiet=True)
    assert _evals(killed) == _evals(whole_jax_run)
    assert _summary(killed) == _summary(whole_jax_run)
    assert _final_state(killed) == _final_state(whole_jax_run)


def test_summary_refuses_a_log_with_a_duplicated_evaluation(whole_jax_run, tmp_path):
    from everlearn.runs.plan import make_plan
    from everlearn.runs.summary import write_summary

    log = (whole_jax_run / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join([log[0], *log]) + "\n")
    with pytest.raises(ValueError, match="exactly one line per evaluation"):
        write_summary(tmp_path, make_plan(_config("jax")), None, wall_time_s=0.0)


def test_resume_refuses_an_edited_config_naming_the_keys(tmp_path):
    """Issue 15: an edited config.yaml (num_envs 8 -> 4, learning_rate -> 0.5) resumed
    silently, and its results belonged to neither config."""
    import yaml

    from everlearn.core.errors import ConfigError

    killed = start_run(_config("jax"), tmp_path / "killed", quiet=True, stop_after=1)
    path = killed / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["ppo"]["learning_rate"] = 0.5
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"ppo\.learning_rate: 0\.001 -> 0\.5") as info:
        resume_run(killed, quiet=True)
    assert "\n" not in str(info.value)
    path.write_text(yaml.safe_dump(config | {"ppo": {**config["ppo"], "learning_rate": 0.001}}))
    (killed / "metrics.jsonl").unlink()  # a deleted log: one line, not a traceback
    with pytest.raises(ConfigError, match="metrics.jsonl' is missing"):
        resume_run(killed, quiet=True)
    path.write_text("ppo: {learning_rate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        resume_run(killed, quiet=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_resume_falls_back_when_the_newest_checkpoint_is_corrupt(tmp_path, whole_jax_run):
    killed = start_run(_config("jax"), tmp_path / "killed", quiet=True, stop_after=3)
    newest = killed / "checkpoints" / "segment-00003.msgpack"
    newest.write_bytes(newest.read_bytes()[:-10])  # checkpoint 2 (a task end) is intact
    resume_run(killed, quiet=True)
    assert _evals(killed) == _evals(whole_jax_run)
    assert _summary(killed) == _summary(whole_jax_run)


def _tensorboard_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the run's event files (TFRecord framing: length, its CRC, the event,
    its CRC), read with tensorboardX's own protobuf."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            length = int.from_bytes(data[at:at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_tensorboard_logs_every_evaluation_and_goes_on_after_resume(tmp_path):
    config = _config("jax")
    killed = start_run(config, tmp_path / "run", quiet=True, stop_after=3, tensorboard=True)
    assert json.loads((killed / "run.json").read_text())["tensorboard"]
    resume_run(killed, quiet=True)
    scalars = _tensorboard_scalars(killed)
    evals = _evals(killed)
    steps = [e["step"] for e in evals]
    assert sorted(scalars["performance/standard"]) == steps
    for record in evals:  # the logged values are the seed means of metrics.jsonl's
        normalised = np.asarray(record["normalised"])
        assert scalars["performance/mean"][record["step"]] == pytest.approx(
            np.clip(normalised, 0, 1).mean(), rel=1e-6)
    assert any(tag.startswith("train/") for tag in scalars)
    assert any(tag.startswith("diagnostics/dormant") for tag in scalars)
    assert not (start_run(config, tmp_path / "plain", quiet=True) / "tensorboard").exists()
