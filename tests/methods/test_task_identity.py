"""Task identity: the task one-hot in observations (both paths) and multi-head networks."""

import jax
import jax.numpy as jnp
import numpy as np

from everlearn.agents.common import MLP
from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.gymnasium_context import make_task_env
from everlearn.envs.rollout import task_params
from everlearn.scenarios import get_scenario
from everlearn.training.functional import task_onehot


def test_task_onehot_is_appended_to_observations_on_both_paths():
    scenario = get_scenario("cartpole-contexts")
    env = FunctionalEnv(scenario.env)
    onehot = task_onehot(2, scenario.num_tasks, True)
    assert onehot == (0.0, 0.0, 1.0, 0.0)
    assert task_onehot(2, 4, False) == ()
    obs, _ = env.reset(jax.random.PRNGKey(0), task_params(env, scenario.tasks[2], onehot))
    np.testing.assert_array_equal(np.asarray(obs)[-4:], onehot)
    plain, _ = env.reset(jax.random.PRNGKey(0), task_params(env, scenario.tasks[2]))
    np.testing.assert_allclose(np.asarray(obs)[:4], np.asarray(plain))

    gym_env = make_task_env(scenario.tasks[2], onehot)
    gym_obs, _ = gym_env.reset(seed=0)
    assert gym_env.observation_space.shape == (8,)
    np.testing.assert_array_equal(gym_obs[-4:], onehot)
    gym_obs, *_ = gym_env.step(0)
    np.testing.assert_array_equal(gym_obs[-4:], onehot)


def test_multi_head_picks_the_head_of_the_task_and_trains_only_it():
    net = MLP((8,), 3, "tanh", heads=4)
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, 6))
    with_task = lambda k: jnp.concatenate([obs, jnp.tile(jnp.eye(4)[k], (5, 1))], -1)  # noqa
    params = net.init(jax.random.PRNGKey(1), with_task(0))
    out = params["params"]["Dense_1"]
    assert out["kernel"].shape == (8, 12)
    hidden = jnp.tanh(obs @ params["params"]["Dense_0"]["kernel"]
                      + params["params"]["Dense_0"]["bias"])
    for k in range(4):
        expected = (hidden @ out["kernel"] + out["bias"]).reshape(5, 4, 3)[:, k]
        np.testing.assert_allclose(net.apply(params, with_task(k)), expected, rtol=1e-5,
                                   atol=1e-6)
    # A loss on task 2 moves only head 2's columns of the output layer.
    grads = jax.grad(lambda p: net.apply(p, with_task(2)).sum())(params)
    g = np.asarray(grads["params"]["Dense_1"]["kernel"]).reshape(8, 4, 3)
    assert np.abs(g[:, 2]).sum() > 0
    np.testing.assert_array_equal(g[:, [0, 1, 3]], 0.0)
