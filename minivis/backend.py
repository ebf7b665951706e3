"""The array backend: which array module holds a tensor's data, device moves, and the dtype policy.

minivis keeps every tensor's data in a plain array: ``numpy.ndarray`` on the CPU and
``cupy.ndarray`` on the GPU. Ops never branch on the device themselves; they ask
``xp(array)`` for the right module once and write array-module-generic code, so every
method runs unchanged on both devices.

The GPU kernels (``minivis.kernels.gpu_*``, Numba-CUDA) are imported on first GPU use; ops pick
their kernel module through ``kernel_device(array)``, which tests can steer with
``force_kernels("gpu")`` to run the GPU kernels under Numba's CUDA simulator. float32 GEMMs on
the GPU stay in full float32 unless ``allow_tf32(True)`` is called.

Dtype policy: float32 by default (like PyTorch); float64 is allowed everywhere and is what the
gradient checks use. Integer and boolean inputs to ``mv.tensor`` are converted to the default
float dtype, because every differentiable op here works on floats.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

DEFAULT_DTYPE = np.float32
FLOAT_DTYPES = (np.float32, np.float64)
DEVICES = ("cpu", "gpu")


def _gpu_missing() -> str | None:
    """Why the GPU cannot be used (None when CuPy is installed and sees a CUDA device)."""
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except Exception as err:  # ImportError, or a CuPy build that fails to load its CUDA libraries
        return f"CuPy cannot be imported ({type(err).__name__}: {err})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as err:  # no driver, no device
        return f"CuPy cannot reach a CUDA device ({type(err).__name__}: {err})"
    return None


def _cupy() -> types.ModuleType | None:
    """CuPy if it is installed and a GPU is usable, else None."""
    if _gpu_missing() is not None:
        return None
    import cupy  # noqa: PLC0415

    _apply_tf32(cupy)
    return cupy


def gpu_available() -> bool:
    """True when CuPy is installed and can see a CUDA device."""
    return _cupy() is not None


# ----------------------------------------------------------------------------- TF32 (GPU GEMMs)
# On Ampere and newer GPUs cuBLAS can run float32 GEMMs on tensor cores in TF32, which keeps only
# 10 of float32's 23 mantissa bits in the products: several times faster, and about 1e-3 relative
# error. minivis keeps full float32 unless you opt in with allow_tf32(True); it sets CuPy's
# compute type itself, so a CUPY_TF32=1 in the environment does not switch TF32 on behind its back.
_tf32 = {"allowed": False, "applied_to": None}


def allow_tf32(allowed: bool = True) -> None:
    """Let float32 GEMMs on the GPU (``xp.matmul`` in conv2d, linear, ...) use TF32 tensor cores.

    Off by default: results then match the CPU to float32 rounding. With TF32 on, expect relative
    errors near 1e-3 in conv and linear outputs and gradients. float64 is never affected.
    """
    if not isinstance(allowed, bool):
        raise TypeError(f"allow_tf32: allowed must be True or False, got {allowed!r}")
    _tf32["allowed"] = allowed
    _tf32["applied_to"] = None
    if "cupy" in sys.modules:  # already in use: switch now (else on first GPU use)
        _apply_tf32(sys.modules["cupy"])


def tf32_allowed() -> bool:
    """Whether float32 GEMMs on the GPU may use TF32 (see ``allow_tf32``)."""
    return _tf32["allowed"]


def _apply_tf32(cupy: types.ModuleType) -> None:
    """Set CuPy's float32 GEMM compute type to match ``allow_tf32`` (once per setting)."""
    if _tf32["applied_to"] is cupy:
        return
    from cupy._core import _routines_linalg as linalg  # noqa: PLC0415 (CuPy's compute-type switch)

    compute = linalg.COMPUTE_TYPE_TF32 if _tf32["allowed"] else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.float32, compute)
    _tf32["applied_to"] = cupy


# ----------------------------------------------------------------------------- which kernels run
_forced_kernels: dict[str, str | None] = {"device": None}


@contextlib.contextmanager
def force_kernels(device: str) -> Iterator[None]:
    """Test hook: inside the block, the ops run their ``gpu`` kernel modules on NumPy arrays.

    The GPU kernels are Numba-CUDA, whose simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
    ``numba.cuda`` is first imported) runs them on the CPU on NumPy arrays. This lets the very op
    code that serves CuPy arrays (conv2d forward/backward, max_pool2d with switches, unpool, the
    ReLU rules) run through the GPU kernels on a machine without a GPU, and be compared with the
    CPU kernels (``tests/gpu/test_kernels_sim.py``). Not for users: on a real GPU, move the data
    with ``.to("gpu")`` instead.
    """
    check_device(device)
    if device == "gpu":
        launcher = gpu_kernels("launch", "force_kernels")
        if not launcher.SIMULATED:
            raise RuntimeError("force_kernels('gpu') runs the GPU kernels on NumPy arrays, which only the "
                               "CUDA simulator can do: set NUMBA_ENABLE_CUDASIM=1 before numba.cuda is imported")
    previous = _forced_kernels["device"]
    _forced_kernels["device"] = device
    try:
        yield
    finally:
        _forced_kernels["device"] = previous


def kernel_device(array: Any) -> str:
    """Which kernel modules serve ``array``: ``"gpu"`` for CuPy arrays (or inside ``force_kernels("gpu")``)."""
    if is_gpu_array(array):
        return "gpu"
    return _forced_kernels["device"] or "cpu"


_cpu_kernels: dict[str, types.ModuleType] = {}


def kernels(family: str, array: Any, op: str) -> types.ModuleType:
    """The kernel module of ``family`` for ``array``'s device: the one place where CPU and GPU part ways.

    ``minivis.kernels.cpu_<family>`` (Numba) for NumPy arrays; ``minivis.kernels.gpu_<family>``
    (Numba-CUDA, the same function names) for CuPy arrays, and for NumPy arrays inside
    ``force_kernels("gpu")``, the hook that runs the GPU kernels under Numba's CUDA simulator.
    ``op`` names the caller in errors (a missing numba-cuda).
    """
    if kernel_device(array) == "gpu":
        return gpu_kernels(family, op)
    module = _cpu_kernels.get(family)  # every op asks on every call: a dict lookup, not an import
    if module is None:
        module = _cpu_kernels[family] = importlib.import_module(f"minivis.kernels.cpu_{family}")
    return module


@contextlib.contextmanager
def reuse_buffers() -> Iterator[None]:
    """Host arrays that the kernels return are served from a pool until the block ends.

    For methods that run one model on batch after batch: each batch's large arrays reuse the
    memory of the previous batch's dead ones instead of fresh pages (``minivis/kernels/cpu_workspace.py``;
    CuPy's memory pool does the same on the GPU).
    """
    with importlib.import_module("minivis.kernels.cpu_workspace").reuse():
        yield


def gpu_kernels(family: str, op: str) -> types.ModuleType:
    """``minivis.kernels.gpu_<family>``, imported on first use (``numba.cuda`` is slow to load).

    Raises a clear error when numba-cuda (part of the ``gpu`` extra) is missing, or when the
    family has no GPU module (``topk``, ``tsne``: their callers bring the data to the host first).
    """
    name = f"minivis.kernels.gpu_{family}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name and name not in sys.modules:  # no such file (not a failed dependency)
            raise RuntimeError(f"{op}: the {family!r} kernels run on the CPU only (there is no {name}); "
                               "move the data to the host first") from err
        raise RuntimeError(f"{op}: the GPU kernels need numba-cuda ({type(err).__name__}: {err}); install "
                           "the extra with `pip install minivis[gpu]`") from err
    except ImportError as err:
        raise RuntimeError(f"{op}: the GPU kernels need numba-cuda ({type(err).__name__}: {err}); install "
                           "the extra with `pip install minivis[gpu]`") from err


def is_gpu_array(array: Any) -> bool:
    """True for a ``cupy.ndarray`` (checked without importing CuPy)."""
    kind = type(array)
    return kind is not np.ndarray and kind.__module__.startswith("cupy")  # NumPy first: ops ask many times a call


def xp(array: Any) -> types.ModuleType:
    """The array module (numpy or cupy) that owns ``array``."""
    if is_gpu_array(array):
        import cupy  # noqa: PLC0415

        _apply_tf32(cupy)  # a no-op after the first call; covers CuPy arrays made outside minivis
        return cupy
    return np


def device_of(array: Any) -> str:
    """``"gpu"`` for CuPy arrays, ``"cpu"`` otherwise."""
    return "gpu" if is_gpu_array(array) else "cpu"


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    return device


def to_device(array: Any, device: str) -> Any:
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    check_device(device)
    if device == device_of(array):
        return array
    if device == "cpu":
        return array.get()
    missing = _gpu_missing()
    if missing is not None:
        raise RuntimeError(
            f"device='gpu' needs CuPy and a CUDA GPU, but {missing}; install the extra with "
            "`pip install minivis[gpu]` on a machine with an NVIDIA GPU"
        )
    return _cupy().asarray(array)


def as_float_array(data: Any, dtype: Any = None, name: str = "data") -> np.ndarray:
    """Convert ``data`` to a float32/float64 array on its current device.

    ``dtype=None`` keeps float32/float64 arrays as they are and converts everything else
    (ints, bools, Python numbers and lists, float16) to the default float32, as PyTorch does.
    """
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype!r}") from err
        if dtype.type not in FLOAT_DTYPES:
            raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype}")
    typed = is_gpu_array(data) or isinstance(data, np.ndarray | np.generic)  # else Python numbers/lists
    if is_gpu_array(data):
        module = xp(data)
    else:
        module = np
        if not isinstance(data, np.ndarray | np.generic | int | float | bool | list | tuple):
            raise TypeError(
                f"{name}: expected an array, a number or a (nested) list, got {type(data).__name__}"
            )
        data = np.asarray(data)
        if data.dtype == object:
            raise TypeError(f"{name}: expected numeric data, got an object array")
    if data.dtype.kind not in "biuf":  # strings, complex, datetimes: no silent (or failing) cast to float
        raise TypeError(f"{name}: expected real numbers (bool, int or float), got dtype {data.dtype}")
    if dtype is None:  # Python floats are float64 to NumPy, but nobody chose that: they get float32
        dtype = data.dtype if typed and data.dtype.type in FLOAT_DTYPES else np.dtype(DEFAULT_DTYPE)
    # asarray(order="C"), not ascontiguousarray, which would turn a 0-d scalar into shape (1,)
    return module.asarray(data, dtype=dtype, order="C")
