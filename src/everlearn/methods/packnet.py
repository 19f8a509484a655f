"""PackNet: give every task its own subset of the weights by iterative pruning
(Mallya & Lazebnik, 2018, "PackNet: Adding Multiple Tasks to a Single Network by Iterative
Pruning").

Every weight has an owner task id (−1: free). Training on a task moves only the free weights.
At the end of a task, in each kernel (every dense layer of every network, output layers
included: the agents here have one shared output layer, where the paper has one per task), the
largest-magnitude `keep_fraction` of the weights still free (rounded down) become owned by the
ending task, and the rest of the free weights are set to zero, so the next task trains them
from zero (as in the paper, not re-initialised). Biases are not pruned: as in the paper they
train during the first task only and are owned by it afterwards. The run gives the last task
no `on_task_end`, so it keeps all the weights still free.

Owned weights are frozen exactly: a mask on the optimiser's output (`update_transformation`,
after Adam, which would otherwise move them on old momentum) zeroes their updates, so they stay
bit-identical. The same mask is also applied to the raw gradients (`gradient_transformation`)
so that frozen weights neither take a share of the gradient-norm clip nor feed Adam's moments.
Simplifications: the paper retrains the kept weights briefly after pruning (there is no such
phase here), and evaluates an earlier task with the later tasks' weights masked out; the
everlearn evaluator has no task-conditioned forward pass, so here every task is evaluated with
all the weights, and the weights that later tasks train do change earlier tasks' outputs.
(DQN's target network keeps the unpruned weights until its next update.)

Works with PPO (actor and critic are both packed) and DQN; needs task boundaries.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
import optax
from pydantic import BaseModel, ConfigDict, Field

from everlearn.methods.base import AgentView, Method

FREE = -1


class PackNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def prune_kernel(weights: jax.Array, owner: jax.Array, task: jax.Array, keep_fraction: float
                 ) -> tuple[jax.Array, jax.Array]:
    """Give the ending `task` the `floor(keep_fraction · free)` largest-magnitude free weights;
    zero the other free weights. Returns (weights, owner)."""
    free = (owner == FREE).reshape(-1)
    num_keep = jnp.floor(keep_fraction * jnp.sum(free)).astype(jnp.int32)
    # Free weights score |w| >= 0 and owned ones -1, so the free weights rank first; the rank
    # (not a magnitude threshold) keeps exactly `num_keep` of them even when magnitudes tie.
    score = jnp.where(free, jnp.abs(weights.reshape(-1)), -1.0)
    order = jnp.argsort(-score, stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size))
    keep = free & (rank < num_keep)
    new_owner = jnp.where(keep, task, owner.reshape(-1)).reshape(owner.shape)
    new_weights = jnp.where(free & ~keep, 0.0, weights.reshape(-1)).reshape(weights.shape)
    return new_weights.astype(weights.dtype), new_owner


def _mask_frozen(updates, owner):
    return jax.tree.map(lambda u, o: jnp.where(o == FREE, u, jnp.zeros_like(u)), updates, owner)


def make_packnet(config: PackNetConfig, view: AgentView) -> Method:
    def init(key, params):
        return {"owner": jax.tree.map(lambda p: jnp.full(p.shape, FREE, jnp.int32), params)}

    def on_task_end(state, params, task, key):
        task = jnp.asarray(task, jnp.int32)

        def pack(path, weights, owner):
            if _is_kernel(path):
                return prune_kernel(weights, owner, task, config.keep_fraction)
            return weights, jnp.where(owner == FREE, task, owner)  # biases: kept, owned

        packed = jax.tree_util.tree_map_with_path(pack, params, state["owner"])
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        params = jax.tree.map(lambda pair: pair[0], packed, is_leaf=is_pair)
        owner = jax.tree.map(lambda pair: pair[1], packed, is_leaf=is_pair)
        return {"owner": owner}, params

    def frozen_mask():
        def update(updates, link_state, params=None, *, method_state, **extra):
            return _mask_frozen(updates, method_state["owner"]), link_state

        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)

    return Method("packnet", needs_boundaries=True, init=init, on_task_end=on_task_end,
                  gradient_transformation=frozen_mask(), update_transformation=frozen_mask())
