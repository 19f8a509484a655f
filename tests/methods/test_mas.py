"""MAS on a tiny linear network whose output-norm gradients have a closed form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import ppo
from everlearn.core.replay import replay_row
from everlearn.methods.base import AgentView
from everlearn.methods.mas import MASConfig, make_mas

OBS, ACTIONS, TASKS = 3, 2, 3
ROWS = {"ppo": ppo.minibatch_row, "dqn": replay_row}


def layer(tree, network):
    """The one dense layer of a network, laid out as Flax lays out an MLP's first layer."""
    return tree[network]["params"]["Dense_0"]


def dense(**leaves):
    return {"params": {"Dense_0": leaves}}


def ppo_outputs(params, obs):
    actor, critic = layer(params, "actor"), layer(params, "critic")
    return {"logits": obs @ actor["kernel"] + actor["bias"],
            "value": (obs @ critic["kernel"])[:, 0]}


def dqn_outputs(params, obs):
    return {"q": obs @ layer(params, "q")["kernel"] + layer(params, "q")["bias"]}


def view(agent, outputs, networks):
    logits = lambda params, obs: next(iter(outputs(params, obs).values()))  # noqa: E731
    return AgentView(agent, off_policy=agent == "dqn", outputs=outputs, policy_logits=logits,
                     loss=lambda params, mb: jnp.zeros(()), networks=networks, num_tasks=TASKS,
                     obs_dim=OBS, minibatch_row=ROWS[agent](OBS))


PPO_VIEW = view("ppo", ppo_outputs, ("actor", "critic"))
DQN_VIEW = view("dqn", dqn_outputs, ("q",))
# One method object per configuration, so the file compiles each one's hooks once.
MAS_SUM = make_mas(MASConfig(strength=3.0, importance_samples=16, normalise_importance=False),
                   PPO_VIEW)
MAS_AVERAGE = make_mas(MASConfig(strength=3.0, importance_samples=16, accumulate="average",
                                 normalise_importance=False), PPO_VIEW)


def ppo_params(seed):
    rng = np.random.default_rng(seed)
    return {"actor": dense(kernel=rng.normal(size=(OBS, ACTIONS)).astype(np.float32),
                           bias=rng.normal(size=ACTIONS).astype(np.float32)),
            "critic": dense(kernel=rng.normal(size=(OBS, 1)).astype(np.float32))}


def observations(seed, count):
    return np.random.default_rng(100 + seed).normal(size=(count, OBS)).astype(np.float32)


def ppo_importance_by_hand(params, obs):
    """||f||² = Σ_k (xW + b)_k² + (x·v)²: ∂/∂W_jk = 2 x_j (xW + b)_k, ∂/∂b_k = 2 (xW + b)_k,
    ∂/∂v_j = 2 (x·v) x_j; the importance is the mean of their absolute values over x."""
    x = obs.astype(np.float64)
    actor, critic = layer(params, "actor"), layer(params, "critic")
    logits = x @ actor["kernel"] + actor["bias"]
    value = x @ critic["kernel"][:, 0]
    return {"actor": dense(kernel=np.mean(np.abs(2 * x[:, :, None] * logits[:, None, :]), 0),
                           bias=np.mean(np.abs(2 * logits), axis=0)),
            "critic": dense(kernel=np.mean(np.abs(2 * value[:, None] * x), axis=0)[:, None])}


@functools.cache
def compiled(method):
    return jax.jit(method.init), jax.jit(method.observe), jax.jit(method.on_task_end)


def end_task(method, state, params, task, batches):
    """Show the method `batches` of data during task `task`, then end the task at `params`."""
    _, observe, on_task_end = compiled(method)
    for batch in batches:
        state = observe(state, batch, jnp.int32(task), jax.random.PRNGKey(0))
    return on_task_end(state, params, jnp.int32(task), jax.random.PRNGKey(0))[0]


def fresh_state(method, params):
    return compiled(method)[0](jax.random.PRNGKey(0), params)


def ppo_batch(obs):
    count = obs.shape[0]
    return {"obs": obs, "action": np.zeros(count, np.int32), "log_prob": np.zeros(count),
            "advantage": np.ones(count), "return": np.ones(count)}


def assert_trees_close(actual, expected, **tolerance):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, **tolerance), actual, expected)


def test_importance_of_logits_and_value_matches_the_hand_computed_one_on_the_newest_rows():
    params, obs = ppo_params(0), observations(0, 21)  # 21 rows into 16 slots: keeps the last 16
    state = end_task(MAS_SUM, fresh_state(MAS_SUM, params), params, 0,
                     [ppo_batch(obs[:7]), ppo_batch(obs[7:14]), ppo_batch(obs[14:])])
    assert_trees_close(state["importance"], ppo_importance_by_hand(params, obs[5:]), rtol=1e-5)
    assert_trees_close(state["anchor"], params)
    assert int(state["store"]["size"]) == 0  # the next task's importance uses its own data


def test_importance_of_q_values_from_dqn_data_over_a_partly_filled_store():
    method = make_mas(MASConfig(importance_samples=16, normalise_importance=False), DQN_VIEW)
    rng = np.random.default_rng(1)
    params = {"q": dense(kernel=rng.normal(size=(OBS, ACTIONS)).astype(np.float32),
                         bias=rng.normal(size=ACTIONS).astype(np.float32))}
    obs = observations(1, 10)
    batch = {"obs": obs, "action": np.zeros(10, np.int32), "reward": np.ones(10, np.float32),
             "terminated": np.zeros(10, bool), "next_obs": obs}
    state = fresh_state(method, params)
    assert set(state["store"]["rows"]) == {"obs"}  # MAS needs no actions or rewards
    state = end_task(method, state, params, 0, [batch])

    q = obs.astype(np.float64) @ layer(params, "q")["kernel"] + layer(params, "q")["bias"]
    expected = {"q": dense(kernel=np.mean(np.abs(2 * obs[:, :, None] * q[:, None, :]), axis=0),
                           bias=np.mean(np.abs(2 * q), axis=0))}
    assert_trees_close(state["importance"], expected, rtol=1e-5)


@pytest.mark.parametrize("method", [MAS_SUM, MAS_AVERAGE], ids=["sum", "average"])
def test_importance_accumulates_across_tasks(method):
    first, second, third = ppo_params(2), ppo_params(3), ppo_params(4)
    obs = [observations(seed, 16) for seed in (2, 3, 4)]
    state = fresh_state(method, first)
    for task, (params, task_obs) in enumerate(zip((first, second, third), obs)):
        state = end_task(method, state, params, task, [ppo_batch(task_obs)])

    each = [ppo_importance_by_hand(p, o) for p, o in zip((first, second, third), obs)]
    divide = 1.0 if method is MAS_SUM else 3.0
    assert_trees_close(state["importance"],
                       jax.tree.map(lambda a, b, c: (a + b + c) / divide, *each), rtol=1e-5)
    assert_trees_close(state["anchor"], third)


def test_normalised_importance_has_mean_one():
    method = make_mas(MASConfig(importance_samples=16), PPO_VIEW)
    params = ppo_params(5)
    state = end_task(method, fresh_state(method, params), params, 0,
                     [ppo_batch(observations(5, 16))])
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(state["importance"])]
    assert np.isclose(sum(x.sum() for x in leaves) / sum(x.size for x in leaves), 1.0)


def test_penalty_is_zero_at_the_anchor_quadratic_around_it_and_its_gradient_is_exact():
    anchor = ppo_params(6)
    state = end_task(MAS_SUM, fresh_state(MAS_SUM, anchor), anchor, 0,
                     [ppo_batch(observations(6, 16))])
    assert float(MAS_SUM.extra_loss(state, anchor, {})) == 0.0

    offset = ppo_params(7)
    shifted = lambda scale: jax.tree.map(lambda a, o: a + scale * o, anchor, offset)  # noqa
    small = float(MAS_SUM.extra_loss(state, shifted(0.1), {}))
    large = float(MAS_SUM.extra_loss(state, shifted(0.2), {}))
    by_hand = 1.5 * sum(float(np.sum(w * (0.1 * o) ** 2)) for w, o in  # strength/2 = 1.5
                        zip(jax.tree.leaves(state["importance"]), jax.tree.leaves(offset)))
    assert small > 0
    np.testing.assert_allclose(small, by_hand, rtol=1e-5)
    np.testing.assert_allclose(large, 4 * small, rtol=1e-5)

    grad = jax.grad(MAS_SUM.extra_loss, argnums=1)(state, shifted(0.3), {})
    assert_trees_close(grad, jax.tree.map(lambda w, o: 3.0 * w * 0.3 * o, state["importance"],
                                          offset), rtol=1e-4, atol=1e-6)
