"""How a convolution is executed: which algorithm, and how the work is cut into tiles and threads.

``functional/conv.py`` states what a convolution computes and keeps a plain reference path
(``W @ im2col(x)`` for the whole batch at once). This module holds the faster ways to compute the
same thing, and the one rule that picks among them (``choose``):

* **im2col + GEMM in tiles** (``im2col_forward``, ``im2col_backward``): the reference's products,
  but over *tiles*, a chunk of small images or a band of output rows of one large image, so a
  tile's cols matrix stays in cache between im2col writing it and the GEMM reading it, one scratch
  buffer serves every tile, and a single 224 px photo still keeps every core busy.
  On the CPU ``cpu_threads.map_batch`` gives each thread its own run of tiles, and inside it
  everything is single-threaded (serial Numba kernels, BLAS on one thread).
* **pointwise** (inside the im2col functions): a 1x1, stride-1, unpadded convolution already has
  ``x`` as its cols matrix, so it is one GEMM with no copy.
* **depthwise direct kernels** (``kernels.depthwise_*``): one input channel per group would be
  N*C tiny GEMMs; a direct sliding-window kernel is faster. At stride 1 each plane is one
  "wide-grid" correlation with contiguous inner loops; at stride s > 1 the forward pass and the
  input gradient run *polyphase* (``cpu_depthwise``): the padded plane, or the input gradient, splits
  into s*s components, each a stride-1 correlation with a sub-kernel, so no inner loop strides.
* **Winograd F(2x2, 3x3)** (``winograd_forward``, ``winograd_backward_input``,
  ``winograd_backward_weight``; CPU only, ``cpu_winograd``): a stride-1 3x3 convolution (every VGG
  layer) as 16 GEMMs with K = C_in instead of one with K = 9*C_in, 2.25x fewer multiply-adds; the
  input gradient is the same kind of convolution, and the weight gradient runs the transforms'
  adjoints around 16 GEMMs that sum over tiles. It pays from a few channels on (``winograd_pays``).

* **fused Winograd** (``winograd_fused_forward``, ``winograd_fused_backward_input``; CPU only,
  ``cpu_winograd_fused``): the same algebra with the 2x2 output tiles as vector lanes: per block of
  48 tiles the input transform, the 16 products on the direct kernel's register block and the
  output transform, with no transformed batch written out. It takes the forward pass and input
  gradient of stride-1 3x3 layers with 32-128 channels (``is_winograd_fused``).

* **direct** (``direct_forward``, ``direct_backward``; CPU only, ``cpu_direct``): sliding windows
  read in place, no cols matrix, a register block of 8 output channels x 48 pixels of partial sums
  held in AVX-512 registers (``cpu_simd``). Its forward kernel runs at 130-200 GFLOP/s on one
  thread, as fast as BLAS on these shapes, so it takes the forward pass of most layers with up to
  128 input channels (``is_direct_forward``) and the input gradient of stride-1 layers with 8-64
  channels (``is_direct_input``, the same kernel on g); for both passes it pays when the GEMM
  would have only a few rows (``is_direct``).

The rule (``choose``, both passes): depthwise -> direct depthwise kernels (polyphase at stride > 1);
CPU, ungrouped, at most four output channels and a large window -> direct kernels; CPU, stride-1
3x3 ungrouped undilated and large enough to pay -> Winograd; everything else -> im2col tiles (a 1x1
convolution skips the copy). Then, under "auto" on an AVX-512 CPU, each pass is refined
(``for_pass``): the forward pass and input gradient of a stride-1 3x3 layer with 32-128 channels go
to fused Winograd; otherwise the forward pass of an ungrouped layer with at most 128 input
channels whose padded image fits L2, and the input gradient of such a stride-1 layer with 8-64
channels, go to the direct kernel; the weight gradient of a layer with a window and at most 32
input channels goes to the direct kernel too. The user can override it with
``mv.conv_algorithm(name)``, whose names (``ALGORITHMS``) ``choose`` takes.

**Batch invariance.** Every choice here (algorithm, tile, band, thread split of one image's GEMMs)
depends on the layer and one image's shape only, never on the batch size or the thread count, so
an image's result is bit-identical whether it came alone or in a batch. SmoothGrad, occlusion and
mining depend on that. (The fused Winograd kernel groups images and tile rows into tasks by batch
size and thread count, but each tile is a vector lane with its own fixed sequence of operations,
so its bits do not depend on the grouping. A weight gradient is a sum over the batch anyway.)
The one exception is opt-in: inside ``shared_winograd_gemms`` (which incremental occlusion
enters) small maps' products span several images, and forward passes of 128-512-channel maps that
4x4 tiles fill well run Winograd F(4x4, 3x3) (``winograd4_pays``, ``cpu_winograd4``: 2.25
products per output instead of 4, and ~15x F(2x2)'s float32 rounding). (Measurements behind the
thresholds: benchmarks/README.md, "Convolution planning".)
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

from minivis.kernels import (
    cpu_conv,
    cpu_direct,
    cpu_norm,
    cpu_simd,
    cpu_threads,
    cpu_winograd,
    cpu_winograd4,
    cpu_winograd_fused,
    cpu_workspace,
)

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]

ALGORITHMS = ("auto", "im2col", "winograd", "winograd_fused", "reference", "direct")  # ``mv.conv_algorithm``'s names


# ----------------------------------------------------------------------------- the rule
def choose(kernels: types.ModuleType, x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_hw: tuple[int, ...],
           stride: Pair, dilation: Pair, groups: int, algorithm: str = "auto") -> str:
    """``"reference"``, ``"depthwise"``, ``"direct"``, ``"winograd"`` or ``"im2col"``: how to run this convolution.

    ``algorithm`` (one of ``ALGORITHMS``): ``"auto"`` is the rule in the module docstring;
    ``"im2col"`` is the same rule without Winograd; ``"winograd"`` takes Winograd wherever it
    applies, however small the layer (elsewhere: the auto choice), and ``"winograd_fused"`` the same with
    ``cpu_winograd_fused`` for the forward pass and input gradient (``for_pass``); ``"direct"`` takes the direct
    sliding-window kernels (``cpu_direct``) for every ungrouped CPU convolution; ``"reference"`` always.
    """
    if algorithm == "reference":
        return "reference"
    if is_depthwise(x_shape[1], groups, w_shape):
        return "depthwise"
    if algorithm == "direct" and kernels is cpu_conv and groups == 1:
        return "direct"
    if algorithm == "auto" and is_direct(kernels, w_shape, groups):
        return "direct"
    if algorithm in ("winograd", "winograd_fused") and winograd_applies(kernels, w_shape, stride, dilation, groups):
        return "winograd"  # (the fused kernel takes the forward pass and input gradient: ``for_pass``)
    if algorithm == "auto" and is_winograd(kernels, x_shape, w_shape, out_hw, stride, dilation, groups):
        return "winograd"
    return "im2col"


def for_pass(which: str, how: str, algorithm: str, kernels: types.ModuleType, x_shape: tuple[int, ...],
             w_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair, groups: int, dtype: np.dtype) -> str:
    """``choose``'s answer ``how`` refined for one pass, ``which`` = ``"forward"``, ``"input"`` (the input
    gradient) or ``"weight"``: under "auto", where ``choose`` said im2col or Winograd, the fused Winograd
    kernel takes the forward pass and input gradient where ``is_winograd_fused`` says, and the
    register-blocked direct kernels the passes ``is_direct_forward``, ``is_direct_input`` and
    ``is_direct_weight`` give them (inside ``shared_winograd_gemms``, not the fused one); under
    "winograd_fused", the fused kernel wherever it applies."""
    if how not in ("im2col", "winograd") or algorithm not in ("auto", "winograd_fused"):
        return how
    # Not inside ``shared_winograd_gemms`` under "auto": incremental occlusion's regions keep the shared
    # products and direct kernel its 8x target was measured with (fused on / off there: the same within noise).
    if which != "weight" and (algorithm != "auto" or not _SHARED_GEMMS.get()) and is_winograd_fused(
            kernels, w_shape, stride, pad4, dilation, groups, dtype, forced=algorithm != "auto"):
        return "winograd_fused"
    if algorithm != "auto":
        return how
    if which == "forward" and is_direct_forward(kernels, x_shape, w_shape, pad4, groups, dtype):
        return "direct"
    if which == "input" and is_direct_input(kernels, x_shape, w_shape, stride, pad4, dilation, groups, dtype):
        return "direct"
    if which == "weight" and is_direct_weight(kernels, w_shape, groups, dtype):
        return "direct"
    return how


DIRECT_WEIGHT_MAX_C_IN = 32  # the weight gradient by the direct kernel: up to this many input channels


def is_direct_weight(kernels: types.ModuleType, w_shape: tuple[int, ...], groups: int, dtype: np.dtype) -> bool:
    """The weight gradient of an ungrouped CPU layer with a window and at most 32 input channels by
    ``cpu_direct``'s register-blocked kernel (4 output channels x 6 taps of vector sums).

    Measured against im2col's and Winograd's weight gradients (benchmarks/README.md, "Convolution
    planning"): it won on every 3x3 and 5x5 layer with 1-32 input channels (0.48-0.9 of their time),
    tied with 48, lost from 64 (Winograd's 2.25x fewer multiply-adds) and on 1x1 layers (no
    window: the GEMM reads its input in place). The sum runs over the batch either way.
    """
    c_in, (kh, kw) = w_shape[1], w_shape[2:]
    return (kernels is cpu_conv and cpu_simd.WIDE and groups == 1 and kh * kw > 1 and c_in <= DIRECT_WEIGHT_MAX_C_IN
            and np.dtype(dtype) in (np.float32, np.float64))


FUSED_MIN_CHANNELS = 32  # fused Winograd: at least this many input and output channels ...
FUSED_MAX_CHANNELS = 128  # ... and at most this many (its 16 x C_in x C_out filter transforms are read per tile block)


def is_winograd_fused(kernels: types.ModuleType, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair,
                      groups: int, dtype: np.dtype, forced: bool = False) -> bool:
    """The forward pass and input gradient of a stride-1 3x3 layer by ``cpu_winograd_fused``.

    Transforms and products run per block of 48 tiles on the direct kernel's register block, so
    Winograd's 2.25x fewer multiply-adds are not spent again on passes over memory. Measured
    against the direct kernel, GEMM Winograd and im2col (benchmarks/README.md, "Convolution
    planning"): it wins from 32 channels on both sides up to 128, at any map size and batch; with
    fewer channels its transforms are shared by too few products (a first layer's 3 inputs, a block
    of 8 outputs). Every block of 48 tiles reads all 16 x C_in x C_out filter transforms: at 512
    channels (16 MB) it ran 1.6x behind GEMM Winograd; at 256 (4 MB) it showed no gain beyond the
    noise (the kernels table's vgg 256 row read 1.02, 1.01 and 0.79 with it, 0.84 and 1.10 without),
    so the GEMMs, which reuse each filter over many more tiles, keep those layers. The input
    gradient is the same kernel with the rotated kernel (padding 2 - pad, so each side's padding
    must be at most 2). ``forced`` (``mv.conv_algorithm("winograd_fused")``): any channel count, on
    any CPU. Reads no batch size, like every rule here.
    """
    c_out, c_in = w_shape[:2]
    applies = (winograd_applies(kernels, w_shape, stride, dilation, groups) and max(pad4) <= 2
               and np.dtype(dtype) in (np.float32, np.float64))
    return applies and (forced or (cpu_simd.WIDE and FUSED_MIN_CHANNELS <= min(c_in, c_out)
                                   and max(c_in, c_out) <= FUSED_MAX_CHANNELS))


DIRECT_MAX_C_OUT = 4  # both passes direct: at most this many output channels (is_direct)


def is_direct(kernels: types.ModuleType, w_shape: tuple[int, ...], groups: int) -> bool:
    """Few output channels and a large window: the direct kernels (CPU, ungrouped).

    With ``C_out <= DIRECT_MAX_C_OUT`` the GEMM ``(C_out x K) @ (K x L)`` has
    a handful of rows: it is bound by writing and reading the ``K x L`` cols matrix, while the direct
    kernel reads the input in place (a style network's 9x9 RGB output layer; a decoder's last layer).
    A single output channel pays from any K >= 27, a few from 5x5 windows on (below that the cols
    matrix is small and cached). With more output channels (a first layer's 32-96 filters) the
    backward passes stay on im2col, whose weight gradient the direct one does not beat there, and
    the forward pass goes to the direct kernel by ``is_direct_forward`` (benchmarks/README.md,
    "Convolution planning").
    """
    c_out, c_in, kh, kw = w_shape
    return (kernels is cpu_conv and groups == 1 and c_out <= DIRECT_MAX_C_OUT and c_in * kh * kw >= 27
            and (c_out == 1 or kh * kw >= 25))


DIRECT_MAX_C_IN = 128  # register-blocked direct forward: up to this many input channels ...
DIRECT_MAX_PLANE_BYTES = 2 << 20  # ... and while one image's padded input fits a core's L2


def is_direct_forward(kernels: types.ModuleType, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                      pad4: Pad4, groups: int, dtype: np.dtype) -> bool:
    """The forward pass of an ungrouped CPU convolution by ``cpu_direct``'s register-blocked kernel.

    The kernel keeps 8 output channels x 48 output pixels of partial sums in AVX-512 registers
    and runs at 130-200 GFLOP/s on one thread, with no cols matrix to write. Measured against
    im2col and Winograd (benchmarks/README.md, "Convolution planning"): it wins on first layers
    (AlexNet's 11x11/4, LeNet's 5x5, CIFAR's 3x3), on 32-128-channel layers, and on a style
    network's 9x9 output; it loses at 256 input channels (the GEMM's blocking reuses more) and
    when one image's padded input leaves L2 (VGG's 64-channel 224 px layer: every block of 8
    output channels reads it again). The rule reads no batch size: an image's result must not
    depend on its batch. The backward passes keep their own rule (``choose``): this is forward
    only. Without AVX-512 the block of 24 accumulators would not fit the 16 vector registers.
    """
    _, c_in, h, w = x_shape
    kh, kw = w_shape[2:]
    dtype = np.dtype(dtype)
    plane = c_in * (h + pad4[0] + pad4[1]) * (w + pad4[2] + pad4[3]) * dtype.itemsize
    return (kernels is cpu_conv and cpu_simd.WIDE and groups == 1 and kh * kw > 1 and c_in <= DIRECT_MAX_C_IN
            and plane <= DIRECT_MAX_PLANE_BYTES and dtype in (np.float32, np.float64))


DIRECT_INPUT_MAX_C_OUT = 64  # the input gradient by the direct kernel: up to this many output channels


def is_direct_input(kernels: types.ModuleType, x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Pair,
                    pad4: Pad4, dilation: Pair, groups: int, dtype: np.dtype) -> bool:
    """The input gradient of a stride-1 convolution by ``cpu_direct``'s forward kernel.

    At stride 1 the input gradient is the forward convolution of g by the kernel rotated 180 degrees
    with its channel axes swapped (``cpu_direct.backward_input``): a layer with C_in inputs and C_out
    outputs becomes one with C_out inputs and C_in outputs. Against Winograd's and im2col's input
    gradients it won with 32-64 output channels and at least one register block (8) of input
    channels, and lost at 128 output channels and with fewer input channels (a first layer's 1-3:
    7/8 of the block would be wasted) (benchmarks/README.md, "Convolution planning").
    """
    c_out, c_in, kh, kw = w_shape
    n, _, h, w = x_shape
    reach = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
    return (stride == (1, 1) and max(pad4[:2]) <= reach[0] and max(pad4[2:]) <= reach[1]
            and c_in >= cpu_direct.R and c_out <= DIRECT_INPUT_MAX_C_OUT
            and is_direct_forward(kernels, (n, c_out, h, w), (c_in, c_out, kh, kw), pad4, groups, dtype))


def is_depthwise(c_in: int, groups: int, w_shape: tuple[int, ...]) -> bool:
    """One input channel per group: N*C tiny GEMMs would be slow, so a direct kernel does it.

    A single-channel input (``C_in == groups == 1``, e.g. MNIST's first layer) is left to the GEMM:
    one (C_out x kh*kw) GEMM per image is large enough there (benchmarks/README.md, "Convolution planning").
    """
    return groups == c_in and w_shape[1] == 1 and c_in > 1


def is_pointwise(kh: int, kw: int, stride: Pair, pad4: Pad4) -> bool:
    """1x1, stride 1, no padding: the input already is its own im2col matrix (no copy needed)."""
    return kh == kw == 1 and stride == (1, 1) and pad4 == (0, 0, 0, 0)


def output_hw(hw: tuple[int, ...], k: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair) -> Pair:
    """(Ho, Wo) of a convolution of an ``hw`` image by a ``k`` kernel."""
    return (cpu_conv.output_size(hw[0], k[0], stride[0], pad4[0], pad4[1], dilation[0]),
            cpu_conv.output_size(hw[1], k[1], stride[1], pad4[2], pad4[3], dilation[1]))


# ----------------------------------------------------------------------------- tiles: chunks and row bands
# A tile's GEMM is (C_out/G, K) @ (K, L') per image and group, L' the tile's output pixels. One
# wide GEMM over all m images of a chunk would be faster, but its rounding would depend on m: so
# the GEMMs stay per image, and the tiles only decide what shares a cache-sized scratch buffer.
# (measurements: benchmarks/README.md, "Convolution planning")
CHUNK_BYTES = 256 << 10  # small images: one chunk's cols matrix, about half a core's L2
BAND_BYTES = 8 << 20  # an image whose cols matrix is larger is cut into row bands: a 224 px photo's
# layers are; occlusion's small crops run faster whole (the price: VGG16's 14x14 stage at batch 1, one thread)
BAND_PIXELS = 256  # output pixels per band (the GEMMs' N), at least: fewer calls and halo rows per image
MIN_BANDS = 4  # ... but a large image gets at least this many bands, so one photo keeps every core busy
SPLIT_PIXELS = 4096  # a smaller cols matrix over this many output pixels still splits into
# MIN_BANDS bands: a photo's first layer (few input channels, e.g. EfficientNet's 3 -> 32 stem) at batch 1

Tile = tuple[slice, int, int]  # (images, first output row, end output row)


def batch_chunks(part: slice, bytes_per_image: int) -> list[slice]:
    """Slices of ``part`` (a slice of the batch) whose cols matrices take about ``CHUNK_BYTES`` each.

    Blocking keeps the matrix in cache between im2col writing it and the GEMM reading it, and one
    scratch buffer serves every chunk: a fresh 50 MB array per layer would cost page faults and
    twice the memory traffic. A chunk holds at least one image.
    """
    step = max(1, CHUNK_BYTES // max(bytes_per_image, 1))
    return [slice(start, min(start + step, part.stop)) for start in range(part.start, part.stop, step)]


def split_into_tiles(kernels: types.ModuleType, n: int, ho: int, wo: int, bytes_per_image: int,
                     min_rows: int) -> list[Tile]:
    """The work items of one convolution: chunks of whole images, or row bands of each image.

    An image whose cols matrix exceeds ``BAND_BYTES`` (on the CPU) is cut into equal bands of output
    rows, each at least ``min_rows`` tall and, where the image has room for ``MIN_BANDS`` of them,
    ``BAND_PIXELS`` wide; a smaller one with at least ``SPLIT_PIXELS`` output pixels into
    ``MIN_BANDS`` bands (its GEMMs are short in K, so more bands would only add calls). The cut
    depends on the image's shape only (not on the batch or the thread count). Tiles are listed
    image by image, band by band.
    """
    bands = 1
    if kernels is cpu_conv and bytes_per_image > BAND_BYTES:
        bands = max(ho // max(min_rows, -(-BAND_PIXELS // wo)), min(MIN_BANDS, ho // min_rows))
    elif kernels is cpu_conv and ho * wo >= SPLIT_PIXELS:
        bands = min(MIN_BANDS, ho // min_rows)
    if bands <= 1:
        return [(chunk, 0, ho) for chunk in batch_chunks(slice(0, n), bytes_per_image)]
    bounds = [ho * b // bands for b in range(bands + 1)]
    return [(slice(i, i + 1), r0, r1) for i in range(n) for r0, r1 in zip(bounds, bounds[1:], strict=False)]


def min_band_rows(kh: int, stride: Pair, dilation: Pair) -> int:
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


def _empty(xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """An output array: on the host from ``cpu_workspace`` (reused across a streamed method's batches)."""
    return cpu_workspace.empty(shape, dtype) if xp is np else xp.empty(shape, dtype=dtype)


# ----------------------------------------------------------------------------- im2col + GEMM
def finish_tile(xp: Any, out: Any, images: slice, r0: int, r1: int, bias: Any, bn_relu: tuple | None) -> None:
    """The tile ``out[images, :, r0:r1]`` of a C-contiguous output (N, C_out, Ho, Wo), finished in place
    (while in cache, where a tile was just computed): ``+= bias`` (1, C_out, 1, 1), then
    ``clip(. * scale + shift, low, high)`` with bn_relu = (scale, shift, low, high)."""
    tile = out[images, :, r0:r1]
    if bias is not None:
        tile += bias
    if bn_relu is None:
        return
    scale, shift, low, high = bn_relu
    if xp is np:
        cpu_norm.affine_clip_band(out, images, r0, r1, scale, shift, low, high)
    else:
        tile[...] = xp.clip(tile * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), low, high)


def im2col_forward(kernels: types.ModuleType, xp: Any, x: Any, w: Any, stride: Pair, pad4: Pad4, dilation: Pair,
                   groups: int, bias: Any = None, bn_relu: tuple | None = None) -> Any:
    """``W @ im2col(x)`` tile by tile; x contiguous (N, C_in, H, W) -> (N, C_out, Ho, Wo).

    bias: (C_out,) or None, added to each tile while it is in cache; bn_relu: (scale, shift, low,
    high) or None, then ``clip(y * scale + shift, low, high)`` per channel, likewise
    (``F.conv2d_bn_relu``).
    """
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    ho, wo = output_hw(x.shape[2:], (kh, kw), stride, pad4, dilation)
    k, k_g, pixels = c_in * kh * kw, c_in // groups * kh * kw, ho * wo
    b = None if bias is None else bias.reshape(1, c_out, 1, 1)
    w_g = w.reshape(groups, c_out // groups, k_g)
    if is_pointwise(kh, kw, stride, pad4):  # x already is its own cols matrix
        out = _empty(xp, (n, c_out, ho, wo), x.dtype)
        x_g, out_g = x.reshape(n, groups, k_g, pixels), out.reshape(n, groups, c_out // groups, pixels)
        if kernels is cpu_conv and (b is not None or bn_relu is not None) and n > 1:
            # a slice of the batch per thread, its bias added while its output is still in cache
            # (not a separate pass over the whole output: benchmarks/README.md, "Convolution planning")
            def products(part: slice, _parallel: bool) -> None:
                np.matmul(w_g, x_g[part], out=out_g[part])
                finish_tile(xp, out, part, 0, ho, b, bn_relu)

            cpu_threads.map_batch(products, n, n * c_out * k_g * pixels)
            return out
        xp.matmul(w_g, x_g, out=out_g)
        finish_tile(xp, out, slice(0, n), 0, ho, b, bn_relu)
        return out
    out = _empty(xp, (n, c_out, ho, wo), x.dtype)
    out_g = out.reshape(n, groups, c_out // groups, pixels)  # a view: the GEMMs write NCHW directly
    row_bytes = k * wo * x.itemsize
    tiles = split_into_tiles(kernels, n, ho, wo, row_bytes * ho, min_band_rows(kh, stride, dilation))

    def run(part: list[Tile], parallel: bool) -> None:  # one thread's run of tiles
        scratch = _scratch(xp, part, row_bytes, x.dtype)
        for images, r0, r1 in part:
            m, band = images.stop - images.start, (r1 - r0) * wo
            cols = kernels.im2col(x[images], kh, kw, stride, _band_pad(pad4, r0, stride[0]), dilation, (r1 - r0, wo),
                                  out=scratch[:m * k * band].reshape(m, k, band), parallel=parallel)
            xp.matmul(w_g, cols.reshape(m, groups, k_g, band), out=out_g[images, :, :, r0 * wo:r1 * wo])
            finish_tile(xp, out, images, r0, r1, b, bn_relu)

    _over_tiles(kernels, tiles, n * c_out * k_g * pixels, run)
    return out


def im2col_backward(kernels: types.ModuleType, xp: Any, g: Any, w: Any, x: Any, w_shape: tuple[int, ...],
                    x_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair, groups: int,
                    need_input: bool = True, need_weight: bool = True) -> tuple[Any, Any]:
    """(``col2im(W^T @ g)``, ``sum_n g[n] @ im2col(x)[n]^T``) tile by tile, each None unless asked for.

    g, x contiguous. When both are asked for, each tile of g is used by both products while it is
    in cache. im2col is recomputed rather than kept from the forward pass: holding every layer's
    cols matrix (kh*kw times the input) until backward would cost far more memory. Each thread
    sums its tiles into its own partial dw; the partials are added last. Neighbouring row bands add
    into the same input rows (where windows overlap), so banded tiles run in two waves, even bands
    then odd ones: no two threads ever add into the same row, and the order is fixed.
    """
    n, c_out, ho, wo = g.shape
    c_in, (kh, kw) = x_shape[1], w_shape[2:]
    k, k_g, pixels = c_in * kh * kw, c_in // groups * kh * kw, ho * wo
    g_g = g.reshape(n, groups, c_out // groups, pixels)
    if is_pointwise(kh, kw, stride, pad4) and (ho, wo) == x_shape[2:]:  # x and dx are their own cols matrices
        dx = dw = None
        if need_input:
            dx = _empty(xp, x_shape, g.dtype)
            xp.matmul(w.reshape(groups, c_out // groups, k_g).transpose(0, 2, 1), g_g,
                      out=dx.reshape(n, groups, k_g, pixels))
        if need_weight:
            dw = xp.matmul(g_g, x.reshape(n, groups, k_g, pixels).transpose(0, 1, 3, 2)).sum(axis=0).reshape(w_shape)
        return dx, dw
    w_t = None if w is None else w.reshape(groups, c_out // groups, k_g).transpose(0, 2, 1)  # (G, K, C_out/G)
    row_bytes = k * wo * g.itemsize
    tiles = split_into_tiles(kernels, n, ho, wo, row_bytes * ho, min_band_rows(kh, stride, dilation))
    banded = bool(tiles) and tiles[0][2] - tiles[0][1] < ho
    dx = None
    if need_input:  # bands add into their input rows; whole images overwrite theirs
        dx = xp.zeros(x_shape, dtype=g.dtype) if banded else _empty(xp, x_shape, g.dtype)

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
                # dw^T = cols @ g^T: BLAS runs (K, L) @ (L, C_out) faster than g @ cols^T (benchmarks/README.md)
                dw_t += xp.matmul(cols, g_tile.transpose(0, 1, 3, 2)).sum(axis=0)
        return dw_t

    waves = [tiles]
    if banded and need_input:  # even bands of every image, then odd ones: the same order for every image
        per_image = len(tiles) // n
        waves = [[t for j, t in enumerate(tiles) if j % per_image % 2 == parity] for parity in (0, 1)]
    work = n * c_out * k_g * pixels * (need_input + need_weight)
    partials = [p for wave in waves for p in _over_tiles(kernels, wave, work // len(waves), run)]
    return dx, sum(partials).transpose(0, 2, 1).reshape(w_shape) if need_weight else None


# ----------------------------------------------------------------------------- direct
def direct_forward(x: np.ndarray, w: np.ndarray, stride: Pair, pad4: Pad4, dilation: Pair,
                   out_hw: tuple[int, ...], bias: np.ndarray | None = None, finish: tuple | None = None) -> np.ndarray:
    """Direct sliding-window conv2d (groups 1, CPU) plus bias (or None): ``cpu_direct.forward``; ``finish``
    (scale, shift, low, high), scale and shift possibly None, applied as each output row is written."""
    return cpu_direct.forward(x, w, stride, pad4, dilation, tuple(out_hw), bias, finish)


def direct_backward(g: np.ndarray, w: Any, x: Any, w_shape: tuple[int, ...], x_shape: tuple[int, ...], stride: Pair,
                    pad4: Pad4, dilation: Pair, need_input: bool, need_weight: bool) -> tuple[Any, Any]:
    """(dL/dx, dL/dw) by the direct kernels, each None unless asked for."""
    dx = cpu_direct.backward_input(g, w, x_shape, stride, pad4, dilation) if need_input else None
    dw = cpu_direct.backward_weight(g, x, w_shape, stride, pad4, dilation) if need_weight else None
    return dx, dw


# ----------------------------------------------------------------------------- Winograd F(2x2, 3x3)
# Tiles as above, in units of 2x2 output blocks: chunks of images, or bands of block rows; per
# tile V = input_transform(x), M[ab] = V[ab] @ U[ab]^T, y = output_transform(M). GEMMs with K = C_in
# below 32 lose to their overheads; with many channels a small map's few blocks do not repay the
# filter transform (C_in x C_out x 16 values per call); so Winograd waits for enough channels and,
# above WINOGRAD_FEW_CHANNELS, enough blocks. (measurements: benchmarks/README.md, "Convolution planning")
WINOGRAD_MIN_CHANNELS = 32  # input and output channels (the GEMMs' K and N), at least
WINOGRAD_FEW_CHANNELS = 96  # up to this many channels any map pays; beyond, ...
WINOGRAD_MIN_BLOCKS = 32  # ... 2x2 output blocks per image (the GEMMs' M), at least
WINOGRAD_BAND_BYTES = 1 << 20  # an image whose V and M matrices exceed this is cut into bands ...
WINOGRAD_BAND_TILES = 192  # ... of at least this many tiles (the GEMMs' long side)
WINOGRAD_PLANAR_TILES = 16  # maps more tiles wide than this (over 32 px) run the planar transforms, ...
WINOGRAD_PLANAR_WIDE = 256, 8  # ... and so do layers with this many channels and more tiles than this


def winograd_applies(kernels: types.ModuleType, w_shape: tuple[int, ...], stride: Pair, dilation: Pair,
                     groups: int) -> bool:
    """3x3, stride 1, undilated, ungrouped, on the CPU: the convolutions Winograd F(2x2, 3x3) computes."""
    return (kernels is cpu_conv and tuple(w_shape[2:]) == (3, 3) and stride == (1, 1) and dilation == (1, 1)
            and groups == 1)


def winograd_pays(x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_hw: tuple[int, ...]) -> bool:
    """Enough channels, and (beyond a few of them, and padded) enough 2x2 output blocks per image.

    Unpadded inputs (incremental occlusion's regions) send im2col down its slow short-row copy,
    so there Winograd pays at any size.
    """
    channels = min(x_shape[1], w_shape[0])
    blocks = -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
    return channels >= WINOGRAD_MIN_CHANNELS and (channels <= WINOGRAD_FEW_CHANNELS or blocks >= WINOGRAD_MIN_BLOCKS
                                                  or out_hw[1] != x_shape[3])


def winograd_planar(tiles_wide: int, channels: int) -> bool:
    """Run the planar transforms (loops along rows of tiles), not the channels-last ones (loops along channels)?

    Planar loops are as long as the map is wide in 2x2 tiles, and pay on wide maps (VGG's 56-224 px
    stages); channels-last ones on small maps, except with many channels from 28 px on
    (benchmarks/README.md, "Convolution planning").
    """
    many, wide = WINOGRAD_PLANAR_WIDE
    return tiles_wide > WINOGRAD_PLANAR_TILES or (channels >= many and tiles_wide > wide)


def is_winograd(kernels: types.ModuleType, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                out_hw: tuple[int, ...], stride: Pair, dilation: Pair, groups: int) -> bool:
    """The auto rule's Winograd choice: it applies and pays. Depends on the layer and one image's size only."""
    return winograd_applies(kernels, w_shape, stride, dilation, groups) and winograd_pays(x_shape, w_shape, out_hw)


_TRANSFORMS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("minivis_weight_transforms", default=None)
_TRANSFORMS_KEPT = 64  # weights whose transforms one block keeps (more: the oldest are dropped)


@contextmanager
def reuse_weight_transforms() -> Iterator[None]:
    """Inside the block, each weight array's Winograd filter transform is computed once and reused.

    The caller promises that no weight array changes in place inside the block (the
    visualisation methods, which freeze the model, run in one): a method's backward pass, and
    every later pass, then skips the transform (16/9 of the weight's size). Arrays are recognised
    by identity; the cache ends with the (outermost) block.
    """
    if _TRANSFORMS.get() is not None:
        yield
        return
    token = _TRANSFORMS.set({})
    try:
        yield
    finally:
        _TRANSFORMS.reset(token)


def filter_transform(w: np.ndarray, transposed: bool = False) -> np.ndarray:
    """``cpu_winograd.filter_transform(w, transposed)``, from the cache inside ``reuse_weight_transforms``."""
    return _cached(w, transposed, lambda: cpu_winograd.filter_transform(w, transposed))


def _cached(w: np.ndarray, kind: Any, make: Any) -> np.ndarray:
    """``make()``, a transform of the weight array w, kept per (w, kind) inside ``reuse_weight_transforms``."""
    cache = _TRANSFORMS.get()
    if cache is None:
        return make()
    key = (id(w), kind)
    hit = cache.get(key)
    if hit is None or hit[0] is not w:  # the array is kept alive with its entry, so its id is not reused
        if len(cache) >= _TRANSFORMS_KEPT:
            cache.pop(next(iter(cache)))
        hit = cache[key] = (w, make())
    return hit[1]


_SHARED_GEMMS: contextvars.ContextVar[bool] = contextvars.ContextVar("minivis_shared_gemms", default=False)
SHARED_MAX_TILES = 64  # images with at most this many 2x2 tiles (16 px maps) share their products ...
SHARED_ROWS = 1024  # ... in GEMMs of up to this many rows (images x tiles)


@contextmanager
def shared_winograd_gemms() -> Iterator[None]:
    """Inside the block, small maps' Winograd products run once per slot across images.

    Per image, a 512-channel 7 px map's 16 products are (16 x 512) @ (512 x 512) each: BLAS packs the
    1 MB transformed filter for 16 rows of work, and runs at about half its peak. Stacking the
    tiles of several images (``SHARED_ROWS``) makes one product per slot from the same filter.
    Each image's rows are the same numbers, but BLAS may pick another kernel for the taller
    product and round them differently, so an image's result would then depend on its batch:
    the engine's batch invariance is why this is opt-in. Incremental occlusion, whose regions
    already round with their batch's region size, runs in it (benchmarks/README.md, "Occlusion").
    Inside it too, forward passes that ``winograd4_pays`` for run F(4x4, 3x3) (``_winograd4_shared``):
    with the rows of many images per product, its 36 products per 4x4 tile no longer starve BLAS.
    """
    token = _SHARED_GEMMS.set(True)
    try:
        yield
    finally:
        _SHARED_GEMMS.reset(token)


def winograd_forward(x: np.ndarray, w: np.ndarray, pad4: Pad4, out_hw: tuple[int, ...],
                     bias: Any = None) -> np.ndarray:
    """conv2d(x, w) + bias, stride 1, 3x3: x (N, C_in, H, W) -> (N, C_out, Ho, Wo)."""
    return _winograd(x, w, pad4, out_hw, bias)


def winograd_backward_input(g: np.ndarray, w: np.ndarray, pad4: Pad4, x_hw: tuple[int, ...]) -> np.ndarray:
    """dL/dx of a stride-1 3x3 conv2d: g (N, C_out, Ho, Wo) -> (N, C_in, H, W), ``x_hw = (H, W)``.

    dx is the stride-1 convolution of g with the flipped, channel-swapped kernel, padded by 2 - pad.
    """
    return _winograd(g, w, tuple(2 - p for p in pad4), x_hw, adjoint=True)


def winograd_backward_weight(g: np.ndarray, x: np.ndarray, pad4: Pad4, w_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dw of a stride-1 3x3 conv2d: g (N, C_out, Ho, Wo), x (N, C_in, H, W) -> ``w_shape``.

    Per image (or band of one): V = input_transform(x) as in the forward pass, dM =
    gradient_transform(g), and dU[ab] += dM[ab]^T @ V[ab], 16 GEMMs whose K runs over the tiles;
    then dw = G^T dU G. Each thread sums into its own dU; the partials are added last, in a fixed order.
    """
    n, c_in = x.shape[:2]
    c_out, (ho, wo) = w_shape[0], g.shape[2:]
    if n == 0:  # an empty batch: no tiles to sum over
        return np.zeros(w_shape, dtype=x.dtype)
    nty, ntx = -(-ho // 2), -(-wo // 2)
    tiles = _winograd_tiles(n, nty, ntx, 16 * (c_in + c_out) * x.itemsize, per_image=True)

    def run(part: list[Tile], parallel: bool) -> np.ndarray:  # one thread's run of tiles -> its partial dU
        largest = max(t1 - t0 for _, t0, t1 in part) * ntx
        v_buf, dm_buf = _slot_buffer(1, largest, c_in, x.dtype), _slot_buffer(1, largest, c_out, x.dtype)
        du, product = np.zeros((16, c_out, c_in), dtype=x.dtype), np.empty((16, c_out, c_in), dtype=x.dtype)
        for image, t0, t1 in part:  # one image (or band of one) per tile
            count = (t1 - t0) * ntx
            cpu_winograd.input_transform(x[image], pad4[0], pad4[2], t0, t1, cpu_winograd.FORWARD_SLOTS, v_buf, ntx)
            cpu_winograd.gradient_transform(g[image], t0, t1, dm_buf, ntx)
            np.matmul(dm_buf[0, :, :count].transpose(0, 2, 1), v_buf[0, :, :count], out=product)
            du += product
        return du

    partials = _over_tiles(cpu_conv, tiles, n * c_out * c_in * 9 * ho * wo, run)
    dw = np.empty(w_shape, dtype=x.dtype)
    cpu_winograd.filter_gradient(sum(partials), dw)
    return dw


def winograd_fused_forward(x: np.ndarray, w: np.ndarray, pad4: Pad4, out_hw: tuple[int, ...],
                           bias: Any = None, finish: tuple | None = None,
                           pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """conv2d(x, w) + bias, stride 1, 3x3, by ``cpu_winograd_fused`` (filters packed once per weight array
    inside ``reuse_weight_transforms``); ``finish`` and ``pool`` as ``cpu_winograd_fused.forward`` takes them."""
    w = w if w.dtype == x.dtype else w.astype(x.dtype)  # the kernel's vectors are of one dtype
    up = _cached(w, "fused", lambda: cpu_winograd_fused.pack_filters(filter_transform(w)))
    b = None if bias is None else np.asarray(bias, dtype=x.dtype)
    return cpu_winograd_fused.forward(x, up, w.shape[0], pad4, tuple(out_hw), b, finish, pool)


def winograd_fused_backward_input(g: np.ndarray, w: np.ndarray, pad4: Pad4, x_hw: tuple[int, ...]) -> np.ndarray:
    """dL/dx of a stride-1 3x3 conv2d by ``cpu_winograd_fused``: g (N, C_out, Ho, Wo) -> (N, C_in, H, W)."""
    w = w if w.dtype == g.dtype else w.astype(g.dtype)
    up = _cached(w, "fused adjoint",
                 lambda: cpu_winograd_fused.pack_filters(cpu_winograd_fused.adjoint_filters(filter_transform(w))))
    return cpu_winograd_fused.backward_input(g, up, w.shape[1], pad4, tuple(x_hw))


def _slot_buffer(m: int, count: int, channels: int, dtype: Any, planar: bool = False) -> np.ndarray:
    """A buffer for V or M: (m, 16, count', channels), or (``planar``) (m, 16, channels, count).

    Channels last, ``count' = count + 1`` where a component's ``count * channels`` values span a
    multiple of 4 KiB: the transforms write all 16 components of a tile at once, and 16 addresses
    4 KiB apart share one L1 set (32 px maps at 32 channels ran their input transform 1.5x
    slower). The spare tile is zeroed; the kernels skip it (they are told ``ntx``), the GEMMs read
    the first ``count`` tiles.
    """
    if planar:
        return np.empty((m, 16, channels, count), dtype=dtype)
    spare = _spare_row(count, channels, dtype)
    buffer = np.empty((m, 16, count + spare, channels), dtype=dtype)
    buffer[:, :, count:] = 0
    return buffer


def _winograd_tiles(n: int, nty: int, ntx: int, tile_bytes: int, per_image: bool = False) -> list[Tile]:
    """Chunks of images (``per_image``: single images), or bands of at least ``WINOGRAD_BAND_TILES``
    tiles of an image whose V and M are large."""
    bands = min(nty, nty * ntx // WINOGRAD_BAND_TILES) if tile_bytes * nty * ntx > WINOGRAD_BAND_BYTES else 1
    if bands > 1:
        bounds = [nty * b // bands for b in range(bands + 1)]
        return [(slice(i, i + 1), r0, r1) for i in range(n) for r0, r1 in zip(bounds, bounds[1:], strict=False)]
    if per_image:
        return [(slice(i, i + 1), 0, nty) for i in range(n)]
    return [(chunk, 0, nty) for chunk in batch_chunks(slice(0, n), tile_bytes * nty * ntx)]


def _winograd(x: np.ndarray, w: np.ndarray, pad4: Pad4, out_hw: tuple[int, ...], bias: Any = None,
              adjoint: bool = False) -> np.ndarray:
    """The stride-1 3x3 convolution of ``x`` (N, C_in, H, W) by ``w``; ``adjoint=True``: its input gradient.

    Adjoint: ``x`` is the output gradient (N, C_out, Ho, Wo) and ``pad4`` the adjoint's padding
    ``2 - pad``; the GEMMs use ``U'[ab] = U[p(a)p(b)]^T``, with V and M stored at p(a)p(b). Only
    ``pad4``'s top and left matter: ``out_hw`` says how many output pixels there are, and pixels
    outside ``x`` read as 0. Small maps run channels last (``M[ab] = V[ab] @ U[ab]^T``), wide ones
    planar (``M[ab] = U[ab] @ V[ab]``): ``winograd_planar``. A thread's V and M buffers are sized for
    its largest tile; the kernels are told ``ntx`` and leave the rest alone.
    """
    slots = cpu_winograd.ADJOINT_SLOTS if adjoint else cpu_winograd.FORWARD_SLOTS
    n, c_in = x.shape[:2]
    c_out = w.shape[1] if adjoint else w.shape[0]
    ho, wo = out_hw
    nty, ntx = -(-ho // 2), -(-wo // 2)
    planar = winograd_planar(ntx, max(c_in, c_out))
    if _SHARED_GEMMS.get() and not adjoint and len(x) > 0 and winograd4_pays(ho, wo, c_in, c_out):
        return _winograd4_shared(x, w, bias, pad4, out_hw)
    shared = _SHARED_GEMMS.get() and not planar and nty * ntx <= SHARED_MAX_TILES
    if planar:  # (16, C_out', C_in') for M = U' @ V
        u = filter_transform(w).transpose(0, 2, 1) if adjoint else filter_transform(w)
        transforms = cpu_winograd.input_transform_planar, cpu_winograd.output_transform_planar
    else:  # (16, C_in', C_out') for M = V @ U'^T
        u = filter_transform(w) if adjoint else filter_transform(w, transposed=True)
        transforms = cpu_winograd.input_transform, cpu_winograd.output_transform

    def gemms(v: np.ndarray, mm: np.ndarray, count: int, part: Any = slice(None)) -> None:
        """The 16 GEMMs (``part`` of them) on the first ``count`` tiles of the buffers."""
        if planar:
            np.matmul(u[part], v[:, part, :, :count], out=mm[:, part, :, :count])
        else:
            np.matmul(v[:, part, :count], u[part], out=mm[:, part, :count])

    out = cpu_workspace.empty((n, c_out, ho, wo), x.dtype)
    bias = np.zeros(c_out, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    tile_bytes = 16 * (c_in + c_out) * x.itemsize  # one tile's columns of V and M
    work = n * c_out * c_in * 9 * ho * wo
    tiles = _winograd_tiles(n, nty, ntx, tile_bytes)
    if len(tiles) <= n and n < numba.get_num_threads() and work >= cpu_threads.MIN_WORK:
        # a few small maps (VGG's 28x28 and 14x14 at batch 1): the threads split the 16 GEMMs instead
        count = nty * ntx
        v, mm = _slot_buffer(n, count, c_in, x.dtype, planar), _slot_buffer(n, count, c_out, x.dtype, planar)
        transforms[0](x, pad4[0], pad4[2], 0, nty, slots, v, ntx)
        cpu_threads.map_batch(lambda part, _: gemms(v, mm, count, part), 16, work)
        transforms[1](mm, bias, 0, nty, slots, out, ntx)
        return out

    if n == 0:  # an empty batch: no tiles
        return out
    if shared and tiles[0][2] - tiles[0][1] == nty:
        _over_tiles(cpu_conv, tiles, work, lambda part, _: _winograd_shared(
            x, u, bias, pad4, slots, transforms, nty, ntx, part[0][0].start, part[-1][0].stop, out))
        return out

    def run(part: list[Tile], parallel: bool) -> None:  # one thread's run of tiles
        largest = max(t[0].stop - t[0].start for t in part), max(t[2] - t[1] for t in part) * ntx
        v_buf, mm_buf = _slot_buffer(*largest, c_in, x.dtype, planar), _slot_buffer(*largest, c_out, x.dtype, planar)
        for images, t0, t1 in part:
            # the kernels get whole (contiguous) buffers and ntx; the GEMMs read the tiles in use
            m, count = images.stop - images.start, (t1 - t0) * ntx
            transforms[0](x[images], pad4[0], pad4[2], t0, t1, slots, v_buf[:m], ntx)
            gemms(v_buf[:m], mm_buf[:m], count)
            transforms[1](mm_buf[:m], bias, t0, t1, slots, out[images], ntx)

    _over_tiles(cpu_conv, tiles, work, run)
    return out


def _winograd_shared(x: np.ndarray, u: np.ndarray, bias: np.ndarray, pad4: Pad4, slots: np.ndarray,
                     transforms: tuple[Any, Any], nty: int, ntx: int, first: int, stop: int, out: np.ndarray) -> None:
    """Images ``first..stop`` of ``_winograd``'s channels-last path, their products shared (``shared_winograd_gemms``).

    V and M are stored slot by slot, ``(16, m * tiles, C)``, so that each slot's rows of all m
    images are one matrix; the transforms write and read them through an (m, 16, tiles, C) view.
    """
    count = nty * ntx
    step = min(max(1, SHARED_ROWS // count), stop - first)
    v_buf, mm_buf = _slot_major(step * count, x.shape[1], x.dtype), _slot_major(step * count, u.shape[2], x.dtype)
    for i0 in range(first, stop, step):  # one pair of buffers for every group of images
        m = min(step, stop - i0)
        v, mm = v_buf[:, :m * count], mm_buf[:, :m * count]
        transforms[0](x[i0:i0 + m], pad4[0], pad4[2], 0, nty, slots, v.reshape(16, m, count, -1).transpose(1, 0, 2, 3),
                      ntx)
        np.matmul(v, u, out=mm)
        transforms[1](mm.reshape(16, m, count, -1).transpose(1, 0, 2, 3), bias, 0, nty, slots, out[i0:i0 + m], ntx)


WINOGRAD4_MIN_CHANNELS = 128  # F(4x4, 3x3) where both channel counts are at least this (the GEMMs dominate) ...
WINOGRAD4_GAIN = 1.25  # ... and F(2x2)'s products outnumber its own by this factor (its tiles fill the map)


def winograd4_pays(ho: int, wo: int, c_in: int, c_out: int) -> bool:
    """Whether an ``ho x wo`` output map runs F(4x4, 3x3) inside ``shared_winograd_gemms`` (``cpu_winograd4``).

    Products per image and channel pair: F(2x2) 16 per 2x2 tile, F(4x4) 36 per 4x4 tile, each
    map rounded up to whole tiles: 14 x 16 is 896 against 576 (1.56x), 14 x 14 784 against 576
    (1.36x), 10 x 14 560 against 432 (1.30x), 6 x 6 144 against 144 (no gain). Few channels: the
    transforms, 2.25x larger per output, are no longer small beside the GEMMs.
    """
    f2 = 16 * -(-ho // 2) * -(-wo // 2)
    f4 = 36 * -(-ho // 4) * -(-wo // 4)
    lanes = cpu_simd.lanes_of(np.float32)  # the kernels take whole vectors of channels (also of float64)
    return (min(c_in, c_out) >= WINOGRAD4_MIN_CHANNELS and c_in % lanes == 0 and c_out % lanes == 0
            and f2 >= WINOGRAD4_GAIN * f4)


def _winograd4_shared(x: np.ndarray, w: np.ndarray, bias: Any, pad4: Pad4, out_hw: tuple[int, ...]) -> np.ndarray:
    """``_winograd``'s forward pass by F(4x4, 3x3), its products shared across images (``shared_winograd_gemms``).

    The threads take runs of images; each runs its images in groups of up to ``SHARED_ROWS`` rows
    (images x 4x4 tiles), one GEMM per component over the group, V and M stored component by
    component (``cpu_winograd4``'s layout).
    """
    n, c_in, c_out = len(x), x.shape[1], w.shape[0]
    ho, wo = out_hw
    nty, ntx = -(-ho // 4), -(-wo // 4)
    count = nty * ntx
    u = _cached(w, ("winograd4", x.dtype.str), lambda: cpu_winograd4.filter_transform(w.astype(x.dtype, copy=False)))
    bias = np.zeros(c_out, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    out = cpu_workspace.empty((n, c_out, ho, wo), x.dtype)

    def run(part: list[Tile], _: bool) -> None:  # one thread's images
        first, stop = part[0][0].start, part[-1][0].stop
        step = min(max(1, SHARED_ROWS // count), stop - first)
        rows = step * count  # V and M (36, rows', C), C-contiguous: the kernels index the whole buffers
        v_buf = np.empty((36, rows + _spare_row(rows, c_in, x.dtype), c_in), dtype=x.dtype)
        mm_buf = np.empty((36, rows + _spare_row(rows, c_out, x.dtype), c_out), dtype=x.dtype)
        for i0 in range(first, stop, step):
            m = min(step, stop - i0)
            cpu_winograd4.input_transform(x[i0:i0 + m], pad4[0], pad4[2], nty, ntx, v_buf)
            np.matmul(v_buf[:, :m * count], u, out=mm_buf[:, :m * count])
            cpu_winograd4.output_transform(mm_buf, bias, nty, ntx, out[i0:i0 + m])

    tiles = [(slice(i, i + 1), 0, 1) for i in range(n)]
    _over_tiles(cpu_conv, tiles, n * c_out * c_in * 9 * ho * wo, run)
    return out


def _slot_major(rows: int, channels: int, dtype: Any) -> np.ndarray:
    """A (16, rows, channels) buffer for ``_winograd_shared``, its slots a spare row apart where they would
    be a multiple of 4 KiB apart (``_slot_buffer`` says why)."""
    return np.empty((16, rows + _spare_row(rows, channels, dtype), channels), dtype=dtype)[:, :rows]


def _spare_row(rows: int, channels: int, dtype: Any) -> int:
    """1 where ``rows`` rows of ``channels`` values span a multiple of 4 KiB, so that the 16 components
    of a tile would fall in one L1 set; else 0."""
    return int(rows * channels * np.dtype(dtype).itemsize % 4096 == 0)
