"""Weight surgery on the agents' MLPs, shared by the plasticity methods (`redo`,
`shrink_perturb`, `continual_backprop`); the dormant-neuron score is in
`everlearn.evaluation.diagnostics`, the rows the scores are measured on in `base.filled_rows`.

Layout of a network's params (`everlearn.agents.common.MLP`): `params[network]["params"]` holds
`Dense_0 … Dense_L`; hidden layer k (0-based, the k-th entry of `AgentView.activations`) has its
incoming kernel columns and bias in `Dense_k` and its outgoing weights in the rows of
`Dense_{k+1}`'s kernel. With `multi_head` the last kernel has `out_size · heads` columns (one
block per head): a row is still one hidden neuron's outgoing weights, to every head. Only
`Dense_*` entries are read or written here; anything else (e.g. a `LayerNorm_k`) is kept as is.

Fresh initialisation is QR-free on purpose: the MLP's orthogonal initialiser needs a QR
decomposition, and a batched (vmapped over seeds) LAPACK call can deadlock XLA's CPU thread
pool. Instead each kernel gets normal values with the same per-entry standard deviation as its
own initialiser, measured once from the initial params (`init_scales`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from everlearn.methods.base import AgentView, Params

_DENSE = re.compile(r"Dense_(\d+)")


# -- which entries are layers --------------------------------------------------------------

def dense_layers(network_params: Params) -> list[str]:
    """Names of a network's dense layers, first layer first (`Dense_0`, `Dense_1`, …)."""
    found = [(int(m.group(1)), name) for name in network_params["params"]
             if (m := _DENSE.fullmatch(name))]
    return [name for _, name in sorted(found)]


def hidden_layers(network_params: Params) -> list[tuple[str, str]]:
    """(incoming layer, outgoing layer) of each hidden layer: `(Dense_k, Dense_{k+1})`."""
    names = dense_layers(network_params)
    return list(zip(names[:-1], names[1:]))


def require_activations(view: AgentView, method: str) -> None:
    """Surgery needs each hidden layer's output; say so clearly for an agent without them."""
    if view.activations is None:
        raise ValueError(f"{method}: agent '{view.agent}' does not expose its hidden-layer "
                         "activations (AgentView.activations); pick another method")


# -- fresh initialisation ------------------------------------------------------------------

def init_scales(params: Params, networks: tuple[str, ...]) -> dict[str, dict[str, jax.Array]]:
    """Per network and dense layer, the per-entry standard deviation of the kernel's
    initialiser, measured as the RMS of the initial kernel. For the MLP's orthogonal(gain)
    kernel of shape (m, n) that is exactly gain / sqrt(max(m, n)) (an orthogonal matrix's
    squared entries sum to min(m, n)), so hidden layers get gain √2 and each output layer its
    own `out_scale` (the PPO actor's 0.01) without this module repeating those constants."""
    return {network: {name: jnp.sqrt(jnp.mean(params[network]["params"][name]["kernel"] ** 2))
                      for name in dense_layers(params[network])}
            for network in networks}


def fresh_kernel(key: jax.Array, shape: tuple[int, ...], scale: jax.Array) -> jax.Array:
    """A fresh kernel: normal values with per-entry standard deviation `scale` (QR-free)."""
    return scale * jax.random.normal(key, shape)


def _with_layers(network_params: Params, layers: dict[str, dict]) -> Params:
    """A copy of a network's params with some dense layers replaced, everything else kept."""
    return {**network_params, "params": {**network_params["params"], **layers}}


def shrink_perturb_network(key: jax.Array, network_params: Params, scales: dict[str, jax.Array],
                           shrink: float, noise: float) -> Params:
    """θ ← shrink · θ + noise · ε on every dense kernel and bias, with ε a fresh
    initialisation (normal kernels at the initialiser's scale, zero biases)."""
    names = dense_layers(network_params)
    layers = {}
    for name, k in zip(names, jax.random.split(key, len(names))):
        layer = network_params["params"][name]
        kernel = layer["kernel"]
        layers[name] = {**layer,
                        "kernel": shrink * kernel + noise * fresh_kernel(k, kernel.shape,
                                                                         scales[name]),
                        "bias": shrink * layer["bias"]}  # a fresh bias is 0
    return _with_layers(network_params, layers)


def reinit_units(key: jax.Array, network_params: Params, masks: list[jax.Array],
                 scales: dict[str, jax.Array]) -> Params:
    """Re-initialise the hidden neurons selected by `masks` (bool [H_k] per hidden layer):
    fresh incoming kernel columns, zero bias, zero outgoing kernel rows, so the network's
    output is unchanged at the moment of surgery and the neuron starts learning afresh.
    Every other weight is left bit-identical. Where a selected neuron of layer k feeds a
    selected neuron of layer k+1, the zeroed outgoing row wins over the fresh column."""
    pairs = hidden_layers(network_params)
    if len(masks) != len(pairs):
        raise ValueError(f"{len(masks)} masks for {len(pairs)} hidden layers")
    layers = {name: dict(network_params["params"][name]) for name in dense_layers(network_params)}
    for (incoming, _), mask, k in zip(pairs, masks, jax.random.split(key, len(pairs))):
        kernel = layers[incoming]["kernel"]
        fresh = fresh_kernel(k, kernel.shape, scales[incoming]).astype(kernel.dtype)
        layers[incoming]["kernel"] = jnp.where(mask[None, :], fresh, kernel)
        layers[incoming]["bias"] = jnp.where(mask, 0.0, layers[incoming]["bias"]).astype(
            layers[incoming]["bias"].dtype)
    for (_, outgoing), mask in zip(pairs, masks):
        kernel = layers[outgoing]["kernel"]
        layers[outgoing]["kernel"] = jnp.where(mask[:, None], 0.0, kernel).astype(kernel.dtype)
    return _with_layers(network_params, layers)


def reinit_moments_mask(params: Params, masks: dict[str, list[jax.Array]]) -> Params:
    """A bool tree shaped like `params`, True at the weights `reinit_units` re-initialises for
    the hidden-neuron `masks` of each network in `masks` (incoming kernel columns, biases,
    outgoing kernel rows): where `view.reset_moments` zeroes the optimiser's moments. The next
    layer's bias and everything outside `masks`' networks stay False."""
    tree = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, jnp.bool_), params)
    for network, network_masks in masks.items():
        layers = dict(tree[network]["params"])
        for (incoming, outgoing), mask in zip(hidden_layers(params[network]), network_masks):
            kernel_in, kernel_out = layers[incoming]["kernel"], layers[outgoing]["kernel"]
            layers[incoming] = {**layers[incoming],
                                "kernel": kernel_in | mask[None, :],
                                "bias": layers[incoming]["bias"] | mask}
            layers[outgoing] = {**layers[outgoing], "kernel": kernel_out | mask[:, None]}
        tree[network] = {**tree[network], "params": layers}
    return tree
