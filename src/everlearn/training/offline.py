"""Training from data: scenarios whose tasks learn from datasets (`Task.dataset`), and methods
that mix logged data into the minibatches of online learning (`offline_mix`).

An offline task's segment is `iterations` calls of the agent's `learn` on the task's dataset,
one compiled `lax.scan`, `vmap`ped over seeds; the env is never stepped. A task without a
dataset trains online, as in any run: a scenario may put offline tasks before online ones
(offline pre-training, then online fine-tuning). Evaluation, diagnostics, task boundaries and
checkpoints are the wrapped trainer's, unchanged, so such a run has the same run directory,
metrics and report as an online one; an offline task's "steps" are `learn` calls (gradient
steps, for an agent that takes one per env step).

The datasets are the trainer's (`everlearn.data.datasets.dataset_buffers`, one buffer per
offline task, all with the same number of rows, so that one program serves every task): shared
by every seed, never in the agent state, never in a checkpoint. So is the data of a method
that takes data (`METHODS[name].takes_data`): it is put into that method's state for the
length of a segment only, then the method's one-row placeholder goes back. Both are loaded at
the first segment, so building a trainer (which every check of a config does) reads no data.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.core.lockstep import SEED_AXIS
from everlearn.core.replay import ReplayBuffer
from everlearn.methods.base import DATA_KEY, with_method_data
from everlearn.training.functional import FunctionalTrainer, SeedState, split_seeds
from everlearn.training.gymnasium import GymnasiumTrainer


class DataTraining:
    """`train_segment` with data: offline tasks learn from their datasets, online tasks
    train as the wrapped trainer does; methods' data goes in for each segment (above)."""

    def _init_data(self, load_datasets: Callable[[], list[ReplayBuffer | None]] | None,
                   load_method_data: Callable[[], dict[str, ReplayBuffer]] | None) -> None:
        self._load_datasets = load_datasets or (lambda: [None] * self.scenario.num_tasks)
        self._load_method_data = load_method_data or dict
        self._datasets: list[ReplayBuffer | None] | None = None
        self._method_data: dict[str, ReplayBuffer] | None = None
        self._per_seed_data: dict = {}
        self._learn_segment = jax.jit(jax.vmap(self._learn_seed, in_axes=(0, None, None),
                                                axis_name=SEED_AXIS))

    def train_segment(self, state: SeedState, task_index: int,
                      drift: tuple[float, float] | None = None) -> tuple[SeedState, dict]:
        """One segment of task `task_index`: from its dataset where it has one (`drift` is
        then never set: a scenario with datasets cannot drift), else online."""
        return self._segment(state, task_index, drift, record=False)

    def record_segment(self, state: SeedState, task_index: int,
                       drift: tuple[float, float] | None = None
                       ) -> tuple[SeedState, dict, dict[str, np.ndarray] | None]:
        """`train_segment` with the online transitions (`everlearn run --record`); None for
        a task that learns from its dataset, which makes none."""
        return self._segment(state, task_index, drift, record=True)

    def _segment(self, state: SeedState, task_index: int, drift: tuple[float, float] | None,
                 record: bool) -> tuple:
        """A segment from the task's dataset, or online as the wrapped trainer trains, with
        the methods' data in the agent state for its length."""
        online = super().record_segment if record else super().train_segment
        if self._datasets is None:
            self._datasets = self._load_datasets()
            self._method_data = self._load_method_data()
        dataset = self._datasets[task_index]
        if dataset is not None:
            state, metrics = self._learn_segment(split_seeds(state), dataset, self._method_data)
            metrics = jax.tree.map(np.asarray, metrics)
            return (state, metrics, None) if record else (state, metrics)
        if not self._method_data:
            return online(state, task_index, drift)
        placeholders = {name: state.agent.methods[name][DATA_KEY] for name in self._method_data}
        state = _with_agent_methods(state, with_method_data(
            state.agent.methods, self._per_seed(jax.tree.leaves(state.agent)[0].shape[0])))
        state, *rest = online(state, task_index, drift)  # metrics (and recorded transitions)
        return (_with_agent_methods(state, with_method_data(state.agent.methods, placeholders)),
                *rest)

    def _per_seed(self, seeds: int) -> dict[str, ReplayBuffer]:
        """The methods' data with a leading axis of `seeds` copies, made once per seed count."""
        if self._per_seed_data.get("seeds") != seeds:
            self._per_seed_data = {"seeds": seeds, "data": {
                name: jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds, *x.shape)), data)
                for name, data in self._method_data.items()}}
        return self._per_seed_data["data"]

    def _learn_seed(self, state: SeedState, dataset: ReplayBuffer,
                    method_data: dict[str, ReplayBuffer]):
        key, k_loop = jax.random.split(state.key)
        placeholders = {name: state.agent.methods[name][DATA_KEY] for name in method_data}
        agent_state = state.agent.replace(
            methods=with_method_data(state.agent.methods, method_data))
        agent_state, metrics = jax.lax.scan(
            lambda agent_state, k: self.agent.learn(agent_state, dataset, k), agent_state,
            jax.random.split(k_loop, self.iterations))
        agent_state = agent_state.replace(
            methods=with_method_data(agent_state.methods, placeholders))
        return SeedState(agent_state, key), jax.tree.map(jnp.mean, metrics)


def _with_agent_methods(state: SeedState, methods: dict) -> SeedState:
    return state.replace(agent=state.agent.replace(methods=methods))


class DataFunctionalTrainer(DataTraining, FunctionalTrainer):
    """Learns from datasets and online on the functional path."""

    def __init__(self, *args, load_datasets=None, load_method_data=None, **kwargs):
        FunctionalTrainer.__init__(self, *args, **kwargs)
        self._init_data(load_datasets, load_method_data)


class DataGymnasiumTrainer(DataTraining, GymnasiumTrainer):
    """Learns from datasets and online on the Gymnasium path."""

    def __init__(self, *args, load_datasets=None, load_method_data=None, **kwargs):
        GymnasiumTrainer.__init__(self, *args, **kwargs)
        self._init_data(load_datasets, load_method_data)
