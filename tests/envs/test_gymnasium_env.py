"""Gymnasium path: context wrappers change the physics, transformations apply, own envs work."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from everlearn.envs.gymnasium_context import (
    PhysicsContext,
    TaskTransform,
    make_task_env,
    make_vector_env,
)
from everlearn.scenarios import Task

ACTIONS = [1, 1, 0, 1, 0, 0, 1, 1]


def cartpole_task(**kwargs) -> Task:
    return Task("t", "CartPole-v1", random_score=22.0, reference_score=500.0, **kwargs)


def rollout(env: gym.Env, actions=ACTIONS, seed: int = 0) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    env.close()
    return np.array(out)


def test_physics_context_changes_observations():
    default = rollout(make_task_env(cartpole_task()))
    long_pole = rollout(make_task_env(cartpole_task(physics={"length": 0.75})))
    np.testing.assert_array_equal(default[0], long_pole[0])  # same reset
    assert not np.allclose(default[1:], long_pole[1:], atol=1e-6)
    heavy = rollout(make_task_env(cartpole_task(physics={"masspole": 0.3})))
    assert not np.allclose(default[1:], heavy[1:], atol=1e-6)


def test_physics_context_sets_parameters_and_derived_ones():
    env = make_task_env(cartpole_task(physics={"masspole": 0.3, "masscart": 0.5,
                                               "length": 0.75, "force_mag": 12.0}))
    base = env.unwrapped
    assert base.masspole == 0.3 and base.masscart == 0.5 and base.length == 0.75
    assert base.force_mag == 12.0
    assert base.total_mass == pytest.approx(0.8)
    assert base.polemass_length == pytest.approx(0.225)
    # parameters survive a reset
    env.reset(seed=1)
    assert base.total_mass == pytest.approx(0.8) and base.length == 0.75
    env.close()

    only_length = make_task_env(cartpole_task(physics={"length": 1.0})).unwrapped
    assert only_length.total_mass == pytest.approx(1.1)
    assert only_length.polemass_length == pytest.approx(0.1)


def test_physics_context_on_acrobot():
    env = PhysicsContext(gym.make("Acrobot-v1"), "Acrobot-v1",
                         {"link_mass_2": 1.5, "link_length_1": 1.2})
    assert env.unwrapped.LINK_MASS_2 == 1.5 and env.unwrapped.LINK_LENGTH_1 == 1.2
    # the class default is untouched (set on the instance only)
    assert type(env.unwrapped).LINK_MASS_2 == 1.0
    env.close()


def test_unknown_physical_parameter_raises():
    with pytest.raises(ValueError, match="wheel_size"):
        make_task_env(cartpole_task(physics={"wheel_size": 1.0}))


@pytest.mark.parametrize("name", ["x_threshold", "state", "np_random"])
def test_non_physical_attribute_is_rejected_like_functional_path(name):
    """Only the family's physical parameters are valid, on both paths alike: the functional
    path (FunctionalEnv.make_params) rejects these names, so the Gymnasium path must not
    silently overwrite whatever attribute of the unwrapped env happens to have that name."""
    with pytest.raises(ValueError, match=name):
        make_task_env(cartpole_task(physics={name: 1.0}))


def test_action_map():
    inverted = make_task_env(cartpole_task(action_map=(1, 0)))
    default = make_task_env(cartpole_task())
    np.testing.assert_array_equal(rollout(inverted, [0, 0, 1]), rollout(default, [1, 1, 0]))
    assert not np.allclose(rollout(make_task_env(cartpole_task(action_map=(1, 0))), [0, 0, 1]),
                           rollout(make_task_env(cartpole_task()), [0, 0, 1]))


def test_obs_perm_and_scale():
    perm = (2, 3, 0, 1)
    scale = (1.0, 2.0, -1.0, 0.5)
    default = rollout(make_task_env(cartpole_task()))
    permuted = rollout(make_task_env(cartpole_task(obs_perm=perm)))
    np.testing.assert_array_equal(permuted, default[:, perm])
    scaled = rollout(make_task_env(cartpole_task(obs_perm=perm, obs_scale=scale)))
    np.testing.assert_allclose(scaled, default[:, perm] * np.array(scale, np.float32))
    assert scaled.dtype == np.float32


def test_transformed_observation_space():
    env = make_task_env(cartpole_task(obs_perm=(2, 3, 0, 1), obs_scale=(1.0, 1.0, -2.0, 1.0)))
    inner = gym.make("CartPole-v1").observation_space
    space = env.observation_space
    np.testing.assert_allclose(space.high[0], inner.high[2])
    np.testing.assert_allclose(space.high[2], 2 * inner.high[0])  # flipped sign: low/high swap
    np.testing.assert_allclose(space.low[2], -2 * inner.high[0])
    assert np.all(space.low <= space.high)
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    env.close()


def test_reward_scale_and_shift():
    env = make_task_env(cartpole_task(reward_scale=2.0, reward_shift=-0.5))
    env.reset(seed=0)
    _, reward, *_ = env.step(0)
    assert reward == pytest.approx(1.5)
    env.close()


def test_transform_wraps_plain_env():
    env = TaskTransform(gym.make("CartPole-v1"), action_map=(1, 0))
    assert env.action_space.n == 2
    env.close()


class Corridor(gym.Env):
    """A user's own env: walk right (action 1) to reach position 3; obs = [position, 1]."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([self.pos, 1.0], np.float32), {}

    def step(self, action):
        self.pos += 1 if action == 1 else -1
        done = self.pos >= 3
        return np.array([self.pos, 1.0], np.float32), float(done), done, False, {}


def test_own_env_via_env_factory_in_vector_env():
    task = Task("corridor", "corridor", random_score=0.0, reference_score=1.0,
                env_factory=Corridor, action_map=(1, 0), obs_perm=(1, 0),
                reward_scale=10.0, reward_shift=-1.0)
    envs = make_vector_env(task, 3)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 2)
    np.testing.assert_array_equal(obs, [[1.0, 0.0]] * 3)
    # agent action 0 is env action 1 (right); obs is [1, position]
    for t in range(1, 3):
        obs, reward, terminated, truncated, info = envs.step(np.zeros(3, np.int64))
        np.testing.assert_array_equal(obs[:, 1], [t] * 3)
        np.testing.assert_allclose(reward, [-1.0] * 3)
        assert not terminated.any()
    obs, reward, terminated, truncated, info = envs.step(np.array([0, 0, 1]))
    np.testing.assert_array_equal(terminated, [True, True, False])
    np.testing.assert_allclose(reward, [9.0, 9.0, -1.0])
    # same-step autoreset: ended envs already show their reset obs; the final obs is in info
    np.testing.assert_array_equal(obs[:2], [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(obs[2], [1.0, 1.0])
    np.testing.assert_array_equal(info["final_obs"][0], [1.0, 3.0])
    envs.close()


def test_vector_env_of_registered_family():
    envs = make_vector_env(cartpole_task(physics={"length": 0.75}, action_map=(1, 0)), 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4) and obs.dtype == np.float32
    for e in envs.envs:
        assert e.unwrapped.length == 0.75
    obs, reward, *_ = envs.step(np.array([0, 1]))
    assert obs.shape == (2, 4)
    envs.close()
