"""Elementwise kernels of the ReLU family: the clip forward, the region code a lean graph saves, and
the fused backward rules (see ``minivis.rules``). They run on all threads (NumPy's ``clip`` runs on
one), except on arrays too small to pay for waking them, where a serial twin runs
(``cpu_threads.launch``).

The plain reference of the backward rules is ``relu_backward_reference`` in
``minivis/functional/activation.py``; ``tests/kernels/test_cpu_activation.py`` checks this kernel
equals it, bit for bit."""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads, cpu_workspace
from minivis.rules import DECONVNET, GUIDED


@numba.njit(inline="always")
def _clip_one(v, low, high):
    """min(max(v, low), high) for low <= high; NaN fails both tests: it propagates. Two selects one
    after the other, not one nested: in a loop with index arithmetic (a crop's rows) LLVM left the
    nested form scalar, a branch per value, 2.5-5x slower on random signs (benchmarks/README.md,
    "Convolution planning", nineteenth session); flat loops vectorise either way."""
    v = low if v < low else v
    return high if v > high else v


@numba.njit(parallel=True, cache=True)
def _clip(x, low, high, out):
    for i in numba.prange(x.size):
        out[i] = _clip_one(x[i], low, high)


@numba.njit(cache=True)
def _clip_serial(x, low, high, out):
    for i in range(x.size):
        out[i] = _clip_one(x[i], low, high)


# In place, the loop above would read and write one array through two names: LLVM's runtime overlap
# check then takes the scalar loop, whose data-dependent branches ran 18x slower on random values.
@numba.njit(parallel=True, cache=True)
def _clip_inplace(x, low, high):
    for i in numba.prange(x.size):
        x[i] = _clip_one(x[i], low, high)


@numba.njit(cache=True)
def _clip_inplace_serial(x, low, high):
    for i in range(x.size):
        x[i] = _clip_one(x[i], low, high)


def clip_(x: np.ndarray, low: float, high: float) -> None:
    """``clip`` in place; x: a C-contiguous array."""
    if not x.flags.c_contiguous:
        raise ValueError(f"clip_: x must be C-contiguous, got strides {x.strides} for shape {x.shape}")
    flat = x.reshape(-1)
    cpu_threads.launch(_clip_inplace, _clip_inplace_serial, x.size, flat, x.dtype.type(low), x.dtype.type(high))


def clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``min(max(x, low), high)`` elementwise in x's dtype and shape (``np.clip``; NaN stays NaN)."""
    x = np.asarray(x, order="C")
    out = cpu_workspace.empty(x.shape, x.dtype)
    cpu_threads.launch(_clip, _clip_serial, x.size, x.reshape(-1), x.dtype.type(low), x.dtype.type(high),
                       out.reshape(-1))
    return out


@numba.njit(inline="always")
def _region_one(v, low, high):
    return 1 if v > low and v < high else (0 if v <= low else 2)  # NaN fails both tests: 2, like x >= high


@numba.njit(parallel=True, cache=True)
def _relu_region(y, low, high, out):
    for i in numba.prange(y.size):
        out[i] = _region_one(y[i], low, high)


@numba.njit(cache=True)
def _relu_region_serial(y, low, high, out):
    for i in range(y.size):
        out[i] = _region_one(y[i], low, high)


def relu_region(y: np.ndarray, low: float, high: float) -> np.ndarray:
    """Where a ReLU-family op was linear, as int8 in one pass over its output ``y``: 0 where
    ``y <= low`` (clipped low, or the negative slope), 1 where ``low < y < high``, 2 where
    ``y >= high`` or NaN. A lean graph saves this instead of ``y`` (``functional/activation.py``)."""
    y = np.asarray(y, order="C")
    out = np.empty(y.shape, dtype=np.int8)  # kept for the backward pass: not from the pool (cpu_workspace)
    cpu_threads.launch(_relu_region, _relu_region_serial, y.size, y.reshape(-1), y.dtype.type(low),
                       y.dtype.type(high), out.reshape(-1))
    return out


@numba.njit(parallel=True, cache=True)
def _clip_region(x, low, high, out, region):
    for i in numba.prange(x.size):
        v = _clip_one(x[i], low, high)
        out[i] = v
        region[i] = _region_one(v, low, high)


@numba.njit(cache=True)
def _clip_region_serial(x, low, high, out, region):
    for i in range(x.size):
        v = _clip_one(x[i], low, high)
        out[i] = v
        region[i] = _region_one(v, low, high)


def clip_region(x: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """``(clip(x, low, high), relu_region(that))`` in one pass over ``x``: a lean graph's rectifier,
    which needs both (the output goes on, the region code is saved)."""
    x = np.asarray(x, order="C")
    out, region = cpu_workspace.empty(x.shape, x.dtype), np.empty(x.shape, dtype=np.int8)
    low_, high_ = x.dtype.type(low), x.dtype.type(high)
    cpu_threads.launch(_clip_region, _clip_region_serial, x.size, x.reshape(-1), low_, high_, out.reshape(-1),
                       region.reshape(-1))
    return out, region


def naive_relu_region(y, low, high):
    """Plain array twin of ``relu_region`` (NumPy or CuPy: ``gpu_activation`` uses it as it is)."""
    region = (y > low).astype(np.int8)
    region += y >= high
    region[y != y] = 2
    return region


@numba.njit(inline="always")
def _rule_one(gi, xi, low, high, negative_slope, rule_code):
    """One element of ``relu_rule_backward``."""
    if rule_code == DECONVNET:  # deconvnet: rectify the signal going down, ignore the forward input
        return gi if gi > 0 else 0.0
    if xi > low and xi < high:
        slope = 1.0
    elif xi <= low:
        slope = negative_slope
    else:
        slope = 0.0
    if rule_code == GUIDED and not gi > 0:  # guided: also needs a positive signal
        slope = 0.0
    return gi * slope


@numba.njit(parallel=True, cache=True)
def _relu_rule_backward(g, x, low, high, negative_slope, rule_code, out):
    for i in numba.prange(g.size):
        out[i] = _rule_one(g[i], x[i], low, high, negative_slope, rule_code)


@numba.njit(cache=True)
def _relu_rule_backward_serial(g, x, low, high, negative_slope, rule_code, out):
    for i in range(g.size):
        out[i] = _rule_one(g[i], x[i], low, high, negative_slope, rule_code)


def relu_rule_backward(g: np.ndarray, x: np.ndarray, low: float, high: float, negative_slope: float,
                       rule_code: int) -> np.ndarray:
    """``g * f'(x)`` (gradient), ``g * f'(x) * (g > 0)`` (guided) or ``g * (g > 0)`` (deconvnet)
    in one pass over memory, where ``f'(x)`` is 1 on ``low < x < high``, ``negative_slope`` on
    ``x <= low`` and 0 on ``x >= high``. ``rule_code``: ``rules.GRADIENT``, ``GUIDED`` or ``DECONVNET``.
    Equal to ``minivis.functional.activation.relu_backward_reference``. x may also be a lean graph's
    int8 region code (``_relu_family``); the result then has g's dtype."""
    dtype = x.dtype if x.dtype.kind == "f" else np.asarray(g).dtype
    g = np.asarray(g, dtype=dtype, order="C")  # not ascontiguousarray: it would make a 0-d g 1-d
    # The slope in the op's dtype: g * slope then rounds like PyTorch, with or without the JIT.
    negative_slope = dtype.type(negative_slope)
    out = cpu_workspace.empty(g.shape, g.dtype)
    cpu_threads.launch(_relu_rule_backward, _relu_rule_backward_serial, g.size, g.reshape(-1),
                       np.asarray(x, order="C").reshape(-1), low, high, negative_slope, rule_code, out.reshape(-1))
    return out

