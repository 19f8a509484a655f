"""Soft Actor-Critic with automatic entropy tuning (Haarnoja et al., 2018, "Soft Actor-Critic
Algorithms and Applications"), for continuous actions in [-1, 1].

Networks: a tanh-squashed Gaussian actor (`params["actor"]`: mean and log-std) and twin Q critics
(`params["q1"]`, `params["q2"]`) with Polyak-averaged targets. The entropy coefficient α is
learned so that the policy's entropy stays near `target_entropy` (−action size by default).

Each `update` call receives `train_every` steps from each env, stores them in the replay buffer
(part of the agent state) and — once it holds `learning_starts` transitions — takes
`utd_ratio` gradient steps per env step, fused into one `lax.scan`. Until then the agent acts
uniformly at random (for `random_steps`, which defaults to `learning_starts`), as
Stable-Baselines3 does; with `explore_each_task` it acts at random again for the first
`random_steps` steps of every later task (learning goes on meanwhile). The `reset_*_each_task`
switches and `first_layer_norm` give Continual World's SAC (`--preset continual-world`).
One gradient step is one loss over all three networks: the critics' soft Bellman error plus
the actor's objective, in which the critics are held fixed (`stop_gradient`), so one optimiser
step serves both, and the continual-learning methods (`everlearn.methods`) hook in once, at
the points marked.
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
from everlearn.core.ranges import Discount, HiddenSizes, PolyakStep
from everlearn.core.replay import ReplayBuffer, Transition, replay_row
from everlearn.methods.base import AgentView, Hooks, Method

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # Stable-Baselines3's clip of the actor's log-std


class SACConfig(BaseModel):
    """Defaults are Stable-Baselines3's, but for `learning_starts` (1,000 random steps instead
    of 100)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: PositiveInt = 1
    train_every: PositiveInt = 1  # env steps per env between updates
    utd_ratio: PositiveFloat = 1.0  # gradient steps per env step (update-to-data ratio)
    buffer_size: PositiveInt = 1_000_000
    batch_size: PositiveInt = 256
    learning_starts: NonNegativeInt = 1_000
    # Env steps of uniformly random actions at the start (of the run, or with
    # `explore_each_task` of each task); None: `learning_starts`. Continual World acts at random
    # for 10,000 steps of each task and learns from its 1,000th.
    random_steps: NonNegativeInt | None = None
    # Act at random for the first `random_steps` env steps of each task, not only of the
    # run. None: on where the scenario shows its task boundaries (the run resolves it).
    explore_each_task: bool | None = boundary_setting(None)
    learning_rate: PositiveFloat = 3e-4
    gamma: Discount = 0.99
    tau: PolyakStep = 0.005  # Polyak step of the target critics per gradient step
    init_alpha: PositiveFloat = 1.0
    target_entropy: float | None = None  # None: −(action size)
    hidden_sizes: HiddenSizes = (256, 256)
    activation: Literal["tanh", "relu", "leaky_relu", "elephant"] = "relu"
    layer_norm: bool = False  # LayerNorm before each hidden activation
    first_layer_norm: bool = False  # Continual World's: LayerNorm and tanh after layer 1 only
    # At each task boundary (Continual World's reset_buffer_on_task_change and
    # reset_optimizer_on_task_change; its per-task entropy coefficients, each starting at
    # init_alpha, act as α restarting at each task): empty the replay buffer; zero the Adam
    # moments of all networks and of α (step counts kept, as CW's `reset_optimizer`); set α
    # back to init_alpha.
    reset_buffer_each_task: bool = boundary_setting(False)
    reset_optimiser_each_task: bool = boundary_setting(False)
    reset_alpha_each_task: bool = boundary_setting(False)
    elephant_a: PositiveFloat = 1.0  # width of the elephant activation
    elephant_d: PositiveInt = 4  # slope (power) of the elephant activation


@struct.dataclass
class SACState:
    params: dict  # {"actor": ..., "q1": ..., "q2": ...}
    target_params: dict  # {"q1": ..., "q2": ...}
    opt_state: optax.OptState
    log_alpha: jax.Array
    alpha_opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array  # env_steps where the random warm-up (re)started
    gradient_steps: jax.Array
    methods: dict[str, Any]  # the continual-learning methods' state (`Hooks`)


def make_sac(config: SACConfig, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    if not spec.continuous:
        raise ValueError("sac needs continuous actions; use ppo or dqn for discrete ones")
    action_dim = spec.num_actions
    gradient_steps = gradient_steps_per_update("sac", config)
    random_steps = config.learning_starts if config.random_steps is None else config.random_steps
    target_entropy = (-float(action_dim) if config.target_entropy is None
                      else config.target_entropy)
    network_options = dict(activation=config.activation, heads=spec.heads,
                           layer_norm=config.layer_norm, first_layer_norm=config.first_layer_norm, elephant_a=config.elephant_a,
                           elephant_d=config.elephant_d)
    actor = MLP(config.hidden_sizes, 2 * action_dim, out_scale=0.01, **network_options)
    q_net = MLP(config.hidden_sizes, 1, **network_options)

    def gaussian(actor_params: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = jnp.split(actor.apply(actor_params, obs), 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def sample(actor_params: dict, obs: jax.Array, key: jax.Array):
        """A squashed-Gaussian action and its log-probability (with the tanh correction)."""
        mean, log_std = gaussian(actor_params, obs)
        noise = jax.random.normal(key, mean.shape)
        pre_tanh = mean + jnp.exp(log_std) * noise
        action = jnp.tanh(pre_tanh)
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
        # log |d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the stable form
        log_prob -= (2 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2 * pre_tanh))).sum(-1)
        return action, log_prob

    def greedy(params: dict, obs: jax.Array) -> jax.Array:
        return jnp.tanh(gaussian(params["actor"], obs)[0])

    def losses(params: dict, target_params: dict, alpha: jax.Array, mb: dict, key: jax.Array):
        k_next, k_new = jax.random.split(key)
        # Soft Bellman target from the target critics at the current policy's next action.
        next_action, next_log_prob = sample(params["actor"], mb["next_obs"], k_next)
        next_q = jnp.minimum(*twin_q(q_net, target_params, mb["next_obs"], next_action))
        target = jax.lax.stop_gradient(
            mb["reward"] + config.gamma * (1.0 - mb["terminated"])
            * (next_q - alpha * next_log_prob))
        q1, q2 = twin_q(q_net, params, mb["obs"], mb["action"])
        critic_loss = 0.5 * (jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2))
        # The actor maximises the critics' value plus entropy; critics held fixed here.
        action, log_prob = sample(params["actor"], mb["obs"], k_new)
        q_new = jnp.minimum(*twin_q(q_net, jax.lax.stop_gradient(params), mb["obs"], action))
        actor_loss = jnp.mean(alpha * log_prob - q_new)
        info = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q1.mean(),
                "entropy": -log_prob.mean()}
        return critic_loss + actor_loss, info

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # What methods see as the agent's loss (Fisher, reference gradients): targets from the
        # same params held fixed, α at its initial value, a fixed sampling key.
        return losses(params, jax.lax.stop_gradient(params), jnp.asarray(config.init_alpha),
                      mb, jax.random.PRNGKey(0))[0]

    def policy_entropy(params: dict, obs: jax.Array) -> jax.Array:
        # Entropy of the Gaussian before the tanh squashing (closed form, no sampling).
        log_std = gaussian(params["actor"], obs)[1]
        return (log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1).mean()

    def policy_gaussian(params: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = gaussian(params["actor"], obs)
        return mean, jnp.exp(log_std)

    def activations(params: dict, obs: jax.Array) -> dict[str, list[jax.Array]]:
        action = greedy(params, obs)
        critic_input = jnp.concatenate([action, obs], axis=-1)
        return {"actor": actor.apply(params["actor"], obs, return_hidden=True)[1],
                **{name: q_net.apply(params[name], critic_input, return_hidden=True)[1]
                   for name in ("q1", "q2")}}

    view = AgentView(
        "sac", off_policy=True, policy_network="actor",
        outputs=lambda params, obs: {"action": greedy(params, obs)},
        policy_logits=None, loss=plain_loss, networks=("actor", "q1", "q2"),
        num_tasks=spec.num_tasks, heads=spec.heads, obs_dim=spec.obs_dim,
        minibatch_row=replay_row(spec.obs_dim, (action_dim,), jnp.float32),
        env_steps_per_update=config.train_every * config.num_envs,
        gradient_steps_per_update=gradient_steps, activations=activations,
        policy_entropy=policy_entropy, policy_gaussian=policy_gaussian)
    hooks = Hooks(view, [build(view) for build in methods])
    optimiser = hooks.optimiser(optax.adam(config.learning_rate))
    alpha_optimiser = optax.adam(config.learning_rate)

    def init(key: jax.Array) -> SACState:
        k_actor, k_q1, k_q2, k_methods = jax.random.split(key, 4)
        obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
        critic_input = jnp.zeros((1, action_dim + spec.obs_dim), jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "q1": q_net.init(k_q1, critic_input),
                  "q2": q_net.init(k_q2, critic_input)}
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        return SACState(
            params=params,
            target_params={"q1": params["q1"], "q2": params["q2"]},
            opt_state=optimiser.init(params),
            log_alpha=log_alpha,
            alpha_opt_state=alpha_optimiser.init(log_alpha),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim, (action_dim,),
                                       jnp.float32),
            env_steps=jnp.zeros((), jnp.int32),
            explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32),
            methods=hooks.init(k_methods, params),
        )

    def greedy_action(state: SACState, obs: jax.Array) -> jax.Array:
        return greedy(state.params, obs)

    def act(state: SACState, obs: jax.Array, key: jax.Array):
        k_policy, k_random = jax.random.split(key)
        action = sample(state.params["actor"], obs, k_policy)[0]
        # at random for `random_steps` steps of the run, or of each task (explore_each_task)
        warming_up = state.env_steps - state.explore_from < random_steps
        return jnp.where(warming_up, random_actions(k_random, action.shape), action), {}

    def total_loss(params, target_params, alpha, mb, key, method_state):
        loss, info = losses(params, target_params, alpha, mb, key)
        if hooks:  # hook: extra_loss (EWC, L2-init, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: SACState, key: jax.Array):
        k_sample, k_batch, k_loss = jax.random.split(key, 3)
        mb = state.buffer.sample(k_sample, config.batch_size)
        mb = hooks.transform_batch(state.methods, mb, k_batch)  # hook: transform_batch
        alpha = jnp.exp(state.log_alpha)
        grads, info = jax.grad(total_loss, has_aux=True)(
            state.params, state.target_params, alpha, mb, k_loss, state.methods)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        # α follows the entropy of the actions just sampled towards the target.
        entropy_gap = jax.lax.stop_gradient(info["entropy"] - target_entropy)
        alpha_grad = jax.grad(lambda log_alpha: log_alpha * entropy_gap)(state.log_alpha)
        alpha_update, alpha_opt_state = alpha_optimiser.update(alpha_grad, state.alpha_opt_state)
        state = state.replace(
            params=params,
            target_params=polyak(state.target_params, {"q1": params["q1"], "q2": params["q2"]},
                                 config.tau),
            opt_state=opt_state,
            log_alpha=optax.apply_updates(state.log_alpha, alpha_update),
            alpha_opt_state=alpha_opt_state,
            gradient_steps=state.gradient_steps + 1,
        )
        return state, {**info, "alpha": alpha}

    def train(state: SACState, key: jax.Array):
        return jax.lax.scan(gradient_step, state, jax.random.split(key, gradient_steps))

    def update(state: SACState, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        return store_and_learn(state, batch, key, hooks, config.learning_starts, train)

    explore_boundary = restarting_boundary(hooks, config.explore_each_task)

    def task_boundary(state: SACState, ended: jax.Array, started: jax.Array, key: jax.Array):
        state = explore_boundary(state, ended, started, key)
        if config.reset_buffer_each_task:
            state = state.replace(buffer=state.buffer.emptied())
        if config.reset_optimiser_each_task:
            everything = jax.tree.map(lambda p: jnp.ones(p.shape, bool), state.params)
            state = state.replace(
                opt_state=view.reset_moments(state.opt_state, everything),
                alpha_opt_state=view.reset_moments(state.alpha_opt_state, jnp.ones((), bool)))
        if config.reset_alpha_each_task:
            state = state.replace(log_alpha=jnp.log(jnp.asarray(config.init_alpha,
                                                                 jnp.float32)))
        return state

    return Agent("sac", config.num_envs, config.train_every, init, act, greedy_action, update,
                 task_boundary, view, hooks.agent_for_task,
                 partial(learn_from_dataset, hooks=hooks, train=train), hooks.agent_guide)
