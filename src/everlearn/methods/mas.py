"""Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, 2018, "Memory
Aware Synapses: Learning what (not) to forget").

A weight is important when the network's output moves with it: at each task end,
`Ω_i = mean over recent inputs x of |∂ ||f(x)||²₂ / ∂θ_i|`, with f every output of the agent's
networks (`view.outputs`). For PPO, f(x) is the actor's logits and the critic's value together,
`||f||² = ||logits||² + value²`; the two networks share no weights, so this is the same as each
network's importance from its own output. For DQN, f(x) is the vector of Q-values. Importances
add up across tasks (the paper's accumulation; `accumulate="average"` keeps their running mean
instead), and the loss gets `(strength/2) Σ_i Ω_i (θ_i − θ*_i)²` with θ* the parameters at the
last task end. Needs no labels or rewards: only the most recent `importance_samples`
observations, kept in a fixed-size store by `observe`.

Supports PPO and DQN. Needs task boundaries (importance and anchor are taken at task ends).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.core.rows import clear_store, row_weights, store_rows
from everlearn.methods.base import (
    AgentView,
    Method,
    Params,
    empty_store,
    normalise_by_mean,
    weighted_squared_distance,
    weighted_sum_over_rows,
)


class MASConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # λ of the penalty `(strength/2) Σ Ω (θ − θ*)²` (not tuned; with mean-normalised
    # importances it is the average per-weight L2 coefficient).
    strength: NonNegativeFloat = 1.0
    # How many of the task's most recent observations the importance is measured on.
    importance_samples: PositiveInt = 512
    # "sum": Ω ← Ω + Ω_task (the paper); "average": the running mean over finished tasks.
    accumulate: Literal["sum", "average"] = "sum"
    # Divide each task's importance by its mean over all weights (`base.normalise_by_mean`).
    normalise_importance: bool = True


def output_sensitivity(view: AgentView, params: Params, obs: jax.Array,
                       weights: jax.Array) -> Params:
    """Σ_n weights[n] |∂ ||f(obs[n])||²₂ / ∂θ|, f all of the agent's network outputs."""

    def absolute_gradient(params, row):
        def squared_output_norm(params):
            outputs = view.outputs(params, row["obs"][None])
            return sum(jnp.sum(out ** 2) for out in jax.tree.leaves(outputs))

        return jax.tree.map(jnp.abs, jax.grad(squared_output_norm)(params))

    return weighted_sum_over_rows(absolute_gradient, params, {"obs": obs}, weights)


def make_mas(config: MASConfig, view: AgentView) -> Method:
    def init(key, params):
        return {"store": empty_store(view, config.importance_samples, keys=("obs",)),
                "importance": jax.tree.map(jnp.zeros_like, params), "anchor": params,
                "tasks_finished": jnp.zeros((), jnp.int32)}

    def observe(state, data, task, key):
        return {**state, "store": store_rows(state["store"], data)}

    def on_task_end(state, params, task, key):
        store = state["store"]
        new = output_sensitivity(view, params, store["rows"]["obs"], row_weights(store))
        if config.normalise_importance:
            new = normalise_by_mean(new)
        if config.accumulate == "sum":
            importance = jax.tree.map(jnp.add, state["importance"], new)
        else:
            done = state["tasks_finished"].astype(jnp.float32)
            importance = jax.tree.map(lambda old, n: (done * old + n) / (done + 1.0),
                                      state["importance"], new)
        return {"store": clear_store(store), "importance": importance, "anchor": params,
                "tasks_finished": state["tasks_finished"] + 1}, params

    def extra_loss(state, params, minibatch):
        return 0.5 * config.strength * weighted_squared_distance(
            params, state["anchor"], state["importance"])

    return Method("mas", needs_boundaries=True, init=init, on_task_end=on_task_end,
                  observe=observe, extra_loss=extra_loss)
