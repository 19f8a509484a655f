"""`jsrl`: Jump-Start RL (Uchendu et al., 2023, "Jump-Start Reinforcement Learning", ICML).

A guide policy takes the first `h` steps of every training episode and the agent (the
exploration policy) takes the rest; a curriculum shrinks `h` from the guide's horizon to 0 as
the episodes' returns hold up. The agent learns off-policy from every step, the guide's
included, so it first learns to finish episodes from states the guide reaches, then from ever
earlier ones.

What everlearn does (JSRL-Curriculum with the time-step horizon):
- **The guide** is a frozen copy of the agent's policy as it was when the current task began
  (`on_task_start`): in an offline-to-online scenario (`pendulum-offline-to-online`), the policy
  learnt from the dataset. On a run's first task there is no guide and the agent acts alone.
  The guide acts greedily (SAC, TD3 and the offline agents: the deterministic action; DQN: the
  greedy action among the task's actions).
- **The exploration policy** is the agent itself, carrying on from its params at the task's
  start (the paper's §4.1 also considers this case, an exploration policy initialised as the
  guide).
- **The curriculum:** `stages` horizons, evenly spaced from `horizon` down to 0
  (`h_k = round(horizon · (1 − k / (stages − 1)))`). The rolling mean of the last `window`
  episode returns is compared with the best such mean at the last advance: once `window`
  episodes have ended, and whenever the rolling mean is at least `best − tolerance · |best|`,
  the stage advances (and `best` becomes that mean); at stage `stages − 1` (h = 0) the agent
  acts alone. A new task starts the curriculum again, with the policy at that moment as its
  guide. `horizon` left unset is the task's episode length (the run fills it in).
- Defaults: 10 stages, tolerance 0.05 and a window of 5, the defaults of the public
  implementations of JSRL-Curriculum with IQL (a CORL-based one; the WSRL authors' JSRL agent
  also uses 10 stages).

Deliberate differences from the paper and those implementations:
- The curriculum reads the returns of the training episodes (the guide for `h` steps, then
  the agent with its exploration noise), not of separate evaluation episodes of the combined
  policy: a method sees no evaluation, and training episodes cost nothing extra. With
  exploration noise the returns are noisier, so advances come somewhat later.
- `best − tolerance · |best|` instead of `best − tolerance · best`: the same for positive
  returns, and still a margin below `best` for negative ones (Pendulum's).
- The guide acts greedily; the WSRL authors' JSRL agent samples the guide's action
  distribution.
- Evaluation (the run's metrics) scores the agent's own greedy policy, never the guide's.

Where the state lives: the method state holds the guide's params, the stage, the window and
`best`, so checkpoints carry them and a resumed run continues the curriculum where it was.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from everlearn.core.errors import ConfigError
from everlearn.methods.base import AgentView, Method


class JSRLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The guide's horizon at the curriculum's first stage, in env steps; None: the task's
    # episode length (set by the run from the scenario).
    horizon: PositiveInt | None = None
    stages: int = Field(10, ge=2)  # horizons from `horizon` down to 0, evenly spaced
    tolerance: float = Field(0.05, ge=0.0)  # advance at a rolling mean ≥ best − tol·|best|
    window: PositiveInt = 5  # episodes in the rolling mean


def with_horizon(config: JSRLConfig, episode_limits: list[int | None]) -> JSRLConfig:
    """The first horizon, where unset: the longest episode of the scenario's tasks
    (`episode_limits`, each task's episode length; None where its env has none)."""
    if config.horizon is not None:
        return config
    if None in episode_limits:
        raise ConfigError("jsrl.horizon: a task's env has no episode length to take it from; "
                          "set it with --set jsrl.horizon=STEPS")
    return config.model_copy(update={"horizon": max(episode_limits)})


def horizons(config: JSRLConfig) -> jax.Array:
    """The guide's horizon at each stage: int32[stages], from `horizon` down to 0."""
    if config.horizon is None:
        raise ValueError("jsrl.horizon is unset: a run sets it to the task's episode length; "
                         "set it with --set jsrl.horizon=STEPS")
    fractions = 1.0 - jnp.arange(config.stages) / (config.stages - 1)
    return jnp.round(config.horizon * fractions).astype(jnp.int32)


def make_jsrl(config: JSRLConfig, view: AgentView) -> Method:
    stage_horizons = horizons(config)
    last_stage = config.stages - 1

    def guide_policy(params, obs):
        if view.policy_logits is not None:  # discrete actions: the greedy one (masked logits)
            return jnp.argmax(view.policy_logits(params, obs), axis=-1)
        return view.outputs(params, obs)["action"]

    def init(key, params) -> dict[str, Any]:
        return {"guide": params, "guiding": jnp.zeros((), bool),
                "stage": jnp.zeros((), jnp.int32), **fresh_curriculum()}

    def fresh_curriculum() -> dict[str, jax.Array]:
        return {"returns": jnp.zeros(config.window), "ended": jnp.zeros((), jnp.int32),
                "best": jnp.full((), -jnp.inf)}

    def on_task_start(state, params, task, key):
        return {**state, "guide": params, "guiding": jnp.ones((), bool),
                "stage": jnp.zeros((), jnp.int32), **fresh_curriculum()}, params

    def guide_action(state, obs, action, episode_step):
        horizon = stage_horizons[state["stage"]]
        guided = state["guiding"] & (episode_step < horizon)
        guide = guide_policy(state["guide"], obs).astype(action.dtype)
        return jnp.where(guided.reshape(-1, *[1] * (action.ndim - 1)), guide, action)

    def observe(state, data, task, key):
        if "episode_end" not in data:  # learning from a dataset: no episodes
            return state

        def one_row(curriculum, row):
            ended, episode_return = row
            returns, count, best, stage = curriculum
            returns = jnp.where(ended, jnp.roll(returns, 1).at[0].set(episode_return), returns)
            count = count + ended
            mean = returns.mean()
            advance = (ended & (count >= config.window) & (stage < last_stage)
                       & (mean >= best - config.tolerance * jnp.abs(best)))
            return (returns, count, jnp.where(advance, mean, best),
                    stage + advance), None

        curriculum = (state["returns"], state["ended"], state["best"], state["stage"])
        (returns, count, best, stage), _ = jax.lax.scan(
            one_row, curriculum, (data["episode_end"], data["episode_return"]))
        count = jnp.minimum(count, config.window)  # only "is the window full" is read
        guiding = state["guiding"]
        return {**state, "returns": jnp.where(guiding, returns, state["returns"]),
                "ended": jnp.where(guiding, count, state["ended"]),
                "best": jnp.where(guiding, best, state["best"]),
                "stage": jnp.where(guiding, stage, state["stage"])}

    return Method("jsrl", needs_boundaries=True, init=init, on_task_start=on_task_start,
                  observe=observe, guide_action=guide_action)
