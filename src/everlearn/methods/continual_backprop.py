"""Continual backpropagation (Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood & Sutton, 2024,
"Loss of plasticity in deep continual learning", Nature).

Keeps replacing a small share of each hidden layer's least useful mature neurons with fresh
ones, so some of the network always has the plasticity of a new network. Per hidden neuron j
of every network: an age a_j (agent updates since it was last initialised) and a running
contribution utility, updated once per agent update on the most recent `observations`
training observations (kept here by `observe`):

    u_j ← η·u_j + (1 − η)·E|h_j| · Σ_k |w_out,jk|        (η = `utility_decay`)

Neurons older than `maturity_threshold` are eligible. Each update adds `replacement_rate` ×
(number eligible) to a per-layer running total and replaces floor(total) neurons, keeping the
fractional rest for later (the paper's accumulation): the eligible ones with the lowest
bias-corrected utility u_j / (1 − η^a_j) (the paper's Eq. 8, as in the authors' code). A
replaced neuron gets fresh incoming weights (QR-free, at the layer's initial scale, see
`surgery.py`) and a zero bias, zero outgoing weights (the network's outputs do not jump), and
utility and age 0. All other weights stay bit-identical.

Differences from the paper: it updates utilities per example and rates per step; here both
are per agent `update` (one PPO rollout with its epochs, one DQN round of gradient steps), so
the rate is per update. The authors' optimiser also resets the Adam moments of replaced
weights; a method here cannot reach the agent's optimiser state, so they are kept. DQN's
target network is not touched.

Works with PPO (actor and critic) and DQN (the Q-network); needs no task boundaries.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from everlearn.methods.base import AgentView, Method, empty_store, store_rows
from everlearn.methods.surgery import (hidden_layers, init_scales, reinit_units,
                                       require_activations, stored_obs)


class ContinualBackpropConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replacement_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1e-4  # per update, per layer
    maturity_threshold: NonNegativeInt = 100  # updates before a neuron may be replaced
    utility_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.99  # η of the running utility
    observations: PositiveInt = 256  # recent observations the utilities are measured on


def lowest_eligible(utility: jax.Array, eligible: jax.Array, count: jax.Array) -> jax.Array:
    """Mask of the `count` eligible entries with the lowest utility (ties: lower index first)."""
    score = jnp.where(eligible, utility, jnp.inf)
    order = jnp.argsort(score, stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size))
    return eligible & (rank < count)


def make_continual_backprop(config: ContinualBackpropConfig, view: AgentView) -> Method:
    require_activations(view, "continual_backprop")
    decay = config.utility_decay

    def init(key, params):
        def layer_state(width):
            return {"utility": jnp.zeros((width,), jnp.float32),
                    "age": jnp.zeros((width,), jnp.int32),
                    "pending": jnp.zeros((), jnp.float32)}  # replacements owed, fractional

        layers = {network: [layer_state(params[network]["params"][incoming]["bias"].shape[0])
                            for incoming, _ in hidden_layers(params[network])]
                  for network in view.networks}
        return {"recent": empty_store(view, config.observations, keys=("obs",)),
                "scales": init_scales(params, view.networks), "layers": layers,
                "replaced": jnp.zeros((), jnp.int32)}  # neurons replaced so far (a record)

    def observe(state, data, task, key):
        return {**state, "recent": store_rows(state["recent"], data)}

    def select(layer, hidden, outgoing_kernel):
        """One update of a layer's ages, utilities and owed replacements; which to replace."""
        age = layer["age"] + 1
        contribution = jnp.abs(hidden).mean(axis=0) * jnp.abs(outgoing_kernel).sum(axis=1)
        utility = decay * layer["utility"] + (1.0 - decay) * contribution
        corrected = utility / (1.0 - decay ** age.astype(jnp.float32))  # age ≥ 1 here
        eligible = age > config.maturity_threshold
        num_eligible = jnp.sum(eligible, dtype=jnp.int32)
        pending = layer["pending"] + config.replacement_rate * num_eligible
        count = jnp.minimum(jnp.floor(pending).astype(jnp.int32), num_eligible)
        replace = lowest_eligible(corrected, eligible, count)
        new_layer = {"utility": jnp.where(replace, 0.0, utility),
                     "age": jnp.where(replace, 0, age),
                     "pending": pending - count}
        return new_layer, replace

    def after_update(state, params, key):
        activations = view.activations(params, stored_obs(state["recent"]))
        params = dict(params)
        layers = {}
        replaced = state["replaced"]
        for network, k in zip(view.networks, jax.random.split(key, len(view.networks))):
            net = params[network]
            masks = []
            layers[network] = []
            for layer, hidden, (_, outgoing) in zip(state["layers"][network],
                                                   activations[network], hidden_layers(net)):
                new_layer, replace = select(layer, hidden, net["params"][outgoing]["kernel"])
                layers[network].append(new_layer)
                masks.append(replace)
                replaced += jnp.sum(replace, dtype=jnp.int32)
            params[network] = reinit_units(k, net, masks, state["scales"][network])
        return {**state, "layers": layers, "replaced": replaced}, params

    return Method("continual_backprop", init=init, observe=observe, after_update=after_update)
