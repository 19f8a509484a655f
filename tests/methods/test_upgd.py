"""UPGD: the utility trace follows its recursion, the gate is `1 − sigmoid(ū / max ū)` on Adam's
step (useful weights move least), the noise is seeded and sized as configured, and both agents
train with it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import everlearn.methods
from everlearn.agents import EnvSpec, make_agent
from everlearn.methods.base import Hooks
from everlearn.methods.upgd import UPGDConfig, make_upgd


def _link(**config):
    method = make_upgd(UPGDConfig(**config), view=None)
    return method, method.update_transformation


def _step(link, method_state, updates, link_state, params, gradients):
    return link.update(updates, link_state, params, method_state=method_state, loss_grad=None,
                       gradients=gradients)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_the_link_sits_after_the_agents_optimiser_and_needs_no_boundaries():
    method, _ = _link()
    assert method.update_transformation is not None and method.gradient_transformation is None
    assert not method.needs_boundaries and not everlearn.methods.METHODS["upgd"].needs_boundaries


def test_utility_trace_follows_its_recursion():
    beta = 0.9
    method, link = _link(utility_decay=beta, noise=0.0)
    rng = np.random.default_rng(0)
    shapes = {"net": {"w": (3, 2), "b": (2,)}}
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                          is_leaf=lambda x: isinstance(x, tuple))
    link_state = link.init(params)
    expected = jax.tree.map(np.zeros_like, params)
    for t in range(4):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        _, link_state = _step(link, method.init(jax.random.PRNGKey(0), params), grads,
                              link_state, params, grads)
        expected = jax.tree.map(lambda u, g, p: beta * u + (1 - beta) * (-np.asarray(g)
                                                                          * np.asarray(p)),
                                expected, grads, params)
        params = jax.tree.map(lambda p: p + 0.1, params)  # the weights move between steps
    for got, want in zip(jax.tree.leaves(link_state["utility"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert int(link_state["step"]) == 4


def test_zero_utility_without_noise_halves_the_step_exactly():
    # Zero weights have zero utility (−g·0): sigmoid(0) = ½, so the gate is exactly ½.
    method, link = _link(noise=0.0)
    params = {"net": {"w": jnp.zeros((4, 3))}}
    steps = {"net": {"w": jax.random.normal(jax.random.PRNGKey(1), (4, 3))}}
    grads = {"net": {"w": jax.random.normal(jax.random.PRNGKey(2), (4, 3))}}
    out, _ = _step(link, method.init(jax.random.PRNGKey(0), params), steps, link.init(params),
                   params, grads)
    np.testing.assert_array_equal(out["net"]["w"], 0.5 * steps["net"]["w"])


def test_the_most_useful_weight_moves_least_and_useless_ones_move_fully():
    method, link = _link(utility_decay=0.0, noise=0.0)  # β = 0: ū is this step's −g·θ
    params = {"net": {"w": jnp.array([1.0, 2.0, -1.0, 0.5, 3.0])}}
    grads = {"net": {"w": jnp.array([-3.0, 0.5, 0.2, 0.0, 100.0])}}
    utility = np.array([3.0, -1.0, 0.2, 0.0, -300.0])  # −g·θ; the largest is 3
    steps = {"net": {"w": jnp.ones(5)}}
    out, link_state = _step(link, method.init(jax.random.PRNGKey(0), params), steps,
                            link.init(params), params, grads)
    np.testing.assert_allclose(link_state["utility"]["net"]["w"], utility)
    gate = np.asarray(out["net"]["w"])
    np.testing.assert_allclose(gate, 1.0 - _sigmoid(utility / 3.0), rtol=1e-6)
    assert np.argmin(gate) == 0  # the most useful weight: 1 − sigmoid(1) ≈ 0.27 of its step
    np.testing.assert_allclose(gate[0], 1.0 - _sigmoid(1.0), rtol=1e-6)
    assert gate[4] > 1.0 - 1e-6  # a harmful weight (utility far below zero) keeps its step


def test_scale_by_network_or_by_layer_uses_that_groups_largest_utility():
    params = {"actor": {"a": jnp.array([1.0, 1.0]), "b": jnp.array([1.0])},
              "critic": {"c": jnp.array([1.0, 1.0])}}
    grads = {"actor": {"a": jnp.array([-4.0, -1.0]), "b": jnp.array([-2.0])},
             "critic": {"c": jnp.array([-10.0, -5.0])}}  # utilities = −grads
    steps = jax.tree.map(jnp.ones_like, params)
    expected = {
        "network": {"a": [4 / 4, 1 / 4], "b": [2 / 4], "c": [10 / 10, 5 / 10]},
        "layer": {"a": [4 / 4, 1 / 4], "b": [2 / 2], "c": [10 / 10, 5 / 10]},
    }
    for scale, ratios in expected.items():
        method, link = _link(utility_decay=0.0, noise=0.0, scale=scale)
        out, _ = _step(link, method.init(jax.random.PRNGKey(0), params), steps,
                       link.init(params), params, grads)
        got = {"a": out["actor"]["a"], "b": out["actor"]["b"], "c": out["critic"]["c"]}
        for name, ratio in ratios.items():
            np.testing.assert_allclose(got[name], 1.0 - _sigmoid(ratio), rtol=1e-6,
                                       err_msg=f"{scale}/{name}")


def test_noise_is_sized_as_configured_seeded_and_fresh_each_step():
    noise = 1e-2
    method, link = _link(noise=noise)
    params = {"net": {"w": jnp.zeros((100, 100))}}  # zero utility: gate ½ everywhere
    zeros = jax.tree.map(jnp.zeros_like, params)
    state0 = method.init(jax.random.PRNGKey(0), params)
    first, link_state = _step(link, state0, zeros, link.init(params), params, zeros)
    second, _ = _step(link, state0, zeros, link_state, params, zeros)
    again, _ = _step(link, state0, zeros, link.init(params), params, zeros)
    other_seed, _ = _step(link, method.init(jax.random.PRNGKey(1), params), zeros,
                          link.init(params), params, zeros)
    drawn = np.asarray(first["net"]["w"]) / 0.5  # undo the gate: the raw perturbation
    assert abs(drawn.std() - noise) < 0.05 * noise and abs(drawn.mean()) < 0.05 * noise
    np.testing.assert_array_equal(first["net"]["w"], again["net"]["w"])
    assert not np.allclose(first["net"]["w"], second["net"]["w"])
    assert not np.allclose(first["net"]["w"], other_seed["net"]["w"])


def test_gate_applies_to_adams_step_not_to_its_input():
    # At zero weights the gate is ½: after Adam it halves Adam's step exactly. (Before Adam,
    # Adam's normalisation would cancel it.)
    params = {"q": {"w": jnp.zeros((3, 2))}}
    grads = {"q": {"w": jnp.array([[1.0, -2.0], [0.5, 3.0], [-0.1, 0.0]])}}
    agent_links = (optax.clip_by_global_norm(10.0), optax.adam(1e-3))
    hooks = Hooks(None, [make_upgd(UPGDConfig(noise=0.0), view=None)])
    with_upgd = hooks.optimiser(*agent_links)
    method_states = {"upgd": {"key": jax.random.PRNGKey(0)}}
    gated, _ = with_upgd.update(grads, with_upgd.init(params), params,
                                method_states=method_states, loss_grad=None)
    plain = optax.chain(*agent_links)
    step, _ = plain.update(grads, plain.init(params), params)
    np.testing.assert_array_equal(gated["q"]["w"], 0.5 * step["q"]["w"])


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_agents_train_with_upgd_and_keep_its_trace_in_the_optimiser_state(agent_name, tiny_config,
                                                                          random_batch):
    config = tiny_config(agent_name)
    builders = everlearn.methods.method_builders(["upgd"], {"upgd": UPGDConfig()})
    agent = make_agent(agent_name, config, EnvSpec(4, 2), methods=builders)
    key = jax.random.PRNGKey(0)
    state = agent.init(key)
    new_state, _ = jax.jit(agent.update)(state, random_batch(key, agent), key)
    link_state = new_state.opt_state[-1]  # the last link of the chain: UPGD's
    steps = 2 if agent_name == "ppo" else int(new_state.gradient_steps)
    assert steps > 0 and int(link_state["step"]) == steps
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(new_state.params))
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(link_state["utility"]))
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(state.params),
                                               jax.tree.leaves(new_state.params)))
