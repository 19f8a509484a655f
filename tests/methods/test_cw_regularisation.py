"""Continual World's L2, EWC and MAS (`cw_l2`, `cw_ewc`, `cw_mas`) on a small multi-head SAC,
against the authors' formulas computed here by hand, one scalar gradient at a time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.methods import METHODS, method_builders
from everlearn.methods.cw_regularisation import (
    CWEWCConfig,
    CWL2Config,
    CWMASConfig,
    make_cw_ewc,
    make_cw_l2,
    make_cw_mas,
)
from everlearn.runs.checks import agents_for

OBS, ACTIONS, TASKS = 3, 2, 2
SPEC = EnvSpec(OBS + TASKS, ACTIONS, num_tasks=TASKS, heads=TASKS, continuous=True)
SAC = make_agent("sac", AGENTS["sac"].config(hidden_sizes=(4, 4), first_layer_norm=True), SPEC)
VIEW = SAC.view
L2 = make_cw_l2(CWL2Config(strength=5.0), VIEW)
EWC = make_cw_ewc(CWEWCConfig(strength=3.0, fisher_rows=8), VIEW)
MAS = make_cw_mas(CWMASConfig(strength=3.0, importance_rows=8), VIEW)


def sac_params(seed):
    return init_sac(jax.random.PRNGKey(seed)).params


init_sac = jax.jit(SAC.init)


def rows(seed, count, task):
    obs = np.random.default_rng(seed).normal(size=(count, OBS)).astype(np.float32)
    return jnp.asarray(np.concatenate([obs, np.eye(TASKS, dtype=np.float32)[[task] * count]], 1))


def is_shared(path):
    """CW's `common_variables`: the actor's layers but its output layer (Dense_2 here)."""
    keys = [getattr(entry, "key", None) for entry in path]
    return keys[0] == "actor" and "Dense_2" not in keys


@functools.cache
def compiled(method):
    return jax.jit(method.init), jax.jit(method.observe), jax.jit(method.on_task_end)


def end_tasks(method, params_at_ends, observed):
    """Run the method's hooks: per task, observe its rows in two calls, then end it."""
    init, observe, end = compiled(method)
    state = init(jax.random.PRNGKey(0), params_at_ends[0])
    for task, (params, obs) in enumerate(zip(params_at_ends, observed)):
        if method.name in ("cw_ewc", "cw_mas"):
            for half in (obs[: len(obs) // 2], obs[len(obs) // 2:]):
                state = observe(state, {"obs": half}, task, jax.random.PRNGKey(task))
        state, _ = end(state, params, task, jax.random.PRNGKey(9))
    return state


def scalar_gradients(view):
    """(params, row, a) -> (∂μ_a/∂θ, ∂σ_a/∂θ, μ_a, σ_a) on one row, each derivative its own
    scalar gradient."""
    def gradients(params, row, a):
        mean = lambda p: view.policy_gaussian(p, row[None])[0][0, a]  # noqa: E731
        std = lambda p: view.policy_gaussian(p, row[None])[1][0, a]  # noqa: E731
        return jax.grad(mean)(params), jax.grad(std)(params), mean(params), std(params)

    return jax.jit(gradients, static_argnums=2)


def on_shared_layers(tree):
    return jax.tree_util.tree_map_with_path(
        lambda path, t: t if is_shared(path) else jnp.zeros_like(t), tree)


def mean_over_rows_by_hand(params, obs, view, per_action, per_row):
    """Σ over rows of per_row(Σ_a per_action(∂μ_a/∂θ, ∂σ_a/∂θ, μ_a, σ_a)) / rows, weight by
    weight, on the shared layers (0 elsewhere)."""
    gradients = scalar_gradients(view)
    total = jax.tree.map(jnp.zeros_like, params)
    for row in obs:
        row_sum = jax.tree.map(jnp.zeros_like, params)
        for a in range(ACTIONS):
            dmean, dstd, mean, std = gradients(params, row, a)
            row_sum = jax.tree.map(lambda f, dm, ds: f + per_action(dm, ds, mean, std),
                                   row_sum, dmean, dstd)
        total = jax.tree.map(lambda t, f: t + per_row(f) / len(obs), total, row_sum)
    return on_shared_layers(total)


def fisher_by_hand(params, obs, view=VIEW):
    """CW's `ewc.py`: mean over rows of max(1e-5, Σ_a [(∂μ_a/∂θ)² + 2 (∂σ_a/∂θ)²] /
    (σ_a² + 1e-6))."""
    return mean_over_rows_by_hand(
        params, obs, view, lambda dm, ds, mean, std: (dm ** 2 + 2 * ds ** 2) / (std ** 2 + 1e-6),
        lambda f: jnp.maximum(f, 1e-5))


def sensitivity_by_hand(params, obs):
    """CW's `mas.py`: mean over rows of |Σ_a 2 μ_a ∂μ_a/∂θ + 2 log σ_a ∂σ_a/∂θ / σ_a| (the chain
    rule on ||μ||² + ||log σ||²)."""
    return mean_over_rows_by_hand(
        params, obs, VIEW,
        lambda dm, ds, mean, std: 2 * mean * dm + 2 * jnp.log(std) * ds / std, jnp.abs)


def assert_trees_close(actual, expected, **tolerances):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tolerances)


def test_cw_l2_weighs_the_actor_shared_layers_by_the_number_of_finished_tasks():
    first, second = sac_params(1), sac_params(2)
    state = end_tasks(L2, [first, second], [None, None])
    expected = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.full_like(p, 2.0 if is_shared(path) else 0.0), first)
    assert_trees_close(state["importance"], expected)
    assert_trees_close(state["anchor"], second)

    params = sac_params(3)
    value, grad = jax.value_and_grad(L2.extra_loss, argnums=1)(state, params, {})
    by_hand = 5.0 * 2.0 * sum(
        float(jnp.sum((p - a) ** 2)) for (path, p), a in zip(
            jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(second))
        if is_shared(path))
    np.testing.assert_allclose(value, by_hand, rtol=1e-5)
    # no pull on the heads or the critics: CW regularises the actor's common layers only
    assert float(jnp.abs(grad["actor"]["params"]["Dense_2"]["kernel"]).max()) == 0.0
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grad["q1"]))
    assert float(jnp.abs(grad["actor"]["params"]["Dense_0"]["kernel"]).max()) > 0.0


@pytest.mark.parametrize("method", ["cw_ewc", "cw_mas"])
def test_cw_ewc_and_mas_sum_each_finished_task_importance_and_anchor_at_the_last(method):
    method, by_hand = {"cw_ewc": (EWC, fisher_by_hand),
                       "cw_mas": (MAS, sensitivity_by_hand)}[method]
    first, second = sac_params(4), sac_params(5)
    # as many rows as the reservoir holds, so it keeps all of them (in some order)
    obs_first, obs_second = rows(0, 8, task=0), rows(1, 8, task=1)
    state = end_tasks(method, [first, second], [obs_first, obs_second])
    expected = jax.tree.map(jnp.add, by_hand(first, obs_first), by_hand(second, obs_second))
    assert_trees_close(state["importance"], expected, rtol=1e-4, atol=1e-9)
    assert_trees_close(state["anchor"], second)
    assert int(state["seen"]) == 0  # the next task's reservoir starts empty
    if method is EWC:
        shared_kernel = state["importance"]["actor"]["params"]["Dense_1"]["kernel"]
        assert float(shared_kernel.min()) >= 2e-5 - 1e-12  # two tasks, each floored at 1e-5

    params = sac_params(6)
    grad = jax.grad(method.extra_loss, argnums=1)(state, params, {})
    assert_trees_close(grad, jax.tree.map(lambda f, p, a: 3.0 * 2.0 * f * (p - a),
                                          state["importance"], params, second),
                       rtol=1e-4, atol=1e-6)


def test_cw_ewc_reservoir_keeps_a_uniform_sample_of_the_whole_task():
    init, _, _ = compiled(EWC)
    draws = 200  # independent reservoirs, side by side
    state = jax.vmap(lambda _: init(jax.random.PRNGKey(0), sac_params(0)))(jnp.arange(draws))
    observe = jax.jit(jax.vmap(EWC.observe, in_axes=(0, None, None, 0)))
    for call in range(40):  # 40 calls of 4 rows; row n carries n as its first entry
        obs = jnp.zeros((4, OBS + TASKS)).at[:, 0].set(jnp.arange(4.0) + 4 * call)
        keys = jax.random.split(jax.random.PRNGKey(call), draws)
        state = observe(state, {"obs": obs}, 0, keys)
    kept = np.asarray(state["rows"][:, :, 0])
    assert all(len(set(draw.tolist())) == 8 for draw in kept)
    assert (np.asarray(state["seen"]) == 160).all()
    # every row is kept with probability 8/160, so half the kept rows are from the first half
    # (the mean over 1,600 kept rows: standard error 0.0125)
    assert abs(np.mean(kept < 80) - 0.5) < 0.05


def test_cw_methods_are_refused_where_they_do_not_apply():
    assert agents_for(METHODS["cw_ewc"]) == agents_for(METHODS["cw_mas"]) == ("sac",)
    assert {"ppo", "dqn", "sac", "td3"} <= set(agents_for(METHODS["cw_l2"]))
    assert METHODS["cw_l2"].needs_boundaries and METHODS["cw_ewc"].needs_boundaries
    td3 = make_agent("td3", AGENTS["td3"].config(hidden_sizes=(4,)), SPEC)
    with pytest.raises(ValueError, match="cw_ewc needs a Gaussian policy"):
        make_cw_ewc(CWEWCConfig(), td3.view)
    with pytest.raises(ValueError, match="cw_mas needs a Gaussian policy"):
        make_cw_mas(CWMASConfig(), td3.view)


def test_cw_ewc_inside_sac_fills_its_reservoir_and_consolidates_at_the_boundary():
    from everlearn.core.replay import Transition

    agent = make_agent("sac", AGENTS["sac"].config(hidden_sizes=(4, 4), learning_starts=4,
                                                   batch_size=4, buffer_size=16), SPEC,
                       method_builders(["cw_ewc"], {"cw_ewc": CWEWCConfig(fisher_rows=4)}))
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    shape = (agent.rollout_length, agent.num_envs)
    obs = jnp.broadcast_to(rows(7, 1, task=0), (*shape, OBS + TASKS))
    batch = Transition(obs=obs, action=jnp.zeros((*shape, ACTIONS)), reward=jnp.ones(shape),
                       terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
                       next_obs=obs, extras={})
    update = jax.jit(agent.update)
    for step in range(6):
        state, _ = update(state, batch, jax.random.PRNGKey(step))
    ewc = state.methods["cw_ewc"]
    assert int(ewc["seen"]) == 6 * shape[0] * shape[1]
    np.testing.assert_array_equal(ewc["rows"], jnp.broadcast_to(obs[0, 0], (4, OBS + TASKS)))
    assert all(float(jnp.abs(i).max()) == 0.0 for i in jax.tree.leaves(ewc["importance"]))

    after = jax.jit(agent.task_boundary)(state, jnp.int32(0), jnp.int32(1),
                                         jax.random.PRNGKey(9)).methods["cw_ewc"]
    assert_trees_close(after["anchor"], state.params)
    expected = fisher_by_hand(state.params, ewc["rows"][:1], agent.view)  # 4 copies of a row
    assert_trees_close(after["importance"], expected, rtol=1e-4, atol=1e-9)
