"""The Gymnasium path trains its seeds as a population (`everlearn.training.gymnasium`): one vector
env for every seed's envs, one vmapped `act` per env step and one vmapped `update` per rollout.
A seed's envs, keys and data are what it would have alone, so its result does not depend on
which seeds run beside it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan


def _plan(agent: str, scenario: str, seeds: str, *extra: str):
    config = build_config(None, {"scenario": scenario, "agent": agent, "seeds": seeds,
                                 "backend": "gymnasium"},
                          ["steps_per_task=1024", "evals_per_task=2", "diagnostics=false",
                           *extra])
    return make_plan(config)


@pytest.mark.parametrize("agent, scenario, extra", [
    ("dqn", "cartpole-contexts", ["dqn.hidden_sizes=[32,32]", "dqn.train_every=128",
                                  "dqn.gradient_steps=16", "dqn.learning_starts=128"]),
    ("sac", "pendulum-contexts", ["sac.hidden_sizes=[32,32]", "sac.learning_starts=128",
                                  "sac.num_envs=2"]),
], ids=["dqn", "sac"])
def test_a_seeds_result_does_not_depend_on_the_seeds_beside_it(agent, scenario, extra):
    """Seed 2 alone and seed 2 as the third of four seeds, one segment of task 2 with
    learning from its 128th step: the same env seeds and data up to the first update, exactly;
    after it the same arithmetic in XLA's other (batched) code, so the same up to float
    rounding. Measured here: DQN equal to the last bit throughout; SAC's actions 1e-6 apart
    after its first updates, and Pendulum's dynamics grow that to 1e-2 in the observations
    by the segment's end (so those are compared loosely)."""
    alone, together = _plan(agent, scenario, "2", *extra), _plan(agent, scenario, "0-3", *extra)
    state_alone, metrics_alone, seen_alone = alone.trainer.record_segment(
        alone.trainer.init([2]), 1)
    state_together, metrics_together, seen_together = together.trainer.record_segment(
        together.trainer.init([0, 1, 2, 3]), 1)
    envs = seen_alone["obs"].shape[2]
    before = 128 // envs  # env steps per env before the first update
    for name in ("obs", "action", "reward", "terminated", "truncated", "next_obs"):
        np.testing.assert_array_equal(seen_alone[name][0, :before],
                                      seen_together[name][2, :before], name)
        np.testing.assert_allclose(seen_alone[name][0], seen_together[name][2], atol=0.05,
                                   err_msg=name)
    for name, value in metrics_alone.items():
        np.testing.assert_allclose(value[0], metrics_together[name][2], rtol=1e-3, atol=1e-5,
                                   err_msg=name)
    for a, b in zip(jax.tree.leaves(state_alone.agent.params),
                    jax.tree.leaves(state_together.agent.params)):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[2], rtol=1e-3, atol=1e-4)
    # the four seeds' own envs differ from each other
    assert not np.array_equal(seen_together["obs"][0], seen_together["obs"][2])


def test_each_seed_steps_its_own_envs():
    """Four seeds of SAC with two envs each: one vector env of eight, seed s owning envs
    2s and 2s + 1; every seed's transitions (and no other's) reach its own update."""
    plan = _plan("sac", "pendulum-contexts", "0-3", "sac.hidden_sizes=[32,32]",
                 "sac.num_envs=2", "sac.learning_starts=10000")
    state = plan.trainer.init([0, 1, 2, 3])
    state, _, seen = plan.trainer.record_segment(state, 0)
    envs = plan.trainer._envs[0, 8, False]
    assert envs.num_envs == 8
    buffer = state.agent.buffer  # [seeds, capacity, ...]: rollouts written in env-step order
    steps = seen["obs"].shape[1] * 2
    for s in range(4):
        stored = np.asarray(buffer.obs)[s, :steps]
        np.testing.assert_array_equal(stored, seen["obs"][s].reshape(steps, -1))
