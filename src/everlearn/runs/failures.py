"""How a run stops when training cannot go on: a diverged loss (NaN or inf), an exception in a
task's env, or an interrupt (Ctrl-C, SIGTERM). Each ends in a `RunStopped` whose message is one
line saying what happened, where (step, task), and what the run directory holds now: the last
good checkpoint, from which `everlearn resume` continues. Nothing wrong reaches metrics.jsonl
or summary.json; details (a traceback) go to `error.log` in the run directory."""

from __future__ import annotations

import functools
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnums=1)
def _finite_per_seed(leaves: list[jax.Array], num_seeds: int) -> jax.Array:
    checks = [jnp.all(jnp.isfinite(x.reshape(num_seeds, -1)), axis=1) for x in leaves]
    return jnp.all(jnp.stack(checks), axis=0) if checks else jnp.ones(num_seeds, bool)


def divergence(train_metrics: dict, params, num_seeds: int) -> tuple[str, list[int]] | None:
    """What went non-finite in a segment and for which seed indices: the first loss metric
    that did, else the parameters; None if all is finite. `params` and the metrics have the
    seeds on their leading axis."""
    for name, value in train_metrics.items():
        per_seed = np.asarray(value, np.float64).reshape(num_seeds, -1)
        bad = ~np.isfinite(per_seed).all(axis=1)
        if bad.any():
            return name, np.flatnonzero(bad).tolist()
    leaves = [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    finite = np.asarray(_finite_per_seed(leaves, num_seeds))
    if not finite.all():
        return "the parameters", np.flatnonzero(~finite).tolist()
    return None


def write_error_log(run_dir: Path, message: str, error: BaseException | None = None) -> Path:
    """`error.log`: the one-line message, then the traceback of what caused it."""
    path = Path(run_dir) / "error.log"
    text = message + "\n"
    if error is not None:
        text += "\n" + "".join(traceback.format_exception(error))
    path.write_text(text)
    return path
