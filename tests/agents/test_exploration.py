"""Exploration per task (`explore_each_task`): DQN's epsilon schedule and SAC/TD3's random
warm-up restart at a task boundary when on and run on when off; only exploration restarts
(the replay buffer and the learning stay); with it off, a task boundary changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import EnvSpec, make_agent
from everlearn.agents.dqn import DQNConfig
from everlearn.agents.sac import SACConfig
from everlearn.agents.td3 import TD3Config
from everlearn.core.replay import Transition
from everlearn.scenarios import get_scenario
from everlearn.training.functional import FunctionalTrainer

DISCRETE = EnvSpec(obs_dim=4, num_actions=3)
CONTINUOUS = EnvSpec(obs_dim=3, num_actions=1, continuous=True)
# epsilon falls from 1 to 0 over 128 env steps; no gradient step (only exploration is tested)
DQN_SMALL = dict(train_every=64, gradient_steps=1, batch_size=8, buffer_size=512,
                 learning_starts=10_000, exploration_steps=128, epsilon_start=1.0,
                 epsilon_end=0.0, hidden_sizes=(8,))
WARM_UP_SMALL = dict(train_every=32, batch_size=8, buffer_size=512, learning_starts=64,
                     hidden_sizes=(8,))


def _rollout(agent, state, key) -> Transition:
    """`rollout_length` steps of one env, acted by `agent` on random observations."""
    T, E, d = agent.rollout_length, agent.num_envs, agent.view.obs_dim
    obs = jax.random.normal(key, (T, E, d))
    action, extras = jax.vmap(agent.act, in_axes=(None, 0, 0))(
        state, obs, jax.random.split(jax.random.fold_in(key, 1), T))
    zeros = jnp.zeros((T, E))
    return Transition(obs, action, zeros, zeros.astype(bool), zeros.astype(bool), obs, extras)


_COMPILED_UPDATES: dict[int, tuple] = {}


def _train(agent, state, updates: int, key):
    # One compiled `update` per agent: called eagerly, the `lax.cond` inside it would compile
    # the whole learning step again on every call (about a second each).
    if id(agent) not in _COMPILED_UPDATES:
        _COMPILED_UPDATES[id(agent)] = (agent, jax.jit(agent.update))
    update = _COMPILED_UPDATES[id(agent)][1]
    metrics = None
    for k in jax.random.split(key, updates):
        state, metrics = update(state, _rollout(agent, state, k), k)
    return state, metrics


def _random_fraction(agent, state, key) -> float:
    """Fraction of 2,000 acting steps whose action is not the greedy one."""
    obs = jax.random.normal(key, (2_000, DISCRETE.obs_dim))
    action, _ = agent.act(state, obs, jax.random.fold_in(key, 1))
    return float(jnp.mean(action != agent.greedy_action(state, obs)))


@pytest.mark.parametrize("explore_each_task", [True, False])
def test_dqn_epsilon_restarts_at_a_task_boundary_only_when_on(explore_each_task):
    agent = make_agent("dqn", DQNConfig(**DQN_SMALL, explore_each_task=explore_each_task),
                       DISCRETE)
    key = jax.random.PRNGKey(0)
    state, metrics = _train(agent, agent.init(key), 2, key)  # 128 steps: epsilon reached 0
    assert float(metrics["epsilon"]) == 0.0 and _random_fraction(agent, state, key) == 0.0
    state = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), key)
    buffer_size = int(state.buffer.size)
    # right after the boundary: epsilon 1 (on, every action random: 2/3 differ from the
    # greedy one among 3 actions) or still 0 (off)
    fraction = _random_fraction(agent, state, jax.random.fold_in(key, 2))
    state, metrics = _train(agent, state, 1, jax.random.fold_in(key, 3))
    if explore_each_task:
        assert 0.6 < fraction < 0.73
        assert float(metrics["epsilon"]) == pytest.approx(0.5)  # 64 of 128 steps into task 2
        assert int(state.explore_from) == 128
    else:
        assert fraction == 0.0
        assert float(metrics["epsilon"]) == 0.0
        assert int(state.explore_from) == 0
    # only exploration restarts: the buffer keeps task 1's transitions
    assert buffer_size == 128 and int(state.buffer.size) == 192


def _actions(agent, state, key) -> np.ndarray:
    obs = jax.random.normal(key, (256, CONTINUOUS.obs_dim))
    return np.asarray(agent.act(state, obs, jax.random.fold_in(key, 1))[0])


def _reinitialised(agent, state, key):
    """`state` with other (freshly initialised) networks: a policy acting with it changes its
    actions; a random warm-up does not."""
    return state.replace(params=agent.init(key).params)


# Off is one code path for both agents (`restarting_boundary` returns before any restart).
@pytest.mark.parametrize("agent_name,config,explore_each_task", [
    ("sac", SACConfig, True), ("sac", SACConfig, False), ("td3", TD3Config, True)])
def test_random_warm_up_restarts_at_a_task_boundary_only_when_on(agent_name, config,
                                                                explore_each_task):
    agent = make_agent(agent_name, config(**WARM_UP_SMALL, explore_each_task=explore_each_task),
                       CONTINUOUS)
    key, other = jax.random.PRNGKey(0), jax.random.PRNGKey(1)

    def warming_up(state) -> bool:  # the actions do not depend on the networks
        return bool(np.array_equal(_actions(agent, state, key),
                                   _actions(agent, _reinitialised(agent, state, other), key)))

    state = agent.init(key)
    assert warming_up(state)
    state, _ = _train(agent, state, 2, key)  # 64 steps = learning_starts: warm-up over
    assert not warming_up(state) and int(state.gradient_steps) == 32
    state = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), key)
    assert warming_up(state) == explore_each_task
    state, _ = _train(agent, state, 1, jax.random.fold_in(key, 3))
    # learning goes on during the restarted warm-up (the buffer holds learning_starts rows)
    assert int(state.gradient_steps) == 64 and int(state.buffer.size) == 96
    assert warming_up(state) == explore_each_task  # 32 of 64 warm-up steps of task 2
    state, _ = _train(agent, state, 1, jax.random.fold_in(key, 4))
    assert not warming_up(state)


def test_a_boundary_with_exploration_off_changes_no_result():
    """Two tasks of CartPole with DQN: with `explore_each_task` off, calling the task boundary
    (as a run with methods does) gives bit for bit the run that never calls it (as a run
    without methods does, and every run did before the setting); on, it differs."""
    scenario = get_scenario("cartpole-contexts")
    small = dict(train_every=64, gradient_steps=16, batch_size=16, buffer_size=2_048,
                 learning_starts=128, exploration_steps=512, hidden_sizes=(16,))

    trainers = {}

    def final_params(explore_each_task: bool, boundary: bool):
        if explore_each_task not in trainers:  # one compiled trainer per setting
            agent = make_agent("dqn", DQNConfig(**small, explore_each_task=explore_each_task),
                               EnvSpec(obs_dim=4, num_actions=2, num_tasks=scenario.num_tasks))
            trainers[explore_each_task] = FunctionalTrainer(scenario, agent, iterations=8,
                                                            eval_episodes=1)
        trainer = trainers[explore_each_task]
        state, _ = trainer.train_segment(trainer.init([0, 1]), 0)
        if boundary:
            state = trainer.task_boundary(state, 0, 1)
        state, metrics = trainer.train_segment(state, 1)
        return jax.tree.leaves(state.agent.params), metrics["epsilon"]

    never, epsilon_never = final_params(False, boundary=False)
    off, epsilon_off = final_params(False, boundary=True)
    on, epsilon_on = final_params(True, boundary=True)
    assert all(np.array_equal(a, b) for a, b in zip(never, off))
    np.testing.assert_array_equal(epsilon_never, epsilon_off)
    assert not all(np.array_equal(a, b) for a, b in zip(never, on))
    assert (epsilon_on > epsilon_off + 0.3).all()  # task 2 explored from epsilon 1 again
