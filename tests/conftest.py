"""Shared test set-up: reference-run caches and Minari datasets go to a temporary folder (one
per test session and worker, so a recipe dataset is made once), never the user's."""

import pytest


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
