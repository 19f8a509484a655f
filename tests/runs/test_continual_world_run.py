"""A Continual World run end to end: `--preset continual-world` on two of CW's tasks with a
tiny budget and network, through the command line; the summary and the report lead with
Continual World's metric convention and still hold everlearn's."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from everlearn.cli import app

HERE = Path(__file__).parent
SHRINK = ["--set", "steps_per_task=200", "--set", "eval_episodes=2",
          "--set", "sac.hidden_sizes=[16, 16]", "--set", "sac.learning_starts=50",
          "--set", "sac.random_steps=100", "--set", "sac.buffer_size=1000"]


def test_the_preset_resolves_continual_worlds_settings_and_shrinks_with_set():
    result = CliRunner().invoke(app, ["run", "--dry-run", "--scenario", "cw10", "--preset",
                                      "continual-world", "--method", "packnet",
                                      "--set", "steps_per_task=100000"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.stdout)
    assert config["agent"] == "sac" and config["methods"] == ["multi_head", "packnet"]
    assert config["evals_per_task"] == 5  # every 20k of 100k steps
    sac = config["sac"]
    assert sac["hidden_sizes"] == [256] * 4 and sac["activation"] == "leaky_relu"
    assert sac["first_layer_norm"] and sac["batch_size"] == 128
    assert sac["reset_buffer_each_task"] and sac["reset_optimiser_each_task"]
    result = CliRunner().invoke(app, ["run", "--dry-run", "--scenario", "cw10", "--preset",
                                      "continual-world", "--set", "evals_per_task=3"])
    assert yaml.safe_load(result.stdout)["evals_per_task"] == 3  # a later layer wins
    result = CliRunner().invoke(app, ["run", "--dry-run", "--preset", "nope"])
    assert result.exit_code == 2
    assert result.output == "error: unknown preset 'nope'; choose one of: continual-world\n"


def test_a_continual_world_run_reports_in_cws_convention(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--scenario", str(HERE / "scenario_files/cw2.yaml"),
                                      "--preset", "continual-world", "--seeds", "0-1",
                                      "--out", str(out), *SHRINK])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics_convention"] == "continual-world"
    cw = summary["continual_world"]
    assert set(cw["aggregate"]) == {"average_performance", "forgetting"}  # no references
    assert cw["final_evals"] == 1 and len(cw["per_seed"]["forgetting"]) == 2
    assert set(summary["aggregate"]) >= {"average_performance", "forgetting"}  # everlearn's
    # success rates of 2 episodes: 0, 1/2 or 1
    assert all(v in (0.0, 0.5, 1.0) for row in summary["performance_matrix"][0] for v in row)
    report = (out / "report.html").read_text()
    assert report.index("metric (Continual World)") < report.index("everlearn's convention")
