"""The array backend: which array module holds a tensor's data, device moves, and the dtype policy.

minivis keeps every tensor's data in a plain array: ``numpy.ndarray`` on the CPU and
``cupy.ndarray`` on the GPU. Ops never branch on the device themselves; they ask
``xp(array)`` for the right module once and write array-module-generic code, so every
method runs unchanged on both devices.

Dtype policy: float32 by default (like PyTorch); float64 is allowed everywhere and is what the
gradient checks use. Integer and boolean inputs to ``mv.tensor`` are converted to the default
float dtype, because every differentiable op here works on floats.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

DEFAULT_DTYPE = np.float32
FLOAT_DTYPES = (np.float32, np.float64)
DEVICES = ("cpu", "gpu")


def _cupy() -> types.ModuleType | None:
    """CuPy if it is installed and a GPU is usable, else None."""
    try:
        import cupy  # noqa: PLC0415 (optional dependency)

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:  # ImportError, or CUDA driver/runtime errors
        return None


def gpu_available() -> bool:
    """True when CuPy is installed and can see a CUDA device."""
    return _cupy() is not None


def is_gpu_array(array: Any) -> bool:
    """True for a ``cupy.ndarray`` (checked without importing CuPy)."""
    return type(array).__module__.startswith("cupy")


def xp(array: Any) -> types.ModuleType:
    """The array module (numpy or cupy) that owns ``array``."""
    if is_gpu_array(array):
        import cupy  # noqa: PLC0415

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
    cupy = _cupy()
    if cupy is None:
        raise RuntimeError(
            "device='gpu' needs CuPy and a CUDA GPU; install the extra with "
            "`pip install minivis[gpu]` on a machine with an NVIDIA GPU"
        )
    return cupy.asarray(array)


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
