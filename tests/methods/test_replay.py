"""Replay kept across tasks: reservoir uniformity, task-balanced quotas, minibatch mixing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from everlearn.agents import EnvSpec, make_agent
from everlearn.agents.dqn import DQNConfig
from everlearn.core.replay import ReplayBuffer
from everlearn.methods import METHODS, Method
from everlearn.methods.replay import (
    BalancedReplayConfig,
    ReplayConfig,
    make_replay,
    memory_nbytes,
    sample_rows,
)
from everlearn.runs.checks import agents_for

DQN_SMALL = DQNConfig(train_every=16, gradient_steps=2, batch_size=8, buffer_size=64,
                      learning_starts=0, hidden_sizes=(8,))


@functools.cache
def _dqn_view_and_params():
    """The AgentView a real DQN gives its methods (2 tasks), and its initial params."""
    captured = {}

    def capture(view):
        captured["view"] = view
        return Method("capture")

    agent = make_agent("dqn", DQN_SMALL, EnvSpec(4, 2, num_tasks=2), [capture])
    return captured["view"], jax.jit(agent.init)(jax.random.PRNGKey(0)).params


def _transitions(ids: jax.Array, label: int = 0) -> dict:
    """Transitions whose obs carry an id (column 0) and a label (column 1)."""
    n = ids.shape[0]
    obs = jnp.stack([ids.astype(jnp.float32), jnp.full((n,), label, jnp.float32),
                     jnp.zeros(n), jnp.zeros(n)], axis=1)
    return {"obs": obs, "action": jnp.zeros(n, jnp.int32), "reward": jnp.ones(n),
            "terminated": jnp.zeros(n, bool), "next_obs": obs}


def _stream(method, state, ids, batch: int, task: int, key, label: int = 0):
    """Observe `ids` in batches, as one compiled program."""
    def step(state, inputs):
        batch_ids, k = inputs
        return method.observe(state, _transitions(batch_ids, label), task, k), None

    batches = ids.reshape(-1, batch)
    keys = jax.random.split(key, batches.shape[0])
    return jax.jit(lambda state: jax.lax.scan(step, state, (batches, keys))[0])(state)


def _uniformity_p_value(inclusions: np.ndarray, runs: int, capacity: int) -> float:
    """Chi-square test that each of the stream's items was kept in capacity/len of the runs
    (binomial variance per item)."""
    p = capacity / len(inclusions)
    chi2 = np.sum((inclusions - runs * p) ** 2 / (runs * p * (1 - p)))
    return float(stats.chi2.sf(chi2, len(inclusions) - 1))


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    # 64 items in batches of 16 into 8 slots: most items of a batch compete for the few slots,
    # so both the keep probability and the in-batch write order are exercised.
    view, params = _dqn_view_and_params()
    method = make_replay(ReplayConfig(capacity=8), view)
    runs, items, capacity = 20_000, 64, 8
    state = method.init(jax.random.PRNGKey(0), params)

    def one_run(key):
        return _stream(method, state, jnp.arange(items), 16, 0, key)["memory"].obs[:, 0]

    kept = np.asarray(jax.jit(jax.vmap(one_run))(jax.random.split(jax.random.PRNGKey(1), runs)))
    kept = kept.astype(int)
    assert all(len(set(row)) == capacity for row in kept), "a run kept an item twice"
    inclusions = np.bincount(kept.ravel(), minlength=items)
    assert _uniformity_p_value(inclusions, runs, capacity) > 1e-3, inclusions
    # The same test rejects a biased writer, e.g. a ring that keeps the newest items.
    ring = np.bincount(np.tile(np.arange(items - capacity, items), runs), minlength=items)
    assert _uniformity_p_value(ring, runs, capacity) < 1e-3


def test_reservoir_fills_in_order_then_counts_every_transition():
    view, params = _dqn_view_and_params()
    method = make_replay(ReplayConfig(capacity=20), view)
    state = method.init(jax.random.PRNGKey(0), params)
    state = _stream(method, state, jnp.arange(12), 12, 0, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(state["memory"].obs[:12, 0], np.arange(12))
    assert int(state["memory"].size) == 12
    state = _stream(method, state, jnp.arange(12, 100), 22, 0, jax.random.PRNGKey(2))
    assert int(state["memory"].size) == 20 and int(state["seen"][0]) == 100


def test_task_balanced_replay_holds_its_quotas():
    # 2 tasks, capacity 100: 50 slots each. A long task 0 (1280 transitions), then a short
    # task 1 (128): task 1 gets its 50 slots, task 0 never holds more than its 50.
    view, params = _dqn_view_and_params()
    balanced = make_replay(BalancedReplayConfig(capacity=100), view)
    state = balanced.init(jax.random.PRNGKey(0), params)
    state = _stream(balanced, state, jnp.arange(1280), 64, 0, jax.random.PRNGKey(1), label=0)
    labels = np.asarray(state["memory"].obs[:, 1])
    ids = np.asarray(state["memory"].obs[:, 0])
    assert int(state["memory"].size) == 50
    assert len(set(ids[:50])) == 50 and np.all(ids[50:] == 0), "task 0 exceeded its quota"
    state = _stream(balanced, state, jnp.arange(128), 64, 1, jax.random.PRNGKey(2), label=1)
    labels = np.asarray(state["memory"].obs[:, 1])
    ids = np.asarray(state["memory"].obs[:, 0])
    assert int(state["memory"].size) == 100
    np.testing.assert_array_equal(labels, [0] * 50 + [1] * 50)
    assert len(set(ids[50:])) == 50
    # Plain reservoir replay on the same stream keeps task 1 only in proportion (~9 rows).
    plain = make_replay(ReplayConfig(capacity=100), view)
    state = plain.init(jax.random.PRNGKey(0), params)
    state = _stream(plain, state, jnp.arange(1280), 64, 0, jax.random.PRNGKey(1), label=0)
    state = _stream(plain, state, jnp.arange(128), 64, 1, jax.random.PRNGKey(2), label=1)
    assert np.sum(np.asarray(state["memory"].obs[:, 1]) == 1) < 25


def test_sample_rows_draws_uniformly_from_filled_rows_only():
    # Segments of 4 rows holding 3, 0 and 2 rows: only rows 0, 1, 2, 8, 9 hold data.
    rows = np.asarray(sample_rows(jax.random.PRNGKey(0), jnp.array([3, 0, 2]), 4, 50_000))
    values, counts = np.unique(rows, return_counts=True)
    np.testing.assert_array_equal(values, [0, 1, 2, 8, 9])
    np.testing.assert_allclose(counts / rows.size, 0.2, atol=0.01)


@pytest.mark.parametrize("fraction,expected", [(0.5, 64), (0.25, 32)])
def test_mixing_replaces_the_expected_fraction_of_rows(fraction, expected):
    view, params = _dqn_view_and_params()
    method = make_replay(ReplayConfig(capacity=16, replay_fraction=fraction), view)
    state = method.init(jax.random.PRNGKey(0), params)
    minibatch = _transitions(jnp.zeros(128), label=0)
    # Nothing kept yet: the minibatch passes unchanged.
    transform_batch = jax.jit(method.transform_batch)
    unchanged = transform_batch(state, minibatch, jax.random.PRNGKey(1))
    for name in minibatch:
        np.testing.assert_array_equal(unchanged[name], minibatch[name])
    # 5 kept transitions, label 7: exactly `fraction` of the rows now come from them.
    state = _stream(method, state, jnp.arange(5), 5, 0, jax.random.PRNGKey(2), label=7)
    mixed = transform_batch(state, minibatch, jax.random.PRNGKey(3))
    from_memory = np.asarray(mixed["obs"][:, 1]) == 7
    assert from_memory.sum() == expected
    assert set(np.asarray(mixed["obs"][from_memory, 0]).astype(int)) <= set(range(5))
    for name in minibatch:
        assert mixed[name].dtype == minibatch[name].dtype
        assert mixed[name].shape == minibatch[name].shape
    np.testing.assert_array_equal(mixed["next_obs"], mixed["obs"])  # rows stay whole


def test_memory_footprint_matches_the_arrays():
    assert memory_nbytes(20_000, 4) == ReplayBuffer.create(20_000, 4).nbytes == 820_000


def test_the_view_gives_the_full_observation_width_to_multi_head_networks():
    captured = {}

    def capture(view):
        captured["view"] = view
        return Method("capture")

    # 4 observation entries + a 3-task one-hot that the multi-head layers slice off first.
    agent = make_agent("dqn", DQN_SMALL, EnvSpec(7, 2, num_tasks=3, heads=3), [capture])
    params = agent.init(jax.random.PRNGKey(0)).params
    assert params["q"]["params"]["Dense_0"]["kernel"].shape[0] == 4
    assert captured["view"].obs_dim == 7
    state = make_replay(ReplayConfig(capacity=8), captured["view"]).init(
        jax.random.PRNGKey(1), params)
    assert state["memory"].obs.shape == (8, 7)


def test_dqn_updates_with_replay_under_jit_and_vmap(two_seeds):
    off_policy = ("dqn", "sac", "td3", "td3_bc", "iql", "cql", "cql_dqn")
    assert agents_for(METHODS["replay"]) == agents_for(METHODS["replay_balanced"]) == off_policy
    assert not METHODS["replay"].needs_boundaries and METHODS["replay_balanced"].needs_boundaries
    # Both variants at once (they compose), to compile the agent once.
    agent = make_agent("dqn", DQN_SMALL, EnvSpec(4, 2, num_tasks=2), [
        lambda view: make_replay(ReplayConfig(capacity=32), view),
        lambda view: make_replay(BalancedReplayConfig(capacity=32), view)])
    state, batch, keys = two_seeds(agent)
    update = jax.jit(jax.vmap(agent.update))
    for _ in range(3):
        state, info = update(state, batch, keys)
    # 3 updates x 16 transitions of task 0: the reservoir is full, task 0's half too.
    assert state.methods["replay"]["memory"].size.tolist() == [32, 32]
    assert state.methods["replay_balanced"]["memory"].size.tolist() == [16, 16]
    assert np.all(np.isfinite(np.asarray(info["q_loss"])))
