"""Continuous-control runs: the drifting context on both paths, the backend chosen from the
scenario, clear refusals, and short end-to-end runs of SAC and TD3 (functional Pendulum,
Gymnasium MuJoCo) that resume exactly."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import Agent
from everlearn.core.errors import ConfigError
from everlearn.core.replay import ReplayBuffer
from everlearn.envs import get_family
from everlearn.envs.mujoco_context import interpolate
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import resume_run, start_run
from everlearn.scenarios import get_scenario
from everlearn.training.functional import FunctionalTrainer
from everlearn.training.gymnasium import GymnasiumTrainer

DT, MAX_SPEED = 0.05, 8.0  # Pendulum-v1's time step and speed limit
SEGMENT, EPISODE = 2_000, 200


def gravity_probe() -> Agent:
    """An agent that applies no torque and records g/l per transition: with u = 0, Pendulum's
    angular velocity changes by 3g/(2l) sin(θ) dt per step, so the transitions reveal the
    physics the env ran with."""

    def update(state, batch, key):
        cos, sin, speed = (batch.obs[:, 0, i] for i in range(3))
        next_speed = batch.next_obs[:, 0, 2]
        ratio = (next_speed - speed) / (1.5 * sin * DT)
        usable = (jnp.abs(sin) > 0.2) & (jnp.abs(next_speed) < MAX_SPEED - 1e-3)
        return {"ratio": jnp.where(usable, ratio, jnp.nan)}, {}

    def act(state, obs, key):
        return jnp.zeros((obs.shape[0], 1)), {}

    return Agent("probe", 1, SEGMENT, init=lambda key: {"ratio": jnp.zeros(SEGMENT)}, act=act,
                 greedy_action=lambda state, obs: jnp.zeros((obs.shape[0], 1)), update=update,
                 task_boundary=lambda state, ended, started, key: state)


@pytest.mark.parametrize("trainer_cls", [FunctionalTrainer, GymnasiumTrainer])
def test_drift_moves_the_physics_between_episodes_only(trainer_cls):
    scenario = get_scenario("pendulum-drift")
    trainer = trainer_cls(scenario, gravity_probe(), iterations=1, eval_episodes=1)
    state, _ = trainer.train_segment(trainer.init([0]), 0, drift=(0.0, 4.0))
    ratio = np.asarray(state.agent["ratio"][0]).reshape(SEGMENT // EPISODE, EPISODE)
    waypoints = [dict(t.physics) for t in scenario.tasks]
    checked = 0
    for k, episode in enumerate(ratio):
        # episode k starts after 200k of the segment's 2000 steps: 0.4k waypoints along
        context = interpolate(waypoints, 4.0 * k * EPISODE / SEGMENT)
        seen = episode[np.isfinite(episode)]
        if len(seen) < 20:  # an episode that starts at rest near the bottom barely swings
            continue
        np.testing.assert_allclose(seen, context["g"] / context["l"], rtol=2e-3,
                                   err_msg=f"episode {k}")
        checked += 1
    assert checked >= 8
    # without a drift, the task's own physics throughout
    state, _ = trainer.train_segment(trainer.init([0]), 2)
    seen = np.asarray(state.agent["ratio"][0])
    np.testing.assert_allclose(seen[np.isfinite(seen)], 13.0 / 1.2, rtol=2e-3)


def test_drift_positions_put_each_waypoint_mid_interval():
    s = get_scenario("pendulum-drift")  # 5 waypoints
    assert s.drift_positions(1, evals_per_task=2) == (0.0, 0.0)  # first half of interval 0
    assert s.drift_positions(2, evals_per_task=2) == (0.0, 0.5)
    assert s.drift_positions(3, evals_per_task=2) == (0.5, 1.0)  # waypoint 1 mid-interval 1
    assert s.drift_positions(10, evals_per_task=2) == (4.0, 4.0)  # second half of the last


def test_backend_follows_the_scenario():
    assert build_config(overrides={"scenario": "pendulum-contexts", "agent": "sac"}
                        ).backend == "jax"
    assert build_config(overrides={"scenario": "hopper-dynamics", "agent": "sac"}
                        ).backend == "gymnasium"
    assert build_config(overrides={"scenario": "cartpole-contexts"}).backend == "jax"


@pytest.mark.parametrize("overrides, message", [
    ({"scenario": "hopper-dynamics", "agent": "sac", "backend": "jax"},
     "no functional version; use --backend gymnasium"),
    ({"scenario": "pendulum-contexts", "agent": "ppo"}, "continuous actions); use sac or td3"),
    ({"scenario": "cartpole-contexts", "agent": "td3"}, "discrete actions); use ppo or dqn"),
])
def test_mismatched_scenario_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        make_plan(build_config(overrides=overrides))
    assert "\n" not in str(e.value)


def _small(agent: str, scenario: str, steps_per_task: int, **overrides):
    sets = [f"steps_per_task={steps_per_task}", "evals_per_task=2", "eval_episodes=2", "checkpoint_every=1",
            f"{agent}.hidden_sizes=[32,32]", f"{agent}.learning_starts=100",
            f"{agent}.train_every=50", f"{agent}.buffer_size=5000"]
    return build_config(overrides={"scenario": scenario, "agent": agent, **overrides},
                        sets=sets)


def _final_checkpoint(run_dir) -> bytes:
    index = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    return (run_dir / "checkpoints" / index["file"]).read_bytes()


@pytest.mark.parametrize("agent, scenario, seeds, steps", [
    ("sac", "pendulum-contexts", "0-1", 600),
    ("td3", "hopper-drift", "0", 300),  # MuJoCo on the host: one seed, fewer steps
])
def test_short_run_resumes_exactly(tmp_path, agent, scenario, seeds, steps):
    config = _small(agent, scenario, steps, seeds=seeds, methods=["l2_init"])
    whole = start_run(config, tmp_path / "whole", quiet=True)
    summary = json.loads((whole / "summary.json").read_text())
    num_tasks = get_scenario(scenario).num_tasks
    assert np.asarray(summary["performance_matrix"]).shape == (len(config.seeds), num_tasks,
                                                               num_tasks)
    record = json.loads((whole / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["diagnostics"]["srank/q1"][0] > 1  # the critics are measured too
    assert (whole / "report.html").is_file()
    family = get_family(get_scenario(scenario).env)
    buffer = json.loads((whole / "run.json").read_text())["replay_buffer"]
    assert buffer == {"capacity": 5000, "bytes_per_seed": ReplayBuffer.footprint(
        5000, family.obs_dim, (family.num_actions,))}
    killed = start_run(config, tmp_path / "killed", quiet=True, stop_after=3)
    resume_run(killed, quiet=True)
    assert _final_checkpoint(killed) == _final_checkpoint(whole)
