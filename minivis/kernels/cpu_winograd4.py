"""Winograd F(4x4, 3x3) convolution kernels (CPU): 36 products per 4x4 block of outputs instead of 144.

The algorithm of ``cpu_winograd`` (read that page first) with a larger tile. A 4x4 block of outputs
of a 3x3 correlation reads a 6x6 input block ``d``; with the matrices below (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016; interpolation points 0, 1, -1,
2, -2 and infinity)

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise; g the 3x3 filter)

takes 36 multiplications per block where direct correlation takes 144 and F(2x2, 3x3), over four
2x2 blocks, 64: 2.25 per output against 4. Summed over input channels, as in ``cpu_winograd``,
the 36 components ``(a, b)`` become 36 GEMMs ``M[ab] = V[ab] @ U[ab]`` with K = C_in.

The price is rounding. B^T's entries reach 5, A^T's 8, G's 1/24: the transforms add and cancel
larger terms, so a float32 result carries ~15x F(2x2)'s error (``tests/kernels/test_cpu_winograd4.py``
measures both against float64). And a 4x4 tile rounds a map up to a multiple of 4, where the 2x2
tile wastes at most a row and a column. The engine's convolutions therefore keep F(2x2); this
form runs only where a batch's results may already round with the batch, inside
``conv_plan.shared_winograd_gemms`` (incremental occlusion's regions), and only on maps whose
tiling it fills well (``conv_plan.winograd4_pays``).

Layouts: ``x: (m, C, H, W)``, the output's 4x4 tiles numbered row-major; V and M slot-major,
``(36, rows, C)`` with image n's tile t at row ``n * tiles + t``, so that each component of a
group of images is one matrix (``conv_plan.shared_winograd_gemms``); ``U: (36, C_in, C_out)``.
The transforms write B^T's and A^T's rows out as formulas on explicit vectors of channels
(``_bt``, ``_at``, ``cpu_simd``; the matrices above are what the filter transform and the tests
use), so the channel counts must be multiples of a vector (VGG's 128-512 are).
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_simd as simd
from minivis.kernels.cpu_layout import from_channels_last, to_channels_last

BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)
TILE, BLOCK = 4, 6  # outputs per tile side; input block side (TILE + 3 - 1)


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``U[6a + b] = (G g G^T)[a, b]`` for every filter g = w[co, ci], as (36, C_in, C_out) in w's dtype.

    Computed in float64 and rounded once: G's sixths, twelfths and 24ths are not exact in float32.
    """
    c_out, c_in = w.shape[:2]
    u = np.empty((BLOCK * BLOCK, c_in, c_out), dtype=w.dtype)
    _filters(np.ascontiguousarray(w), G, u)
    return u


@numba.njit(nogil=True, cache=True)
def _filters(w, g_mat, u):
    """u[6a + b, ci, co] = (G g G^T)[a, b], g = w[co, ci], in float64.

    Per input channel, the taps of all its filters are gathered into a (9, C_out) block; G then
    combines them into (18, C_out) and G^T into u's 36 rows: every inner loop runs along the
    output channels, and every write to u is contiguous.
    """
    c_out, c_in = w.shape[:2]
    taps = np.empty((9, c_out))
    gw = np.zeros((3 * BLOCK, c_out))  # (G g)[a, j] in row 3a + j
    for ci in range(c_in):
        for co in range(c_out):
            for k in range(9):
                taps[k, co] = w[co, ci, k // 3, k % 3]
        for a in range(BLOCK):  # G g
            for j in range(3):
                out = gw[3 * a + j]
                for co in range(c_out):
                    out[co] = g_mat[a, 0] * taps[j, co] + g_mat[a, 1] * taps[3 + j, co] + g_mat[a, 2] * taps[6 + j, co]
        for a in range(BLOCK):  # (G g) G^T
            for b in range(BLOCK):
                dst = u[BLOCK * a + b, ci]
                for co in range(c_out):
                    dst[co] = (gw[3 * a, co] * g_mat[b, 0] + gw[3 * a + 1, co] * g_mat[b, 1]
                               + gw[3 * a + 2, co] * g_mat[b, 2])


@numba.njit(nogil=True, cache=True)
def _bt(src, i, di, dst, j, dj, k):
    """B^T times the column of six vectors ``src[i + r*di]`` into six vectors ``dst[j + a*dj]`` (BT's rows
    written out; ``k`` holds the constants 2, 4, 5, 8)."""
    two, four, five = simd.vbcast(k, 0), simd.vbcast(k, 1), simd.vbcast(k, 2)
    d0, d1, d2 = simd.vload(src, i), simd.vload(src, i + di), simd.vload(src, i + 2 * di)
    d3, d4, d5 = simd.vload(src, i + 3 * di), simd.vload(src, i + 4 * di), simd.vload(src, i + 5 * di)
    f_b, e_a = simd.vsub(d4, d2), simd.vsub(d3, d1)
    s43, d43, s12, d12 = simd.vadd(d4, d3), simd.vsub(d4, d3), simd.vadd(d1, d2), simd.vsub(d1, d2)
    simd.vstore(dst, j, simd.vadd(simd.vmul(four, d0), simd.vsub(d4, simd.vmul(five, d2))))  # 4d0 - 5d2 + d4
    simd.vstore(dst, j + dj, simd.vsub(s43, simd.vmul(four, s12)))  # d4 + d3 - 4(d1 + d2)
    simd.vstore(dst, j + 2 * dj, simd.vadd(d43, simd.vmul(four, d12)))  # d4 - d3 + 4(d1 - d2)
    simd.vstore(dst, j + 3 * dj, simd.vadd(f_b, simd.vmul(two, e_a)))  # d4 - d2 + 2(d3 - d1)
    simd.vstore(dst, j + 4 * dj, simd.vsub(f_b, simd.vmul(two, e_a)))  # d4 - d2 - 2(d3 - d1)
    simd.vstore(dst, j + 5 * dj, simd.vadd(simd.vmul(four, d1), simd.vsub(d5, simd.vmul(five, d3))))  # 4d1 - 5d3 + d5


@numba.njit(nogil=True, cache=True)
def _at(src, i, di, dst, j, dj, k, bias):
    """A^T times the column of six vectors ``src[i + r*di]``, plus the vector ``bias``, into four vectors
    ``dst[j + a*dj]`` (AT's rows written out; ``k`` as ``_bt``'s)."""
    two, four, eight = simd.vbcast(k, 0), simd.vbcast(k, 1), simd.vbcast(k, 3)
    m0, m1, m2 = simd.vload(src, i), simd.vload(src, i + di), simd.vload(src, i + 2 * di)
    m3, m4, m5 = simd.vload(src, i + 3 * di), simd.vload(src, i + 4 * di), simd.vload(src, i + 5 * di)
    s1, d1, s3, d3 = simd.vadd(m1, m2), simd.vsub(m1, m2), simd.vadd(m3, m4), simd.vsub(m3, m4)
    simd.vstore(dst, j, simd.vadd(simd.vadd(m0, bias), simd.vadd(s1, s3)))  # m0 + m1 + m2 + m3 + m4
    simd.vstore(dst, j + dj, simd.vadd(bias, simd.vadd(d1, simd.vmul(two, d3))))  # m1 - m2 + 2(m3 - m4)
    simd.vstore(dst, j + 2 * dj, simd.vadd(bias, simd.vadd(s1, simd.vmul(four, s3))))  # m1 + m2 + 4(m3 + m4)
    last = simd.vadd(bias, m5)
    simd.vstore(dst, j + 3 * dj, simd.vadd(last, simd.vadd(d1, simd.vmul(eight, d3))))  # m1 - m2 + 8(m3 - m4) + m5


@numba.njit(nogil=True, cache=True)
def input_transform(x, top, left, nty, ntx, v):
    """v[6a + b, n*tiles + t, c] = (B^T d B)[a, b] for each 4x4 output tile t of image n (d: its 6x6 input block).

    Tile (ty, tx) reads input pixels ``(4*ty - top + i, 4*tx - left + j)``, i, j < 6, zero outside
    the input; ``v``: (36, rows, C), C-contiguous, C a multiple of the vector (``simd.lanes``).
    Per image, the input is copied into a zero-padded channels-last plane ``xp``; per tile and
    vector of channels, B^T combines the block's columns into ``rows`` (36 vectors) and B their rows.
    """
    m, channels, h, w = x.shape
    lanes, count, hp, wp = simd.lanes(x), nty * ntx, TILE * nty + 2, TILE * ntx + 2
    if channels % lanes or v.shape[0] != BLOCK * BLOCK or v.shape[1] < m * count or v.shape[2] != channels:
        raise ValueError("cpu_winograd4.input_transform: v must be (36, >= m * tiles, C), C whole vectors")
    xp = np.zeros((hp, wp, channels), dtype=x.dtype)  # cells outside the input are never written: stay 0
    r_lo, r_hi = max(0, top), min(hp, top + h)
    q_lo, q_hi = max(0, left), min(wp, left + w)
    rows = np.empty(BLOCK * BLOCK * lanes, dtype=x.dtype)  # (B^T d)[a, j] at vector 6a + j
    k = np.array([2, 4, 5, 8], dtype=x.dtype)
    flat, out, slot = xp.reshape(-1), v.reshape(-1), v.shape[1] * channels
    for n in range(m):
        to_channels_last(x[n], -top, left, r_lo, r_hi, q_lo, q_hi, xp)
        for t in range(count):
            corner = (TILE * (t // ntx) * wp + TILE * (t % ntx)) * channels  # the block's first pixel in xp
            row = (n * count + t) * channels  # the tile's row of v
            for c in range(0, channels, lanes):
                for j in range(BLOCK):  # B^T d, column j
                    _bt(flat, corner + j * channels + c, wp * channels, rows, j * lanes, BLOCK * lanes, k)
                for a in range(BLOCK):  # (B^T d) B, row a: B^T times the row, written to slots 6a .. 6a + 5
                    _bt(rows, BLOCK * a * lanes, lanes, out, BLOCK * a * slot + row + c, slot, k)


@numba.njit(nogil=True, cache=True)
def output_transform(mm, bias, nty, ntx, y):
    """y[n, co, 4*ty + i, 4*tx + k] = (A^T m A)[i, k] + bias[co] for each tile (cropped at y's edge).

    mm: (36, rows, C_out) from the GEMMs, image n's tile t at row n*tiles + t, C_out a multiple of the
    vector. Per tile and vector of channels, A^T combines the 6x6 block's rows and A its columns,
    into a channels-last plane then copied into the image.
    """
    m, c_out, ho, wo = y.shape
    lanes, count, wq = simd.lanes(y), nty * ntx, TILE * ntx
    if c_out % lanes or mm.shape[0] != BLOCK * BLOCK or mm.shape[1] < m * count or mm.shape[2] != c_out:
        raise ValueError("cpu_winograd4.output_transform: mm must be (36, >= m * tiles, C_out), C_out whole vectors")
    if bias.shape[0] != c_out or not mm.flags.c_contiguous:
        raise ValueError("cpu_winograd4.output_transform: bias must be (C_out,) and mm C-contiguous")
    rows = np.empty(TILE * BLOCK * lanes, dtype=y.dtype)  # (A^T m)[i, b] at vector 6i + b
    yp = np.empty((TILE * nty, wq, c_out), dtype=y.dtype)
    k = np.array([2, 4, 5, 8], dtype=y.dtype)
    zero = simd.vzero(y)
    src, plane, slot = mm.reshape(-1), yp.reshape(-1), mm.shape[1] * c_out
    for n in range(m):
        for t in range(count):
            corner = (TILE * (t // ntx) * wq + TILE * (t % ntx)) * c_out  # the tile's first pixel in yp
            row = (n * count + t) * c_out
            for c in range(0, c_out, lanes):
                b_vec = simd.vload(bias, c)
                for b in range(BLOCK):  # A^T m, column b: slots b, 6 + b, ..., 30 + b
                    _at(src, b * slot + row + c, BLOCK * slot, rows, b * lanes, BLOCK * lanes, k, zero)
                for i in range(TILE):  # (A^T m) A, row i: A^T times the row, written as output row 4*ty + i
                    _at(rows, BLOCK * i * lanes, lanes, plane, corner + i * wq * c_out + c, c_out, k, b_vec)
        from_channels_last(yp, 0, min(TILE * nty, ho), min(wq, wo), y[n])
