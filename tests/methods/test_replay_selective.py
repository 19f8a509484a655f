"""Selective replay keeps, at a task's end, the candidates whose action the learned policy
takes, in that task's share of the memory, and mixes them into later minibatches."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents.common import EnvSpec
from everlearn.agents.td3 import TD3Config, make_td3
from everlearn.methods.replay_selective import (
    SelectiveReplayConfig,
    make_replay_selective,
)

SPEC = EnvSpec(obs_dim=3, num_actions=1, num_tasks=2, continuous=True)
CONFIG = SelectiveReplayConfig(capacity=40, candidates=64, replay_fraction=0.5)


def _agent():
    return make_td3(TD3Config(hidden_sizes=(16,)), SPEC,
                    [partial(make_replay_selective, CONFIG)])


def _rows(agent, state, agree: np.ndarray):
    """64 rows; where `agree`, the action is the policy's own, elsewhere its opposite sign
    pushed away by 1."""
    obs = jax.random.normal(jax.random.PRNGKey(5), (64, 3))
    policy = agent.greedy_action(state, obs)
    action = jnp.where(agree[:, None], policy, jnp.clip(-policy - jnp.sign(policy), -1, 1))
    return {"obs": obs, "action": action, "reward": jnp.arange(64, dtype=jnp.float32),
            "terminated": jnp.zeros(64, bool), "next_obs": obs}


def test_task_end_keeps_the_rows_the_policy_agrees_with():
    agent = _agent()
    state = agent.init(jax.random.PRNGKey(0))
    agree = np.arange(64) % 3 == 0  # 22 rows agree, 42 do not
    rows = _rows(agent, state, agree)
    hooks_state = state.methods
    method = hooks_state["replay_selective"]
    method = {**method, "candidates": {**method["candidates"],
                                       "rows": {k: rows[k] for k in method["candidates"]["rows"]},
                                       "size": jnp.int32(64), "position": jnp.int32(0)}}
    state = state.replace(methods={**hooks_state, "replay_selective": method})
    ended = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), jax.random.PRNGKey(1))
    kept = ended.methods["replay_selective"]
    quota = CONFIG.capacity // SPEC.num_tasks  # 20 rows for task 0
    assert int(kept["filled"][0]) == quota and int(kept["filled"][1]) == 0
    kept_rewards = set(np.asarray(kept["memory"].reward[:quota]).astype(int))
    agreeing = set(np.flatnonzero(agree))
    assert kept_rewards <= agreeing  # only rows whose action the policy takes
    assert int(kept["candidates"]["size"]) == 0  # the next task's candidates start empty
    # Later minibatches: half their rows come from the kept memory.
    minibatch = {k: jnp.full((16, *v.shape[1:]), -7, v.dtype) for k, v in rows.items()}
    mixed = make_replay_selective(CONFIG, agent.view).transform_batch(
        kept, minibatch, jax.random.PRNGKey(2))
    assert set(np.asarray(mixed["reward"][:8]).astype(int)) <= kept_rewards
    assert np.all(np.asarray(mixed["reward"][8:]) == -7)


def test_observe_collects_candidates_through_offline_learning():
    """Offline, the candidates are the dataset rows the agent learns from."""
    from everlearn.core.replay import ReplayBuffer

    agent = _agent()
    state = agent.init(jax.random.PRNGKey(0))
    dataset = ReplayBuffer.create(32, 3, (1,), jnp.float32).replace(
        reward=jnp.arange(100, 132, dtype=jnp.float32), size=jnp.int32(32))
    learn = jax.jit(agent.learn)
    for k in range(5):
        state, _ = learn(state, dataset, jax.random.PRNGKey(k))
    pool = state.methods["replay_selective"]["candidates"]
    assert int(pool["size"]) == 5
    assert set(np.asarray(pool["rows"]["reward"][:5]).astype(int)) <= set(range(100, 132))
