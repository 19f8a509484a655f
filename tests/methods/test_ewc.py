"""EWC and online EWC on a tiny linear softmax policy whose gradients have a closed form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.ppo import minibatch_row as ppo_minibatch_row
from everlearn.methods import METHODS, method_builders
from everlearn.methods.base import AgentView
from everlearn.methods.ewc import (
    EWCConfig,
    OnlineEWCConfig,
    make_ewc,
    make_online_ewc,
    policy_fisher,
)

OBS, ACTIONS, TASKS = 3, 3, 3


def layer(tree, network):
    """The one dense layer of a network, laid out as Flax lays out an MLP's first layer."""
    return tree[network]["params"]["Dense_0"]


def outputs(params, obs):
    actor, critic = layer(params, "actor"), layer(params, "critic")
    return {"logits": obs @ actor["kernel"] + actor["bias"],
            "value": (obs @ critic["kernel"])[:, 0]}


def loss(params, mb):
    out = outputs(params, mb["obs"])
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(out["logits"]), mb["action"][:, None],
                                   axis=-1)[:, 0]
    return jnp.mean(-log_prob * mb["advantage"]) + jnp.mean((out["value"] - mb["return"]) ** 2)


VIEW = AgentView("ppo", off_policy=False, outputs=outputs,
                 policy_logits=lambda params, obs: outputs(params, obs)["logits"], loss=loss,
                 networks=("actor", "critic"), num_tasks=TASKS, obs_dim=OBS,
                 minibatch_row=ppo_minibatch_row(OBS))


def make_params(seed):
    rng = np.random.default_rng(seed)
    dense = lambda **leaves: {"params": {"Dense_0": leaves}}  # noqa: E731
    return {"actor": dense(kernel=rng.normal(size=(OBS, ACTIONS)).astype(np.float32),
                           bias=rng.normal(size=ACTIONS).astype(np.float32)),
            "critic": dense(kernel=rng.normal(size=(OBS, 1)).astype(np.float32))}


def make_rows(seed, count):
    rng = np.random.default_rng(100 + seed)
    floats = lambda *shape: rng.normal(size=(count, *shape)).astype(np.float32)  # noqa: E731
    return {"obs": floats(OBS), "action": rng.integers(0, ACTIONS, count).astype(np.int32),
            "log_prob": floats(), "advantage": floats(), "return": floats()}


row_gradient = jax.jit(jax.grad(loss))


def naive_empirical_fisher(params, rows):
    """The mean over rows of the squared gradient of the loss on that row alone, row by row."""
    count = rows["obs"].shape[0]
    total = jax.tree.map(jnp.zeros_like, params)
    for n in range(count):
        grad = row_gradient(params, jax.tree.map(lambda x: x[n:n + 1], rows))
        total = jax.tree.map(lambda t, g: t + g ** 2 / count, total, grad)
    return total


@functools.cache
def compiled(method):
    return jax.jit(method.init), jax.jit(method.observe), jax.jit(method.on_task_end)


# One method object per configuration, so each test file compiles its hooks once.
EWC = make_ewc(EWCConfig(strength=3.0, fisher_samples=16, fisher_source="loss",
                         normalise_fisher=False), VIEW)
ONLINE_EWC = make_online_ewc(OnlineEWCConfig(strength=3.0, decay=0.5, fisher_samples=16,
                                             fisher_source="loss", normalise_fisher=False), VIEW)


def end_task(method, state, params, task, batches, key=0):
    """Show the method `batches` of data during task `task`, then end the task at `params`."""
    _, observe, on_task_end = compiled(method)
    for batch in batches:
        state = observe(state, batch, jnp.int32(task), jax.random.PRNGKey(key))
    return on_task_end(state, params, jnp.int32(task), jax.random.PRNGKey(key))[0]


def fresh_state(method, params):
    return compiled(method)[0](jax.random.PRNGKey(0), params)


def assert_trees_close(actual, expected, **tolerance):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, **tolerance), actual, expected)


def shift(params, offset, scale):
    return jax.tree.map(lambda p, o: p + scale * o, params, offset)


@pytest.mark.parametrize("sizes, kept", [((5, 5), slice(0, 10)),  # store not yet full
                                         ((7, 7, 7), slice(5, 21)),  # wraps around
                                         ((24,), slice(8, 24))])  # one batch over capacity
def test_empirical_fisher_is_mean_squared_row_gradient_over_the_newest_rows(sizes, kept):
    params = make_params(0)
    all_rows = make_rows(0, sum(sizes))
    bounds = np.cumsum((0,) + sizes)
    batches = [jax.tree.map(lambda x: x[a:b], all_rows) for a, b in zip(bounds, bounds[1:])]
    state = end_task(EWC, fresh_state(EWC, params), params, 1, batches)

    expected = naive_empirical_fisher(params, jax.tree.map(lambda x: x[kept], all_rows))
    assert_trees_close(jax.tree.map(lambda f: f[1], state["fisher"]), expected, rtol=1e-4,
                       atol=1e-7)
    assert_trees_close(jax.tree.map(lambda f: np.asarray(f)[[0, 2]], state["fisher"]),
                       jax.tree.map(lambda p: np.zeros((2, *p.shape)), params))
    np.testing.assert_array_equal(state["finished"], [False, True, False])
    assert int(state["store"]["size"]) == 0  # the next task's Fisher starts from its own data


def test_policy_fisher_matches_the_closed_form_of_a_linear_softmax_policy():
    # log π(a|x) = (xW + b)_a − logsumexp(xW + b): ∂/∂W = x (e_a − π)ᵀ, ∂/∂b = e_a − π, and the
    # critic does not enter the policy. Fisher = mean over rows of the squares.
    params = make_params(1)
    rows = make_rows(1, 16)
    weights = jnp.full((16,), 1 / 16)
    fisher = policy_fisher(VIEW, params, rows["obs"], rows["action"], weights)

    x = np.asarray(rows["obs"], np.float64)
    probs = np.asarray(jax.nn.softmax(outputs(params, rows["obs"])["logits"]), np.float64)
    residual = np.eye(ACTIONS)[np.asarray(rows["action"])] - probs
    expected_w = np.mean((x[:, :, None] * residual[:, None, :]) ** 2, axis=0)
    expected_b = np.mean(residual ** 2, axis=0)
    np.testing.assert_allclose(layer(fisher, "actor")["kernel"], expected_w, rtol=1e-5)
    np.testing.assert_allclose(layer(fisher, "actor")["bias"], expected_b, rtol=1e-5)
    np.testing.assert_array_equal(layer(fisher, "critic")["kernel"], np.zeros((OBS, 1)))


def test_policy_fisher_samples_actions_from_the_current_policy():
    # Every stored row has action 0; the Fisher must not use it but actions drawn from π, so
    # over many rows it approaches Σ_a π(a|x) ((e_a − π) x)² at one fixed x.
    method = make_ewc(EWCConfig(fisher_samples=4096, normalise_fisher=False), VIEW)
    params = jax.tree.map(lambda p: 0.3 * p, make_params(2))  # no action is rare
    x = np.array([0.5, -1.0, 0.3], np.float32)
    rows = {**make_rows(2, 4096), "obs": np.tile(x, (4096, 1)),
            "action": np.zeros(4096, np.int32)}
    state = end_task(method, fresh_state(method, params), params, 0, [rows])

    probs = np.asarray(jax.nn.softmax(outputs(params, x[None])["logits"][0]), np.float64)
    residual_sq = np.einsum("a,ak->k", probs, (np.eye(ACTIONS) - probs) ** 2)
    expected_w = np.asarray(x, np.float64)[:, None] ** 2 * residual_sq[None, :]
    np.testing.assert_allclose(layer(state["fisher"], "actor")["kernel"][0], expected_w, rtol=0.1)
    np.testing.assert_allclose(layer(state["fisher"], "actor")["bias"][0], residual_sq, rtol=0.1)


def test_normalised_fisher_has_mean_one_and_keeps_the_proportions():
    normalising = make_ewc(EWCConfig(strength=3.0, fisher_samples=16, fisher_source="loss",
                                     normalise_fisher=True), VIEW)
    params, rows = make_params(3), make_rows(3, 16)
    raw, normalised = (
        jax.tree.map(lambda f: np.asarray(f[0], np.float64),
                     end_task(method, fresh_state(method, params), params, 0, [rows])["fisher"])
        for method in (EWC, normalising))

    size = sum(x.size for x in jax.tree.leaves(raw))
    assert np.isclose(sum(x.sum() for x in jax.tree.leaves(normalised)) / size, 1.0)
    mean_raw = sum(x.sum() for x in jax.tree.leaves(raw)) / size
    assert_trees_close(normalised, jax.tree.map(lambda r: r / mean_raw, raw), rtol=1e-5)


@pytest.mark.parametrize("method", [EWC, ONLINE_EWC], ids=["ewc", "online_ewc"])
def test_penalty_is_zero_at_the_anchor_and_quadratic_around_it(method):
    params = make_params(4)
    state = end_task(method, fresh_state(method, params), params, 0, [make_rows(4, 16)])
    # ewc's merged anchor is Σ F θ* / Σ F, equal to θ* up to float rounding
    assert abs(float(method.extra_loss(state, params, {}))) < 1e-9

    offset = make_params(5)
    small = float(method.extra_loss(state, shift(params, offset, 0.1), {}))
    large = float(method.extra_loss(state, shift(params, offset, 0.2), {}))
    fisher = state["fisher"]  # ewc: one Fisher per task (task 0 here); online_ewc: one
    if method.name == "ewc":
        fisher = jax.tree.map(lambda f: f[0], fisher)
    by_hand = 1.5 * sum(float(jnp.sum(f * (0.1 * o) ** 2))  # strength/2 = 1.5
                        for f, o in zip(jax.tree.leaves(fisher), jax.tree.leaves(offset)))
    assert small > 0
    np.testing.assert_allclose(small, by_hand, rtol=1e-5)
    np.testing.assert_allclose(large, 4 * small, rtol=1e-5)


def test_ewc_penalty_sums_over_finished_tasks_and_its_gradient_is_exact():
    anchors = [make_params(6), make_params(7)]
    state = fresh_state(EWC, anchors[0])
    for task, anchor in zip((0, 2), anchors):  # task 1 never finishes: it must not count
        state = end_task(EWC, state, anchor, task, [make_rows(task, 16)])
    fishers = [jax.tree.map(lambda f: f[t], state["fisher"]) for t in (0, 2)]
    params = make_params(8)

    value, grad = jax.value_and_grad(EWC.extra_loss, argnums=1)(state, params, {})
    expected_value = 1.5 * sum(
        float(jnp.sum(f * (p - a) ** 2)) for fisher, anchor in zip(fishers, anchors)
        for f, p, a in zip(*map(jax.tree.leaves, (fisher, params, anchor))))
    expected_grad = jax.tree.map(
        lambda p, a0, a2, f0, f2: 3.0 * (f0 * (p - a0) + f2 * (p - a2)),
        params, *anchors, *fishers)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    assert_trees_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_online_ewc_accumulates_the_fisher_with_decay_and_anchors_at_the_last_task_end():
    first, second = make_params(9), make_params(10)
    rows_first, rows_second = make_rows(9, 16), make_rows(10, 16)
    state = fresh_state(ONLINE_EWC, first)
    state = end_task(ONLINE_EWC, state, first, 0, [rows_first])
    state = end_task(ONLINE_EWC, state, second, 1, [rows_second])

    expected = jax.tree.map(lambda a, b: 0.5 * a + b, naive_empirical_fisher(first, rows_first),
                            naive_empirical_fisher(second, rows_second))
    assert_trees_close(state["fisher"], expected, rtol=1e-4, atol=1e-7)
    assert_trees_close(state["anchor"], second)

    params = make_params(11)
    grad = jax.grad(ONLINE_EWC.extra_loss, argnums=1)(state, params, {})
    assert_trees_close(grad, jax.tree.map(lambda f, p, a: 3.0 * f * (p - a),
                                          state["fisher"], params, second), rtol=1e-4,
                       atol=1e-6)


def test_a_real_agent_gets_per_task_slots_and_a_store_sized_by_its_observations():
    config = AGENTS["dqn"].config(hidden_sizes=(8, 8))
    agent = make_agent("dqn", config, EnvSpec(5, 2, num_tasks=4),
                       method_builders(["ewc"], {"ewc": METHODS["ewc"].config()}))
    agent_state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    state = agent_state.methods["ewc"]
    assert state["store"]["rows"]["obs"].shape == (512, 5)
    assert state["finished"].shape == (4,)
    for fisher, param in zip(jax.tree.leaves(state["fisher"]),
                             jax.tree.leaves(agent_state.params)):
        assert fisher.shape == (4, *param.shape)
