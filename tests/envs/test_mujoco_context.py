"""MujocoContext (physics and reward contexts on MuJoCo envs) and ContextDrift."""

import gymnasium as gym
import numpy as np
import pytest

from everlearn.envs.mujoco_context import (
    MUJOCO_CONTEXT_KEYS,
    ContextDrift,
    MujocoContext,
    interpolate,
)


def _mujoco_env(env_id: str, context: dict | None = None) -> MujocoContext:
    return MujocoContext(gym.make(env_id), context or {})


def _rollout(env: gym.Env, n: int, seed: int = 0):
    """Obs, rewards and infos for `n` steps of seeded random actions (same actions every call)."""
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (n, *env.action_space.shape))
    out = [obs]
    rewards, infos = [], []
    for a in actions:
        obs, r, _, _, info = env.step(a.astype(np.float32))
        out.append(obs)
        rewards.append(r)
        infos.append(info)
    return np.array(out), np.array(rewards), infos


# --- MujocoContext: physics ---------------------------------------------------------------


def test_mass_scale_doubles_mass_and_inertia_and_is_not_cumulative():
    env = _mujoco_env("Hopper-v5")
    model = env.unwrapped.model
    mass, inertia = model.body_mass.copy(), model.body_inertia.copy()
    subtree = model.body_subtreemass.copy()
    env.set_context({"mass_scale": 2.0})
    env.set_context({"mass_scale": 2.0})  # twice: relative to the defaults, so still 2x
    np.testing.assert_allclose(model.body_mass, 2 * mass)
    np.testing.assert_allclose(model.body_inertia, 2 * inertia)
    np.testing.assert_allclose(model.body_subtreemass, 2 * subtree)  # derived constants follow
    assert env.context == {"mass_scale": 2.0}
    env.set_context({})
    np.testing.assert_array_equal(model.body_mass, mass)
    np.testing.assert_array_equal(model.body_inertia, inertia)
    assert env.context == {}


def test_mass_scale_changes_the_trajectory_and_default_restores_it():
    env = _mujoco_env("Hopper-v5")
    default, _, _ = _rollout(env, 20)
    env.set_context({"mass_scale": 2.0})
    heavy, _, _ = _rollout(env, 20)
    assert not np.allclose(default[-1], heavy[-1], atol=1e-3)
    env.set_context({})
    np.testing.assert_array_equal(_rollout(env, 20)[0], default)  # exact: nothing left behind


def test_friction_gravity_and_gear_set_the_model_arrays():
    env = _mujoco_env("Hopper-v5")
    model = env.unwrapped.model
    friction, gear = model.geom_friction.copy(), model.actuator_gear.copy()
    env.set_context({"friction_scale": 0.5, "gravity": 3.0, "gear_scale": 1.5})
    np.testing.assert_allclose(model.geom_friction[:, 0], 0.5 * friction[:, 0])
    np.testing.assert_array_equal(model.geom_friction[:, 1:], friction[:, 1:])  # torsional, rolling
    np.testing.assert_allclose(model.opt.gravity, [0.0, 0.0, -3.0])
    np.testing.assert_allclose(model.actuator_gear[:, 0], 1.5 * gear[:, 0])
    np.testing.assert_array_equal(model.actuator_gear[:, 1:], gear[:, 1:])
    env.set_context({})
    np.testing.assert_allclose(model.opt.gravity, [0.0, 0.0, -9.81])
    np.testing.assert_array_equal(model.geom_friction, friction)
    np.testing.assert_array_equal(model.actuator_gear, gear)


def test_gravity_takes_effect_at_the_next_step():
    env = _mujoco_env("Hopper-v5")
    env.reset(seed=0)
    env.set_context({"gravity": 0.0})  # mid-episode: no reset needed
    z0 = env.unwrapped.data.qpos[1]
    for _ in range(10):
        env.step(np.zeros(3, np.float32))
    assert env.unwrapped.data.qpos[1] >= z0 - 1e-6  # weightless: the hopper does not fall


# --- MujocoContext: reward ----------------------------------------------------------------


def test_direction_flips_the_forward_term_and_keeps_the_control_cost():
    default = _rollout(_mujoco_env("HalfCheetah-v5"), 30)
    backward = _rollout(_mujoco_env("HalfCheetah-v5", {"direction": -1.0}), 30)
    np.testing.assert_array_equal(default[0], backward[0])  # physics unchanged
    fwd = np.array([i["reward_forward"] for i in default[2]])
    assert np.abs(fwd).max() > 0.1
    np.testing.assert_allclose([i["reward_forward"] for i in backward[2]], -fwd)
    ctrl = np.array([i["reward_ctrl"] for i in backward[2]])
    np.testing.assert_allclose(backward[1], -fwd + ctrl)
    np.testing.assert_allclose(default[1], fwd + ctrl)


def test_target_velocity_penalises_the_distance_from_the_target():
    env = _mujoco_env("Hopper-v5", {"target_velocity": 1.5})
    _, rewards, infos = _rollout(env, 15)
    xv = np.array([i["x_velocity"] for i in infos])
    expected_fwd = -env.unwrapped._forward_reward_weight * np.abs(xv - 1.5)
    np.testing.assert_allclose([i["reward_forward"] for i in infos], expected_fwd)
    survive_ctrl = np.array([i["reward_survive"] + i["reward_ctrl"] for i in infos])
    np.testing.assert_allclose(rewards, expected_fwd + survive_ctrl)


def test_no_reward_key_passes_the_reward_through():
    default = _rollout(gym.make("Hopper-v5"), 10)
    wrapped = _rollout(_mujoco_env("Hopper-v5", {"mass_scale": 1.0}), 10)
    np.testing.assert_array_equal(default[1], wrapped[1])


# --- MujocoContext: bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "context, match",
    [
        ({"mas_scale": 2.0}, "unknown context key 'mas_scale' for Hopper-v5; valid: mass_scale"),
        ({"direction": -1.0, "target_velocity": 1.0}, "both direction and target_velocity"),
        ({"mass_scale": 0.0}, "mass_scale must be > 0"),
        ({"gravity": -9.81}, "gravity .* must be >= 0"),
    ],
)
def test_bad_context_raises_one_line_value_error(context, match):
    env = _mujoco_env("Hopper-v5")
    with pytest.raises(ValueError, match=match) as err:
        env.set_context(context)
    assert "\n" not in str(err.value)
    assert ", ".join(MUJOCO_CONTEXT_KEYS) in str(err.value) or "unknown" not in match


def test_reward_keys_on_an_env_without_forward_reward_raise():
    env = _mujoco_env("InvertedPendulum-v5")
    env.set_context({"mass_scale": 1.2})  # physics keys are fine
    with pytest.raises(ValueError, match="no forward-velocity reward"):
        env.set_context({"direction": -1.0})


# --- ContextDrift -------------------------------------------------------------------------


class _FixedEpisodes(gym.Env):
    """Episodes of exactly `length` steps; the observation is the context value `x`."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 5):
        self.length, self.t, self.x = length, 0, 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.x], np.float32), 0.0, self.t >= self.length, False, {}


class _FakeContext(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.calls: list[dict] = []

    def set_context(self, context):
        self.calls.append(dict(context))
        self.env.unwrapped.x = context["x"]


WAYPOINTS = [{"x": 0.0}, {"x": 10.0}, {"x": 20.0}]


def test_interpolate_is_linear_between_neighbours_and_clipped():
    assert interpolate(WAYPOINTS, 1.25) == {"x": 12.5}
    assert interpolate(WAYPOINTS, 0.0) == {"x": 0.0}
    assert interpolate(WAYPOINTS, 2.0) == {"x": 20.0}
    assert interpolate(WAYPOINTS, -3.0) == {"x": 0.0}
    assert interpolate(WAYPOINTS, 7.0) == {"x": 20.0}
    two_keys = [{"a": 0.0, "b": 1.0}, {"a": 4.0, "b": -1.0}]
    assert interpolate(two_keys, 0.25) == {"a": 1.0, "b": 0.5}
    assert interpolate([{"a": 3.0}], 0.7) == {"a": 3.0}


def test_drift_moves_the_position_at_each_reset_and_clamps_at_end():
    env = ContextDrift(_FakeContext(_FixedEpisodes(length=5)), WAYPOINTS)
    env.reset()
    assert env.position == 0.0 and env.context == {"x": 0.0}  # no drift yet: waypoint 0
    env.set_drift(0.0, 2.0, steps=20)
    seen = []
    for _ in range(6):
        obs, _ = env.reset()
        seen.append((env.position, float(obs[0])))
        for _ in range(5):
            env.step(0)
    assert seen == [(0.0, 0.0), (0.5, 5.0), (1.0, 10.0), (1.5, 15.0), (2.0, 20.0), (2.0, 20.0)]
    env.set_drift(2.0, 1.0, steps=10)  # a new segment restarts the counter
    env.reset()
    assert env.position == 2.0
    for _ in range(5):
        env.step(0)
    env.reset()
    assert env.position == 1.5 and env.context == {"x": 15.0}


def test_drift_rejects_bad_waypoints_and_envs_without_set_context():
    with pytest.raises(ValueError, match="at least one waypoint"):
        ContextDrift(_FakeContext(_FixedEpisodes()), [])
    with pytest.raises(ValueError, match="waypoint 1 has keys"):
        ContextDrift(_FakeContext(_FixedEpisodes()), [{"x": 0.0}, {"y": 1.0}])
    with pytest.raises(ValueError, match="no wrapper with set_context"):
        ContextDrift(_FixedEpisodes(), WAYPOINTS)


def test_set_drift_through_a_sync_vector_env():
    venv = gym.vector.SyncVectorEnv(
        [lambda: ContextDrift(_FakeContext(_FixedEpisodes(length=4)), WAYPOINTS)] * 2
    )
    venv.reset(seed=0)
    venv.call("set_drift", 1.0, 2.0, 8)
    assert venv.get_attr("position") == (0.0, 0.0)  # takes effect at the next reset
    obs, _ = venv.reset()
    np.testing.assert_array_equal(obs[:, 0], [10.0, 10.0])
    xs = []
    for _ in range(15):  # auto-resets (the step after each 4-step episode) pick up the drift
        obs, *_ = venv.step(np.zeros(2, int))
        xs.append(float(obs[0, 0]))
    # episode starts after 0, 4, 8, 12 inner steps: positions 1, 1.5, 2, 2 (clamped)
    assert sorted(set(xs)) == [10.0, 15.0, 20.0]
    assert venv.get_attr("position") == (2.0, 2.0)


def test_drift_changes_hopper_mass_across_episodes():
    env = ContextDrift(MujocoContext(gym.make("Hopper-v5")), [{"mass_scale": 1.0}, {"mass_scale": 2.0}])
    model = env.unwrapped.model
    default_mass = model.body_mass.copy()
    env.set_drift(0.0, 1.0, steps=10)
    env.reset(seed=0)
    np.testing.assert_allclose(model.body_mass, default_mass)
    for _ in range(5):
        env.step(np.zeros(3, np.float32))
    np.testing.assert_allclose(model.body_mass, default_mass)  # no change within an episode
    env.reset()
    np.testing.assert_allclose(model.body_mass, 1.5 * default_mass)
    assert env.get_wrapper_attr("context") == {"mass_scale": 1.5}
