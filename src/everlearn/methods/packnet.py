"""PackNet: give every task its own subset of the weights by iterative pruning
(Mallya & Lazebnik, 2018, "PackNet: Adding Multiple Tasks to a Single Network by Iterative
Pruning"), as Continual World runs it (Wołczyk et al., 2021; `continualworld/methods/packnet.py`).

Every weight of the policy network (PPO's and SAC's/TD3's actor, DQN's Q-network) has an owner
task id (−1: free). Training on a task moves only the free weights. At the end of a task, in
each hidden kernel, the largest-magnitude share of the weights still free becomes owned by the
ending task, and the rest of the free weights are set to zero, so the next task trains them
from zero (as in the paper, not re-initialised). The share is CW's equal split by default: a
task with `k` tasks after it keeps `1 / (k + 1)` of the free weights, so each of the N tasks
gets about 1/N of every kernel; `keep_fraction` fixes it instead (the paper's 0.5 or 0.25).
Biases and layer-norm parameters train during the first task only and are owned by it
afterwards (the paper; CW's `freeze_biases_and_normalization`). The run gives the last task no
`on_task_end`, so it keeps all the weights still free.

Each task is evaluated with its own view of the network (`task_params`): the weights owned by
later tasks are zeroed, and weights still free count as the current task's, as in CW's
`on_test_start`. An earlier task's outputs therefore stay bit-identical whatever later tasks
learn (tested). With `multi_head` every output head belongs to its task whole: the ending
task's head (kernel columns and bias) is owned by it unpruned, the others stay free (CW leaves
heads out of the pruning; owning them keeps them exact even without an optimiser reset).

Owned weights are frozen exactly: a mask on the optimiser's output (`update_transformation`,
after Adam, which would otherwise move them on old momentum) zeroes their updates, so they stay
bit-identical. The same mask is also applied to the raw gradients (`gradient_transformation`)
so that frozen weights neither take a share of the gradient-norm clip nor feed Adam's moments.

Deliberate differences from CW:
- No retraining phase after pruning (CW: 100k gradient steps on the task's buffer with only
  the kept weights, `packnet_retrain_steps`); a method here cannot run the agent's updates. The
  pruned weights' loss is therefore not recovered, which shows as a drop of the task's
  performance at its boundary (and counts as forgetting in both metric conventions).
- CW uses gradient-norm clipping 2e-5 for PackNet; everlearn keeps the agent's own setting.
- The critic (PPO's, SAC's and TD3's) is not packed, as in CW (`regularize_critic=False`); it
  is never used to act. DQN's Q-network is its policy, so it is packed; its target network
  keeps the unpruned weights until its next update.
Needs task boundaries; any agent.
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

    # Share of the free weights an ending task keeps. None: CW's equal split, 1 / (tasks after
    # it + 1), so every task of the scenario gets the same capacity.
    keep_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


def prune_kernel(weights: jax.Array, owner: jax.Array, task: jax.Array, keep_fraction
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


def _layer_name(path) -> str:
    return str(getattr(path[-2], "key", "")) if len(path) >= 2 else ""


def _output_layer(network_params) -> str:
    """The name of a network's output layer: its last `Dense_k`."""
    dense = [k for k in network_params["params"] if k.startswith("Dense_")]
    return max(dense, key=lambda name: int(name.split("_")[1]))


def _mask_frozen(updates, owner):
    return jax.tree.map(lambda u, o: jnp.where(o == FREE, u, jnp.zeros_like(u)), updates, owner)


def make_packnet(config: PackNetConfig, view: AgentView) -> Method:
    packed = view.policy_network  # packed; the rest (critics) stays free
    heads = view.heads

    def keep_fraction(task: jax.Array) -> jax.Array:
        if config.keep_fraction is not None:
            return jnp.float32(config.keep_fraction)
        tasks_after = view.num_tasks - 1 - task
        return 1.0 / (tasks_after + 1.0).astype(jnp.float32)

    def init(key, params):
        return {"owner": jax.tree.map(lambda p: jnp.full(p.shape, FREE, jnp.int32), params)}

    def head_columns(leaf: jax.Array, task: jax.Array) -> jax.Array:
        """Bool, shaped like an output layer's kernel or bias: the entries of `task`'s head."""
        head_of = jnp.arange(leaf.shape[-1]) // (leaf.shape[-1] // heads)
        return jnp.broadcast_to(head_of == task, leaf.shape)

    def on_task_end(state, params, task, key):
        task = jnp.asarray(task, jnp.int32)
        output = _output_layer(params[packed])

        def pack(path, weights, owner):
            layer, kind = _layer_name(path), getattr(path[-1], "key", None)
            if getattr(path[0], "key", None) != packed:
                return weights, owner
            if heads > 1 and layer == output:  # the ending task's head is its own, whole
                return weights, jnp.where(head_columns(owner, task) & (owner == FREE), task,
                                          owner)
            if kind == "kernel":  # dense and convolutional
                return prune_kernel(weights, owner, task, keep_fraction(task))
            return weights, jnp.where(owner == FREE, task, owner)  # biases, norms: kept, owned

        packed_tree = jax.tree_util.tree_map_with_path(pack, params, state["owner"])
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        params = jax.tree.map(lambda pair: pair[0], packed_tree, is_leaf=is_pair)
        owner = jax.tree.map(lambda pair: pair[1], packed_tree, is_leaf=is_pair)
        return {"owner": owner}, params

    def task_params(state, params, task, current):
        """Task `task`'s view: weights owned by a later task zeroed (free ones are the
        current task's)."""
        def view_of(weights, owner):
            effective = jnp.where(owner == FREE, current, owner)
            return jnp.where(effective > task, jnp.zeros_like(weights), weights)

        return jax.tree.map(view_of, params, state["owner"])

    def frozen_mask():
        def update(updates, link_state, params=None, *, method_state, **extra):
            return _mask_frozen(updates, method_state["owner"]), link_state

        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)

    return Method("packnet", needs_boundaries=True, init=init, on_task_end=on_task_end,
                  gradient_transformation=frozen_mask(), update_transformation=frozen_mask(),
                  task_params=task_params)
