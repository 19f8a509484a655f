"""CQL for discrete actions (Kumar, Zhou, Tucker & Levine, 2020, "Conservative Q-Learning for
Offline Reinforcement Learning", section 4 and the Atari experiments): CQL(H) on a DQN.

The critic's loss adds to the TD error the conservative term of CQL(H), which for discrete
actions is exact (no sampling):

    min_q_weight · ( mean_s log Σ_a exp Q(s, a)  −  mean_(s,a)∈D Q(s, a) )

It pushes Q down on every action in proportion to its softmax weight and up on the data's
action, so the greedy policy cannot pick an action the data never tried on the strength of an
overestimate. The agent is everlearn's DQN (`everlearn.agents.dqn`, the term switched on by
`min_q_weight`) with the authors' Atari settings as defaults; it learns from datasets offline
(`Agent.learn`) and, like every offline agent here, online as well.

Defaults and their sources (aviralkumar2907/CQL, commit 25c9984, `atari/`: the CQL term in
`batch_rl/multi_head/quantile_agent.py`, the settings in `batch_rl/fixed_replay/configs/
quantile.gin`, the weight in `atari/README.md`'s command for the 1% data): min_q_weight 1.0
(the paper also reports 4.0 and 5.0 on some settings); Adam with learning rate 5e-5 and ε
3.125e-4, no gradient clipping; batch 32; γ 0.99, one-step targets; the target network copied
every 8,000 agent steps, i.e. 2,000 gradient steps (one gradient step per `update_period` 4 env
steps, so online `train_every` 4 and `gradient_steps` 1); the target's own argmax picks the
next action (no double-Q); a Huber loss (κ = 1, as the quantile Huber loss of the authors'
backbone); ε-greedy exploration online decaying to 0.01 over 250,000 steps, from 20,000 stored
transitions.

Deliberate differences from the authors' code:
- Backbone: DQN's expected Q-values, not QR-DQN's 200 quantiles. The conservative term is the
  authors' (they too take it on the mean of the quantiles), the TD loss is the Huber loss on
  the expected value rather than the quantile Huber loss. d3rlpy's `DiscreteCQL` also puts the
  term on a DQN (a double DQN there, with the same α = 1).
- Network: everlearn's MLP (default [256, 256], ReLU) for vector observations, and for image
  observations the torso `cnn` picks (Mnih et al.'s Atari CNN for 84×84 frames, the MinAtar
  one for 10×10), where the authors used the Atari CNN only.
- Evaluation is greedy (ε = 0), as for every everlearn agent; the authors evaluate at ε 0.001.
- Uniform replay from the whole dataset (the authors' `replay_scheme = 'uniform'` as well).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import PositiveFloat

from everlearn.agents.common import Agent, EnvSpec
from everlearn.agents.dqn import DQNConfig, make_dqn
from everlearn.core.ranges import (
    Count,
    Fraction,
    LearningRate,
    NonNegative,
    NonNegativeCount,
    Positive,
)
from everlearn.methods.base import AgentView, Method


class CQLDQNConfig(DQNConfig):
    """DQN's settings, with the authors' Atari defaults (module docstring)."""

    min_q_weight: NonNegative = 1.0
    learning_rate: LearningRate = 5e-5
    adam_eps: PositiveFloat = 3.125e-4
    max_grad_norm: Positive | None = None
    batch_size: Count = 32
    target_update_every: Count = 2_000  # gradient steps: 8,000 agent steps at train_every 4
    double: bool = False
    loss: Literal["mse", "huber"] = "huber"
    train_every: Count = 4
    gradient_steps: Count = 1
    learning_starts: NonNegativeCount = 20_000
    exploration_steps: Count = 250_000
    epsilon_end: Fraction = 0.01


def make_cql_dqn(config: CQLDQNConfig, spec: EnvSpec,
                 methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    return make_dqn(config, spec, methods, name="cql_dqn")
