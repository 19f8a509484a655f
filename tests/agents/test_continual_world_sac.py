"""Continual World's SAC settings (`--preset continual-world`): the network (LayerNorm and tanh
after the first layer, leaky ReLU after the others), random actions for `random_steps` while
learning starts at `learning_starts`, and the buffer, optimiser and α resets at task
boundaries — each on, and off (nothing changes)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.common import MLP
from everlearn.core.replay import Transition

SPEC = EnvSpec(obs_dim=5, num_actions=2, continuous=True)
TINY = dict(hidden_sizes=(8, 8), buffer_size=64, batch_size=8, learning_starts=0, train_every=8)


def _batch(key: jax.Array, steps: int = 8) -> Transition:
    k_obs, k_act, k_rew = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (steps, 1, SPEC.obs_dim))
    return Transition(obs=obs, action=jax.random.uniform(k_act, (steps, 1, 2), minval=-1.0),
                      reward=jax.random.normal(k_rew, (steps, 1)),
                      terminated=jnp.zeros((steps, 1), bool),
                      truncated=jnp.zeros((steps, 1), bool), next_obs=obs + 0.1, extras={})


def test_first_layer_norm_is_dense_layernorm_tanh_then_the_activation():
    net = MLP((4, 4), 1, "leaky_relu", first_layer_norm=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    params = net.init(jax.random.PRNGKey(1), x)
    assert set(params["params"]) == {"Dense_0", "LayerNorm_0", "Dense_1", "Dense_2"}
    _, (h1, h2) = net.apply(params, x, return_hidden=True)
    p = params["params"]
    pre1 = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    normed = nn.LayerNorm().apply({"params": p["LayerNorm_0"]}, pre1)
    np.testing.assert_allclose(h1, jnp.tanh(normed), rtol=1e-5, atol=1e-6)
    pre2 = h1 @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(h2, jnp.where(pre2 > 0, pre2, 0.2 * pre2), rtol=1e-5, atol=1e-6)


def test_random_steps_is_its_own_warm_up_and_learning_starts_its_own():
    agent = make_agent("sac", AGENTS["sac"].config(**{**TINY, "learning_starts": 8,
                                                      "random_steps": 100}), SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    state, _ = jax.jit(agent.update)(state, _batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    assert int(state.gradient_steps) == 8  # learned from 8 rows on
    obs = jnp.zeros((2_000, SPEC.obs_dim))
    warm, _ = agent.act(state, obs, jax.random.PRNGKey(3))  # env step 8 < 100: uniform
    assert abs(float(warm.var()) - 1 / 3) < 0.03
    policy, _ = agent.act(state.replace(env_steps=jnp.int32(100)), obs, jax.random.PRNGKey(3))
    assert not bool(jnp.any(policy == warm))


def _trained_then_boundary(**switches):
    config = AGENTS["sac"].config(**TINY, init_alpha=2.0, **switches)
    agent = make_agent("sac", config, SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    update = jax.jit(agent.update)
    for i in range(3):
        state, _ = update(state, _batch(jax.random.PRNGKey(i)), jax.random.PRNGKey(10 + i))
    after = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), jax.random.PRNGKey(99))
    return state, after


def _adam(opt_state) -> list[optax.ScaleByAdamState]:
    return [node for node in jax.tree.leaves(
        opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
        if isinstance(node, optax.ScaleByAdamState)]


def test_resets_at_a_task_boundary_empty_the_buffer_zero_the_moments_and_restart_alpha():
    before, after = _trained_then_boundary(reset_buffer_each_task=True,
                                           reset_optimiser_each_task=True,
                                           reset_alpha_each_task=True)
    assert int(before.buffer.size) == 24 and int(after.buffer.size) == 0
    assert int(after.buffer.position) == 0
    for state in (after.opt_state, after.alpha_opt_state):
        for adam in _adam(state):
            assert all(float(jnp.abs(m).max()) == 0.0 for m in jax.tree.leaves(adam.mu))
            assert all(float(jnp.abs(v).max()) == 0.0 for v in jax.tree.leaves(adam.nu))
    assert [int(a.count) for a in _adam(after.opt_state)] == \
        [int(a.count) for a in _adam(before.opt_state)]  # step counts kept, as CW's reset
    assert float(before.log_alpha) != pytest.approx(np.log(2.0))
    assert float(after.log_alpha) == pytest.approx(np.log(2.0))
    # the networks themselves are kept (CW does not reset the critic)
    for a, b in zip(jax.tree.leaves(before.params), jax.tree.leaves(after.params)):
        np.testing.assert_array_equal(a, b)


def test_without_the_switches_a_boundary_keeps_buffer_moments_and_alpha():
    before, after = _trained_then_boundary()
    assert int(after.buffer.size) == int(before.buffer.size) == 24
    for a, b in zip(jax.tree.leaves(before.opt_state), jax.tree.leaves(after.opt_state)):
        np.testing.assert_array_equal(a, b)
    assert float(after.log_alpha) == float(before.log_alpha)
