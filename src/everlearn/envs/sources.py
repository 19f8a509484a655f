"""Where a task's environment comes from, and what its spaces are.

A task names its environment in one of these ways (`Task.env`, with `Task.kwargs`):
- a built-in family (`CartPole-v1`, `Hopper-v5`, ...; `everlearn.envs.families`): both paths
  where a gymnax twin exists, with the family's table of physical parameters;
- a gymnax id (`Breakout-MinAtar`, or explicitly `gymnax:Breakout-MinAtar`): the functional
  path; `physics` overrides fields of its env params;
- a registered Gymnasium id (`MountainCar-v0`), including ids a package registers when it is
  imported (`Task.imports`): the Gymnasium path; `physics` sets attributes of the unwrapped env;
- an entry point `package.module:ClassOrFactory` (the current directory is importable), called
  with `kwargs`: the Gymnasium path;
- a Python factory (`Task.env_factory`): the Gymnasium path.
Spaces are read from the environment itself (`EnvSpaces`), never from a table.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from everlearn.envs.families import FAMILIES, EnvFamily

GYMNAX_PREFIX = "gymnax:"


@dataclass(frozen=True)
class EnvRef:
    """An env by name alone, in its default context: what the env sources read of a task
    (`everlearn.scenarios.task.Task` adds the context that makes a task of it)."""

    name: str
    env: str
    kwargs: dict = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    env_factory: Any = None


@dataclass(frozen=True)
class EnvSpaces:
    """What an agent needs to know of one environment."""

    obs_shape: tuple[int, ...]
    continuous: bool
    num_actions: int  # discrete: number of actions; continuous: size of the action vector
    action_bound: float = 1.0  # continuous: the env takes actions in [-bound, bound]
    max_episode_steps: int | None = None


def family_of(task: Any) -> EnvFamily | None:
    """The built-in family a task runs on (None: any other environment)."""
    return FAMILIES.get(task.env) if task.env_factory is None else None


def gymnax_id(task: Any) -> str | None:
    """The gymnax id that steps this task on the functional path, or None."""
    if task.env_factory is not None:
        return None
    family = family_of(task)
    if family is not None:
        return family.gymnax_id
    if task.env.startswith(GYMNAX_PREFIX):
        return task.env[len(GYMNAX_PREFIX):]
    import gymnax

    return task.env if task.env in gymnax.registered_envs else None


def env_identity(task: Any) -> str:
    """Tasks with the same identity are one environment in different contexts: the same env
    made with the same `kwargs` and `imports` (they share spaces, and a compiled program on the
    functional path)."""
    if task.env_factory is not None:
        return f"factory:{id(task.env_factory)}"
    name = task.env.removeprefix(GYMNAX_PREFIX)
    return json.dumps([name, dict(task.kwargs), list(task.imports)], sort_keys=True, default=str)


def import_modules(names: tuple[str, ...] | list[str]) -> None:
    """Import the packages a task names (they may register Gymnasium ids on import); the
    current directory is importable, so a user's own module next to their scenario works."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"cannot import '{name}' ({e}); install it or fix the task's "
                             "'import' list") from None


def steps_on_gymnasium(task: Any) -> bool:
    """Whether the task has a Gymnasium version; else only its gymnax env can step it."""
    if gymnax_id(task) is None or family_of(task) is not None:
        return True
    try:  # an id both registries know (MountainCar-v0) is a Gymnasium env too
        make_gymnasium(task).close()
        return True
    except ValueError:
        return False


def _entry_point(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    import_modules([module_name])
    module = sys.modules[module_name]
    if not hasattr(module, attr):
        raise ValueError(f"module '{module_name}' has no '{attr}' (from env '{spec}')")
    return getattr(module, attr)


def make_gymnasium(task: Any) -> gym.Env:
    """The task's environment as a `gymnasium.Env`, before any context or transformation."""
    import_modules(task.imports)
    if task.env_factory is not None:
        return task.env_factory()
    family = family_of(task)
    if family is not None:
        return gym.make(family.gymnasium_id, **dict(task.kwargs))
    if task.env.startswith(GYMNAX_PREFIX):
        raise ValueError(f"task '{task.name}': '{task.env}' is a gymnax env, which only the "
                         "functional path steps; use --backend jax")
    if ":" in task.env:
        env = _entry_point(task.env)(**dict(task.kwargs))
        if not isinstance(env, gym.Env):
            raise ValueError(f"task '{task.name}': '{task.env}' made a {type(env).__name__}, "
                             "not a gymnasium.Env")
        return env
    if task.env not in gym.envs.registry:
        hint = (" (a gymnax id: it runs on the functional path, --backend jax)"
                if gymnax_id(task) else "; name a package that registers it under 'import'")
        raise ValueError(f"task '{task.name}': unknown environment '{task.env}': not a "
                         f"built-in family, a gymnax id, a registered Gymnasium id or a "
                         f"module:Class entry point{hint}")
    return gym.make(task.env, **dict(task.kwargs))


def make_gymnax(task: Any) -> tuple[Any, Any]:
    """The task's gymnax env and its default env params (functional path)."""
    import gymnax

    env_id = gymnax_id(task)
    if env_id is None:
        raise ValueError(f"task '{task.name}': '{task.env}' has no functional version; run "
                         "it on the Gymnasium path (--backend gymnasium)")
    if env_id not in gymnax.registered_envs:
        raise ValueError(f"task '{task.name}': unknown gymnax env '{env_id}'; choose one of: "
                         f"{', '.join(gymnax.registered_envs)}")
    return gymnax.make(env_id, **dict(task.kwargs))


def _spaces_of(observation_space: Any, action_space: Any, where: str,
               max_episode_steps: int | None) -> EnvSpaces:
    """`EnvSpaces` from Gymnasium or gymnax spaces (they share the attribute names)."""
    kind = type(observation_space).__name__
    if kind != "Box" or not observation_space.shape:
        raise ValueError(f"{where}: observation space {observation_space!r} is not supported; "
                         "everlearn takes Box observations (vectors or images)")
    if len(observation_space.shape) not in (1, 3):
        raise ValueError(f"{where}: observation shape {observation_space.shape} is not "
                         "supported; use a vector (d,) or an image (H, W, C)")
    action_kind = type(action_space).__name__
    if action_kind == "Discrete":
        return EnvSpaces(tuple(observation_space.shape), False, int(action_space.n),
                         max_episode_steps=max_episode_steps)
    if action_kind == "Box" and len(action_space.shape) == 1:
        high = np.asarray(action_space.high, np.float64)
        low = np.asarray(action_space.low, np.float64)
        if not (np.all(np.isfinite(high)) and np.allclose(low, -high)):
            raise ValueError(f"{where}: continuous actions must lie in a finite symmetric "
                             f"range [-b, b]; the action space is {action_space!r}")
        return EnvSpaces(tuple(observation_space.shape), True, int(action_space.shape[0]),
                         action_bound=float(high.max()), max_episode_steps=max_episode_steps)
    raise ValueError(f"{where}: action space {action_space!r} is not supported; everlearn "
                     "takes Discrete or one-dimensional Box actions")


def functional_spaces(env: Any, params: Any, where: str) -> EnvSpaces:
    return _spaces_of(env.observation_space(params), env.action_space(params), where,
                      int(getattr(params, "max_steps_in_episode", 1000)))


def gymnasium_spaces(env: gym.Env, where: str) -> EnvSpaces:
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return _spaces_of(env.observation_space, env.action_space, where, limit)


def task_spaces(task: Any, backend: str) -> EnvSpaces:
    """Read the task's spaces from its environment on `backend` ("jax" or "gymnasium")."""
    where = f"task '{task.name}' ({task.env})"
    if backend == "jax":
        env, params = make_gymnax(task)
        return functional_spaces(env, params, where)
    env = make_gymnasium(task)
    try:
        return gymnasium_spaces(env, where)
    finally:
        env.close()
