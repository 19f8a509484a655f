"""Continual backprop: replaces only mature units, the lowest-utility ones first, at the
configured rate (fractions accumulated), and leaves every other weight bit-identical."""

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents.common import MLP
from everlearn.methods.base import AgentView
from everlearn.methods.continual_backprop import (ContinualBackpropConfig, lowest_eligible,
                                                  make_continual_backprop)

WIDTH = 8


def mlp_view(networks: dict[str, MLP], obs_dim: int) -> AgentView:
    return AgentView(
        "dqn", off_policy=True, outputs=None, policy_logits=None, loss=None,
        networks=tuple(networks), num_tasks=1, obs_dim=obs_dim,
        minibatch_row={"obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32)},
        activations=lambda params, obs: {
            name: net.apply(params[name], obs, return_hidden=True)[1]
            for name, net in networks.items()})


def test_lowest_eligible_picks_the_lowest_among_the_eligible_only():
    utility = jnp.array([5.0, 0.1, 3.0, 0.5, 2.0, 0.2])
    eligible = jnp.array([True, False, True, True, True, False])
    np.testing.assert_array_equal(lowest_eligible(utility, eligible, jnp.int32(2)),
                                  [False, False, False, True, True, False])
    assert not lowest_eligible(utility, eligible, jnp.int32(0)).any()


def test_replaces_the_lowest_utility_mature_unit_only():
    # One hidden layer; on an all-ones input unit j outputs relu(c_j) and its outgoing weights
    # sum to 1 in magnitude, so its contribution utility is c_j.
    contribution = jnp.array([5.0, 4.0, 0.5, 3.0, 0.1, 2.0, 6.0, 7.0])
    net = MLP((WIDTH,), 2, "relu")
    params = {"q": {"params": {
        "Dense_0": {"kernel": jnp.diag(contribution), "bias": jnp.zeros(WIDTH)},
        "Dense_1": {"kernel": jnp.full((WIDTH, 2), 0.5).at[:, 1].set(-0.5),
                    "bias": jnp.array([0.3, -0.2])}}}}
    config = ContinualBackpropConfig(replacement_rate=1 / 16, maturity_threshold=100)
    method = make_continual_backprop(config, mlp_view({"q": net}, WIDTH))
    key = jax.random.PRNGKey(0)
    state = method.init(key, params)
    state = method.observe(state, {"obs": jnp.ones((4, WIDTH))}, jnp.int32(0), key)
    # Units 0-3 are mature (age 100: 101 > 100 after this update); 4-7 are young. Unit 4 has
    # the lowest utility of all but is young; unit 2 is the lowest mature one. 4 eligible ·
    # 1/16 adds 0.25 to the 0.75 already owed: exactly one replacement.
    layer = state["layers"]["q"][0]
    layer = {**layer, "age": jnp.array([100] * 4 + [3] * 4, jnp.int32),
             "pending": jnp.float32(0.75)}
    state = {**state, "layers": {"q": [layer]}}

    state, new = jax.jit(method.after_update)(state, params, jax.random.PRNGKey(1))

    layer = state["layers"]["q"][0]
    np.testing.assert_array_equal(layer["age"], [101, 101, 0, 101, 4, 4, 4, 4])
    assert float(layer["utility"][2]) == 0.0
    np.testing.assert_allclose(np.delete(np.asarray(layer["utility"]), 2),
                               0.01 * np.delete(np.asarray(contribution), 2), rtol=1e-6)
    assert float(layer["pending"]) == 0.0 and int(state["replaced"]) == 1
    old, now = params["q"]["params"], new["q"]["params"]
    assert np.all(np.asarray(now["Dense_0"]["kernel"])[:, 2] != 0.0)  # fresh: was 0 off the diagonal
    np.testing.assert_array_equal(now["Dense_1"]["kernel"][2], [0.0, 0.0])
    # Everything else bit-identical.
    keep = np.arange(WIDTH) != 2
    np.testing.assert_array_equal(np.asarray(now["Dense_0"]["kernel"])[:, keep],
                                  np.asarray(old["Dense_0"]["kernel"])[:, keep])
    np.testing.assert_array_equal(now["Dense_0"]["bias"], old["Dense_0"]["bias"])  # was 0
    np.testing.assert_array_equal(np.asarray(now["Dense_1"]["kernel"])[keep],
                                  np.asarray(old["Dense_1"]["kernel"])[keep])
    np.testing.assert_array_equal(now["Dense_1"]["bias"], old["Dense_1"]["bias"])


def _replacements_after(config: ContinualBackpropConfig, hidden: tuple[int, ...],
                        updates: int) -> tuple[int, list]:
    net = MLP(hidden, 2, "relu")
    key = jax.random.PRNGKey(0)
    params = {"q": net.init(key, jnp.zeros((1, 3)))}
    method = make_continual_backprop(config, mlp_view({"q": net}, 3))
    state = method.observe(method.init(key, params), {"obs": jax.random.normal(key, (32, 3))},
                           jnp.int32(0), key)

    def step(carry, k):
        return method.after_update(*carry, k), None

    (state, _), _ = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))(
        (state, params), jax.random.split(key, updates))
    return int(state["replaced"]), state["layers"]["q"]


def test_replacement_count_follows_the_rate_with_fractions_accumulated():
    # Every unit mature from its first update on: 8 eligible · 1/32 = 0.25 replacements per
    # update and layer, exactly representable, so 40 updates replace exactly 10 per layer.
    config = ContinualBackpropConfig(replacement_rate=1 / 32, maturity_threshold=0)
    replaced, layers = _replacements_after(config, (WIDTH, WIDTH), 40)
    assert replaced == 2 * 10
    assert all(float(layer["pending"]) == 0.0 for layer in layers)
    # At a paper-like rate: 64 units · 1e-3 · 500 updates = 32 expected (±1 for rounding).
    config = ContinualBackpropConfig(replacement_rate=1e-3, maturity_threshold=0)
    replaced, _ = _replacements_after(config, (64,), 500)
    assert abs(replaced - 32) <= 1


def test_no_unit_is_replaced_before_it_matures():
    config = ContinualBackpropConfig(replacement_rate=0.5, maturity_threshold=20)
    replaced, layers = _replacements_after(config, (WIDTH,), 20)
    assert replaced == 0 and int(layers[0]["age"].min()) == 20
