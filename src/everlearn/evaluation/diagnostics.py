"""Plasticity diagnostics of an agent's networks (definitions in DESIGN.md, "Metrics").

Measured at every evaluation on the agent's most recent training rows (kept by `Hooks` in
`state.methods["recent"]`), as pure functions of params and those rows: they consume no key of
the training stream, so a run with diagnostics equals one without.

Per network: dormant-neuron ratio at τ = 0 and τ = 0.025 over all hidden neurons, effective rank
(srank, δ = 0.01) of the last hidden layer's features, mean absolute weight per dense layer.
For the agent: the global norm of its loss gradient on the recent rows, and the entropy of its
policy there.

Computed one seed at a time (not under `vmap`): the effective rank needs an SVD, and a batched
LAPACK call can deadlock XLA's CPU thread pool on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from everlearn.core.neurons import dormant_ratio, effective_rank
from everlearn.core.rows import filled_rows

TAUS = (0.0, 0.025)


def mean_abs_weights(params: Any) -> dict[str, jax.Array]:
    """Mean |w| of every dense kernel, named "network/Dense_k"."""
    out = {}
    for network, tree in params.items():
        for layer, leaves in tree["params"].items():
            if "kernel" in leaves:
                out[f"{network}/{layer}"] = jnp.abs(leaves["kernel"]).mean()
    return out


def policy_entropy(logits: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    return -(jnp.exp(log_probs) * log_probs).sum(axis=-1).mean()


def measure(view: Any, params: Any, recent: dict) -> dict[str, jax.Array]:
    """All diagnostics of one seed: `view` is the agent's `AgentView`, `recent` the store of
    its latest training rows (`rows` in the agent's minibatch format, `size` filled)."""
    size = recent["size"]
    rows = filled_rows(recent)  # fixed shapes for jit: the filled rows, repeated until full
    out: dict[str, jax.Array] = {}
    for network, layers in view.activations(params, rows["obs"]).items():
        for tau in TAUS:
            out[f"dormant_{tau:g}/{network}"] = dormant_ratio(layers, tau)
        out[f"srank/{network}"] = effective_rank(layers[-1])
    for name, value in mean_abs_weights(params).items():
        out[f"weight_magnitude/{name}"] = value
    out["gradient_norm"] = optax.tree.norm(jax.grad(view.loss)(params, rows))
    if view.policy_entropy is not None:
        out["policy_entropy"] = view.policy_entropy(params, rows["obs"])
    elif view.policy_logits is not None:
        out["policy_entropy"] = policy_entropy(view.policy_logits(params, rows["obs"]))
    # Nothing to measure on before the first update (logged as null).
    return {name: jnp.where(size > 0, value, jnp.nan) for name, value in out.items()}


def per_seed(measure_seed: Callable[[Any, dict], dict], agent_states: Any) -> dict[str, list]:
    """Run a jitted `measure_seed(params, recent)` for every seed of a batched agent state;
    {name: [value per seed]}."""
    # To the host first: slicing a seed out of a state split across devices would compile a
    # collective, and XLA's CPU collectives abort when a starved device thread comes too late.
    params, recent = jax.device_get((agent_states.params, agent_states.methods["recent"]))
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    results = []
    for i in range(num_seeds):
        seed = jax.tree.map(lambda x: x[i], (params, recent))
        results.append(jax.device_get(measure_seed(*seed)))
    return {name: [None if np.isnan(r[name]) else float(r[name]) for r in results]
            for name in results[0]}
