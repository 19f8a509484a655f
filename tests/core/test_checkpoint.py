"""Checkpoints: exact round trip, corruption detection, clear errors, pruning of periodic ones."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from everlearn.core.checkpoint import load_checkpoint, save_checkpoint
from everlearn.core.files import atomic_write


def make_state(scale: float = 1.0) -> dict:
    return {
        "params": {
            "actor": {"w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
                      "b": np.array([0.1, -0.2, 1e-30], dtype=np.float32) * scale},
            "critic": {"w": np.linspace(-1, 1, 4, dtype=np.float64) * scale},
        },
        "key": np.asarray(jax.random.split(jax.random.PRNGKey(1234), 3)),  # uint32[3, 2]
        "step": np.int32(17),
        "nested": {"a": {"b": {"c": np.array([np.pi, -0.0, np.inf])}}},
    }


def template() -> dict:
    return jax.tree.map(np.zeros_like, make_state())


def assert_tree_exact(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
        assert x.tobytes() == y.tobytes()  # bit-exact (incl. -0.0)


def test_round_trip_is_exact(tmp_path: Path):
    state = make_state()
    assert state["key"].dtype == np.uint32
    path = save_checkpoint(tmp_path / "ckpt", state, {"segment": 3, "step": 300}, keep=False)
    assert path.name == "segment-00003.msgpack" and path.is_file()
    loaded, index = load_checkpoint(tmp_path / "ckpt", template())
    assert_tree_exact(loaded, state)
    assert index["segment"] == 3 and index["step"] == 300 and index["file"] == path.name
    assert index["keep"] is False
    # the restored PRNG key still drives JAX exactly as before
    k0 = jax.random.uniform(state["key"][0])
    k1 = jax.random.uniform(loaded["key"][0])
    assert float(k0) == float(k1)
    # nothing temporary left behind
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_round_trip_of_jax_arrays(tmp_path: Path):
    state = jax.tree.map(jax.numpy.asarray, make_state())  # float64 -> float32 without x64
    save_checkpoint(tmp_path, state, {"segment": 0}, keep=True)
    loaded, _ = load_checkpoint(tmp_path, jax.tree.map(jax.numpy.zeros_like, state))
    assert_tree_exact(loaded, jax.tree.map(np.asarray, state))


def test_corrupted_checkpoint_is_detected(tmp_path: Path):
    path = save_checkpoint(tmp_path, make_state(), {"segment": 1}, keep=False)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt") as info:
        load_checkpoint(tmp_path, template())
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint_is_detected(tmp_path: Path):
    path = save_checkpoint(tmp_path, make_state(), {"segment": 1}, keep=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path, template())


def test_missing_checkpoint_dir_is_a_clear_error(tmp_path: Path):
    missing = tmp_path / "no-such-run" / "checkpoints"
    with pytest.raises(ValueError, match="no checkpoint") as info:
        load_checkpoint(missing, template())
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_checkpoint_file_is_a_clear_error(tmp_path: Path):
    path = save_checkpoint(tmp_path, make_state(), {"segment": 2}, keep=False)
    path.unlink()
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(tmp_path, template())


def test_garbage_index_falls_back_to_the_intact_checkpoint(tmp_path: Path):
    save_checkpoint(tmp_path, make_state(), {"segment": 2}, keep=False)
    (tmp_path / "latest.json").write_text("{not json")
    loaded, index = load_checkpoint(tmp_path, template())
    assert_tree_exact(loaded, make_state())
    assert index["segment"] == 2 and "unreadable" in index["fallback"]
    (tmp_path / "segment-00002.msgpack").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):  # nothing intact left: one line
        load_checkpoint(tmp_path, template())


@pytest.mark.parametrize("damage", ["corrupt newest", "deleted index"])
def test_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path: Path, damage):
    """Issue 15: a corrupt newest checkpoint or a deleted latest.json stopped resume although
    older kept checkpoints existed (a deleted latest.json even read as 'stopped before its
    first checkpoint')."""
    save_checkpoint(tmp_path, make_state(1.0), {"segment": 2}, keep=True)
    newest = save_checkpoint(tmp_path, make_state(2.0), {"segment": 3}, keep=False)
    if damage == "corrupt newest":
        newest.write_bytes(newest.read_bytes()[:-10])
        expected, segment, said = make_state(1.0), 2, "corrupt"
    else:
        (tmp_path / "latest.json").unlink()
        expected, segment, said = make_state(2.0), 3, "missing"
    loaded, index = load_checkpoint(tmp_path, template())
    assert_tree_exact(loaded, expected)
    assert index["segment"] == segment
    assert said in index["fallback"] and "\n" not in index["fallback"]


def test_template_mismatch_is_a_clear_error(tmp_path: Path):
    save_checkpoint(tmp_path, make_state(), {"segment": 2}, keep=False)
    other = {"params": {"actor": {"w": np.zeros((2, 3), np.float32)}}, "extra": np.zeros(2)}
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path, other)


def test_periodic_checkpoints_pruned_kept_ones_remain(tmp_path: Path):
    d = tmp_path / "ckpt"

    def files() -> set[str]:
        return {p.name for p in d.glob("*.msgpack")}

    save_checkpoint(d, make_state(1.0), {"segment": 1}, keep=False)
    save_checkpoint(d, make_state(2.0), {"segment": 2}, keep=False)
    assert files() == {"segment-00002.msgpack"}  # segment 1 was periodic: pruned
    save_checkpoint(d, make_state(3.0), {"segment": 3}, keep=True)  # e.g. a task end
    assert files() == {"segment-00003.msgpack"}
    save_checkpoint(d, make_state(4.0), {"segment": 4}, keep=False)
    assert files() == {"segment-00003.msgpack", "segment-00004.msgpack"}
    save_checkpoint(d, make_state(5.0), {"segment": 5}, keep=False)
    assert files() == {"segment-00003.msgpack", "segment-00005.msgpack"}
    save_checkpoint(d, make_state(6.0), {"segment": 6}, keep=True)
    save_checkpoint(d, make_state(7.0), {"segment": 7}, keep=False)
    assert files() == {"segment-00003.msgpack", "segment-00006.msgpack",
                       "segment-00007.msgpack"}

    index = json.loads((d / "latest.json").read_text())
    assert index["file"] == "segment-00007.msgpack" and index["segment"] == 7
    loaded, _ = load_checkpoint(d, template())
    assert_tree_exact(loaded, make_state(7.0))


def test_resaving_same_segment_keeps_the_file(tmp_path: Path):
    save_checkpoint(tmp_path, make_state(1.0), {"segment": 4}, keep=False)
    save_checkpoint(tmp_path, make_state(2.0), {"segment": 4}, keep=False)
    loaded, _ = load_checkpoint(tmp_path, template())
    assert_tree_exact(loaded, make_state(2.0))


def test_atomic_write(tmp_path: Path):
    p = tmp_path / "x.json"
    atomic_write(p, "hello")
    atomic_write(p, b"bytes")
    assert p.read_bytes() == b"bytes"
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]
