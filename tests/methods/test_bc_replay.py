"""Behaviour-cloning replay: the stored behaviour outputs, the per-step sample, the cloning
loss, the agents' wiring; and the end-of-task variant."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.dqn import DQNConfig
from everlearn.agents.ppo import PPOConfig, minibatch_row
from everlearn.methods import METHODS, AgentView, Method
from everlearn.methods.bc_replay import (
    BCReplayConfig,
    BCReplayEndOfTaskConfig,
    make_bc_replay,
    make_bc_replay_end_of_task,
    policy_kl,
)
from everlearn.runs.checks import agents_for

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


def _perturbed(params, scale=0.3):
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    return treedef.unflatten([p + scale * jax.random.normal(k, p.shape)
                              for p, k in zip(leaves, noise)])


def _marked(start, count):
    """`count` observations whose first entry is start, start + 1, ... (to tell them apart)."""
    first = start + jnp.arange(count, dtype=jnp.float32)
    return jnp.stack([first, jnp.zeros(count), jnp.zeros(count), jnp.zeros(count)], 1) / 100


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
    method = make_bc_replay(BCReplayConfig(capacity=4, batch_size=3, policy_coef=2.0,
                                           value_coef=0.5), view)
    state = method.init(jax.random.PRNGKey(0), params)
    # Nothing stored yet: no loss.
    sample = method.transform_batch(state, {}, jax.random.PRNGKey(1))
    assert float(method.extra_loss(state, params, sample)) == 0.0
    # One state, obs 1, stored with the behaviour logits (0, ln 3) and value 1.
    state = method.observe(state, {"obs": jnp.ones((1, 1)), "behaviour": {
        "logits": jnp.array([[0.0, math.log(3.0)]]), "value": jnp.ones(1)}},
        jnp.int32(0), jax.random.PRNGKey(2))
    minibatch = method.transform_batch(state, {"obs": jnp.zeros((5, 1))}, jax.random.PRNGKey(3))
    assert minibatch["bc_replay"]["obs"].shape == (3, 1)  # batch_size rows, the stored one
    np.testing.assert_array_equal(minibatch["obs"], jnp.zeros((5, 1)))  # own rows untouched
    # New policy (1/2, 1/2), new value 3: 2·0.130812 + 0.5·(3 − 1)² = 2.261624.
    np.testing.assert_allclose(method.extra_loss(state, params, minibatch),
                               2 * 0.1308120 + 0.5 * 4.0, rtol=1e-5)


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_loss_is_zero_for_the_behaviour_policy_and_positive_after_a_change(agent_name):
    view, params = _view_and_params(agent_name, num_tasks=3)
    method = make_bc_replay(BCReplayConfig(capacity=32, batch_size=16), view)
    state = method.init(jax.random.PRNGKey(0), params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    state = jax.jit(method.observe)(state, {"obs": obs, "behaviour": view.outputs(params, obs)},
                                    jnp.int32(0), jax.random.PRNGKey(2))
    minibatch = jax.jit(method.transform_batch)(state, {}, jax.random.PRNGKey(3))
    extra_loss = jax.jit(method.extra_loss)
    assert float(extra_loss(state, params, minibatch)) < 1e-10
    assert float(extra_loss(state, _perturbed(params), minibatch)) > 1e-3


def test_reservoir_keeps_each_state_with_its_own_behaviour_outputs():
    view, params = _view_and_params("ppo", num_tasks=1)
    method = make_bc_replay(BCReplayConfig(capacity=10, batch_size=64), view)
    state = method.init(jax.random.PRNGKey(0), params)
    observe = jax.jit(method.observe)
    # 25 marked states, then 25 more under other params: the store is a reservoir of all 50.
    later = _perturbed(params)
    for start, acting in [(0, params), (100, later)]:
        obs = _marked(start, 25)
        state = observe(state, {"obs": obs, "behaviour": view.outputs(acting, obs)},
                        jnp.int32(0), jax.random.PRNGKey(start))
    assert int(state["seen"]) == 50
    marks = np.round(np.asarray(state["obs"][:, 0]) * 100).astype(int)
    assert len(set(marks)) == 10 and set(marks) <= set(range(25)) | set(range(100, 125))
    assert set(marks) & set(range(100, 125))  # the later stream got in
    # Every kept row carries the outputs of the params that acted on it.
    for row, mark in enumerate(marks):
        acting = params if mark < 100 else later
        expected = view.outputs(acting, state["obs"][row:row + 1])
        for name, value in expected.items():
            np.testing.assert_allclose(state["behaviour"][name][row], value[0], rtol=1e-5,
                                       atol=1e-6)


def test_sample_comes_from_filled_rows_only():
    view, params = _view_and_params("ppo", num_tasks=1)
    method = make_bc_replay(BCReplayConfig(capacity=100, batch_size=256), view)
    state = method.init(jax.random.PRNGKey(0), params)
    obs = _marked(1, 7)
    state = method.observe(state, {"obs": obs, "behaviour": view.outputs(params, obs)},
                           jnp.int32(0), jax.random.PRNGKey(1))
    sample = method.transform_batch(state, {}, jax.random.PRNGKey(2))["bc_replay"]
    marks = np.round(np.asarray(sample["obs"][:, 0]) * 100).astype(int)
    assert set(marks) == set(range(1, 8))  # all 7 stored rows, never an empty one


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_stored_outputs_are_the_acting_policys_at_collection_time(agent_name, random_batch):
    """Through a real agent's `update`: the outputs stored with a batch are those of the params
    that acted on it (and PPO's value is the one `act` computed), not the updated params'."""
    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, 1),
                       [lambda view: make_bc_replay(BCReplayConfig(capacity=64), view)])
    update = jax.jit(agent.update)
    state0 = jax.jit(agent.init)(jax.random.PRNGKey(0))
    first = random_batch(jax.random.PRNGKey(1), agent)
    rows = agent.rollout_length * agent.num_envs  # 16: all kept (reservoir not full)
    state1, _ = update(state0, first, jax.random.PRNGKey(2))
    second = random_batch(jax.random.PRNGKey(3), agent)
    state2, _ = update(state1, second, jax.random.PRNGKey(4))
    store = state2.methods["bc_replay"]
    assert int(store["seen"]) == 2 * rows
    view = agent.view
    for k, (acting, batch) in enumerate([(state0, first), (state1, second)]):
        obs = batch.obs.reshape(rows, -1)
        kept = slice(k * rows, (k + 1) * rows)
        np.testing.assert_array_equal(store["obs"][kept], obs)
        now = view.outputs(state2.params, obs)
        for name, value in view.outputs(acting.params, obs).items():
            np.testing.assert_allclose(store["behaviour"][name][kept], value, rtol=1e-5,
                                       atol=1e-6)
            assert np.abs(np.asarray(now[name] - value)).max() > 1e-4  # params did move
    if agent_name == "ppo":  # the value PPO computed while acting
        _, extras = jax.jit(agent.act)(state0, first.obs.reshape(rows, -1),
                                       jax.random.PRNGKey(5))
        np.testing.assert_allclose(store["behaviour"]["value"][:rows], extras["value"],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_every_gradient_step_clones_a_fresh_sample(agent_name, random_batch):
    """A spy method records the replayed rows each gradient step's loss saw."""
    seen = []

    def spy(view):
        def extra_loss(state, params, minibatch):
            jax.debug.callback(lambda obs: seen.append(np.asarray(obs)),
                               minibatch["bc_replay"]["obs"])
            return jnp.zeros(())

        return Method("spy", extra_loss=extra_loss)

    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, 1),
                       [lambda view: make_bc_replay(BCReplayConfig(capacity=64, batch_size=8),
                                                    view), spy])
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    jax.block_until_ready(jax.jit(agent.update)(state, random_batch(jax.random.PRNGKey(1), agent),
                                                jax.random.PRNGKey(2)))
    steps = agent.view.gradient_steps_per_update  # PPO 2 epochs × 2 minibatches; DQN 4
    assert len(seen) == steps == 4
    samples = {sample.tobytes() for sample in seen}
    assert len(samples) == steps  # no two steps cloned the same rows


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_agents_clone_under_jit_and_vmap_without_boundaries(agent_name, two_seeds):
    entry = METHODS["bc_replay"]
    assert agents_for(entry) == tuple(AGENTS) and not entry.needs_boundaries
    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, num_tasks=2),
                       [lambda view: make_bc_replay(BCReplayConfig(capacity=16), view)])
    state, batch, keys = two_seeds(agent)
    update = jax.jit(jax.vmap(agent.update))
    state, info = update(state, batch, keys)  # the first step clones the acting params: 0
    state, info = update(state, batch, keys)  # later steps: the params have moved
    assert np.all(np.asarray(info["method_loss"]) > 0)
    assert np.all(np.isfinite(np.asarray(info["method_loss"])))
    assert state.methods["bc_replay"]["seen"].tolist() == [32, 32]


# -- bc_replay_end_of_task ---------------------------------------------------------------

def _observe(method, state, obs, task, key):
    return jax.jit(method.observe)(state, {"obs": obs}, task, key)


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_end_of_task_loss_is_zero_for_the_stored_policy_and_positive_after_a_change(agent_name):
    view, params = _view_and_params(agent_name, num_tasks=3)
    method = make_bc_replay_end_of_task(BCReplayEndOfTaskConfig(states_per_task=32,
                                                                batch_size=16), view)
    state = method.init(jax.random.PRNGKey(0), params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    state = _observe(method, state, obs, 0, jax.random.PRNGKey(2))
    state, params_after = jax.jit(method.on_task_end)(state, params, 0, jax.random.PRNGKey(3))
    state = _observe(method, state, obs[:8], 1, jax.random.PRNGKey(4))  # draws the sample
    extra_loss = jax.jit(method.extra_loss)
    assert float(extra_loss(state, params, {})) < 1e-10
    assert float(extra_loss(state, _perturbed(params), {})) > 1e-3
    # The hook leaves the params alone.
    jax.tree.map(np.testing.assert_array_equal, params_after, params)


def test_end_of_task_fills_that_tasks_slots_with_the_end_of_task_outputs():
    view, params = _view_and_params("ppo", num_tasks=3)
    method = make_bc_replay_end_of_task(BCReplayEndOfTaskConfig(states_per_task=10,
                                                                batch_size=64), view)
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
def test_end_of_task_agents_distil_after_a_task_boundary_under_jit_and_vmap(agent_name,
                                                                             two_seeds):
    entry = METHODS["bc_replay_end_of_task"]
    assert agents_for(entry) == tuple(AGENTS) and entry.needs_boundaries
    agent = make_agent(agent_name, SMALL[agent_name], EnvSpec(4, 2, num_tasks=2),
                       [lambda view: make_bc_replay_end_of_task(
                           BCReplayEndOfTaskConfig(states_per_task=16), view)])
    state, batch, keys = two_seeds(agent)
    update = jax.jit(jax.vmap(agent.update))
    state, info = update(state, batch, keys)
    assert np.all(np.asarray(info["method_loss"]) == 0)  # nothing stored before a task ends
    state = jax.jit(jax.vmap(agent.task_boundary, in_axes=(0, None, None, 0)))(
        state, jnp.int32(0), jnp.int32(1), keys)
    assert state.methods["bc_replay_end_of_task"]["stored"].tolist() == [[16, 0], [16, 0]]
    state, info = update(state, batch, keys)
    assert np.all(np.asarray(info["method_loss"]) > 0)
