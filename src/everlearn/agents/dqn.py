"""Double DQN with a target network and an array replay buffer (van Hasselt et al., 2016).

Each `update` call receives `train_every` steps from each env, writes them into the replay
buffer (part of the agent state), and — once the buffer holds `learning_starts` transitions —
takes `gradient_steps` minibatch steps in one `lax.scan`. The target network follows
`params["q"]` every `target_update_every` gradient steps (a hard copy, or Polyak averaging with
`target_tau` < 1). Exploration is epsilon-greedy with epsilon decaying linearly over the first
`exploration_steps` env steps — of each task with `explore_each_task` (the schedule restarts at
every task boundary; the replay buffer and the learning stay), else of the whole run.
Continual-learning methods (`everlearn.methods`) hook into `update` at the points marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct
from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt

from everlearn.agents.common import (
    MLP,
    Agent,
    EnvSpec,
    boundary_setting,
    learn_from_dataset,
    polyak,
    restarting_boundary,
    store_and_learn,
    torso_options,
    uniform_actions,
)
from everlearn.core.ranges import (
    Count,
    Discount,
    Fraction,
    HiddenSizes,
    LearningRate,
    NonNegative,
    NonNegativeCount,
    PolyakStep,
    Positive,
)
from everlearn.core.replay import ReplayBuffer, Transition, replay_row
from everlearn.methods.base import AgentView, Hooks, Method


class DQNConfig(BaseModel):
    """Defaults start from rl-baselines3-zoo's tuned CartPole settings, with one gradient step
    per env step, a larger batch and a lower learning rate, which made all seeds tried here
    solve CartPole by 50k steps and stay solved (the zoo settings oscillated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: Count = 1
    train_every: Count = 256
    gradient_steps: Count = 256
    buffer_size: Count = 100_000
    batch_size: Count = 128
    learning_starts: NonNegativeCount = 1_000
    learning_rate: LearningRate = 1e-3
    gamma: Discount = 0.99
    target_update_every: Count = 500  # gradient steps between target updates
    target_tau: PolyakStep = 1.0  # 1: hard copy; < 1: Polyak averaging at each target update
    exploration_steps: Count = 10_000
    epsilon_start: Fraction = 1.0
    epsilon_end: Fraction = 0.04
    # Restart the epsilon schedule at each task boundary. None: on where the scenario shows
    # its boundaries (the run resolves it), off where it hides them.
    explore_each_task: bool | None = boundary_setting(None)
    max_grad_norm: Positive | None = 10.0  # None: no clipping
    adam_eps: PositiveFloat = 1e-8
    double: bool = True
    loss: Literal["mse", "huber"] = "mse"
    # CQL(H)'s conservative term, weighted (`everlearn.agents.cql_dqn`); 0: plain DQN
    min_q_weight: NonNegative = 0.0
    hidden_sizes: HiddenSizes = (256, 256)
    activation: Literal["tanh", "relu", "elephant"] = "relu"
    layer_norm: bool = False  # LayerNorm before each hidden activation
    elephant_a: PositiveFloat = 1.0  # width of the elephant activation
    elephant_d: PositiveInt = 4  # slope (power) of the elephant activation
    cnn: Literal["auto", "nature", "minatar"] = "auto"  # torso for image observations


@struct.dataclass
class DQNState:
    params: dict  # {"q": ...}
    target_params: dict
    opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array  # env_steps where the epsilon schedule (re)started
    gradient_steps: jax.Array
    methods: dict[str, Any]  # the continual-learning methods' state (`Hooks`)


def make_dqn(config: DQNConfig, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = (), name: str = "dqn") -> Agent:
    q_net = MLP(config.hidden_sizes, spec.num_actions, config.activation, heads=spec.heads,
                layer_norm=config.layer_norm, elephant_a=config.elephant_a,
                elephant_d=config.elephant_d, mask_output=True,
                **torso_options(spec, config.cnn))

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # The target network is not in `params`; methods see the loss against frozen targets
        # computed from the same params (adequate for Fisher / reference gradients).
        return loss_fn(params, jax.lax.stop_gradient(params), mb)[0]

    view = AgentView(name, off_policy=True, policy_network="q",
                     outputs=lambda params, obs: {"q": q_net.apply(params["q"], obs)},
                     policy_logits=lambda params, obs: q_net.apply(params["q"], obs),
                     loss=plain_loss, networks=("q",), num_tasks=spec.num_tasks,
                     heads=spec.heads, obs_dim=spec.obs_dim,
                     minibatch_row=replay_row(spec.obs_dim),
                     activations=lambda params, obs: {
                         "q": q_net.apply(params["q"], obs, return_hidden=True)[1]},
                     env_steps_per_update=config.train_every * config.num_envs,
                     gradient_steps_per_update=config.gradient_steps)
    hooks = Hooks(view, [build(view) for build in methods])
    clip = ([optax.clip_by_global_norm(config.max_grad_norm)]
            if config.max_grad_norm is not None else [])
    optimiser = hooks.optimiser(*clip, optax.adam(config.learning_rate, eps=config.adam_eps))

    def init(key: jax.Array) -> DQNState:
        params = {"q": q_net.init(key, jnp.zeros((1, spec.obs_dim), jnp.float32))}
        return DQNState(
            params=params,
            target_params=params,
            opt_state=optimiser.init(params),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim),
            env_steps=jnp.zeros((), jnp.int32),
            explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32),
            methods=hooks.init(jax.random.fold_in(key, 1), params),
        )

    def epsilon(state: DQNState) -> jax.Array:
        steps = state.env_steps - state.explore_from  # of this task, with explore_each_task
        fraction = jnp.clip(steps / config.exploration_steps, 0.0, 1.0)
        return config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)

    def greedy_action(state: DQNState, obs: jax.Array) -> jax.Array:
        return jnp.argmax(q_net.apply(state.params["q"], obs), axis=-1)

    def act(state: DQNState, obs: jax.Array, key: jax.Array):
        k_explore, k_random = jax.random.split(key)
        explore = jax.random.uniform(k_explore, (obs.shape[0],)) < epsilon(state)
        random_action = uniform_actions(k_random, spec, obs)  # among the task's own actions
        return jnp.where(explore, random_action, greedy_action(state, obs)), {}

    def loss_fn(params: dict, target_params: dict, mb: dict) -> tuple[jax.Array, dict]:
        next_q_target = q_net.apply(target_params["q"], mb["next_obs"])
        if config.double:  # the online net picks the action, the target net values it
            next_action = jnp.argmax(q_net.apply(params["q"], mb["next_obs"]), axis=-1)
        else:
            next_action = jnp.argmax(next_q_target, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, next_action[:, None], axis=-1)[:, 0]
        target = mb["reward"] + config.gamma * (1.0 - mb["terminated"]) * next_value
        q_all = q_net.apply(params["q"], mb["obs"])
        q = jnp.take_along_axis(q_all, mb["action"][:, None], axis=-1)[:, 0]
        error = q - jax.lax.stop_gradient(target)
        if config.loss == "huber":
            loss = optax.huber_loss(error).mean()
        else:
            loss = jnp.mean(error**2)
        info = {"q_loss": loss, "q_mean": q.mean()}
        if config.min_q_weight:  # CQL(H): log-sum-exp of Q over actions, minus the data's
            gap = jnp.mean(jax.nn.logsumexp(q_all, axis=-1)) - q.mean()
            loss = loss + config.min_q_weight * gap
            info["conservative_gap"] = gap
        return loss, info

    def total_loss(params: dict, target_params: dict, mb: dict, method_state: dict):
        loss, info = loss_fn(params, target_params, mb)
        if hooks:  # hook: extra_loss (EWC, L2-init, distillation, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: DQNState, key: jax.Array):
        mb = state.buffer.sample(key, config.batch_size)
        # hook: transform_batch (replay mixing)
        mb = hooks.transform_batch(state.methods, mb, jax.random.fold_in(key, 1))
        grads, info = jax.grad(total_loss, has_aux=True)(state.params, state.target_params, mb,
                                                         state.methods)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        steps = state.gradient_steps + 1
        due = steps % config.target_update_every == 0
        target_params = polyak(state.target_params, params, jnp.where(due, config.target_tau, 0.0))
        state = state.replace(params=params, target_params=target_params,
                              opt_state=opt_state, gradient_steps=steps)
        return state, info

    def train(state: DQNState, key: jax.Array):
        return jax.lax.scan(gradient_step, state, jax.random.split(key, config.gradient_steps))

    def update(state: DQNState, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        state, info = store_and_learn(state, batch, key, hooks, config.learning_starts, train)
        return state, {**info, "epsilon": epsilon(state)}

    return Agent(name, config.num_envs, config.train_every, init, act, greedy_action, update,
                 restarting_boundary(hooks, config.explore_each_task), view,
                 hooks.agent_for_task, partial(learn_from_dataset, hooks=hooks, train=train),
                 hooks.agent_guide)
