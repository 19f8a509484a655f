"""`explore_each_task` in runs: resolved from the scenario, refused where boundaries are
hidden, and a run restarts exploration at each task boundary without any method."""

import json

import pytest

from everlearn.core.errors import ConfigError
from everlearn.runs.config import build_config
from everlearn.runs.run import start_run
from everlearn.scenarios import get_scenario
from everlearn.training.reference import reference_key


def _config(scenario: str, agent: str, sets: list[str] = ()):
    return build_config(None, {"scenario": scenario, "agent": agent}, list(sets))


def test_explore_each_task_is_on_where_boundaries_show_and_refused_where_hidden():
    assert _config("cartpole-contexts", "dqn").dqn.explore_each_task is True
    assert _config("cartpole-contexts", "dqn").acts_at_boundaries()
    off = _config("cartpole-contexts", "dqn", ["dqn.explore_each_task=false"])
    assert off.dqn.explore_each_task is False and not off.acts_at_boundaries()
    assert _config("pendulum-contexts", "td3").to_dict()["td3"]["explore_each_task"] is True
    assert _config("pendulum-drift", "sac").sac.explore_each_task is False
    assert not _config("cartpole-contexts", "ppo").acts_at_boundaries()  # nothing to restart
    # SAC's resets act at boundaries too, with exploration restarts off
    resets = _config("pendulum-contexts", "sac", ["sac.explore_each_task=false",
                                                  "sac.reset_buffer_each_task=true"])
    assert resets.acts_at_boundaries()
    with pytest.raises(ConfigError, match="sac.reset_alpha_each_task needs task boundaries"):
        _config("pendulum-drift", "sac", ["sac.reset_alpha_each_task=true"])
    with pytest.raises(ConfigError, match="sac.explore_each_task needs task boundaries, which "
                                          "scenario 'pendulum-drift' hides"):
        _config("pendulum-drift", "sac", ["sac.explore_each_task=true"])


def test_references_are_shared_by_both_settings():
    """A single-task reference meets no boundary: one cached reference serves both."""
    scenario = get_scenario("cartpole-contexts")
    on = _config("cartpole-contexts", "dqn")
    off = _config("cartpole-contexts", "dqn", ["dqn.explore_each_task=false"])
    assert reference_key(on, scenario, 1024) == reference_key(off, scenario, 1024)


def test_a_run_without_methods_restarts_epsilon_at_each_task(tmp_path):
    sets = ["steps_per_task=512", "evals_per_task=2", "eval_episodes=1", "diagnostics=false",
            "dqn.train_every=64", "dqn.gradient_steps=4", "dqn.batch_size=16",
            "dqn.buffer_size=2048", "dqn.learning_starts=64", "dqn.exploration_steps=256",
            "dqn.hidden_sizes=[16]"]
    epsilon = {}
    for setting in ("true", "false"):
        config = build_config(None, {"scenario": "cartpole-contexts", "agent": "dqn",
                                     "seeds": "0"}, [*sets, f"dqn.explore_each_task={setting}"])
        run_dir = start_run(config, tmp_path / setting, quiet=True)
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        # mean epsilon over each segment's updates; segments 1, 3, 5, 7 open tasks 1-4
        epsilon[setting] = [line["train"]["epsilon"][0] for line in lines
                            if line.get("kind") == "eval" and line["eval_index"] > 0]
    on, off = epsilon["true"], epsilon["false"]
    assert on[0] == off[0] and on[1] == off[1]  # task 1 alike
    for first_of_task in (2, 4, 6):
        assert on[first_of_task] == pytest.approx(on[0])  # each task starts the schedule again
        assert off[first_of_task] == pytest.approx(0.04)  # epsilon_end since task 1


def test_a_run_started_before_a_setting_existed_is_named_so_on_resume(tmp_path):
    """A run.json config without `dqn.explore_each_task` (an earlier everlearn): resume says
    so, instead of calling config.yaml edited."""
    from everlearn.runs.run import resume_run

    config = build_config(None, {"scenario": "cartpole-contexts", "agent": "dqn", "seeds": "0"},
                          ["steps_per_task=1024", "evals_per_task=2", "eval_episodes=1",
                           "dqn.learning_starts=256", "dqn.train_every=64",
                           "dqn.gradient_steps=4", "dqn.hidden_sizes=[16]"])
    run_dir = start_run(config, tmp_path / "run", quiet=True, stop_after=1)
    info = json.loads((run_dir / "run.json").read_text())
    del info["config"]["dqn"]["explore_each_task"]
    (run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="started by an earlier everlearn, without the "
                                          "settings dqn.explore_each_task"):
        resume_run(run_dir, quiet=True)
