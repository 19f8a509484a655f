"""A thermostat, written as any Gymnasium user would write an env (it knows nothing of everlearn).

The room loses heat to the outside at rate `loss` per step; the heater is off, low or high.
Observation: (room temperature, outside temperature) in °C. Reward: -|room - target|.
A mildly insulated room (small `loss`) needs the heater on low now and then; a draughty one
(large `loss`) needs it on high, so a policy for one room is wrong for the other.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

TARGET = 21.0
HEAT = (0.0, 1.5, 10.0)  # °C per step for off, low, high
MAX_STEPS = 200
LOW, HIGH = -30.0, 60.0  # the temperatures the room can show


class Room(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, loss: float = 0.1):
        if not 0.0 < loss < 1.0:
            raise ValueError(f"loss should be in (0, 1), got {loss}")
        self.loss = loss
        self.observation_space = gym.spaces.Box(LOW, HIGH, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(HEAT))
        self._temperature = self._outside = 0.0
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._temperature, self._outside], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._outside = float(self.np_random.uniform(-5.0, 15.0))
        self._temperature = float(self.np_random.uniform(10.0, 25.0))
        self._steps = 0
        return self._obs(), {}

    def step(self, action):
        drift = float(self.np_random.normal(0.0, 0.1))  # doors opening, sunshine
        change = HEAT[int(action)] - self.loss * (self._temperature - self._outside) + drift
        self._temperature = float(np.clip(self._temperature + change, LOW, HIGH))
        self._steps += 1
        reward = -abs(self._temperature - TARGET)
        truncated = self._steps >= MAX_STEPS  # the time limit is the env's own
        return self._obs(), reward, False, truncated, {}
