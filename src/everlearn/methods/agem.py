"""A-GEM: project the gradient so the loss on earlier tasks' memory does not increase
(Chaudhry, Ranzato, Rohrbach & Elhoseiny, 2019, "Efficient Lifelong Learning with A-GEM").

An episodic memory keeps the last `memory_per_task` rows of each task in the agent's minibatch
format (filled in `observe`; a task's rows become usable once `on_task_end` marks it finished).
At every gradient step an Optax link, placed before the agent's clipping and Adam, draws
`reference_batch` rows uniformly from the finished tasks' memory, takes the agent's own loss
gradient there, `g_ref`, and when the step's gradient `g` conflicts with it (`g·g_ref < 0`,
dot products over the whole params pytree) replaces it by its projection
`g − (g·g_ref)/(g_ref·g_ref) · g_ref`, so that to first order the step leaves the memory loss
unchanged. Before any task has finished, `g` passes unchanged. (The paper projects SGD steps;
here the projected gradient then goes through the agent's clipping and Adam.)

What the reference loss means per agent:
- DQN: the TD loss of stored transitions, with the current network as its own (stop-gradient)
  target — the agent's loss on old tasks' data.
- PPO: the stored rows keep the log-probabilities and advantages of the policy and critic that
  collected them near the end of their task. The reference loss is PPO's clipped surrogate on
  that old data, relative to the old task's final policy, plus the value error on its returns.
  Its policy gradient favours that task's good actions (positive advantage, normalised within
  the reference batch) and disfavours its bad ones, except where the current policy has already
  moved more than the clip range in that favoured direction (those rows then add no policy
  gradient); rows where it moved the other way keep their full gradient. So the constraint
  is: do not make the old task's advantaged actions less likely, nor its value error larger.

Works with PPO and DQN; needs task boundaries (the memory is organised by finished task).
The reference gradient costs one extra backward pass per gradient step, also before the first
task ends (its result is then discarded), so the step costs about twice the plain agent's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from pydantic import BaseModel, ConfigDict, PositiveInt

from everlearn.core.rows import empty_rows
from everlearn.methods.base import AgentView, Method


class AGEMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_per_task: PositiveInt = 1000
    reference_batch: PositiveInt = 256


def project_gradient(grads, reference_grads, has_reference: jax.Array):
    """A-GEM's projection: `g − (g·g_ref)/(g_ref·g_ref) g_ref` where `g·g_ref < 0` and a
    reference exists; otherwise `g` itself (selected, so a non-finite `g_ref` cannot leak)."""
    dot = optax.tree_utils.tree_vdot(grads, reference_grads)
    reference_sq = optax.tree_utils.tree_vdot(reference_grads, reference_grads)
    conflict = jnp.logical_and(has_reference, dot < 0)
    scale = dot / jnp.maximum(reference_sq, jnp.finfo(jnp.float32).tiny)
    return jax.tree.map(lambda g, r: jnp.where(conflict, g - scale * r, g),
                        grads, reference_grads)


def make_agem(config: AGEMConfig, view: AgentView) -> Method:
    num_tasks, capacity = view.num_tasks, config.memory_per_task

    def init(key, params):
        return {
            "memory": empty_rows(view.minibatch_row, (num_tasks, capacity)),
            "filled": jnp.zeros((num_tasks, capacity), jnp.bool_),
            "position": jnp.zeros((num_tasks,), jnp.int32),  # next row to write, per task
            "finished": jnp.zeros((num_tasks,), jnp.bool_),
        }

    def observe(state, data, task, key):
        # Keep the newest rows of the current task in its ring: at the task's end they come
        # from (nearly) its final policy, which is what the PPO reference loss is relative to.
        rows = {name: data[name][-capacity:] for name in state["memory"]}
        n = rows["obs"].shape[0]
        slots = (state["position"][task] + jnp.arange(n)) % capacity
        memory = {name: m.at[task, slots].set(rows[name].astype(m.dtype))
                  for name, m in state["memory"].items()}
        return {
            **state,
            "memory": memory,
            "filled": state["filled"].at[task, slots].set(True),
            "position": state["position"].at[task].set((state["position"][task] + n) % capacity),
        }

    def on_task_end(state, params, task, key):
        return {**state, "finished": state["finished"].at[task].set(True)}, params

    def sample_reference(state, key):
        usable = (state["filled"] & state["finished"][:, None]).reshape(-1)
        # Inverse-CDF draws (uniform over usable rows): cheap, where Gumbel noise would cost
        # one number per memory row per drawn row.
        rows = jax.random.choice(key, usable.size, (config.reference_batch,),
                                  p=usable.astype(jnp.float32))
        batch = {name: m.reshape(num_tasks * capacity, *m.shape[2:])[rows]
                 for name, m in state["memory"].items()}
        return batch, jnp.any(usable)

    def link_init(params):
        # The link's own PRNG key, seeded from the initial params' bits so that every seed
        # (a `vmap` axis) draws its own reference rows, reproducibly.
        bits = sum((jnp.sum(jax.lax.bitcast_convert_type(leaf.astype(jnp.float32), jnp.uint32))
                    for leaf in jax.tree.leaves(params)), jnp.zeros((), jnp.uint32))
        return {"key": jax.random.fold_in(jax.random.PRNGKey(0), bits)}

    def link_update(updates, link_state, params=None, *, method_state, loss_grad, **extra):
        key, sample_key = jax.random.split(link_state["key"])
        reference, has_reference = sample_reference(method_state, sample_key)
        projected = project_gradient(updates, loss_grad(reference), has_reference)
        return projected, {"key": key}

    return Method("agem", needs_boundaries=True, init=init, observe=observe,
                  on_task_end=on_task_end,
                  gradient_transformation=optax.GradientTransformationExtraArgs(link_init,
                                                                                link_update))
