"""An env that fails on demand: each instance with `tilt == FAULT["tilt"]` raises (`mode`
"raise") or returns NaN rewards (`mode` "nan") once it has taken `FAULT["after"]` steps since
`FAULT["generation"]` last changed; `mode` None: it never fails. Tests set `FAULT` (the vector
envs are synchronous, so the module is shared). Counting per instance tells a run's training
envs (hundreds of steps per task) from its evaluation envs (one short episode per evaluation)."""

import gymnasium as gym
import numpy as np

FAULT = {"mode": None, "tilt": None, "after": 0, "generation": 0}


class Faulty(gym.Env):
    """Reach either end of a line of 5 cells; reward 1 per step alive, 20 steps at most."""

    def __init__(self, tilt: float = 0.0):
        self.tilt = tilt
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = self.steps = 0
        self.generation, self.lifetime = None, 0

    def _obs(self):
        return np.array([self.position / 2, self.tilt], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(-1, 2))
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        if self.generation != FAULT["generation"]:
            self.generation, self.lifetime = FAULT["generation"], 0
        self.lifetime += 1
        failing = (FAULT["mode"] is not None and self.tilt == FAULT["tilt"]
                   and self.lifetime > FAULT["after"])
        if failing and FAULT["mode"] == "raise":
            raise RuntimeError("sensor offline")
        self.position += 1 if action == 1 else -1
        self.steps += 1
        reward = float("nan") if failing else 1.0
        return self._obs(), reward, abs(self.position) > 2, self.steps >= 20, {}
