"""Pieces every agent shares: the agent interface, MLPs, and the store-then-learn step of the
off-policy agents (DQN, SAC, TD3); their transition batch and replay buffer are
`everlearn.core.replay`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, Field

from everlearn.core.lockstep import in_lockstep
from everlearn.core.replay import EPISODE_KEYS, ReplayBuffer, Transition
from everlearn.envs.layout import MASKED_OUTPUT


def boundary_setting(default: Any) -> Any:
    """An agent setting that acts only at task boundaries (an exploration restart, a reset of
    the buffer or optimiser): marked so, a run with a single task (the reference runs) knows
    that the setting changes nothing for it (`boundary_settings`)."""
    return Field(default, json_schema_extra={"task_boundaries_only": True})


def boundary_settings(config: BaseModel) -> tuple[str, ...]:
    """The names of `config`'s settings marked with `boundary_setting`."""
    return tuple(name for name, field in type(config).model_fields.items()
                 if isinstance(field.json_schema_extra, dict)
                 and field.json_schema_extra.get("task_boundaries_only"))


class EnvSpec(NamedTuple):
    obs_dim: int
    num_actions: int  # discrete: number of actions; continuous: size of the action vector
    num_tasks: int = 1  # tasks in the scenario (methods with per-task state size by it)
    # >1: the last `heads` observation entries are a task one-hot, and every network's output
    # layer has one head per task, chosen by it (the `multi_head` method).
    heads: int = 1
    continuous: bool = False  # actions are vectors in [-1, 1]^num_actions
    # The observation layout (`everlearn.envs.layout`): an image (H, W, C) flattened at the
    # front of the observation (empty: a vector), and where the tasks' action sets differ, a
    # 0/1 mask of the task's actions as its last `num_actions` entries.
    image_shape: tuple[int, ...] = ()
    masked: bool = False


# Convolutional torsos for image observations, as (features, kernel, stride) per layer:
# Mnih et al. (2015)'s for Atari-sized frames, Young & Tian (2019)'s one layer for MinAtar's
# 10x10 grids. "auto" picks by the smaller image side.
CONV_TORSOS = {
    "nature": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
    "minatar": ((16, 3, 1),),
}


def torso_options(spec: EnvSpec, cnn: str = "auto") -> dict[str, Any]:
    """The `MLP` fields that read `spec`'s observation layout (image torso, action mask)."""
    if not spec.image_shape:
        conv = ()
    elif cnn == "auto":
        conv = CONV_TORSOS["nature" if min(spec.image_shape[:2]) >= 36 else "minatar"]
    else:
        conv = CONV_TORSOS[cnn]
    return {"image_shape": tuple(spec.image_shape), "conv": conv,
            "action_mask": spec.num_actions if spec.masked else 0}


def valid_actions(spec: EnvSpec, obs: jax.Array) -> jax.Array | None:
    """The task's action mask carried by `obs` (None where every task has every action)."""
    return obs[..., -spec.num_actions:] if spec.masked else None


def uniform_actions(key: jax.Array, spec: EnvSpec, obs: jax.Array) -> jax.Array:
    """A uniformly random discrete action per row, among the actions the task has."""
    mask = valid_actions(spec, obs)
    if mask is None:
        return jax.random.randint(key, (obs.shape[0],), 0, spec.num_actions)
    return jax.random.categorical(key, jnp.where(mask > 0, 0.0, -jnp.inf))


class Agent(NamedTuple):
    """An RL algorithm as pure functions over an explicit state pytree.

    The run loops of both paths call these and nothing else:
    - `init(key) -> state`
    - `act(state, obs[num_envs, d], key) -> (action[num_envs], extras)`: the exploring policy;
      `extras` (e.g. PPO's value and log-prob) are stored in the transition batch.
    - `greedy_action(state, obs) -> action`: the evaluation policy.
    - `update(state, batch, key) -> (state, metrics)`: learn from one rollout of
      `rollout_length` steps from each of `num_envs` envs (batch leaves are [T, num_envs, ...]).
    - `task_boundary(state, ended, started, key) -> state`: the scenario moved from task
      `ended` to task `started` (called only where it shows boundaries); runs the methods'
      `on_task_end` / `on_task_start` hooks.
    - `for_task(state, task) -> state`: the state that acts on task `task` in evaluation (the
      methods' per-task views of the params, e.g. PackNet's; else `state` itself).
    - `learn(state, dataset, key) -> (state, metrics)`: offline learning (off-policy agents
      only): the gradient steps of one update, sampled from `dataset` instead of the replay
      buffer; the env is never stepped.
    Every agent's state has a `methods` dict (see `everlearn.methods.base.Hooks`).
    """

    name: str
    num_envs: int
    rollout_length: int
    init: Callable[[jax.Array], Any]
    act: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
    greedy_action: Callable[[Any, jax.Array], jax.Array]
    update: Callable[[Any, "Transition", jax.Array], tuple[Any, dict[str, jax.Array]]]
    task_boundary: Callable[[Any, jax.Array, jax.Array, jax.Array], Any]
    view: Any = None  # the `AgentView` methods and diagnostics see (everlearn.methods.base)
    for_task: Callable[[Any, jax.Array], Any] = lambda state, task: state
    # `learn(state, dataset, key) -> (state, metrics)`: one update's gradient steps on a fixed
    # dataset (a full `ReplayBuffer`) instead of new env data (`learn_from_dataset`); None for
    # an agent that cannot learn offline (PPO).
    learn: Callable[[Any, "ReplayBuffer", jax.Array], tuple[Any, dict[str, jax.Array]]] | None = None
    # `guide(state, obs, action, episode_step[num_envs]) -> action`: the action the env takes
    # instead of `act`'s (the methods' `guide_action`, e.g. JSRL's guide policy); None: `act`'s.
    # Where it is set, the trainers count each env's episode steps and return, and put
    # `EPISODE_KEYS` in the batch's extras for the methods' `observe`.
    guide: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array] | None = None

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length


def elephant(x: jax.Array, a: float = 1.0, d: int = 4) -> jax.Array:
    """Elephant activation `1 / (1 + |x/a|^d)` (Lan & Mahmood, 2023, "Elephant Neural Networks:
    Born to Be a Continual Learner"): a bump of width `a` whose gradient is sparse (near zero
    away from the bump), so an update touches few features and interferes less with others."""
    return 1.0 / (1.0 + jnp.abs(x / a) ** d)


# "leaky_relu" has TensorFlow's slope 0.2 (`tf.nn.leaky_relu`, which Continual World's SAC
# uses), not Flax's and PyTorch's 0.01.
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "leaky_relu": partial(nn.leaky_relu,
                                                                         negative_slope=0.2),
                "elephant": elephant}


class Conv(nn.Module):
    """A VALID, strided 2-D convolution (NHWC) written as one matrix product over the image's
    shifted slices. It is `nn.Conv`'s layer exactly (same `kernel` (k, k, in, out) and `bias`
    parameters, same initialisation, outputs equal to float rounding; tested), but XLA runs
    it far faster on CPU for MinAtar's small frames, where its generic convolution dominated
    PPO's update: PPO on `minatar-sequence`, 10 vmapped seeds, 2,330 env steps/s with this
    layer, below 285 with `nn.Conv` (2 cores, 2026-11-30)."""

    features: int
    kernel_size: int
    stride: int = 1

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        k, s, channels = self.kernel_size, self.stride, image.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        height, width = image.shape[-3:-1]
        out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
        # Patch feature (i, j, c) sits at (i * k + j) * channels + c, the kernel's own order.
        patches = jnp.concatenate(
            [image[..., i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
             for i in range(k) for j in range(k)], axis=-1)
        return patches @ kernel.reshape(k * k * channels, self.features) + bias


class MLP(nn.Module):
    """Fully connected network with orthogonal initialisation (as in PPO implementations).

    With `heads` > 1 the input ends in a task one-hot of that length: the hidden layers see the
    observation without it, and the one-hot picks one of `heads` output layers.
    `return_hidden=True` also returns each hidden layer's output (after its activation), for
    plasticity diagnostics and weight surgery.
    `layer_norm=True` puts a LayerNorm between each hidden layer's Dense and its activation (Ba
    et al., 2016; it keeps pre-activations well scaled, which Lyle et al., 2023/2024 find
    preserves plasticity); its params are `LayerNorm_k`, next to the unchanged `Dense_k`.
    `activation="elephant"` uses `elephant` with width `elephant_a` and slope `elephant_d`.
    `first_layer_norm=True` is Continual World's network: the first hidden layer is Dense,
    LayerNorm, tanh; the others Dense and `activation` (Wołczyk et al., 2021, `sac/models.py`).
    The observation layout (`EnvSpec`, `torso_options`): with `image_shape`, the first
    prod(image_shape) inputs are an image that `conv` layers (ReLU, VALID) read before the
    dense layers, the rest (a task id) joining after them; with `action_mask` > 0 the last
    that many inputs are the task's action mask, never a feature, and with `mask_output` the
    outputs of absent actions are `MASKED_OUTPUT` (a policy's logits, Q-values).
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    out_scale: float = 1.0
    heads: int = 1
    layer_norm: bool = False
    first_layer_norm: bool = False
    elephant_a: float = 1.0
    elephant_d: int = 4
    image_shape: tuple[int, ...] = ()
    conv: tuple[tuple[int, int, int], ...] = ()
    action_mask: int = 0
    mask_output: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        if self.activation == "elephant":
            act = partial(elephant, a=self.elephant_a, d=self.elephant_d)
        else:
            act = _ACTIVATIONS[self.activation]
        if self.action_mask:
            x, mask = x[..., :-self.action_mask], x[..., -self.action_mask:]
        if self.heads > 1:
            x, onehot = x[..., :-self.heads], x[..., -self.heads:]
        if self.image_shape:
            size = int(np.prod(self.image_shape))
            image = x[..., :size].reshape(*x.shape[:-1], *self.image_shape)
            for features, kernel, stride in self.conv:
                image = nn.relu(Conv(features, kernel, stride)(image))
            x = jnp.concatenate([image.reshape(*x.shape[:-1], -1), x[..., size:]], axis=-1)
        hidden = []
        for k, size in enumerate(self.hidden_sizes):
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x)
            if self.layer_norm or (self.first_layer_norm and k == 0):
                x = nn.LayerNorm()(x)
            x = nn.tanh(x) if self.first_layer_norm and k == 0 else act(x)
            hidden.append(x)
        out_init = nn.initializers.orthogonal(self.out_scale)
        if self.heads == 1:
            out = nn.Dense(self.out_size, kernel_init=out_init)(x)
        else:
            per_head = nn.Dense(self.out_size * self.heads, kernel_init=out_init)(x)
            per_head = per_head.reshape(*x.shape[:-1], self.heads, self.out_size)
            out = jnp.einsum("...h,...ho->...o", onehot, per_head)
        if self.action_mask and self.mask_output:
            out = jnp.where(mask > 0, out, MASKED_OUTPUT)
        return (out, hidden) if return_hidden else out


def polyak(target: Any, online: Any, tau: float | jax.Array) -> Any:
    """Move target parameters a fraction `tau` towards the online ones (1: a hard copy)."""
    return jax.tree.map(lambda t, p: tau * p + (1 - tau) * t, target, online)


def store_and_learn(state: Any, batch: Transition, key: jax.Array, hooks: Any,
                    learning_starts: int, train: Callable[[Any, jax.Array], tuple[Any, dict]]):
    """The `update` of an off-policy agent, around its own `train(state, key)` (a `lax.scan`
    of gradient steps on replay samples): the methods `observe` the new transitions, they go
    into the replay buffer, `train` runs once the buffer holds `learning_starts` rows, and
    the methods' weight surgery (`after_update`) follows it — only where gradient steps were
    taken, so a method's "per step" counts steps that happened. `state` has the fields
    `buffer`, `env_steps`, `methods`, `params` and `opt_state`. Returns (state, mean of
    `train`'s metrics)."""
    n = batch.reward.size
    flat = jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), batch)
    episodes = {k: flat.extras[k] for k in EPISODE_KEYS if k in flat.extras}  # Agent.guide
    method_state = hooks.observe(  # hook: observe (params: those that acted on `batch`)
        state.methods,
        {"obs": flat.obs, "action": flat.action, "reward": flat.reward,
         "terminated": flat.terminated, "next_obs": flat.next_obs, **episodes},
        state.params, jax.random.fold_in(key, 1))
    state = state.replace(buffer=state.buffer.add(batch), env_steps=state.env_steps + n,
                          methods=method_state)

    def learn(state: Any, key: jax.Array):
        state, info = train(state, key)
        if hooks.has_after_update:  # hook: after_update (weight surgery, optimiser moments)
            methods, params, opt_state = hooks.after_update(
                state.methods, state.params, state.opt_state, jax.random.fold_in(key, 2))
            state = state.replace(methods=methods, params=params, opt_state=opt_state)
        return state, info

    def skip(state: Any, key: jax.Array):
        info = jax.eval_shape(lambda: train(state, key)[1])
        return state, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), info)

    learning = in_lockstep(state.buffer.size >= learning_starts)
    state, info = jax.lax.cond(learning, learn, skip, state, key)
    return state, jax.tree.map(jnp.mean, info)


def learn_from_dataset(state: Any, dataset: ReplayBuffer, key: jax.Array, hooks: Any,
                       train: Callable[[Any, jax.Array], tuple[Any, dict]]):
    """`Agent.learn` of an off-policy agent: its own `train(state, key)` (a `lax.scan` of
    gradient steps on replay samples) with `dataset` standing in for the replay buffer, which
    is put back untouched afterwards (the dataset is the trainer's, shared by every seed, and
    never part of the agent state or its checkpoints). The methods `observe` one fresh
    dataset row per gradient step first — what the agent learns from is what they see, so a
    replay memory fills with a uniform sample of the datasets learnt so far — and their
    weight surgery (`after_update`) follows, as in `store_and_learn`. Returns (state, mean of
    `train`'s metrics)."""
    k_rows, k_observe, k_train, k_after = jax.random.split(key, 4)
    steps = hooks.view.gradient_steps_per_update
    method_state = hooks.observe(  # hook: observe (the rows this update learns from)
        state.methods, dataset.sample(k_rows, steps), state.params, k_observe)
    own_buffer = state.buffer
    state, info = train(state.replace(buffer=dataset, methods=method_state), k_train)
    if hooks.has_after_update:  # hook: after_update (weight surgery, optimiser moments)
        methods, params, opt_state = hooks.after_update(
            state.methods, state.params, state.opt_state, k_after)
        state = state.replace(methods=methods, params=params, opt_state=opt_state)
    return state.replace(buffer=own_buffer), jax.tree.map(jnp.mean, info)


def restarting_boundary(hooks: Any, explore_each_task: bool | None):
    """`Agent.task_boundary` of an off-policy agent: the methods' `on_task_end` /
    `on_task_start` hooks, then — unless `explore_each_task` is False — its exploration
    restarts: `explore_from` <- `env_steps`, so DQN's epsilon schedule and SAC/TD3's random
    warm-up count env steps from the task's start, as a single-task reference's do. Only
    exploration restarts: the replay buffer is kept, and gradient steps go on (their
    `learning_starts` gate reads the buffer's size). None counts as on: a run calls this only
    where the scenario shows its boundaries."""

    def task_boundary(state: Any, ended: jax.Array, started: jax.Array, key: jax.Array) -> Any:
        state = hooks.agent_task_boundary(state, ended, started, key)
        if explore_each_task is False:
            return state
        return state.replace(explore_from=state.env_steps)

    return task_boundary


# -- continuous control (SAC, TD3) --------------------------------------------------------------

def twin_q(q_net: nn.Module, params: dict, obs: jax.Array,
           action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The values of `params["q1"]` and `params["q2"]` for (obs, action) pairs. The critics'
    input is [action, obs]: a task one-hot stays last, where a multi-head MLP looks for it."""
    critic_input = jnp.concatenate([action, obs], axis=-1)
    return (q_net.apply(params["q1"], critic_input)[..., 0],
            q_net.apply(params["q2"], critic_input)[..., 0])


def random_actions(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform continuous actions in [-1, 1] (the warm-up before learning starts)."""
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


def gradient_steps_per_update(agent: str, config: Any) -> int:
    """`utd_ratio` gradient steps per env step, for the `train_every * num_envs` env steps
    of one update; a whole number, or the config is refused with the fix."""
    steps = config.train_every * config.num_envs * config.utd_ratio
    if steps < 1 or abs(steps - round(steps)) > 1e-6:
        raise ValueError(
            f"{agent}: train_every x num_envs x utd_ratio = {steps:g} gradient steps per "
            "update; make it a whole number >= 1 (e.g. train_every=4 with utd_ratio=0.25)")
    return int(round(steps))
