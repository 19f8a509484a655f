"""Continual-learning methods as plug-ins: pure functions over a method-state pytree, called at
fixed points of an agent's learning (DESIGN.md, "Method hooks"). A method never patches an
agent's internals; the agent calls the hooks, and several methods compose in the order given.

Hooks (every one optional; the defaults do nothing):
- `init(key, params) -> state`
- `on_task_start(state, params, task, key)`, `on_task_end(state, params, task, key)`
  `-> (state, params)`: only where the scenario shows its task boundaries.
- `observe(state, data, task, key) -> state`: sees the data of every `update` call in the
  agent's minibatch format (flat arrays with at least "obs"; PPO adds "action", "log_prob",
  "advantage", "return"; DQN "action", "reward", "terminated", "next_obs"). Replay stores and
  episodic memories fill up here. (An addition to DESIGN.md's list: storing what arrives and
  changing what is trained on are different moments for an off-policy agent.)
- `transform_batch(state, minibatch, key) -> minibatch`: replay mixing.
- `extra_loss(state, params, minibatch) -> scalar`: added to the agent's loss (EWC, L2-init,
  distillation).
- `gradient_transformation`: an Optax link applied to the raw gradients before the agent's
  optimiser, `update_transformation` one applied to the optimiser's output (a mask that must
  hold exactly goes there: Adam would otherwise move masked weights on old momentum). Both get
  the extra arguments `method_state` (this method's state), `loss_grad` (gradient of the
  agent's own loss at the current params on any minibatch: A-GEM's reference gradient) and
  `gradients` (the raw gradients the agent's optimiser was given: UPGD's utility).
- `after_update(state, params, key) -> (state, params)`: weight surgery, once per `update`.

The composed state is a dict `{"task": int32, "recent": <latest rows>, <method name>: <its
state>, ...}` stored in the agent state, so checkpoints and resume cover it with no extra code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
MethodState = Any


class AgentView(NamedTuple):
    """What a method may use of the agent it plugs into."""

    agent: str  # "ppo" | "dqn" | "sac" | "td3"
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


def empty_rows(row: dict[str, jax.ShapeDtypeStruct], leading: tuple[int, ...],
               keys: tuple[str, ...] | None = None) -> dict[str, jax.Array]:
    """Zeroed room for rows of a minibatch format (`view.minibatch_row`): arrays of shape
    `leading + row shape`, for every key or only `keys`."""
    return {key: jnp.zeros((*leading, *spec.shape), spec.dtype) for key, spec in row.items()
            if keys is None or key in keys}


# -- a fixed-size store of the most recent rows (diagnostics, ewc, mas) ----------------------

def empty_store(view: AgentView, capacity: int, keys: tuple[str, ...] | None = None) -> dict:
    """Room for `capacity` rows of the agent's minibatch format (only `keys` if given)."""
    rows = empty_rows(view.minibatch_row, (capacity,), keys)
    return {"rows": rows, "position": jnp.zeros((), jnp.int32), "size": jnp.zeros((), jnp.int32)}


def store_rows(store: dict, data: dict) -> dict:
    """Write the newest rows of `data` over the oldest ones of the store."""
    capacity = store["rows"]["obs"].shape[0]
    count = min(data["obs"].shape[0], capacity)  # a static shape: keep only the newest rows
    slots = (store["position"] + jnp.arange(count)) % capacity
    rows = {key: column.at[slots].set(data[key][-count:].astype(column.dtype))
            for key, column in store["rows"].items()}
    return {"rows": rows, "position": (store["position"] + count) % capacity,
            "size": jnp.minimum(store["size"] + count, capacity)}


def clear_store(store: dict) -> dict:
    return {**store, "position": jnp.zeros_like(store["position"]),
            "size": jnp.zeros_like(store["size"])}


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


def _bind(name: str, link: optax.GradientTransformationExtraArgs):
    """Give a method's Optax link its own state out of the composed method state."""

    def update(updates, state, params=None, *, method_states=None, loss_grad=None,
               gradients=None, **extra):
        return link.update(updates, state, params, method_state=method_states[name],
                           loss_grad=loss_grad, gradients=gradients)

    return optax.GradientTransformationExtraArgs(link.init, update)


RECENT_ROWS = 256  # the agent's latest training rows kept for the plasticity diagnostics


class Hooks:
    """The methods of one run, composed: what an agent calls at each hook point. Also keeps
    the agent's latest `RECENT_ROWS` training rows in `state["recent"]`, which the plasticity
    diagnostics measure on (storing them consumes no key and changes no training)."""

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
                 "recent": empty_store(self.view, RECENT_ROWS)}
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

    def agent_task_boundary(self, agent_state: Any, ended: jax.Array, started: jax.Array,
                            key: jax.Array) -> Any:
        """`Agent.task_boundary` for an agent state with `params` and `methods` fields."""
        methods, params = self.task_boundary(agent_state.methods, agent_state.params, ended,
                                             started, key)
        return agent_state.replace(params=params, methods=methods)

    def observe(self, state: dict, data: dict, key: jax.Array) -> dict:
        state = dict(state)
        state["recent"] = store_rows(state["recent"], data)
        for m, k in zip(self.methods, jax.random.split(key, max(len(self.methods), 1))):
            state[m.name] = m.observe(state[m.name], data, state["task"], k)
        return state

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

    def after_update(self, state: dict, params: Params, key: jax.Array) -> tuple[dict, Params]:
        state = dict(state)
        for m, k in zip(self.methods, jax.random.split(key, max(len(self.methods), 1))):
            if m.after_update is not None:
                state[m.name], params = m.after_update(state[m.name], params, k)
        return state, params
