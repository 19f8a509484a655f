"""Shrink and perturb (Ash & Adams, 2020, "On Warm-Starting Neural Network Training").

θ ← λ·θ + σ·ε on every dense kernel and bias of every network, with ε a fresh initialisation of
the same shapes (QR-free normal kernels at each layer's initial scale and zero biases, see
`surgery.py`; anything that is not a `Dense_*` entry, e.g. a LayerNorm, is left alone).
Shrinking keeps what the network computes (for a ReLU MLP without biases the output is scaled
by λ^depth, so the greedy action is unchanged) while it brings pre-activations back from
saturation and rebalances the gradient; the noise breaks the symmetries shrinking cannot.

Two registry entries share this code:
- `shrink_perturb` (`at="task_start"`): once at every task start (not the first); needs task
  boundaries. Defaults λ = 0.8, σ = 0.01: with the default MLPs (three dense layers) λ = 0.8
  scales the outputs by about 0.8³ ≈ 0.5 — enough to soften a saturated policy or Q-function
  before the new task — while keeping the previous policy's ranking of actions, so the new task
  starts from it (transfer) rather than from scratch. σ = 0.01 adds 1% of the initial weight
  scale: a small nudge, as in the paper, where the noise is small next to the shrunk weights.
- `shrink_perturb_periodic` (`at="every"`): every `every_updates` agent updates, no task
  boundaries needed. Applied that often it acts like weight decay plus noise, so the defaults
  are much milder: λ = 0.99 every 10 updates (≈ 0.999 per update, a decay time of ≈ 1,000
  updates) and σ = 0.01; without learning the weights settle at ≈ σ/√(1 − λ²) ≈ 7% of their
  initial scale.

The agent's optimiser moments are kept, by decision: the paper defines shrink-and-perturb as a
transform of the parameters alone and says nothing of optimiser state, and unlike a
re-initialised neuron no weight starts afresh — every weight is scaled and nudged, so its
gradient statistics stay those of a nearby point. (Dohare et al.'s continual use, noise added
after every step with L2, also keeps Adam's state.)

Works with every agent (PPO's actor and critic, DQN's Q-network, SAC's and TD3's actor and
critics; target networks are not touched and follow at their next update).
"""

from __future__ import annotations

from typing import Annotated, Literal

import jax
import jax.numpy as jnp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    field_validator,
)

from everlearn.core.lockstep import in_lockstep
from everlearn.methods.base import AgentView, Method
from everlearn.methods.surgery import init_scales, shrink_perturb_network

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ShrinkPerturbConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shrink: Fraction = 0.8  # λ: the weights are multiplied by it
    noise: NonNegativeFloat = 0.01  # σ: the weight of the fresh initialisation added
    at: Literal["task_start"] = "task_start"

    @field_validator("at", mode="before")
    @classmethod
    def _at_names_its_entry(cls, value):
        if (isinstance(value, str) and value in ENTRY_OF_SCHEDULE
                and value != cls.model_fields["at"].default):
            raise ValueError(f"for at='{value}' use the method '{ENTRY_OF_SCHEDULE[value]}'")
        return value


class PeriodicShrinkPerturbConfig(ShrinkPerturbConfig):
    # Its own entry, because it needs no task boundaries and `shrink_perturb` does.
    shrink: Fraction = 0.99
    at: Literal["every"] = "every"
    every_updates: PositiveInt = 10  # agent updates between two applications


ENTRY_OF_SCHEDULE = {"task_start": "shrink_perturb", "every": "shrink_perturb_periodic"}


def shrink_and_perturb(key: jax.Array, params, scales: dict, networks: tuple[str, ...],
                       shrink: float, noise: float):
    """θ ← shrink·θ + noise·ε for the dense layers of `networks`; other networks are kept."""
    params = dict(params)
    for network, k in zip(networks, jax.random.split(key, len(networks))):
        params[network] = shrink_perturb_network(k, params[network], scales[network], shrink,
                                                 noise)
    return params


def make_shrink_perturb(config: ShrinkPerturbConfig, view: AgentView) -> Method:
    def apply(state, params, key):
        return shrink_and_perturb(key, params, state["scales"], view.networks, config.shrink,
                                  config.noise)

    def init(key, params):
        return {"scales": init_scales(params, view.networks),
                "updates": jnp.zeros((), jnp.int32)}

    def on_task_start(state, params, task, key):
        return state, apply(state, params, key)

    def after_update(state, params, opt_state, recent, key):
        updates = state["updates"] + 1
        due = updates % config.every_updates == 0
        params = jax.lax.cond(in_lockstep(due), lambda p: apply(state, p, key), lambda p: p,
                              params)
        return {**state, "updates": updates}, params, opt_state  # moments kept: see above

    name = ENTRY_OF_SCHEDULE[config.at]
    if config.at == "task_start":
        return Method(name, needs_boundaries=True, init=init, on_task_start=on_task_start)
    return Method(name, init=init, after_update=after_update)
