"""PackNet: pruning keeps exactly the intended weights; frozen weights never move again."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import everlearn.methods
from everlearn.agents import EnvSpec, make_agent
from everlearn.methods.packnet import FREE, PackNetConfig, prune_kernel


def test_pruning_keeps_the_largest_free_weights_and_zeroes_the_other_free_ones():
    weights = jnp.array([[0.5, -3.0, 0.1], [2.0, -0.2, 9.0], [0.3, -1.0, 0.7]])
    owner = jnp.array([[FREE, FREE, FREE], [FREE, FREE, 0], [FREE, FREE, FREE]])  # 9.0 is owned
    new_weights, new_owner = prune_kernel(weights, owner, jnp.int32(1), keep_fraction=0.5)
    # 8 free weights, floor(0.5 * 8) = 4 kept: the largest magnitudes -3, 2, -1, 0.7.
    expected_owner = np.array([[FREE, 1, FREE], [1, FREE, 0], [FREE, 1, 1]])
    np.testing.assert_array_equal(new_owner, expected_owner)
    expected_weights = np.array([[0.0, -3.0, 0.0], [2.0, 0.0, 9.0], [0.0, -1.0, 0.7]], np.float32)
    np.testing.assert_array_equal(new_weights, expected_weights)


def test_pruning_count_is_exact_with_ties_and_rounds_down():
    weights = jnp.ones((7, 3))  # all magnitudes tie
    owner = jnp.full((7, 3), FREE).at[0].set(0)  # 18 free
    _, new_owner = prune_kernel(weights, owner, jnp.int32(2), keep_fraction=0.3)
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
