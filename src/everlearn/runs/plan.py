"""The plan of a run: its config, its scenario with scores, and the trainers that run it, built
once per shape and shared by the runs of one process; and a run directory loaded as a plan and
an agent state."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.core.checkpoint import (
    NoCheckpoint,
    load_checkpoint,
    load_checkpoint_file,
)
from everlearn.core.errors import ConfigError
from everlearn.data.datasets import dataset_buffers, method_data
from everlearn.methods import METHODS, data_sources, method_builders
from everlearn.methods.replay import TRANSITION_KEYS
from everlearn.runs.checks import check_budget, check_config
from everlearn.runs.config import RunConfig, build_config
from everlearn.scenarios import Scenario
from everlearn.scenarios.resolve import ResolvedScenario, resolve
from everlearn.training.functional import FunctionalTrainer
from everlearn.training.gymnasium import GymnasiumTrainer
from everlearn.training.offline import DataFunctionalTrainer, DataGymnasiumTrainer


@dataclass
class RunPlan:
    config: RunConfig
    # The scenario with the run's normalisation scores (given, success rates, or measured):
    # what everything that reads scores (the loop, the summary, the report) reads.
    scenario: Scenario
    # Its envs' spaces, layout and success keys, read once. Trainers are built from
    # `resolved.scenario`, the registered one: runs with other scores share them, and no
    # trainer reads a score.
    resolved: ResolvedScenario
    trainer: FunctionalTrainer | GymnasiumTrainer
    segment_steps: int  # env steps per seed between evaluations
    # The same agent without methods: single-task references measure a plain agent.
    reference_trainer: FunctionalTrainer | GymnasiumTrainer

    @property
    def total_segments(self) -> int:
        return self.scenario.num_tasks * self.config.evals_per_task

    @property
    def metrics_convention(self) -> str:
        return self.config.metrics or self.scenario.metrics

    def task_of(self, segment: int) -> int:
        """Task trained during segment `segment` (1-based: segment k ends at eval k)."""
        return (segment - 1) // self.config.evals_per_task


def make_plan(config: RunConfig, scores: dict | None = None) -> RunPlan:
    """Check that the run can go, and build its trainers; `scores`: the normalisation scores
    a run measured before (run.json on resume), used where the scenario gives none."""
    resolved = resolve(config.scenario, config.backend)
    scenario = check_config(config, scores)
    steps_per_task = config.steps_per_task or scenario.steps_per_task
    agent_json = config.agent_config().model_dump_json()
    methods_json = json.dumps([[n, c.model_dump(mode="json")]
                               for n, c in config.method_configs().items()])
    shape = (resolved, config.agent, agent_json, steps_per_task / config.evals_per_task,
             config.eval_episodes)
    trainer = _trainer(*shape, methods_json)
    plan = RunPlan(config, scenario, resolved, trainer,
                   trainer.iterations * trainer.agent.steps_per_update,
                   reference_trainer=_trainer(*shape, "[]"))
    check_budget(plan, steps_per_task)
    return plan


def budget_note(plan: RunPlan) -> str | None:
    """One line where the run's steps per task differ from the asked ones: an evaluation
    comes after a whole number of agent updates."""
    config = plan.config
    asked = config.steps_per_task or plan.scenario.steps_per_task
    runs = plan.segment_steps * config.evals_per_task
    if runs == asked:
        return None
    update = plan.trainer.agent.steps_per_update
    return (f"note: steps_per_task {asked:,} runs as {runs:,}: {config.evals_per_task} "
            f"evaluations, each after {plan.segment_steps // update} {config.agent} updates of "
            f"{update:,} env steps")


@functools.lru_cache(maxsize=8)
def _trainer(resolved: ResolvedScenario, agent_name: str, agent_json: str,
             steps_per_eval: float, eval_episodes: int,
             methods_json: str) -> FunctionalTrainer | GymnasiumTrainer:
    """Trainers are cached so that runs with the same shapes in one process (tests, resume,
    sweeps) share compiled programs instead of compiling them again."""
    scenario, layout, backend = resolved.scenario, resolved.layout, resolved.backend
    agent_config = AGENTS[agent_name].config.model_validate_json(agent_json)
    methods = [(name, METHODS[name].config.model_validate(data))
               for name, data in json.loads(methods_json)]
    methods = [(name, METHODS[name].from_scenario(method, resolved.episode_limits)
                if METHODS[name].from_scenario else method) for name, method in methods]
    task_ids = any(METHODS[name].task_id_input for name, _ in methods)
    num_tasks = scenario.num_tasks
    obs_dim = (layout.obs_size + (num_tasks if task_ids else 0)
               + (layout.num_actions if layout.masked else 0))
    spec = EnvSpec(obs_dim, layout.num_actions, num_tasks,
                   heads=num_tasks if any(METHODS[name].head_per_task for name, _ in methods) else 1,
                   continuous=layout.continuous,
                   image_shape=layout.obs_shape if layout.image else (), masked=layout.masked)
    agent = make_agent(agent_name, agent_config, spec,
                       method_builders([n for n, _ in methods], dict(methods)))
    iterations = max(1, round(steps_per_eval / agent.steps_per_update))
    data = {}  # the datasets of offline tasks and of methods that take data, loaded lazily
    sources = data_sources(dict(methods))
    if scenario.offline or sources:
        spaces = list(resolved.spaces)
        data = {"load_datasets": functools.partial(dataset_buffers, scenario, spaces, layout,
                                                   task_ids),
                "load_method_data": functools.partial(
                    method_data, sources, scenario, spaces, layout, task_ids,
                    agent.view, run_buffer_rows)}
    if backend == "jax":
        trainer = DataFunctionalTrainer if data else FunctionalTrainer
        return trainer(scenario, agent, iterations, eval_episodes, task_ids=task_ids,
                       layout=layout, **data)
    trainer = DataGymnasiumTrainer if data else GymnasiumTrainer
    return trainer(scenario, agent, iterations, eval_episodes, task_ids=task_ids,
                   layout=layout, success_keys=list(resolved.success_keys), **data)


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml)")
    try:
        return build_config(path)  # YAML and validation errors: one line naming the file
    except ConfigError as e:
        raise ConfigError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def load_run(run_dir: str | Path, seed_index: int = 0, checkpoint: Path | None = None):
    """A run directory's plan, the state of seed `seed_index` (the agent state) in its newest
    checkpoint (or in `checkpoint`, one of its checkpoint files) and that checkpoint's index
    entry; refuses a missing checkpoint or seed in one line."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    plan = make_plan(config, info.get("normalisation"))
    if not 0 <= seed_index < len(config.seeds):
        raise ValueError(f"seed index {seed_index}: run '{run_dir}' has {len(config.seeds)} "
                         f"seeds; use 0..{len(config.seeds) - 1}")
    try:
        template = plan.trainer.init(config.seeds)
        state, index = (load_checkpoint_file(checkpoint, template) if checkpoint is not None
                        else load_checkpoint(run_dir / "checkpoints", template))
    except NoCheckpoint:
        raise ValueError(f"run '{run_dir}' has no checkpoint yet; let it reach its first "
                         "evaluation") from None
    return plan, jax.tree.map(lambda x: x[seed_index], state.agent), index


def run_buffer_rows(run_dir: str, seed_index: int) -> dict[str, np.ndarray]:
    """The filled rows of seed `seed_index`'s replay buffer in a run's newest checkpoint."""
    _, agent_state, _ = load_run(run_dir, seed_index)
    buffer = getattr(agent_state, "buffer", None)
    if buffer is None:
        raise ValueError(f"run '{run_dir}' has no replay buffer (an on-policy agent); mix an "
                         "off-policy agent's run, or record a dataset")
    n = int(buffer.size)
    return {k: np.asarray(getattr(buffer, k)[:n]) for k in TRANSITION_KEYS}

