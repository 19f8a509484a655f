"""A population's seeds step together, so a `lax.cond` whose predicate is the same for all of
them — the replay buffer holds `learning_starts` rows, a surgery is due every N updates —
stays a branch under the trainers' seed `vmap` (`everlearn.core.lockstep.in_lockstep`). Under
a plain `vmap` the per-seed predicate makes it a select that computes both branches: every
warm-up update took its gradient steps and threw them away (the Gymnasium path's SAC with
SB3's settings ran 107 env steps/s instead of 143, benchmarks/results/throughput.md)."""

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.core.lockstep import SEED_AXIS
from everlearn.core.replay import Transition
from everlearn.envs.functional import index_params
from everlearn.scenarios import get_scenario
from everlearn.training.functional import FunctionalTrainer
from everlearn.training.gymnasium import GymnasiumTrainer

PENDULUM = EnvSpec(obs_dim=3, num_actions=1, continuous=True)
SEEDS = 2


def _agent(**overrides):
    config = AGENTS["sac"].config(hidden_sizes=(16,), buffer_size=256, batch_size=8,
                                  learning_starts=100, **overrides)
    return make_agent("sac", config, PENDULUM)


def _population_batch(agent) -> Transition:
    shape = (SEEDS, agent.rollout_length, agent.num_envs)
    return Transition(obs=jnp.zeros((*shape, 3)), action=jnp.zeros((*shape, 1)),
                      reward=jnp.zeros(shape), terminated=jnp.zeros(shape, bool),
                      truncated=jnp.zeros(shape, bool), next_obs=jnp.zeros((*shape, 3)),
                      extras={})


def _branches(hlo: str) -> bool:
    return "stablehlo.case" in hlo or "stablehlo.if" in hlo


def test_the_learning_starts_cond_branches_under_the_seed_axis_only():
    agent = _agent()
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    states = jax.vmap(agent.init)(keys)
    batch = _population_batch(agent)
    named = jax.jit(jax.vmap(agent.update, axis_name=SEED_AXIS)).lower(states, batch, keys)
    plain = jax.jit(jax.vmap(agent.update)).lower(states, batch, keys)
    assert _branches(named.as_text())
    assert not _branches(plain.as_text())  # what the trainers did before: a select
    # Same numbers either way, and no gradient step before learning_starts.
    new_named, _ = named.compile()(states, batch, keys)
    new_plain, _ = plain.compile()(states, batch, keys)
    assert np.all(np.asarray(new_named.gradient_steps) == 0)
    for a, b in zip(jax.tree.leaves(new_named), jax.tree.leaves(new_plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_both_paths_compile_their_updates_with_the_branch():
    agent = _agent()
    scenario = get_scenario("pendulum-stationary")
    gym_trainer = GymnasiumTrainer(scenario, agent, iterations=1, eval_episodes=1)
    state = gym_trainer.init(list(range(SEEDS)))
    batch = _population_batch(agent)
    sums = gym_trainer._zero_metrics(state.agent, batch, state.key)
    assert _branches(gym_trainer._update.lower(state.agent, batch, state.key, sums).as_text())
    trainer = FunctionalTrainer(scenario, agent, iterations=1, eval_episodes=1)
    program = trainer._segment_program(trainer.groups[0], record=False)
    params = index_params(trainer.groups[0].tasks, 0)
    lowered = program.lower(trainer.init(list(range(SEEDS))), params, jnp.zeros(2))
    assert _branches(lowered.as_text())
