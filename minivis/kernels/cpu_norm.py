"""Per-plane normalisation kernels, a plane (one image's channel) per iteration on all threads
(one thread for small arrays: ``cpu_threads.launch``):

* ``channel_affine``: the per-channel affine map of an eval-mode batch norm,
  ``y[n, c] = x[n, c] * scale[c] + shift[c]``; NumPy needs two passes and a temporary on one thread.
  Without a shift it is the same layer's input gradient, ``g[n, c] * scale[c]``.
* ``affine_clip`` and ``affine_clip_backward``: that map followed by a rectifier (ReLU, ReLU6) in one
  pass each way, ``y = clip(x * scale + shift, low, high)`` and ``g * f'(y) * scale`` under the
  backward rule in force; two passes and an intermediate array fewer than the two ops apart
  (``functional/norm.py``, ``batch_norm_relu``). ``affine_clip_band`` applies the forward map in place
  to a band of a convolution's output while it is in cache (``F.conv2d_bn_relu``).
* ``instance_standardize``: instance norm's ``xhat = (x - mean) / sqrt(var + eps)`` and its affine
  map ``gamma * xhat + beta`` per plane, the statistics accumulated in float64 by two passes (mean,
  then the centred sum of squares: no cancellation), then one pass writing both; NumPy makes seven
  passes and five temporaries.

``naive_*`` are their plain-NumPy twins.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from minivis.kernels import cpu_threads, cpu_workspace
from minivis.kernels.cpu_activation import _clip_one, _region_one, _rule_one


@numba.njit(inline="always")
def _affine_plane(src, dst, a, b, has_shift):
    if has_shift:
        for t in range(src.shape[0]):
            dst[t] = src[t] * a + b
    else:  # no "+ 0": it would turn -0.0 into +0.0
        for t in range(src.shape[0]):
            dst[t] = src[t] * a


@numba.njit(parallel=True, cache=True)
def _channel_affine(x, scale, shift, has_shift, out):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_plane(x[n, c], out[n, c], scale[c], shift[c], has_shift)


@numba.njit(cache=True)
def _channel_affine_serial(x, scale, shift, has_shift, out):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_plane(x[n, c], out[n, c], scale[c], shift[c], has_shift)


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) contiguous -> its (N, C, H*W) view (explicit sizes: -1 fails on N = 0)."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))  # math.prod: np.prod costs ~8 us


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """x: (N, C, H, W) or (N, C); scale, shift: (C,) in x's dtype -> ``x * scale + shift`` per channel
    (``x * scale`` when shift is None)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    planes = _planes(x)
    scale = np.ascontiguousarray(scale, dtype=x.dtype).reshape(-1)
    cpu_threads.launch(_channel_affine, _channel_affine_serial, x.size, planes, scale,
                       scale if shift is None else np.ascontiguousarray(shift, dtype=x.dtype).reshape(-1),
                       shift is not None, out.reshape(planes.shape))
    return out


@numba.njit(inline="always")
def _affine_clip_plane(src, dst, region, a, b, low, high, has_region):
    for t in range(src.shape[0]):
        v = src[t] * a + b  # rounded to x's dtype first, as the two ops apart round it
        dst[t] = _clip_one(v, low, high)
        if has_region:
            region[t] = _region_one(dst[t], low, high)


@numba.njit(parallel=True, cache=True)
def _affine_clip(x, scale, shift, low, high, out, region, has_region):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_clip_plane(x[n, c], out[n, c], region[n, c], scale[c], shift[c], low, high, has_region)


@numba.njit(cache=True)
def _affine_clip_serial(x, scale, shift, low, high, out, region, has_region):
    n_img, channels = x.shape[0], x.shape[1]
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _affine_clip_plane(x[n, c], out[n, c], region[n, c], scale[c], shift[c], low, high, has_region)


def affine_clip(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, low: float, high: float,
                region: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``clip(x * scale + shift, low, high)`` per channel in one pass; x: (N, C, H, W) or (N, C).

    With ``region=True`` the same pass also writes the int8 region code of the result
    (``cpu_activation.relu_region``: what a lean graph keeps instead of it). Returns (y, region or None).
    """
    x = np.ascontiguousarray(x)
    out = cpu_workspace.empty(x.shape, x.dtype)
    codes = np.empty(x.shape if region else (x.shape[0], x.shape[1]) + (0,) * (x.ndim - 2), dtype=np.int8)
    cpu_threads.launch(_affine_clip, _affine_clip_serial, x.size, _planes(x),
                       np.ascontiguousarray(scale, dtype=x.dtype).reshape(-1),
                       np.ascontiguousarray(shift, dtype=x.dtype).reshape(-1), x.dtype.type(low), x.dtype.type(high),
                       _planes(out), _planes(codes), region)
    return out, (codes if region else None)


@numba.njit(cache=True, nogil=True)
def _affine_clip_band(out, n0, n1, r0, r1, scale, shift, low, high):
    width = out.shape[3]
    for n in range(n0, n1):
        for c in range(out.shape[1]):
            # rows r0..r1 of a plane lie back to back; a slice of the C-contiguous plane vectorises, a
            # strided view of the band (strides unknown to Numba) did not (benchmarks/README.md, conv_bn_act)
            run = out[n, c].reshape(-1)[r0 * width:r1 * width]
            for t in range(run.shape[0]):
                run[t] = _clip_one(run[t] * scale[c] + shift[c], low, high)


def affine_clip_band(out: np.ndarray, images: slice, r0: int, r1: int, scale: np.ndarray, shift: np.ndarray,
                     low: float, high: float) -> None:
    """``out[images, :, r0:r1] = clip(. * scale + shift, low, high)`` per channel, in place, on one thread
    (no GIL held). out: C-contiguous (N, C, H, W), a convolution's output; the band is one of
    ``conv_plan``'s tiles, finished while it is in cache, with ``affine_clip``'s rounding.
    """
    _affine_clip_band(out, images.start, images.stop, r0, r1, np.ascontiguousarray(scale, dtype=out.dtype).reshape(-1),
                      np.ascontiguousarray(shift, dtype=out.dtype).reshape(-1), out.dtype.type(low),
                      out.dtype.type(high))


@numba.njit(inline="always")
def _rule_scale_plane(g, y, dst, a, low, high, rule_code):
    for t in range(g.shape[0]):
        dst[t] = _rule_one(g[t], y[t], low, high, 0.0, rule_code) * a


@numba.njit(parallel=True, cache=True)
def _affine_clip_backward(g, y, scale, low, high, rule_code, out):
    n_img, channels = g.shape[0], g.shape[1]
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _rule_scale_plane(g[n, c], y[n, c], out[n, c], scale[c], low, high, rule_code)


@numba.njit(cache=True)
def _affine_clip_backward_serial(g, y, scale, low, high, rule_code, out):
    n_img, channels = g.shape[0], g.shape[1]
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _rule_scale_plane(g[n, c], y[n, c], out[n, c], scale[c], low, high, rule_code)


def affine_clip_backward(g: np.ndarray, y: np.ndarray, scale: np.ndarray, low: float, high: float,
                         rule_code: int) -> np.ndarray:
    """``relu_rule_backward(g, y, low, high, 0, rule_code) * scale`` per channel in one pass: the input
    gradient of ``affine_clip`` under a ReLU rule. y: its output, or its region code with
    ``(low, high) = (0.5, 1.5)`` (as ``relu_rule_backward`` reads it)."""
    g = np.ascontiguousarray(g)
    out = cpu_workspace.empty(g.shape, g.dtype)
    cpu_threads.launch(_affine_clip_backward, _affine_clip_backward_serial, g.size, _planes(g),
                       _planes(np.ascontiguousarray(y)), np.ascontiguousarray(scale, dtype=g.dtype).reshape(-1),
                       low, high, rule_code, _planes(out))
    return out


def naive_affine_clip(x, scale, shift, low, high):
    """Plain-NumPy twin of ``affine_clip`` (without the region code)."""
    return np.clip(naive_channel_affine(x, scale, shift), low, high)


def naive_channel_affine(x, scale, shift):
    """Plain-NumPy twin of ``channel_affine``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = x * scale.reshape(shape)
    return (out if shift is None else out + shift.reshape(shape)).astype(x.dtype, copy=False)


@numba.njit(inline="always")
def _sum4(src, mean, squared):
    """sum(src) or sum((src - mean)^2) in float64, four running sums (a fixed order: the same bits
    on every call) so the adds need not wait for each other."""
    s0 = s1 = s2 = s3 = 0.0
    m4 = src.shape[0] // 4 * 4
    for t in range(0, m4, 4):
        a, b, c, d = src[t] - mean, src[t + 1] - mean, src[t + 2] - mean, src[t + 3] - mean
        if squared:
            a, b, c, d = a * a, b * b, c * c, d * d
        s0 += a
        s1 += b
        s2 += c
        s3 += d
    for t in range(m4, src.shape[0]):
        v = src[t] - mean
        s0 += v * v if squared else v
    return (s0 + s1) + (s2 + s3)


@numba.njit(inline="always")
def _standardize_plane(src, dst, out, eps, gamma, beta):
    m = src.shape[0]
    mean = _sum4(src, 0.0, False) / m
    spread = _sum4(src, mean, True) / m + eps
    inv_std = 1.0 / np.sqrt(spread) if spread != 0.0 else np.inf  # a constant plane under eps 0: the caller refuses it
    for t in range(m):
        dst[t] = (src[t] - mean) * inv_std
        h = dst[t]  # xhat as stored: out = gamma * xhat + beta in x's dtype, as the array code computes it
        out[t] = h * gamma + beta
    return inv_std


@numba.njit(parallel=True, cache=True)
def _instance_standardize(x, eps, gamma, beta, xhat, out, inv_std):
    for plane in numba.prange(x.shape[0]):
        inv_std[plane] = _standardize_plane(x[plane], xhat[plane], out[plane], eps, gamma[plane], beta[plane])


@numba.njit(cache=True)
def _instance_standardize_serial(x, eps, gamma, beta, xhat, out, inv_std):
    for plane in range(x.shape[0]):
        inv_std[plane] = _standardize_plane(x[plane], xhat[plane], out[plane], eps, gamma[plane], beta[plane])


INSTANCE_MIN_WORK = 1 << 18  # elements: three passes per plane, so the threads pay from smaller arrays than
# ``launch``'s single-pass threshold (a style network's 16 x 256 x 256 maps: 1M elements)


def instance_standardize(x: np.ndarray, eps: float, gamma: np.ndarray | None = None,
                         beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, C, H, W) -> (inv_std (N, C, 1, 1), xhat, out = gamma * xhat + beta), per (n, c) plane.

    gamma, beta: (N, C) (a row per image: conditional instance norm) or None (1 and 0). All in x's dtype.
    """
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    planes = x.reshape(n * c, math.prod(x.shape[2:]))
    g = np.ones(n * c, x.dtype) if gamma is None else np.ascontiguousarray(gamma, dtype=x.dtype).reshape(n * c)
    b = np.zeros(n * c, x.dtype) if beta is None else np.ascontiguousarray(beta, dtype=x.dtype).reshape(n * c)
    xhat, out = np.empty_like(planes), np.empty_like(planes)
    inv_std = np.empty(n * c, dtype=np.float64)
    kernel = _instance_standardize if x.size >= INSTANCE_MIN_WORK and n * c > 1 else _instance_standardize_serial
    kernel(planes, float(eps), g, b, xhat, out, inv_std)
    return inv_std.astype(x.dtype).reshape(n, c, 1, 1), xhat.reshape(x.shape), out.reshape(x.shape)


def naive_instance_standardize(x, eps, gamma=None, beta=None):
    """Plain-NumPy twin of ``instance_standardize`` (statistics in float64, as the kernel)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(2, 3), keepdims=True)
    inv_std = 1.0 / np.sqrt(((x64 - mean) ** 2).mean(axis=(2, 3), keepdims=True) + eps)
    xhat = ((x64 - mean) * inv_std).astype(x.dtype)
    g = np.ones(1, x.dtype) if gamma is None else np.asarray(gamma, x.dtype)[:, :, None, None]
    b = np.zeros(1, x.dtype) if beta is None else np.asarray(beta, x.dtype)[:, :, None, None]
    return inv_std.astype(x.dtype), xhat, xhat * g + b
