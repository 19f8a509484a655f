"""`everlearn check-env`: will this environment work as an everlearn task, and if not, why not.

On the Gymnasium path an env gets Gymnasium's own checker (`gymnasium.utils.env_checker.
check_env`, its warnings listed) and everlearn's checks: spaces everlearn takes (`task_spaces`),
determinism under a seed (two resets with one seed, then the same random actions, give the same
observations and rewards), episodes that end (a random policy reaches `terminated` or
`truncated` within `EPISODE_LIMIT` steps), observations inside the observation space and of its
dtype, finite rewards. A gymnax-only env (no Gymnasium version) gets the same checks of its
functional version, under a key instead of a seed. Each fault comes with its fix.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from everlearn.envs.sources import (
    env_identity,
    functional_spaces,
    gymnasium_spaces,
    make_gymnasium,
    make_gymnax,
    steps_on_gymnasium,
)
from everlearn.scenarios.task import Task

DETERMINISM_STEPS = 20
EPISODE_LIMIT = 10_000
SEED = 12_345

_NO_END_FIX = ("add a time limit: wrap it in gymnasium.wrappers.TimeLimit(env, "
               "max_episode_steps=...) or register the id with max_episode_steps")
_SEED_FIX = ("draw all randomness from self.np_random, seeded by super().reset(seed=seed) in "
             "reset()")


class CheckInputError(ValueError):
    """The thing to check cannot be made at all (unknown env, bad kwargs): not a verdict."""


@dataclass(frozen=True)
class Fault:
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem} -> fix: {self.fix}"


@dataclass
class EnvCheck:
    """The verdict on one environment."""

    env: str  # as the task names it, with its kwargs
    path: str  # "gymnasium" or "jax" (functional)
    faults: list[Fault] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # Gymnasium's checker's

    @property
    def ok(self) -> bool:
        return not self.faults

    def lines(self) -> list[str]:
        head = f"{self.env} ({self.path}): " + (
            "OK" if self.ok else f"{len(self.faults)} problem{'s' * (len(self.faults) > 1)}")
        return [head, *(f"  - {f}" for f in self.faults),
                *(f"  warning (Gymnasium's checker): {w}" for w in self.warnings)]


def parse_kwargs(items: list[str]) -> dict[str, Any]:
    """`--kwargs` values: JSON objects, or key=value with the value read as YAML (numbers,
    booleans, lists stay typed)."""
    out: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except json.JSONDecodeError as e:
                raise CheckInputError(f"--kwargs '{item}' is not valid JSON ({e})") from None
            if not isinstance(value, dict):
                raise CheckInputError(f"--kwargs '{item}' should be a JSON object")
            out.update(value)
        elif "=" in item:
            key, _, text = item.partition("=")
            out[key.strip()] = yaml.safe_load(text)
        else:
            raise CheckInputError(f"--kwargs '{item}' should be key=value or a JSON object")
    return out


def tasks_to_check(target: str, kwargs: dict[str, Any] | None = None,
                   imports: tuple[str, ...] = ()) -> list[Task]:
    """One task per distinct environment of a scenario (a name or a scenario file), or the one
    environment `target` names (anything `Task.env` takes)."""
    from everlearn.scenarios.registry import get_scenario, scenario_names

    if target.endswith((".yaml", ".yml")) or target in scenario_names() or Path(target).is_file():
        if kwargs or imports:
            raise CheckInputError(f"--kwargs and --import apply to an env, not to scenario "
                                  f"'{target}' (its tasks set their own)")
        tasks: dict[str, Task] = {}
        for task in get_scenario(target).tasks:
            tasks.setdefault(env_identity(task), task)
        return list(tasks.values())
    return [Task(target, target, kwargs=dict(kwargs or {}), imports=tuple(imports))]


def check(target: str, kwargs: dict[str, Any] | None = None,
          imports: tuple[str, ...] = ()) -> list[EnvCheck]:
    """Check the environment `target` names, or every distinct one of a scenario."""
    return [check_task(task) for task in tasks_to_check(target, kwargs, imports)]


def check_task(task: Task) -> EnvCheck:
    """Check the environment of `task` (before its context and transformations: those are
    everlearn's) on its path: Gymnasium where it has a Gymnasium version, else gymnax."""
    label = task.env + (f" {json.dumps(dict(task.kwargs), default=str)}" if task.kwargs else "")
    if steps_on_gymnasium(task):
        return _check_gymnasium(task, EnvCheck(label, "gymnasium"))
    return _check_functional(task, EnvCheck(label, "jax"))


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _make(make: Any, task: Task) -> Any:
    try:
        return make(task)
    except Exception as e:  # everlearn's refusals, or whatever the user's constructor raises
        message = " ".join(str(e).split()) if isinstance(e, ValueError) else _one_line(e)
        if f"'{task.env}'" not in message:  # everlearn's own messages name the env already
            message = f"'{task.env}' cannot be made: {message}"
        raise CheckInputError(message) from None


def _unsupported_space(error: ValueError) -> Fault:
    message = " ".join(str(error).split())
    if "observation" in message:
        fix = ("give it a Box observation space (a vector, or an H x W x C image); "
               "gymnasium.wrappers.FlattenObservation flattens Dict and Tuple spaces")
    else:
        fix = ("give it a Discrete or a one-dimensional Box action space in a symmetric range "
               "[-b, b] (gymnasium.wrappers.RescaleAction rescales one)")
    return Fault(f"unsupported space: {message}", fix)


# -- Gymnasium path -----------------------------------------------------------------------------
def _check_gymnasium(task: Task, result: EnvCheck) -> EnvCheck:
    env = _make(make_gymnasium, task)
    try:
        _gymnasium_checker(env, result)
        try:
            gymnasium_spaces(env, f"'{task.env}'")
        except ValueError as e:
            result.faults.append(_unsupported_space(e))
            return result  # the checks below read Box observations
        with warnings.catch_warnings():  # Gymnasium's checker has spoken already
            warnings.simplefilter("ignore")
            _check_determinism(env, result)
            _check_episode(env, result)
    finally:
        env.close()
    return result


def _gymnasium_checker(env: gym.Env, result: EnvCheck) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # on the raw env: what gym.make adds around it is Gymnasium's own
            check_env(env.unwrapped, skip_render_check=True)
        except Exception as e:
            result.faults.append(Fault(f"Gymnasium's env checker failed: {_one_line(e)}",
                                       "make the env follow Gymnasium's API as the message "
                                       "says"))
    for w in caught:
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)).split())
        text = text.removeprefix("WARN: ")
        if text not in result.warnings:
            result.warnings.append(text)


# The rollouts here are fault-finding ones, not `everlearn.envs.rollout`'s episodes: they step the
# raw env (before everlearn's context and transformations) with its own action space's samples,
# keep every observation, stop at a fault or a step budget instead of the env's limit, and must
# survive an env that raises. Through the shared loop they would check another env.
def _rollout(env: gym.Env, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Reset with `SEED`, then up to `steps` random actions drawn from a seeded action space
    (to the episode's end)."""
    env.action_space.seed(SEED)
    obs, _ = env.reset(seed=SEED)
    observations, rewards = [np.array(obs, copy=True)], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(np.array(obs, copy=True))
        rewards.append(reward)
        if terminated or truncated:
            break
    return observations, rewards


def _check_determinism(env: gym.Env, result: EnvCheck) -> None:
    try:
        first, second = _rollout(env, DETERMINISM_STEPS), _rollout(env, DETERMINISM_STEPS)
    except Exception as e:
        result.faults.append(Fault(f"reset() or step() raised {_one_line(e)}",
                                   "fix the env's reset/step"))
        return
    (obs_1, rewards_1), (obs_2, rewards_2) = first, second
    t = what = None
    for step in range(max(len(obs_1), len(obs_2))):  # step 0: the reset's observation
        if not _same(obs_1[step:step + 1], obs_2[step:step + 1]):
            t, what = step, "observations"
        elif step and not _same(rewards_1[step - 1:step], rewards_2[step - 1:step]):
            t, what = step, "rewards"
        if t is not None:
            break
    if t is not None:
        when = "after reset" if t == 0 else f"at step {t}"
        result.faults.append(Fault(
            f"not deterministic under a seed: two runs from reset(seed={SEED}) with the same "
            f"random actions give different {what} {when}", _SEED_FIX))


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def _check_episode(env: gym.Env, result: EnvCheck) -> None:
    """A random policy until an episode ends (at most `EPISODE_LIMIT` steps), checking every
    observation against the space and every reward."""
    space = env.observation_space
    obs_fault = reward_fault = None
    env.action_space.seed(SEED)
    try:
        obs, _ = env.reset(seed=SEED)
        for t in range(EPISODE_LIMIT + 1):
            obs_fault = obs_fault or _observation_fault(obs, space, t)
            if t == EPISODE_LIMIT:
                result.faults.append(Fault(
                    f"no episode ended within {EPISODE_LIMIT:,} random steps (never "
                    "terminated or truncated)", _NO_END_FIX))
                break
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            reward_fault = reward_fault or _reward_fault(reward, t + 1)
            if terminated or truncated:
                obs_fault = obs_fault or _observation_fault(obs, space, t + 1)
                break
    except Exception as e:
        result.faults.append(Fault(f"reset() or step() raised {_one_line(e)}",
                                   "fix the env's reset/step"))
    result.faults.extend(f for f in (obs_fault, reward_fault) if f is not None)


def _observation_fault(obs: Any, space: Any, t: int) -> Fault | None:
    """What is wrong with observation `obs` (step `t`; 0: the reset's, -1: somewhere in a
    rollout) under Box `space`."""
    when = {0: "from reset()", -1: "during a random rollout"}.get(t, f"at step {t}")
    obs = np.asarray(obs)
    dtype = np.dtype(space.dtype)
    if obs.shape != tuple(space.shape):
        return Fault(f"observation {when} has shape {obs.shape}; the observation space "
                     f"declares {tuple(space.shape)}",
                     "return observations of the declared shape, or declare theirs")
    if obs.dtype != dtype:
        return Fault(f"observation {when} has dtype {obs.dtype}; the observation space "
                     f"declares {dtype}",
                     f"return np.asarray(obs, dtype=np.{dtype}), or declare {obs.dtype}")
    if np.issubdtype(obs.dtype, np.floating) and not np.all(np.isfinite(obs)):
        return Fault(f"observation {when} is not finite (NaN or inf)",
                     "keep the env's state finite (clip it, or end the episode)")
    outside = (obs < space.low) | (obs > space.high)
    if np.any(outside):
        i = np.unravel_index(int(np.argmax(outside)), obs.shape)
        index = i[0] if len(i) == 1 else i
        return Fault(f"observation {when} leaves the observation space: entry {index} is "
                     f"{obs[i]:.6g}, outside [{np.broadcast_to(space.low, obs.shape)[i]:.6g}, "
                     f"{np.broadcast_to(space.high, obs.shape)[i]:.6g}]",
                     "widen the space's low/high to what the env can show, or clip the "
                     "observations")
    return None


def _reward_fault(reward: Any, t: int) -> Fault | None:
    try:
        value = float(reward)
    except (TypeError, ValueError):
        return Fault(f"reward at step {t} is a {type(reward).__name__}, not a number",
                     "return one float reward per step")
    if not np.isfinite(value):
        return Fault(f"reward at step {t} is {value}", "return finite rewards")
    return None


# -- functional path (gymnax) -------------------------------------------------------------------
def _check_functional(task: Task, result: EnvCheck) -> EnvCheck:
    env, params = _make(make_gymnax, task)
    try:
        functional_spaces(env, params, f"'{task.env}'")
    except ValueError as e:
        result.faults.append(_unsupported_space(e))
        return result
    obs_space, action_space = env.observation_space(params), env.action_space(params)

    # The raw gymnax env's own action samples, every observation kept: fault-finding rollouts,
    # not `everlearn.envs.rollout.functional_episode` (see `_rollout`).
    def step(carry, key):
        state = carry
        k_action, k_step = jax.random.split(key)
        action = action_space.sample(k_action)
        obs, state, reward, terminated, truncated, _ = env.step(k_step, state, action, params)
        return state, (obs, reward, terminated | truncated)

    def rollout(key, steps):
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)
        _, (observations, rewards, done) = jax.lax.scan(step, state,
                                                        jax.random.split(k_steps, steps))
        return obs, observations, rewards, done

    def long_rollout(key, steps):
        """Reduced on the device: the reset observation, per entry the value farthest outside
        the space (NaN where one was not finite), rewards all finite, an episode ended."""
        obs, observations, rewards, done = rollout(key, steps)
        low, high = observations.min(axis=0), observations.max(axis=0)
        worst = jnp.where(low < obs_space.low, low, jnp.where(high > obs_space.high, high, low))
        finite = jnp.all(jnp.isfinite(observations), axis=0)
        worst = jnp.where(finite, worst, jnp.nan) if jnp.issubdtype(worst.dtype, jnp.floating) \
            else worst
        return obs, worst, jnp.all(jnp.isfinite(rewards)), done.any()

    def eager_rollout(key):
        """Step by step, uncompiled: host-side randomness (numpy's global generator, say)
        would be frozen into a compiled program, and show only here."""
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)
        out = [obs]
        for k in jax.random.split(k_steps, DETERMINISM_STEPS):
            state, transition = step(state, k)
            out.extend(transition)
        return out

    key = jax.random.PRNGKey(SEED)
    try:
        if not all(np.array_equal(a, b, equal_nan=True)
                   for a, b in zip(eager_rollout(key), eager_rollout(key))):
            result.faults.append(Fault(
                "not deterministic under a key: two rollouts from reset(key) with the same "
                "keys differ", "draw all randomness from the keys reset and step are given"))
        obs, worst, rewards_finite, ended = jax.jit(long_rollout, static_argnums=1)(
            key, EPISODE_LIMIT)
    except Exception as e:
        result.faults.append(Fault(f"reset() or step() raised {_one_line(e)}",
                                   "fix the env's reset/step"))
        return result
    if not bool(ended):
        result.faults.append(Fault(f"no episode ended within {EPISODE_LIMIT:,} random steps",
                                   "give the env params a max_steps_in_episode"))
    fault = (_observation_fault(np.asarray(obs), obs_space, 0)
             or _observation_fault(np.asarray(worst), obs_space, -1))
    if fault is not None:
        result.faults.append(fault)
    if not bool(rewards_finite):
        result.faults.append(Fault("a reward during the random rollout is not finite",
                                   "return finite rewards"))
    return result
