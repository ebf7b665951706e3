"""The one exception family every weight reader raises for a bad file.

    WeightFileError (ValueError)        truncated, corrupt, unsupported, inconsistent, or over a limit
      UnsafeWeightsError                the file names a global that could run code; nothing ran

Readers raise :class:`WeightFileError` with a message ``"<reader>: <path>: <reason>"``; TypeError
is kept for arguments of the wrong type, and OSError (a missing file, a permission problem) passes
through unchanged, since it is about the file system, not the file's content. Inside the readers,
problems are raised as :class:`FileProblem` (the reason only) and given the reader and path once,
at the public boundary, by :func:`reraise`.
"""

from __future__ import annotations

import reprlib
import struct
import zipfile
import zlib
from typing import NoReturn


class WeightFileError(ValueError):
    """A weight file is truncated, corrupt, unsupported, inconsistent or exceeds a resource limit."""


class UnsafeWeightsError(WeightFileError):
    """A weight file asked to load a global outside the allowlist (it could run code); nothing ran."""


class FileProblem(ValueError):
    """What is wrong with a file, before the reader adds its name and the file's path."""


# Errors that malformed content can raise from the standard library (zipfile, zlib, struct, NumPy,
# int parsing) and that the readers turn into WeightFileError where they can arise. Note what is
# not here: KeyError, AttributeError, NameError, AssertionError ... in our own code are bugs.
CONTENT_ERRORS = (ValueError, EOFError, OverflowError, MemoryError, RecursionError, struct.error,
                  zipfile.BadZipFile, zlib.error, UnicodeDecodeError)


def reraise(reader: str, source: str, err: BaseException) -> NoReturn:
    """Raise ``err`` as a WeightFileError that names ``reader`` and ``source``."""
    if isinstance(err, WeightFileError):
        raise err  # already complete (UnsafeWeightsError names the file itself)
    if isinstance(err, FileProblem):
        reason = str(err)
    elif isinstance(err, MemoryError):
        reason = "needs more memory than is available (a corrupt or malicious size?)"
    elif isinstance(err, RecursionError):
        reason = "nests too deeply to read"
    else:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    raise WeightFileError(f"{reader}: {source}: {reason}") from (None if isinstance(err, FileProblem) else err)


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxtuple, _BRIEF.maxlist, _BRIEF.maxdict = 3, 6, 6, 4
_BRIEF.maxstring, _BRIEF.maxlong, _BRIEF.maxother = 60, 40, 60


def brief(value: object) -> str:
    """A short repr for error messages: ``f"{x!r:.80}"`` would first build the whole repr, which
    for a hostile file's million-element list costs hundreds of MB."""
    return _BRIEF.repr(value)
