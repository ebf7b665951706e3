"""Hypothesis strategies and checks for fuzzing the weight readers (used by test_fuzz.py).

How many examples: ``MINIVIS_FUZZ_EXAMPLES`` (default 50 per test, small enough for CI). To fuzz
longer, e.g. overnight:

    MINIVIS_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:cacheprovider tests/io/test_fuzz.py

The pickle fuzzers run in a child interpreter (``python -m tests.io.fuzzing <checkpoint files>``),
so a crash (a segfault from CPython's recursive tuple hashing, say) fails the test instead of
killing pytest. Every run is fresh (no example database is written).
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minivis.io as mio

EXAMPLES = int(os.environ.get("MINIVIS_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_DIR = tempfile.mkdtemp(prefix="minivis-fuzz-")


def check_reader(reader, data: bytes, suffix: str) -> None:
    """``reader`` on a file holding ``data`` returns {str: ndarray} or raises a WeightFileError
    naming the file: never another exception."""
    path = os.path.join(_DIR, "fuzz" + suffix)
    with open(path, "wb") as file:
        file.write(data)
    try:
        result = reader(path)
    except mio.WeightFileError as err:
        assert path in str(err), err
        return
    assert isinstance(result, dict)
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in result.items())


def flips(data: bytes):
    """``data`` with a few bytes changed and perhaps cut short."""
    changes = st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(1, 255)), max_size=8)
    return st.tuples(changes, st.integers(0, len(data))).map(lambda args: _apply(data, *args))


def _apply(data: bytes, changes, cut: int) -> bytes:
    out = bytearray(data)
    for at, mask in changes:
        if out:
            out[at] ^= mask
    return bytes(out[:cut] if cut < len(out) else out)


# ------------------------------------------------------------------------ pickles

_GLOBALS = [b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n",
            b"ctorch\nFloatStorage\n", b"ctorch\nSize\n", b"ctorch._utils\n_rebuild_parameter\n",
            b"cbuiltins\nlist\n", b"\x8c\x05torch\x8c\x0bFloatStorage\x93"]
_CHUNKS = [bytes([c]) for c in b"()]}\x85\x86\x87tldsuaeR2 01b\x94\x8f\x90\x91N\x88\x89Q"] + [
    b"q\x00", b"h\x00", b"r\x00\x00\x00\x00", b"j\xff\xff\xff\xff", b"K\x01", b"J\x00\x00\x00\x80",
    b"X\x01\x00\x00\x00a", b"X\x07\x00\x00\x00storage", b"X\x01\x00\x00\x000", b"X\x03\x00\x00\x00cpu",
    b"\x8a\x01\x06", b"G\x3f\xf0\x00\x00\x00\x00\x00\x00", b"C\x02ab", b"\x95\x10\x00\x00\x00\x00\x00\x00\x00",
    b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x96\x00\x00\x00\x00\x00\x00\x10\x00", b"\x81", b"\x92",
    b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ",
] + _GLOBALS
pickle_streams = st.lists(st.one_of(st.sampled_from(_CHUNKS), st.binary(max_size=6)),
                          max_size=60).map(lambda parts: b"\x80\x02" + b"".join(parts) + b".")
nested = st.tuples(st.sampled_from([b")", b"]", b"}", b"(", b"N"]), st.sampled_from([b"\x85", b"t", b"l", b"a"]),
                   st.integers(1, 3000)).map(lambda a: b"\x80\x02}" + a[0] + a[1] * a[2] + b"Ns.")

_LEGACY_HEAD = b"".join(pickle.dumps(x, protocol=2)
                        for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def as_zip(pickled: bytes) -> bytes:
    path = os.path.join(_DIR, "build.zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", pickled)
        archive.writestr("a/data/0", np.arange(6, dtype="<f4").tobytes())
    with open(path, "rb") as file:
        return file.read()


def as_legacy(pickled: bytes) -> bytes:
    keys = pickle.dumps(["0"], protocol=2)
    return _LEGACY_HEAD + pickled + keys + (6).to_bytes(8, "little") + np.arange(6, dtype="<f4").tobytes()


def run_pickle_fuzz(zip_checkpoint: bytes, legacy_checkpoint: bytes) -> None:
    """The fuzzers that could crash the interpreter; run in a child process by test_fuzz.py."""

    @FUZZ
    @given(stream=st.one_of(pickle_streams, nested), container=st.sampled_from([as_zip, as_legacy]))
    def opcode_streams(stream, container):
        check_reader(mio.load_torch, container(stream), ".pth")

    @FUZZ
    @given(data=flips(zip_checkpoint))
    def zip_flips(data):
        check_reader(mio.load_torch, data, ".pth")
        check_reader(mio.load_weights, data, ".pth")

    @FUZZ
    @given(data=flips(legacy_checkpoint))
    def legacy_flips(data):
        check_reader(mio.load_torch, data, ".pth")

    for fuzz in (opcode_streams, zip_flips, legacy_flips):
        fuzz()
        print(f"{fuzz.__name__}: {EXAMPLES} examples passed", flush=True)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as zf, open(sys.argv[2], "rb") as lf:
        run_pickle_fuzz(zf.read(), lf.read())
