"""Tiny agents and random rollouts for the methods' tests that run a real agent update."""

import jax
import jax.numpy as jnp
import pytest

from everlearn.agents import AGENTS, Transition

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
