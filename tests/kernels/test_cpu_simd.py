"""The explicit SIMD vectors (minivis/kernels/cpu_simd.py) against NumPy: loads, broadcasts, fused
multiply-adds, stores and the lane sum, in float32 and float64, compiled (and, under
``NUMBA_DISABLE_JIT=1``, as their NumPy stand-ins)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from minivis.kernels import cpu_activation
from minivis.kernels import cpu_simd as simd


@numba.njit
def _axpy_blocks(w, x, y, out):
    """out[i:i+L] = w[k] * x[i:i+L] + y[i:i+L] for vector k = i // L; returns the lane sums of out's vectors."""
    lanes = simd.lanes(x)
    sums = np.empty(x.shape[0] // lanes, x.dtype)
    for k in range(x.shape[0] // lanes):
        i = k * lanes
        v = simd.vfma(simd.vbcast(w, k), simd.vload(x, i), simd.vload(y, i))
        simd.vstore(out, i, v)
        sums[k] = simd.vsum(v)
    return sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectors_load_multiply_add_store_and_sum_like_numpy(dtype):
    lanes = simd.lanes_of(dtype)
    assert lanes * np.dtype(dtype).itemsize == simd.VECTOR_BYTES
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(5 * lanes).astype(dtype), rng.standard_normal(5 * lanes).astype(dtype)
    w = rng.standard_normal(5).astype(dtype)
    out = np.full(5 * lanes + 3, 7, dtype)  # three guard values past the last vector
    sums = _axpy_blocks(w, x, y, out)
    want = np.repeat(w, lanes) * x + y
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(out[:-3], want, **tol)
    assert (out[-3:] == 7).all()
    np.testing.assert_allclose(sums, out[:-3].reshape(5, lanes).astype(np.float64).sum(axis=1), **tol)
    assert sums.dtype == dtype


def test_the_lane_sum_adds_halves_first():
    """A fixed order, so a kernel's bits do not depend on the compiler: ((a0 + a8) + (a4 + a12)) + ... for 16 lanes."""
    lanes = simd.lanes_of(np.float32)
    v = np.array([1e8, 1, -1e8, 1] + [0] * (lanes - 4), np.float32)  # halves first: exact cancellations decide
    halves = v.copy()
    while halves.shape[0] > 1:
        halves = halves[:halves.shape[0] // 2] + halves[halves.shape[0] // 2:]
    got = _axpy_blocks(np.ones(1, np.float32), v, np.zeros(lanes, np.float32), np.empty(lanes, np.float32))[0]
    assert got == halves[0]


@numba.njit
def _add_sub(x, y, out):
    lanes = simd.lanes(x)
    a, b = simd.vload(x, 0), simd.vload(y, 0)
    simd.vstore(out, 0, simd.vadd(a, b))
    simd.vstore(out, lanes, simd.vsub(a, b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_wise_add_and_subtract_like_numpy(dtype):
    lanes = simd.lanes_of(dtype)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(lanes).astype(dtype), rng.standard_normal(lanes).astype(dtype)
    out = np.empty(2 * lanes, dtype)
    _add_sub(x, y, out)
    np.testing.assert_array_equal(out, np.concatenate([x + y, x - y]))  # one rounding each: exact equality


@numba.njit
def _mul_clip(x, y, bounds, out):
    lanes = simd.lanes(x)
    a, b = simd.vload(x, 0), simd.vload(y, 0)
    simd.vstore(out, 0, simd.vmul(a, b))
    simd.vstore(out, lanes, simd.vclip(a, simd.vbcast(bounds, 0), simd.vbcast(bounds, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_wise_multiply_and_clip_like_numpy_and_the_scalar_clip(dtype):
    lanes = simd.lanes_of(dtype)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(lanes).astype(dtype), rng.standard_normal(lanes).astype(dtype)
    x[:4] = np.nan, -0.0, np.inf, -np.inf  # NaN stays NaN, -0.0 stays -0.0, infinities are clipped
    out = np.empty(2 * lanes, dtype)
    _mul_clip(x, y, np.array([0.0, 1.5], dtype), out)
    np.testing.assert_array_equal(out[:lanes], x * y)
    want = np.array([cpu_activation._clip_one(v, dtype(0.0), dtype(1.5)) for v in x], dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(out[lanes:].view(bits), want.view(bits))
    assert np.signbit(out[lanes + 1]) and np.isnan(out[lanes])


@numba.njit
def _transpose(src, i, si, rows, cols, dst, j, dj):
    simd.vtranspose(src, i, si, rows, cols, dst, j, dj)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_transposes_and_nothing_outside_it_is_read_or_written(dtype):
    """dst[j + k*dj + r] = src[i + r*si + k] for r < rows, k < cols, against a NumPy transpose, on every
    block shape up to lanes x lanes: the source's other values are NaN (one read into the block would
    show), the destination's others are guard values that must stay, and both arrays end where the
    block does, so the masked loads and stores are the only thing between the block and the arrays'
    ends."""
    lanes = simd.lanes_of(dtype)
    rng = np.random.default_rng(3)
    for rows in (0, 1, 3, lanes - 1, lanes):
        for cols in (0, 1, 5, lanes - 1, lanes):
            si, dj = lanes + 3, lanes + 2
            src = np.full(2 + max(rows - 1, 0) * si + cols, np.nan, dtype)  # ends at the block's last element
            block = rng.standard_normal((rows, cols)).astype(dtype)
            for r in range(rows):
                src[2 + r * si:2 + r * si + cols] = block[r]
            dst = np.full(1 + max(cols - 1, 0) * dj + rows, -7, dtype)
            _transpose(src, 2, si, rows, cols, dst, 1, dj)
            want = np.full_like(dst, -7)
            for k in range(cols):
                want[1 + k * dj:1 + k * dj + rows] = block[:, k]
            np.testing.assert_array_equal(dst, want)


def test_the_transpose_moves_bits_as_they_are():
    """int64 switches move through the float64 transpose unchanged (the fused pool's crop does this):
    NaN payloads, signalling NaNs and denormal patterns included, nothing is computed on them."""
    wide = simd.lanes_of(np.float64)
    rng = np.random.default_rng(4)
    ints = rng.integers(-2**63, 2**63 - 1, size=wide * wide, dtype=np.int64)
    ints[:4] = [0x7FF0000000000001, 0x7FF8000000000123, 1, -1]  # sNaN, qNaN with payload, denormal, all ones
    out = np.zeros_like(ints)
    _transpose(ints.view(np.float64), 0, wide, wide, wide, out.view(np.float64), 0, wide)
    np.testing.assert_array_equal(out, ints.reshape(wide, wide).T.reshape(-1))
