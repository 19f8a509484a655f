"""Fixed-size stores of rows in an agent's minibatch format (the hooks' `recent` rows, EWC's
and MAS's samples): a ring of preallocated arrays with a position and a fill count, pure
functions over a dict so that it lives in any state pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def empty_rows(row: dict[str, jax.ShapeDtypeStruct], leading: tuple[int, ...],
               keys: tuple[str, ...] | None = None) -> dict[str, jax.Array]:
    """Zeroed room for rows of a minibatch format (`view.minibatch_row`): arrays of shape
    `leading + row shape`, for every key or only `keys`."""
    return {key: jnp.zeros((*leading, *spec.shape), spec.dtype) for key, spec in row.items()
            if keys is None or key in keys}


def store_rows(store: dict, data: dict) -> dict:
    """Write the newest rows of `data` over the oldest ones of the store."""
    capacity = store["rows"]["obs"].shape[0]
    count = min(data["obs"].shape[0], capacity)  # a static shape: keep only the newest rows
    slots = (store["position"] + jnp.arange(count)) % capacity
    rows = {key: column.at[slots].set(data[key][-count:].astype(column.dtype))
            for key, column in store["rows"].items()}
    return {"rows": rows, "position": (store["position"] + count) % capacity,
            "size": jnp.minimum(store["size"] + count, capacity)}


def clear_store(store: dict) -> dict:
    return {**store, "position": jnp.zeros_like(store["position"]),
            "size": jnp.zeros_like(store["size"])}


def filled_rows(store: dict) -> dict[str, jax.Array]:
    """The store's rows as fixed-shape arrays for jit ([capacity, ...]): until the store is
    full, its first `size` rows repeated to fill it (a mean over them is then a mean over what
    the store holds, up to the rounding of the repeats)."""
    capacity = store["rows"]["obs"].shape[0]
    index = jnp.arange(capacity) % jnp.maximum(store["size"], 1)
    return jax.tree.map(lambda column: column[index], store["rows"])


def row_weights(store: dict) -> jax.Array:
    """1/size for each filled row, 0 for empty ones: an exact mean over what the store holds."""
    capacity = store["rows"]["obs"].shape[0]
    filled = jnp.arange(capacity) < store["size"]
    return filled / jnp.maximum(store["size"], 1).astype(jnp.float32)

