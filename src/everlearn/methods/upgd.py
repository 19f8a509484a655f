"""UPGD: utility-based perturbed gradient descent (Elsayed & Mahmood, 2024, "Addressing Loss of
Plasticity and Catastrophic Forgetting in Continual Learning", ICLR).

Every weight has a utility, the loss increase its removal would cause; to first order
`u = −g·θ` (g: the gradient of the loss, θ: the weight). UPGD keeps a running average of it,
`ū ← β ū + (1 − β) u` (β = `utility_decay`), scales it to (0, 1) by the largest average utility
`η` — of the whole network (`scale="network"`, the paper's global utility) or of each parameter
array (`scale="layer"`) — as `s = sigmoid(ū / η)`, and gates each weight's step by `1 − s`:
useful weights move less (less forgetting), useless ones move fully and are also perturbed by
Gaussian noise (kept plastic):

    step = (Δ + σ ξ) · (1 − s),   ξ ~ N(0, 1) per weight, σ = `noise`.

The paper divides ū by its bias correction `1 − β^t` before scaling; numerator and `η` share it,
so it cancels in `ū / η` and is left out here. Only the first-order utility is implemented (the
paper's second-order variant adds `½ h θ²` with a diagonal Hessian estimate). The paper's weight
decay is not part of it (the agents' Adam has none).

Where it sits: after the agent's Adam (an `update_transformation`), so Δ is Adam's step, as in
the paper's adaptive UPGD (AdaUPGD, the variant it uses with PPO and Adam). A gate placed before
Adam would do nothing: Adam divides each weight's gradient by its own running scale, so a
per-weight factor on the gradient cancels, and noise added there would be rescaled to a full
learning-rate-sized step for weights with small gradients. Because the link comes after Adam's
learning-rate scaling, `noise` is in parameter units per step (the paper's α·σ). The utility
needs the raw gradient, which the link gets as the `gradients` extra argument of the composed
optimiser (`methods/base.py`); it is the gradient of the loss the agent minimises (methods'
extra losses included), before clipping.

The utility traces and a step count live in the link's Optax state (so inside the agent's
`opt_state`); the method state holds the per-seed noise key, folded with the step count at every
step. Works with PPO (actor and critic, each scaled by its own maximum) and DQN; needs no task
boundaries.
"""

from __future__ import annotations

from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import optax
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat

from everlearn.methods.base import AgentView, Method


class UPGDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    utility_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    noise: NonNegativeFloat = 1e-4
    scale: Literal["network", "layer"] = "network"


def first_order_utility(gradients, params):
    """`u = −g·θ`: the first-order estimate of the loss increase if the weight were zeroed."""
    return jax.tree.map(lambda g, p: -g * p, gradients, params)


def scaled_utility(utility, scale: str):
    """`sigmoid(ū / η)`, with `η` the largest ū of each network ("network": each top-level entry
    of the params) or of each parameter array ("layer"). When every ū ≤ 0 there is no useful
    weight: `η` is then the smallest positive float, so zero utility maps to 0.5 and negative
    utility to 0 (a full step) instead of dividing by zero."""
    tiny = jnp.finfo(jnp.float32).tiny

    def by_largest(tree):
        largest = jnp.max(jnp.stack([jnp.max(u) for u in jax.tree.leaves(tree)]))
        return jax.tree.map(lambda u: jax.nn.sigmoid(u / jnp.maximum(largest, tiny)), tree)

    if scale == "layer":
        return jax.tree.map(lambda u: jax.nn.sigmoid(u / jnp.maximum(jnp.max(u), tiny)),
                            utility)
    return {network: by_largest(tree) for network, tree in utility.items()}


def make_upgd(config: UPGDConfig, view: AgentView) -> Method:
    beta = config.utility_decay

    def init(key, params):
        return {"key": key}

    def link_init(params):
        return {"utility": jax.tree.map(jnp.zeros_like, params),
                "step": jnp.zeros((), jnp.int32)}

    def link_update(updates, link_state, params=None, *, method_state, gradients, **extra):
        utility = jax.tree.map(lambda avg, u: beta * avg + (1.0 - beta) * u,
                               link_state["utility"], first_order_utility(gradients, params))
        gate = jax.tree.map(lambda s: 1.0 - s, scaled_utility(utility, config.scale))
        if config.noise > 0:  # a static choice: no noise draws at all when it is off
            leaves, treedef = jax.tree.flatten(updates)
            step_key = jax.random.fold_in(method_state["key"], link_state["step"])
            keys = jax.tree.unflatten(treedef, list(jax.random.split(step_key, len(leaves))))
            updates = jax.tree.map(
                lambda d, k: d + config.noise * jax.random.normal(k, d.shape, d.dtype),
                updates, keys)
        gated = jax.tree.map(lambda d, g: (d * g).astype(d.dtype), updates, gate)
        return gated, {"utility": utility, "step": link_state["step"] + 1}

    return Method("upgd", init=init,
                  update_transformation=optax.GradientTransformationExtraArgs(link_init,
                                                                              link_update))
