"""A learning test run again on one XLA CPU device: a 1-core machine compiles other code (the
seed axis is not split across devices), and the bars must hold there too. Every learning test
was measured there (their docstrings give the one-device distributions); this one, PPO on
CartPole, runs in every `make test`, in a subprocess because the device count is fixed when
JAX starts. It is the cheapest of them (about 30 s here, against 100 s for TD3 on Pendulum, the
bar nearest its distribution, which this file ran until 2026-12-01, when `make test` neared
15 minutes on 2 cores): it keeps the whole one-device path, from the scenario to the
evaluation, under test. To check every bar on one device:
`JAX_NUM_CPU_DEVICES=1 .venv/bin/python -m pytest tests/agents tests/data/test_offline_runs.py`.
It is scheduled among the first files (tests/conftest.py), so it runs beside the other
worker's files instead of after them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEARNING_TEST = "tests/agents/test_learning.py::test_ppo_learns_cartpole_within_50k_steps"


def test_ppo_learns_cartpole_on_one_xla_device(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'inner'}", LEARNING_TEST],
        cwd=ROOT, env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"}, capture_output=True,
        text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
