"""Run a continual scenario on your own Gymnasium env (the Gymnasium path).

Any `gymnasium.Env` can be a task: give the Task an `env_factory`. Here the "user's env" is
Gymnasium's CartPole with a heavier cart, and the second task inverts its actions.

    .venv/bin/python examples/own_gymnasium_env.py
"""

from pathlib import Path

import gymnasium as gym

from everlearn.runs.config import build_config
from everlearn.runs.run import start_run
from everlearn.scenarios import Scenario, Task, register_scenario


def heavy_cart_env() -> gym.Env:
    env = gym.make("CartPole-v1")
    env.unwrapped.masscart = 2.0
    env.unwrapped.total_mass = env.unwrapped.masscart + env.unwrapped.masspole
    return env


@register_scenario("my-heavy-cartpole")
def my_scenario() -> Scenario:
    return Scenario(
        name="my-heavy-cartpole",
        description="a user's own env, then the same env with inverted actions",
        tasks=(
            Task("heavy", "CartPole-v1", random_score=22.0, reference_score=500.0,
                 env_factory=heavy_cart_env),
            Task("heavy-inverted", "CartPole-v1", random_score=22.0, reference_score=500.0,
                 env_factory=heavy_cart_env, action_map=(1, 0)),
        ),
        steps_per_task=30_000,
    )


if __name__ == "__main__":
    config = build_config(overrides={"scenario": "my-heavy-cartpole", "backend": "gymnasium",
                                     "seeds": "0"}, sets=["evals_per_task=3"])
    run_dir = start_run(config, Path("runs") / "example-own-env")
    print(f"open {run_dir / 'report.html'}")
