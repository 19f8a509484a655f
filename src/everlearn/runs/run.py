"""A run: one agent on one scenario for a set of seeds; owns the run directory.

Run directory:
  config.yaml      the resolved config          run.json      scenario, versions, seeds
  metrics.jsonl    one line per evaluation, appended and flushed as the run goes
  checkpoints/     run state (msgpack) at each task end and every `checkpoint_every` evals
  summary.json     metrics per seed and aggregated (IQM, 95% bootstrap CI)
  report.html      the report, plus figures/*.png

The run advances in segments of `segment_steps` env steps per seed, evaluating every task after
each. `resume` reloads the newest checkpoint, drops log lines written after it, and continues:
the result equals that of an uninterrupted run with the same config.
"""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from everlearn import __version__
from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.envs.layout import Layout, scenario_layout
from everlearn.envs.sources import EnvSpaces, env_identity, gymnax_id, task_spaces
from everlearn.evaluation.metrics import (clip01, continual_world_metrics,
                                         interquartile_mean_ci, performance_matrix,
                                         summarise_seed, task_auc, task_end_evals)
from everlearn.files import atomic_write
from everlearn.methods import METHODS, method_builders
from everlearn.ranges import STEPS_MAX
from everlearn.runs.checkpoint import NoCheckpoint, load_checkpoint, save_checkpoint
from everlearn.runs.config import ConfigError, RunConfig, build_config
from everlearn.runs.failures import EnvFailed, RunStopped, divergence, write_error_log
from everlearn.runs.functional import FunctionalTrainer
from everlearn.runs.gymnasium import GymnasiumTrainer
from everlearn.runs.offline import DataFunctionalTrainer, DataGymnasiumTrainer
from everlearn.runs.lock import LOCK_NAME, run_lock
from everlearn.runs.reference import normalise_reference, reference_curves
from everlearn.runs.scores import random_scores, reference_scores, success_key
from everlearn.runs.tensorboard import TensorBoardLog, require_tensorboard
from everlearn.scenarios import Scenario, get_scenario
from everlearn.scenarios.task import Task

console = Console(stderr=True)
# Agents that learn only from their own fresh rollouts, never from a dataset.
ONLINE_ONLY_AGENTS = ("ppo",)


@dataclass
class RunPlan:
    config: RunConfig
    scenario: Scenario
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
    scenario = check_config(config, scores)
    steps_per_task = config.steps_per_task or scenario.steps_per_task
    agent_json = config.agent_config().model_dump_json()
    methods_json = json.dumps([[n, c.model_dump(mode="json")]
                               for n, c in config.method_configs().items()])
    shape = (config.scenario, config.backend, config.agent, agent_json,
             steps_per_task / config.evals_per_task, config.eval_episodes)
    trainer = _trainer(*shape, methods_json)
    plan = RunPlan(config, scenario, trainer, trainer.iterations * trainer.agent.steps_per_update,
                   reference_trainer=_trainer(*shape, "[]"))
    _check_budget(plan, steps_per_task)
    return plan


def check_config(config: RunConfig, scores: dict | None = None) -> Scenario:
    """Every reason a run cannot go that the config and scenario show, each a one-line
    `ConfigError` (`make_plan` adds the budget check, which needs the trainer); returns the
    scenario with its normalisation scores."""
    scenario = get_scenario(config.scenario)
    if config.backend == "jax":
        with_success = [t.name for t in scenario.tasks if t.success_key is not None]
        if with_success:
            raise ConfigError(f"scenario '{scenario.name}': tasks {with_success} set "
                              "success_key, but gymnax envs report no success; use --backend "
                              "gymnasium or remove success_key")
    # Tasks scored by success: the evaluator reports success rates, so the scores are 0 and 1.
    keys = success_keys_for(config.scenario, config.backend)
    if any(keys):
        given = [(t.random_score, t.reference_score) for t in scenario.tasks]
        scenario = scenario.with_scores(
            [0.0 if k else r for k, (r, _) in zip(keys, given)],
            [1.0 if k else f for k, (_, f) in zip(keys, given)])
    if scores is not None:
        scenario = scenario.with_scores(scores["random"], scores["reference"])
    if config.backend == "jax":
        lacking = [t.name for t in scenario.tasks if gymnax_id(t) is None]
        if lacking:
            which = ("its envs" if len(lacking) == scenario.num_tasks
                     else f"the envs of tasks {lacking}")
            raise ConfigError(f"scenario '{scenario.name}' runs on the Gymnasium path only: "
                              f"{which} have no functional version; use --backend gymnasium")
    layout = scenario_layout_for(config.scenario, config.backend)
    if AGENTS[config.agent].continuous != layout.continuous:
        kind = "continuous" if layout.continuous else "discrete"
        fits = [name for name, entry in AGENTS.items() if entry.continuous == layout.continuous]
        raise ConfigError(f"agent '{config.agent}' cannot act in scenario '{scenario.name}' "
                          f"({kind} actions); use {' or '.join(fits)}")
    if layout.image and layout.continuous:
        raise ConfigError(f"scenario '{scenario.name}' has image observations, which sac and "
                          "td3 do not take yet; use a vector observation or ppo/dqn")
    for name in config.methods:
        entry = METHODS[name]
        if config.agent not in entry.agents:
            raise ConfigError(f"method '{name}' does not apply to agent '{config.agent}'; it "
                              f"works with: {', '.join(entry.agents)}")
        if entry.needs_boundaries and not scenario.boundaries_visible:
            raise ConfigError(f"method '{name}' needs task boundaries, which scenario "
                              f"'{scenario.name}' hides; pick a method that needs none "
                              f"(e.g. l2_init) or a scenario that shows them")
        if entry.needs_task_ids and not scenario.task_ids_visible:
            raise ConfigError(f"method '{name}' needs task ids, which scenario "
                              f"'{scenario.name}' hides; pick another method or scenario")
    if scenario.offline or any(METHODS[name].takes_data for name in config.methods):
        _check_datasets(config, scenario)
    return scenario


def _check_datasets(config: RunConfig, scenario: Scenario) -> None:
    """Data to learn from: an agent that can learn from it, and every dataset at hand (a stored
    Minari dataset, or a built-in recipe that can be made for its task), for the offline tasks
    and for the methods that take data (`offline_mix`: exactly one source)."""
    from everlearn.data import minari_io, recipes

    if scenario.offline and config.agent in ONLINE_ONLY_AGENTS:
        fits = [name for name in AGENTS if name not in ONLINE_ONLY_AGENTS]
        raise ConfigError(f"scenario '{scenario.name}' learns from datasets, which agent "
                          f"'{config.agent}' cannot; use {', '.join(fits)}")
    stored = set(minari_io.list_local())

    def check(task: Task, dataset: str, what: str) -> None:
        try:
            recipes.check_recipe(replace(task, dataset=dataset))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if dataset not in recipes.QUALITIES and dataset not in stored:
            known = ", ".join(sorted(stored)) or "none"
            raise ConfigError(f"{what}: no local Minari dataset '{dataset}' (nothing is "
                              f"downloaded; local: {known}); record it with `everlearn "
                              "collect`, or use random, medium or expert")

    for task in scenario.tasks:
        if task.dataset is not None:
            check(task, task.dataset, f"task '{task.name}'")
    if "offline_mix" in config.methods:
        mix = config.offline_mix
        if (mix.dataset is None) == (mix.run is None):
            raise ConfigError("offline_mix takes its data from exactly one source: set "
                              "offline_mix.dataset=ID (a Minari id, or random, medium or "
                              "expert) or offline_mix.run=RUN_DIR")
        names = [t.name for t in scenario.tasks]
        if mix.task is not None and mix.task not in names:
            raise ConfigError(f"offline_mix.task: scenario '{scenario.name}' has no task "
                              f"'{mix.task}' (its tasks: {', '.join(names)})")
        if mix.dataset is not None:
            task = scenario.tasks[names.index(mix.task) if mix.task else 0]
            check(task, mix.dataset, "offline_mix.dataset")
        elif not (Path(mix.run) / "checkpoints" / "latest.json").is_file():
            raise ConfigError(f"offline_mix.run: '{mix.run}' is not a run directory with a "
                              "checkpoint; give the --out directory of a run that reached "
                              "its first evaluation")


def _check_budget(plan: RunPlan, steps_per_task: int) -> None:
    """An evaluation needs at least one agent update before it, and the loops count env steps
    per seed in int32."""
    config, update = plan.config, plan.trainer.agent.steps_per_update
    if update > STEPS_MAX:
        raise ConfigError(f"one {config.agent} update takes {update:,} env steps, more than a "
                          f"run counts ({STEPS_MAX:,}); lower {config.agent}.num_envs")
    if steps_per_task < update * config.evals_per_task:
        fewer = (f" or evals_per_task <= {steps_per_task // update:,}"
                 if steps_per_task >= update else "")
        raise ConfigError(
            f"steps_per_task {steps_per_task:,} over evals_per_task {config.evals_per_task:,} "
            f"leaves {steps_per_task / config.evals_per_task:,.4g} env steps per evaluation, "
            f"less than one {config.agent} update ({update:,} env steps); set steps_per_task "
            f">= {update * config.evals_per_task:,}{fewer}")
    total = plan.total_segments * plan.segment_steps
    if total > STEPS_MAX:
        raise ConfigError(f"the run would take {total:,} env steps per seed; the loops count "
                          f"in int32, at most {STEPS_MAX:,}: lower steps_per_task")


def _available_memory() -> int | None:
    """Bytes of memory the run may take: free device memory on an accelerator, the host's
    available memory on CPU (None where neither is known)."""
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(plan: RunPlan) -> None:
    """Refuse a run whose state (networks, optimiser, replay buffer) cannot fit, before it is
    allocated: a replay buffer of a billion rows is otherwise an out-of-memory crash."""
    one_seed = jax.eval_shape(plan.trainer._init, jax.ShapeDtypeStruct((), jnp.uint32))
    per_seed = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(one_seed))
    needed, available = per_seed * len(plan.config.seeds), _available_memory()
    if available is not None and needed > available:
        agent = plan.config.agent
        hint = (f"lower {agent}.buffer_size or the number of seeds"
                if hasattr(plan.config.agent_config(), "buffer_size")
                else "use fewer seeds or smaller networks")
        raise ConfigError(f"the run's state needs {needed / 2**30:,.1f} GiB "
                          f"({per_seed / 2**30:,.2f} GiB per seed), more than the "
                          f"{available / 2**30:,.1f} GiB available; {hint}")


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


@functools.lru_cache(maxsize=16)
def scenario_layout_for(scenario_name: str, backend: str) -> Layout:
    """The scenario's observation and action layout, read from its tasks' envs (each env
    once, whatever the number of tasks on it)."""
    scenario = get_scenario(scenario_name)
    spaces: dict[str, EnvSpaces] = {}
    per_task = []
    for task in scenario.tasks:
        if env_identity(task) not in spaces:
            spaces[env_identity(task)] = task_spaces(task, backend)
        per_task.append(spaces[env_identity(task)])
    try:
        return scenario_layout([t.name for t in scenario.tasks], per_task)
    except ValueError as e:
        raise ConfigError(f"scenario '{scenario.name}': {e}") from None


@functools.lru_cache(maxsize=16)
def success_keys_for(scenario_name: str, backend: str) -> tuple[str | None, ...]:
    """Per task, the info key whose success rate is its performance (None: the return)."""
    return tuple(success_key(t, backend) for t in get_scenario(scenario_name).tasks)


def _with_jsrl_horizon(config: Any, scenario: Scenario, backend: str) -> Any:
    """JSRL's first horizon, where unset: the longest episode of the scenario's tasks."""
    if config.horizon is not None:
        return config
    limits = [task_spaces(task, backend).max_episode_steps for task in scenario.tasks]
    if None in limits:
        raise ConfigError("jsrl.horizon: a task's env has no episode length to take it from; "
                          "set it with --set jsrl.horizon=STEPS")
    return config.model_copy(update={"horizon": max(limits)})


@functools.lru_cache(maxsize=8)
def _trainer(scenario_name: str, backend: str, agent_name: str, agent_json: str,
             steps_per_eval: float, eval_episodes: int,
             methods_json: str) -> FunctionalTrainer | GymnasiumTrainer:
    """Trainers are cached so that runs with the same shapes in one process (tests, resume,
    sweeps) share compiled programs instead of compiling them again."""
    scenario = get_scenario(scenario_name)
    layout = scenario_layout_for(scenario_name, backend)
    agent_config = AGENTS[agent_name].config.model_validate_json(agent_json)
    methods = [(name, METHODS[name].config.model_validate(data))
               for name, data in json.loads(methods_json)]
    methods = [(name, _with_jsrl_horizon(method, scenario, backend) if name == "jsrl" else method)
               for name, method in methods]
    networks = {METHODS[name].network for name, _ in methods}
    task_ids = bool(networks & {"task_input", "multi_head"})
    num_tasks = scenario.num_tasks
    obs_dim = (layout.obs_size + (num_tasks if task_ids else 0)
               + (layout.num_actions if layout.masked else 0))
    spec = EnvSpec(obs_dim, layout.num_actions, num_tasks,
                   heads=num_tasks if "multi_head" in networks else 1,
                   continuous=layout.continuous,
                   image_shape=layout.obs_shape if layout.image else (), masked=layout.masked)
    agent = make_agent(agent_name, agent_config, spec,
                       method_builders([n for n, _ in methods], dict(methods)))
    iterations = max(1, round(steps_per_eval / agent.steps_per_update))
    data = {}  # the datasets of offline tasks and of methods that take data, loaded lazily
    if scenario.offline or any(METHODS[name].takes_data for name, _ in methods):
        from everlearn.data.datasets import dataset_buffers, method_data

        spaces = [task_spaces(t, backend) for t in scenario.tasks]
        data = {"load_datasets": functools.partial(dataset_buffers, scenario, spaces, layout,
                                                   task_ids),
                "load_method_data": functools.partial(
                    method_data, dict(methods), scenario, spaces, layout, task_ids,
                    agent.view)}
    if backend == "jax":
        trainer = DataFunctionalTrainer if data else FunctionalTrainer
        return trainer(scenario, agent, iterations, eval_episodes, task_ids=task_ids,
                       layout=layout, **data)
    trainer = DataGymnasiumTrainer if data else GymnasiumTrainer
    return trainer(scenario, agent, iterations, eval_episodes, task_ids=task_ids,
                   layout=layout, success_keys=list(success_keys_for(scenario_name, backend)),
                   **data)


def package_versions() -> dict[str, str]:
    names = ["jax", "jaxlib", "flax", "optax", "gymnax", "gymnasium", "numpy", "pydantic",
             "rliable"]
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["jax_devices"] = ", ".join(str(d) for d in jax.devices())
    return out


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.scenario}-{config.agent}-{config.backend}-{stamp}"


def start_run(config: RunConfig, run_dir: Path | None = None, *, quiet: bool = False,
              stop_after: int | None = None, tensorboard: bool = False,
              record: str | None = None) -> Path:
    """Validate everything, create the run directory, and run to the end (or `stop_after`
    segments, which leaves the directory as a kill after that checkpoint would);
    `tensorboard`: also write TensorBoard event files; `record`: a Minari namespace to record
    the run's transitions under (`everlearn.data.record`). Both are kept in run.json, so a
    resumed run goes on with them."""
    if tensorboard:
        require_tensorboard()
    plan = make_plan(config)  # fails before anything is written
    check_memory(plan)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config)
    recorder = make_recorder(plan, run_dir, record)
    if recorder is not None:
        recorder.check_new()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out '{run_dir}' is a file; give a directory path")
    if run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise ConfigError(f"run directory '{run_dir}' already exists and is not empty; "
                          "choose another --out or 'everlearn resume' it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory '{run_dir}': {e.strerror}") from None
    note = budget_note(plan)
    if note and not quiet:
        console.print(note, highlight=False, soft_wrap=True)
    sources = _score_sources(config)
    try:
        make_datasets(plan.scenario, plan.config, quiet)
        if not plan.scenario.scored:
            plan = _with_measured_scores(plan, quiet)
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing half-written stays behind
        raise
    with run_lock(run_dir):  # one writer per run directory
        return _begin(plan, run_dir, sources, quiet=quiet, stop_after=stop_after,
                      tensorboard=tensorboard, recorder=recorder)


def make_recorder(plan: RunPlan, run_dir: Path, namespace: str | None):
    """The recorder of a run recording under `namespace` (`--record`); None when it does not."""
    if namespace is None:
        return None
    from everlearn.data.record import RunRecorder

    config = plan.config
    about = {"run": str(Path(run_dir).resolve()), "agent": config.agent,
             "methods": list(config.methods), "backend": config.backend}
    return RunRecorder(run_dir, namespace, plan.scenario, config.seeds,
                       [task_spaces(t, config.backend) for t in plan.scenario.tasks],
                       scenario_layout_for(config.scenario, config.backend),
                       config.evals_per_task, about)


def _begin(plan: RunPlan, run_dir: Path, sources: list[dict[str, str]], *, quiet: bool,
           stop_after: int | None, tensorboard: bool, recorder=None) -> Path:
    """Write the new run directory's config and run.json, then run from the initial state."""
    config = plan.config  # with `reference` on where the scores needed the reference runs
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    info = {
        "everlearn_version": __version__,
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "scenario": {
            "name": plan.scenario.name,
            "description": plan.scenario.description,
            "steps_per_task": plan.segment_steps * config.evals_per_task,
            "boundaries_visible": plan.scenario.boundaries_visible,
            "task_ids_visible": plan.scenario.task_ids_visible,
            "tasks": [t.describe() for t in plan.scenario.tasks],
        },
        # How each task's returns are normalised, and where the scores came from.
        "normalisation": {
            "random": [t.random_score for t in plan.scenario.tasks],
            "reference": [t.reference_score for t in plan.scenario.tasks],
            "source": sources,
        },
        "agent": config.agent,
        "backend": config.backend,
        "seeds": config.seeds,
        "evals_per_task": config.evals_per_task,
        "segment_steps": plan.segment_steps,
        # The config the run started with: resume refuses an edited config.yaml.
        "config": config.to_dict(),
        "tensorboard": tensorboard,
        "record": recorder.namespace if recorder is not None else None,
    }
    state = plan.trainer.init(config.seeds)
    buffer = getattr(state.agent, "buffer", None)
    if buffer is not None:  # off-policy agents: the replay buffer is allocated up front
        per_seed, capacity = buffer.nbytes // len(config.seeds), buffer.reward.shape[-1]
        info["replay_buffer"] = {"capacity": capacity, "bytes_per_seed": per_seed}
        if not quiet:
            console.print(f"replay buffer: {capacity:,} transitions, "
                          f"{per_seed / 2**20:,.1f} MiB per seed")
    atomic_write(run_dir / "run.json", json.dumps(info, indent=1))
    return _execute(plan, run_dir, state, 0, quiet=quiet, stop_after=stop_after,
                    tensorboard=tensorboard, recorder=recorder)


_MEASURED = {"random_score": "uniform-random policy",
             "reference_score": "final return of the single-task reference run"}


def _score_sources(config: RunConfig) -> list[dict[str, str]]:
    """Where each task's normalisation scores come from (run.json, the report)."""
    out = []
    keys = success_keys_for(config.scenario, config.backend)
    for task, key in zip(get_scenario(config.scenario).tasks, keys):
        if key is not None:
            out.append({"random_score": f"success rate (info['{key}'])",
                        "reference_score": f"success rate (info['{key}'])"})
        else:
            out.append({name: "given" if getattr(task, name) is not None else _MEASURED[name]
                        for name in ("random_score", "reference_score")})
    return out


def make_datasets(scenario: Scenario, config: RunConfig, quiet: bool) -> None:
    """Make the built-in recipe datasets that the offline tasks and `offline_mix` name and that
    are not stored yet (`everlearn.data.recipes`; minutes, once per task and quality)."""
    from everlearn.data import recipes

    wanted = [(task, task.dataset) for task in scenario.tasks]
    if "offline_mix" in config.methods and config.offline_mix.dataset is not None:
        names = [t.name for t in scenario.tasks]
        task = scenario.tasks[names.index(config.offline_mix.task)
                              if config.offline_mix.task else 0]
        wanted.append((task, config.offline_mix.dataset))
    for task, dataset in wanted:
        if dataset in recipes.QUALITIES:
            recipes.make_recipe(task, dataset,
                                log=(lambda line: None) if quiet else console.print)


def _with_measured_scores(plan: RunPlan, quiet: bool) -> RunPlan:
    """Measure the normalisation scores the scenario does not give (`everlearn.runs.scores`)."""
    config, scenario = plan.config, plan.scenario
    if not quiet:
        console.print("measuring the random scores the scenario does not give")
    random = random_scores(scenario, config.backend)
    raw = None
    if any(t.reference_score is None for t in scenario.tasks):
        if not quiet:
            console.print("training the single-task reference runs first: they give the "
                          "reference scores the scenario does not give (and forward transfer)")
        config = config.model_copy(update={"reference": True})
        with _progress(quiet) as progress:
            bar = progress.add_task("reference runs", rate="-", last="-",
                                    total=plan.total_segments * plan.segment_steps)
            raw = reference_curves(plan.reference_trainer, config, scenario, plan.segment_steps,
                                   on_segment=lambda task, e: progress.update(
                                       bar, advance=plan.segment_steps))
    reference = reference_scores(scenario, raw)
    for task, low, high in zip(scenario.tasks, random, reference):
        if not high > low:
            raise ConfigError(f"task '{task.name}': its reference run's final return {high:.4g} "
                              f"does not beat the random policy's {low:.4g}, so normalised "
                              "performance is undefined; give the task a reference_score or "
                              "more steps_per_task")
    return make_plan(config, {"random": random, "reference": reference})


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml)")
    try:
        return build_config(path)  # YAML and validation errors: one line naming the file
    except ConfigError as e:
        raise ConfigError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def resume_run(run_dir: Path, *, quiet: bool = False, stop_after: int | None = None) -> Path:
    """Continue a run from its newest intact checkpoint; the result equals that of the
    uninterrupted run from every stopping point: before the first checkpoint (the run starts
    again from its config), at segment 0, mid-run, and while the summary was being written."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml)")
    with run_lock(run_dir):  # one writer per run directory
        info = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
        config = load_config(run_dir)
        if "config" in info:
            _refuse_edited_config(run_dir, info["config"], config.to_dict())
        # The normalisation scores the run measured, if any.
        plan = make_plan(config, info.get("normalisation"))
        make_datasets(plan.scenario, plan.config, quiet)  # a recipe is made again where it is missing
        template = plan.trainer.init(plan.config.seeds)
        try:
            state, index = load_checkpoint(run_dir / "checkpoints", template)
        except NoCheckpoint:
            state = template
            if not quiet:
                console.print(f"{run_dir} stopped before its first checkpoint: starting it again")
            done = None
        except ValueError as e:
            raise ConfigError(str(e)) from None
        else:
            done = index["segment"]
            if "fallback" in index and not quiet:
                console.print(index["fallback"], highlight=False, soft_wrap=True)
        _truncate_log(run_dir / "metrics.jsonl", done)
        start = done or 0
        if not quiet and done is not None:
            console.print(f"resuming {run_dir} from segment {start}/{plan.total_segments}")
        tensorboard = bool(info.get("tensorboard"))
        if tensorboard:
            require_tensorboard()
        recorder = make_recorder(plan, run_dir, info.get("record"))
        if recorder is not None:  # segments after the checkpoint are redone, and recorded again
            recorder.rollback(done)
            if done:
                recorder.flush(done)
        return _execute(plan, run_dir, state, start, quiet=quiet, stop_after=stop_after,
                        tensorboard=tensorboard, recorder=recorder)


def run_or_resume(run_dir: Path, make_config: Callable[[], RunConfig], *,
                  quiet: bool = True, tensorboard: bool = False) -> dict:
    """The summary of the run in `run_dir`: read when it finished, resumed from its last
    checkpoint when it was interrupted, else started from `make_config()` (benchmarks and
    sweeps rerun with the same command keep finished runs and finish interrupted ones). A
    resumed run keeps the config it started with (resume refuses an edited one)."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        if (run_dir / "config.yaml").is_file():
            resume_run(run_dir, quiet=quiet)
        else:
            start_run(make_config(), run_dir, quiet=quiet, tensorboard=tensorboard)
    return _read_json(run_dir / "summary.json")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"'{path}' is damaged ({e}); it cannot be resumed") from None


def _refuse_edited_config(run_dir: Path, started: dict, now: dict) -> None:
    """A resumed run must go on with the config it started with: its results would otherwise
    belong to neither config."""

    def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    before, after = flat(started), flat(now)
    keys = [key for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]
    if keys and all(key not in before for key in keys):  # settings this everlearn added since
        raise ConfigError(f"'{run_dir}' was started by an earlier everlearn, without the settings "
                          f"{', '.join(keys)}; finish it with the version that started it, or "
                          "start it again with 'everlearn run'")
    changed = [f"{key}: {before.get(key, '(absent)')} -> {after.get(key, '(absent)')}"
               for key in keys]
    if changed:
        raise ConfigError(f"'{run_dir / 'config.yaml'}' was edited after the run started "
                          f"({'; '.join(changed)}); restore it, or start a new run with the "
                          "new config")


def _truncate_log(log: Path, done: int | None) -> None:
    """Keep exactly one log line per evaluation 0..`done`, the ones checkpoint `done` follows:
    evaluations after it belong to work that is being redone, a line torn by the kill is
    dropped, and none is kept from segment 0 (its checkpoint is the initial state, whose
    evaluation `_execute` writes again) or without a checkpoint (`done` None)."""
    kept: list[str] = []
    if done and not log.is_file():
        raise ConfigError(f"'{log}' is missing: the evaluations up to checkpoint segment {done} "
                          "cannot be rebuilt; start the run again with 'everlearn run'")
    if done:
        seen: set[int] = set()
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            eval_index = record.get("eval_index")
            if eval_index is not None and eval_index <= done and eval_index not in seen:
                seen.add(eval_index)
                kept.append(line)
        if seen != set(range(done + 1)):
            missing = sorted(set(range(done + 1)) - seen)
            raise ConfigError(f"'{log}' lacks evaluations {missing} that checkpoint segment "
                              f"{done} follows; the log cannot be resumed")
    atomic_write(log, "".join(line + "\n" for line in kept))


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  {task.fields[rate]:>7} steps/s  last eval {task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


@contextlib.contextmanager
def _interrupts_as_keyboard_interrupt():
    """SIGTERM (a cluster's preemption, `kill`) stops a run as Ctrl-C does: with a checkpoint
    of its finished segments and a clean exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _execute(plan: RunPlan, run_dir: Path, state: Any, start: int, *, quiet: bool,
             stop_after: int | None, tensorboard: bool = False, recorder=None) -> Path:
    config, scenario, trainer = plan.config, plan.scenario, plan.trainer
    seeds, seg_steps = config.seeds, plan.segment_steps
    log_path = run_dir / "metrics.jsonl"
    # Wall time counts on from what the killed process had spent (the last logged evaluation).
    spent = 0.0
    if start > 0:
        spent = json.loads(log_path.read_text().splitlines()[-1])["wall_time"]
    t_start = time.perf_counter() - spent
    live_log = (TensorBoardLog(run_dir, [t.name for t in scenario.tasks], start) if tensorboard
                else None)

    def log_eval(segment: int, state: Any, returns: np.ndarray, train: dict) -> str:
        normalised = scenario.normalise(returns)
        record = {
            "kind": "eval", "eval_index": segment, "step": segment * seg_steps,
            "task_index": max(plan.task_of(segment), 0),
            "returns": returns.tolist(), "normalised": normalised.tolist(),
            "train": {k: np.asarray(v).tolist() for k, v in train.items()},
        }
        if config.diagnostics:
            record["diagnostics"] = trainer.diagnostics(state)
        record["wall_time"] = time.perf_counter() - t_start
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if live_log is not None:
            live_log.write(record)
        return f"{np.clip(normalised, 0, 1).mean():.2f}"

    # The newest checkpoint's segment (None: none yet), and the newest finished segment with
    # its state, kept as one tuple so that an interrupt never sees one without the other.
    saved: int | None = start if start > 0 else None
    finished: tuple[int, Any] | None = (start, state) if start > 0 else None

    def checkpoint(segment: int, state: Any) -> None:
        nonlocal saved
        at_task_end = segment % config.evals_per_task == 0
        save_checkpoint(run_dir / "checkpoints", state,
                        {"segment": segment, "step": segment * seg_steps}, keep=at_task_end)
        saved = segment

    def where(segment: int) -> str:
        task = plan.task_of(max(segment, 1))
        return f"task {task + 1} '{scenario.tasks[task].name}'"

    def stopped(what: str, advice: str, error: BaseException | None = None,
                exit_code: int = 1) -> RunStopped:
        kept = ("it stopped before its first checkpoint" if saved is None else
                f"its last good checkpoint is segment {saved} (step {saved * seg_steps:,})")
        message = f"{what}; {kept}; {advice}"
        log = write_error_log(run_dir, message, error)
        return RunStopped(f"{message} (details: {log})", exit_code)

    resume = f"'everlearn resume {run_dir}' continues from there"
    phase, segment, reference = "training", start, None
    closing_log = contextlib.closing(live_log) if live_log else contextlib.nullcontext()
    with _progress(quiet) as progress, _interrupts_as_keyboard_interrupt(), closing_log:
        total = plan.total_segments * seg_steps
        bar = progress.add_task("start", total=total, completed=start * seg_steps,
                                rate="-", last="-")
        try:
            if start == 0:
                last = log_eval(0, state, trainer.evaluate(state, seeds, 0), {})
                checkpoint(0, state)
                finished = (0, state)
                progress.update(bar, last=last)
            for segment in range(start + 1, plan.total_segments + 1):
                if stop_after is not None and segment > start + stop_after:
                    return run_dir
                task = plan.task_of(segment)
                progress.update(bar, description=f"task {task + 1}/{scenario.num_tasks} "
                                                 f"{scenario.tasks[task].name}")
                t0 = time.perf_counter()
                drift = (scenario.drift_positions(segment, config.evals_per_task)
                         if scenario.drift else None)
                if recorder is None:
                    state, train_metrics = trainer.train_segment(state, task, drift)
                else:
                    state, train_metrics, transitions = trainer.record_segment(state, task,
                                                                               drift)
                diverged = divergence(train_metrics, state.agent.params, len(seeds))
                if diverged:  # nothing of this segment is logged or checkpointed
                    what, bad = diverged
                    raise stopped(
                        f"training diverged in the segment ending at step "
                        f"{segment * seg_steps:,} ({where(segment)}): {what} became NaN or "
                        f"infinite for seed{'s' if len(bad) > 1 else ''} "
                        f"{', '.join(str(seeds[i]) for i in bad)}",
                        f"lower the learning rate ({config.agent}.learning_rate) and start a "
                        "new run")
                rate = seg_steps * len(seeds) / (time.perf_counter() - t0)
                if recorder is not None:
                    recorder.add(segment, task, transitions)
                last = log_eval(segment, state, trainer.evaluate(state, seeds, segment),
                                train_metrics)
                task_ends = segment % config.evals_per_task == 0 and task + 1 < scenario.num_tasks
                if task_ends and scenario.boundaries_visible and (config.methods
                                                                  or config.explores_each_task()):
                    # the methods' task hooks, and the exploration restart (explore_each_task)
                    state = trainer.task_boundary(state, task, task + 1)
                finished = (segment, state)
                written = []  # the datasets of a recorded task, once its end is checkpointed
                if segment % config.evals_per_task == 0 or segment % config.checkpoint_every == 0:
                    checkpoint(segment, state)
                    written = recorder.flush(segment) if recorder is not None else []
                progress.update(bar, advance=seg_steps, rate=f"{rate:,.0f}", last=last)
                if not quiet and not console.is_terminal:  # logs get a line where a bar can't draw
                    console.print(f"step {segment * seg_steps:>9,} task {task + 1} "
                                  f"{rate:>9,.0f} steps/s  mean normalised eval {last}")
                if written and not quiet:
                    console.print(f"recorded task {task + 1}: {len(written)} Minari dataset(s) "
                                  f"under {recorder.namespace}/", highlight=False)

            if config.reference:
                phase = "the reference runs"
                ref_bar = progress.add_task("reference runs",
                                            total=plan.total_segments * seg_steps,
                                            rate="-", last="-")
                reference = normalise_reference(scenario, reference_curves(
                    plan.reference_trainer, config, scenario, seg_steps,
                    on_segment=lambda task, e: progress.update(ref_bar, advance=seg_steps),
                ))
        except EnvFailed as e:
            if phase != "training":
                at = f"during {phase}"
            elif e.step is None:
                at = f"while evaluating after step {segment * seg_steps:,} ({where(segment)})"
            else:
                at = f"at step {(segment - 1) * seg_steps + e.step:,} ({where(segment)})"
            raise stopped(f"{e} {at}", f"fix the env; {resume}", e.__cause__) from None
        except KeyboardInterrupt:
            if finished is not None and (saved is None or finished[0] > saved):
                checkpoint(*finished)  # keep the work of every finished segment
            raise stopped(f"interrupted during {phase}", resume, exit_code=130) from None

    write_summary(run_dir, plan, reference, wall_time_s=time.perf_counter() - t_start)
    (run_dir / "error.log").unlink(missing_ok=True)  # a stop that resume has since made good
    from everlearn.report import write_report

    report = write_report(run_dir)
    if not quiet:
        console.print(f"report: {report}")
    return run_dir


def read_curves(run_dir: Path) -> tuple[np.ndarray, list[int]]:
    """Normalised evaluation curves [num_seeds, num_evals, num_tasks] and their steps, from
    exactly one log line per evaluation 0, 1, ..., n (anything else is refused: a summary
    computed from a duplicated or missing evaluation would be silently wrong)."""
    path = run_dir / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"'{path}' is damaged ({e}); resume the run to rebuild it") from None
    evals = sorted((r for r in records if r.get("kind") == "eval"),
                   key=lambda r: r["eval_index"])
    indices = [r["eval_index"] for r in evals]
    if indices != list(range(len(evals))):
        raise ValueError(f"'{path}' does not hold exactly one line per evaluation (found "
                         f"evaluation indices {indices}); resume the run to rebuild it")
    curves = np.stack([np.asarray(r["normalised"]) for r in evals], axis=1)
    return curves, [r["step"] for r in evals]


def write_summary(run_dir: Path, plan: RunPlan, reference: np.ndarray | None,
                  wall_time_s: float) -> dict:
    config, scenario = plan.config, plan.scenario
    curves, steps = read_curves(run_dir)
    per_seed_rows = [
        summarise_seed(curves[s], config.evals_per_task,
                       None if reference is None else reference[s])
        for s in range(len(config.seeds))
    ]
    metrics = list(per_seed_rows[0])
    per_seed = {m: [row[m] for row in per_seed_rows] for m in metrics}
    E = config.evals_per_task
    matrix = clip01(performance_matrix(curves, E))  # [seed, k, i]
    summary = {
        "scenario": scenario.name,
        "agent": config.agent,
        "backend": config.backend,
        "seeds": config.seeds,
        "tasks": [t.name for t in scenario.tasks],
        "eval_steps": steps,
        "task_boundaries": [end * plan.segment_steps
                            for end in task_end_evals(scenario.num_tasks, E)],
        "per_seed": per_seed,
        "aggregate": {m: interquartile_mean_ci(np.asarray(v)) for m, v in per_seed.items()},
        # Both conventions are always computed; this one is the run's headline.
        "metrics_convention": plan.metrics_convention,
        "continual_world": continual_world_metrics(curves, E, reference),
        "performance_matrix": matrix.tolist(),
        # Learning speed: the area under each task's own learning curve, per seed and task.
        "task_auc": [task_auc(curves[s], E).tolist() for s in range(len(config.seeds))],
        "reference": None if reference is None else {"curves": reference.tolist()},
        "normalisation": {"random": [t.random_score for t in scenario.tasks],
                          "reference": [t.reference_score for t in scenario.tasks]},
        "wall_time_s": wall_time_s,
    }
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=1))
    return summary
