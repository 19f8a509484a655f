"""Gymnasium path: wrappers that put a task's context onto any `gymnasium.Env`.

`PhysicsContext` sets physical parameters on the unwrapped env (the same names as the
functional path's gymnax params), `MujocoContext` (envs/mujoco_context.py) does it for MuJoCo
models; `TaskTransform` applies the task transformations (observation permutation/scale, action
mapping or scaling, reward scale/shift). A user's own env can be a task too: pass a factory to
`make_vector_env` and only the transformations are applied. In a drifting scenario,
`ContextDrift` moves the context between episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from everlearn.envs.families import FAMILIES, derived_physics
from everlearn.envs.layout import Layout, action_mask, pad_observation
from everlearn.envs.mujoco_context import ContextDrift, MujocoContext
from everlearn.envs.sources import family_of, gymnasium_spaces, make_gymnasium


class PhysicsContext(gym.Wrapper):
    """Sets physical parameters on the wrapped env's unwrapped instance: a built-in family's
    (gymnax names, mapped onto Gymnasium's attributes by its table), or for any other env
    the attributes of the unwrapped env named in the task's `physics`."""

    def __init__(self, env: gym.Env, name: str, physics: dict[str, float]):
        super().__init__(env)
        self.name = name
        family = FAMILIES.get(name)
        base = env.unwrapped
        # parameter name -> attribute of the unwrapped env
        self.attributes = (dict(family.physics) if family is not None
                           else {key: key for key in physics if hasattr(base, key)})
        names = [*self.attributes, *derived_physics(name, {})]
        for key in names:
            attr = self.attributes.get(key, key)
            if not hasattr(base, attr):
                raise ValueError(f"{type(base).__name__} has no physical parameter '{attr}'")
        self.defaults = {key: getattr(base, self.attributes.get(key, key)) for key in names}
        self.set_context(physics)

    def set_context(self, physics: Mapping[str, float]) -> None:
        """Set these parameters, and every other one back to the env's default."""
        unknown = set(physics) - set(self.attributes)
        if unknown:
            raise ValueError(
                f"unknown physical parameter(s) {sorted(unknown)} for {self.name}; "
                f"valid: {', '.join(self.attributes) or 'none (no such attributes on the env)'}"
            )
        physics = dict(physics)
        values = {**self.defaults, **physics, **derived_physics(self.name, physics)}
        for key, value in values.items():
            setattr(self.env.unwrapped, self.attributes.get(key, key), value)
        self.context = physics


class TaskTransform(gym.Wrapper):
    """Observation permutation and scale, action remapping, reward scale and shift; and the
    task id as a one-hot appended to the observation where the run gives task ids."""

    def __init__(
        self,
        env: gym.Env,
        obs_perm: tuple[int, ...] | None = None,
        obs_scale: tuple[float, ...] | None = None,
        action_map: tuple[int, ...] | None = None,
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
        task_onehot: tuple[float, ...] = (),
        action_scale: tuple[float, ...] | None = None,
        layout: Layout | None = None,
    ):
        """Continuous action spaces: the agent acts in [-1, 1]; the env gets
        `action * bound * action_scale`, `bound` being the upper limit of the env's own action
        space (`action_map` is for discrete spaces). `layout`: the scenario's observation and
        action layout (padding and action mask, `everlearn.envs.layout`); default: this env's."""
        super().__init__(env)
        spaces = gymnasium_spaces(env, type(env.unwrapped).__name__)
        self.layout = layout or Layout(spaces.obs_shape, spaces.continuous, spaces.num_actions,
                                       masked=False)
        if len(spaces.obs_shape) > 1 and (obs_perm is not None or obs_scale is not None):
            raise ValueError("obs_perm and obs_scale apply to vector observations, not images")
        d = spaces.obs_shape[0]
        self.obs_perm = np.asarray(obs_perm if obs_perm is not None else range(d))
        self.obs_scale = np.asarray(obs_scale if obs_scale is not None else [1.0] * d, np.float32)
        self.action_mask = np.asarray(action_mask(spaces.num_actions, self.layout), np.float32)
        self.continuous = spaces.continuous
        if self.continuous:
            n = env.action_space.shape[0]
            scale = np.asarray(action_scale if action_scale is not None else [1.0] * n)
            self.action_scale = (scale * env.action_space.high).astype(env.action_space.dtype)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            n = env.action_space.n
            self.action_map = np.asarray(action_map if action_map is not None else range(n))
            self.action_space = gym.spaces.Discrete(self.layout.num_actions)
        self.reward_scale, self.reward_shift = reward_scale, reward_shift
        self.task_onehot = np.asarray(task_onehot, np.float32).reshape(-1)
        self.padded = spaces.obs_shape != self.layout.obs_shape
        self.tail = tail = np.concatenate([self.task_onehot, self.action_mask])
        low = self._flat(np.broadcast_to(env.observation_space.low, spaces.obs_shape))
        high = self._flat(np.broadcast_to(env.observation_space.high, spaces.obs_shape))
        self.observation_space = gym.spaces.Box(
            np.concatenate([np.minimum(low, high), np.zeros_like(tail)]).astype(np.float32),
            np.concatenate([np.maximum(low, high), np.ones_like(tail)]).astype(np.float32),
            dtype=np.float32,
        )

    def _flat(self, obs: np.ndarray) -> np.ndarray:
        """The observation as the agent's layout has it: transformed, padded, flattened."""
        obs = np.asarray(obs)
        if obs.ndim == 1:
            obs = obs[self.obs_perm] * self.obs_scale
        if self.padded:
            obs = pad_observation(obs, self.layout.obs_shape)
        return obs.reshape(-1)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        # Called once per env step: the tail (task id, action mask) is joined once, up front.
        return np.concatenate([self._flat(obs), self.tail]).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._observe(obs), info

    def step(self, action):
        if self.continuous:
            env_action = np.clip(action, -1.0, 1.0) * self.action_scale
        else:
            if self.layout.masked and int(action) >= len(self.action_map):  # mask: unreachable
                raise ValueError(f"action {int(action)} does not exist in this task's env "
                                 f"({len(self.action_map)} actions)")
            env_action = int(self.action_map[action])
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        reward = reward * self.reward_scale + self.reward_shift
        return self._observe(obs), reward, terminated, truncated, info


def make_task_env(task, task_onehot: tuple[float, ...] = (),
                  drift_waypoints: Sequence[Mapping[str, float]] | None = None,
                  layout: Layout | None = None) -> gym.Env:
    """One Gymnasium env for a `Task` (`everlearn.envs.sources`: a family, a Gymnasium id, an
    entry point or the task's own factory) with its context and transformations;
    `task_onehot` is appended to every observation (empty: no task id). With
    `drift_waypoints`, the physics drifts along them between episodes (`ContextDrift`).
    `layout`: the scenario's padded observation and masked action layout."""
    env = make_gymnasium(task)
    family = family_of(task)
    if family is not None and family.mujoco:
        env = MujocoContext(env, dict(task.physics))
    elif task.physics or family is not None:
        env = PhysicsContext(env, task.env, dict(task.physics))
    if drift_waypoints is not None:
        env = ContextDrift(env, drift_waypoints)
    return TaskTransform(
        env,
        obs_perm=task.obs_perm,
        obs_scale=task.obs_scale,
        action_map=task.action_map,
        reward_scale=task.reward_scale,
        reward_shift=task.reward_shift,
        task_onehot=task_onehot,
        action_scale=task.action_scale,
        layout=layout,
    )


def make_vector_env(task, num_envs: int, task_onehot: tuple[float, ...] = (),
                    drift_waypoints: Sequence[Mapping[str, float]] | None = None,
                    layout: Layout | None = None) -> gym.vector.SyncVectorEnv:
    """Synchronous vector env with same-step autoreset, as the functional envs do."""
    fns: list[Callable[[], gym.Env]] = [
        lambda: make_task_env(task, task_onehot, drift_waypoints, layout)
        for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
