"""2-D convolution and transposed convolution, forward and backward on one page.

A convolution with weight ``w: (C_out, C_in/G, kh, kw)`` maps ``x: (N, C_in, H, W)`` to
``y: (N, C_out, Ho, Wo)``:

    y[n, co, oh, ow] = b[co] + sum_{c, i, j} w[co, c, i, j] * x_pad[n, g*C_in/G + c, oh*sh + i*dh, ow*sw + j*dw]

with ``g = co // (C_out/G)`` the group of ``co``. It is linear in ``x`` and in ``w``, so its
backward is two more linear maps:

* ``conv2d_backward_input``: the *adjoint* (transpose) of ``x -> conv2d(x)``. Each output pixel
  sends ``g * w`` back onto the input window it read.
* ``conv2d_backward_weight``: each weight tap collects ``g * x`` over all images and output pixels.

On the GEMM path (``im2col``) all three are matrix products. With ``cols = im2col(x)`` viewed as
``(N, G, K, L)`` (``K = C_in/G*kh*kw`` rows, ``L = Ho*Wo`` output pixels) and ``W = w`` viewed as
``(G, C_out/G, K)``:

    forward            y  = W @ cols                 (conv2d_forward)
    backward-input     dx = col2im(W^T @ g)          (conv2d_backward, both gradients in one pass)
    backward-weight    dw = sum_n g[n] @ cols[n]^T

Three shapes skip im2col: a 1x1 convolution with stride 1 and no padding already has ``x`` as its
cols matrix; a depthwise one (one input channel per group) would be N*C tiny GEMMs, so direct
kernels (``cpu_conv.depthwise_*``) compute it instead; and on the CPU a stride-1 3x3 one (every
VGG layer) runs as Winograd F(2x2, 3x3) (``cpu_winograd``: 16 GEMMs with K = C_in instead of one
with K = 9*C_in, 2.25x fewer multiply-adds), forward and input gradient alike.

A transposed convolution is, by definition, the adjoint of a convolution, so
``conv_transpose2d`` needs no kernels of its own: its forward IS ``conv2d_backward_input``, its
input-gradient IS ``conv2d_forward`` and its weight-gradient is ``conv2d_backward_weight`` with
the roles of input and output swapped.

Padding ``pad4`` is ``(top, bottom, left, right)``; ``padding="same"`` follows TensorFlow's SAME
(also for stride > 1): ``total = max((ceil(H/s) - 1)*s + d*(k-1) + 1 - H, 0)``, ``top = total//2``
and the odd pixel at the bottom/right.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.backend import FLOAT_DTYPES
from minivis.kernels import cpu_conv, cpu_threads, cpu_winograd
from minivis.validate import check_same_device, check_tensor, int_pair, padding4

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]


def _is_depthwise(c_in: int, groups: int, w_shape: tuple[int, ...]) -> bool:
    """One input channel per group: N*C tiny GEMMs would be slow, so a direct kernel does it.

    A single-channel input (``C_in == groups == 1``, e.g. MNIST's first layer) is left to the GEMM:
    there one (C_out x kh*kw) GEMM per image is large enough, and measured faster.
    """
    return groups == c_in and w_shape[1] == 1 and c_in > 1


def _is_pointwise(kh: int, kw: int, stride: Pair, pad4: Pad4) -> bool:
    """1x1, stride 1, no padding: the input already is its own im2col matrix (no copy needed)."""
    return kh == kw == 1 and stride == (1, 1) and pad4 == (0, 0, 0, 0)


def _out_hw(hw: tuple[int, ...], k: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair) -> Pair:
    return (cpu_conv.output_size(hw[0], k[0], stride[0], pad4[0], pad4[1], dilation[0]),
            cpu_conv.output_size(hw[1], k[1], stride[1], pad4[2], pad4[3], dilation[1]))


# ----------------------------------------------------------------------------- array-level building blocks
# Each product is a GEMM per image (and group), (C_out/G, K) @ (K, L'), over a *tile*: a chunk of
# m small images, or a band of output rows of one large image (L' = the band's pixels). A tile's
# cols matrix stays in cache between im2col writing it and the GEMM reading it. How an image is
# tiled depends only on its own shape, so its result never depends on the batch it came in (one
# wide GEMM over m images was 1.3-1.8x faster on 14x14 layers, but its rounding depended on m).
# On the CPU, ``cpu_threads.map_batch`` gives each thread its own run of tiles, and inside it
# everything is single-threaded (``parallel=False`` kernels, BLAS on one thread): one 224x224
# photo is split into row bands, so both cores work on it without BLAS's own threads.
CHUNK_BYTES = 256 << 10  # small images: one chunk's cols matrix, half a core's L2 (512 KiB here)
BAND_BYTES = 8 << 20  # an image whose cols matrix is larger is cut into row bands (one 224 px photo's
# layers are 14-115 MB; occlusion's batches of 20-40 px crops, 3.6-6 MB, run 14% faster as whole images,
# while VGG16's 14x14 stage at batch 1 (3.6 MB) then runs on one thread: 6% slower saliency)
BAND_PIXELS = 256  # output pixels per band (the GEMMs' N), at least: fewer calls and halo rows per image
MIN_BANDS = 4  # ... but a large image gets at least this many bands, so one photo keeps every core busy

Tile = tuple[slice, int, int]  # (images, first output row, end output row)


def _chunks(part: slice, bytes_per_image: int) -> list[slice]:
    """Slices of ``part`` (a slice of the batch) whose cols matrices take about ``CHUNK_BYTES`` each.

    Blocking keeps the matrix in cache between im2col writing it and the GEMM reading it, and one
    scratch buffer serves every chunk: a fresh 50 MB array per layer would cost page faults and
    twice the memory traffic. A chunk holds at least one image.
    """
    step = max(1, CHUNK_BYTES // max(bytes_per_image, 1))
    return [slice(start, min(start + step, part.stop)) for start in range(part.start, part.stop, step)]


def _tiles(kernels: types.ModuleType, n: int, ho: int, wo: int, bytes_per_image: int, min_rows: int) -> list[Tile]:
    """The work items of one convolution: chunks of whole images, or row bands of each image.

    An image whose cols matrix exceeds ``BAND_BYTES`` (on the CPU) is cut into equal bands of output
    rows, each at least ``min_rows`` tall and, where the image has room for ``MIN_BANDS`` of them,
    ``BAND_PIXELS`` wide. The cut depends on the image's shape only (not on the batch or the
    thread count). Tiles are listed image by image, band by band.
    """
    bands = 1
    if kernels is cpu_conv and bytes_per_image > BAND_BYTES:
        bands = max(ho // max(min_rows, -(-BAND_PIXELS // wo)), min(MIN_BANDS, ho // min_rows))
    if bands <= 1:
        return [(chunk, 0, ho) for chunk in _chunks(slice(0, n), bytes_per_image)]
    bounds = [ho * b // bands for b in range(bands + 1)]
    return [(slice(i, i + 1), r0, r1) for i in range(n) for r0, r1 in zip(bounds, bounds[1:], strict=False)]


def _min_band_rows(kh: int, stride: Pair, dilation: Pair) -> int:
    """Bands this tall read input rows that bands two apart never read (a window spans dh*(kh-1) + 1 rows)."""
    return dilation[0] * (kh - 1) // stride[0] + 1


def _band_pad(pad4: Pad4, r0: int, sh: int) -> Pad4:
    """The padding that makes im2col/col2im of a whole image produce only output rows ``r0..``.

    Output row ``r0 + oh`` reads input row ``(r0 + oh)*sh - top + i*dh = oh*sh - (top - r0*sh) + i*dh``,
    so a band is the same convolution with ``top - r0*sh`` (possibly negative) as its top padding.
    """
    return pad4[0] - r0 * sh, pad4[1], pad4[2], pad4[3]


def _over_tiles(kernels: types.ModuleType, tiles: list[Tile], work: int, fn: Any) -> list[Any]:
    """``fn(tiles_part, parallel)`` over the tiles: a run of tiles per CPU thread; one call on the GPU."""
    if kernels is cpu_conv:
        return cpu_threads.map_batch(lambda part, parallel: fn(tiles[part], parallel), len(tiles), work)
    return [fn(tiles, True)]


def _scratch(xp: Any, tiles: list[Tile], row_bytes: int, dtype: Any) -> Any:
    """A flat buffer for the largest tile's cols matrix; ``buffer[:size].reshape(m, K, L')`` views it."""
    largest = max(((t[0].stop - t[0].start) * (t[2] - t[1]) for t in tiles), default=0)
    return xp.empty(largest * row_bytes // np.dtype(dtype).itemsize, dtype=dtype)


# ----------------------------------------------------------------------------- Winograd F(2x2, 3x3)
# A stride-1 3x3 convolution (every VGG layer) multiplies 2.25x less through Winograd's minimal
# filtering (``cpu_winograd``): 16 GEMMs with K = C_in replace one with K = 9*C_in. Tiles are as
# above, in units of 2x2 output blocks: chunks of images, or bands of block rows; per tile
# V = input_transform(x), M[ab] = U[ab] @ V[ab], y = output_transform(M).
# When it pays, measured against im2col here (forward, 2 threads): from 16 channels on and, where
# the output is as wide as the input (padding 1: im2col's fast whole-plane copy), from 32 blocks per
# image and blocks x channels of 3072 on: at 32 channels Winograd ran 0.64x im2col's speed on 7x7
# maps, 0.83x on 14x14, 1.04x on 28x28; at 64 channels 0.91x, 1.03x, 1.26x; at 128 1.14x, 1.30x,
# 1.39x (small GEMMs lose to their overheads). Unpadded (incremental occlusion's regions), im2col
# copies short rows and Winograd ran 1.3-1.7x faster on all of those.
WINOGRAD_MIN_CHANNELS = 16  # input and output channels (the GEMMs' K and M), at least
WINOGRAD_MIN_BLOCKS = 32  # padding 1: 2x2 output blocks per image (the GEMMs' N), at least ...
WINOGRAD_MIN_SIZE = 3072  # ... and blocks x the fewer of the channels, at least
WINOGRAD_BAND_BYTES = 1 << 20  # an image whose V and M matrices exceed this is cut into bands ...
WINOGRAD_BAND_TILES = 192  # ... of at least this many tiles (the GEMMs' N)


def _is_winograd(kernels: types.ModuleType, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 out_hw: tuple[int, ...], stride: Pair, dilation: Pair, groups: int) -> bool:
    """3x3, stride 1, undilated, ungrouped, on the CPU, and large enough to pay: the Winograd path.

    The choice depends on the layer and one image's size only, never on the batch.
    """
    channels = min(x_shape[1], w_shape[0])
    if not (kernels is cpu_conv and tuple(w_shape[2:]) == (3, 3) and stride == (1, 1) and dilation == (1, 1)
            and groups == 1 and channels >= WINOGRAD_MIN_CHANNELS):
        return False
    blocks = -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
    return out_hw[1] != x_shape[3] or (blocks >= WINOGRAD_MIN_BLOCKS and blocks * channels >= WINOGRAD_MIN_SIZE)


_TRANSFORMS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("minivis_weight_transforms", default=None)
_TRANSFORMS_KEPT = 64  # weights whose transforms one block keeps (more: the oldest are dropped)


@contextmanager
def reuse_weight_transforms() -> Iterator[None]:
    """Inside the block, each weight array's Winograd filter transform is computed once and reused.

    The caller promises that no weight array changes in place inside the block (the
    visualisation methods, which freeze the model, run in one): a method's backward pass, and
    every later pass, then skips the transform (16/9 of the weight's size, ~15 ms per VGG16
    pass). Arrays are recognised by identity; the cache ends with the (outermost) block.
    """
    if _TRANSFORMS.get() is not None:
        yield
        return
    token = _TRANSFORMS.set({})
    try:
        yield
    finally:
        _TRANSFORMS.reset(token)


def _filter_transform(w: np.ndarray) -> np.ndarray:
    """``cpu_winograd.filter_transform(w)``, from the cache inside ``reuse_weight_transforms``."""
    cache = _TRANSFORMS.get()
    if cache is None:
        return cpu_winograd.filter_transform(w)
    hit = cache.get(id(w))
    if hit is None or hit[0] is not w:  # the array is kept alive with its entry, so its id is not reused
        if len(cache) >= _TRANSFORMS_KEPT:
            cache.pop(next(iter(cache)))
        hit = cache[id(w)] = (w, cpu_winograd.filter_transform(w))
    return hit[1]


def _winograd(x: np.ndarray, u: np.ndarray, pad4: Pad4, out_hw: tuple[int, ...], bias: Any = None,
              adjoint: bool = False) -> np.ndarray:
    """The stride-1 3x3 convolution of ``x`` by the weight whose filter transform is ``u: (16, C_out, C_in)``.

    ``adjoint=True``: its input-gradient instead, with ``x`` the output gradient (N, C_out, Ho, Wo)
    and ``pad4`` the adjoint's padding ``2 - pad``. Only ``pad4``'s top and left matter:
    ``out_hw`` says how many output pixels there are, and pixels outside ``x`` read as 0.
    """
    slots = cpu_winograd.ADJOINT_SLOTS if adjoint else cpu_winograd.FORWARD_SLOTS
    u = u.transpose(0, 2, 1) if adjoint else u  # U'[ab] = U[p(a)p(b)]^T, with V and M stored at p(a)p(b)
    n, c_in = x.shape[:2]
    c_out = u.shape[1]
    ho, wo = out_hw
    nty, ntx = -(-ho // 2), -(-wo // 2)
    out = np.empty((n, c_out, ho, wo), dtype=x.dtype)
    bias = np.zeros(c_out, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    tile_bytes = 16 * (c_in + c_out) * x.itemsize  # one tile's columns of V and M
    work = n * c_out * c_in * 9 * ho * wo
    bands = min(nty, nty * ntx // WINOGRAD_BAND_TILES) if tile_bytes * nty * ntx > WINOGRAD_BAND_BYTES else 1
    if bands <= 1 and n < numba.get_num_threads() and work >= cpu_threads.MIN_WORK:
        # a few small maps (VGG's 28x28 and 14x14 at batch 1): the threads split the 16 GEMMs instead
        v, mm = np.empty((n, 16, c_in, nty * ntx), dtype=x.dtype), np.empty((n, 16, c_out, nty * ntx), dtype=x.dtype)
        cpu_winograd.input_transform(x, pad4[0], pad4[2], 0, nty, slots, v)
        cpu_threads.map_batch(lambda part, _: np.matmul(u[part], v[:, part], out=mm[:, part]), 16, work)
        cpu_winograd.output_transform(mm, bias, 0, nty, slots, out)
        return out
    if bands > 1:
        bounds = [nty * b // bands for b in range(bands + 1)]
        tiles = [(slice(i, i + 1), r0, r1) for i in range(n) for r0, r1 in zip(bounds, bounds[1:], strict=False)]
    else:
        tiles = [(chunk, 0, nty) for chunk in _chunks(slice(0, n), tile_bytes * nty * ntx)]

    def run(part: list[Tile], parallel: bool) -> None:  # one thread's run of tiles
        scratch = _scratch(np, part, tile_bytes * ntx, x.dtype)
        for images, t0, t1 in part:
            m, count = images.stop - images.start, (t1 - t0) * ntx
            v = scratch[:m * 16 * c_in * count].reshape(m, 16, c_in, count)
            mm = scratch[v.size:v.size + m * 16 * c_out * count].reshape(m, 16, c_out, count)
            cpu_winograd.input_transform(x[images], pad4[0], pad4[2], t0, t1, slots, v)
            np.matmul(u, v, out=mm)
            cpu_winograd.output_transform(mm, bias, t0, t1, slots, out[images])

    _over_tiles(cpu_conv, tiles, work, run)
    return out


def conv2d_forward(x: Any, w: Any, stride: Pair, pad4: Pad4, dilation: Pair, groups: int, bias: Any = None) -> Any:
    """y = conv2d(x, w) + bias on arrays. x: (N, C_in, H, W), w: (C_out, C_in/G, kh, kw) -> (N, C_out, Ho, Wo).

    y[n] = W @ im2col(x)[n] per group: (C_out/G, K) @ (K, Ho*Wo) with K = C_in/G*kh*kw.
    bias: (C_out,) or None, added to each tile while it is in cache.
    """
    kernels, xp = backend.kernels("conv", x, "conv2d"), backend.xp(x)
    x = xp.ascontiguousarray(x)
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    ho, wo = _out_hw(x.shape[2:], (kh, kw), stride, pad4, dilation)
    k, k_g, pixels = c_in * kh * kw, c_in // groups * kh * kw, ho * wo
    b = None if bias is None else bias.reshape(1, c_out, 1, 1)
    if _is_depthwise(c_in, groups, w.shape) or _is_pointwise(kh, kw, stride, pad4):
        if _is_depthwise(c_in, groups, w.shape):
            out = kernels.depthwise_forward(x, w, stride, pad4, dilation, (ho, wo))
        else:  # x already is its own cols matrix
            out = xp.matmul(w.reshape(groups, c_out // groups, k_g), x.reshape(n, groups, k_g, pixels))
        out = out.reshape(n, c_out, ho, wo)
        return out if b is None else xp.add(out, b, out=out)
    if _is_winograd(kernels, x.shape, w.shape, (ho, wo), stride, dilation, groups):
        return _winograd(x, _filter_transform(w), pad4, (ho, wo), bias)
    w_g = w.reshape(groups, c_out // groups, k_g)
    out = xp.empty((n, c_out, ho, wo), dtype=x.dtype)
    out_g = out.reshape(n, groups, c_out // groups, pixels)  # a view: the GEMMs write NCHW directly
    row_bytes = k * wo * x.itemsize
    tiles = _tiles(kernels, n, ho, wo, row_bytes * ho, _min_band_rows(kh, stride, dilation))

    def run(part: list[Tile], parallel: bool) -> None:  # one thread's run of tiles
        scratch = _scratch(xp, part, row_bytes, x.dtype)
        for images, r0, r1 in part:
            m, band = images.stop - images.start, (r1 - r0) * wo
            cols = kernels.im2col(x[images], kh, kw, stride, _band_pad(pad4, r0, stride[0]), dilation, (r1 - r0, wo),
                                  out=scratch[:m * k * band].reshape(m, k, band), parallel=parallel)
            xp.matmul(w_g, cols.reshape(m, groups, k_g, band), out=out_g[images, :, :, r0 * wo:r1 * wo])
            if b is not None:
                out[images, :, r0:r1] += b

    _over_tiles(kernels, tiles, n * c_out * k_g * pixels, run)
    return out


def conv2d_backward(g: Any, w: Any, x: Any, w_shape: tuple[int, ...], x_shape: tuple[int, ...], stride: Pair,
                    pad4: Pad4, dilation: Pair, groups: int, need_input: bool = True,
                    need_weight: bool = True) -> tuple[Any, Any]:
    """(dL/dx, dL/dw) of a convolution, each None unless asked for, in one pass over g.

    g: (N, C_out, Ho, Wo); w: the weight (needed for dL/dx); x: the input (needed for dL/dw).

        dx[n] = col2im(W^T @ g[n])          dw = sum_n g[n] @ im2col(x)[n]^T        (per group)

    When both are asked for, each tile of g is used by both products while it is in cache.
    im2col is recomputed here rather than kept from the forward pass: holding every layer's cols
    matrix (kh*kw times the input) until backward would cost far more memory. Each thread sums
    its tiles into its own partial dw; the partials are added last. Neighbouring row bands add
    into the same input rows (where windows overlap), so banded tiles run in two waves, even
    bands then odd ones: no two threads ever add into the same row, and the order is fixed.
    """
    kernels, xp = backend.kernels("conv", g, "conv2d"), backend.xp(g)
    g = xp.ascontiguousarray(g)
    x = None if x is None else xp.ascontiguousarray(x)
    x_shape = tuple(x_shape)
    n, c_out, ho, wo = g.shape
    c_in, (kh, kw) = x_shape[1], w_shape[2:]
    k, k_g, pixels = c_in * kh * kw, c_in // groups * kh * kw, ho * wo
    if _is_depthwise(c_in, groups, w_shape):
        return (kernels.depthwise_backward_input(g, w, x_shape, stride, pad4, dilation) if need_input else None,
                kernels.depthwise_backward_weight(g, x, tuple(w_shape), stride, pad4, dilation)
                if need_weight else None)
    if need_input and _is_winograd(kernels, x_shape, w_shape, (ho, wo), stride, dilation, groups):
        # dx is the stride-1 convolution of g with the flipped, channel-swapped kernel, padded by 2 - pad
        dx = _winograd(g, _filter_transform(w), tuple(2 - p for p in pad4), x_shape[2:], adjoint=True)
        if not need_weight:
            return dx, None
        return dx, conv2d_backward(g, None, x, w_shape, x_shape, stride, pad4, dilation, groups, need_input=False)[1]
    g_g = g.reshape(n, groups, c_out // groups, pixels)
    if _is_pointwise(kh, kw, stride, pad4) and (ho, wo) == x_shape[2:]:  # x and dx are their own cols matrices
        dx = dw = None
        if need_input:
            dx = xp.matmul(w.reshape(groups, c_out // groups, k_g).transpose(0, 2, 1), g_g).reshape(x_shape)
        if need_weight:
            dw = xp.matmul(g_g, x.reshape(n, groups, k_g, pixels).transpose(0, 1, 3, 2)).sum(axis=0).reshape(w_shape)
        return dx, dw
    w_t = None if w is None else w.reshape(groups, c_out // groups, k_g).transpose(0, 2, 1)  # (G, K, C_out/G)
    row_bytes = k * wo * g.itemsize
    tiles = _tiles(kernels, n, ho, wo, row_bytes * ho, _min_band_rows(kh, stride, dilation))
    banded = bool(tiles) and tiles[0][2] - tiles[0][1] < ho
    dx = None
    if need_input:  # bands add into their input rows; whole images overwrite theirs
        dx = xp.zeros(x_shape, dtype=g.dtype) if banded else xp.empty(x_shape, dtype=g.dtype)

    def run(part: list[Tile], parallel: bool) -> Any:  # one thread's run of tiles -> its partial dw^T (G, K, C_out/G)
        scratch = _scratch(xp, part, row_bytes, g.dtype)
        dw_t = xp.zeros((groups, k_g, c_out // groups), dtype=g.dtype) if need_weight else None
        for images, r0, r1 in part:
            m, band, pad = images.stop - images.start, (r1 - r0) * wo, _band_pad(pad4, r0, stride[0])
            g_tile = g_g[images, :, :, r0 * wo:r1 * wo]
            cols = scratch[:m * k * band].reshape(m, groups, k_g, band)  # first dcols, then im2col(x)
            if need_input:
                xp.matmul(w_t, g_tile, out=cols)
                kernels.col2im(cols.reshape(m, k, band), (m,) + x_shape[1:], kh, kw, stride, pad, dilation,
                               (r1 - r0, wo), out=dx[images], parallel=parallel, accumulate=banded)
            if need_weight:
                kernels.im2col(x[images], kh, kw, stride, pad, dilation, (r1 - r0, wo), out=cols.reshape(m, k, band),
                               parallel=parallel)
                # dw^T = cols @ g^T: as (K, L) @ (L, C_out) measured ~20% faster than g @ cols^T
                dw_t += xp.matmul(cols, g_tile.transpose(0, 1, 3, 2)).sum(axis=0)
        return dw_t

    waves = [tiles]
    if banded and need_input:  # even bands of every image, then odd ones: the same order for every image
        per_image = len(tiles) // n
        waves = [[t for j, t in enumerate(tiles) if j % per_image % 2 == parity] for parity in (0, 1)]
    work = n * c_out * k_g * pixels * (need_input + need_weight)
    partials = [p for wave in waves for p in _over_tiles(kernels, wave, work // len(waves), run)]
    return dx, sum(partials).transpose(0, 2, 1).reshape(w_shape) if need_weight else None


def conv2d_backward_input(g: Any, w: Any, x_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair,
                          groups: int) -> Any:
    """dL/dx = conv2d^T(g): g: (N, C_out, Ho, Wo), w: (C_out, C_in/G, kh, kw) -> (N, C_in, H, W) = ``x_shape``.

    The output size is read from ``g``; input pixels that no output pixel read get 0.
    """
    return conv2d_backward(g, w, None, w.shape, x_shape, stride, pad4, dilation, groups, need_weight=False)[0]


def conv2d_backward_weight(g: Any, x: Any, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair,
                           groups: int) -> Any:
    """dL/dw: g: (N, C_out, Ho, Wo), x: (N, C_in, H, W) -> ``w_shape``."""
    return conv2d_backward(g, None, x, w_shape, x.shape, stride, pad4, dilation, groups, need_input=False)[1]


# ----------------------------------------------------------------------------- argument checks
def _same_padding(hw: tuple[int, ...], k: tuple[int, ...], stride: Pair, dilation: Pair) -> Pad4:
    """TensorFlow SAME: output ceil(H/s); the total padding is split with the odd pixel at the end."""
    pads = []
    for size, kk, s, d in zip(hw, k, stride, dilation, strict=True):
        total = max((-(-size // s) - 1) * s + d * (kk - 1) + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def _operands(op: str, x: Any, weight: Any, bias: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """x, weight, bias as tensors of one float dtype (arrays become constants of the tensors' dtype)."""
    for name, value in (("input", x), ("weight", weight), ("bias", bias)):
        dtype = getattr(value, "dtype", None)
        if dtype is not None and not isinstance(value, Tensor) and np.dtype(dtype).type not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} must be a float32 or float64 array, got dtype {dtype}")
    tensors = [v for v in (x, weight, bias) if isinstance(v, Tensor)]
    if any(t.dtype != tensors[0].dtype for t in tensors):
        raise TypeError(f"{op}: input, weight and bias must share one dtype, got "
                        f"{', '.join(str(t.dtype) for t in tensors)}")
    # The tensors set the dtype; with none given, the input array does.
    dtype = tensors[0].dtype if tensors else getattr(x, "dtype", None)

    def as_tensor(value: Any, name: str, ndim: int) -> Tensor:
        t = check_tensor(value, op, name)
        if t.dtype != dtype and dtype is not None:
            t = Tensor(t.data, dtype=dtype)  # only arrays get here: tensors all have `dtype`
        if t.ndim != ndim:
            layout = {"input": "4-D (N, C_in, H, W)", "bias": "1-D (C_out,)",
                      "weight": "4-D (C_out, C_in/groups, kh, kw)" if op == "conv2d"
                      else "4-D (C_in, C_out/groups, kh, kw)"}[name]
            raise ValueError(f"{op}: {name} must be {layout}, got shape {t.shape}")
        return t

    x = as_tensor(x, "input", 4)
    weight = as_tensor(weight, "weight", 4)
    bias = None if bias is None else as_tensor(bias, "bias", 1)
    check_same_device(op, x, weight, bias)
    return x, weight, bias


def _check_groups(op: str, groups: Any, channels: dict[str, int]) -> int:
    if not isinstance(groups, int | np.integer) or isinstance(groups, bool):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    for name, count in channels.items():
        if count % groups:
            raise ValueError(f"{op}: {name} ({count}) must be divisible by groups ({groups})")
    return int(groups)


def _check_bias(op: str, bias: Tensor | None, c_out: int) -> None:
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias must have shape (C_out,) = ({c_out},), got {bias.shape}")


def _bias_grad(g: Any) -> Any:
    """dL/db[co] = sum of g over images and pixels."""
    return g.reshape(g.shape[0], g.shape[1], g.shape[2] * g.shape[3]).sum(axis=2).sum(axis=0)


# ----------------------------------------------------------------------------- conv2d
def conv2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in every deep-learning library).

    x: (N, C_in, H, W); weight: (C_out, C_in/groups, kh, kw); bias: (C_out,) or None.
    stride, dilation: int or (h, w). padding: int, (ph, pw), (top, bottom, left, right),
    ``"valid"`` (no padding) or ``"same"`` (TensorFlow SAME: output ceil(H/stride)).
    groups: channels are split into ``groups`` independent convolutions (``groups == C_in`` is
    depthwise). Returns (N, C_out, Ho, Wo) with ``Ho = floor((H + top + bottom - dh*(kh-1) - 1)/sh) + 1``.
    """
    op = "conv2d"
    x, weight, bias = _operands(op, x, weight, bias)
    backend.kernels("conv", x.data, op)  # fails early, naming the op, where numba-cuda is missing
    stride, dilation = int_pair(stride, op, "stride"), int_pair(dilation, op, "dilation")
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    groups = _check_groups(op, groups, {"input channels C_in": c_in, "output channels C_out": c_out})
    if c_per_group != c_in // groups:
        raise ValueError(f"{op}: weight expects C_in/groups = {c_per_group} channels per group, but the input "
                         f"has C_in={c_in} with groups={groups} ({c_in // groups} per group)")
    _check_bias(op, bias, c_out)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be 'same' or 'valid' when given as a string, got {padding!r}")
        pad4 = _same_padding((h, w), (kh, kw), stride, dilation) if padding == "same" else (0, 0, 0, 0)
    else:
        pad4 = padding4(padding, op)
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    padded = (h + pad4[0] + pad4[1], w + pad4[2] + pad4[3])
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(f"{op}: the (dilated) kernel {span[0]}x{span[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]}")

    out = conv2d_forward(x.data, weight.data, stride, pad4, dilation, groups, None if bias is None else bias.data)

    def backward(g):
        gx, gw = conv2d_backward(g, weight.data, x.data, weight.shape, x.shape, stride, pad4, dilation, groups,
                                 need_input=x.requires_grad, need_weight=weight.requires_grad)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_grad(g) if bias.requires_grad else None

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, op)


# ----------------------------------------------------------------------------- conv_transpose2d
def conv_transpose2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed convolution (PyTorch's ``conv_transpose2d``): the adjoint of ``conv2d``.

    x: (N, C_in, H, W); weight: (C_in, C_out/groups, kh, kw) -- the weight of the conv2d that
    maps (N, C_out, Ho, Wo) back to x's shape; bias: (C_out,) or None. padding: int, (ph, pw) or
    (top, bottom, left, right), removed from the output. Output size
    ``Ho = (H - 1)*sh - top - bottom + dh*(kh - 1) + output_padding_h + 1``; output_padding only
    picks among the sizes that stride hides, so it must be smaller than stride or dilation.
    """
    op = "conv_transpose2d"
    x, weight, bias = _operands(op, x, weight, bias)
    backend.kernels("conv", x.data, op)  # fails early, naming the op, where numba-cuda is missing
    stride, dilation = int_pair(stride, op, "stride"), int_pair(dilation, op, "dilation")
    out_pad = int_pair(output_padding, op, "output_padding", minimum=0)
    n, c_in, h, w = x.shape
    w_in, c_per_group, kh, kw = weight.shape
    groups = _check_groups(op, groups, {"input channels C_in": c_in})
    if w_in != c_in:
        raise ValueError(f"{op}: weight (C_in, C_out/groups, kh, kw) has C_in={w_in}, but the input has "
                         f"C_in={c_in}")
    c_out = c_per_group * groups
    _check_bias(op, bias, c_out)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int, (ph, pw) or (top, bottom, left, right), got {padding!r}")
    pad4 = padding4(padding, op)
    for axis in range(2):
        if out_pad[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, got "
                             f"output_padding={out_pad}, stride={stride}, dilation={dilation}")
    ho = (h - 1) * stride[0] - pad4[0] - pad4[1] + dilation[0] * (kh - 1) + out_pad[0] + 1
    wo = (w - 1) * stride[1] - pad4[2] - pad4[3] + dilation[1] * (kw - 1) + out_pad[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: the output would be empty ({ho}x{wo}): padding {pad4} removes more than "
                         f"the {ho + pad4[0] + pad4[1]}x{wo + pad4[2] + pad4[3]} that the kernel covers")
    out_shape = (n, c_out, ho, wo)

    # The forward of the transpose IS the input-gradient of the conv2d that maps out_shape to x.
    out = conv2d_backward_input(x.data, weight.data, out_shape, stride, pad4, dilation, groups)
    if bias is not None:
        out += bias.data.reshape(1, -1, 1, 1)

    def backward(g):
        gx = gw = None
        if x.requires_grad:
            # ... so its input-gradient IS that conv2d's forward (cropped: with output_padding >= stride,
            # which large dilation allows, the conv2d sees a slightly larger image than x came from).
            gx = conv2d_forward(g, weight.data, stride, pad4, dilation, groups)[:, :, :h, :w]
        if weight.requires_grad:
            # ... and its weight-gradient is conv2d's, with x in the role of the conv's output-gradient
            # and g in the role of the conv's input.
            gw = conv2d_backward_weight(x.data, g, weight.shape, stride, pad4, dilation, groups)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_grad(g) if bias.requires_grad else None

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, op)
