"""Minari datasets in and out (`everlearn.data.minari_io`): exact round trips through Minari's
own reader, datasets made by Minari's `DataCollector`, and the one-line refusals. Every test
keeps its datasets in its own temporary `MINARI_DATASETS_PATH` and may not open a socket."""

from __future__ import annotations

import json
import socket
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest

from everlearn.core.version import __version__
from everlearn.data import Episode, list_local, load_transitions, write_dataset
from everlearn.data.minari_io import load_dataset

OBS_SPACE = gym.spaces.Box(-5.0, 5.0, (3, 2), np.float32)
BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DISCRETE_ACTIONS = gym.spaces.Discrete(4)


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Datasets under tmp_path; any attempt to reach the network fails the test."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))

    def no_network(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return root


def random_episodes(action_space: gym.Space, lengths=(5, 1, 7), seed: int = 0) -> list[Episode]:
    """Episodes of the given lengths; the first terminates, the others are truncated."""
    rng = np.random.default_rng(seed)
    episodes = []
    for k, steps in enumerate(lengths):
        if isinstance(action_space, gym.spaces.Discrete):
            actions = rng.integers(0, action_space.n, steps).astype(np.int64)
        else:
            actions = rng.uniform(-1, 1, (steps, *action_space.shape)).astype(np.float32)
        end = np.zeros(steps, bool)
        end[-1] = True
        episodes.append(Episode(
            observations=rng.normal(size=(steps + 1, *OBS_SPACE.shape)).astype(np.float32),
            actions=actions,
            rewards=rng.normal(size=steps),
            terminations=end if k == 0 else np.zeros(steps, bool),
            truncations=np.zeros(steps, bool) if k == 0 else end,
            infos={"step": np.arange(steps + 1), "pos": {"x": rng.normal(size=(steps + 1, 2))}}))
    return episodes


@pytest.mark.parametrize("action_space", [BOX_ACTIONS, DISCRETE_ACTIONS], ids=["box", "discrete"])
def test_round_trip_through_minari_and_flat_transitions(action_space, minari_root):
    episodes = random_episodes(action_space)
    context = {"pole_length": np.float32(1.5), "gains": np.array([1.0, 2.0])}
    path = write_dataset("everlearn/test/random-v0", episodes, observation_space=OBS_SPACE,
                         action_space=action_space, env_id="Pendulum-v1", env_kwargs={"g": 9.0},
                         metadata={"context": context, "policy": "uniform random"},
                         description="random test data")
    assert path == minari_root / "everlearn" / "test" / "random-v0"
    assert list_local() == ["everlearn/test/random-v0"]

    # Minari's own reader gives back every array unchanged.
    dataset = minari.load_dataset("everlearn/test/random-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == 13
    assert dataset.observation_space == OBS_SPACE and dataset.action_space == action_space
    assert dataset.env_spec.id == "Pendulum-v1" and dataset.env_spec.kwargs["g"] == 9.0
    for original, stored in zip(episodes, dataset.iterate_episodes(), strict=True):
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            want, got = getattr(original, name), getattr(stored, name)
            assert got.dtype == want.dtype and np.array_equal(got, want), name
        assert np.array_equal(stored.infos["step"], original.infos["step"])
        assert np.array_equal(stored.infos["pos"]["x"], original.infos["pos"]["x"])

    # Flat transitions: next_obs is the true next observation, the final one at episode ends.
    t = load_transitions("everlearn/test/random-v0")
    n = 13
    assert len(t) == n and t.obs.shape == (n, 6) and t.next_obs.shape == (n, 6)
    assert t.obs.dtype == t.next_obs.dtype == t.reward.dtype == np.float32
    obs = np.concatenate([e.observations[:-1].reshape(-1, 6) for e in episodes])
    next_obs = np.concatenate([e.observations[1:].reshape(-1, 6) for e in episodes])
    assert np.array_equal(t.obs, obs) and np.array_equal(t.next_obs, next_obs)
    ends = np.cumsum([len(e) for e in episodes]) - 1
    assert np.array_equal(t.next_obs[ends], [e.observations[-1].reshape(6) for e in episodes])
    assert np.flatnonzero(t.terminated).tolist() == [ends[0]]
    assert np.flatnonzero(t.truncated).tolist() == ends[1:].tolist()
    actions = np.concatenate([e.actions for e in episodes])
    if isinstance(action_space, gym.spaces.Discrete):
        assert t.action.dtype == np.int32 and t.action.shape == (n,)
    else:
        assert t.action.dtype == np.float32 and t.action.shape == (n, 2)
    assert np.array_equal(t.action, actions)
    rewards = np.concatenate([e.rewards for e in episodes]).astype(np.float32)
    assert np.array_equal(t.reward, rewards)
    assert np.allclose(t.episode_returns, [e.rewards.sum() for e in episodes])

    # everlearn's metadata, under "everlearn" in Minari's metadata.json.
    want = {"everlearn_version": __version__, "env_id": "Pendulum-v1", "env_kwargs": {"g": 9.0},
            "context": {"pole_length": 1.5, "gains": [1.0, 2.0]}, "policy": "uniform random"}
    assert t.metadata == want
    on_disk = json.loads((path / "data" / "metadata.json").read_text())
    assert on_disk["everlearn"] == want
    assert on_disk["description"] == "random test data"
    assert on_disk["algorithm_name"] == "uniform random"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_observations_and_actions_are_stored_in_their_space_dtype():
    ep = random_episodes(BOX_ACTIONS, lengths=(4,))[0]
    ep64 = Episode(ep.observations.astype(np.float64), ep.actions.astype(np.float64),
                   ep.rewards, ep.terminations, ep.truncations)
    write_dataset("cast-v0", [ep64], observation_space=OBS_SPACE, action_space=BOX_ACTIONS)
    stored = next(minari.load_dataset("cast-v0").iterate_episodes())
    assert stored.observations.dtype == np.float32 and stored.actions.dtype == np.float32
    assert np.array_equal(stored.observations, ep.observations)
    assert stored.infos == {}


# Minari's DataCollector drops a TemporaryDirectory after create_dataset without closing it.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dataset_made_by_minari_data_collector_loads(minari_root):
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=50))
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(130):  # two whole episodes and a cut third
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari asks for an author, an email, ...
        env.create_dataset("pendulum/random-v0", algorithm_name="random")
    env.close()

    t = load_transitions("pendulum/random-v0")
    assert len(t) == 130 and t.obs.shape == (130, 3) and t.action.shape == (130, 1)
    assert t.metadata == {}
    assert t.episode_returns.shape == (3,)
    done = t.terminated | t.truncated
    assert np.flatnonzero(done).tolist() == [49, 99, 129]  # the cut episode is truncated
    inside = ~done[:-1]
    assert np.array_equal(t.next_obs[:-1][inside], t.obs[1:][inside])
    assert not np.array_equal(t.next_obs[49], t.obs[50])  # a reset between episodes
    dataset = minari.load_dataset("pendulum/random-v0")
    for ep, ret in zip(dataset.iterate_episodes(), t.episode_returns, strict=True):
        assert ret == pytest.approx(float(ep.rewards.sum()))
    first = next(dataset.iterate_episodes())
    assert np.array_equal(t.next_obs[49], first.observations[-1].astype(np.float32))


def test_existing_id_is_refused_unless_overwrite(minari_root):
    first = random_episodes(BOX_ACTIONS, seed=0)
    write_dataset("again-v0", first, observation_space=OBS_SPACE, action_space=BOX_ACTIONS)
    with pytest.raises(ValueError, match=r"'again-v0' already exists .*overwrite=True"):
        write_dataset("again-v0", first, observation_space=OBS_SPACE, action_space=BOX_ACTIONS)
    second = random_episodes(BOX_ACTIONS, lengths=(2, 3), seed=1)
    write_dataset("again-v0", second, observation_space=OBS_SPACE, action_space=BOX_ACTIONS,
                  overwrite=True)
    t = load_transitions("again-v0")
    assert len(t) == 5 and np.array_equal(t.obs[0], second[0].observations[0].reshape(6))
    assert sorted(p.name for p in minari_root.iterdir()) == ["again-v0"]


@pytest.mark.parametrize("dataset_id", ["no-version", "bad id-v0", "../escape-v0", "a//b-v0"])
def test_invalid_id_is_refused(dataset_id):
    with pytest.raises(ValueError, match="invalid Minari dataset id"):
        write_dataset(dataset_id, random_episodes(BOX_ACTIONS), observation_space=OBS_SPACE,
                      action_space=BOX_ACTIONS)


def broken(**changes) -> list[Episode]:
    ep = random_episodes(BOX_ACTIONS, lengths=(4,))[0]
    return [Episode(**{**ep.__dict__, **changes})]


@pytest.mark.parametrize("episodes, message", [
    ([], "no episodes"),
    (broken(actions=np.zeros((3, 2), np.float32)),
     r"actions has shape \(3, 2\), expected \(4, 2\)"),
    (broken(observations=np.zeros((4, 3, 2), np.float32)), r"observations has shape"),
    (broken(truncations=np.zeros(5, bool)), r"truncations has shape \(5,\)"),
    (broken(terminations=np.zeros(4, bool)), "neither a termination nor a truncation"),
    (broken(terminations=np.array([0, 1, 0, 1], bool)), "terminates or truncates at step 1"),
    (broken(infos={"x": np.zeros(3)}), "info 'x' has shape"),
], ids=["empty", "actions", "observations", "flags", "unfinished", "early-end", "infos"])
def test_bad_episodes_are_refused_and_nothing_is_written(episodes, message, minari_root):
    with pytest.raises(ValueError, match=message) as error:
        write_dataset("bad-v0", episodes, observation_space=OBS_SPACE, action_space=BOX_ACTIONS)
    assert "\n" not in str(error.value)
    assert list_local() == []
    assert not minari_root.exists() or not any(minari_root.iterdir())


def test_unsupported_spaces_are_refused(minari_root):
    dict_space = gym.spaces.Dict({"a": OBS_SPACE})
    with pytest.raises(ValueError,
                       match=r"observation space Dict\(.*Box \(any shape\) and Discrete"):
        write_dataset("dict-v0", random_episodes(BOX_ACTIONS), observation_space=dict_space,
                      action_space=BOX_ACTIONS)
    # A Dict-observation dataset made with Minari's own tools is refused on loading.
    buffer = minari.data_collector.EpisodeBuffer(
        observations={"a": np.zeros((3, 3, 2), np.float32)},
        actions=np.zeros((2, 2), np.float32), rewards=np.zeros(2),
        terminations=np.array([False, True]), truncations=np.zeros(2, bool), infos={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("dict-v0", [buffer], observation_space=dict_space,
                                           action_space=BOX_ACTIONS)
    with pytest.raises(ValueError, match=r"'dict-v0': the observation space Dict\(.*is not "
                                         r"supported; .*Box \(any shape\) and Discrete"):
        load_transitions("dict-v0")


def test_unknown_id_lists_local_datasets_and_downloads_nothing(minari_root):
    with pytest.raises(ValueError, match=r"no local Minari dataset 'missing-v0' .*local "
                                         r"datasets: none; nothing is downloaded"):
        load_transitions("missing-v0")
    write_dataset("here-v0", random_episodes(BOX_ACTIONS), observation_space=OBS_SPACE,
                  action_space=BOX_ACTIONS)
    with pytest.raises(ValueError, match="local datasets: here-v0; nothing is downloaded"):
        load_dataset("missing-v0")


def test_metadata_json_cannot_hold_is_refused_before_writing(minari_root):
    with pytest.raises(ValueError, match=r"metadata\.policy holds a object, which JSON cannot"):
        write_dataset("meta-v0", random_episodes(BOX_ACTIONS), observation_space=OBS_SPACE,
                      action_space=BOX_ACTIONS, metadata={"policy": object()})
    assert list_local() == []
