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

from everlearn.envs.families import derived_physics, get_family
from everlearn.envs.mujoco_context import ContextDrift, MujocoContext


class PhysicsContext(gym.Wrapper):
    """Sets physical parameters (gymnax names) on the wrapped env's unwrapped instance."""

    def __init__(self, env: gym.Env, family: str, physics: dict[str, float]):
        super().__init__(env)
        self.family = get_family(family)
        base = env.unwrapped
        names = [*self.family.physics, *derived_physics(family, {})]
        for name in names:
            attr = self.family.physics.get(name, name)
            if not hasattr(base, attr):
                raise ValueError(f"{type(base).__name__} has no physical parameter '{attr}'")
        self.defaults = {name: getattr(base, self.family.physics.get(name, name))
                         for name in names}
        self.set_context(physics)

    def set_context(self, physics: Mapping[str, float]) -> None:
        """Set these parameters, and every other one back to the env's default."""
        unknown = set(physics) - set(self.family.physics)
        if unknown:
            raise ValueError(
                f"unknown physical parameter(s) {sorted(unknown)} for {self.family.name}; "
                f"valid: {', '.join(self.family.physics)}"
            )
        physics = dict(physics)
        values = {**self.defaults, **physics, **derived_physics(self.family.name, physics)}
        for name, value in values.items():
            setattr(self.env.unwrapped, self.family.physics.get(name, name), value)
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
    ):
        """Continuous action spaces: the agent acts in [-1, 1]; the env gets
        `action * bound * action_scale`, `bound` being the upper limit of the env's own action
        space (`action_map` is for discrete spaces)."""
        super().__init__(env)
        d = env.observation_space.shape[0]
        self.obs_perm = np.asarray(obs_perm if obs_perm is not None else range(d))
        self.obs_scale = np.asarray(obs_scale if obs_scale is not None else [1.0] * d, np.float32)
        self.continuous = isinstance(env.action_space, gym.spaces.Box)
        if self.continuous:
            n = env.action_space.shape[0]
            scale = np.asarray(action_scale if action_scale is not None else [1.0] * n)
            self.action_scale = (scale * env.action_space.high).astype(env.action_space.dtype)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            n = env.action_space.n
            self.action_map = np.asarray(action_map if action_map is not None else range(n))
        self.reward_scale, self.reward_shift = reward_scale, reward_shift
        self.task_onehot = np.asarray(task_onehot, np.float32).reshape(-1)
        low = env.observation_space.low[self.obs_perm] * self.obs_scale
        high = env.observation_space.high[self.obs_perm] * self.obs_scale
        self.observation_space = gym.spaces.Box(
            np.concatenate([np.minimum(low, high), np.zeros_like(self.task_onehot)]
                           ).astype(np.float32),
            np.concatenate([np.maximum(low, high), np.ones_like(self.task_onehot)]
                           ).astype(np.float32),
            dtype=np.float32,
        )

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs[self.obs_perm] * self.obs_scale,
                               self.task_onehot]).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._observe(obs), info

    def step(self, action):
        if self.continuous:
            env_action = np.clip(action, -1.0, 1.0) * self.action_scale
        else:
            env_action = int(self.action_map[action])
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        reward = reward * self.reward_scale + self.reward_shift
        return self._observe(obs), reward, terminated, truncated, info


def make_task_env(task, task_onehot: tuple[float, ...] = (),
                  drift_waypoints: Sequence[Mapping[str, float]] | None = None) -> gym.Env:
    """One Gymnasium env for a `Task` (a registered family, or the task's own env factory);
    `task_onehot` is appended to every observation (empty: no task id). With
    `drift_waypoints`, the physics drifts along them between episodes (`ContextDrift`)."""
    if task.env_factory is not None:
        env = task.env_factory()
    else:
        family = get_family(task.env)
        base = gym.make(family.gymnasium_id)
        env = (MujocoContext(base, dict(task.physics)) if family.mujoco
               else PhysicsContext(base, family.name, dict(task.physics)))
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
    )


def make_vector_env(task, num_envs: int, task_onehot: tuple[float, ...] = (),
                    drift_waypoints: Sequence[Mapping[str, float]] | None = None,
                    ) -> gym.vector.SyncVectorEnv:
    """Synchronous vector env with same-step autoreset, as the functional envs do."""
    fns: list[Callable[[], gym.Env]] = [
        lambda: make_task_env(task, task_onehot, drift_waypoints) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
