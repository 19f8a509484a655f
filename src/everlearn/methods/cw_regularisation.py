"""Continual World's regularisation methods, `cw_l2`, `cw_ewc` and `cw_mas`, as the authors' code
runs them (Wołczyk et al., 2021, "Continual World: A Robotic Benchmark For Continual
Reinforcement Learning"; awarelab/continual_world, `continualworld/methods/regularization.py`,
`l2.py`, `ewc.py`, `mas.py`, the actor in `continualworld/sac/models.py`; coefficients from
`examples/paper_cl_experiments.sh`).

All three add `strength · Σ_i Ω_i (θ_i − θ*_i)²` to the agent's loss (no ½, as CW), where
- θ* is the parameters at the end of the last finished task (CW copies them at the next task's
  start, before any update: the same values);
- Ω is the sum of every finished task's importance (CW's `_merge_weights`), so a task seen
  again (CW20) adds its importance a second time;
- only the acting network is regularised, as CW's `actor.common_variables`: with one head per
  task (CW's `multihead_archs`, its paper runs) every layer but the output layer (the heads);
  with a single head the whole network, output layer included. Critics are not (CW's default
  `regularize_critic=False`).

`cw_l2`: importance 1 for every regularised weight, so after k finished tasks Ω = k there.

`cw_ewc` and `cw_mas` differentiate what CW's actor returns: the action mean after the tanh,
`m = tanh(μ)`, and `σ = exp(log σ)` with the log-std clipped to [−20, 2] (CW's
`clip_by_value`: derivative 0 where the clip is active).

`cw_ewc`: the closed-form Fisher of a Gaussian with mean m and deviation σ. Per row,
`Σ_a [(∂m_a/∂θ)² + 2 (∂σ_a/∂θ)²] / (σ_a² + 1e-6)`, clipped below at 1e-5 per weight and
row, then averaged over rows. CW averages it over 10 batches of 256 rows drawn from the
finished task's replay buffer, which holds the whole task (it is emptied at each task change).

`cw_mas`: Memory Aware Synapses on the same rows, `|∂(||m||² + ||log σ||²) / ∂θ|` per row,
averaged over rows (no normalisation, unlike everlearn's `mas`).

Defaults are the paper's CW runs: strength 1e5 for L2, 1e4 for EWC and MAS.

How they differ from everlearn's `l2_init`, `ewc`, `online_ewc`, `mas`: those anchor at the
initialisation or keep one anchor per task, take the Fisher of the agent's loss (or MAS's
sensitivity of the greedy action) over every network on the task's last rows, normalise it to
mean 1 and put ½ in front. With CW's coefficients they would be different methods, hence the
separate names.

Deliberate differences from CW:
- The rows of EWC's Fisher and MAS's importance are 2,560 (`fisher_rows`, `importance_rows`)
  transitions of the task kept by reservoir sampling as they arrive: a uniform sample of the
  task's rows, as CW's, drawn without replacement instead of in 10 batches with replacement
  from the buffer.
- CW's actor multiplies tanh(μ) by the action bound before it is differentiated; everlearn's
  SAC acts in [−1, 1] (the env wrapper scales to the bound), so m is tanh(μ) itself. The same
  in Meta-World (bound 1); with a bound b ≠ 1 CW's mean terms would be b² larger.
- `regularize_critic=True` (CW's option, off in its paper runs) is not offered.
Needs task boundaries. `cw_l2`: any agent PackNet packs (the network it acts with);
`cw_ewc`, `cw_mas`: SAC.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt

from everlearn.methods.base import (
    AgentView,
    Method,
    Params,
    weighted_squared_distance,
    weighted_sum_over_rows,
)
from everlearn.methods.packnet import _output_layer
from everlearn.methods.replay import reservoir_positions

FISHER_FLOOR = 1e-5  # CW's clip of each row's Fisher from below
STD_EPSILON = 1e-6  # CW's guard in 1 / (σ² + ε)


class CWL2Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strength: NonNegativeFloat = 1e5  # CW's cl_reg_coef for L2


class CWEWCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strength: NonNegativeFloat = 1e4  # CW's cl_reg_coef for EWC
    fisher_rows: PositiveInt = 2560  # CW: 10 batches of 256


class CWMASConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strength: NonNegativeFloat = 1e4  # CW's cl_reg_coef for MAS
    importance_rows: PositiveInt = 2560  # CW: 10 batches of 256


def regularised_layers(params: Params, network: str, heads: int) -> Params:
    """A float tree shaped like `params`: 1 on the weights of `network` that CW regularises (its
    `common_variables`: with `heads` > 1 all but the output layer, else all), 0 elsewhere."""
    output = _output_layer(params[network]) if heads > 1 else None

    def regularised(path, leaf):
        keys = [getattr(entry, "key", None) for entry in path]
        # `output is None` spelt out: a path entry without a key also reads as None
        kept = keys[0] == network and (output is None or output not in keys)
        return jnp.full(leaf.shape, float(kept), leaf.dtype)

    return jax.tree_util.tree_map_with_path(regularised, params)


def squashed_gaussian(view: AgentView, params: Params,
                      obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """What CW's actor returns and its EWC and MAS differentiate, on a batch `obs`: the action
    mean after the tanh and σ (exp of the clipped log-std), each [batch, actions]."""
    mean, std = view.policy_gaussian(params, obs)
    return jnp.tanh(mean), std


def gaussian_fisher(view: AgentView, params: Params, obs: jax.Array) -> Params:
    """CW's EWC importance of one row `obs` [d]: the closed-form Fisher of the Gaussian policy
    with mean m = tanh(μ), Σ_a [(∂m_a/∂θ)² + 2 (∂σ_a/∂θ)²] / (σ_a² + 1e-6), floored at 1e-5."""
    mean_std = lambda p: squashed_gaussian(view, p, obs[None])
    (_, std), (mean_jac, std_jac) = mean_std(params), jax.jacrev(mean_std)(params)
    inverse_variance = 1.0 / (std[0] ** 2 + STD_EPSILON)  # [actions]

    def fisher(dmean, dstd):  # [1, actions, *weight shape]
        scale = inverse_variance.reshape(-1, *[1] * (dmean.ndim - 2))
        return jnp.maximum(jnp.sum(scale * (dmean[0] ** 2 + 2 * dstd[0] ** 2), 0),
                           FISHER_FLOOR)

    return jax.tree.map(fisher, mean_jac, std_jac)


def output_sensitivity(view: AgentView, params: Params, obs: jax.Array) -> Params:
    """CW's MAS importance of one row `obs` [d]: |∂(||m||² + ||log σ||²) / ∂θ|, m = tanh(μ)."""
    def squared_norm(params):
        mean, std = squashed_gaussian(view, params, obs[None])
        return jnp.sum(mean ** 2) + jnp.sum(jnp.log(std) ** 2)

    return jax.tree.map(jnp.abs, jax.grad(squared_norm)(params))


def task_importance(per_row, view: AgentView, params: Params, obs: jax.Array,
                    mask: Params) -> Params:
    """The mean of `per_row(view, params, row)` over the rows of `obs`, where `mask` is 1."""
    weights = jnp.full(obs.shape[:1], 1.0 / obs.shape[0])
    total = weighted_sum_over_rows(lambda p, row: per_row(view, p, row["obs"]), params,
                                   {"obs": obs}, weights)
    return jax.tree.map(jnp.multiply, total, mask)


def _make(name: str, strength: float, view: AgentView, per_row=None,
          sample_rows: int = 0) -> Method:
    """`per_row`: a row's importance (`gaussian_fisher`, `output_sensitivity`), measured on
    `sample_rows` rows of the task; None: importance 1 (L2)."""
    network = view.policy_network

    def init(key, params):
        state = {"importance": jax.tree.map(jnp.zeros_like, params), "anchor": params}
        if sample_rows:  # a reservoir of the running task's observations
            state["rows"] = jnp.zeros((sample_rows, view.obs_dim), jnp.float32)
            state["seen"] = jnp.zeros((), jnp.int32)
        return state

    def observe(state, data, task, key):
        obs = data["obs"].reshape(-1, view.obs_dim)
        slots = reservoir_positions(key, state["seen"], sample_rows, obs.shape[0])
        return {**state, "rows": state["rows"].at[slots].set(obs, mode="drop"),
                "seen": state["seen"] + obs.shape[0]}

    def on_task_end(state, params, task, key):
        mask = regularised_layers(params, network, view.heads)
        if sample_rows:
            # Until the reservoir is full, its first `seen` rows, repeated; a task always
            # brings far more rows than 2,560, so this guards only toy runs.
            index = jnp.arange(sample_rows) % jnp.clip(state["seen"], 1, sample_rows)
            new = task_importance(per_row, view, params, state["rows"][index], mask)
            state = {**state, "seen": jnp.zeros_like(state["seen"])}
        else:
            new = mask
        importance = jax.tree.map(jnp.add, state["importance"], new)
        return {**state, "importance": importance, "anchor": params}, params

    def extra_loss(state, params, minibatch):
        return strength * weighted_squared_distance(params, state["anchor"],
                                                    state["importance"])

    hooks = {"observe": observe} if sample_rows else {}
    return Method(name, needs_boundaries=True, init=init, on_task_end=on_task_end,
                  extra_loss=extra_loss, **hooks)


def make_cw_l2(config: CWL2Config, view: AgentView) -> Method:
    return _make("cw_l2", config.strength, view)


def _gaussian(name: str, view: AgentView) -> None:
    if view.policy_gaussian is None:
        raise ValueError(f"{name} needs a Gaussian policy (sac), not {view.agent}")


def make_cw_ewc(config: CWEWCConfig, view: AgentView) -> Method:
    _gaussian("cw_ewc", view)
    return _make("cw_ewc", config.strength, view, gaussian_fisher, config.fisher_rows)


def make_cw_mas(config: CWMASConfig, view: AgentView) -> Method:
    _gaussian("cw_mas", view)
    return _make("cw_mas", config.strength, view, output_sensitivity, config.importance_rows)
