"""CPU convolution kernels: im2col/col2im for the GEMM path, and the naive twins the tests compare with.

Notation (shared by every function here): ``x: (N, C, H, W)`` is a convolution's input,
``(kh, kw)`` its kernel, ``stride = (sh, sw)``, ``dilation = (dh, dw)`` and
``pad4 = (top, bottom, left, right)`` zero padding; ``(Ho, Wo)`` is the output size. Output
pixel ``(oh, ow)`` with kernel tap ``(i, j)`` reads input pixel

    ih = oh*sh - top + i*dh,    iw = ow*sw - left + j*dw        (zero where outside the input).

``im2col`` copies these reads into a matrix ``cols: (N, C*kh*kw, Ho*Wo)`` whose row
``(c*kh + i)*kw + j`` holds tap ``(i, j)`` of channel ``c`` for every output pixel. With ``C``
outermost, its rows split by group, so a grouped convolution is one GEMM per image and group:
``w.reshape(G, C_out/G, C/G*kh*kw) @ cols.reshape(N, G, C/G*kh*kw, Ho*Wo)`` lands in NCHW order
directly. ``col2im`` is its adjoint: it scatter-adds a ``cols`` matrix back onto
the pixels that were read (the input-gradient of a convolution).

Depthwise convolutions (one input channel per group) would be N*C tiny GEMMs, so they get
direct kernels instead (``cpu_depthwise``: forward, input gradient and weight gradient). They
are imported here because this module is the CPU side of the ``"conv"`` kernel family that
``backend.kernels`` hands out.

Every kernel runs in parallel over (n, c) planes: each plane of the output is written by one
thread only, so no two threads ever add into the same memory. The ``prange`` kernels only hand
out planes; a plain ``@njit`` function does each plane's work. Every ``prange`` kernel has a serial
twin: ``cpu_threads.launch`` runs it on inputs too small to pay for waking the threads, and the
``im2col``/``col2im`` twins (``parallel=False``) release the GIL for the per-thread tiles of
``cpu_threads.map_batch``. The ``naive_*`` functions are plain-NumPy references (a literal
sliding window), used by the tests only.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads
from minivis.kernels.cpu_depthwise import (  # noqa: F401 (the "conv" family's depthwise kernels)
    depthwise_backward_input,
    depthwise_backward_weight,
    depthwise_forward,
)
from minivis.kernels.cpu_layout import _fill_zero, _geometry, _valid_range


# ----------------------------------------------------------------------------- output size
def output_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Convolution output length: ``floor((size + pads - dilation*(k-1) - 1) / stride) + 1``."""
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------- im2col / col2im
# Inner loops run over 1-D row views indexed by the loop counter (``out[t] = src[t]``): simple
# non-negative indices that LLVM vectorizes, with the bounds solved once per row (``_valid_range``).


@numba.njit(cache=True)
def _im2col_plane(x, kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols):
    """Rows ``c*kh*kw .. (c+1)*kh*kw - 1`` of one image's cols matrix from its plane ``x = x[n, c]``."""
    height, width = x.shape
    if sh == 1 and sw == 1 and wo == width:
        _im2col_plane_same_width(x, kh, kw, top, left, dh, dw, ho, cols)
        return
    if sw > 1:
        _im2col_plane_strided(x, kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols)
        return
    for i in range(kh):
        for j in range(kw):
            dst = cols[i * kw + j]
            col_off = j * dw - left
            ow0, ow1 = _valid_range(wo, sw, col_off, width)
            for oh in range(ho):
                ih = oh * sh - top + i * dh
                base = oh * wo
                if ih < 0 or ih >= height:
                    for t in range(wo):
                        dst[base + t] = 0
                    continue
                for t in range(ow0):
                    dst[base + t] = 0
                src = x[ih, ow0 * sw + col_off:]
                out = dst[base + ow0:]
                if sw == 1:
                    for t in range(ow1 - ow0):
                        out[t] = src[t]
                else:
                    for t in range(ow1 - ow0):
                        out[t] = src[t * sw]
                for t in range(ow1, wo):
                    dst[base + t] = 0


@numba.njit(cache=True)
def _im2col_plane_strided(x, kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols):
    """``_im2col_plane`` for a column stride ``sw > 1``, through the plane's ``sw`` column phases.

    Tap column j reads padded column ``ow*sw + j*dw``: element ``ow + (j*dw) // sw`` of phase
    ``(j*dw) % sw``, where phase p holds padded columns p, p + sw, p + 2 sw, ... So the phases are
    gathered once per plane (zero in the padding), and every tap's row is then a contiguous copy,
    which vectorizes; the strided gather it replaces ran once per tap and did not (AlexNet's 11x11,
    stride-4 first layer copies each pixel into ~8 taps' rows).
    """
    height, width = x.shape
    q = wo + dw * (kw - 1) // sw  # phase length: the largest tap offset plus one output row
    # only the input rows the output rows read (a row band of a large image reads a band of rows)
    r0, r1 = max(0, -top), max(min(height, (ho - 1) * sh - top + (kh - 1) * dh + 1), max(0, -top))
    phases = np.empty((sw, r1 - r0, q), dtype=x.dtype)
    for p in range(sw):
        k0, k1 = _valid_range(q, sw, p - left, width)  # phase elements that hold input columns
        for r in range(r0, r1):
            dst = phases[p, r - r0]
            for t in range(k0):
                dst[t] = 0
            src, out = x[r, k0 * sw + p - left:], dst[k0:]
            for t in range(k1 - k0):
                out[t] = src[t * sw]
            for t in range(k1, q):
                dst[t] = 0
    for i in range(kh):
        for j in range(kw):
            dst = cols[i * kw + j]
            phase, q0 = (j * dw) % sw, (j * dw) // sw
            for oh in range(ho):
                ih = oh * sh - top + i * dh
                out = dst[oh * wo:]
                if ih < r0 or ih >= r1:
                    for t in range(wo):
                        out[t] = 0
                    continue
                src = phases[phase, ih - r0, q0:]
                for t in range(wo):
                    out[t] = src[t]


@numba.njit(cache=True)
def _im2col_plane_same_width(x, kh, kw, top, left, dh, dw, ho, cols):
    """``_im2col_plane`` for stride 1 and Wo == W (e.g. 3x3 with padding 1), the common case.

    Then cols row (i, j) is the whole plane shifted by ``(i*dh - top)*W + j*dw - left`` elements:
    one long copy, after which the few columns that fell on the left/right padding are zeroed
    (the copy put the neighbouring image row's pixels there). Short rows copied one at a time
    would spend more time on loop set-up than on copying.
    """
    height, width = x.shape
    flat = x.reshape(-1)
    for i in range(kh):
        row_off = i * dh - top
        oh0, oh1 = _valid_range(ho, 1, row_off, height)
        for j in range(kw):
            dst = cols[i * kw + j]
            col_off = j * dw - left
            ow0, ow1 = _valid_range(width, 1, col_off, width)
            shift = row_off * width + col_off
            p0 = min(max(oh0 * width, -shift), ho * width)  # first and last flat positions that read the plane
            p1 = max(min(oh1 * width, height * width - shift), p0)
            for p in range(p0):
                dst[p] = 0
            src, out = flat[p0 + shift:], dst[p0:]
            for t in range(p1 - p0):
                out[t] = src[t]
            for p in range(p1, ho * width):
                dst[p] = 0
            for oh in range(oh0, oh1):
                for ow in range(ow0):
                    dst[oh * width + ow] = 0
                for ow in range(ow1, width):
                    dst[oh * width + ow] = 0


# The parallel kernels only hand out (n, c) planes; the per-plane work lives in plain @njit
# functions, which keeps Numba's parallel passes (and so the compile time) small.
@numba.njit(parallel=True, cache=True)
def _im2col(x, kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols):
    n_img, channels = x.shape[0], x.shape[1]
    taps = kh * kw
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _im2col_plane(x[n, c], kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols[n, c * taps:(c + 1) * taps])


@numba.njit(nogil=True, cache=True)
def _im2col_serial(x, kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols):
    """``_im2col`` on the calling thread only, without the GIL (for ``cpu_threads.map_batch`` workers)."""
    n_img, channels = x.shape[0], x.shape[1]
    taps = kh * kw
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _im2col_plane(x[n, c], kh, kw, sh, sw, top, left, dh, dw, ho, wo, cols[n, c * taps:(c + 1) * taps])


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], pad4: tuple[int, int, int, int],
           dilation: tuple[int, int], out_hw: tuple[int, int], out: np.ndarray | None = None,
           parallel: bool = True) -> np.ndarray:
    """``cols: (N, C*kh*kw, Ho*Wo)`` with ``cols[n, (c*kh + i)*kw + j, oh*Wo + ow] = x_pad[n, c, ih, iw]``.

    x: (N, C, H, W) float32/float64; ``out_hw = (Ho, Wo)`` is passed explicitly so callers may
    ask for fewer output positions than the formula gives (transposed conv with output_padding).
    ``out``: an optional C-contiguous buffer of that shape and x's dtype to fill (reused by callers).
    ``parallel=False``: run on the calling thread without the GIL (``cpu_threads`` workers).
    """
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    ho, wo = out_hw
    cols = np.empty((n, c * kh * kw, ho * wo), dtype=x.dtype) if out is None else out  # all written below
    args = (x, kh, kw, *_geometry(stride, pad4, dilation), ho, wo, cols)
    if parallel:
        cpu_threads.launch(_im2col, _im2col_serial, cols.size, *args)
    else:
        _im2col_serial(*args)
    return cols


@numba.njit(cache=True)
def _col2im_plane(cols, kh, kw, sh, sw, top, left, dh, dw, ho, wo, x, accumulate):
    """Add one image's cols rows ``c*kh*kw ..`` back onto its plane ``x = x[n, c]`` (zeroed here first
    unless ``accumulate``)."""
    height, width = x.shape
    if not accumulate:
        _fill_zero(x)
    for i in range(kh):
        for j in range(kw):
            src = cols[i * kw + j]
            col_off = j * dw - left
            ow0, ow1 = _valid_range(wo, sw, col_off, width)
            for oh in range(ho):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                dst = x[ih, ow0 * sw + col_off:]
                s = src[oh * wo + ow0:oh * wo + ow1]
                if sw == 1:
                    for t in range(ow1 - ow0):
                        dst[t] += s[t]
                else:
                    for t in range(ow1 - ow0):
                        dst[t * sw] += s[t]


@numba.njit(parallel=True, cache=True)
def _col2im(cols, kh, kw, sh, sw, top, left, dh, dw, ho, wo, x, accumulate):
    n_img, channels = x.shape[0], x.shape[1]
    taps = kh * kw
    for plane in numba.prange(n_img * channels):
        n, c = plane // channels, plane % channels
        _col2im_plane(cols[n, c * taps:(c + 1) * taps], kh, kw, sh, sw, top, left, dh, dw, ho, wo, x[n, c],
                      accumulate)


@numba.njit(nogil=True, cache=True)
def _col2im_serial(cols, kh, kw, sh, sw, top, left, dh, dw, ho, wo, x, accumulate):
    """``_col2im`` on the calling thread only, without the GIL (for ``cpu_threads.map_batch`` workers)."""
    n_img, channels = x.shape[0], x.shape[1]
    taps = kh * kw
    for plane in range(n_img * channels):
        n, c = plane // channels, plane % channels
        _col2im_plane(cols[n, c * taps:(c + 1) * taps], kh, kw, sh, sw, top, left, dh, dw, ho, wo, x[n, c],
                      accumulate)


def col2im(cols: np.ndarray, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: tuple[int, int],
           pad4: tuple[int, int, int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
           out: np.ndarray | None = None, parallel: bool = True, accumulate: bool = False) -> np.ndarray:
    """The adjoint of ``im2col``: ``x[n, c, ih, iw] = sum of cols entries that im2col read from there``.

    cols: (N, C*kh*kw, Ho*Wo) -> x: ``x_shape`` = (N, C, H, W); taps that fell on padding are
    dropped. ``out``: an optional C-contiguous array of ``x_shape`` to write into (overwritten, or
    added to with ``accumulate=True``: how a band of output rows adds its share into a whole image).
    ``parallel=False``: run on the calling thread without the GIL.
    """
    cols = np.ascontiguousarray(cols)
    if out is None:
        x, accumulate = np.empty(x_shape, dtype=cols.dtype), False  # each thread zeroes its own planes
    else:
        x = out
    args = (cols, kh, kw, *_geometry(stride, pad4, dilation), out_hw[0], out_hw[1], x, accumulate)
    if parallel:
        cpu_threads.launch(_col2im, _col2im_serial, cols.size, *args)
    else:
        _col2im_serial(*args)
    return x


# ----------------------------------------------------------------------------- naive references


def _pad(x: np.ndarray, pad4: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pad4
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _window(i: int, j: int, stride, dilation, out_hw) -> tuple[slice, slice]:
    """Rows/cols of the padded input that tap (i, j) reads, for every output pixel at once."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    return slice(i * dh, i * dh + sh * (ho - 1) + 1, sh), slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


def naive_im2col(x, kh, kw, stride, pad4, dilation, out_hw):
    """Plain-NumPy ``im2col``: one strided slice of the padded input per kernel tap."""
    n, c = x.shape[:2]
    xp = _pad(x, pad4)
    cols = np.empty((n, c, kh, kw) + tuple(out_hw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window(i, j, stride, dilation, out_hw)
            cols[:, :, i, j] = xp[:, :, rows, columns]
    return cols.reshape(n, c * kh * kw, -1)


def naive_col2im(cols, x_shape, kh, kw, stride, pad4, dilation, out_hw):
    """Plain-NumPy ``col2im``: add each tap's slice back into the padded input, then crop."""
    n, c, h, w = x_shape
    top, bottom, left, right = pad4
    xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    cols = cols.reshape((n, c, kh, kw) + tuple(out_hw))
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window(i, j, stride, dilation, out_hw)
            xp[:, :, rows, columns] += cols[:, :, i, j]
    return xp[:, :, top:top + h, left:left + w]


def naive_conv2d(x, w, stride, pad4, dilation, groups):
    """The literal definition: slide the (dilated) kernel over the padded input, one output pixel at a time.

    out[n, co, oh, ow] = sum_{c, i, j} w[co, c, i, j] * x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]
    where g = co // (C_out/G) is the group of output channel co and Cg = C_in / G.
    """
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho = output_size(h, kh, sh, pad4[0], pad4[1], dh)
    wo = output_size(wd, kw, sw, pad4[2], pad4[3], dw)
    xp = _pad(x, pad4)
    out = np.zeros((n, c_out, ho, wo), dtype=np.result_type(x, w))
    per_group = c_out // groups
    for co in range(c_out):
        grp = co // per_group
        for oh in range(ho):
            for ow in range(wo):
                patch = xp[:, grp * cg:(grp + 1) * cg,
                           oh * sh:oh * sh + dh * (kh - 1) + 1:dh, ow * sw:ow * sw + dw * (kw - 1) + 1:dw]
                out[:, co, oh, ow] = (patch * w[co]).sum(axis=(1, 2, 3))
    return out


def naive_conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, groups):
    """Literal input-gradient: every output pixel adds ``g * w`` back onto the window it read."""
    n, c_in, h, wd = x_shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    top, bottom, left, right = pad4
    dxp = np.zeros((n, c_in, h + top + bottom, wd + left + right), dtype=np.result_type(g, w))
    per_group = c_out // groups
    for co in range(c_out):
        grp = co // per_group
        for oh in range(g.shape[2]):
            for ow in range(g.shape[3]):
                dxp[:, grp * cg:(grp + 1) * cg,
                    oh * sh:oh * sh + dh * (kh - 1) + 1:dh,
                    ow * sw:ow * sw + dw * (kw - 1) + 1:dw] += g[:, co, oh, ow, None, None, None] * w[co]
    return dxp[:, :, top:top + h, left:left + wd]


def naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation, groups):
    """Literal weight-gradient: dw[co] = sum over images and output pixels of g * (the window read)."""
    c_out, cg, kh, kw = w_shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = _pad(x, pad4)
    dw_ = np.zeros(w_shape, dtype=np.result_type(g, x))
    per_group = c_out // groups
    for co in range(c_out):
        grp = co // per_group
        for oh in range(g.shape[2]):
            for ow in range(g.shape[3]):
                patch = xp[:, grp * cg:(grp + 1) * cg,
                           oh * sh:oh * sh + dh * (kh - 1) + 1:dh, ow * sw:ow * sw + dw * (kw - 1) + 1:dw]
                dw_[co] += np.tensordot(g[:, co, oh, ow], patch, axes=(0, 0))
    return dw_
