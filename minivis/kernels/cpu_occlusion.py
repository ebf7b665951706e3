"""The splice kernel of incremental occlusion (``minivis.vis.attribution.occlusion_incremental``).

Each occluded copy of an image changes only a small region of each layer's map; the next layer
reads a window of the *patched* map: the cached clean map with the region spliced in, and the
layer's pad value outside the map. ``gather`` reads those windows for a whole batch of copies
in one pass (Numba, a thread per (copy, channel)); ``naive_gather`` right above it is its
plain-array twin (NumPy or CuPy), which the tests compare it with and which the GPU runs
(``gpu_occlusion``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from minivis import backend


def naive_gather(cache: Any, img: Any, region: Any, ry0: Any, rx0: Any, wy0: Any, wx0: Any,
                 wh: int, ww: int, pad: float) -> Any:
    """Windows of the patched maps, in plain (NumPy or CuPy) array code.

    cache: (N, C, H, W) clean activations; region: (B, C, Rh, Rw) the changed values of item b,
    at rows [ry0[b], ry0[b] + Rh) and columns [rx0[b], rx0[b] + Rw) of image img[b]'s map.
    Returns (B, C, wh, ww): the map of item b (cache with its region spliced in) read on the
    window starting at (wy0[b], wx0[b]), with ``pad`` outside the map.
    """
    xp = backend.xp(cache)
    n_items, channels, rh, rw = region.shape
    h, w = cache.shape[2:]
    ys = wy0[:, None] + xp.arange(wh)  # (B, wh) map rows of each window
    xs = wx0[:, None] + xp.arange(ww)
    c = xp.arange(channels)[None, :, None, None]
    in_map = (((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :])[:, None]
    out = cache[img[:, None, None, None], c, xp.clip(ys, 0, h - 1)[:, None, :, None],
                xp.clip(xs, 0, w - 1)[:, None, None, :]]
    out = xp.where(in_map, out, xp.asarray(pad, dtype=cache.dtype))
    ry, rx = ys - ry0[:, None], xs - rx0[:, None]
    in_region = (((ry >= 0) & (ry < rh))[:, :, None] & ((rx >= 0) & (rx < rw))[:, None, :])[:, None]
    patched = region[xp.arange(n_items)[:, None, None, None], c, xp.clip(ry, 0, rh - 1)[:, None, :, None],
                     xp.clip(rx, 0, rw - 1)[:, None, None, :]]
    return xp.where(in_region, patched, out)


@numba.njit(inline="always")
def _span(lo, hi, size):
    """The window columns ``[lo, hi)`` clipped to ``[0, size)``, as (start, stop) with start <= stop."""
    start = min(max(lo, 0), size)
    return start, max(min(hi, size), start)


@numba.njit(parallel=True, cache=True)
def _gather_kernel(cache, img, region, ry0, rx0, wy0, wx0, pad, out):  # pragma: no cover (compiled)
    """Each window row in up to five runs: pad, the cached row, pad, then the region's row laid over
    the cached one. Every run is a contiguous copy or fill with unsigned indices (a signed index
    that LLVM cannot prove non-negative keeps a loop scalar: see ``cpu_pool``)."""
    u = np.uint64
    n_items, channels, wh, ww = out.shape
    h, w = cache.shape[2], cache.shape[3]
    rh, rw = region.shape[2], region.shape[3]
    for bc in numba.prange(n_items * channels):
        b, c = bc // channels, bc % channels
        n, x0 = img[b], wx0[b]
        m0, m1 = _span(-x0, w - x0, ww)  # window columns inside the map
        r0, r1 = _span(rx0[b] - x0, rx0[b] + rw - x0, ww)  # window columns inside the region
        for i in range(wh):
            y, ry = wy0[b] + i, wy0[b] + i - ry0[b]
            if y < 0 or y >= h:
                for j in range(ww):
                    out[b, c, i, j] = pad
                continue
            for j in range(m0):
                out[b, c, i, j] = pad
            src, dst = u(m0 + x0), u(m0)
            for t in range(u(m1 - m0)):
                out[b, c, i, dst + t] = cache[n, c, y, src + t]
            for j in range(m1, ww):
                out[b, c, i, j] = pad
            if 0 <= ry < rh:
                src, dst = u(r0 + x0 - rx0[b]), u(r0)
                for t in range(u(r1 - r0)):
                    out[b, c, i, dst + t] = region[b, c, ry, src + t]


def gather(cache: np.ndarray, img: Any, region: np.ndarray, ry0: Any, rx0: Any, wy0: Any, wx0: Any, wh: int,
           ww: int, pad: float = 0.0) -> np.ndarray:
    """``naive_gather`` as one Numba pass with no temporaries (NumPy arrays; the GPU runs
    ``gpu_occlusion.gather``)."""
    out = np.empty((region.shape[0], cache.shape[1], wh, ww), dtype=cache.dtype)
    ints = [np.ascontiguousarray(a, dtype=np.int64) for a in (img, ry0, rx0, wy0, wx0)]
    _gather_kernel(np.ascontiguousarray(cache), ints[0], np.ascontiguousarray(region, dtype=cache.dtype),
                   *ints[1:], cache.dtype.type(pad), out)
    return out
