"""The per-channel affine map of an eval-mode batch norm, ``y[n, c] = x[n, c] * scale[c] + shift[c]``.

NumPy needs two passes over x (and a temporary) on one thread; this kernel makes one pass on
all threads, a plane per iteration (one thread for small arrays: ``cpu_threads.launch``).
``naive_channel_affine`` is its plain-NumPy twin.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads


@numba.njit(inline="always")
def _affine_plane(src, dst, a, b):
    for t in range(src.shape[0]):
        dst[t] = src[t] * a + b


@numba.njit(parallel=True, cache=True)
def _channel_affine(x, scale, shift, out):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_plane(x[n, c], out[n, c], scale[c], shift[c])


@numba.njit(cache=True)
def _channel_affine_serial(x, scale, shift, out):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_plane(x[n, c], out[n, c], scale[c], shift[c])


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x: (N, C, H, W) or (N, C); scale, shift: (C,) in x's dtype -> ``x * scale + shift`` per channel."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    planes = x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))  # explicit: -1 fails on N = 0
    cpu_threads.launch(_channel_affine, _channel_affine_serial, x.size, planes,
                       np.ascontiguousarray(scale, dtype=x.dtype).reshape(-1),
                       np.ascontiguousarray(shift, dtype=x.dtype).reshape(-1), out.reshape(planes.shape))
    return out


def naive_channel_affine(x, scale, shift):
    """Plain-NumPy twin of ``channel_affine``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x * scale.reshape(shape) + shift.reshape(shape)).astype(x.dtype, copy=False)
