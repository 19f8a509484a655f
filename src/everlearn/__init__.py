"""everlearn: continual reinforcement learning in JAX."""

import os

from everlearn.core.version import __version__


def _one_cpu_device_per_core() -> None:
    """Show XLA one CPU device per core, so that the functional path can split its seed axis
    across cores (XLA runs a small program on one thread per device; with one device, a second
    core would sit idle). Leaves alone a count the user chose (`JAX_NUM_CPU_DEVICES`, XLA_FLAGS)
    and a JAX that is already running. GPU and TPU backends are unaffected."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    if jax.config.jax_num_cpu_devices != -1:
        return
    try:
        jax.config.update("jax_num_cpu_devices", max(1, len(os.sched_getaffinity(0))))
    except RuntimeError:  # backends already initialised by the caller: keep their devices
        pass


_one_cpu_device_per_core()

__all__ = ["RunResult", "__version__", "evaluate", "load_run", "resume", "run", "sweep"]

_API = ("run", "resume", "load_run", "sweep", "RunResult")  # everlearn.api


def __getattr__(name: str):
    """`everlearn.evaluate` (`everlearn.evaluation.policy.evaluate`) and the Python API
    (`everlearn.run`, `resume`, `load_run`, `sweep`, `RunResult`: `everlearn.api`), imported
    on first use so that `import everlearn` and the command line stay quick."""
    if name == "evaluate":
        from everlearn.evaluation.policy import evaluate

        return evaluate
    if name in _API:
        from everlearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'everlearn' has no attribute '{name}'")
