"""TD3: twin delayed deep deterministic policy gradient (Fujimoto et al., 2018, "Addressing
Function Approximation Error in Actor-Critic Methods"), for continuous actions in [-1, 1].

Networks: a deterministic actor (`params["actor"]`, tanh output) and twin Q critics
(`params["q1"]`, `params["q2"]`), each with a Polyak-averaged target. The critics learn from
the smaller of the two target values at a smoothed target action (clipped Gaussian noise); the
actor and all targets move only every `policy_delay` gradient steps. Exploration adds Gaussian
noise of scale `exploration_noise` to the actor's action.

Each `update` call receives `train_every` steps from each env, stores them in the replay buffer
(part of the agent state) and — once it holds `learning_starts` transitions — takes
`utd_ratio` gradient steps per env step, fused into one `lax.scan`. It acts uniformly at random
for `random_steps` env steps (by default `learning_starts`) — with `explore_each_task`, also for
the first `random_steps` steps of every later task (learning goes on meanwhile). One gradient step is one loss over all three
networks (the critics held fixed in the actor's term); the delay is an Optax mask on the
actor's part of the update, so the continual-learning methods (`everlearn.methods`) hook in
once, at the points marked.
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
from everlearn.core.ranges import Discount, HiddenSizes, NonNegative, PolyakStep
from everlearn.core.replay import ReplayBuffer, Transition, replay_row
from everlearn.methods.base import AgentView, Hooks, Method


class TD3Config(BaseModel):
    """Defaults are Stable-Baselines3's, but for `learning_starts` (1,000 random steps instead
    of 100), Gaussian exploration noise of 0.1 (SB3 has none unless asked; the TD3 paper and
    rl-baselines3-zoo use 0.1) and [256, 256] networks (SB3: [400, 300])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: PositiveInt = 1
    train_every: PositiveInt = 1  # env steps per env between updates
    utd_ratio: PositiveFloat = 1.0  # gradient steps per env step (update-to-data ratio)
    buffer_size: PositiveInt = 1_000_000
    batch_size: PositiveInt = 256
    learning_starts: NonNegativeInt = 1_000
    # Env steps of uniformly random actions; None: `learning_starts`. 0 with a pre-trained
    # actor is WSRL's warm-up: it acts from the first step, learning waits for the buffer.
    random_steps: NonNegativeInt | None = None
    # Act at random for the first `random_steps` env steps of each task, not only of the
    # run. None: on where the scenario shows its task boundaries (the run resolves it).
    explore_each_task: bool | None = boundary_setting(None)
    learning_rate: PositiveFloat = 1e-3
    gamma: Discount = 0.99
    tau: PolyakStep = 0.005  # Polyak step of every target network at each delayed update
    policy_delay: PositiveInt = 2  # critic steps per actor (and target) step
    exploration_noise: NonNegative = 0.1  # std of the Gaussian added to acting actions
    target_noise: NonNegative = 0.2  # std of the target policy smoothing noise
    target_noise_clip: NonNegative = 0.5
    hidden_sizes: HiddenSizes = (256, 256)
    activation: Literal["tanh", "relu", "elephant"] = "relu"
    layer_norm: bool = False  # LayerNorm before each hidden activation
    elephant_a: PositiveFloat = 1.0  # width of the elephant activation
    elephant_d: PositiveInt = 4  # slope (power) of the elephant activation


@struct.dataclass
class TD3State:
    params: dict  # {"actor": ..., "q1": ..., "q2": ...}
    target_params: dict  # the same three networks, Polyak-averaged
    opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array  # env_steps where the random warm-up (re)started
    gradient_steps: jax.Array
    methods: dict[str, Any]  # the continual-learning methods' state (`Hooks`)


def make_td3(config: TD3Config, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    if not spec.continuous:
        raise ValueError("td3 needs continuous actions; use ppo or dqn for discrete ones")
    action_dim = spec.num_actions
    random_steps = config.learning_starts if config.random_steps is None else config.random_steps
    gradient_steps = gradient_steps_per_update("td3", config)
    network_options = dict(activation=config.activation, heads=spec.heads,
                           layer_norm=config.layer_norm, elephant_a=config.elephant_a,
                           elephant_d=config.elephant_d)
    actor = MLP(config.hidden_sizes, action_dim, **network_options)
    q_net = MLP(config.hidden_sizes, 1, **network_options)

    def policy(actor_params: dict, obs: jax.Array) -> jax.Array:
        return jnp.tanh(actor.apply(actor_params, obs))

    def losses(params: dict, target_params: dict, mb: dict, key: jax.Array):
        # Target policy smoothing: the target actor's action plus clipped noise.
        next_action = policy(target_params["actor"], mb["next_obs"])
        noise = jnp.clip(config.target_noise * jax.random.normal(key, next_action.shape),
                         -config.target_noise_clip, config.target_noise_clip)
        next_action = jnp.clip(next_action + noise, -1.0, 1.0)
        next_q = jnp.minimum(*twin_q(q_net, target_params, mb["next_obs"], next_action))
        target = jax.lax.stop_gradient(
            mb["reward"] + config.gamma * (1.0 - mb["terminated"]) * next_q)
        q1, q2 = twin_q(q_net, params, mb["obs"], mb["action"])
        critic_loss = jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)
        # The actor climbs the first critic, held fixed here.
        fixed = jax.lax.stop_gradient(params)
        actor_loss = -jnp.mean(twin_q(q_net, fixed, mb["obs"],
                                      policy(params["actor"], mb["obs"]))[0])
        info = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q1.mean()}
        return critic_loss + actor_loss, info

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # What methods see as the agent's loss (Fisher, reference gradients): targets from the
        # same params held fixed, a fixed noise key.
        return losses(params, jax.lax.stop_gradient(params), mb, jax.random.PRNGKey(0))[0]

    def activations(params: dict, obs: jax.Array) -> dict[str, list[jax.Array]]:
        critic_input = jnp.concatenate([policy(params["actor"], obs), obs], axis=-1)
        return {"actor": actor.apply(params["actor"], obs, return_hidden=True)[1],
                **{name: q_net.apply(params[name], critic_input, return_hidden=True)[1]
                   for name in ("q1", "q2")}}

    view = AgentView(
        "td3", off_policy=True, policy_network="actor",
        outputs=lambda params, obs: {"action": policy(params["actor"], obs)},
        policy_logits=None, loss=plain_loss, networks=("actor", "q1", "q2"),
        num_tasks=spec.num_tasks, heads=spec.heads, obs_dim=spec.obs_dim,
        minibatch_row=replay_row(spec.obs_dim, (action_dim,), jnp.float32),
        env_steps_per_update=config.train_every * config.num_envs,
        gradient_steps_per_update=gradient_steps, activations=activations)
    hooks = Hooks(view, [build(view) for build in methods])
    # The delay: the actor's Adam steps (and its moments move) only every `policy_delay`-th
    # gradient step; in between its update is zero.
    delayed_actor = optax.transforms.conditionally_mask(
        optax.adam(config.learning_rate), lambda step: (step + 1) % config.policy_delay == 0)
    optimiser = hooks.optimiser(optax.multi_transform(
        {"actor": delayed_actor, "critic": optax.adam(config.learning_rate)},
        lambda params: {name: jax.tree.map(lambda _: "actor" if name == "actor" else "critic",
                                           tree) for name, tree in params.items()}))

    def init(key: jax.Array) -> TD3State:
        k_actor, k_q1, k_q2, k_methods = jax.random.split(key, 4)
        obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
        critic_input = jnp.zeros((1, action_dim + spec.obs_dim), jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "q1": q_net.init(k_q1, critic_input),
                  "q2": q_net.init(k_q2, critic_input)}
        return TD3State(
            params=params,
            target_params=params,
            opt_state=optimiser.init(params),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim, (action_dim,),
                                       jnp.float32),
            env_steps=jnp.zeros((), jnp.int32),
            explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32),
            methods=hooks.init(k_methods, params),
        )

    def greedy_action(state: TD3State, obs: jax.Array) -> jax.Array:
        return policy(state.params["actor"], obs)

    def act(state: TD3State, obs: jax.Array, key: jax.Array):
        k_noise, k_random = jax.random.split(key)
        action = policy(state.params["actor"], obs)
        action = jnp.clip(action + config.exploration_noise
                          * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        # at random for `random_steps` steps of the run, or of each task (explore_each_task)
        warming_up = state.env_steps - state.explore_from < random_steps
        return jnp.where(warming_up, random_actions(k_random, action.shape), action), {}

    def total_loss(params, target_params, mb, key, method_state):
        loss, info = losses(params, target_params, mb, key)
        if hooks:  # hook: extra_loss (EWC, L2-init, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: TD3State, key: jax.Array):
        k_sample, k_batch, k_loss = jax.random.split(key, 3)
        mb = state.buffer.sample(k_sample, config.batch_size)
        mb = hooks.transform_batch(state.methods, mb, k_batch)  # hook: transform_batch
        grads, info = jax.grad(total_loss, has_aux=True)(
            state.params, state.target_params, mb, k_loss, state.methods)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        steps = state.gradient_steps + 1
        delayed = steps % config.policy_delay == 0  # the actor just moved: targets follow
        state = state.replace(
            params=params,
            target_params=polyak(state.target_params, params,
                                 jnp.where(delayed, config.tau, 0.0)),
            opt_state=opt_state, gradient_steps=steps)
        return state, info

    def train(state: TD3State, key: jax.Array):
        return jax.lax.scan(gradient_step, state, jax.random.split(key, gradient_steps))

    def update(state: TD3State, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        return store_and_learn(state, batch, key, hooks, config.learning_starts, train)

    return Agent("td3", config.num_envs, config.train_every, init, act, greedy_action, update,
                 restarting_boundary(hooks, config.explore_each_task), view,
                 hooks.agent_for_task, partial(learn_from_dataset, hooks=hooks, train=train),
                 hooks.agent_guide)
