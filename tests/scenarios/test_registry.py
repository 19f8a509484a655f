"""Built-in scenarios: they construct, their contexts are valid on both paths, their random
scores are what a uniform-random policy really gets, and normalisation maps them to 0 and 1."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from everlearn.envs.families import FAMILIES, get_family
from everlearn.scenarios import (
    Scenario,
    Task,
    get_scenario,
    register_scenario,
    registry,
    scenario_names,
)

BUILTIN = ["cartpole-contexts", "acrobot-contexts", "cartpole-stationary", "cartpole-plasticity",
           "pendulum-contexts", "pendulum-stationary", "pendulum-drift", "hopper-dynamics",
           "halfcheetah-directions", "hopper-drift", "hopper-offline-to-online"]
# Episodes per task for test_random_scores: CartPole returns vary a lot between episodes and
# its episodes are short (cheap); Acrobot's random returns are almost always -500. MuJoCo
# families run on the Gymnasium path: Hopper's random episodes last ~20 steps, HalfCheetah's
# always 1000 (few episodes keep the test fast; its returns vary less).
RANDOM_EPISODES = {"CartPole-v1": 500, "Acrobot-v1": 100, "Pendulum-v1": 500, "Hopper-v5": 200,
                   "HalfCheetah-v5": 12}


def all_builtin_tasks() -> list[tuple[str, Task]]:
    """The tasks of the built-in scenarios on everlearn's env families (Continual World's are
    tested in test_continual_world.py)."""
    return [(name, t) for name in BUILTIN for t in get_scenario(name).tasks]


def test_builtin_names_registered():
    names = scenario_names()
    for name in BUILTIN:
        assert name in names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_scenario_constructs(name):
    s = get_scenario(name)
    assert isinstance(s, Scenario) and s.name == name
    assert s.num_tasks == len(s.tasks) >= 1
    assert s.steps_per_task > 0 and s.description
    assert s.env in FAMILIES
    assert len({t.name for t in s.tasks}) == s.num_tasks  # task names are distinct
    # a fresh object each time (the registry holds factories)
    assert get_scenario(name) == s


@pytest.mark.parametrize("name, task", all_builtin_tasks(),
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_builtin_task_contexts_are_valid(name, task):
    fam = get_family(task.env)
    assert set(task.physics) <= set(fam.physics)
    if task.obs_perm is not None:
        assert sorted(task.obs_perm) == list(range(fam.obs_dim))
    if task.obs_scale is not None:
        assert len(task.obs_scale) == fam.obs_dim
    if task.action_map is not None:
        assert not fam.continuous and sorted(task.action_map) == list(range(fam.num_actions))
    if task.action_scale is not None:
        assert fam.continuous and len(task.action_scale) == fam.num_actions
    assert task.reference_score > task.random_score
    # and the Gymnasium path accepts it too
    from everlearn.envs.gymnasium_context import make_task_env

    env = make_task_env(task)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (fam.obs_dim,)
    if fam.continuous:
        assert env.action_space.shape == (fam.num_actions,)
        assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
    else:
        assert env.action_space.n == fam.num_actions
    env.close()


def test_get_scenario_unknown_lists_choices():
    with pytest.raises(ValueError, match="nope") as info:
        get_scenario("nope")
    for name in scenario_names():
        assert name in str(info.value)


def test_scenario_without_tasks_raises():
    with pytest.raises(ValueError, match="no tasks"):
        Scenario("empty", "bad", (), steps_per_task=10)


def test_register_user_scenario(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_scenario("my-cartpole")
    def mine() -> Scenario:
        return Scenario("my-cartpole", "mine", (Task("t", "CartPole-v1", 22.0, 500.0),), 1000)

    assert "my-cartpole" in scenario_names()
    assert get_scenario("my-cartpole").steps_per_task == 1000


def test_task_normalise():
    t = Task("t", "CartPole-v1", random_score=22.0, reference_score=500.0)
    assert float(t.normalise(22.0)) == pytest.approx(0.0)
    assert float(t.normalise(500.0)) == pytest.approx(1.0)
    assert float(t.normalise(261.0)) == pytest.approx(0.5)
    a = Task("a", "Acrobot-v1", random_score=-500.0, reference_score=-80.0)
    np.testing.assert_allclose(a.normalise(np.array([-500.0, -80.0, -290.0])), [0, 1, 0.5])


@pytest.mark.parametrize("name", BUILTIN)
def test_scenario_normalise_maps_random_to_0_reference_to_1(name):
    s = get_scenario(name)
    rand = np.array([t.random_score for t in s.tasks])
    ref = np.array([t.reference_score for t in s.tasks])
    out = s.normalise(np.stack([rand, ref, (rand + ref) / 2]))  # last axis: tasks
    np.testing.assert_allclose(out, [[0.0] * s.num_tasks, [1.0] * s.num_tasks,
                                     [0.5] * s.num_tasks], atol=1e-12)
    for i, t in enumerate(s.tasks):
        assert float(t.normalise(t.random_score)) == pytest.approx(0.0)
        assert float(t.normalise(t.reference_score)) == pytest.approx(1.0)


def random_policy_returns_gymnasium(tasks: list[Task], episodes: int,
                                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean return of a uniform-random policy per task on the Gymnasium path, and its standard
    error ([num_tasks] each)."""
    from everlearn.envs.gymnasium_context import make_task_env

    out = []
    for i, task in enumerate(tasks):
        env = make_task_env(task)
        env.action_space.seed(seed + i)
        returns = []
        env.reset(seed=seed + i)
        for _ in range(episodes):
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total, done = total + reward, terminated or truncated
            returns.append(total)
            env.reset()
        env.close()
        out.append((np.mean(returns), np.std(returns) / np.sqrt(episodes)))
    return tuple(np.asarray(column) for column in zip(*out))


def random_policy_returns(family: str, tasks: list[Task], episodes: int, seed: int) -> np.ndarray:
    """Mean return of a uniform-random policy per task on the functional path ([num_tasks])."""
    from everlearn.envs.functional import FunctionalEnv, stack_params
    from everlearn.envs.rollout import random_episode_returns

    env = FunctionalEnv(family)
    params = stack_params([
        env.make_params(physics=dict(t.physics), obs_perm=t.obs_perm, obs_scale=t.obs_scale,
                        action_map=t.action_map, action_scale=t.action_scale,
                        reward_scale=t.reward_scale, reward_shift=t.reward_shift)
        for t in tasks
    ])
    keys = jax.random.split(jax.random.PRNGKey(seed), (len(tasks), episodes))
    returns, done = jax.jit(lambda p, k: random_episode_returns(env, p, k))(params, keys)
    assert bool(done.all())  # every episode ended within the time limit
    return np.asarray(returns).mean(axis=1)


def builtin_tasks_by_family() -> dict[str, list[Task]]:
    out: dict[str, list[Task]] = {}
    for name in BUILTIN:
        for t in get_scenario(name).tasks:
            out.setdefault(t.env, []).append(t)
    return out


@pytest.mark.parametrize("family", sorted(builtin_tasks_by_family()))
def test_random_scores(family):
    """Each registered random_score is within 15% (or 3 return units) of a uniform-random
    policy's mean return on the functional path (one jit per family, vmapped over tasks and
    episodes), or on the Gymnasium path for families without a functional version — there
    with fewer episodes, so also within three standard errors."""
    tasks = builtin_tasks_by_family()[family]
    episodes = RANDOM_EPISODES.get(family, 100)
    if get_family(family).gymnax_id is None:
        measured, errors = random_policy_returns_gymnasium(tasks, episodes, seed=0)
    else:
        measured = random_policy_returns(family, tasks, episodes, seed=0)
        errors = np.zeros_like(measured)
    bad = []
    for t, r, error in zip(tasks, measured, errors):
        tol = max(0.15 * abs(t.random_score), 3.0, 3 * error)
        if abs(r - t.random_score) > tol:
            bad.append(f"{t.name}: registered {t.random_score}, measured {r:.1f}")
    assert not bad, "; ".join(bad)
