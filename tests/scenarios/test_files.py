"""Scenarios written as YAML files, scenarios from other packages' entry points, and
`get_scenario` with a path: every field lands in its `Task`, and every malformed file ends in one
line naming the file and the field."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from everlearn.scenarios import Scenario, Task, get_scenario, registry, scenario_names
from everlearn.scenarios.files import load_scenario_file
from everlearn.scenarios.registry import ENTRY_POINT_GROUP, scenario_sources

USER_ENVS = Path(__file__).parent / "user_envs"
THERMOSTAT = USER_ENVS / "thermostat.yaml"


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the schema ---------------------------------------------------------------------------------


def test_minimal_file_gives_defaults():
    s = load_scenario_file(THERMOSTAT)
    assert (s.name, s.steps_per_task) == ("thermostat", 2048)
    assert (s.boundaries_visible, s.task_ids_visible, s.drift) == (True, False, False)
    assert s.description == "mild; cold"
    assert s.tasks == (Task("mild", "room:Room", kwargs={"loss": 0.05}),
                       Task("cold", "room:Room", kwargs={"loss": 0.1}))
    assert not s.scored


def test_every_optional_field(tmp_path):
    path = write(tmp_path, """
name: everything
description: all the fields
steps_per_task: 1000
boundaries_visible: false
task_ids_visible: true
tasks:
  - name: first
    env: "MiniGrid-Empty-5x5-v0"
    import: [minigrid, my_pkg.envs]
    kwargs: {max_steps: 50, layout: [1, 2]}
    physics: {length: 0.75, masspole: 1}
    obs_perm: [1, 0, 2]
    obs_scale: [1.0, -1, 0.5]
    action_map: [2, 1, 0]
    action_scale: [-1.0]
    reward_scale: 2
    reward_shift: -0.5
    random_score: -10
    reference_score: 90.5
    success_key: goal_reached
  - {name: second, env: "CartPole-v1", import: gymnasium}
""")
    s = load_scenario_file(path)
    assert (s.name, s.description, s.steps_per_task) == ("everything", "all the fields", 1000)
    assert (s.boundaries_visible, s.task_ids_visible, s.drift) == (False, True, False)
    first, second = s.tasks
    assert first == Task(
        "first", "MiniGrid-Empty-5x5-v0", random_score=-10.0, reference_score=90.5,
        physics={"length": 0.75, "masspole": 1.0}, obs_perm=(1, 0, 2), obs_scale=(1.0, -1.0, 0.5),
        action_map=(2, 1, 0), action_scale=(-1.0,), reward_scale=2.0, reward_shift=-0.5,
        kwargs={"max_steps": 50, "layout": [1, 2]}, imports=("minigrid", "my_pkg.envs"),
        success_key="goal_reached")
    assert all(isinstance(v, float) for v in first.physics.values())
    assert isinstance(first.obs_perm, tuple) and isinstance(first.reward_scale, float)
    assert second == Task("second", "CartPole-v1", imports=("gymnasium",))


def test_drift_file(tmp_path):
    path = write(tmp_path, """
name: drifting
steps_per_task: 500
boundaries_visible: false
drift: true
tasks:
  - {name: g10, env: Pendulum-v1, physics: {g: 10}}
  - {name: g16, env: Pendulum-v1, physics: {g: 16}}
""")
    s = load_scenario_file(path)
    assert s.drift and not s.boundaries_visible
    assert [t.physics for t in s.tasks] == [{"g": 10.0}, {"g": 16.0}]


def test_repeat_suffixes_names(tmp_path):
    text = THERMOSTAT.read_text() + "repeat: 3\n"
    s = load_scenario_file(write(tmp_path, text))
    assert [t.name for t in s.tasks] == ["mild", "cold", "mild#2", "cold#2", "mild#3", "cold#3"]
    assert [t.kwargs["loss"] for t in s.tasks] == [0.05, 0.1] * 3
    assert s.description == "mild; cold (repeated 3 times)"


# -- malformed files: one line, naming the file and the field ------------------------------------

GOOD_TASK = '  - {name: a, env: "room:Room"}\n'
HEAD = "name: t\nsteps_per_task: 100\n"
MALFORMED = {
    "yaml syntax": (HEAD + "tasks: [a, {b: }\n  c: d\n", "line 4", "invalid YAML"),
    "duplicate key": (HEAD + "steps_per_task: 200\ntasks:\n" + GOOD_TASK, "line 3",
                      "'steps_per_task' appears twice"),
    "not a mapping": ("- just\n- a list\n", "mapping", "steps_per_task"),
    "empty file": ("", "mapping", "steps_per_task"),
    "unknown scenario field": (HEAD + "seeds: 3\ntasks:\n" + GOOD_TASK, "seeds:",
                               "repeat"),
    "unknown task field": (HEAD + "tasks:\n" + GOOD_TASK + '  - {name: b, env: e, kwarg: {}}\n',
                           "tasks[1].kwarg:", "kwargs"),
    "wrong kwargs type": (HEAD + "tasks:\n" + GOOD_TASK + "  - {name: b, env: e, kwargs: 5}\n",
                          "tasks[1].kwargs:", "mapping"),
    "wrong physics value": (HEAD + "tasks:\n  - {name: a, env: e, physics: {g: heavy}}\n",
                            "tasks[0].physics.g:", "number"),
    "quoted number": ("name: t\nsteps_per_task: '100'\ntasks:\n" + GOOD_TASK, "steps_per_task:",
                      "integer"),
    "missing env": (HEAD + "tasks:\n  - {name: a}\n", "tasks[0].env:", "name and env"),
    "missing tasks": (HEAD, "tasks:", "name, steps_per_task and tasks"),
    "empty task list": (HEAD + "tasks: []\n", "tasks:", "at least one task"),
    "task not a mapping": (HEAD + "tasks: [a]\n", "tasks[0]:", "mapping"),
    "repeat zero": (HEAD + "repeat: 0\ntasks:\n" + GOOD_TASK, "repeat:", "greater than or equal"),
    "repeat not integer": (HEAD + "repeat: twice\ntasks:\n" + GOOD_TASK, "repeat:", "integer"),
    "import not a string": (HEAD + "tasks:\n  - {name: a, env: e, import: [3]}\n",
                            "tasks[0].import[0]:", "string"),
    "not a permutation": (HEAD + "tasks:\n  - {name: a, env: e, obs_perm: [0, 0]}\n",
                          "tasks[0].obs_perm:", "permutation"),
    "same task name": (HEAD + "tasks:\n" + GOOD_TASK + GOOD_TASK, "tasks[1].name:",
                       "own name"),
    "drift waypoints differ": (HEAD + "drift: true\ntasks:\n  - {name: a, env: e, physics: {g: 1}}"
                               "\n  - {name: b, env: e, physics: {l: 1}}\n", "drifting",
                               "same physical parameters"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_gives_one_line(tmp_path, case):
    text, field, allowed = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_scenario_file(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert field in message and allowed in message
    error = info.value  # no chained pydantic or YAML traceback
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_missing_file_gives_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^\S+missing\.yaml: no such scenario file$"):
        load_scenario_file(tmp_path / "missing.yaml")


def test_many_problems_are_counted_on_one_line(tmp_path):
    path = write(tmp_path, "name: 3\nsteps_per_task: lots\ntasks: []\n")
    with pytest.raises(ValueError) as info:
        load_scenario_file(path)
    assert "\n" not in str(info.value) and "(and 2 more problems)" in str(info.value)


# -- the user's env the thermostat file names ---------------------------------------------------


def make(task: Task):
    """What a `module:Class` task means, resolved here without everlearn's env layer."""
    module, attr = task.env.split(":")
    return getattr(importlib.import_module(module), attr)(**task.kwargs)


def rollout(env, seed: int, actions) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return out


def test_thermostat_env_is_a_good_gymnasium_env(monkeypatch):
    monkeypatch.syspath_prepend(str(USER_ENVS))
    envs = [make(t) for t in load_scenario_file(THERMOSTAT).tasks]
    actions = [0, 1, 2, 2, 1, 0] * 5
    for env in envs:
        check_env(env, skip_render_check=True)  # the render check only says there is no spec
        assert env.observation_space.shape == (2,) and env.observation_space.dtype == np.float32
        assert env.action_space.n == 3
        # deterministic under a seed
        np.testing.assert_array_equal(rollout(env, 7, actions), rollout(env, 7, actions))
        # the env truncates its own episodes after 200 steps
        env.reset(seed=0)
        for step in range(1, 201):
            _, reward, terminated, truncated, _ = env.step(1)
            assert reward <= 0 and not terminated and truncated == (step == 200)
    # the two rooms' `loss` changes the dynamics
    mild, cold = (rollout(env, 3, actions) for env in envs)
    assert not np.allclose(mild[-1], cold[-1])


# -- get_scenario with a path -------------------------------------------------------------------


def test_get_scenario_with_path(tmp_path):
    by_str, by_path = get_scenario(str(THERMOSTAT)), get_scenario(THERMOSTAT)
    assert by_str == by_path == load_scenario_file(THERMOSTAT)
    # an existing file without the .yaml suffix, when no scenario has that name
    plain = write(tmp_path, THERMOSTAT.read_text(), name="thermostat-scenario")
    assert get_scenario(str(plain)).name == "thermostat"
    with pytest.raises(ValueError, match=r"nope\.yml: no such scenario file"):
        get_scenario(str(tmp_path / "nope.yml"))


def test_unknown_name_hints_at_files():
    with pytest.raises(ValueError, match=r"^unknown scenario 'no-such'; choose one of: "
                                         r"cartpole-contexts, .*\.yaml\)$"):
        get_scenario("no-such")


# -- entry points -------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeEntryPoint:
    """What `importlib.metadata.entry_points` yields, with a count of imports."""

    name: str
    value: str
    obj: object
    dist: object = field(default_factory=lambda: SimpleNamespace(name="my-everlearn-scenarios"))
    group: str = ENTRY_POINT_GROUP
    loads: int = 0

    def load(self) -> object:
        self.loads += 1
        return self.obj


@pytest.fixture
def installed(monkeypatch):
    """Pretend these entry points are installed: `installed(ep, ...)`."""

    def install(*eps):
        def entry_points(group=None):
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        registry._forget_entry_points()

    yield install
    registry._forget_entry_points()  # the next test reads the real (empty) entry points


def two_rooms(name: str = "two-rooms") -> Scenario:
    return Scenario(name, "mild then cold room",
                    (Task("mild", "room:Room", kwargs={"loss": 0.05}),
                     Task("cold", "room:Room", kwargs={"loss": 0.4})), steps_per_task=1000)


def test_entry_point_callable(installed):
    ep = FakeEntryPoint("two-rooms", "my_scenarios:two_rooms", two_rooms)
    installed(ep)
    assert ep.loads == 0  # listing reads names only; nothing is imported
    assert scenario_names()[-1] == "two-rooms"
    assert scenario_sources()["two-rooms"] == ("entry point my_scenarios:two_rooms "
                                               "(my-everlearn-scenarios)")
    assert scenario_sources()["cartpole-contexts"] == "built-in"
    assert get_scenario("two-rooms") == get_scenario("two-rooms") == two_rooms()
    assert ep.loads == 1  # imported once


def test_entry_point_yaml_file(installed, monkeypatch):
    # A real EntryPoint whose object is a path: the package ships the YAML file.
    module = types.ModuleType("fake_everlearn_scenarios")
    module.THERMOSTAT = str(THERMOSTAT)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    installed(importlib.metadata.EntryPoint("thermostat", "fake_everlearn_scenarios:THERMOSTAT",
                                            ENTRY_POINT_GROUP))
    assert "thermostat" in scenario_names()
    assert scenario_sources()["thermostat"] == "entry point fake_everlearn_scenarios:THERMOSTAT"
    assert get_scenario("thermostat") == load_scenario_file(THERMOSTAT)


def test_entry_point_cannot_take_a_builtin_name(installed):
    installed(FakeEntryPoint("cartpole-contexts", "evil:cartpole", lambda: two_rooms()))
    with pytest.warns(UserWarning, match="'cartpole-contexts' from entry point evil:cartpole .*"
                                         "is ignored"):
        sources = scenario_sources()
    assert sources["cartpole-contexts"] == "built-in"
    assert get_scenario("cartpole-contexts").tasks[0].env == "CartPole-v1"


def raise_import_error():
    raise ImportError("No module named 'my_scenarios'\n(multi-line)")


@pytest.mark.parametrize("obj, problem", [
    (lambda: two_rooms("other-name"), "is named 'other-name'"),
    (lambda: 42, "gave a int, not a Scenario"),
    (3.5, "is a float"),
    (raise_import_error, "ImportError: No module named 'my_scenarios' (multi-line)"),
])
def test_broken_entry_point_gives_one_line(installed, obj, problem):
    installed(FakeEntryPoint("two-rooms", "my_scenarios:two_rooms", obj))
    with pytest.raises(ValueError) as info:
        get_scenario("two-rooms")
    message = str(info.value)
    assert "\n" not in message and problem in message
    assert message.startswith("scenario 'two-rooms' from entry point my_scenarios:two_rooms")


def test_entry_point_that_fails_to_import(installed):
    class Broken(FakeEntryPoint):
        def load(self):
            raise ModuleNotFoundError("No module named 'gone'")

    installed(Broken("gone", "gone:scenario", None))
    with pytest.raises(ValueError, match=r"^scenario 'gone' from entry point gone:scenario "
                                         r"\(my-everlearn-scenarios\) cannot be loaded: "
                                         r"ModuleNotFoundError: No module named 'gone'$"):
        get_scenario("gone")


def test_list_shows_sources(installed, monkeypatch):
    from typer.testing import CliRunner

    from everlearn.cli import app

    installed(FakeEntryPoint("two-rooms", "my_scenarios:two_rooms", two_rooms),
              FakeEntryPoint("gone", "gone:scenario", 3.5))
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.count("│") > 2}
    assert "built-in" in rows["cartpole-contexts"]
    assert "entry point my_scenarios:two_rooms" in rows["two-rooms"]
    assert "cannot load" in rows["gone"]
