"""Sweep files: the cells they expand to, and the one-line errors that stop a sweep before any
cell runs (no training here: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.core.errors import ConfigError
from everlearn.runs.checks import check_config
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.scenarios import get_scenario
from everlearn.sweeps.spec import check_cells, expand, read_sweep_file
from everlearn.sweeps.sweep import prepare_directory


def sweep_file(tmp_path: Path, **content) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def cells_of(path: Path):
    return expand(read_sweep_file(path), path)


def test_cross_product_with_method_keys_only_where_the_method_is(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts", "acrobot-contexts"],
                      agents=["ppo"], methods=[[], "ewc", ["multi_head", "packnet"]],
                      seeds="0-2", set={"steps_per_task": 4096},
                      grid={"ewc.strength": [1, 10], "ppo.learning_rate": [1e-3, 3e-4]})
    cells = cells_of(path)
    # Per scenario: fine-tuning and the pair × 2 learning rates, ewc × 2 strengths × 2 rates.
    assert len(cells) == 2 * (2 + 2 + 4)
    first = [c for c in cells if c.scenario == "cartpole-contexts"]
    assert [c.label for c in first] == [
        "fine-tuning ppo.learning_rate=0.001", "fine-tuning ppo.learning_rate=0.0003",
        "ewc ewc.strength=1 ppo.learning_rate=0.001", "ewc ewc.strength=1 ppo.learning_rate=0.0003",
        "ewc ewc.strength=10 ppo.learning_rate=0.001", "ewc ewc.strength=10 ppo.learning_rate=0.0003",
        "multi_head+packnet ppo.learning_rate=0.001",
        "multi_head+packnet ppo.learning_rate=0.0003"]
    assert len({c.name for c in cells}) == len(cells)
    ewc = next(c for c in first if c.overrides == {"ewc.strength": 10, "ppo.learning_rate": 3e-4})
    config = ewc.config()
    assert (config.methods, config.seeds, config.steps_per_task) == (["ewc"], [0, 1, 2], 4096)
    assert config.method_configs()["ewc"].strength == 10
    assert config.agent_config().learning_rate == 3e-4
    assert config.reference  # forward transfer is part of a comparison


def test_random_search_draws_within_bounds_and_repeats_with_its_seed(tmp_path):
    space = {"ppo.learning_rate": {"log_uniform": [1e-4, 1e-2]},
             "ppo.clip_eps": {"uniform": [0.1, 0.3]}, "ppo.num_epochs": {"choice": [2, 4]}}
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                      sample={"count": 6, "seed": 3, "space": space})
    cells = cells_of(path)
    assert len(cells) == 6
    for cell in cells:
        assert 1e-4 <= cell.overrides["ppo.learning_rate"] <= 1e-2
        assert 0.1 <= cell.overrides["ppo.clip_eps"] <= 0.3
        assert cell.overrides["ppo.num_epochs"] in (2, 4)
        assert cell.config().agent_config().num_epochs == cell.overrides["ppo.num_epochs"]
    assert [c.overrides for c in cells_of(path)] == [c.overrides for c in cells]
    other = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                       sample={"count": 6, "seed": 4, "space": space})
    assert [c.overrides for c in cells_of(other)] != [c.overrides for c in cells]


def test_invalid_cells_carry_the_error_run_gives(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts", "pendulum-contexts"],
                      agents=["dqn"], methods=[[]])
    valid, problems = check_cells(cells_of(path))
    assert [c.scenario for c in valid] == ["cartpole-contexts"]
    with pytest.raises(ConfigError) as run_error:
        check_config(build_config(None, {"scenario": "pendulum-contexts", "agent": "dqn"}))
    assert len(problems) == 1 and str(run_error.value) in problems[0]
    # Env steps of a valid cell: tasks × steps per task × seeds (the progress bar's unit).
    # (whole agent updates per evaluation: the run's own rounding of 100k steps per task)
    plan = make_plan(valid[0].config())
    assert valid[0].env_steps == plan.total_segments * plan.segment_steps * 5  # seeds 0-4
    assert abs(plan.total_segments * plan.segment_steps
               - get_scenario("cartpole-contexts").num_tasks * 100_000) < 4 * 1024
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = _logical_lines(result.output)
    assert len(lines) == 2 and str(run_error.value) in " ".join(lines[0].split())
    assert lines[1].startswith("error: 1 invalid cell(s) (above), nothing ran")
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


@pytest.mark.parametrize("content, expected", [
    ({"agents": ["ppo"]}, "scenarios: Field required"),
    ({"scenarios": ["cartpole-contexts"], "agents": ["ppo"], "methdos": [[]]},
     "methdos: Extra inputs are not permitted; valid keys: scenarios, agents"),
    ({"scenarios": ["cartpole-contexts"], "agents": ["ppo"],
      "sample": {"count": 2, "space": {"ppo.learning_rate": {"uniform": [0, 1],
                                                              "choice": [1]}}}},
     "needs exactly one of uniform"),
    ({"scenarios": ["cartpole-contexts"], "agents": ["ppo"], "grid": {"ppo.learnin_rate": [1]}},
     "ppo.learnin_rate"),
    ({"scenarios": ["cartpole-contexts"], "agents": ["ppo"], "methods": [["ewk"]]}, "ewk"),
])
def test_bad_sweep_files_stop_with_one_line(tmp_path, content, expected):
    path = sweep_file(tmp_path, **content)
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    # One line for the file, or one per invalid cell and then the verdict.
    lines = _logical_lines(result.output)
    assert lines[-1].startswith("error:") and all(
        line.startswith(("invalid: cell", "error:")) for line in lines)
    assert not (tmp_path / "out").exists()


def _logical_lines(output: str) -> list[str]:
    """Output lines, with the continuation lines of a terminal-wrapped line joined back."""
    lines: list[str] = []
    for line in output.strip().splitlines():
        if line.startswith(("invalid:", "error:", "skipped:")) or not lines:
            lines.append(line)
        else:
            lines[-1] += " " + line
    return lines


def test_a_sweep_directory_refuses_another_sweep(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"])
    cells, _ = check_cells(cells_of(path))
    status = prepare_directory(tmp_path / "out", path.read_text(), cells)
    assert list(status.values()) == [{"status": "pending", "attempts": 0, "error": None,
                                      "wall_time_s": None, "resumed": False}]
    info = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert info["cells"][0]["name"] == cells[0].name and info["code"]["everlearn"]
    assert (tmp_path / "out" / "sweep.yaml").read_text() == path.read_text()
    other = sweep_file(tmp_path, scenarios=["acrobot-contexts"], agents=["ppo"])
    other_cells, _ = check_cells(cells_of(other))
    with pytest.raises(ConfigError, match="holds another sweep"):
        prepare_directory(tmp_path / "out", other.read_text(), other_cells)


def test_a_methods_entry_with_its_own_settings(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                      set={"ppo.activation": "relu"},
                      methods=[[], {"label": "layer_norm", "set": {"ppo.layer_norm": True}},
                               {"methods": ["redo"]}])
    plain, layer_norm, redo = cells_of(path)
    assert [plain.label, layer_norm.label, redo.label] == ["fine-tuning", "layer_norm", "redo"]
    assert not plain.config().agent_config().layer_norm
    assert layer_norm.config().agent_config().layer_norm
    assert layer_norm.config().agent_config().activation == "relu"
    assert redo.config().methods == ["redo"]
    twice = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                       methods=[["ewc"], {"methods": ["ewc"], "set": {"ewc.strength": 3}}])
    with pytest.raises(ConfigError, match=r"entries \['ewc'\] appear more than once"):
        read_sweep_file(twice)


def test_the_budget_check_runs_up_front_too(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                      set={"steps_per_task": 64})
    valid, problems = check_cells(cells_of(path))
    assert not valid and "less than one ppo update" in problems[0]


def test_a_key_in_grid_and_sample_is_refused(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                      methods=["ewc"], grid={"ewc.strength": [1, 10]},
                      sample={"count": 2, "space": {"ewc.strength": {"uniform": [1, 5]}}})
    with pytest.raises(ConfigError, match=r"keys \['ewc.strength'\] are in both grid"):
        read_sweep_file(path)


def test_scenario_files_are_found_next_to_the_sweep_file(tmp_path):
    scenario = Path(__file__).parents[1] / "runs" / "scenario_files" / "cw2.yaml"
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "two.yaml").write_text(scenario.read_text())
    path = sweep_file(tmp_path, scenarios=["scenarios/two.yaml"], agents=["sac"])
    (cell,) = cells_of(path)
    assert cell.build_args["overrides"]["scenario"] == str(tmp_path / "scenarios" / "two.yaml")
    assert cell.name.startswith("two-sac-fine-tuning") and cell.fine_tuning


def test_baseline_and_skip_invalid_are_checked_before_anything_runs(tmp_path):
    path = sweep_file(tmp_path, scenarios=["cartpole-contexts"], agents=["ppo"],
                      methods=[[], "ewc"])
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"),
                                      "--baseline", "ewk"])
    assert result.exit_code == 2
    assert "--baseline 'ewk' is not a row of this sweep; the rows are: 'fine-tuning', 'ewc'" \
        in " ".join(result.output.split())
    only_invalid = sweep_file(tmp_path, scenarios=["pendulum-contexts"], agents=["ppo"])
    result = CliRunner().invoke(app, ["sweep", str(only_invalid), "--out",
                                      str(tmp_path / "out"), "--skip-invalid"])
    assert result.exit_code == 2
    lines = _logical_lines(result.output)
    assert lines[0].startswith("skipped: cell 'fine-tuning' on pendulum-contexts")
    assert "has no valid cell" in lines[-1]
    assert not (tmp_path / "out").exists()
