"""Shared test set-up: reference-run caches and Minari datasets go to a temporary folder (one
per test session and worker, so a recipe dataset is made once), never the user's."""

import pytest

# The files that take a minute or more of one core (`pytest --durations`), heaviest first. They
# run first: `make test` hands whole files to two xdist workers in collection order
# (`--dist loadfile --no-loadscope-reorder`), and a heavy file handed out last would leave one
# worker idle while the other finishes it. Measured on 2026-12-01, 2 cores.
HEAVY_FIRST = (
    "tests/sweeps/test_executors.py",  # ~230 s: three sweeps in subprocesses, a Ray cluster
    "tests/agents/test_continuous.py",  # ~150 s: SAC and TD3 learn Pendulum
    "tests/agents/test_one_device.py",  # ~55 s: TD3 learns Pendulum on one XLA device
    "tests/scenarios/test_minatar_sequence.py",  # ~130 s: four games compile
    "tests/runs/test_run_end_to_end.py",  # ~130 s: resume after SIGKILL, CLI runs
    "tests/agents/test_learning.py",  # ~90 s: DQN and PPO learn CartPole
    "tests/data/test_offline_runs.py",  # ~90 s: the medium recipe, TD3+BC learns from it
    "tests/data/test_offline_to_online.py",  # ~60 s: an offline-then-online run, WSRL, mixing
    "tests/agents/test_offline_agents.py",
    "tests/methods/test_hooks.py",
    "tests/runs/test_continuous_runs.py",
    "tests/runs/test_open_scenarios.py",
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
