"""Continual backpropagation (Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood & Sutton, 2024,
"Loss of plasticity in deep continual learning", Nature; first as "Continual Backprop:
Stochastic Gradient Descent with Persistent Randomness", Dohare, Sutton & Mahmood, 2021).

Keeps replacing a small share of each hidden layer's least useful mature neurons with fresh
ones, so some of the network always has the plasticity of a new network. The paper's rates
are per step, and a step is one optimiser step: the authors' PPO (lop/algos/rl/ppo.py) runs
generate-and-test after every minibatch gradient step, with replacement rate 1e-4, maturity
threshold 10^4 and utility decay 0.99 on Ant (lop/rl/cfg/ant/cbp.yml) — the defaults here.
Per hidden neuron j of every network: an age a_j (optimiser steps since it was last
initialised) and a running contribution utility, per step

    u_j ← η·u_j + (1 − η)·E|h_j| · Σ_k |w_out,jk|        (η = `utility_decay`)

Neurons older than `maturity_threshold` steps are eligible; each step adds `replacement_rate`
× (number eligible) to a per-layer running total and replaces floor(total) neurons, keeping
the fractional rest for later: the eligible ones with the lowest bias-corrected utility
u_j / (1 − η^a_j). A replaced neuron gets fresh incoming weights (QR-free, at the layer's
initial scale, see `surgery.py`), a zero bias and zero outgoing weights (the network's outputs
do not jump), utility and age 0, and the Adam moments of all those weights are zeroed
(`view.reset_moments`), as the authors' AdamGnT does. All other weights and moments stay
bit-identical.

Here the agent's k = `view.gradient_steps_per_update` optimiser steps of one `update` are
processed at once, after them (`after_update`): ages grow by k; the utility takes k steps of
its running average towards the contribution measured on the agent's latest training rows
(every row of the update, see `base.py`), u ← η^k·u + (1 − η^k)·c; each neuron adds to the
running total the number of those k steps it was mature (exactly the per-step accumulation,
but for neurons replaced within the update). For PPO's defaults that is 20 steps per update
and 0.128 replacements per update in a 64-wide layer once all are mature.

Deliberate differences from the paper and the authors' code:
- Replacements happen once per update, after its k optimiser steps, not after each of them;
  a neuron replaced here would have been replaced, and started learning, up to k steps
  earlier. If more are owed than are eligible, the rest is dropped (never with defaults).
- Utilities are measured at the end of the update on the latest training rows (PPO: the
  rollout every minibatch came from; off-policy agents: the newest transitions, not the
  replay minibatches trained on), with the update's params, not per minibatch as it trains.
- The fractional total is carried over (the paper's accumulation; the authors' PPO runs
  instead replace one neuron with probability equal to the fraction: the same expected rate).
- The authors' PPO code also moves each replaced neuron's mean output times its outgoing
  weights into the next layer's bias; not done here (their later `cbp_linear.py` does not).
- Fresh incoming weights are normal at each layer's initial scale, not uniform (LeCun/Kaiming
  bounds); a LayerNorm's entries for a replaced neuron are kept (`cbp_linear.py` resets them).
- Optax's Adam keeps one step count for all weights, so a replaced weight restarts from zero
  moments without a bias correction of its own (AdamGnT resets a per-weight step count).
- DQN's and SAC's/TD3's target networks are not touched; they follow at their next update.

Works with every agent (PPO's actor and critic, DQN's Q-network, SAC's and TD3's actor and
critics); needs no task boundaries.
"""

from __future__ import annotations

from typing import Annotated

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from everlearn.core.rows import filled_rows
from everlearn.methods.base import AgentView, Method
from everlearn.methods.surgery import (
    hidden_layers,
    init_scales,
    reinit_moments_mask,
    reinit_units,
    require_activations,
)


class ContinualBackpropConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per optimiser step and layer, the share of the eligible neurons replaced (the paper's ρ).
    replacement_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1e-4
    maturity_threshold: NonNegativeInt = 10_000  # optimiser steps before it may be replaced
    utility_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.99  # η, per optimiser step


def lowest_eligible(utility: jax.Array, eligible: jax.Array, count: jax.Array) -> jax.Array:
    """Mask of the `count` eligible entries with the lowest utility (ties: lower index first)."""
    score = jnp.where(eligible, utility, jnp.inf)
    order = jnp.argsort(score, stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size))
    return eligible & (rank < count)


def make_continual_backprop(config: ContinualBackpropConfig, view: AgentView) -> Method:
    require_activations(view, "continual_backprop")
    decay, steps = config.utility_decay, view.gradient_steps_per_update

    def init(key, params):
        def layer_state(width):
            return {"utility": jnp.zeros((width,), jnp.float32),
                    "age": jnp.zeros((width,), jnp.int32),
                    "pending": jnp.zeros((), jnp.float32),  # replacements owed, fractional
                    "replaced": jnp.zeros((), jnp.int32)}  # replaced so far (a record)

        layers = {network: [layer_state(params[network]["params"][incoming]["bias"].shape[0])
                            for incoming, _ in hidden_layers(params[network])]
                  for network in view.networks}
        return {"scales": init_scales(params, view.networks), "layers": layers}

    def select(layer, hidden, outgoing_kernel):
        """One update (`steps` optimiser steps) of a layer's ages, utilities and owed
        replacements; which neurons to replace."""
        age = layer["age"] + steps
        contribution = jnp.abs(hidden).mean(axis=0) * jnp.abs(outgoing_kernel).sum(axis=1)
        kept = decay ** steps  # `steps` steps of the running average, towards one contribution
        utility = kept * layer["utility"] + (1.0 - kept) * contribution
        corrected = utility / (1.0 - decay ** age.astype(jnp.float32))  # age ≥ 1 here
        eligible = age > config.maturity_threshold
        # Steps of this update in which each neuron was mature (age after step s: age_before + s).
        mature_steps = jnp.clip(age - config.maturity_threshold, 0, steps)
        pending = layer["pending"] + config.replacement_rate * jnp.sum(mature_steps,
                                                                       dtype=jnp.float32)
        owed = jnp.floor(pending)
        count = jnp.minimum(owed.astype(jnp.int32), jnp.sum(eligible, dtype=jnp.int32))
        replace = lowest_eligible(corrected, eligible, count)
        new_layer = {"utility": jnp.where(replace, 0.0, utility),
                     "age": jnp.where(replace, 0, age),
                     "pending": pending - owed,
                     "replaced": layer["replaced"] + count}
        return new_layer, replace

    def after_update(state, params, opt_state, recent, key):
        activations = view.activations(params, filled_rows(recent)["obs"])
        params, layers, masks = dict(params), {}, {}
        for network, k in zip(view.networks, jax.random.split(key, len(view.networks))):
            net = params[network]
            layers[network], masks[network] = [], []
            for layer, hidden, (_, outgoing) in zip(state["layers"][network],
                                                   activations[network], hidden_layers(net)):
                new_layer, replace = select(layer, hidden, net["params"][outgoing]["kernel"])
                layers[network].append(new_layer)
                masks[network].append(replace)
            params[network] = reinit_units(k, net, masks[network], state["scales"][network])
        opt_state = view.reset_moments(opt_state, reinit_moments_mask(params, masks))
        return {**state, "layers": layers}, params, opt_state

    return Method("continual_backprop", init=init, after_update=after_update)


def replaced_per_layer(state: dict) -> dict[str, list[jax.Array]]:
    """Neurons replaced so far in each hidden layer of each network, from the method's state."""
    return {network: [layer["replaced"] for layer in layers]
            for network, layers in state["layers"].items()}
