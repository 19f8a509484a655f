"""Tiny agents and random rollouts for the methods' tests that run a real agent update."""

import jax
import jax.numpy as jnp
import pytest

from everlearn.agents import AGENTS
from everlearn.core.replay import Transition
from everlearn.training.functional import init_seeds

TINY_AGENTS = {
    "ppo": dict(num_envs=2, num_steps=8, num_epochs=2, hidden_sizes=(8,)),
    "dqn": dict(num_envs=2, train_every=8, gradient_steps=4, batch_size=8, learning_starts=8,
                buffer_size=64, hidden_sizes=(8,)),
}


def _random_batch(key, agent, obs_dim=4, num_actions=2) -> Transition:
    """One random rollout of `agent`'s shape (PPO extras included)."""
    k_obs, k_next, k_act, k_rew, k_logp = jax.random.split(key, 5)
    shape = (agent.rollout_length, agent.num_envs)
    extras = ({"log_prob": jnp.log(0.5) + 0.1 * jax.random.normal(k_logp, shape),
               "value": jnp.zeros(shape)} if agent.name == "ppo" else {})
    return Transition(
        obs=jax.random.normal(k_obs, (*shape, obs_dim)),
        action=jax.random.randint(k_act, shape, 0, num_actions),
        reward=jax.random.normal(k_rew, shape),
        terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
        next_obs=jax.random.normal(k_next, (*shape, obs_dim)), extras=extras)


@pytest.fixture
def tiny_config():
    """agent name -> a small config of that agent (fast to compile)."""
    return lambda agent_name: AGENTS[agent_name].config(**TINY_AGENTS[agent_name])


@pytest.fixture
def random_batch():
    return _random_batch


@pytest.fixture
def two_seeds():
    """agent -> (state, batch, keys): two seeds of `agent` initialised one at a time (a vmapped
    orthogonal init, a batched QR, can deadlock XLA's CPU pool) and one rollout per seed
    (random observations, action 0, reward 1), for `jax.vmap(agent.update)`."""

    def make(agent):
        keys = jax.random.split(jax.random.PRNGKey(0), 2)
        state = init_seeds(lambda seed: agent.init(keys[seed]), [0, 1])
        shape = (2, agent.rollout_length, agent.num_envs)
        obs = jax.random.normal(jax.random.PRNGKey(1), (*shape, 4))
        extras = ({"log_prob": jnp.full(shape, -0.7), "value": jnp.zeros(shape)}
                  if agent.name == "ppo" else {})
        batch = Transition(obs=obs, action=jnp.zeros(shape, jnp.int32), reward=jnp.ones(shape),
                           terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
                           next_obs=obs, extras=extras)
        return state, batch, keys

    return make
