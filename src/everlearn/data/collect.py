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

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from everlearn.data import minari_io
from everlearn.data.minari_io import Episode
from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.sources import EnvSpaces, gymnax_id, task_spaces
from everlearn.runs.functional import task_params
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


def load_run(run_dir: str | Path, seed_index: int = 0, checkpoint: Path | None = None):
    """A run directory's plan, the state of seed `seed_index` (the agent state) in its newest
    checkpoint (or in `checkpoint`, one of its checkpoint files) and that checkpoint's index
    entry; refuses a missing checkpoint or seed in one line."""
    from everlearn.runs.checkpoint import NoCheckpoint, load_checkpoint, load_checkpoint_file
    from everlearn.runs.run import load_config, make_plan

    run_dir = Path(run_dir)
    config = load_config(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    plan = make_plan(config, info.get("normalisation"))
    if not 0 <= seed_index < len(config.seeds):
        raise ValueError(f"seed index {seed_index}: run '{run_dir}' has {len(config.seeds)} "
                         f"seeds; use 0..{len(config.seeds) - 1}")
    try:
        template = plan.trainer.init(config.seeds)
        state, index = (load_checkpoint_file(checkpoint, template) if checkpoint is not None
                        else load_checkpoint(run_dir / "checkpoints", template))
    except NoCheckpoint:
        raise ValueError(f"run '{run_dir}' has no checkpoint yet; let it reach its first "
                         "evaluation") from None
    return plan, jax.tree.map(lambda x: x[seed_index], state.agent), index


def run_policy(run_dir: str | Path, task: Task, seed_index: int = 0, greedy: bool = False,
               checkpoint: Path | None = None) -> tuple[Policy, dict]:
    """The policy of a run directory's newest checkpoint, or of `checkpoint` (one of its
    checkpoint files), for seed `seed_index` of its seeds,
    acting on `task`, which must be a task of the run's scenario by name: the policy is fed
    the task's observations as the run fed them (padding, task id, action mask). Returns the
    policy and a description for the dataset's metadata."""
    from everlearn.data.datasets import agent_observations
    from everlearn.runs.run import scenario_layout_for

    run_dir = Path(run_dir)
    plan, agent_state, index = load_run(run_dir, seed_index, checkpoint)
    config = plan.config
    names = [t.name for t in plan.scenario.tasks]
    if task.name not in names:
        raise ValueError(f"task '{task.name}' is not a task of run '{run_dir}' (its tasks: "
                         f"{', '.join(names)}); collect on one of them")
    agent = plan.trainer.agent
    position = names.index(task.name)
    acting = agent.for_task(agent_state, position)  # the methods' view of the task (PackNet)
    layout = scenario_layout_for(config.scenario, config.backend)
    spaces = task_spaces(task, recording_backend(task))
    extra = agent.view.obs_dim - len(agent_observations(
        np.zeros((1, int(np.prod(spaces.obs_shape))), np.float32), spaces, layout)[0])
    onehot = np.eye(plan.scenario.num_tasks, dtype=np.float32)[position] if extra else None
    inner = agent_policy(agent, acting, greedy)

    def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
        return inner(agent_observations(obs, spaces, layout, onehot, jnp), key)

    about = {"policy": f"{config.agent} of run {run_dir.name}, seed {config.seeds[seed_index]}, "
                       f"checkpoint at segment {index['segment']}, "
                       f"{'greedy' if greedy else 'exploring'} actions",
             "run": str(run_dir.resolve()), "segment": index["segment"]}
    return policy, about


def record(scenario_name: str, task_name: str, dataset_name: str, policy: str, steps: int,
           seed: int = 0, seed_index: int = 0, greedy: bool = False,
           overwrite: bool = False) -> str:
    """`everlearn collect`: record `policy` ("random", a run directory or one of its checkpoint
    files) on a task of a scenario into the Minari dataset `dataset_name`; returns a line saying
    what was written.
    Every check comes before the recording, so bad input writes nothing."""
    from everlearn import __version__
    from everlearn.scenarios import get_scenario

    scenario = get_scenario(scenario_name)
    names = [t.name for t in scenario.tasks]
    if task_name not in names:
        raise ValueError(f"scenario '{scenario.name}' has no task '{task_name}'; its tasks: "
                         f"{', '.join(names)}")
    task = scenario.tasks[names.index(task_name)]
    if steps < 1:
        raise ValueError(f"--steps {steps}: record at least one transition")
    minari_io.check_dataset_id(dataset_name)
    if not overwrite and dataset_name in minari_io.list_local():
        raise ValueError(f"dataset '{dataset_name}' exists; choose another --name or pass "
                         "--overwrite")
    spaces = task_spaces(task, recording_backend(task))
    if policy == "random":
        act, about = random_policy(spaces), {"policy": "uniform random"}
    elif Path(policy).is_dir():
        act, about = run_policy(policy, task, seed_index, greedy)
    elif Path(policy).is_file() and Path(policy).parent.name == "checkpoints":
        run_dir = Path(policy).parent.parent  # <run>/checkpoints/segment-N.msgpack
        act, about = run_policy(run_dir, task, seed_index, greedy, checkpoint=Path(policy))
    else:
        raise ValueError(f"--policy '{policy}' is neither 'random', a run directory nor a "
                         "checkpoint file of one (<run>/checkpoints/segment-N.msgpack)")
    episodes = record_episodes(task, act, steps, seed)
    if not episodes:  # the Gymnasium path records until an episode has ended
        raise ValueError(f"--steps {steps} is shorter than one episode of task '{task.name}' "
                         f"(up to {FunctionalEnv(task).max_episode_steps} steps); record more")
    returns = [float(e.rewards.sum()) for e in episodes]
    metadata = {"everlearn_version": __version__, "scenario": scenario.name,
                "task": task.describe(), "seed": seed, **about,
                "mean_return": float(np.mean(returns))}
    path = minari_io.write_dataset(dataset_name, episodes, **agent_spaces(spaces),
                                   metadata=metadata, overwrite=overwrite,
                                   description=f"task '{task.name}' of scenario "
                                               f"'{scenario.name}': {about['policy']}")
    rows = sum(len(e.rewards) for e in episodes)
    return (f"wrote {dataset_name}: {len(episodes)} episodes, {rows:,} transitions, mean "
            f"return {np.mean(returns):.1f} ({path})")
