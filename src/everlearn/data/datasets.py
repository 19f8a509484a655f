"""A scenario's datasets as the agent sees them: device-resident `ReplayBuffer`s, one per task.

A dataset holds a task as an agent meets it: the task's observations (after its context's
permutation and scale), actions in the task's action space, rewards after its reward scale and
shift. That is what `everlearn collect` and the built-in recipes record. Loading adds what the
scenario adds online: zero-padding to the scenario's largest observation, the task id one-hot
where the run gives task ids, the action mask where the tasks' action sets differ. A continuous
action is mapped linearly from the dataset's action space onto the agent's [-1, 1] (everlearn's
own datasets are already in [-1, 1]; a dataset recorded by Minari's `DataCollector` on a plain
env is in the env's units).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import jax.numpy as jnp
import numpy as np

from everlearn.core.errors import ConfigError
from everlearn.core.replay import ReplayBuffer
from everlearn.data import minari_io
from everlearn.data.recipes import dataset_id
from everlearn.envs.layout import Layout, action_mask, pad_observation
from everlearn.envs.sources import EnvSpaces
from everlearn.methods.base import AgentView, DataSource
from everlearn.scenarios.task import Scenario, Task


def agent_observations(obs, spaces: EnvSpaces, layout: Layout, onehot=None, xp=np):
    """A task's observations [n, obs size] as the agent takes them in a scenario with this
    layout: zero-padded to its largest observation, then the task id one-hot (`onehot`, or
    None where the run gives no task ids), then the task's action mask where the scenario's
    action sets differ (`xp`: numpy, or jax.numpy inside a compiled policy)."""
    n = obs.shape[0]
    obs = pad_observation(obs.reshape(n, *spaces.obs_shape), layout.obs_shape, xp)
    parts = [obs.reshape(n, -1).astype(xp.float32)]
    if onehot is not None:
        parts.append(xp.broadcast_to(xp.asarray(onehot, xp.float32), (n, len(onehot))))
    mask = action_mask(spaces.num_actions, layout)
    if mask:
        parts.append(xp.broadcast_to(xp.asarray(mask, xp.float32), (n, len(mask))))
    return xp.concatenate(parts, axis=1)


def task_observations(obs: np.ndarray, spaces: EnvSpaces, layout: Layout) -> np.ndarray:
    """The inverse of `agent_observations`: the task's own observations [n, its obs size] from
    what the agent took in (the padding, task id and action mask dropped)."""
    n = obs.shape[0]
    padded = obs[:, :layout.obs_size].reshape(n, *layout.obs_shape)
    own = padded[(slice(None), *(slice(0, size) for size in spaces.obs_shape))]
    return np.ascontiguousarray(own.reshape(n, -1))


def agent_rows(task: Task, index: int, spaces: EnvSpaces, layout: Layout, num_tasks: int,
               task_ids: bool) -> dict[str, np.ndarray]:
    """Task `index`'s dataset as rows of the agent's minibatch format."""
    name = dataset_id(task)
    data = minari_io.load_transitions(name)
    n = data.reward.shape[0]
    obs_size = int(np.prod(spaces.obs_shape))
    if data.obs.shape[1] != obs_size:
        raise ValueError(f"dataset '{name}' has observations of {data.obs.shape[1]} entries, "
                         f"task '{task.name}' ({task.env}) gives {obs_size}; record the "
                         "dataset on that task")

    onehot = np.eye(num_tasks, dtype=np.float32)[index] if task_ids else None

    def observe(obs: np.ndarray) -> np.ndarray:
        return agent_observations(obs, spaces, layout, onehot)

    if spaces.continuous:
        low = np.asarray(data.action_space.low, np.float32)
        high = np.asarray(data.action_space.high, np.float32)
        if data.action.shape[1:] != (spaces.num_actions,) or not np.all(np.isfinite(high - low)):
            raise ValueError(f"dataset '{name}' has actions {data.action_space}; task "
                             f"'{task.name}' takes {spaces.num_actions} bounded continuous "
                             "actions")
        action = np.clip(2.0 * (data.action - low) / (high - low) - 1.0, -1.0, 1.0)
        action = action.astype(np.float32)
    else:
        action = data.action.astype(np.int32).reshape(n)
        if action.size and (action.min() < 0 or action.max() >= spaces.num_actions):
            raise ValueError(f"dataset '{name}' has actions outside task '{task.name}''s "
                             f"{spaces.num_actions} actions")
    return {"obs": observe(data.obs), "action": action,
            "reward": data.reward.astype(np.float32),
            "terminated": data.terminated.astype(bool), "next_obs": observe(data.next_obs)}


def full_buffer(rows: dict[str, np.ndarray], capacity: int | None = None) -> ReplayBuffer:
    """`rows` (the agent's minibatch format) as a full `ReplayBuffer` of `capacity` rows (at
    least the rows' count; the extra rows are zeros, never sampled: `ReplayBuffer.sample`
    reads only its first `size`)."""
    n = rows["reward"].shape[0]
    capacity = n if capacity is None else capacity
    padded = {k: jnp.asarray(np.concatenate([v, np.zeros((capacity - n, *v.shape[1:]), v.dtype)]))
              for k, v in rows.items()}
    return ReplayBuffer(obs=padded["obs"], action=padded["action"], reward=padded["reward"],
                        terminated=padded["terminated"], next_obs=padded["next_obs"],
                        position=jnp.asarray(n % capacity, jnp.int32),
                        size=jnp.asarray(n, jnp.int32))


def dataset_buffers(scenario: Scenario, spaces: list[EnvSpaces], layout: Layout,
                    task_ids: bool) -> list[ReplayBuffer | None]:
    """One full buffer per offline task, all with the rows of the largest dataset, so that one
    compiled program serves every task; None for a task that learns online."""
    rows = [agent_rows(task, i, spaces[i], layout, scenario.num_tasks, task_ids)
            if task.dataset is not None else None for i, task in enumerate(scenario.tasks)]
    capacity = max((r["reward"].shape[0] for r in rows if r is not None), default=0)
    return [full_buffer(r, capacity) if r is not None else None for r in rows]


def method_data(sources: dict[str, DataSource], scenario: Scenario, spaces: list[EnvSpaces],
                layout: Layout, task_ids: bool, view: AgentView,
                run_buffer_rows: Callable[[str, int], dict[str, np.ndarray]]
                ) -> dict[str, ReplayBuffer]:
    """The data each method that takes data asks for (`sources`: method name -> its source),
    as full buffers in the agent's input format: a dataset mapped onto the scenario task the
    source names (the first by default), or an earlier run's replay buffer
    (`run_buffer_rows(run_dir, seed_index)`: its filled rows), which must have this agent's
    widths."""
    return {name: full_buffer(_source_rows(name, source, scenario, spaces, layout, task_ids,
                                           view, run_buffer_rows))
            for name, source in sources.items()}


def _source_rows(name: str, source: DataSource, scenario: Scenario, spaces: list[EnvSpaces],
                 layout: Layout, task_ids: bool, view: AgentView,
                 run_buffer_rows: Callable[[str, int], dict[str, np.ndarray]]
                 ) -> dict[str, np.ndarray]:
    if source.run is None:
        index = source.task_index([t.name for t in scenario.tasks])
        task = replace(scenario.tasks[index], dataset=source.dataset)
        return agent_rows(task, index, spaces[index], layout, scenario.num_tasks, task_ids)
    try:
        rows = run_buffer_rows(source.run, source.run_seed_index)
    except ValueError as e:  # no checkpoint, no such seed, no buffer: named by the setting
        raise type(e)(f"{name}.run: {e}") from None
    want = {k: (tuple(v.shape), np.dtype(v.dtype).kind)
            for k, v in view.minibatch_row.items() if k in ("obs", "action")}
    got = {k: (rows[k].shape[1:], rows[k].dtype.kind) for k in ("obs", "action")}
    if got != want:
        raise ConfigError(f"{name}.run: run '{source.run}' stores observations and actions "
                          f"of shapes {got['obs'][0]} and {got['action'][0]}, this run's "
                          f"agent takes {want['obs'][0]} and {want['action'][0]}; mix a run "
                          "of the same scenario and methods, or record a dataset")
    return rows
