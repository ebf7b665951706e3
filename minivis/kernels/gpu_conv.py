"""GPU convolution kernels (Numba-CUDA): the same functions as ``cpu_conv``, on CuPy arrays.

``functional/conv.py`` (its reference path) and ``conv_plan.py`` (its tiles) call ``im2col``,
``col2im`` and ``depthwise_*`` on whichever kernel module ``backend.kernels`` returns; the GEMMs
between them are ``xp.matmul`` (cuBLAS on the GPU). Notation as in ``cpu_conv``: output pixel
``(oh, ow)`` with kernel tap ``(i, j)`` reads input pixel

    ih = oh*sh - top + i*dh,    iw = ow*sw - left + j*dw        (zero where outside the input).

One GPU thread computes one output element (see ``gpu_launch`` for the grid-stride loops), and
every kernel *gathers*: a thread reads what it needs and writes only its own element, so there
are no atomic adds and results do not depend on thread scheduling (deterministic).

* ``im2col``: one thread per ``cols`` entry ``(n, (c*kh + i)*kw + j, oh*Wo + ow)``, a copy.
* ``col2im``: one thread per input pixel, summing the ``cols`` entries of the taps that read it.
  A tap ``(i, j)`` reads ``(ih, iw)`` from output pixel ``oh = (ih + top - i*dh) / sh`` when that
  division is exact and in range. Taps are summed in the same order as ``cpu_conv.col2im``
  (``i`` then ``j``), so both give bit-identical results.
* ``depthwise_forward`` / ``depthwise_backward_input``: direct, one thread per output or input pixel.
* ``depthwise_backward_weight``: one block per weight tap ``(co, i, j)``; its threads stride over
  all ``N*Ho*Wo`` output pixels, then add their partial sums in a fixed tree in shared memory.
  Partial sums are float64 (the tap sums over a whole batch).
"""

from __future__ import annotations

from typing import Any

from numba import cuda

from minivis import backend
from minivis.kernels.cpu_conv import output_size  # noqa: F401 (same module interface as cpu_conv)
from minivis.kernels.gpu_launch import MAX_BLOCKS, REDUCE_THREADS, SIM_THREADS, SIMULATED, launch, launch_blocks


def _geometry(stride, pad4, dilation) -> tuple[int, int, int, int, int, int]:
    """The scalars every kernel takes: (sh, sw, top, left, dh, dw); bottom/right padding only
    shows in the output size, which the kernels read from their array shapes."""
    return int(stride[0]), int(stride[1]), int(pad4[0]), int(pad4[2]), int(dilation[0]), int(dilation[1])


# ----------------------------------------------------------------------------- im2col / col2im
@cuda.jit
def _im2col(x, kh, kw, sh, sw, top, left, dh, dw, wo, cols):
    n_img, rows, n_pix = cols.shape
    height, width = x.shape[2], x.shape[3]
    taps = kh * kw
    for idx in range(cuda.grid(1), n_img * rows * n_pix, cuda.gridsize(1)):
        pix = idx % n_pix               # consecutive threads: consecutive output pixels (coalesced writes)
        row = (idx // n_pix) % rows
        n = idx // (n_pix * rows)
        c, tap = row // taps, row % taps
        ih = (pix // wo) * sh - top + (tap // kw) * dh
        iw = (pix % wo) * sw - left + (tap % kw) * dw
        if 0 <= ih < height and 0 <= iw < width:
            cols[n, row, pix] = x[n, c, ih, iw]
        else:
            cols[n, row, pix] = 0


def im2col(x: Any, kh: int, kw: int, stride: tuple[int, int], pad4: tuple[int, int, int, int],
           dilation: tuple[int, int], out_hw: tuple[int, int], out: Any = None, parallel: bool = True) -> Any:
    """``cols: (N, C*kh*kw, Ho*Wo)`` with ``cols[n, (c*kh + i)*kw + j, oh*Wo + ow] = x_pad[n, c, ih, iw]``.

    x: (N, C, H, W) on the GPU; ``out``: an optional C-contiguous buffer of that shape to fill.
    ``parallel`` is accepted for signature parity with ``cpu_conv`` and ignored.
    """
    xp = backend.xp(x)
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    ho, wo = out_hw
    cols = xp.empty((n, c * kh * kw, ho * wo), dtype=x.dtype) if out is None else out
    sh, sw, top, left, dh, dw = _geometry(stride, pad4, dilation)
    launch(_im2col, cols.size, x, x, kh, kw, sh, sw, top, left, dh, dw, wo, cols)
    return cols


@cuda.jit
def _col2im(cols, kh, kw, sh, sw, top, left, dh, dw, ho, wo, x):
    n_img, channels, height, width = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        iw = idx % width
        ih = (idx // width) % height
        c = (idx // (width * height)) % channels
        n = idx // (width * height * channels)
        acc = x.dtype.type(0)  # accumulate in the array's dtype, as cpu_conv.col2im does
        for i in range(kh):
            t = ih + top - i * dh           # = oh * sh for the output row that tap i reads ih from
            if t < 0:
                break                       # t only decreases with i
            if t % sh != 0 or t // sh >= ho:
                continue
            for j in range(kw):
                u = iw + left - j * dw
                if u < 0:
                    break
                if u % sw != 0 or u // sw >= wo:
                    continue
                acc += cols[n, (c * kh + i) * kw + j, (t // sh) * wo + u // sw]
        x[n, c, ih, iw] = acc


def col2im(cols: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: tuple[int, int],
           pad4: tuple[int, int, int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
           out: Any = None, parallel: bool = True, accumulate: bool = False) -> Any:
    """The adjoint of ``im2col``: ``x[n, c, ih, iw] = sum of the cols entries im2col read from there``.

    cols: (N, C*kh*kw, Ho*Wo) -> x: ``x_shape`` = (N, C, H, W); ``out``: an optional C-contiguous
    array of ``x_shape`` to write into (overwritten, every element written; or added to with
    ``accumulate=True``). ``parallel`` is accepted for signature parity with ``cpu_conv`` and ignored.
    """
    xp = backend.xp(cols)
    cols = xp.ascontiguousarray(cols)
    if accumulate and out is not None:
        out += col2im(cols, x_shape, kh, kw, stride, pad4, dilation, out_hw)
        return out
    x = xp.empty(tuple(x_shape), dtype=cols.dtype) if out is None else out
    sh, sw, top, left, dh, dw = _geometry(stride, pad4, dilation)
    launch(_col2im, x.size, cols, cols, kh, kw, sh, sw, top, left, dh, dw, out_hw[0], out_hw[1], x)
    return x


# ----------------------------------------------------------------------------- direct depthwise
# Depthwise: groups == C_in, input channel ci feeds output channels ci*M .. ci*M + M-1 (M = C_out/C_in).
@cuda.jit
def _depthwise_forward(x, w, sh, sw, top, left, dh, dw, out):
    n_img, c_out, ho, wo = out.shape
    height, width = x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    mult = c_out // x.shape[1]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ow = idx % wo
        oh = (idx // wo) % ho
        co = (idx // (wo * ho)) % c_out
        n = idx // (wo * ho * c_out)
        ci = co // mult
        acc = out.dtype.type(0)
        for i in range(kh):
            ih = oh * sh - top + i * dh
            if 0 <= ih < height:
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if 0 <= iw < width:
                        acc += w[co, 0, i, j] * x[n, ci, ih, iw]
        out[n, co, oh, ow] = acc


def depthwise_forward(x: Any, w: Any, stride: tuple[int, int], pad4: tuple[int, int, int, int],
                      dilation: tuple[int, int], out_hw: tuple[int, int], bias: Any = None,
                      bn_relu: tuple | None = None) -> Any:
    """out[n, co, oh, ow] = sum_ij w[co, 0, i, j] * x_pad[n, co // M, ih, iw] (+ bias[co]).

    x: (N, C_in, H, W), w: (C_out, 1, kh, kw) with C_out = M * C_in -> out: (N, C_out, Ho, Wo);
    bias: (C_out,) or None; bn_relu: (scale, shift, low, high) or None, then
    ``clip(out * scale + shift, low, high)`` per channel (the CPU kernels' signature; both are
    applied after the kernel here).
    """
    xp = backend.xp(x)
    x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w, dtype=x.dtype)
    out = xp.empty((x.shape[0], w.shape[0]) + tuple(out_hw), dtype=x.dtype)
    launch(_depthwise_forward, out.size, x, x, w, *_geometry(stride, pad4, dilation), out)
    if bias is not None:
        xp.add(out, bias.reshape(1, -1, 1, 1), out=out)
    if bn_relu is not None:
        scale, shift, low, high = bn_relu
        xp.multiply(out, scale.reshape(1, -1, 1, 1), out=out)
        xp.add(out, shift.reshape(1, -1, 1, 1), out=out)
        xp.clip(out, low, high, out=out)
    return out


@cuda.jit
def _depthwise_backward_input(g, w, sh, sw, top, left, dh, dw, dx):
    n_img, c_in, height, width = dx.shape
    ho, wo = g.shape[2], g.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    mult = g.shape[1] // c_in
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        iw = idx % width
        ih = (idx // width) % height
        ci = (idx // (width * height)) % c_in
        n = idx // (width * height * c_in)
        acc = dx.dtype.type(0)
        for m in range(mult):
            co = ci * mult + m
            for i in range(kh):
                t = ih + top - i * dh
                if t < 0:
                    break
                if t % sh != 0 or t // sh >= ho:
                    continue
                for j in range(kw):
                    u = iw + left - j * dw
                    if u < 0:
                        break
                    if u % sw != 0 or u // sw >= wo:
                        continue
                    acc += w[co, 0, i, j] * g[n, co, t // sh, u // sw]
        dx[n, ci, ih, iw] = acc


def depthwise_backward_input(g: Any, w: Any, x_shape: tuple[int, int, int, int], stride: tuple[int, int],
                             pad4: tuple[int, int, int, int], dilation: tuple[int, int]) -> Any:
    """dx[n, ci, ih, iw] = sum over co in ci's group, taps and output pixels that read (ih, iw) of w * g.

    g: (N, C_out, Ho, Wo), w: (C_out, 1, kh, kw) -> dx: ``x_shape`` = (N, C_in, H, W).
    """
    xp = backend.xp(g)
    g, w = xp.ascontiguousarray(g), xp.ascontiguousarray(w, dtype=g.dtype)
    dx = xp.empty(tuple(x_shape), dtype=g.dtype)
    launch(_depthwise_backward_input, dx.size, g, g, w, *_geometry(stride, pad4, dilation), dx)
    return dx


@cuda.jit
def _depthwise_backward_weight(g, x, sh, sw, top, left, dh, dw, dw_out):
    c_out, kh, kw = dw_out.shape[0], dw_out.shape[2], dw_out.shape[3]
    n_img, ho, wo = g.shape[0], g.shape[2], g.shape[3]
    height, width = x.shape[2], x.shape[3]
    mult = c_out // x.shape[1]
    partial = cuda.shared.array(REDUCE_THREADS, dtype="float64")
    tid = cuda.threadIdx.x
    for block in range(cuda.blockIdx.x, c_out * kh * kw, cuda.gridDim.x):
        co, tap = block // (kh * kw), block % (kh * kw)
        i, j = tap // kw, tap % kw
        ci = co // mult
        acc = 0.0
        for q in range(tid, n_img * ho * wo, REDUCE_THREADS):  # consecutive threads: consecutive pixels
            ow = q % wo
            oh = (q // wo) % ho
            n = q // (wo * ho)
            ih = oh * sh - top + i * dh
            iw = ow * sw - left + j * dw
            if 0 <= ih < height and 0 <= iw < width:
                acc += float(g[n, co, oh, ow]) * float(x[n, ci, ih, iw])
        partial[tid] = acc
        cuda.syncthreads()
        step = REDUCE_THREADS // 2
        while step > 0:  # a fixed summation tree: the same result on every run
            if tid < step:
                partial[tid] += partial[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            dw_out[co, 0, i, j] = partial[0]
        cuda.syncthreads()  # partial[0] is read before the next tap overwrites it


def depthwise_backward_weight(g: Any, x: Any, w_shape: tuple[int, int, int, int], stride: tuple[int, int],
                              pad4: tuple[int, int, int, int], dilation: tuple[int, int]) -> Any:
    """dw[co, 0, i, j] = sum_{n, oh, ow} g[n, co, oh, ow] * x_pad[n, co // M, ih, iw].

    g: (N, C_out, Ho, Wo), x: (N, C_in, H, W) -> dw: ``w_shape`` = (C_out, 1, kh, kw).
    """
    xp = backend.xp(g)
    g, x = xp.ascontiguousarray(g), xp.ascontiguousarray(x, dtype=g.dtype)
    dw = xp.empty(tuple(w_shape), dtype=g.dtype)
    taps = w_shape[0] * w_shape[2] * w_shape[3]  # a block each (an empty batch writes zeros)
    blocks = min(taps, SIM_THREADS if SIMULATED else MAX_BLOCKS)  # blocks loop over the taps beyond
    launch_blocks(_depthwise_backward_weight, blocks, REDUCE_THREADS, g, g, x, *_geometry(stride, pad4, dilation), dw)
    return dw
