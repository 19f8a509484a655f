"""Run configuration: a validated pydantic model, built from defaults, a YAML file and overrides.

Every way a config can be wrong (unknown key, wrong type, unknown scenario or agent) ends in a
`ConfigError` whose message is one line naming the problem and the valid choices.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from everlearn.agents import AGENTS
from everlearn.agents.common import boundary_settings
from everlearn.core.errors import ConfigError
from everlearn.core.ranges import SEED_MAX, STEPS_MAX
from everlearn.envs.sources import gymnax_id
from everlearn.methods import METHODS
from everlearn.scenarios import get_scenario, scenario_names

MAX_SEEDS = 10_000  # seeds run side by side (vmapped): more would not fit in memory anyway


def parse_seeds(value: str | int | list[int]) -> list[int]:
    """'0-4' -> [0..4]; '0,3,7' -> [0, 3, 7]; 5 -> [5]."""
    seeds: list[int] = []
    try:
        if isinstance(value, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ValueError(value)
            seeds = list(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            seeds = [value]
        else:
            for part in str(value).split(","):
                if "-" in part.strip()[1:]:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    if hi - lo >= MAX_SEEDS:  # refused before a huge range is built
                        raise ConfigError(f"seeds '{value}' name {hi - lo + 1:,} seeds; at "
                                          f"most {MAX_SEEDS:,} run side by side")
                    seeds.extend(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(
            f"seeds '{value}' is not a list of seeds; write e.g. 0-4 or 0,3,7"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"seeds '{value}' must be distinct non-negative integers, e.g. 0-4")
    if max(seeds) > SEED_MAX:
        raise ConfigError(f"seed {max(seeds)} is too large: seeds are 32-bit, 0 to {SEED_MAX:,}")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{len(seeds):,} seeds given; at most {MAX_SEEDS:,} run side by side")
    return seeds


class _RunConfigFields(BaseModel):
    """The run's own keys; `RunConfig` adds one section per agent and per method (see below)."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = "cartpole-contexts"
    agent: str = "ppo"
    # None: the functional path where the scenario's env has one (jax), else gymnasium.
    backend: Literal["jax", "gymnasium"] | None = None
    seeds: list[int] = Field(default_factory=lambda: [0])
    # None: the scenario's own budget. Rounded to whole agent updates per evaluation (the
    # run says so); the loops count env steps in int32.
    steps_per_task: Annotated[int, Field(ge=1, le=STEPS_MAX)] | None = None
    evals_per_task: PositiveInt = 10
    # Evaluate every this many env steps of a task instead (Continual World: 20,000): sets
    # evals_per_task to steps_per_task / eval_every, rounded, at least 1. None: evals_per_task.
    eval_every: PositiveInt | None = None
    eval_episodes: PositiveInt = 10
    checkpoint_every: PositiveInt = 5  # evaluations between checkpoints (and at task ends)
    reference: bool = False  # also run single-task references (forward transfer needs them)
    # The metrics convention that heads summary.json and the report (both are computed);
    # None: the scenario's (continual-world for cw10/cw20, else everlearn).
    metrics: Literal["everlearn", "continual-world"] | None = None
    diagnostics: bool = True  # plasticity diagnostics at every evaluation (changes no result)
    methods: list[str] = Field(default_factory=list)  # continual-learning methods, in order

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> list[int]:
        return parse_seeds(value)

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        if value in scenario_names():
            return value
        get_scenario(value)  # a scenario file, or one-line error naming the problem
        # A file is recorded by its absolute path, so resume works from any directory.
        return str(Path(value).resolve()) if Path(value).is_file() else value

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        if value not in AGENTS:
            raise ValueError(f"unknown agent '{value}'; choose one of: {', '.join(AGENTS)}")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in METHODS:
                raise ValueError(f"unknown method '{name}'; choose from: {', '.join(METHODS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"methods {value} list a method twice")
        return value

    @model_validator(mode="after")
    def _backend(self):
        if self.backend is None:
            # Resolved here, so config.yaml records the path the run took.
            tasks = get_scenario(self.scenario).tasks
            functional = all(gymnax_id(t) is not None for t in tasks)
            self.backend = "jax" if functional else "gymnasium"
        return self

    @model_validator(mode="after")
    def _evals_from_eval_every(self):
        if self.eval_every is not None:
            steps = self.steps_per_task or get_scenario(self.scenario).steps_per_task
            self.evals_per_task = max(1, round(steps / self.eval_every))
        return self

    @model_validator(mode="after")
    def _boundary_settings(self):
        """The agent's settings that act only at task boundaries (`boundary_setting`: the
        off-policy agents' `explore_each_task`, SAC's resets), resolved so that config.yaml
        records them: one left unset (None) is on where the scenario shows its boundaries and
        off where it hides them; one set on where they are hidden is refused (nothing can act
        at a boundary no one sees)."""
        section = self.agent_config()
        settings = boundary_settings(section)
        if not settings:
            return self
        scenario = get_scenario(self.scenario)
        for name in settings:
            if getattr(section, name) and not scenario.boundaries_visible:
                raise ValueError(f"{self.agent}.{name} needs task boundaries, which scenario "
                                 f"'{scenario.name}' hides; set it false or pick a scenario "
                                 "that shows them")
        unset = {name: scenario.boundaries_visible for name in settings
                 if getattr(section, name) is None}
        if unset:
            setattr(self, self.agent, section.model_copy(update=unset))
        return self

    def agent_config(self) -> BaseModel:
        return getattr(self, self.agent)

    def acts_at_boundaries(self) -> bool:
        """Whether anything acts at a task boundary: the methods' task hooks, or an agent
        setting that does (an exploration restart, a reset)."""
        section = self.agent_config()
        return bool(self.methods) or any(getattr(section, name)
                                         for name in boundary_settings(section))

    def method_configs(self) -> dict[str, BaseModel]:
        return {name: getattr(self, name) for name in self.methods}

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, with only the chosen agent's and methods' sections."""
        data = self.model_dump(mode="json")
        for name in [*AGENTS, *METHODS]:
            if name != self.agent and name not in self.methods:
                data.pop(name, None)
        return data


# One config section per method, named like the method (`ewc: {lambda: ...}` in YAML,
# `--set ewc.lambda=...` on the command line); a new method needs no edit here.
# One section per agent, then one per method, from their registries (in registry order).
RunConfig = create_model(
    "RunConfig", __base__=_RunConfigFields,
    **{name: (entry.config, entry.config()) for name, entry in AGENTS.items()},
    **{name: (entry.config, entry.config()) for name, entry in METHODS.items()},
)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
    node[leaf] = value


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _format(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        where = ".".join(str(p) for p in loc[:-1])
        valid = ", ".join(_valid_keys(RunConfig, loc))
        return f"unknown config key '{key}'" + (f" in '{where}'" if where else "") + \
            f"; valid keys: {valid}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error":
        return msg
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    msg = msg.replace("Input should be", "must be").replace("Value should be", "must be")
    return f"config key '{key}' = {shown}: {msg[:1].lower()}{msg[1:]}"


def _non_finite(tree: dict, prefix: str = "") -> tuple[str, float] | None:
    """The first key holding NaN or an infinity (no config value may)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            found = _non_finite(value, f"{prefix}{key}.")
            if found:
                return found
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                return f"{prefix}{key}", v
    return None


def _refuse_booleans(data: dict, model: BaseModel, prefix: str = "") -> None:
    """pydantic reads true as 1 for a number; a true/false given for a number is a mistake."""
    for key, value in data.items():
        field = getattr(model, key, None)
        if isinstance(value, dict) and isinstance(field, BaseModel):
            _refuse_booleans(value, field, f"{prefix}{key}.")
        elif isinstance(value, bool) and not isinstance(field, bool) and field is not None:
            raise ConfigError(f"config key '{prefix}{key}' = {str(value).lower()}: must be "
                              "a number, not true/false")


def _refuse_absent_sections(config: _RunConfigFields, data: dict, source: str) -> None:
    """Settings of an agent or method the run does not use would be silently ignored."""
    def key(name: str) -> str:
        section = data[name]
        return f"{name}.{next(iter(section))}" if isinstance(section, dict) and section else name

    for name in AGENTS:
        if name in data and name != config.agent:
            raise ConfigError(f"{source} {key(name)}: agent '{name}' is not the run's agent "
                              f"('{config.agent}'), so it would be ignored; use --agent {name} "
                              f"or set {config.agent}.* instead")
    for name in METHODS:
        if name in data and name not in config.methods:
            raise ConfigError(f"{source} {key(name)}: method '{name}' is not in the run "
                              f"(methods: {', '.join(config.methods) or 'none'}), so it would "
                              f"be ignored; add --method {name} or drop the setting")


def _read_config_file(config_file: Path) -> dict[str, Any]:
    path = Path(config_file)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; give a YAML file "
                          f"(e.g. '{path / 'config.yaml'}')")
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' is not a regular file; give a YAML file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text; give a YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: "
                          f"{' '.join(str(e).split())}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys")
    return loaded or {}


def preset_names() -> list[str]:
    """The presets shipped with everlearn (`src/everlearn/presets/NAME.yaml`)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("everlearn.presets")
                  .iterdir() if p.name.endswith(".yaml"))


def read_preset(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(preset_names())}")
    return yaml.safe_load(resources.files("everlearn.presets").joinpath(f"{name}.yaml")
                          .read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """`layer` over `base`, section by section. A layer that sets `evals_per_task` and not
    `eval_every` overrides an earlier `eval_every` (the two say the same thing)."""
    out = dict(base)
    if "evals_per_task" in layer and "eval_every" not in layer:
        out.pop("eval_every", None)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    preset: str | None = None,
) -> RunConfig:
    """Defaults < preset < YAML file < explicit overrides (CLI flags) < `--set key=value`
    pairs. A preset's methods are part of its protocol: the methods of later layers are added
    after them."""
    data: dict[str, Any] = read_preset(preset) if preset is not None else {}
    preset_methods = list(data.get("methods", []))
    if config_file is not None:
        data = _merge(data, _read_config_file(config_file))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    if preset_methods:
        data["methods"] = list(dict.fromkeys([*preset_methods, *data.get("methods", [])]))
    set_data: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set '{item}' is not key=value (e.g. --set ppo.learning_rate=3e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set '{item}': '{raw}' is not a value (YAML); quote text "
                              "or write a number, true/false, or [a, b]") from None
        if key.strip() == "evals_per_task":
            data.pop("eval_every", None)
        _set_dotted(data, key.strip(), value)
        _set_dotted(set_data, key.strip(), value)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None
    _refuse_booleans(data, config)
    found = _non_finite(config.model_dump(mode="python"))
    if found:
        raise ConfigError(f"config key '{found[0]}' = {found[1]}: must be a finite number")
    # A config file may hold settings of several agents and methods (one file, the choice on
    # the command line); a --set of one the run does not use is a mistake.
    _refuse_absent_sections(config, set_data, "--set")
    return config
