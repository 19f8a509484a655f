"""Tasks, scenarios and the built-in scenario registry."""

from everlearn.scenarios.registry import get_scenario, register_scenario, scenario_names
from everlearn.scenarios.task import Scenario, Task

# isort: split
# Registers the built-in scenarios (with `registry`'s `register_scenario`), before any user code
# can register its own, so `scenario_names()` lists the built-ins first.
from everlearn.scenarios import catalogue  # noqa: F401

__all__ = ["Scenario", "Task", "get_scenario", "register_scenario", "scenario_names"]
