"""Continual-learning metrics, exactly as defined in DESIGN.md ("Metrics").

Inputs are normalised performances. A curve array `p` has shape [num_evals, num_tasks] where
row `e` is the evaluation after `e` segments (row 0: before training) and each task is trained
for `evals_per_task` segments, so task `i` (0-based) ends at row `(i + 1) * evals_per_task`.
Aggregate numbers use performances clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np


def clip01(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)


def task_end_evals(num_tasks: int, evals_per_task: int) -> list[int]:
    """The evaluation (curve row) at the end of each task: the rows of the performance matrix."""
    return [(k + 1) * evals_per_task for k in range(num_tasks)]


def performance_matrix(curve: np.ndarray, evals_per_task: int) -> np.ndarray:
    """R[k, i]: performance on task i after training on task k (rows at task ends)."""
    curve = np.asarray(curve)
    return curve[..., task_end_evals(curve.shape[-1], evals_per_task), :]


def average_performance(matrix: np.ndarray) -> float:
    """P(T) = (1/N) sum_i p_i(T)."""
    return float(np.mean(clip01(matrix)[-1]))


def forgetting(matrix: np.ndarray) -> float:
    """Mean over i < N of F_i = p_i(i*Delta) - p_i(T)."""
    m = clip01(matrix)
    n = m.shape[0]
    if n < 2:
        return 0.0
    return float(np.mean([m[i, i] - m[-1, i] for i in range(n - 1)]))


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT = (1/(N-1)) sum_{i<N} (R[N, i] - R[i, i])."""
    m = clip01(matrix)
    n = m.shape[0]
    if n < 2:
        return 0.0
    return float(np.mean([m[-1, i] - m[i, i] for i in range(n - 1)]))


def task_auc(curve: np.ndarray, evals_per_task: int) -> np.ndarray:
    """AUC_i: mean of p_i over task i's training interval [(i-1)Delta, i*Delta], both ends
    included (the evaluation when the task starts, and the one when it ends)."""
    c = clip01(curve)
    num_tasks = c.shape[1]
    return np.array([
        c[i * evals_per_task:(i + 1) * evals_per_task + 1, i].mean() for i in range(num_tasks)
    ])


def reference_auc(reference_curves: np.ndarray) -> np.ndarray:
    """AUC_i^ref from single-task curves [num_tasks, evals_per_task + 1] (row 0: untrained).

    Including the untrained start keeps AUC^ref below 1, so FT's denominator stays away from 0.
    """
    return clip01(reference_curves).mean(axis=1)


def forward_transfer(curve: np.ndarray, evals_per_task: int,
                     reference_curves: np.ndarray) -> float:
    """Mean over tasks of FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref)."""
    auc = task_auc(curve, evals_per_task)
    ref = reference_auc(reference_curves)
    # A reference that is already perfect leaves nothing to transfer; avoid dividing by zero.
    denom = np.maximum(1.0 - ref, 1e-8)
    return float(np.mean((auc - ref) / denom))


def interquartile_mean_ci(values: np.ndarray, reps: int = 2000, seed: int = 0) -> dict:
    """IQM across seeds with a stratified-bootstrap 95% confidence interval (rliable)."""
    import warnings

    from rliable import library as rly
    from rliable import metrics as rly_metrics

    scores = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    # rliable's StratifiedBootstrap draws its resampling indices from NumPy's *global* RNG
    # (np.random.choice) and ignores `random_state`, so seed that and restore it afterwards.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates RandomState; rliable still passes one
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"x": scores},
                lambda s: np.array([rly_metrics.aggregate_iqm(s)]),
                reps=reps,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(global_state)
    low, high = interval["x"][:, 0]
    return {"iqm": float(point["x"][0]), "ci_low": float(low), "ci_high": float(high)}


def summarise_seed(curve: np.ndarray, evals_per_task: int,
                   reference_curves: np.ndarray | None) -> dict[str, float]:
    """All metrics for one seed from its normalised curve [num_evals, num_tasks]."""
    matrix = performance_matrix(curve, evals_per_task)
    out = {
        "average_performance": average_performance(matrix),
        "forgetting": forgetting(matrix),
        "backward_transfer": backward_transfer(matrix),
    }
    if reference_curves is not None:
        out["forward_transfer"] = forward_transfer(curve, evals_per_task, reference_curves)
    return out
