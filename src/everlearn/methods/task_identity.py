"""Task identity given to the agent: `task_id_input` and `multi_head`.

- `task_id_input`: the task id, as a one-hot, is appended to every observation, so one network
  can condition on the task (the "task-id input" baseline of continual-RL benchmarks, e.g.
  Wołczyk et al., 2021, "Continual World").
- `multi_head`: the hidden layers are shared and every network gets one output layer per task,
  picked by the task id (Li & Hoiem, 2016, "Learning without Forgetting", multi-head setting;
  Wołczyk et al., 2021). Output layers of earlier tasks receive no gradient from later tasks.

Both change what the agent sees and how its networks are shaped, not how it learns, so they have
no hooks: the run gives the trainer the task one-hot and the agent `EnvSpec.heads`. Both need
the scenario to show task ids (evaluation on task i then uses head i). Any agent.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from everlearn.methods.base import AgentView, Method


class TaskIdentityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def make_task_id_input(config: TaskIdentityConfig, view: AgentView) -> Method:
    return Method("task_id_input")


def make_multi_head(config: TaskIdentityConfig, view: AgentView) -> Method:
    return Method("multi_head")
