"""Agents: one file per algorithm; `AGENTS` maps a name to its config model and constructor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from pydantic import BaseModel

from everlearn.agents.common import Agent, EnvSpec
from everlearn.agents.cql import CQLConfig, make_cql
from everlearn.agents.cql_dqn import CQLDQNConfig, make_cql_dqn
from everlearn.agents.dqn import DQNConfig, make_dqn
from everlearn.agents.iql import IQLConfig, make_iql
from everlearn.agents.ppo import PPOConfig, make_ppo
from everlearn.agents.sac import SACConfig, make_sac
from everlearn.agents.td3 import TD3Config, make_td3
from everlearn.agents.td3_bc import TD3BCConfig, make_td3_bc
from everlearn.core.replay import Transition
from everlearn.methods.base import OFF_POLICY, POLICY_NETWORK, SQUASHED_GAUSSIAN


class AgentEntry(NamedTuple):
    """What the run needs to know of an agent: its config, its constructor, the actions it
    takes, whether it can learn from a dataset, and the capabilities methods may require
    (`everlearn.methods.base`: OFF_POLICY, POLICY_NETWORK, SQUASHED_GAUSSIAN)."""

    config: type[BaseModel]
    make: Callable[..., Agent]  # (config, spec, methods=()) -> Agent
    continuous: bool  # the action space it acts in: continuous (True) or discrete
    capabilities: frozenset[str] = frozenset()
    # It learns from datasets (offline tasks, `offline_mix`), not only its own fresh rollouts.
    learns_from_data: bool = True


AGENTS: dict[str, AgentEntry] = {
    "ppo": AgentEntry(PPOConfig, make_ppo, continuous=False,
                      capabilities=frozenset({POLICY_NETWORK}), learns_from_data=False),
    "dqn": AgentEntry(DQNConfig, make_dqn, continuous=False,
                      capabilities=frozenset({OFF_POLICY, POLICY_NETWORK})),
    "sac": AgentEntry(SACConfig, make_sac, continuous=True,
                      capabilities=frozenset({OFF_POLICY, POLICY_NETWORK, SQUASHED_GAUSSIAN})),
    "td3": AgentEntry(TD3Config, make_td3, continuous=True,
                      capabilities=frozenset({OFF_POLICY, POLICY_NETWORK})),
    # Offline agents (they learn from datasets through `Agent.learn`, and online as well)
    "td3_bc": AgentEntry(TD3BCConfig, make_td3_bc, continuous=True,
                         capabilities=frozenset({OFF_POLICY})),
    "iql": AgentEntry(IQLConfig, make_iql, continuous=True, capabilities=frozenset({OFF_POLICY})),
    "cql": AgentEntry(CQLConfig, make_cql, continuous=True, capabilities=frozenset({OFF_POLICY})),
    "cql_dqn": AgentEntry(CQLDQNConfig, make_cql_dqn, continuous=False,
                          capabilities=frozenset({OFF_POLICY, POLICY_NETWORK})),
}


def make_agent(name: str, config: BaseModel, spec: EnvSpec, methods: Sequence = ()) -> Agent:
    """`methods`: builders `AgentView -> Method` (`everlearn.methods.method_builders`)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent '{name}'; choose one of: {', '.join(AGENTS)}")
    return AGENTS[name].make(config, spec, methods)


__all__ = ["AGENTS", "Agent", "EnvSpec", "Transition", "make_agent"]
