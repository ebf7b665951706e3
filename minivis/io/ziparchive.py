"""Zip archives from untrusted files (``torch.save`` checkpoints, ``.npz``), read within limits.

:mod:`zipfile` trusts the archive: it builds an object per central-directory entry, inflates a
member to whatever size its header declares, asks for a password on an encrypted member
(RuntimeError) and seeks wherever an offset points (OverflowError). Here every member is checked
from the central directory *before* a byte of it is inflated, and then read in chunks into a
buffer of exactly the size the caller expects:

* the central directory may take at most ``MAX_CENTRAL_DIRECTORY`` bytes (zipfile reads it whole
  and makes ~10x that in ZipInfo objects) and hold at most ``MAX_MEMBERS`` entries;
* no duplicate names, no encryption, no compression but stored or deflated (all torch.save and
  np.savez[_compressed] write), stored sizes that agree, and data that lies inside the file;
* the caller states each member's expected size (from the pickle's storages, an .npy header):
  a declared size that differs is refused before inflating, and the reader never holds more;
* all members read from one archive share an :class:`InflateBudget`: 2 x the file's size + 64 MiB
  in all. Stored members (everything torch.save writes) use at most 1 x; the budget only refuses
  deflated members that would inflate more than ~2:1, the signature of a decompression bomb
  (a 500 KB file claiming 512 MB of zeros). Refusing therefore never costs more than the budget.

CRC errors, truncation and corrupt deflate streams surface while reading and become FileProblem.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np

from minivis.io.errors import CONTENT_ERRORS, FileProblem

MAX_CENTRAL_DIRECTORY = 16 << 20  # bytes: ~350k minimal entries, ~160 MB of ZipInfo at most
MAX_MEMBERS = 100_000             # one per storage: far beyond any real checkpoint
INFLATE_OVERHEAD = 64 << 20       # bytes a small file may inflate to regardless of its size
CHUNK = 1 << 20                   # bytes read (and inflated) at a time

ZIP_ERRORS = (*CONTENT_ERRORS, NotImplementedError, RuntimeError, OSError)


class InflateBudget:
    """How many bytes the members of one archive may inflate to, in all."""

    def __init__(self, file_size: int) -> None:
        self.limit = 2 * file_size + INFLATE_OVERHEAD
        self.left = self.limit

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise FileProblem(
                f"{what} would inflate to {nbytes} bytes, more than the {self.left} left of this "
                f"file's budget ({self.limit} bytes: 2 x its size + {INFLATE_OVERHEAD >> 20} MiB); "
                "a decompression bomb?")
        self.left -= nbytes


class _CappedReads(io.RawIOBase):
    """A file whose single reads may not exceed ``limit`` bytes: zipfile reads the whole central
    directory in one read, so this refuses an oversized one before zipfile parses it."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        super().__init__()
        self._file, self._limit = file, limit
        self._size = os.fstat(file.fileno()).st_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, n: int | None = -1) -> bytes:
        wanted = self._size - self._file.tell() if n is None or n < 0 else n
        if wanted > self._limit:
            raise FileProblem(f"zip archive asks to read {wanted} bytes at once (its central "
                              f"directory?); the limit is {self._limit}")
        return self._file.read(n)

    def readinto(self, buffer) -> int:  # io.RawIOBase API; zipfile does not use it
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


@contextmanager
def open_archive(file: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    """A ZipFile over an open binary file, after checking every entry of its central directory."""
    size = os.fstat(file.fileno()).st_size
    try:
        archive = zipfile.ZipFile(_CappedReads(file, MAX_CENTRAL_DIRECTORY))
    except ZIP_ERRORS as err:
        if isinstance(err, FileProblem):
            raise
        raise FileProblem(f"not a readable zip archive, truncated or corrupt? ({err})") from None
    with archive:
        _check_entries(archive.infolist(), size)
        yield archive


def _check_entries(infos: list[zipfile.ZipInfo], file_size: int) -> None:
    if len(infos) > MAX_MEMBERS:
        raise FileProblem(f"zip archive has {len(infos)} members, more than the limit of {MAX_MEMBERS}")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise FileProblem(f"zip archive holds two members named '{name}'")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise FileProblem(f"zip member '{name}' is encrypted, which weight files never are")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileProblem(f"zip member '{name}' uses compression method {info.compress_type}; "
                              "only stored and deflated members are read")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise FileProblem(f"zip member '{name}' is stored (not compressed) but declares "
                              f"{info.compress_size} bytes stored and {info.file_size} bytes of data")
        # The local header (30 bytes + name) and the data must lie inside the file.
        if info.header_offset < 0 or info.header_offset + 30 + info.compress_size > file_size:
            raise FileProblem(f"zip member '{name}' (offset {info.header_offset}, "
                              f"{info.compress_size} bytes) reaches past the end of the "
                              f"{file_size}-byte file (truncated or corrupt zip64 sizes?)")


def member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(name)
    except KeyError:
        raise FileProblem(f"zip archive has no member '{name}'") from None


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, expected: int,
                budget: InflateBudget | None = None, what: str = "") -> np.ndarray:
    """The member's bytes as a uint8 array, refusing before inflating unless its declared size is
    ``expected`` (and fits ``budget``, unless the caller took it already), and stopping the moment
    it would produce more (so it never holds more than that)."""
    what = what or f"zip member '{info.filename}'"
    if info.file_size != expected:
        raise FileProblem(f"{what} declares {info.file_size} bytes, but {expected} are expected")
    if budget is not None:
        budget.take(expected, what)
    out = np.empty(expected, np.uint8)
    view, position = memoryview(out), 0
    try:
        with archive.open(info) as stream:
            while position < expected:
                chunk = stream.read(min(CHUNK, expected - position))
                if not chunk:
                    raise FileProblem(f"{what} ends after {position} of its {expected} bytes")
                view[position:position + len(chunk)] = chunk
                position += len(chunk)
            if stream.read(1):  # also makes zipfile check the CRC of an empty member
                raise FileProblem(f"{what} holds more than its {expected} bytes")
    except ZIP_ERRORS as err:
        if isinstance(err, FileProblem):
            raise
        raise FileProblem(f"{what} is corrupt ({type(err).__name__}: {err})") from None
    return out
