"""Direct convolution on the CPU: sliding windows, no im2col matrix, for layers with few input channels.

A first layer (1-3 input channels: MNIST, CIFAR, AlexNet's 11x11/4) has K = C_in*kh*kw of 9 to 363:
its im2col matrix is as large as the output times K, and the GEMM that reads it is too thin to run
near the machine's peak. A direct kernel reads the input in place instead:

    out[n, co, oy, ox] = sum_{ci, ky, kx} w[co, ci, ky, kx] * x_pad[n, ci, oy*sh + ky*dh, ox*sw + kx*dw]

Register blocking: a block of ``CB`` output channels shares every input value it loads, and the
innermost loop runs over the output pixels of a row (SIMD lanes). Strided layers are made
unit-stride first by a *polyphase* re-layout of each padded input row,
``x_ph[..., p, j] = x_pad[..., j*sw + p]``, so that ``x_pad[ox*sw + o] = x_ph[o % sw, ox + o // sw]``
is a contiguous run in ``ox`` for every tap offset ``o``.

The input gradient is the same loop nest with the roles of read and write swapped (a scatter into
the polyphase layout of dx, then un-interleaved); the weight gradient sums, for every tap, the
products of a row of g with a shifted row of x into a vector of partial sums (reassociation-free
SIMD), then reduces that vector. Every sum runs in a fixed order that depends on one image only,
so an image's forward and input gradient are the same in any batch (batch invariance).

Threads: ``cpu_threads.map_batch`` gives each thread a slice of the batch; the kernels are serial
and ``nogil``. ``naive_*`` are the plain-NumPy twins the tests compare with.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads

CB = 4  # output channels that share each loaded input value (the register block)

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- layouts
def polyphase(x: np.ndarray, pad4: Pad4, sw: int, width: int) -> np.ndarray:
    """Padded ``x`` (N, C, H, W) re-laid as (N, C, Hp, sw, width): ``[..., p, j] = x_pad[..., j*sw + p]``.

    ``width`` columns per phase (enough for every tap of every output pixel); columns past the padded
    input are zero.
    """
    n, c, h, w = x.shape
    top, bottom, left, right = pad4
    hp = h + top + bottom
    buf = np.zeros((n, c, hp, width * sw), dtype=x.dtype)
    cols = min(w, width * sw - left)
    buf[:, :, top:top + h, left:left + cols] = x[..., :cols]
    return np.ascontiguousarray(buf.reshape(n, c, hp, width, sw).transpose(0, 1, 2, 4, 3))


def phase_width(wo: int, kw: int, sw: int, dw: int) -> int:
    """Columns per phase that the last output pixel's last tap reaches: ``wo + (kw-1)*dw // sw``."""
    return wo + (kw - 1) * dw // sw


# ----------------------------------------------------------------------------- forward
@numba.njit(inline="always")
def _tap(acc, src, start, length, w, co0, cb, ci, ky, kx):
    """acc[c, q] += w[co0 + c, ci, ky, kx] * src[start + q] for q < length and the block's cb channels.

    With the full block of CB channels each loaded value serves four accumulators (the register
    block). Indices are unsigned: LLVM does not vectorize a loop whose index might wrap around.
    """
    u = np.uint64
    first = u(start)
    if cb == CB:
        w0, w1 = w[co0, ci, ky, kx], w[co0 + 1, ci, ky, kx]
        w2, w3 = w[co0 + 2, ci, ky, kx], w[co0 + 3, ci, ky, kx]
        for q in range(u(length)):
            v = src[first + q]
            acc[0, q] += w0 * v
            acc[1, q] += w1 * v
            acc[2, q] += w2 * v
            acc[3, q] += w3 * v
    else:
        for c in range(cb):
            wc = w[co0 + c, ci, ky, kx]
            for q in range(u(length)):
                acc[c, q] += wc * src[first + q]


@numba.njit(cache=True, nogil=True)
def _forward(xph, w, sh, sw, dh, dw, out, oy0, oy1, bias, has_bias):
    """out[:, :, oy0:oy1] of the direct convolution of the polyphase input xph (N, C_in, Hp, sw, Wq),
    plus ``bias`` (C_out,) if ``has_bias``, added as each row is written out."""
    n_img, c_in = xph.shape[0], xph.shape[1]
    c_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    wo = out.shape[3]
    acc = np.empty((CB, wo), dtype=out.dtype)
    for n in range(n_img):
        for co0 in range(0, c_out, CB):
            cb = min(CB, c_out - co0)
            for oy in range(oy0, oy1):
                acc[:] = 0
                for ci in range(c_in):
                    for ky in range(kh):
                        iy = oy * sh + ky * dh
                        for kx in range(kw):
                            o = kx * dw
                            _tap(acc, xph[n, ci, iy, o % sw], o // sw, wo, w, co0, cb, ci, ky, kx)
                for c in range(cb):
                    if has_bias:
                        out[n, co0 + c, oy, :] = acc[c] + bias[co0 + c]
                    else:
                        out[n, co0 + c, oy, :] = acc[c]


WIDE_ROWS = 8  # output rows per chunk of the stride-1 "wide grid": CB accumulator rows stay in L1


@numba.njit(cache=True, nogil=True)
def _forward_wide(xph, w, dh, dw, out, oy0, oy1, bias, has_bias):
    """``_forward`` at stride 1, on a "wide grid": xph (N, C_in, Hp, 1, Wq) with Wq = wo + (kw-1)*dw.

    Output pixel (oy, ox) reads plane element ``(oy + ky*dh)*Wq + ox + kx*dw``: with ``q = oy*Wq + ox``
    every tap is the same shift of the flat plane, so each tap is one loop over ``WIDE_ROWS``
    rows at once (a decoder's 28 px rows alone are too short to vectorize well). The columns
    ``wo..Wq`` of each row come out as garbage and are not copied out; the last row stops at ``wo``,
    so no read passes the plane. Every pixel sums its taps in ``_forward``'s order: the same bits.
    """
    n_img, c_in, wq = xph.shape[0], xph.shape[1], xph.shape[4]
    c_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    wo = out.shape[3]
    acc = np.empty((CB, WIDE_ROWS * wq), dtype=out.dtype)
    for n in range(n_img):
        for co0 in range(0, c_out, CB):
            cb = min(CB, c_out - co0)
            for r0 in range(oy0, oy1, WIDE_ROWS):
                rows = min(WIDE_ROWS, oy1 - r0)
                length = (rows - 1) * wq + wo
                acc[:] = 0
                for ci in range(c_in):
                    xf = xph[n, ci].reshape(-1)
                    for ky in range(kh):
                        for kx in range(kw):
                            _tap(acc, xf, (r0 + ky * dh) * wq + kx * dw, length, w, co0, cb, ci, ky, kx)
                for c in range(cb):
                    for r in range(rows):
                        if has_bias:
                            out[n, co0 + c, r0 + r, :] = acc[c, r * wq:r * wq + wo] + bias[co0 + c]
                        else:
                            out[n, co0 + c, r0 + r, :] = acc[c, r * wq:r * wq + wo]


def forward(x: np.ndarray, w: np.ndarray, stride: Pair, pad4: Pad4, dilation: Pair, out_hw: Pair,
            bias: np.ndarray | None = None) -> np.ndarray:
    """Direct conv2d (groups 1): x (N, C_in, H, W), w (C_out, C_in, kh, kw) -> (N, C_out, Ho, Wo);
    bias (C_out,) or None, added as each output row is written (the same rounding as after)."""
    n, (kh, kw), (ho, wo) = x.shape[0], w.shape[2:], out_hw
    w = np.ascontiguousarray(w, dtype=x.dtype)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=x.dtype) if has_bias else np.zeros(w.shape[0], x.dtype)
    xph = polyphase(x, pad4, stride[1], phase_width(wo, kw, stride[1], dilation[1]))
    out = np.empty((n, w.shape[0], ho, wo), dtype=x.dtype)
    work = out.size * w.shape[1] * kh * kw

    def rows_of(images: np.ndarray, y: np.ndarray, oy0: int, oy1: int) -> None:
        if stride == (1, 1):
            _forward_wide(images, w, dilation[0], dilation[1], y, oy0, oy1, b, has_bias)
        else:
            _forward(images, w, stride[0], stride[1], dilation[0], dilation[1], y, oy0, oy1, b, has_bias)

    if n >= numba.get_num_threads():
        def run(part: slice, _parallel: bool) -> None:
            rows_of(xph[part], out[part], 0, ho)

        cpu_threads.map_batch(run, n, work)
    else:  # fewer images than threads (one photo): bands of output rows instead; each pixel's sum is unchanged
        def run_rows(rows: slice, _parallel: bool) -> None:
            rows_of(xph, out, rows.start, rows.stop)

        cpu_threads.map_batch(run_rows, ho, work)
    return out


# ----------------------------------------------------------------------------- input gradient
@numba.njit(cache=True, nogil=True)
def _backward_input(g, w, sh, sw, dh, dw, dxph):
    """dxph (N, C_in, Hp, sw, Wq) += the adjoint of ``_forward`` applied to g (N, C_out, Ho, Wo); dxph starts at 0."""
    n_img, c_out, ho, wo = g.shape
    c_in, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    for n in range(n_img):
        for ci in range(c_in):
            for co in range(c_out):
                for oy in range(ho):
                    grow = g[n, co, oy]
                    for ky in range(kh):
                        iy = oy * sh + ky * dh
                        for kx in range(kw):
                            o = kx * dw
                            wv = w[co, ci, ky, kx]
                            row = dxph[n, ci, iy, o % sw, o // sw:o // sw + wo]
                            for ox in range(wo):
                                row[ox] += wv * grow[ox]


def backward_input(g: np.ndarray, w: np.ndarray, x_shape: tuple[int, ...], stride: Pair, pad4: Pad4,
                   dilation: Pair) -> np.ndarray:
    """dL/dx of the direct conv2d: g (N, C_out, Ho, Wo), w (C_out, C_in, kh, kw) -> ``x_shape``.

    At stride 1 the input gradient is itself a stride-1 correlation, of g with the kernel rotated by
    180 degrees and its channel axes swapped, padded by ``dilation*(k-1) - pad`` on each side:
    where that padding is not negative it runs as ``forward`` (the wide grid), 2.5x faster than the
    scatter below on a decoder's 32->1 output layer.
    """
    n, c_in, h, wd = x_shape
    (kh, kw), (ho, wo) = w.shape[2:], g.shape[2:]
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w, dtype=g.dtype)
    top, bottom, left, right = pad4
    if stride == (1, 1):
        reach = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
        full = reach[0] - top, reach[0] - bottom, reach[1] - left, reach[1] - right
        if min(full) >= 0 and (ho, wo) == (h + top + bottom - reach[0], wd + left + right - reach[1]):
            w_adjoint = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            return forward(g, w_adjoint, (1, 1), full, dilation, (h, wd))
    sw, width = stride[1], phase_width(wo, kw, stride[1], dilation[1])
    dxph = np.zeros((n, c_in, h + top + bottom, sw, width), dtype=g.dtype)

    def run(part: slice, _parallel: bool) -> None:
        _backward_input(g[part], w, stride[0], sw, dilation[0], dilation[1], dxph[part])

    cpu_threads.map_batch(run, n, g.size * c_in * kh * kw)
    dx_pad = dxph.transpose(0, 1, 2, 4, 3).reshape(n, c_in, h + top + bottom, width * sw)
    dx = np.zeros(x_shape, dtype=g.dtype)
    cols = max(0, min(wd, width * sw - left))
    dx[..., :cols] = dx_pad[:, :, top:top + h, left:left + cols]
    return dx


# ----------------------------------------------------------------------------- weight gradient
@numba.njit(cache=True, nogil=True)
def _backward_weight(g, xph, sh, sw, dh, dw, kh, kw, dwt, ci0, ci1):
    """dwt[:, ci0:ci1] (of C_out, C_in, kh, kw) = sum_{n, oy, ox} g[n, co, oy, ox] * x at the tap, for g's images.

    Each filter tap's sum runs in ``wo`` lanes (one per output column, so the loop vectorizes),
    added up at the end; indices unsigned and no row views, as in ``_tap``.
    """
    u = np.uint64
    n_img, c_out, ho, wo = g.shape
    lanes = np.empty(wo, dtype=dwt.dtype)
    for co in range(c_out):
        for ci in range(ci0, ci1):
            for ky in range(kh):
                for kx in range(kw):
                    o = kx * dw
                    p, q0 = u(o % sw), u(o // sw)
                    lanes[:] = 0
                    for n in range(n_img):
                        for oy in range(ho):
                            iy = u(oy * sh + ky * dh)
                            for ox in range(u(wo)):
                                lanes[ox] += g[n, co, oy, ox] * xph[n, ci, iy, p, q0 + ox]
                    dwt[co, ci, ky, kx] = lanes.sum()


def backward_weight(g: np.ndarray, x: np.ndarray, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4,
                    dilation: Pair) -> np.ndarray:
    """dL/dw of the direct conv2d: g (N, C_out, Ho, Wo), x (N, C_in, H, W) -> ``w_shape``. Each thread
    sums its slice of the batch, and the partials are added last; with fewer images than threads,
    each thread computes whole filters of its share of the input channels."""
    (kh, kw), wo = w_shape[2:], g.shape[3]
    g = np.ascontiguousarray(g)
    xph = polyphase(np.asarray(x, dtype=g.dtype), pad4, stride[1], phase_width(wo, kw, stride[1], dilation[1]))

    work = g.size * w_shape[1] * kh * kw
    if g.shape[0] < numba.get_num_threads():  # one photo: the threads take input channels instead (same bits)
        dwt = np.empty(w_shape, dtype=g.dtype)

        def run_channels(part: slice, _parallel: bool) -> None:
            _backward_weight(g, xph, stride[0], stride[1], dilation[0], dilation[1], kh, kw, dwt, part.start,
                             part.stop)

        cpu_threads.map_batch(run_channels, w_shape[1], work)
        return dwt

    def run(part: slice, _parallel: bool) -> np.ndarray:
        dwt = np.empty(w_shape, dtype=g.dtype)
        _backward_weight(g[part], xph[part], stride[0], stride[1], dilation[0], dilation[1], kh, kw, dwt, 0,
                         w_shape[1])
        return dwt

    return sum(cpu_threads.map_batch(run, g.shape[0], work))


# ----------------------------------------------------------------------------- plain-NumPy twins
def _taps(x_pad: np.ndarray, kh: int, kw: int, stride: Pair, dilation: Pair, out_hw: Pair):
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dilation[0], kx * dilation[1]
            yield ky, kx, (slice(y0, y0 + (out_hw[0] - 1) * stride[0] + 1, stride[0]),
                           slice(x0, x0 + (out_hw[1] - 1) * stride[1] + 1, stride[1]))


def naive_forward(x, w, stride, pad4, dilation, out_hw):
    """out = sum over taps of w[:, :, ky, kx] @ (the input pixels that tap reads), in NumPy."""
    x_pad = np.pad(x, ((0, 0), (0, 0), pad4[:2], pad4[2:]))
    out = np.zeros((x.shape[0], w.shape[0], *out_hw), dtype=np.result_type(x, w))
    for ky, kx, (rows, cols) in _taps(x_pad, *w.shape[2:], stride, dilation, out_hw):
        out += np.einsum("oc,nchw->nohw", w[:, :, ky, kx], x_pad[:, :, rows, cols])
    return out


def naive_backward_input(g, w, x_shape, stride, pad4, dilation):
    n, c, h, wd = x_shape
    dx_pad = np.zeros((n, c, h + pad4[0] + pad4[1], wd + pad4[2] + pad4[3]), dtype=g.dtype)
    for ky, kx, (rows, cols) in _taps(dx_pad, *w.shape[2:], stride, dilation, g.shape[2:]):
        dx_pad[:, :, rows, cols] += np.einsum("oc,nohw->nchw", w[:, :, ky, kx], g)
    return dx_pad[:, :, pad4[0]:pad4[0] + h, pad4[2]:pad4[2] + wd]


def naive_backward_weight(g, x, w_shape, stride, pad4, dilation):
    x_pad = np.pad(x, ((0, 0), (0, 0), pad4[:2], pad4[2:]))
    dw = np.zeros(w_shape, dtype=g.dtype)
    for ky, kx, (rows, cols) in _taps(x_pad, *w_shape[2:], stride, dilation, g.shape[2:]):
        dw[:, :, ky, kx] = np.einsum("nohw,nchw->oc", g, x_pad[:, :, rows, cols])
    return dw
