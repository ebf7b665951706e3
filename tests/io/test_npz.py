"""save_npz / load_npz: round trips checked with np.load as the independent reader, files from
np.savez, and refusals (pickled object arrays, lone .npy files, truncated archives, bad input)."""

from __future__ import annotations

import builtins
import pickle
import zipfile

import numpy as np
import pytest

import minivis as mv
from minivis.io import load_npz, load_weights, save_npz

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_]


def _state(rng) -> dict[str, np.ndarray]:
    state = {f"layer.{np.dtype(d).name}": (rng.standard_normal((3, 4)) * 10).astype(d) for d in DTYPES}
    state.update({
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 3), np.float32),
        "transposed": rng.standard_normal((4, 5)).astype(np.float32).T,   # non-contiguous input
        "file": np.arange(3),            # would clash with np.savez's own argument name
    })
    return state


@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip(tmp_path, rng, compressed):
    state = _state(rng)
    path = tmp_path / "weights.bin"      # no .npz suffix: the name is kept as given
    save_npz(path, state, compressed=compressed)
    assert path.exists() and not (tmp_path / "weights.bin.npz").exists()
    loaded = load_npz(path)
    assert list(loaded) == list(state)
    with np.load(path, allow_pickle=False) as reference:   # NumPy reads what we wrote
        for name, array in state.items():
            for got in (loaded[name], reference[name]):
                assert got.dtype == array.dtype and got.shape == array.shape, name
                np.testing.assert_array_equal(got, array, err_msg=name)
    assert load_weights(path).keys() == state.keys()


def test_reads_np_savez_files_and_accepts_tensors(tmp_path, rng):
    w = rng.standard_normal((2, 3)).astype(np.float32)
    np.savez(tmp_path / "np.npz", w=w, b=np.arange(2))
    loaded = load_npz(tmp_path / "np.npz")
    np.testing.assert_array_equal(loaded["w"], w)
    np.testing.assert_array_equal(loaded["b"], np.arange(2))
    save_npz(tmp_path / "t.npz", {"w": mv.tensor(w, requires_grad=True), "n": 3, "lst": [1.5, 2.5]})
    loaded = load_npz(tmp_path / "t.npz")
    np.testing.assert_array_equal(loaded["w"], w)
    assert loaded["n"] == 3 and loaded["lst"].tolist() == [1.5, 2.5]


@pytest.mark.parametrize("state, error, match", [
    ([np.ones(2)], TypeError, "save_npz: state_dict must be a mapping of names to arrays, got list"),
    ({1: np.ones(2)}, TypeError, r"save_npz: state_dict keys must be str, got 1 \(int\)"),
    ({"w": np.array([object()])}, TypeError,
     r"save_npz: state_dict\['w'\] must be a numeric or bool array, got dtype object"),
    ({"w": "text"}, TypeError, r"state_dict\['w'\] must be a numeric or bool array, got dtype <U4"),
    ({"w": np.ones(2, np.complex64)}, TypeError, "got dtype complex64"),
])
def test_save_bad_input(tmp_path, state, error, match):
    with pytest.raises(error, match=match):
        save_npz(tmp_path / "x.npz", state)


class _Exec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def test_pickled_content_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "obj.npz", w=np.array([_Exec(marker)], dtype=object))   # pickles the payload
    with pytest.raises(ValueError, match=r"load_npz: .*obj\.npz: member 'w' is unreadable .*allow_pickle"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(_Exec(marker)))
    with pytest.raises(ValueError, match=r"load_npz: .*evil\.npz: not a readable \.npz archive"):
        load_npz(tmp_path / "evil.npz")
    assert not marker.exists()


def test_corrupt_and_wrong_files(tmp_path):
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"load_npz: .*one\.npy: is a single \.npy array"):
        load_npz(tmp_path / "one.npy")
    save_npz(tmp_path / "full.npz", {"w": np.ones((32, 32))})
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("cut.npz", "empty.npz"):
        with pytest.raises(ValueError, match=rf"load_npz: .*{name}: not a readable \.npz archive"):
            load_npz(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as archive:
        archive.writestr("notes.txt", "not an array")
    with pytest.raises(ValueError, match=r"load_npz: .*text\.npz: member 'notes.txt' is not a \.npy array"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")
