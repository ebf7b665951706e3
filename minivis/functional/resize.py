"""Resizing: ``interpolate`` (nearest, bilinear) and ``pad`` (constant, reflect, replicate), with PyTorch's
semantics. Shapes: x is (N, C, H, W) for ``interpolate``; ``pad`` works on the last one or two dims.

Both interpolation modes are *linear maps applied separately along H and along W*:

    y[n, c] = A_h @ x[n, c] @ A_w^T        so the backward is        dx[n, c] = A_h^T @ g[n, c] @ A_w

with ``A_h`` an (H_out, H_in) matrix whose row ``i`` holds the weights that output row ``i`` takes
from the input rows (one 1 for nearest, two weights summing to 1 for bilinear), and ``A_w`` likewise.
The matrices are tiny (e.g. 224 x 7 when Grad-CAM upsamples a 7x7 map), so the backward, a
scatter-add of every output pixel's weights, becomes two exact, fast BLAS products.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.validate import check_array_size, check_float, check_str, check_tensor, int_pair

INTERPOLATE_MODES = ("nearest", "bilinear")
PAD_MODES = ("constant", "reflect", "replicate")


# ----------------------------------------------------------------------------- interpolate
def _scale_pair(value: Any) -> tuple[float, float]:
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if (len(pair) != 2 or not all(isinstance(v, int | float | np.integer | np.floating)
                                  and not isinstance(v, bool) for v in pair)):
        raise TypeError(f"interpolate: scale_factor must be a number or a pair of numbers, got {value!r}")
    if min(pair) <= 0 or not all(math.isfinite(v) for v in pair):
        raise ValueError(f"interpolate: scale_factor must be positive and finite, got {value!r}")
    return float(pair[0]), float(pair[1])


def nearest_indices(n_in: int, n_out: int, scale_factor: float | None = None) -> np.ndarray:
    """Source index of each output position, PyTorch's legacy "nearest": ``floor(dst * scale)``.

    ``scale`` is ``1 / scale_factor`` when a scale factor was given (PyTorch uses it as is) and
    ``n_in / n_out`` otherwise. The product is rounded in float32 for every input dtype, exactly as
    PyTorch's ``nearest_idx`` does, so the same pixels are picked even where ``dst * scale`` lands on
    a pixel boundary (e.g. 65 -> 55: output 11 reads input 12, not 13); exact 1x and 2x upsampling
    are special-cased as there.
    """
    dst = np.arange(n_out)
    if n_out == n_in:
        return dst
    if n_out == 2 * n_in:
        return dst // 2
    scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(n_in) / np.float32(n_out)
    src = np.floor(dst.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, n_in - 1)


def bilinear_weights(n_in: int, n_out: int, align_corners: bool,
                     scale_factor: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output position: the two source indices ``i0, i1`` and the weight ``w1`` of ``i1``.

    The source coordinate of output ``d`` is ``d * (n_in - 1) / (n_out - 1)`` with corners aligned,
    else ``(d + 0.5) * scale - 0.5`` (half-pixel centres, clamped at 0), with ``scale`` as in
    ``nearest_indices``. The output is ``(1 - w1) * x[i0] + w1 * x[i1]``.
    """
    dst = np.arange(n_out, dtype=np.float64)
    if n_out == n_in:  # PyTorch copies here; the formulas agree except for rounding
        return dst.astype(np.int64), dst.astype(np.int64), np.zeros(n_out)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        scale = 1.0 / scale_factor if scale_factor else n_in / n_out
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0, 0.0, 1.0)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, w1


def interpolation_matrix(n_in: int, n_out: int, mode: str, align_corners: bool = False,
                         scale_factor: float | None = None, dtype: Any = np.float32) -> np.ndarray:
    """The (n_out, n_in) matrix ``A`` (in ``dtype``) with ``y = A @ x`` along one axis."""
    rows = np.arange(n_out)
    matrix = np.zeros((n_out, n_in))
    if mode == "nearest":
        matrix[rows, nearest_indices(n_in, n_out, scale_factor)] = 1.0
    else:
        i0, i1, w1 = bilinear_weights(n_in, n_out, align_corners, scale_factor)
        np.add.at(matrix, (rows, i0), 1.0 - w1)  # add.at: i0 == i1 at the last row/column
        np.add.at(matrix, (rows, i1), w1)
    return matrix.astype(dtype)


def interpolate(x: Tensor, size: int | tuple[int, int] | None = None,
                scale_factor: float | tuple[float, float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None) -> Tensor:
    """Resize the spatial dims of x: (N, C, H, W) -> (N, C, H_out, W_out), like ``torch.nn.functional.interpolate``.

    Give exactly one of ``size`` (``H_out, W_out``) and ``scale_factor`` (then ``H_out = floor(H * s)``,
    and ``s`` itself sets the sampling positions, as in PyTorch). ``mode`` is ``"nearest"``
    (``src = floor(dst * H / H_out)``) or ``"bilinear"`` (half-pixel centres, or corner-aligned when
    ``align_corners=True``). Forward ``y = A_h x A_w^T``; backward ``dx = A_h^T g A_w``.
    """
    x = check_tensor(x, "interpolate", "input", ndim=4)
    if not isinstance(mode, str) or mode not in INTERPOLATE_MODES:
        raise ValueError(f"interpolate: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"interpolate: align_corners applies only to mode='bilinear', got align_corners="
                         f"{align_corners!r} with mode='nearest'")
    if align_corners is not None and not isinstance(align_corners, bool):
        raise TypeError(f"interpolate: align_corners must be a bool or None, got {align_corners!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor, got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    h_in, w_in = x.shape[2:]
    if h_in == 0 or w_in == 0:
        raise ValueError(f"interpolate: input must have at least one row and one column to resample, "
                         f"got shape {x.shape}")
    if size is not None:
        h_out, w_out = int_pair(size, "interpolate", "size", minimum=1)
        scales: tuple[float | None, float | None] = (None, None)
    else:
        scales = _scale_pair(scale_factor)
        h_out, w_out = math.floor(h_in * scales[0]), math.floor(w_in * scales[1])
        if min(h_out, w_out) < 1:
            raise ValueError(f"interpolate: scale_factor={scale_factor!r} turns input size {(h_in, w_in)} "
                             f"into an empty output {(h_out, w_out)}")
    check_array_size(x.shape[:2] + (h_out, w_out), x.dtype, "interpolate")
    xp = backend.xp(x.data)
    corners = bool(align_corners)
    a_h, a_w = (backend.to_device(interpolation_matrix(n_in, n_out, mode, corners, s, x.dtype),
                                  x.device)
                for n_in, n_out, s in ((h_in, h_out, scales[0]), (w_in, w_out, scales[1])))
    if mode == "nearest":
        # A gather copies the values exactly (a product with the one-hot matrices would turn inf into nan).
        rows = backend.to_device(nearest_indices(h_in, h_out, scales[0]), x.device)
        cols = backend.to_device(nearest_indices(w_in, w_out, scales[1]), x.device)
        out = xp.take(xp.take(x.data, rows, axis=2), cols, axis=3)  # (contiguous, unlike x[:, :, r, c])
    else:
        out = xp.matmul(xp.matmul(a_h, x.data), a_w.T)

    def backward(g):
        return (xp.matmul(xp.matmul(a_h.T, g), a_w),)

    return Tensor.from_op(xp.ascontiguousarray(out), (x,), backward, f"interpolate_{mode}")


# ----------------------------------------------------------------------------- pad
def _pad_widths(pad: Any, ndim: int) -> list[tuple[int, int]]:
    """PyTorch's pad tuple (last dim first: left, right, top, bottom) as NumPy's per-axis widths."""
    if (not isinstance(pad, tuple | list) or len(pad) not in (2, 4)
            or not all(isinstance(p, int | np.integer) and not isinstance(p, bool) for p in pad)):
        raise TypeError(f"pad: pad must be 2 ints (left, right) or 4 ints (left, right, top, bottom), "
                        f"got {pad!r}")
    if min(pad) < 0:
        raise ValueError(f"pad: pad widths must be >= 0, got {pad!r}")
    n_dims = len(pad) // 2
    if ndim < n_dims:
        raise ValueError(f"pad: a {len(pad)}-tuple pads the last {n_dims} dims, but the input has "
                         f"only {ndim}")
    per_dim = [(int(pad[2 * k]), int(pad[2 * k + 1])) for k in range(n_dims)][::-1]  # back to axis order
    return [(0, 0)] * (ndim - n_dims) + per_dim


def _unpad_last_axis(g: Any, n: int, before: int, after: int, mode: str) -> Any:
    """The backward of padding the last axis (from length n): every padded cell's gradient goes
    back to the input cell it copied (reflect, replicate) or nowhere (constant)."""
    grad = g[..., before:before + n].copy()
    if mode == "replicate":
        grad[..., 0] += g[..., :before].sum(axis=-1)
        grad[..., n - 1] += g[..., before + n:].sum(axis=-1)
    elif mode == "reflect":  # left band holds x[before], ..., x[1]; right band x[n-2], ..., x[n-1-after]
        grad[..., 1:before + 1] += g[..., :before][..., ::-1]
        grad[..., n - 1 - after:n - 1] += g[..., before + n:][..., ::-1]
    return grad


def pad(x: Tensor, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad the last dims like ``torch.nn.functional.pad``: ``pad = (left, right)`` pads the last dim,
    ``(left, right, top, bottom)`` the last two (x: (N, C, H, W) -> (N, C, H + top + bottom, W + left + right)).

    ``mode``: ``"constant"`` (fill with ``value``), ``"reflect"`` (mirror without repeating the edge:
    ``x[2], x[1] | x[0], x[1], ...``; each pad must be smaller than its dim) or ``"replicate"``
    (repeat the edge). The backward slices out the interior and adds each padded cell's gradient to
    the cell it was copied from.
    """
    x = check_tensor(x, "pad")
    if check_str(mode, "pad", "mode", PAD_MODES) not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    value = check_float(value, "pad", "value")
    widths = _pad_widths(pad, x.ndim)
    for axis, (before, after) in enumerate(widths):
        n = x.shape[axis]
        if mode == "reflect" and max(before, after) >= n:
            raise ValueError(f"pad: reflect padding must be smaller than the padded dim, got pad "
                             f"{(before, after)} for dim {axis} of size {n} (input shape {x.shape})")
        if mode == "replicate" and max(before, after) > 0 and n == 0:
            raise ValueError(f"pad: replicate padding needs a non-empty dim, dim {axis} of input "
                             f"shape {x.shape} is empty")
    check_array_size(tuple(n + before + after for n, (before, after) in zip(x.shape, widths, strict=True)),
                     x.dtype, "pad")
    xp = backend.xp(x.data)
    if mode == "constant":
        out = xp.pad(x.data, widths, mode="constant", constant_values=value)
    else:
        out = xp.pad(x.data, widths, mode="reflect" if mode == "reflect" else "edge")

    def backward(g):
        for axis, (before, after) in enumerate(widths):
            if before or after:
                moved = xp.moveaxis(g, axis, -1)
                g = xp.moveaxis(_unpad_last_axis(moved, x.shape[axis], before, after, mode), -1, axis)
        return (xp.ascontiguousarray(g),)

    return Tensor.from_op(out.astype(x.dtype, copy=False), (x,), backward, f"pad_{mode}")
