"""Continual backprop: replaces only mature units, the lowest-utility ones first, at the paper's
per-optimiser-step rate (fractions accumulated, maturity counted in steps), zeroes the Adam
moments of what it replaces and leaves every other weight and moment bit-identical; with PPO's
defaults the number replaced per layer is the one the paper's rate implies."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from everlearn.agents import EnvSpec, make_agent
from everlearn.agents.common import MLP
from everlearn.agents.ppo import PPOConfig
from everlearn.core.replay import Transition
from everlearn.core.rows import store_rows
from everlearn.methods.base import AgentView, empty_store
from everlearn.methods.continual_backprop import (
    ContinualBackpropConfig,
    lowest_eligible,
    make_continual_backprop,
    replaced_per_layer,
)

WIDTH = 8


def mlp_view(networks: dict[str, MLP], obs_dim: int, steps: int = 1) -> AgentView:
    """A view of hand-made MLPs whose agent takes `steps` optimiser steps per update."""
    return AgentView(
        "dqn", off_policy=True, outputs=None, policy_logits=None, loss=None,
        networks=tuple(networks), num_tasks=1, obs_dim=obs_dim,
        minibatch_row={"obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32)},
        activations=lambda params, obs: {
            name: net.apply(params[name], obs, return_hidden=True)[1]
            for name, net in networks.items()},
        gradient_steps_per_update=steps)


def recent_of(view: AgentView, obs: jax.Array) -> dict:
    return store_rows(empty_store(view, 256), {"obs": obs})


def test_lowest_eligible_picks_the_lowest_among_the_eligible_only():
    utility = jnp.array([5.0, 0.1, 3.0, 0.5, 2.0, 0.2])
    eligible = jnp.array([True, False, True, True, True, False])
    np.testing.assert_array_equal(lowest_eligible(utility, eligible, jnp.int32(2)),
                                  [False, False, False, True, True, False])
    assert not lowest_eligible(utility, eligible, jnp.int32(0)).any()


def test_replaces_the_lowest_utility_mature_unit_and_resets_its_moments_only():
    # One hidden layer; on an all-ones input unit j outputs relu(c_j) and its outgoing weights
    # sum to 1 in magnitude, so its contribution utility is c_j.
    contribution = jnp.array([5.0, 4.0, 0.5, 3.0, 0.1, 2.0, 6.0, 7.0])
    net = MLP((WIDTH,), 2, "relu")
    params = {"q": {"params": {
        "Dense_0": {"kernel": jnp.diag(contribution), "bias": jnp.zeros(WIDTH)},
        "Dense_1": {"kernel": jnp.full((WIDTH, 2), 0.5).at[:, 1].set(-0.5),
                    "bias": jnp.array([0.3, -0.2])}}}}
    config = ContinualBackpropConfig(replacement_rate=1 / 16, maturity_threshold=100)
    view = mlp_view({"q": net}, WIDTH)
    method = make_continual_backprop(config, view)
    key = jax.random.PRNGKey(0)
    state = method.init(key, params)
    recent = recent_of(view, jnp.ones((4, WIDTH)))
    # Units 0-3 are mature (age 100: 101 > 100 after this one-step update); 4-7 are young.
    # Unit 4 has the lowest utility of all but is young; unit 2 is the lowest mature one.
    # 4 mature unit-steps · 1/16 adds 0.25 to the 0.75 already owed: exactly one replacement.
    layer = state["layers"]["q"][0]
    layer = {**layer, "age": jnp.array([100] * 4 + [3] * 4, jnp.int32),
             "pending": jnp.float32(0.75)}
    state = {**state, "layers": {"q": [layer]}}
    opt_state = jax.tree.map(lambda x: x + 1.0, optax.adam(1e-3).init(params))  # all ones

    state, new, new_opt = jax.jit(method.after_update)(state, params, opt_state, recent,
                                                       jax.random.PRNGKey(1))

    layer = state["layers"]["q"][0]
    np.testing.assert_array_equal(layer["age"], [101, 101, 0, 101, 4, 4, 4, 4])
    assert float(layer["utility"][2]) == 0.0
    np.testing.assert_allclose(np.delete(np.asarray(layer["utility"]), 2),
                               0.01 * np.delete(np.asarray(contribution), 2), rtol=1e-6)
    assert float(layer["pending"]) == 0.0 and int(layer["replaced"]) == 1
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
    # Adam's moments: zero at unit 2's incoming column, bias and outgoing row; ones elsewhere.
    for moments in (new_opt[0].mu, new_opt[0].nu):
        layers = moments["q"]["params"]
        reset = {"Dense_0": {"kernel": np.zeros((WIDTH, WIDTH), bool), "bias": ~keep},
                 "Dense_1": {"kernel": np.zeros((WIDTH, 2), bool), "bias": np.zeros(2, bool)}}
        reset["Dense_0"]["kernel"][:, 2] = True
        reset["Dense_1"]["kernel"][2, :] = True
        for name in reset:
            for leaf in reset[name]:
                value, where = np.asarray(layers[name][leaf]), reset[name][leaf]
                assert np.all(value[where] == 0.0) and np.all(value[~where] == 1.0)
    assert int(new_opt[0].count) == int(opt_state[0].count)  # one count for all: kept


def _after_updates(config: ContinualBackpropConfig, hidden: tuple[int, ...], updates: int,
                   steps: int) -> list[dict]:
    """The layer states after `updates` updates of `steps` optimiser steps each."""
    net = MLP(hidden, 2, "relu")
    key = jax.random.PRNGKey(0)
    params = {"q": net.init(key, jnp.zeros((1, 3)))}
    view = mlp_view({"q": net}, 3, steps)
    method = make_continual_backprop(config, view)
    recent = recent_of(view, jax.random.normal(key, (32, 3)))
    opt_state = optax.adam(1e-3).init(params)

    def step(carry, k):
        state, params, opt_state = carry
        return method.after_update(state, params, opt_state, recent, k), None

    (state, _, _), _ = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))(
        (method.init(key, params), params, opt_state), jax.random.split(key, updates))
    return state["layers"]["q"]


def test_replacement_count_follows_the_per_step_rate_with_fractions_accumulated():
    # Every unit mature from its first step on: 8 units · 4 steps · 1/64 = 0.5 replacements per
    # update and layer, exactly representable, so 40 updates replace exactly 20 per layer.
    config = ContinualBackpropConfig(replacement_rate=1 / 64, maturity_threshold=0)
    layers = _after_updates(config, (WIDTH, WIDTH), 40, steps=4)
    assert [int(layer["replaced"]) for layer in layers] == [20, 20]
    assert all(float(layer["pending"]) == 0.0 for layer in layers)
    # The rate is per optimiser step: the same rate with 1 step per update replaces a quarter.
    layers = _after_updates(config, (WIDTH, WIDTH), 40, steps=1)
    assert [int(layer["replaced"]) for layer in layers] == [5, 5]


def test_maturity_is_counted_in_steps_and_only_mature_steps_accrue():
    # 20 steps to mature, 4 steps per update: after 5 updates (age 20) nothing is eligible yet.
    config = ContinualBackpropConfig(replacement_rate=1 / 64, maturity_threshold=20)
    layers = _after_updates(config, (WIDTH,), 5, steps=4)
    assert int(layers[0]["replaced"]) == 0 and float(layers[0]["pending"]) == 0.0
    assert int(layers[0]["age"].min()) == 20
    # Maturity 22: in the 6th update (ages 21..24) each unit is mature for 2 of its 4 steps.
    config = ContinualBackpropConfig(replacement_rate=1 / 64, maturity_threshold=22)
    layers = _after_updates(config, (WIDTH,), 6, steps=4)
    assert float(layers[0]["pending"]) == 8 * 2 / 64
    # More owed than eligible: all eligible go, the rest is dropped rather than carried.
    config = ContinualBackpropConfig(replacement_rate=0.5, maturity_threshold=20)
    layers = _after_updates(config, (WIDTH,), 6, steps=4)
    assert int(layers[0]["replaced"]) == WIDTH and float(layers[0]["pending"]) == 0.0


def _random_rollouts(agent, key, updates: int) -> Transition:
    """`updates` random CartPole-shaped rollouts of `agent`'s size, stacked."""
    shape = (updates, agent.rollout_length, agent.num_envs)
    k_obs, k_act, k_rew = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (*shape, 4))
    return Transition(obs=obs, action=jax.random.randint(k_act, shape, 0, 2),
                      reward=jax.random.normal(k_rew, shape), terminated=jnp.zeros(shape, bool),
                      truncated=jnp.zeros(shape, bool), next_obs=obs,
                      extras={"log_prob": jnp.full(shape, jnp.log(0.5)),
                              "value": jnp.zeros(shape)})


def test_ppo_defaults_replace_what_the_papers_per_step_rate_implies():
    """`cartpole-plasticity`'s agent (PPO defaults: 64 x 64, 20 optimiser steps per 256-step
    update) with the method's defaults (rate 1e-4 per step, maturity 10^4 steps): nothing
    before update 500, then per layer 1e-4 x 20 x (64 - replaced so far) per update. Over 800
    updates that is 64 (1 - exp(-1e-4 x 20 x 300)) = 28.9 per layer, less the fraction still
    owed (measured: 29 in each layer). The whole 480k-step scenario (1,875 updates) gives 96
    per layer (replaced units mature again 500 updates later), where reading the same rate per
    env step would give 1,512 (see the method's docstring)."""
    config = PPOConfig()
    method = ContinualBackpropConfig()
    agent = make_agent("ppo", config, EnvSpec(obs_dim=4, num_actions=2),
                       methods=[lambda view: make_continual_backprop(method, view)])
    assert agent.view.gradient_steps_per_update == 20
    assert agent.view.env_steps_per_update == 256
    updates, mature_at = 800, method.maturity_threshold // 20
    batches = _random_rollouts(agent, jax.random.PRNGKey(1), updates)

    def update(state, inputs):
        batch, key = inputs
        state, _ = agent.update(state, batch, key)
        return state, [n for layers in replaced_per_layer(state.methods["continual_backprop"])
                       .values() for n in layers]

    state, history = jax.jit(lambda s, b, k: jax.lax.scan(update, s, (b, k)))(
        agent.init(jax.random.PRNGKey(0)), batches, jax.random.split(jax.random.PRNGKey(2),
                                                                     updates))
    history = np.stack([np.asarray(h) for h in history], axis=1)  # [update, layer]
    assert history.shape[1] == 4  # actor and critic, two hidden layers each
    assert np.all(history[:mature_at] == 0)  # maturity: 10^4 steps = 500 updates
    # The per-step rule in plain Python, one unit-step at a time: the reference count.
    replaced, owed = 0, 0.0
    for _ in range((updates - mature_at) * 20):
        owed += 1e-4 * (64 - replaced)
        replaced += int(owed)
        owed -= int(owed)
    for layer in history[-1]:
        assert abs(int(layer) - replaced) <= 1, (history[-1], replaced)
    assert 26 <= replaced <= 29  # 64 (1 - e^-0.6) = 28.9, less the fraction owed
