"""Recording a policy's episodes on a task into a Minari dataset: on the functional path, many
envs stepped at once inside one compiled `lax.scan`, then cut into whole episodes; for tasks
without a functional env (MuJoCo's, a user's Gymnasium env), `gymnasium_rollout` steps
Gymnasium envs together with the policy compiled once.

What is recorded is the task as an agent meets it (`everlearn.data.datasets`): observations
after the task's context (permutation, scale), the agent's own action (in [-1, 1] for
continuous actions, before the task's motor scale), the reward after the task's reward scale
and shift. Only whole episodes are kept: each env's unfinished last episode is dropped, so a
dataset holds at least `steps` transitions minus at most one episode per env.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from everlearn.data.minari_io import Episode
from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.rollout import task_params
from everlearn.envs.sources import EnvSpaces, gymnax_id
from everlearn.scenarios.task import Task

# A policy: (obs[num_envs, d], key) -> action[num_envs, ...].
Policy = Callable[[jax.Array, jax.Array], jax.Array]


def agent_spaces(spaces: EnvSpaces) -> dict[str, gym.Space]:
    """The Gymnasium spaces of what is recorded: the task's observations, and the agent's
    actions (a continuous action in [-1, 1] per dimension)."""
    observation = gym.spaces.Box(-np.inf, np.inf, spaces.obs_shape, np.float32)
    action = (gym.spaces.Box(-1.0, 1.0, (spaces.num_actions,), np.float32) if spaces.continuous
              else gym.spaces.Discrete(spaces.num_actions))
    return {"observation_space": observation, "action_space": action}


def random_policy(spaces: EnvSpaces) -> Policy:
    """Uniform actions: in [-1, 1] per dimension, or uniform over the discrete actions."""

    def act(obs: jax.Array, key: jax.Array) -> jax.Array:
        if spaces.continuous:
            return jax.random.uniform(key, (obs.shape[0], spaces.num_actions), minval=-1.0,
                                      maxval=1.0)
        return jax.random.randint(key, (obs.shape[0],), 0, spaces.num_actions)

    return act


def rollout(task: Task, policy: Policy, steps: int, seed: int,
            num_envs: int = 16) -> list[Episode]:
    """Run `policy` on `task` for about `steps` transitions over `num_envs` envs; the whole
    episodes, in the order they ended."""
    env = FunctionalEnv(task)
    params = task_params(env, task)
    per_env = -(-steps // num_envs) + env.max_episode_steps  # room to finish an episode
    key = jax.random.PRNGKey(seed)
    k_reset, k_steps = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs),
                                                         params)

    def step(carry, key):
        obs, state = carry
        k_act, k_env = jax.random.split(key)
        action = policy(obs, k_act)
        next_obs, state, reward, terminated, truncated, true_next = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(jax.random.split(k_env, num_envs), state,
                                               action, params)
        return (next_obs, state), (obs, action, reward, terminated, truncated, true_next)

    _, columns = jax.jit(lambda c, k: jax.lax.scan(step, c, k))(
        (obs, state), jax.random.split(k_steps, per_env))
    obs, action, reward, terminated, truncated, true_next = (np.asarray(c) for c in columns)
    continuous = env.spaces.continuous
    episodes: list[tuple[int, Episode]] = []
    for e in range(num_envs):
        ends = np.flatnonzero(terminated[:, e] | truncated[:, e])
        start = 0
        for end in ends:
            rows = slice(start, end + 1)
            episodes.append((int(end), Episode(
                observations=np.concatenate([obs[rows, e], true_next[end:end + 1, e]]),
                actions=action[rows, e].astype(np.float32 if continuous else np.int64),
                rewards=reward[rows, e].astype(np.float64),
                terminations=terminated[rows, e].astype(bool),
                truncations=truncated[rows, e].astype(bool))))
            start = end + 1
    episodes.sort(key=lambda item: item[0])
    kept, total = [], 0
    for _, episode in episodes:  # the earliest-ending episodes up to the asked size
        if total >= steps:
            break
        kept.append(episode)
        total += len(episode.rewards)
    return kept


def gymnasium_rollout(task: Task, policy: Policy, steps: int, seed: int,
                      num_envs: int = 4) -> list[Episode]:
    """`rollout` for tasks without a functional env (MuJoCo's): `num_envs` Gymnasium envs
    with the task's context, stepped together, acting with `policy` (compiled once) until
    whole episodes of at least `steps` transitions have ended; those episodes, in the order
    they ended (an episode cut off by the end is dropped, as in `rollout`)."""
    from everlearn.envs.gymnasium_context import make_vector_env

    envs = make_vector_env(task, num_envs)
    act = jax.jit(policy)
    key = jax.random.PRNGKey(seed)
    continuous = isinstance(envs.single_action_space, gym.spaces.Box)
    columns: list[list[tuple]] = [[] for _ in range(num_envs)]  # each env's open episode
    episodes: list[Episode] = []
    total = 0
    try:
        # Env i starts from seed · num_envs + i: recipes of consecutive seeds share no env.
        obs, _ = envs.reset(seed=seed * num_envs)
        while total < steps:
            key, k_act = jax.random.split(key)
            action = np.asarray(act(jnp.asarray(obs, jnp.float32), k_act))
            next_obs, reward, terminated, truncated, info = envs.step(action)
            true_next = next_obs.copy()
            if "_final_obs" in info:  # same-step autoreset: the last observation is here
                for e in np.flatnonzero(info["_final_obs"]):
                    true_next[e] = info["final_obs"][e]
            for e in range(num_envs):  # rows of `obs`: the vector env returns fresh arrays
                columns[e].append((obs[e], action[e], reward[e], terminated[e], truncated[e]))
                if terminated[e] or truncated[e]:
                    o, a, r, term, trunc = (np.asarray(c) for c in zip(*columns[e]))
                    episodes.append(Episode(
                        observations=np.concatenate([o, true_next[e][None]]).astype(np.float32),
                        actions=a.astype(np.float32 if continuous else np.int64),
                        rewards=r.astype(np.float64), terminations=term.astype(bool),
                        truncations=trunc.astype(bool)))
                    total += len(r)
                    columns[e] = []
            obs = next_obs
    finally:
        envs.close()
    return episodes


def recording_backend(task: Task) -> str:
    """The path a task is recorded on: "jax" where it has a functional env, else
    "gymnasium"."""
    return "jax" if gymnax_id(task) is not None else "gymnasium"


def record_episodes(task: Task, policy: Policy, steps: int, seed: int) -> list[Episode]:
    """`rollout` or `gymnasium_rollout`, on the task's recording path."""
    record = rollout if recording_backend(task) == "jax" else gymnasium_rollout
    return record(task, policy, steps, seed)


def agent_policy(agent: Any, agent_state: Any, greedy: bool = False) -> Policy:
    """An everlearn agent's exploring (`act`) or greedy policy, for one seed's state."""
    if greedy:
        return lambda obs, key: agent.greedy_action(agent_state, obs)
    return lambda obs, key: agent.act(agent_state, obs, key)[0]


