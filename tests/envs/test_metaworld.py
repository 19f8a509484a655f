"""Continual World's Meta-World tasks (`everlearn.envs.metaworld`) and the cw10 / cw20
scenarios: the env is built as CW builds it (goal observed and redrawn at every reset, seeded
by `reset(seed=...)`, 200-step episodes, success in `info`), and the scenarios list CW's
sequence."""

import gymnasium as gym
import numpy as np
import pytest

from everlearn.envs.metaworld import CW10, ENV_ID
from everlearn.scenarios import get_scenario


@pytest.fixture(scope="module")
def push():
    env = gym.make(ENV_ID, task="push-v3")
    yield env
    env.close()


def test_the_goal_is_observed_and_redrawn_at_every_reset_from_the_reset_seed(push):
    first, _ = push.reset(seed=3)
    again, _ = push.reset(seed=3)
    other, _ = push.reset(seed=4)
    unseeded, _ = push.reset()
    assert first.shape == (39,)
    np.testing.assert_array_equal(first, again)  # the reset seed decides the draw
    goal = slice(36, 39)  # v3's observation ends with the goal position
    assert not np.allclose(first[goal], other[goal])
    assert not np.allclose(other[goal], unseeded[goal])
    assert np.any(first[goal] != 0.0)  # observed, not zeroed (partially_observable=False)
    assert push.observation_space.contains(first.astype(np.float32))


def test_episodes_last_200_steps_and_report_success(push):
    push.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = push.step(np.zeros(4, np.float32))
        steps += 1
        done = terminated or truncated
    assert steps == 200 and truncated and not terminated
    assert "success" in info and info["success"] in (0.0, 1.0)


def test_an_unknown_task_is_named_with_the_choices():
    with pytest.raises(ValueError, match="unknown Meta-World task 'hammer-v9'.*hammer-v3"):
        gym.make(ENV_ID, task="hammer-v9")


def test_cw10_and_cw20_are_continual_worlds_sequences():
    cw10, cw20 = get_scenario("cw10"), get_scenario("cw20")
    assert [t.kwargs["task"] for t in cw10.tasks] == list(CW10)
    assert [t.name for t in cw10.tasks][:3] == ["hammer", "push-wall", "faucet-close"]
    assert [t.kwargs["task"] for t in cw20.tasks] == list(CW10) * 2
    assert cw20.tasks[10].name == "hammer-2"  # a new task id, as in CW
    for s in (cw10, cw20):
        assert s.steps_per_task == 1_000_000 and s.task_ids_visible and s.boundaries_visible
        assert s.metrics == "continual-world"
        assert all(t.success_key == "success" for t in s.tasks)
