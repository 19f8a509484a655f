"""Behaviour-cloning replay: distil each finished task's policy into the agent while it learns
the next ones (the behaviour-cloning terms of CLEAR, Rolnick et al., 2019, "Experience Replay
for Continual Learning"; policy distillation, Rusu et al., 2016, "Policy Distillation").

During a task, `observe` keeps a reservoir sample (algorithm R, as in `replay`) of
`states_per_task` of the task's observations, written straight into that task's slot range of
the store (`num_tasks · states_per_task` rows). At the task's end, `on_task_end` records the
end-of-task policy's outputs on those observations as targets, and the task's rows become
distillation data; a task that comes round again starts its range afresh. `extra_loss` then adds,
on a sample of stored rows,
- PPO: `policy_coef · KL(old policy ‖ new policy)` on the actor's softmax, plus
  `value_coef · MSE(value)` on the critic (CLEAR's policy and value cloning);
- DQN: `policy_coef · MSE(Q)` over all actions. A DQN acts by argmax and bootstraps from its own
  Q-values, so keeping the old Q-values themselves (not only their softmax ranking) keeps both
  the old greedy actions and the old tasks' TD targets; and MSE needs no temperature, whose
  right value would depend on each task's reward scale.
- SAC, TD3: `policy_coef · MSE(action)` on the deterministic action (behaviour cloning of the
  actor, as in Continual World's and Wolczyk et al.'s continuous-control baselines).

The sample: `extra_loss` gets no key, so `observe` — called once per agent `update`, with a
key — draws `batch_size` rows uniformly from the filled store rows, and every gradient step of
that update uses them (PPO re-uses its own rollout the same way over its epochs). The whole store
each step would cost `num_tasks · states_per_task` forward passes per DQN gradient step; cycling
through it with a counter would distil one old task at a time. The sample costs one more forward
and backward pass over `batch_size` rows per gradient step (CartPole defaults, 2-core CPU: a DQN
update about 1.6× a plain one, a PPO update about 1.3×).

Every agent; needs task boundaries. Memory per seed:
`num_tasks · states_per_task · 4 · (obs_dim + outputs)` bytes (outputs: PPO actions + 1, DQN
actions, SAC/TD3 action size) — 4 CartPole tasks at 1000 states: 112 kB (PPO).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.methods.base import AgentView, Method
from everlearn.methods.replay import (output_shapes, reservoir_rows,
                                      sample_rows)


class BCReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    states_per_task: PositiveInt = 1000
    batch_size: PositiveInt = 128
    policy_coef: NonNegativeFloat = 1.0
    value_coef: NonNegativeFloat = 0.5


def policy_kl(old_logits: jax.Array, new_logits: jax.Array) -> jax.Array:
    """KL(softmax(old) ‖ softmax(new)) per row."""
    old_log_p = jax.nn.log_softmax(old_logits)
    return jnp.sum(jnp.exp(old_log_p) * (old_log_p - jax.nn.log_softmax(new_logits)), axis=-1)


def make_bc_replay(config: BCReplayConfig, view: AgentView) -> Method:
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
        if "logits" in old:  # PPO: KL on the stochastic policy, MSE on the critic (CLEAR)
            loss = (config.policy_coef * policy_kl(old["logits"], new["logits"]).mean()
                    + config.value_coef * jnp.mean((new["value"] - old["value"]) ** 2))
        else:  # DQN: MSE on all Q-values keeps greedy actions and TD targets (see above);
            # SAC, TD3: MSE on the deterministic action (behaviour cloning)
            loss = config.policy_coef * sum(jnp.mean((new[k] - old[k]) ** 2) for k in old)
        return jnp.where(jnp.sum(state["stored"]) > 0, loss, 0.0)

    return Method("bc_replay", needs_boundaries=True, init=init, observe=observe,
                  on_task_start=on_task_start, on_task_end=on_task_end, extra_loss=extra_loss)
