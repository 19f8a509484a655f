"""PackNet: pruning keeps exactly the intended weights; frozen weights never move again; an
earlier task's view of the network gives exactly the outputs it had at its end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import everlearn.methods
from everlearn.agents import AGENTS, EnvSpec, make_agent
from everlearn.core.replay import Transition
from everlearn.methods.packnet import FREE, PackNetConfig, prune_kernel


def test_pruning_keeps_the_largest_free_weights_and_zeroes_the_other_free_ones():
    weights = jnp.array([[0.5, -3.0, 0.1], [2.0, -0.2, 9.0], [0.3, -1.0, 0.7]])
    owner = jnp.array([[FREE, FREE, FREE], [FREE, FREE, 0], [FREE, FREE, FREE]])  # 9.0 is owned
    new_weights, new_owner = prune_kernel(weights, owner, jnp.int32(1), 0.5)
    # 8 free weights, floor(0.5 * 8) = 4 kept: the largest magnitudes -3, 2, -1, 0.7.
    expected_owner = np.array([[FREE, 1, FREE], [1, FREE, 0], [FREE, 1, 1]])
    np.testing.assert_array_equal(new_owner, expected_owner)
    expected_weights = np.array([[0.0, -3.0, 0.0], [2.0, 0.0, 9.0], [0.0, -1.0, 0.7]], np.float32)
    np.testing.assert_array_equal(new_weights, expected_weights)


def test_pruning_count_is_exact_with_ties_and_rounds_down():
    weights = jnp.ones((7, 3))  # all magnitudes tie
    owner = jnp.full((7, 3), FREE).at[0].set(0)  # 18 free
    _, new_owner = prune_kernel(weights, owner, jnp.int32(2), 0.3)
    assert int(jnp.sum(new_owner == 2)) == 5  # floor(0.3 * 18)
    assert int(jnp.sum(new_owner == 0)) == 3


@pytest.mark.parametrize("agent_name", ["ppo", "dqn"])
def test_frozen_weights_stay_bit_identical_while_free_ones_train(agent_name, tiny_config,
                                                                 random_batch):
    config = tiny_config(agent_name)
    builders = everlearn.methods.method_builders(["packnet"], {"packnet": PackNetConfig()})
    agent = make_agent(agent_name, config, EnvSpec(4, 2, 3), methods=builders)
    key = jax.random.PRNGKey(0)
    state = agent.init(key)
    update = jax.jit(agent.update)
    for i in range(2):  # train on task 0, so the weights kept for it are not the initial ones
        state, _ = update(state, random_batch(jax.random.fold_in(key, i), agent), key)
    state = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), key)
    owner = state.methods["packnet"]["owner"]
    at_boundary = state.params
    for i in range(2, 5):
        state, _ = update(state, random_batch(jax.random.fold_in(key, i), agent),
                          jax.random.fold_in(key, 100 + i))

    frozen = free = 0
    changed_free = 0
    for before, after, own in zip(jax.tree.leaves(at_boundary), jax.tree.leaves(state.params),
                                  jax.tree.leaves(owner)):
        before, after, own = map(np.asarray, (before, after, own))
        np.testing.assert_array_equal(after[own != FREE], before[own != FREE])  # bit-identical
        frozen += int(np.sum(own != FREE))
        free += int(np.sum(own == FREE))
        changed_free += int(np.sum(after[own == FREE] != before[own == FREE]))
    assert frozen > 0 and free > 0
    assert changed_free > free // 2, "the free weights should have trained"


TINY_SAC = dict(num_envs=2, train_every=8, batch_size=8, learning_starts=8, buffer_size=64,
                hidden_sizes=(8, 8))
POLICY_OUTPUT = {"ppo": "logits", "dqn": "q", "sac": "action"}


def _task_batch(key, agent, task, spec):
    """A random rollout whose observations end in task `task`'s one-hot (with heads)."""
    k_obs, k_next, k_act, k_rew = jax.random.split(key, 4)
    shape = (agent.rollout_length, agent.num_envs)
    features = spec.obs_dim - (spec.heads if spec.heads > 1 else 0)

    def observations(k):
        obs = jax.random.normal(k, (*shape, features))
        if spec.heads > 1:
            obs = jnp.concatenate([obs, jnp.broadcast_to(jax.nn.one_hot(task, spec.heads),
                                                         (*shape, spec.heads))], axis=-1)
        return obs

    action = (jax.random.uniform(k_act, (*shape, spec.num_actions), minval=-1, maxval=1)
              if spec.continuous else jax.random.randint(k_act, shape, 0, spec.num_actions))
    extras = ({"log_prob": jnp.full(shape, -0.7), "value": jnp.zeros(shape)}
              if agent.name == "ppo" else {})
    return Transition(obs=observations(k_obs), action=action,
                      reward=jax.random.normal(k_rew, shape),
                      terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
                      next_obs=observations(k_next), extras=extras)


@pytest.mark.parametrize("agent_name,heads", [("ppo", 1), ("dqn", 3), ("sac", 3)])
def test_an_earlier_tasks_outputs_never_change_while_later_tasks_train(agent_name, heads,
                                                                       tiny_config):
    """Through three tasks: at each boundary, record every finished task's policy outputs on
    its own view (`for_task`); after the later tasks have trained, they are bit-identical,
    while the task in training changes its own."""
    continuous = agent_name == "sac"
    features = 5
    spec = EnvSpec(features + (heads if heads > 1 else 0), 2, num_tasks=3, heads=heads,
                   continuous=continuous)
    config = (AGENTS["sac"].config(**TINY_SAC) if continuous else tiny_config(agent_name))
    builders = everlearn.methods.method_builders(["packnet"], {"packnet": PackNetConfig()})
    agent = make_agent(agent_name, config, spec, methods=builders)
    update, for_task = jax.jit(agent.update), jax.jit(agent.for_task)
    outputs = jax.jit(lambda params, obs: agent.view.outputs(params, obs)[
        POLICY_OUTPUT[agent_name]])
    key = jax.random.PRNGKey(0)
    probe = {t: _task_batch(jax.random.fold_in(key, 1000 + t), agent, t, spec).obs[0]
             for t in range(3)}
    state = agent.init(key)
    recorded = {}
    for task in range(3):
        if task > 0:
            state = agent.task_boundary(state, jnp.int32(task - 1), jnp.int32(task), key)
            recorded[task - 1] = outputs(for_task(state, task - 1).params, probe[task - 1])
        start = outputs(for_task(state, task).params, probe[task])
        for i in range(4):
            k = jax.random.fold_in(key, 10 * task + i)
            state, _ = update(state, _task_batch(k, agent, task, spec), k)
        assert not np.array_equal(outputs(for_task(state, task).params, probe[task]), start), \
            f"task {task} should have trained"
        for old, out in recorded.items():
            np.testing.assert_array_equal(outputs(for_task(state, old).params, probe[old]), out,
                                          err_msg=f"task {old} changed while task {task} trained")
    assert len(recorded) == 2


def test_equal_split_gives_each_task_its_share_of_every_kernel(tiny_config, random_batch):
    """keep_fraction None: with 4 tasks, tasks 0, 1, 2 each own floor(1/4, 1/3, 1/2 of the free
    weights), about a quarter of each kernel; weights the last task will train stay free."""
    spec = EnvSpec(4, 2, num_tasks=4)
    builders = everlearn.methods.method_builders(["packnet"], {"packnet": PackNetConfig()})
    agent = make_agent("ppo", tiny_config("ppo"), spec, methods=builders)
    key = jax.random.PRNGKey(0)
    state = agent.init(key)
    for task in range(3):
        state, _ = jax.jit(agent.update)(state, random_batch(key, agent), key)
        state = agent.task_boundary(state, jnp.int32(task), jnp.int32(task + 1), key)
    owner = np.asarray(state.methods["packnet"]["owner"]["actor"]["params"]["Dense_0"]["kernel"])
    free = owner.size  # 4 x 8 = 32
    for task, share in enumerate([1 / 4, 1 / 3, 1 / 2]):
        kept = int(np.floor(share * free))
        assert int(np.sum(owner == task)) == kept
        free -= kept
    assert int(np.sum(owner == FREE)) == free
    critic = state.methods["packnet"]["owner"]["critic"]
    assert all(np.all(np.asarray(o) == FREE) for o in jax.tree.leaves(critic)), \
        "the critic is not packed"
