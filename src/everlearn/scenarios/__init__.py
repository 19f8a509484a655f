"""Tasks, scenarios and the built-in scenario registry."""

from everlearn.scenarios.registry import get_scenario, register_scenario, scenario_names
from everlearn.scenarios.task import Scenario, Task

__all__ = ["Scenario", "Task", "get_scenario", "register_scenario", "scenario_names"]
