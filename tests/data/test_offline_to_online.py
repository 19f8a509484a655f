"""Offline-to-online: a scenario whose first task learns from a dataset and whose next task
learns online; WSRL's warm-up (the pre-trained policy fills a fresh buffer, no gradient step
meanwhile, no offline row kept); `offline_mix` (RLPD-style symmetric sampling, RaE) draws its
share of every minibatch from a dataset or an earlier run's buffer, holds the data only
during a segment, and refuses a bad source in one line. The datasets are random-policy
recipes (seconds to make), in the session's MINARI_DATASETS_PATH (tests/conftest.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from everlearn.cli import app
from everlearn.core.errors import ConfigError
from everlearn.core.replay import ReplayBuffer
from everlearn.data import minari_io
from everlearn.data.collect import random_policy, rollout
from everlearn.envs.functional import FunctionalEnv
from everlearn.methods.base import AgentView
from everlearn.methods.offline_mix import OfflineMixConfig, make_offline_mix
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import make_datasets
from everlearn.scenarios import get_scenario

SCORES = "random_score: -1214.0, reference_score: -150.0"
SMALL_TD3 = ["td3.hidden_sizes=[16,16]", "evals_per_task=2", "eval_episodes=1"]
# WSRL's settings on TD3: no random actions, learning waits until the online buffer holds two
# Pendulum episodes (the warm-up).
WSRL = ["td3.random_steps=0", "td3.learning_starts=400"]


def scenario_file(directory, *tasks: str, steps: int = 400) -> str:
    path = directory / "scenario.yaml"
    path.write_text(f"name: o2o\nsteps_per_task: {steps}\ntasks:\n"
                    + "".join(f"  - {{{t}, {SCORES}}}\n" for t in tasks))
    return str(path)


def plan_for(scenario: str, *sets: str, methods=(), seeds=(0, 1)):
    config = build_config(None, {"scenario": scenario, "agent": "td3", "seeds": list(seeds),
                                 "methods": list(methods)}, [*SMALL_TD3, *sets])
    plan = make_plan(config)
    make_datasets(plan.scenario, plan.config, quiet=True)  # what `everlearn run` does first
    return plan


@pytest.fixture(scope="module")
def offline_to_online(tmp_path_factory):
    """A random-policy Pendulum dataset learnt offline (400 gradient steps), then the same
    Pendulum online (400 env steps) with WSRL's settings, from the command line. The tests
    below reuse its compiled programs (same scenario file, same settings) and its run."""
    directory = tmp_path_factory.mktemp("o2o")
    scenario = scenario_file(directory, "name: offline, env: Pendulum-v1, dataset: random",
                             "name: online, env: Pendulum-v1")
    out = directory / "run"
    result = CliRunner().invoke(app, ["run", "--scenario", scenario, "--agent", "td3",
                                      "--seeds", "0-1", "--out", str(out),
                                      *sum((["--set", s] for s in SMALL_TD3 + WSRL), [])])
    assert result.exit_code == 0, result.output
    return scenario, out


def test_an_offline_to_online_run_reports_both_phases(offline_to_online):
    """The summary's matrix covers the offline task and the online one; the online phase's
    steps are env steps, the offline phase's gradient steps."""
    _, out = offline_to_online
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["offline", "online"]
    assert np.asarray(summary["performance_matrix"]).shape[-2:] == (2, 2)


def test_wsrl_warm_up_fills_a_fresh_buffer_with_the_pretrained_policy(offline_to_online):
    """During the warm-up no weight moves, the buffer holds exactly the online steps and no
    row of the dataset, and the actions are the pre-trained policy's (TD3: its greedy action
    plus N(0, 0.1) noise, far closer to it than uniform actions, 0.67 away on average);
    gradient steps start right after."""
    scenario, _ = offline_to_online
    trainer = plan_for(scenario, *WSRL).trainer
    state, _ = trainer.train_segment(trainer.init([0, 1]), 0)  # 200 gradient steps offline
    pretrained = state.agent
    assert int(pretrained.gradient_steps[0]) == 200 and int(pretrained.buffer.size[0]) == 0
    state = trainer.task_boundary(state, 0, 1)
    state, _ = trainer.train_segment(state, 1)  # 200 env steps: the warm-up
    warm = state.agent
    assert int(warm.buffer.size[0]) == 200 == int(warm.env_steps[0])
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                            pretrained.params, warm.params)))
    obs = np.asarray(warm.buffer.obs[0, :200])
    dataset = trainer._datasets[0]
    dataset_obs = np.asarray(dataset.obs[:int(dataset.size)])
    assert not (obs[:, None, :] == dataset_obs[None, :, :]).all(-1).any()
    seed0 = jax.tree.map(lambda x: x[0], warm)
    greedy = np.asarray(trainer.agent.greedy_action(seed0, jnp.asarray(obs)))
    gap = np.abs(np.asarray(warm.buffer.action[0, :200]) - greedy).mean()
    assert gap < 0.15, f"warm-up actions are {gap:.2f} from the pre-trained policy's"
    state, _ = trainer.train_segment(state, 1)  # the buffer reached 400 rows: learning
    assert int(state.agent.gradient_steps[0]) > 200


def test_offline_mix_replaces_its_share_of_the_minibatch_and_nothing_without_data():
    """`fraction` 0.25 of 64 rows: exactly the first 16 come from the data; with the one-row
    placeholder (no data in the state) the minibatch is returned as it was."""
    row = {"obs": jax.ShapeDtypeStruct((3,), jnp.float32),
           "action": jax.ShapeDtypeStruct((1,), jnp.float32)}
    view = AgentView("td3", True, None, None, None, ("actor",), 1, 3, row)
    method = make_offline_mix(OfflineMixConfig(fraction=0.25, dataset="x"), view)
    state = method.init(jax.random.PRNGKey(0), {})
    minibatch = {"obs": jnp.zeros((64, 3)), "action": jnp.zeros((64, 1)),
                 "reward": jnp.zeros(64), "terminated": jnp.zeros(64, bool),
                 "next_obs": jnp.zeros((64, 3))}
    unchanged = method.transform_batch(state, minibatch, jax.random.PRNGKey(1))
    assert all(bool(jnp.array_equal(unchanged[k], minibatch[k])) for k in minibatch)
    data = ReplayBuffer.create(10, 3, (1,), jnp.float32)
    data = data.replace(obs=data.obs + 7.0, reward=data.reward - 5.0, size=jnp.int32(10))
    mixed = method.transform_batch({**state, "data": data}, minibatch, jax.random.PRNGKey(1))
    assert bool((mixed["obs"][:16] == 7.0).all()) and bool((mixed["obs"][16:] == 0.0).all())
    assert bool((mixed["reward"][:16] == -5.0).all()) and bool((mixed["reward"][16:] == 0).all())


def write_rewarding_dataset(name: str, reward: float) -> None:
    """Random Pendulum transitions whose every reward is `reward`."""
    task = get_scenario("pendulum-offline").tasks[0]
    episodes = rollout(task, random_policy(FunctionalEnv(task).spaces), 1000, seed=5)
    spaces = FunctionalEnv(task).spaces
    from everlearn.data.collect import agent_spaces

    minari_io.write_dataset(
        name, [minari_io.Episode(e.observations, e.actions, np.full_like(e.rewards, reward),
                                 e.terminations, e.truncations) for e in episodes],
        **agent_spaces(spaces), overwrite=True)


def test_offline_mix_trains_on_its_data_during_a_segment_only(offline_to_online):
    """The online task with all of each minibatch from a dataset whose rewards are +1000:
    after 200 gradient steps the critics' values are positive, where the same run without the
    method (the module run's compiled program) learns negative ones from Pendulum's own
    rewards (all in [-16.3, 0]); between segments the state holds the one-row placeholder, so
    checkpoints never carry the data."""
    write_rewarding_dataset("test/rewarding-v0", 1000.0)
    scenario, _ = offline_to_online
    q_mean, final = {}, {}
    for name, sets, methods in [
            ("mixed", ["offline_mix.dataset=test/rewarding-v0", "offline_mix.fraction=1.0"],
             ["offline_mix"]),
            ("plain", [], [])]:
        trainer = plan_for(scenario, *WSRL, *sets, methods=methods).trainer
        state = trainer.init([0, 1])
        for _ in range(3):  # learning starts once the buffer holds 400 rows (end of the 2nd)
            state, metrics = trainer.train_segment(state, 1)
        q_mean[name], final[name] = metrics["q_mean"], state
    assert float(np.min(q_mean["mixed"])) > 1.0 and float(np.max(q_mean["plain"])) < 0, q_mean
    assert final["mixed"].agent.methods["offline_mix"]["data"].obs.shape[1] == 1


def test_rae_mixes_an_earlier_runs_buffer(offline_to_online):
    """RaE: an earlier run's newest checkpoint holds its replay buffer; a new run mixes it
    (`offline_mix.run`), and the rows it loads are exactly that buffer's filled rows."""
    scenario, first = offline_to_online
    plan = plan_for(scenario, *WSRL, f"offline_mix.run={first}", "offline_mix.run_seed_index=1",
                    methods=["offline_mix"])
    loaded = plan.trainer._load_method_data()["offline_mix"]
    from everlearn.core.checkpoint import load_checkpoint

    saved, _ = load_checkpoint(first / "checkpoints", plan_for(scenario, *WSRL).trainer.init([0, 1]))
    buffer = jax.tree.map(lambda x: x[1], saved.agent.buffer)
    assert int(loaded.size) == int(buffer.size) == 400
    np.testing.assert_array_equal(np.asarray(loaded.obs), np.asarray(buffer.obs[:400]))
    np.testing.assert_array_equal(np.asarray(loaded.action), np.asarray(buffer.action[:400]))


@pytest.mark.parametrize("sets, message", [
    ([], "exactly one source"),
    (["offline_mix.dataset=random", "offline_mix.run=/nowhere"], "exactly one source"),
    (["offline_mix.dataset=random", "offline_mix.task=nope"], "no task 'nope'"),
    (["offline_mix.dataset=nobody/missing-v0"], "no local Minari dataset"),
    (["offline_mix.run=/nowhere"], "not a run directory"),
])
def test_offline_mix_sources_are_refused_in_one_line(offline_to_online, sets, message):
    scenario, _ = offline_to_online
    with pytest.raises(ConfigError, match=message) as error:
        plan_for(scenario, *sets, methods=["offline_mix"])
    assert "\n" not in str(error.value)


def test_a_resumed_run_with_offline_mix_equals_the_uninterrupted_one(offline_to_online,
                                                                     tmp_path):
    """Stopped mid-way through the online task (the checkpoint written while the data is
    mixed in holds the placeholder), then resumed: the data is loaded again, and every
    evaluation and the summary equal the uninterrupted run's."""
    from everlearn.runs.run import resume_run, start_run

    scenario, _ = offline_to_online
    config = plan_for(scenario, *WSRL, "offline_mix.dataset=random",
                      methods=["offline_mix"]).config
    whole = start_run(config, tmp_path / "whole", quiet=True)
    killed = start_run(config, tmp_path / "killed", quiet=True, stop_after=3)
    assert not (killed / "summary.json").exists()
    resume_run(killed, quiet=True)
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["per_seed"] == b["per_seed"] and a["aggregate"] == b["aggregate"]
    assert evals(killed) == evals(whole)


def evals(run_dir) -> list[dict]:
    """A run's metrics lines without their wall time."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in lines]


# -- JSRL ----------------------------------------------------------------------------------

JSRL = ["jsrl.horizon=80", "jsrl.stages=3"]  # the guide's horizons: 80, 40, 0 steps


@pytest.mark.parametrize("backend", ["jax", "gymnasium"])
def test_jsrl_guide_acts_exactly_the_first_h_steps_of_each_episode(offline_to_online,
                                                                   backend):
    """After the offline task, the online task's first segment (200 env steps: one Pendulum
    episode) is acted by the guide (the policy as the online task began) for exactly its
    first h = 80 steps and by the agent after: from step 80 on, TD3's uniform random
    warm-up, which never equals the guide's action. On both paths."""
    scenario, _ = offline_to_online
    trainer = plan_for(scenario, *JSRL, f"backend={backend}", methods=["jsrl"]).trainer
    state, _ = trainer.train_segment(trainer.init([0, 1]), 0)
    state = trainer.task_boundary(state, 0, 1)
    guide_params = state.agent.params
    state, _ = trainer.train_segment(state, 1)
    agent = state.agent
    for seed in range(2):
        jsrl = jax.tree.map(lambda x: x[seed], agent.methods["jsrl"])
        assert bool(jsrl["guiding"]) and int(jsrl["stage"]) == 0
        assert all(jax.tree.leaves(jax.tree.map(
            lambda a, b: bool(jnp.array_equal(a[seed], b)), guide_params, jsrl["guide"])))
        obs = jnp.asarray(agent.buffer.obs[seed, :200])
        guide = trainer.agent.view.outputs(jsrl["guide"], obs)["action"]
        gap = np.abs(np.asarray(agent.buffer.action[seed, :200]) - np.asarray(guide)).max(-1)
        assert (gap[:80] < 1e-5).all(), gap[:80].max()
        assert (gap[80:] > 1e-5).all(), gap[80:].min()


def test_jsrl_curriculum_advances_as_the_returns_hold_up():
    """Hand-computed on a window of 2, tolerance 0.1, horizons 100/50/0: the first full window
    advances (best -11); -16 and -15.5 stay below -11 - 1.1 = -12.1; -10.5 advances to the
    last stage (h = 0), after which nothing moves. Rows that end no episode change nothing,
    and before a task start (no guide yet) neither do ended episodes."""
    from everlearn.methods.jsrl import JSRLConfig, horizons, make_jsrl

    config = JSRLConfig(horizon=100, stages=3, tolerance=0.1, window=2)
    assert horizons(config).tolist() == [100, 50, 0]
    method = make_jsrl(config, view=None)
    params = {"w": jnp.ones(3)}
    state = method.init(jax.random.PRNGKey(0), params)

    def episodes(state, returns):
        ended = jnp.asarray([r is not None for r in returns])
        values = jnp.asarray([0.0 if r is None else r for r in returns])
        return method.observe(state, {"episode_end": ended, "episode_return": values}, 1, None)

    assert int(episodes(state, [-10.0, -12.0, -1.0])["stage"]) == 0  # no guide yet
    state, _ = method.on_task_start(state, params, 1, None)
    stages, bests = [], []
    for returns in ([-10.0, None], [None, -12.0], [-20.0], [-11.0], [None, -10.0], [-30.0]):
        state = episodes(state, returns)
        stages.append(int(state["stage"]))
        bests.append(float(state["best"]))
    assert stages == [0, 1, 1, 1, 2, 2]
    assert bests[1:] == [-11.0, -11.0, -11.0, -10.5, -10.5]
    state, _ = method.on_task_start(state, params, 2, None)  # a new task: a new curriculum
    assert int(state["stage"]) == 0 and float(state["best"]) == -np.inf


def test_jsrl_refuses_an_on_policy_agent_in_one_line():
    with pytest.raises(ConfigError, match="method 'jsrl' does not apply to agent 'ppo'"):
        make_plan(build_config(None, {"scenario": "cartpole-contexts", "agent": "ppo",
                                      "methods": ["jsrl"]}, []))


def test_jsrl_horizon_defaults_to_the_longest_episode_of_the_scenario(offline_to_online):
    from everlearn.envs.sources import task_spaces
    from everlearn.methods import METHODS
    from everlearn.methods.jsrl import JSRLConfig

    scenario, _ = offline_to_online
    limits = [task_spaces(t, "jax").max_episode_steps for t in get_scenario(scenario).tasks]
    derive = METHODS["jsrl"].from_scenario  # what the plan applies to jsrl's settings
    assert derive(JSRLConfig(), limits).horizon == 200
    assert derive(JSRLConfig(horizon=7), limits).horizon == 7
    with pytest.raises(ConfigError, match="jsrl.horizon"):
        derive(JSRLConfig(), [200, None])
