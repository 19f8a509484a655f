"""The learning bar nearest its measured distribution (TD3 on Pendulum, functional path) run
again on one XLA CPU device: a 1-core machine compiles other code (the seed axis is not split
across devices), and the bars must hold there too. All four learning tests pass there (their
docstrings); this one runs in every `make test`, in a subprocess because the device count is
fixed when JAX starts. It is scheduled among the first files (tests/conftest.py), so its
minute runs beside the other worker's files instead of after them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEARNING_TEST = "tests/agents/test_continuous.py::test_learns_pendulum_within_12k_steps[td3]"


def test_td3_learns_pendulum_on_one_xla_device(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'inner'}", LEARNING_TEST],
        cwd=ROOT, env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"}, capture_output=True,
        text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
