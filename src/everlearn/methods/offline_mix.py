"""`offline_mix`: a fixed share of every minibatch drawn from logged data, while the agent
learns online (and offline) from its own buffer — the mechanism of two offline-to-online
recipes, which differ in where the data comes from:

- RLPD-style symmetric sampling (Ball, Smith, Kostrikov & Levine, 2023, "Efficient Online
  Reinforcement Learning with Offline Data"): half of each batch from the offline dataset,
  half from the online buffer (`fraction` 0.5, the default), `dataset` a local Minari id or a
  built-in recipe. RLPD's other two ingredients are settings of the agent, not of this method:
  layer norm in the critics (`--set sac.layer_norm=true`) and a high update-to-data ratio
  (`--set sac.utd_ratio=...`). RLPD also trains an ensemble of 10 critics and takes the
  minimum of a random pair of them; everlearn's agents have two critics, so this is
  "RLPD-style", not RLPD.
- RaE, Replay across Experiments (Tirumala et al., 2023, "Replay across Experiments: A Natural
  Extension of Off-Policy RL"): the data of an earlier experiment mixed into each batch at a
  fixed ratio. `run` names an earlier run directory: its newest checkpoint's replay buffer
  (seed `run_seed_index`) is the data, and `fraction` the ratio. A dataset id works too (an
  earlier run recorded with `everlearn collect --policy RUN_DIR`). RaE reuses all the data an
  experiment logged over its whole life; a checkpoint's buffer holds only its latest
  `buffer_size` transitions — a difference where the earlier run outgrew its buffer.

What the method does: `transform_batch` replaces the first `round(fraction · batch)` rows of
each minibatch by rows drawn uniformly from the data (off-policy agents sample their rows
independently and uniformly, so replacing the first rows replaces a uniform random subset, as
`replay` does). Where the minibatch is itself drawn from a dataset (an offline task of the
scenario), the mix applies there too.

Where the data lives: not in this method's state. The run's trainer loads it once and puts it
in the state for the length of a training segment only (`base.with_method_data`); between
segments the state holds a one-row placeholder. So checkpoints never carry the data, and a
resumed run loads it again from the same source. The data must be in the agent's input format:
a dataset is mapped onto the scenario task named by `task` (padding, task id, action range);
a run's buffer must have this run's observation and action widths.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from everlearn.core.replay import ReplayBuffer
from everlearn.methods.base import DATA_KEY, AgentView, DataSource, Method
from everlearn.methods.replay import replace_head


class OfflineMixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(0.5, ge=0.0, le=1.0)  # share of each minibatch from the data
    # The data: a local Minari dataset id or a recipe ("random", "medium", "expert") of the
    # scenario task `task` (default: the first task) ...
    dataset: str | None = None
    task: str | None = None
    # ... or an earlier run's replay buffer (its newest checkpoint; one of its seeds). A run
    # with `offline_mix` sets exactly one of `dataset` and `run` (checked with the scenario).
    run: str | None = None
    run_seed_index: NonNegativeInt = 0


def placeholder(view: AgentView) -> ReplayBuffer:
    """The one empty row the state holds between segments."""
    action = view.minibatch_row["action"]
    return ReplayBuffer.create(1, view.obs_dim, action.shape, action.dtype)


def data_source(config: OfflineMixConfig) -> DataSource:
    """What the run loads for it: its dataset or its earlier run's buffer."""
    return DataSource(config.dataset, config.task, config.run, config.run_seed_index)


def make_offline_mix(config: OfflineMixConfig, view: AgentView) -> Method:
    def init(key, params) -> dict[str, Any]:
        return {DATA_KEY: placeholder(view)}

    def transform_batch(state, minibatch, key):
        mixed_rows = round(config.fraction * minibatch["obs"].shape[0])
        if mixed_rows == 0:
            return minibatch
        data = state[DATA_KEY]  # the placeholder (size 0) leaves the minibatch as it is
        rows = jax.random.randint(key, (mixed_rows,), 0, jnp.maximum(data.size, 1))
        return replace_head(minibatch, data, rows)

    return Method("offline_mix", init=init, transform_batch=transform_batch)
