"""Continual-learning metrics (DESIGN.md "Metrics") on hand-made matrices with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from everlearn.evaluation.metrics import (
    average_performance,
    backward_transfer,
    clip01,
    continual_world_metrics,
    forgetting,
    forward_transfer,
    interquartile_mean_ci,
    performance_matrix,
    reference_auc,
    summarise_seed,
    task_auc,
)

# R[k, i]: performance on task i after training on task k (N = 3).
R3 = np.array([
    [0.9, 0.0, 0.1],
    [0.5, 0.8, 0.1],
    [0.3, 0.6, 0.7],
])

# A curve for N = 2 tasks, evals_per_task = 2: rows 0..4; row 0 is "before training",
# task 0 is trained over rows 1-2 (ends at row 2), task 1 over rows 3-4 (ends at row 4).
# Task i's AUC covers its closed training interval: rows 0-2 for task 0, rows 2-4 for task 1.
CURVE = np.array([
    [0.0, 0.0],  # row 0: before training (start of task 0's interval)
    [0.2, 0.1],  # row 1: during task 0
    [0.6, 0.3],  # row 2: end of task 0
    [0.5, 0.7],  # row 3: during task 1
    [0.4, 0.9],  # row 4: end of task 1 (= T)
])
# Single-task references [N, evals_per_task + 1] (row 0: untrained, included in the AUC).
REF = np.array([
    [0.0, 0.3, 0.3],  # AUC_0^ref = 0.6 / 3 = 0.2
    [0.0, 0.9, 0.9],  # AUC_1^ref = 1.8 / 3 = 0.6
])


def test_clip01():
    np.testing.assert_array_equal(clip01([-0.5, 0.3, 1.7]), [0.0, 0.3, 1.0])


def test_average_performance_uses_last_row():
    # P(T) = mean of the last row = (0.3 + 0.6 + 0.7) / 3 = 0.5333...
    assert average_performance(R3) == pytest.approx(1.6 / 3)


def test_average_performance_clips():
    # last row [1.5, -0.2] clips to [1.0, 0.0] -> 0.5 (unclipped mean would be 0.65)
    m = np.array([[0.8, 0.1], [1.5, -0.2]])
    assert average_performance(m) == pytest.approx(0.5)


def test_forgetting_hand_computed():
    # F_0 = R[0,0] - R[2,0] = 0.9 - 0.3 = 0.6; F_1 = R[1,1] - R[2,1] = 0.8 - 0.6 = 0.2;
    # the last task is excluded: mean(0.6, 0.2) = 0.4
    assert forgetting(R3) == pytest.approx(0.4)


def test_forgetting_clips_to_unit_interval():
    # clipped: [[1.0, 0.0], [0.0, 0.6]] -> F_0 = 1.0 - 0.0 = 1.0 (unclipped: 1.4 + 0.5 = 1.9)
    m = np.array([[1.4, 0.0], [-0.5, 0.6]])
    assert forgetting(m) == pytest.approx(1.0)


def test_forgetting_single_task_is_zero():
    assert forgetting(np.array([[0.7]])) == 0.0
    assert backward_transfer(np.array([[0.7]])) == 0.0


def test_backward_transfer_hand_computed():
    # BWT = mean(R[2,0] - R[0,0], R[2,1] - R[1,1]) = mean(-0.6, -0.2) = -0.4
    assert backward_transfer(R3) == pytest.approx(-0.4)
    # a positive backward transfer: R[1,0] - R[0,0] = 0.5 - 0.2 = 0.3; forgetting is its negative
    m = np.array([[0.2, 0.0], [0.5, 0.9]])
    assert backward_transfer(m) == pytest.approx(0.3)
    assert forgetting(m) == pytest.approx(-0.3)


def test_backward_transfer_clips():
    # clipped: [[1.0, 0.0], [0.0, 0.6]] -> BWT = 0.0 - 1.0 = -1.0
    m = np.array([[1.4, 0.0], [-0.5, 0.6]])
    assert backward_transfer(m) == pytest.approx(-1.0)


def test_performance_matrix_selects_task_end_rows():
    m = performance_matrix(CURVE, evals_per_task=2)
    # rows (k + 1) * 2 = 2 and 4
    np.testing.assert_array_equal(m, [[0.6, 0.3], [0.4, 0.9]])
    # three tasks, one eval per task: rows 1, 2, 3 of a [4, 3] curve
    c = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(performance_matrix(c, 1), c[1:])


def test_task_auc_covers_the_closed_interval_of_its_own_task():
    # AUC_0 = mean(rows 0, 1, 2 of task 0) = (0.0 + 0.2 + 0.6) / 3 = 0.8 / 3
    # AUC_1 = mean(rows 2, 3, 4 of task 1) = (0.3 + 0.7 + 0.9) / 3 = 1.9 / 3
    np.testing.assert_allclose(task_auc(CURVE, 2), [0.8 / 3, 1.9 / 3])


def test_task_auc_clips():
    curve = np.array([[0.0], [1.5], [-0.5]])  # clipped to 0, 1, 0 -> 1/3
    np.testing.assert_allclose(task_auc(curve, 2), [1 / 3])


def test_reference_auc():
    np.testing.assert_allclose(reference_auc(REF), [0.2, 0.6])


def test_forward_transfer_hand_computed():
    # FT_0 = (0.8/3 - 0.2) / (1 - 0.2) = (1/15) / 0.8 = 1/12
    # FT_1 = (1.9/3 - 0.6) / (1 - 0.6) = (1/30) / 0.4 = 1/12; mean 1/12
    assert forward_transfer(CURVE, 2, REF) == pytest.approx(1 / 12)


def test_forward_transfer_known_half():
    # Both tasks: AUC = (0 + 0.5 + 1) / 3 = 0.5, AUC^ref = 0 -> FT = (0.5 - 0) / 1 = 0.5
    curve = np.array([
        [0.0, 0.0],
        [0.5, 0.0],
        [1.0, 0.0],
        [0.0, 0.5],
        [0.0, 1.0],
    ])
    ref = np.zeros((2, 3))
    assert forward_transfer(curve, 2, ref) == pytest.approx(0.5)


def test_forward_transfer_zero_when_equal_to_reference_and_finite_for_perfect_reference():
    ref = np.array([[0.0, 0.2, 0.6], [0.0, 0.7, 0.9]])
    curve = np.array([[0.0, 0.0], [0.2, 0.0], [0.6, 0.0], [0.0, 0.7], [0.0, 0.9]])
    assert forward_transfer(curve, 2, ref) == pytest.approx(0.0)
    perfect = np.ones((2, 3))
    ft = forward_transfer(np.ones((5, 2)), 2, perfect)
    assert np.isfinite(ft) and ft == pytest.approx(0.0)


def test_summarise_seed_keys_and_values():
    s = summarise_seed(CURVE, 2, None)
    assert set(s) == {"average_performance", "forgetting", "backward_transfer"}
    m = performance_matrix(CURVE, 2)  # [[0.6, 0.3], [0.4, 0.9]]
    assert s["average_performance"] == pytest.approx(0.65)  # (0.4 + 0.9) / 2
    assert s["forgetting"] == pytest.approx(0.2)  # 0.6 - 0.4
    assert s["backward_transfer"] == pytest.approx(-0.2)
    assert s["average_performance"] == average_performance(m)
    s_ref = summarise_seed(CURVE, 2, REF)
    assert set(s_ref) == set(s) | {"forward_transfer"}
    assert s_ref["forward_transfer"] == pytest.approx(1 / 12)
    assert all(isinstance(v, float) for v in s_ref.values())


def test_iqm_of_one_to_ten():
    # scipy trim_mean(x, 0.25) on 10 values drops int(2.5) = 2 from each end: mean(3..8) = 5.5
    out = interquartile_mean_ci(np.arange(1, 11), reps=200, seed=0)
    assert out["iqm"] == pytest.approx(5.5)
    assert out["ci_low"] <= out["iqm"] <= out["ci_high"]


def test_iqm_ignores_outliers():
    # [1..9, 100]: middle values 3..8 -> 5.5, while the plain mean is 14.5
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], dtype=float)
    out = interquartile_mean_ci(values, reps=200, seed=0)
    assert out["iqm"] == pytest.approx(5.5)
    # 8 values: drop 2 from each end -> mean(2, 3, 4, 5) = 3.5
    out8 = interquartile_mean_ci(np.array([0, 1, 2, 3, 4, 5, 6, 1000.0]), reps=200, seed=0)
    assert out8["iqm"] == pytest.approx(3.5)
    assert out8["ci_low"] <= 3.5 <= out8["ci_high"]
    assert out8["ci_high"] < 1000.0


def test_iqm_ci_deterministic_and_nontrivial():
    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 0.2, size=12)
    a = interquartile_mean_ci(values, reps=300, seed=7)
    b = interquartile_mean_ci(values, reps=300, seed=7)
    assert a == b
    assert set(a) == {"iqm", "ci_low", "ci_high"}
    assert a["ci_low"] < a["iqm"] < a["ci_high"]
    assert all(isinstance(v, float) for v in a.values())


def _rliable_iqm_ci(values: np.ndarray, reps: int, seed: int) -> dict:
    """rliable's own stratified-bootstrap IQM interval, as everlearn computed it before."""
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    from everlearn.evaluation.metrics import bootstrap_rng

    scores = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    with bootstrap_rng(seed) as random_state:
        point, interval = rly.get_interval_estimates(
            {"x": scores}, lambda s: np.array([rly_metrics.aggregate_iqm(s)]), reps=reps,
            random_state=random_state)
    low, high = interval["x"][:, 0]
    return {"iqm": float(point["x"][0]), "ci_low": float(low), "ci_high": float(high)}


@pytest.mark.parametrize("seeds", [1, 2, 3, 5, 8, 10, 13])
def test_iqm_ci_equals_rliables_bit_for_bit(seeds):
    rng = np.random.default_rng(seeds)
    for values in (rng.normal(0.5, 0.3, size=seeds), np.round(rng.uniform(size=seeds), 1)):
        for reps, seed in ((2000, 0), (500, 7)):
            assert interquartile_mean_ci(values, reps, seed) == _rliable_iqm_ci(values, reps, seed)


def test_iqm_constant_values():
    out = interquartile_mean_ci(np.full(5, 0.3), reps=100, seed=0)
    assert out["iqm"] == pytest.approx(0.3)
    assert out["ci_low"] == pytest.approx(0.3) and out["ci_high"] == pytest.approx(0.3)


# Continual World's convention (`continual_world_metrics`), on the same hand-made numbers.
def test_continual_world_on_two_tasks_hand_computed():
    # E = 2, so the final window is 2 evaluations. End: rows 3-4 -> task 0 (0.5 + 0.4) / 2 =
    # 0.45, task 1 (0.7 + 0.9) / 2 = 0.8, performance 0.625. At their own ends: task 0 rows 1-2
    # -> 0.4, task 1 rows 3-4 -> 0.8; forgetting over both tasks ((0.4 - 0.45) + 0) / 2.
    # AUCs while training (rows 1-2, 3-4): 0.4, 0.8; references (rows 1-2): 0.3, 0.9;
    # FT = ((0.4 - 0.3) / 0.7 + (0.8 - 0.9) / 0.1) / 2 = (1/7 - 1) / 2.
    out = continual_world_metrics(CURVE[None], 2, REF[None])
    assert out["per_seed"]["average_performance"] == pytest.approx([0.625])
    assert out["per_seed"]["forgetting"] == pytest.approx([-0.025])
    assert out["aggregate"]["forward_transfer"]["mean"] == pytest.approx((1 / 7 - 1) / 2)
    assert out["final_evals"] == 2 and out["confidence"] == 0.9


def test_continual_world_forgetting_counts_the_last_task_and_everlearn_does_not():
    # Two tasks, E = 1: task 0 reaches 0.8 and falls to 0.2; task 1 ends at 1.0.
    curve = np.array([[0.0, 0.0], [0.8, 0.0], [0.2, 1.0]])
    cw = continual_world_metrics(curve[None], 1, None)
    assert cw["per_seed"]["forgetting"] == pytest.approx([0.3])  # (0.6 + 0) / 2
    assert summarise_seed(curve, 1, None)["forgetting"] == pytest.approx(0.6)  # task 0 only


def test_continual_world_final_performance_averages_the_last_five_evaluations():
    # One task, E = 6: the last 5 rows (not row 1) make the end performance.
    curve = np.array([[0.0], [0.1], [0.2], [0.4], [0.6], [0.8], [1.0]])
    out = continual_world_metrics(curve[None], 6, None)
    assert out["final_evals"] == 5
    assert out["per_seed"]["average_performance"] == pytest.approx([0.6])
    assert summarise_seed(curve, 6, None)["average_performance"] == pytest.approx(1.0)


def test_continual_world_on_one_task_hand_computed():
    # E = 3, window 3: performance mean(0.5, 0.7, 0.9) = 0.7, forgetting exactly 0;
    # AUC 0.7 against the reference's 0.4 -> FT = 0.3 / 0.6.
    curve = np.array([[0.0], [0.5], [0.7], [0.9]])
    ref = np.array([[[0.0, 0.2, 0.4, 0.6]]])
    out = continual_world_metrics(curve[None], 3, ref)
    assert out["per_seed"]["average_performance"] == pytest.approx([0.7])
    assert out["per_seed"]["forgetting"] == [0.0]
    assert out["aggregate"]["forward_transfer"]["mean"] == pytest.approx(0.5)


def test_continual_world_forward_transfer_averages_seeds_before_normalising():
    # One task, E = 1. Run seeds' AUCs 0.2 and 0.6 (mean 0.4); references' 0.1 and 0.5
    # (mean 0.3): CW gives (0.4 - 0.3) / 0.7 = 1/7, where the mean of per-seed ratios would be
    # ((0.1 / 0.9) + (0.1 / 0.5)) / 2 = 0.1556.
    curves = np.array([[[0.0], [0.2]], [[0.0], [0.6]]])
    refs = np.array([[[0.0, 0.1]], [[0.0, 0.5]]])
    ft = continual_world_metrics(curves, 1, refs)["aggregate"]["forward_transfer"]
    assert ft["mean"] == pytest.approx(1 / 7)
    assert ft["mean"] != pytest.approx((0.1 / 0.9 + 0.1 / 0.5) / 2)
    assert ft["ci_low"] <= ft["mean"] <= ft["ci_high"]


def test_continual_world_ci_brackets_the_mean_and_narrows_with_agreeing_seeds():
    rng = np.random.default_rng(0)
    curves = rng.uniform(0, 1, size=(10, 5, 2))
    agg = continual_world_metrics(curves, 2, None)["aggregate"]["average_performance"]
    assert agg["ci_low"] < agg["mean"] < agg["ci_high"]
    same = np.repeat(curves[:1], 10, axis=0)
    agg = continual_world_metrics(same, 2, None)["aggregate"]["average_performance"]
    assert agg["ci_low"] == pytest.approx(agg["mean"]) == pytest.approx(agg["ci_high"])
