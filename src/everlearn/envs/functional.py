"""Functional tasks: a gymnax env plus a context pytree, so a task switch is a change of arguments.

`TaskParams` holds everything that defines a task — the gymnax env params (physics) and the
task transformations (observation permutation and scale, action mapping, reward scale and shift)
— as arrays. Every task on one env has the same pytree structure, so the compiled training
loop takes the current task as an argument and never recompiles, and stacking the tasks'
params lets the evaluator `vmap` over all tasks at once. A scenario of several envs has one
`FunctionalEnv` per env, all emitting the scenario's `Layout` (padded observations, masked
actions: `everlearn.envs.layout`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from everlearn.envs.families import derived_physics
from everlearn.envs.layout import Layout, pad_observation
from everlearn.envs.sources import EnvRef, family_of, functional_spaces, make_gymnax


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
    # float32[layout actions]: the actions this task has (appended last where tasks' action
    # sets differ, `everlearn.envs.layout`); else [0]
    action_mask: jax.Array


class FunctionalEnv:
    """A gymnax env whose reset/step take `TaskParams`; auto-resets like gymnax. `task` is any
    task on this env (its name and env id); `layout` the scenario's (default: this env's own)."""

    def __init__(self, task, layout: Layout | None = None):
        if isinstance(task, str):  # an env name alone: its default context
            task = EnvRef(task, task)
        self.family = family_of(task)
        self.env, self.default_env_params = make_gymnax(task)
        self.name = task.env
        self.spaces = functional_spaces(self.env, self.default_env_params,
                                        f"task '{task.name}' ({task.env})")
        self.layout = layout or Layout(self.spaces.obs_shape, self.spaces.continuous,
                                       self.spaces.num_actions, masked=False)
        self.max_episode_steps = self.spaces.max_episode_steps
        # Physical parameters: the family's table, or any field of the gymnax env params.
        self.physics_names = (tuple(self.family.physics) if self.family is not None else
                              tuple(f.name for f in dataclasses.fields(self.default_env_params)))

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
        action_mask: tuple[float, ...] = (),
    ) -> TaskParams:
        physics = dict(physics or {})
        unknown = set(physics) - set(self.physics_names)
        if unknown:
            raise ValueError(
                f"unknown physical parameter(s) {sorted(unknown)} for {self.name}; "
                f"valid: {', '.join(self.physics_names)}"
            )
        fields = {**physics, **derived_physics(self.name, physics)}
        env_params = self.default_env_params.replace(**fields)
        # Arrays everywhere, so that tasks stack and are traced rather than baked in.
        env_params = jax.tree.map(jnp.asarray, env_params)
        if len(self.spaces.obs_shape) > 1 and (obs_perm is not None or obs_scale is not None):
            raise ValueError(f"{self.name}: obs_perm and obs_scale apply to vector "
                             "observations, not to images")
        d, n = self.spaces.obs_shape[0], self.spaces.num_actions
        if not self.spaces.continuous:
            # Indices past this env's own actions map to action 0; the mask keeps the agent
            # from choosing them.
            action_map = [*(action_map if action_map is not None else range(n)),
                          *[0] * (self.layout.num_actions - n)]
        return TaskParams(
            env=env_params,
            obs_perm=jnp.asarray(obs_perm if obs_perm is not None else range(d), jnp.int32),
            obs_scale=jnp.asarray(obs_scale if obs_scale is not None else [1.0] * d, jnp.float32),
            action_map=jnp.asarray(action_map if action_map is not None else range(n), jnp.int32),
            action_scale=jnp.asarray(action_scale if action_scale is not None else [1.0] * n,
                                     jnp.float32) * self.spaces.action_bound,
            reward_scale=jnp.asarray(reward_scale, jnp.float32),
            reward_shift=jnp.asarray(reward_shift, jnp.float32),
            task_onehot=jnp.asarray(task_onehot, jnp.float32).reshape(-1),
            action_mask=jnp.asarray(action_mask, jnp.float32).reshape(-1),
        )

    def _observe(self, obs: jax.Array, params: TaskParams) -> jax.Array:
        if obs.ndim == 1:
            obs = obs[params.obs_perm] * params.obs_scale
        if obs.shape != self.layout.obs_shape:  # another env of the scenario is larger
            obs = pad_observation(obs.astype(jnp.float32), self.layout.obs_shape, jnp)
        if obs.ndim > 1:
            obs = obs.reshape(-1).astype(jnp.float32)
        parts = [obs, params.task_onehot]
        if params.action_mask.shape[-1]:  # static: only scenarios whose action sets differ
            parts.append(params.action_mask)
        return jnp.concatenate(parts)

    def reset(self, key: jax.Array, params: TaskParams) -> tuple[jax.Array, Any]:
        obs, state = self.env.reset(key, params.env)
        return self._observe(obs, params), state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: TaskParams):
        """Returns (obs, state, reward, terminated, truncated, next_obs).

        `obs` is the reset observation where the episode ended; `next_obs` is always the true
        observation after this transition (needed to bootstrap a truncated episode).
        """
        if self.spaces.continuous:
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
