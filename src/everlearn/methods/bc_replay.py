"""Behaviour-cloning replay: keep a sample of past states with the outputs of the policy that
acted on them, and clone those outputs while learning (the behaviour-cloning terms of CLEAR,
Rolnick et al., 2019, "Experience Replay for Continual Learning").

- `bc_replay` (CLEAR's cloning). `observe` keeps a reservoir sample (algorithm R, as in
  `replay`; CLEAR's "randomly discarding data" for a bounded buffer) of `capacity` of all the
  observations seen, each with the acting policy's outputs on it at collection time
  (`data["behaviour"]`, see `base.py`: PPO's logits and value, DQN's Q-values, SAC's and TD3's
  deterministic action). For every gradient step, `transform_batch` draws a fresh uniform
  sample of `batch_size` stored rows (it is the hook called per gradient step with a key) and
  puts it in the minibatch under "bc_replay"; `extra_loss` reads it and adds
  - PPO: `policy_coef · KL(μ ‖ π_θ)` on the actor's softmax (μ: the stored behaviour logits)
    plus `value_coef · (V_θ − V_stored)²` on the critic — CLEAR's policy- and value-cloning;
  - DQN: `policy_coef · MSE(Q)` over all actions: a DQN acts by argmax and bootstraps from its
    own Q-values, so keeping the old Q-values themselves (not only their softmax ranking) keeps
    both the old greedy actions and the old TD targets, and MSE needs no temperature, whose right
    value would depend on each task's reward scale;
  - SAC, TD3: `policy_coef · MSE(action)` on the deterministic action (behaviour cloning of the
    actor, as in Continual World's and Wolczyk et al.'s continuous-control baselines).
  Every agent; needs no task boundaries (CLEAR does not). The sample costs one more forward and
  backward pass over `batch_size` rows per gradient step.

  Deliberate differences from CLEAR:
  1. No off-policy RL on replay: CLEAR trains IMPALA, and its replayed trajectories (50% of each
     batch) also enter the V-trace policy-gradient and value losses. Here replayed rows enter the
     cloning terms only, and the agent's own loss sees only its new data: PPO's clipped
     objective has no correction for data from old policies (V-trace would be a different
     agent), and for DQN, SAC and TD3 replay into the TD loss is the `replay` method, which
     composes with this one. So only single states are stored, not trajectories with actions
     and rewards.
  2. Loss weights `policy_coef` 1.0 and `value_coef` 0.5, not CLEAR's (0.01 and 0.005 next to
     IMPALA's summed losses): with no V-trace on replay, the cloning terms alone hold the old
     tasks, against PPO's mean losses with normalised advantages.
  3. Replayed rows per step are `batch_size` (128), not CLEAR's 50-50 split of each batch (for
     PPO's defaults that would be 256 rows; `--set bc_replay.batch_size=256` gives it).
  4. A bounded buffer (`capacity` states) from the start; CLEAR's main runs keep every
     transition and it shows a bounded reservoir doing almost as well.
  5. DQN's cloning is an MSE on Q-values and SAC/TD3's on the deterministic action (CLEAR is an
     actor-critic with a softmax policy only; see above). SAC clones its tanh-squashed mean, not
     the mean and standard deviation of its Gaussian.
  The stored outputs are those of the params the agent's `update` starts with, which are the
  params that acted on its data (params change only in `update` and at task boundaries, which
  fall between updates); for PPO they equal the logits and value computed when acting.

- `bc_replay_end_of_task` (the previous variant, kept under its own name because with
  `multi_head` it measured better on `cartpole-contexts`, where cloning the current task's own
  earlier behaviour slows `bc_replay` on each new task: docs/methods.md). During a task,
  `observe` keeps a reservoir sample of `states_per_task` of that task's observations in the
  task's slot range; at the task's end,
  `on_task_end` records the END-OF-TASK policy's outputs on them as targets (policy
  distillation, Rusu et al., 2016, "Policy Distillation", rather than CLEAR's behaviour
  policy), and only finished tasks are cloned. `observe` (called once per `update`, with a
  key) draws one sample of `batch_size` finished rows, and every gradient step of that update
  uses it. Same losses as above. Needs task boundaries.

Memory per seed: `capacity · 4 · (obs_dim + outputs)` bytes (outputs: PPO actions + 1, DQN
actions, SAC/TD3 action size) — CartPole at the default 4000 states: 112 kB (PPO);
`bc_replay_end_of_task` the same with `num_tasks · states_per_task` rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.methods.base import AgentView, Method
from everlearn.methods.replay import (
    output_shapes,
    reservoir_positions,
    reservoir_rows,
    sample_rows,
)


class BCReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The previous variant's memory on a four-task scenario (1000 states per task).
    capacity: PositiveInt = 4000
    batch_size: PositiveInt = 128  # stored rows cloned per gradient step, drawn fresh each step
    policy_coef: NonNegativeFloat = 1.0
    value_coef: NonNegativeFloat = 0.5


def policy_kl(old_logits: jax.Array, new_logits: jax.Array) -> jax.Array:
    """KL(softmax(old) ‖ softmax(new)) per row."""
    old_log_p = jax.nn.log_softmax(old_logits)
    return jnp.sum(jnp.exp(old_log_p) * (old_log_p - jax.nn.log_softmax(new_logits)), axis=-1)


def cloning_loss(config, old: dict[str, jax.Array], new: dict[str, jax.Array]) -> jax.Array:
    """The cloning terms between stored outputs `old` and current outputs `new` (named as
    `view.outputs` names them), averaged over rows."""
    if "logits" in old:  # PPO: KL on the stochastic policy, squared error on the critic (CLEAR)
        return (config.policy_coef * policy_kl(old["logits"], new["logits"]).mean()
                + config.value_coef * jnp.mean((new["value"] - old["value"]) ** 2))
    # DQN: MSE on all Q-values keeps greedy actions and TD targets (module docstring);
    # SAC, TD3: MSE on the deterministic action (behaviour cloning)
    return config.policy_coef * sum(jnp.mean((new[k] - old[k]) ** 2) for k in old)


def make_bc_replay(config: BCReplayConfig, view: AgentView) -> Method:
    capacity = config.capacity

    def init(key, params):
        outputs = output_shapes(view, params, view.obs_dim)
        return {"obs": jnp.zeros((capacity, view.obs_dim), jnp.float32),
                "behaviour": {k: jnp.zeros((capacity, *v.shape[1:]), v.dtype)
                              for k, v in outputs.items()},
                "seen": jnp.zeros((), jnp.int32)}  # observations seen so far

    def observe(state, data, task, key):
        slots = reservoir_positions(key, state["seen"], capacity, data["obs"].shape[0])

        def write(column, rows):  # a slot of `capacity` means "not kept": dropped
            return column.at[slots].set(rows.astype(column.dtype), mode="drop")

        return {"obs": write(state["obs"], data["obs"]),
                "behaviour": {k: write(v, data["behaviour"][k])
                              for k, v in state["behaviour"].items()},
                "seen": state["seen"] + data["obs"].shape[0]}

    def transform_batch(state, minibatch, key):
        # A fresh sample for this gradient step, for `extra_loss` (which gets no key).
        filled = jnp.minimum(state["seen"], capacity)
        rows = jax.random.randint(key, (config.batch_size,), 0, jnp.maximum(filled, 1))
        return {**minibatch, "bc_replay": {
            "obs": state["obs"][rows],
            "behaviour": {k: v[rows] for k, v in state["behaviour"].items()}}}

    def extra_loss(state, params, minibatch):
        sample = minibatch["bc_replay"]
        loss = cloning_loss(config, sample["behaviour"], view.outputs(params, sample["obs"]))
        return jnp.where(state["seen"] > 0, loss, 0.0)

    return Method("bc_replay", init=init, observe=observe, transform_batch=transform_batch,
                  extra_loss=extra_loss)


# -- the previous variant: clone the end-of-task policy ------------------------------------

class BCReplayEndOfTaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    states_per_task: PositiveInt = 1000
    batch_size: PositiveInt = 128
    policy_coef: NonNegativeFloat = 1.0
    value_coef: NonNegativeFloat = 0.5


def make_bc_replay_end_of_task(config: BCReplayEndOfTaskConfig, view: AgentView) -> Method:
    per_task = config.states_per_task
    rows_total = view.num_tasks * per_task

    def init(key, params):
        obs_dim = view.obs_dim
        outputs = output_shapes(view, params, obs_dim)
        return {
            "obs": jnp.zeros((rows_total, obs_dim), jnp.float32),
            "targets": {k: jnp.zeros((rows_total, *v.shape[1:]), v.dtype)
                        for k, v in outputs.items()},
            "seen": jnp.zeros((view.num_tasks,), jnp.int32),  # observations seen per task
            "stored": jnp.zeros((view.num_tasks,), jnp.int32),  # rows with targets per task
            "rows": jnp.zeros((config.batch_size,), jnp.int32),  # this update's sample
        }

    def observe(state, data, task, key):
        k_write, k_sample = jax.random.split(key)
        task = jnp.clip(task, 0, view.num_tasks - 1)
        rows, seen = reservoir_rows(k_write, state["seen"], task, per_task, data["obs"].shape[0])
        # This update's distillation sample, drawn here because `extra_loss` gets no key.
        sample = sample_rows(k_sample, state["stored"], per_task, config.batch_size)
        return {**state, "obs": state["obs"].at[rows].set(data["obs"], mode="drop"),
                "seen": seen, "rows": sample}

    def on_task_start(state, params, task, key):
        task = jnp.clip(task, 0, view.num_tasks - 1)
        # A task seen before refills its range: its old targets no longer match those rows.
        return {**state, "seen": state["seen"].at[task].set(0),
                "stored": state["stored"].at[task].set(0)}, params

    def on_task_end(state, params, task, key):
        task = jnp.clip(task, 0, view.num_tasks - 1)
        start = task * per_task
        obs = jax.lax.dynamic_slice_in_dim(state["obs"], start, per_task)
        outputs = view.outputs(params, obs)
        targets = {k: jax.lax.dynamic_update_slice_in_dim(v, outputs[k].astype(v.dtype), start, 0)
                   for k, v in state["targets"].items()}
        stored = state["stored"].at[task].set(jnp.minimum(state["seen"][task], per_task))
        return {**state, "targets": targets, "stored": stored}, params

    def extra_loss(state, params, minibatch):
        rows = state["rows"]
        old = {k: v[rows] for k, v in state["targets"].items()}
        new = view.outputs(params, state["obs"][rows])
        loss = cloning_loss(config, old, new)
        return jnp.where(jnp.sum(state["stored"]) > 0, loss, 0.0)

    return Method("bc_replay_end_of_task", needs_boundaries=True, init=init, observe=observe,
                  on_task_start=on_task_start, on_task_end=on_task_end, extra_loss=extra_loss)
