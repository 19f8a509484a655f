"""L2-init: pull the weights towards their initial values (Kumar, Marklund & Van Roy, 2023,
"Maintaining Plasticity in Continual Learning via Regenerative Regularization").

`extra_loss = strength · Σ (θ − θ₀)²` over every network, with θ₀ the parameters at
initialisation. Needs no task boundaries; works with any agent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat

from everlearn.methods.base import AgentView, Method


class L2InitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strength: NonNegativeFloat = 1e-3


def squared_distance(params, anchor) -> jax.Array:
    leaves = jax.tree.leaves(jax.tree.map(lambda p, a: jnp.sum((p - a) ** 2), params, anchor))
    return sum(leaves, jnp.zeros(()))


def make_l2_init(config: L2InitConfig, view: AgentView) -> Method:
    def init(key, params):
        return {"initial": params}

    def extra_loss(state, params, minibatch):
        return config.strength * squared_distance(params, state["initial"])

    return Method("l2_init", init=init, extra_loss=extra_loss)
