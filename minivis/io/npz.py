"""NumPy ``.npz`` weight files: a zip archive holding one ``<name>.npy`` member per tensor.

The plainest format minivis reads: arrays and nothing else. We always read with
``allow_pickle=False``, so an archive whose members are object arrays (which NumPy can only
restore by unpickling, i.e. by running code) is refused instead of executed.

    mv.io.save_npz("net.npz", net.state_dict())
    weights = mv.io.load_npz("net.npz")        # {name: ndarray}, in the order they were saved
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor


def state_dict_arrays(state_dict: Any, op: str) -> dict[str, np.ndarray]:
    """``state_dict`` as ``{str: host ndarray}``, checked: str keys, numeric or bool values.

    Values may be NumPy arrays or scalars, minivis Tensors, GPU arrays or anything ``np.asarray``
    turns into a numeric array (a torch tensor, a nested list).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{op}: state_dict must be a mapping of names to arrays, "
                        f"got {type(state_dict).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"{op}: state_dict keys must be str, got {key!r} ({type(key).__name__})")
        if isinstance(value, Tensor):
            array = value.numpy()
        elif backend.is_gpu_array(value):
            array = backend.to_device(value, "cpu")
        else:
            try:
                array = np.asarray(value)
            except (TypeError, ValueError) as err:
                raise TypeError(f"{op}: state_dict['{key}'] must be an array, got "
                                f"{type(value).__name__} ({err})") from None
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{op}: state_dict['{key}'] must be a numeric or bool array, "
                            f"got dtype {array.dtype}")
        arrays[key] = array
    return arrays


def save_npz(path: str | os.PathLike, state_dict: Mapping[str, Any], compressed: bool = False) -> None:
    """Write ``state_dict`` ({name: array}) to ``path`` as an ``.npz`` archive.

    The name is used exactly as given (unlike ``np.savez`` we never append ``.npz``), and keys
    such as ``"file"`` that would clash with ``np.savez``'s own arguments are fine.
    ``compressed=True`` deflates the members (smaller, slower), like ``np.savez_compressed``.
    """
    arrays = state_dict_arrays(state_dict, "save_npz")
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    # What np.savez does inside, minus its argument-name clashes: one .npy member per array.
    with zipfile.ZipFile(os.fspath(path), "w", compression=mode, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive into ``{name: ndarray}`` (never unpickles).

    Raises ValueError naming the file for a truncated or corrupt archive, a lone ``.npy`` file,
    a member that is not an array, or an object (pickled) array.
    """
    source = os.fspath(path)
    try:
        loaded = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"load_npz: {source}: not a readable .npz archive ({err})") from None
    if isinstance(loaded, np.ndarray):
        raise ValueError(f"load_npz: {source}: is a single .npy array, expected an .npz archive "
                         "(read it with np.load)")
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for key in loaded.files:
            try:
                array = loaded[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
                raise ValueError(f"load_npz: {source}: member '{key}' is unreadable ({err})") from None
            if not isinstance(array, np.ndarray):
                raise ValueError(f"load_npz: {source}: member '{key}' is not a .npy array")
            arrays[key] = array
    return arrays
