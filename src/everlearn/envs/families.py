"""The environment families a task can be built on, with the physical parameters each exposes.

A family names the same environment on both paths: a gymnax id for the functional path and a
Gymnasium id for the host path. Physical parameters use gymnax's field names; the Gymnasium
wrapper maps them onto the attributes of Gymnasium's implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EnvFamily:
    name: str
    gymnax_id: str
    gymnasium_id: str
    obs_dim: int
    num_actions: int
    max_episode_steps: int
    # parameter name -> attribute of the Gymnasium env's unwrapped instance
    physics: dict[str, str] = field(default_factory=dict)


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
