"""safetensors files, read and written with NumPy alone (no ``safetensors`` package).

Layout (https://github.com/huggingface/safetensors):

    8 bytes      N, the header length (unsigned 64-bit, little-endian)
    N bytes      UTF-8 JSON object: {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
                 ..., "__metadata__": {str: str}}  (optional metadata; may be padded with spaces)
    the rest     the byte buffer: tensor ``name`` is bytes [b, e) of it, C order, little-endian

Nothing here is executable, but the header is still untrusted: we check every offset, that each
tensor's byte range matches its shape and dtype, and, as the reference implementation does, that
the ranges tile the buffer exactly (no overlaps, no holes, nothing past the end).

Limits on the header, checked before ``json.loads`` sees it:

* its length: at most 4 MiB + 1/32 of the file's size, and never more than the reference
  implementation's 100 MB. JSON can take ~25x its length in Python objects (``[[],[],...]``, or
  many distinct keys; ~40x in peak RSS), so this keeps refusing any file under 2 x its size +
  200 MB (a real header takes ~100 bytes per tensor: 4 MiB is ~40,000 tensors);
* its density: at most one JSON array or object per 16 bytes (a tensor's entry needs >= 48
  bytes for its three), which caps the objects JSON builds;
* its nesting: a safetensors header is an object of objects of lists, 3 levels; anything deeper is
  refused by a scan that never recurses (``json.loads`` would recurse, and raise RecursionError
  at ~1000 levels);
* at most 64 dimensions per tensor (NumPy's limit).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from minivis.io.errors import CONTENT_ERRORS, FileProblem, brief, reraise
from minivis.io.npz import state_dict_arrays
from minivis.io.torch_pth import bfloat16_to_float32

_MAX_HEADER = 100_000_000  # the reference implementation's limit
HEADER_BASE = 4 << 20      # bytes of header any file may have; plus 1/32 of the file's size
MAX_DEPTH = 3              # {name: {"shape": [...]}}
MAX_NDIM = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')               # a JSON string, escapes included
_INNERMOST = re.compile(rb"[\[{][^\[\]{}]*[\]}]")            # a container holding no container


def _check_nesting(raw: bytes) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, without recursing: blank out the strings, then
    remove the innermost containers MAX_DEPTH times; any bracket left is deeper (or unmatched)."""
    skeleton = _STRING.sub(b'""', raw)
    # A tensor's entry, {"dtype":"F32","shape":[],"data_offsets":[0,0]} with its name, is >= 48
    # bytes for 3 containers; a header denser in containers (e.g. [[],[],...], ~60x its size in
    # RSS) is not a safetensors header.
    containers = skeleton.count(b"[") + skeleton.count(b"{")
    for _ in range(MAX_DEPTH):
        skeleton = _INNERMOST.sub(b"0", skeleton)
    if any(bracket in skeleton for bracket in (b"[", b"]", b"{", b"}")):
        raise FileProblem(f"header is not valid UTF-8 JSON of at most {MAX_DEPTH} levels (a "
                          f"safetensors header nests {MAX_DEPTH} deep): its brackets nest deeper, "
                          "or do not match")
    if containers > len(raw) // 16 + 8:
        raise FileProblem(f"header has {containers} JSON arrays and objects in {len(raw)} bytes, more "
                          "than one per 16 bytes (a tensor's entry needs 48 bytes for its 3)")


_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",  # BF16 is read as bits, returned as F32
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "<i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "<u1", "BOOL": "<u1",
}
_CODES = {np.dtype(code): name for name, code in _DTYPES.items() if name not in ("BF16", "BOOL")}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise FileProblem(f"header names '{dup}' twice")
    return dict(pairs)


def _parse_entry(name: str, entry: Any, buffer_size: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Check one header entry; returns (on-disk dtype, shape, begin, end)."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FileProblem(f"entry '{name}' must be an object with exactly dtype, shape and "
                         f"data_offsets, got {brief(entry)}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in _DTYPES:
        raise FileProblem(f"tensor '{name}' has unsupported dtype {brief(code)} "
                         f"(supported: {', '.join(_DTYPES)})")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise FileProblem(f"tensor '{name}' shape must be a list of non-negative ints, got {brief(shape)}")
    if len(shape) > MAX_NDIM:
        raise FileProblem(f"tensor '{name}' has {len(shape)} dimensions, more than {MAX_NDIM}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= buffer_size):
        raise FileProblem(f"tensor '{name}' data_offsets must be [begin, end] with "
                         f"0 <= begin <= end <= {buffer_size} (the buffer size), got {brief(offsets)}")
    dtype = np.dtype(_DTYPES[code])
    nbytes = prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise FileProblem(f"tensor '{name}' ({code}, shape {tuple(shape)}) needs {nbytes} bytes, "
                         f"but data_offsets {offsets} span {offsets[1] - offsets[0]}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into ``{name: ndarray}`` in header order; BF16 becomes float32.

    Raises :class:`~minivis.io.WeightFileError` (a ValueError) naming the file for a truncated
    file, a malformed, inconsistent or oversized header, or an unsupported dtype (the 8-bit
    float formats). The header limits are in this module's docstring.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        try:
            return _read(file)
        except CONTENT_ERRORS as err:
            reraise("load_safetensors", source, err)


def _read(file: Any) -> dict[str, np.ndarray]:
    file_size = os.fstat(file.fileno()).st_size
    if file_size < 8:
        raise FileProblem(f"is {file_size} bytes, too short for the 8-byte header length")
    header_size = int.from_bytes(file.read(8), "little")
    limit = min(_MAX_HEADER, HEADER_BASE + file_size // 32)
    if header_size > min(limit, file_size - 8):
        raise FileProblem(f"header length {header_size} exceeds the "
                          f"{'file' if header_size <= limit else 'limit'} "
                          f"({min(limit, file_size - 8)} bytes available)")
    raw_header = file.read(header_size)
    if len(raw_header) != header_size:
        raise FileProblem(f"file ends inside its {header_size}-byte header")
    if not raw_header.startswith(b"{"):
        raise FileProblem("header is not a JSON object (must start with '{')")
    _check_nesting(raw_header)
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileProblem(f"header is not valid UTF-8 JSON ({err})") from None
    del raw_header
    if not isinstance(header, dict):  # e.g. b"{} []" is refused by json.loads, but be sure
        raise FileProblem("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FileProblem("__metadata__ must be an object of strings")
    buffer_size = file_size - 8 - header_size
    entries = {name: _parse_entry(name, entry, buffer_size) for name, entry in header.items()}
    # The byte ranges, in order, must tile [0, buffer_size) exactly.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else "leaves a gap"
            raise FileProblem(f"tensor '{name}' starts at byte {begin}: it {problem} "
                              f"(expected {position})")
        position = end
    if position != buffer_size:
        raise FileProblem(f"tensors cover {position} bytes of the {buffer_size}-byte buffer")
    arrays = {}
    for name, (dtype, shape, begin, end) in entries.items():
        file.seek(8 + header_size + begin)
        flat = np.empty(prod(shape), dtype=dtype)
        if file.readinto(flat) != end - begin:  # sizes were checked against the file size above
            raise FileProblem(f"file ended while reading tensor '{name}' (did it change?)")
        array = flat.reshape(shape)
        code = header[name]["dtype"]
        if code == "BF16":
            array = bfloat16_to_float32(array)
        elif code == "BOOL":
            array = array.astype(np.bool_)  # any nonzero byte is True
        else:
            array = array.astype(dtype.newbyteorder("="), copy=False)
        arrays[name] = array
    return arrays


def save_safetensors(path: str | os.PathLike, state_dict: Mapping[str, Any],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state_dict`` ({name: array}) to ``path`` in the safetensors format.

    Tensors are laid out in name order; the header is padded with spaces to a multiple of 8 bytes
    so every tensor starts 8-byte aligned, as the reference writer does. ``metadata`` is an
    optional {str: str} stored under ``__metadata__``.
    """
    arrays = state_dict_arrays(state_dict, "save_safetensors")
    if "__metadata__" in arrays:
        raise ValueError("save_safetensors: '__metadata__' is reserved and cannot name a tensor")
    header: dict[str, Any] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"save_safetensors: metadata must be a mapping of str to str, got {metadata!r:.80}")
        header["__metadata__"] = dict(metadata)
    blobs, position = [], 0
    for name in sorted(arrays):
        array = arrays[name]
        if array.dtype == np.bool_:
            code, blob = "BOOL", array.astype(np.uint8).tobytes()
        else:
            code = _CODES.get(array.dtype.newbyteorder("<"))
            if code is None:
                raise TypeError(f"save_safetensors: state_dict['{name}'] has dtype {array.dtype}, "
                                f"which safetensors cannot store")
            blob = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [position, position + len(blob)]}
        blobs.append(blob)
        position += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(os.fspath(path), "wb") as file:
        file.write(len(encoded).to_bytes(8, "little"))
        file.write(encoded)
        for blob in blobs:
            file.write(blob)
