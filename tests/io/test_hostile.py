"""Regression tests for hostile weight files (issue 16): each finding of the attack on mv.io.

The ones that crashed the interpreter or blew up its memory run in a child process, which must
exit normally, print the WeightFileError, and stay under 2 x the file's size + 200 MB above its
own baseline (peak RSS after importing minivis).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import minivis.io as mio
from minivis.io import WeightFileError, load_npz, load_safetensors, load_torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MB = 1 << 20

_CHILD = """
import resource, sys
import minivis.io as mio
reader = getattr(mio, sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    reader(sys.argv[2])
    print("LOADED")
except ValueError as err:
    print("REFUSED", type(err).__name__, err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("GROWTH_KB", after - before)
"""


def _refuse_in_child(reader: str, path) -> tuple[str, int]:
    """Run ``mio.<reader>(path)`` in a fresh interpreter; its output and peak-RSS growth (bytes)."""
    child = subprocess.run([sys.executable, "-c", _CHILD, reader, str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, (child.returncode, child.stderr[-3000:])
    growth = int(child.stdout.rsplit("GROWTH_KB", 1)[1]) * 1024
    return child.stdout, growth


def _within_budget(path, growth: int) -> None:
    limit = 2 * os.path.getsize(path) + 200 * MB
    assert growth <= limit, f"peak RSS grew {growth / MB:.0f} MB, limit {limit / MB:.0f} MB"


def _long(n: int) -> bytes:
    size = (n.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + n.to_bytes(size, "little", signed=True)


def _storage_pickle(numel: int, size: int | None = None, stride: int = 1) -> bytes:
    """{'w': 1-D tensor over storage '0' of ``numel`` floats}, pickled as torch.save does."""
    return (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
            + _long(numel) + b"tQK\x00" + _long(numel if size is None else size) + b"\x85"
            + _long(stride) + b"\x85tRs.")


def test_storage_pickle_helper_reads(tmp_path):
    path = tmp_path / "ok.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", _storage_pickle(6))
        archive.writestr("a/data/0", np.arange(6, dtype="<f4").tobytes())
    np.testing.assert_array_equal(load_torch(path)["w"], np.arange(6, dtype=np.float32))


# ------------------------------------------------------------------ finding 1: nested tuple key

def test_deeply_nested_tuple_key_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "nested.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns.")
    out, growth = _refuse_in_child("load_torch", path)
    assert "REFUSED WeightFileError load_torch: " in out and "nested.pth: pickle nests containers " \
        "more than 100 deep" in out, out
    _within_budget(path, growth)


_LIMITS = [
    (b"\x80\x02]" + b"\x94" * 600_000 + b".", "memo holds more than 500000 entries"),
    (b"\x80\x02(" + b"]" * 1_100_000 + b"l.", "builds more than 1000000 objects"),
    (b"\x80\x02(" + b"\x8f" * 300_000 + b"l.", "builds more than 1000000 objects"),   # sets cost 4
    (b"\x80\x02]r\xff\xff\xff\x7f.", None),                 # a memo index of 2**31: no 16 GB memo
    (b"\x80\x05\x96\x00\x00\x00\x00\x00\x00\x00\x10.", "opcode BYTEARRAY8"),   # would allocate 1 TB
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)\x81.", "opcode NEWOBJ"),
]


@pytest.mark.parametrize("stream, match", _LIMITS, ids=["memo", "objects", "sets", "memo index",
                                                        "bytearray8", "newobj"])
def test_pickle_limits(tmp_path, stream, match):
    path = tmp_path / "limits.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", stream)
    with pytest.raises(WeightFileError, match=rf"load_torch: .*limits\.pth: .*{match or 'holds no tensors'}"):
        load_torch(path)


# ------------------------------------------------------------------ finding 2: decompression bomb

class _Precompressed:
    """Stands in for zipfile's compressor: the deflate stream was made once, in advance."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream

    def compress(self, data: bytes) -> bytes:
        return b""

    def flush(self) -> bytes:
        return self.stream


def _deflated(archive: zipfile.ZipFile, name: str, parts: list[bytes], stream: bytes) -> None:
    """A deflated member holding ``parts`` (joined), whose deflate stream is ``stream``."""
    with archive.open(zipfile.ZipInfo(name), "w", force_zip64=True) as member:
        member._compressor = _Precompressed(stream)
        member._zinfo.compress_type = zipfile.ZIP_DEFLATED
        for part in parts:
            member.write(part)   # zipfile still counts the size and the CRC


def _deflate(parts: list[bytes]) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return b"".join(compressor.compress(part) for part in parts) + compressor.flush()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """512 MB of zeros in ~500 KB: a storage that lies to the pickle, one that agrees with it,
    and a data.pkl that inflates to 512 MB."""
    root = tmp_path_factory.mktemp("bombs")
    zeros = [bytes(MB)] * 512
    stream = _deflate(zeros)
    paths = {}
    for kind in ("lying", "consistent", "pickle"):
        paths[kind] = root / f"{kind}.pth"
        with zipfile.ZipFile(paths[kind], "w") as archive:
            if kind == "pickle":
                _deflated(archive, "a/data.pkl", zeros, stream)
                continue
            archive.writestr("a/data.pkl", _storage_pickle(6 if kind == "lying" else 128 * MB))
            _deflated(archive, "a/data/0", zeros, stream)
    return paths


@pytest.mark.parametrize("kind, match", ids=["lying", "consistent", "pickle"], argvalues=[
    ("lying", "zip member 'a/data/0' declares 536870912 bytes, but 24 are expected|storage '0' holds "
              "536870912 bytes, but 6 FloatStorage elements need 24"),
    ("consistent", r"the 1 storages would inflate to 536870912 bytes, more than .* a decompression bomb"),
    ("pickle", r"zip member 'a/data.pkl' would inflate to 536870912 bytes, .* a decompression bomb"),
])
def test_decompression_bomb_is_refused_before_inflating(bombs, kind, match):
    path = bombs[kind]
    assert os.path.getsize(path) < 1 * MB
    out, growth = _refuse_in_child("load_torch", path)
    assert out.startswith("REFUSED WeightFileError load_torch: "), out
    assert re.search(match, out), out
    _within_budget(path, growth)
    assert growth < 64 * MB  # refused before inflating anything large


def test_npz_bomb(tmp_path):
    path = tmp_path / "bomb.npz"
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % (128 * MB)
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    parts = [b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header] + [bytes(MB)] * 128
    with zipfile.ZipFile(path, "w") as archive:
        _deflated(archive, "w.npy", parts, _deflate(parts))
    out, growth = _refuse_in_child("load_npz", path)
    assert "REFUSED WeightFileError load_npz: " in out and "decompression bomb" in out, out
    _within_budget(path, growth)


# ------------------------------------------------------------------ finding 3: foreign exceptions

def _patch_central_directory(path, offset_in_entry: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + offset_in_entry: at + offset_in_entry + len(value)] = value
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def _small_checkpoint(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", _storage_pickle(6))
        archive.writestr("a/data/0", np.arange(6, dtype="<f4").tobytes())
    return path


def test_encrypted_member(tmp_path):
    path = _small_checkpoint(tmp_path / "enc.pth")
    _patch_central_directory(path, 8, b"\x01\x00")   # general purpose flags: encrypted
    with pytest.raises(WeightFileError, match=r"load_torch: .*enc\.pth: zip member 'a/data.pkl' is encrypted"):
        load_torch(path)


@pytest.mark.parametrize("field, value, match", [
    (42, b"\xff\xff\xff\x7f", "reaches past the end of the"),             # local header offset
    (10, b"\x0c\x00", "compression method 12"),                           # bzip2
    (20, b"\x00\x00\x00\x10", "stored .* but declares"),                  # compressed size
])
def test_zip_oddities(tmp_path, field, value, match):
    path = _small_checkpoint(tmp_path / "odd.pth")
    _patch_central_directory(path, field, value)
    with pytest.raises(WeightFileError, match=rf"load_torch: .*odd\.pth: .*{match}"):
        load_torch(path)


def test_duplicate_member_names(tmp_path):
    path = tmp_path / "dup.pth"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", _storage_pickle(6))
        archive.writestr("a/data/0", np.arange(6, dtype="<f4").tobytes())
        archive.writestr("a/data/0", np.zeros(6, dtype="<f4").tobytes())
    for reader in (load_torch, mio.load_weights):
        with pytest.raises(WeightFileError, match=r"dup\.pth: zip archive holds two members named 'a/data/0'"):
            reader(path)


def test_huge_central_directory(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(100_001):
            archive.writestr(str(i), b"")
    with pytest.raises(WeightFileError, match=r"many\.npz: zip archive has 100001 members, more than"):
        load_npz(path)


def test_huge_stride_of_a_size_1_dimension_is_not_an_overflow(tmp_path):
    path = tmp_path / "stride.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", _storage_pickle(6, size=1, stride=2**70))
        archive.writestr("a/data/0", np.arange(6, dtype="<f4").tobytes())
    np.testing.assert_array_equal(load_torch(path)["w"], [0.0])


def _npz_with_header(path, header: bytes, data: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


@pytest.mark.parametrize("header, match", [
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }",   # 4 TiB
     r"member 'w' holds 0 bytes of data, but its header says shape \(1099511627776,\)"),
    (b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "allow_pickle"),
    (b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "malformed or unsupported"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"1, " * 65 + b"), }", "65 dimensions"),
    (b"{'descr': " + b"(" * 3000 + b")" * 3000 + b"}", "malformed or unsupported"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", "malformed or unsupported"),
])
def test_npy_headers(tmp_path, header, match):
    path = tmp_path / "hdr.npz"
    _npz_with_header(path, header)
    with pytest.raises(WeightFileError, match=rf"load_npz: .*hdr\.npz: .*{match}"):
        load_npz(path)


def test_npy_header_length_limit(tmp_path):
    path = tmp_path / "long.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{")
    with pytest.raises(WeightFileError, match=r"long\.npz: member 'w' has a 2147483648-byte \.npy header"):
        load_npz(path)


@pytest.mark.parametrize("depth", [4, 100_000])
def test_deep_json_in_safetensors(tmp_path, depth):
    header = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(WeightFileError, match=r"deep\.safetensors: header is not valid UTF-8 JSON of at "
                                              r"most 3 levels"):
        load_safetensors(path)


def test_safetensors_header_length_scales_with_the_file(tmp_path):
    header = json.dumps({"__metadata__": {"pad": "x" * (5 * MB)}}).encode()
    path = tmp_path / "big.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(WeightFileError, match="exceeds the limit"):
        load_safetensors(path)
    with open(path, "ab") as file:  # with a big enough file after it, the same header is fine
        file.truncate(40 * MB)
    with pytest.raises(WeightFileError, match="tensors cover 0 bytes"):
        load_safetensors(path)


def test_error_hierarchy_and_types():
    assert issubclass(WeightFileError, ValueError) and issubclass(mio.UnsafeWeightsError, WeightFileError)
    for reader in (load_torch, load_npz, load_safetensors, mio.load_weights):
        with pytest.raises(TypeError):
            reader(12.5)   # a wrong argument type stays a TypeError


def test_safetensors_header_dense_in_containers(tmp_path):
    """[[],[],...] costs ~60x its length in RSS: refused before json.loads builds it."""
    header = b'{"a":[' + b"[]," * 100_000 + b"0]}"
    path = tmp_path / "dense.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(WeightFileError, match=r"dense\.safetensors: header has 100002 JSON arrays and objects"):
        load_safetensors(path)
