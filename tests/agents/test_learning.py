"""Learning bars on stationary CartPole-v1 (functional path, 8 vmapped seeds, short budgets).

A fixed seed does not give the same curve on every machine: XLA emits different code for a
different CPU model or a different number of CPU devices (everlearn shows one per core and
splits the seed axis across them), and a few float differences grow into a different run. So
each test trains 8 seeds at once and asserts on their MEDIAN, against a bar set well below the
medians measured on several disjoint seed sets (0-7, 8-15, 16-23, 24-31), with both the default
device count (2) and `JAX_NUM_CPU_DEVICES=1`, and far above a random policy (about 22). Each
evaluation is the mean greedy return of 10 episodes per seed. Measured 2026-11-30 on a 2-core
x86_64 CPU; the numbers are in each test's docstring. "P(fail)" there is the chance that 8
seeds drawn from the 64 measured per-seed scores have a median under the bar (bootstrap): an
estimate of how likely another machine's code is to fail the bar while the agent is fine.
"""

import numpy as np

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.scenarios import get_scenario
from everlearn.training.functional import FunctionalTrainer

SEEDS = list(range(8))


def _curves(agent_name: str, segment_steps: int, segments: int, **overrides) -> np.ndarray:
    """Greedy return per evaluation (one after each segment) and seed: float[segments, seeds]."""
    config = AGENTS[agent_name].config(**overrides)
    agent = make_agent(agent_name, config, EnvSpec(4, 2))
    trainer = FunctionalTrainer(get_scenario("cartpole-stationary"), agent,
                                segment_steps // agent.steps_per_update, eval_episodes=10)
    state = trainer.init(SEEDS)
    curves = []
    for segment in range(1, segments + 1):
        state, _ = trainer.train_segment(state, 0)
        curves.append(trainer.evaluate(state, SEEDS, segment)[:, 0])
    return np.array(curves)


def test_ppo_learns_cartpole_within_50k_steps():
    """Default PPO (8 envs x 32 steps = 256 steps per update), 5 segments of 10,240 steps =
    51,200 steps; each seed's score is its last evaluation. Bar: median >= 400.

    Measured (score per seed at 51k steps; medians of seeds 0-7, 8-15, 16-23, 24-31):
      2 devices: medians 500, 500, 500, 500; per-seed 500 to 500
      1 device:  medians 500, 500, 500, 500; per-seed 356 to 500
      P(fail) < 1e-5. The medians are already 500 at 31k steps (per-seed 93 to 500); by 100k
      steps (the former budget) they stay at 500.
    15 s on 2 cores, 18 s with JAX_NUM_CPU_DEVICES=1 (3 seeds at 100k steps took 18 s).
    """
    curves = _curves("ppo", segment_steps=10_240, segments=5)
    scores = curves[-1]
    assert np.median(scores) >= 400, (
        f"PPO median return at 51k steps {np.median(scores):.1f} < 400; per seed "
        f"{scores.round(1)}; medians by segment {np.median(curves, axis=1).round(1)}")


def test_dqn_learns_cartpole_within_60k_steps():
    """DQN with [64, 64] networks (the default [256, 256] took 130 s for 3 seeds), 10 segments
    of 6,144 steps = 61,440 steps. DQN's greedy return swings from one evaluation to the next
    (a learned policy collapses for a while and recovers), so each seed's score is the mean of
    its last two evaluations (55k and 61k steps, 20 episodes). Bar: median >= 250.

    Measured (score per seed; medians of seeds 0-7, 8-15, 16-23, 24-31):
      2 devices: medians 486, 368, 344, 443; per-seed 118 to 500
      1 device:  medians 500, 423, 500, 455; per-seed 186 to 500
      P(fail) ~3e-5 (0.0006 at a bar of 300). Scored on the last evaluation alone, the medians
      are 384 to 500 and P(fail) 0.004. Before learning (scores at 31k and 37k steps) the
      medians are 126 to 190, so the bar tells learning from not learning.
    30 s on 2 cores, 52 s with JAX_NUM_CPU_DEVICES=1.
    """
    curves = _curves("dqn", segment_steps=6_144, segments=10, hidden_sizes=(64, 64))
    scores = curves[-2:].mean(axis=0)
    assert np.median(scores) >= 250, (
        f"DQN median score (mean return at 55k and 61k steps) {np.median(scores):.1f} < 250; "
        f"per seed {scores.round(1)}; medians by segment {np.median(curves, axis=1).round(1)}")
