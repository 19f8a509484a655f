"""Functional (gymnax) tasks: the context really changes the dynamics, transformations apply.

One jitted `reset` and `step` per env family for the whole module (JAX compile is the cost).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import EnvState as CartPoleState

from everlearn.envs.functional import FunctionalEnv, index_params, stack_params

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def cartpole():
    env = FunctionalEnv("CartPole-v1")
    return env, jax.jit(env.reset), jax.jit(env.step)


@pytest.fixture(scope="module")
def acrobot():
    env = FunctionalEnv("Acrobot-v1")
    return env, jax.jit(env.reset), jax.jit(env.step)


def cp_state(x, x_dot, theta, theta_dot, time=0) -> CartPoleState:
    f = jnp.float32
    return CartPoleState(x=f(x), x_dot=f(x_dot), theta=f(theta), theta_dot=f(theta_dot),
                         time=jnp.int32(time))


def np_cartpole_step(s, action, gravity=9.8, masscart=1.0, masspole=0.1, length=0.5,
                     force_mag=10.0, tau=0.02):
    """CartPole's Euler step written out by hand (float64), from Barto, Sutton & Anderson."""
    x, x_dot, theta, theta_dot = (float(v) for v in s)
    total_mass = masscart + masspole
    polemass_length = masspole * length
    force = force_mag if action == 1 else -force_mag
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
    thetaacc = (gravity * sin - cos * temp) / (
        length * (4.0 / 3.0 - masspole * cos**2 / total_mass))
    xacc = temp - polemass_length * thetaacc * cos / total_mass
    return np.array([x + tau * x_dot, x_dot + tau * xacc,
                     theta + tau * theta_dot, theta_dot + tau * thetaacc])


A0, A1 = jnp.int32(0), jnp.int32(1)


def test_physics_changes_next_state(cartpole):
    env, reset, step = cartpole
    default = env.make_params()
    obs, state = reset(KEY, default)
    base = np.asarray(step(KEY, state, A1, default)[0])
    for physics in ({"length": 1.0}, {"masspole": 0.5}, {"masscart": 3.0},
                    {"force_mag": 20.0}, {"gravity": 20.0}):
        changed = np.asarray(step(KEY, state, A1, env.make_params(physics=physics))[0])
        assert not np.allclose(changed, base, atol=1e-6), physics
        # Euler: positions move with the old velocities, so x and theta are unchanged
        np.testing.assert_allclose(changed[[0, 2]], base[[0, 2]], atol=1e-7)
    # tau changes the integration step itself
    changed = step(KEY, state, A1, env.make_params(physics={"tau": 0.05}))[0]
    assert not np.allclose(changed, base, atol=1e-6)


@pytest.mark.parametrize("physics", [
    {},
    {"length": 0.75},
    {"masspole": 0.3},
    {"masscart": 0.5, "force_mag": 12.0},
    {"length": 1.2, "masspole": 0.4, "masscart": 2.0, "gravity": 11.0, "tau": 0.03},
])
def test_step_matches_hand_computed_physics(cartpole, physics):
    env, _, step = cartpole
    params = env.make_params(physics=physics)
    s = (0.1, -0.3, 0.05, 0.4)
    for action in (A0, A1):
        next_obs = step(KEY, cp_state(*s), action, params)[5]
        expected = np_cartpole_step(s, int(action), **physics)
        np.testing.assert_allclose(next_obs, expected, atol=1e-5)


def test_derived_cartpole_parameters():
    env = FunctionalEnv("CartPole-v1")
    p = env.make_params(physics={"masspole": 0.3, "length": 0.75, "masscart": 0.5}).env
    assert float(p.total_mass) == pytest.approx(0.8)
    assert float(p.polemass_length) == pytest.approx(0.225)
    p = env.make_params(physics={"length": 1.0}).env
    assert float(p.total_mass) == pytest.approx(1.1)
    assert float(p.polemass_length) == pytest.approx(0.1)


def test_unknown_physical_parameter_raises():
    env = FunctionalEnv("CartPole-v1")
    with pytest.raises(ValueError, match="wheel_size") as info:
        env.make_params(physics={"wheel_size": 1.0})
    assert "length" in str(info.value)  # lists the valid ones


def test_action_map_swaps_actions(cartpole):
    env, reset, step = cartpole
    default, inverted = env.make_params(), env.make_params(action_map=(1, 0))
    _, state = reset(KEY, default)
    np.testing.assert_array_equal(step(KEY, state, A0, inverted)[0],
                                  step(KEY, state, A1, default)[0])
    np.testing.assert_array_equal(step(KEY, state, A1, inverted)[0],
                                  step(KEY, state, A0, default)[0])
    assert not np.allclose(step(KEY, state, A0, inverted)[0], step(KEY, state, A0, default)[0])


def test_obs_perm_and_scale(cartpole):
    env, reset, step = cartpole
    default = env.make_params()
    perm = env.make_params(obs_perm=(2, 3, 0, 1))
    scaled = env.make_params(obs_perm=(3, 2, 1, 0), obs_scale=(1.0, 2.0, -1.0, 0.5))
    obs_d, state = reset(KEY, default)
    obs_p, state_p = reset(KEY, perm)
    np.testing.assert_array_equal(obs_p, obs_d[jnp.array([2, 3, 0, 1])])
    # the underlying state is the same: only the view changes
    np.testing.assert_array_equal(jnp.stack(jax.tree.leaves(state_p)),
                                  jnp.stack(jax.tree.leaves(state)))
    out_d = step(KEY, state, A1, default)
    out_p = step(KEY, state, A1, perm)
    out_s = step(KEY, state, A1, scaled)
    for i in (0, 5):  # obs and next_obs
        np.testing.assert_array_equal(out_p[i], out_d[i][jnp.array([2, 3, 0, 1])])
        np.testing.assert_allclose(out_s[i], out_d[i][jnp.array([3, 2, 1, 0])]
                                   * jnp.array([1.0, 2.0, -1.0, 0.5]), rtol=1e-6)


def test_reward_scale_and_shift(cartpole):
    env, reset, step = cartpole
    params = env.make_params(reward_scale=2.0, reward_shift=-0.5)
    _, state = reset(KEY, params)
    reward = step(KEY, state, A0, params)[2]
    assert reward.dtype == jnp.float32
    assert float(reward) == pytest.approx(1.0 * 2.0 - 0.5)


def test_autoreset_returns_reset_obs_and_true_next_obs(cartpole):
    env, _, step = cartpole
    params = env.make_params(obs_perm=(2, 3, 0, 1))
    s = (0.0, 0.0, 0.2, 1.0)  # theta beyond the 12-degree threshold after one step
    obs, state, reward, terminated, truncated, next_obs = step(KEY, cp_state(*s), A1, params)
    assert bool(terminated) and not bool(truncated)
    expected = np_cartpole_step(s, 1)
    np.testing.assert_allclose(next_obs, expected[[2, 3, 0, 1]], atol=1e-5)
    assert np.all(np.abs(obs) <= 0.05)  # a fresh reset state, seen through the same perm
    assert int(state.time) == 0


def test_truncation_at_time_limit(cartpole):
    env, _, step = cartpole
    params = env.make_params()
    _, _, reward, terminated, truncated, _ = step(KEY, cp_state(0, 0, 0, 0, time=499), A1, params)
    assert bool(truncated) and not bool(terminated) and float(reward) == 1.0


def test_stack_and_index_params_round_trip(cartpole):
    env, reset, step = cartpole
    tasks = [
        env.make_params(),
        env.make_params(physics={"length": 0.75}, action_map=(1, 0)),
        env.make_params(physics={"masspole": 0.3}, obs_perm=(2, 3, 0, 1), reward_scale=3.0),
    ]
    stacked = stack_params(tasks)
    assert jax.tree.structure(stacked) == jax.tree.structure(tasks[0])
    for leaf, leaf0 in zip(jax.tree.leaves(stacked), jax.tree.leaves(tasks[0])):
        assert leaf.shape == (3, *jnp.shape(leaf0))
    for i, task in enumerate(tasks):
        for a, b in zip(jax.tree.leaves(index_params(stacked, i)), jax.tree.leaves(task)):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    # vmap over tasks gives each task's own transition
    _, state = reset(KEY, tasks[0])
    batched = jax.vmap(env.step, in_axes=(None, None, None, 0))(KEY, state, A0, stacked)
    for i, task in enumerate(tasks):
        single = step(KEY, state, A0, task)
        np.testing.assert_allclose(batched[0][i], single[0], atol=1e-6)
        np.testing.assert_allclose(batched[2][i], single[2])


def test_acrobot_context_changes_dynamics(acrobot):
    env, reset, step = acrobot
    default = env.make_params()
    obs, state = reset(KEY, default)
    base = step(KEY, state, A0, default)[5]
    for physics in ({"link_mass_2": 1.5}, {"link_length_1": 1.2}, {"link_moi": 2.0}):
        changed = step(KEY, state, A0, env.make_params(physics=physics))[5]
        assert not np.allclose(changed, base, atol=1e-6), physics
    # reversed torque: agent action 0 is env action 2
    reversed_ = env.make_params(action_map=(2, 1, 0))
    np.testing.assert_array_equal(step(KEY, state, A0, reversed_)[5],
                                  step(KEY, state, jnp.int32(2), default)[5])
    assert obs.shape == (6,)
