"""Offline training: a scenario whose tasks are datasets (`Task.dataset`).

A segment is `iterations` calls of the agent's `learn` on the current task's dataset, one
compiled `lax.scan`, `vmap`ped over seeds; the env is never stepped. Evaluation, diagnostics,
task boundaries and checkpoints are the wrapped trainer's, unchanged, so an offline run has
the same run directory, metrics and report as an online one; its "steps" are gradient steps.
The datasets are the trainer's (`everlearn.data.datasets.dataset_buffers`, one buffer per
task, all with the same number of rows, so that one program serves every task): shared by
every seed, never in the agent state, never in a checkpoint. They are loaded at the first
segment, so building a trainer (which every check of a config does) reads no data.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents.common import ReplayBuffer
from everlearn.runs.functional import FunctionalTrainer, SeedState, split_seeds
from everlearn.runs.gymnasium import GymnasiumTrainer


class OfflineTraining:
    """`train_segment` from datasets; mixed into a trainer that evaluates (below)."""

    def _init_offline(self, load_datasets: Callable[[], list[ReplayBuffer]]) -> None:
        self._load_datasets = load_datasets
        self._datasets: list[ReplayBuffer] | None = None
        self._learn_segment = jax.jit(jax.vmap(self._learn_seed, in_axes=(0, None)))

    def train_segment(self, state: SeedState, task_index: int,
                      drift: tuple[float, float] | None = None) -> tuple[SeedState, dict]:
        """Learn from task `task_index`'s dataset for one segment (`drift`: never set, an
        offline scenario cannot drift)."""
        if self._datasets is None:
            self._datasets = self._load_datasets()
        state, metrics = self._learn_segment(split_seeds(state), self._datasets[task_index])
        return state, jax.tree.map(np.asarray, metrics)

    def _learn_seed(self, state: SeedState, dataset: ReplayBuffer):
        key, k_loop = jax.random.split(state.key)
        agent_state, metrics = jax.lax.scan(
            lambda agent_state, k: self.agent.learn(agent_state, dataset, k), state.agent,
            jax.random.split(k_loop, self.iterations))
        return SeedState(agent_state, key), jax.tree.map(jnp.mean, metrics)


class OfflineFunctionalTrainer(OfflineTraining, FunctionalTrainer):
    """Learns from datasets; evaluates on the functional path."""

    def __init__(self, *args, load_datasets: Callable[[], list[ReplayBuffer]], **kwargs):
        FunctionalTrainer.__init__(self, *args, **kwargs)
        self._init_offline(load_datasets)


class OfflineGymnasiumTrainer(OfflineTraining, GymnasiumTrainer):
    """Learns from datasets; evaluates on the Gymnasium path."""

    def __init__(self, *args, load_datasets: Callable[[], list[ReplayBuffer]], **kwargs):
        GymnasiumTrainer.__init__(self, *args, **kwargs)
        self._init_offline(load_datasets)
