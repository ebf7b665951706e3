"""Winograd F(2x2, 3x3) convolution kernels (CPU): 2.25x fewer multiplications for 3x3, stride 1.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). A 2x2 block of
outputs of a 3x3 correlation reads a 4x4 block ``d`` of the (padded) input. Winograd's minimal
filtering algorithm computes it with 16 multiplications instead of 36:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise; g the 3x3 filter)

    B^T = [[1, 0, -1, 0],     G = [[1,    0,   0],     A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],          [1/2,  1/2, 1/2],          [0, 1, -1, -1]]
           [0, -1, 1, 0],          [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]         [0,    0,   1]]

Summed over input channels, the elementwise product becomes a matrix product for each of the 16
positions ``(a, b)`` of the 4x4 transformed block: with ``U[ab] = (G g G^T)[a, b]`` as a
``(C_out, C_in)`` matrix and ``V[ab] = (B^T d B)[a, b]`` as ``(tiles, C_in)``,

    M[ab] = V[ab] @ U[ab]^T          then  Y = A^T M A  per tile and output channel.

So a convolution is: ``filter_transform`` (once per weight), ``input_transform`` (one pass over the
input), 16 GEMMs with K = C_in (BLAS), ``output_transform`` (one pass over the output). The GEMMs
do 16 multiply-adds per tile and channel pair where im2col's does 36; the transforms are adds only.
The weight gradient runs the adjoints of the output and filter transforms (bottom of this file).

The adjoint (the input-gradient) of a stride-1 3x3 convolution is the convolution of the output
gradient with the kernel flipped in both axes and its channel axes swapped, padded by
``2 - pad``. It needs no transform of its own: flipping g reverses the rows of G up to swapping
rows 0 and 3 (``G J = P G``), so the adjoint's ``U'[ab] = U[p(a)p(b)]^T`` with p = (3, 1, 2, 0).
The kernels take ``slots``: component ``ab`` of V and M lives at ``slots[ab]``
(``FORWARD_SLOTS``, or ``ADJOINT_SLOTS`` = p(a)p(b)), so the GEMMs read ``U`` or its transpose.

Layouts: ``x: (m, C, H, W)``; tiles are numbered row-major over the ``(tile rows, tile columns)``
grid of 2x2 output blocks. ``input_transform``/``output_transform`` keep channels last,
``V: (m, 16, tiles, C)``, ``M: (m, 16, tiles, C_out)``, so every inner loop runs along the
channels, a whole vector register wide whatever the image size; they copy each image into a
channels-last scratch plane first, and the output back from one (``cpu_layout``). With tiles last (the
``_planar`` pair below), a 28 px image's loops are 14 long and its transforms took 2.5x the
GEMMs' time; on wide maps the planar pair is faster (``conv_plan.winograd_planar`` picks). A call
handles tile rows ``ty0..ty1`` of every image in ``x`` (a row band); the kernels are serial and
release the GIL, so ``cpu_threads.map_batch`` runs bands side by side.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_simd as simd
from minivis.kernels.cpu_layout import from_channels_last, to_channels_last

FORWARD_SLOTS = np.arange(16)
ADJOINT_SLOTS = np.array([4 * a + b for a in (3, 1, 2, 0) for b in (3, 1, 2, 0)])


@numba.njit(nogil=True, cache=True)
def _filters(w, u, transposed):
    """u[4a + b, co, ci] = (G g G^T)[a, b] for each 3x3 filter g = w[co, ci] (``transposed``: u[4a + b, ci, co]).

    Filters go in blocks of 64 along u's last axis: gathered into a (9, 64) block of taps,
    combined by G into a (12, 64) block, then by G^T into 16 rows of u; every inner loop runs
    along the block, and every write to u is contiguous.
    """
    rows, cols = u.shape[1], u.shape[2]
    block = 64
    g = np.empty((9, block), dtype=u.dtype)
    t = np.empty((12, block), dtype=u.dtype)  # (G g)[a, j] in row 3a + j
    for row in range(rows):
        for c0 in range(0, cols, block):
            nb = min(block, cols - c0)
            for k in range(nb):
                co, ci = (c0 + k, row) if transposed else (row, c0 + k)
                for tap in range(9):
                    g[tap, k] = w[co, ci, tap // 3, tap % 3]
            for j in range(3):
                for k in range(nb):
                    g0, g1, g2 = g[j, k], g[3 + j, k], g[6 + j, k]
                    t[j, k], t[9 + j, k] = g0, g2
                    t[3 + j, k] = 0.5 * (g0 + g1 + g2)
                    t[6 + j, k] = 0.5 * (g0 - g1 + g2)
            for a in range(4):
                u0, u1 = u[4 * a, row, c0:c0 + nb], u[4 * a + 1, row, c0:c0 + nb]
                u2, u3 = u[4 * a + 2, row, c0:c0 + nb], u[4 * a + 3, row, c0:c0 + nb]
                for k in range(nb):
                    t0, t1, t2 = t[3 * a, k], t[3 * a + 1, k], t[3 * a + 2, k]
                    u0[k], u3[k] = t0, t2
                    u1[k] = 0.5 * (t0 + t1 + t2)
                    u2[k] = 0.5 * (t0 - t1 + t2)


def filter_transform(w: np.ndarray, transposed: bool = False) -> np.ndarray:
    """``U = G g G^T`` for every filter of ``w: (C_out, C_in, 3, 3)``, as ``(16, C_out, C_in)``.

    ``transposed=True``: as ``(16, C_in, C_out)``, each ``U[ab]^T`` contiguous (the forward GEMMs' operand).
    """
    shape = (16, w.shape[1], w.shape[0]) if transposed else (16,) + w.shape[:2]
    u = np.empty(shape, dtype=w.dtype)
    _filters(np.ascontiguousarray(w), u, transposed)
    return u


@numba.njit(nogil=True, cache=True)
def _bt_column(src, i, di, dst, j0, j1, j2, j3):
    """B^T times a column of four vectors ``src[i + k*di]``, into the vectors at dst[j0] .. dst[j3]:
    d0 - d2, d1 + d2, d2 - d1, d1 - d3 (``cpu_simd``: flat offsets, whole vectors of channels)."""
    d0, d1 = simd.vload(src, i), simd.vload(src, i + di)
    d2, d3 = simd.vload(src, i + 2 * di), simd.vload(src, i + 3 * di)
    simd.vstore(dst, j0, simd.vsub(d0, d2))
    simd.vstore(dst, j1, simd.vadd(d1, d2))
    simd.vstore(dst, j2, simd.vsub(d2, d1))
    simd.vstore(dst, j3, simd.vsub(d1, d3))


@numba.njit(nogil=True, cache=True)
def input_transform(x, top, left, ty0, ty1, slots, v, ntx=0):
    """v[n, slots, t, c] = B^T d B (flattened) for each 2x2 output tile t of tile rows ty0..ty1 (d: its input block).

    ``ntx``: tiles per tile row (0: ``v`` holds exactly the band's tiles); ``v`` may hold more
    tiles than the band's, which are left as they are.

    Tile (ty, tx) reads padded rows 2*ty..2*ty+3 and columns 2*tx..2*tx+3, i.e. input pixel
    ``(2*ty - top + i, 2*tx - left + j)`` (zero outside the input). Per image, the rows the band
    reads are copied into a zero-padded channels-last plane ``xp``; per tile, B^T combines the
    block's rows and B its columns: whole vectors of channels as explicit vectors (``_bt_column``;
    LLVM left the loops below scalar, unsure that their eight rows do not overlap), the last
    ``C % lanes`` channels one at a time.
    """
    m, channels, h, w = x.shape
    nty = ty1 - ty0
    ntx = ntx or v.shape[2] // nty
    hp, wp = 2 * nty + 2, 2 * ntx + 2
    r_off = 2 * ty0 - top  # the input row of padded row 0
    xp = np.zeros((hp, wp, channels), dtype=x.dtype)  # cells outside the input are never written: stay 0
    r_lo, r_hi = max(0, -r_off), min(hp, h - r_off)
    q_lo, q_hi = max(0, left), min(wp, left + w)
    bt = np.empty((16, channels), dtype=x.dtype)  # (B^T d)[a, j] in row 4a + j
    lanes, size = simd.lanes(x), x.itemsize
    whole = channels - channels % lanes if v.strides[3] == size else 0  # channels done as vectors
    sn, ss, st = v.strides[0] // size, v.strides[1] // size, v.strides[2] // size  # v's strides in elements
    rows = np.empty(16 * lanes, dtype=x.dtype)  # a vector's (B^T d)[a, j] at vector 4a + j
    flat, row = xp.reshape(-1), wp * channels
    for n in range(m):
        to_channels_last(x[n], r_off, left, r_lo, r_hi, q_lo, q_hi, xp)
        for ty in range(nty):
            for tx in range(ntx):
                t, r, q = ty * ntx + tx, 2 * ty, 2 * tx
                corner, o = (r * wp + q) * channels, n * sn + t * st
                for c in range(0, whole, lanes):
                    for j in range(4):  # B^T d, column j
                        _bt_column(flat, corner + j * channels + c, row, rows, j * lanes, (4 + j) * lanes,
                                   (8 + j) * lanes, (12 + j) * lanes)
                    for a in range(4):  # (B^T d) B, row a
                        _bt_column(rows, 4 * a * lanes, lanes, v, o + slots[4 * a] * ss + c,
                                   o + slots[4 * a + 1] * ss + c, o + slots[4 * a + 2] * ss + c,
                                   o + slots[4 * a + 3] * ss + c)
                if whole == channels:
                    continue
                for j in range(4):  # B^T d, column j: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    d0, d1, d2, d3 = xp[r, q + j], xp[r + 1, q + j], xp[r + 2, q + j], xp[r + 3, q + j]
                    b0, b1, b2, b3 = bt[j], bt[4 + j], bt[8 + j], bt[12 + j]
                    for c in range(whole, channels):
                        b0[c] = d0[c] - d2[c]
                        b1[c] = d1[c] + d2[c]
                        b2[c] = d2[c] - d1[c]
                        b3[c] = d1[c] - d3[c]
                for a in range(4):  # (B^T d) B, row a
                    e0, e1, e2, e3 = bt[4 * a], bt[4 * a + 1], bt[4 * a + 2], bt[4 * a + 3]
                    v0, v1 = v[n, slots[4 * a], t], v[n, slots[4 * a + 1], t]
                    v2, v3 = v[n, slots[4 * a + 2], t], v[n, slots[4 * a + 3], t]
                    for c in range(whole, channels):
                        v0[c] = e0[c] - e2[c]
                        v1[c] = e1[c] + e2[c]
                        v2[c] = e2[c] - e1[c]
                        v3[c] = e1[c] - e3[c]


@numba.njit(nogil=True, cache=True)
def output_transform(mm, bias, ty0, ty1, slots, y, ntx=0):
    """y[n, co, 2*ty:2*ty+2, 2*tx:2*tx+2] = A^T m A + bias[co] for tile rows ty0..ty1 (cropped at y's edge).

    mm: (m, 16, tiles, C_out) from the GEMMs, component ``ab`` at ``slots[ab]``; bias: (C_out,).
    Per tile, A^T combines the 4x4 block's rows and A its columns, one loop along the channels
    each, into a channels-last plane ``yp``, which is then copied into y's rows.
    """
    m, c_out, ho, wo = y.shape
    nty = ty1 - ty0
    ntx = ntx or mm.shape[2] // nty
    at = np.empty((8, c_out), dtype=y.dtype)  # (A^T m)[i, j] in row 4i + j
    yp = np.empty((2 * nty, 2 * ntx, c_out), dtype=y.dtype)
    r_hi, q_hi = min(2 * nty, ho - 2 * ty0), min(2 * ntx, wo)
    for n in range(m):
        for ty in range(nty):
            for tx in range(ntx):
                t = ty * ntx + tx
                for j in range(4):  # A^T m, column j: rows m0 + m1 + m2, m1 - m2 - m3
                    m0, m1 = mm[n, slots[j], t], mm[n, slots[4 + j], t]
                    m2, m3 = mm[n, slots[8 + j], t], mm[n, slots[12 + j], t]
                    a0, a1 = at[j], at[4 + j]
                    for c in range(c_out):
                        a0[c] = m0[c] + m1[c] + m2[c]
                        a1[c] = m1[c] - m2[c] - m3[c]
                for i in range(2):  # (A^T m) A, row i: the tile's two pixels in output row 2*ty + i
                    p0, p1 = yp[2 * ty + i, 2 * tx], yp[2 * ty + i, 2 * tx + 1]
                    s0, s1, s2, s3 = at[4 * i], at[4 * i + 1], at[4 * i + 2], at[4 * i + 3]
                    for c in range(c_out):
                        p0[c] = s0[c] + s1[c] + s2[c] + bias[c]
                        p1[c] = s1[c] - s2[c] - s3[c] + bias[c]
        from_channels_last(yp, 2 * ty0, r_hi, q_hi, y[n])


# ----------------------------------------------------------------------------- planar transforms
# The same transforms with tiles last, ``V: (m, 16, C, tiles)``, ``M: (m, 16, C_out, tiles)``: every
# inner loop runs along a row of tiles and reads or writes an NCHW row in place, with no copy to a
# channels-last plane. On maps wider than ``conv_plan.WINOGRAD_PLANAR_TILES`` tiles (VGG's 56-224 px
# stages) the rows are long enough to vectorize, and this layout ran 1.2-1.5x faster there
# (benchmarks/README.md, "Convolution planning").
@numba.njit(nogil=True, cache=True)
def input_transform_planar(x, top, left, ty0, ty1, slots, v, ntx=0):
    """``input_transform`` into the planar layout ``v: (m, 16, C, tiles)``.

    Tile (ty, tx) reads padded rows 2*ty..2*ty+3 and columns 2*tx..2*tx+3, i.e. input pixel
    ``(2*ty - top + i, 2*tx - left + j)`` (zero outside the input). Per (image, channel, tile
    row), the four input rows are copied into a zero-padded buffer, combined by B^T into four
    rows, split into even and odd columns, and combined by B: every inner loop is contiguous.
    """
    m, channels, h, w = x.shape
    ntx = ntx or v.shape[3] // (ty1 - ty0)
    width = 2 * ntx + 2
    q_lo, q_hi = max(0, left), min(width, left + w)  # padded columns that hold input pixels
    rows = np.zeros((4, width), dtype=x.dtype)
    even = np.empty((4, ntx + 1), dtype=x.dtype)  # column 2k of each B^T-combined row
    odd = np.empty((4, ntx + 1), dtype=x.dtype)  # column 2k + 1
    for n in range(m):
        for c in range(channels):
            for ty in range(ty0, ty1):
                for i in range(4):
                    r = 2 * ty - top + i
                    if 0 <= r < h and q_lo < q_hi:
                        rows[i, q_lo:q_hi] = x[n, c, r, q_lo - left:q_hi - left]
                    else:
                        rows[i, q_lo:q_hi] = 0
                d0, d1, d2, d3 = rows[0], rows[1], rows[2], rows[3]
                for k in range(ntx + 1):  # B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    q = 2 * k
                    even[0, k] = d0[q] - d2[q]
                    even[1, k] = d1[q] + d2[q]
                    even[2, k] = d2[q] - d1[q]
                    even[3, k] = d1[q] - d3[q]
                    q += 1
                    odd[0, k] = d0[q] - d2[q]
                    odd[1, k] = d1[q] + d2[q]
                    odd[2, k] = d2[q] - d1[q]
                    odd[3, k] = d1[q] - d3[q]
                s = (ty - ty0) * ntx
                for a in range(4):  # (B^T d) B: tile tx's columns are even[tx], odd[tx], even[tx+1], odd[tx+1]
                    e, o = even[a], odd[a]
                    v0, v1 = v[n, slots[4 * a], c, s:s + ntx], v[n, slots[4 * a + 1], c, s:s + ntx]
                    v2, v3 = v[n, slots[4 * a + 2], c, s:s + ntx], v[n, slots[4 * a + 3], c, s:s + ntx]
                    for k in range(ntx):
                        v0[k] = e[k] - e[k + 1]
                        v1[k] = o[k] + e[k + 1]
                        v2[k] = e[k + 1] - o[k]
                        v3[k] = o[k] - o[k + 1]


@numba.njit(nogil=True, cache=True)
def output_transform_planar(mm, bias, ty0, ty1, slots, y, ntx=0):
    """``output_transform`` from the planar layout ``mm: (m, 16, C_out, tiles)``.

    Per (image, channel, tile row), A^T combines the 4x4 blocks' rows, A their columns; the two
    columns of each 2x2 block are written as the even and odd pixels of the output row.
    """
    m, c_out, ho = y.shape[:3]
    ntx = ntx or mm.shape[3] // (ty1 - ty0)
    top = np.empty((4, ntx), dtype=y.dtype)  # row 0 of A^T m, for each column of m
    bot = np.empty((4, ntx), dtype=y.dtype)  # row 1
    for n in range(m):
        for co in range(c_out):
            b = bias[co]
            for ty in range(ty0, ty1):
                s = (ty - ty0) * ntx
                for j in range(4):
                    m0, m1 = mm[n, slots[j], co, s:s + ntx], mm[n, slots[4 + j], co, s:s + ntx]
                    m2, m3 = mm[n, slots[8 + j], co, s:s + ntx], mm[n, slots[12 + j], co, s:s + ntx]
                    t, u = top[j], bot[j]
                    for k in range(ntx):
                        t[k] = m0[k] + m1[k] + m2[k]
                        u[k] = m1[k] - m2[k] - m3[k]
                _write_row(top, b, y[n, co, 2 * ty])
                if 2 * ty + 1 < ho:
                    _write_row(bot, b, y[n, co, 2 * ty + 1])


@numba.njit(nogil=True, cache=True)
def _write_row(rows, b, out):
    """One output row from one row of A^T m per column of m: (A^T m) A gives pixels 2k and 2k + 1."""
    for k in range(rows.shape[1]):
        out[2 * k] = rows[0, k] + rows[1, k] + rows[2, k] + b
    for k in range(out.shape[0] // 2):
        out[2 * k + 1] = rows[1, k] - rows[2, k] - rows[3, k] + b


# ----------------------------------------------------------------------------- the weight gradient
# Y = A^T [U * V] A is linear in U = G w G^T, so dL/dU[ab] = (A dY A^T)[ab] * V[ab] per tile and
# dL/dw = G^T (dL/dU) G: the output gradient's 2x2 tiles are transformed by A (``gradient_transform``,
# the adjoint of ``output_transform``), the 16 GEMMs sum over tiles instead of channels
# (dU[ab] = dM[ab]^T @ V[ab], K = tiles), and ``filter_gradient`` maps dU back through G.
@numba.njit(nogil=True, cache=True)
def _a_column(src, i, di, dst, j0, j1, j2, j3, minus):
    """A times a column of two vectors ``src[i]``, ``src[i + di]``, into the vectors at dst[j0] .. dst[j3]:
    g0, g0 + g1, g0 - g1, -g1 (``minus``: a vector of -1, so that -g1 is exactly its negation)."""
    g0, g1 = simd.vload(src, i), simd.vload(src, i + di)
    simd.vstore(dst, j0, g0)
    simd.vstore(dst, j1, simd.vadd(g0, g1))
    simd.vstore(dst, j2, simd.vsub(g0, g1))
    simd.vstore(dst, j3, simd.vmul(minus, g1))


@numba.njit(nogil=True, cache=True)
def gradient_transform(g, ty0, ty1, gm, ntx=0):
    """gm[n, 4a + b, t, co] = (A g_t A^T)[a, b] for the 2x2 tile g_t of g[n, co] at each tile t of rows ty0..ty1.

    g: (m, C_out, Ho, Wo); gm: (m, 16, tiles, C_out). A tile's pixels beyond g's edge read as 0.
    Whole vectors of channels as explicit vectors (``_a_column``), the rest one at a time.
    """
    m, c_out, ho, wo = g.shape
    nty = ty1 - ty0
    ntx = ntx or gm.shape[2] // nty
    gp = np.zeros((2 * nty, 2 * ntx, c_out), dtype=g.dtype)  # cells beyond g's edge are never written: stay 0
    r_hi, q_hi = min(2 * nty, ho - 2 * ty0), min(2 * ntx, wo)
    ag = np.empty((8, c_out), dtype=g.dtype)  # (A g)[a, j] in row 2a + j
    lanes, size = simd.lanes(g), g.itemsize
    whole = c_out - c_out % lanes if gm.strides[3] == size else 0  # channels done as vectors
    sn, ss, st = gm.strides[0] // size, gm.strides[1] // size, gm.strides[2] // size  # gm's strides in elements
    rows = np.empty(8 * lanes, dtype=g.dtype)  # a vector's (A g)[a, j] at vector 2a + j
    neg = simd.vbcast(np.full(1, -1, dtype=g.dtype), 0)  # a vector of -1
    flat, row = gp.reshape(-1), 2 * ntx * c_out
    for n in range(m):
        to_channels_last(g[n], 2 * ty0, 0, 0, r_hi, 0, q_hi, gp)
        for ty in range(nty):
            for tx in range(ntx):
                t = ty * ntx + tx
                corner, o = (2 * ty * 2 * ntx + 2 * tx) * c_out, n * sn + t * st
                for c in range(0, whole, lanes):
                    for j in range(2):  # A g, column j
                        _a_column(flat, corner + j * c_out + c, row, rows, j * lanes, (2 + j) * lanes,
                                  (4 + j) * lanes, (6 + j) * lanes, neg)
                    for a in range(4):  # (A g) A^T, row a
                        s0 = o + 4 * a * ss + c
                        _a_column(rows, 2 * a * lanes, lanes, gm, s0, s0 + ss, s0 + 2 * ss, s0 + 3 * ss, neg)
                if whole == c_out:
                    continue
                for j in range(2):  # A g, column j: rows g0, g0 + g1, g0 - g1, -g1
                    g0, g1 = gp[2 * ty, 2 * tx + j], gp[2 * ty + 1, 2 * tx + j]
                    a0, a1, a2, a3 = ag[j], ag[2 + j], ag[4 + j], ag[6 + j]
                    for c in range(whole, c_out):
                        a0[c] = g0[c]
                        a1[c] = g0[c] + g1[c]
                        a2[c] = g0[c] - g1[c]
                        a3[c] = -g1[c]
                for a in range(4):  # (A g) A^T, row a: r0, r0 + r1, r0 - r1, -r1
                    r0, r1 = ag[2 * a], ag[2 * a + 1]
                    m0, m1, m2, m3 = gm[n, 4 * a, t], gm[n, 4 * a + 1, t], gm[n, 4 * a + 2, t], gm[n, 4 * a + 3, t]
                    for c in range(whole, c_out):
                        m0[c] = r0[c]
                        m1[c] = r0[c] + r1[c]
                        m2[c] = r0[c] - r1[c]
                        m3[c] = -r1[c]


@numba.njit(nogil=True, cache=True)
def filter_gradient(du, dw):
    """dw[co, ci] = G^T du[:, co, ci] G (3x3 from 4x4), the adjoint of ``filter_transform``.

    du: (16, C_out, C_in); dw: (C_out, C_in, 3, 3). Rows first, (G^T du)[i, b] = sum_a G[a, i] du[a, b],
    then columns the same way; 0.5 * (u1 +- u2) is the middle rows' share of both neighbours.
    """
    c_out, c_in = du.shape[1], du.shape[2]
    t = np.empty((12, c_in), dtype=dw.dtype)  # (G^T du)[i, b] in row 4i + b
    for co in range(c_out):
        for b in range(4):
            u0, u1, u2, u3 = du[b, co], du[4 + b, co], du[8 + b, co], du[12 + b, co]
            for ci in range(c_in):
                h = 0.5 * (u1[ci] + u2[ci])
                t[b, ci] = u0[ci] + h
                t[4 + b, ci] = 0.5 * (u1[ci] - u2[ci])
                t[8 + b, ci] = h + u3[ci]
        for i in range(3):
            t0, t1, t2, t3 = t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]
            for ci in range(c_in):
                h = 0.5 * (t1[ci] + t2[ci])
                dw[co, ci, i, 0] = t0[ci] + h
                dw[co, ci, i, 1] = 0.5 * (t1[ci] - t2[ci])
                dw[co, ci, i, 2] = h + t3[ci]
