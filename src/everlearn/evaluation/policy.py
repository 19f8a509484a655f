"""Score any policy on a scenario, as the run's evaluator scores an everlearn agent.

`evaluate(policy, scenario)` is for policies trained elsewhere (a Stable-Baselines3 model, a
hand-written controller) or saved everlearn agents: every task of the scenario gets the same
episodes, env seeds and normalisation as evaluation 0 of a run with that seed on the same path,
so the numbers sit next to a run's log lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.gymnasium_context import make_vector_env
from everlearn.envs.layout import Layout, scenario_layout
from everlearn.envs.rollout import (
    episode_keys,
    episode_returns,
    eval_env_seed,
    functional_eval_keys,
    task_params,
)
from everlearn.envs.sources import (
    EnvSpaces,
    env_identity,
    steps_on_gymnasium,
    task_spaces,
)
from everlearn.scenarios.registry import get_scenario
from everlearn.scenarios.task import Scenario, Task

Policy = Callable[[np.ndarray], Any]


def evaluate(policy: Policy, scenario: Scenario | str | os.PathLike, episodes: int = 10,
             seed: int = 0, backend: str | None = None) -> dict[str, list]:
    """Mean return of `policy` on every task of `scenario`, over `episodes` episodes each.

    `policy` maps a batch of observations, float32[n, obs_dim], to a batch of actions: int[n]
    (discrete) or float[n, action_dim] in [-1, 1] (continuous; the task scales them to the
    env's range). Observations are in the scenario's layout, as an everlearn agent sees them:
    each task's observation zero-padded to the scenario's largest shape and flattened, followed
    -- only where the tasks' discrete action sets differ -- by a 0/1 mask of the actions this
    task has; never a task id. A policy that returns another shape, or an action the task does
    not have, stops the evaluation with a one-line ValueError.

    `scenario`: a `Scenario`, a scenario name, or the path of a scenario file. `seed` picks the
    episodes: those of evaluation 0 of a run with this seed on the same path. `backend`:
    "gymnasium" steps every task's Gymnasium env on the host (the env seeds of
    `GymnasiumTrainer.evaluate`), "jax" every task's gymnax env (the keys of
    `FunctionalTrainer.evaluate`), each vectorised over the episodes; None (default): the
    Gymnasium env where the task has one, else its gymnax env, stepped from the host by a
    jitted, vmapped step.

    Returns `{"tasks": [names], "returns": [mean return per task], "normalised": [...]}`, where
    normalised is `(return - random_score) / (reference_score - random_score)` with the task's
    scores (the run's `normalised`), or None for a task that gives no random or reference score
    (a run measures those; here its raw return is all there is).
    """
    if not callable(policy):
        raise ValueError(f"policy should be a callable from observations to actions, not a "
                         f"{type(policy).__name__}")
    if episodes < 1:
        raise ValueError(f"episodes should be at least 1, got {episodes}")
    if backend not in (None, "jax", "gymnasium"):
        raise ValueError(f"unknown backend '{backend}'; choose jax or gymnasium (or leave it "
                         "out: Gymnasium where a task has a Gymnasium env, else gymnax)")
    if not isinstance(scenario, Scenario):
        scenario = get_scenario(scenario)
    backends = [backend or ("gymnasium" if steps_on_gymnasium(t) else "jax")
                for t in scenario.tasks]
    spaces = [task_spaces(t, b) for t, b in zip(scenario.tasks, backends)]
    layout = scenario_layout([t.name for t in scenario.tasks], spaces)
    returns = []
    functional_envs: dict[str, FunctionalEnv] = {}  # one per gymnax env
    functional_keys = functional_eval_keys(seed, 0, scenario.num_tasks, episodes)
    for index, (task, task_backend, task_space) in enumerate(zip(scenario.tasks, backends,
                                                                spaces)):
        act = _checked(policy, task, task_space, layout)
        if task_backend == "gymnasium":
            envs = make_vector_env(task, episodes, (), None, layout)
            try:
                ret = episode_returns(envs, eval_env_seed(seed, 0, index), act)
            finally:
                envs.close()
        else:
            ret = _functional_returns(act, task, layout, functional_keys[index],
                                      functional_envs)
        returns.append(float(np.mean(ret)))
    normalised = [float(t.normalise(r)) if _scored(t) else None
                  for t, r in zip(scenario.tasks, returns)]
    return {"tasks": [t.name for t in scenario.tasks], "returns": returns,
            "normalised": normalised}


def _scored(task: Task) -> bool:
    return task.random_score is not None and task.reference_score is not None


def _checked(policy: Policy, task: Task, spaces: EnvSpaces, layout: Layout) -> Policy:
    """`policy` with its actions checked against what task `task` takes, so a wrong policy
    stops with one line instead of an error from deep inside an env."""

    def act(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        actions = np.asarray(policy(obs))
        n = obs.shape[0]
        where = f"policy returned actions of shape {actions.shape} for {n} observations of " \
                f"task '{task.name}'"
        if layout.continuous:
            if actions.shape != (n, layout.num_actions):
                raise ValueError(f"{where}; expected ({n}, {layout.num_actions}): one "
                                 f"{layout.num_actions}-dimensional action per observation")
            return actions.astype(np.float32)
        if actions.shape != (n,):
            raise ValueError(f"{where}; expected ({n},): one discrete action index per "
                             "observation")
        if not np.all(np.mod(actions, 1) == 0):
            raise ValueError(f"{where} whose values are not whole numbers; discrete actions "
                             "are indices")
        actions = actions.astype(np.int64)
        bad = actions[(actions < 0) | (actions >= spaces.num_actions)]
        if bad.size:
            raise ValueError(f"policy chose action {int(bad[0])} on task '{task.name}', which "
                             f"has actions 0..{spaces.num_actions - 1}"
                             + (" (the observation's last entries mask the others)"
                                if layout.masked else ""))
        return actions

    return act


def _functional_returns(act: Policy, task: Task, layout: Layout, keys: jax.Array,
                        envs: dict[str, FunctionalEnv]) -> np.ndarray:
    """One episode per key of `keys` ([episodes]), on the functional evaluator's keys
    (`episode_keys`: a reset key, then one key per step up to the env's step limit), stepped
    from the host: the policy is an arbitrary Python callable, so only the env's reset and step
    are compiled (vmapped over the episodes). The task's params are constants of the compiled
    step, as they are in the evaluator's program, so XLA folds them as it does there and the
    returns agree (with the params passed as arguments, CartPole's float32 rounding differed by
    an ulp, and its chaotic dynamics turned that into other episodes)."""
    if env_identity(task) not in envs:  # tasks on one env differ by params only
        envs[env_identity(task)] = FunctionalEnv(task, layout)
    env = envs[env_identity(task)]
    params = task_params(env, task)
    reset = jax.jit(jax.vmap(lambda key: env.reset(key, params)))
    step = jax.jit(jax.vmap(lambda key, state, action: env.step(key, state, action, params)))
    limit = env.max_episode_steps
    # [episodes] reset keys, [limit, episodes] step keys: step t of every episode at once
    k_reset, step_keys = jax.vmap(lambda key: episode_keys(key, limit), out_axes=(0, 1))(keys)
    obs, state = reset(k_reset)
    returns = np.zeros(len(keys))
    done = np.zeros(len(keys), bool)
    for t in range(limit):
        if done.all():
            break
        action = jnp.asarray(act(np.asarray(obs)),
                             jnp.float32 if layout.continuous else jnp.int32)
        obs, state, reward, terminated, truncated, _ = step(step_keys[t], state, action)
        returns += np.where(done, 0.0, np.asarray(reward))
        done |= np.asarray(terminated | truncated)
    return returns
