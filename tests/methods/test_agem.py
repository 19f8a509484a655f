"""A-GEM: the projection on hand-made gradients, the episodic memory and the Optax link."""

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.core.replay import replay_row
from everlearn.methods.agem import AGEMConfig, make_agem, project_gradient
from everlearn.methods.base import AgentView


def _tree_dot(a, b) -> float:
    return float(sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


G = {"a": jnp.array([1.0, 2.0]), "b": {"kernel": jnp.array([[3.0, -1.0]])}}


def test_conflicting_gradient_is_projected_to_the_closed_form():
    g_ref = {"a": jnp.array([-1.0, 0.0]), "b": {"kernel": jnp.array([[-1.0, 1.0]])}}
    # g·g_ref = -1 + 0 - 3 - 1 = -5; g_ref·g_ref = 3
    projected = project_gradient(G, g_ref, jnp.array(True))
    expected = {"a": np.array([1.0, 2.0]) + 5 / 3 * np.array([-1.0, 0.0]),
                "b": {"kernel": np.array([[3.0, -1.0]]) + 5 / 3 * np.array([[-1.0, 1.0]])}}
    jax.tree.map(lambda p, e: np.testing.assert_allclose(p, e, rtol=1e-6), projected, expected)
    assert abs(_tree_dot(projected, g_ref)) < 1e-5


def test_agreeing_gradient_is_unchanged():
    g_ref = {"a": jnp.array([1.0, 0.0]), "b": {"kernel": jnp.array([[0.0, 0.5]])}}  # dot 0.5
    projected = project_gradient(G, g_ref, jnp.array(True))
    jax.tree.map(lambda p, g: np.testing.assert_array_equal(p, g), projected, G)


def test_no_reference_leaves_the_gradient_unchanged_even_if_it_is_not_finite():
    g_ref = {"a": jnp.array([-1.0, jnp.nan]), "b": {"kernel": jnp.array([[-1.0, 1.0]])}}
    projected = project_gradient(G, g_ref, jnp.array(False))
    jax.tree.map(lambda p, g: np.testing.assert_array_equal(p, g), projected, G)


OBS_DIM = 2  # the rows below hold 2-entry observations


def _method(memory_per_task=4, reference_batch=64):
    view = AgentView("dqn", off_policy=True, outputs=None, policy_logits=None, loss=None,
                     networks=("q",), num_tasks=3, obs_dim=OBS_DIM,
                     minibatch_row=replay_row(OBS_DIM))
    return make_agem(AGEMConfig(memory_per_task=memory_per_task,
                                reference_batch=reference_batch), view)


def _rows(values):
    n = len(values)
    obs = jnp.tile(jnp.asarray(values, jnp.float32)[:, None], (1, 2))
    return {"obs": obs, "action": jnp.zeros(n, jnp.int32), "reward": jnp.zeros(n),
            "terminated": jnp.zeros(n, bool), "next_obs": obs}


PARAMS = {"q": {"params": {"Dense_0": {"bias": jnp.zeros(3), "kernel": jnp.ones((2, 3))},
                           "Dense_1": {"bias": jnp.zeros(1), "kernel": jnp.ones((3, 1))}}}}


def test_link_uses_only_finished_tasks_and_their_last_rows():
    method = _method(memory_per_task=4)
    key = jax.random.PRNGKey(0)
    state = method.init(key, PARAMS)
    assert state["memory"]["obs"].shape == (3, 4, 2)
    state = method.observe(state, _rows([1.0, 2.0, 3.0]), jnp.int32(0), key)
    state = method.observe(state, _rows([4.0, 5.0, 6.0]), jnp.int32(0), key)  # ring: drops 1, 2
    seen = []

    def loss_grad(batch):  # a gradient that conflicts with g and records the rows it was given
        seen.append(batch["obs"][:, 0])
        return jax.tree.map(lambda p: -jnp.ones_like(p), PARAMS)

    grads = jax.tree.map(jnp.ones_like, PARAMS)
    link = method.gradient_transformation
    link_state = link.init(PARAMS)
    # Task 0 has not finished: its rows are not a reference yet and g passes unchanged.
    out, link_state = link.update(grads, link_state, PARAMS, method_state=state,
                                  loss_grad=loss_grad)
    jax.tree.map(lambda p, g: np.testing.assert_array_equal(p, g), out, grads)

    state, _ = method.on_task_end(state, PARAMS, jnp.int32(0), key)
    state = method.observe(state, _rows([9.0]), jnp.int32(1), key)  # current task: not used
    out, link_state = link.update(grads, link_state, PARAMS, method_state=state,
                                  loss_grad=loss_grad)
    assert set(np.asarray(seen[-1]).tolist()) == {3.0, 4.0, 5.0, 6.0}
    # g = 1, g_ref = -1 everywhere: the projection removes g entirely.
    jax.tree.map(lambda p: np.testing.assert_allclose(p, 0.0, atol=1e-6), out)
