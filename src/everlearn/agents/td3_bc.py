"""TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline Reinforcement Learning"), for
continuous actions in [-1, 1]: TD3 whose actor also clones the data's actions.

Networks: as TD3 (`everlearn.agents.td3`): a deterministic tanh actor (`params["actor"]`) and
twin Q critics (`params["q1"]`, `params["q2"]`) with Polyak-averaged targets, target policy
smoothing and a delayed actor. The actor's loss on a minibatch of (s, a) is

    λ = α / mean_batch |Q1(s, π(s))|   (held fixed: no gradient flows through λ)
    L_actor = −λ · mean_batch Q1(s, π(s)) + mean_batch,dims (π(s) − a)²

so the Q term is scale-free and `alpha` (2.5) trades it against behaviour cloning.

Observation normalisation (the paper's "state normalisation", on by default): every network
sees `(obs − mean) / std`, with `mean` and `std + 1e-3` of the observations of the dataset
being learnt from. `learn` computes them from its `dataset` argument (the rows it holds) at
every call, before its gradient steps; they are kept in the agent state as
`params["obs_norm"]` so that acting, evaluation and every params-level function the methods
and diagnostics call (`view.outputs`, `view.loss`, `view.activations`) normalise alike. They
are never trained: no gradient reaches them, and every gradient step puts them back after the
optimiser (a method's link, e.g. UPGD's noise, cannot move them). Before the first `learn`
they are the identity (mean 0, std 1), and online `update`s never change them: an agent
fine-tuned online keeps the statistics of the last dataset it learnt from.
A new task's dataset replaces the statistics at its first `learn` call: the networks, trained
under the old ones, then see every earlier task's observations shifted and rescaled, which can
change their behaviour there (it shows as forgetting, on top of the weights' own); a replayed
memory (the `replay` method) is normalised with the current dataset's statistics too.
`learn` costs one pass over the dataset's observations per call (mean and std), next to its
gradient steps; give it many gradient steps per call (`utd_ratio`, `train_every`).

Defaults and their sources (sfujim/TD3_BC, commit 76cdd14): α = 2.5, discount 0.99, τ 0.005,
policy noise 0.2 clipped at 0.5, actor every 2nd step (`TD3_BC.py` lines 66-76); Adam 3e-4 for
actor and critic (lines 81, 85); λ and the actor loss (lines 139-143, critic 1 only); the
critic loss, the sum of both critics' MSEs (line 128); targets move only on actor steps;
[256, 256] ReLU networks (lines 15-17, 33-35); batch 256, exploration noise 0.1 and
normalisation on (`main.py` argument defaults); eps 1e-3 (`utils.py`, `normalize_states`).

Deliberate differences from the authors' code:
- Orthogonal initialisation (everlearn's `MLP`) instead of PyTorch's default.
- One loss and one optimiser step over all three networks per gradient step, the actor's Adam
  masked on non-delayed steps (as everlearn's TD3): the critics in the actor's term are the
  critics before this step's update (the authors update the critic first, then the actor
  against the updated critic).
- An observation column that is constant over the dataset (std 0, e.g. a task one-hot in a
  single-task dataset) is passed through unchanged (mean 0, std 1) instead of mapped to 0 and,
  elsewhere, to ±1000 × its deviation; D4RL's locomotion observations have no such column.
- Online (`update`, for offline-to-online fine-tuning, which the paper does not do): acting
  adds Gaussian noise of `exploration_noise` as TD3; no random warm-up by default
  (`random_steps` = 0), so the pretrained actor acts from the first step; gradient steps start
  once the agent's own buffer holds `learning_starts` rows. The BC term stays on online
  unless `bc_online` is false, which makes online updates TD3's (the actor maximises Q alone;
  the observation statistics stay the dataset's).

d3rlpy's `TD3PlusBCConfig` has the same numbers (α 2.5, lr 3e-4, batch 256, τ 0.005, noise 0.2 /
0.5, actor interval 2), but observation normalisation only if an `observation_scaler` is given
(none by default); its actor loss takes Q and λ from the first critic, as here and as the
authors (`compute_expected_q(..., "none")[0]`).
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

NORMALISATION_EPS = 1e-3  # added to the dataset's std (sfujim/TD3_BC `utils.normalize_states`)


class TD3BCConfig(BaseModel):
    """Defaults are the authors' (sfujim/TD3_BC; see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: PositiveInt = 1
    train_every: PositiveInt = 1  # env steps per env between updates (online)
    # gradient steps per env step online; per `learn` call, `train_every x num_envs x
    # utd_ratio` gradient steps on the dataset
    utd_ratio: PositiveFloat = 1.0
    buffer_size: PositiveInt = 1_000_000  # the agent's own buffer (online data only)
    batch_size: PositiveInt = 256
    learning_starts: NonNegativeInt = 1_000  # own-buffer rows before online gradient steps
    random_steps: NonNegativeInt = 0  # env steps of uniformly random actions (of each task
    # with `explore_each_task`); 0: the (pretrained) actor acts from the start
    explore_each_task: bool | None = boundary_setting(None)
    learning_rate: PositiveFloat = 3e-4  # actor and critics
    gamma: Discount = 0.99
    tau: PolyakStep = 0.005
    policy_delay: PositiveInt = 2
    alpha: NonNegative = 2.5  # weight of the Q term against behaviour cloning (α)
    # Keep the behaviour-cloning term in online updates. False: online, the actor maximises
    # Q alone (TD3's actor loss), as WSRL and plain fine-tuning with an online algorithm do;
    # offline (`learn`) it is always TD3+BC's.
    bc_online: bool = True
    normalise_obs: bool = True  # normalise observations by the dataset's mean and std
    exploration_noise: NonNegative = 0.1
    target_noise: NonNegative = 0.2
    target_noise_clip: NonNegative = 0.5
    hidden_sizes: HiddenSizes = (256, 256)
    activation: Literal["tanh", "relu", "elephant"] = "relu"
    layer_norm: bool = False
    elephant_a: PositiveFloat = 1.0
    elephant_d: PositiveInt = 4


@struct.dataclass
class TD3BCState:
    params: dict  # {"actor", "q1", "q2", "obs_norm"} (obs_norm: the dataset's mean and std)
    target_params: dict  # {"actor", "q1", "q2"}, Polyak-averaged
    opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array
    gradient_steps: jax.Array
    methods: dict[str, Any]


def bc_actor_loss(q: jax.Array, policy_action: jax.Array, data_action: jax.Array,
                  alpha: float) -> jax.Array:
    """TD3+BC's actor loss: −λ mean(Q) + mean((π(s) − a)²), λ = α / mean|Q| held fixed."""
    lam = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))
    return -lam * jnp.mean(q) + jnp.mean((policy_action - data_action) ** 2)


def identity_stats(obs_dim: int) -> dict:
    """`params["obs_norm"]` that leaves observations unchanged."""
    return {"params": {"stats": {"mean": jnp.zeros((obs_dim,), jnp.float32),
                                 "std": jnp.ones((obs_dim,), jnp.float32)}}}


def dataset_stats(dataset: ReplayBuffer) -> dict:
    """Mean and std + 1e-3 of the observations of the dataset's filled rows (`size`), as
    `params["obs_norm"]`; a column constant over them gets mean 0, std 1 (unchanged)."""
    filled = (jnp.arange(dataset.capacity) < dataset.size)[:, None]
    count = jnp.maximum(dataset.size, 1).astype(jnp.float32)
    mean = jnp.sum(jnp.where(filled, dataset.obs, 0.0), axis=0) / count
    var = jnp.sum(jnp.where(filled, (dataset.obs - mean) ** 2, 0.0), axis=0) / count
    std = jnp.sqrt(var)
    constant = std <= 1e-6 * (1.0 + jnp.abs(mean))
    return {"params": {"stats": {"mean": jnp.where(constant, 0.0, mean),
                                 "std": jnp.where(constant, 1.0, std + NORMALISATION_EPS)}}}


def normalise(params: dict, obs: jax.Array) -> jax.Array:
    stats = jax.lax.stop_gradient(params["obs_norm"]["params"]["stats"])
    return (obs - stats["mean"]) / stats["std"]


def make_td3_bc(config: TD3BCConfig, spec: EnvSpec,
                methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    if not spec.continuous:
        raise ValueError("td3_bc needs continuous actions; use cql_dqn or dqn for discrete ones")
    action_dim = spec.num_actions
    gradient_steps = gradient_steps_per_update("td3_bc", config)
    network_options = dict(activation=config.activation, heads=spec.heads,
                           layer_norm=config.layer_norm, elephant_a=config.elephant_a,
                           elephant_d=config.elephant_d)
    actor = MLP(config.hidden_sizes, action_dim, **network_options)
    q_net = MLP(config.hidden_sizes, 1, **network_options)

    def policy(actor_params: dict, norm_obs: jax.Array) -> jax.Array:
        return jnp.tanh(actor.apply(actor_params, norm_obs))

    def losses(params: dict, target_params: dict, mb: dict, key: jax.Array, bc: bool = True):
        obs, next_obs = normalise(params, mb["obs"]), normalise(params, mb["next_obs"])
        next_action = policy(target_params["actor"], next_obs)
        noise = jnp.clip(config.target_noise * jax.random.normal(key, next_action.shape),
                         -config.target_noise_clip, config.target_noise_clip)
        next_action = jnp.clip(next_action + noise, -1.0, 1.0)
        next_q = jnp.minimum(*twin_q(q_net, target_params, next_obs, next_action))
        target = jax.lax.stop_gradient(
            mb["reward"] + config.gamma * (1.0 - mb["terminated"]) * next_q)
        q1, q2 = twin_q(q_net, params, obs, mb["action"])
        critic_loss = jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)
        # The actor: critic 1 (held fixed) at its action, plus cloning the data's action.
        action = policy(params["actor"], obs)
        q_pi = twin_q(q_net, jax.lax.stop_gradient(params), obs, action)[0]
        actor_loss = (bc_actor_loss(q_pi, action, mb["action"], config.alpha) if bc
                      else -jnp.mean(q_pi))
        info = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q1.mean(),
                "bc_mse": jnp.mean((action - mb["action"]) ** 2)}
        return critic_loss + actor_loss, info

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # The agent's own loss for methods: targets from the same params held fixed, a fixed
        # noise key.
        return losses(params, jax.lax.stop_gradient(params), mb, jax.random.PRNGKey(0))[0]

    def greedy(params: dict, obs: jax.Array) -> jax.Array:
        return policy(params["actor"], normalise(params, obs))

    def activations(params: dict, obs: jax.Array) -> dict[str, list[jax.Array]]:
        norm_obs = normalise(params, obs)
        critic_input = jnp.concatenate([policy(params["actor"], norm_obs), norm_obs], axis=-1)
        return {"actor": actor.apply(params["actor"], norm_obs, return_hidden=True)[1],
                **{name: q_net.apply(params[name], critic_input, return_hidden=True)[1]
                   for name in ("q1", "q2")}}

    view = AgentView(
        "td3_bc", off_policy=True,
        outputs=lambda params, obs: {"action": greedy(params, obs)},
        policy_logits=None, loss=plain_loss, networks=("actor", "q1", "q2"),
        num_tasks=spec.num_tasks, heads=spec.heads, obs_dim=spec.obs_dim,
        minibatch_row=replay_row(spec.obs_dim, (action_dim,), jnp.float32),
        env_steps_per_update=config.train_every * config.num_envs,
        gradient_steps_per_update=gradient_steps, activations=activations)
    hooks = Hooks(view, [build(view) for build in methods])
    delayed_actor = optax.transforms.conditionally_mask(
        optax.adam(config.learning_rate), lambda step: (step + 1) % config.policy_delay == 0)
    labels = {"actor": "actor", "q1": "critic", "q2": "critic", "obs_norm": "fixed"}
    optimiser = hooks.optimiser(optax.multi_transform(
        {"actor": delayed_actor, "critic": optax.adam(config.learning_rate),
         "fixed": optax.set_to_zero()},
        lambda params: {name: jax.tree.map(lambda _: labels[name], tree)
                        for name, tree in params.items()}))

    def init(key: jax.Array) -> TD3BCState:
        k_actor, k_q1, k_q2, k_methods = jax.random.split(key, 4)
        obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
        critic_input = jnp.zeros((1, action_dim + spec.obs_dim), jnp.float32)
        networks = {"actor": actor.init(k_actor, obs), "q1": q_net.init(k_q1, critic_input),
                    "q2": q_net.init(k_q2, critic_input)}
        params = {**networks, "obs_norm": identity_stats(spec.obs_dim)}
        return TD3BCState(
            params=params, target_params=networks, opt_state=optimiser.init(params),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim, (action_dim,),
                                       jnp.float32),
            env_steps=jnp.zeros((), jnp.int32), explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32), methods=hooks.init(k_methods, params))

    def greedy_action(state: TD3BCState, obs: jax.Array) -> jax.Array:
        return greedy(state.params, obs)

    def act(state: TD3BCState, obs: jax.Array, key: jax.Array):
        k_noise, k_random = jax.random.split(key)
        action = greedy(state.params, obs)
        action = jnp.clip(action + config.exploration_noise
                          * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        warming_up = state.env_steps - state.explore_from < config.random_steps
        return jnp.where(warming_up, random_actions(k_random, action.shape), action), {}

    def total_loss(params, target_params, mb, key, method_state, bc):
        loss, info = losses(params, target_params, mb, key, bc)
        if hooks:  # hook: extra_loss (EWC, L2-init, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: TD3BCState, key: jax.Array, bc: bool):
        k_sample, k_batch, k_loss = jax.random.split(key, 3)
        mb = state.buffer.sample(k_sample, config.batch_size)
        mb = hooks.transform_batch(state.methods, mb, k_batch)  # hook: transform_batch
        grads, info = jax.grad(total_loss, has_aux=True)(
            state.params, state.target_params, mb, k_loss, state.methods, bc)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        params = {**params, "obs_norm": state.params["obs_norm"]}  # statistics, not weights
        steps = state.gradient_steps + 1
        delayed = steps % config.policy_delay == 0
        networks = {name: params[name] for name in ("actor", "q1", "q2")}
        state = state.replace(
            params=params,
            target_params=polyak(state.target_params, networks,
                                 jnp.where(delayed, config.tau, 0.0)),
            opt_state=opt_state, gradient_steps=steps)
        return state, info

    def train(state: TD3BCState, key: jax.Array, bc: bool = True):
        return jax.lax.scan(partial(gradient_step, bc=bc), state,
                            jax.random.split(key, gradient_steps))

    def update(state: TD3BCState, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        return store_and_learn(state, batch, key, hooks, config.learning_starts,
                               partial(train, bc=config.bc_online))

    def learn(state: TD3BCState, dataset: ReplayBuffer, key: jax.Array):
        if config.normalise_obs:  # this dataset's statistics, for learning and acting
            state = state.replace(params={**state.params, "obs_norm": dataset_stats(dataset)})
        # hooks: observe, then (after the gradient steps) after_update
        return learn_from_dataset(state, dataset, key, hooks=hooks, train=train)

    return Agent("td3_bc", config.num_envs, config.train_every, init, act, greedy_action,
                 update, restarting_boundary(hooks, config.explore_each_task), view,
                 hooks.agent_for_task, learn, hooks.agent_guide)
