"""Argument checks shared by every package (functional, nn, vis, io, data): clear errors that name
the op, the argument, what was expected and what was given, raised before any array code can fail
obscurely.

A bottom-layer module: it imports only numpy, ``minivis.backend`` and ``minivis.autograd.Tensor``,
so any layer above may use it without an import cycle."""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor

_LAYOUTS = {2: "(N, F)", 3: "(C, H, W)", 4: "(N, C, H, W)"}


def check_tensor(x: Any, op: str, name: str = "input", ndim: int | tuple[int, ...] | None = None) -> Tensor:
    """``x`` as a Tensor (arrays become constants), with its rank checked."""
    if not isinstance(x, Tensor):
        if isinstance(x, np.ndarray) or backend.is_gpu_array(x):
            if x.dtype.kind not in "fiub":
                raise TypeError(f"{op}: {name} must be a float tensor or array, got dtype {x.dtype}")
            x = Tensor(x)
        else:
            raise TypeError(f"{op}: {name} must be a Tensor or an array, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            layout = " or ".join(f"{n}-D {_LAYOUTS.get(n, '')}".strip() for n in allowed)
            raise ValueError(f"{op}: {name} must be {layout}, got shape {x.shape}")
    return x


def host(value: Any) -> Any:
    """A Tensor's data, or an array, on the CPU (anything else as it is). Not ``getattr(value, "data", value)``:
    an ndarray's ``.data`` is its memoryview (a CuPy array's a memory pointer), which is not what was
    meant and fails for datetime64 and timedelta64 ("cannot include dtype 'M' in a buffer")."""
    data = value.data if isinstance(value, Tensor) else value
    return backend.to_device(data, "cpu") if backend.is_gpu_array(data) else data


def check_callable(value: Any, op: str, name: str, signature: str = "") -> Any:
    """``value`` if it is callable (hooks, observers, closures), else a TypeError naming ``op`` and ``name``."""
    if not callable(value):
        expected = f"callable {signature}" if signature else "callable"
        raise TypeError(f"{op}: {name} must be {expected}, got {type(value).__name__}")
    return value


def check_same_device(op: str, *tensors: Tensor | None) -> None:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{op}: all tensors must be on the same device, got {sorted(devices)}")


def int_pair(value: Any, op: str, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as ``(h, w)``, each >= ``minimum``."""
    # the common cases (a layer passes its own int or pair on every call), checked cheaply
    if type(value) is int and value >= minimum:
        return value, value
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
            and min(value) >= minimum):
        return value
    pair = (value, value) if isinstance(value, int | np.integer) else value
    if (not isinstance(pair, tuple | list) or len(pair) != 2
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def padding4(value: Any, op: str) -> tuple[int, int, int, int]:
    """Padding as ``(top, bottom, left, right)`` from an int, ``(ph, pw)`` or 4 ints (top, bottom, left, right)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, tuple | list) and len(value) == 2:
        ph, pw = int_pair(tuple(value), op, "padding", minimum=0)
        return ph, ph, pw, pw
    if (isinstance(value, tuple | list) and len(value) == 4
            and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)):
        if min(value) < 0:
            raise ValueError(f"{op}: padding must be >= 0, got {value!r}")
        return tuple(int(v) for v in value)
    raise TypeError(f"{op}: padding must be an int, (ph, pw), (top, bottom, left, right) or 'same'/'valid', "
                    f"got {value!r}")


def check_float(value: Any, op: str, name: str, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within [low, high]; NaN and infinities are always refused."""
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{op}: {name} must be a finite number, got {value}")
    if (low is not None and number < low) or (high is not None and number > high):
        wanted = f"in [{low}, {high}]" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        raise ValueError(f"{op}: {name} must be {wanted}, got {value}")
    return number


def check_fits(values: Any, dtype: Any, op: str, name: str) -> None:
    """Refuse finite ``values`` that would overflow to infinity in ``dtype`` (e.g. 1e39 in float32)."""
    largest = float(np.max(np.abs(np.asarray(values, dtype=np.float64)), initial=0.0))
    limit = float(np.finfo(dtype).max)
    if largest > limit:
        raise ValueError(f"{op}: {name} must fit the model's {np.dtype(dtype)} (magnitude <= {limit:.3g}), "
                         f"got a magnitude of {largest:.3g}")


def check_bool(value: Any, op: str, name: str) -> bool:
    """``value`` as a bool; ints (``0``, ``1``) and strings are refused, not read as truth values."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_progress(progress: Any, op: str) -> bool | None:
    """A ``progress`` argument: True, False or None (automatic: a bar only for long runs)."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"{op}: progress must be True, False or None (automatic), got {progress!r}")
    return progress


def check_str(value: Any, op: str, name: str, choices: tuple[str, ...]) -> str:
    """``value`` as a string, before the caller looks it up among ``choices`` (a TypeError naming them
    otherwise: an array compared with strings would raise NumPy's own "truth value" error)."""
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name} must be one of {choices}, got {type(value).__name__}")
    return value


def check_int(value: Any, op: str, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (not a bool), ``>= minimum`` when one is given."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_int(value: Any, op: str, name: str) -> int:
    """``value`` as an int >= 1 (sizes, counts, batch sizes); anything else is a ValueError."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_seed(value: Any, op: str, name: str = "seed", generator_ok: bool = False) -> Any:
    """``value`` as a seed for ``np.random.default_rng``: None or an int >= 0 (not a bool), or
    (``generator_ok``) a ``np.random.Generator``, which ``default_rng`` passes through."""
    if value is None or (generator_ok and isinstance(value, np.random.Generator)):
        return value
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        kinds = "an int, a numpy Generator or None" if generator_ok else "an int or None"
        raise TypeError(f"{op}: {name} must be {kinds}, got {value!r}")
    if value < 0:
        raise ValueError(f"{op}: {name} must be an int >= 0 or None, got {value}")
    return int(value)


@functools.cache
def _memory_bytes() -> int:
    """This machine's physical memory (no limit where the OS does not say); asked once (two system calls,
    which every convolution's size check would otherwise make)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return np.iinfo(np.int64).max


def check_array_size(shape: tuple[int, ...], dtype: Any, op: str, name: str = "output") -> None:
    """Refuse an array larger than this machine's memory before asking NumPy for it: a huge stride,
    size or padding should name the op, not fail inside an allocation (MemoryError, "array is too big")."""
    shape = tuple(int(s) for s in shape)
    nbytes, limit = math.prod(shape) * np.dtype(dtype).itemsize, _memory_bytes()
    if nbytes > limit:
        gib = nbytes / 2**30 if nbytes < 2**1000 else math.inf  # past ~1e308 a float division overflows
        raise ValueError(f"{op}: the {name} would have shape {shape} ({gib:.3g} GiB), more than this "
                         f"machine's memory ({limit / 2**30:.3g} GiB)")


def check_count(value: Any, op: str, name: str, minimum: int = 1) -> int:
    """``value`` as an int count of steps, samples or iterations: ``>= minimum`` and at most
    ``sys.maxsize`` (no range, loop or progress bar can be longer: tqdm raised OverflowError)."""
    value = check_int(value, op, name, minimum)
    if value > sys.maxsize:
        raise ValueError(f"{op}: {name} must be at most {sys.maxsize}, got {value}")
    return value
