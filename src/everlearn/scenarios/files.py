"""Scenarios written as YAML files: `load_scenario_file(path) -> Scenario`.

The schema is documented in docs/guide.md ("Scenario files"). A malformed file raises
`ValueError` with one line naming the file, the field and what is allowed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from everlearn.scenarios.task import Scenario, Task

Name = Annotated[str, Field(min_length=1)]


class TaskSpec(BaseModel):
    """One entry of `tasks:`; every field but `name` and `env` is optional."""

    # strict: YAML already types its values; a quoted number or "yes" is more likely a slip
    # than an intent, so it is refused instead of silently converted.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name
    env: Name
    import_: list[Name] = Field(default_factory=list, alias="import")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    physics: dict[str, float] = Field(default_factory=dict)
    obs_perm: list[Annotated[int, Field(ge=0)]] | None = None
    obs_scale: list[float] | None = None
    action_map: list[Annotated[int, Field(ge=0)]] | None = None
    action_scale: list[float] | None = None
    reward_scale: float = 1.0
    reward_shift: float = 0.0
    random_score: float | None = None
    reference_score: float | None = None
    success_key: Name | None = None
    dataset: Name | None = None  # a local Minari dataset id, or "random" / "medium" / "expert"

    @field_validator("import_", mode="before")
    @classmethod
    def _one_import(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("obs_perm")
    @classmethod
    def _permutation(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and sorted(value) != list(range(len(value))):
            raise ValueError(f"should be a permutation of 0..{len(value) - 1} (got {value})")
        return value

    def to_task(self, name: str) -> Task:
        def _tuple(values: list | None) -> tuple | None:
            return None if values is None else tuple(values)

        return Task(
            name=name, env=self.env, imports=tuple(self.import_), kwargs=dict(self.kwargs),
            physics=dict(self.physics), obs_perm=_tuple(self.obs_perm),
            obs_scale=_tuple(self.obs_scale), action_map=_tuple(self.action_map),
            action_scale=_tuple(self.action_scale), reward_scale=self.reward_scale,
            reward_shift=self.reward_shift, random_score=self.random_score,
            reference_score=self.reference_score, success_key=self.success_key,
            dataset=self.dataset,
        )


class ScenarioSpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name
    steps_per_task: Annotated[int, Field(gt=0)]
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]
    description: str | None = None
    boundaries_visible: bool = True
    task_ids_visible: bool = False
    drift: bool = False
    metrics: Literal["everlearn", "continual-world"] = "everlearn"  # the headline convention
    repeat: Annotated[int, Field(ge=1)] = 1

    def to_scenario(self) -> Scenario:
        seen: dict[str, int] = {}
        for i, task in enumerate(self.tasks):
            if task.name in seen:
                raise ValueError(f"tasks[{i}].name: '{task.name}' is already the name of "
                                 f"tasks[{seen[task.name]}]; give each task its own name")
            seen[task.name] = i
        # Pass k > 1 suffixes its names (`mild#2`) so every task of the sequence stays unique.
        tasks = tuple(t.to_task(t.name if k == 1 else f"{t.name}#{k}")
                      for k in range(1, self.repeat + 1) for t in self.tasks)
        description = self.description
        if description is None:
            description = "; ".join(t.name for t in self.tasks)
            if self.repeat > 1:
                description += f" (repeated {self.repeat} times)"
        return Scenario(name=self.name, description=description, tasks=tasks,
                        steps_per_task=self.steps_per_task,
                        boundaries_visible=self.boundaries_visible,
                        task_ids_visible=self.task_ids_visible, drift=self.drift,
                        metrics=self.metrics)


def load_scenario_file(path: str | os.PathLike) -> Scenario:
    """The scenario a YAML file describes; `ValueError` (one line) if the file is malformed."""
    path = Path(path)
    data = _read_yaml(path)
    # An env module next to the scenario file (`env: "my_envs:Room"`) is importable from
    # anywhere, as one in the current directory is.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the file should be a mapping with at least name, "
                         "steps_per_task and tasks")
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{path}: {_first_error(e)}") from None
    try:
        return spec.to_scenario()
    except ValueError as e:  # repeated names, or what Scenario refuses (drift waypoints differ)
        raise ValueError(f"{path}: {' '.join(str(e).split())}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; in a scenario that hides a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the base class refuses it with its own message
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{path}: cannot read the scenario file ({reason})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        where, problem = "", str(e)
        if isinstance(e, yaml.MarkedYAMLError):
            if e.problem_mark is not None:
                where = f"line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}: "
            problem = e.problem or problem
        raise ValueError(f"{path}: {where}invalid YAML: {' '.join(problem.split())}") from None


def _field_names(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or name for name, f in model.model_fields.items())


def _location(loc: tuple) -> str:
    """`('tasks', 1, 'kwargs')` -> `tasks[1].kwargs` (pydantic already reports aliases)."""
    out = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return out.lstrip(".")


def _first_error(error: ValidationError) -> str:
    """One line for the first problem pydantic found: the field and what it allows."""
    errors = error.errors(include_url=False)
    first = errors[0]
    loc, kind = tuple(first["loc"]), first["type"]
    field = _location(loc)
    in_task = len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int)
    model = TaskSpec if in_task else ScenarioSpec
    if kind == "extra_forbidden":
        message = f"unknown field; a {'task' if in_task else 'scenario'} allows: " \
                  f"{_field_names(model)}"
    elif kind == "missing":
        needed = "name and env" if in_task else "name, steps_per_task and tasks"
        message = f"missing; {'every task' if in_task else 'a scenario'} needs {needed}"
    elif kind == "too_short" and loc == ("tasks",):
        message = "should list at least one task (each with name and env)"
    elif kind == "model_type":  # a task written as something other than a mapping
        message = "should be a mapping with at least name and env"
    else:
        message = first["msg"].removeprefix("Value error, ").replace("Input should", "should")
        message = message.replace("valid dictionary", "mapping")
        if kind != "value_error":
            message += f" (got {_short(first.get('input'))})"
    others = len(errors) - 1
    more = f" (and {others} more problem{'s' * (others > 1)})" if others else ""
    return f"{field}: {' '.join(message.split())}{more}"


def _short(value: Any, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
