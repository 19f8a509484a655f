"""ReDo: recycle dormant neurons (Sokar, Agarwal, Castro & Evci, 2023, "The Dormant Neuron
Phenomenon in Deep Reinforcement Learning").

Every `every_updates` agent updates (`after_update` runs once per `update` call), each hidden
neuron of every network gets its score on the most recent `observations` training
observations (kept in this method's state by `observe`): E|h_j(x)| divided by the layer's
average (1/H) Σ_k E|h_k(x)|. Neurons scoring ≤ `tau` are dormant; each one gets fresh incoming
weights (a QR-free draw at the layer's initial scale, see `surgery.py`) and a zero bias, and
its outgoing weights are set to zero, so the network's outputs do not jump. Every other weight
stays bit-identical.

Simplification: the paper also resets the optimiser's moments of the recycled weights; a
method here cannot reach the agent's optimiser state. For a truly dead ReLU neuron those
moments are already near zero (its weights get no gradient), so this matters little at the
default τ. DQN's target network is not touched; it picks up the change at its next update.

Works with PPO (actor and critic) and DQN (the Q-network); needs no task boundaries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.evaluation.diagnostics import dormant_mask
from everlearn.methods.base import AgentView, Method, empty_store, store_rows
from everlearn.methods.surgery import (init_scales, reinit_units,
                                       require_activations, stored_obs)


class ReDoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tau: NonNegativeFloat = 0.025  # the paper's threshold for its value-based agents
    every_updates: PositiveInt = 10  # agent updates between two recyclings
    observations: PositiveInt = 256  # recent observations the scores are measured on


def make_redo(config: ReDoConfig, view: AgentView) -> Method:
    require_activations(view, "redo")

    def init(key, params):
        return {"recent": empty_store(view, config.observations, keys=("obs",)),
                "scales": init_scales(params, view.networks),
                "updates": jnp.zeros((), jnp.int32),
                "recycled": jnp.zeros((), jnp.int32)}  # neurons recycled so far (a record)

    def observe(state, data, task, key):
        return {**state, "recent": store_rows(state["recent"], data)}

    def recycle(state, params, key):
        layers = view.activations(params, stored_obs(state["recent"]))
        params = dict(params)
        recycled = jnp.zeros((), jnp.int32)
        for network, k in zip(view.networks, jax.random.split(key, len(view.networks))):
            masks = dormant_mask(layers[network], config.tau)
            params[network] = reinit_units(k, params[network], masks, state["scales"][network])
            recycled += sum(jnp.sum(mask, dtype=jnp.int32) for mask in masks)
        return params, recycled

    def after_update(state, params, key):
        updates = state["updates"] + 1
        due = (updates % config.every_updates == 0) & (state["recent"]["size"] > 0)
        params, recycled = jax.lax.cond(
            due, lambda p: recycle(state, p, key),
            lambda p: (p, jnp.zeros((), jnp.int32)), params)
        return {**state, "updates": updates, "recycled": state["recycled"] + recycled}, params

    return Method("redo", init=init, observe=observe, after_update=after_update)
