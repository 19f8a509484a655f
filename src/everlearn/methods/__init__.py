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

from everlearn.methods.agem import AGEMConfig, make_agem
from everlearn.methods.base import (
    OFF_POLICY,
    POLICY_NETWORK,
    SQUASHED_GAUSSIAN,
    AgentView,
    DataSource,
    Hooks,
    Method,
)
from everlearn.methods.bc_replay import (
    BCReplayConfig,
    BCReplayEndOfTaskConfig,
    make_bc_replay,
    make_bc_replay_end_of_task,
)
from everlearn.methods.continual_backprop import (
    ContinualBackpropConfig,
    make_continual_backprop,
)
from everlearn.methods.cw_regularisation import (
    CWEWCConfig,
    CWL2Config,
    CWMASConfig,
    make_cw_ewc,
    make_cw_l2,
    make_cw_mas,
)
from everlearn.methods.ewc import EWCConfig, OnlineEWCConfig, make_ewc, make_online_ewc
from everlearn.methods.jsrl import JSRLConfig, make_jsrl, with_horizon
from everlearn.methods.l2_init import L2InitConfig, make_l2_init
from everlearn.methods.mas import MASConfig, make_mas
from everlearn.methods.offline_mix import OfflineMixConfig, data_source, make_offline_mix
from everlearn.methods.packnet import PackNetConfig, make_packnet
from everlearn.methods.redo import ReDoConfig, make_redo
from everlearn.methods.replay import BalancedReplayConfig, ReplayConfig, make_replay
from everlearn.methods.replay_selective import (
    SelectiveReplayConfig,
    make_replay_selective,
)
from everlearn.methods.shrink_perturb import (
    PeriodicShrinkPerturbConfig,
    ShrinkPerturbConfig,
    make_shrink_perturb,
)
from everlearn.methods.task_identity import (
    TaskIdentityConfig,
    make_multi_head,
    make_task_id_input,
)
from everlearn.methods.upgd import UPGDConfig, make_upgd


class MethodEntry(NamedTuple):
    config: type[BaseModel]
    make: Callable[[BaseModel, AgentView], Method]
    summary: str
    # The agent capabilities it needs (empty: it works with every agent).
    requires: frozenset[str] = frozenset()
    needs_boundaries: bool = False
    needs_task_ids: bool = False
    # How the method shapes the agent's input and networks: the task one-hot appended to the
    # observations, and one output head per task.
    task_id_input: bool = False
    head_per_task: bool = False
    # Settings it derives from the scenario where they are unset: (config, each task's episode
    # length, None where the env has none) -> config.
    from_scenario: Callable[[BaseModel, list[int | None]], BaseModel] | None = None
    # A method that takes data: the source its config names (`base.DataSource`). The run
    # checks and makes that data, and its trainer puts it in the method's state for each
    # training segment (`everlearn.training.offline`).
    data_source: Callable[[BaseModel], DataSource] | None = None


METHODS: dict[str, MethodEntry] = {
    "replay": MethodEntry(ReplayConfig, make_replay, "mix a reservoir sample of all past "
                          "transitions into every minibatch", requires=frozenset({OFF_POLICY})),
    "replay_balanced": MethodEntry(BalancedReplayConfig, make_replay, "replay with an equal "
                                   "share of the memory per task", requires=frozenset({OFF_POLICY}),
                                   needs_boundaries=True),
    "replay_selective": MethodEntry(SelectiveReplayConfig, make_replay_selective, "at each "
                                    "task end keep the transitions the learned policy agrees "
                                    "with, and mix them into every minibatch",
                                    requires=frozenset({OFF_POLICY}), needs_boundaries=True),
    "offline_mix": MethodEntry(OfflineMixConfig, make_offline_mix, "draw a fixed share of "
                               "every minibatch from a dataset or an earlier run's buffer "
                               "(RLPD-style symmetric sampling, RaE)",
                               requires=frozenset({OFF_POLICY}), data_source=data_source),
    "jsrl": MethodEntry(JSRLConfig, make_jsrl, "a guide (the policy at the task's start) "
                        "acts for the first h steps of each episode; h shrinks as the returns "
                        "hold up (Jump-Start RL)", requires=frozenset({OFF_POLICY}),
                        from_scenario=with_horizon,
                        needs_boundaries=True),
    "bc_replay": MethodEntry(BCReplayConfig, make_bc_replay, "clone the acting policy's "
                             "stored outputs on a reservoir of past states (CLEAR)"),
    "bc_replay_end_of_task": MethodEntry(BCReplayEndOfTaskConfig, make_bc_replay_end_of_task,
                                         "distil each finished task's end-of-task policy on "
                                         "its stored states", needs_boundaries=True),
    "ewc": MethodEntry(EWCConfig, make_ewc, "pull weights towards each finished task's "
                       "values, weighted by that task's Fisher", needs_boundaries=True),
    "online_ewc": MethodEntry(OnlineEWCConfig, make_online_ewc, "pull weights towards the "
                              "last task end, weighted by a running Fisher",
                              needs_boundaries=True),
    "mas": MethodEntry(MASConfig, make_mas, "pull weights towards the last task end, "
                       "weighted by the output's sensitivity to them", needs_boundaries=True),
    # Continual World's L2, EWC and MAS (`cw_regularisation.py`): the acting network (its
    # heads excepted where there is one per task), anchored at the last task end, CW's
    # coefficients.
    "cw_l2": MethodEntry(CWL2Config, make_cw_l2, "pull the acting network's common weights "
                         "towards the last task end, uniformly (Continual World's L2)",
                         requires=frozenset({POLICY_NETWORK}), needs_boundaries=True),
    "cw_ewc": MethodEntry(CWEWCConfig, make_cw_ewc, "pull the actor's common weights towards "
                          "the last task end, weighted by the squashed Gaussian's summed Fisher "
                          "(Continual World's EWC)", requires=frozenset({SQUASHED_GAUSSIAN}),
                          needs_boundaries=True),
    "cw_mas": MethodEntry(CWMASConfig, make_cw_mas, "pull the actor's common weights towards "
                          "the last task end, weighted by the squashed Gaussian's summed "
                          "output sensitivity (Continual World's MAS)",
                          requires=frozenset({SQUASHED_GAUSSIAN}), needs_boundaries=True),
    "agem": MethodEntry(AGEMConfig, make_agem,
                        "project out gradients that raise the loss on earlier tasks' memory",
                        needs_boundaries=True),
    "l2_init": MethodEntry(L2InitConfig, make_l2_init,
                           "pull weights towards their initial values"),
    # PackNet packs the network each agent acts with (`AgentView.policy_network`), which of
    # the offline agents only cql_dqn (a DQN) names yet.
    "packnet": MethodEntry(PackNetConfig, make_packnet,
                           "prune after each task and freeze the weights it keeps",
                           requires=frozenset({POLICY_NETWORK}), needs_boundaries=True),
    "multi_head": MethodEntry(TaskIdentityConfig, make_multi_head,
                              "one output head per task, picked by the task id",
                              needs_task_ids=True, task_id_input=True, head_per_task=True),
    "task_id_input": MethodEntry(TaskIdentityConfig, make_task_id_input,
                                 "give the agent the task id (one-hot input)",
                                 needs_task_ids=True, task_id_input=True),
    "redo": MethodEntry(ReDoConfig, make_redo, "re-initialise dormant neurons every few "
                        "updates (incoming weights fresh, outgoing zero)"),
    "shrink_perturb": MethodEntry(ShrinkPerturbConfig, make_shrink_perturb, "at each task "
                                  "start, shrink the weights and add fresh-init noise",
                                  needs_boundaries=True),
    "shrink_perturb_periodic": MethodEntry(PeriodicShrinkPerturbConfig, make_shrink_perturb,
                                           "shrink the weights and add fresh-init noise "
                                           "every few updates"),
    "continual_backprop": MethodEntry(ContinualBackpropConfig, make_continual_backprop,
                                      "keep replacing the least useful mature neurons with "
                                      "fresh ones"),
    "upgd": MethodEntry(UPGDConfig, make_upgd, "gate each weight's step by its running "
                        "utility and perturb the unimportant weights with noise"),
}


def method_builders(names: list[str], configs: dict[str, BaseModel]
                    ) -> list[Callable[[AgentView], Method]]:
    """What an agent constructor takes: one `view -> Method` per chosen method, in order."""
    return [partial(METHODS[name].make, configs[name]) for name in names]


def data_sources(configs: dict[str, BaseModel]) -> dict[str, DataSource]:
    """The data each chosen method that takes data asks for, by method name (`configs`: the
    chosen methods' configs)."""
    return {name: METHODS[name].data_source(config) for name, config in configs.items()
            if METHODS[name].data_source is not None}


__all__ = ["METHODS", "DataSource", "data_sources", "AgentView", "Hooks", "Method", "MethodEntry", "method_builders"]
