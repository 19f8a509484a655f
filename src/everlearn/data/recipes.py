"""Built-in dataset recipes: "random", "medium" and "expert" data for any task, made here on
first use and kept as Minari datasets, so nothing is downloaded and a second use reads the same
data. Tasks with a functional env (the Pendulum contexts, CartPole, ...) are trained and
recorded on the functional path; the others (the Hopper and HalfCheetah contexts) on the
Gymnasium path.

The qualities follow D4RL's (Fu et al., 2020, "D4RL: Datasets for Deep Data-Driven
Reinforcement Learning"): "random" from a uniform-random policy; "expert" from a fully
trained agent (SAC for continuous actions, DQN for discrete ones); "medium" from the same agent
stopped early, at a third of the way from random to expert return. Each is `RECIPE_STEPS`
transitions of whole episodes, collected with the policy's own exploring actions (SAC's
stochastic ones; for DQN, ε-greedy at its final ε, `RECIPE_EPSILON`), as D4RL's were.

Deliberate differences from D4RL: 50k transitions, not 1M (Pendulum episodes are 200 steps;
this is 250 episodes); the agents are `EXPERTS`' (SAC with [64, 64] networks for 15,000 steps:
it balances Pendulum by 12k steps, `tests/agents/test_continuous.py`; DQN with [64, 64] for
61,440 steps: it solves CartPole by 60k, `tests/agents/test_learning.py`; its "expert" is
its best snapshot, as its greedy return swings); MuJoCo tasks get `MUJOCO_EXPERT` (SAC at
the authors' [256, 256] for a budget this machine can afford, far short of D4RL's 1M steps:
the expert is what SAC reaches in it, and its greedy return is in the dataset's metadata);
"medium" is the
first snapshot whose greedy return is a third of the way from the random return to the task's
reference score (D4RL stopped training by hand); for a task without a reference score, the
snapshot closest to a third of the way to the best snapshot's. The random return is measured
(100 episodes), not the task's `random_score`. D4RL has no discrete-action tasks.

A recipe's id names the task's env and a hash of its whole context
(`everlearn/pendulum-v1-3f2a9c1d/medium-v0`), so two contexts never share data and a changed
recipe gets a new version number.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from dataclasses import replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.agents.common import uniform_actions
from everlearn.core.version import __version__
from everlearn.data import minari_io
from everlearn.data.collect import (
    agent_policy,
    agent_spaces,
    random_policy,
    record_episodes,
    recording_backend,
)
from everlearn.envs.sources import EnvSpaces, family_of, task_spaces
from everlearn.scenarios.task import Scenario, Task

QUALITIES = ("random", "medium", "expert")
RECIPE_VERSION = 0
RECIPE_STEPS = 50_000
MEDIUM_FRACTION = 1 / 3
RECIPE_SEED = 0
RECIPE_EPSILON = 0.04  # the discrete recipes' exploration: DQN's final ε


class Expert(NamedTuple):
    """The agent the medium and expert recipes train: its name and config, its env steps, the
    env steps between two snapshots, and which snapshot is "expert": the best one by greedy
    return, or the last."""

    agent: str
    config: dict
    steps: int
    snapshot_every: int
    expert_is_best: bool


# By the task's kind of action: continuous (True) or discrete (False). DQN's greedy return
# swings from one snapshot to the next (tests/agents/test_learning.py), so its expert is its
# best snapshot; SAC's is its last, as D4RL's.
EXPERTS = {True: Expert("sac", {"hidden_sizes": (64, 64)}, 15_000, 500, False),
           False: Expert("dqn", {"hidden_sizes": (64, 64)}, 61_440, 2_048, True)}
# For the MuJoCo families (Hopper, HalfCheetah, Walker2d; the Gymnasium path): SAC with its
# authors' networks, for a budget this CPU affords.
MUJOCO_EXPERT = Expert("sac", {"hidden_sizes": (256, 256)}, 100_000, 5_000, False)


def mujoco(task: Task) -> bool:
    """Whether `task` is one of everlearn's MuJoCo families (no functional env)."""
    family = family_of(task)
    return family is not None and family.mujoco


def functional(task: Task) -> bool:
    """Whether `task`'s recipes are made on the functional path (else on the Gymnasium path)."""
    return recording_backend(task) == "jax"


def expert_for(task: Task, spaces: EnvSpaces) -> Expert:
    """The agent that makes `task`'s medium and expert data."""
    return MUJOCO_EXPERT if mujoco(task) else EXPERTS[spaces.continuous]


def check_recipe(task: Task) -> None:
    """Refuse, in one line, a recipe for a task it is not made for: recipes know the functional
    envs and everlearn's MuJoCo families. Any other env (a user's Gymnasium env, Meta-World)
    has no training budget, no episode limit everlearn knows, or a success rate instead of a
    return to pick "medium" by."""
    if task.dataset in QUALITIES and not (functional(task) or mujoco(task)):
        raise ValueError(f"task '{task.name}': built-in '{task.dataset}' data is made for "
                         f"functional envs and the MuJoCo families, not {task.env}; record "
                         "a dataset with `everlearn run --record` or Minari and name its id")


def recipe_id(task: Task, quality: str) -> str:
    """The Minari id under which `task`'s `quality` data is kept."""
    from everlearn.training.reference import task_identity

    identity = {k: v for k, v in task_identity(task).items() if k not in ("name", "dataset")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    env = re.sub(r"[^a-z0-9]+", "-", task.env.lower()).strip("-")
    return f"everlearn/{env}-{digest.hexdigest()[:8]}/{quality}-v{RECIPE_VERSION}"


def dataset_id(task: Task) -> str:
    """The Minari id of `task`'s dataset: its recipe's, or the id it names."""
    return recipe_id(task, task.dataset) if task.dataset in QUALITIES else task.dataset


def make_recipe(task: Task, quality: str, log=print) -> str:
    """Make and store `task`'s `quality` dataset if it is not stored yet; returns its id."""
    check_recipe(replace(task, dataset=quality))
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
    spaces = task_spaces(task, recording_backend(task))
    if quality == "random":
        policy, about = random_policy(spaces), {"policy": "uniform random"}
    else:
        expert = expert_for(task, spaces)
        log(f"making the '{quality}' dataset of task '{task.name}': training "
            f"{expert.agent.upper()} for up to {expert.steps:,} steps (once; kept as Minari "
            f"dataset {name})")
        policy, about = _trained_policy(task, quality, expert, spaces, log)
    episodes = record_episodes(task, policy, RECIPE_STEPS,
                               seed=RECIPE_SEED + QUALITIES.index(quality))
    returns = [float(e.rewards.sum()) for e in episodes]
    metadata = {"everlearn_version": __version__, "recipe": quality,
                "recipe_version": RECIPE_VERSION, "task": task.describe(), **about,
                "mean_return": float(np.mean(returns))}
    minari_io.write_dataset(
        name, episodes, **agent_spaces(spaces), metadata=metadata,
        description=f"everlearn's built-in '{quality}' data for task '{task.name}' "
                    f"({task.env}): {about['policy']}")
    log(f"dataset {name}: {len(episodes)} episodes, mean return {np.mean(returns):.1f}")


def _trained_policy(task: Task, quality: str, expert: Expert, spaces: EnvSpaces,
                    log=print) -> tuple[Any, dict]:
    """`expert`'s agent trained on `task` alone; its snapshot for `quality` as an exploring
    policy. Logs each snapshot's greedy return (minutes apart on the Gymnasium path)."""
    from everlearn.training.functional import FunctionalTrainer
    from everlearn.training.gymnasium import GymnasiumTrainer
    from everlearn.training.scores import random_return

    spec = EnvSpec(int(np.prod(spaces.obs_shape)), spaces.num_actions,
                   continuous=spaces.continuous, image_shape=(
                       spaces.obs_shape if len(spaces.obs_shape) == 3 else ()))
    agent = make_agent(expert.agent, AGENTS[expert.agent].config(**expert.config), spec)
    scenario = Scenario(f"recipe-{task.name}", "recipe training", (task,), expert.steps)
    trainer_class = FunctionalTrainer if functional(task) else GymnasiumTrainer
    trainer = trainer_class(scenario, agent, expert.snapshot_every // agent.steps_per_update,
                            eval_episodes=10)
    random_mean = random_return(task, recording_backend(task), 100, RECIPE_SEED)
    # Where the task gives its reference (expert-level) return, "medium" is the first
    # snapshot a third of the way there, and training stops at it; otherwise it is picked
    # after the whole training, against the best snapshot's return.
    target = None
    if quality == "medium" and task.reference_score is not None:
        target = random_mean + MEDIUM_FRACTION * (task.reference_score - random_mean)
    state = trainer.init([RECIPE_SEED])
    snapshots, scores = [], []
    for k in range(expert.steps // expert.snapshot_every):
        state, _ = trainer.train_segment(state, 0)
        snapshots.append(_acting_part(jax.tree.map(lambda x: x[0], state.agent)))
        scores.append(float(trainer.evaluate(state, [RECIPE_SEED], k + 1)[0, 0]))
        log(f"  {(k + 1) * expert.snapshot_every:,} steps: greedy return {scores[-1]:.1f}")
        if target is not None and scores[-1] >= target:
            break
    if quality == "expert":
        pick = int(np.argmax(scores)) if expert.expert_is_best else len(snapshots) - 1
    elif target is not None and scores[-1] >= target:
        pick = len(snapshots) - 1
    else:
        target = random_mean + MEDIUM_FRACTION * (max(scores) - random_mean)
        pick = int(np.argmin(np.abs(np.asarray(scores) - target)))
    about = {"policy": f"{expert.agent.upper()} {expert.config['hidden_sizes']} after "
                       f"{(pick + 1) * expert.snapshot_every:,} steps, exploring actions",
             "greedy_return": scores[pick], "random_return": random_mean,
             "best_greedy_return": max(scores)}
    if spaces.continuous:
        return agent_policy(agent, snapshots[pick]), about
    return epsilon_greedy(agent, snapshots[pick], spec), about


def _acting_part(agent_state: Any) -> Any:
    """A snapshot without its replay buffer, which acting never reads: twenty snapshots of a
    1M-row buffer would hold gigabytes."""
    return agent_state.replace(buffer=None) if hasattr(agent_state, "buffer") else agent_state


def epsilon_greedy(agent: Any, agent_state: Any, spec: EnvSpec) -> Any:
    """A discrete agent's greedy action, a uniform one with probability `RECIPE_EPSILON`
    (whatever ε the snapshot's own schedule had reached)."""

    def act(obs: jax.Array, key: jax.Array) -> jax.Array:
        k_explore, k_random = jax.random.split(key)
        explore = jax.random.uniform(k_explore, (obs.shape[0],)) < RECIPE_EPSILON
        return jnp.where(explore, uniform_actions(k_random, spec, obs),
                         agent.greedy_action(agent_state, obs))

    return act
