"""Shrink and perturb: σ = 0 gives exactly λθ; λ = 1 adds fresh-init noise of the right scale;
the periodic entry applies on schedule; only the networks' dense layers are touched."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from pydantic import ValidationError

from everlearn.agents.common import MLP
from everlearn.methods import METHODS
from everlearn.methods.base import AgentView
from everlearn.methods.shrink_perturb import (
    PeriodicShrinkPerturbConfig,
    ShrinkPerturbConfig,
    make_shrink_perturb,
)
from everlearn.methods.surgery import init_scales

OBS_DIM = 4
NETS = {"actor": MLP((64, 64), 2, out_scale=0.01, layer_norm=True), "critic": MLP((64, 64), 1)}


def view_of(networks: tuple[str, ...]) -> AgentView:
    return AgentView("ppo", off_policy=False, outputs=None, policy_logits=None, loss=None,
                     networks=networks, num_tasks=2, obs_dim=OBS_DIM,
                     minibatch_row={"obs": jax.ShapeDtypeStruct((OBS_DIM,), jnp.float32)})


def initial_params():
    key = jax.random.PRNGKey(0)
    params = {name: net.init(jax.random.fold_in(key, i), jnp.zeros((1, OBS_DIM)))
              for i, (name, net) in enumerate(NETS.items())}
    # Non-zero biases and LayerNorm params, so that "shrunk" and "kept" are visible on them.
    return jax.tree.map(lambda p: p + 0.3 if p.ndim == 1 else p, params)


def test_init_scales_are_the_initialisers_per_entry_std():
    scales = init_scales(initial_params(), ("actor", "critic"))
    # orthogonal(gain) on an (m, n) kernel: gain / sqrt(max(m, n))
    np.testing.assert_allclose(scales["actor"]["Dense_0"], np.sqrt(2) / 8, rtol=1e-5)
    np.testing.assert_allclose(scales["actor"]["Dense_1"], np.sqrt(2) / 8, rtol=1e-5)
    np.testing.assert_allclose(scales["actor"]["Dense_2"], 0.01 / 8, rtol=1e-5)
    np.testing.assert_allclose(scales["critic"]["Dense_2"], 1.0 / 8, rtol=1e-5)
    assert set(scales["actor"]) == {"Dense_0", "Dense_1", "Dense_2"}  # no LayerNorm entry


def test_without_noise_the_weights_are_exactly_shrunk():
    params = initial_params()
    method = make_shrink_perturb(ShrinkPerturbConfig(shrink=0.8, noise=0.0), view_of(("actor",)))
    assert method.needs_boundaries and method.after_update is None
    state = method.init(jax.random.PRNGKey(1), params)
    _, new = jax.jit(method.on_task_start)(state, params, jnp.int32(1), jax.random.PRNGKey(2))
    for layer, leaves in params["actor"]["params"].items():
        for name, value in leaves.items():
            expected = np.float32(0.8) * np.asarray(value) if layer.startswith("Dense") \
                else np.asarray(value)  # LayerNorm is not a dense layer: kept as is
            np.testing.assert_array_equal(new["actor"]["params"][layer][name], expected)
    # A network the view does not name is not touched.
    jax.tree.map(np.testing.assert_array_equal, new["critic"], params["critic"])


def test_without_shrinking_the_noise_has_the_initialisers_scale():
    params = initial_params()
    noise = 0.05
    method = make_shrink_perturb(ShrinkPerturbConfig(shrink=1.0, noise=noise),
                                 view_of(("actor", "critic")))
    state = method.init(jax.random.PRNGKey(1), params)
    _, new = method.on_task_start(state, params, jnp.int32(1), jax.random.PRNGKey(2))
    for network, layer, init_std in [("actor", "Dense_1", np.sqrt(2) / 8),
                                     ("critic", "Dense_1", np.sqrt(2) / 8),
                                     ("actor", "Dense_2", 0.01 / 8)]:
        change = (np.asarray(new[network]["params"][layer]["kernel"])
                  - np.asarray(params[network]["params"][layer]["kernel"]))
        assert np.all(change != 0.0)
        # 4096 (64x64) or 128 (64x2) draws: the sample std is within a few percent (15% for 128).
        tolerance = 0.05 if change.size > 1000 else 0.15
        np.testing.assert_allclose(change.std(), noise * init_std, rtol=tolerance)
        assert abs(change.mean()) < 3 * noise * init_std / np.sqrt(change.size)
        # a fresh bias is zero: λ = 1 keeps the biases exactly
        np.testing.assert_array_equal(new[network]["params"][layer]["bias"],
                                      params[network]["params"][layer]["bias"])
    # Fresh noise each time: two task starts draw different ε.
    _, again = method.on_task_start(state, params, jnp.int32(2), jax.random.PRNGKey(3))
    assert not np.allclose(again["critic"]["params"]["Dense_0"]["kernel"],
                           new["critic"]["params"]["Dense_0"]["kernel"])


def test_the_periodic_entry_applies_every_few_updates():
    params = initial_params()
    config = PeriodicShrinkPerturbConfig(shrink=0.5, noise=0.0, every_updates=3)
    method = make_shrink_perturb(config, view_of(("critic",)))
    assert method.name == "shrink_perturb_periodic" and not method.needs_boundaries
    state = method.init(jax.random.PRNGKey(1), params)
    after_update = jax.jit(method.after_update)
    kernel = lambda p: np.asarray(p["critic"]["params"]["Dense_0"]["kernel"])  # noqa: E731
    current = params
    opt_state = optax.adam(1e-3).init(params)
    for update in range(1, 7):
        state, current, kept = after_update(state, current, opt_state, None,
                                            jax.random.PRNGKey(update))
        jax.tree.map(np.testing.assert_array_equal, kept, opt_state)  # moments kept
        halvings = update // 3
        expected = kernel(params) * np.float32(0.5) ** halvings
        np.testing.assert_array_equal(kernel(current), expected)


def test_entries_and_config_say_which_schedule_needs_boundaries():
    assert METHODS["shrink_perturb"].needs_boundaries
    assert not METHODS["shrink_perturb_periodic"].needs_boundaries
    assert METHODS["shrink_perturb"].config().at == "task_start"
    assert METHODS["shrink_perturb_periodic"].config().at == "every"
    with pytest.raises(ValidationError, match="shrink_perturb_periodic"):
        ShrinkPerturbConfig(at="every")
    with pytest.raises(ValidationError):
        ShrinkPerturbConfig(shrink=1.5)
