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
``(C_out, C_in)`` matrix and ``V[ab] = (B^T d B)[a, b]`` as ``(C_in, tiles)``,

    M[ab] = U[ab] @ V[ab]          then  Y = A^T M A  per tile and output channel.

So a convolution is: ``filter_transform`` (once per weight), ``input_transform`` (one pass over the
input), 16 GEMMs with K = C_in (BLAS), ``output_transform`` (one pass over the output). The GEMMs
do 16 multiply-adds per tile and channel pair where im2col's does 36; the transforms are adds only.

The adjoint (the input-gradient) of a stride-1 3x3 convolution is the convolution of the output
gradient with the kernel flipped in both axes and its channel axes swapped, padded by
``2 - pad``. It needs no transform of its own: flipping g reverses the rows of G up to swapping
rows 0 and 3 (``G J = P G``), so the adjoint's ``U'[ab] = U[p(a)p(b)]^T`` with p = (3, 1, 2, 0).
The kernels take ``slots``: component ``ab`` of V and M lives at ``slots[ab]``
(``FORWARD_SLOTS``, or ``ADJOINT_SLOTS`` = p(a)p(b)), so the GEMMs read ``U^T`` as a view.

Layouts: ``x: (m, C, H, W)``; tiles are numbered row-major over the ``(tile rows, tile columns)``
grid of 2x2 output blocks, ``V: (m, 16, C, tiles)``, ``M: (m, 16, C_out, tiles)``. A call handles
tile rows ``ty0..ty1`` of every image in ``x`` (a row band); the input and output transforms are
serial and release the GIL, so ``cpu_threads.map_batch`` runs bands side by side.
"""

from __future__ import annotations

import numba
import numpy as np

FORWARD_SLOTS = np.arange(16)
ADJOINT_SLOTS = np.array([4 * a + b for a in (3, 1, 2, 0) for b in (3, 1, 2, 0)])


@numba.njit(nogil=True, cache=True)
def _filter_rows(w, u, r0, r1):
    """u[4a + b, co, ci] = (G g G^T)[a, b] for each 3x3 filter g = w[co, ci], co in r0..r1.

    Filters go in blocks of 64: gathered into a (9, 64) block of taps, combined by G into a
    (12, 64) block, then by G^T into 16 rows of u; every inner loop runs along the block.
    """
    c_in = w.shape[1]
    block = 64
    g = np.empty((9, block), dtype=u.dtype)
    t = np.empty((12, block), dtype=u.dtype)  # (G g)[a, j] in row 3a + j
    for co in range(r0, r1):
        for c0 in range(0, c_in, block):
            nb = min(block, c_in - c0)
            for k in range(nb):
                for tap in range(9):
                    g[tap, k] = w[co, c0 + k, tap // 3, tap % 3]
            for j in range(3):
                for k in range(nb):
                    g0, g1, g2 = g[j, k], g[3 + j, k], g[6 + j, k]
                    t[j, k], t[9 + j, k] = g0, g2
                    t[3 + j, k] = 0.5 * (g0 + g1 + g2)
                    t[6 + j, k] = 0.5 * (g0 - g1 + g2)
            for a in range(4):
                u0, u1 = u[4 * a, co, c0:c0 + nb], u[4 * a + 1, co, c0:c0 + nb]
                u2, u3 = u[4 * a + 2, co, c0:c0 + nb], u[4 * a + 3, co, c0:c0 + nb]
                for k in range(nb):
                    t0, t1, t2 = t[3 * a, k], t[3 * a + 1, k], t[3 * a + 2, k]
                    u0[k], u3[k] = t0, t2
                    u1[k] = 0.5 * (t0 + t1 + t2)
                    u2[k] = 0.5 * (t0 - t1 + t2)


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``U = G g G^T`` for every filter of ``w: (C_out, C_in, 3, 3)``, as ``(16, C_out, C_in)``."""
    u = np.empty((16,) + w.shape[:2], dtype=w.dtype)
    _filter_rows(np.ascontiguousarray(w), u, 0, w.shape[0])
    return u


@numba.njit(nogil=True, cache=True)
def input_transform(x, top, left, ty0, ty1, slots, v):
    """v[n, slots, c, t] = B^T d B (flattened) for each 2x2 output tile t of tile rows ty0..ty1 (d: its input block).

    Tile (ty, tx) reads padded rows 2*ty..2*ty+3 and columns 2*tx..2*tx+3, i.e. input pixel
    ``(2*ty - top + i, 2*tx - left + j)`` (zero outside the input). Per (image, channel, tile
    row), the four input rows are copied into a zero-padded buffer, combined by B^T into four
    rows, split into even and odd columns, and combined by B: every inner loop is contiguous.
    """
    m, channels, h, w = x.shape
    ntx = v.shape[3] // (ty1 - ty0)
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
def output_transform(mm, bias, ty0, ty1, slots, y):
    """y[n, co, 2*ty:2*ty+2, 2*tx:2*tx+2] = A^T m A + bias[co] for tile rows ty0..ty1 (cropped at y's edge).

    mm: (m, 16, C_out, tiles) from the GEMMs, component ``ab`` at ``slots[ab]``; bias: (C_out,).
    Per (image, channel, tile row), A^T combines the 4x4 blocks' rows, A their columns; the two
    columns of each 2x2 block are written as the even and odd pixels of the output row.
    """
    m, c_out, ho = y.shape[:3]
    ntx = mm.shape[3] // (ty1 - ty0)
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
