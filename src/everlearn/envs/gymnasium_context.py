"""Gymnasium path: wrappers that put a task's context onto any `gymnasium.Env`.

`PhysicsContext` sets physical parameters on the unwrapped env (the same names as the
functional path's gymnax params); `TaskTransform` applies the task transformations
(observation permutation/scale, action mapping, reward scale/shift). A user's own env can be a
task too: pass a factory to `make_vector_env` and only the transformations are applied.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from everlearn.envs.families import derived_physics, get_family


class PhysicsContext(gym.Wrapper):
    """Sets physical parameters (gymnax names) on the wrapped env's unwrapped instance."""

    def __init__(self, env: gym.Env, family: str, physics: dict[str, float]):
        super().__init__(env)
        spec = get_family(family)
        unknown = set(physics) - set(spec.physics)
        if unknown:
            raise ValueError(
                f"unknown physical parameter(s) {sorted(unknown)} for {spec.name}; "
                f"valid: {', '.join(spec.physics)}"
            )
        base = env.unwrapped
        for name, value in {**physics, **derived_physics(family, physics)}.items():
            attr = spec.physics.get(name, name)
            if not hasattr(base, attr):
                raise ValueError(f"{type(base).__name__} has no physical parameter '{attr}'")
            setattr(base, attr, value)


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
    ):
        super().__init__(env)
        d = env.observation_space.shape[0]
        self.obs_perm = np.asarray(obs_perm if obs_perm is not None else range(d))
        self.obs_scale = np.asarray(obs_scale if obs_scale is not None else [1.0] * d, np.float32)
        n = env.action_space.n
        self.action_map = np.asarray(action_map if action_map is not None else range(n))
        self.reward_scale, self.reward_shift = reward_scale, reward_shift
        self.task_onehot = np.asarray(task_onehot, np.float32).reshape(-1)
        low = env.observation_space.low[self.obs_perm] * self.obs_scale
        high = env.observation_space.high[self.obs_perm] * self.obs_scale
        self.observation_space = gym.spaces.Box(
            np.concatenate([np.minimum(low, high), np.zeros_like(self.task_onehot)]),
            np.concatenate([np.maximum(low, high), np.ones_like(self.task_onehot)]),
            dtype=np.float32,
        )

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs[self.obs_perm] * self.obs_scale,
                               self.task_onehot]).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._observe(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(int(self.action_map[action]))
        reward = reward * self.reward_scale + self.reward_shift
        return self._observe(obs), reward, terminated, truncated, info


def make_task_env(task, task_onehot: tuple[float, ...] = ()) -> gym.Env:
    """One Gymnasium env for a `Task` (a registered family, or the task's own env factory);
    `task_onehot` is appended to every observation (empty: no task id)."""
    if task.env_factory is not None:
        env = task.env_factory()
    else:
        family = get_family(task.env)
        env = PhysicsContext(gym.make(family.gymnasium_id), family.name, dict(task.physics))
    return TaskTransform(
        env,
        obs_perm=task.obs_perm,
        obs_scale=task.obs_scale,
        action_map=task.action_map,
        reward_scale=task.reward_scale,
        reward_shift=task.reward_shift,
        task_onehot=task_onehot,
    )


def make_vector_env(task, num_envs: int,
                    task_onehot: tuple[float, ...] = ()) -> gym.vector.SyncVectorEnv:
    """Synchronous vector env with same-step autoreset, as the functional envs do."""
    fns: list[Callable[[], gym.Env]] = [lambda: make_task_env(task, task_onehot)
                                        for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
