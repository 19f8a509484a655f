"""The environment families a task can be built on, with the physical parameters each exposes.

A family names the same environment on both paths: a gymnax id for the functional path and a
Gymnasium id for the host path. Physical parameters use gymnax's field names; the Gymnasium
wrapper maps them onto the attributes of Gymnasium's implementation. MuJoCo families have no
functional twin (`gymnax_id` None): their context (masses, friction, gravity, actuator gear,
reward direction or target velocity) is set by `everlearn.envs.mujoco_context.MujocoContext`.

Continuous-action families: agents act in [-1, 1] per dimension, and the task wrappers of both
paths multiply by `action_bound` (the env's nominal limit) and the task's `action_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The context keys of MuJoCo families (see `everlearn.envs.mujoco_context`).
MUJOCO_CONTEXT_KEYS = ("mass_scale", "friction_scale", "gravity", "gear_scale", "direction",
                       "target_velocity")


@dataclass(frozen=True)
class EnvFamily:
    name: str
    gymnax_id: str | None  # None: Gymnasium path only
    gymnasium_id: str
    obs_dim: int
    num_actions: int  # discrete: number of actions; continuous: size of the action vector
    max_episode_steps: int
    # parameter name -> attribute of the Gymnasium env's unwrapped instance
    physics: dict[str, str] = field(default_factory=dict)
    continuous: bool = False
    action_bound: float = 1.0  # continuous: the env takes actions in [-bound, bound]
    mujoco: bool = False  # context set on the MuJoCo model (MujocoContext), not by attributes


FAMILIES: dict[str, EnvFamily] = {
    "CartPole-v1": EnvFamily(
        name="CartPole-v1",
        gymnax_id="CartPole-v1",
        gymnasium_id="CartPole-v1",
        obs_dim=4,
        num_actions=2,
        max_episode_steps=500,
        physics={
            "gravity": "gravity",
            "masscart": "masscart",
            "masspole": "masspole",
            "length": "length",
            "force_mag": "force_mag",
            "tau": "tau",
        },
    ),
    "Acrobot-v1": EnvFamily(
        name="Acrobot-v1",
        gymnax_id="Acrobot-v1",
        gymnasium_id="Acrobot-v1",
        obs_dim=6,
        num_actions=3,
        max_episode_steps=500,
        physics={
            "link_length_1": "LINK_LENGTH_1",
            "link_length_2": "LINK_LENGTH_2",
            "link_mass_1": "LINK_MASS_1",
            "link_mass_2": "LINK_MASS_2",
            "link_com_pos_1": "LINK_COM_POS_1",
            "link_com_pos_2": "LINK_COM_POS_2",
            "link_moi": "LINK_MOI",
            "dt": "dt",
        },
    ),
    "Pendulum-v1": EnvFamily(
        name="Pendulum-v1",
        gymnax_id="Pendulum-v1",
        gymnasium_id="Pendulum-v1",
        obs_dim=3,
        num_actions=1,
        max_episode_steps=200,
        # `max_torque` clips the torque the env applies; the agent's full-scale action stays
        # the nominal 2.0, so a lower limit is a weaker motor.
        physics={name: name for name in ("g", "m", "l", "max_torque", "max_speed", "dt")},
        continuous=True,
        action_bound=2.0,
    ),
    **{
        name: EnvFamily(
            name=name, gymnax_id=None, gymnasium_id=name, obs_dim=obs_dim, num_actions=act_dim,
            max_episode_steps=1000, physics={k: k for k in MUJOCO_CONTEXT_KEYS},
            continuous=True, mujoco=True,
        )
        for name, obs_dim, act_dim in (("Hopper-v5", 11, 3), ("HalfCheetah-v5", 17, 6),
                                       ("Walker2d-v5", 17, 6))
    },
}


def get_family(name: str) -> EnvFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown environment '{name}'; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def derived_physics(family: str, physics: dict[str, float]) -> dict[str, float]:
    """Parameters that other parameters determine (CartPole caches total mass and mass*length)."""
    if family == "CartPole-v1":
        masscart = physics.get("masscart", 1.0)
        masspole = physics.get("masspole", 0.1)
        length = physics.get("length", 0.5)
        return {"total_mass": masscart + masspole, "polemass_length": masspole * length}
    return {}
