"""Run configuration: every way a config can be wrong is a one-line ConfigError; precedence; CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from everlearn.agents.ppo import PPOConfig
from everlearn.cli import app
from everlearn.core.errors import ConfigError
from everlearn.runs.config import RunConfig, build_config, parse_seeds


def config_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(**kwargs)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert message.strip() == message and message
    return message


# ---------------------------------------------------------------------------- errors


def test_unknown_top_level_key_lists_valid_keys():
    msg = config_error(overrides={"evals_per_tsk": 3})
    assert "'evals_per_tsk'" in msg
    for key in RunConfig.model_fields:
        assert key in msg


def test_unknown_nested_key_lists_valid_ppo_keys():
    msg = config_error(sets=["ppo.lrr=0.1"])
    assert "ppo.lrr" in msg
    valid = msg.split("valid keys:", 1)[1]
    for key in PPOConfig.model_fields:
        assert key in valid
    # the valid keys are the section's, not the top level's
    assert "evals_per_task" not in valid and "scenario" not in valid


def test_unknown_nested_key_from_yaml(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("dqn:\n  learning_rat: 0.1\n")
    msg = config_error(config_file=f)
    assert "dqn.learning_rat" in msg and "learning_rate" in msg


@pytest.mark.parametrize("item, key, got", [
    ("evals_per_task=abc", "evals_per_task", "'abc'"),
    ("evals_per_task=0", "evals_per_task", "0"),
    ("ppo.num_envs=many", "ppo.num_envs", "'many'"),
    ("backend=torch", "backend", "'torch'"),
])
def test_wrong_type_names_key_and_value(item, key, got):
    msg = config_error(sets=[item])
    assert f"'{key}'" in msg and got in msg


def test_wrong_backend_lists_choices():
    msg = config_error(overrides={"backend": "torch"})
    assert "jax" in msg and "gymnasium" in msg


def test_unknown_scenario_lists_scenarios():
    from everlearn.scenarios import scenario_names

    msg = config_error(overrides={"scenario": "nope"})
    assert "'nope'" in msg
    for name in scenario_names():
        assert name in msg
    assert "cartpole-contexts" in msg and "acrobot-contexts" in msg


def test_unknown_agent_lists_agents():
    from everlearn.agents import AGENTS

    msg = config_error(overrides={"agent": "a2c"})
    assert "'a2c'" in msg
    for name in AGENTS:
        assert name in msg


@pytest.mark.parametrize("seeds", ["a-b", "0,x", "1.5", "3-1", "1,1", "-1", ""])
def test_bad_seeds_string(seeds):
    msg = config_error(overrides={"seeds": seeds})
    assert "seeds" in msg and "0-4" in msg


@pytest.mark.parametrize("item", ["seeds=[0, 0]", "seeds=[-1, 2]", "seeds=-2", "seeds=[a]"])
def test_bad_seeds_value_from_yaml_or_set(item):
    """Seeds given as a YAML int or list must be checked like a string (distinct, >= 0)."""
    msg = config_error(sets=[item])
    assert "seeds" in msg


def test_set_without_equals():
    msg = config_error(sets=["ppo.learning_rate"])
    assert "ppo.learning_rate" in msg and "key=value" in msg


def test_set_into_a_non_section():
    msg = config_error(sets=["agent=ppo", "agent.x=1"])
    assert "agent" in msg


def test_missing_config_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    msg = config_error(config_file=missing)
    assert str(missing) in msg and "does not exist" in msg


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_yaml_not_a_mapping(tmp_path: Path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    msg = config_error(config_file=f)
    assert "mapping" in msg


def test_invalid_yaml(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("ppo: {learning_rate: [\n")
    msg = config_error(config_file=f)
    assert "YAML" in msg


def test_empty_yaml_gives_defaults(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("")
    assert build_config(config_file=f) == RunConfig()


# ---------------------------------------------------------------------------- precedence


def test_precedence_file_then_overrides_then_set(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "agent: dqn\n"
        "seeds: 0-2\n"
        "evals_per_task: 3\n"
        "eval_episodes: 4\n"
        "ppo:\n  learning_rate: 0.01\n  num_envs: 4\n"
    )
    cfg = build_config(f)
    assert cfg.agent == "dqn" and cfg.seeds == [0, 1, 2] and cfg.evals_per_task == 3
    assert cfg.ppo.learning_rate == 0.01 and cfg.ppo.num_envs == 4

    # CLI flags beat the file; flags left at None do not clobber it
    cfg = build_config(f, {"agent": "ppo", "seeds": None, "evals_per_task": 5})
    assert cfg.agent == "ppo" and cfg.seeds == [0, 1, 2] and cfg.evals_per_task == 5

    # --set beats both, and a nested --set keeps the section's other file values
    cfg = build_config(f, {"agent": "dqn", "evals_per_task": 5},
                       ["evals_per_task=7", "agent=ppo", "ppo.learning_rate=3e-4"])
    assert cfg.evals_per_task == 7 and cfg.agent == "ppo"
    assert cfg.ppo.learning_rate == pytest.approx(3e-4) and cfg.ppo.num_envs == 4
    assert cfg.eval_episodes == 4  # untouched file value survives


def test_set_values_are_parsed_as_yaml():
    cfg = build_config(sets=["reference=true", "ppo.hidden_sizes=[32, 16]", "seeds=0,3,7",
                             "steps_per_task=1000"])
    assert cfg.reference is True
    assert cfg.ppo.hidden_sizes == (32, 16)
    assert cfg.seeds == [0, 3, 7]
    assert cfg.steps_per_task == 1000


def test_defaults():
    cfg = build_config()
    assert cfg.scenario == "cartpole-contexts" and cfg.agent == "ppo" and cfg.seeds == [0]
    assert "dqn" not in cfg.to_dict() and "ppo" in cfg.to_dict()


# ---------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("value, expected", [
    ("0-4", [0, 1, 2, 3, 4]),
    ("0,3,7", [0, 3, 7]),
    ("0-2,5", [0, 1, 2, 5]),
    (" 1 , 2 ", [1, 2]),
    ("7", [7]),
    (5, [5]),
    ([2, 4], [2, 4]),
])
def test_parse_seeds(value, expected):
    assert parse_seeds(value) == expected


def test_seeds_via_build_config():
    assert build_config(overrides={"seeds": "0-4"}).seeds == [0, 1, 2, 3, 4]
    assert build_config(overrides={"seeds": "0,3,7"}).seeds == [0, 3, 7]


# ---------------------------------------------------------------------------- CLI


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_cli_run_unknown_scenario_fails_cleanly(tmp_path: Path):
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["run", "--scenario", "nope", "--out", str(out)])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    assert "nope" in lines[0] and "cartpole-contexts" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--set", "ppo.lrr=1"],
    ["--set", "evals_per_task"],
    ["--seeds", "x-y"],
    ["--agent", "sac"],
    ["--config", "MISSING"],
])
def test_cli_run_bad_config_fails_cleanly(tmp_path: Path, args):
    out = tmp_path / "r"
    args = [str(tmp_path / "missing.yaml") if a == "MISSING" else a for a in args]
    result = CliRunner().invoke(app, ["run", *args, "--out", str(out)])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert not out.exists()


def test_cli_list_shows_builtin_scenarios_and_presets_within_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("cartpole-contexts", "acrobot-contexts", "cw10", "cw20"):
        assert f"│ {name} " in result.output
    assert "ppo" in result.output and "dqn" in result.output
    assert "presets (--preset NAME): continual-world" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


# -- validation at the edge (issue 15, part 4): each of these was accepted or a traceback ----

@pytest.mark.parametrize("sets, named", [
    (["seeds=4294967296"], "seed 4294967296 is too large"),
    (["seeds=0-99999999"], "at most 10,000"),
    (["steps_per_task=1000000000000000"], "'steps_per_task' = 1000000000000000: must be less"),
    (["ppo.num_envs=0"], "'ppo.num_envs' = 0: must be greater than or equal to 1"),
    (["ppo.num_envs=-1"], "'ppo.num_envs' = -1"),
    (["ppo.num_minibatches=0"], "'ppo.num_minibatches' = 0"),
    (["ppo.num_minibatches=3"], "ppo.num_minibatches 3 does not divide"),
    (["ppo.learning_rate=-1"], "'ppo.learning_rate' = -1: must be greater than 0"),
    (["ppo.learning_rate=.nan"], "'ppo.learning_rate' = nan"),
    (["ppo.gamma=2"], "'ppo.gamma' = 2: must be less than or equal to 1"),
    (["ppo.clip_eps=-1"], "'ppo.clip_eps' = -1"),
    (["ppo.hidden_sizes=[]"], "'ppo.hidden_sizes' = []"),
    (["ppo.hidden_sizes=[64, 0]"], "'ppo.hidden_sizes.1' = 0"),
    (["agent=dqn", "dqn.buffer_size=0"], "'dqn.buffer_size' = 0"),
    (["agent=dqn", "dqn.batch_size=0"], "'dqn.batch_size' = 0"),
    (["agent=dqn", "dqn.epsilon_start=5"], "'dqn.epsilon_start' = 5: must be less than"),
    (["agent=dqn", "dqn.exploration_steps=0"], "'dqn.exploration_steps' = 0"),
    (["agent=sac", "sac.tau=0"], "'sac.tau' = 0"),
    (["agent=td3", "td3.exploration_noise=-0.1"], "'td3.exploration_noise' = -0.1"),
    (["methods=[ewc]", "ewc.strength=.inf"], "'ewc.strength' = inf"),
    (["dqn.learning_rate=0.1"], "--set dqn.learning_rate: agent 'dqn' is not the run's agent"),
    (["ewc.strength=1"], "--set ewc.strength: method 'ewc' is not in the run"),
    (["ppo.learning_rate=[1"], "--set 'ppo.learning_rate=[1': '[1' is not a value"),
])
def test_bad_values_are_refused_in_one_line_naming_key_value_and_range(sets, named):
    with pytest.raises(ConfigError) as e:
        build_config(sets=sets)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_config_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="is a directory; give a YAML file"):
        build_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=f"'{binary}' is not UTF-8 text"):
        build_config(binary)


def test_a_config_file_may_hold_settings_of_agents_the_run_does_not_use(tmp_path: Path):
    shared = tmp_path / "shared.yaml"
    shared.write_text("ppo:\n  learning_rate: 0.01\ndqn:\n  learning_rate: 0.002\n")
    assert build_config(shared, {"agent": "dqn"}).dqn.learning_rate == 0.002


@pytest.mark.parametrize("sets, named", [
    # Used to run 256 steps per task silently, and 447k steps on task 1 (issue 15).
    (["steps_per_task=1"], "steps_per_task 1 over evals_per_task 10 leaves 0.1 env steps per "
                           "evaluation, less than one ppo update (256 env steps); set "
                           "steps_per_task >= 2,560"),
    (["evals_per_task=100000", "steps_per_task=2000"], "or evals_per_task <= 7"),
    (["steps_per_task=2147483647", "evals_per_task=1"], "the loops count in int32"),
])
def test_a_budget_below_one_update_per_evaluation_is_refused(sets, named):
    from everlearn.runs.plan import make_plan

    with pytest.raises(ConfigError) as e:
        make_plan(build_config(sets=sets))
    assert named in str(e.value)


def test_a_budget_that_is_not_whole_updates_says_how_it_rounds():
    from everlearn.runs.plan import budget_note, make_plan

    note = budget_note(make_plan(build_config(sets=["steps_per_task=20000"])))
    assert note == ("note: steps_per_task 20,000 runs as 20,480: 10 evaluations, each after 8 "
                    "ppo updates of 256 env steps")
    assert budget_note(make_plan(build_config(sets=["steps_per_task=25600"]))) is None


def test_out_at_a_file_and_an_oversized_replay_buffer_are_one_line(tmp_path: Path):
    """`--out` at a file was a NotADirectoryError traceback; a buffer of a billion rows would
    be an out-of-memory crash after the run started."""
    a_file = tmp_path / "taken"
    a_file.write_text("")
    result = CliRunner().invoke(app, ["run", "--out", str(a_file)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"--out '{a_file}' is a file" in result.output
    result = CliRunner().invoke(app, ["run", "--scenario", "pendulum-contexts", "--agent", "sac",
                                      "--set", "sac.buffer_size=20000000000", "--dry-run"])
    assert result.exit_code == 2 and "lower sac.buffer_size" in result.output
