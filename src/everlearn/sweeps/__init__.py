"""Sweeps: a grid of runs (scenarios × agents × methods × settings × seeds) on a local pool of
processes or a Ray cluster, resumable, ending with a comparison (`everlearn sweep`)."""

from everlearn.sweeps.sweep import run_sweep

__all__ = ["run_sweep"]
