"""Weight files: read and write state dicts ({name: ndarray}) without running code from the file.

    import minivis.io
    weights = minivis.io.load_weights("resnet.pth")     # by content: zip/legacy .pth, .npz, .safetensors
    weights = minivis.io.load_torch("resnet.pth")       # torch.save files, zip or legacy format
    minivis.io.save_npz("net.npz", weights); minivis.io.load_npz("net.npz")
    minivis.io.save_safetensors("net.safetensors", weights); minivis.io.load_safetensors(...)

No reader imports torch or safetensors. PyTorch checkpoints are pickles, which can run arbitrary
code when loaded; :func:`load_torch` unpickles with a strict allowlist and raises
:class:`UnsafeWeightsError` for anything else, before any of it runs.

Hostile files: every reader raises :class:`WeightFileError` (a ValueError; UnsafeWeightsError is
one) naming the file and the reason, for any malformed, inconsistent or oversized content, and
never crashes the interpreter or holds more than ~2x the file's size (+ ~200 MB) while refusing
one. The limits: :mod:`minivis.io.unpickler` (pickle nesting, objects, memo),
:mod:`minivis.io.ziparchive` (zip members, decompression), :mod:`minivis.io.npz` (.npy headers)
and :mod:`minivis.io.safetensors` (JSON header).
"""

from __future__ import annotations

import os

import numpy as np

from minivis.io import ziparchive
from minivis.io.errors import FileProblem, UnsafeWeightsError, WeightFileError
from minivis.io.npz import load_npz, save_npz
from minivis.io.safetensors import load_safetensors, save_safetensors
from minivis.io.torch_pth import load_torch

__all__ = [
    "UnsafeWeightsError", "WeightFileError", "load_npz", "load_safetensors", "load_torch", "load_weights", "save_npz",
    "save_safetensors",
]

_BY_EXTENSION = {".npz": load_npz, ".safetensors": load_safetensors, ".pt": load_torch,
                 ".pth": load_torch, ".bin": load_torch, ".ckpt": load_torch, ".tar": load_torch}


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weight file of any supported format into ``{name: ndarray}``.

    The format is recognised from the first bytes: a zip archive is a ``torch.save`` file if it
    holds ``<name>/data.pkl`` and an ``.npz`` otherwise; a pickle is a legacy ``torch.save`` file;
    an 8-byte length followed by ``{`` is safetensors. Files that match none of these go to the
    reader their extension names (whose error then says what is wrong), else raise ValueError.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        head = file.read(9)
    if head[:4] == b"PK\x03\x04":
        try:
            with open(source, "rb") as file, ziparchive.open_archive(file) as archive:
                is_torch = any(n.endswith("/data.pkl") and n.count("/") == 1 for n in archive.namelist())
        except FileProblem:
            is_torch = not source.endswith(".npz")  # unreadable: let the likelier reader explain
        return load_torch(source) if is_torch else load_npz(source)
    if head[:1] == b"\x80":
        return load_torch(source)
    if len(head) == 9 and head[8:9] == b"{":
        return load_safetensors(source)
    reader = _BY_EXTENSION.get(os.path.splitext(source)[1].lower())
    if reader is not None:
        return reader(source)
    raise WeightFileError(f"load_weights: {source}: unrecognised weight file (starts with {head[:8]!r}); "
                     "expected a torch.save checkpoint, an .npz archive or a .safetensors file")
