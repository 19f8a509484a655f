"""A corridor that reports success as Meta-World does (`info["success"]` at every step)."""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk from cell 0 to cell `length` (actions: left, right); 50 steps at most."""

    def __init__(self, length: int = 4):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = self.steps = 0

    def _obs(self):
        return np.array([self.position / self.length], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.steps = 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0, self.length))
        self.steps += 1
        at_goal = self.position == self.length
        return self._obs(), float(at_goal), at_goal, self.steps >= 50, {"success": at_goal}
