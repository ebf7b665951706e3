"""Property-based fuzzing of the weight readers: malformed pickles, zips, .npy headers and
safetensors headers give a result or a WeightFileError naming the file, never another exception,
a crash or a hang.

``MINIVIS_FUZZ_EXAMPLES`` sets the number of examples per fuzzer (default 50, for CI); run it
longer with e.g. ``MINIVIS_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:cacheprovider
tests/io/test_fuzz.py``. See tests/io/fuzzing.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivis.io as mio
from tests.io.fuzzing import EXAMPLES, FUZZ, check_reader, flips

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pickle_fuzzers_in_a_child_process(tmp_path):
    """Random opcode streams, deep nesting, flipped bytes and cuts of real torch.save files."""
    torch = pytest.importorskip("torch")
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64),
             "t": torch.arange(4.0).reshape(2, 2).t(), "h": torch.zeros(3, dtype=torch.bfloat16)}
    zip_path, legacy_path = tmp_path / "zip.pth", tmp_path / "legacy.pth"
    torch.save(state, zip_path)
    torch.save(state, legacy_path, _use_new_zipfile_serialization=False)
    child = subprocess.run([sys.executable, "-m", "tests.io.fuzzing", str(zip_path), str(legacy_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, (child.returncode, child.stdout[-3000:], child.stderr[-5000:])
    assert child.stdout.count(f"{EXAMPLES} examples passed") == 3, child.stdout


# ------------------------------------------------------------------------ .npz

def _npz(arrays: dict, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


_VALID_NPZ = _npz({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, bool)})
_VALID_NPZ_DEFLATED = _npz({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, compressed=True)

_descr = st.sampled_from(["'<f4'", "'|b1'", "'>i8'", "'|O'", "'<U3'", "'V8'", "'<M8[ns]'", "[('a', '<f4')]",
                          "'<f4", "'x'", "1", "''"])
_shape = st.lists(st.one_of(st.integers(0, 5), st.sampled_from([2**40, 2**63, 2**64 + 1])), max_size=70).map(
    lambda dims: "(" + "".join(f"{d}, " for d in dims) + ")")
_header = st.one_of(
    st.tuples(_descr, st.sampled_from(["True", "False", "1", "None"]), _shape).map(
        lambda f: f"{{'descr': {f[0]}, 'fortran_order': {f[1]}, 'shape': {f[2]}, }}"),
    st.text(max_size=200),
    st.integers(1, 5000).map(lambda n: "{'descr': " + "(" * n + ")" * n + "}"),
)


@st.composite
def _npy_members(draw) -> bytes:
    header = draw(_header).encode("utf-8")
    version = draw(st.sampled_from([1, 2, 3, 4]))
    length = draw(st.one_of(st.just(len(header)), st.integers(0, 2**32 - 1)))
    length_bytes = length.to_bytes(4, "little")[: 2 if version == 1 else 4]
    data = draw(st.binary(max_size=64))
    return b"\x93NUMPY" + bytes([version, 0]) + length_bytes + header + data


@FUZZ
@given(member=_npy_members(), name=st.sampled_from(["w.npy", "w", "a/b.npy"]))
def test_npz_headers(member, name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, member)
    check_reader(mio.load_npz, buffer.getvalue(), ".npz")


@FUZZ
@given(data=st.one_of(flips(_VALID_NPZ), flips(_VALID_NPZ_DEFLATED)))
def test_npz_flipped_bytes(data):
    check_reader(mio.load_npz, data, ".npz")
    check_reader(mio.load_weights, data, ".npz")


# ------------------------------------------------------------------------ safetensors

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=12)
_entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "BOOL", "I64", "U8", "F8_E4M3", "X"]),
    "shape": st.lists(st.one_of(st.integers(0, 4), st.sampled_from([-1, 2**62, 2**64])), max_size=66),
    "data_offsets": st.lists(st.one_of(st.integers(0, 40), st.sampled_from([-1, 2**63, 2**64])),
                             min_size=0, max_size=3),
})
_headers = st.one_of(
    st.dictionaries(st.text(max_size=6), st.one_of(_entries, _json_values), max_size=4).map(
        lambda h: json.dumps(h).encode()),
    st.binary(max_size=80).map(lambda b: b"{" + b),
    st.integers(1, 50_000).map(lambda n: b'{"a":' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 50_000).map(lambda n: b'{"a":' + b'{"a":' * n + b"}" * n + b"}"),
)


@FUZZ
@given(header=_headers, buffer=st.binary(max_size=48),
       size=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_safetensors_headers(header, buffer, size):
    length = len(header) if size is None else size
    check_reader(mio.load_safetensors, length.to_bytes(8, "little") + header + buffer, ".safetensors")
