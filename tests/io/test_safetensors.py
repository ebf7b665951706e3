"""load_safetensors / save_safetensors against the safetensors package's own reader and writer,
and every header check on hand-built files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minivis.io import load_safetensors, load_weights, save_safetensors

st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is the reference")

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]


def _state(rng) -> dict[str, np.ndarray]:
    state = {f"t.{np.dtype(d).name}": (rng.standard_normal((2, 3, 4)) * 50).astype(d) for d in DTYPES}
    state.update({"scalar": np.array(1.25, np.float32), "empty": np.zeros((0, 2), np.float64),
                  "transposed": rng.standard_normal((3, 5)).astype(np.float32).T})
    return state


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_we_write_what_safetensors_reads(tmp_path, rng):
    state = _state(rng)
    save_safetensors(tmp_path / "ours.safetensors", state, metadata={"format": "np", "epoch": "3"})
    _assert_same(st_numpy.load_file(tmp_path / "ours.safetensors"), state)
    _assert_same(load_safetensors(tmp_path / "ours.safetensors"), state)
    from safetensors import safe_open
    with safe_open(tmp_path / "ours.safetensors", framework="np") as f:
        assert f.metadata() == {"format": "np", "epoch": "3"}
    header_size = int.from_bytes((tmp_path / "ours.safetensors").read_bytes()[:8], "little")
    assert header_size % 8 == 0  # tensors start 8-byte aligned


def test_we_read_what_safetensors_writes(tmp_path, rng):
    # safetensors.numpy.save_file writes a non-contiguous array in memory order (its own reader
    # then disagrees with the input), so hand it C-contiguous arrays.
    state = {name: np.ascontiguousarray(a) for name, a in _state(rng).items()}
    st_numpy.save_file(state, tmp_path / "theirs.safetensors", metadata={"k": "v"})
    _assert_same(load_safetensors(tmp_path / "theirs.safetensors"), state)
    _assert_same(load_weights(tmp_path / "theirs.safetensors"), state)


def test_bfloat16_becomes_float32(tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch as st_torch

    t = torch.randn(4, 3).to(torch.bfloat16)
    st_torch.save_file({"w": t, "s": t[0, 0].clone()}, tmp_path / "bf16.safetensors")
    loaded = load_safetensors(tmp_path / "bf16.safetensors")
    for name, ref in (("w", t), ("s", t[0, 0])):
        assert loaded[name].dtype == np.float32 and loaded[name].shape == tuple(ref.shape)
        np.testing.assert_array_equal(loaded[name], ref.float().numpy())


def _file(header: dict | bytes, buffer: bytes = b"", size: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(raw) if size is None else size).to_bytes(8, "little") + raw + buffer


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
EIGHT = bytes(8)


BAD_HEADERS = [
    (b"\x01\x02", "is 2 bytes, too short for the 8-byte header length"),
    (_file({"w": F32x2}, EIGHT, size=10**6), r"header length 1000000 exceeds the file"),
    (_file({"w": F32x2}, EIGHT, size=2**63), "exceeds the limit"),
    (_file(b"[1, 2]"), r"header is not a JSON object \(must start with '\{'\)"),
    (_file(b"{not json"), "header is not valid UTF-8 JSON"),
    (_file(b'{"a": 1, "a": 2}'), "header names 'a' twice"),
    (_file({"w": {"dtype": "F32", "shape": [2]}}, EIGHT), "entry 'w' must be an object with exactly"),
    (_file({"w": {**F32x2, "dtype": "F8_E4M3"}}, EIGHT), "tensor 'w' has unsupported dtype 'F8_E4M3'"),
    (_file({"w": {**F32x2, "shape": [-2]}}, EIGHT), "shape must be a list of non-negative ints"),
    (_file({"w": {**F32x2, "data_offsets": [0, 16]}}, EIGHT), r"0 <= begin <= end <= 8 \(the buffer size\)"),
    (_file({"w": {**F32x2, "data_offsets": [4, 0]}}, EIGHT), "data_offsets must be"),
    (_file({"w": {**F32x2, "shape": [3]}}, EIGHT), r"needs 12 bytes, but data_offsets \[0, 8\] span 8"),
    (_file({"w": F32x2, "v": F32x2}, EIGHT), "starts at byte 0: it overlaps the previous tensor"),
    (_file({"w": {**F32x2, "data_offsets": [4, 12]}}, bytes(12)), "starts at byte 4: it leaves a gap"),
    (_file({"w": F32x2}, bytes(12)), "tensors cover 8 bytes of the 12-byte buffer"),
    (_file({"__metadata__": {"a": 1}}), "__metadata__ must be an object of strings"),
]


@pytest.mark.parametrize("content, match", BAD_HEADERS, ids=[match[:40] for _, match in BAD_HEADERS])
def test_bad_headers(tmp_path, content, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"load_safetensors: .*bad\.safetensors: .*{match}"):
        load_safetensors(path)


def test_hand_built_file_with_padding_and_metadata(tmp_path):
    header = json.dumps({"__metadata__": {"a": "b"}, "w": F32x2,
                         "m": {"dtype": "BOOL", "shape": [2, 1], "data_offsets": [8, 10]}}).encode()
    path = tmp_path / "ok.safetensors"
    path.write_bytes(_file(header + b"   ", np.array([1.5, -2], "<f4").tobytes() + b"\x00\x07"))
    loaded = load_safetensors(path)
    np.testing.assert_array_equal(loaded["w"], [1.5, -2])
    assert loaded["m"].dtype == np.bool_ and loaded["m"].tolist() == [[False], [True]]


@pytest.mark.parametrize("state, metadata, error, match", [
    ({"w": np.ones(2, np.complex64)}, None, TypeError,
     r"save_safetensors: state_dict\['w'\] must be a numeric or bool array, got dtype complex64"),
    ({"w": np.ones(2, np.longdouble)}, None, TypeError, "which safetensors cannot store"),
    ({"__metadata__": np.ones(2)}, None, ValueError, "'__metadata__' is reserved"),
    ({"w": np.ones(2)}, {"epoch": 3}, TypeError, "metadata must be a mapping of str to str"),
    ("weights", None, TypeError, "save_safetensors: state_dict must be a mapping"),
])
def test_save_bad_input(tmp_path, state, metadata, error, match):
    with pytest.raises(error, match=match):
        save_safetensors(tmp_path / "x.safetensors", state, metadata=metadata)
