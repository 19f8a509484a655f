"""`everlearn check-env`: good envs get OK, broken ones get their fault named with its fix."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.scenarios.check import check, check_task, parse_kwargs
from everlearn.scenarios.task import Task

USER_ENVS = Path(__file__).parents[1] / "scenarios" / "user_envs"


class Good(gym.Env):
    """A well-behaved env the broken ones below each break in one way."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._steps = 0
        return self._obs(), {}

    def step(self, action):
        self._steps += 1
        return self._obs(), 1.0, False, self._steps >= 50, {}


class LeavesItsSpace(Good):
    def step(self, action):
        obs, *rest = super().step(action)
        return obs + np.float32(3.0 * (self._steps > 5)), *rest


class NotSeeded(Good):
    def _obs(self) -> np.ndarray:
        return np.random.uniform(-0.5, 0.5, 2).astype(np.float32)  # not self.np_random


class NeverEnds(Good):
    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, False, info


class DictObservations(Good):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (2,),
                                                                      np.float32)})

    def _obs(self):
        return {"x": super()._obs()}


def _faults(env_class) -> list[str]:
    result = check_task(Task(env_class.__name__, env_class.__name__, env_factory=env_class))
    return [str(f) for f in result.faults]


def test_good_envs_are_ok(monkeypatch):
    assert _faults(Good) == []
    [cartpole] = check("CartPole-v1")
    assert cartpole.ok and cartpole.path == "gymnasium", cartpole.lines()
    assert cartpole.lines()[0] == "CartPole-v1 (gymnasium): OK"
    monkeypatch.syspath_prepend(str(USER_ENVS))  # the user's own env, from their own file
    [room] = check("room:Room", {"loss": 0.3})
    assert room.ok, room.lines()
    monkeypatch.chdir(USER_ENVS)  # a scenario file: each distinct env once
    assert [(r.env, r.ok) for r in check("thermostat.yaml")] == [
        ('room:Room {"loss": 0.05}', True), ('room:Room {"loss": 0.1}', True)]
    [functional] = check("gymnax:CartPole-v1")  # gymnax only: its functional version
    assert functional.ok and functional.path == "jax", functional.lines()


def test_observations_outside_the_space_are_named():
    [fault] = _faults(LeavesItsSpace)
    assert "observation at step 6 leaves the observation space" in fault
    assert "entry 0" in fault and "widen the space's low/high" in fault


def test_nondeterminism_under_a_seed_is_named():
    faults = _faults(NotSeeded)
    ours = [f for f in faults if f.startswith("not deterministic under a seed")]
    assert ours and "self.np_random" in ours[0], faults
    # Gymnasium's checker finds it too, and says so in its own words
    assert any(f.startswith("Gymnasium's env checker failed") for f in faults), faults


def test_an_episode_that_never_ends_is_named():
    [fault] = _faults(NeverEnds)
    assert "no episode ended within 10,000 random steps" in fault
    assert "add a time limit" in fault and "TimeLimit" in fault


def test_an_unsupported_space_is_named():
    [fault] = _faults(DictObservations)
    assert fault.startswith("unsupported space:") and "Dict" in fault
    assert "FlattenObservation" in fault


def test_kwargs_are_json_or_key_value():
    assert parse_kwargs(['{"a": 1, "b": "x"}', "c=0.5", "d=true", "e=hot"]) == {
        "a": 1, "b": "x", "c": 0.5, "d": True, "e": "hot"}
    with pytest.raises(ValueError, match="key=value"):
        parse_kwargs(["loss"])


def test_the_command_gives_a_verdict_and_an_exit_code():
    runner = CliRunner()
    good = runner.invoke(app, ["check-env", "CartPole-v1"])
    assert good.exit_code == 0 and "CartPole-v1 (gymnasium): OK" in good.output
    broken = runner.invoke(app, ["check-env", f"{__name__}:NeverEnds"])
    assert broken.exit_code == 1 and "1 problem" in broken.output
    assert "add a time limit" in broken.output
    unknown = runner.invoke(app, ["check-env", "NoSuchEnv-v0"])
    assert unknown.exit_code == 2 and "unknown environment 'NoSuchEnv-v0'" in unknown.output
