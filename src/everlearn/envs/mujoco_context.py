"""Context changes for Gymnasium MuJoCo envs, and contexts that drift between episodes.

In continual RL a task is the same env under a different *context*: a heavier robot, a slippery
floor, weaker motors, running backwards, or running at a given speed. `MujocoContext` puts such
a context onto any Gymnasium MuJoCo env (Hopper-v5, HalfCheetah-v5, Walker2d-v5, ...) by editing
the compiled model in place, always relative to the model's defaults, so setting a new context
never compounds an old one. It takes effect at the next physics step; no env rebuild is needed.

`ContextDrift` moves the context a little at every episode start along a path of waypoints, so
an agent meets gradual change with no visible task boundary. It drives any wrapper below it
that has a `set_context(dict)` method (`MujocoContext`, or the classic-control
`PhysicsContext`), and the run loop steers it through a vector env with
`vector_env.call("set_drift", start, end, steps_per_env)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import gymnasium as gym

from everlearn.envs.families import MUJOCO_CONTEXT_KEYS

_POSITIVE_KEYS = ("mass_scale", "friction_scale", "gear_scale")


def _env_name(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


class MujocoContext(gym.Wrapper):
    """A task's context on a Gymnasium MuJoCo env.

    Physics keys (each relative to the model's default; an absent key means the default):
    `mass_scale` multiplies every body's mass and inertia (same shapes, denser material);
    `friction_scale` multiplies sliding friction; `gravity` is the downward acceleration in
    m/s^2 (default 9.81); `gear_scale` multiplies actuator strength.

    Reward keys replace the forward-velocity term `info["reward_forward"]` and keep the others:
    `direction` d gives d * reward_forward (d = -1: run backwards); `target_velocity` v gives
    -forward_reward_weight * |x_velocity - v|. At most one of the two.
    """

    def __init__(self, env: gym.Env, context: Mapping[str, float] = {}):
        super().__init__(env)
        model = env.unwrapped.model
        self._defaults = {
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(),
            "gravity": model.opt.gravity.copy(),
            "actuator_gear": model.actuator_gear.copy(),
        }
        self.context: dict[str, float] = {}
        self.set_context(context)

    def set_context(self, context: Mapping[str, float]) -> None:
        """Set the physics and reward for `context`; keys left out go back to their defaults."""
        import mujoco  # here, not at the top: ContextDrift must work without MuJoCo installed

        self._validate(context)
        model, d = self.env.unwrapped.model, self._defaults
        mass = float(context.get("mass_scale", 1.0))
        model.body_mass[:] = d["body_mass"] * mass
        model.body_inertia[:] = d["body_inertia"] * mass
        model.geom_friction[:] = d["geom_friction"]
        model.geom_friction[:, 0] *= float(context.get("friction_scale", 1.0))
        model.opt.gravity[:] = d["gravity"]
        if "gravity" in context:
            model.opt.gravity[2] = -float(context["gravity"])
        model.actuator_gear[:] = d["actuator_gear"]
        model.actuator_gear[:, 0] *= float(context.get("gear_scale", 1.0))
        # Masses feed derived constants (subtree masses, which MuJoCo divides by for centres of
        # mass; inverse weights, which scale contact softness). Recompute them on scratch data
        # so the running episode's state is untouched.
        mujoco.mj_setConst(model, mujoco.MjData(model))
        self.context = {k: float(v) for k, v in context.items()}

    def _validate(self, context: Mapping[str, float]) -> None:
        name = _env_name(self.env)
        unknown = [k for k in context if k not in MUJOCO_CONTEXT_KEYS]
        if unknown:
            raise ValueError(
                f"unknown context key {unknown[0]!r} for {name}; valid: {', '.join(MUJOCO_CONTEXT_KEYS)}"
            )
        for key in _POSITIVE_KEYS:
            if key in context and not float(context[key]) > 0:
                raise ValueError(f"{key} must be > 0 for {name}, got {context[key]}; pass a positive scale")
        if "gravity" in context and not float(context["gravity"]) >= 0:
            raise ValueError(
                f"gravity is the downward acceleration and must be >= 0 for {name}, got {context['gravity']}; "
                "pass e.g. 9.81"
            )
        if "direction" in context and "target_velocity" in context:
            raise ValueError(
                f"context for {name} sets both direction and target_velocity; pass only one of them"
            )
        if ("direction" in context or "target_velocity" in context) and not hasattr(
            self.env.unwrapped, "_forward_reward_weight"
        ):
            raise ValueError(
                f"{name} has no forward-velocity reward to change; use direction/target_velocity only "
                "with locomotion envs such as Hopper-v5 or HalfCheetah-v5"
            )

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "direction" in self.context:
            forward = self.context["direction"] * info["reward_forward"]
        elif "target_velocity" in self.context:
            weight = self.env.unwrapped._forward_reward_weight
            forward = -weight * abs(info["x_velocity"] - self.context["target_velocity"])
        else:
            return obs, reward, terminated, truncated, info
        reward = float(reward - info["reward_forward"] + forward)
        info["reward_forward"] = forward
        return obs, reward, terminated, truncated, info


def interpolate(waypoints: Sequence[Mapping[str, float]], position: float) -> dict[str, float]:
    """The context at `position` along `waypoints`, in waypoint units, clipped to the ends.

    Linear between neighbours: position 1.25 is 75% waypoint 1 plus 25% waypoint 2.
    """
    position = min(max(float(position), 0.0), len(waypoints) - 1.0)
    i = min(math.floor(position), len(waypoints) - 2) if len(waypoints) > 1 else 0
    frac = position - i
    if frac == 0.0:
        return {k: float(v) for k, v in waypoints[i].items()}
    a, b = waypoints[i], waypoints[i + 1]
    return {k: float((1.0 - frac) * a[k] + frac * b[k]) for k in a}


class ContextDrift(gym.Wrapper):
    """A context that moves along `waypoints` a little at each episode start.

    `set_drift(start, end, steps)` makes the position go linearly from `start` to `end` over the
    next `steps` calls of `step` on this env; each `reset` sets the inner context to the
    waypoints interpolated at the current position. Before any `set_drift` the position is 0.
    """

    def __init__(self, env: gym.Env, waypoints: Sequence[Mapping[str, float]]):
        super().__init__(env)
        if len(waypoints) < 1:
            raise ValueError("ContextDrift needs at least one waypoint; pass e.g. [{'mass_scale': 1.0}]")
        keys = set(waypoints[0])
        for i, w in enumerate(waypoints):
            if set(w) != keys:
                raise ValueError(
                    f"waypoint {i} has keys {sorted(w)} but waypoint 0 has {sorted(keys)}; "
                    "give every waypoint the same keys"
                )
        try:
            self._set_context = env.get_wrapper_attr("set_context")
        except AttributeError:
            raise ValueError(
                f"{_env_name(env)} has no wrapper with set_context; wrap it in MujocoContext "
                "(or PhysicsContext) before ContextDrift"
            ) from None
        self.waypoints = [dict(w) for w in waypoints]
        self._start, self._end, self._steps, self._counter = 0.0, 0.0, 0, 0
        self.position = 0.0
        self.context = interpolate(self.waypoints, 0.0)
        self._set_context(self.context)  # also checks the keys against the inner wrapper now

    def set_drift(self, start: float, end: float, steps: int) -> None:
        """From now on move the position from `start` to `end` over the next `steps` steps."""
        if steps < 0:
            raise ValueError(f"set_drift needs steps >= 0, got {steps}; pass the segment's steps per env")
        self._start, self._end, self._steps, self._counter = float(start), float(end), int(steps), 0

    def reset(self, **kwargs):
        progress = min(self._counter / self._steps, 1.0) if self._steps > 0 else 1.0
        self.position = self._start + (self._end - self._start) * progress
        self.context = interpolate(self.waypoints, self.position)
        self._set_context(self.context)
        return self.env.reset(**kwargs)

    def step(self, action):
        self._counter += 1
        return self.env.step(action)
