"""The functional path: act–step–learn compiled into one program, seeds as a `vmap` axis.

A run advances in segments (the steps between two evaluations). `train_segment` resets the
envs with the current task's params and runs `iterations` rollout+update iterations in one
`lax.scan`; it is `vmap`ped over seeds and `jit`ted once — the task is an argument, so a task
switch never recompiles. The seed axis is split across devices where it divides evenly (on a
CPU, everlearn shows XLA one device per core), so 8 seeds on 2 cores use both. `evaluate` runs every task at once (`vmap` over the stacked task
params and over episodes) with the greedy policy, on keys that are not the training stream's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from everlearn.agents.common import Agent, Transition
from everlearn.evaluation import diagnostics
from everlearn.envs.functional import (FunctionalEnv, TaskParams, index_params,
                                      interpolate_params, stack_params)
from everlearn.scenarios.task import Scenario, Task


@struct.dataclass
class SeedState:
    agent: Any
    key: jax.Array


def task_onehot(index: int, num_tasks: int, task_ids: bool) -> tuple[float, ...]:
    """The task id as the agent sees it: a one-hot appended to the observation, or nothing."""
    return tuple(float(i == index) for i in range(num_tasks)) if task_ids else ()


def task_params(env: FunctionalEnv, task: Task, onehot: tuple[float, ...] = ()) -> TaskParams:
    return env.make_params(
        physics=dict(task.physics),
        obs_perm=task.obs_perm,
        obs_scale=task.obs_scale,
        action_map=task.action_map,
        action_scale=task.action_scale,
        reward_scale=task.reward_scale,
        reward_shift=task.reward_shift,
        task_onehot=onehot,
    )


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


class FunctionalTrainer:
    def __init__(self, scenario: Scenario, agent: Agent, iterations: int, eval_episodes: int,
                 task_ids: bool = False):
        """`task_ids`: append the task id (one-hot) to every observation."""
        self.scenario, self.agent, self.iterations = scenario, agent, iterations
        self.env = FunctionalEnv(scenario.env)
        n = scenario.num_tasks
        self.tasks = stack_params([task_params(self.env, t, task_onehot(i, n, task_ids))
                                   for i, t in enumerate(scenario.tasks)])
        self.eval_episodes = eval_episodes
        self.max_episode_steps = self.env.family.max_episode_steps
        self._init = jax.jit(self._init_seed)
        self._segment = jax.jit(jax.vmap(self._train_segment, in_axes=(0, None, None)))
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
        params = index_params(self.tasks, task_index)
        state, metrics = self._segment(split_seeds(state), params,
                                       jnp.asarray(drift, jnp.float32))
        return state, jax.tree.map(np.asarray, metrics)

    def diagnostics(self, state: SeedState) -> dict[str, list[float]]:
        """Plasticity diagnostics per seed (`everlearn.evaluation.diagnostics`)."""
        return diagnostics.per_seed(self._measure, state.agent)

    def task_boundary(self, state: SeedState, ended: int, started: int) -> SeedState:
        """Tell the agent's methods that task `ended` is over and `started` begins."""
        return self._boundary(split_seeds(state), jnp.int32(ended), jnp.int32(started))

    def evaluate(self, state: SeedState, seeds: list[int], eval_index: int) -> np.ndarray:
        """Mean greedy return per seed and task: float[num_seeds, num_tasks]."""
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s + 7_919), eval_index))(
            jnp.asarray(seeds, jnp.uint32)
        )
        return np.asarray(self._evaluate(split_seeds(state.agent), split_seeds(keys)))

    # -- one seed ------------------------------------------------------------------------
    def _init_seed(self, seed: jax.Array) -> SeedState:
        k_agent, k_run = jax.random.split(jax.random.PRNGKey(seed))
        return SeedState(self.agent.init(k_agent), k_run)

    def _train_segment(self, state: SeedState, params: TaskParams, drift: jax.Array):
        agent, env, num_envs = self.agent, self.env, self.agent.num_envs
        key, k_reset, k_loop = jax.random.split(state.key, 3)
        # In a drifting scenario every env carries its episode's context: the drift's position
        # at the episode's first step, so the context changes between episodes only. Otherwise
        # all envs share the task's params (a static branch: those programs are unchanged).
        drifting = self.scenario.drift
        segment_steps = self.iterations * agent.rollout_length
        if drifting:
            params = interpolate_params(self.tasks, drift[0])
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs, *x.shape)), params)
        params_axis = 0 if drifting else None
        obs, env_state = jax.vmap(env.reset, in_axes=(0, params_axis))(
            jax.random.split(k_reset, num_envs), params)

        def env_step(carry, inputs):
            agent_state, obs, env_state, params = carry
            key, step = inputs
            k_act, k_env = jax.random.split(key)
            action, extras = agent.act(agent_state, obs, k_act)
            next_obs, env_state, reward, terminated, truncated, true_next = jax.vmap(
                env.step, in_axes=(0, 0, 0, params_axis)
            )(jax.random.split(k_env, num_envs), env_state, action, params)
            if drifting:  # episodes that just ended restart in the drift's current context
                position = drift[0] + (drift[1] - drift[0]) * (step + 1) / segment_steps
                now = interpolate_params(self.tasks, position)
                ended = terminated | truncated
                params = jax.tree.map(
                    lambda old, new: jnp.where(ended.reshape(-1, *[1] * new.ndim), new, old),
                    params, now)
            transition = Transition(obs, action, reward, terminated, truncated, true_next, extras)
            return (agent_state, next_obs, env_state, params), transition

        def iteration(carry, inputs):
            agent_state, obs, env_state, params = carry
            key, index = inputs
            k_rollout, k_update = jax.random.split(key)
            T = agent.rollout_length
            (_, obs, env_state, params), batch = jax.lax.scan(
                env_step, (agent_state, obs, env_state, params),
                (jax.random.split(k_rollout, T), index * T + jnp.arange(T)),
            )
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            return (agent_state, obs, env_state, params), metrics

        (agent_state, *_), metrics = jax.lax.scan(
            iteration, (state.agent, obs, env_state, params),
            (jax.random.split(k_loop, self.iterations), jnp.arange(self.iterations)),
        )
        return SeedState(agent_state, key), jax.tree.map(jnp.mean, metrics)

    def _evaluate_seed(self, agent_state: Any, key: jax.Array) -> jax.Array:
        env, greedy = self.env, self.agent.greedy_action

        def episode(params: TaskParams, key: jax.Array) -> jax.Array:
            k_reset, k_steps = jax.random.split(key)
            obs, env_state = env.reset(k_reset, params)

            def step(carry, key):
                obs, env_state, ret, done = carry
                action = greedy(agent_state, obs[None])[0]
                obs, env_state, reward, terminated, truncated, _ = env.step(
                    key, env_state, action, params
                )
                ret = ret + jnp.where(done, 0.0, reward)
                return (obs, env_state, ret, done | terminated | truncated), None

            init = (obs, env_state, jnp.zeros(()), jnp.zeros((), bool))
            (_, _, ret, _), _ = jax.lax.scan(
                step, init, jax.random.split(k_steps, self.max_episode_steps)
            )
            return ret

        def task_returns(params: TaskParams, key: jax.Array) -> jax.Array:
            return jax.vmap(episode, in_axes=(None, 0))(
                params, jax.random.split(key, self.eval_episodes)
            ).mean()

        num_tasks = self.scenario.num_tasks
        return jax.vmap(task_returns)(self.tasks, jax.random.split(key, num_tasks))
