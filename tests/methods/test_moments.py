"""Methods reach the optimiser only through `view.reset_moments`: inside every agent's real
update (PPO, DQN, SAC, TD3 — the last two with several Adams), continual backprop's replaced
neurons leave zero Adam moments on exactly their weights, and every other moment is
bit-identical to the same update without the method."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.core.replay import Transition
from everlearn.methods.continual_backprop import (
    ContinualBackpropConfig,
    make_continual_backprop,
)
from everlearn.methods.surgery import reinit_moments_mask

OBS = 3
SMALL = {  # optimiser steps per update: ppo 2, the others 4 (learning from the first update)
    "ppo": dict(num_envs=2, num_steps=8, num_epochs=2, hidden_sizes=(8, 8)),
    "dqn": dict(train_every=8, gradient_steps=4, batch_size=8, learning_starts=0,
                buffer_size=64, hidden_sizes=(8, 8)),
    "sac": dict(train_every=4, batch_size=8, learning_starts=0, buffer_size=64,
                hidden_sizes=(8, 8)),
    "td3": dict(train_every=4, batch_size=8, learning_starts=0, buffer_size=64,
                hidden_sizes=(8, 8)),
}


def _rollout(agent, continuous: bool) -> Transition:
    shape = (agent.rollout_length, agent.num_envs)
    k_obs, k_act, k_rew = jax.random.split(jax.random.PRNGKey(1), 3)
    obs = jax.random.normal(k_obs, (*shape, OBS))
    action = (jax.random.uniform(k_act, (*shape, 1), minval=-1, maxval=1) if continuous
              else jax.random.randint(k_act, shape, 0, 2))
    extras = ({"log_prob": jnp.full(shape, jnp.log(0.5)), "value": jnp.zeros(shape)}
              if agent.name == "ppo" else {})
    return Transition(obs=obs, action=action, reward=jax.random.normal(k_rew, shape),
                      terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
                      next_obs=obs, extras=extras)


def _adam_states(opt_state) -> list:
    return [node for node in jax.tree.leaves(
        opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
        if isinstance(node, optax.ScaleByAdamState)]


def _moments(state: optax.ScaleByAdamState, mask) -> list[tuple[np.ndarray, np.ndarray]]:
    """(moment, mask) pairs for every weight an Adam state holds (not its `MaskedNode`s)."""
    pairs = []
    for moments in (state.mu, state.nu):
        jax.tree.map(lambda m, v: None if isinstance(v, optax.MaskedNode)
                     else pairs.append((np.asarray(v), np.asarray(m))), mask, moments)
    return pairs


@pytest.mark.parametrize("name", ["ppo", "dqn", "sac", "td3"])
def test_replaced_neurons_moments_are_zero_and_all_others_untouched(name):
    entry = AGENTS[name]
    spec = EnvSpec(obs_dim=OBS, num_actions=1 if entry.continuous else 2,
                   continuous=entry.continuous)
    config = entry.config(**SMALL[name])
    plain = make_agent(name, config, spec)
    steps = plain.view.gradient_steps_per_update
    # Every unit mature from its first step; 8 units x `steps` steps x rate = 1 replacement
    # per hidden layer per update.
    cbp = ContinualBackpropConfig(replacement_rate=1 / (8 * steps), maturity_threshold=0)
    with_cbp = make_agent(name, config, spec,
                          methods=[lambda view: make_continual_backprop(cbp, view)])
    batch, key = _rollout(plain, entry.continuous), jax.random.PRNGKey(2)
    before, _ = jax.jit(plain.update)(plain.init(jax.random.PRNGKey(0)), batch, key)
    after, _ = jax.jit(with_cbp.update)(with_cbp.init(jax.random.PRNGKey(0)), batch, key)

    layers = after.methods["continual_backprop"]["layers"]
    replaced = {network: [layer["age"] == 0 for layer in network_layers]
                for network, network_layers in layers.items()}
    assert all(int(mask.sum()) == 1 for masks in replaced.values() for mask in masks)
    mask = reinit_moments_mask(after.params, replaced)

    adams_before, adams_after = _adam_states(before.opt_state), _adam_states(after.opt_state)
    assert len(adams_after) == {"ppo": 1, "dqn": 1, "sac": 1, "td3": 2}[name]
    reset_somewhere = False
    for adam_before, adam_after in zip(adams_before, adams_after):
        np.testing.assert_array_equal(adam_after.count, adam_before.count)
        for (old, _), (new, where) in zip(_moments(adam_before, mask),
                                          _moments(adam_after, mask)):
            assert np.all(new[where] == 0.0)
            np.testing.assert_array_equal(new[~where], old[~where])  # bit-identical
            reset_somewhere |= bool(np.any(old[where] != 0.0))  # there was something to reset
    assert reset_somewhere
