"""Episodes on each env path, the one place that plays them for everything that scores a
policy (the trainers' evaluators, `everlearn.evaluate`, the random scores, the recipes):

- functional path: a task's params (`task_params`), the keys of an evaluation
  (`functional_eval_keys`) and of one episode (`episode_keys`), one compiled episode
  (`functional_episode`) and a uniform-random policy's episodes (`random_episode_returns`);
- Gymnasium path: the env seed of an evaluation (`eval_env_seed`) and one episode in each env
  of a vector env (`episode_returns`), with a policy of sampled actions (`sampled_actions`).

Recording (`everlearn.data.collect`) is a fixed-length step stream with autoreset, not episodes,
and `everlearn check-env` steps raw envs to find faults: both step their own loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from everlearn.envs.functional import FunctionalEnv, TaskParams
from everlearn.envs.layout import action_mask
from everlearn.envs.sources import EnvSpaces

# What a functional episode acts with: (observation, step key) -> (action, the env step's key).
# A policy that draws from the key splits it and passes the env its own part.
Act = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


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


# -- functional path ----------------------------------------------------------------------------
def functional_eval_keys(seed: int | jax.Array, eval_index: int, num_tasks: int,
                         episodes: int) -> jax.Array:
    """The episode keys of evaluation `eval_index` of a run with seed `seed`, on a run's
    evaluation keys, never its training stream's: [num_tasks, episodes] keys (each to
    `episode_keys`). `FunctionalTrainer.evaluate` and `everlearn.evaluate` both take them
    from here, so their episodes are the same."""
    key = jax.random.PRNGKey(jnp.asarray(seed, jnp.uint32) + 7_919)
    task_keys = jax.random.split(jax.random.fold_in(key, eval_index), num_tasks)
    return jax.vmap(lambda k: jax.random.split(k, episodes))(task_keys)


def episode_keys(key: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """An episode's reset key and its `steps` step keys, from the episode's key."""
    k_reset, k_steps = jax.random.split(key)
    return k_reset, jax.random.split(k_steps, steps)


def functional_episode(env: FunctionalEnv, params: TaskParams, act: Act,
                       key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One episode of `env` with task `params`, acting with `act`, on `key`'s keys
    (`episode_keys`), compiled as a `lax.scan` over the env's step limit: its return (rewards
    after the episode ended are not counted) and whether it ended within the limit."""
    k_reset, step_keys = episode_keys(key, env.max_episode_steps)
    obs, state = env.reset(k_reset, params)

    def step(carry, key):
        obs, state, ret, done = carry
        action, k_env = act(obs, key)
        obs, state, reward, terminated, truncated, _ = env.step(k_env, state, action, params)
        ret = ret + jnp.where(done, 0.0, reward)
        return (obs, state, ret, done | terminated | truncated), None

    init = (obs, state, jnp.zeros(()), jnp.zeros((), bool))
    (_, _, ret, done), _ = jax.lax.scan(step, init, step_keys)
    return ret, done


def uniform_action(spaces: EnvSpaces, key: jax.Array) -> jax.Array:
    """One uniform-random action: in [-1, 1] per dimension, or one of the discrete actions."""
    if spaces.continuous:
        return jax.random.uniform(key, (spaces.num_actions,), minval=-1.0)
    return jax.random.randint(key, (), 0, spaces.num_actions)


def random_episode_returns(env: FunctionalEnv, params: TaskParams,
                           keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A uniform-random policy's episodes on `env`: `params` stacked over tasks
    (`stack_params`), `keys` [num_tasks, episodes], one episode per key. Returns each
    episode's return and whether it ended, [num_tasks, episodes]."""

    def act(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_action, k_env = jax.random.split(key)
        return uniform_action(env.spaces, k_action), k_env

    def episode(params: TaskParams, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return functional_episode(env, params, act, key)

    return jax.vmap(jax.vmap(episode, in_axes=(None, 0)))(params, keys)


# -- Gymnasium path -----------------------------------------------------------------------------
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
    of observations to a batch of actions): the return of each, float[num_envs]. The evaluator,
    `everlearn.evaluate` and the random scores all play their episodes here, so they agree.
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


def sampled_actions(space: gym.Space) -> Callable[[np.ndarray], np.ndarray]:
    """A uniform-random policy for `episode_returns`: one sample of `space` (a single env's
    action space, seeded by the caller) per observation, in order."""
    return lambda obs: np.stack([space.sample() for _ in range(len(obs))])

