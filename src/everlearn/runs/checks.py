"""Every reason a run cannot go that its config, scenario, data and memory show, each a one-line
`ConfigError`, before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from everlearn.agents import AGENTS
from everlearn.core.errors import ConfigError
from everlearn.core.ranges import STEPS_MAX
from everlearn.envs.sources import gymnax_id
from everlearn.methods import METHODS, DataSource, MethodEntry, data_sources
from everlearn.runs.config import RunConfig
from everlearn.scenarios import Scenario
from everlearn.scenarios.resolve import resolve
from everlearn.scenarios.task import Task

if TYPE_CHECKING:
    from everlearn.runs.plan import RunPlan


def agents_for(method: MethodEntry) -> tuple[str, ...]:
    """The agents a method works with: those whose capabilities hold all it requires."""
    return tuple(name for name, agent in AGENTS.items() if method.requires <= agent.capabilities)


def check_config(config: RunConfig, scores: dict | None = None) -> Scenario:
    """Every reason a run cannot go that the config and scenario show, each a one-line
    `ConfigError` (`make_plan` adds the budget check, which needs the trainer); returns the
    scenario with its normalisation scores."""
    resolved = resolve(config.scenario, config.backend)
    scenario = resolved.scenario
    if config.backend == "jax":
        with_success = [t.name for t in scenario.tasks if t.success_key is not None]
        if with_success:
            raise ConfigError(f"scenario '{scenario.name}': tasks {with_success} set "
                              "success_key, but gymnax envs report no success; use --backend "
                              "gymnasium or remove success_key")
    # Tasks scored by success: the evaluator reports success rates, so the scores are 0 and 1.
    keys = resolved.success_keys
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
    layout = resolved.layout
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
        if config.agent not in agents_for(entry):
            raise ConfigError(f"method '{name}' does not apply to agent '{config.agent}'; it "
                              f"works with: {', '.join(agents_for(entry))}")
        if entry.needs_boundaries and not scenario.boundaries_visible:
            raise ConfigError(f"method '{name}' needs task boundaries, which scenario "
                              f"'{scenario.name}' hides; pick a method that needs none "
                              f"(e.g. l2_init) or a scenario that shows them")
        if entry.needs_task_ids and not scenario.task_ids_visible:
            raise ConfigError(f"method '{name}' needs task ids, which scenario "
                              f"'{scenario.name}' hides; pick another method or scenario")
    sources = data_sources(config.method_configs())
    if scenario.offline or sources:
        _check_datasets(config, scenario, sources)
    return scenario


def _check_datasets(config: RunConfig, scenario: Scenario,
                    sources: dict[str, DataSource]) -> None:
    """Data to learn from: an agent that can learn from it, and every dataset at hand (a stored
    Minari dataset, or a built-in recipe that can be made for its task), for the offline tasks
    and for the methods that take data (each from exactly one source)."""
    from everlearn.data import minari_io, recipes

    if scenario.offline and not AGENTS[config.agent].learns_from_data:
        fits = [name for name, entry in AGENTS.items() if entry.learns_from_data]
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
    names = [t.name for t in scenario.tasks]
    for method, source in sources.items():
        if (source.dataset is None) == (source.run is None):
            raise ConfigError(f"{method} takes its data from exactly one source: set "
                              f"{method}.dataset=ID (a Minari id, or random, medium or "
                              f"expert) or {method}.run=RUN_DIR")
        if source.task is not None and source.task not in names:
            raise ConfigError(f"{method}.task: scenario '{scenario.name}' has no task "
                              f"'{source.task}' (its tasks: {', '.join(names)})")
        if source.dataset is not None:
            check(scenario.tasks[source.task_index(names)], source.dataset, f"{method}.dataset")
        elif not (Path(source.run) / "checkpoints" / "latest.json").is_file():
            raise ConfigError(f"{method}.run: '{source.run}' is not a run directory with a "
                              "checkpoint; give the --out directory of a run that reached "
                              "its first evaluation")


def check_budget(plan: RunPlan, steps_per_task: int) -> None:
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

