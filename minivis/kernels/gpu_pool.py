"""GPU pooling kernels (Numba-CUDA): the same functions as ``cpu_pool``, on CuPy arrays.

Every kernel works on planes ``(P, H, W)`` with ``P = N*C``, like ``cpu_pool``, and one GPU
thread computes one output element (see ``gpu_launch`` for the grid-stride loops):

* ``max_pool2d``: one thread per output pixel, the same window walk as ``cpu_pool`` (first
  maximum in row-major order wins, NaN wins and propagates, padding never wins), so values and
  switches are identical to the CPU's.
* ``gather``: one thread per output value, ``out[p, k] = source[p, switches[p, k]]``.
* ``unpool``: one thread per *input* value, ``cuda.atomic.add`` into its switch. The switches are
  arbitrary (max_unpool2d accepts any), so no thread can know which values land on its pixel, and
  a gather is impossible. Where windows do not overlap no two values share a switch and the
  result is exact; where they do (kernel 3, stride 2), up to four values meet in one pixel and
  the order of their float additions may differ from run to run (last-bit differences only).
* ``box_mean`` / ``box_mean_backward`` (average and adaptive average pooling): one thread per
  output pixel, and, for the backward, one thread per *input* pixel that gathers ``g / divisor``
  from the bins holding it. Bins are sorted (starts and ends never decrease), so the bins holding
  row ``h`` are a contiguous range (found once per geometry with ``searchsorted``). Same loops
  and dtypes as ``cpu_pool``, so the results are bit-identical to the CPU's.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import cuda

from minivis import backend
from minivis.kernels.gpu_launch import launch


# ----------------------------------------------------------------------------- max-pool
@cuda.jit
def _max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches):
    n_planes, height, width = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        j = idx % out_w
        i = (idx // out_w) % out_h
        p = idx // (out_w * out_h)
        h0 = i * sh - ph
        h1 = min(h0 + (kh - 1) * dh + 1, height)
        while h0 < 0:  # skip the taps that fall in the top padding (-inf never wins)
            h0 += dh
        w0 = j * sw - pw
        w1 = min(w0 + (kw - 1) * dw + 1, width)
        while w0 < 0:
            w0 += dw
        best = x[p, h0, w0]
        best_index = h0 * width + w0
        for h in range(h0, h1, dh):  # row-major window order; strict > keeps the first max
            for w in range(w0, w1, dw):
                v = x[p, h, w]
                if v > best or v != v:  # NaN wins and propagates, as in PyTorch
                    best = v
                    best_index = h * width + w
        out[p, i, j] = best
        switches[p, i, j] = best_index


def max_pool2d(x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int], out_hw: tuple[int, int]) -> tuple[Any, Any]:
    """Max over each (dilated) window, and the flat index ``h * W + w`` of the first maximum.

    x: (P, H, W) -> out: (P, Ho, Wo) of x's dtype, switches: (P, Ho, Wo) int64 (see ``cpu_pool.max_pool2d``).
    """
    xp = backend.xp(x)
    x = xp.ascontiguousarray(x)
    out = xp.empty((x.shape[0], *out_hw), dtype=x.dtype)
    switches = xp.empty((x.shape[0], *out_hw), dtype=np.int64)
    launch(_max_pool2d, out.size, x, x, *kernel, *stride, *padding, *dilation, out, switches)
    return out, switches


# ----------------------------------------------------------------------------- unpool / gather
@cuda.jit
def _unpool(values, switches, out):
    n_values = values.shape[1]
    for idx in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        p, k = idx // n_values, idx % n_values
        cuda.atomic.add(out, (p, switches[p, k]), values[p, k])


def _flat_planes(xp: Any, a: Any, dtype: Any = None) -> Any:
    """(P, H, W) -> contiguous (P, H*W) (``reshape(P, -1)`` fails when P = 0: -1 is then undefined)."""
    return xp.ascontiguousarray(a, dtype=dtype).reshape(a.shape[0], a.shape[1] * a.shape[2])


def unpool(values: Any, switches: Any, out_hw: tuple[int, int]) -> Any:
    """Scatter-add each value to its switch: ``out[p, s] = sum_{k: switches[p, k] = s} values[p, k]``.

    values, switches: (P, Ho, Wo) -> out: (P, H, W) with ``(H, W) = out_hw``; the caller
    guarantees ``0 <= switches < H * W``.
    """
    xp = backend.xp(values)
    n_planes = values.shape[0]
    out = xp.zeros((n_planes, out_hw[0] * out_hw[1]), dtype=values.dtype)
    flat_values = _flat_planes(xp, values)
    launch(_unpool, flat_values.size, values, flat_values, _flat_planes(xp, switches, np.int64), out)
    return out.reshape(n_planes, *out_hw)


@cuda.jit
def _gather(source, switches, out):
    n_values = out.shape[1]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        p, k = idx // n_values, idx % n_values
        out[p, k] = source[p, switches[p, k]]


def gather(source: Any, switches: Any) -> Any:
    """``out[p, i, j] = source[p].flat[switches[p, i, j]]``: the adjoint of ``unpool``.

    source: (P, H, W), switches: (P, Ho, Wo) -> out: (P, Ho, Wo).
    """
    xp = backend.xp(source)
    n_planes = source.shape[0]
    out = xp.empty(switches.shape, dtype=source.dtype)
    launch(_gather, out.size, source, _flat_planes(xp, source), _flat_planes(xp, switches, np.int64),
           out.reshape(n_planes, out.shape[1] * out.shape[2]))
    return out


# ----------------------------------------------------------------------------- box mean (avg pools)
@cuda.jit
def _box_mean(x, row_start, row_end, col_start, col_end, row_div, col_div, out):
    out_h, out_w = out.shape[1], out.shape[2]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        j = idx % out_w
        i = (idx // out_w) % out_h
        p = idx // (out_w * out_h)
        total = 0.0  # accumulate in float64 whatever the dtype (as cpu_pool)
        for h in range(row_start[i], row_end[i]):
            for w in range(col_start[j], col_end[j]):
                # float(): float64 when compiled and under the simulator alike (NumPy 2 would keep
                # Python float + float32 in float32 there)
                total += float(x[p, h, w])
        out[p, i, j] = total / (row_div[i] * col_div[j])


def _device_bins(like: Any, bins: tuple[Any, Any, Any], size: int) -> tuple[Any, ...]:
    """``(start, end, divisor, first, last)`` on ``like``'s device, where bins ``first[h]`` to
    ``last[h] - 1`` are the ones holding pixel ``h`` (bins are sorted: starts and ends never decrease).

    The op computes the bins on the host (a few dozen integers). On the GPU they are uploaded once
    per geometry and device and then reused, so a training loop or a benchmark makes no
    host-to-device copy per call.
    """
    if not backend.is_gpu_array(like):  # simulator: the kernels read host arrays
        return _bin_arrays(backend.xp(like), bins, size)
    xp = backend.xp(like)
    return _uploaded_bins(xp.cuda.Device().id, tuple(tuple(int(v) for v in b) for b in bins), size)


def _bin_arrays(xp: Any, bins: tuple[Any, Any, Any], size: int) -> tuple[Any, ...]:
    start, end, divisor = (xp.asarray(b, dtype=np.int64) for b in bins)
    pixels = xp.arange(size, dtype=np.int64)
    return (start, end, divisor, xp.searchsorted(end, pixels, side="right"),
            xp.searchsorted(start, pixels, side="right"))


@functools.lru_cache(maxsize=256)
def _uploaded_bins(device_id: int, bins: tuple[tuple[int, ...], ...], size: int) -> tuple[Any, ...]:
    import cupy  # noqa: PLC0415 (only reached with CuPy arrays)

    with cupy.cuda.Device(device_id):
        return _bin_arrays(cupy, bins, size)


def box_mean(x: Any, rows: tuple[Any, Any, Any], cols: tuple[Any, Any, Any]) -> Any:
    """``out[p, i, j] = sum x[p, rs[i]:re[i], cs[j]:ce[j]] / (rdiv[i] * cdiv[j])``: x (P, H, W) -> (P, Ho, Wo)."""
    xp = backend.xp(x)
    x = xp.ascontiguousarray(x)
    (rs, re, rd, _, _), (cs, ce, cd, _, _) = _device_bins(x, rows, x.shape[1]), _device_bins(x, cols, x.shape[2])
    out = xp.empty((x.shape[0], len(rows[0]), len(cols[0])), dtype=x.dtype)
    launch(_box_mean, out.size, x, x, rs, re, cs, ce, rd, cd, out)
    return out


@cuda.jit
def _box_mean_backward(g, row_first, row_last, col_first, col_last, row_div, col_div, out):
    height, width = out.shape[1], out.shape[2]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        w = idx % width
        h = (idx // width) % height
        p = idx // (width * height)
        acc = out.dtype.type(0)
        for i in range(row_first[h], row_last[h]):  # the bins that hold row h ...
            for j in range(col_first[w], col_last[w]):  # ... and column w
                # the CPU kernel adds a float64 share into the array each time: round the same way
                acc = out.dtype.type(acc + g[p, i, j] / (row_div[i] * col_div[j]))
        out[p, h, w] = acc


def box_mean_backward(g: Any, rows: tuple[Any, Any, Any], cols: tuple[Any, Any, Any],
                      in_hw: tuple[int, int]) -> Any:
    """Adjoint of ``box_mean``: every input pixel receives ``g / divisor`` from each bin holding it.

    g: (P, Ho, Wo) -> (P, H, W) with ``(H, W) = in_hw``.
    """
    xp = backend.xp(g)
    g = xp.ascontiguousarray(g)
    _, _, rd, rf, rl = _device_bins(g, rows, in_hw[0])
    _, _, cd, cf, cl = _device_bins(g, cols, in_hw[1])
    out = xp.empty((g.shape[0], *in_hw), dtype=g.dtype)
    launch(_box_mean_backward, out.size, g, g, rf, rl, cf, cl, rd, cd, out)
    return out
