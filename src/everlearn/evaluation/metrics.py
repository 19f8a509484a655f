"""Continual-learning metrics, in two conventions.

Inputs are normalised performances. A curve array `p` has shape [num_evals, num_tasks] where
row `e` is the evaluation after `e` segments (row 0: before training) and each task is trained
for `evals_per_task` segments, so task `i` (0-based) ends at row `(i + 1) * evals_per_task`.
Aggregate numbers use performances clipped to [0, 1].

- "everlearn" (`summarise_seed`): every metric per seed, aggregated as an IQM with a 95%
  stratified-bootstrap CI. Performance is the last evaluation; forgetting averages the N − 1
  tasks that can be forgotten; a task's AUC includes the evaluation when it starts. Per-seed
  numbers are what rliable's comparisons (IQM, probability of improvement) need.
- "continual-world" (`continual_world_metrics`): as Wołczyk et al. (2021) compute them in
  `continualworld/results_processing/tables.py`: a performance is the mean of the last
  `CW_FINAL_EVALS` evaluations (at CW's 20k-step evaluations, the last 100k steps); forgetting
  averages all N tasks (the last one contributes its own 0); forward transfer averages AUCs
  (over the evaluations while the task trains) across seeds *before* normalising; means with
  90% bootstrap CIs (4,000 resamples). These are the numbers to put next to CW's tables.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

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


CONVENTIONS = ("everlearn", "continual-world")
CW_FINAL_EVALS = 5  # CW: `groupby(...).tail(5)`, the last 5 logged evaluations
CW_CONFIDENCE, CW_BOOTSTRAP = 0.9, 4000  # CW's `compute_mean_and_ci` defaults


def final_window(evals_per_task: int) -> int:
    """How many evaluations CW's "performance at the end" averages: 5, or the whole task when
    it has fewer evaluations (the window never reaches into the previous task)."""
    return min(CW_FINAL_EVALS, evals_per_task)


def cw_per_seed(curves: np.ndarray, evals_per_task: int) -> dict[str, np.ndarray]:
    """CW's performance and forgetting per seed, from curves [seeds, num_evals, num_tasks]."""
    c = clip01(curves)
    window = final_window(evals_per_task)
    num_tasks = c.shape[-1]
    final = c[:, -window:, :].mean(axis=1)  # [seeds, tasks]
    at_own_end = np.stack([c[:, end - window + 1:end + 1, i].mean(axis=1) for i, end in
                           enumerate(task_end_evals(num_tasks, evals_per_task))], axis=-1)
    return {"average_performance": final.mean(axis=-1),
            "forgetting": (at_own_end - final).mean(axis=-1)}


def cw_forward_transfer(curves: np.ndarray, evals_per_task: int,
                        reference_curves: np.ndarray) -> float:
    """CW's forward transfer: mean over tasks of (mean AUC_i − mean AUC_i^ref) /
    (1 − mean AUC_i^ref), the means over seeds. AUC_i averages the evaluations logged while
    task i trains (not the one at its start); a reference's, those after its untrained row.
    `curves` [seeds, num_evals, num_tasks], `reference_curves` [ref seeds, num_tasks, E + 1]."""
    c, ref = clip01(curves), clip01(reference_curves)
    E = evals_per_task
    auc = np.stack([c[:, i * E + 1:(i + 1) * E + 1, i].mean(axis=1)
                    for i in range(c.shape[-1])], axis=-1).mean(axis=0)
    auc_ref = ref[:, :, 1:].mean(axis=(0, 2))
    return float(np.mean((auc - auc_ref) / np.maximum(1.0 - auc_ref, 1e-8)))


def _mean_ci(draws: np.ndarray, point: float) -> dict[str, float]:
    tail = (1.0 - CW_CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"mean": float(point), "ci_low": float(low), "ci_high": float(high)}


def continual_world_metrics(curves: np.ndarray, evals_per_task: int,
                            reference_curves: np.ndarray | None, seed: int = 0) -> dict:
    """Continual World's numbers for a run: per-seed performance and forgetting, and the mean
    of each (forward transfer: one number over all seeds) with a 90% bootstrap CI over seeds
    (forward transfer resamples the run's and the references' seeds independently, as CW's
    `_apply_statistics` does)."""
    curves = np.asarray(curves, dtype=np.float64)
    per_seed = cw_per_seed(curves, evals_per_task)
    rng = np.random.default_rng(seed)
    num_seeds = curves.shape[0]
    draws = rng.integers(0, num_seeds, size=(CW_BOOTSTRAP, num_seeds))
    aggregate = {m: _mean_ci(v[draws].mean(axis=1), v.mean()) for m, v in per_seed.items()}
    if reference_curves is not None:
        reference_curves = np.asarray(reference_curves, dtype=np.float64)
        num_ref = reference_curves.shape[0]
        ref_draws = rng.integers(0, num_ref, size=(CW_BOOTSTRAP, num_ref))
        ft = np.array([cw_forward_transfer(curves[d], evals_per_task, reference_curves[r])
                       for d, r in zip(draws, ref_draws)])
        aggregate["forward_transfer"] = _mean_ci(
            ft, cw_forward_transfer(curves, evals_per_task, reference_curves))
    return {"per_seed": {m: v.tolist() for m, v in per_seed.items()},
            "aggregate": aggregate, "confidence": CW_CONFIDENCE,
            "final_evals": final_window(evals_per_task)}


@contextlib.contextmanager
def bootstrap_rng(seed: int = 0) -> Iterator[np.random.RandomState]:
    """rliable's StratifiedBootstrap draws its resampling indices from NumPy's *global* RNG
    (np.random.choice) and ignores `random_state`: seed that, so intervals are the same on
    every run, and restore it afterwards."""
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates RandomState; rliable still passes one
            warnings.simplefilter("ignore", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(global_state)


def interquartile_mean_ci(values: np.ndarray, reps: int = 2000, seed: int = 0) -> dict:
    """IQM across seeds with a stratified-bootstrap 95% confidence interval: the numbers of
    rliable's `get_interval_estimates` with `aggregate_iqm` on one task (percentile method),
    from the same resamples, bit for bit (tests/evaluation/test_metrics.py compares them), in
    one NumPy pass: rliable calls the IQM once per resample in Python (0.25 s for 2,000, and
    every run's summary takes one per metric)."""
    from scipy import stats

    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    with bootstrap_rng(seed):
        # rliable's StratifiedBootstrap draws each resample's rows with np.random.choice from
        # the global RNG; one draw of all of them takes the same numbers in the same order.
        rows = np.random.choice(scores.size, (reps, scores.size), replace=True)
    iqms = stats.trim_mean(scores[rows], 0.25, axis=1)
    alpha = (1.0 - 0.95) / 2  # arch's percentile interval, its arithmetic
    low, high = np.percentile(iqms, [100 * alpha, 100 * (1.0 - alpha)])
    return {"iqm": float(stats.trim_mean(scores, 0.25, axis=None)), "ci_low": float(low),
            "ci_high": float(high)}


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
