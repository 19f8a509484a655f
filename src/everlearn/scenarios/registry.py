"""How scenarios are found by name: the registry that `register_scenario` fills (the built-in
scenarios of `everlearn.scenarios.catalogue`, then the ones users register in Python), the
scenarios other packages add through the `everlearn.scenarios` entry-point group, and scenario
files (`get_scenario("my.yaml")`).

The built-ins are registered by importing the catalogue; `everlearn.scenarios` does so right
after importing this module, so they are there whenever the registry is used and are listed
first. What is built in, and where its scores come from, is the catalogue's business.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

from everlearn.scenarios.files import load_scenario_file
from everlearn.scenarios.task import Scenario

# A package adds scenarios with, in its pyproject.toml,
#   [project.entry-points."everlearn.scenarios"]
#   my-scenario = "my_package.scenarios:my_scenario"
# where the object is a zero-argument callable returning a Scenario, or a path (str or
# os.PathLike) to a scenario file. The entry point's name is the scenario's name.
ENTRY_POINT_GROUP = "everlearn.scenarios"

_REGISTRY: dict[str, Callable[[], Scenario]] = {}


def register_scenario(name: str):
    def wrap(fn: Callable[[], Scenario]) -> Callable[[], Scenario]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def scenario_names() -> list[str]:
    """Registered scenarios first (built-in ones, then users'), then entry points."""
    return list(_REGISTRY) + [name for name in _entry_points() if name not in _REGISTRY]


def scenario_sources() -> dict[str, str]:
    """Where each of `scenario_names()` comes from: "built-in", "registered in <module>", or
    "entry point <module:object> (<distribution>)"."""
    sources = {}
    for name, fn in _REGISTRY.items():
        module = getattr(fn, "__module__", None) or "?"
        sources[name] = ("built-in" if module.split(".")[0] == "everlearn"
                         else f"registered in {module}")
    for name, ep in _entry_points().items():
        sources.setdefault(name, _entry_point_source(ep))
    return sources


def get_scenario(name_or_path: str | os.PathLike) -> Scenario:
    """The scenario of this name, or the one a scenario file describes.

    A path-like object or a string ending in `.yaml` / `.yml` is a file; otherwise a registered
    or entry-point name, and last an existing file of that name (a registered name wins, so a
    stray file cannot change what a recorded run name means).
    """
    if isinstance(name_or_path, os.PathLike) or str(name_or_path).endswith((".yaml", ".yml")):
        return load_scenario_file(name_or_path)
    name = str(name_or_path)
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name in _entry_points():
        return _from_entry_point(name)
    if Path(name).is_file():
        return load_scenario_file(name)
    raise ValueError(f"unknown scenario '{name}'; choose one of: {', '.join(scenario_names())} "
                     "(or give the path of a scenario file, my_scenario.yaml)")


@cache
def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The group's entry points, read once, on first use (importing none of them). A name that
    is taken already is skipped with a warning: installing a package must not silently change
    what a scenario name means."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY or ep.name in found:
            by = (_entry_point_source(found[ep.name]) if ep.name in found
                  else "a registered scenario")
            warnings.warn(f"everlearn: scenario '{ep.name}' from {_entry_point_source(ep)} "
                          f"is ignored; the name is taken by {by}", stacklevel=2)
            continue
        found[ep.name] = ep
    return found


@cache
def _load_entry_point(name: str) -> object:
    """Import an entry point's object, once."""
    ep = _entry_points()[name]
    try:
        return ep.load()
    except Exception as e:  # whatever the package's import raises
        raise ValueError(f"scenario '{name}' from {_entry_point_source(ep)} cannot be loaded: "
                         f"{type(e).__name__}: {' '.join(str(e).split())}") from e


def _from_entry_point(name: str) -> Scenario:
    source = _entry_point_source(_entry_points()[name])
    obj = _load_entry_point(name)
    if isinstance(obj, (str, os.PathLike)):
        scenario = load_scenario_file(obj)
    elif callable(obj):
        try:
            scenario = obj()
        except Exception as e:
            raise ValueError(f"scenario '{name}' from {source} failed: {type(e).__name__}: "
                             f"{' '.join(str(e).split())}") from e
    else:
        raise ValueError(f"scenario '{name}' from {source} is a {type(obj).__name__}; it should "
                         "be a function returning a Scenario or the path of a scenario file")
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario '{name}' from {source} gave a {type(scenario).__name__}, "
                         "not a Scenario")
    if scenario.name != name:  # runs record the name and look the scenario up by it again
        raise ValueError(f"scenario '{name}' from {source} is named '{scenario.name}'; the "
                         "entry point's name and the scenario's name should be the same")
    return scenario


def _entry_point_source(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"entry point {ep.value}" + (f" ({dist.name})" if dist is not None else "")


def _forget_entry_points() -> None:
    """Read the entry points again on next use (tests, or after installing a package)."""
    _entry_points.cache_clear()
    _load_entry_point.cache_clear()

