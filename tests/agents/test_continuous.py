"""SAC and TD3: learning bars on Pendulum-v1 (functional path, median of 8 seeds, short
budgets) and the mechanisms that make them what they are (entropy tuning, policy delay,
update-to-data ratio, random warm-up, float actions on the Gymnasium path)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.core.replay import ReplayBuffer, Transition
from everlearn.scenarios import get_scenario
from everlearn.training.functional import FunctionalTrainer
from everlearn.training.gymnasium import GymnasiumTrainer

PENDULUM = EnvSpec(obs_dim=3, num_actions=1, continuous=True)
# Small networks keep the learning tests (8 seeds) to ~30 s each on 2 cores (SB3's [256, 256]
# learns Pendulum too, at ~10x the compute).
SMALL = {"hidden_sizes": (64, 64)}


@pytest.mark.parametrize("agent_name", ["sac", "td3"])
def test_learns_pendulum_within_12k_steps(agent_name):
    """8 vmapped seeds, 2 segments of 6,000 steps; each seed's score is its mean greedy return
    over 10 episodes after 12k env steps. Bar: median >= -300. A random policy gets about
    -1200, a swing-up-and-balance policy about -150 (-100 to -200 by start state).

    A fixed seed's curve differs from machine to machine (XLA emits different code for another
    CPU model or device count; TD3 seeds 0-2 gave -356, -146, -149 on one machine, and seed 1
    below gives -407 with 2 devices, -146 with 1), so the bar is on the median of 8 seeds, set
    from medians measured on disjoint seed sets (0-7, 8-15, 16-23, 24-31), with the default
    device count (2) and JAX_NUM_CPU_DEVICES=1, on 2026-11-30 on a 2-core x86_64 CPU:
      sac, 2 devices: medians -149, -145, -155, -151; per-seed -194 to -95
      sac, 1 device:  medians -149, -145, -155, -151; per-seed -194 to -95
      td3, 2 devices: medians -148, -145, -154, -173; per-seed -600 to -105
      td3, 1 device:  medians -147, -145, -156, -163; per-seed -575 to -99
    TD3 fails to balance in 7 of 64 runs (-342 to -600), SAC in none. P(fail), the chance that
    8 seeds drawn from the 64 measured scores have a median under -300 (bootstrap): TD3 0.0013,
    SAC < 1e-5. After 6k steps the TD3 medians are -191 to -369.
    SAC 36 s, TD3 29 s on 2 cores (55 s, 41 s with JAX_NUM_CPU_DEVICES=1; 3 seeds took 29 s,
    23 s).
    """
    agent = make_agent(agent_name, AGENTS[agent_name].config(**SMALL), PENDULUM)
    trainer = FunctionalTrainer(get_scenario("pendulum-stationary"), agent, 6_000,
                                eval_episodes=10)
    seeds = list(range(8))
    state = trainer.init(seeds)
    returns = []
    for segment in (1, 2):
        state, _ = trainer.train_segment(state, 0)
        returns.append(trainer.evaluate(state, seeds, segment)[:, 0])
    median = np.median(returns[-1])
    assert median >= -300, (f"{agent_name} median return at 12k steps {median:.1f} < -300; "
                            f"per seed at 6k, 12k steps: {np.round(returns, 1)}")


def _random_batch(key: jax.Array, steps: int) -> Transition:
    k_obs, k_act, k_rew = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (steps, 1, 3))
    return Transition(obs=obs, action=jax.random.uniform(k_act, (steps, 1, 1), minval=-1.0),
                      reward=jax.random.normal(k_rew, (steps, 1)),
                      terminated=jnp.zeros((steps, 1), bool),
                      truncated=jnp.zeros((steps, 1), bool), next_obs=obs + 0.1, extras={})


def _updated(agent_name: str, gradient_steps: int, **overrides):
    """An agent after one `update` of `gradient_steps` steps on random data (no warm-up)."""
    config = AGENTS[agent_name].config(**{**SMALL, "buffer_size": 64, "batch_size": 8,
                                          "learning_starts": 0, "train_every": gradient_steps,
                                          **overrides})
    agent = make_agent(agent_name, config, PENDULUM)
    state = agent.init(jax.random.PRNGKey(0))
    batch = _random_batch(jax.random.PRNGKey(1), gradient_steps)
    new_state, info = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(2))
    return state, new_state, info


def _changed(before, after) -> bool:
    return any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(before),
                                                      jax.tree.leaves(after)))


def test_td3_moves_actor_and_targets_every_second_step_only():
    state, one, _ = _updated("td3", gradient_steps=1)
    assert _changed(state.params["q1"], one.params["q1"])  # critics learn at every step
    assert not _changed(state.params["actor"], one.params["actor"])  # delayed
    assert not _changed(state.target_params, one.target_params)
    state, two, _ = _updated("td3", gradient_steps=2)
    assert _changed(state.params["actor"], two.params["actor"])
    assert _changed(state.target_params["actor"], two.target_params["actor"])
    assert int(two.gradient_steps) == 2


def test_sac_entropy_coefficient_falls_while_the_policy_is_too_random():
    # A fresh actor has std ~1 per dimension: entropy ~1.4 nats, far above the target (-1).
    state, new, info = _updated("sac", gradient_steps=16)
    assert float(new.log_alpha) < float(state.log_alpha)
    assert float(info["entropy"]) > -1.0
    state, new, _ = _updated("sac", gradient_steps=16, target_entropy=10.0)
    assert float(new.log_alpha) > float(state.log_alpha)  # an unreachable target: α rises


@pytest.mark.parametrize("agent_name", ["sac", "td3"])
def test_update_to_data_ratio_sets_gradient_steps(agent_name):
    _, new, _ = _updated(agent_name, gradient_steps=4, utd_ratio=0.5)
    assert int(new.gradient_steps) == 2
    _, new, _ = _updated(agent_name, gradient_steps=4, utd_ratio=2.0)
    assert int(new.gradient_steps) == 8
    config = AGENTS[agent_name].config(train_every=1, utd_ratio=0.25)
    with pytest.raises(ValueError, match="whole number >= 1.*train_every=4"):
        make_agent(agent_name, config, PENDULUM)


@pytest.mark.parametrize("agent_name", ["sac", "td3"])
def test_acts_uniformly_at_random_until_learning_starts(agent_name):
    config = AGENTS[agent_name].config(**SMALL, learning_starts=1_000)
    agent = make_agent(agent_name, config, PENDULUM)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((4_000, 3))  # the same observation: only randomness spreads the actions
    warm, _ = agent.act(state, obs, jax.random.PRNGKey(1))
    assert warm.shape == (4_000, 1)
    assert float(warm.min()) >= -1.0 and float(warm.max()) <= 1.0
    # uniform on [-1, 1]: mean 0, variance 1/3
    assert abs(float(warm.mean())) < 0.05 and abs(float(warm.var()) - 1 / 3) < 0.03
    learning, _ = agent.act(state.replace(env_steps=jnp.int32(1_000)), obs,
                            jax.random.PRNGKey(1))
    assert not bool(jnp.any(learning == warm))  # now the policy's own (noisy) actions
    assert float(jnp.abs(learning).max()) <= 1.0


@pytest.mark.parametrize("agent_name", ["sac", "td3"])
def test_discrete_env_is_refused(agent_name):
    with pytest.raises(ValueError, match="continuous actions"):
        make_agent(agent_name, AGENTS[agent_name].config(), EnvSpec(4, 2))


def test_replay_buffer_states_its_footprint():
    buffer = ReplayBuffer.create(1_000, obs_dim=11, action_shape=(3,), action_dtype=jnp.float32)
    assert buffer.nbytes == ReplayBuffer.footprint(1_000, 11, (3,))
    # a 1M-transition Hopper buffer (obs 11, action 3, float32) is ~105 MB
    assert ReplayBuffer.footprint(1_000_000, 11, (3,)) == 105_000_000


def test_gymnasium_path_stores_float_action_vectors():
    config = AGENTS["sac"].config(**SMALL, learning_starts=100, buffer_size=1_000,
                                  train_every=50)
    agent = make_agent("sac", config, PENDULUM)
    trainer = GymnasiumTrainer(get_scenario("pendulum-stationary"), agent, iterations=4,
                               eval_episodes=2)
    state, metrics = trainer.train_segment(trainer.init([0]), 0)
    buffer = state.agent.buffer
    assert int(buffer.size[0]) == 200 and buffer.action.shape == (1, 1_000, 1)
    actions = np.asarray(buffer.action[0, :200, 0])
    assert actions.dtype == np.float32 and np.abs(actions).max() <= 1.0 and actions.std() > 0.3
    # updates 2-4 find >= 100 rows (learning_starts) in the buffer: 3 x 50 gradient steps
    assert int(state.agent.gradient_steps[0]) == 150
    assert np.isfinite(metrics["critic_loss"]).all()
    returns = trainer.evaluate(state, [0], 1)
    assert returns.shape == (1, 1) and -2_000 < returns[0, 0] < 0
