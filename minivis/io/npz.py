"""NumPy ``.npz`` weight files: a zip archive holding one ``<name>.npy`` member per tensor.

The plainest format minivis reads: arrays and nothing else. We always read with
``allow_pickle=False``, so an archive whose members are object arrays (which NumPy can only
restore by unpickling, i.e. by running code) is refused instead of executed.

    mv.io.save_npz("net.npz", net.state_dict())
    weights = mv.io.load_npz("net.npz")        # {name: ndarray}, in the order they were saved
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.io import ziparchive
from minivis.io.errors import CONTENT_ERRORS, FileProblem, reraise


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


# ---------------------------------------------------------------- reading, within limits
# An .npy member: 6-byte magic, version (1, 2 or 3).0, header length (2 bytes in 1.0, 4 in 2.0 and
# 3.0), the header (a Python dict literal, padded with spaces), then the raw array. We parse the
# header with a strict pattern instead of ast.literal_eval, allow only numeric and bool dtypes,
# and require the data to be exactly as long as shape x itemsize before allocating anything.
_NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 10_000   # bytes; NumPy's own limit (np.lib.format's max_header_size)
MAX_NDIM = 64             # NumPy's limit on dimensions
_NPY_ITEM = re.compile(r"""\s*'(descr|fortran_order|shape)'\s*:\s*"""
                       r"""('[^'\\]*'|True|False|\(\s*(?:\d+L?\s*,\s*)*(?:\d+L?\s*)?\))\s*(,|$)""")
_ALLOWED_KINDS = "biuf"   # bool, signed and unsigned ints, floats: never objects (they unpickle)


def _npy_header(stream: Any, name: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, header bytes) of an .npy member, or FileProblem."""
    lead = stream.read(10)
    if len(lead) < 10 or not lead.startswith(_NPY_MAGIC):
        raise FileProblem(f"member '{name}' is not a .npy array")
    major = lead[6]
    if major == 1:
        length, start = int.from_bytes(lead[8:10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(lead[8:10] + stream.read(2), "little"), 12
    else:
        raise FileProblem(f"member '{name}' has unsupported .npy format version {major}.{lead[7]}")
    if length > MAX_NPY_HEADER:
        raise FileProblem(f"member '{name}' has a {length}-byte .npy header, more than the limit "
                          f"of {MAX_NPY_HEADER}")
    raw = stream.read(length)
    if len(raw) != length:
        raise FileProblem(f"member '{name}' ends inside its .npy header")
    text = raw.decode("utf-8" if major == 3 else "latin1").strip()
    fields: dict[str, str] = {}
    position = 1
    if text[:1] == "{" and text[-1:] == "}":
        body = text[1:-1]
        position = 0
        while position < len(body.rstrip()):
            match = _NPY_ITEM.match(body, position)
            if match is None or match.group(1) in fields:
                break
            fields[match.group(1)] = match.group(2)
            position = match.end()
        else:
            position = -1
    if position != -1 or set(fields) != {"descr", "fortran_order", "shape"}:
        raise FileProblem(f"member '{name}' has a malformed or unsupported .npy header "
                          f"{text[:100]!r} (structured and object arrays are not read)")
    try:
        dtype = np.dtype(fields["descr"][1:-1])
    except TypeError:
        raise FileProblem(f"member '{name}' has an unknown dtype {fields['descr']:.40}") from None
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise FileProblem(f"member '{name}' is unreadable (dtype {fields['descr']:.40} is not a "
                          "numeric or bool dtype; object arrays would need allow_pickle=True, "
                          "i.e. unpickling, which can run code: never done)")
    shape = tuple(int(n.rstrip("L")) for n in re.findall(r"\d+L?", fields["shape"]))
    if len(shape) > MAX_NDIM:
        raise FileProblem(f"member '{name}' has {len(shape)} dimensions, more than {MAX_NDIM}")
    return dtype, shape, fields["fortran_order"] == "True", start + length


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive into ``{name: ndarray}`` (never unpickles).

    Raises :class:`~minivis.io.WeightFileError` (a ValueError) naming the file for a truncated,
    corrupt or oversized archive, a lone ``.npy`` file, a member that is not an array, or an
    object (pickled) or structured array. Every member's header is checked (length, dtype,
    shape, and that the data is exactly shape x itemsize bytes) before its data is read, within
    the zip limits of :mod:`minivis.io.ziparchive`.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        try:
            head = file.read(6)
            if head == _NPY_MAGIC:
                raise FileProblem("is a single .npy array, expected an .npz archive (read it with np.load)")
            if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
                what = "it is empty" if not head else f"it starts with {head!r}"
                raise FileProblem(f"not a readable .npz archive ({what})")
            file.seek(0)
            try:
                with ziparchive.open_archive(file) as archive:
                    return _read_members(archive, os.fstat(file.fileno()).st_size)
            except FileProblem as err:
                if str(err).startswith("not a readable zip archive"):
                    raise FileProblem(f"not a readable .npz archive ({err})") from None
                raise
        except CONTENT_ERRORS as err:
            reraise("load_npz", source, err)


def _read_members(archive: zipfile.ZipFile, file_size: int) -> dict[str, np.ndarray]:
    budget = ziparchive.InflateBudget(file_size)
    arrays: dict[str, np.ndarray] = {}
    for info in archive.infolist():
        name = info.filename
        key = name[:-4] if name.endswith(".npy") else name
        if key in arrays:
            raise FileProblem(f"two members hold the array '{key}'")
        try:
            with archive.open(info) as stream:  # just the header: a few hundred bytes
                dtype, shape, fortran, header_bytes = _npy_header(stream, key)
        except ziparchive.ZIP_ERRORS as err:
            if isinstance(err, FileProblem):
                raise
            raise FileProblem(f"member '{key}' is unreadable ({type(err).__name__}: {err})") from None
        nbytes = prod(shape) * dtype.itemsize
        if info.file_size != header_bytes + nbytes:
            raise FileProblem(f"member '{key}' holds {info.file_size - header_bytes} bytes of data, "
                              f"but its header says shape {shape} of {dtype} ({nbytes} bytes)")
        data = ziparchive.read_member(archive, info, info.file_size, budget)[header_bytes:]
        array = data.view(dtype)
        if fortran:
            array = array.reshape(shape[::-1]).transpose()
        else:
            array = array.reshape(shape)
        arrays[key] = array
    return arrays
