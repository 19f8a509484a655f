"""Continual-learning methods: one file per method; `METHODS` maps a name to its entry.

Each entry gives the method's pydantic config, its constructor `make(config, view) -> Method`
(see `base.py` for the hooks), the agents it supports and whether it needs the scenario to show
task boundaries or task ids. Add a method: write its file, add one `MethodEntry` here; the CLI
(`--method NAME`, `--set NAME.key=value`), configs, checkpoints and docs pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from pydantic import BaseModel

from everlearn.methods.base import AgentView, Hooks, Method
from everlearn.methods.l2_init import L2InitConfig, make_l2_init
from everlearn.methods.task_identity import (TaskIdentityConfig, make_multi_head,
                                             make_task_id_input)


class MethodEntry(NamedTuple):
    config: type[BaseModel]
    make: Callable[[BaseModel, AgentView], Method]
    summary: str
    agents: tuple[str, ...] = ("ppo", "dqn")
    needs_boundaries: bool = False
    needs_task_ids: bool = False
    # How the method shapes the agent's input and networks: "task_input" (task one-hot appended
    # to observations), "multi_head" (that, plus one output head per task), or None.
    network: str | None = None


METHODS: dict[str, MethodEntry] = {
    "l2_init": MethodEntry(L2InitConfig, make_l2_init,
                           "pull weights towards their initial values"),
    "task_id_input": MethodEntry(TaskIdentityConfig, make_task_id_input,
                                 "give the agent the task id (one-hot input)",
                                 needs_task_ids=True, network="task_input"),
    "multi_head": MethodEntry(TaskIdentityConfig, make_multi_head,
                              "one output head per task, picked by the task id",
                              needs_task_ids=True, network="multi_head"),
}


def method_builders(names: list[str], configs: dict[str, BaseModel]
                    ) -> list[Callable[[AgentView], Method]]:
    """What an agent constructor takes: one `view -> Method` per chosen method, in order."""
    return [partial(METHODS[name].make, configs[name]) for name in names]


__all__ = ["METHODS", "AgentView", "Hooks", "Method", "MethodEntry", "method_builders"]
