"""The seed axis of a population: trainers `vmap` their seeds under `SEED_AXIS`, and a
predicate that every seed shares is made one value for them all (`in_lockstep`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# The name trainers give their `vmap` over a population's seeds (`in_lockstep`).
SEED_AXIS = "seeds"


def in_lockstep(pred: jax.Array) -> jax.Array:
    """A `lax.cond` predicate that is the same for every seed of a population (its seeds step
    together: a replay buffer's size, a count of updates), made one value for them all. Under
    a `vmap` a per-seed predicate turns the cond into a select that computes both branches,
    so every warm-up update would take its gradient steps and throw them away; reduced over
    the trainer's seed axis (`SEED_AXIS`), the predicate is unbatched and the cond stays a
    branch. Outside that `vmap` (one agent's `update`) it is returned as it is."""
    try:
        return jax.lax.pmax(pred.astype(jnp.int32), SEED_AXIS) > 0
    except NameError:  # the axis is not bound: not under a trainer's seed vmap
        return pred

