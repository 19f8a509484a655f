"""Meta-World tasks as Continual World builds them (Wołczyk et al., 2021; the authors'
`continualworld/envs.py` and `utils/wrappers.py`), registered as the Gymnasium id
`everlearn/ContinualWorld-v0` (kwarg `task`, a Meta-World v3 name such as `hammer-v3`).

What CW does, and what this env does:
- the goal is part of the observation (CW: MT50 with `partially_observable=False`);
- every reset draws a fresh random object and goal position (CW's default randomisation,
  `random_init_all`: the env's random vector is not frozen), from the env's own generator,
  which `reset(seed=...)` seeds (Meta-World ignores the reset seed; its `seed()` is called);
- episodes last 200 steps (`META_WORLD_TIME_HORIZON`); nothing terminates early;
- `info["success"]` is Meta-World's success flag; an episode succeeds if it is set at any step
  (CW's `SuccessCounter`; everlearn's evaluator counts it so, `Task.success_key`).
Difference: Meta-World v3 (`metaworld==3.1.1`) where CW used v1. v3's observation has 39
entries (hand, gripper, two objects, the previous frame's, the goal); v1's had 12. The
agent sees all 39 (CW's v2 port, which cuts to 12, would drop the goal).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

ENV_ID = "everlearn/ContinualWorld-v0"
EPISODE_STEPS = 200  # CW's META_WORLD_TIME_HORIZON

# Continual World's CW10 sequence, in its order (`continualworld/tasks.py`, TASK_SEQS["CW10"]).
CW10 = ("hammer-v3", "push-wall-v3", "faucet-close-v3", "push-back-v3", "stick-pull-v3",
        "handle-press-side-v3", "push-v3", "shelf-place-v3", "window-close-v3",
        "peg-unplug-side-v3")


class _ResampledGoal(gym.Wrapper):
    """Seeds Meta-World's generator from `reset(seed=...)` (Meta-World ignores that seed)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        return self.env.reset(options=options)


def continual_world_task(task: str) -> gym.Env:
    """One Meta-World v3 task with CW's randomisation (see the module docstring)."""
    try:
        import metaworld  # noqa: F401  (registers Meta-World's own ids too)
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    except ImportError as e:
        raise ValueError(f"Meta-World is not installed ({e}); install everlearn's dependencies "
                         "again (pip install -e .)") from None
    if task not in ALL_V3_ENVIRONMENTS:
        raise ValueError(f"unknown Meta-World task '{task}'; choose one of: "
                         f"{', '.join(ALL_V3_ENVIRONMENTS)}")
    env = ALL_V3_ENVIRONMENTS[task]()
    # Meta-World's own recipe for goal-observable envs (`_create_observable_goal_envs`), but
    # with the random vector left unfrozen, so that every reset draws a new goal (CW).
    env._partially_observable = False
    del env.sawyer_observation_space  # a cached property that depends on the line above
    env.observation_space = env.sawyer_observation_space  # with the goal's bounds
    env._set_task_called = True
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True  # draw from env.np_random (seeded), not numpy's global state
    env.seed(0)
    env.max_path_length = EPISODE_STEPS
    return _ResampledGoal(env)


if ENV_ID not in gym.envs.registry:
    gym.register(ENV_ID, entry_point=continual_world_task, max_episode_steps=EPISODE_STEPS)

