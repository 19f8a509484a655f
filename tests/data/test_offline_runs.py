"""Offline data end to end: `everlearn collect` writes a Minari dataset that Minari reads back
unchanged; a dataset recorded with Minari's own `DataCollector` trains an everlearn agent
through the command line; the built-in recipes; the one-line refusals. Datasets live in the
session's temporary MINARI_DATASETS_PATH (tests/conftest.py)."""

import json

import gymnasium as gym
import jax
import minari
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.data import minari_io, recipes
from everlearn.data.collect import random_policy, rollout
from everlearn.data.datasets import dataset_buffers
from everlearn.envs.functional import FunctionalEnv
from everlearn.runs.config import ConfigError, build_config
from everlearn.runs.run import make_plan, scenario_layout_for
from everlearn.scenarios import get_scenario

SMALL_TD3 = ["--set", "td3.hidden_sizes=[32,32]", "--set", "evals_per_task=2",
             "--set", "eval_episodes=2"]


def test_collect_writes_a_dataset_minari_reads_back_unchanged():
    """The CLI's dataset holds exactly the episodes of the same rollout (same seed), as
    `minari.load_dataset` reads them, with the task's context in its metadata."""
    result = CliRunner().invoke(app, ["collect", "--scenario", "pendulum-contexts", "--task",
                                      "heavy-reversed", "--name", "test/heavy/random-v0",
                                      "--steps", "1000", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "5 episodes, 1,000 transitions" in result.output
    task = get_scenario("pendulum-contexts").tasks[1]
    expected = rollout(task, random_policy(FunctionalEnv(task)), 1000, seed=3)
    dataset = minari.load_dataset("test/heavy/random-v0")
    episodes = list(dataset.iterate_episodes())
    assert len(episodes) == len(expected) == 5
    for got, want in zip(episodes, expected):
        np.testing.assert_array_equal(got.observations, want.observations.astype(np.float32))
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        np.testing.assert_array_equal(got.terminations, want.terminations)
        np.testing.assert_array_equal(got.truncations, want.truncations)
    assert episodes[0].truncations[-1] and not episodes[0].truncations[:-1].any()
    metadata = minari_io.load_transitions("test/heavy/random-v0").metadata
    assert metadata["task"]["physics"] == {"m": 1.3}
    assert metadata["task"]["action_scale"] == [-1.0]
    assert metadata["policy"] == "uniform random"
    again = CliRunner().invoke(app, ["collect", "--scenario", "pendulum-contexts", "--task",
                                     "heavy-reversed", "--name", "test/heavy/random-v0"])
    assert again.exit_code == 2 and "exists" in again.output and "--overwrite" in again.output


def test_a_datacollector_dataset_trains_an_agent_from_the_command_line(tmp_path):
    """A user records Pendulum-v1 with Minari's own tools (actions in the env's [-2, 2]); a
    scenario file names it; TD3 learns from it offline and the run ends with its summary.
    The actions reach the agent rescaled onto [-1, 1]."""
    env = minari.DataCollector(gym.make("Pendulum-v1"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(600):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.create_dataset("user/pendulum-random-v0", algorithm_name="random")
    env.close()
    scenario = tmp_path / "offline.yaml"
    scenario.write_text("name: user-offline\nsteps_per_task: 400\ntasks:\n"
                        "  - {name: standard, env: Pendulum-v1, dataset: user/pendulum-random-v0,"
                        " random_score: -1214.0, reference_score: -150.0}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--scenario", str(scenario), "--agent", "td3",
                                      "--seeds", "0-1", *SMALL_TD3, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["standard"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 400  # gradient steps
    plan = make_plan(build_config(None, {"scenario": str(scenario), "agent": "td3"}))
    (buffer,) = dataset_buffers(plan.scenario, [FunctionalEnv("Pendulum-v1").spaces],
                                scenario_layout_for(str(scenario), "jax"), task_ids=False)
    raw = minari_io.load_transitions("user/pendulum-random-v0")
    assert int(buffer.size) == 600
    np.testing.assert_allclose(np.asarray(buffer.action), raw.action / 2.0, atol=1e-6)
    assert float(np.abs(buffer.action).max()) > 0.9


def test_medium_recipe_is_made_once_and_sits_between_random_and_expert():
    """The built-in medium dataset of the standard Pendulum: its greedy snapshot is at least
    a third of the way from random to the reference score, and its data average is below the
    reference (the room an offline agent has to improve on it); asking again reads it."""
    task = get_scenario("pendulum-offline").tasks[0]
    logged = []
    name = recipes.make_recipe(task, "medium", log=logged.append)
    assert name == recipes.recipe_id(task, "medium") and len(logged) == 2
    data = minari_io.load_transitions(name)
    about = data.metadata
    target = about["random_return"] + (task.reference_score - about["random_return"]) / 3
    assert about["greedy_return"] >= target
    assert task.random_score < float(np.mean(data.episode_returns)) < task.reference_score
    assert len(data.reward) == recipes.RECIPE_STEPS
    assert recipes.make_recipe(task, "medium", log=logged.append) == name and len(logged) == 2


def test_offline_learning_leaves_the_agent_buffer_and_env_alone():
    """`Agent.learn` on a dataset: gradient steps happen, the agent's own replay buffer and
    env-step count stay as they were."""
    from everlearn.agents import make_agent
    from everlearn.agents.common import EnvSpec, ReplayBuffer
    from everlearn.agents.td3 import TD3Config

    agent = make_agent("td3", TD3Config(hidden_sizes=(16,)), EnvSpec(3, 1, continuous=True))
    state = agent.init(jax.random.PRNGKey(0))
    rows = 64
    dataset = ReplayBuffer.create(rows, 3, (1,), np.float32).replace(
        obs=jax.random.normal(jax.random.PRNGKey(1), (rows, 3)), size=np.int32(rows))
    new, info = jax.jit(agent.learn)(state, dataset, jax.random.PRNGKey(2))
    assert int(new.gradient_steps) == 1 and int(new.env_steps) == 0
    assert new.buffer.capacity == state.buffer.capacity and int(new.buffer.size) == 0
    assert float(info["critic_loss"]) > 0


@pytest.mark.parametrize("agent, env, dataset, message", [
    ("ppo", "CartPole-v1", "random", "learns from datasets, which agent 'ppo' cannot"),
    ("td3", "Pendulum-v1", "nobody/missing-v0", "no local Minari dataset"),
    ("td3", "Hopper-v5", "medium", "made on the functional path"),
])
def test_offline_configs_are_refused_in_one_line(tmp_path, agent, env, dataset, message):
    path = tmp_path / "offline.yaml"
    path.write_text("name: offline\nsteps_per_task: 100\ntasks:\n"
                    f"  - {{name: a, env: {env}, dataset: {dataset}}}\n")
    with pytest.raises(ConfigError, match=message) as error:
        make_plan(build_config(None, {"scenario": str(path), "agent": agent,
                                      "backend": "gymnasium" if "Hopper" in env else None}))
    assert "\n" not in str(error.value)


def test_a_drifting_scenario_with_a_dataset_is_refused(tmp_path):
    path = tmp_path / "drifting.yaml"
    path.write_text("name: drifting\nsteps_per_task: 100\ndrift: true\ntasks:\n"
                    "  - {name: a, env: Pendulum-v1, dataset: medium, physics: {m: 1.0}}\n"
                    "  - {name: b, env: Pendulum-v1, physics: {m: 1.5}}\n")
    result = CliRunner().invoke(app, ["run", "--scenario", str(path), "--agent", "td3"])
    assert result.exit_code == 2 and "cannot be offline" in result.output, result.output


def test_td3_bc_beats_the_medium_datasets_average_offline(tmp_path):
    """TD3+BC, 8 vmapped seeds, [64, 64] networks, 10,000 gradient steps on the standard
    Pendulum's built-in medium dataset (no env step), each seed's greedy return over 10
    episodes, normalised. Bar: the median beats the dataset's own average return (what
    behaviour cloning of the data reaches, at best) by 0.1.

    Measured on 2026-11-30, 2 cores, dataset average 0.33 (its greedy snapshot 0.48):
      seeds 0-7:   median 0.70, per seed 0.56-0.90 (the same with JAX_NUM_CPU_DEVICES=1)
      seeds 8-15:  median 0.66, per seed 0.64-0.70
      seeds 16-23: median 0.69, per seed 0.48-0.82
    The recipe is remade on each machine (its SAC run differs with the machine's XLA code),
    so the bar is relative to the dataset's own average rather than a fixed number.
    About 30 s, after the medium recipe (made by the test above in the same worker, ~20 s).
    IQL and CQL do not clear this bar at this budget yet (IQL median 0.05 at 10k steps; CQL
    0.23 at 3k): issue 14's notes."""
    task = get_scenario("pendulum-offline").tasks[0]
    name = recipes.make_recipe(task, "medium", log=lambda line: None)
    average = float(task.normalise(np.mean(minari_io.load_transitions(name).episode_returns)))
    seeds = list(range(8))
    scenario = tmp_path / "medium.yaml"  # pendulum-offline's first task alone
    scenario.write_text("name: medium\nsteps_per_task: 10000\ntasks:\n  - {name: standard, "
                        "env: Pendulum-v1, dataset: medium, random_score: -1214.0, "
                        "reference_score: -150.0}\n")
    config = build_config(None, {"scenario": str(scenario), "agent": "td3_bc", "seeds": seeds},
                          ["td3_bc.hidden_sizes=[64,64]", "evals_per_task=1",
                           "eval_episodes=10"])
    plan = make_plan(config)
    state, _ = plan.trainer.train_segment(plan.trainer.init(seeds), 0)
    returns = plan.trainer.evaluate(state, seeds, 1)[:, 0]
    scores = task.normalise(returns)
    assert np.median(scores) >= average + 0.1, (
        f"median {np.median(scores):.2f} vs the data's {average:.2f}; per seed {scores.round(2)}")
