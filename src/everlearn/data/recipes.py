"""Built-in dataset recipes: "random", "medium" and "expert" data for any task that runs on the
functional path (the Pendulum contexts among them), made here on first use and kept as Minari
datasets, so nothing is downloaded and a second use reads the same data.

The qualities follow D4RL's (Fu et al., 2020, "D4RL: Datasets for Deep Data-Driven
Reinforcement Learning"): "random" from a uniform-random policy; "expert" from a fully
trained SAC agent; "medium" from the same agent stopped early, at a third of the way from
random to expert return. Each is `RECIPE_STEPS` transitions of whole episodes, collected
with the policy's own exploring (stochastic) actions, as D4RL's were.

Deliberate differences from D4RL: 50k transitions, not 1M (Pendulum episodes are 200 steps;
this is 250 episodes); SAC with [64, 64] networks trained for `EXPERT_STEPS` steps (it
balances Pendulum by 12k steps: `tests/agents/test_continuous.py`); "medium" is the first
snapshot (one every `SNAPSHOT_EVERY` steps) whose greedy return is a third of the way from the
random return to the task's reference score (D4RL stopped training by hand); for a task
without a reference score, the snapshot closest to a third of the way to the best snapshot's.
The random return is measured (100 episodes), not the task's `random_score`.

A recipe's id names the task's env and a hash of its whole context
(`everlearn/pendulum-v1-3f2a9c1d/medium-v0`), so two contexts never share data and a changed
recipe gets a new version number.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from typing import Any

import jax
import numpy as np

from everlearn import __version__
from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.data import minari_io
from everlearn.data.collect import agent_policy, agent_spaces, random_policy, rollout
from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.sources import gymnax_id
from everlearn.scenarios.task import Scenario, Task

QUALITIES = ("random", "medium", "expert")
RECIPE_VERSION = 0
RECIPE_STEPS = 50_000
EXPERT_STEPS = 15_000
SNAPSHOT_EVERY = 500
MEDIUM_FRACTION = 1 / 3
RECIPE_SEED = 0
EXPERT_AGENT = {"hidden_sizes": (64, 64)}  # SAC's config for the recipes


def recipe_id(task: Task, quality: str) -> str:
    """The Minari id under which `task`'s `quality` data is kept."""
    from everlearn.runs.reference import task_identity

    identity = {k: v for k, v in task_identity(task).items() if k not in ("name", "dataset")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    env = re.sub(r"[^a-z0-9]+", "-", task.env.lower()).strip("-")
    return f"everlearn/{env}-{digest.hexdigest()[:8]}/{quality}-v{RECIPE_VERSION}"


def dataset_id(task: Task) -> str:
    """The Minari id of `task`'s dataset: its recipe's, or the id it names."""
    return recipe_id(task, task.dataset) if task.dataset in QUALITIES else task.dataset


def check_recipe(task: Task) -> None:
    """Refuse, in one line, a recipe for a task it cannot be made for."""
    if task.dataset in QUALITIES and gymnax_id(task) is None:
        raise ValueError(f"task '{task.name}': the built-in '{task.dataset}' dataset is made "
                         f"on the functional path, which {task.env} lacks; record one with "
                         "`everlearn collect` or Minari and name its id")


def make_recipe(task: Task, quality: str, log=print) -> str:
    """Make and store `task`'s `quality` dataset if it is not stored yet; returns its id."""
    check_recipe(task)
    name = recipe_id(task, quality)
    if name in minari_io.list_local():
        return name
    root = minari_io.datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".everlearn-recipes.lock", "w") as lock:
        # Runs of a sweep that need the same recipe: one makes it, the others wait and read it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if name not in minari_io.list_local():
            _make(task, quality, name, log)
    return name


def _make(task: Task, quality: str, name: str, log) -> None:
    env = FunctionalEnv(task)
    if quality == "random":
        policy, about = random_policy(env), {"policy": "uniform random"}
    else:
        log(f"making the '{quality}' dataset of task '{task.name}': training SAC for "
            f"{EXPERT_STEPS:,} steps (once; kept as Minari dataset {name})")
        policy, about = _trained_policy(task, quality)
    episodes = rollout(task, policy, RECIPE_STEPS, seed=RECIPE_SEED + QUALITIES.index(quality))
    returns = [float(e.rewards.sum()) for e in episodes]
    metadata = {"everlearn_version": __version__, "recipe": quality,
                "recipe_version": RECIPE_VERSION, "task": task.describe(), **about,
                "mean_return": float(np.mean(returns))}
    minari_io.write_dataset(
        name, episodes, **agent_spaces(env.spaces), metadata=metadata,
        description=f"everlearn's built-in '{quality}' data for task '{task.name}' "
                    f"({task.env}): {about['policy']}")
    log(f"dataset {name}: {len(episodes)} episodes, mean return {np.mean(returns):.1f}")


def _trained_policy(task: Task, quality: str) -> tuple[Any, dict]:
    """SAC trained on `task` alone; its snapshot for `quality` as an exploring policy."""
    from everlearn.runs.functional import FunctionalTrainer
    from everlearn.runs.scores import _functional_random_return

    env = FunctionalEnv(task)
    spec = EnvSpec(int(np.prod(env.spaces.obs_shape)), env.spaces.num_actions, continuous=True)
    if not env.spaces.continuous:
        raise ValueError(f"task '{task.name}': the built-in medium and expert recipes train "
                         "SAC, which needs continuous actions; record a dataset with "
                         "`everlearn collect --policy RUN_DIR`")
    agent = make_agent("sac", AGENTS["sac"].config(**EXPERT_AGENT), spec)
    scenario = Scenario(f"recipe-{task.name}", "recipe training", (task,), EXPERT_STEPS)
    trainer = FunctionalTrainer(scenario, agent, SNAPSHOT_EVERY, eval_episodes=10)
    random_return = _functional_random_return(task, 100, RECIPE_SEED)
    # Where the task gives its reference (expert-level) return, "medium" is the first
    # snapshot a third of the way there, and training stops at it; otherwise it is picked
    # after the whole training, against the best snapshot's return.
    target = None
    if quality == "medium" and task.reference_score is not None:
        target = random_return + MEDIUM_FRACTION * (task.reference_score - random_return)
    state = trainer.init([RECIPE_SEED])
    snapshots, scores = [], []
    for k in range(EXPERT_STEPS // SNAPSHOT_EVERY):
        state, _ = trainer.train_segment(state, 0)
        snapshots.append(jax.tree.map(lambda x: x[0], state.agent))
        scores.append(float(trainer.evaluate(state, [RECIPE_SEED], k + 1)[0, 0]))
        if target is not None and scores[-1] >= target:
            break
    if quality == "expert":
        pick = len(snapshots) - 1
    elif target is not None and scores[-1] >= target:
        pick = len(snapshots) - 1
    else:
        target = random_return + MEDIUM_FRACTION * (max(scores) - random_return)
        pick = int(np.argmin(np.abs(np.asarray(scores) - target)))
    about = {"policy": f"SAC {EXPERT_AGENT['hidden_sizes']} after "
                       f"{(pick + 1) * SNAPSHOT_EVERY:,} steps, exploring actions",
             "greedy_return": scores[pick], "random_return": random_return,
             "best_greedy_return": max(scores)}
    return agent_policy(agent, snapshots[pick]), about
