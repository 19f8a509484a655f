"""What a run resolves of its scenario once, by name and path: the observation and action layout
of its tasks' envs and the info key that scores each task."""

from __future__ import annotations

import functools

from everlearn.core.errors import ConfigError
from everlearn.envs.layout import Layout, scenario_layout
from everlearn.envs.sources import EnvSpaces, env_identity, task_spaces
from everlearn.scenarios import get_scenario
from everlearn.training.scores import success_key


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

