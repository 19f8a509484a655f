"""`everlearn.evaluate`: any policy scored on a scenario as the run's evaluator scores its agent."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import everlearn
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.scenarios import get_scenario
from everlearn.scenarios.task import Scenario, Task

CLASSIC = Path(__file__).parents[1] / "runs" / "scenario_files" / "classic-mixed.yaml"


def constant(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs), np.int64)


def balance(obs: np.ndarray) -> np.ndarray:
    """Push the cart the way the pole leans (CartPole's standard observation order)."""
    return (obs[:, 2] > 0).astype(np.int64)


def test_a_constant_policy_scores_near_zero():
    result = everlearn.evaluate(constant, "cartpole-contexts")
    assert result["tasks"] == [t.name for t in get_scenario("cartpole-contexts").tasks]
    # CartPole with one action held falls within about ten steps
    assert all(5 <= r <= 15 for r in result["returns"]), result
    assert all(n < 0.05 for n in result["normalised"]), result


def test_a_random_policy_scores_the_registrys_random_scores():
    rng = np.random.default_rng(0)
    result = everlearn.evaluate(lambda obs: rng.integers(0, 2, len(obs)), "cartpole-contexts",
                                episodes=50)
    expected = [t.random_score for t in get_scenario("cartpole-contexts").tasks]
    np.testing.assert_allclose(result["returns"], expected, rtol=0.35)
    assert all(abs(n) < 0.03 for n in result["normalised"]), result


@pytest.mark.parametrize("scenario, backend", [("cartpole-contexts", "gymnasium"),
                                               ("cartpole-contexts", "jax"),
                                               (str(CLASSIC), "gymnasium")])
def test_equals_the_runs_evaluator_for_the_same_policy(scenario, backend):
    """A freshly initialised PPO agent's greedy policy, scored by the trainer's evaluator and
    by `evaluate` with the same seed: the same returns, task by task (on the mixed scenario
    through padded observations and masked actions)."""
    config = build_config(None, {"scenario": scenario, "agent": "ppo", "seeds": "3",
                                 "backend": backend}, ["eval_episodes=4", "evals_per_task=4"])
    trainer = make_plan(config).trainer
    state = trainer.init([3])
    expected = trainer.evaluate(state, [3], 0)[0]
    agent_state = jax.tree.map(lambda x: x[0], state.agent)
    result = everlearn.evaluate(lambda obs: trainer.agent.greedy_action(agent_state, obs),
                                scenario, episodes=4, seed=3, backend=backend)
    np.testing.assert_allclose(result["returns"], expected, rtol=1e-6)
    assert len(set(result["returns"])) > 1  # the tasks' episodes differ: a real comparison


def test_gymnax_only_tasks_step_on_the_functional_path():
    """A gymnax id has no Gymnasium version: its gymnax env is stepped, with the functional
    evaluator's keys (the same episodes as the family's functional version)."""
    gymnax_only = Scenario("g", "", (Task("standard", "gymnax:CartPole-v1"),), 1000)
    family = Scenario("f", "", (Task("standard", "CartPole-v1"),), 1000)
    result = everlearn.evaluate(balance, gymnax_only, episodes=5)
    assert result["returns"] == everlearn.evaluate(balance, family, episodes=5,
                                                   backend="jax")["returns"]
    assert result["returns"][0] > 20  # the heuristic balances a while: real episodes


def test_tasks_without_scores_get_raw_returns_only():
    scenario = Scenario("s", "", (Task("scored", "CartPole-v1", random_score=22.0,
                                       reference_score=500.0),
                                  Task("unscored", "CartPole-v1")), 1000)
    result = everlearn.evaluate(balance, scenario, episodes=3)
    assert result["normalised"][1] is None and isinstance(result["normalised"][0], float)
    assert result["returns"][1] > 20


@pytest.mark.parametrize("policy, message", [
    (lambda obs: np.zeros((len(obs), 2)), r"policy returned actions of shape \(4, 2\) for 4 "
                                          r"observations of task 'standard'; expected \(4,\)"),
    (lambda obs: np.full(len(obs), 2), r"policy chose action 2 on task 'standard', which has "
                                       r"actions 0..1"),
    (lambda obs: np.full(len(obs), 0.5), "not whole numbers"),
])
def test_a_wrong_policy_output_stops_with_one_line(policy, message):
    with pytest.raises(ValueError, match=message) as error:
        everlearn.evaluate(policy, "cartpole-contexts", episodes=4)
    assert "\n" not in str(error.value)


def test_a_stable_baselines3_model_is_scored():
    """Issue 10's done-when: an SB3 PPO model trained on CartPole, scored on cartpole-contexts
    through a lambda around its `predict`."""
    sb3 = pytest.importorskip("stable_baselines3")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=512, batch_size=64, seed=0,
                    device="cpu", verbose=0)
    model.learn(total_timesteps=8192)  # about 10 s on one core
    trained = everlearn.evaluate(lambda obs: model.predict(obs, deterministic=True)[0],
                                 "cartpole-contexts", episodes=5)
    untrained = everlearn.evaluate(constant, "cartpole-contexts", episodes=5)
    assert trained["returns"][0] > untrained["returns"][0] + 20, (trained, untrained)
    assert trained["normalised"][0] > untrained["normalised"][0]
