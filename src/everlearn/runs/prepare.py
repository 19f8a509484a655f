"""What a new run makes before its first segment: the built-in recipe datasets its tasks and
methods name, and the normalisation scores its scenario does not give (a random policy's
return, and the final return of a single-task reference run), with where each score came
from for run.json and the report."""

from __future__ import annotations

from everlearn.core.errors import ConfigError
from everlearn.data import recipes
from everlearn.methods import data_sources
from everlearn.runs.config import RunConfig
from everlearn.runs.loop import console, progress_bar
from everlearn.runs.plan import RunPlan, make_plan
from everlearn.scenarios import Scenario
from everlearn.training.reference import reference_curves
from everlearn.training.scores import random_scores, reference_scores

_MEASURED = {"random_score": "uniform-random policy",
             "reference_score": "final return of the single-task reference run"}


def score_sources(plan: RunPlan) -> list[dict[str, str]]:
    """Where each task's normalisation scores come from (run.json, the report)."""
    out = []
    resolved = plan.resolved
    for task, key in zip(resolved.scenario.tasks, resolved.success_keys):
        if key is not None:
            out.append({"random_score": f"success rate (info['{key}'])",
                        "reference_score": f"success rate (info['{key}'])"})
        else:
            out.append({name: "given" if getattr(task, name) is not None else _MEASURED[name]
                        for name in ("random_score", "reference_score")})
    return out


def make_datasets(scenario: Scenario, config: RunConfig, quiet: bool) -> None:
    """Make the built-in recipe datasets that the offline tasks and the methods that take data
    name and that are not stored yet (`everlearn.data.recipes`; minutes, once per task and
    quality)."""
    wanted = [(task, task.dataset) for task in scenario.tasks]
    names = [t.name for t in scenario.tasks]
    for source in data_sources(config.method_configs()).values():
        if source.dataset is not None:
            wanted.append((scenario.tasks[source.task_index(names)], source.dataset))
    for task, dataset in wanted:
        if dataset in recipes.QUALITIES:
            recipes.make_recipe(task, dataset,
                                log=(lambda line: None) if quiet else console.print)


def with_measured_scores(plan: RunPlan, quiet: bool) -> RunPlan:
    """Measure the normalisation scores the scenario does not give (`everlearn.training.scores`)."""
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
        with progress_bar(quiet) as progress:
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
