"""Network options of the shared MLP: LayerNorm before each hidden activation, the elephant
activation, the image torso's convolution, and defaults that leave the params exactly as before."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.common import CONV_TORSOS, MLP, Conv, elephant

X = jax.random.normal(jax.random.PRNGKey(3), (5, 4))


def test_default_params_keep_their_structure_and_layer_norm_adds_its_own_entries():
    key = jax.random.PRNGKey(0)
    plain = MLP((8, 6), 3).init(key, X)["params"]
    assert set(plain) == {"Dense_0", "Dense_1", "Dense_2"}
    assert [plain[f"Dense_{k}"]["kernel"].shape for k in range(3)] == [(4, 8), (8, 6), (6, 3)]
    normed = MLP((8, 6), 3, layer_norm=True).init(key, X)["params"]
    assert set(normed) == {"Dense_0", "Dense_1", "Dense_2", "LayerNorm_0", "LayerNorm_1"}
    # The Dense layers are initialised exactly as without LayerNorm.
    for k in range(3):
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(normed[f"Dense_{k}"][name], plain[f"Dense_{k}"][name])


def test_layer_norm_normalises_each_hidden_row_before_the_activation():
    net = MLP((16, 16), 2, activation="tanh", layer_norm=True)
    params = net.init(jax.random.PRNGKey(0), X)
    _, hidden = net.apply(params, X, return_hidden=True)
    for h in hidden:  # at init LayerNorm has scale 1 and bias 0: tanh⁻¹(h) is normalised
        pre = np.arctanh(np.asarray(h, np.float64))
        np.testing.assert_allclose(pre.mean(axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(pre.var(axis=1), 1.0, rtol=1e-3)


def test_layer_norm_forward_pass_matches_a_hand_computation():
    net = MLP((6,), 2, activation="relu", layer_norm=True)
    params = net.init(jax.random.PRNGKey(1), X)
    p = params["params"]
    scale, bias = jnp.linspace(0.5, 2.0, 6), jnp.linspace(-0.3, 0.3, 6)  # not the identity
    params = {"params": {**p, "LayerNorm_0": {"scale": scale, "bias": bias}}}
    out, (h,) = net.apply(params, X, return_hidden=True)
    z = np.asarray(X) @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])
    z = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-6)
    expected_h = np.maximum(z * np.asarray(scale) + np.asarray(bias), 0.0)
    np.testing.assert_allclose(h, expected_h, rtol=1e-5, atol=1e-6)
    head = p["Dense_1"]
    expected_out = expected_h @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-6)


def test_elephant_matches_its_formula_and_its_gradient_is_finite():
    x = jnp.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(elephant(x, a=1.0, d=4), 1.0 / (1.0 + np.abs(np.asarray(x)) ** 4),
                               rtol=1e-6)
    assert float(elephant(jnp.float32(2.0), a=2.0, d=3)) == 0.5  # half height at |x| = a
    grad = jax.vmap(jax.grad(lambda v: elephant(v, a=1.5, d=4)))(x)
    u = np.asarray(x) / 1.5
    expected = -4 * np.sign(u) * np.abs(u) ** 3 / 1.5 / (1 + u ** 4) ** 2
    assert np.isfinite(grad).all() and float(grad[2]) == 0.0  # flat top at 0
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    for d in (1, 2):  # also finite at 0 for the smallest slopes
        assert np.isfinite(float(jax.grad(lambda v: elephant(v, 1.0, d))(0.0)))


def test_mlp_with_elephant_uses_the_configured_width_and_slope():
    net = MLP((7,), 2, activation="elephant", elephant_a=2.0, elephant_d=2)
    params = net.init(jax.random.PRNGKey(2), X)
    _, (h,) = net.apply(params, X, return_hidden=True)
    p = params["params"]["Dense_0"]
    z = np.asarray(X) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
    np.testing.assert_allclose(h, 1.0 / (1.0 + (z / 2.0) ** 2), rtol=1e-5)


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_agent_configs_pass_the_options_to_every_network(agent_name):
    entry = AGENTS[agent_name]
    assert entry.config().layer_norm is False  # defaults unchanged
    config = entry.config(hidden_sizes=(8,), activation="elephant", layer_norm=True,
                          elephant_a=0.5, elephant_d=2)
    state = make_agent(agent_name, config, EnvSpec(4, 2)).init(jax.random.PRNGKey(0))
    for network in state.params.values():
        assert set(network["params"]) == {"Dense_0", "Dense_1", "LayerNorm_0"}
    with pytest.raises(ValidationError):
        entry.config(elephant_d=0)
    with pytest.raises(ValidationError):
        entry.config(activation="sigmoid")


@pytest.mark.parametrize("shape, layer", [((10, 10, 7), CONV_TORSOS["minatar"][0]),
                                          ((6, 6, 8), CONV_TORSOS["nature"][1])])
def test_the_torso_convolution_is_flax_conv_exactly(shape, layer):
    """`Conv` (patches times the kernel) against `nn.Conv` with VALID padding: the same
    parameters from the same key, and the same outputs and input gradients to float rounding,
    for MinAtar's layer and a strided Nature-CNN layer."""
    features, kernel, stride = layer
    image = jax.random.normal(jax.random.PRNGKey(1), (3, *shape))
    ours, flax_conv = Conv(features, kernel, stride), nn.Conv(features, (kernel, kernel),
                                                              strides=stride, padding="VALID")
    params = ours.init(jax.random.PRNGKey(2), image)
    reference = flax_conv.init(jax.random.PRNGKey(2), image)
    jax.tree.map(np.testing.assert_array_equal, params, reference)
    out = ours.apply(params, image)
    np.testing.assert_allclose(out, flax_conv.apply(params, image), rtol=1e-5, atol=1e-5)

    def grad_of(layer):
        return jax.grad(lambda x: jnp.sum(jnp.sin(layer.apply(params, x))))(image)

    np.testing.assert_allclose(grad_of(ours), grad_of(flax_conv), rtol=1e-4, atol=1e-5)

