"""The two env paths are the same env: from the same state, with the same context and action,
the functional (gymnax) and Gymnasium envs produce the same next observation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.acrobot import EnvState as AcrobotState
from gymnax.environments.classic_control.cartpole import EnvState as CartPoleState

from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.gymnasium_context import make_task_env
from everlearn.scenarios import Task, get_scenario

KEY = jax.random.PRNGKey(0)

CARTPOLE_STATES = [
    (0.0, 0.0, 0.0, 0.0),
    (0.1, -0.3, 0.05, 0.4),
    (-1.0, 0.8, -0.15, -1.2),
]
ACROBOT_STATES = [
    (0.05, -0.03, 0.02, 0.01),
    (1.0, -0.5, 2.0, -3.0),
]


def functional_params(env: FunctionalEnv, task: Task):
    return env.make_params(physics=dict(task.physics), obs_perm=task.obs_perm,
                           obs_scale=task.obs_scale, action_map=task.action_map,
                           reward_scale=task.reward_scale, reward_shift=task.reward_shift)


@pytest.fixture(scope="module")
def cartpole():
    env = FunctionalEnv("CartPole-v1")
    return env, jax.jit(env.step)


@pytest.fixture(scope="module")
def acrobot():
    env = FunctionalEnv("Acrobot-v1")
    return env, jax.jit(env.step)


def cartpole_tasks() -> list[Task]:
    custom = Task("custom", "CartPole-v1", 22.0, 500.0,
                  physics={"length": 1.2, "masspole": 0.4, "masscart": 2.0, "gravity": 11.0,
                           "force_mag": 7.0, "tau": 0.03},
                  obs_scale=(1.0, 0.5, 2.0, -1.0), reward_scale=2.0, reward_shift=0.1)
    return [*get_scenario("cartpole-contexts").tasks, custom]


@pytest.mark.parametrize("task", cartpole_tasks(), ids=lambda t: t.name)
def test_cartpole_paths_agree(cartpole, task):
    fenv, step = cartpole
    params = functional_params(fenv, task)
    genv = make_task_env(task)
    genv.reset(seed=0)
    for s in CARTPOLE_STATES:
        for action in (0, 1):
            genv.unwrapped.state = np.array(s, dtype=np.float64)
            g_obs, g_reward, g_term, _, _ = genv.step(action)
            f32 = jnp.float32
            state = CartPoleState(x=f32(s[0]), x_dot=f32(s[1]), theta=f32(s[2]),
                                  theta_dot=f32(s[3]), time=jnp.int32(0))
            _, _, f_reward, f_term, _, f_next = step(KEY, state, jnp.int32(action), params)
            np.testing.assert_allclose(np.asarray(f_next), g_obs, atol=1e-5,
                                       err_msg=f"{task.name} state={s} action={action}")
            assert float(f_reward) == pytest.approx(g_reward)
            assert bool(f_term) == bool(g_term)
    genv.close()


def test_cartpole_paths_agree_over_a_rollout(cartpole):
    """Ten steps from the same start, each path on its own state: they stay together."""
    fenv, step = cartpole
    task = get_scenario("cartpole-contexts").tasks[3]  # light cart, strong force, inverted
    params = functional_params(fenv, task)
    genv = make_task_env(task)
    genv.reset(seed=0)
    s = (0.02, 0.1, -0.03, 0.05)
    genv.unwrapped.state = np.array(s, dtype=np.float64)
    f32 = jnp.float32
    state = CartPoleState(x=f32(s[0]), x_dot=f32(s[1]), theta=f32(s[2]), theta_dot=f32(s[3]),
                          time=jnp.int32(0))
    for action in [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]:
        g_obs, _, g_term, _, _ = genv.step(action)
        _, state, _, f_term, _, f_next = step(KEY, state, jnp.int32(action), params)
        np.testing.assert_allclose(np.asarray(f_next), g_obs, atol=1e-4)
        assert not g_term and not bool(f_term)
    genv.close()


@pytest.mark.parametrize("task", get_scenario("acrobot-contexts").tasks, ids=lambda t: t.name)
def test_acrobot_paths_agree(acrobot, task):
    fenv, step = acrobot
    params = functional_params(fenv, task)
    genv = make_task_env(task)
    genv.reset(seed=0)
    for s in ACROBOT_STATES:
        for action in (0, 1, 2):
            genv.unwrapped.state = np.array(s, dtype=np.float64)
            g_obs, g_reward, _, _, _ = genv.step(action)
            f32 = jnp.float32
            state = AcrobotState(joint_angle1=f32(s[0]), joint_angle2=f32(s[1]),
                                 velocity_1=f32(s[2]), velocity_2=f32(s[3]),
                                 time=jnp.int32(0))
            _, _, f_reward, _, _, f_next = step(KEY, state, jnp.int32(action), params)
            np.testing.assert_allclose(np.asarray(f_next), g_obs, atol=1e-4,
                                       err_msg=f"{task.name} state={s} action={action}")
            assert float(f_reward) == pytest.approx(g_reward)
    genv.close()


PENDULUM_STATES = [(0.0, 0.0), (2.5, -1.0), (-1.0, 6.0)]


@pytest.mark.parametrize("task", get_scenario("pendulum-contexts").tasks, ids=lambda t: t.name)
def test_pendulum_paths_agree(task):
    """Continuous actions: the agent's [-1, 1] action is scaled by the env's bound (2.0) and
    the task's action_scale on both paths, and max_torque clips it on both."""
    from gymnax.environments.classic_control.pendulum import EnvState as PendulumState

    fenv = FunctionalEnv("Pendulum-v1")
    params = fenv.make_params(physics=dict(task.physics), action_scale=task.action_scale)
    genv = make_task_env(task)
    genv.reset(seed=0)
    for s in PENDULUM_STATES:
        for action in (-1.0, 0.3, 1.0):
            genv.unwrapped.state = np.array(s, dtype=np.float64)
            g_obs, g_reward, _, _, _ = genv.step(np.array([action], np.float32))
            state = PendulumState(theta=jnp.float32(s[0]), theta_dot=jnp.float32(s[1]),
                                  last_u=jnp.float32(0.0), time=jnp.int32(0))
            _, _, f_reward, _, _, f_next = fenv.step(KEY, state, jnp.array([action]), params)
            np.testing.assert_allclose(np.asarray(f_next), g_obs, atol=1e-4,
                                       err_msg=f"{task.name} state={s} action={action}")
            assert float(f_reward) == pytest.approx(g_reward, rel=1e-4, abs=1e-4)
    genv.close()
