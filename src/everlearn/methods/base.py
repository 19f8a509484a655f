"""Continual-learning methods as plug-ins: pure functions over a method-state pytree, called at
fixed points of an agent's learning (DESIGN.md, "Method hooks"). A method never patches an
agent's internals; the agent calls the hooks, and several methods compose in the order given.

Hooks (every one optional; the defaults do nothing):
- `init(key, params) -> state`
- `on_task_start(state, params, task, key)`, `on_task_end(state, params, task, key)`
  `-> (state, params)`: only where the scenario shows its task boundaries.
- `observe(state, data, task, key) -> state`: sees the data of every `update` call in the
  agent's minibatch format (flat arrays with at least "obs"; PPO adds "action", "log_prob",
  "advantage", "return"; DQN "action", "reward", "terminated", "next_obs"), plus
  `data["behaviour"]`: the acting policy's outputs on each row's observation at collection
  time, in `view.outputs`'s format (PPO logits and value, DQN Q-values, SAC/TD3 action) — the
  outputs of the params `update` starts with, which are the params that acted on its data (an
  agent's params change only in `update` and at task boundaries, which fall between updates).
  Replay stores and episodic memories fill up here. (An addition to DESIGN.md's list: storing
  what arrives and changing what is trained on are different moments for an off-policy agent.)
- `guide_action(state, obs, action, episode_step) -> action`: the action an env takes instead
  of the agent's own (`action`, from its exploring policy) while training; `episode_step` is
  each env's step count in its current episode (0 at an episode's first step). The trainers
  call it only where a method has it (`Agent.guide`), and then also hand `observe` two more
  columns per row: `episode_end` (bool: the row ends an episode) and `episode_return` (the
  episode's return up to and including the row). JSRL's guide policy and curriculum.
- `transform_batch(state, minibatch, key) -> minibatch`: replay mixing; called once per
  gradient step with a fresh key. A method may also add an entry under its own name for its
  `extra_loss` to read (`bc_replay`: replayed rows drawn fresh for each gradient step).
- `extra_loss(state, params, minibatch) -> scalar`: added to the agent's loss (EWC, L2-init,
  distillation).
- `gradient_transformation`: an Optax link applied to the raw gradients before the agent's
  optimiser, `update_transformation` one applied to the optimiser's output (a mask that must
  hold exactly goes there: Adam would otherwise move masked weights on old momentum). Both get
  the extra arguments `method_state` (this method's state), `loss_grad` (gradient of the
  agent's own loss at the current params on any minibatch: A-GEM's reference gradient) and
  `gradients` (the raw gradients the agent's optimiser was given: UPGD's utility).
- `after_update(state, params, opt_state, recent, key) -> (state, params, opt_state)`: weight
  surgery, once per `update` that took gradient steps (an off-policy agent still filling its
  buffer takes none, and no surgery happens). `recent` is the store of the agent's latest
  training rows (below); `opt_state` is the agent's optimiser state, which a method changes
  only through `view.reset_moments(opt_state, mask)`.

The optimiser state, and the one way a method touches it: a method that re-initialises weights
(ReDo, continual backprop) zeroes their Adam moments, as both papers do, with
`view.reset_moments(opt_state, mask)`, `mask` a bool tree shaped like `params` (True: a weight
just re-initialised). It zeroes the first and second moments of those weights in every Adam
state of the agent's optimiser (SAC's and TD3's several Adams included; SAC's temperature has
its own optimiser, outside `opt_state`, and is no network weight) and leaves every other entry
bit-identical. Optax keeps one step count per Adam, shared by all weights, so a reset weight is
not bias-corrected as a fresh one (the authors' AdamGnT counts steps per weight): a deliberate
difference, listed in each method's docstring. Other state of the chain (a method's own Optax
link, e.g. UPGD's utilities) is not touched.

The composed state is a dict `{"task": int32, "recent": <latest rows>, <method name>: <its
state>, ...}` stored in the agent state, so checkpoints and resume cover it with no extra code.
`recent` holds the latest `max(RECENT_ROWS, view.env_steps_per_update)` training rows, so it
always holds every row of the last update: the plasticity diagnostics and the surgery methods
measure on it (`filled_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from everlearn.core.rows import empty_rows, store_rows

Params = Any
MethodState = Any


def reset_adam_moments(opt_state: Any, mask: Params) -> Any:
    """Zero the first and second moments of the weights where `mask` (a bool tree shaped like
    the params) is True, in every Adam state of an Optax state; everything else is returned
    bit-identical. Adam states that cover only part of the params (TD3's `multi_transform`:
    `MaskedNode` where another Adam holds the weight) are reset where they hold a weight."""

    def zero(where, moment):
        if isinstance(moment, optax.MaskedNode):
            return moment
        return jnp.where(where, jnp.zeros_like(moment), moment)

    def reset(node):
        if isinstance(node, optax.ScaleByAdamState):
            return node._replace(mu=jax.tree.map(zero, mask, node.mu),
                                 nu=jax.tree.map(zero, mask, node.nu))
        return node

    return jax.tree.map(reset, opt_state,
                        is_leaf=lambda node: isinstance(node, optax.ScaleByAdamState))


# What a method can ask of an agent: the capabilities agent entries declare
# (`everlearn.agents.AgentEntry.capabilities`) and method entries require
# (`everlearn.methods.MethodEntry.requires`); the run's checks match the two.
OFF_POLICY = "off_policy"  # minibatch rows are transitions any policy's TD loss can learn from
POLICY_NETWORK = "policy_network"  # one network it acts with (`AgentView.policy_network`)
SQUASHED_GAUSSIAN = "squashed_gaussian_policy"  # SAC's tanh-Gaussian actor (Continual World's)


class DataSource(NamedTuple):
    """The data a method that takes data asks for (`MethodEntry.data_source`): a local Minari
    dataset id or a built-in recipe ("random", "medium", "expert") of the scenario task named
    `task` (None: the first), or the replay buffer of seed `run_seed_index` in an earlier run's
    newest checkpoint (`run`, a run directory). Exactly one of `dataset` and `run` is set (the
    run's checks refuse anything else)."""
    dataset: str | None
    task: str | None
    run: str | None
    run_seed_index: int = 0

    def task_index(self, task_names: list[str]) -> int:
        return task_names.index(self.task) if self.task else 0


# The data reaches the method in its state, under this key, for one training segment only: the
# trainer puts it in (`with_method_data`) and takes it out again, so checkpoints never carry it.
DATA_KEY = "data"


def with_method_data(methods: dict, data: dict[str, Any]) -> dict:
    """The composed method state with each data-taking method's data put in (`data`: method
    name -> its rows; with a leading seed axis where `methods` has one)."""
    return {**methods, **{name: {**methods[name], DATA_KEY: rows}
                          for name, rows in data.items()}}


class AgentView(NamedTuple):
    """What a method may use of the agent it plugs into."""

    agent: str  # the agent's name: "ppo", "dqn", "sac", "td3", "td3_bc", "iql", "cql", "cql_dqn"
    off_policy: bool
    # Named network outputs for a batch of observations: PPO {"logits", "value"}, DQN {"q"},
    # SAC and TD3 {"action"} (the deterministic action).
    outputs: Callable[[Params, jax.Array], dict[str, jax.Array]]
    # Logits of the acting policy (PPO: the actor; DQN: the Q-values, read as logits); None
    # for continuous actions.
    policy_logits: Callable[[Params, jax.Array], jax.Array] | None
    # The agent's own loss on one minibatch of its format, without any method's terms.
    loss: Callable[[Params, dict], jax.Array]
    # Names of the networks in `params` whose outputs the policy depends on.
    networks: tuple[str, ...]
    num_tasks: int
    obs_dim: int  # width of the observations the agent takes (a task one-hot included)
    # Shape and dtype of one row of the agent's minibatch format (what `observe` receives).
    minibatch_row: dict[str, jax.ShapeDtypeStruct]
    # Each network's hidden-layer outputs (after the activation), first layer first:
    # {network: [h_1 [n, width_1], ...]}. Dense layer k of a network is `Dense_k` in its params.
    activations: Callable[[Params, jax.Array], dict[str, list[jax.Array]]] | None = None
    # Mean entropy of the policy on a batch of observations, where it is not a softmax over
    # `policy_logits` (SAC: its Gaussian's); None with no logits: no entropy (TD3).
    policy_entropy: Callable[[Params, jax.Array], jax.Array] | None = None
    # (mean, standard deviation) of a Gaussian policy before any squashing, each
    # [batch, action size] (SAC); None for other policies. Continual World's EWC and MAS
    # (which squash the mean with the tanh the actor acts with).
    policy_gaussian: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]] | None = None
    # What one `update` call covers: env steps (PPO: num_envs * num_steps; DQN, SAC, TD3:
    # train_every * num_envs) and optimiser steps (PPO: num_epochs * num_minibatches; DQN:
    # gradient_steps; SAC, TD3: utd_ratio * env steps). Rates "per step" convert with these.
    env_steps_per_update: int = 1
    gradient_steps_per_update: int = 1
    # `reset_moments(opt_state, mask) -> opt_state`: zero the optimiser moments of the weights
    # where the params-shaped bool tree `mask` is True (see the module docstring).
    reset_moments: Callable[[Any, Params], Any] = reset_adam_moments
    # Output heads per network (`multi_head`: one per task, the output layer's units grouped
    # head by head), else 1.
    heads: int = 1
    # The network the agent acts with, where it has one that a method may pack or anchor alone
    # (PackNet, Continual World's regularisers): PPO, SAC, TD3 "actor", DQN "q"; else None.
    policy_network: str | None = None


# -- a fixed-size store of the most recent rows (the hooks' `recent`, ewc, mas) -------------

def empty_store(view: AgentView, capacity: int, keys: tuple[str, ...] | None = None) -> dict:
    """Room for `capacity` rows of the agent's minibatch format (only `keys` if given)."""
    rows = empty_rows(view.minibatch_row, (capacity,), keys)
    return {"rows": rows, "position": jnp.zeros((), jnp.int32), "size": jnp.zeros((), jnp.int32)}


# -- per-weight statistics over stored rows (ewc, mas) -------------------------------------

def weighted_sum_over_rows(per_row, params: Params, rows, weights: jax.Array) -> Params:
    """Σ_n weights[n] · per_row(params, rows[n]), a params-shaped tree. Per-row gradients come
    from `vmap` in chunks, so memory holds one chunk of gradients, not one per row."""
    count = weights.shape[0]
    chunk = max(d for d in range(1, min(count, 64) + 1) if count % d == 0)
    chunked = jax.tree.map(lambda x: x.reshape(count // chunk, chunk, *x.shape[1:]),
                           (rows, weights))

    def add_chunk(total, inputs):
        chunk_rows, chunk_weights = inputs
        values = jax.vmap(per_row, in_axes=(None, 0))(params, chunk_rows)
        return jax.tree.map(
            lambda t, v: t + jnp.tensordot(chunk_weights, v, axes=1), total, values), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.scan(add_chunk, zeros, chunked)[0]


def normalise_by_mean(importance: Params) -> Params:
    """Divide by the mean over every weight. Fisher (and MAS) magnitudes scale with the reward
    scale, the agent and the source of the estimate; after this the mean importance is 1, so
    `strength` means the same everywhere. The mean, not the max: the max is set by the single
    most sensitive weight (often an output bias), which would squash all others towards 0."""
    leaves = jax.tree.leaves(importance)
    mean = sum(jnp.sum(x) for x in leaves) / sum(x.size for x in leaves)
    return jax.tree.map(lambda x: x / jnp.maximum(mean, 1e-30), importance)


def weighted_squared_distance(params: Params, anchor: Params, weights: Params) -> jax.Array:
    """Σ_i weights_i (θ_i − anchor_i)²."""
    leaves = jax.tree.leaves(jax.tree.map(lambda p, a, w: jnp.sum(w * (p - a) ** 2),
                                          params, anchor, weights))
    return sum(leaves, jnp.zeros(()))


def _identity_boundary(state, params, task, key):
    return state, params


class Method(NamedTuple):
    name: str
    needs_boundaries: bool = False
    init: Callable[[jax.Array, Params], MethodState] = lambda key, params: {}
    on_task_start: Callable = _identity_boundary
    on_task_end: Callable = _identity_boundary
    observe: Callable = lambda state, data, task, key: state
    transform_batch: Callable = lambda state, minibatch, key: minibatch
    extra_loss: Callable | None = None
    gradient_transformation: optax.GradientTransformationExtraArgs | None = None
    update_transformation: optax.GradientTransformationExtraArgs | None = None
    after_update: Callable | None = None
    # `task_params(state, params, task, current) -> params`: the params that act on task
    # `task` while the agent trains task `current` (PackNet's per-task view); None: the same
    # params for every task.
    task_params: Callable | None = None
    # `guide_action(state, obs, action, episode_step) -> action` (see the module docstring);
    # None: the agent's own action is taken.
    guide_action: Callable | None = None


def _bind(name: str, link: optax.GradientTransformationExtraArgs):
    """Give a method's Optax link its own state out of the composed method state."""

    def update(updates, state, params=None, *, method_states=None, loss_grad=None,
               gradients=None, **extra):
        return link.update(updates, state, params, method_state=method_states[name],
                           loss_grad=loss_grad, gradients=gradients)

    return optax.GradientTransformationExtraArgs(link.init, update)


RECENT_ROWS = 256  # at least this many of the agent's latest training rows are kept


class Hooks:
    """The methods of one run, composed: what an agent calls at each hook point. Also keeps
    the agent's latest training rows in `state["recent"]` (at least `RECENT_ROWS`, and every row
    of the last update), which the plasticity diagnostics and the surgery methods measure on
    (storing them consumes no key and changes no training)."""

    def __init__(self, view: AgentView, methods: Sequence[Method] = ()):
        names = [m.name for m in methods]
        if len(set(names)) != len(names):
            raise ValueError(f"a method is listed twice: {names}")
        self.view, self.methods = view, tuple(methods)

    def __bool__(self) -> bool:
        return bool(self.methods)

    @property
    def has_after_update(self) -> bool:
        return any(m.after_update is not None for m in self.methods)

    def optimiser(self, *agent_links: optax.GradientTransformation):
        """The agent's optimiser with the methods' links around it: gradient links first,
        then the agent's own links, then update links."""
        before = [_bind(m.name, m.gradient_transformation) for m in self.methods
                  if m.gradient_transformation is not None]
        after = [_bind(m.name, m.update_transformation) for m in self.methods
                 if m.update_transformation is not None]
        chain = optax.chain(*before, *agent_links, *after)

        def update(updates, state, params=None, **extra):
            # Every link also sees the raw gradients the chain started from (UPGD's utility
            # needs them next to Adam's step).
            return chain.update(updates, state, params, gradients=updates, **extra)

        return optax.GradientTransformationExtraArgs(chain.init, update)

    def init(self, key: jax.Array, params: Params) -> dict:
        keys = jax.random.split(key, max(len(self.methods), 1))
        state = {"task": jnp.zeros((), jnp.int32),
                 "recent": empty_store(self.view, max(RECENT_ROWS,
                                                      self.view.env_steps_per_update))}
        for m, k in zip(self.methods, keys):
            state[m.name] = m.init(k, params)
        return state

    def task_boundary(self, state: dict, params: Params, ended: jax.Array, started: jax.Array,
                      key: jax.Array) -> tuple[dict, Params]:
        state = dict(state)
        k_end, k_start = jax.random.split(key)
        for m, k in zip(self.methods, jax.random.split(k_end, max(len(self.methods), 1))):
            state[m.name], params = m.on_task_end(state[m.name], params, ended, k)
        state["task"] = jnp.asarray(started, jnp.int32)
        for m, k in zip(self.methods, jax.random.split(k_start, max(len(self.methods), 1))):
            state[m.name], params = m.on_task_start(state[m.name], params, started, k)
        return state, params

    def params_for_task(self, state: dict, params: Params, task: jax.Array) -> Params:
        """The params that act on task `task` (evaluation): each method's view in turn."""
        for m in self.methods:
            if m.task_params is not None:
                params = m.task_params(state[m.name], params, task, state["task"])
        return params

    def agent_for_task(self, agent_state: Any, task: jax.Array) -> Any:
        """`Agent.for_task` for an agent state with `params` and `methods` fields."""
        if not any(m.task_params is not None for m in self.methods):
            return agent_state
        return agent_state.replace(
            params=self.params_for_task(agent_state.methods, agent_state.params, task))

    def agent_task_boundary(self, agent_state: Any, ended: jax.Array, started: jax.Array,
                            key: jax.Array) -> Any:
        """`Agent.task_boundary` for an agent state with `params` and `methods` fields."""
        methods, params = self.task_boundary(agent_state.methods, agent_state.params, ended,
                                             started, key)
        return agent_state.replace(params=params, methods=methods)

    def observe(self, state: dict, data: dict, params: Params, key: jax.Array) -> dict:
        """`params`: those that acted on `data` (the params `update` starts with)."""
        state = dict(state)
        state["recent"] = store_rows(state["recent"], data)
        # The acting policy's outputs at collection time (dead code, removed by XLA, unless a
        # method reads them).
        data = {**data, "behaviour": self.view.outputs(params, data["obs"])}
        for m, k in zip(self.methods, jax.random.split(key, max(len(self.methods), 1))):
            state[m.name] = m.observe(state[m.name], data, state["task"], k)
        return state

    @property
    def agent_guide(self) -> Callable | None:
        """`Agent.guide(agent_state, obs, action, episode_step) -> action` for an agent state
        with a `methods` field: each method's `guide_action` in turn; None where no method
        has one (the trainers then leave acting exactly as it was)."""
        guides = [m for m in self.methods if m.guide_action is not None]
        if not guides:
            return None

        def guide(agent_state: Any, obs: jax.Array, action: jax.Array,
                  episode_step: jax.Array) -> jax.Array:
            for m in guides:
                action = m.guide_action(agent_state.methods[m.name], obs, action, episode_step)
            return action

        return guide

    def transform_batch(self, state: dict, minibatch: dict, key: jax.Array) -> dict:
        for m, k in zip(self.methods, jax.random.split(key, max(len(self.methods), 1))):
            minibatch = m.transform_batch(state[m.name], minibatch, k)
        return minibatch

    def extra_loss(self, state: dict, params: Params, minibatch: dict) -> jax.Array:
        total = jnp.zeros(())
        for m in self.methods:
            if m.extra_loss is not None:
                total = total + m.extra_loss(state[m.name], params, minibatch)
        return total

    def after_update(self, state: dict, params: Params, opt_state: Any,
                     key: jax.Array) -> tuple[dict, Params, Any]:
        """Weight surgery after an update's gradient steps; returns the new method state,
        params and optimiser state (moments of re-initialised weights reset)."""
        state = dict(state)
        for m, k in zip(self.methods, jax.random.split(key, max(len(self.methods), 1))):
            if m.after_update is not None:
                state[m.name], params, opt_state = m.after_update(
                    state[m.name], params, opt_state, state["recent"], k)
        return state, params, opt_state
