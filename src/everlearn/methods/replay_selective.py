"""Selective replay: at each task's end, keep the transitions the learned policy agrees with.

The idea is OER's (Gai et al., 2023, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning"): in continual offline RL, a small replay memory should hold the
experiences of a finished task that its *learned* policy would meet — not a uniform sample of
its dataset, whose behaviour policy may be far worse — so that rehearsing them keeps what was
learnt. OER finds them with a learned dynamics model: it rolls the learned policy out in the
model and selects the dataset transitions closest to those model trajectories.

This method is a model-free proxy of that selection (so it carries a name of its own, not
OER's). While a task trains, `observe` keeps the latest `candidates` rows it saw (offline: one
fresh dataset row per gradient step, `agents.common.learn_from_dataset`; online: the agent's
own transitions). At the task's end every candidate is scored by how far the learned policy's
action at its state is from the candidate's action — the squared distance for continuous
actions (`view.outputs(...)["action"]`), the negative log-probability of the action under the
policy's logits for discrete ones (`view.policy_logits`) — and the `capacity // num_tasks`
best go into that task's share of the memory (each task gets the same share, as
`replay_balanced`). `transform_batch` replaces a `replay_fraction` of every minibatch with
rows drawn uniformly from the filled memory, as `replay` does, so the kept transitions are
learnt from again through the agent's own loss (and its behaviour-cloning term, for TD3+BC
and IQL).

Deliberate differences from OER:
1. No dynamics model and no model rollouts: candidates are ranked one step at a time by the
   policy's agreement with their action. Training a model per task would cost more than the
   agent here; the one-step agreement keeps OER's intent (store what the learned policy does)
   but not its account of where the policy's states drift.
2. No dual behaviour cloning (OER's DBC, a separate cloning network); replayed rows go through
   the agent's own loss.
3. Candidates are the latest `candidates` rows observed, not the whole dataset.
Off-policy agents only; needs task boundaries (selection happens at a task's end).

Memory per seed: `(capacity + candidates) · (8 · obs_dim + 4 · action size + 5)` bytes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from everlearn.core.replay import ReplayBuffer
from everlearn.core.rows import clear_store, store_rows
from everlearn.methods.base import AgentView, Method, empty_store
from everlearn.methods.replay import TRANSITION_KEYS, replace_head, sample_rows


class SelectiveReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: PositiveInt = 20_000  # memory rows over all tasks (an equal share per task)
    candidates: PositiveInt = 20_000  # latest observed rows ranked at each task's end
    replay_fraction: float = Field(0.5, ge=0.0, le=1.0)


def make_replay_selective(config: SelectiveReplayConfig, view: AgentView) -> Method:
    quota = config.capacity // view.num_tasks
    if quota < 1:
        raise ValueError(f"replay_selective: capacity {config.capacity} is smaller than the "
                         f"number of tasks ({view.num_tasks}); raise replay_selective.capacity")
    continuous = view.policy_logits is None
    keep = min(quota, config.candidates)

    def init(key, params):
        action = view.minibatch_row["action"]
        return {"memory": ReplayBuffer.create(view.num_tasks * quota, view.obs_dim,
                                              action.shape, action.dtype),
                "filled": jnp.zeros((view.num_tasks,), jnp.int32),
                "candidates": empty_store(view, config.candidates, TRANSITION_KEYS)}

    def observe(state, data, task, key):
        return {**state, "candidates": store_rows(state["candidates"], data)}

    def disagreement(params, rows):
        """How far the policy's action at each row's state is from the row's action."""
        if continuous:
            action = view.outputs(params, rows["obs"])["action"]
            return jnp.sum((action - rows["action"]) ** 2, axis=-1)
        log_probs = jax.nn.log_softmax(view.policy_logits(params, rows["obs"]))
        return -jnp.take_along_axis(log_probs, rows["action"][:, None], axis=-1)[:, 0]

    def on_task_end(state, params, task, key):
        pool = state["candidates"]
        filled = jnp.arange(config.candidates) < pool["size"]
        score = jnp.where(filled, disagreement(params, pool["rows"]), jnp.inf)
        _, best = jax.lax.top_k(-score, keep)  # the `keep` rows the policy agrees with most
        segment = jnp.clip(task, 0, view.num_tasks - 1)
        count = jnp.minimum(pool["size"], keep)
        # Rows past `count` point past the memory's end and are dropped.
        rows = jnp.where(jnp.arange(keep) < count, segment * quota + jnp.arange(keep),
                         view.num_tasks * quota)
        memory = state["memory"].replace(**{
            name: getattr(state["memory"], name).at[rows].set(
                pool["rows"][name][best].astype(getattr(state["memory"], name).dtype),
                mode="drop")
            for name in TRANSITION_KEYS})
        filled_counts = state["filled"].at[segment].set(count)
        return {"memory": memory.replace(size=jnp.sum(filled_counts)),
                "filled": filled_counts, "candidates": clear_store(pool)}, params

    def transform_batch(state, minibatch, key):
        replaced = round(config.replay_fraction * minibatch["obs"].shape[0])
        if replaced == 0:
            return minibatch
        rows = sample_rows(key, state["filled"], quota, replaced)
        return replace_head(minibatch, state["memory"], rows)

    return Method("replay_selective", needs_boundaries=True, init=init, observe=observe,
                  on_task_end=on_task_end, transform_batch=transform_batch)
