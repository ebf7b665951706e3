"""Read PyTorch checkpoints (``torch.save`` files) without PyTorch and without running their code.

A ``.pth`` file is a pickle, and unpickling calls whatever callables the file names: a pickle
can say "call ``os.system('...')``" just as easily as "rebuild a tensor". We therefore unpickle
with a restricted :class:`pickle.Unpickler` whose ``find_class`` hands out only a short allowlist
of *our own* stand-ins for PyTorch's tensor-rebuilding globals. Any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, a user's model class ...) raises
:class:`UnsafeWeightsError` the moment the pickle names it, before anything is called.

Two container formats hold the pickle and the raw tensor bytes ("storages"):

    zip (default since torch 1.6)          legacy (_use_new_zipfile_serialization=False)
      <name>/data.pkl     the object          pickle 1: magic number 0x1950a86a20f9469cfc6c
      <name>/data/<key>   one raw storage     pickle 2: protocol version 1001
      <name>/byteorder    "little" | "big"    pickle 3: sys info {"little_endian": ...}
                                              pickle 4: the object
                                              pickle 5: list of storage keys
                                              per key: int64 element count, then raw bytes

In both, a tensor is pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)``, and ``storage`` is a persistent id ``('storage', torch.FloatStorage, key, location, numel)``.
Unpickling builds light references (:class:`_TensorRef`); afterwards each array is cut out of its
raw storage with ``as_strided`` (after checking the view stays inside the storage) and copied, so
non-contiguous views, shared storages and storage offsets come out right. bfloat16 becomes float32.

How a checkpoint becomes a flat ``{name: ndarray}`` (:func:`load_torch`):
1. while the object is a dict holding a dict under one of ``state_dict``, ``model_state_dict``,
   ``model``, ``module``, ``net`` (first match in that order), descend into it;
2. flatten nested dicts, lists and tuples, joining keys with ``"."``; keep tensors, drop other
   leaves (epoch numbers, strings, dtypes); a bare saved tensor comes back under the name ``""``;
3. if every name starts with ``"module."`` (a model saved through ``nn.DataParallel``), strip it.
"""

from __future__ import annotations

import _compat_pickle  # pickle's own table of Python 2 -> 3 names
import io
import os
from collections import OrderedDict
from collections.abc import Callable
from math import prod
from typing import IO, Any, NamedTuple

import numpy as np

from minivis.io import ziparchive
from minivis.io.errors import CONTENT_ERRORS, UnsafeWeightsError, brief, reraise
from minivis.io.errors import FileProblem as _FormatError
from minivis.io.unpickler import PICKLE_ERRORS, BoundedUnpickler

# ---------------------------------------------------------------- what the pickle may name
# Every allowlisted object is an immutable NamedTuple: no __dict__ and no settable attributes, so
# the pickle's BUILD opcode cannot modify our functions, and none of them is a class, so
# NEWOBJ cannot instantiate anything.

class _StorageType(NamedTuple):
    """``torch.FloatStorage`` and friends: the element type of a raw storage."""
    name: str
    dtype: np.dtype          # on-disk element type (little-endian; swapped for big-endian archives)


class _StorageRef(NamedTuple):
    """One raw storage, as named by a persistent id: ``numel`` elements of ``stype``."""
    key: str
    stype: _StorageType
    numel: int


class _TensorRef(NamedTuple):
    """A tensor as a strided view of a storage (element units, like ``torch.as_strided``)."""
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _SafeGlobal(NamedTuple):
    """An allowlisted global: the pickle's REDUCE calls it, and it runs ``fn``, one of ours."""
    name: str
    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


_BFLOAT16 = "BFloat16Storage"
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", _BFLOAT16: "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "<i1",
    "ByteStorage": "<u1", "BoolStorage": "<u1",
}
_TORCH_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                 "uint8", "bool")


def _is_int(value: Any, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(_is_int(v) for v in value):
        raise _FormatError(f"tensor {what} must be a tuple of non-negative ints, got {brief(value)}")
    return value


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    """``torch._utils._rebuild_tensor[_v2](storage, offset, size, stride, requires_grad,
    backward_hooks, metadata)``: only the first four matter for the values."""
    if not isinstance(storage, _StorageRef):
        raise _FormatError(f"tensor storage must be a storage reference, got {type(storage).__name__}")
    if not _is_int(offset):
        raise _FormatError(f"tensor storage offset must be a non-negative int, got {brief(offset)}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise _FormatError(f"tensor size {size} and stride {stride} differ in length")
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> _TensorRef:
    """``torch._utils._rebuild_parameter[_with_state](data, requires_grad, hooks[, state])``."""
    if not isinstance(data, _TensorRef):
        raise _FormatError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    # Pickled as OrderedDict() (then SETITEMS), or OrderedDict([(key, value), ...]).
    if len(args) > 1 or (args and not isinstance(args[0], list | tuple)):
        raise _FormatError(f"OrderedDict takes a list of pairs, got {brief(args)}")
    return OrderedDict(*args)


def _torch_size(dims: Any) -> tuple[int, ...]:
    return _int_tuple(dims, "torch.Size")


_SAFE_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": _SafeGlobal("collections.OrderedDict", _ordered_dict),
    "torch._utils._rebuild_tensor": _SafeGlobal("_rebuild_tensor", _rebuild_tensor),
    "torch._utils._rebuild_tensor_v2": _SafeGlobal("_rebuild_tensor_v2", _rebuild_tensor),
    "torch._utils._rebuild_parameter": _SafeGlobal("_rebuild_parameter", _rebuild_parameter),
    "torch._utils._rebuild_parameter_with_state": _SafeGlobal("_rebuild_parameter", _rebuild_parameter),
    "torch.Size": _SafeGlobal("torch.Size", _torch_size),
    **{f"torch.{name}": _StorageType(name, np.dtype(code)) for name, code in _STORAGE_DTYPES.items()},
    # Dtype objects (e.g. in a checkpoint's config): plain strings, dropped when flattening.
    **{f"torch.{name}": f"torch.{name}" for name in _TORCH_DTYPES},
}


class _RestrictedUnpickler(BoundedUnpickler):
    """Unpickles one object; globals only from ``_SAFE_GLOBALS`` (none at all when
    ``allow_tensors`` is False), storages only as ``('storage', ...)`` persistent ids, and
    within the nesting, object and memo limits of :class:`~minivis.io.unpickler.BoundedUnpickler`."""

    def __init__(self, stream: io.BytesIO, source: str, allow_tensors: bool) -> None:
        super().__init__(stream)
        self._source = source
        self._allow_tensors = allow_tensors
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (torch's) spell some globals the Python 2 way, e.g. builtins.exec
        # as __builtin__.exec and subprocess.Popen as commands.Popen; translate as pickle does.
        py3_module, py3_name = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        full_name = f"{py3_module}.{py3_name}"
        safe = _SAFE_GLOBALS.get(full_name) if self._allow_tensors else None
        if safe is None:
            shown = f"'{full_name}'"
            if full_name != f"{module}.{name}":
                shown += f" (written '{module}.{name}' in the file)"
            raise UnsafeWeightsError(
                f"load_torch: {self._source}: refused to load the global {shown}: only "
                "tensor-rebuilding globals on the allowlist may appear in a weight file, because "
                "unpickling anything else can run arbitrary code. Nothing was executed. If you "
                "trust the file, re-save just the tensors (torch.save(model.state_dict(), path)).")
        return safe

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', storage_type, key, location, numel[, view_metadata]); the legacy format
        # adds view_metadata, which is None except in files from pre-1.0 PyTorch.
        if not (self._allow_tensors and isinstance(pid, tuple) and len(pid) in (5, 6)
                and pid[0] == "storage"):
            raise _FormatError(f"unsupported persistent id {brief(pid)}")
        _, stype, key, location, numel, *view = pid
        if view and view[0] is not None:
            raise _FormatError("storage views (files written by PyTorch < 1.0) are not supported")
        if not (isinstance(stype, _StorageType) and isinstance(key, str)
                and isinstance(location, str) and _is_int(numel)):
            raise _FormatError(f"malformed storage id {brief(pid)}")
        ref = self.storages.setdefault(key, _StorageRef(key, stype, numel))
        if ref != (key, stype, numel):
            raise _FormatError(f"storage '{key}' is used with two different types or sizes")
        return ref


def _unpickle(stream: io.BytesIO, source: str, what: str,
              allow_tensors: bool = False) -> tuple[Any, dict[str, _StorageRef]]:
    """Unpickle one object from ``stream``; any failure becomes a clear error naming ``what``."""
    unpickler = _RestrictedUnpickler(stream, source, allow_tensors)
    try:
        return unpickler.load(), unpickler.storages
    except (UnsafeWeightsError, _FormatError):
        raise
    except PICKLE_ERRORS as err:  # what a corrupt pickle makes the pickle machine raise
        kind = "truncated" if isinstance(err, EOFError) or "truncated" in str(err) else "corrupt"
        raise _FormatError(f"{kind} pickle ({what}): {type(err).__name__}: {err}") from None


# ---------------------------------------------------------------- the two container formats

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


_MAX_BYTEORDER = 16  # bytes: "little" or "big", perhaps with a newline


def _read_zip(file: IO[bytes], source: str) -> tuple[dict[str, _TensorRef], dict[str, np.ndarray]]:
    """The tensors (references) and the raw storages they use (1-D arrays, by key) of a
    zip-format checkpoint. Every size is checked before anything is inflated: the pickle's
    (against its own limits and the file's size), then each storage member's declared size
    against what the pickle says it holds, and their total against the archive's inflate budget;
    only then are the storages read, each never past its expected size."""
    with ziparchive.open_archive(file) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            hint = " (it looks like a NumPy .npz: use load_npz)" if any(n.endswith(".npy") for n in names) else ""
            raise _FormatError(f"zip archive has no single '<name>/data.pkl', so it was not written by "
                               f"torch.save{hint}")
        prefix = pickles[0][: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names):
            raise _FormatError("is a TorchScript archive (torch.jit.save), which is not supported: "
                               "save model.state_dict() with torch.save instead")
        budget = ziparchive.InflateBudget(os.fstat(file.fileno()).st_size)
        byteorder = "little"
        if prefix + "byteorder" in names:  # absent in files from torch < 1.10: always little-endian
            info = ziparchive.member(archive, prefix + "byteorder")
            if info.file_size > _MAX_BYTEORDER:
                raise _FormatError(f"byteorder member holds {info.file_size} bytes (expected 'little' or 'big')")
            text = ziparchive.read_member(archive, info, info.file_size, budget).tobytes()
            byteorder = text.decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise _FormatError(f"unknown byteorder '{byteorder:.20}' (expected 'little' or 'big')")
        info = ziparchive.member(archive, prefix + "data.pkl")
        pickled = ziparchive.read_member(archive, info, info.file_size, budget)
        obj, _ = _unpickle(io.BytesIO(pickled.tobytes()), source, "data.pkl", allow_tensors=True)
        del pickled
        refs = _tensor_refs(obj)
        storages = {ref.storage.key: ref.storage for ref in refs.values()}  # those the tensors use
        plan = []
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise _FormatError(f"storage '{key}' is missing (no member '{name}')")
            info, nbytes = archive.getinfo(name), storage.numel * storage.stype.dtype.itemsize
            if info.file_size != nbytes:
                raise _FormatError(f"storage '{key}' holds {info.file_size} bytes, but {storage.numel} "
                                   f"{storage.stype.name} elements need {nbytes}")
            plan.append((key, info, nbytes, storage.stype.dtype))
        budget.take(sum(nbytes for _, _, nbytes, _ in plan), f"the {len(plan)} storages")
        order = "<" if byteorder == "little" else ">"
        raw = {key: ziparchive.read_member(archive, info, nbytes).view(
                   dtype.newbyteorder(order))
               for key, info, nbytes, dtype in plan}
    return refs, raw


def _read_legacy(data: bytes, source: str) -> tuple[dict[str, _TensorRef], dict[str, np.ndarray]]:
    """The tensors (references) and raw storages (1-D arrays, by key) of a legacy checkpoint."""
    stream = io.BytesIO(data)
    magic, _ = _unpickle(stream, source, "magic number")
    if magic != _LEGACY_MAGIC:
        raise _FormatError("is a pickle but lacks PyTorch's magic number, so it was not written by "
                           "torch.save (plain pickles are not read: they can run code)")
    protocol, _ = _unpickle(stream, source, "protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise _FormatError(f"unsupported legacy protocol version {brief(protocol)} (expected 1001)")
    _unpickle(stream, source, "sys info")  # byte order etc.: legacy storages are always little-endian
    obj, refs = _unpickle(stream, source, "object", allow_tensors=True)
    keys, _ = _unpickle(stream, source, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _FormatError(f"storage key list must be a list of str, got {type(keys).__name__}")
    if len(set(keys)) != len(keys):
        raise _FormatError("storage key list names a storage twice")
    raw, offset = {}, stream.tell()
    for key in keys:  # each storage: int64 element count, then its raw bytes
        if key not in refs:
            raise _FormatError(f"storage key list names '{key}', which no tensor uses")
        if offset + 8 > len(data):
            raise _FormatError(f"truncated: file ends before storage '{key}' ({len(data)} bytes)")
        count = int.from_bytes(data[offset:offset + 8], "little", signed=True)
        ref = refs[key]
        if count != ref.numel:
            raise _FormatError(f"storage '{key}' records {count} elements, the pickle says {ref.numel}")
        nbytes = count * ref.stype.dtype.itemsize
        if offset + 8 + nbytes > len(data):
            raise _FormatError(f"truncated: storage '{key}' needs {nbytes} bytes at offset "
                               f"{offset + 8}, but the file has {len(data)} bytes")
        raw[key] = np.frombuffer(data, dtype=ref.stype.dtype, count=count, offset=offset + 8)
        offset += 8 + nbytes
    return _tensor_refs(obj), raw


# ---------------------------------------------------------------- from references to arrays

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# A pickle can build cycles and shared sub-objects (its memo), so a tiny file could send a naive
# walk round forever or through 2**40 paths: bound both the depth and the number of visits.
_MAX_DEPTH = 32
_MAX_VISITS = 1_000_000


def _select_state_dict(obj: Any) -> Any:
    """Rule 1: descend into ``checkpoint["state_dict"]`` and the other common wrappers."""
    for _ in range(_MAX_DEPTH):
        inner = None
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            return obj
        obj = inner
    raise _FormatError(f"checkpoint wrappers nest deeper than {_MAX_DEPTH} levels (or refer to themselves)")


def _flatten(obj: Any, prefix: str, out: dict[str, _TensorRef], visits: list[int], depth: int = 0) -> None:
    """Rule 2: collect tensors from nested dicts/lists/tuples under dotted names."""
    visits[0] += 1
    if depth > _MAX_DEPTH:
        raise _FormatError(f"object nests deeper than {_MAX_DEPTH} levels (does it refer to itself?)")
    if visits[0] > _MAX_VISITS:
        raise _FormatError(f"object has more than {_MAX_VISITS} parts (shared many times over?)")
    if isinstance(obj, _TensorRef):
        if prefix in out:
            raise _FormatError(f"two tensors flatten to the same name '{prefix}'")
        out[prefix] = obj
        return
    if isinstance(obj, dict):
        items = ((str(k), v) for k, v in obj.items())
    elif type(obj) in (list, tuple):  # plain sequences only: our references are tuples too
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return  # numbers, strings, None, dtypes: not weights
    for key, value in items:
        _flatten(value, f"{prefix}.{key}" if prefix else key, out, visits, depth + 1)


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 stored as uint16 -> float32: bfloat16 is the top half of a float32's bits."""
    wide = bits.astype(np.uint32)  # in place below, so 0-d arrays stay arrays (not scalars)
    wide <<= 16
    return wide.view(np.float32)


def _materialise(ref: _TensorRef, raw: np.ndarray) -> np.ndarray:
    """Copy the strided view ``ref`` out of its raw 1-D storage, after a bounds check."""
    size, stride, stype = ref.size, ref.stride, ref.storage.stype
    if prod(size) == 0:
        view = np.empty(size, dtype=raw.dtype)
    else:
        # The furthest element the view touches must lie inside the storage.
        last = ref.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= raw.size:
            raise _FormatError(f"tensor view (offset {ref.offset}, size {size}, stride {stride}) "
                               f"reaches element {last} of storage '{ref.storage.key}', which has "
                               f"{raw.size}")
        # The stride of a dimension of size 1 is never used, and may be any int (2**70 too).
        strides = tuple(s * raw.itemsize if n > 1 else 0 for n, s in zip(size, stride, strict=True))
        view = np.lib.stride_tricks.as_strided(raw[ref.offset:], shape=size, strides=strides,
                                               writeable=False)
    if stype.name == _BFLOAT16:
        return bfloat16_to_float32(view)
    if stype.name == "BoolStorage":
        return view.astype(np.bool_)  # any nonzero byte is True
    return view.astype(raw.dtype.newbyteorder("="), order="C")  # copy, native byte order


def _tensor_refs(obj: Any) -> dict[str, _TensorRef]:
    """Rules 1-3: the tensors of a checkpoint object under their flat names."""
    refs: dict[str, _TensorRef] = {}
    _flatten(_select_state_dict(obj), "", refs, visits=[0])
    if not refs:
        raise _FormatError("holds no tensors")
    # Rule 3: a model saved from nn.DataParallel prefixes every name with "module.".
    if all(name.startswith("module.") for name in refs):
        refs = {name[len("module."):]: ref for name, ref in refs.items()}
    return refs


def _check_views(refs: dict[str, _TensorRef], budget: int) -> None:
    """Every view inside its storage, and all of them together within ``budget`` bytes: checked
    before anything is allocated, so a refusal never follows a large allocation."""
    total = 0
    for ref in refs.values():
        size, stride, storage = ref.size, ref.stride, ref.storage
        # A few pickle bytes can ask for another copy of a big storage, or a huge stride-0 view:
        # cap what we allocate in proportion to the file's size.
        total += prod(size) * storage.stype.dtype.itemsize
        if total > budget:
            raise _FormatError(f"tensors would need more than {budget} bytes, far more than the "
                               "file holds (a malicious or corrupt file?)")
        if prod(size) == 0:
            continue
        # The furthest element the view touches must lie inside the storage.
        last = ref.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise _FormatError(f"tensor view (offset {ref.offset}, size {size}, stride {stride}) "
                               f"reaches element {last} of storage '{storage.key}', which has "
                               f"{storage.numel}")


def _to_arrays(refs: dict[str, _TensorRef], raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, ref in refs.items():
        if ref.storage.key not in raw:
            raise _FormatError(f"tensor '{name}' uses storage '{ref.storage.key}', which the file lacks")
    return {name: _materialise(ref, raw[ref.storage.key]) for name, ref in refs.items()}


def load_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``torch.save`` checkpoint (zip or legacy format) into ``{name: ndarray}``.

    Never executes code from the file: a global outside the allowlist raises
    :class:`UnsafeWeightsError` before anything runs. A truncated, corrupt, unsupported or
    oversized file raises :class:`~minivis.io.WeightFileError` (a ValueError) naming the file
    and the problem; the resource limits are in :mod:`minivis.io.unpickler` and
    :mod:`minivis.io.ziparchive`. Nested checkpoints are reduced to a flat state dict by the
    rules in this module's docstring. Dtypes: float32/64, float16, int64/32/16/8, uint8 and bool
    keep theirs; bfloat16 becomes float32.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(512)
        try:
            if head[:4] == b"PK\x03\x04":
                file.seek(0)
                refs, raw = _read_zip(file, source)
            elif head[:1] == b"\x80":  # pickle protocol >= 2: the legacy format's magic number
                file.seek(0)
                refs, raw = _read_legacy(file.read(), source)
            elif head[257:262] == b"ustar":
                raise _FormatError("is a tar checkpoint (PyTorch < 0.1.10), which is not supported")
            else:
                what = "is empty" if not head else f"starts with {head[:8]!r}"
                raise _FormatError(f"is not a PyTorch checkpoint: it {what}, not a zip or pickle signature")
            _check_views(refs, budget=64 * size + (64 << 20))
            return _to_arrays(refs, raw)
        except CONTENT_ERRORS as err:  # UnsafeWeightsError and FileProblem are ValueErrors too
            reraise("load_torch", source, err)
