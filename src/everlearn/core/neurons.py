"""Neuron statistics of a network's hidden layers (DESIGN.md, "Metrics"): what the plasticity
diagnostics report and what the surgery methods (ReDo) act on."""

from __future__ import annotations

import jax
import jax.numpy as jnp

SRANK_DELTA = 0.01


def neuron_scores(hidden: jax.Array) -> jax.Array:
    """Score of each neuron of one layer, hidden [n, H] -> [H]: E|h_j| over the batch divided
    by the layer's average (1/H) Σ_k E|h_k|. A neuron is τ-dormant when its score is ≤ τ."""
    mean_abs = jnp.abs(hidden).mean(axis=0)
    # An all-silent layer scores 0 everywhere (every neuron dormant) instead of 0/0.
    return mean_abs / jnp.maximum(mean_abs.mean(), 1e-12)


def dormant_scores(layers: list[jax.Array]) -> list[jax.Array]:
    """`neuron_scores` of each layer of a network ([n, H_k] each -> [H_k] each)."""
    return [neuron_scores(hidden) for hidden in layers]


def dormant_mask(layers: list[jax.Array], tau: float) -> list[jax.Array]:
    """Which neurons of each layer are τ-dormant (bool [H_k] each)."""
    return [score <= tau for score in dormant_scores(layers)]


def dormant_ratio(layers: list[jax.Array], tau: float) -> jax.Array:
    """Share of τ-dormant neurons among all the hidden neurons of a network's layers."""
    dormant = sum(jnp.sum(mask) for mask in dormant_mask(layers, tau))
    return dormant / sum(hidden.shape[-1] for hidden in layers)


def effective_rank(features: jax.Array, delta: float = SRANK_DELTA) -> jax.Array:
    """srank_δ(Φ) = min{k : Σ_{i≤k} σ_i / Σ_i σ_i ≥ 1 − δ}, feature matrix Φ [n, H]."""
    singular = jnp.linalg.svd(features, compute_uv=False)
    cumulative = jnp.cumsum(singular) / jnp.maximum(singular.sum(), 1e-12)
    return jnp.minimum(jnp.sum(cumulative < 1.0 - delta) + 1, singular.shape[0])

