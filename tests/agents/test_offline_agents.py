"""TD3+BC, IQL and CQL (continuous; and discrete CQL on DQN): each one's mechanism on small hand-built inputs, `learn` (a fixed dataset
in place of the replay buffer), and one learning test each on a one-step contextual bandit
whose dataset mostly holds a mediocre action.

The bandit: context c ~ U[-1, 1] is the observation; the reward of action a is
1 − 2 (a − g(c))², g(c) = 0.5 c + 0.2; every episode ends after one step (terminated). The
dataset (2,048 rows) takes the good action g(c) in 20 % of rows and g(c) − 0.8 in the others
(reward −0.28), both with Gaussian noise 0.05: its mean reward is 0.009, and cloning its mean
action would score 0.18. A seed's score is the reward of its greedy action averaged over 41
contexts evenly spaced in [-1, 1]; the best possible score is 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.common import MLP
from everlearn.agents.cql import conservative_gap
from everlearn.agents.iql import advantage_weights, expectile_loss
from everlearn.agents.td3_bc import bc_actor_loss
from everlearn.core.replay import ReplayBuffer, Transition
from everlearn.methods import METHODS, method_builders
from everlearn.runs.checks import agents_for

SPEC = EnvSpec(obs_dim=1, num_actions=1, continuous=True)
SEEDS = 8
STEPS_PER_LEARN = 500
# Small networks and a higher learning rate than the papers' keep the learning tests short;
# the CQL test's conservative weight is scaled to the bandit's rewards (see its test).
COMMON = dict(hidden_sizes=(32, 32), batch_size=64, utd_ratio=STEPS_PER_LEARN, buffer_size=16)
CONFIGS = {
    "td3_bc": dict(learning_rate=1e-3),
    "iql": dict(actor_learning_rate=1e-3, critic_learning_rate=1e-3, value_learning_rate=1e-3,
                actor_lr_schedule="constant"),
    "cql": dict(actor_learning_rate=1e-3, critic_learning_rate=1e-3, bc_steps=0,
                min_q_weight=0.3),
}
LEARN_CALLS = {"td3_bc": 4, "iql": 4, "cql": 2}


def good_action(c):
    return 0.5 * c + 0.2


def bandit_reward(c, a):
    return 1.0 - 2.0 * (a - good_action(c)) ** 2


def bandit_dataset(n: int = 2048, seed: int = 0) -> ReplayBuffer:
    k_context, k_good, k_noise = jax.random.split(jax.random.PRNGKey(seed), 3)
    c = jax.random.uniform(k_context, (n, 1), minval=-1.0, maxval=1.0)
    is_good = jax.random.uniform(k_good, (n, 1)) < 0.2
    action = jnp.where(is_good, good_action(c), good_action(c) - 0.8)
    action = jnp.clip(action + 0.05 * jax.random.normal(k_noise, (n, 1)), -1.0, 1.0)
    return ReplayBuffer(obs=c, action=action, reward=bandit_reward(c, action)[:, 0],
                        terminated=jnp.ones((n,), bool), next_obs=c,
                        position=jnp.zeros((), jnp.int32), size=jnp.asarray(n, jnp.int32))


DATASET = bandit_dataset()
CONTEXTS = jnp.linspace(-1.0, 1.0, 41)[:, None]


def _keys(seeds, salt: int) -> jax.Array:
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), salt))(jnp.asarray(seeds))


@pytest.fixture(scope="module")
def bandit_runs():
    """agent name -> (agent, states before learning, after one `learn`, after all), 8 seeds
    vmapped, one compiled `learn` per agent shared by the tests."""
    runs = {}
    for name in CONFIGS:
        agent = make_agent(name, AGENTS[name].config(**COMMON, **CONFIGS[name]), SPEC)
        learn = jax.jit(jax.vmap(agent.learn, in_axes=(0, None, 0)))
        initial = jax.vmap(agent.init)(_keys(range(SEEDS), 0))
        state, _ = learn(initial, DATASET, _keys(range(SEEDS), 1))
        first = state
        for call in range(1, LEARN_CALLS[name]):
            state, _ = learn(state, DATASET, _keys(range(SEEDS), call + 1))
        runs[name] = (agent, initial, first, state)
    return runs


def _scores(agent, states) -> np.ndarray:
    actions = jax.vmap(agent.greedy_action, in_axes=(0, None))(states, CONTEXTS)
    return np.asarray(bandit_reward(CONTEXTS, actions)[..., 0].mean(-1))


# -- TD3+BC ---------------------------------------------------------------------------------

def test_td3_bc_actor_loss_is_the_formula_with_lambda_held_fixed():
    q = jnp.array([1.0, -3.0])
    pi, data = jnp.array([[0.5], [0.0]]), jnp.array([[0.0], [1.0]])
    # λ = 2.5 / mean|Q| = 1.25; −λ mean Q = 1.25; mean (π − a)² = (0.25 + 1) / 2
    assert float(bc_actor_loss(q, pi, data, 2.5)) == pytest.approx(1.25 + 0.625)
    # λ is a constant: dL/dQ_i = −λ / N for every row
    np.testing.assert_allclose(jax.grad(bc_actor_loss)(q, pi, data, 2.5), [-0.625, -0.625])


def test_td3_bc_actor_gradient_is_the_papers_objective_under_normalised_observations():
    config = AGENTS["td3_bc"].config(hidden_sizes=(8,), alpha=2.5)
    agent = make_agent("td3_bc", config, EnvSpec(2, 2, continuous=True))
    params = agent.init(jax.random.PRNGKey(3)).params
    stats = {"mean": jnp.array([1.0, -2.0]), "std": jnp.array([2.0, 0.5])}
    params = {**params, "obs_norm": {"params": {"stats": stats}}}
    k_obs, k_act = jax.random.split(jax.random.PRNGKey(4))
    mb = {"obs": jax.random.normal(k_obs, (5, 2)) * 3.0,
          "action": jax.random.uniform(k_act, (5, 2), minval=-1.0, maxval=1.0),
          "reward": jnp.arange(5.0), "terminated": jnp.zeros(5, bool),
          "next_obs": jax.random.normal(k_obs, (5, 2))}
    actor, q_net = MLP((8,), 2, activation="relu"), MLP((8,), 1, activation="relu")

    def by_hand(actor_params):
        s = (mb["obs"] - stats["mean"]) / stats["std"]
        pi = jnp.tanh(actor.apply(actor_params, s))
        q = q_net.apply(params["q1"], jnp.concatenate([pi, s], axis=-1))[:, 0]
        lam = jax.lax.stop_gradient(2.5 / jnp.abs(q).mean())
        return -lam * q.mean() + jnp.mean((pi - mb["action"]) ** 2)

    # The critic terms do not depend on the actor in `view.loss` (targets held fixed), so
    # the actor's gradient is the actor loss's alone.
    agent_grad = jax.grad(agent.view.loss)(params, mb)["actor"]
    expected = jax.grad(by_hand)(params["actor"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 agent_grad, expected)
    assert float(jnp.abs(jax.grad(agent.view.loss)(params, mb)["q1"]["params"]["Dense_0"]
                         ["kernel"]).sum()) > 0  # and the critics learn from the same loss


@pytest.mark.parametrize("bc_online", [True, False])
def test_td3_bc_online_updates_clone_the_buffer_only_with_bc_online(bc_online):
    """Critics whose output is a constant give the actor no Q gradient: an online gradient
    step then moves the actor through the BC term alone, so with `bc_online: false` it stays
    put (one step: after it the critics are no longer flat). An offline `learn` moves it
    either way (TD3+BC offline)."""
    config = AGENTS["td3_bc"].config(hidden_sizes=(8,), policy_delay=1, learning_starts=0,
                                     batch_size=4, bc_online=bc_online)
    agent = make_agent("td3_bc", config, SPEC)
    state = agent.init(jax.random.PRNGKey(0))

    def flat(path, w):  # the output layer: kernel 0, bias 1
        return (jnp.full_like(w, 1.0) if "bias" in str(path) else jnp.zeros_like(w)) \
            if "Dense_1" in str(path) else w

    critics = {n: jax.tree_util.tree_map_with_path(flat, state.params[n]) for n in ("q1", "q2")}
    state = state.replace(params={**state.params, **critics})
    obs = jnp.full((1, 1, 1), 0.5)
    batch = Transition(obs=obs, action=jnp.ones((1, 1, 1)), reward=jnp.zeros((1, 1)),
                       terminated=jnp.zeros((1, 1), bool), truncated=jnp.zeros((1, 1), bool),
                       next_obs=obs, extras={})

    def actor_moved(after):
        return max(float(jnp.abs(a - b).max()) for a, b in zip(
            jax.tree.leaves(after.params["actor"]), jax.tree.leaves(state.params["actor"])))

    online, _ = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(1))
    assert int(online.gradient_steps) == 1
    assert (actor_moved(online) > 1e-4) == bc_online
    assert actor_moved(online) == 0.0 or bc_online
    offline, _ = jax.jit(agent.learn)(state, bandit_dataset(64), jax.random.PRNGKey(2))
    assert actor_moved(offline) > 1e-4


def test_td3_bc_normalises_by_the_dataset_it_learns_from():
    config = AGENTS["td3_bc"].config(hidden_sizes=(8,), utd_ratio=2, batch_size=4,
                                     buffer_size=8, learning_starts=1)
    agent = make_agent("td3_bc", config, EnvSpec(3, 1, continuous=True))
    state = agent.init(jax.random.PRNGKey(0))
    obs = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32) * [1.0, 5.0, 0.0]
    obs[:, 1] += 7.0
    obs[:, 2] = 4.0  # a constant column (a task one-hot would be one) passes unchanged
    padded = np.full((16, 3), 1e6, np.float32)  # rows beyond `size` must not count
    padded[:10] = obs
    dataset = ReplayBuffer.create(16, 3, (1,), jnp.float32).replace(
        obs=jnp.asarray(padded), next_obs=jnp.asarray(padded), size=jnp.asarray(10, jnp.int32))
    # Before any dataset, observations pass unchanged.
    x = jnp.asarray(obs[:4])
    actor = MLP((8,), 1, activation="relu")
    np.testing.assert_allclose(agent.greedy_action(state, x),
                               jnp.tanh(actor.apply(state.params["actor"], x)), rtol=1e-6)
    state, _ = jax.jit(agent.learn)(state, dataset, jax.random.PRNGKey(1))
    stats = state.params["obs_norm"]["params"]["stats"]
    np.testing.assert_allclose(stats["mean"], [obs[:, 0].mean(), obs[:, 1].mean(), 0.0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], [obs[:, 0].std() + 1e-3, obs[:, 1].std() + 1e-3,
                                              1.0], rtol=1e-5)
    # Acting and evaluation use them: tanh(actor((obs − mean) / std)).
    normalised = (x - stats["mean"]) / stats["std"]
    expected = jnp.tanh(actor.apply(state.params["actor"], normalised))
    np.testing.assert_allclose(agent.greedy_action(state, x), expected, rtol=1e-5)
    np.testing.assert_allclose(agent.view.outputs(state.params, x)["action"], expected,
                               rtol=1e-5)
    # Online updates (gradient steps included) keep the dataset's statistics.
    batch = Transition(obs=jnp.ones((1, 1, 3)), action=jnp.zeros((1, 1, 1)),
                       reward=jnp.ones((1, 1)), terminated=jnp.zeros((1, 1), bool),
                       truncated=jnp.zeros((1, 1), bool), next_obs=jnp.ones((1, 1, 3)),
                       extras={})
    online, _ = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(2))
    assert int(online.gradient_steps) == int(state.gradient_steps) + 2
    jax.tree.map(np.testing.assert_array_equal, online.params["obs_norm"],
                 state.params["obs_norm"])


def test_td3_bc_statistics_are_not_weights_for_the_methods():
    """L2-init pulls every param and UPGD perturbs every update: neither moves the statistics;
    `replay` observes the dataset's rows."""
    names = ["l2_init", "upgd", "replay"]
    configs = {name: METHODS[name].config() for name in names}
    config = AGENTS["td3_bc"].config(hidden_sizes=(8,), utd_ratio=4, batch_size=4,
                                     buffer_size=8)
    assert all("td3_bc" in agents_for(METHODS[name]) for name in names)
    agent = make_agent("td3_bc", config, SPEC, method_builders(names, configs))
    state = agent.init(jax.random.PRNGKey(0))
    state, info = jax.jit(agent.learn)(state, DATASET, jax.random.PRNGKey(1))
    stats = state.params["obs_norm"]["params"]["stats"]
    np.testing.assert_allclose(stats["mean"], [float(DATASET.obs.mean())], rtol=1e-4)
    assert int(state.methods["replay"]["memory"].size) == 4
    assert np.isfinite(float(info["method_loss"]))


# -- IQL --------------------------------------------------------------------------------------

def test_iql_expectile_loss_is_asymmetric():
    diff = jnp.array([1.0, -1.0, 2.0, -2.0])
    np.testing.assert_allclose(expectile_loss(diff, 0.7), [0.7, 0.3, 2.8, 1.2], rtol=1e-6)
    np.testing.assert_allclose(expectile_loss(diff, 0.5), 0.5 * diff**2)
    # Its minimiser over a sample is the τ-expectile: above the mean for τ > 0.5.
    sample = jnp.array([0.0, 0.0, 0.0, 1.0])
    grid = jnp.linspace(0.0, 1.0, 1001)
    best = grid[jnp.argmin(jax.vmap(lambda v: expectile_loss(sample - v, 0.7).mean())(grid))]
    # 0.7 (1 − v) = 3 · 0.3 v  ->  v = 0.4375
    assert float(best) == pytest.approx(0.4375, abs=1e-3)


def test_iql_policy_weights_rows_by_their_advantage():
    advantage = jnp.array([-1.0, 0.0, 0.5, 3.0])
    weights = advantage_weights(advantage, 3.0, 100.0)
    np.testing.assert_allclose(weights, [np.exp(-3.0), 1.0, np.exp(1.5), 100.0], rtol=1e-6)
    assert bool(jnp.all(jnp.diff(weights) > 0))  # higher advantage, higher weight
    # The weights are constants of the actor's loss (no gradient into the critics).
    assert float(jax.grad(lambda a: advantage_weights(a, 3.0, 100.0).sum())(advantage).sum()) == 0


# -- CQL --------------------------------------------------------------------------------------

def test_cql_gap_is_the_importance_sampled_logsumexp_minus_the_data_values():
    q_data = jnp.array([1.0, 2.0])
    q_random, q_pi, q_next = (jnp.full((2, 3), v) for v in (0.0, 1.0, 2.0))
    log_pi, log_next = jnp.full((2, 3), -1.0), jnp.full((2, 3), 0.5)
    gap = conservative_gap(q_data, q_random, q_pi, log_pi, q_next, log_next, action_dim=2)
    # x = [0 − 2 log 0.5] × 3, [2 − 0.5] × 3, [1 + 1] × 3
    x = np.array([-2 * np.log(0.5)] * 3 + [1.5] * 3 + [2.0] * 3)
    expected = np.log(np.exp(x).sum()) - 1.5
    assert float(gap) == pytest.approx(expected, rel=1e-5)


def test_cql_lowers_q_of_actions_outside_the_dataset():
    """Every data action is 0.5 and every reward 0: the Bellman error alone leaves Q near 0
    everywhere; CQL's term pushes Q at other actions below Q at the data's. Measured after 200
    gradient steps, Q1(s, 0.5) − mean Q1(s, a ∈ {−0.9, −0.5, 0}) over the dataset's states,
    init seeds 0 / 1 / 2: 6.10 / 5.40 / 4.84 with w = 5; 0.067 / 0.079 / 0.017 with w = 0."""
    n = 256
    obs = jax.random.uniform(jax.random.PRNGKey(0), (n, 1), minval=-1.0, maxval=1.0)
    dataset = ReplayBuffer(obs=obs, action=jnp.full((n, 1), 0.5), reward=jnp.zeros(n),
                           terminated=jnp.ones(n, bool), next_obs=obs,
                           position=jnp.zeros((), jnp.int32), size=jnp.asarray(n, jnp.int32))
    q_net = MLP((32, 32), 1, activation="relu")
    gaps = {}
    for weight in (5.0, 0.0):
        config = AGENTS["cql"].config(hidden_sizes=(32, 32), batch_size=32, utd_ratio=200,
                                      buffer_size=8, critic_learning_rate=1e-3, bc_steps=0,
                                      min_q_weight=weight)
        agent = make_agent("cql", config, SPEC)
        state, _ = jax.jit(agent.learn)(agent.init(jax.random.PRNGKey(0)), dataset,
                                        jax.random.PRNGKey(1))
        q = lambda a: q_net.apply(state.params["q1"], jnp.concatenate(  # noqa: E731
            [jnp.full_like(obs, a), obs], axis=-1)).mean()
        gaps[weight] = float(q(0.5) - np.mean([q(a) for a in (-0.9, -0.5, 0.0)]))
    assert gaps[5.0] > 2.0 and abs(gaps[0.0]) < 0.3, gaps



def _discrete_data(n: int, action: int, key: int = 0) -> ReplayBuffer:
    """`n` rows of 3-dim observations, every action `action`, reward 0, every row terminal."""
    obs = jax.random.normal(jax.random.PRNGKey(key), (n, 3))
    return ReplayBuffer(obs=obs, action=jnp.full(n, action, jnp.int32), reward=jnp.zeros(n),
                        terminated=jnp.ones(n, bool), next_obs=obs,
                        position=jnp.zeros((), jnp.int32), size=jnp.asarray(n, jnp.int32))


def test_cql_dqn_loss_adds_the_weighted_logsumexp_minus_the_data_q():
    """Discrete CQL(H), exact: the loss of `cql_dqn` minus that of the same DQN without the
    term is w · (mean log Σ_a exp Q(s, a) − mean Q(s, a_data)), from the same parameters."""
    spec = EnvSpec(obs_dim=3, num_actions=4, continuous=False)
    data = _discrete_data(16, 0)
    mb = {"obs": data.obs, "action": jnp.arange(16) % 4, "reward": jnp.linspace(-1, 1, 16),
          "terminated": data.terminated, "next_obs": data.next_obs[::-1]}
    losses = {}
    for weight in (2.5, 0.0):
        config = AGENTS["cql_dqn"].config(hidden_sizes=(8,), min_q_weight=weight)
        agent = make_agent("cql_dqn", config, spec)
        params = agent.init(jax.random.PRNGKey(0)).params
        losses[weight] = float(agent.view.loss(params, mb))
    q = np.asarray(agent.view.outputs(params, mb["obs"])["q"], np.float64)
    gap = np.mean(np.log(np.exp(q).sum(axis=1))) - np.mean(q[np.arange(16), np.arange(16) % 4])
    assert losses[2.5] - losses[0.0] == pytest.approx(2.5 * gap, rel=1e-4)
    assert agent.view.agent == "cql_dqn"


def test_cql_dqn_ranks_the_datas_action_first():
    """Every row takes action 2 with reward 0 and ends: TD learning fits Q(s, 2) to 0 and
    leaves the other actions' Q-values where the initialisation put them; the conservative
    term pushes them below Q(s, 2), so the greedy policy takes the data's action. After 300
    gradient steps, over the dataset's states, init seeds 0 / 1 / 2 (measured on 2026-12-01):
    with w = 1, Q(s, 2) − max of the others 6.36 / 6.62 / 6.47, action 2 greedy in 100 % of
    states; with w = 0, −0.30 / −0.41 / −0.34, and in 0 % / 4 % / 0 %."""
    spec = EnvSpec(obs_dim=3, num_actions=4, continuous=False)
    data = _discrete_data(256, 2)
    margins = {}
    for weight in (1.0, 0.0):
        config = AGENTS["cql_dqn"].config(hidden_sizes=(32, 32), batch_size=32,
                                          gradient_steps=300, learning_rate=1e-3,
                                          buffer_size=8, min_q_weight=weight)
        agent = make_agent("cql_dqn", config, spec)
        state, _ = jax.jit(agent.learn)(agent.init(jax.random.PRNGKey(0)), data,
                                        jax.random.PRNGKey(1))
        q = np.asarray(agent.view.outputs(state.params, data.obs)["q"])
        margins[weight] = (float(np.mean(q[:, 2] - np.delete(q, 2, axis=1).max(axis=1))),
                           float(np.mean(q.argmax(axis=1) == 2)))
    assert margins[1.0][0] > 2.0 and margins[1.0][1] == 1.0, margins
    assert margins[0.0][1] < 0.5, margins


# -- learn ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_learn_keeps_the_agents_own_buffer_and_counts_its_gradient_steps(name, bandit_runs):
    agent, initial, first, _ = bandit_runs[name]
    jax.tree.map(np.testing.assert_array_equal, first.buffer, initial.buffer)
    assert int(first.buffer.size[0]) == 0 and first.buffer.obs.shape[1] == 16
    np.testing.assert_array_equal(first.gradient_steps, STEPS_PER_LEARN)
    np.testing.assert_array_equal(first.env_steps, 0)
    # the methods' `observe` saw one dataset row per gradient step
    np.testing.assert_array_equal(first.methods["recent"]["size"], 256)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), first.params["actor"],
                           initial.params["actor"])
    assert all(jax.tree.leaves(changed))


# -- learning ---------------------------------------------------------------------------------

# Scores (reward of the greedy action, averaged over 41 contexts) of 8 vmapped seeds after
# LEARN_CALLS x 500 gradient steps, seeds 0-7 / 8-15 / 16-23, 2-core x86_64 CPU:
#   td3_bc: medians 0.935, 0.939, 0.952; per seed 0.913 to 0.985
#   iql:    medians 0.991, 0.989, 0.991; per seed 0.983 to 0.994
#   cql:    medians 0.9995, 0.9995, 0.9994; per seed 0.998 to 1.000 but one seed at 0.208
#           (min_q_weight 0.3: the conservative weight is relative to the reward scale; with
#           the default 5.0, and with 1.0, CQL keeps the data's mode, seeds 0-7 median −0.24);
#           remeasured 2026-12-01 after CQL's one-pass critics: medians 0.9991, 0.9995,
#           0.9996, lowest seed 0.939 (the 0.208 seed did not recur, before or after)
# The dataset's mean reward is 0.009; cloning its mean action scores 0.18.
BARS = {"td3_bc": 0.8, "iql": 0.8, "cql": 0.8}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_learns_the_good_action_from_a_mostly_mediocre_dataset(name, bandit_runs):
    agent, _, _, state = bandit_runs[name]
    scores = _scores(agent, state)
    assert np.median(scores) >= BARS[name], f"{name} scores per seed {np.round(scores, 3)}"
