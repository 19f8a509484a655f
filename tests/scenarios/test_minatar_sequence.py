"""The built-in `minatar-sequence` scenario: four MinAtar games (gymnax, functional path), played
twice. It is the sequence it says, its layout joins the games (frames padded to the widest,
actions a game lacks masked), its registered random scores are what a uniform-random policy
gets, and PPO runs it end to end with one compiled program per game.

Compilation is the cost here (each game's step function compiles for seconds), so the tests
share one plan per agent (`make_plan` caches trainers) and only one run trains."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import jax
import numpy as np

from everlearn.envs.layout import Layout
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import start_run
from everlearn.scenarios import get_scenario, scenario_names
from everlearn.scenarios.catalogue import MINATAR_GAMES
from everlearn.scenarios.registry import scenario_sources
from everlearn.scenarios.resolve import scenario_layout_for
from everlearn.training.scores import RANDOM_EPISODES, random_scores

NAME = "minatar-sequence"
GAMES = ["breakout", "space-invaders", "asterix", "freeway"]
ENVS = ["Breakout-MinAtar", "SpaceInvaders-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar"]
ACTIONS = [3, 4, 5, 3]  # each game's own action set; the scenario acts over 5
CHANNELS = [4, 6, 4, 7]  # each game's frame is 10x10xC; the scenario pads to 10x10x7
# Standard deviation of a uniform-random policy's episode return per game, from the 4,000
# episodes behind the registered random scores (catalogue.py, "MinAtar").
RANDOM_STD = [0.66, 3.33, 0.89, 0.65]
# Small runs: a handful of updates per task; evaluation and diagnostics still run in full.
TINY = {
    "ppo": ["steps_per_task=256", "evals_per_task=1", "eval_episodes=1", "ppo.num_envs=4",
            "ppo.num_steps=32", "ppo.num_epochs=2", "ppo.hidden_sizes=[64]"],
    "dqn": ["steps_per_task=256", "evals_per_task=1", "eval_episodes=1",
            "dqn.learning_starts=64", "dqn.train_every=64", "dqn.gradient_steps=4",
            "dqn.hidden_sizes=[64]"],
}


def plan_for(agent: str, seeds: str = "0-1", methods: tuple[str, ...] = ()):
    config = build_config(None, {"scenario": NAME, "agent": agent, "seeds": seeds,
                                 "methods": list(methods)}, TINY[agent])
    return config, make_plan(config)


def test_the_sequence_is_four_minatar_games_twice():
    scenario = get_scenario(NAME)
    assert NAME in scenario_names() and scenario_sources()[NAME] == "built-in"
    assert [t.name for t in scenario.tasks] == GAMES + [f"{g}-2" for g in GAMES]
    assert [t.env for t in scenario.tasks] == ENVS * 2
    assert scenario.boundaries_visible and scenario.task_ids_visible and not scenario.drift
    assert scenario.metrics == "everlearn" and scenario.steps_per_task == 1_000_000
    assert scenario.description and scenario.scored
    first, second = scenario.tasks[:4], scenario.tasks[4:]
    assert [(t.random_score, t.reference_score) for t in first] == \
           [(t.random_score, t.reference_score) for t in second]
    assert all(t.random_score < t.reference_score for t in scenario.tasks)
    assert [(name, env) for name, env, *_ in MINATAR_GAMES] == list(zip(GAMES, ENVS))


def test_layout_pads_frames_and_masks_the_actions_a_game_lacks():
    assert scenario_layout_for(NAME, "jax") == Layout((10, 10, 7), False, 5, masked=True)
    config, plan = plan_for("ppo")
    assert config.backend == "jax"  # chosen: every game has a functional version only
    trainer = plan.trainer
    # One env group (one training program) per game, holding both of its rounds.
    assert [g.env.name for g in trainer.groups] == ENVS
    assert [g.task_indices for g in trainer.groups] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    for group, actions, channels in zip(trainer.groups, ACTIONS, CHANNELS):
        assert group.env.spaces.obs_shape == (10, 10, channels)
        mask = [1.0] * actions + [0.0] * (5 - actions)
        assert np.asarray(group.tasks.action_mask).tolist() == [mask, mask]
    assert trainer.agent.view.obs_dim == 10 * 10 * 7 + 5  # padded frame, then the mask
    # Task ids are visible: multi_head gets one output head per task.
    _, heads = plan_for("ppo", methods=("multi_head",))
    assert heads.trainer.agent.view.obs_dim == 10 * 10 * 7 + 8 + 5


def test_registered_random_scores_match_a_fresh_measurement():
    """A run's own measurement (`random_scores`: 100 episodes per game on the functional path,
    seed 0) of each game, with the registered scores taken out, against the registered 4,000-
    episode means. The band is four standard errors of a 100-episode mean (0.26 Breakout, 1.3
    Space Invaders, 0.36 Asterix, 0.26 Freeway): a fresh measurement of a correct score falls
    outside it with probability below 1e-4, while a score from another game, or from a game
    whose dynamics changed, falls far outside."""
    scenario = get_scenario(NAME)
    games = scenario.tasks[:4]
    unscored = replace(scenario, tasks=tuple(replace(t, random_score=None) for t in games))
    measured = random_scores(unscored, "jax")
    episodes = RANDOM_EPISODES["jax"]
    bad = [f"{t.name}: registered {t.random_score}, measured {m:.3f}"
           for t, m, std in zip(games, measured, RANDOM_STD)
           if abs(m - t.random_score) > 4 * std / math.sqrt(episodes)]
    assert not bad, "; ".join(bad)


def test_dqn_never_takes_an_action_the_game_lacks(biased_breakout):
    """Breakout has 3 of the scenario's 5 actions. With the Q-head's bias pushed hard towards
    action 4, DQN's greedy and exploring policies still take only Breakout's actions."""
    _, plan = plan_for("dqn")
    agent, state, obs = biased_breakout(plan, "q", 4)
    assert int(agent.greedy_action(state, obs).max()) <= 2
    actions, _ = agent.act(state, obs, jax.random.PRNGKey(2))  # epsilon = 1 at the start
    assert int(actions.max()) <= 2 and len(np.unique(np.asarray(actions))) == 3
    unmasked = obs.at[:, -5:].set(1.0)  # the same frames claiming all five actions
    assert float(np.mean(np.asarray(agent.greedy_action(state, unmasked)) == 4)) == 1.0


def test_ppo_runs_the_sequence_end_to_end(tmp_path):
    """One seed through all eight tasks (one: two seeds would be split over this machine's two
    XLA devices and compile sharded programs, 62 s against 46 s here, for nothing this test
    checks; seeds side by side are tested on CartPole, tests/runs/test_run_end_to_end.py).
    Each game has its own training program, compiled once: the second round revisits every
    game and compiles nothing."""
    config, plan = plan_for("ppo", seeds="0")
    run_dir = start_run(config, tmp_path / "run", quiet=True)
    assert len(plan.trainer._segments) == 4
    for segment in plan.trainer._segments:
        assert segment._cache_size() == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks"] == GAMES + [f"{g}-2" for g in GAMES]
    assert summary["seeds"] == [0] and summary["backend"] == "jax"
    assert np.asarray(summary["performance_matrix"]).shape == (1, 8, 8)
    assert {"average_performance", "forgetting"} <= set(summary["aggregate"])
    scores = json.loads((run_dir / "run.json").read_text())["normalisation"]
    scenario = get_scenario(NAME)
    assert scores["random"] == [t.random_score for t in scenario.tasks]
    assert scores["reference"] == [t.reference_score for t in scenario.tasks]
    assert scores["source"] == [{"random_score": "given", "reference_score": "given"}] * 8
    # The CNN torso reads the padded (10, 10, 7) frames: its kernel has 7 input channels.
    conv = plan.trainer.agent.init(jax.random.PRNGKey(0)).params["actor"]["params"]["Conv_0"]
    assert conv["kernel"].shape == (3, 3, 7, 16)
