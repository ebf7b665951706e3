"""Winograd F(2x2, 3x3) on register blocks: transforms and products fused per block of tiles (CPU).

``cpu_winograd`` runs Winograd as three passes over memory (transform the whole input, 16 BLAS
products, transform the whole output); on 32-64-channel layers its transforms took longer than
its products. Here the three steps run on one block of 2x2 output tiles at a time, while the
block's data sits in L1/L2, and the 16 products run on ``cpu_direct``'s register block:

    for each block of 48 tiles (PV = 3 vectors of 16 float32 lanes, one tile per lane):
        V[s, ci] = (B^T d B)[s]            16 vectors per input channel, adds only (``_transform_in``)
        for each block of R = 8 output channels, for each of the 16 slots s:
            M[s, co] = sum_ci U[s, co, ci] * V[s, ci]     ``cpu_direct._blocks``: 24 accumulators
        Y[co] = A^T M A + bias             4 vectors of outputs per channel (``_transform_out``)

**Tiles as lanes.** The input is laid out as ``cpu_direct``'s polyphase planes at stride 2: plane
(py, px) holds x_pad[2r + py, 2c + px] at grid index r*Wq + c. Tile q = ty*Wq + tx reads the 4x4
block x_pad[2ty + a, 2tx + b], which is element q + (a//2)*Wq + b//2 of plane (a%2, b%2): for 16
consecutive tiles, each of the 16 values is *one vector load*. The work comes in tasks (``_Plan``):
a chunk of small images, one after another on the grid, or a band of tile rows of a large one.
A block's lanes may span two images; every lane's arithmetic is its own, in a fixed order, so a
tile's result never depends on its neighbours, its batch, its task or the thread split (batch
invariance). The grid's last column and row of each image (Wq = tiles + 1) are computed and
dropped. The outputs come out as four phase planes (Y[i, j] of each tile), interleaved into NCHW
rows by ``_crop``.

**Images as lanes.** A 14x14 map has 7x7 tiles but its grid 8x8 lanes: a quarter of the products
would be thrown away. Where a batch allows (``_Plan``: at most 90% of the tile lanes lit), a vector
holds instead one tile of L images (16 in float32): ``_planes_images`` lays each group of L images
out as one zero-padded plane of image vectors per channel (pixel (y, x) of L images is one vector), the
tiles of a group follow each other without gaps, and ``_crop_images`` writes each image's outputs
back. The transforms, products and finish are the same code on the same vectors, so a tile's bits
are the same in either layout, and batch invariance holds across the switch (tested).

The input gradient of a stride-1 3x3 convolution is this forward pass on g with the kernel rotated
by 180 degrees and its channel axes swapped (padding 2 - pad): ``backward_input``. The weight
gradient stays with ``cpu_winograd`` (its products sum over tiles, a different register block).
Numbers: benchmarks/README.md, "Convolution planning".
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from minivis.kernels import cpu_direct, cpu_threads, cpu_winograd, cpu_workspace
from minivis.kernels import cpu_simd as simd
from minivis.kernels.cpu_direct import PV, R
from minivis.kernels.cpu_pool import _window_max

CHUNK_BYTES = 2 << 20  # a task's polyphase input and phase outputs, at most (a core's L2): images or tile rows
IMAGE_LANES_AT = 0.9  # image lanes where they light at most this fraction of the tile lanes (``_Plan``)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _row(src, even, odd):
    """One row of 4x4 blocks, one vector per column: its even columns start at ``even``, odd at ``odd``."""
    return simd.vload(src, even), simd.vload(src, odd), simd.vload(src, even + 1), simd.vload(src, odd + 1)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _store_row(vb, k, stride, e0, e1, e2, e3):
    """vb[k + b*stride] = ((B^T d) B)[a, b] for b = 0..3, from row a of B^T d: e0 - e2, e1 + e2, e2 - e1, e1 - e3."""
    simd.vstore(vb, k, simd.vsub(e0, e2))
    simd.vstore(vb, k + stride, simd.vadd(e1, e2))
    simd.vstore(vb, k + 2 * stride, simd.vsub(e2, e1))
    simd.vstore(vb, k + 3 * stride, simd.vsub(e1, e3))


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _transform_d(d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, vb, k, stride):
    """vb[k + s*stride : ... + lanes] = (B^T d B)[s], s = 4a + b, for the lanes' 4x4 blocks d (d[a][b] one
    vector each): the rows of B^T d are d0 - d2, d1 + d2, d2 - d1, d1 - d3, then the same on its columns."""
    _store_row(vb, k, stride, simd.vsub(d00, d20), simd.vsub(d01, d21), simd.vsub(d02, d22), simd.vsub(d03, d23))
    _store_row(vb, k + 4 * stride, stride, simd.vadd(d10, d20), simd.vadd(d11, d21), simd.vadd(d12, d22),
               simd.vadd(d13, d23))
    _store_row(vb, k + 8 * stride, stride, simd.vsub(d20, d10), simd.vsub(d21, d11), simd.vsub(d22, d12),
               simd.vsub(d23, d13))
    _store_row(vb, k + 12 * stride, stride, simd.vsub(d10, d30), simd.vsub(d11, d31), simd.vsub(d12, d32),
               simd.vsub(d13, d33))


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _transform_in(src, o, plane, wq, vb, k, stride):
    """``_transform_d`` of the tile lanes' 4x4 blocks d whose top-left elements are at ``o`` (plane (0, 0)):
    row r of d lies in planes (r%2, 0) and (r%2, 1), r//2 grid rows down."""
    d00, d01, d02, d03 = _row(src, o, o + plane)
    d10, d11, d12, d13 = _row(src, o + 2 * plane, o + 3 * plane)
    d20, d21, d22, d23 = _row(src, o + wq, o + plane + wq)
    d30, d31, d32, d33 = _row(src, o + 2 * plane + wq, o + 3 * plane + wq)
    _transform_d(d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, vb, k, stride)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _dense_row(src, o, col):
    return simd.vload(src, o), simd.vload(src, o + col), simd.vload(src, o + 2 * col), simd.vload(src, o + 3 * col)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _transform_in_images(src, o, row, col, vb, k, stride):
    """``_transform_d`` of one tile of L images (image lanes): d[a][b] is the vector at o + a*row + b*col."""
    d00, d01, d02, d03 = _dense_row(src, o, col)
    d10, d11, d12, d13 = _dense_row(src, o + row, col)
    d20, d21, d22, d23 = _dense_row(src, o + 2 * row, col)
    d30, d31, d32, d33 = _dense_row(src, o + 3 * row, col)
    _transform_d(d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, vb, k, stride)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _column(mb, k, stride):
    """Column b of A^T m, from m[a, b] at mb[k + 4a*stride]: m0 + m1 + m2 and m1 - m2 - m3."""
    m0, m1 = simd.vload(mb, k), simd.vload(mb, k + 4 * stride)
    m2, m3 = simd.vload(mb, k + 8 * stride), simd.vload(mb, k + 12 * stride)
    return simd.vadd(simd.vadd(m0, m1), m2), simd.vsub(simd.vsub(m1, m2), m3)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _finish(v, bias, a, b, low, high, affine):
    """An output vector as the ops after the convolution leave it: clip(v + bias, low, high), with
    ``affine`` clip((v + bias) * a + b, low, high) (an eval batch norm), each step rounded as the
    separate ops round it; clip(., -inf, inf) changes nothing, NaN and -0.0 included."""
    v = simd.vadd(v, bias)
    if affine:
        v = simd.vadd(simd.vmul(v, a), b)
    return simd.vclip(v, low, high)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _transform_out(mb, k, stride, fin, affine, out, j, phase):
    """out[j + (2i + jj)*phase] = finish((A^T m A)[i, jj]) for the lanes' 4x4 blocks m (m[s] at mb[k + s*stride]):
    the tiles' four outputs, one phase plane each; fin = (bias, a, b, low, high) vectors (``_finish``).
    Rows of A^T: (1, 1, 1, 0), (0, 1, -1, -1)."""
    bias, a, b, low, high = fin
    t00, t10 = _column(mb, k, stride)
    t01, t11 = _column(mb, k + stride, stride)
    t02, t12 = _column(mb, k + 2 * stride, stride)
    t03, t13 = _column(mb, k + 3 * stride, stride)
    simd.vstore(out, j, _finish(simd.vadd(simd.vadd(t00, t01), t02), bias, a, b, low, high, affine))
    simd.vstore(out, j + phase, _finish(simd.vsub(simd.vsub(t01, t02), t03), bias, a, b, low, high, affine))
    simd.vstore(out, j + 2 * phase, _finish(simd.vadd(simd.vadd(t10, t11), t12), bias, a, b, low, high, affine))
    simd.vstore(out, j + 3 * phase, _finish(simd.vsub(simd.vsub(t11, t12), t13), bias, a, b, low, high, affine))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _tile_blocks(src, plane, wq, up, offs, n_cb, pb0, pb1, bias, fin, affine, vb, mb, out, phase, images):
    """Tile blocks pb0..pb1 of a task: input transform, 16 register-blocked products per channel block,
    output transform into ``out`` (channels padded to n_cb*R, 4 phase planes of ``phase`` lanes each),
    each output ``_finish``ed: fin = (scale, shift, [low, high]), scale and shift read with ``affine`` only.

    src: the task's input planes, ``plane`` apart: with tile lanes 4 polyphase planes per input channel
    (``_planes``), with image lanes one padded plane of image vectors (``_planes_images``); images =
    (tile columns, tile rows, hp, wp, tiles) of the image lanes' task (tiles = 0: tile lanes). up: (16,
    n_cb*C_in*R) transformed filters, R consecutive output channels per (block, input channel);
    offs[s, ci]: where V[s, ci] starts in vb (a block's C_in x 16 vectors); mb: one channel block's 16 x R
    vectors. Vector v = pb*PV + p of the task's output is lanes v*L.. of each phase plane either way.
    """
    c_in, lanes = offs.shape[1], simd.lanes(src)
    block = PV * lanes
    scale, shift, bounds = fin
    low, high = simd.vbcast(bounds, 0), simd.vbcast(bounds, 1)
    ntx, rows, hp, wp, tiles = images
    for pb in range(pb0, pb1):
        q = pb * block
        for p in range(PV):
            if tiles:  # image lanes: vector p is tile t of its group of images (past the last: the last again)
                t = min(pb * PV + p, tiles - 1)
                g, rest = t // (rows * ntx), t % (rows * ntx)
                o = ((g * hp + 2 * (rest // ntx)) * wp + 2 * (rest % ntx)) * lanes
                for ci in range(c_in):
                    _transform_in_images(src, ci * plane + o, wp * lanes, lanes, vb, ci * 16 * block + p * lanes,
                                         block)
            else:
                for ci in range(c_in):
                    _transform_in(src, ci * 4 * plane + q + p * lanes, plane, wq, vb, ci * 16 * block + p * lanes,
                                  block)
        for cb in range(n_cb):
            for s in range(16):
                cpu_direct._blocks(vb, offs[s], up[s], cb, 0, 1, mb[s * R * block:(s + 1) * R * block])
            for r in range(R):
                co = cb * R + r
                bias_co = simd.vbcast(bias, co)  # the bias and finish of channel co, as vectors
                a, b = (simd.vbcast(scale, co), simd.vbcast(shift, co)) if affine else (bias_co, bias_co)
                vfin = (bias_co, a, b, low, high)
                for p in range(PV):
                    _transform_out(mb, r * block + p * lanes, R * block, vfin, affine, out,
                                   co * 4 * phase + q + p * lanes, phase)


@numba.njit(cache=True, nogil=True)
def _planes(x, top, left, hq, wq, plane, src):
    """src[(ci*4 + py*2 + px)*plane + n*hq*wq + r*wq + c] = x_pad[n, ci, 2r + py, 2c + px] (zero outside x):
    the stride-2 polyphase planes (as ``cpu_direct._phases``) of the images of x one after another.

    Every cell is zeroed first, then each input row is split into its even and odd padded columns."""
    u = np.uint64  # unsigned indices: LLVM vectorizes the strided copies only if they cannot wrap around
    m, c_in, h, w = x.shape
    src[:c_in * 4 * plane] = 0
    flat = x.reshape(-1)
    for px in range(2):
        c_lo = min(wq, max(0, (left - px + 1) // 2))  # the first grid column c with 2c + px - left >= 0
        c_hi = max(c_lo, min(wq, (w - 1 - px + left) // 2 + 1))  # past the last with 2c + px - left < w
        for n in range(m):
            for ci in range(c_in):
                for iy in range(max(0, -top), min(h, 2 * hq - top)):
                    py, r = (iy + top) % 2, (iy + top) // 2
                    dst = u(((ci * 2 + py) * 2 + px) * plane + (n * hq + r) * wq + c_lo)
                    first = u(((n * c_in + ci) * h + iy) * w + 2 * c_lo + px - left)  # x[n, ci, iy, 2*c_lo + px - left]
                    for c in range(u(c_hi - c_lo)):
                        src[dst + c] = flat[first + u(2) * c]


@numba.njit(cache=True, nogil=True)
def _crop(out, phase, hq, wq, m, n0, oy0, oy1, y):
    """y[n0 + n, co, oy, 2tx + j] = out[co, 2i + j, n*hq*wq + ty*wq + tx] for the m images of a task and its
    output rows oy0..oy1 (oy = oy0 + 2ty + i): the phase planes interleaved into NCHW rows."""
    u = np.uint64  # unsigned indices, as in ``_planes``
    c_out, ho, wo = y.shape[1:]
    flat = y.reshape(-1)
    for n in range(m):
        for co in range(c_out):
            for oy in range(oy0, oy1):
                r = oy - oy0
                row0 = u((co * 4 + 2 * (r % 2)) * phase + (n * hq + r // 2) * wq)
                row1 = row0 + u(phase)
                dst = u((((n0 + n) * c_out + co) * ho + oy) * wo)
                for tx in range(u(wo // 2)):
                    flat[dst + u(2) * tx] = out[row0 + tx]
                    flat[dst + u(2) * tx + u(1)] = out[row1 + tx]
                if wo % 2:
                    flat[dst + u(wo - 1)] = out[row0 + u(wo // 2)]


@numba.njit(cache=True, nogil=True)
def _crop_pool(out, phase, hq, wq, m, n0, ty0, ty1, width, y, switches):
    """The 2x2 max-pool of the (finished) output, straight from the phase planes: a 2x2 tile *is* a pool
    window, its four outputs (i, j) one per plane 2i + j. y[n0 + n, co, ty, tx] = the first maximum in
    row-major window order (``cpu_pool._window_max``, the pool kernel's own compare), switches[...] its flat index
    (2ty + i)*width + 2tx + j in the convolution's output plane, as ``cpu_pool._max_pool2x2`` sets them,
    for the task's tile rows ty0..ty1."""
    u = np.uint64
    c_out, hp, wp = y.shape[1:]
    out_flat, sw_flat, w = y.reshape(-1), switches.reshape(-1), u(width)
    for n in range(m):
        for co in range(c_out):
            for ty in range(ty0, min(ty1, hp)):
                src = u(co * 4 * phase + (n * hq + ty - ty0) * wq)
                dst = u((((n0 + n) * c_out + co) * hp + ty) * wp)
                top = u(2 * ty) * w
                for tx in range(u(wp)):
                    out_flat[dst + tx], sw_flat[dst + tx] = _window_max(
                        out[src + tx], out[src + u(phase) + tx], out[src + u(2 * phase) + tx],
                        out[src + u(3 * phase) + tx], top + u(2) * tx, w)


@numba.njit(cache=True, nogil=True)
def _planes_images(x, top, left, hp, wp, plane, src):
    """src[ci*plane + ((g*hp + yp)*wp + xp)*L + l] = x_pad[g*L + l, ci, yp, xp] (zero outside x and in the
    lanes past the last image): image lanes, L images to a vector, each group of L images one padded plane
    of vectors per input channel, so that any pixel of L images is one vector load. A row of L images is
    an L x width block turned around (``cpu_simd.vtranspose``: 2.6x faster than copying it a value at a
    time, benchmarks/README.md, "Convolution planning", twentieth session)."""
    lanes = simd.lanes(src)
    m, c_in, h, w = x.shape
    groups = -(-m // lanes)
    iy0, iy1 = max(0, -top), max(0, min(h, hp - top))  # the rows of x the planes hold
    xp0 = min(wp, left)
    xp1 = max(xp0, min(wp, left + w))  # the plane columns x fills: xp0..xp1
    for ci in range(c_in):
        for g in range(groups):
            base = ci * plane + g * hp * wp * lanes
            if (g + 1) * lanes > m:  # a partial group: its empty lanes read as zero
                src[base:base + hp * wp * lanes] = 0
                continue
            for yp in range(hp):
                row = base + yp * wp * lanes
                if top <= yp < top + h:
                    src[row:row + xp0 * lanes] = 0
                    src[row + xp1 * lanes:row + wp * lanes] = 0
                else:
                    src[row:row + wp * lanes] = 0
    flat, width = x.reshape(-1), xp1 - xp0
    for g in range(groups):
        for ci in range(c_in):
            for iy in range(iy0, iy1):
                row = ci * plane + ((g * hp + iy + top) * wp + xp0) * lanes
                first = ((g * lanes * c_in + ci) * h + iy) * w + xp0 - left  # x[g*L, ci, iy, xp0 - left]
                for c in range(0, width, lanes):  # the group's row, L pixels of L images at a time, transposed
                    simd.vtranspose(flat, first + c, c_in * h * w, min(m - g * lanes, lanes), min(lanes, width - c),
                                    src, row + c * lanes, lanes)


@numba.njit(cache=True, nogil=True)
def _crop_images(out, phase, ntx, m, n0, ty0, ty1, width, y, switches, pool):
    """The image lanes' ``_crop`` (or with ``pool`` their ``_crop_pool``): out[co*4*phase + (2i + j)*phase +
    t*L + l] is output (2ty + i, 2tx + j) of image n0 + g*L + l, with t = (g*rows + ty - ty0)*ntx + tx.

    A tile row's values come in (column, image) order, one vector per column; each image's row is a
    column of that block: ``cpu_simd.vtranspose`` turns L x L blocks around in registers."""
    u = np.uint64  # unsigned indices, as in ``_planes``
    lanes = simd.lanes(out)
    c_out, hy, wy = y.shape[1:]
    rows = ty1 - ty0
    flat, w, step, ph = y.reshape(-1), u(width), u(lanes), u(phase)
    image = c_out * hy * wy  # one image's outputs in y
    best = np.empty(max(ntx, wy) * lanes, out.dtype)  # one output row's (column, image) block
    at = np.empty(ntx * lanes, np.uint64)  # its switches
    at_bits, sw_bits = at.view(np.float64), switches.reshape(-1).view(np.float64)  # int64s moved, never computed on
    wide = simd.lanes(at_bits)
    for co in range(c_out):
        for g in range(-(-m // lanes)):
            nl = min(m - g * lanes, lanes)  # the group's images
            for r in range(rows):  # a tile row's phase vectors stay in L1 while its L images are written
                ty = ty0 + r
                src = u(co * 4 * phase + (g * rows + r) * ntx * lanes)
                if pool:
                    if ty < hy:
                        # the windows in (column, image) order, read contiguously (LLVM vectorizes the compares)
                        top = u(2 * ty) * w
                        for j in range(u(wy * lanes)):
                            k = src + j
                            best[j], at[j] = _window_max(out[k], out[k + ph], out[k + u(2) * ph], out[k + u(3) * ph],
                                                         top + u(2) * (j // step), w)
                        dst = (((n0 + g * lanes) * c_out + co) * hy + ty) * wy
                        for t0 in range(0, wy, lanes):
                            simd.vtranspose(best, t0 * lanes, lanes, min(lanes, wy - t0), nl, flat, dst + t0, image)
                        for t0 in range(0, wy, wide):  # the switches as float64 bits, in blocks of wide x wide
                            for l0 in range(0, nl, wide):
                                simd.vtranspose(at_bits, t0 * lanes + l0, lanes, min(wide, wy - t0), min(wide, nl - l0),
                                                sw_bits, dst + l0 * image + t0, image)
                    continue
                for i in range(2):
                    if 2 * ty + i < hy:
                        # output row 2ty + i, column 2tx + j, is phase plane 2i + j's vector tx: the two planes'
                        # vectors interleaved into (column, image) order, then transposed
                        row = co * 4 * phase + (g * rows + r) * ntx * lanes + 2 * i * phase  # plane 2i's vectors
                        for c in range(wy):
                            simd.vstore(best, c * lanes, simd.vload(out, row + c % 2 * phase + c // 2 * lanes))
                        dst = (((n0 + g * lanes) * c_out + co) * hy + 2 * ty + i) * wy
                        for t0 in range(0, wy, lanes):
                            simd.vtranspose(best, t0 * lanes, lanes, min(lanes, wy - t0), nl, flat, dst + t0, image)


@numba.njit(cache=True, nogil=True)
def _run(x, tasks, top, left, wq, plane, up, offs, n_cb, bias, src, vb, mb, out, y, switches, fin, affine, pool,
         width, ntx):
    """The fused forward pass of each task (images n0..n1, tile rows ty0..ty1: a chunk of whole images or a
    band of one) into y: its input planes, its tile blocks, its output rows (or, with ``pool``, its
    pooled rows and their switches; ``width``: the convolution's output width). ntx > 0: image lanes
    (``ntx`` tile columns), else tile lanes."""
    lanes = simd.lanes(src)
    block = PV * lanes
    for t in range(tasks.shape[0]):
        n0, n1, ty0, ty1 = tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3]
        if ntx:
            rows = ty1 - ty0
            hp, wp = 2 * rows + 2, 2 * ntx + 2  # a tile's 4x4 block reaches 2 past its 2x2 outputs
            tiles = -(-(n1 - n0) // lanes) * rows * ntx
            blocks = -(-tiles // PV)
            _planes_images(x[n0:n1], top - 2 * ty0, left, hp, wp, plane, src)
            _tile_blocks(src, plane, 0, up, offs, n_cb, 0, blocks, bias, fin, affine, vb, mb, out, blocks * block,
                         (ntx, rows, hp, wp, tiles))
            _crop_images(out, blocks * block, ntx, n1 - n0, n0, ty0, ty1, width, y, switches, pool)
            continue
        hq = ty1 - ty0 + 1  # the band's tile rows, plus the row their blocks read below
        blocks = -(-((n1 - n0) * hq * wq) // block)
        _planes(x[n0:n1], top - 2 * ty0, left, hq, wq, plane, src)
        _tile_blocks(src, plane, wq, up, offs, n_cb, 0, blocks, bias, fin, affine, vb, mb, out, blocks * block,
                     (0, 0, 0, 0, 0))
        if pool:
            _crop_pool(out, blocks * block, hq, wq, n1 - n0, n0, ty0, ty1, width, y, switches)
        else:
            _crop(out, blocks * block, hq, wq, n1 - n0, n0, 2 * ty0, min(y.shape[2], 2 * ty1), y)


def pack_filters(u: np.ndarray) -> np.ndarray:
    """Filter transforms u (16, C_out, C_in) as the products read them: (16, blocks of R output channels,
    C_in, R), flat per slot, output channels padded with zero filters to whole blocks."""
    c_out, c_in = u.shape[1:]
    n_cb = -(-c_out // R)
    up = np.zeros((16, n_cb * R, c_in), u.dtype)
    up[:, :c_out] = u
    return np.ascontiguousarray(up.reshape(16, n_cb, R, c_in).transpose(0, 1, 3, 2)).reshape(16, -1)


def adjoint_filters(u: np.ndarray) -> np.ndarray:
    """The filter transforms of the input gradient's convolution (the kernel rotated by 180 degrees, its
    channel axes swapped): u[p(a)p(b)]^T, p = (3, 1, 2, 0) (``cpu_winograd``'s module docstring)."""
    return np.ascontiguousarray(u[cpu_winograd.ADJOINT_SLOTS].transpose(0, 2, 1))


def even_bounds(n: int, most: int, threads: int) -> list[int]:
    """Bounds of parts of ``range(n)`` of at most ``most`` items each, their sizes within one of each
    other and their number a multiple of ``threads`` (where n allows): each thread's run as long."""
    per_thread = -(-n // threads)
    parts = min(n, threads * -(-per_thread // max(1, most)))
    return [n * k // parts for k in range(parts + 1)]


class _Plan:
    """The work of one fused pass as tasks (chunks of whole images, or bands of tile rows of one image or
    one group of L images), the buffers' sizes for the largest task, and the bias padded to whole channel
    blocks. ``ntx`` > 0: image lanes (with that many tile columns), else tile lanes."""

    def __init__(self, x_shape: tuple[int, ...], c_out: int, out_hw: tuple[int, int], bias: np.ndarray | None,
                 dtype: np.dtype) -> None:
        (self.wq, self.block, self.n_cb, self.ntx, self.blocks, self.plane, self.tasks,
         self.offs) = _Plan.layout(tuple(x_shape), c_out, tuple(out_hw), np.dtype(dtype), numba.get_num_threads(),
                                   IMAGE_LANES_AT, CHUNK_BYTES)
        self.bias = self.per_channel(bias if bias is not None else np.zeros(c_out, dtype), dtype)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def layout(x_shape: tuple[int, ...], c_out: int, out_hw: tuple[int, int], dtype: np.dtype, threads: int,
               image_lanes_at: float, chunk_bytes: int) -> tuple:
        """(wq, block, n_cb, ntx, blocks, plane, tasks, offs): shapes and settings only, so computed once per
        layer shape and thread count (0.1 ms of Python, on every call of a 1 ms layer); the arrays read-only.
        The module's settings (``IMAGE_LANES_AT``, ``CHUNK_BYTES``) are arguments: a changed one is a new key."""
        n, c_in = x_shape[:2]
        nty, ntx = -(-out_hw[0] // 2), -(-out_hw[1] // 2)  # tile rows and columns
        wq = ntx + 1  # tile lanes: the grid's columns, plus the one read right
        lanes, item = simd.lanes_of(dtype), np.dtype(dtype).itemsize
        block = PV * lanes
        n_cb = -(-c_out // R)
        groups = -(-n // lanes)
        # Image lanes compute no grid column or row twice but fill whole groups of L images, whose tasks are
        # at least a tile row of L images: where they light at most 90% of the tile lanes (64 14x14 maps:
        # 3136 against 4096; 28x28: 0.87). On large maps the grid's extra row and column cost little and
        # a group's tile row outgrows L2 (16 images at 224 px: 0.98), so tiles stay faster there
        # (measured both ways: benchmarks/README.md, "Convolution planning", eighteenth session)
        ntx = ntx if n and groups * lanes * nty * ntx <= image_lanes_at * n * (nty + 1) * wq else 0
        if ntx:
            wp = 2 * ntx + 2
            row_bytes = (c_in * 2 * wp + n_cb * R * 4 * ntx) * lanes * item  # per tile row of a group
            tasks = _Plan._tasks(groups, nty, row_bytes, row_bytes * nty + c_in * 2 * wp * lanes * item, threads,
                                 chunk_bytes)
            tasks = [(g0 * lanes, min(n, g1 * lanes), ty0, ty1) for g0, g1, ty0, ty1 in tasks]
            sizes = [(-(-(n1 - n0) // lanes), ty1 - ty0) for n0, n1, ty0, ty1 in tasks]  # (groups, tile rows)
            blocks = max(-(-(g * rows * ntx) // PV) for g, rows in sizes)
            plane = max(g * (2 * rows + 2) * wp * lanes for g, rows in sizes)
        else:
            row_bytes = (c_in + n_cb * R) * 4 * wq * item  # planes and outputs per grid row
            tasks = _Plan._tasks(n, nty, row_bytes, row_bytes * (nty + 1), threads, chunk_bytes)
            most = max((n1 - n0) * (ty1 - ty0 + 1) * wq for n0, n1, ty0, ty1 in tasks) if tasks else 0
            blocks = -(-most // block)
            plane = blocks * block + wq + 1  # the last block's last tile reads wq + 1 further
        tasks = np.array(tasks, dtype=np.intp).reshape(-1, 4)
        # V[s, ci] at (16*ci + s)*block in a block's buffer: the transform writes a channel's 16 slots side by side
        offs = ((np.arange(16)[:, None] + 16 * np.arange(c_in)) * block).astype(np.intp)
        tasks.flags.writeable = offs.flags.writeable = False  # shared by every call with this layout
        return wq, block, n_cb, ntx, blocks, plane, tasks, offs

    @staticmethod
    def _tasks(units: int, nty: int, row_bytes: int, unit_bytes: int, threads: int,
               chunk_bytes: int) -> list[tuple[int, int, int, int]]:
        """(u0, u1, ty0, ty1): chunks of whole units (images, or groups of L images) of at most chunk_bytes,
        or bands of tile rows of one unit: a large image, or fewer units than threads (every thread gets
        bands). Threads take equal runs of tasks (``cpu_threads.map_batch``), so the tasks are as even as
        the sizes allow, a whole number per thread (chunks of 21, 21, 21 and 1 images gave one thread 42 of 64)."""
        if unit_bytes <= chunk_bytes and units >= threads:
            bounds = even_bounds(units, chunk_bytes // unit_bytes, threads)
            return [(u0, u1, 0, nty) for u0, u1 in zip(bounds[:-1], bounds[1:], strict=True)]
        bands = -(-nty // max(1, chunk_bytes // row_bytes - 1))
        while (units * bands) % threads and bands < nty:  # a whole number of bands per thread, where rows allow
            bands += 1
        bounds = [nty * k // bands for k in range(bands + 1)]
        return [(i, i + 1, ty0, ty1) for i in range(units) for ty0, ty1 in zip(bounds[:-1], bounds[1:], strict=True)
                if ty1 > ty0]

    def per_channel(self, values: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
        """values (C_out,) padded with zeros to whole channel blocks, as the kernel reads them (empty for None)."""
        padded = np.zeros(0 if values is None else self.n_cb * R, dtype)
        if values is not None:
            padded[:len(values)] = np.asarray(values, dtype=dtype).reshape(-1)
        return padded

    def scratch(self, c_in: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """This thread's buffers (``cpu_workspace.scratch``): a task's planes, V and M of one block, the
        task's phase outputs."""
        per_channel = 1 if self.ntx else 4  # one plane of image vectors, or four polyphase planes
        planes = cpu_workspace.scratch("winograd planes", c_in * per_channel * self.plane, dtype)
        outputs = cpu_workspace.scratch("winograd outputs", self.n_cb * R * 4 * self.blocks * self.block, dtype)
        return planes, *self.block_scratch(c_in, dtype), outputs

    def block_scratch(self, c_in: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """V and M of one tile block (vector-aligned: the transforms store whole vectors)."""
        return (cpu_workspace.scratch("winograd V", 16 * c_in * self.block, dtype),
                cpu_workspace.scratch("winograd M", 16 * R * self.block, dtype))


def forward(x: np.ndarray, up: np.ndarray, c_out: int, pad4: tuple[int, int, int, int], out_hw: tuple[int, int],
            bias: np.ndarray | None = None, finish: tuple | None = None,
            pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The stride-1 3x3 convolution of x (N, C_in, H, W) by C_out filters whose transforms G g G^T are
    ``up = pack_filters(cpu_winograd.filter_transform(w))``, plus bias: (N, C_out, Ho, Wo).

    finish: None, or (scale, shift, low, high): the ops that follow, applied as each output is written,
    ``clip(y * scale + shift, low, high)`` per channel (an eval batch norm and its rectifier), or with
    scale and shift None ``clip(y, low, high)`` (a rectifier alone); the same bits as those ops apart.
    pool: also the 2x2, stride-2 max-pool after them, (N, C_out, Ho//2, Wo//2), and its switches (flat
    indices into an output plane), as ``cpu_pool``'s 2x2 kernel gives them: returns (pooled, switches).

    Only pad4's top and left matter (pixels outside x read as 0; ``out_hw`` says how many outputs).
    Threads take runs of tasks (``_Plan``); a tile's bits do not depend on the task it falls in.
    """
    n, c_in = x.shape[:2]
    x = np.ascontiguousarray(x)
    plan = _Plan(x.shape, c_out, out_hw, bias, x.dtype)
    scale, shift, low, high = finish if finish is not None else (None, None, -np.inf, np.inf)
    affine = scale is not None
    fin = (plan.per_channel(scale, x.dtype), plan.per_channel(shift, x.dtype), np.array([low, high], x.dtype))
    y_hw = (out_hw[0] // 2, out_hw[1] // 2) if pool else tuple(out_hw)
    # the pooled output and its switches are what a lean graph keeps (the ReLU rule at each switch reads the
    # pooled value): from the allocator, not cpu_workspace's pool, whose larger block it would pin (VGG16
    # SmoothGrad's peak 476 -> 607 MB)
    y = np.empty((n, c_out, *y_hw), x.dtype) if pool else cpu_workspace.empty((n, c_out, *y_hw), x.dtype)
    switches = np.empty((n, c_out, *y_hw) if pool else (0, 0, 0, 0), np.int64)
    if n and y.size:
        def run(part: slice, _parallel: bool) -> None:
            _run(x, plan.tasks[part], pad4[0], pad4[2], plan.wq, plan.plane, up, plan.offs, plan.n_cb, plan.bias,
                 *plan.scratch(c_in, x.dtype), y, switches, fin, affine, pool, out_hw[1], plan.ntx)

        cpu_threads.map_batch(run, plan.tasks.shape[0], n * c_out * out_hw[0] * out_hw[1] * c_in * 9)
    return (y, switches) if pool else y


def backward_input(g: np.ndarray, up_adjoint: np.ndarray, c_in: int, pad4: tuple[int, int, int, int],
                   x_hw: tuple[int, int]) -> np.ndarray:
    """dL/dx (N, C_in, H, W) of the stride-1 3x3 convolution with padding pad4 (each side at most 2): the
    forward pass of g with the rotated, channel-swapped kernel, padded by 2 - pad;
    ``up_adjoint = pack_filters(adjoint_filters(filter_transform(w)))``."""
    return forward(g, up_adjoint, c_in, tuple(2 - p for p in pad4), x_hw)
