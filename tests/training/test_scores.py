"""Normalisation scores: reference runs cached as raw returns (so a changed score can never
meet a stale normalised curve), random scores measured and cached."""

import numpy as np

from everlearn.runs.config import build_config
from everlearn.scenarios import Scenario, Task, get_scenario
from everlearn.training.reference import (
    normalise_reference,
    reference_curves,
    reference_key,
)
from everlearn.training.scores import random_scores


def test_reference_curves_are_normalised_on_use_with_the_current_scores():
    scenario = Scenario("s", "", (Task("a", "CartPole-v1", 0.0, 100.0),
                                  Task("b", "CartPole-v1", 10.0, 20.0)), steps_per_task=10)
    raw = np.array([[[0.0, 50.0, 100.0], [10.0, 15.0, 20.0]]])  # [seed, task, eval]
    np.testing.assert_allclose(normalise_reference(scenario, raw),
                               [[[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]])
    rescored = scenario.with_scores([0.0, 0.0], [200.0, 40.0])
    np.testing.assert_allclose(normalise_reference(rescored, raw),
                               [[[0.0, 0.25, 0.5], [0.25, 0.375, 0.5]]])


def test_the_reference_cache_key_ignores_scores_but_not_the_task():
    config = build_config(None, {"scenario": "cartpole-contexts"}, [])
    scenario = get_scenario("cartpole-contexts")
    rescored = scenario.with_scores([0.0] * 4, [1.0] * 4)
    assert reference_key(config, scenario, 1000) == reference_key(config, rescored, 1000)
    other = Scenario("s", "", (Task("a", "CartPole-v1", physics={"length": 0.6}),),
                     steps_per_task=10)
    assert reference_key(config, scenario, 1000) != reference_key(config, other, 1000)


def test_a_repeated_task_shares_the_reference_of_its_first_appearance():
    """Tasks 0 and 2 are the same env and context under two names (a sequence played twice):
    task 2 copies task 0's reference instead of training again; task 1 trains its own."""

    class CountingTrainer:  # returns that say which task trained, and how often
        trained: list[int] = []

        def init(self, seeds):
            return 0.0

        def train_segment(self, state, task):
            self.trained.append(task)
            return state + 1.0 + 10.0 * task, {}

        def evaluate(self, state, seeds, eval_index):
            return np.full((len(seeds), 3), state)

    scenario = Scenario("s", "", (Task("a", "CartPole-v1", physics={"length": 0.6}),
                                  Task("b", "CartPole-v1"),
                                  Task("a-2", "CartPole-v1", physics={"length": 0.6})),
                        steps_per_task=10)
    config = build_config(None, {"scenario": "cartpole-contexts", "seeds": "0-1",
                                 "evals_per_task": 2}, [])
    trainer = CountingTrainer()
    progress = []
    returns = reference_curves(trainer, config, scenario, 5,
                               on_segment=lambda task, e: progress.append((task, e)))
    assert trainer.trained == [0, 0, 1, 1]
    assert progress == [(t, e) for t in range(3) for e in (1, 2)]  # a shared task counts too
    np.testing.assert_array_equal(returns[:, 2], returns[:, 0])
    np.testing.assert_array_equal(returns[0], [[0, 1, 2], [0, 11, 22], [0, 1, 2]])


def test_random_scores_are_measured_where_missing_and_kept_where_given():
    """The registry's CartPole random score (22, 500 episodes) against 100 measured ones."""
    scenario = Scenario("s", "", (Task("given", "CartPole-v1", random_score=-7.0),
                                  Task("measured", "CartPole-v1")), steps_per_task=10)
    given, measured = random_scores(scenario, "jax")
    assert given == -7.0
    assert 18.0 < measured < 26.0
    assert random_scores(scenario, "jax")[1] == measured  # cached
