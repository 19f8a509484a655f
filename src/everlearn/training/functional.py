"""The functional path: act–step–learn compiled into one program, seeds as a `vmap` axis.

A run advances in segments (the steps between two evaluations). `train_segment` resets the
envs with the current task's params and runs `iterations` rollout+update iterations in one
`lax.scan`; it is `vmap`ped over seeds and `jit`ted once — the task is an argument, so a task
switch never recompiles. The seed axis is split across devices where it divides evenly (on a
CPU, everlearn shows XLA one device per core), so 8 seeds on 2 cores use both. `evaluate` runs
every task at once (`vmap` over the stacked task params and over episodes) with the greedy
policy, on keys that are not the training stream's (`everlearn.envs.rollout`:
`functional_eval_keys`, `functional_episode`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from everlearn.agents.common import Agent
from everlearn.core.lockstep import SEED_AXIS
from everlearn.core.replay import Transition
from everlearn.envs.functional import (
    FunctionalEnv,
    TaskParams,
    index_params,
    interpolate_params,
    stack_params,
)
from everlearn.envs.layout import Layout
from everlearn.envs.rollout import (
    functional_episode,
    functional_eval_keys,
    task_params,
)
from everlearn.envs.sources import env_identity
from everlearn.evaluation import diagnostics
from everlearn.scenarios.task import Scenario

# The columns of a recorded segment (`record_segment`), as `Transition` names them.
RECORDED = ("obs", "action", "reward", "terminated", "truncated", "next_obs")


@struct.dataclass
class SeedState:
    agent: Any
    key: jax.Array


def task_onehot(index: int, num_tasks: int, task_ids: bool) -> tuple[float, ...]:
    """The task id as the agent sees it: a one-hot appended to the observation, or nothing."""
    return tuple(float(i == index) for i in range(num_tasks)) if task_ids else ()


def init_seeds(init_seed: Callable[[jax.Array], Any], seeds: list[int]) -> Any:
    """Initialise one seed at a time and stack.

    Not `vmap`: orthogonal initialisation is a batched LAPACK QR under `vmap`, and jaxlib's
    batched QR waits on XLA's CPU thread pool from inside that pool; two of them at once on a
    2-core machine deadlock (seen here about one run in four). One seed per call has no batch.
    """
    states = [init_seed(jnp.asarray(seed, jnp.uint32)) for seed in seeds]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def split_seeds(state: Any) -> Any:
    """Place the seed axis (leading axis of every leaf) across as many devices as divide the
    number of seeds; a no-op for a state that is already placed so."""
    num_seeds = jax.tree.leaves(state)[0].shape[0]
    devices = jax.devices()
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    mesh = Mesh(np.array(devices[:count]), ("seed",))
    return jax.device_put(state, NamedSharding(mesh, PartitionSpec("seed")))


def boundary_for(agent: Agent) -> Callable[[SeedState, jax.Array, jax.Array], SeedState]:
    """One seed's task boundary. Its key is folded out of the run key without advancing it,
    so a run whose methods ignore boundaries keeps the key stream of a run without them."""

    def boundary(state: SeedState, ended: jax.Array, started: jax.Array) -> SeedState:
        key = jax.random.fold_in(jax.random.fold_in(state.key, 0xB0DE), started)
        return state.replace(agent=agent.task_boundary(state.agent, ended, started, key))

    return boundary


@dataclasses.dataclass
class EnvGroup:
    """The tasks of a scenario that run on one environment (they differ by context only)."""

    env: FunctionalEnv
    task_indices: list[int]  # positions of these tasks in the scenario
    tasks: TaskParams  # their params, stacked in that order


def env_groups(scenario: Scenario, layout: Layout | None, task_ids: bool) -> list[EnvGroup]:
    """One group per distinct environment, in order of first appearance."""
    members: dict[str, list[int]] = {}
    for i, task in enumerate(scenario.tasks):
        members.setdefault(env_identity(task), []).append(i)
    groups = []
    for indices in members.values():
        env = FunctionalEnv(scenario.tasks[indices[0]], layout)
        params = [task_params(env, scenario.tasks[i], task_onehot(i, scenario.num_tasks,
                                                                   task_ids))
                  for i in indices]
        groups.append(EnvGroup(env, indices, stack_params(params)))
    return groups


class FunctionalTrainer:
    def __init__(self, scenario: Scenario, agent: Agent, iterations: int, eval_episodes: int,
                 task_ids: bool = False, layout: Layout | None = None):
        """`task_ids`: append the task id (one-hot) to every observation. `layout`: the
        scenario's observation and action layout where its tasks are different envs. Each
        env gets its own training program, compiled once; a task switch within an env is a
        change of arguments."""
        self.scenario, self.agent, self.iterations = scenario, agent, iterations
        self.groups = env_groups(scenario, layout, task_ids)
        self.group_of = {i: (g, k) for g, group in enumerate(self.groups)
                         for k, i in enumerate(group.task_indices)}
        self.eval_episodes = eval_episodes
        self._init = jax.jit(self._init_seed)
        self._segments = [self._segment_program(group, record=False) for group in self.groups]
        self._recording_segments: dict[int, Any] = {}  # compiled only for a recording run
        self._evaluate = jax.jit(jax.vmap(self._evaluate_seed))
        self._boundary = jax.jit(jax.vmap(boundary_for(agent), in_axes=(0, None, None)))
        self._measure = jax.jit(functools.partial(diagnostics.measure, agent.view))

    # -- public, batched over seeds ---------------------------------------------------------
    def init(self, seeds: list[int]) -> SeedState:
        return init_seeds(self._init, seeds)

    def train_segment(self, state: SeedState, task_index: int,
                      drift: tuple[float, float] | None = None) -> tuple[SeedState, dict]:
        """Train on task `task_index`; in a drifting scenario, `drift` = (start, end) positions
        along the waypoints instead: each episode starts with the context where the drift is
        at its first step (`Scenario.drift_positions`)."""
        if drift is None:
            drift = (float(task_index), float(task_index))
        g, k = self.group_of[task_index]
        params = index_params(self.groups[g].tasks, k)
        state, metrics = self._segments[g](split_seeds(state), params,
                                           jnp.asarray(drift, jnp.float32))
        return state, jax.tree.map(np.asarray, metrics)

    def record_segment(self, state: SeedState, task_index: int,
                       drift: tuple[float, float] | None = None
                       ) -> tuple[SeedState, dict, dict[str, np.ndarray]]:
        """`train_segment`, also returning every transition the envs made
        (`everlearn run --record`): obs, action, reward, terminated, truncated, next_obs, each
        [seeds, steps per env, envs, ...]. Its own program, so other runs' is unchanged."""
        if drift is None:
            drift = (float(task_index), float(task_index))
        g, k = self.group_of[task_index]
        if g not in self._recording_segments:
            self._recording_segments[g] = self._segment_program(self.groups[g], record=True)
        params = index_params(self.groups[g].tasks, k)
        state, metrics, batch = self._recording_segments[g](
            split_seeds(state), params, jnp.asarray(drift, jnp.float32))
        columns = {name: np.asarray(getattr(batch, name)) for name in RECORDED}
        # [seeds, iterations, T, envs, ...] -> [seeds, iterations * T, envs, ...]
        columns = {name: x.reshape(x.shape[0], -1, *x.shape[3:]) for name, x in columns.items()}
        return state, jax.tree.map(np.asarray, metrics), columns

    def diagnostics(self, state: SeedState) -> dict[str, list[float]]:
        """Plasticity diagnostics per seed (`everlearn.evaluation.diagnostics`)."""
        return diagnostics.per_seed(self._measure, state.agent)

    def task_boundary(self, state: SeedState, ended: int, started: int) -> SeedState:
        """Tell the agent's methods that task `ended` is over and `started` begins."""
        return self._boundary(split_seeds(state), jnp.int32(ended), jnp.int32(started))

    def evaluate(self, state: SeedState, seeds: list[int], eval_index: int) -> np.ndarray:
        """Mean greedy return per seed and task: float[num_seeds, num_tasks]."""
        keys = jax.vmap(functools.partial(
            functional_eval_keys, eval_index=eval_index, num_tasks=self.scenario.num_tasks,
            episodes=self.eval_episodes))(jnp.asarray(seeds, jnp.uint32))
        return np.asarray(self._evaluate(split_seeds(state.agent), split_seeds(keys)))

    # -- one seed ------------------------------------------------------------------------
    def _init_seed(self, seed: jax.Array) -> SeedState:
        k_agent, k_run = jax.random.split(jax.random.PRNGKey(seed))
        return SeedState(self.agent.init(k_agent), k_run)

    def _segment_program(self, group: EnvGroup, record: bool):
        return jax.jit(jax.vmap(functools.partial(self._train_segment, group, record=record),
                                in_axes=(0, None, None), axis_name=SEED_AXIS))

    def _train_segment(self, group: EnvGroup, state: SeedState, params: TaskParams,
                       drift: jax.Array, record: bool = False):
        agent, env, num_envs = self.agent, group.env, self.agent.num_envs
        key, k_reset, k_loop = jax.random.split(state.key, 3)
        # In a drifting scenario every env carries its episode's context: the drift's position
        # at the episode's first step, so the context changes between episodes only. Otherwise
        # all envs share the task's params (a static branch: those programs are unchanged).
        drifting = self.scenario.drift
        segment_steps = self.iterations * agent.rollout_length
        if drifting:
            params = interpolate_params(group.tasks, drift[0])
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs, *x.shape)), params)
        params_axis = 0 if drifting else None
        obs, env_state = jax.vmap(env.reset, in_axes=(0, params_axis))(
            jax.random.split(k_reset, num_envs), params)

        # Where a method guides acting (`Agent.guide`), each env counts its episode's steps and
        # return in the carry; otherwise the carry and the program are as they always were.
        guided = agent.guide is not None
        episodes = (jnp.zeros(num_envs, jnp.int32), jnp.zeros(num_envs)) if guided else ()

        def env_step(carry, inputs):
            agent_state, obs, env_state, params, episodes = carry
            key, step = inputs
            k_act, k_env = jax.random.split(key)
            action, extras = agent.act(agent_state, obs, k_act)
            if guided:
                action = agent.guide(agent_state, obs, action, episodes[0])
            next_obs, env_state, reward, terminated, truncated, true_next = jax.vmap(
                env.step, in_axes=(0, 0, 0, params_axis)
            )(jax.random.split(k_env, num_envs), env_state, action, params)
            if guided:
                ended, episode_return = terminated | truncated, episodes[1] + reward
                extras = {**extras, "episode_end": ended, "episode_return": episode_return}
                episodes = (jnp.where(ended, 0, episodes[0] + 1),
                            jnp.where(ended, 0.0, episode_return))
            if drifting:  # episodes that just ended restart in the drift's current context
                position = drift[0] + (drift[1] - drift[0]) * (step + 1) / segment_steps
                now = interpolate_params(group.tasks, position)
                ended = terminated | truncated
                params = jax.tree.map(
                    lambda old, new: jnp.where(ended.reshape(-1, *[1] * new.ndim), new, old),
                    params, now)
            transition = Transition(obs, action, reward, terminated, truncated, true_next, extras)
            return (agent_state, next_obs, env_state, params, episodes), transition

        def iteration(carry, inputs):
            agent_state, obs, env_state, params, episodes = carry
            key, index = inputs
            k_rollout, k_update = jax.random.split(key)
            T = agent.rollout_length
            (_, obs, env_state, params, episodes), batch = jax.lax.scan(
                env_step, (agent_state, obs, env_state, params, episodes),
                (jax.random.split(k_rollout, T), index * T + jnp.arange(T)),
            )
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            recorded = batch.replace(extras={}) if record else None
            return (agent_state, obs, env_state, params, episodes), (metrics, recorded)

        (agent_state, *_), (metrics, recorded) = jax.lax.scan(
            iteration, (state.agent, obs, env_state, params, episodes),
            (jax.random.split(k_loop, self.iterations), jnp.arange(self.iterations)),
        )
        if record:
            return SeedState(agent_state, key), jax.tree.map(jnp.mean, metrics), recorded
        return SeedState(agent_state, key), jax.tree.map(jnp.mean, metrics)

    def _evaluate_seed(self, agent_state: Any, keys: jax.Array) -> jax.Array:
        """Mean greedy return per task, float[num_tasks]: each env's tasks at once, on their
        episode keys ([num_tasks, episodes])."""
        if len(self.groups) == 1:
            return self._evaluate_group(self.groups[0], agent_state, keys)
        returns = jnp.zeros(self.scenario.num_tasks)
        for group in self.groups:
            indices = jnp.asarray(group.task_indices)
            returns = returns.at[indices].set(
                self._evaluate_group(group, agent_state, keys[indices]))
        return returns

    def _evaluate_group(self, group: EnvGroup, agent_state: Any, keys: jax.Array) -> jax.Array:
        env, greedy = group.env, self.agent.greedy_action

        def task_returns(params: TaskParams, keys: jax.Array, task: jax.Array) -> jax.Array:
            acting = self.agent.for_task(agent_state, task)  # the methods' view of the task

            def act(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
                return greedy(acting, obs[None])[0], key  # greedy: the env gets the step key

            returns, _ = jax.vmap(lambda key: functional_episode(env, params, act, key))(keys)
            return returns.mean()

        return jax.vmap(task_returns)(group.tasks, keys, jnp.asarray(group.task_indices))
