"""Open scenarios end to end: a user's own env from a YAML file through the command line, with
no score typed by hand; scenarios that mix environments on both paths (padded observations,
masked actions). A run that mixes four MinAtar games on the functional path, one compiled
program per env, is tests/scenarios/test_minatar_sequence.py (the built-in minatar-sequence)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import start_run

HERE = Path(__file__).parent
THERMOSTAT = HERE.parent / "scenarios" / "user_envs" / "thermostat.yaml"
MINATAR = HERE / "scenario_files" / "minatar-mixed.yaml"
CLASSIC = HERE / "scenario_files" / "classic-mixed.yaml"
# Small runs; a --set of an agent the run does not use is refused, so one list per agent.
SMALL_FOR = {
    "ppo": ["evals_per_task=2", "eval_episodes=2", "ppo.num_envs=4", "ppo.num_steps=32",
            "ppo.num_epochs=2"],
    "dqn": ["evals_per_task=2", "eval_episodes=2", "dqn.learning_starts=256",
            "dqn.train_every=64", "dqn.gradient_steps=16", "dqn.hidden_sizes=[64,64]"],
}
SMALL = SMALL_FOR["ppo"]


@pytest.mark.parametrize("agent", ["ppo", "dqn"])
def test_users_own_env_runs_from_a_scenario_file_with_measured_scores(tmp_path, agent):
    """`room.py` knows nothing of everlearn; the YAML file gives no scores: the random score
    is measured, the reference score is the single-task reference run's final return."""
    out = tmp_path / "run"
    sets = [a for s in SMALL_FOR[agent] for a in ("--set", s)]
    result = CliRunner().invoke(app, ["run", "--scenario", str(THERMOSTAT), "--agent", agent,
                                      "--backend", "gymnasium", "--seeds", "0-1", *sets,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    scores = info["normalisation"]
    assert scores["source"] == [{"random_score": "uniform-random policy",
                                 "reference_score": "final return of the single-task "
                                                    "reference run"}] * 2
    assert all(r < f for r, f in zip(scores["random"], scores["reference"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["mild", "cold"]
    assert summary["normalisation"]["random"] == scores["random"]
    assert "forward_transfer" in summary["aggregate"]  # the reference runs served FT too
    report = (out / "report.html").read_text()
    assert "mild" in report and "cold" in report and "uniform-random policy" in report


def test_gymnasium_scenario_mixing_two_envs_runs(tmp_path):
    config = build_config(None, {"scenario": str(CLASSIC), "agent": "ppo", "seeds": "0-1",
                                 "backend": "gymnasium"}, SMALL)
    run_dir = start_run(config, tmp_path / "run", quiet=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.asarray(summary["performance_matrix"]).shape == (2, 2, 2)
    plan = make_plan(config)
    assert plan.trainer.agent.view.obs_dim == 6 + 3  # Acrobot's 6 wide, then a 3-action mask


@pytest.fixture(scope="module")
def minatar_plan():
    config = build_config(None, {"scenario": str(MINATAR), "agent": "ppo", "seeds": "0-1"},
                          [*SMALL, "ppo.hidden_sizes=[64]"])
    return config, make_plan(config)


# The run of a mixed MinAtar scenario (one program per env, compiled once; seeds vmapped; the
# CNN reading padded frames) is tests/scenarios/test_minatar_sequence.py's end-to-end run of
# the built-in minatar-sequence: four games, each visited twice, so it checks all of that more
# strictly, and a second MinAtar run here would compile every program again for nothing.


def test_a_masked_action_is_never_taken(minatar_plan, biased_breakout):
    """Breakout has 3 of the scenario's 4 actions. With the actor's bias pushed hard towards
    action 3, an unmasked policy would take it nearly always; the masked one never does, nor
    does the greedy policy, nor the environment ever receive it."""
    config, plan = minatar_plan
    assert config.backend == "jax"  # a scenario file of gymnax ids runs on the functional path
    agent, state, obs = biased_breakout(plan, "actor", 3)
    actions, _ = agent.act(state, obs, jax.random.PRNGKey(2))
    assert int(actions.max()) <= 2
    assert int(agent.greedy_action(state, obs).max()) <= 2
    unmasked = obs.at[:, -4:].set(1.0)  # the same observations claiming all four actions
    assert float(jnp.mean(agent.greedy_action(state, unmasked) == 3)) == 1.0


def test_an_env_that_reports_success_is_scored_by_its_success_rate(tmp_path):
    """No scores in the file, and no reference runs needed: the performance of a task whose
    env reports `info["success"]` is its success rate (Continual World's measure)."""
    from everlearn.envs.gymnasium_context import make_vector_env
    from everlearn.envs.rollout import episode_returns
    from everlearn.scenarios import get_scenario

    corridor = get_scenario(str(HERE / "scenario_files" / "corridors.yaml")).tasks[0]
    envs = make_vector_env(corridor, 3)
    right = episode_returns(envs, 0, lambda obs: np.ones(len(obs), int), "success")
    left = episode_returns(envs, 0, lambda obs: np.zeros(len(obs), int), "success")
    assert right.tolist() == [1.0] * 3 and left.tolist() == [0.0] * 3

    config = build_config(None, {"scenario": str(HERE / "scenario_files" / "corridors.yaml"),
                                 "agent": "ppo", "seeds": "0-1"}, SMALL)
    assert config.backend == "gymnasium"
    run_dir = start_run(config, tmp_path / "run", quiet=True)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["normalisation"]["random"] == [0.0, 0.0]
    assert info["normalisation"]["reference"] == [1.0, 1.0]
    assert info["normalisation"]["source"][0]["reference_score"] == "success rate (info['success'])"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "forward_transfer" not in summary["aggregate"]  # no reference run was needed
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = np.asarray([e["returns"] for e in evals])
    assert set(np.unique(rates * 2)) <= {0.0, 1.0, 2.0}  # 2 episodes: 0, 1/2 or 1
    np.testing.assert_allclose([e["normalised"] for e in evals], rates)
