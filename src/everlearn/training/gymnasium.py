"""The Gymnasium path: envs stepped on the host, the agent's `act` and `update` compiled.

Same agent functions and the same segment/evaluate interface as the functional path. Each
segment resets the vector env with seeds drawn from each seed's run key, so a run is a pure
function of its checkpointed state (resume gives the same result).

The seeds train together, as a population: one vector env holds every seed's envs (seed s owns
envs s·E … s·E + E − 1, reset with the env seeds that seed would use alone), and each env step
makes one `act` call and each rollout one `update` call, both `vmap`ped over the seeds. So a
seed's envs, keys and data are those it would have alone; only XLA's code for the batched
program differs (float rounding, as on another CPU).

The rollout loop makes one jitted `act` call per env step, so its host-side cost per call
counts: `act` receives only the agent-state arrays it reads (found once from its jaxpr, not
the replay buffer or optimiser state), and `update` adds its metrics to running sums on the
device (no host round trip per update).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var

from everlearn.agents.common import Agent
from everlearn.core.errors import EnvFailed
from everlearn.core.lockstep import SEED_AXIS
from everlearn.core.replay import Transition
from everlearn.envs.gymnasium_context import make_vector_env
from everlearn.envs.layout import Layout
from everlearn.envs.rollout import episode_returns, eval_env_seed
from everlearn.evaluation import diagnostics
from everlearn.scenarios.task import Scenario
from everlearn.training.functional import (
    RECORDED,
    SeedState,
    boundary_for,
    init_seeds,
    task_onehot,
)


class GymnasiumTrainer:
    def __init__(self, scenario: Scenario, agent: Agent, iterations: int, eval_episodes: int,
                 task_ids: bool = False, layout: Layout | None = None,
                 success_keys: list[str | None] | None = None):
        """`task_ids`: append the task id (one-hot) to every observation. `layout`: the
        scenario's observation and action layout where its tasks are different envs.
        `success_keys`: per task, the info key whose success rate the evaluator reports
        instead of the return (None: the return)."""
        self.scenario, self.agent, self.iterations = scenario, agent, iterations
        self.task_ids, self.layout = task_ids, layout
        self.success_keys = success_keys or [None] * scenario.num_tasks
        self.eval_episodes = eval_episodes
        self._envs: dict[int, Any] = {}
        self._eval_envs: dict[int, Any] = {}

        def init_seed(seed):
            k_agent, k_run = jax.random.split(jax.random.PRNGKey(seed))
            return SeedState(agent.init(k_agent), k_run)

        def act(agent_state, obs, key, episode_step):
            key, k_act = jax.random.split(key)
            action, extras = agent.act(agent_state, obs, k_act)
            if agent.guide is not None:  # a method's guide acts instead (JSRL)
                action = agent.guide(agent_state, obs, action, episode_step)
            return action, extras, key

        def update(agent_state, batch, key, metric_sums):
            key, k_update = jax.random.split(key)
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            metric_sums = {name: metric_sums[name] + jnp.asarray(value, jnp.float32)
                           for name, value in metrics.items()}
            return agent_state, metric_sums, key

        def metric_names(agent_state, batch, key):
            return agent.update(agent_state, batch, key)[1]

        def env_seed(key):
            key, k_seed = jax.random.split(key)
            return jax.random.randint(k_seed, (), 0, 2**31 - 1), key

        self._init = jax.jit(init_seed)
        self._act_fn = act  # on the whole agent state; the rollout loop uses `_actor`'s
        self._actors: dict[Any, tuple[tuple[int, ...], Any, Any]] = {}
        self._metric_names = metric_names
        self._metric_shapes: dict[str, Any] | None = None  # `update`'s metrics, once traced
        # Donate the agent state: `update` writes into the replay buffer, and without donation
        # XLA would copy the whole buffer (tens of MB) on every call. The seed axis is named,
        # so that conds the seeds agree on stay branches (`in_lockstep`).
        self._update = jax.jit(jax.vmap(update, axis_name=SEED_AXIS), donate_argnums=0)
        self._env_seeds = jax.jit(jax.vmap(env_seed))

        def greedy_on(agent_states, seed_index, task_index, obs):
            # Seed `seed_index` of the population acting on task `task_index` (the methods'
            # view of it, e.g. PackNet's). Sliced inside the program from the whole state, so
            # nothing is copied: XLA drops what the greedy action does not read (the replay
            # buffer, hundreds of MB with Continual World's).
            agent_state = jax.tree.map(lambda x: x[seed_index], agent_states)
            return agent.greedy_action(agent.for_task(agent_state, task_index), obs)

        self._greedy_on = jax.jit(greedy_on)
        self._boundary = jax.jit(jax.vmap(boundary_for(agent), in_axes=(0, None, None)))
        self._measure = jax.jit(functools.partial(diagnostics.measure, agent.view))

    def init(self, seeds: list[int]) -> SeedState:
        return init_seeds(self._init, seeds)

    def diagnostics(self, state: SeedState) -> dict[str, list[float]]:
        """Plasticity diagnostics per seed (`everlearn.evaluation.diagnostics`)."""
        return diagnostics.per_seed(self._measure, state.agent)

    def task_boundary(self, state: SeedState, ended: int, started: int) -> SeedState:
        """Tell the agent's methods that task `ended` is over and `started` begins."""
        return self._boundary(state, jnp.int32(ended), jnp.int32(started))

    def _vector_env(self, cache: dict, task_index: int, num_envs: int, drift: bool = False):
        if (task_index, num_envs, drift) not in cache:
            onehot = task_onehot(task_index, self.scenario.num_tasks, self.task_ids)
            waypoints = [t.physics for t in self.scenario.tasks] if drift else None
            cache[task_index, num_envs, drift] = make_vector_env(
                self.scenario.tasks[task_index], num_envs, onehot, waypoints, self.layout)
        return cache[task_index, num_envs, drift]

    def train_segment(self, state: SeedState, task_index: int,
                      drift: tuple[float, float] | None = None) -> tuple[SeedState, dict]:
        """Train on task `task_index`; in a drifting scenario, `drift` = (start, end) positions
        along the waypoints instead: each episode starts with the context where the drift is
        at its first step (`Scenario.drift_positions`)."""
        return self._train_seeds(state, task_index, drift, record=False)[:2]

    def record_segment(self, state: SeedState, task_index: int,
                       drift: tuple[float, float] | None = None
                       ) -> tuple[SeedState, dict, dict[str, np.ndarray]]:
        """`train_segment`, also returning every transition the envs made
        (`everlearn run --record`): obs, action, reward, terminated, truncated, next_obs, each
        [seeds, steps per env, envs, ...]."""
        return self._train_seeds(state, task_index, drift, record=True)

    def _actor(self, agent_states: Any, obs: np.ndarray, keys: jax.Array):
        """`act` for the population, compiled on only the agent-state leaves it reads: (their
        indices in `jax.tree.leaves(agent_states)`, the jitted `act(inputs, obs, keys,
        episode_step)` vmapped over seeds, one seed's action shape and type); `episode_step`
        is None unless the agent has a guide. Which leaves it reads comes from one seed's
        `act` jaxpr, once per state structure; the others (replay buffer, optimiser moments,
        ...) are placeholders that XLA drops as dead code, so each call passes a few arrays
        instead of the whole state."""
        leaves, treedef = jax.tree.flatten(agent_states)
        avals = tuple((np.shape(x)[1:], jnp.result_type(x)) for x in leaves)  # one seed's
        signature = (treedef, avals, obs.shape, obs.dtype)
        if signature not in self._actors:
            act, guided = self._act_fn, self.agent.guide is not None
            one_obs = jax.ShapeDtypeStruct(obs.shape[1:], obs.dtype)
            one_key = jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype)
            # Only a guided agent reads the episode steps: otherwise nothing is passed per step.
            one_step = jax.ShapeDtypeStruct(obs.shape[1:2], jnp.int32) if guided else None
            one_leaves = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]

            def act_leaves(leaves, obs, key, episode_step):
                return act(jax.tree.unflatten(treedef, leaves), obs, key, episode_step)

            closed = jax.make_jaxpr(act_leaves)(one_leaves, one_obs, one_key, one_step)
            read = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
            read |= {v for v in closed.jaxpr.outvars if isinstance(v, Var)}
            reads = tuple(
                i for i, (v, (_, dtype)) in enumerate(zip(closed.jaxpr.invars, avals))
                if v in read or jnp.issubdtype(dtype, jax.dtypes.extended))

            def act_on(inputs, obs, key, episode_step):
                full = [jnp.zeros(shape, dtype) for shape, dtype in avals]
                for i, x in zip(reads, inputs):
                    full[i] = x
                return act_leaves(full, obs, key, episode_step)

            action_spec = jax.eval_shape(act_leaves, one_leaves, one_obs, one_key, one_step)[0]
            in_axes = (0, 0, 0, 0 if guided else None)
            self._actors[signature] = (reads, jax.jit(jax.vmap(act_on, in_axes=in_axes)),
                                       action_spec)
        return self._actors[signature]

    def _train_seeds(self, state: SeedState, task_index: int,
                     drift: tuple[float, float] | None, record: bool):
        """One segment of every seed together: the new state, each seed's mean update metrics
        ([seeds] per name) and, with `record`, the transitions ([seeds, steps per env, envs,
        ...] per column)."""
        agent = self.agent
        S = jax.tree.leaves(state)[0].shape[0]
        T, E = agent.rollout_length, agent.num_envs
        envs = self._vector_env(self._envs, task_index, S * E, drift=drift is not None)
        if drift is not None:  # each env counts its own steps of this segment
            envs.call("set_drift", drift[0], drift[1], self.iterations * T)
        env_seeds, keys = self._env_seeds(state.key)
        task = self.scenario.tasks[task_index]
        try:  # seed s's envs get the seeds it would give its own vector env: its seed + i
            obs, _ = envs.reset(seed=[int(seed) + i for seed in np.asarray(env_seeds)
                                      for i in range(E)])
        except Exception as e:  # a user's env: name it, the task and the step
            raise EnvFailed(task.env, task.name, 0, e) from e
        # `update` donates the state it is given: a copy, so that the caller's state (which a
        # stopped run checkpoints) stays intact.
        agent_state = jax.tree.map(jnp.copy, state.agent)
        obs_dim = obs.shape[1]
        obs = obs.reshape(S, E, obs_dim)
        reads, act, action_spec = self._actor(agent_state, obs, keys)
        # Preallocated host buffers for one rollout of every seed, [seeds, T, envs, ...]; the
        # action's shape and type come from the agent (an index, or a continuous vector).
        buf = {
            "obs": np.empty((S, T, E, obs_dim), np.float32),
            "action": np.empty((S, T, *action_spec.shape), action_spec.dtype),
            "reward": np.empty((S, T, E), np.float32),
            "terminated": np.empty((S, T, E), bool),
            "truncated": np.empty((S, T, E), bool),
            "next_obs": np.empty((S, T, E, obs_dim), np.float32),
        }
        extras_buf: dict[str, np.ndarray] = {}
        # Each env's step count and return in its current episode (the envs were just reset):
        # what a method's guide reads, and, in the batch's extras, what its `observe` sees.
        guided = agent.guide is not None
        episode_step, episode_return = np.zeros((S, E), np.int32), np.zeros((S, E), np.float32)
        metric_sums = None
        recorded: list[dict[str, np.ndarray]] = []  # a copy of each rollout, when recording
        for iteration in range(self.iterations):
            leaves = jax.tree.leaves(agent_state)
            inputs = [leaves[i] for i in reads]
            for t in range(T):
                action, extras, keys = act(inputs, obs, keys, episode_step if guided else None)
                action = np.asarray(action)
                try:
                    next_obs, reward, terminated, truncated, info = envs.step(
                        action.reshape(S * E, *action.shape[2:]))
                except Exception as e:
                    raise EnvFailed(task.env, task.name, (iteration * T + t) * E, e) from e
                if "_final_obs" in info:  # the true last observation of finished episodes
                    ended = info["_final_obs"]
                    true_next = next_obs.copy()
                    true_next[ended] = np.stack(info["final_obs"][ended])
                else:
                    true_next = next_obs
                next_obs = next_obs.reshape(S, E, obs_dim)
                reward, terminated = reward.reshape(S, E), terminated.reshape(S, E)
                truncated = truncated.reshape(S, E)
                buf["obs"][:, t], buf["action"][:, t], buf["reward"][:, t] = obs, action, reward
                buf["terminated"][:, t], buf["truncated"][:, t] = terminated, truncated
                buf["next_obs"][:, t] = true_next.reshape(S, E, obs_dim)
                if guided:
                    ended = terminated | truncated
                    episode_return = episode_return + reward
                    extras = {**extras, "episode_end": ended,
                              "episode_return": episode_return.astype(np.float32)}
                    episode_step = np.where(ended, 0, episode_step + 1).astype(np.int32)
                    episode_return = np.where(ended, 0.0, episode_return).astype(np.float32)
                for name, value in extras.items():
                    if name not in extras_buf:
                        extras_buf[name] = np.empty((S, T, *value.shape[1:]), value.dtype)
                    extras_buf[name][:, t] = value
                obs = next_obs
            if record:
                recorded.append({name: value.copy() for name, value in buf.items()})
            batch = Transition(**buf, extras=extras_buf)
            if metric_sums is None:
                metric_sums = self._zero_metrics(agent_state, batch, keys)
            agent_state, metric_sums, keys = self._update(agent_state, batch, keys, metric_sums)
        means = {k: np.asarray(v, np.float64) / self.iterations
                 for k, v in (metric_sums or {}).items()}
        columns = ({name: np.concatenate([r[name] for r in recorded], axis=1)
                    for name in RECORDED} if record else None)
        return SeedState(agent_state, keys), means, columns

    def _zero_metrics(self, agent_states: Any, batch: Transition, keys: jax.Array) -> dict:
        """Zeroed running sums of `update`'s metrics, one per seed (their names traced once,
        on the population)."""
        seeds = keys.shape[0]
        if self._metric_shapes is None:  # one seed's shapes
            shapes = jax.eval_shape(jax.vmap(self._metric_names), agent_states, batch, keys)
            self._metric_shapes = {name: shape.shape[1:] for name, shape in shapes.items()}
        return {name: jnp.zeros((seeds, *shape), jnp.float32)
                for name, shape in self._metric_shapes.items()}

    def evaluate(self, state: SeedState, seeds: list[int], eval_index: int) -> np.ndarray:
        """Mean greedy return per seed and task: float[num_seeds, num_tasks] (the success rate
        for tasks scored by success)."""
        out = np.zeros((len(seeds), self.scenario.num_tasks))
        for i, seed in enumerate(seeds):
            for task_index in range(self.scenario.num_tasks):
                policy = functools.partial(self._greedy_on, state.agent, jnp.int32(i),
                                           jnp.int32(task_index))
                envs = self._vector_env(self._eval_envs, task_index, self.eval_episodes)
                try:
                    out[i, task_index] = episode_returns(
                        envs, eval_env_seed(seed, eval_index, task_index), policy,
                        self.success_keys[task_index]).mean()
                except Exception as e:
                    task = self.scenario.tasks[task_index]
                    raise EnvFailed(task.env, task.name, None, e) from e
        return out


