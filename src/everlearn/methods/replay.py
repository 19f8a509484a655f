"""Experience replay kept across tasks: `replay` (reservoir) and `replay_balanced` (per task).

DQN's own buffer is a FIFO ring: after a task it holds only that task, so the agent forgets
the earlier ones. This method keeps a second memory of `capacity` transitions across tasks and
mixes it into every minibatch of an off-policy agent: `transform_batch` replaces a `replay_fraction` of the rows
(DQN samples its minibatch rows independently and uniformly, so replacing the first rows is
replacing a uniform random subset).

- `replay` (strategy "reservoir"): the memory is a uniform sample of every transition seen so
  far, kept by reservoir sampling (Vitter, 1985, algorithm R) — as in Isele & Cosgun, 2018,
  "Selective Experience Replay for Lifelong Learning" (reservoir variant) and Rolnick et al.,
  2019, "Experience Replay for Continual Learning" (CLEAR). Needs no task boundaries.
- `replay_balanced` (strategy "task_balanced"): every task gets the same quota,
  `capacity // num_tasks` slots, filled by reservoir sampling within that task, so a short task
  after a long one still gets its share (Chaudhry et al., 2019, "On Tiny Episodic Memories in
  Continual Learning", balanced memory). It reads the current task id, so needs boundaries.

Off-policy agents only (DQN, SAC, TD3): the stored transitions are replayed through the TD
loss, which is valid for data from any policy. The storage is
`everlearn.core.replay.ReplayBuffer`; only the writer (which row a new transition goes to)
and the sampler differ from DQN's ring.

Memory footprint per seed (`memory_nbytes`): `capacity · (8 · obs_dim + 9)` bytes (obs and
next_obs float32, action int32 — or 4 bytes per dimension of a continuous action — reward
float32, terminated bool) — CartPole (obs_dim 4) at the default 20,000 transitions: 820 kB —
plus one int32 counter per segment.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from everlearn.core.replay import ReplayBuffer
from everlearn.methods.base import AgentView, Method

# The fields of a stored transition: DQN's minibatch keys and ReplayBuffer's arrays.
TRANSITION_KEYS = ("obs", "action", "reward", "terminated", "next_obs")


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: PositiveInt = 20_000
    replay_fraction: float = Field(0.5, ge=0.0, le=1.0)
    strategy: Literal["reservoir"] = "reservoir"

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_names_its_entry(cls, value):
        if (isinstance(value, str) and value in ENTRY_OF_STRATEGY
                and value != cls.model_fields["strategy"].default):
            raise ValueError(f"for strategy '{value}' use the method "
                             f"'{ENTRY_OF_STRATEGY[value]}'")
        return value


class BalancedReplayConfig(ReplayConfig):
    # Its own entry, because it needs task boundaries and `replay` does not.
    strategy: Literal["task_balanced"] = "task_balanced"


ENTRY_OF_STRATEGY = {"reservoir": "replay", "task_balanced": "replay_balanced"}


def memory_nbytes(capacity: int, obs_dim: int, action_shape: tuple[int, ...] = ()) -> int:
    """Bytes the kept transitions take per seed (the arrays of a `ReplayBuffer`)."""
    return ReplayBuffer.footprint(capacity, obs_dim, action_shape)


def output_shapes(view: AgentView, params, width: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the agent's named outputs for one observation of `width` entries."""
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    return jax.eval_shape(view.outputs, shapes, jax.ShapeDtypeStruct((1, width), jnp.float32))


def reservoir_positions(key: jax.Array, seen: jax.Array, capacity: int, n: int) -> jax.Array:
    """Where reservoir sampling (algorithm R) puts the next `n` items of a stream of which
    `seen` came before: item `c` (0-based count) goes to slot `c` while `c < capacity`, else to
    a uniform draw from [0, c], kept if it falls below `capacity` (probability capacity/(c+1)).
    Returns a slot per item, or `capacity` for an item not kept. The draws do not depend on
    the memory's content, so they are all made at once; where several items of the batch pick
    the same slot, only the last keeps it, as if they had been written one after another."""
    count = seen + jnp.arange(n, dtype=jnp.int32)
    draw = jax.random.randint(key, (n,), 0, count + 1)
    slot = jnp.where(count < capacity, count, jnp.minimum(draw, capacity))
    order = jnp.arange(n)
    last_writer = jnp.full((capacity + 1,), -1).at[slot].max(order)
    return jnp.where(last_writer[slot] == order, slot, capacity)


def reservoir_rows(key: jax.Array, seen: jax.Array, segment: jax.Array | int, quota: int,
                   n: int) -> tuple[jax.Array, jax.Array]:
    """For a memory cut into segments of `quota` rows, each a reservoir of its own stream
    (`seen[s]` items so far): the rows the next `n` items of segment `segment` go to (past the
    memory's end where not kept), and the counts after them."""
    slot = reservoir_positions(key, seen[segment], quota, n)
    rows = jnp.where(slot < quota, segment * quota + slot, seen.shape[0] * quota)
    return rows, seen.at[segment].add(n)


def sample_rows(key: jax.Array, filled: jax.Array, quota: int, n: int) -> jax.Array:
    """`n` rows drawn uniformly from a memory cut into segments of `quota` rows, of which the
    first `filled[s]` rows of segment `s` hold data. Rows are meaningless while all are empty."""
    ends = jnp.cumsum(filled)
    u = jax.random.randint(key, (n,), 0, jnp.maximum(ends[-1], 1))
    segment = jnp.minimum(jnp.searchsorted(ends, u, side="right"), filled.shape[0] - 1)
    return segment * quota + u - (ends[segment] - filled[segment])


def write_rows(memory: ReplayBuffer, rows: jax.Array, data: dict) -> ReplayBuffer:
    """Write the transitions `data` to `rows`; rows past the end are dropped."""
    return memory.replace(**{
        name: getattr(memory, name).at[rows].set(
            data[name].astype(getattr(memory, name).dtype), mode="drop")
        for name in TRANSITION_KEYS
    })


def replace_head(minibatch: dict, memory: ReplayBuffer, rows: jax.Array) -> dict:
    """The minibatch with its first `len(rows)` rows replaced by `memory`'s rows `rows`, or
    unchanged while the memory is empty."""
    count, has_data = rows.shape[0], memory.size > 0
    mixed = dict(minibatch)
    for name in TRANSITION_KEYS:
        kept = getattr(memory, name)[rows].astype(minibatch[name].dtype)
        mixed[name] = minibatch[name].at[:count].set(
            jnp.where(has_data, kept, minibatch[name][:count]))
    return mixed


def make_replay(config: ReplayConfig, view: AgentView) -> Method:
    balanced = config.strategy == "task_balanced"
    segments = view.num_tasks if balanced else 1
    quota = config.capacity // segments  # rows per segment
    if quota < 1:
        raise ValueError(f"replay: capacity {config.capacity} is smaller than the number of "
                         f"tasks ({view.num_tasks}); raise replay.capacity")

    def init(key, params):
        # `memory.size` counts the filled rows; `position` (the ring's cursor) is unused.
        action = view.minibatch_row["action"]  # an int32 index, or a float32 vector
        return {"memory": ReplayBuffer.create(segments * quota, view.obs_dim, action.shape,
                                              action.dtype),
                "seen": jnp.zeros((segments,), jnp.int32)}  # transitions seen per segment

    def observe(state, data, task, key):
        segment = jnp.clip(task, 0, segments - 1) if balanced else 0
        rows, seen = reservoir_rows(key, state["seen"], segment, quota, data["obs"].shape[0])
        memory = write_rows(state["memory"], rows, data)
        return {"memory": memory.replace(size=jnp.sum(jnp.minimum(seen, quota))), "seen": seen}

    def transform_batch(state, minibatch, key):
        replaced = round(config.replay_fraction * minibatch["obs"].shape[0])
        if replaced == 0:
            return minibatch
        rows = sample_rows(key, jnp.minimum(state["seen"], quota), quota, replaced)
        return replace_head(minibatch, state["memory"], rows)

    return Method(ENTRY_OF_STRATEGY[config.strategy], needs_boundaries=balanced, init=init,
                  observe=observe, transform_batch=transform_batch)
