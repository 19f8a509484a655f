"""The Python API (`everlearn.run`, `resume`, `load_run`, `sweep`, `RunResult`): the same runs
as the command line's, their numbers as DataFrames equal to summary.json and metrics.jsonl."""

import json

import numpy as np
import pytest

import everlearn
from everlearn.core.errors import ConfigError
from everlearn.runs.config import build_config
from everlearn.runs.run import start_run

SETTINGS = {"steps_per_task": 2048, "evals_per_task": 2, "eval_episodes": 2}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "r"
    return everlearn.run("cartpole-contexts", "ppo", seeds="0-1", settings=SETTINGS, out=out,
                         quiet=True)


def test_the_api_is_exported_lazily():
    assert {"run", "resume", "load_run", "sweep", "RunResult"} <= set(everlearn.__all__)
    assert everlearn.run is everlearn.api.run
    with pytest.raises(AttributeError):
        everlearn.no_such_name  # noqa: B018


def test_run_returns_its_directory_as_dataframes(result):
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.summary == summary
    assert result.report == result.run_dir / "report.html" and result.report.is_file()
    seeds, tasks = summary["seeds"], summary["tasks"]
    assert seeds == [0, 1] and len(tasks) == 4

    aggregate = result.aggregate
    assert list(aggregate.index) == list(summary["aggregate"])
    assert list(aggregate.columns) == ["iqm", "ci_low", "ci_high"]
    for metric, values in summary["aggregate"].items():
        assert aggregate.loc[metric].to_dict() == values

    per_seed = result.per_seed
    assert list(per_seed.index) == seeds and list(per_seed.columns) == list(summary["per_seed"])
    for metric, values in summary["per_seed"].items():
        assert per_seed[metric].tolist() == values

    matrix = result.performance_matrix
    assert list(matrix.columns) == ["seed", "after_task", "task", "performance"]
    assert len(matrix) == len(seeds) * len(tasks) ** 2
    for s, seed in enumerate(seeds):
        for k, after in enumerate(tasks):
            for i, task in enumerate(tasks):
                row = matrix[(matrix.seed == seed) & (matrix.after_task == after)
                             & (matrix.task == task)]
                assert row.performance.tolist() == [summary["performance_matrix"][s][k][i]]

    evals = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    evals = [r for r in evals if r["kind"] == "eval"]
    assert len(evals) == 4 * 2 + 1  # an evaluation before training, then 2 per task
    curves = result.curves
    assert list(curves.columns) == ["seed", "eval_index", "step", "task", "normalised",
                                    "return"]
    assert len(curves) == len(evals) * len(seeds) * len(tasks)
    assert sorted(curves.step.unique()) == summary["eval_steps"]
    for record in evals:
        for s, seed in enumerate(seeds):
            rows = curves[(curves.eval_index == record["eval_index"]) & (curves.seed == seed)]
            assert rows.task.tolist() == tasks
            assert (rows.step == record["step"]).all()
            assert rows.normalised.tolist() == record["normalised"][s]
            assert rows["return"].tolist() == record["returns"][s]
    # The curves end where the performance matrix's last row was read.
    last = curves[curves.eval_index == len(evals) - 1]
    assert np.allclose(np.clip(last.normalised, 0, 1),
                       matrix[matrix.after_task == tasks[-1]].performance)

    assert everlearn.load_run(result.run_dir) == result
    assert "cartpole-contexts" in repr(result)


def test_the_cli_path_stopped_and_resumed_gives_the_same_run(result, tmp_path):
    # What `everlearn run --scenario cartpole-contexts --agent ppo --seeds 0-1 --set ...`
    # builds, stopped after its first segment, then finished by everlearn.resume.
    config = build_config(None, {"scenario": "cartpole-contexts", "agent": "ppo",
                                 "seeds": "0-1", "backend": None, "reference": None,
                                 "methods": None},
                          [f"{k}={v}" for k, v in SETTINGS.items()], None)
    run_dir = start_run(config, tmp_path / "cli", quiet=True, stop_after=1)
    with pytest.raises(ValueError, match=r"everlearn\.resume\(") as e:
        everlearn.load_run(run_dir)
    assert "\n" not in str(e.value)

    resumed = everlearn.resume(run_dir, quiet=True)
    assert resumed.run_dir == run_dir
    assert (run_dir / "config.yaml").read_text() == (result.run_dir / "config.yaml").read_text()

    def without_time(summary):
        return {k: v for k, v in summary.items() if k != "wall_time_s"}

    assert without_time(resumed.summary) == without_time(result.summary)
    assert resumed.curves.equals(result.curves)


def test_settings_are_read_as_set_values():
    from everlearn.api import _sets

    settings = {"ppo.learning_rate": 1e-05, "steps_per_task": 4096, "ewc.online": True,
                "name": "3", "nothing": None, "shape": [64, 64]}
    sets = _sets(settings)
    assert sets[0] == "ppo.learning_rate=1.0e-05"  # PyYAML reads 1e-05 as text
    import yaml

    assert {s.split("=", 1)[0]: yaml.safe_load(s.split("=", 1)[1]) for s in sets} == settings
    config = build_config(None, {"scenario": "cartpole-contexts"},
                          _sets({"ppo.learning_rate": 1e-05, "evals_per_task": 3}))
    assert config.ppo.learning_rate == 1e-05 and config.evals_per_task == 3


def test_bad_settings_raise_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        everlearn.run("cartpole-contexts", settings={"no_such_key": 1}, out=tmp_path / "r")
    assert "no_such_key" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        everlearn.run("no-such-scenario", out=tmp_path / "r")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r").exists()


def test_load_run_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run directory") as e:
        everlearn.load_run(tmp_path)
    assert "\n" not in str(e.value)


def test_sweep_of_a_dict(tmp_path):
    spec = {"scenarios": ["cartpole-contexts"], "agents": ["ppo"], "methods": [[]],
            "seeds": "0-1", "reference": False, "set": SETTINGS}
    with pytest.raises(ConfigError, match="out="):
        everlearn.sweep(spec)
    done = everlearn.sweep(spec, tmp_path / "s", workers=1, quiet=True)
    assert done.sweep_dir == tmp_path / "s"
    assert [s["status"] for s in done.status.values()] == ["done"] and done.failed == {}
    assert {p.name for p in done.comparison_paths} == {"comparison.json", "comparison.md",
                                                       "comparison.html"}
    assert done.comparison == json.loads((done.sweep_dir / "comparison.json").read_text())
    (name,) = done.status
    cell = done.cell(name)
    assert cell.summary["seeds"] == [0, 1] and cell.per_seed.shape[0] == 2
    again = everlearn.sweep(spec, tmp_path / "s", workers=1, quiet=True)  # resumes: all done
    assert again.comparison == done.comparison
