"""Episodes on each env path, shared by everything that scores a policy (the trainers'
evaluators, `everlearn.evaluate`, the random scores, recording): a task's functional params,
the env seed of an evaluation, and one episode in each of a Gymnasium vector env's envs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from everlearn.envs.functional import FunctionalEnv, TaskParams
from everlearn.envs.layout import action_mask


def task_params(env: FunctionalEnv, task: Any, onehot: tuple[float, ...] = ()) -> TaskParams:
    return env.make_params(
        action_mask=action_mask(env.spaces.num_actions, env.layout),
        physics=dict(task.physics),
        obs_perm=task.obs_perm,
        obs_scale=task.obs_scale,
        action_map=task.action_map,
        action_scale=task.action_scale,
        reward_scale=task.reward_scale,
        reward_shift=task.reward_shift,
        task_onehot=onehot,
    )


def eval_env_seed(seed: int, eval_index: int, task_index: int) -> int:
    """The env seed of evaluation `eval_index` of task `task_index` for run seed `seed`."""
    return (seed * 1_000_003 + eval_index * 7_919 + task_index) % (2**31)


def _reported(info: dict, key: str, like: np.ndarray) -> np.ndarray:
    """Which envs report `info[key]` true (vector envs give each key with a `_key` mask of
    the envs that set it)."""
    if key not in info:
        return np.zeros_like(like, bool)
    return np.asarray(info[key], bool) & np.asarray(info.get("_" + key, True), bool)


def episode_returns(envs: Any, env_seed: int, policy: Callable[[np.ndarray], Any],
                    success_key: str | None = None) -> np.ndarray:
    """One episode in each env of `envs` (reset with `env_seed`), acting with `policy` (a batch
    of observations to a batch of actions): the return of each, float[num_envs]. The evaluator
    and `everlearn.evaluate` both score policies here, so their numbers agree.
    With `success_key`: 1.0 for an episode in which the env reported `info[success_key]` true
    at any step, else 0.0 (Meta-World's and Continual World's success)."""
    obs, _ = envs.reset(seed=env_seed)
    returns = np.zeros(envs.num_envs)
    succeeded = np.zeros(envs.num_envs, bool)
    done = np.zeros(envs.num_envs, bool)
    while not done.all():
        action = np.asarray(policy(obs))
        obs, reward, terminated, truncated, info = envs.step(action)
        returns += np.where(done, 0.0, reward)
        ended = terminated | truncated
        if success_key is not None:
            # An episode that just ended reports its last step in `final_info` (same-step
            # autoreset: `info` is already the new episode's reset info).
            flags = np.where(ended, _reported(info.get("final_info", {}), success_key, ended),
                             _reported(info, success_key, ended))
            succeeded |= flags & ~done
        done |= ended
    return succeeded.astype(np.float64) if success_key is not None else returns

