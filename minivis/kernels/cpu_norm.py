"""The per-channel affine map of an eval-mode batch norm, ``y[n, c] = x[n, c] * scale[c] + shift[c]``.

NumPy needs two passes over x (and a temporary) on one thread; this kernel makes one pass on
all threads, a plane per iteration. ``naive_channel_affine`` is its plain-NumPy twin.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _channel_affine(x, scale, shift, out):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in numba.prange(n_img * channels):
        c = plane % channels
        src, dst, a, b = x[plane // channels, c], out[plane // channels, c], scale[c], shift[c]
        for t in range(src.shape[0]):
            dst[t] = src[t] * a + b


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x: (N, C, H, W) or (N, C); scale, shift: (C,) in x's dtype -> ``x * scale + shift`` per channel."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    planes = x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))  # explicit: -1 fails on N = 0
    _channel_affine(planes, np.ascontiguousarray(scale, dtype=x.dtype).reshape(-1),
                    np.ascontiguousarray(shift, dtype=x.dtype).reshape(-1), out.reshape(planes.shape))
    return out


def naive_channel_affine(x, scale, shift):
    """Plain-NumPy twin of ``channel_affine``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x * scale.reshape(shape) + shift.reshape(shape)).astype(x.dtype, copy=False)
