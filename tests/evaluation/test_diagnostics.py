"""Plasticity diagnostics against hand-built networks with known answers, and runs with
diagnostics on equal runs with them off."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.core.neurons import dormant_ratio, effective_rank, neuron_scores
from everlearn.evaluation.diagnostics import mean_abs_weights, measure, policy_entropy
from everlearn.methods.base import AgentView
from everlearn.runs.config import build_config
from everlearn.runs.run import start_run


def test_two_dead_relus_out_of_eight_give_a_quarter():
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
    bias = jnp.zeros(8).at[jnp.array([2, 5])].set(-100.0)  # units 2 and 5 never fire
    hidden = jax.nn.relu(x @ kernel + bias)
    assert float(dormant_ratio([hidden], 0.0)) == 0.25
    assert float(dormant_ratio([hidden], 0.025)) == 0.25
    # Over two layers: 2 dead of 8 plus 0 of 8 -> 1/8.
    assert float(dormant_ratio([hidden, jnp.ones((64, 8))], 0.0)) == 0.125


def test_tau_counts_weak_units_relative_to_the_layer_average():
    # Mean |h| per unit: 1, 1, 1, 0.02 -> layer average 0.755; scores 1.32.., 0.0265 (> 0.025)
    # and with 0.01 instead: 0.0133 (<= 0.025) but > 0.
    weak = jnp.array([[1.0, 1.0, 1.0, 0.01]] * 4)
    scores = neuron_scores(weak)
    np.testing.assert_allclose(scores[3], 0.01 / ((3 + 0.01) / 4), rtol=1e-6)
    assert float(dormant_ratio([weak], 0.025)) == 0.25
    assert float(dormant_ratio([weak], 0.0)) == 0.0


def test_effective_rank_of_known_spectra():
    # Singular values 10, 10, 0, 0: rank 2. Values 1 (x 99) and 0.5: 99 of them hold 99.5%.
    assert int(effective_rank(jnp.diag(jnp.array([10.0, 10.0, 0.0, 0.0])))) == 2
    features = jnp.diag(jnp.concatenate([jnp.ones(99), jnp.array([0.5])]))
    assert int(effective_rank(features, delta=0.01)) == 99
    assert int(effective_rank(features, delta=0.001)) == 100
    assert int(effective_rank(jnp.zeros((5, 4)))) == 4  # never above the width


def test_weight_magnitude_and_entropy():
    params = {"q": {"params": {"Dense_0": {"kernel": jnp.array([[1.0, -3.0]]), "bias": jnp.ones(2)},
                               "LayerNorm_0": {"scale": jnp.ones(2)}}}}
    assert {k: float(v) for k, v in mean_abs_weights(params).items()} == {"q/Dense_0": 2.0}
    np.testing.assert_allclose(policy_entropy(jnp.zeros((3, 4))), np.log(4), rtol=1e-6)
    np.testing.assert_allclose(policy_entropy(jnp.array([[0.0, -1e9]])), 0.0, atol=1e-6)


def test_measure_reports_nothing_before_data_and_exact_values_after():
    kernel = jnp.array([[1.0, -1.0, 0.0, 2.0]])  # unit 2 dead for every input
    params = {"q": {"params": {"Dense_0": {"kernel": kernel, "bias": jnp.zeros(4)},
                               "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}}}

    def activations(params, obs):
        return {"q": [jax.nn.relu(obs @ params["q"]["params"]["Dense_0"]["kernel"])]}

    def logits(params, obs):
        return activations(params, obs)["q"][0] @ params["q"]["params"]["Dense_1"]["kernel"]

    view = AgentView("dqn", True, None, logits, lambda p, mb: jnp.sum(logits(p, mb["obs"])),
                     ("q",), 1, obs_dim=1, minibatch_row={}, activations=activations)
    obs = jnp.array([[1.0], [2.0], [-1.0], [0.5]])
    recent = {"rows": {"obs": obs}, "size": jnp.int32(4)}
    out = jax.jit(lambda p, r: measure(view, p, r))(params, recent)
    assert float(out["dormant_0/q"]) == 0.25
    assert int(out["srank/q"]) == 2  # relu(x), relu(-x) and relu(2x) span 2 directions
    assert float(out["weight_magnitude/q/Dense_0"]) == 1.0
    # loss = sum over rows and both logits of relu(obs k_j) (W1 = ones). Per unit j:
    # dW1[j, :] = sum_rows relu(obs k_j) = 3.5, 1, 0, 7 (twice: two logits);
    # dk_j = 2 * sum over active rows of obs = 7, -2, 0, 7.
    expected = np.sqrt(2 * (3.5**2 + 1 + 0 + 7**2) + (7**2 + 2**2 + 0 + 7**2))
    np.testing.assert_allclose(float(out["gradient_norm"]), expected, rtol=1e-5)
    empty = measure(view, params, {"rows": {"obs": obs}, "size": jnp.int32(0)})
    assert all(np.isnan(v) for v in empty.values())


# The same shapes as tests/methods/test_hooks.py, so the compiled trainer is shared.
SMALL = ["steps_per_task=512", "evals_per_task=2", "eval_episodes=2", "checkpoint_every=1",
         "ppo.num_envs=4", "ppo.num_steps=32", "ppo.num_epochs=2"]


def test_a_run_with_diagnostics_equals_one_without(tmp_path):
    def run(on: bool):
        config = build_config(None, {"scenario": "cartpole-contexts", "agent": "ppo",
                                     "seeds": "0-1"}, [*SMALL, f"diagnostics={on}"])
        run_dir = start_run(config, tmp_path / str(on), quiet=True)
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    with_diag, without = run(True), run(False)
    assert [r["returns"] for r in with_diag] == [r["returns"] for r in without]
    assert "diagnostics" not in without[-1]
    last = with_diag[-1]["diagnostics"]
    assert set(last) >= {"dormant_0/actor", "dormant_0.025/critic", "srank/actor",
                         "gradient_norm", "policy_entropy", "weight_magnitude/actor/Dense_0"}
    assert all(v is None for v in with_diag[0]["diagnostics"]["srank/actor"])  # before data
    assert all(1 <= v <= 64 for v in last["srank/actor"])
    assert all(0 < v <= np.log(2) + 1e-6 for v in last["policy_entropy"])
