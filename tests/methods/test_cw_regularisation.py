"""Continual World's L2, EWC and MAS (`cw_l2`, `cw_ewc`, `cw_mas`) on a small SAC with one head
per task and with a single head, against the authors' formulas written here in plain JAX on a
copy of CW's actor (`continualworld/sac/models.py`, `methods/ewc.py`, `methods/mas.py`)."""

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
MULTI, SINGLE = TASKS, 1  # heads
SAC_OPTIONS = {"hidden_sizes": (4, 4), "first_layer_norm": True}


def spec(heads):
    return EnvSpec(OBS + TASKS, ACTIONS, num_tasks=TASKS, heads=heads, continuous=True)


@functools.cache
def sac(heads):
    return make_agent("sac", AGENTS["sac"].config(**SAC_OPTIONS), spec(heads))


@functools.cache
def method(name, heads):
    view = sac(heads).view
    if name == "cw_l2":
        return make_cw_l2(CWL2Config(strength=5.0), view)
    if name == "cw_ewc":
        return make_cw_ewc(CWEWCConfig(strength=3.0, fisher_rows=8), view)
    return make_cw_mas(CWMASConfig(strength=3.0, importance_rows=8), view)


@functools.cache
def init_sac(heads):
    return jax.jit(sac(heads).init)


@functools.cache
def compiled(method):
    return jax.jit(method.init), jax.jit(method.observe), jax.jit(method.on_task_end)


def sac_params(seed, heads=MULTI, mean_bias=None):
    """SAC's initial params with an output layer large enough that tanh(μ) is far from μ
    (at initialisation μ ≈ 0, where the two agree); `mean_bias`: every μ near it instead."""
    params = init_sac(heads)(jax.random.PRNGKey(seed)).params
    out = params["actor"]["params"]["Dense_2"]
    key_kernel, key_bias = jax.random.split(jax.random.PRNGKey(100 + seed))
    kernel = jax.random.normal(key_kernel, out["kernel"].shape)
    bias = jax.random.uniform(key_bias, out["bias"].shape, minval=-1.0, maxval=1.0)
    if mean_bias is not None:  # saturated actions: μ = mean_bias ± 0.01, log σ ≈ 0
        kernel, bias = 0.01 * kernel, jnp.tile(
            jnp.r_[jnp.full(ACTIONS, mean_bias), jnp.zeros(ACTIONS)], heads)
    new_out = {"kernel": kernel, "bias": bias}
    return {**params, "actor": {"params": {**params["actor"]["params"], "Dense_2": new_out}}}


def rows(seed, count, task):
    obs = np.random.default_rng(seed).normal(size=(count, OBS)).astype(np.float32)
    return jnp.asarray(np.concatenate([obs, np.eye(TASKS, dtype=np.float32)[[task] * count]], 1))


# -- CW's code, written again on everlearn's actor weights ------------------------------------

def cw_actor(params, obs, heads, squash=True):
    """CW's `MlpActor.call` (use_layer_norm, hide_task_id): Dense, LayerNorm, tanh; Dense, relu;
    one head per task picked by the task one-hot, or one head; the log-std clipped to [−20, 2];
    returns (tanh(μ), log σ), or μ itself with `squash=False` (the pre-tanh mean, for contrast)."""
    p = params["actor"]["params"]
    x = obs[:, :-TASKS] if heads > 1 else obs  # hide_task_id with one head per task
    h = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    centred = h - h.mean(-1, keepdims=True)
    h = centred / jnp.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-6)
    h = jnp.tanh(h * p["LayerNorm_0"]["scale"] + p["LayerNorm_0"]["bias"])
    h = jax.nn.relu(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    out = h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
    if heads > 1:  # CW's `_choose_head`
        out = jnp.einsum("bh,bho->bo", obs[:, -TASKS:], out.reshape(len(obs), heads, -1))
    mu, log_std = out[:, :ACTIONS], jnp.clip(out[:, ACTIONS:], -20.0, 2.0)
    return (jnp.tanh(mu) if squash else mu), log_std


def is_common(path, heads):
    """CW's `actor.common_variables`: the core alone with one head per task, else the whole
    actor (its `head_mu` and `head_log_std` are everlearn's output layer `Dense_2`)."""
    keys = [getattr(entry, "key", None) for entry in path]
    return keys[0] == "actor" and (heads == 1 or "Dense_2" not in keys)


def on_common(tree, heads):
    return jax.tree_util.tree_map_with_path(
        lambda path, t: t if is_common(path, heads) else jnp.zeros_like(t), tree)


@functools.partial(jax.jit, static_argnums=(2, 3))
def cw_ewc_importance(params, obs, heads, squash=True):
    """CW's `EWC_SAC._get_importance_weights` on one batch: Jacobians of mu and std over the
    batch; 1 / (std² + 1e-6) · (mu_g² + 2 std_g²), summed over actions, clipped below at 1e-5,
    averaged over the batch."""
    mu = lambda p: cw_actor(p, obs, heads, squash)[0]
    std = lambda p: jnp.exp(cw_actor(p, obs, heads, squash)[1])
    sigma = std(params)  # [batch, actions]

    def fisher(mu_g, std_g):  # [batch, actions, *weight]
        broad = sigma.reshape(*sigma.shape, *[1] * (mu_g.ndim - 2))
        per_row = jnp.sum((mu_g ** 2 + 2 * std_g ** 2) / (broad ** 2 + 1e-6), 1)
        return jnp.mean(jnp.maximum(per_row, 1e-5), 0)

    return on_common(jax.tree.map(fisher, jax.jacrev(mu)(params), jax.jacrev(std)(params)),
                     heads)


@functools.partial(jax.jit, static_argnums=(2, 3))
def cw_mas_importance(params, obs, heads, squash=True):
    """CW's `MAS_SAC._get_importance_weights` on one batch: the Jacobian over the batch of
    Σ mu² + Σ log_std² per row, its absolute value averaged over the batch."""
    def norm(p):
        mu, log_std = cw_actor(p, obs, heads, squash)
        return jnp.sum(mu ** 2, -1) + jnp.sum(log_std ** 2, -1)  # [batch]

    return on_common(jax.tree.map(lambda g: jnp.mean(jnp.abs(g), 0), jax.jacrev(norm)(params)),
                     heads)


CW_IMPORTANCE = {"cw_ewc": cw_ewc_importance, "cw_mas": cw_mas_importance}

# ----------------------------------------------------------------------------------------------


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


def assert_trees_close(actual, expected, **tolerances):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tolerances)


def output_layer(tree):
    return tree["actor"]["params"]["Dense_2"]


@pytest.mark.parametrize("heads", [MULTI, SINGLE], ids=["multi_head", "single_head"])
def test_the_copy_of_cws_actor_is_sacs_squashed_gaussian(heads):
    params, obs = sac_params(3, heads), jnp.concatenate([rows(0, 4, 0), rows(1, 4, 1)])
    mean, std = sac(heads).view.policy_gaussian(params, obs)
    mu, log_std = cw_actor(params, obs, heads)
    np.testing.assert_allclose(mu, jnp.tanh(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.exp(log_std), std, rtol=1e-5)
    assert float(jnp.abs(mean).max()) > 1.0  # tanh(μ) is far from μ on these params


@pytest.mark.parametrize("heads", [MULTI, SINGLE], ids=["multi_head", "single_head"])
def test_cw_l2_weighs_cws_common_variables_by_the_number_of_finished_tasks(heads):
    l2 = method("cw_l2", heads)
    first, second = sac_params(1, heads), sac_params(2, heads)
    state = end_tasks(l2, [first, second], [None, None])
    expected = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.full_like(p, 2.0 if is_common(path, heads) else 0.0), first)
    assert_trees_close(state["importance"], expected)
    assert_trees_close(state["anchor"], second)

    params = sac_params(3, heads)
    value, grad = jax.value_and_grad(l2.extra_loss, argnums=1)(state, params, {})
    by_hand = 5.0 * 2.0 * sum(
        float(jnp.sum((p - a) ** 2)) for (path, p), a in zip(
            jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(second))
        if is_common(path, heads))
    np.testing.assert_allclose(value, by_hand, rtol=1e-5)
    # the output layer (the heads) is pulled with a single head only; the critics never are
    head_pull = float(jnp.abs(output_layer(grad)["kernel"]).max())
    assert (head_pull > 0.0) == (heads == SINGLE)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grad["q1"]))
    assert float(jnp.abs(grad["actor"]["params"]["Dense_0"]["kernel"]).max()) > 0.0


@pytest.mark.parametrize("heads", [MULTI, SINGLE], ids=["multi_head", "single_head"])
@pytest.mark.parametrize("name", ["cw_ewc", "cw_mas"])
def test_cw_ewc_and_mas_sum_cws_importance_of_each_finished_task_and_anchor_at_the_last(
        name, heads):
    regulariser, cw_importance = method(name, heads), CW_IMPORTANCE[name]
    first, second = sac_params(4, heads), sac_params(5, heads)
    # as many rows as the reservoir holds, so it keeps all of them (in some order)
    obs_first, obs_second = rows(0, 8, task=0), rows(1, 8, task=1)
    state = end_tasks(regulariser, [first, second], [obs_first, obs_second])
    expected = jax.tree.map(jnp.add, cw_importance(first, obs_first, heads),
                            cw_importance(second, obs_second, heads))
    assert_trees_close(state["importance"], expected, rtol=1e-4, atol=1e-9)
    assert_trees_close(state["anchor"], second)
    assert int(state["seen"]) == 0  # the next task's reservoir starts empty
    head = float(jnp.abs(output_layer(state["importance"])["kernel"]).max())
    assert (head > 0.0) == (heads == SINGLE)  # CW weighs the head only where it is shared
    if name == "cw_ewc":
        core_kernel = state["importance"]["actor"]["params"]["Dense_1"]["kernel"]
        assert float(core_kernel.min()) >= 2e-5 - 1e-12  # two tasks, each floored at 1e-5

    params = sac_params(6, heads)
    grad = jax.grad(regulariser.extra_loss, argnums=1)(state, params, {})
    assert_trees_close(grad, jax.tree.map(lambda f, p, a: 3.0 * 2.0 * f * (p - a),
                                          state["importance"], params, second),
                       rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["cw_ewc", "cw_mas"])
def test_cw_ewc_and_mas_at_saturated_actions_take_the_importance_after_the_tanh(name):
    """μ ≈ 4: tanh'(4)² ≈ 2e-6, so the Fisher of the pre-tanh mean is ~1e5 times CW's on the
    mean's output weights (there CW's is at its 1e-5 floor), and MAS's ~3e3 times."""
    regulariser, cw_importance = method(name, SINGLE), CW_IMPORTANCE[name]
    params, obs = sac_params(7, SINGLE, mean_bias=4.0), rows(2, 8, task=0)
    state = end_tasks(regulariser, [params], [obs])
    assert_trees_close(state["importance"], cw_importance(params, obs, SINGLE),
                       rtol=1e-4, atol=1e-9)
    mean_bias = output_layer(state["importance"])["bias"][:ACTIONS]
    pre_tanh = output_layer(cw_importance(params, obs, SINGLE, False))["bias"][:ACTIONS]
    assert float((pre_tanh / mean_bias).min()) > 1e3


def test_cw_ewc_reservoir_keeps_a_uniform_sample_of_the_whole_task():
    ewc = method("cw_ewc", MULTI)
    init, _, _ = compiled(ewc)
    draws = 200  # independent reservoirs, side by side
    params = init_sac(MULTI)(jax.random.PRNGKey(0)).params
    state = jax.vmap(lambda _: init(jax.random.PRNGKey(0), params))(jnp.arange(draws))
    observe = jax.jit(jax.vmap(ewc.observe, in_axes=(0, None, None, 0)))
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
    td3 = make_agent("td3", AGENTS["td3"].config(hidden_sizes=(4,)), spec(MULTI))
    with pytest.raises(ValueError, match="cw_ewc needs a Gaussian policy"):
        make_cw_ewc(CWEWCConfig(), td3.view)
    with pytest.raises(ValueError, match="cw_mas needs a Gaussian policy"):
        make_cw_mas(CWMASConfig(), td3.view)


def test_cw_ewc_inside_sac_fills_its_reservoir_and_consolidates_at_the_boundary():
    from everlearn.core.replay import Transition

    agent = make_agent("sac", AGENTS["sac"].config(**SAC_OPTIONS, learning_starts=4,
                                                   batch_size=4, buffer_size=16), spec(MULTI),
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
    expected = cw_ewc_importance(state.params, ewc["rows"], MULTI)  # 4 copies of a row
    assert_trees_close(after["importance"], expected, rtol=1e-4, atol=1e-9)
