"""Sweep files: the grid of runs a comparison needs, and the cells it expands to.

A sweep file crosses `scenarios` × `agents` × `methods` (each entry a composition; `[]` is
fine-tuning) × the values of `grid:` keys × `sample:` draws, with fixed `set:` keys on every
cell. The seeds of a cell run as one vmapped run, as `everlearn run --seeds` does.

    scenarios: [cartpole-contexts, acrobot-contexts]
    agents: [ppo]
    methods: [[], [ewc], [multi_head, packnet],           # [] is fine-tuning
              {label: layer_norm, methods: [], set: {ppo.layer_norm: true}}]
    seeds: 0-9
    set: {steps_per_task: 20000}
    grid: {ewc.strength: [1, 10, 100]}
    sample:                            # random search: `count` draws of every key in `space`
      count: 4
      seed: 0
      space: {ppo.learning_rate: {log_uniform: [1.0e-4, 1.0e-3]}}

A `grid:` or `sample:` key under an agent's or a method's name (`ewc.strength`) varies only the
cells that use that agent or method: the fine-tuning cell above runs once, not three times.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from everlearn.core.errors import ConfigError
from everlearn.runs.config import RunConfig, build_config, parse_seeds


class Distribution(BaseModel):
    """One key's random-search distribution: exactly one of the three."""

    model_config = ConfigDict(extra="forbid")
    uniform: tuple[float, float] | None = None
    log_uniform: tuple[float, float] | None = None
    choice: list[Any] | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.log_uniform is not None:
            low, high = self.log_uniform
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return self.choice[int(rng.integers(len(self.choice)))]


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: Annotated[int, Field(ge=1, le=10_000)]
    seed: int = 0
    space: dict[str, Distribution]

    @field_validator("space")
    @classmethod
    def _one_distribution_each(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key, dist in space.items():
            given = [k for k, v in dist.model_dump().items() if v is not None]
            if len(given) != 1:
                raise ValueError(f"'{key}' needs exactly one of uniform: [low, high], "
                                 f"log_uniform: [low, high] or choice: [values]")
            if dist.log_uniform is not None and min(dist.log_uniform) <= 0:
                raise ValueError(f"'{key}': log_uniform bounds must be positive")
            if dist.choice is not None and not dist.choice:
                raise ValueError(f"'{key}': choice needs at least one value")
        return space


class Variant(BaseModel):
    """A `methods:` entry with settings of its own: a composition plus `set:` keys, under a
    row name (`{label: layer_norm, methods: [], set: {ppo.layer_norm: true}}`)."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = None
    methods: list[str] = []
    set: dict[str, Any] = {}

    def row_label(self) -> str:
        return self.label or "+".join(self.methods) or "fine-tuning"


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenarios: Annotated[list[str], Field(min_length=1)]
    agents: Annotated[list[str], Field(min_length=1)]
    methods: Annotated[list[Variant], Field(min_length=1)] = [Variant()]
    seeds: str | int | list[int] = "0-4"
    # Forward transfer needs the single-task references (cached: computed once per scenario).
    reference: bool = True
    preset: str | None = None
    config: str | None = None  # a run config file, relative to the sweep file
    set: dict[str, Any] = {}
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    sample: Sample | None = None

    @model_validator(mode="after")
    def _grid_or_sample(self) -> "SweepFile":
        both = sorted(set(self.grid) & set(self.sample.space if self.sample else {}))
        if both:
            raise ValueError(f"keys {both} are in both grid: and sample:; vary each in one")
        return self

    @field_validator("methods", mode="before")
    @classmethod
    def _compositions(cls, value: Any) -> Any:
        # `methods: [ewc, [multi_head, packnet], {label: ..., methods: [...], set: {...}}]`: a
        # bare name is a composition of one, a list a composition.
        if isinstance(value, list):
            return [{"methods": [m]} if isinstance(m, str) else
                    {"methods": m} if isinstance(m, list) else m for m in value]
        return value

    @field_validator("methods")
    @classmethod
    def _distinct_rows(cls, variants: list[Variant]) -> list[Variant]:
        labels = [v.row_label() for v in variants]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"entries {repeated} appear more than once; give each a distinct "
                             "label:")
        return variants


@dataclass(frozen=True)
class Cell:
    """One run of the sweep; `build_args` is everything `build_config` needs, so a worker on
    another machine builds the same config without the sweep file."""

    name: str  # its directory under cells/
    scenario: str
    agent: str
    methods: list[str]
    label: str  # the row name in comparisons: methods, then the varied keys
    overrides: dict[str, Any]  # the grid and sample values of this cell
    seeds: list[int]
    build_args: dict[str, Any] = field(repr=False)
    env_steps: int = 0  # per seed × seeds: the progress bar's unit
    fine_tuning: bool = False  # no method and nothing varied: the comparison's default baseline

    def config(self) -> RunConfig:
        return build_config(**_as_paths(self.build_args))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        return cls(**data)


def _as_paths(build_args: dict[str, Any]) -> dict[str, Any]:
    config_file = build_args.get("config_file")
    return build_args | {"config_file": Path(config_file) if config_file else None}


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if not isinstance(value, str) else value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")


def read_sweep_file(path: Path) -> SweepFile:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read sweep file '{path}': {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"sweep file '{path}' is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file '{path}' must be a mapping with scenarios:, agents:, "
                          "methods:, seeds:")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        hint = ""
        if first["type"] == "extra_forbidden":
            hint = f"; valid keys: {', '.join(SweepFile.model_fields)}"
        raise ConfigError(f"sweep file '{path}': {where}: {first['msg']}{hint}") from None


def _applies(key: str, agent: str, methods: list[str]) -> bool:
    """A key under an agent's or a method's section varies only the cells that use it."""
    from everlearn.agents import AGENTS
    from everlearn.methods import METHODS

    section = key.split(".", 1)[0]
    if section in AGENTS:
        return section == agent
    if section in METHODS:
        return section in methods
    return True


def expand(sweep: SweepFile, sweep_file: Path) -> list[Cell]:
    """Every cell of the sweep, in file order (scenario, agent, method, grid, sample), with
    duplicates (a grid key that does not apply to a cell) removed."""
    base = Path(sweep_file).resolve().parent
    seeds = parse_seeds(sweep.seeds)
    config_file = str((base / sweep.config).resolve()) if sweep.config else None

    def scenario_ref(name: str) -> str:
        # A scenario file is named relative to the sweep file; built-in names stay as they are.
        candidate = base / name
        if name.endswith((".yaml", ".yml")) and candidate.is_file():
            return str(candidate.resolve())
        return name

    grid_points = [dict(zip(sweep.grid, values))
                   for values in itertools.product(*sweep.grid.values())] or [{}]
    samples: list[dict[str, Any]] = [{}]
    if sweep.sample is not None:
        rng = np.random.default_rng(sweep.sample.seed)
        samples = [{key: dist.draw(rng) for key, dist in sweep.sample.space.items()}
                   for _ in range(sweep.sample.count)]
    fixed = [f"{key}={json.dumps(value)}" for key, value in sweep.set.items()]

    cells: dict[tuple, Cell] = {}
    used_names: set[str] = set()
    try:  # methods every cell has: the preset's and the config file's
        common_methods = build_config(Path(config_file) if config_file else None, {}, [],
                                      sweep.preset).methods
    except ConfigError:
        common_methods = []  # reported with the cells
    for scenario, agent, variant, point, drawn in itertools.product(
            sweep.scenarios, sweep.agents, sweep.methods, grid_points, samples):
        methods = variant.methods
        overrides = {k: v for k, v in (point | drawn).items()
                     if _applies(k, agent, [*common_methods, *methods])}
        identity = (scenario, agent, variant.row_label(), json.dumps(overrides, sort_keys=True))
        if identity in cells:
            continue
        label = " ".join([variant.row_label(),
                          *(f"{k}={_format_value(v)}" for k, v in overrides.items())])
        name = _slug(f"{Path(scenario).stem if scenario.endswith(('.yaml', '.yml')) else scenario}"
                     f"-{agent}-{label}")
        while name in used_names:  # two labels that slug alike
            name += "-"
        used_names.add(name)
        build_args = {
            "config_file": config_file,
            "overrides": {"scenario": scenario_ref(scenario), "agent": agent, "seeds": seeds,
                          "reference": sweep.reference, "methods": list(methods)},
            "sets": fixed + [f"{k}={json.dumps(v)}"
                             for k, v in (variant.set | overrides).items()],
            "preset": sweep.preset,
        }
        cells[identity] = Cell(name, scenario, agent, list(methods), label, overrides, seeds,
                               build_args, fine_tuning=not (methods or variant.set or overrides))
    return list(cells.values())


def check_cells(cells: list[Cell]) -> tuple[list[Cell], list[str]]:
    """Build and check every cell's config as `everlearn run` would, before anything runs:
    the valid cells (with their env-step totals) and one line per invalid cell. (The memory
    check is left to the machine that runs a cell: with Ray it is not this one.)"""
    from everlearn.runs.plan import make_plan

    valid, problems = [], []
    for cell in cells:
        try:
            config = cell.config()
            plan = make_plan(config)  # its trainers are cached: the worker builds its own
        except ConfigError as e:
            problems.append(f"cell '{cell.label}' on {cell.scenario} with {cell.agent}: {e}")
            continue
        steps = plan.total_segments * plan.segment_steps
        valid.append(Cell(**{**cell.to_dict(), "env_steps": steps * len(cell.seeds)}))
    return valid, problems
