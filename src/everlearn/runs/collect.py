"""Policies and replay buffers of run directories: the newest (or a named) checkpoint of a run
as a policy to record with (`everlearn collect`), and as rows a method that takes data mixes
(`offline_mix.run`)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.core.version import __version__
from everlearn.data import minari_io
from everlearn.data.collect import (
    Policy,
    agent_policy,
    agent_spaces,
    random_policy,
    record_episodes,
    recording_backend,
)
from everlearn.data.datasets import agent_observations
from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.sources import task_spaces
from everlearn.runs.plan import load_run
from everlearn.scenarios import get_scenario
from everlearn.scenarios.task import Task


def run_policy(run_dir: str | Path, task: Task, seed_index: int = 0, greedy: bool = False,
               checkpoint: Path | None = None) -> tuple[Policy, dict]:
    """The policy of a run directory's newest checkpoint, or of `checkpoint` (one of its
    checkpoint files), for seed `seed_index` of its seeds,
    acting on `task`, which must be a task of the run's scenario by name: the policy is fed
    the task's observations as the run fed them (padding, task id, action mask). Returns the
    policy and a description for the dataset's metadata."""
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
    layout = plan.resolved.layout
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


