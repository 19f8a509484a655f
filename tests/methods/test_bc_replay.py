"""Behaviour-cloning replay: the per-task store, the distillation loss, the agents' wiring."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import EnvSpec, make_agent
from everlearn.agents.dqn import DQNConfig
from everlearn.agents.ppo import PPOConfig, minibatch_row
from everlearn.methods import METHODS, AgentView, Method
from everlearn.methods.bc_replay import BCReplayConfig, make_bc_replay, policy_kl

SMALL = {
    "ppo": PPOConfig(num_envs=2, num_steps=8, num_epochs=2, num_minibatches=2,
                     hidden_sizes=(8,)),
    "dqn": DQNConfig(train_every=16, gradient_steps=4, batch_size=8, buffer_size=64,
                     learning_starts=0, hidden_sizes=(8,)),
}


@functools.cache
def _view_and_params(agent_name: str, num_tasks: int):
    """The AgentView a real agent gives its methods, and its initial params."""
    captured = {}

    def capture(view):
        captured["view"] = view
        return Method("capture")

    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, num_tasks), [capture])
    return captured["view"], jax.jit(agent.init)(jax.random.PRNGKey(0)).params


def _observe(method, state, obs, task, key):
    return jax.jit(method.observe)(state, {"obs": obs}, task, key)


def test_policy_kl_by_hand():
    # old = softmax([0, ln 3]) = (1/4, 3/4), new = (1/2, 1/2):
    # KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308...
    kl = policy_kl(jnp.array([[0.0, math.log(3.0)]]), jnp.zeros((1, 2)))
    np.testing.assert_allclose(kl, [0.25 * math.log(0.5) + 0.75 * math.log(1.5)], rtol=1e-6)
    assert abs(0.25 * math.log(0.5) + 0.75 * math.log(1.5) - 0.130812) < 1e-6


def test_ppo_loss_is_coef_weighted_kl_plus_value_error_by_hand():
    # A linear "PPO" on a 1-d observation: logits = obs·W, value = obs·v.
    def outputs(params, obs):
        return {"logits": obs @ params["actor"]["params"]["Dense_0"]["kernel"],
                "value": (obs @ params["critic"]["params"]["Dense_0"]["kernel"])[:, 0]}

    view = AgentView("ppo", False, outputs, None, None, ("actor", "critic"), num_tasks=1,
                     obs_dim=1, minibatch_row=minibatch_row(1))
    params = {"actor": {"params": {"Dense_0": {"kernel": jnp.zeros((1, 2))}}},
              "critic": {"params": {"Dense_0": {"kernel": jnp.full((1, 1), 3.0)}}}}
    method = make_bc_replay(BCReplayConfig(states_per_task=1, batch_size=1, policy_coef=2.0,
                                           value_coef=0.5), view)
    state = method.init(jax.random.PRNGKey(0), params)
    # One stored state, obs 1, with old logits (0, ln 3) and old value 1.
    state = {**state, "obs": jnp.ones((1, 1)), "stored": jnp.ones((1,), jnp.int32),
             "targets": {"logits": jnp.array([[0.0, math.log(3.0)]]), "value": jnp.ones(1)}}
    # New policy (1/2, 1/2), new value 3: 2·0.130812 + 0.5·(3 − 1)² = 2.261624.
    loss = method.extra_loss(state, params, {})
    np.testing.assert_allclose(loss, 2 * 0.1308120 + 0.5 * 4.0, rtol=1e-5)
    # Nothing stored yet: no loss.
    assert float(method.extra_loss({**state, "stored": jnp.zeros((1,), jnp.int32)},
                                   params, {})) == 0.0


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_loss_is_zero_for_the_stored_policy_and_positive_after_a_change(agent_name):
    view, params = _view_and_params(agent_name, num_tasks=3)
    method = make_bc_replay(BCReplayConfig(states_per_task=32, batch_size=16), view)
    state = method.init(jax.random.PRNGKey(0), params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    state = _observe(method, state, obs, 0, jax.random.PRNGKey(2))
    state, params_after = jax.jit(method.on_task_end)(state, params, 0, jax.random.PRNGKey(3))
    state = _observe(method, state, obs[:8], 1, jax.random.PRNGKey(4))  # draws the sample
    extra_loss = jax.jit(method.extra_loss)
    assert float(extra_loss(state, params, {})) < 1e-10
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    perturbed = treedef.unflatten([p + 0.3 * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, noise)])
    assert float(extra_loss(state, perturbed, {})) > 1e-3
    # The hook leaves the params alone.
    jax.tree.map(np.testing.assert_array_equal, params_after, params)


def test_task_end_fills_that_tasks_slots_with_the_end_of_task_outputs():
    view, params = _view_and_params("ppo", num_tasks=3)
    method = make_bc_replay(BCReplayConfig(states_per_task=10, batch_size=64), view)
    on_task_start, on_task_end = jax.jit(method.on_task_start), jax.jit(method.on_task_end)
    state = method.init(jax.random.PRNGKey(0), params)
    # Task 0 shows 25 states (marked 100 + i); the reservoir keeps 10 of them.
    task0 = jnp.stack([100 + jnp.arange(25.0), jnp.zeros(25), jnp.zeros(25), jnp.zeros(25)], 1)
    state = _observe(method, state, task0, 0, jax.random.PRNGKey(1))
    assert state["stored"].tolist() == [0, 0, 0]  # no targets before the task ends
    state, _ = on_task_end(state, params, 0, jax.random.PRNGKey(2))
    state, _ = on_task_start(state, params, 1, jax.random.PRNGKey(3))
    assert state["stored"].tolist() == [10, 0, 0]
    kept0 = np.asarray(state["obs"][:10, 0])
    assert len(set(kept0)) == 10 and set(kept0) <= set(100 + np.arange(25.0))
    expected0 = view.outputs(params, state["obs"][:10])
    # Task 1 shows 5 states (marked 200 + i), ends under different params.
    task1 = jnp.stack([200 + jnp.arange(5.0), jnp.zeros(5), jnp.zeros(5), jnp.zeros(5)], 1)
    state = _observe(method, state, task1, 1, jax.random.PRNGKey(4))
    later = jax.tree.map(lambda p: p * 1.5, params)
    state, _ = on_task_end(state, later, 1, jax.random.PRNGKey(5))
    assert state["stored"].tolist() == [10, 5, 0]
    np.testing.assert_array_equal(state["obs"][:10, 0], kept0)  # task 0's rows untouched
    np.testing.assert_array_equal(state["obs"][10:15, 0], 200 + np.arange(5.0))
    assert np.all(np.asarray(state["obs"][15:]) == 0)
    for name, rows in view.outputs(later, state["obs"][10:15]).items():
        np.testing.assert_allclose(state["targets"][name][10:15], rows, rtol=1e-6)
    for name, rows in expected0.items():  # task 0 keeps the targets of its own end
        np.testing.assert_allclose(state["targets"][name][:10], rows, rtol=1e-6)
        assert np.all(np.asarray(state["targets"][name][15:]) == 0)
    # The distillation sample comes from the finished tasks' filled rows only.
    state = _observe(method, state, task1, 2, jax.random.PRNGKey(6))
    assert set(np.asarray(state["rows"]).tolist()) <= set(range(15))


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_agents_distil_after_a_task_boundary_under_jit_and_vmap(agent_name, two_seeds):
    entry = METHODS["bc_replay"]
    assert set(entry.agents) == {"ppo", "dqn", "sac", "td3"} and entry.needs_boundaries
    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, num_tasks=2),
                       [lambda view: make_bc_replay(BCReplayConfig(states_per_task=16), view)])
    state, batch, keys = two_seeds(agent)
    update = jax.jit(jax.vmap(agent.update))
    state, info = update(state, batch, keys)
    assert np.all(np.asarray(info["method_loss"]) == 0)  # nothing stored before a task ends
    state = jax.jit(jax.vmap(agent.task_boundary, in_axes=(0, None, None, 0)))(
        state, jnp.int32(0), jnp.int32(1), keys)
    assert state.methods["bc_replay"]["stored"].tolist() == [[16, 0], [16, 0]]
    state, info = update(state, batch, keys)
    assert np.all(np.asarray(info["method_loss"]) > 0)
