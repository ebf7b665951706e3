"""Copies between NCHW images and channels-last planes: the layout change in front of and behind
the kernels that run along the channels (Winograd's transforms on small maps, the depthwise
kernels on small planes); and, at the end, the window arithmetic the im2col and depthwise kernels
share (which output positions of a tap read inside the input, the scalars every kernel takes).

The copies go 8 channels at a time: planes whose size is a multiple of 4 KiB (32x32 float32) put
every channel's line in the same L1 set, so a pass over whole rows of all channels at once ran
Winograd's 32 px transforms 1.5-4x slower than the 28 px ones; 8 lines per set fit the cache's
ways. Each pass walks a whole row with the 8 channels written out as 8 statements (one 32-byte
run of the channels-last row per pixel): 20-30% faster than loops over blocks of 16 pixels by 8
channels, and 1.3-4x faster than a plain walk for the depthwise kernels' transposes of whole
planes (benchmarks/README.md, "Convolution planning").
"""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True)
def to_channels_last(src, row_shift, col_shift, r_lo, r_hi, q_lo, q_hi, dst):
    """dst[r, q, c] = src[c, r + row_shift, q - col_shift] for rows r_lo..r_hi and columns q_lo..q_hi.

    src: (C, H, W), one NCHW image; dst: (rows, columns, C). The rest of dst is left as it is.
    """
    channels = src.shape[0]
    for r in range(r_lo, r_hi):
        s = r + row_shift
        c0 = 0
        while c0 + 8 <= channels:
            x0, x1, x2, x3 = src[c0, s], src[c0 + 1, s], src[c0 + 2, s], src[c0 + 3, s]
            x4, x5, x6, x7 = src[c0 + 4, s], src[c0 + 5, s], src[c0 + 6, s], src[c0 + 7, s]
            for q in range(q_lo, q_hi):
                d, j = dst[r, q], q - col_shift
                d[c0], d[c0 + 1], d[c0 + 2], d[c0 + 3] = x0[j], x1[j], x2[j], x3[j]
                d[c0 + 4], d[c0 + 5], d[c0 + 6], d[c0 + 7] = x4[j], x5[j], x6[j], x7[j]
            c0 += 8
        for c in range(c0, channels):
            for q in range(q_lo, q_hi):
                dst[r, q, c] = src[c, s, q - col_shift]


@numba.njit(nogil=True, cache=True)
def from_channels_last(src, row_shift, r_hi, q_hi, dst):
    """dst[c, r + row_shift, q] = src[r, q, c] for rows 0..r_hi and columns 0..q_hi: the inverse copy.

    src: (rows, columns, C); dst: (C, H, W), one NCHW image.
    """
    channels = dst.shape[0]
    for r in range(r_hi):
        s = r + row_shift
        c0 = 0
        while c0 + 8 <= channels:
            y0, y1, y2, y3 = dst[c0, s], dst[c0 + 1, s], dst[c0 + 2, s], dst[c0 + 3, s]
            y4, y5, y6, y7 = dst[c0 + 4, s], dst[c0 + 5, s], dst[c0 + 6, s], dst[c0 + 7, s]
            for q in range(q_hi):
                p = src[r, q]
                y0[q], y1[q], y2[q], y3[q] = p[c0], p[c0 + 1], p[c0 + 2], p[c0 + 3]
                y4[q], y5[q], y6[q], y7[q] = p[c0 + 4], p[c0 + 5], p[c0 + 6], p[c0 + 7]
            c0 += 8
        for c in range(c0, channels):
            for q in range(q_hi):
                dst[c, s, q] = src[r, q, c]


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
