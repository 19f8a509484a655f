"""ReDo: the dormant score on a known layer; recycling revives exactly the dead units, zeroes
their Adam moments, and leaves every other weight and moment bit-identical."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from everlearn.agents.common import MLP
from everlearn.core.neurons import dormant_mask, dormant_ratio, dormant_scores
from everlearn.core.rows import store_rows
from everlearn.methods.base import AgentView, empty_store
from everlearn.methods.redo import ReDoConfig, make_redo
from everlearn.methods.surgery import hidden_layers

OBS_DIM = 4


def recent_of(view: AgentView, obs: jax.Array | None = None) -> dict:
    """The hooks' store of recent training rows, holding `obs` (empty without)."""
    store = empty_store(view, 256)
    return store if obs is None else store_rows(store, {"obs": obs})


def mlp_view(networks: dict[str, MLP], obs_dim: int) -> AgentView:
    """A view of hand-made MLPs: all that the surgery methods use of an agent."""
    return AgentView(
        "ppo", off_policy=False, outputs=None, policy_logits=None, loss=None,
        networks=tuple(networks), num_tasks=1, obs_dim=obs_dim,
        minibatch_row={"obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32)},
        activations=lambda params, obs: {
            name: net.apply(params[name], obs, return_hidden=True)[1]
            for name, net in networks.items()})


def test_dormant_score_of_a_hand_built_layer():
    x = jax.random.uniform(jax.random.PRNGKey(0), (32, 3))  # inputs in [0, 1)
    kernel = jnp.ones((3, 8)).at[:, 2].set(-1.0).at[:, 5].set(-1.0)
    bias = jnp.full((8,), 0.1).at[2].set(-0.5).at[5].set(-0.5)
    hidden = jax.nn.relu(x @ kernel + bias)  # units 2 and 5 never fire
    assert float(dormant_ratio([hidden], tau=0.025)) == 0.25
    assert float(dormant_ratio([hidden], tau=0.0)) == 0.25
    np.testing.assert_array_equal(dormant_mask([hidden], 0.025)[0],
                                  [False, False, True, False, False, True, False, False])

    # Known scores: six neurons at |h| = 1, one at 0.1, one silent -> layer mean 6.1 / 8.
    constant = jnp.ones((5, 8)).at[:, 0].set(0.0).at[:, 7].set(-0.1)
    scores = dormant_scores([constant])[0]
    np.testing.assert_allclose(scores, np.array([0, 1, 1, 1, 1, 1, 1, 0.1]) * 8 / 6.1,
                               rtol=1e-6)
    # 0.1 · 8/6.1 ≈ 0.131: dormant at τ = 0.2 but not at τ = 0.1; the silent one at τ = 0.
    assert dormant_mask([constant], 0.2)[0].tolist() == [True] + [False] * 6 + [True]
    assert dormant_mask([constant], 0.1)[0].tolist() == [True] + [False] * 7
    assert float(dormant_ratio([constant, constant], 0.0)) == 2 / 16


def _plant_dead_units(network_params, dead: dict[str, list[int]]):
    """Make the listed units of each Dense layer silent on every input (no incoming weights
    and a negative bias, so their ReLU output is 0), and every other hidden unit fire on every
    positive input (positive incoming weights and bias), so that none is dormant by chance."""
    inner = dict(network_params["params"])
    for layer, _ in hidden_layers(network_params):
        units = jnp.array(dead.get(layer, []), jnp.int32)
        inner[layer] = {"kernel": jnp.abs(inner[layer]["kernel"]).at[:, units].set(0.0),
                        "bias": jnp.full_like(inner[layer]["bias"], 0.1).at[units].set(-1.0)}
    return {**network_params, "params": inner}


def test_redo_revives_exactly_the_dead_units():
    heads = 3  # multi-head: the output kernel has 2 · 3 columns; a revived row is zero in all
    nets = {"actor": MLP((16, 16), 2, "relu", out_scale=0.01, heads=heads),
            "critic": MLP((16, 16), 1, "relu", heads=heads)}
    obs_dim = OBS_DIM + heads  # the task one-hot ends the observation
    view = mlp_view(nets, obs_dim)
    key = jax.random.PRNGKey(0)
    dummy = jnp.zeros((1, obs_dim))
    params = {name: net.init(jax.random.fold_in(key, i), dummy)
              for i, (name, net) in enumerate(nets.items())}
    dead = {"Dense_0": [1, 6], "Dense_1": [3]}
    params["actor"] = _plant_dead_units(params["actor"], dead)
    params["critic"] = _plant_dead_units(params["critic"], {})

    method = make_redo(ReDoConfig(every_updates=2), view)
    obs = jax.random.uniform(jax.random.PRNGKey(1), (64, obs_dim))  # positive
    obs = obs.at[:, -heads:].set(jax.nn.one_hot(jnp.arange(64) % heads, heads))
    recent = recent_of(view, obs)
    state = method.init(key, params)
    after_update = jax.jit(method.after_update)
    # Non-zero Adam moments everywhere, so that a reset shows.
    opt_state = jax.tree.map(lambda x: x + 1.0, optax.adam(1e-3).init(params))

    state, first, first_opt = after_update(state, params, opt_state, recent,
                                           jax.random.PRNGKey(2))
    assert int(state["recycled"]) == 0  # not due yet: every 2 updates
    jax.tree.map(np.testing.assert_array_equal, (first, first_opt), (params, opt_state))
    state, new, new_opt = after_update(state, params, opt_state, recent, jax.random.PRNGKey(2))
    assert int(state["recycled"]) == 3

    jax.tree.map(np.testing.assert_array_equal, new["critic"], params["critic"])  # no dead unit
    old, now = params["actor"]["params"], new["actor"]["params"]
    # Revived units: fresh incoming columns, zero bias, zero outgoing rows (every head's).
    # (Where a revived unit of layer 0 feeds one of layer 1, the zero outgoing weight wins.)
    from_revived = np.zeros(16, bool)
    for incoming, outgoing in hidden_layers(params["actor"]):
        units = dead[incoming]
        fresh = np.asarray(now[incoming]["kernel"])[:, units]
        assert np.all(fresh[~from_revived[:fresh.shape[0]]] != 0.0)
        assert np.all(fresh[from_revived[:fresh.shape[0]]] == 0.0)
        assert np.all(np.asarray(now[incoming]["bias"])[units] == 0.0)
        assert np.all(np.asarray(now[outgoing]["kernel"])[units] == 0.0)
        from_revived = np.isin(np.arange(16), units)
    assert now["Dense_2"]["kernel"].shape[1] == 2 * heads
    # Every other weight is bit-identical.
    for layer in ["Dense_0", "Dense_1", "Dense_2"]:
        for name in ["kernel", "bias"]:
            untouched = np.ones(old[layer][name].shape, bool)
            if layer in dead:  # incoming columns and biases of the revived units
                untouched[..., dead[layer]] = False
            previous = {"Dense_1": "Dense_0", "Dense_2": "Dense_1"}.get(layer)
            if name == "kernel" and previous:  # outgoing rows of the revived units
                untouched[dead[previous], :] = False
            np.testing.assert_array_equal(np.asarray(now[layer][name])[untouched],
                                          np.asarray(old[layer][name])[untouched])
    # The revived units fire again, and the outputs did not jump (outgoing weights are zero).
    hidden = view.activations(new, obs)["actor"]
    assert float(jnp.abs(hidden[0][:, jnp.array(dead["Dense_0"])]).mean()) > 0
    np.testing.assert_allclose(nets["actor"].apply(new["actor"], obs),
                               nets["actor"].apply(params["actor"], obs), atol=1e-6)
    # The paper's moment reset: zero exactly where the weights were re-initialised.
    adam = new_opt[0]
    for moments in (adam.mu, adam.nu):
        jax.tree.map(np.testing.assert_array_equal, moments["critic"],
                     opt_state[0].mu["critic"])  # all ones, untouched
        for layer in ["Dense_0", "Dense_1", "Dense_2"]:
            for name in ["kernel", "bias"]:
                reset = np.zeros(old[layer][name].shape, bool)
                if layer in dead:
                    reset[..., dead[layer]] = True
                previous = {"Dense_1": "Dense_0", "Dense_2": "Dense_1"}.get(layer)
                if name == "kernel" and previous:
                    reset[dead[previous], :] = True
                value = np.asarray(moments["actor"]["params"][layer][name])
                assert np.all(value[reset] == 0.0) and np.all(value[~reset] == 1.0)


def test_redo_leaves_a_network_without_dormant_units_alone_and_touches_only_dense_entries():
    nets = {"q": MLP((8,), 2, "tanh", layer_norm=True)}
    view = mlp_view(nets, OBS_DIM)
    key = jax.random.PRNGKey(0)
    params = {"q": nets["q"].init(key, jnp.zeros((1, OBS_DIM)))}
    assert [pair for pair in hidden_layers(params["q"])] == [("Dense_0", "Dense_1")]
    assert "LayerNorm_0" in params["q"]["params"]
    method = make_redo(ReDoConfig(every_updates=1), view)
    recent = recent_of(view, jax.random.normal(key, (32, OBS_DIM)))
    opt_state = optax.adam(1e-3).init(params)
    state, new, _ = jax.jit(method.after_update)(method.init(key, params), params, opt_state,
                                                 recent, key)
    assert int(state["recycled"]) == 0
    jax.tree.map(np.testing.assert_array_equal, new, params)


def test_redo_does_nothing_before_it_has_seen_observations():
    nets = {"q": MLP((8,), 2, "relu")}
    key = jax.random.PRNGKey(0)
    params = {"q": nets["q"].init(key, jnp.zeros((1, OBS_DIM)))}
    params["q"] = _plant_dead_units(params["q"], {"Dense_0": [0]})
    view = mlp_view(nets, OBS_DIM)
    method = make_redo(ReDoConfig(every_updates=1), view)
    state, new, _ = method.after_update(method.init(key, params), params,
                                        optax.adam(1e-3).init(params), recent_of(view), key)
    assert int(state["recycled"]) == 0
    jax.tree.map(np.testing.assert_array_equal, new, params)
