"""Run a continual scenario on your own Gymnasium env (the Gymnasium path).

`Tank` below is written as any Gymnasium user would write an env: everlearn reads its spaces
(a 2-dimensional observation, 3 discrete actions) from it, measures a random policy's return
and trains single-task references for the reference return, so no score is typed by hand.
The second task is a leakier tank, which needs the inflow valve open more often.

    .venv/bin/python examples/own_gymnasium_env.py

The same scenario as a file: `env: "own_gymnasium_env:Tank"` with `kwargs: {leak: 0.3}` (see
docs/guide.md, "Bring your own environment").
"""

from pathlib import Path

import gymnasium as gym
import numpy as np

import everlearn
from everlearn.scenarios import Scenario, Task, register_scenario


class Tank(gym.Env):
    """Keep a water tank at level 0.5: the valve lets in nothing, a little or a lot; the tank
    leaks a fraction `leak` of its level per step. Reward: minus the distance to 0.5."""

    def __init__(self, leak: float = 0.1):
        self.leak = leak
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)  # level, inflow
        self.action_space = gym.spaces.Discrete(3)
        self.level, self.inflow, self.steps = 0.0, 0.0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.level, self.inflow, self.steps = float(self.np_random.uniform(0.0, 1.0)), 0.0, 0
        return np.array([self.level, self.inflow], np.float32), {}

    def step(self, action):
        self.inflow = (0.0, 0.05, 0.2)[int(action)]
        self.level = float(np.clip(self.level * (1 - self.leak) + self.inflow, 0.0, 1.0))
        self.steps += 1
        obs = np.array([self.level, self.inflow], np.float32)
        return obs, -abs(self.level - 0.5), False, self.steps >= 200, {}


@register_scenario("my-tanks")
def my_scenario() -> Scenario:
    return Scenario(
        name="my-tanks",
        description="a user's own env: a tank leaking 10%, then 30% per step",
        tasks=(Task("tight", "Tank", env_factory=lambda: Tank(leak=0.1)),
               Task("leaky", "Tank", env_factory=lambda: Tank(leak=0.3))),
        steps_per_task=20_000,
    )


if __name__ == "__main__":
    result = everlearn.run("my-tanks", "ppo", seeds="0-1", settings={"evals_per_task": 4},
                           out=Path("runs") / "example-own-env", backend="gymnasium")
    print(result.aggregate)  # IQM and 95% CI over the seeds, one row per metric
    print(f"open {result.report}")
