"""PPO with a clipped surrogate objective, for discrete actions (Schulman et al., 2017).

One rollout of `num_steps` steps from each of `num_envs` envs, generalised advantage estimates
that bootstrap through time-limit truncation, then `num_epochs` passes of minibatch updates —
all inside one `update` call that compiles to a single program (`lax.scan` over epochs and
minibatches). Two named networks: `params["actor"]` (logits) and `params["critic"]` (value).
Continual-learning methods (`everlearn.methods`) hook into `update` at the points marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct
from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, model_validator

from everlearn.agents.common import MLP, Agent, EnvSpec, torso_options
from everlearn.core.ranges import (
    Count,
    Discount,
    Fraction,
    HiddenSizes,
    LearningRate,
    NonNegative,
    Positive,
)
from everlearn.core.replay import Transition
from everlearn.methods.base import AgentView, Hooks, Method


def minibatch_row(obs_dim: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One row of PPO's minibatch format, as `update` builds it and methods `observe` it."""
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    return {"obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32),
            "action": jax.ShapeDtypeStruct((), jnp.int32),
            "log_prob": scalar, "advantage": scalar, "return": scalar}


class PPOConfig(BaseModel):
    """Defaults follow rl-baselines3-zoo's tuned CartPole settings (a constant learning rate:
    a continual agent has no end of training to anneal towards)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: Count = 8
    num_steps: Count = 32
    num_epochs: Count = 20
    num_minibatches: Count = 1
    learning_rate: LearningRate = 1e-3
    gamma: Discount = 0.98
    gae_lambda: Fraction = 0.8
    clip_eps: Positive = 0.2
    ent_coef: NonNegative = 0.0
    vf_coef: NonNegative = 0.5
    max_grad_norm: Positive = 0.5
    normalize_advantages: bool = True
    hidden_sizes: HiddenSizes = (64, 64)
    activation: Literal["tanh", "relu", "elephant"] = "tanh"
    layer_norm: bool = False  # LayerNorm before each hidden activation
    elephant_a: PositiveFloat = 1.0  # width of the elephant activation
    elephant_d: PositiveInt = 4  # slope (power) of the elephant activation
    cnn: Literal["auto", "nature", "minatar"] = "auto"  # torso for image observations

    @model_validator(mode="after")
    def _whole_minibatches(self):
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(f"ppo.num_minibatches {self.num_minibatches} does not divide "
                             f"ppo.num_envs × ppo.num_steps = {batch}; choose a divisor of {batch}")
        return self


@struct.dataclass
class PPOState:
    params: dict  # {"actor": ..., "critic": ...}
    opt_state: optax.OptState
    num_updates: jax.Array
    methods: dict[str, Any]  # the continual-learning methods' state (`Hooks`)


def make_ppo(config: PPOConfig, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    network_options = dict(heads=spec.heads, layer_norm=config.layer_norm,
                           elephant_a=config.elephant_a, elephant_d=config.elephant_d,
                           **torso_options(spec, config.cnn))
    actor = MLP(config.hidden_sizes, spec.num_actions, config.activation, out_scale=0.01,
                mask_output=True, **network_options)
    critic = MLP(config.hidden_sizes, 1, config.activation, out_scale=1.0, **network_options)
    batch_size = config.num_envs * config.num_steps
    minibatch_size = batch_size // config.num_minibatches

    def outputs(params: dict, obs: jax.Array) -> dict[str, jax.Array]:
        return {"logits": actor.apply(params["actor"], obs),
                "value": critic.apply(params["critic"], obs)[:, 0]}

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        return loss_fn(params, mb)[0]

    view = AgentView("ppo", off_policy=False, outputs=outputs, policy_network="actor",
                     policy_logits=lambda params, obs: actor.apply(params["actor"], obs),
                     loss=plain_loss, networks=("actor", "critic"), num_tasks=spec.num_tasks,
                     heads=spec.heads, obs_dim=spec.obs_dim,
                     minibatch_row=minibatch_row(spec.obs_dim),
                     activations=lambda params, obs: {
                         "actor": actor.apply(params["actor"], obs, return_hidden=True)[1],
                         "critic": critic.apply(params["critic"], obs, return_hidden=True)[1]},
                     env_steps_per_update=batch_size,
                     gradient_steps_per_update=config.num_epochs * config.num_minibatches)
    hooks = Hooks(view, [build(view) for build in methods])
    optimiser = hooks.optimiser(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )

    def init(key: jax.Array) -> PPOState:
        k_actor, k_critic = jax.random.split(key)
        k_methods = jax.random.fold_in(key, 1)  # keeps the no-method key stream unchanged
        dummy = jnp.zeros((1, spec.obs_dim), jnp.float32)
        params = {"actor": actor.init(k_actor, dummy), "critic": critic.init(k_critic, dummy)}
        return PPOState(params, optimiser.init(params), jnp.zeros((), jnp.int32),
                        hooks.init(k_methods, params))

    def act(state: PPOState, obs: jax.Array, key: jax.Array):
        logits = actor.apply(state.params["actor"], obs)
        action = jax.random.categorical(key, logits)
        log_prob = jax.nn.log_softmax(logits)[jnp.arange(action.shape[0]), action]
        value = critic.apply(state.params["critic"], obs)[:, 0]
        return action, {"log_prob": log_prob, "value": value}

    def greedy_action(state: PPOState, obs: jax.Array) -> jax.Array:
        return jnp.argmax(actor.apply(state.params["actor"], obs), axis=-1)

    def advantages(params: dict, batch: Transition) -> tuple[jax.Array, jax.Array]:
        next_value = critic.apply(params["critic"], batch.next_obs)[..., 0]
        # Bootstrap unless the episode truly terminated; a truncated episode still has a value.
        deltas = (batch.reward + config.gamma * next_value * (1.0 - batch.terminated)
                  - batch.extras["value"])
        episode_ends = jnp.logical_or(batch.terminated, batch.truncated)

        def backwards(gae, inputs):
            delta, ended = inputs
            gae = delta + config.gamma * config.gae_lambda * (1.0 - ended) * gae
            return gae, gae

        _, adv = jax.lax.scan(
            backwards, jnp.zeros_like(deltas[0]), (deltas, episode_ends), reverse=True
        )
        return adv, adv + batch.extras["value"]

    def loss_fn(params: dict, mb: dict) -> tuple[jax.Array, dict]:
        logits = actor.apply(params["actor"], mb["obs"])
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, mb["action"][:, None], axis=-1)[:, 0]
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1).mean()
        adv = mb["advantage"]
        if config.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = jnp.exp(log_prob - mb["log_prob"])
        clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
        policy_loss = -jnp.minimum(ratio * adv, clipped * adv).mean()
        value = critic.apply(params["critic"], mb["obs"])[:, 0]
        value_loss = 0.5 * jnp.mean((value - mb["return"]) ** 2)
        loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}

    def total_loss(params: dict, mb: dict, method_state: dict) -> tuple[jax.Array, dict]:
        loss, info = loss_fn(params, mb)
        if hooks:  # hook: extra_loss (EWC, L2-init, distillation, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def update(state: PPOState, batch: Transition, key: jax.Array):
        k_observe, k_after = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
        adv, returns = advantages(state.params, batch)
        flat = {
            "obs": batch.obs, "action": batch.action, "log_prob": batch.extras["log_prob"],
            "advantage": adv, "return": returns,
        }
        flat = jax.tree.map(lambda x: x.reshape(batch_size, *x.shape[2:]), flat)
        # hook: observe (with the params that collected the rollout: the acting policy's outputs)
        method_state = hooks.observe(state.methods, flat, state.params, k_observe)

        def minibatch_step(carry, inputs):
            params, opt_state = carry
            mb, mb_key = inputs
            mb = hooks.transform_batch(method_state, mb, mb_key)  # hook: transform_batch
            grads, info = jax.grad(total_loss, has_aux=True)(params, mb, method_state)
            # hook: the methods' Optax links read their state and the agent's own gradient
            updates, opt_state = optimiser.update(
                grads, opt_state, params, method_states=method_state,
                loss_grad=lambda other: jax.grad(plain_loss)(params, other))
            return (optax.apply_updates(params, updates), opt_state), info

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)
            minibatches = jax.tree.map(
                lambda x: x[order].reshape(config.num_minibatches, minibatch_size, *x.shape[1:]),
                flat,
            )
            mb_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), config.num_minibatches)
            return jax.lax.scan(minibatch_step, carry, (minibatches, mb_keys))

        (params, opt_state), info = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(key, config.num_epochs)
        )
        # hook: after_update (weight surgery; may reset optimiser moments)
        method_state, params, opt_state = hooks.after_update(method_state, params, opt_state,
                                                             k_after)
        new_state = PPOState(params, opt_state, state.num_updates + 1, method_state)
        return new_state, jax.tree.map(jnp.mean, info)

    return Agent("ppo", config.num_envs, config.num_steps, init, act, greedy_action, update,
                 hooks.agent_task_boundary, view,
                 hooks.agent_for_task)
