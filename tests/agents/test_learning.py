"""Learning bars on stationary CartPole-v1 (functional path, fixed seeds, short budgets).

Each evaluation is the mean greedy return of 10 episodes per seed; the bar is on the mean over
seeds. These are the slowest tests in the suite (about a minute together on 2 cores).
"""

import numpy as np

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.runs.functional import FunctionalTrainer
from everlearn.scenarios import get_scenario


def _curve(agent_name: str, seeds: list[int], segment_steps: int, segments: int,
           **overrides) -> np.ndarray:
    config = AGENTS[agent_name].config(**overrides)
    agent = make_agent(agent_name, config, EnvSpec(4, 2))
    trainer = FunctionalTrainer(get_scenario("cartpole-stationary"), agent,
                                segment_steps // agent.steps_per_update, eval_episodes=10)
    state = trainer.init(seeds)
    curve = []
    for segment in range(1, segments + 1):
        state, _ = trainer.train_segment(state, 0)
        curve.append(trainer.evaluate(state, seeds, segment)[:, 0].mean())
    return np.array(curve)


def test_ppo_solves_cartpole_within_100k_steps():
    # 8 envs x 32 steps = 256 steps per update; 10 segments of 10,240 steps = 102,400 steps.
    curve = _curve("ppo", seeds=[0, 1, 2], segment_steps=10_240, segments=10)
    assert curve[-1] >= 475, f"PPO mean return by 100k steps: {curve.round(1)}"


def test_dqn_solves_cartpole_within_60k_steps():
    curve = _curve("dqn", seeds=[0, 1, 2], segment_steps=6_144, segments=10)
    assert curve[-1] >= 475, f"DQN mean return by 60k steps: {curve.round(1)}"
