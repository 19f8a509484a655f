"""`everlearn run --record` (`everlearn.data.record`): a run's transitions as Minari datasets,
one per online task and seed. Checked against what the agent itself stored (its replay buffer),
across a kill and resume, and for the one-line refusals. Datasets go to the session's
temporary MINARI_DATASETS_PATH (tests/conftest.py), each test under its own namespace."""

from __future__ import annotations

import json
from pathlib import Path

import minari
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.data import Episode, load_transitions, write_dataset
from everlearn.data.collect import agent_spaces
from everlearn.data.datasets import agent_observations, task_observations
from everlearn.data.record import recorded_dataset_id
from everlearn.envs.layout import Layout
from everlearn.envs.sources import EnvSpaces
from everlearn.runs.config import build_config
from everlearn.runs.plan import load_run, make_plan
from everlearn.runs.run import make_recorder, resume_run, start_run

TASKS = ["standard", "long-pole-inverted", "heavy-pole-permuted", "light-cart-inverted"]
STEPS_PER_TASK = 512


def _config(agent: str, backend: str, *extra: str):
    sets = [f"steps_per_task={STEPS_PER_TASK}", "evals_per_task=2", "eval_episodes=2",
            "checkpoint_every=1000", *extra]
    return build_config(None, {"scenario": "cartpole-contexts", "agent": agent, "seeds": "0-1",
                               "backend": backend}, sets)


def _evals(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _columns(namespace: str, task: int, seed: int) -> dict[str, np.ndarray]:
    data = load_transitions(recorded_dataset_id(namespace, task, TASKS[task], seed))
    return {"obs": data.obs, "action": data.action, "reward": data.reward,
            "terminated": data.terminated, "truncated": data.truncated,
            "next_obs": data.next_obs}


@pytest.fixture(scope="module")
def plain_ppo_run(tmp_path_factory):
    """A functional-path PPO run that records nothing (its config and run directory), shared
    by the two tests below that need one."""
    config = _config("ppo", "jax", "ppo.num_envs=4", "ppo.num_steps=32", "ppo.num_epochs=2")
    return config, start_run(config, tmp_path_factory.mktemp("plain") / "run", quiet=True)


def test_recorded_datasets_hold_exactly_what_the_agent_stored(tmp_path):
    """Gymnasium path, DQN: each seed's four datasets, task after task, are its replay buffer
    row for row (the buffer holds every step of the run: capacity above the 2,048 steps)."""
    config = _config("dqn", "gymnasium", "dqn.buffer_size=4096", "dqn.train_every=128",
                     "dqn.gradient_steps=4", "dqn.learning_starts=100",
                     "dqn.hidden_sizes=[32,32]")
    run_dir = start_run(config, tmp_path / "run", quiet=True, record="test-record/buffer")
    assert not (run_dir / "record").exists()  # every task's segments went into datasets
    for seed_index, seed in enumerate([0, 1]):
        parts = [_columns("test-record/buffer", k, seed) for k in range(len(TASKS))]
        assert [len(p["reward"]) for p in parts] == [STEPS_PER_TASK] * len(TASKS)
        recorded = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        _, agent_state, _ = load_run(run_dir, seed_index)
        buffer, n = agent_state.buffer, len(TASKS) * STEPS_PER_TASK
        assert int(buffer.size) == n
        for name in ("obs", "action", "reward", "terminated", "next_obs"):
            np.testing.assert_array_equal(recorded[name], np.asarray(getattr(buffer, name))[:n],
                                          err_msg=name)
        # Every episode ends in exactly one flag: its termination or a truncation (the env's
        # time limit, or a segment's end: 256 steps per segment with one env).
        ends = recorded["terminated"] | recorded["truncated"]
        assert not (recorded["terminated"] & recorded["truncated"]).any()
        assert ends[STEPS_PER_TASK // 2 - 1::STEPS_PER_TASK // 2].all()
    metadata = minari.load_dataset(recorded_dataset_id("test-record/buffer", 2, TASKS[2], 1))
    about = json.loads((metadata.storage.data_path / "metadata.json").read_text())["everlearn"]
    assert about["task"]["name"] == TASKS[2] and about["seed"] == 1
    assert about["run"] == str(run_dir.resolve()) and about["agent"] == "dqn"


def test_a_killed_and_resumed_run_records_what_the_whole_run_records(plain_ppo_run, tmp_path):
    """Functional path, PPO: killed after segment 3 (its checkpoint is segment 2, so segment
    3's kept transitions are dropped and made again), resumed: the same datasets, and the
    same evaluations as a run that records nothing."""
    config, plain = plain_ppo_run
    whole = start_run(config, tmp_path / "whole", quiet=True, record="test-record/whole")
    killed = start_run(config, tmp_path / "killed", quiet=True, stop_after=3,
                       record="test-record/killed")
    assert sorted(p.name for p in (killed / "record").iterdir()) == [
        "task0001-segment0000003.npz"]
    resume_run(killed, quiet=True)
    assert _evals(plain) == _evals(whole) == _evals(killed)
    for task in range(len(TASKS)):
        for seed in (0, 1):
            a, b = _columns("test-record/whole", task, seed), _columns("test-record/killed",
                                                                       task, seed)
            assert len(a["reward"]) == STEPS_PER_TASK
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_taken_or_invalid_namespaces_are_refused_before_anything_is_written(tmp_path):
    config = _config("ppo", "jax")
    runner = CliRunner()
    args = ["run", "--scenario", "cartpole-contexts", "--agent", "ppo", "--seeds", "0",
            "--set", "steps_per_task=512", "--set", "evals_per_task=2", "--out",
            str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--record", "bad namespace!"])
    assert result.exit_code == 2 and "invalid Minari dataset id" in result.output
    assert not (tmp_path / "run").exists()

    taken = make_recorder(make_plan(config), tmp_path / "x", "test-record/taken")
    episode = Episode(np.zeros((2, 4), np.float32), np.zeros(1, np.int64), np.zeros(1),
                      np.array([True]), np.array([False]))
    write_dataset(taken.dataset_ids()[2], [episode], **agent_spaces(taken.spaces[0]))
    result = runner.invoke(app, [*args, "--record", "test-record/taken"])
    assert result.exit_code == 2
    assert "dataset 'test-record/taken/task2-long-pole-inverted-seed0-v0' exists" in result.output
    assert not (tmp_path / "run").exists()


def test_only_online_tasks_get_datasets():
    plan = make_plan(build_config(None, {"scenario": "pendulum-offline-to-online",
                                         "agent": "td3_bc", "seeds": "0-1"}, []))
    recorder = make_recorder(plan, Path("unused"), "ns")
    assert [t.dataset is None for t in plan.scenario.tasks] == [False, True]
    assert recorder.dataset_ids() == [
        recorded_dataset_id("ns", 1, plan.scenario.tasks[1].name, seed) for seed in (0, 1)]


@pytest.mark.parametrize("obs_shape, layout_shape, masked", [
    ((3,), (5,), False), ((10, 10, 2), (10, 10, 4), True), ((4,), (4,), False)])
def test_task_observations_undo_the_scenario_layout(obs_shape, layout_shape, masked):
    """Padding, the task id one-hot and the action mask come off again, whatever the shapes."""
    rng = np.random.default_rng(0)
    spaces = EnvSpaces(obs_shape=obs_shape, continuous=False, num_actions=3)
    layout = Layout(obs_shape=layout_shape, continuous=False, num_actions=5, masked=masked)
    obs = rng.normal(size=(6, int(np.prod(obs_shape)))).astype(np.float32)
    for onehot in (None, np.eye(3, dtype=np.float32)[1]):
        seen = agent_observations(obs, spaces, layout, onehot)
        np.testing.assert_array_equal(task_observations(seen, spaces, layout), obs)


def test_collect_acts_with_a_runs_newest_or_a_named_checkpoint(plain_ppo_run):
    """`everlearn collect --policy RUN_DIR --greedy` records the newest checkpoint's greedy
    actions (recomputed here from the loaded agent on the recorded observations); a checkpoint
    file of the run (its kept segment 0: the untrained agent) records that one's instead."""
    config, run_dir = plain_ppo_run
    runner = CliRunner()
    base = ["collect", "--scenario", "cartpole-contexts", "--task", TASKS[1], "--steps", "300",
            "--seed-index", "1", "--greedy"]
    newest = runner.invoke(app, [*base, "--policy", str(run_dir), "--name", "test-record/newest-v0"])
    first = runner.invoke(app, [*base, "--policy", str(run_dir / "checkpoints" /
                                                       "segment-00000.msgpack"),
                                "--name", "test-record/first-v0"])
    assert newest.exit_code == 0 and first.exit_code == 0, newest.output + first.output
    newest, first = (load_transitions(f"test-record/{n}-v0") for n in ("newest", "first"))
    assert (newest.metadata["segment"], first.metadata["segment"]) == (8, 0)
    assert newest.metadata["policy"].startswith("ppo of run run, seed 1, checkpoint at segment 8")
    plan, agent_state, _ = load_run(run_dir, 1)  # the newest checkpoint, seed 1
    agent = plan.trainer.agent
    greedy = agent.greedy_action(agent.for_task(agent_state, 1), newest.obs)
    np.testing.assert_array_equal(np.asarray(greedy), newest.action)
    assert not np.array_equal(newest.action[:100], first.action[:100])
    bad = runner.invoke(app, [*base, "--policy", str(run_dir / "config.yaml"),
                              "--name", "test-record/bad-v0"])
    assert bad.exit_code == 2 and "checkpoint file" in bad.output


def test_collect_records_a_task_without_a_functional_env_on_the_gymnasium_path(tmp_path):
    """A user's Gymnasium env (tests/runs/scenario_files/corridor.py) has no functional
    version: `everlearn collect` records it on the Gymnasium path, with a Gymnasium-path run's
    greedy policy (recomputed here on the recorded observations) and at random; episodes are
    whole and chained, and an episode that reached the goal ends terminated on it."""
    scenario = str(Path(__file__).parents[1] / "runs" / "scenario_files" / "corridors.yaml")
    config = build_config(None, {"scenario": scenario, "agent": "dqn", "seeds": "0"},
                          ["steps_per_task=256", "evals_per_task=1", "eval_episodes=1",
                           "dqn.learning_starts=64", "dqn.hidden_sizes=[8]"])
    run_dir = start_run(config, tmp_path / "run", quiet=True)
    runner = CliRunner()
    base = ["collect", "--scenario", scenario, "--task", "long", "--steps", "120"]
    greedy = runner.invoke(app, [*base, "--policy", str(run_dir), "--greedy",
                                 "--name", "test-record/corridor-greedy-v0"])
    random = runner.invoke(app, [*base[:-1], "300", "--name", "test-record/corridor-random-v0"])
    assert greedy.exit_code == 0 and random.exit_code == 0, greedy.output + random.output
    greedy, random = (load_transitions(f"test-record/corridor-{n}-v0")
                      for n in ("greedy", "random"))

    plan, agent_state, _ = load_run(run_dir, 0)
    agent = plan.trainer.agent
    recomputed = agent.greedy_action(agent.for_task(agent_state, 1), greedy.obs)
    np.testing.assert_array_equal(np.asarray(recomputed), greedy.action)
    for data in (greedy, random):
        assert len(data.reward) >= 120 and data.obs.shape[1:] == (1,)
        ends = data.terminated | data.truncated
        np.testing.assert_array_equal(data.next_obs[:-1][~ends[:-1]], data.obs[1:][~ends[:-1]])
        assert ends[-1]  # whole episodes only
        np.testing.assert_array_equal(data.next_obs[data.terminated], 1.0)  # at the goal
    assert set(np.unique(random.action)) == {0, 1}
    # a random walk reaches cell 6 within 50 steps 71% of the time: ~6 episodes here
    assert random.terminated.any()
