"""Shared test set-up: reference-run caches and Minari datasets go to a temporary folder (one
per test session and worker, so a recipe dataset is made once), never the user's; XLA compiles
faster than by default (below)."""

import os
from importlib import metadata

import pytest

# Half of the suite's time is XLA compiling (~890 s of ~1,900 s of test time, 2026-12-01). LLVM
# at -O1 with XLA's previous CPU fusion emitters halves compile time; the compiled programs run
# ~30% slower, a good trade for tests, which compile far more than they run
# (`benchmarks/compile_time.py`, benchmarks/results/compile_time.md). These are other programs,
# as on another CPU model, so a training run's numbers differ from the default flags' (trained
# TD3 parameters by up to 0.76 after 3,000 steps there): the learning bars are set for that. The fusion flag exists in the jaxlib versions tested here (0.10); XLA aborts on a flag
# it does not know, so other versions get -O1 only. Set before any test starts JAX's backend;
# subprocesses the tests start inherit it. Flags the caller set win.
TEST_XLA_FLAGS = ["--xla_backend_optimization_level=1"]
if metadata.version("jaxlib").startswith("0.10."):
    TEST_XLA_FLAGS.append("--xla_cpu_use_fusion_emitters=false")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *TEST_XLA_FLAGS]).strip()

# The files that take a minute or more of one core (`pytest --durations`), heaviest first. They
# run first: `make test` hands whole files to two xdist workers in collection order
# (`--dist loadfile --no-loadscope-reorder`), and a heavy file handed out last would leave one
# worker idle while the other finishes it. Measured on 2026-12-01, 2 cores, under the XLA
# flags above.
HEAVY_FIRST = (
    "tests/sweeps/test_executors.py",  # ~155 s: three sweeps in subprocesses, a Ray cluster
    "tests/agents/test_continuous.py",  # ~170 s: SAC and TD3 learn Pendulum
    "tests/agents/test_one_device.py",  # ~30 s: PPO learns CartPole on one XLA device
    "tests/data/test_offline_runs.py",  # ~190 s: the medium recipe; TD3+BC, IQL, CQL learn
    "tests/agents/test_learning.py",  # ~95 s: DQN and PPO learn CartPole
    "tests/scenarios/test_minatar_sequence.py",  # ~70 s: four games compile
    "tests/runs/test_run_end_to_end.py",  # ~110 s: resume after SIGKILL, CLI runs
    "tests/data/test_offline_to_online.py",  # ~110 s: offline-then-online runs, WSRL, JSRL
    "tests/agents/test_offline_agents.py",
    "tests/methods/test_hooks.py",
    "tests/runs/test_continuous_runs.py",
    "tests/runs/test_open_scenarios.py",
    "tests/data/test_record.py",  # ~40 s: recorded runs on both paths
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return HEAVY_FIRST.index(path) if path in HEAVY_FIRST else len(HEAVY_FIRST)
    items.sort(key=rank)  # stable: the other files keep their order


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EVERLEARN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.getbasetemp() / "minari"))


@pytest.fixture
def biased_breakout():
    """`make(plan, network, action) -> (agent, state, obs)`: 64 Breakout start frames from the
    plan's first env group (Breakout) and a fresh agent whose `network`'s output bias is pushed
    hard towards `action` (the masked-action tests)."""
    import jax

    def make(plan, network: str, action: int):
        agent, group = plan.trainer.agent, plan.trainer.groups[0]
        assert group.env.name == "Breakout-MinAtar"
        params = jax.tree.map(lambda x: x[0], group.tasks)
        obs, _ = jax.vmap(group.env.reset, in_axes=(0, None))(
            jax.random.split(jax.random.PRNGKey(0), 64), params)
        state = agent.init(jax.random.PRNGKey(1))
        head = state.params[network]["params"]
        last = max(k for k in head if k.startswith("Dense_"))
        head[last]["bias"] = head[last]["bias"].at[action].set(100.0)
        return agent, state, obs

    return make
