"""The built-in scenarios (`everlearn list`, in this file's order) and where their scores come
from.

Each is a `@register_scenario` function; importing this module registers them all, and
`everlearn.scenarios` imports it right after `registry`, so the built-ins are there before any
scenario a user registers and are listed first.

CartPole's and Acrobot's random scores were measured with
`tests/scenarios/test_registry.py::test_random_scores` (a uniform-random policy, 500 episodes,
functional path); their reference scores are the return of a solved task (CartPole's maximum;
Acrobot's commonly reported solved level). Pendulum, MuJoCo, Continual World and MinAtar say
where theirs come from in the comments heading their sections.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from everlearn.scenarios.registry import register_scenario
from everlearn.scenarios.task import Scenario, Task


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


# -- continuous control -------------------------------------------------------------------------
# Pendulum: the random scores are a uniform-random policy's mean return (500 episodes per task,
# functional path, measured with tests/scenarios/test_registry.py::test_random_scores); the
# reference score -150 is the return of a policy that swings up and balances from any start
# (SAC reaches it on the standard task).
PENDULUM_REFERENCE = -150.0


def _pendulum(name: str, random_score: float, **context) -> Task:
    action_scale = context.pop("action_scale", None)
    return Task(name, "Pendulum-v1", random_score=random_score,
                reference_score=PENDULUM_REFERENCE, physics=context, action_scale=action_scale)


@register_scenario("pendulum-contexts")
def pendulum_contexts() -> Scenario:
    """Four Pendulum swing-up tasks: gravity, mass, length and motor strength change, and the
    motor's direction flips on two of them, so a policy for one task fails on the next."""
    return Scenario(
        name="pendulum-contexts",
        description="Pendulum: standard; heavy bob + reversed motor; long pole, low gravity; "
        "high gravity, weak reversed motor",
        tasks=(
            _pendulum("standard", -1214.0),
            _pendulum("heavy-reversed", -1195.0, m=1.3, action_scale=(-1.0,)),
            _pendulum("long-low-gravity", -1143.0, l=1.3, g=8.0),
            _pendulum("high-gravity-weak-reversed", -1292.0, g=12.0, max_torque=1.6,
                      action_scale=(-1.0,)),
        ),
        steps_per_task=20_000,
        task_ids_visible=True,  # the agent may be told the task (multi_head, task_id_input)
    )


@register_scenario("pendulum-stationary")
def pendulum_stationary() -> Scenario:
    """One standard Pendulum task: the single-task baseline and the learning-test setting."""
    return Scenario(name="pendulum-stationary", description="Pendulum-v1, unchanged "
                    "(single-task)", tasks=(_pendulum("standard", -1214.0),),
                    steps_per_task=20_000)


@register_scenario("pendulum-drift")
def pendulum_drift() -> Scenario:
    """Gravity and pole length drift a little every episode (no task boundaries); the
    evaluator measures five points along the drift."""
    waypoints = [(10.0, 1.0, -1228.0), (11.5, 1.1, -1258.0), (13.0, 1.2, -1254.0),
                 (14.5, 1.3, -1283.0), (16.0, 1.4, -1292.0)]
    return Scenario(
        name="pendulum-drift",
        description="Pendulum whose gravity (10 -> 16) and pole length (1.0 -> 1.4) drift "
        "every episode; hidden boundaries",
        tasks=tuple(_pendulum(f"g{g:g}-l{l:g}", random, g=g, l=l) for g, l, random in waypoints),
        steps_per_task=10_000,
        boundaries_visible=False,
        drift=True,
    )


@register_scenario("pendulum-offline")
def pendulum_offline() -> Scenario:
    """Continual offline RL: three Pendulum contexts, each learnt from its built-in "medium"
    dataset alone (made on first use, `everlearn.data.recipes`), with no env interaction
    during training; the envs only evaluate. Steps are gradient steps."""
    tasks = pendulum_contexts().tasks[:3]
    return Scenario(
        name="pendulum-offline",
        description="Pendulum standard; heavy bob + reversed motor; long pole, low gravity: "
        "each from its medium dataset (offline)",
        tasks=tuple(replace(t, dataset="medium") for t in tasks),
        steps_per_task=10_000,
        task_ids_visible=True,
    )


@register_scenario("pendulum-offline-to-online")
def pendulum_offline_to_online() -> Scenario:
    """Offline pre-training, then online fine-tuning: the standard Pendulum learnt first from
    its built-in "medium" dataset (gradient steps, no env step), then online in the same env
    (env steps). The recipes of docs/offline.md (plain fine-tuning, WSRL's warm-up,
    `offline_mix`) are settings and methods of a run on it."""
    return offline_then_online("pendulum-offline-to-online", pendulum_contexts().tasks[0],
                               "Pendulum standard", 10_000)


def offline_then_online(name: str, task: Task, label: str, steps: int) -> Scenario:
    """`task` learnt from its built-in medium dataset, then online in the same env."""
    return Scenario(
        name=name,
        description=f"{label}: from its medium dataset (offline), then online",
        tasks=(replace(task, name="standard-offline", dataset="medium"),
               replace(task, name="standard-online")),
        steps_per_task=steps,
    )


# MuJoCo (Gymnasium path only). Random scores: a uniform-random policy's mean return over 100
# episodes (measured 2026-11-25, Gymnasium 1.3, mujoco 4.0); reference scores: D4RL's expert
# returns (Fu et al., 2020: Hopper 3234.3, HalfCheetah 12135.0). Budgets this short stay far
# below the expert level, so normalised scores are small; they are comparable across methods.
HOPPER_RANDOM, HOPPER_REFERENCE = 18.4, 3234.3
CHEETAH_REFERENCE = 12135.0


@register_scenario("hopper-dynamics")
def hopper_dynamics() -> Scenario:
    """Hopper through four bodies and floors: standard; 50% heavier; slippery floor (half the
    friction); lighter body on a grippy floor."""
    contexts = [("standard", {}), ("heavy", {"mass_scale": 1.5}),
                ("slippery", {"friction_scale": 0.5}),
                ("light-grippy", {"mass_scale": 0.75, "friction_scale": 1.5})]
    return Scenario(
        name="hopper-dynamics",
        description="Hopper-v5: standard; mass x1.5; friction x0.5; mass x0.75 + friction x1.5",
        tasks=tuple(Task(name, "Hopper-v5", random_score=HOPPER_RANDOM,
                         reference_score=HOPPER_REFERENCE, physics=physics)
                    for name, physics in contexts),
        steps_per_task=100_000,
        task_ids_visible=True,
    )


@register_scenario("hopper-offline-to-online")
def hopper_offline_to_online() -> Scenario:
    """`pendulum-offline-to-online` on MuJoCo: the standard Hopper learnt first from its
    built-in "medium" dataset (made on first use on the Gymnasium path by training SAC,
    `everlearn.data.recipes.MUJOCO_EXPERT`), then online in the same env. Gymnasium path
    only (`--backend gymnasium` is chosen for it: Hopper has no functional env)."""
    return offline_then_online("hopper-offline-to-online", hopper_dynamics().tasks[0],
                               "Hopper-v5 standard", 50_000)


@register_scenario("halfcheetah-directions")
def halfcheetah_directions() -> Scenario:
    """HalfCheetah rewarded for running forward, then backward: the second task's reward is
    the negative of the first's forward term, so what one task learns the other punishes."""
    return Scenario(
        name="halfcheetah-directions",
        description="HalfCheetah-v5: run forward; run backward",
        tasks=(Task("forward", "HalfCheetah-v5", random_score=-286.5,
                    reference_score=CHEETAH_REFERENCE, physics={"direction": 1.0}),
               Task("backward", "HalfCheetah-v5", random_score=-113.5,
                    reference_score=CHEETAH_REFERENCE, physics={"direction": -1.0})),
        steps_per_task=100_000,
        task_ids_visible=True,
    )


@register_scenario("hopper-drift")
def hopper_drift() -> Scenario:
    """Hopper whose body mass grows a little every episode, from 1x to 2x (no task
    boundaries; the setting of reactive-exploration and continual model-based RL studies);
    the evaluator measures five masses along the drift."""
    scales = (1.0, 1.25, 1.5, 1.75, 2.0)
    return Scenario(
        name="hopper-drift",
        description="Hopper-v5 whose mass drifts from x1.0 to x2.0 every episode; hidden "
        "boundaries",
        tasks=tuple(Task(f"mass-x{s:g}", "Hopper-v5", random_score=HOPPER_RANDOM,
                         reference_score=HOPPER_REFERENCE, physics={"mass_scale": s})
                    for s in scales),
        steps_per_task=50_000,
        boundaries_visible=False,
        drift=True,
    )


# -- Continual World (Meta-World, Gymnasium path) -----------------------------------------------
# Wołczyk et al. (2021): ten Meta-World tasks in CW's order, success rate as performance, 1M
# steps per task, task ids shown (CW's agents use one output head per task). The env, its
# randomisation and episode length are CW's (`everlearn.envs.metaworld`); the metrics heading
# the summary are CW's convention (`everlearn.evaluation.metrics`).
def _continual_world(name: str, repeats: int) -> Scenario:
    from everlearn.envs.metaworld import CW10, ENV_ID

    tasks = tuple(
        Task(task.removesuffix("-v3") + ("" if r == 0 else f"-{r + 1}"), ENV_ID,
             kwargs={"task": task}, imports=("everlearn.envs.metaworld",),
             success_key="success", random_score=0.0, reference_score=1.0)
        for r in range(repeats) for task in CW10)
    return Scenario(
        name=name,
        description=f"Continual World {'CW10' if repeats == 1 else 'CW20 (CW10 twice)'}: "
        "Meta-World v3 " + ", ".join(t.removesuffix("-v3") for t in CW10)
        + "; success rate",
        tasks=tasks,
        steps_per_task=1_000_000,
        task_ids_visible=True,
        metrics="continual-world",
    )


@register_scenario("cw10")
def cw10() -> Scenario:
    """Continual World's CW10: ten Meta-World manipulation tasks, 1M steps each."""
    return _continual_world("cw10", 1)


@register_scenario("cw20")
def cw20() -> Scenario:
    """Continual World's CW20: CW10 twice (tasks 11-20 are new task ids, as in CW)."""
    return _continual_world("cw20", 2)


# -- MinAtar (gymnax, functional path) ----------------------------------------------------------
# Four of Young & Tian's (2019) MinAtar games as gymnax implements them, one task each, the
# sequence played twice. Their observations (10x10 with 4, 6, 4 and 7 channels) are padded to
# 10x10x7 and their action sets (3, 4, 5 and 3 actions) joined into 5 with the absent ones masked
# (`everlearn.envs.layout`). gymnax's MinAtar has no sticky actions; episodes end at the game's
# terminal state or after max_steps_in_episode (1000; Freeway always runs its 2500 steps).
# Random scores: a uniform-random policy's mean return over 4,000 episodes per game (seeds 0 and
# 1, 2,000 each, functional path, `everlearn.envs.rollout.random_episode_returns`; measured
# 2026-11-30, gymnax 1.0.1); standard errors 0.01 (Breakout, Asterix, Freeway) and 0.05 (Space
# Invaders); checked by tests/scenarios/test_minatar_sequence.py.
# Reference scores: the PPO returns gymnax publishes for these envs, in the "Implemented
# Accelerated Environments" table of its README (gymnax 1.0.1, "PPO (R: 28)" for
# Breakout-MinAtar, 131 SpaceInvaders, 15 Asterix, 58 Freeway); they are gymnax-blines'
# checkpoints (agents/<game>/ppo.yaml: PPO, 10M steps, 64 envs, a 2x256 MLP), measured on
# gymnax's own implementations of these games (an earlier gymnax release). Young & Tian's own
# DQN results (MinAtar's README and paper) are shown as learning curves, not as a table we
# could quote here, and were measured on the original MinAtar (sticky actions, no 1000-step
# limit), so they are not used.
MINATAR_GAMES = (  # (task name, gymnax id, random score, reference score)
    ("breakout", "Breakout-MinAtar", 0.41, 28.0),
    ("space-invaders", "SpaceInvaders-MinAtar", 4.18, 131.0),
    ("asterix", "Asterix-MinAtar", 0.51, 15.0),
    ("freeway", "Freeway-MinAtar", 0.42, 58.0),
)


@register_scenario("minatar-sequence")
def minatar_sequence() -> Scenario:
    """Breakout, Space Invaders, Asterix and Freeway (MinAtar, gymnax), then the same four again
    as new tasks ("breakout-2", ...): the first round shows forgetting, the second relearning.

    1M steps per task (8M per seed; Continual World's per-task budget) is a fifth of the 5M
    frames MinAtar's paper trains per game and a tenth of the 10M steps behind the reference
    scores, so normalised scores stay below 1; they are comparable across methods. Even so it
    takes hours on a CPU (the CNN torso makes every update dear): use an accelerator, or
    `--set steps_per_task=...` for shorter runs. Task ids and boundaries are visible
    (`multi_head` gives each task its own head).
    """
    tasks = tuple(Task(name + ("" if r == 0 else f"-{r + 1}"), env, random_score=random,
                       reference_score=reference)
                  for r in range(2) for name, env, random, reference in MINATAR_GAMES)
    return Scenario(
        name="minatar-sequence",
        description="the four MinAtar games, then the same four again; frames padded to "
        "10x10x7, absent actions masked",
        tasks=tasks,
        steps_per_task=1_000_000,
        task_ids_visible=True,
    )
