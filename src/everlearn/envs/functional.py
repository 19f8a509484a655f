"""Functional tasks: a gymnax env plus a context pytree, so a task switch is a change of arguments.

`TaskParams` holds everything that defines a task — the gymnax env params (physics) and the
task transformations (observation permutation and scale, action mapping, reward scale and shift)
— as arrays. Every task of a scenario has the same pytree structure, so the compiled training
loop takes the current task as an argument and never recompiles, and stacking the tasks'
params lets the evaluator `vmap` over all tasks at once.
"""

from __future__ import annotations

from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from flax import struct

from everlearn.envs.families import derived_physics, get_family


@struct.dataclass
class TaskParams:
    env: Any  # the gymnax EnvParams with the task's physics
    obs_perm: jax.Array  # int32[obs_dim]: agent sees obs[obs_perm]
    obs_scale: jax.Array  # float32[obs_dim]: ... multiplied by obs_scale
    action_map: jax.Array  # int32[num_actions]: agent action a is env action action_map[a]
    # float32[action dims]: continuous action a is env action a * action_scale (the family's
    # bound times the task's per-dimension scale); ones, unused, for discrete families.
    action_scale: jax.Array
    reward_scale: jax.Array  # float32[]
    reward_shift: jax.Array  # float32[]
    task_onehot: jax.Array  # float32[num_tasks] appended to obs where task ids are given; else [0]


class FunctionalEnv:
    """A gymnax env whose reset/step take `TaskParams`; auto-resets like gymnax."""

    def __init__(self, family: str):
        self.family = get_family(family)
        if self.family.gymnax_id is None:
            raise ValueError(f"{family} has no functional version; run it on the Gymnasium "
                             "path (--backend gymnasium)")
        self.env, self.default_env_params = gymnax.make(self.family.gymnax_id)

    def make_params(
        self,
        physics: dict[str, float] | None = None,
        obs_perm: tuple[int, ...] | None = None,
        obs_scale: tuple[float, ...] | None = None,
        action_map: tuple[int, ...] | None = None,
        action_scale: tuple[float, ...] | None = None,
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
        task_onehot: tuple[float, ...] = (),
    ) -> TaskParams:
        physics = dict(physics or {})
        unknown = set(physics) - set(self.family.physics)
        if unknown:
            raise ValueError(
                f"unknown physical parameter(s) {sorted(unknown)} for {self.family.name}; "
                f"valid: {', '.join(self.family.physics)}"
            )
        fields = {**physics, **derived_physics(self.family.name, physics)}
        env_params = self.default_env_params.replace(**fields)
        # Arrays everywhere, so that tasks stack and are traced rather than baked in.
        env_params = jax.tree.map(jnp.asarray, env_params)
        d, n = self.family.obs_dim, self.family.num_actions
        return TaskParams(
            env=env_params,
            obs_perm=jnp.asarray(obs_perm if obs_perm is not None else range(d), jnp.int32),
            obs_scale=jnp.asarray(obs_scale if obs_scale is not None else [1.0] * d, jnp.float32),
            action_map=jnp.asarray(action_map if action_map is not None else range(n), jnp.int32),
            action_scale=jnp.asarray(action_scale if action_scale is not None else [1.0] * n,
                                     jnp.float32) * self.family.action_bound,
            reward_scale=jnp.asarray(reward_scale, jnp.float32),
            reward_shift=jnp.asarray(reward_shift, jnp.float32),
            task_onehot=jnp.asarray(task_onehot, jnp.float32).reshape(-1),
        )

    @staticmethod
    def _observe(obs: jax.Array, params: TaskParams) -> jax.Array:
        return jnp.concatenate([obs[params.obs_perm] * params.obs_scale, params.task_onehot])

    def reset(self, key: jax.Array, params: TaskParams) -> tuple[jax.Array, Any]:
        obs, state = self.env.reset(key, params.env)
        return self._observe(obs, params), state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: TaskParams):
        """Returns (obs, state, reward, terminated, truncated, next_obs).

        `obs` is the reset observation where the episode ended; `next_obs` is always the true
        observation after this transition (needed to bootstrap a truncated episode).
        """
        if self.family.continuous:
            env_action = jnp.clip(action, -1.0, 1.0) * params.action_scale
        else:
            env_action = params.action_map[action]
        obs, state, reward, terminated, truncated, info = self.env.step(
            key, state, env_action, params.env
        )
        reward = reward * params.reward_scale + params.reward_shift
        next_obs = self._observe(info["final_observation"], params)
        return (
            self._observe(obs, params),
            state,
            reward.astype(jnp.float32),
            terminated,
            truncated,
            next_obs,
        )


def stack_params(params: list[TaskParams]) -> TaskParams:
    """Stack tasks along a leading axis (for `vmap` over tasks)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)


def index_params(stacked: TaskParams, i: int | jax.Array) -> TaskParams:
    return jax.tree.map(lambda x: x[i], stacked)


def interpolate_params(stacked: TaskParams, position: jax.Array) -> TaskParams:
    """The context at `position` along stacked waypoint tasks (a drifting scenario): linear
    between neighbouring waypoints for float fields, the lower waypoint's for the others."""
    last = jax.tree.leaves(stacked)[0].shape[0] - 1
    position = jnp.clip(position, 0.0, last)
    low = jnp.floor(position).astype(jnp.int32)
    high = jnp.minimum(low + 1, last)
    weight = position - low

    def mix(x: jax.Array) -> jax.Array:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x[low]
        return x[low] + weight.astype(x.dtype) * (x[high] - x[low])

    return jax.tree.map(mix, stacked)
