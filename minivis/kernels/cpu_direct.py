"""Direct convolution on the CPU: sliding windows read in place, no im2col matrix.

    out[n, co, oy, ox] = sum_{ci, ky, kx} w[co, ci, ky, kx] * x_pad[n, ci, oy*sh + ky*dh, ox*sw + kx*dw]

**Layout.** Each image is copied once into flat *polyphase* planes: the padded input split by row
and column phase (``r*sh + py``, ``c*sw + px``), each plane ``hq x wq``. On that grid output pixel
q = oy*wq + ox of tap t = (ci, ky, kx) reads element ``offs[t] + q``: every tap is one shift of
the same index for all pixels, whatever the stride and dilation. The grid's last ``wq - Wo``
columns of each row are computed and dropped. The valid columns are copied out row by row
(``_crop``), and the ops a fused call puts after the convolution (a rectifier, an eval batch norm)
are applied to each value on the way, while the row is in L1 (``forward``'s ``finish``).

**Register blocking** (``_blocks``). A block of R = 8 output channels x PV = 3 vectors of
consecutive q keeps its 24 vectors of partial sums in registers for the whole sum over the taps
(``cpu_simd``: explicit AVX-512 vectors, fused multiply-adds). Per tap: 3 vector loads, 8
broadcast weights, 24 FMAs. It runs at 130-200 GFLOP/s on one thread (benchmarks/README.md,
"Convolution planning"); the obvious loop that keeps its accumulators in memory, 5-30.

The input gradient at stride 1 is the same kernel on g with the kernel rotated by 180 degrees and
its channel axes swapped; at stride > 1 it is a scatter into dx's column phases (``_backward_input``).
The weight gradient (``_weight_blocks``) reads the forward's sum the other way: 4 output channels x
6 taps of vectors of partial sums while q runs over each image's grid.

Every forward and input-gradient sum runs in a fixed order that depends on one image only, so an
image's result is the same in any batch and however the threads split it (batch invariance).
Threads: ``cpu_threads.map_batch`` gives each thread a slice of the batch (one photo: its channel
or pixel blocks); the kernels are serial and ``nogil``. ``naive_*`` are the plain-NumPy twins the
tests compare with.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from minivis.kernels import cpu_simd as simd
from minivis.kernels import cpu_threads, cpu_workspace
from minivis.kernels.cpu_activation import _clip_one

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
# The forward pass is a register-blocked micro-kernel (``cpu_simd`` vectors). Every output pixel
# (oy, ox) of a *phase grid* of row length Wq has the flat index q = oy*Wq + ox, and tap t reads the
# input at ``offs[t] + q`` of the polyphase input (one plane per row and column phase):
#
#     out[co, q] = sum_t  wp[co, t] * src[offs[t] + q]        t over (ci, ky, kx), in that order
#
# A block of R output channels x PV vectors of consecutive q keeps its R*PV partial sums in
# registers for the whole sum over t: per tap, PV vector loads of src and R broadcast weights feed
# R*PV fused multiply-adds. The columns ox >= Wo of each grid row come out as garbage and are
# dropped when the block is copied out. An image's sums never meet another image's: the result
# does not depend on the batch, nor on how the threads split it.
R = 8  # output channels per register block
PV = 3  # vectors of output pixels per block: R * PV = 24 of the 32 AVX-512 registers hold partial sums


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _blocks(src, offs, wp, cb, pb0, pb1, buf):
    """buf[r*lq + q] = sum_t wp[cb, t, r] * src[offs[t] + q] for the R output channels of channel block cb
    and the grid indices q of pixel blocks pb0..pb1, of one image (lq = buf's length / R).

    src, wp: flat; wp holds (channel blocks, taps, R) weights, zero past C_out. A pixel block is PV
    vectors of consecutive grid indices q. buf holds R rows of the grid (small enough for L2), from
    which ``_crop`` copies the valid columns out. The caller pads src so that every block's reads
    stay inside, and sizes buf for every pixel block.
    """
    n_taps, lanes = offs.shape[0], simd.lanes(src)
    block = PV * lanes
    lq = buf.shape[0] // R
    w0 = cb * n_taps * R
    for pb in range(pb0, pb1):
        q = pb * block
        # written out channel by channel: 24 named values live in registers, an array of them in memory
        a0 = simd.vzero(src); a1 = simd.vzero(src); a2 = simd.vzero(src)  # noqa: E702 (channel 0's vectors)
        b0 = simd.vzero(src); b1 = simd.vzero(src); b2 = simd.vzero(src)  # noqa: E702
        c0 = simd.vzero(src); c1 = simd.vzero(src); c2 = simd.vzero(src)  # noqa: E702
        d0 = simd.vzero(src); d1 = simd.vzero(src); d2 = simd.vzero(src)  # noqa: E702
        e0 = simd.vzero(src); e1 = simd.vzero(src); e2 = simd.vzero(src)  # noqa: E702
        f0 = simd.vzero(src); f1 = simd.vzero(src); f2 = simd.vzero(src)  # noqa: E702
        g0 = simd.vzero(src); g1 = simd.vzero(src); g2 = simd.vzero(src)  # noqa: E702
        h0 = simd.vzero(src); h1 = simd.vzero(src); h2 = simd.vzero(src)  # noqa: E702 (channel 7's)
        for t in range(n_taps):
            s = offs[t] + q
            x0, x1, x2 = simd.vload(src, s), simd.vload(src, s + lanes), simd.vload(src, s + 2 * lanes)
            k = w0 + t * R
            w = simd.vbcast(wp, k)
            a0, a1, a2 = simd.vfma(w, x0, a0), simd.vfma(w, x1, a1), simd.vfma(w, x2, a2)
            w = simd.vbcast(wp, k + 1)
            b0, b1, b2 = simd.vfma(w, x0, b0), simd.vfma(w, x1, b1), simd.vfma(w, x2, b2)
            w = simd.vbcast(wp, k + 2)
            c0, c1, c2 = simd.vfma(w, x0, c0), simd.vfma(w, x1, c1), simd.vfma(w, x2, c2)
            w = simd.vbcast(wp, k + 3)
            d0, d1, d2 = simd.vfma(w, x0, d0), simd.vfma(w, x1, d1), simd.vfma(w, x2, d2)
            w = simd.vbcast(wp, k + 4)
            e0, e1, e2 = simd.vfma(w, x0, e0), simd.vfma(w, x1, e1), simd.vfma(w, x2, e2)
            w = simd.vbcast(wp, k + 5)
            f0, f1, f2 = simd.vfma(w, x0, f0), simd.vfma(w, x1, f1), simd.vfma(w, x2, f2)
            w = simd.vbcast(wp, k + 6)
            g0, g1, g2 = simd.vfma(w, x0, g0), simd.vfma(w, x1, g1), simd.vfma(w, x2, g2)
            w = simd.vbcast(wp, k + 7)
            h0, h1, h2 = simd.vfma(w, x0, h0), simd.vfma(w, x1, h1), simd.vfma(w, x2, h2)
        r = q
        for v0, v1, v2 in ((a0, a1, a2), (b0, b1, b2), (c0, c1, c2), (d0, d1, d2),
                           (e0, e1, e2), (f0, f1, f2), (g0, g1, g2), (h0, h1, h2)):
            simd.vstore(buf, r, v0)
            simd.vstore(buf, r + lanes, v1)
            simd.vstore(buf, r + 2 * lanes, v2)
            r += lq


@numba.njit(cache=True, nogil=True)
def _crop(buf, lq, wq, c0, oy0, oy1, bias, has_bias, y, scale, shift, low, high, affine, clip):
    """y[c0 + r, oy, :] = buf[r*lq + oy*wq : ... + Wo] (+ bias) for the grid rows oy0..oy1: the valid
    columns of a channel block's sums. With ``clip``, each finished as the ops after the convolution
    leave it while the row is in L1: clip(v + bias, low, high), with ``affine``
    clip((v + bias) * scale + shift, low, high) (an eval batch norm), each step rounded as the separate
    ops round it (``cpu_activation``'s clip: NaN propagates)."""
    u = np.uint64  # unsigned indices: LLVM vectorizes the row copies only if they cannot wrap around
    c_out, ho, wo = y.shape
    flat = y.reshape(-1)
    for r in range(min(R, c_out - c0)):
        c = c0 + r
        b = bias[c] if has_bias else bias[0]  # not added without a bias (bias[0] * 0 would be a float64)
        a, t = (scale[c], shift[c]) if affine else (b, b)
        for oy in range(oy0, oy1):
            src, dst = u(r * lq + oy * wq), u(((c0 + r) * ho + oy) * wo)
            if clip:  # the row finished as it is copied (``_clip_one``'s two selects: LLVM vectorises the loop)
                for ox in range(u(wo)):
                    v = buf[src + ox] + b if has_bias else buf[src + ox]
                    flat[dst + ox] = _clip_one(v * a + t if affine else v, low, high)
            elif has_bias:
                for ox in range(u(wo)):
                    flat[dst + ox] = buf[src + ox] + b
            else:
                for ox in range(u(wo)):
                    flat[dst + ox] = buf[src + ox]


@numba.njit(cache=True, nogil=True)
def _phases(x, top, left, sh, sw, hq, wq, src):
    """src[((ci*sh + py)*sw + px)*hq*wq + r*wq + c] = x_pad[ci, r*sh + py, c*sw + px] (zero outside x),
    then zeros to src's end: the polyphase planes ``_blocks`` reads, of one image x (C_in, H, W)."""
    u = np.uint64  # unsigned indices, as in ``_crop``
    c_in, h, w = x.shape
    flat = x.reshape(-1)
    i = 0
    for ci in range(c_in):
        for py in range(sh):
            for px in range(sw):
                c_lo = min(wq, max(0, -((px - left) // sw)))  # the first column c with c*sw + px - left >= 0
                c_hi = max(c_lo, min(wq, (w - 1 - px + left) // sw + 1))  # past the last with ... < w
                for r in range(hq):
                    iy = r * sh + py - top
                    if not 0 <= iy < h:
                        src[i:i + wq] = 0
                    else:
                        src[i:i + c_lo] = 0
                        first = u((ci * h + iy) * w + c_lo * sw + px - left)  # x[ci, iy, c_lo*sw + px - left]
                        if sw == 1:
                            for c in range(u(c_hi - c_lo)):
                                src[u(i + c_lo) + c] = flat[first + c]
                        else:
                            for c in range(u(c_hi - c_lo)):
                                src[u(i + c_lo) + c] = flat[first + c * u(sw)]
                        src[i + c_hi:i + wq] = 0
                    i += wq
    src[i:] = 0


@numba.njit(cache=True, nogil=True)
def _finished_blocks(src, offs, wp, cb0, cb1, n_blocks, wq, bias, has_bias, fin, affine, clip, buf, y):
    """``_blocks`` for channel blocks cb0..cb1 of one image (every pixel block), each block's sums cropped
    into y and finished (``_crop``; fin = (scale, shift, [low, high])) while they are in cache."""
    scale, shift, bounds = fin
    for cb in range(cb0, cb1):
        _blocks(src, offs, wp, cb, 0, n_blocks, buf)
        _crop(buf, buf.shape[0] // R, wq, cb * R, 0, y.shape[1], bias, has_bias, y, scale, shift, bounds[0],
              bounds[1], affine, clip)


@numba.njit(cache=True, nogil=True)
def _images(x, top, left, sh, sw, hq, wq, offs, wp, n_blocks, bias, has_bias, fin, affine, clip, src, buf, y):
    """``_phases`` then ``_finished_blocks`` (every channel and pixel block) for each image of x into y."""
    n_cb = wp.shape[0] // (offs.shape[0] * R)
    for n in range(x.shape[0]):
        _phases(x[n], top, left, sh, sw, hq, wq, src)
        _finished_blocks(src, offs, wp, 0, n_cb, n_blocks, wq, bias, has_bias, fin, affine, clip, buf, y[n])


@functools.lru_cache(maxsize=256)
def _geometry(c_in: int, h: int, wd: int, kh: int, kw: int, stride: Pair, pad4: Pad4, dilation: Pair, out_hw: Pair,
              lanes: int) -> tuple[int, int, np.ndarray, int, int]:
    """(hq, wq, offs, pixel blocks, src size) of a layer: shapes only, so computed once per layer shape
    (a small layer's whole forward pass takes well under a millisecond; this took 0.1 ms of it)."""
    (sh, sw), (dh, dw), (top, bottom, left, right) = stride, dilation, pad4
    hq, wq = -(-(h + top + bottom) // sh), -(-(wd + left + right) // sw)
    plane = hq * wq
    ci, ky, kx = np.ogrid[:c_in, :kh * dh:dh, :kw * dw:dw]
    phase = (ci * sh + ky % sh) * sw + kx % sw
    offs = (phase * plane + (ky // sh) * wq + kx // sw).reshape(-1).astype(np.intp)
    offs.flags.writeable = False  # shared by every call with this geometry
    block = PV * lanes
    blocks = -(-(out_hw[0] * wq) // block)  # pixel blocks that cover the grid's rows
    return hq, wq, offs, blocks, max(c_in * sh * sw * plane, int(offs.max()) + blocks * block)


class _Plan:
    """The geometry of one direct forward pass: tap offsets, packed weights, buffer sizes."""

    def __init__(self, x_shape: tuple[int, ...], w: np.ndarray, stride: Pair, pad4: Pad4, dilation: Pair,
                 out_hw: Pair) -> None:
        _, c_in, h, wd = x_shape
        c_out, _, kh, kw = w.shape
        self.geometry = pad4[0], pad4[2], stride[0], stride[1]  # top, left, sh, sw
        self.hq, self.wq, self.offs, self.blocks, self.src_size = _geometry(
            c_in, h, wd, kh, kw, tuple(stride), tuple(pad4), tuple(dilation), tuple(out_hw), simd.lanes_of(w.dtype))
        self.buf_size = R * self.blocks * PV * simd.lanes_of(w.dtype)
        self.n_cb = -(-c_out // R)
        wp = np.zeros((self.n_cb * R, c_in * kh * kw), dtype=w.dtype)
        wp[:c_out] = w.reshape(c_out, -1)
        self.wp = np.ascontiguousarray(wp.reshape(self.n_cb, R, -1).transpose(0, 2, 1)).reshape(-1)


def _share_image(plan: _Plan, src: np.ndarray, bias: np.ndarray, has_bias: bool, fin: tuple, affine: bool,
                 clip: bool, y: np.ndarray, work: float) -> None:
    """One image's blocks (its polyphase planes in src) split between the threads: by channel blocks,
    or, with fewer of those than threads, by pixel blocks one channel block at a time."""
    if plan.n_cb >= numba.get_num_threads():
        def run_channels(part: slice, _parallel: bool) -> None:
            _finished_blocks(src, plan.offs, plan.wp, part.start, part.stop, plan.blocks, plan.wq, bias, has_bias,
                             fin, affine, clip, cpu_workspace.scratch("direct sums", plan.buf_size, src.dtype), y)

        cpu_threads.map_batch(run_channels, plan.n_cb, work)
        return
    buf = cpu_workspace.scratch("direct sums", plan.buf_size, src.dtype)
    for cb in range(plan.n_cb):
        def run_pixels(part: slice, _parallel: bool, cb: int = cb) -> None:
            _blocks(src, plan.offs, plan.wp, cb, part.start, part.stop, buf)

        cpu_threads.map_batch(run_pixels, plan.blocks, work / plan.n_cb)
        _crop(buf, buf.shape[0] // R, plan.wq, cb * R, 0, y.shape[1], bias, has_bias, y, *fin[:2], fin[2][0],
              fin[2][1], affine, clip)  # once every thread is done


def finish_arrays(finish: tuple | None, dtype: np.dtype) -> tuple[tuple, bool, bool]:
    """``finish`` = (scale, shift, low, high) or None as the kernels take it: ((scale, shift, [low, high]),
    affine, clip); scale and shift None: the clip alone."""
    scale, shift, low, high = finish if finish is not None else (None, None, -np.inf, np.inf)
    affine = scale is not None
    arrays = tuple(np.ascontiguousarray(v if affine else np.zeros(0), dtype=dtype).reshape(-1) for v in (scale, shift))
    return (*arrays, np.array([low, high], dtype)), affine, finish is not None


def forward(x: np.ndarray, w: np.ndarray, stride: Pair, pad4: Pad4, dilation: Pair, out_hw: Pair,
            bias: np.ndarray | None = None, finish: tuple | None = None) -> np.ndarray:
    """Direct conv2d (groups 1): x (N, C_in, H, W), w (C_out, C_in, kh, kw) -> (N, C_out, Ho, Wo);
    bias (C_out,) or None, added as each output pixel is written (the same rounding as after).

    finish: None, or (scale, shift, low, high): the ops that follow, applied as each output row is
    written, ``clip(y * scale + shift, low, high)`` per channel (an eval batch norm and its rectifier),
    or with scale and shift None ``clip(y, low, high)`` (a rectifier alone); the same bits as those
    ops apart, without a second pass over the output (by the thread that wrote it, while in cache).

    Threads take images; with fewer images than threads (one photo), they take the channel blocks
    (or, with fewer of those than threads, the pixel blocks) of each image. Every pixel's sum is the same.
    """
    n, c_out = x.shape[0], w.shape[0]
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=x.dtype) if has_bias else np.zeros(1, x.dtype)
    fin, affine, clip = finish_arrays(finish, x.dtype)
    plan = _Plan(x.shape, w, stride, pad4, dilation, out_hw)
    y = cpu_workspace.empty((n, c_out, *out_hw), x.dtype)  # reused across a streamed method's batches
    work = y.size * plan.offs.shape[0]
    threads = numba.get_num_threads()

    if n >= threads:
        def run(part: slice, _parallel: bool) -> None:
            src = cpu_workspace.scratch("direct planes", plan.src_size, x.dtype)
            buf = cpu_workspace.scratch("direct sums", plan.buf_size, x.dtype)
            _images(x[part], *plan.geometry, plan.hq, plan.wq, plan.offs, plan.wp, plan.blocks, b, has_bias, fin,
                    affine, clip, src, buf, y[part])

        cpu_threads.map_batch(run, n, work)
        return y
    src = cpu_workspace.scratch("direct planes", plan.src_size, x.dtype)
    for image, out in zip(x, y, strict=True):  # one photo (or fewer than the threads): the threads share its blocks
        _phases(image, *plan.geometry, plan.hq, plan.wq, src)
        _share_image(plan, src, b, has_bias, fin, affine, clip, out, work / n)
    return y


# ----------------------------------------------------------------------------- input gradient
@numba.njit(cache=True, nogil=True)
def _backward_input(g, w, sh, sw, dh, dw, dxph):
    """dxph (N, C_in, Hp, sw, Wq) += the adjoint of the forward sum applied to g (N, C_out, Ho, Wo), at any
    stride; dxph (the padded input's column phases, ``polyphase``'s layout) starts at 0."""
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
    where that padding is not negative it runs as ``forward`` (the register-blocked kernel). Otherwise
    (stride > 1, or padding beyond the kernel's reach) it is the scatter below.
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
# dL/dw[co, t] = sum_n sum_q g[n, co, q] * src_n[offs[t] + q]: the forward's sum read the other way,
# over the grid's pixels q instead of the taps, with g laid out on the same grid (zero in its garbage
# columns, so they add nothing). A block of RG output channels x RT taps keeps RG*RT vectors of
# partial sums in registers while q runs over the grids of a chunk of images (as many as fit half
# of L2); then each vector's lanes are added up into the block's RG*RT sums.
RG, RT = 4, 6  # output channels x taps per block: 24 vectors of partial sums
CHUNK_BYTES = 1 << 20  # the polyphase inputs and gridded gradients of one chunk of images
QSPAN = 1024  # grid pixels per pass: a block's RG rows of g and its taps' rows of src stay in L1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _weight_blocks(src, offs, gq, lq, m, cg0, cg1, acc):
    """acc[c, t] += sum over the m images i and grid vectors q of gq[i, c, q:q+lanes] . src[i, offs[t] + q:...]
    for the channel blocks cg0..cg1 (of RG channels) and every block of RT taps.

    src: m polyphase images (``src.shape[0] // m`` each), gq: m gridded gradients (channels padded
    to RG, lq each, lq a whole number of vectors); offs padded to whole blocks of RT taps (the extra
    taps read valid memory; their sums are dropped); acc: (channels padded to RG, taps padded).
    """
    n_taps, lanes = offs.shape[0], simd.lanes(src)
    src_size, g_size = src.shape[0] // m, gq.shape[0] // m
    span = QSPAN // lanes * lanes
    for qa in range(0, lq, span):
      qb = min(lq, qa + span)
      for cg in range(cg0, cg1):
        for t0 in range(0, n_taps, RT):
            a0 = simd.vzero(src); a1 = simd.vzero(src); a2 = simd.vzero(src)  # noqa: E702 (channel 0, taps 0-2)
            a3 = simd.vzero(src); a4 = simd.vzero(src); a5 = simd.vzero(src)  # noqa: E702
            b0 = simd.vzero(src); b1 = simd.vzero(src); b2 = simd.vzero(src)  # noqa: E702
            b3 = simd.vzero(src); b4 = simd.vzero(src); b5 = simd.vzero(src)  # noqa: E702
            c0 = simd.vzero(src); c1 = simd.vzero(src); c2 = simd.vzero(src)  # noqa: E702
            c3 = simd.vzero(src); c4 = simd.vzero(src); c5 = simd.vzero(src)  # noqa: E702
            d0 = simd.vzero(src); d1 = simd.vzero(src); d2 = simd.vzero(src)  # noqa: E702
            d3 = simd.vzero(src); d4 = simd.vzero(src); d5 = simd.vzero(src)  # noqa: E702 (channel 3, taps 3-5)
            for i in range(m):
                s0, g0 = i * src_size, i * g_size + cg * RG * lq
                o0, o1, o2 = s0 + offs[t0], s0 + offs[t0 + 1], s0 + offs[t0 + 2]
                o3, o4, o5 = s0 + offs[t0 + 3], s0 + offs[t0 + 4], s0 + offs[t0 + 5]
                for q in range(qa, qb, lanes):
                    x0, x1, x2 = simd.vload(src, o0 + q), simd.vload(src, o1 + q), simd.vload(src, o2 + q)
                    x3, x4, x5 = simd.vload(src, o3 + q), simd.vload(src, o4 + q), simd.vload(src, o5 + q)
                    g = simd.vload(gq, g0 + q)
                    a0, a1, a2 = simd.vfma(g, x0, a0), simd.vfma(g, x1, a1), simd.vfma(g, x2, a2)
                    a3, a4, a5 = simd.vfma(g, x3, a3), simd.vfma(g, x4, a4), simd.vfma(g, x5, a5)
                    g = simd.vload(gq, g0 + lq + q)
                    b0, b1, b2 = simd.vfma(g, x0, b0), simd.vfma(g, x1, b1), simd.vfma(g, x2, b2)
                    b3, b4, b5 = simd.vfma(g, x3, b3), simd.vfma(g, x4, b4), simd.vfma(g, x5, b5)
                    g = simd.vload(gq, g0 + 2 * lq + q)
                    c0, c1, c2 = simd.vfma(g, x0, c0), simd.vfma(g, x1, c1), simd.vfma(g, x2, c2)
                    c3, c4, c5 = simd.vfma(g, x3, c3), simd.vfma(g, x4, c4), simd.vfma(g, x5, c5)
                    g = simd.vload(gq, g0 + 3 * lq + q)
                    d0, d1, d2 = simd.vfma(g, x0, d0), simd.vfma(g, x1, d1), simd.vfma(g, x2, d2)
                    d3, d4, d5 = simd.vfma(g, x3, d3), simd.vfma(g, x4, d4), simd.vfma(g, x5, d5)
            for c, (v0, v1, v2, v3, v4, v5) in enumerate(((a0, a1, a2, a3, a4, a5), (b0, b1, b2, b3, b4, b5),
                                                          (c0, c1, c2, c3, c4, c5), (d0, d1, d2, d3, d4, d5))):
                row = acc[cg * RG + c]
                row[t0] += simd.vsum(v0)
                row[t0 + 1] += simd.vsum(v1)
                row[t0 + 2] += simd.vsum(v2)
                row[t0 + 3] += simd.vsum(v3)
                row[t0 + 4] += simd.vsum(v4)
                row[t0 + 5] += simd.vsum(v5)


@numba.njit(cache=True, nogil=True)
def _grid(g, wq, lq, gq):
    """gq[c, oy*wq + ox] = g[c, oy, ox] for ox < Wo, zero elsewhere: one image's output gradient on the
    forward's grid (gq: (channels padded to RG) x lq, flat)."""
    u = np.uint64  # unsigned indices, as in ``_crop``
    c_out, ho, wo = g.shape
    flat = g.reshape(-1)
    gq[:] = 0
    for c in range(c_out):
        for oy in range(ho):
            dst, src = u(c * lq + oy * wq), u((c * ho + oy) * wo)
            for ox in range(u(wo)):
                gq[dst + ox] = flat[src + ox]


@numba.njit(cache=True, nogil=True)
def _weight_images(x, g, top, left, sh, sw, hq, wq, offs, lq, m, cg0, cg1, src, gq, acc):
    """``_weight_blocks`` over the images of x (N, C_in, H, W) and g (N, C_out, Ho, Wo), m at a time, into acc."""
    src_size, g_size = src.shape[0] // m, gq.shape[0] // m
    for n0 in range(0, x.shape[0], m):
        k = min(m, x.shape[0] - n0)
        for i in range(k):
            _phases(x[n0 + i], top, left, sh, sw, hq, wq, src[i * src_size:(i + 1) * src_size])
            _grid(g[n0 + i], wq, lq, gq[i * g_size:(i + 1) * g_size])
        _weight_blocks(src[:k * src_size], offs, gq[:k * g_size], lq, k, cg0, cg1, acc)


def backward_weight(g: np.ndarray, x: np.ndarray, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4,
                    dilation: Pair) -> np.ndarray:
    """dL/dw of the direct conv2d: g (N, C_out, Ho, Wo), x (N, C_in, H, W) -> ``w_shape``.

    Each thread sums a slice of the batch into its own sums, added slice by slice at the end; with
    fewer images than threads, the threads take blocks of output channels instead (then the bits
    equal one thread's).
    """
    n, c_out, ho, _ = g.shape
    if n == 0 or g.size == 0:  # nothing to sum
        return np.zeros(w_shape, dtype=g.dtype)
    g = np.ascontiguousarray(g)
    x = np.ascontiguousarray(x, dtype=g.dtype)
    plan = _Plan(x.shape, np.zeros((1, *w_shape[1:]), g.dtype), stride, pad4, dilation, g.shape[2:])  # geometry only
    lanes = simd.lanes_of(g.dtype)
    lq = -(-(ho * plan.wq) // lanes) * lanes
    n_taps = plan.offs.shape[0]
    offs = np.zeros(-(-n_taps // RT) * RT, np.intp)
    offs[:n_taps] = plan.offs
    n_cg = -(-c_out // RG)
    src_size, g_size = max(plan.src_size, int(offs.max()) + lq), n_cg * RG * lq
    m = max(1, CHUNK_BYTES // ((src_size + g_size) * g.itemsize))

    def partial(images: slice, cg: slice) -> np.ndarray:
        acc = np.zeros((n_cg * RG, offs.shape[0]), g.dtype)
        k = min(m, images.stop - images.start)
        src = cpu_workspace.scratch("direct planes", k * src_size, g.dtype)
        gq = cpu_workspace.scratch("direct gradients", k * g_size, g.dtype)
        _weight_images(x[images], g[images], *plan.geometry, plan.hq, plan.wq, offs, lq, k, cg.start, cg.stop, src,
                       gq, acc)
        return acc

    work = g.size * n_taps
    if n >= numba.get_num_threads():
        acc = sum(cpu_threads.map_batch(lambda part, _parallel: partial(part, slice(0, n_cg)), n, work))
    else:  # one photo: the threads take channel blocks, each its own rows of acc
        acc = np.zeros((n_cg * RG, offs.shape[0]), g.dtype)
        for part, sums in cpu_threads.map_batch(lambda part, _parallel: (part, partial(slice(0, n), part)), n_cg, work):
            acc[part.start * RG:part.stop * RG] = sums[part.start * RG:part.stop * RG]
    return acc[:c_out, :n_taps].reshape(w_shape)


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
