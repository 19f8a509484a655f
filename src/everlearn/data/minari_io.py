"""Minari datasets in and out: writing episodes as a Minari dataset, and reading any local
Minari dataset (everlearn's or one recorded with Minari's own tools) as flat transitions.

Datasets live where Minari keeps them: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets`,
one directory per id (`everlearn/pendulum-v1-3f2a9c1d/random-v0` is
`<root>/everlearn/pendulum-v1-3f2a9c1d/random-v0/data/`). Nothing is ever downloaded: a
dataset that is not there is refused, with the ids that are.

Minari's episode convention, which `Episode` follows: an episode of T steps has T + 1
observations (the reset observation, then one per step), T actions, rewards, terminations and
truncations, and its infos (optional) are the reset's info followed by one per step, so T + 1
rows (T rows are stored as given too).

everlearn's own metadata (the task's context, the policy that collected the data, the
everlearn version, the env id and its kwargs) is a JSON object under the key `"everlearn"` of
the dataset's `data/metadata.json`, next to Minari's own keys: Minari 0.5.4 keeps a dataset's
metadata in that file and lets `MinariStorage.update_metadata` add any JSON-serialisable key.
A dataset not made by everlearn has no such key; `load_transitions` then gives `{}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.dataset.minari_dataset import DATASET_ID_RE
from minari.dataset.minari_storage import MinariStorage
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage import get_dataset_path

from everlearn.core.version import __version__

METADATA_KEY = "everlearn"  # the key of everlearn's metadata in Minari's metadata.json
SUPPORTED_SPACES = "Box (any shape) and Discrete"
ID_FORM = "Minari ids look like '[namespace/]name-v<version>', e.g. 'everlearn/pendulum-random-v0'"


@dataclass(frozen=True)
class Episode:
    """One episode of T steps, as numpy arrays (Minari's layout).

    observations [T+1, *obs_shape]; actions [T, *action_shape] (a Discrete action: [T]
    integers); rewards [T]; terminations [T] and truncations [T] (bool: the last step is
    terminated or truncated, no earlier one is); infos: a (nested) dict of arrays with T + 1
    rows (the reset's info, then one per step) or T rows, of numbers or booleans, or None.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: Mapping[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.rewards)


@dataclass(frozen=True)
class Transitions:
    """All transitions of a dataset's episodes, in order, as flat numpy arrays (N transitions).

    obs and next_obs [N, d] float32: each observation flattened (a Box of any shape; a Discrete
    observation as a one-hot of its index); next_obs is the true next observation, the
    episode's final one at its last step. action [N, *shape] float32 for a Box action space,
    [N] int32 indices in [0, n) for Discrete(n, start) (the stored action minus `start`).
    reward [N] float32; terminated, truncated [N] bool; episode_returns [num_episodes]
    float64 (undiscounted). metadata: everlearn's metadata of the dataset ({} for a dataset
    not made by everlearn).
    """

    dataset_id: str
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    episode_returns: np.ndarray
    observation_space: gym.Space
    action_space: gym.Space
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reward)


# --- ids, paths and spaces ---------------------------------------------------------------


def datasets_root() -> Path:
    """The local Minari datasets directory ($MINARI_DATASETS_PATH, else ~/.minari/datasets)."""
    return Path(get_dataset_path())


def list_local() -> list[str]:
    """The ids of the local Minari datasets, sorted as Minari sorts them."""
    return list(minari.list_local_datasets())


def check_dataset_id(dataset_id: str) -> None:
    """Refuse, in one line, an id Minari cannot store or load."""
    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise ValueError(f"invalid Minari dataset id {dataset_id!r}: {ID_FORM}")


def _check_space(space: Any, role: str, where: str) -> None:
    if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ValueError(f"{where}: the {role} space {space!r} is not supported; everlearn "
                         f"reads and writes {SUPPORTED_SPACES} spaces")


def _flat_dim(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape, dtype=np.int64))


# --- writing -----------------------------------------------------------------------------


def write_dataset(
    dataset_id: str,
    episodes: Sequence[Episode],
    *,
    observation_space: gym.Space,
    action_space: gym.Space,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `episodes` as the local Minari dataset `dataset_id`; returns its directory.

    Observations and actions are stored in their space's dtype (cast where the cast keeps the
    kind: float64 -> float32 is, float -> int is not); everything else as given, with no
    lossy encoding (Minari's JPEG encoding of images is off). everlearn's metadata under
    `"everlearn"` in `data/metadata.json` is `{"everlearn_version", "env_id", "env_kwargs",
    **metadata}` (the last two where given; numpy and JAX values become JSON lists and
    numbers); a string `metadata["policy"]` is also Minari's `algorithm_name`, which Minari's
    own tools show. Where `env_id` is a registered Gymnasium id, the dataset's Minari `env_spec` is
    its spec with `env_kwargs`, so `minari.load_dataset(id).recover_environment()` works.

    The dataset appears whole or not at all: it is written to a hidden directory beside its
    place and renamed into it. Refuses, in one line, an invalid id, an existing id (unless
    `overwrite`), no episodes, arrays whose lengths or shapes do not match, and spaces other
    than Box and Discrete.
    """
    where = f"dataset {dataset_id!r}"
    check_dataset_id(dataset_id)
    _check_space(observation_space, "observation", where)
    _check_space(action_space, "action", where)
    if len(episodes) == 0:
        raise ValueError(f"{where}: no episodes to write; give at least one")
    buffers = [_episode_buffer(ep, k, observation_space, action_space, where)
               for k, ep in enumerate(episodes)]
    block = _everlearn_metadata(env_id, env_kwargs, metadata, where)
    env_spec = _env_spec(env_id, block.get("env_kwargs"))

    target = get_dataset_path(dataset_id)
    if target.exists():
        if not overwrite:
            raise ValueError(f"{where} already exists at {target}; choose another id (a "
                             "higher -v<version>) or pass overwrite=True to replace it")
        if not target.joinpath("data", "metadata.json").is_file():
            raise ValueError(f"{where}: {target} exists and is not a Minari dataset; "
                             "it is left alone: remove it or choose another id")
    namespace = dataset_id.rpartition("/")[0]
    if namespace:
        _ensure_namespace(namespace)

    staging = target.parent / f".{target.name}.writing-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        storage = MinariStorage.new(staging / "data", observation_space=observation_space,
                                    action_space=action_space, env_spec=env_spec,
                                    data_format="hdf5", jpeg_encoding=False)
        minari_metadata: dict[str, Any] = {"dataset_id": dataset_id,
                                           "minari_version": minari.__version__,
                                           METADATA_KEY: block}
        if description is not None:
            minari_metadata["description"] = description
        if isinstance(block.get("policy"), str):
            minari_metadata["algorithm_name"] = block["policy"]
        storage.update_metadata(minari_metadata)
        storage.update_episodes(buffers)
        _move_into_place(staging, target, overwrite, where)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _episode_buffer(ep: Episode, k: int, observation_space: gym.Space,
                    action_space: gym.Space, where: str) -> Any:
    from minari.data_collector.episode_buffer import EpisodeBuffer

    what = f"{where}: episode {k}"
    rewards = np.asarray(ep.rewards)
    if rewards.ndim != 1 or len(rewards) == 0:
        raise ValueError(f"{what}: rewards must be a non-empty [T] array, got shape "
                         f"{rewards.shape}")
    if rewards.dtype.kind not in "fiu":
        raise ValueError(f"{what}: rewards must be numbers, got dtype {rewards.dtype}")
    if rewards.dtype.kind != "f":
        rewards = rewards.astype(np.float64)
    steps = len(rewards)
    observations = _cast(ep.observations, observation_space, steps + 1, "observations", what)
    actions = _cast(ep.actions, action_space, steps, "actions", what)
    flags = {}
    for name in ("terminations", "truncations"):
        value = np.asarray(getattr(ep, name))
        if value.shape != (steps,):
            raise ValueError(f"{what}: {name} has shape {value.shape}, rewards {rewards.shape}: "
                             f"each needs one entry per step ({steps})")
        if value.dtype != bool and not np.isin(value, (0, 1)).all():
            raise ValueError(f"{what}: {name} must be booleans (or 0/1)")
        flags[name] = value.astype(bool)
    done = flags["terminations"] | flags["truncations"]
    if not done[-1]:
        raise ValueError(f"{what} ends with neither a termination nor a truncation; mark its "
                         "last step truncated (Minari's convention for a cut episode)")
    if done[:-1].any():
        raise ValueError(f"{what} terminates or truncates at step "
                         f"{int(np.flatnonzero(done[:-1])[0])}, before its last step "
                         f"({steps - 1}); split it into episodes")
    infos = _check_infos(ep.infos, steps, what) if ep.infos is not None else {}
    return EpisodeBuffer(observations=observations, actions=actions, rewards=rewards,
                         terminations=flags["terminations"], truncations=flags["truncations"],
                         infos=infos)


def _cast(value: Any, space: gym.Space, rows: int, name: str, what: str) -> np.ndarray:
    """`value` as an array of `rows` elements of `space`, in the space's dtype."""
    array = np.asarray(value)
    shape = (rows, *space.shape)
    if isinstance(space, gym.spaces.Discrete) and array.shape == (rows, 1):
        array = array[:, 0]
    if array.shape != shape:
        raise ValueError(f"{what}: {name} has shape {array.shape}, expected {shape} (an "
                         f"episode of {rows - 1 if name == 'observations' else rows} steps "
                         f"has {rows} {name} of the space's shape {space.shape})")
    dtype = np.dtype(space.dtype)
    if not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise ValueError(f"{what}: {name} of dtype {array.dtype} do not fit the space's dtype "
                         f"{dtype} ({space!r})")
    array = array.astype(dtype, copy=False)
    if isinstance(space, gym.spaces.Discrete):
        bad = (array < space.start) | (array >= space.start + space.n)
        if bad.any():
            raise ValueError(f"{what}: {name} hold {array[bad][0]}, outside {space!r}")
    return array


def _check_infos(infos: Mapping[str, Any], steps: int, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if isinstance(value, Mapping):
            out[str(key)] = _check_infos(value, steps, what)
            continue
        array = np.asarray(value)
        if array.ndim == 0 or len(array) not in (steps, steps + 1):
            raise ValueError(f"{what}: info {key!r} has shape {array.shape}; infos need "
                             f"{steps + 1} rows (the reset's, then one per step) or {steps}")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{what}: info {key!r} has dtype {array.dtype}; infos are arrays "
                             "of numbers or booleans")
        out[str(key)] = array
    return out


def _jsonable(value: Any, where: str, path: str) -> Any:
    """`value` as plain JSON types (numpy/JAX arrays -> lists, numpy scalars -> numbers)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype.kind in "biufU":
            return array.tolist()
    raise ValueError(f"{where}: {path} holds a {type(value).__name__}, which JSON cannot "
                     "hold; give numbers, strings, lists, dicts or numeric arrays")


def _everlearn_metadata(env_id: str | None, env_kwargs: Mapping[str, Any] | None,
                        metadata: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"everlearn_version": __version__}
    if env_id is not None:
        block["env_id"] = env_id
    if env_kwargs is not None:
        block["env_kwargs"] = _jsonable(dict(env_kwargs), where, "env_kwargs")
    for key, value in _jsonable(dict(metadata or {}), where, "metadata").items():
        if key in ("env_id", "env_kwargs") and key in block and block[key] != value:
            raise ValueError(f"{where}: metadata[{key!r}] = {value!r} contradicts the "
                             f"{key} argument {block[key]!r}; give it once")
        block[key] = value
    return block


def _env_spec(env_id: str | None, env_kwargs: Mapping[str, Any] | None) -> Any:
    """The Gymnasium spec of `env_id` with `env_kwargs`, where the id is registered."""
    if env_id is None or env_id not in gym.registry:
        return None
    spec = gym.spec(env_id)
    if env_kwargs:
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **env_kwargs})
    return spec


def _ensure_namespace(namespace: str) -> None:
    if namespace in list_local_namespaces():
        return
    try:
        create_namespace(namespace)
    except ValueError:  # made meanwhile by another process
        if namespace not in list_local_namespaces():
            raise


def _move_into_place(staging: Path, target: Path, overwrite: bool, where: str) -> None:
    old = None
    if overwrite and target.exists():
        old = target.parent / f".{target.name}.replaced-{secrets.token_hex(4)}"
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        if target.exists():  # another writer got there first
            raise ValueError(f"{where} was written at {target} by someone else meanwhile; "
                             "pass overwrite=True to replace it") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- reading -----------------------------------------------------------------------------


def load_dataset(dataset_id: str) -> Any:
    """The local `minari.MinariDataset` `dataset_id` (never downloaded); refuses, in one line,
    an invalid id, an id that is not here (listing those that are) and a dataset Minari
    cannot read."""
    check_dataset_id(dataset_id)
    path = get_dataset_path(dataset_id)
    if not path.joinpath("data").is_dir():
        local = list_local()
        raise ValueError(f"no local Minari dataset {dataset_id!r} in {datasets_root()} (set "
                         f"MINARI_DATASETS_PATH to look elsewhere); local datasets: "
                         f"{', '.join(local) if local else 'none'}; nothing is downloaded: "
                         "record the dataset here or copy it into that directory")
    try:
        return minari.load_dataset(dataset_id, download=False)
    except (ValueError, OSError, KeyError, AssertionError, json.JSONDecodeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"Minari dataset {dataset_id!r} at {path} cannot be read: "
                         f"{reason}") from None


def load_transitions(dataset_id: str) -> Transitions:
    """All transitions of the local Minari dataset `dataset_id` as flat arrays (`Transitions`).

    Reads everlearn's datasets and any other Minari dataset whose observation and action
    spaces are Box or Discrete; refuses others in one line naming the space.
    """
    dataset = load_dataset(dataset_id)
    where = f"dataset {dataset_id!r}"
    obs_space, act_space = dataset.observation_space, dataset.action_space
    _check_space(obs_space, "observation", where)
    _check_space(act_space, "action", where)
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (
        "obs", "next_obs", "action", "reward", "terminated", "truncated")}
    returns = []
    for ep in dataset.iterate_episodes():
        steps = len(ep.rewards)
        what = f"{where}: episode {ep.id}"
        obs = _flat_observations(ep.observations, obs_space, what)
        if len(obs) != steps + 1:
            raise ValueError(f"{what} has {len(obs)} observations for {steps} steps; "
                             "Minari episodes have one more observation than steps")
        columns["obs"].append(obs[:-1])
        columns["next_obs"].append(obs[1:])
        columns["action"].append(_actions(ep.actions, act_space, steps, what))
        columns["reward"].append(np.asarray(ep.rewards, np.float32).reshape(steps))
        columns["terminated"].append(np.asarray(ep.terminations, bool).reshape(steps))
        columns["truncated"].append(np.asarray(ep.truncations, bool).reshape(steps))
        returns.append(float(np.sum(np.asarray(ep.rewards, np.float64))))
    if not returns:
        raise ValueError(f"{where} has no episodes")
    block = dataset.storage.metadata.get(METADATA_KEY)
    return Transitions(
        dataset_id=dataset_id,
        **{k: np.concatenate(v) for k, v in columns.items()},
        episode_returns=np.asarray(returns, np.float64),
        observation_space=obs_space,
        action_space=act_space,
        metadata=dict(block) if isinstance(block, dict) else {},
    )


def _flat_observations(value: Any, space: gym.Space, what: str) -> np.ndarray:
    array = np.asarray(value)
    if isinstance(space, gym.spaces.Discrete):
        index = array.reshape(len(array)).astype(np.int64) - int(space.start)
        if ((index < 0) | (index >= space.n)).any():
            raise ValueError(f"{what}: observations outside {space!r}")
        return np.eye(int(space.n), dtype=np.float32)[index]
    if array.shape[1:] != space.shape:
        raise ValueError(f"{what}: observations of shape {array.shape[1:]} do not match the "
                         f"observation space {space!r}")
    return array.astype(np.float32).reshape(len(array), _flat_dim(space))


def _actions(value: Any, space: gym.Space, steps: int, what: str) -> np.ndarray:
    array = np.asarray(value)
    if isinstance(space, gym.spaces.Discrete):
        if array.size != steps:
            raise ValueError(f"{what}: {array.shape} actions for {steps} steps")
        index = array.reshape(steps).astype(np.int64) - int(space.start)
        if ((index < 0) | (index >= space.n)).any():
            raise ValueError(f"{what}: actions outside {space!r}")
        return index.astype(np.int32)
    if array.shape != (steps, *space.shape):
        raise ValueError(f"{what}: actions of shape {array.shape}, expected "
                         f"{(steps, *space.shape)} for {steps} steps of {space!r}")
    return array.astype(np.float32)
