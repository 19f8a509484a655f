"""The transition batch and the replay buffer of the off-policy agents: preallocated arrays
that live in the agent state (TorchRL keeps storage, sampler and writer apart; here the ring
buffer is all three, and replay methods keep their own stores, `everlearn.core.rows`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# Extras the trainers add to a batch where the agent has a `guide`: per row, whether it ends an
# episode, and the episode's return up to and including it.
EPISODE_KEYS = ("episode_end", "episode_return")


@struct.dataclass
class Transition:
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array  # the true next observation, also where the episode ended
    extras: dict[str, jax.Array]


@struct.dataclass
class ReplayBuffer:
    """A ring buffer of transitions held as preallocated arrays (part of the agent state)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    next_obs: jax.Array
    position: jax.Array  # next row to write
    size: jax.Array  # rows filled so far

    @classmethod
    def create(cls, capacity: int, obs_dim: int, action_shape: tuple[int, ...] = (),
               action_dtype=jnp.int32) -> "ReplayBuffer":
        return cls(
            obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            action=jnp.zeros((capacity, *action_shape), action_dtype),
            reward=jnp.zeros((capacity,), jnp.float32),
            terminated=jnp.zeros((capacity,), jnp.bool_),
            next_obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            position=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
        )

    @property
    def capacity(self) -> int:
        return self.reward.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory the buffer holds (all rows are allocated up front)."""
        return sum(x.nbytes for x in (self.obs, self.action, self.reward, self.terminated,
                                      self.next_obs))

    @staticmethod
    def footprint(capacity: int, obs_dim: int, action_shape: tuple[int, ...] = (),
                  action_bytes: int = 4) -> int:
        """Bytes a buffer of this shape will hold, without allocating it: per row two float32
        observations, the action, a float32 reward and a bool termination flag."""
        action = action_bytes * int(np.prod(action_shape, dtype=np.int64))
        return capacity * (2 * 4 * obs_dim + action + 4 + 1)

    def emptied(self) -> "ReplayBuffer":
        """The buffer with no rows (its arrays are kept; rows beyond `size` are never read)."""
        return self.replace(position=jnp.zeros_like(self.position),
                            size=jnp.zeros_like(self.size))

    def add(self, batch: Transition) -> "ReplayBuffer":
        """Insert a [T, num_envs] batch of transitions, overwriting the oldest rows."""
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), batch)
        n = flat.reward.shape[0]
        rows = (self.position + jnp.arange(n)) % self.capacity
        return self.replace(
            obs=self.obs.at[rows].set(flat.obs),
            action=self.action.at[rows].set(flat.action),
            reward=self.reward.at[rows].set(flat.reward),
            terminated=self.terminated.at[rows].set(flat.terminated),
            next_obs=self.next_obs.at[rows].set(flat.next_obs),
            position=(self.position + n) % self.capacity,
            size=jnp.minimum(self.size + n, self.capacity),
        )

    def sample(self, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
        rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(self.size, 1))
        return {
            "obs": self.obs[rows],
            "action": self.action[rows],
            "reward": self.reward[rows],
            "terminated": self.terminated[rows],
            "next_obs": self.next_obs[rows],
        }


def replay_row(obs_dim: int, action_shape: tuple[int, ...] = (),
               action_dtype=jnp.int32) -> dict[str, jax.ShapeDtypeStruct]:
    """One row of the off-policy agents' minibatch format (replay-buffer samples; what methods
    `observe`): a discrete action is an int32 scalar, a continuous one a float32 vector."""
    obs = jax.ShapeDtypeStruct((obs_dim,), jnp.float32)
    return {"obs": obs, "action": jax.ShapeDtypeStruct(action_shape, action_dtype),
            "reward": jax.ShapeDtypeStruct((), jnp.float32),
            "terminated": jax.ShapeDtypeStruct((), jnp.bool_), "next_obs": obs}

