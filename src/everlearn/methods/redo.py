"""ReDo: recycle dormant neurons (Sokar, Agarwal, Castro & Evci, 2023, "The Dormant Neuron
Phenomenon in Deep Reinforcement Learning").

Every `every_updates` agent updates (`after_update` runs once per `update` call that took
gradient steps), each hidden neuron of every network gets its score on the agent's latest
training observations (the hooks' `recent` rows, see `base.py`): E|h_j(x)| divided by the
layer's average (1/H) Σ_k E|h_k(x)|. Neurons scoring ≤ `tau` are dormant; each one gets fresh
incoming weights (a QR-free draw at the layer's initial scale, see `surgery.py`) and a zero
bias, and its outgoing weights are set to zero, so the network's outputs do not jump. As in
the paper, the Adam moments of those incoming weights, bias and outgoing weights are zeroed
(`view.reset_moments`). Every other weight and moment stays bit-identical.

Deliberate differences from the paper:
- The period is in agent updates (`every_updates`), where the paper's is a fixed number of
  training steps; the scores are measured on the latest training rows (at least 256, every
  row of the last update) rather than on the training minibatch of that step.
- Optax's Adam keeps one step count for all weights, so reset moments restart without a bias
  correction of their own.
- DQN's target network is not touched; it picks up the change at its next update.

Works with every agent (PPO's actor and critic, DQN's Q-network, SAC's and TD3's actor and
critics); needs no task boundaries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.core.lockstep import in_lockstep
from everlearn.core.neurons import dormant_mask
from everlearn.core.rows import filled_rows
from everlearn.methods.base import AgentView, Method
from everlearn.methods.surgery import (
    init_scales,
    reinit_moments_mask,
    reinit_units,
    require_activations,
)


class ReDoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tau: NonNegativeFloat = 0.025  # the paper's threshold for its value-based agents
    every_updates: PositiveInt = 10  # agent updates between two recyclings


def make_redo(config: ReDoConfig, view: AgentView) -> Method:
    require_activations(view, "redo")

    def init(key, params):
        return {"scales": init_scales(params, view.networks),
                "updates": jnp.zeros((), jnp.int32),
                "recycled": jnp.zeros((), jnp.int32)}  # neurons recycled so far (a record)

    def recycle(state, params, opt_state, recent, key):
        layers = view.activations(params, filled_rows(recent)["obs"])
        params, masks = dict(params), {}
        recycled = jnp.zeros((), jnp.int32)
        for network, k in zip(view.networks, jax.random.split(key, len(view.networks))):
            masks[network] = dormant_mask(layers[network], config.tau)
            params[network] = reinit_units(k, params[network], masks[network],
                                           state["scales"][network])
            recycled += sum(jnp.sum(mask, dtype=jnp.int32) for mask in masks[network])
        opt_state = view.reset_moments(opt_state, reinit_moments_mask(params, masks))
        return params, opt_state, recycled

    def after_update(state, params, opt_state, recent, key):
        updates = state["updates"] + 1
        due = (updates % config.every_updates == 0) & (recent["size"] > 0)
        params, opt_state, recycled = jax.lax.cond(
            in_lockstep(due), lambda p, o: recycle(state, p, o, recent, key),
            lambda p, o: (p, o, jnp.zeros((), jnp.int32)), params, opt_state)
        return ({**state, "updates": updates, "recycled": state["recycled"] + recycled},
                params, opt_state)

    return Method("redo", init=init, after_update=after_update)
