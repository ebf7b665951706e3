"""Copies between NCHW images and channels-last planes: the layout change in front of and behind
the kernels that run along the channels (Winograd's transforms on small maps, the depthwise
kernels on small planes); and, at the end, the window arithmetic the im2col and depthwise kernels
share (which output positions of a tap read inside the input, the scalars every kernel takes).

The copies turn blocks of L channels x L pixels around in registers (``cpu_simd.vtranspose``, L
= 16 float32): 1.2-3.8x (into) and 1.6-2.2x (back) faster than the earlier copies, which moved 8
channels a pixel at a time and were themselves 20-30% faster than loops over blocks of values
(benchmarks/README.md, "Convolution planning"). A block reads each of its L source lines once, so
the 4 KiB aliasing of 32x32 planes (every channel's line in one L1 set), which made whole-row passes
over all channels 1.5-4x slower, does not come back.
"""

from __future__ import annotations

import numba

from minivis.kernels import cpu_simd as simd


@numba.njit(nogil=True, cache=True)
def to_channels_last(src, row_shift, col_shift, r_lo, r_hi, q_lo, q_hi, dst):
    """dst[r, q, c] = src[c, r + row_shift, q - col_shift] for rows r_lo..r_hi and columns q_lo..q_hi.

    src: (C, H, W), one C-contiguous NCHW image; dst: (rows, columns, C). The rest of dst is left as it is.
    """
    channels, height, width = src.shape
    lanes, columns = simd.lanes(dst), dst.shape[1]
    flat, out = src.reshape(-1), dst.reshape(-1)
    for r in range(r_lo, r_hi):
        s = r + row_shift
        for c0 in range(0, channels, lanes):
            for q0 in range(q_lo, q_hi, lanes):
                simd.vtranspose(flat, (c0 * height + s) * width + q0 - col_shift, height * width,
                                min(lanes, channels - c0), min(lanes, q_hi - q0),
                                out, (r * columns + q0) * channels + c0, channels)


@numba.njit(nogil=True, cache=True)
def from_channels_last(src, row_shift, r_hi, q_hi, dst):
    """dst[c, r + row_shift, q] = src[r, q, c] for rows 0..r_hi and columns 0..q_hi: the inverse copy.

    src: (rows, columns, C); dst: (C, H, W), one C-contiguous NCHW image.
    """
    channels, height, width = dst.shape
    lanes, columns = simd.lanes(dst), src.shape[1]
    flat, out = src.reshape(-1), dst.reshape(-1)
    for r in range(r_hi):
        s = r + row_shift
        for q0 in range(0, q_hi, lanes):
            for c0 in range(0, channels, lanes):
                simd.vtranspose(flat, (r * columns + q0) * channels + c0, channels, min(lanes, q_hi - q0),
                                min(lanes, channels - c0), out, (c0 * height + s) * width + q0, height * width)


# ----------------------------------------------------------------------------- window arithmetic
# Shared by the im2col (``cpu_conv``) and depthwise (``cpu_depthwise``) kernels.
@numba.njit(cache=True)
def _valid_range(n_out, stride, offset, size):
    """Output positions ``o`` in [0, n_out) whose input index ``o*stride + offset`` lies in [0, size).

    Solving ``0 <= o*stride + offset < size`` for ``o`` once per kernel tap keeps the bounds
    checks out of the innermost loop, which then vectorizes.
    """
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - 1 - offset < 0 else (size - 1 - offset) // stride + 1
    return min(lo, n_out), max(min(hi, n_out), min(lo, n_out))


@numba.njit(cache=True)
def _fill_zero(plane):
    """plane[:, :] = 0, as a loop (Numba compiles loops faster than slice assignments)."""
    for r in range(plane.shape[0]):
        row = plane[r]
        for t in range(plane.shape[1]):
            row[t] = 0


def _geometry(stride, pad4, dilation) -> tuple[int, int, int, int, int, int]:
    """The scalars every kernel takes: (sh, sw, top, left, dh, dw). Bottom/right padding only
    shows in the output size, which the kernels read from their array shapes."""
    return int(stride[0]), int(stride[1]), int(pad4[0]), int(pad4[2]), int(dilation[0]), int(dilation[1])
