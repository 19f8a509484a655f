"""Normalisation scores a scenario does not give: measured, cached, and recorded with the run.

Performance is the success rate where the env reports success
(`everlearn.scenarios.resolve.success_key`), else
`(R - random) / (reference - random)` (DESIGN.md, "Metrics"). Where a task gives
no `random_score`, it is the mean return of a uniform-random policy over `RANDOM_EPISODES`
episodes on the run's path; where it gives no `reference_score`, it is the final return of the
single-task reference run (mean over the run's seeds), which the run then trains first. Both are
cached with the reference runs (`everlearn.training.reference.cache_dir`). The episodes are
`everlearn.envs.rollout`'s.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import jax
import numpy as np

from everlearn.core.files import atomic_write
from everlearn.core.version import __version__
from everlearn.envs.functional import FunctionalEnv, stack_params
from everlearn.envs.gymnasium_context import make_vector_env
from everlearn.envs.rollout import (
    episode_returns,
    random_episode_returns,
    sampled_actions,
    task_params,
)
from everlearn.training.reference import cache_dir, task_identity

RANDOM_EPISODES = {"jax": 100, "gymnasium": 30}


def random_scores(scenario: Any, backend: str, seed: int = 0) -> list[float]:
    """Mean return of a uniform-random policy per task (given scores are kept)."""
    out = []
    for task in scenario.tasks:
        if task.random_score is not None:
            out.append(float(task.random_score))
            continue
        payload = {"version": __version__, "task": task_identity(task), "backend": backend,
                   "episodes": RANDOM_EPISODES[backend], "seed": seed}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
        path = cache_dir() / "random-scores" / f"{key}.json"
        if path.exists():
            out.append(json.loads(path.read_text())["random_score"])
            continue
        score = random_return(task, backend, RANDOM_EPISODES[backend], seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"task": task.name, **payload, "random_score": score}))
        out.append(score)
    return out


def random_return(task: Any, backend: str, episodes: int, seed: int) -> float:
    """Mean return of a uniform-random policy on `task` over `episodes` episodes on path
    `backend` ("jax" or "gymnasium"), measured, not cached."""
    if backend == "jax":
        return _functional_random_return(task, episodes, seed)
    return _gymnasium_random_return(task, episodes, seed)


def _gymnasium_random_return(task: Any, episodes: int, seed: int) -> float:
    # One env, episode after episode (reset seeds seed, seed + 1, ...), its action space seeded
    # once: a vector env of as many envs would draw the actions in another order.
    envs = make_vector_env(task, 1)
    envs.single_action_space.seed(seed)
    policy = sampled_actions(envs.single_action_space)
    try:
        returns = [episode_returns(envs, seed + episode, policy)[0]
                   for episode in range(episodes)]
    finally:
        envs.close()
    return float(np.mean(returns))


def _functional_random_return(task: Any, episodes: int, seed: int) -> float:
    env = FunctionalEnv(task)
    params = stack_params([task_params(env, task)])  # one task
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)[None]
    returns, _ = jax.jit(functools.partial(random_episode_returns, env))(params, keys)
    return float(returns.mean())


def reference_scores(scenario: Any, raw_reference: np.ndarray | None) -> list[float]:
    """Given reference scores, else the final return of each task's single-task reference run
    (`raw_reference`: float[num_seeds, num_tasks, evals + 1] of raw returns), mean over seeds."""
    out = []
    for i, task in enumerate(scenario.tasks):
        if task.reference_score is not None:
            out.append(float(task.reference_score))
        else:
            out.append(float(raw_reference[:, i, -1].mean()))
    return out
