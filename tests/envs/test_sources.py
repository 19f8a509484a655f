"""Where a task's env comes from (`everlearn.envs.sources`), the spaces read from it, and the
layout that joins several envs (`everlearn.envs.layout`)."""

import gymnasium as gym
import jax
import numpy as np
import pytest

from everlearn.envs.functional import FunctionalEnv
from everlearn.envs.gymnasium_context import make_task_env
from everlearn.envs.layout import Layout, scenario_layout
from everlearn.envs.sources import EnvSpaces, gymnax_id, task_spaces
from everlearn.scenarios import Task


def test_spaces_are_read_from_a_gymnasium_id_and_a_gymnax_id():
    task = Task("car", "MountainCar-v0")
    assert task_spaces(task, "gymnasium") == EnvSpaces((2,), False, 3, max_episode_steps=200)
    assert task_spaces(task, "jax") == EnvSpaces((2,), False, 3, max_episode_steps=200)
    breakout = Task("b", "gymnax:Breakout-MinAtar")
    assert gymnax_id(breakout) == "Breakout-MinAtar"
    assert task_spaces(breakout, "jax").obs_shape == (10, 10, 4)


def test_an_entry_point_is_called_with_the_tasks_kwargs(tmp_path, monkeypatch):
    (tmp_path / "my_line_world.py").write_text(
        "import gymnasium as gym, numpy as np\n"
        "class Line(gym.Env):\n"
        "    def __init__(self, width=3):\n"
        "        self.observation_space = gym.spaces.Box(-1, 1, (width,), np.float32)\n"
        "        self.action_space = gym.spaces.Discrete(width)\n")
    monkeypatch.chdir(tmp_path)  # the current directory is importable
    spaces = task_spaces(Task("line", "my_line_world:Line", kwargs={"width": 5}), "gymnasium")
    assert spaces.obs_shape == (5,) and spaces.num_actions == 5


@pytest.mark.parametrize("env, message", [
    ("NoSuchEnv-v9", "unknown environment 'NoSuchEnv-v9'"),
    ("no_such_module_xyz:Env", "cannot import 'no_such_module_xyz'"),
    ("gymnax:Breakout-MinAtar", "only the functional path"),
])
def test_an_unknown_or_wrong_path_env_is_one_clear_line(env, message):
    with pytest.raises(ValueError, match=message) as info:
        task_spaces(Task("t", env), "gymnasium")
    assert "\n" not in str(info.value)


def test_unsupported_spaces_are_refused_naming_the_space():
    class DictObs(gym.Env):
        observation_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ValueError, match="observation space Dict"):
        task_spaces(Task("d", "dict", env_factory=DictObs), "gymnasium")


def test_layout_pads_to_the_largest_shape_and_masks_only_where_action_sets_differ():
    a = EnvSpaces((10, 10, 4), False, 3)
    b = EnvSpaces((10, 10, 6), False, 4)
    assert scenario_layout(["a", "b"], [a, b]) == Layout((10, 10, 6), False, 4, masked=True)
    assert not scenario_layout(["a", "a2"], [a, a]).masked
    with pytest.raises(ValueError, match="rank"):
        scenario_layout(["a", "v"], [a, EnvSpaces((4,), False, 2)])
    with pytest.raises(ValueError, match="continuous action sizes differ"):
        scenario_layout(["p", "q"], [EnvSpaces((3,), True, 1), EnvSpaces((3,), True, 2)])


def test_both_paths_pad_and_mask_the_same_way():
    """CartPole (4 numbers, 2 actions) in a scenario whose largest env has 6 and 3: the
    observation is padded with zeros and ends in the mask [1, 1, 0], on both paths."""
    layout = Layout((6,), False, 3, masked=True)
    task = Task("cartpole", "CartPole-v1")
    env = make_task_env(task, layout=layout)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9,)
    np.testing.assert_array_equal(obs[4:], [0, 0, 1, 1, 0])
    assert env.action_space.n == 3
    with pytest.raises(ValueError, match="does not exist"):
        env.step(2)
    from everlearn.envs.rollout import task_params

    functional = FunctionalEnv(task, layout)
    obs, _ = functional.reset(jax.random.PRNGKey(0), task_params(functional, task))
    np.testing.assert_array_equal(np.asarray(obs)[4:], [0, 0, 1, 1, 0])
