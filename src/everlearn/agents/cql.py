"""CQL: conservative Q-learning (Kumar, Zhou, Tucker & Levine, 2020, "Conservative Q-Learning for
Offline Reinforcement Learning"), CQL(H) on a SAC backbone, for continuous actions in [-1, 1].

Networks: as SAC (`everlearn.agents.sac`): a tanh-squashed Gaussian actor (`params["actor"]`:
mean and log-std) with an automatically tuned entropy coefficient α, and twin Q critics
(`params["q1"]`, `params["q2"]`) with Polyak-averaged targets. Each critic's loss adds, to the
Bellman error against r + γ (1 − done) min(Q1', Q2')(s', a' ~ π(s')) (no entropy term: the
paper's "deterministic backup"), the conservative term of CQL(H)

    w · ( mean_s T · log Σ_j exp(x_j / T) − mean_(s,a)∈D Q(s, a) ),
    x = [Q(s, a_rand) − log U(a_rand),  Q(s, a'_π) − log π(a'_π | s'),  Q(s, a_π) − log π(a_π | s)]

over `num_sampled_actions` (10) actions of each kind: uniform in [-1, 1]^d (density 0.5^d),
sampled from the policy at s' and at s (held fixed) — the importance-sampled estimate of
log Σ_a exp Q(s, a). It pushes Q down on actions the policy or chance would pick, and up on the
data's actions, so the policy (SAC's objective, min of the critics) cannot exploit
overestimated actions that the data never tried.
With `lagrange=True`, w is scaled by a learned α' ≥ 0 (Adam on log α', at the critics' rate)
that grows while the conservative gap exceeds `lagrange_threshold` and shrinks below it.
For the first `bc_steps` gradient steps of the agent's life, the actor clones the data instead
(loss α log π(a_π | s) − log π(a | s), the authors' `policy_eval_start` warm-up).

Defaults and their sources (aviralkumar2907/CQL, commit 25c9984, `d4rl/examples/
cql_mujoco_new.py` and `d4rl/rlkit/torch/sac/cql.py`): actor Adam 1e-4, critics 3e-4 (the
paper's Gym-MuJoCo setting; 3e-5 for the actor in the authors' kitchen command,
`d4rl/README.md`), α's Adam at the actor's rate, α starting at 1 (log α = 0), target entropy
−d (`cql.py` `__init__`); τ 0.005, γ 0.99, batch 256, 10 sampled actions, temperature 1,
CQL(H) with importance sampling (`min_q_version=3`), deterministic backup, no max-backup, BC
warm-up 40,000 steps, three hidden layers of 256 for actor and critics (`cql_mujoco_new.py`
`variant` and argument defaults); the log-std clip [-5, 2] (`policies.py`). The conservative
weight w = 5.0 without the Lagrangian: the paper's Gym-MuJoCo setting, which young-geng/CQL
(`SimpleSAC/conservative_sac.py`, `cql_min_q_weight=5.0`, `cql_lagrange=False`) uses as its
default; the rlkit script's own argument defaults turn the Lagrangian on (threshold 5.0,
w 1.0), the paper's AntMaze / Adroit setting (`lagrange=True, lagrange_threshold=5.0,
min_q_weight=1.0` here).

Deliberate differences from the authors' code:
- One loss and one optimiser step over all networks per gradient step (as everlearn's SAC): the
  actor sees α and the critics before this step's updates (rlkit updates α first, then the
  policy, then the critics; the critics' targets and samples come from the policy before its
  update, as here).
- Orthogonal initialisation (everlearn's `MLP`; the output layer of the actor at scale 0.01)
  instead of rlkit's fan-in uniform and ±1e-3 output layers.
- The BC warm-up counts the agent's gradient steps over its whole life (offline and online),
  not per task; `bc_steps=0` turns it off (young-geng and d3rlpy have none). The BC
  log-likelihood of a data action at ±1 uses atanh of the action clipped to ±(1 − 1e-6), and
  the squashing correction log(1 − a² + 1e-6), as rlkit's `TanhNormal`.
- Online (`update`, offline-to-online): no random warm-up by default (`random_steps` = 0).
- `view.loss` (what methods see) uses the policy objective, not the BC warm-up one, and α at
  `init_alpha`.

d3rlpy's `CQLConfig` differs: [256, 256] networks; the Lagrangian on by default
(`alpha_learning_rate=1e-4`, `initial_alpha=1.0`, `alpha_threshold=10.0`,
`conservative_weight=5.0`, the weight multiplied by the gap minus the threshold); the target
action is the policy's mean action (`squashed_mu`), not a sample; no BC warm-up; the same
learning rates (actor 1e-4, critic 3e-4, temperature 1e-4) and 10 sampled actions.
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

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # rlkit's clip in CQL's `policies.py`
ATANH_CLIP = 1e-6  # rlkit's clamp of 1 ± a before atanh, and the squashing correction's eps


class CQLConfig(BaseModel):
    """Defaults are the authors' Gym-MuJoCo settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_envs: PositiveInt = 1
    train_every: PositiveInt = 1
    utd_ratio: PositiveFloat = 1.0  # gradient steps per env step; per `learn` call as TD3+BC
    buffer_size: PositiveInt = 1_000_000  # the agent's own buffer (online data only)
    batch_size: PositiveInt = 256
    learning_starts: NonNegativeInt = 1_000
    random_steps: NonNegativeInt = 0
    explore_each_task: bool | None = boundary_setting(None)
    actor_learning_rate: PositiveFloat = 1e-4  # also α's
    critic_learning_rate: PositiveFloat = 3e-4  # also α''s (with `lagrange`)
    gamma: Discount = 0.99
    tau: PolyakStep = 0.005
    init_alpha: PositiveFloat = 1.0
    target_entropy: float | None = None  # None: −(action size)
    backup_entropy: bool = False  # False: the paper's deterministic backup
    min_q_weight: NonNegative = 5.0  # w, the conservative term's weight
    num_sampled_actions: PositiveInt = 10  # of each kind (random, π at s, π at s')
    cql_temperature: PositiveFloat = 1.0  # T of the log-sum-exp
    lagrange: bool = False  # learn α' so that the conservative gap stays near the threshold
    lagrange_threshold: float = 5.0
    bc_steps: NonNegativeInt = 40_000  # gradient steps of behaviour cloning for the actor first
    hidden_sizes: HiddenSizes = (256, 256, 256)
    activation: Literal["tanh", "relu", "elephant"] = "relu"
    layer_norm: bool = False
    elephant_a: PositiveFloat = 1.0
    elephant_d: PositiveInt = 4


@struct.dataclass
class CQLState:
    params: dict  # {"actor", "q1", "q2"}
    target_params: dict  # {"q1", "q2"}
    opt_state: optax.OptState
    log_alpha: jax.Array
    alpha_opt_state: optax.OptState
    log_alpha_prime: jax.Array  # the Lagrangian's log α' (unused without `lagrange`)
    alpha_prime_opt_state: optax.OptState
    buffer: ReplayBuffer
    env_steps: jax.Array
    explore_from: jax.Array
    gradient_steps: jax.Array
    methods: dict[str, Any]


def conservative_gap(q_data: jax.Array, q_random: jax.Array, q_pi: jax.Array,
                     log_pi: jax.Array, q_pi_next: jax.Array, log_pi_next: jax.Array,
                     action_dim: int, temperature: float = 1.0) -> jax.Array:
    """CQL(H)'s importance-sampled gap, mean_s T logsumexp(x / T) − mean Q(s, a_data), for
    one critic: `q_data` [B]; the sampled actions' values and log-densities [B, N]."""
    log_uniform = action_dim * jnp.log(0.5)
    x = jnp.concatenate([q_random - log_uniform, q_pi_next - log_pi_next, q_pi - log_pi],
                        axis=1)
    return (temperature * jax.nn.logsumexp(x / temperature, axis=1)).mean() - q_data.mean()


def make_cql(config: CQLConfig, spec: EnvSpec,
             methods: Sequence[Callable[[AgentView], Method]] = ()) -> Agent:
    if not spec.continuous:
        raise ValueError("cql needs continuous actions; use cql_dqn for discrete ones")
    action_dim = spec.num_actions
    n = config.num_sampled_actions
    gradient_steps = gradient_steps_per_update("cql", config)
    target_entropy = (-float(action_dim) if config.target_entropy is None
                      else config.target_entropy)
    network_options = dict(activation=config.activation, heads=spec.heads,
                           layer_norm=config.layer_norm, elephant_a=config.elephant_a,
                           elephant_d=config.elephant_d)
    actor = MLP(config.hidden_sizes, 2 * action_dim, out_scale=0.01, **network_options)
    q_net = MLP(config.hidden_sizes, 1, **network_options)

    def gaussian(actor_params: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = jnp.split(actor.apply(actor_params, obs), 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def squash(mean: jax.Array, log_std: jax.Array, noise: jax.Array):
        """The squashed-Gaussian action for `noise` and its log-probability (with the tanh
        correction)."""
        pre_tanh = mean + jnp.exp(log_std) * noise
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
        log_prob -= (2 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2 * pre_tanh))).sum(-1)
        return jnp.tanh(pre_tanh), log_prob

    def sample(actor_params: dict, obs: jax.Array, key: jax.Array):
        """A squashed-Gaussian action and its log-probability (with the tanh correction)."""
        mean, log_std = gaussian(actor_params, obs)
        return squash(mean, log_std, jax.random.normal(key, mean.shape))

    def sample_n(mean: jax.Array, log_std: jax.Array, key: jax.Array):
        """`n` actions per row of the policy's [B, a] `mean` and `log_std` (one actor pass for
        all of them): [B, n, a] actions and [B, n] log-probabilities."""
        noise = jax.random.normal(key, (mean.shape[0], n, action_dim))
        return squash(mean[:, None], log_std[:, None], noise)

    def data_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
        """log π(a | s) of the data's actions (rlkit's TanhNormal, atanh of the clipped a)."""
        a = jnp.clip(action, -1.0 + ATANH_CLIP, 1.0 - ATANH_CLIP)
        z = (jnp.arctanh(a) - mean) * jnp.exp(-log_std)
        log_prob = -0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
        return (log_prob - jnp.log(1.0 - a**2 + ATANH_CLIP)).sum(-1)

    def greedy(params: dict, obs: jax.Array) -> jax.Array:
        return jnp.tanh(gaussian(params["actor"], obs)[0])

    def critic_values(params: dict, obs: jax.Array, actions: jax.Array):
        """Both critics at `obs` [B, d] for K actions each [B, K, a], in one pass of each
        critic over the B·K pairs: two [B, K] arrays."""
        repeated = jnp.broadcast_to(obs[:, None], (*actions.shape[:2], obs.shape[-1]))
        return twin_q(q_net, params, repeated, actions)

    def losses(params: dict, target_params: dict, alpha: jax.Array, alpha_prime: jax.Array,
               cloning: jax.Array, mb: dict, key: jax.Array):
        k_new, k_next, k_random, k_pi, k_pi_next = jax.random.split(key, 5)
        obs, next_obs, action = mb["obs"], mb["next_obs"], mb["action"]
        fixed = jax.lax.stop_gradient(params)
        # One actor pass at s (the actor's loss; held fixed, the samples at s) and one at s'.
        mean, log_std = gaussian(params["actor"], obs)
        next_mean, next_log_std = jax.lax.stop_gradient(gaussian(params["actor"], next_obs))
        # The actor: SAC's objective, or cloning the data during the warm-up.
        new_action, log_pi = squash(mean, log_std, jax.random.normal(k_new, mean.shape))
        q_new = jnp.minimum(*twin_q(q_net, fixed, obs, new_action))
        policy_term = jnp.where(cloning, data_log_prob(mean, log_std, action), q_new)
        actor_loss = jnp.mean(alpha * log_pi - policy_term)
        # The critics' Bellman error against the target critics at a' ~ π(s').
        next_action, next_log_pi = squash(next_mean, next_log_std,
                                          jax.random.normal(k_next, next_mean.shape))
        next_q = jnp.minimum(*twin_q(q_net, target_params, next_obs, next_action))
        if config.backup_entropy:
            next_q = next_q - alpha * next_log_pi
        target = jax.lax.stop_gradient(
            mb["reward"] + config.gamma * (1.0 - mb["terminated"]) * next_q)
        # The conservative term over random actions and policy actions at s and s' (fixed),
        # each critic evaluated once at s for the data's action and all 3N sampled ones.
        batch = obs.shape[0]
        random = jax.random.uniform(k_random, (batch, n, action_dim), minval=-1.0, maxval=1.0)
        pi, log_pi_n = sample_n(*jax.lax.stop_gradient((mean, log_std)), k_pi)
        pi_next, log_pi_next = sample_n(next_mean, next_log_std, k_pi_next)
        values = critic_values(params, obs, jnp.concatenate(
            [action[:, None], random, pi, pi_next], axis=1))
        # Per critic: Q at the data's actions [B], at the random ones, π(s)'s and π(s')'s [B, N].
        per_critic = [(v[:, 0], v[:, 1:1 + n], v[:, 1 + n:1 + 2 * n], v[:, 1 + 2 * n:])
                      for v in values]
        q1, q2 = (q_data for q_data, *_ in per_critic)
        bellman = jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)
        gaps = [conservative_gap(q_data, q_rand, q_pi, log_pi_n, q_pi_next, log_pi_next,
                                 action_dim, config.cql_temperature)
                for q_data, q_rand, q_pi, q_pi_next in per_critic]
        conservative = [config.min_q_weight * gap for gap in gaps]
        if config.lagrange:
            conservative = [alpha_prime * (c - config.lagrange_threshold) for c in conservative]
        critic_loss = bellman + conservative[0] + conservative[1]
        info = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q1.mean(),
                "entropy": -log_pi.mean(), "cql_gap": 0.5 * (gaps[0] + gaps[1]),
                "q_random": per_critic[0][1].mean()}
        return critic_loss + actor_loss, info

    def plain_loss(params: dict, mb: dict) -> jax.Array:
        # What methods see as the agent's loss: targets from the same params held fixed, α at
        # its initial value, α' = 1, the policy objective (not the BC warm-up), a fixed key.
        return losses(params, jax.lax.stop_gradient(params), jnp.asarray(config.init_alpha),
                      jnp.ones(()), jnp.zeros((), bool), mb, jax.random.PRNGKey(0))[0]

    def policy_entropy(params: dict, obs: jax.Array) -> jax.Array:
        log_std = gaussian(params["actor"], obs)[1]
        return (log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1).mean()

    def activations(params: dict, obs: jax.Array) -> dict[str, list[jax.Array]]:
        critic_input = jnp.concatenate([greedy(params, obs), obs], axis=-1)
        return {"actor": actor.apply(params["actor"], obs, return_hidden=True)[1],
                **{name: q_net.apply(params[name], critic_input, return_hidden=True)[1]
                   for name in ("q1", "q2")}}

    view = AgentView(
        "cql", off_policy=True,
        outputs=lambda params, obs: {"action": greedy(params, obs)},
        policy_logits=None, loss=plain_loss, networks=("actor", "q1", "q2"),
        num_tasks=spec.num_tasks, heads=spec.heads, obs_dim=spec.obs_dim,
        minibatch_row=replay_row(spec.obs_dim, (action_dim,), jnp.float32),
        env_steps_per_update=config.train_every * config.num_envs,
        gradient_steps_per_update=gradient_steps, activations=activations,
        policy_entropy=policy_entropy)
    hooks = Hooks(view, [build(view) for build in methods])
    optimiser = hooks.optimiser(optax.multi_transform(
        {"actor": optax.adam(config.actor_learning_rate),
         "critic": optax.adam(config.critic_learning_rate)},
        lambda params: {name: jax.tree.map(lambda _: "actor" if name == "actor" else "critic",
                                           tree) for name, tree in params.items()}))
    alpha_optimiser = optax.adam(config.actor_learning_rate)
    alpha_prime_optimiser = optax.adam(config.critic_learning_rate)

    def init(key: jax.Array) -> CQLState:
        k_actor, k_q1, k_q2, k_methods = jax.random.split(key, 4)
        obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
        critic_input = jnp.zeros((1, action_dim + spec.obs_dim), jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "q1": q_net.init(k_q1, critic_input),
                  "q2": q_net.init(k_q2, critic_input)}
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        log_alpha_prime = jnp.zeros((), jnp.float32)
        return CQLState(
            params=params, target_params={"q1": params["q1"], "q2": params["q2"]},
            opt_state=optimiser.init(params), log_alpha=log_alpha,
            alpha_opt_state=alpha_optimiser.init(log_alpha), log_alpha_prime=log_alpha_prime,
            alpha_prime_opt_state=alpha_prime_optimiser.init(log_alpha_prime),
            buffer=ReplayBuffer.create(config.buffer_size, spec.obs_dim, (action_dim,),
                                       jnp.float32),
            env_steps=jnp.zeros((), jnp.int32), explore_from=jnp.zeros((), jnp.int32),
            gradient_steps=jnp.zeros((), jnp.int32), methods=hooks.init(k_methods, params))

    def greedy_action(state: CQLState, obs: jax.Array) -> jax.Array:
        return greedy(state.params, obs)

    def act(state: CQLState, obs: jax.Array, key: jax.Array):
        k_policy, k_random = jax.random.split(key)
        action = sample(state.params["actor"], obs, k_policy)[0]
        warming_up = state.env_steps - state.explore_from < config.random_steps
        return jnp.where(warming_up, random_actions(k_random, action.shape), action), {}

    def total_loss(params, target_params, alpha, alpha_prime, cloning, mb, key, method_state):
        loss, info = losses(params, target_params, alpha, alpha_prime, cloning, mb, key)
        if hooks:  # hook: extra_loss (EWC, L2-init, ...)
            method_loss = hooks.extra_loss(method_state, params, mb)
            loss, info = loss + method_loss, {**info, "method_loss": method_loss}
        return loss, info

    def gradient_step(state: CQLState, key: jax.Array):
        k_sample, k_batch, k_loss = jax.random.split(key, 3)
        mb = state.buffer.sample(k_sample, config.batch_size)
        mb = hooks.transform_batch(state.methods, mb, k_batch)  # hook: transform_batch
        alpha = jnp.exp(state.log_alpha)
        alpha_prime = jnp.clip(jnp.exp(state.log_alpha_prime), 0.0, 1e6)
        cloning = state.gradient_steps < config.bc_steps
        grads, info = jax.grad(total_loss, has_aux=True)(
            state.params, state.target_params, alpha, alpha_prime, cloning, mb, k_loss,
            state.methods)
        # hook: the methods' Optax links read their state and the agent's own gradient
        updates, opt_state = optimiser.update(
            grads, state.opt_state, state.params, method_states=state.methods,
            loss_grad=lambda other: jax.grad(plain_loss)(state.params, other))
        params = optax.apply_updates(state.params, updates)
        # α follows the entropy of the actions just sampled towards the target.
        entropy_gap = jax.lax.stop_gradient(info["entropy"] - target_entropy)
        alpha_grad = jax.grad(lambda log_alpha: log_alpha * entropy_gap)(state.log_alpha)
        alpha_update, alpha_opt_state = alpha_optimiser.update(alpha_grad, state.alpha_opt_state)
        log_alpha_prime, alpha_prime_opt_state = state.log_alpha_prime, state.alpha_prime_opt_state
        if config.lagrange:  # α' ascends on w · gap − threshold (rlkit: −(c1 + c2) / 2)
            excess = jax.lax.stop_gradient(config.min_q_weight * info["cql_gap"]
                                           - config.lagrange_threshold)
            prime_grad = jax.grad(lambda lp: -jnp.clip(jnp.exp(lp), 0.0, 1e6) * excess)(
                state.log_alpha_prime)
            prime_update, alpha_prime_opt_state = alpha_prime_optimiser.update(
                prime_grad, state.alpha_prime_opt_state)
            log_alpha_prime = optax.apply_updates(log_alpha_prime, prime_update)
        state = state.replace(
            params=params,
            target_params=polyak(state.target_params, {"q1": params["q1"], "q2": params["q2"]},
                                 config.tau),
            opt_state=opt_state,
            log_alpha=optax.apply_updates(state.log_alpha, alpha_update),
            alpha_opt_state=alpha_opt_state, log_alpha_prime=log_alpha_prime,
            alpha_prime_opt_state=alpha_prime_opt_state,
            gradient_steps=state.gradient_steps + 1)
        return state, {**info, "alpha": alpha, "alpha_prime": alpha_prime}

    def train(state: CQLState, key: jax.Array):
        return jax.lax.scan(gradient_step, state, jax.random.split(key, gradient_steps))

    def update(state: CQLState, batch: Transition, key: jax.Array):
        # hooks: observe, then (after the gradient steps) after_update
        return store_and_learn(state, batch, key, hooks, config.learning_starts, train)

    return Agent("cql", config.num_envs, config.train_every, init, act, greedy_action, update,
                 restarting_boundary(hooks, config.explore_each_task), view,
                 hooks.agent_for_task, partial(learn_from_dataset, hooks=hooks, train=train),
                 hooks.agent_guide)
