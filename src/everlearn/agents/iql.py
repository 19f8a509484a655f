"""IQL: implicit Q-learning (Kostrikov, Nair & Levine, 2022, "Offline Reinforcement Learning with
Implicit Q-Learning"), for continuous actions in [-1, 1].

Networks: twin Q critics (`params["q1"]`, `params["q2"]`) with Polyak-averaged targets, a state
value `params["value"]`, and a Gaussian actor: a mean network (`params["actor"]`, tanh
output) and a state-independent log-std vector (`params["actor_std"]`). IQL never evaluates an
action the data does not hold:

    V:  L_V = mean |τ − 1(u < 0)| u²,   u = min(Q1', Q2')(s, a) − V(s)      (expectile τ)
    Q:  L_Q = mean (Qi(s, a) − r − γ (1 − done) V(s'))²,  i = 1, 2
    π:  L_π = −mean min(exp(β (min(Q1', Q2')(s, a) − V(s))), 100) · log π(a | s)

with Q' the target critics, V held fixed in the other two losses. The policy is advantage-
weighted regression onto the data's actions: rows whose action beats V by more count
exponentially more. It acts (online) by sampling N(tanh(mean), std) clipped to [-1, 1], and
evaluates with tanh(mean).

Defaults and their sources (ikostrikov/implicit_q_learning, commit 7bd6d76): expectile 0.7,
temperature β = 3.0, no dropout, lr 3e-4 for actor, critics and value, [256, 256], γ 0.99,
τ 0.005 (`configs/mujoco_config.py`); the actor's learning rate follows a cosine decay to 0
over the run's gradient steps (`learner.py`, `opt_decay_schedule="cosine"`,
`cosine_decay_schedule(-actor_lr, max_steps)`, max_steps 1e6 in `train_offline.py`); log-std a
free parameter initialised at 0 and clipped to [-5, 2], tanh on the mean, no tanh on the
distribution (`learner.py` `NormalTanhPolicy(..., log_std_min=-5.0, state_dependent_std=False,
tanh_squash_distribution=False)`, `policy.py`); exp-advantage clipped at 100 (`actor.py`);
the expectile loss (`critic.py` `loss`), the value regressing onto the target critics' min
(`critic.py` `update_v`), the critics onto r + γ V(s') (`update_q`); orthogonal √2
initialisation of every layer (`common.py` `default_init`; everlearn's `MLP` uses √2 for
hidden layers too and 1.0 for output layers). Batch 256 (`train_offline.py`).

The schedule: `actor_lr_schedule="cosine"` decays the actor's (and its log-std's) learning rate
from `actor_learning_rate` to 0 over `actor_lr_decay_steps` optimiser steps (1e6, the authors'
offline run length), counted from the agent's first gradient step over every task, offline
and online; after that the actor no longer learns. For continual or offline-to-online runs use
`"constant"` (the authors' fine-tuning config, `configs/antmaze_finetune_config.py`, turns the
decay off), or set the decay steps to the run's total gradient steps.

Deliberate differences from the authors' code:
- One loss and one optimiser step over all networks per gradient step: the actor's weights and
  the critics' targets use V before this step's update (the authors update V first and use the
  new V in the actor's and critics' losses, one gradient step later than here; d3rlpy, too,
  uses the same V for both).
- Reward preprocessing is the dataset's, not the agent's: the authors scale locomotion rewards
  by 1000 / (max − min episode return of the dataset) and shift AntMaze rewards by −1
  (`train_offline.py`). A dataset here has no episode boundaries, so the agent takes the
  numbers instead: `reward_scale` and `reward_shift` (r ← scale · r + shift in the critics'
  target); compute the scale from the dataset's episodes to reproduce the paper.
- Dropout (the authors' kitchen and adroit configs, 0.1) is not implemented.
- Online (`update`, offline-to-online): no random warm-up by default (`random_steps` = 0);
  gradient steps start once the agent's own buffer holds `learning_starts` rows (the authors'
  fine-tuning script starts its online buffer from the offline data; here the data is learnt
  through `learn`, and a `replay` method can keep it).

d3rlpy's `IQLConfig` differs: a constant actor learning rate (no cosine decay unless a
scheduler is given); the critics and value share one Adam; the same expectile 0.7, β 3.0,
max weight 100, log-std parameter clipped to [-5, 2].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveFloat, PositiveInt

from everlearn.agents.common import (
    MLP,
    Agent,
    EnvSpec,
    boundary_setting,
    gradient_steps_per_update,
    learn_from_dataset,
    polyak,
    random_actions,
    restarting_boundary,
    store_and_learn,
    twin_q,
)
from everlearn.core.ranges import (
    Discount,
    Fraction,
    HiddenSizes,
    NonNegative,
    PolyakStep,
)
from everlearn.core.replay import ReplayBuffer, Transition, replay_row
from everlearn.methods.base import AgentView, Hooks, Method

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the authors' clip of the actor's log-std


class IQLConfig(BaseModel):
    """Defaults are the authors' MuJoCo settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: PositiveInt = 1
    train_every: PositiveInt = 1
    utd_ratio: PositiveFloat = 1.0  # gradient steps per env step; per `learn` call as TD3+BC
    buffer_size: PositiveInt = 1_000_000  # the agent's own buffer (online data only)
    batch_size: PositiveInt = 256
    learning_starts: NonNegativeInt = 1_000
    random_steps: NonNegativeInt = 0
    explore_each_task: bool | None = boundary_setting(None)
    actor_learning_rate: PositiveFloat = 3e-4
    critic_learning_rate: PositiveFloat = 3e-4
    value_learning_rate: PositiveFloat = 3e-4
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"
    actor_lr_decay_steps: PositiveInt = 1_000_000  # optimiser steps of the cosine decay
    gamma: Discount = 0.99
    tau: PolyakStep = 0.005
    expectile: Fraction = 0.7  # τ of the value's expectile regression
    temperature: NonNegative = 3.0  # β, the inverse temperature of the advantage weights
    max_weight: PositiveFloat = 100.0  # clip of exp(β · advantage)
    reward_scale: float = 1.0  # r <- reward_scale * r + reward_shift in the critics' target
    reward_shift: float = 0.0
    hidden_sizes: HiddenSizes = (256, 256)
    activation: Literal["tanh", "relu", "elephant"] = "relu"
    layer_norm: bool = False
    elephant_a: PositiveFloat = 1.0
    elephant_d: PositiveInt = 4


@struct.dataclass
class IQLState:
    params: dict  # {"actor", "actor_std", "q1", "q2", "value"}
    target_params: dict  # {"q1", "q2"}
    opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array
    gradient_steps: jax.Array
    methods: dict[str, Any]


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """|τ − 1(diff < 0)| · diff², per row (diff = target − prediction)."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def advantage_weights(advantage: jax.Array, temperature: float, max_weight: float) -> jax.Array:
    """min(exp(β · advantage), max_weight), held fixed."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * advantage), max_weight))


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)²), summed over action dimensions."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def make_iql(config: IQLConfig, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    if not spec.continuous:
        raise ValueError("iql needs continuous actions; use cql_dqn or dqn for discrete ones")
    action_dim = spec.num_actions
    gradient_steps = gradient_steps_per_update("iql", config)
    network_options = dict(activation=config.activation, heads=spec.heads,
                           layer_norm=config.layer_norm, elephant_a=config.elephant_a,
                           elephant_d=config.elephant_d)
    actor = MLP(config.hidden_sizes, action_dim, **network_options)
    q_net = MLP(config.hidden_sizes, 1, **network_options)
    value_net = MLP(config.hidden_sizes, 1, **network_options)

    def gaussian(params: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = jnp.tanh(actor.apply(params["actor"], obs))
        log_std = jnp.clip(params["actor_std"]["params"]["gaussian"]["log_std"],
                           LOG_STD_MIN, LOG_STD_MAX)
        return mean, jnp.broadcast_to(log_std, mean.shape)

    def value(params: dict, obs: jax.Array) -> jax.Array:
        return value_net.apply(params["value"], obs)[..., 0]

    def losses(params: dict, target_params: dict, mb: dict):
        obs, action = mb["obs"], mb["action"]
        q_target = jax.lax.stop_gradient(jnp.minimum(*twin_q(q_net, target_params, obs, action)))
        v = value(params, obs)
        value_loss = jnp.mean(expectile_loss(q_target - v, config.expectile))
        next_v = value(jax.lax.stop_gradient(params), mb["next_obs"])
        reward = config.reward_scale * mb["reward"] + config.reward_shift
        target = jax.lax.stop_gradient(reward + config.gamma * (1.0 - mb["terminated"]) * next_v)
        q1, q2 = twin_q(q_net, params, obs, action)
        critic_loss = jnp.mean((q1 - target) ** 2 + (q2 - target) ** 2)
        advantage = q_target - jax.lax.stop_gradient(v)
        weights = advantage_weights(advantage, config.temperature, config.max_weight)
        actor_loss = -jnp.mean(weights * gaussian_log_prob(*gaussian(params, obs), action))
        info = {"critic_loss": critic_loss, "value_loss": value_loss, "actor_loss": actor_loss,
                "q_mean": q1.mean(), "v_mean": v.mean(), "advantage": advantage.mean(),
                "weight_max": weights.max()}
        return critic_loss + value_loss + actor_loss, info

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # The agent's own loss for methods: the target critics are the params held fixed.
        return losses(params, jax.lax.stop_gradient(params), mb)[0]

    def greedy(params: dict, obs: jax.Array) -> jax.Array:
        return gaussian(params, obs)[0]

    def policy_entropy(params: dict, obs: jax.Array) -> jax.Array:
        log_std = gaussian(params, obs)[1]
        return (log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1).mean()

    def activations(params: dict, obs: jax.Array) -> dict[str, list[jax.Array]]:
        critic_input = jnp.concatenate([greedy(params, obs), obs], axis=-1)
        return {"actor": actor.apply(params["actor"], obs, return_hidden=True)[1],
                **{name: q_net.apply(params[name], critic_input, return_hidden=True)[1]
                   for name in ("q1", "q2")},
                "value": value_net.apply(params["value"], obs, return_hidden=True)[1]}

    view = AgentView(
        "iql", off_policy=True,
        outputs=lambda params, obs: {"action": greedy(params, obs)},
        policy_logits=None, loss=plain_loss, networks=("actor", "q1", "q2", "value"),
        num_tasks=spec.num_tasks, heads=spec.heads, obs_dim=spec.obs_dim,
        minibatch_row=replay_row(spec.obs_dim, (action_dim,), jnp.float32),
        env_steps_per_update=config.train_every * config.num_envs,
        gradient_steps_per_update=gradient_steps, activations=activations,
        policy_entropy=policy_entropy)
    hooks = Hooks(view, [build(view) for build in methods])
    actor_lr = (optax.cosine_decay_schedule(config.actor_learning_rate,
                                            config.actor_lr_decay_steps)
                if config.actor_lr_schedule == "cosine" else config.actor_learning_rate)
    labels = {"actor": "actor", "actor_std": "actor", "q1": "critic", "q2": "critic",
              "value": "value"}
    optimiser = hooks.optimiser(optax.multi_transform(
        {"actor": optax.adam(actor_lr), "critic": optax.adam(config.critic_learning_rate),
         "value": optax.adam(config.value_learning_rate)},
        lambda params: {name: jax.tree.map(lambda _: labels[name], tree)
                        for name, tree in params.items()}))

    def init(key: jax.Array) -> IQLState:
        k_actor, k_q1, k_q2, k_value, k_methods = jax.random.split(key, 5)
        obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
        critic_input = jnp.zeros((1, action_dim + spec.obs_dim), jnp.float32)
        params = {"actor": actor.init(k_actor, obs),
                  "actor_std": {"params": {"gaussian": {
                      "log_std": jnp.zeros((action_dim,), jnp.float32)}}},
                  "q1": q_net.init(k_q1, critic_input), "q2": q_net.init(k_q2, critic_input),
                  "value": value_net.init(k_value, obs)}
        return IQLState(
            params=params, target_params={"q1": params["q1"], "q2": params["q2"]},
            opt_state=optimiser.init(params),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim, (action_dim,),
                                       jnp.float32),
            env_steps=jnp.zeros((), jnp.int32), explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32), methods=hooks.init(k_methods, params))

    def greedy_action(state: IQLState, obs: jax.Array) -> jax.Array:
        return greedy(state.params, obs)

    def act(state: IQLState, obs: jax.Array, key: jax.Array):
        k_policy, k_random = jax.random.split(key)
        mean, log_std = gaussian(state.params, obs)
        action = jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(k_policy, mean.shape),
                          -1.0, 1.0)
        warming_up = state.env_steps - state.explore_from < config.random_steps
        return jnp.where(warming_up, random_actions(k_random, action.shape), action), {}

    def total_loss(params, target_params, mb, method_state):
        loss, info = losses(params, target_params, mb)
        if hooks:  # hook: extra_loss (EWC, L2-init, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: IQLState, key: jax.Array):
        k_sample, k_batch = jax.random.split(key)
        mb = state.buffer.sample(k_sample, config.batch_size)
        mb = hooks.transform_batch(state.methods, mb, k_batch)  # hook: transform_batch
        grads, info = jax.grad(total_loss, has_aux=True)(
            state.params, state.target_params, mb, state.methods)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        state = state.replace(
            params=params,
            target_params=polyak(state.target_params, {"q1": params["q1"], "q2": params["q2"]},
                                 config.tau),
            opt_state=opt_state, gradient_steps=state.gradient_steps + 1)
        return state, info

    def train(state: IQLState, key: jax.Array):
        return jax.lax.scan(gradient_step, state, jax.random.split(key, gradient_steps))

    def update(state: IQLState, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        return store_and_learn(state, batch, key, hooks, config.learning_starts, train)

    return Agent("iql", config.num_envs, config.train_every, init, act, greedy_action, update,
                 restarting_boundary(hooks, config.explore_each_task), view,
                 hooks.agent_for_task, partial(learn_from_dataset, hooks=hooks, train=train),
                 hooks.agent_guide)
