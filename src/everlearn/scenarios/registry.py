"""Built-in scenarios (`everlearn list`) and the registry users add their own to.

The random scores were measured with `tests/scenarios/test_registry.py::test_random_scores`
(a uniform-random policy, 500 episodes, functional path); the reference scores are the return of
a solved task (CartPole's maximum; Acrobot's commonly reported solved level).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from everlearn.scenarios.task import Scenario, Task

_REGISTRY: dict[str, Callable[[], Scenario]] = {}


def register_scenario(name: str):
    def wrap(fn: Callable[[], Scenario]) -> Callable[[], Scenario]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def scenario_names() -> list[str]:
    return list(_REGISTRY)


def get_scenario(name: str) -> Scenario:
    if name not in _REGISTRY:
        raise ValueError(f"unknown scenario '{name}'; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


@register_scenario("cartpole-contexts")
def cartpole_contexts() -> Scenario:
    """Four CartPole tasks whose optimal policies conflict, so fine-tuning forgets.

    Physics changes alone transfer well between CartPole tasks; inverted action mappings and a
    permuted observation make the earlier policies wrong on later tasks.
    """
    return Scenario(
        name="cartpole-contexts",
        description="CartPole: standard; long pole + inverted actions; heavy pole + permuted "
        "observations; light cart + inverted actions",
        tasks=(
            Task("standard", "CartPole-v1", random_score=22.0, reference_score=500.0),
            Task(
                "long-pole-inverted",
                "CartPole-v1",
                random_score=28.0,
                reference_score=500.0,
                physics={"length": 0.75},
                action_map=(1, 0),
            ),
            Task(
                "heavy-pole-permuted",
                "CartPole-v1",
                random_score=22.0,
                reference_score=500.0,
                physics={"masspole": 0.3},
                obs_perm=(2, 3, 0, 1),
            ),
            Task(
                "light-cart-inverted",
                "CartPole-v1",
                random_score=14.0,
                reference_score=500.0,
                physics={"masscart": 0.5, "force_mag": 12.0},
                action_map=(1, 0),
            ),
        ),
        steps_per_task=100_000,
        task_ids_visible=True,  # the agent may be told the task (multi_head, task_id_input)
    )


@register_scenario("acrobot-contexts")
def acrobot_contexts() -> Scenario:
    """Four Acrobot tasks: link masses and lengths change, torque directions flip."""
    return Scenario(
        name="acrobot-contexts",
        description="Acrobot: standard; heavy lower link + reversed torque; long upper link; "
        "light links + reversed torque and scaled velocities",
        tasks=(
            Task("standard", "Acrobot-v1", random_score=-500.0, reference_score=-80.0),
            Task(
                "heavy-link-reversed",
                "Acrobot-v1",
                random_score=-500.0,
                reference_score=-80.0,
                physics={"link_mass_2": 1.5},
                action_map=(2, 1, 0),
            ),
            Task(
                "long-link",
                "Acrobot-v1",
                random_score=-500.0,
                reference_score=-80.0,
                physics={"link_length_1": 1.2},
                obs_perm=(2, 3, 0, 1, 5, 4),
            ),
            Task(
                "light-links-reversed",
                "Acrobot-v1",
                random_score=-500.0,
                reference_score=-80.0,
                physics={"link_mass_1": 0.8, "link_mass_2": 0.8},
                action_map=(2, 1, 0),
                obs_scale=(1.0, 1.0, 1.0, 1.0, 0.5, 0.5),
            ),
        ),
        steps_per_task=100_000,
        task_ids_visible=True,  # the agent may be told the task (multi_head, task_id_input)
    )


@register_scenario("cartpole-stationary")
def cartpole_stationary() -> Scenario:
    """One standard CartPole task: the single-task baseline and the learning-test setting."""
    return Scenario(
        name="cartpole-stationary",
        description="CartPole-v1, unchanged (single-task)",
        tasks=(Task("standard", "CartPole-v1", random_score=22.0, reference_score=500.0),),
        steps_per_task=100_000,
    )


@register_scenario("cartpole-plasticity")
def cartpole_plasticity() -> Scenario:
    """A long run of short CartPole tasks whose optimum keeps moving: each task draws a fresh
    observation permutation, observation signs and action mapping (fixed draws, so
    the scenario is the same everywhere). Nothing learned transfers, so the per-task learning
    speed (the area under each task's own learning curve) shows whether the agent can still
    learn as the sequence goes on — the setting of loss-of-plasticity studies (Dohare et al.,
    2024; Lyle et al., 2023)."""
    rng = np.random.default_rng(20_241_125)
    tasks = []
    for k in range(24):
        perm = tuple(int(i) for i in rng.permutation(4))
        # Signs, not magnitudes: a permuted, sign-flipped CartPole is exactly as hard to learn
        # from scratch as the original (the initialisation is symmetric), so any trend in
        # learning speed over the sequence is the agent's, not the tasks'.
        scale = tuple(float(s) for s in rng.choice([-1.0, 1.0], 4))
        action_map = (1, 0) if rng.random() < 0.5 else (0, 1)
        tasks.append(Task(f"shuffle-{k + 1:02d}", "CartPole-v1", random_score=22.0,
                          reference_score=500.0, obs_perm=perm,
                          obs_scale=scale, action_map=action_map))
    return Scenario(
        name="cartpole-plasticity",
        description="CartPole, 24 short tasks, each with a fresh random observation "
        "permutation, observation signs and action mapping (loss of plasticity)",
        tasks=tuple(tasks),
        steps_per_task=20_000,
    )
