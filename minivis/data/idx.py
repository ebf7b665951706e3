"""The IDX file format of (Fashion-)MNIST, read with NumPy and checked byte by byte.

Layout (all integers big-endian)::

    bytes 0-1   0x00 0x00                  magic: two zero bytes
    byte  2     element type code          0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                           0x0D float32, 0x0E float64
    byte  3     ndim                       number of dimensions
    4*ndim      sizes                      one uint32 per dimension
    rest        the elements, row-major    exactly prod(sizes) * itemsize bytes

Files may be gzip-compressed (``.gz``), as they are distributed.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

# IDX type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by its 0x1f 0x8b header, not its name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncation is an EOFError
        raise ValueError(f"read_idx: {os.fspath(path)!r} is a corrupt gzip file ({e})") from e


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX ``data`` into an array in native byte order (uint8 files give uint8 arrays).

    Raises ValueError naming ``source`` when the magic number, type code, header or size is wrong.
    """
    if len(data) < 4:
        raise ValueError(f"read_idx: {source} is too short for an IDX header: {len(data)} bytes, "
                         "expected >= 4")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"read_idx: {source} is not an IDX file: magic starts with bytes "
                         f"{data[0]:#04x} {data[1]:#04x}, expected 0x00 0x00")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"{c:#04x}" for c in IDX_DTYPES)
        raise ValueError(f"read_idx: {source} has unknown IDX type code {code:#04x}, expected one of {known}")
    if ndim == 0:
        raise ValueError(f"read_idx: {source} declares 0 dimensions, expected >= 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {source} is truncated inside its header: {len(data)} bytes, "
                         f"expected >= {header} for {ndim} dimensions")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"read_idx: {source} has {len(data)} bytes, expected {expected} "
                         f"(header {header} + shape {shape} of {dtype.newbyteorder('=').name})")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Native byte order, and a writeable copy that owns its memory (frombuffer on bytes is read-only).
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip) into an array shaped as its header says, e.g. (N, 28, 28) uint8."""
    return parse_idx(_read_bytes(path), repr(os.fspath(path)))
