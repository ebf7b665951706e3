"""Fast pooling kernels == their plain-NumPy twins (small shapes: also quick under NUMBA_DISABLE_JIT=1)."""

import numpy as np
import pytest

from minivis.functional.pool import _adaptive_bins, _avg_bins, _pool_output_size
from minivis.kernels import cpu_pool

# (kernel, stride, padding, dilation, ceil_mode)
MAX_GEOMETRIES = [
    ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 2), (2, 2), (0, 0), (1, 1), True),   # ceil_mode on an odd size: a partial last window
    ((3, 3), (2, 2), (1, 1), (1, 1), False),  # overlapping windows
    ((3, 2), (1, 2), (1, 0), (1, 1), True),
    ((3, 3), (2, 2), (1, 1), (2, 2), True),   # dilation, ceil_mode
    ((2, 3), (3, 1), (1, 1), (2, 1), True),
]


def _out_hw(in_hw, kernel, stride, padding, dilation, ceil_mode):
    return tuple(_pool_output_size(*args, ceil_mode)
                 for args in zip(in_hw, kernel, stride, padding, dilation, strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", MAX_GEOMETRIES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_matches_naive(rng, dtype, geometry, ties):
    x = rng.integers(0, 3, (5, 7, 8)) if ties else rng.standard_normal((5, 7, 8))
    x = x.astype(dtype)
    out_hw = _out_hw(x.shape[1:], *geometry)
    out, switches = cpu_pool.max_pool2d(x, *geometry[:4], out_hw)
    ref_out, ref_switches = cpu_pool.naive_max_pool2d(x, *geometry[:4], out_hw)
    assert out.dtype == dtype and switches.dtype == np.int64
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(switches, ref_switches)


def test_max_pool2d_nan_and_all_minus_inf_windows():
    x = np.array([[[1.0, np.nan, 3.0, 0.0],
                   [-np.inf, -np.inf, 2.0, 5.0]]])
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1))
    out, switches = cpu_pool.max_pool2d(x, *geometry, (1, 2))
    ref_out, ref_switches = cpu_pool.naive_max_pool2d(x, *geometry, (1, 2))
    np.testing.assert_array_equal(out, ref_out)  # NaN propagates
    np.testing.assert_array_equal(switches, ref_switches)
    np.testing.assert_array_equal(switches, [[[1, 7]]])
    minus_inf = np.full((1, 3, 3), -np.inf)  # padding must not win over a -inf input
    geometry = ((3, 3), (2, 2), (1, 1), (1, 1))
    np.testing.assert_array_equal(cpu_pool.max_pool2d(minus_inf, *geometry, (2, 2))[1],
                                  cpu_pool.naive_max_pool2d(minus_inf, *geometry, (2, 2))[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpool_and_gather_match_naive(rng, dtype):
    values = rng.standard_normal((4, 3, 5)).astype(dtype)
    switches = rng.integers(0, 6 * 7, (4, 3, 5))  # random: many duplicates, which must add up
    out = cpu_pool.unpool(values, switches, (6, 7))
    np.testing.assert_allclose(out, cpu_pool.naive_unpool(values, switches, (6, 7)), rtol=1e-6)
    assert out.dtype == dtype and out.shape == (4, 6, 7)
    source = rng.standard_normal((4, 6, 7)).astype(dtype)
    np.testing.assert_array_equal(cpu_pool.gather(source, switches), cpu_pool.naive_gather(source, switches))
    # gather is the adjoint of unpool: <unpool(v), s> == <v, gather(s)>
    np.testing.assert_allclose(np.sum(out * source), np.sum(values * cpu_pool.gather(source, switches)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


BINS = [
    lambda h: _avg_bins(h, 3, 2, 1, _pool_output_size(h, 3, 2, 1, 1, True), True),
    lambda h: _avg_bins(h, 3, 2, 1, _pool_output_size(h, 3, 2, 1, 1, True), False),
    lambda h: _avg_bins(h, 2, 3, 0, _pool_output_size(h, 2, 3, 0, 1, False), True),
    lambda h: _adaptive_bins(h, 3),
    lambda h: _adaptive_bins(h, h + 2),  # more bins than pixels: bins overlap
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row_bins", range(len(BINS)))
@pytest.mark.parametrize("col_bins", [0, 3])
def test_box_mean_and_backward_match_naive(rng, dtype, row_bins, col_bins):
    x = rng.standard_normal((3, 7, 6)).astype(dtype)
    rows, cols = BINS[row_bins](7), BINS[col_bins](6)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12}
    out = cpu_pool.box_mean(x, rows, cols)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, cpu_pool.naive_box_mean(x, rows, cols), **tol)
    g = rng.standard_normal(out.shape).astype(dtype)
    grad = cpu_pool.box_mean_backward(g, rows, cols, (7, 6))
    np.testing.assert_allclose(grad, cpu_pool.naive_box_mean_backward(g, rows, cols, (7, 6)), **tol)


@pytest.mark.parametrize("geometry", [((2, 2), (2, 2), (0, 0), (1, 1)),   # the 2x2 fast path
                                      ((2, 2), (2, 1), (0, 0), (1, 1))])  # the generic loop
def test_max_pool2d_switch_points_at_the_first_nan_of_a_window(geometry):
    """Several NaNs in one window: the switch is the first one in row-major order (numpy's argmax,
    PyTorch's rule), so the gradient goes to exactly one input."""
    x = np.array([[[0.0, np.nan, 1.0, 2.0],
                   [np.nan, 4.0, np.nan, np.nan]]])
    out_hw = _out_hw(x.shape[1:], *geometry, False)
    out, switches = cpu_pool.max_pool2d(x, *geometry, out_hw)
    ref_out, ref_switches = cpu_pool.naive_max_pool2d(x, *geometry, out_hw)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(switches, ref_switches)
    assert switches[0, 0, 0] == 1  # the NaN at (0, 1) comes before the one at (1, 0)


# Geometries for the separable max-pool (row maxima, then column maxima): the three-tap stride-2
# fast loops (padding 0 and 1, dilation), the generic taps-outer loop, clipped borders, ceil_mode.
SEPARABLE_GEOMETRIES = [
    ((3, 3), (2, 2), (1, 1), (1, 1), False),
    ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((3, 3), (2, 2), (0, 0), (1, 1), True),
    ((3, 3), (2, 2), (1, 1), (2, 2), True),
    ((3, 2), (2, 3), (1, 1), (1, 2), False),
    ((5, 4), (1, 2), (2, 2), (1, 1), True),
    ((2, 5), (3, 1), (0, 2), (2, 1), False),
]


def _with_specials(x, rng):
    """x with a few NaNs, +inf and -inf, and some all -inf rows: the NaN rule and the padding rule."""
    x = x.copy()
    flat = x.reshape(-1)
    for value in (np.nan, np.inf, -np.inf):
        flat[rng.choice(flat.size, size=max(1, flat.size // 40), replace=False)] = value
    x[0, 3] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", SEPARABLE_GEOMETRIES)
@pytest.mark.parametrize("values", ["distinct", "ties", "specials"])
@pytest.mark.parametrize("hw", [(17, 16), (16, 19)])
def test_separable_max_pool2d_equals_the_window_walk(rng, dtype, geometry, values, hw):
    """Both paths forced: the separable kernel (parallel and serial) against the generic window walk
    (``_max_pool2d``) and the NumPy twin; values, switches, NaN and ties alike."""
    shape = (3, *hw)
    x = rng.integers(0, 3, shape) if values == "ties" else rng.standard_normal(shape)
    x = x.astype(dtype)
    if values == "specials":
        x = _with_specials(x, rng)
    out_hw = _out_hw(x.shape[1:], *geometry)
    flat = [v for pair in geometry[:4] for v in pair]
    walk = (np.empty((3, *out_hw), dtype), np.empty((3, *out_hw), np.int64))
    cpu_pool._max_pool2d(x, *flat, *walk)
    for kernel in (cpu_pool._max_pool2d_separable, cpu_pool._max_pool2d_separable_serial):
        got = (np.empty((3, *out_hw), dtype), np.empty((3, *out_hw), np.int64))
        kernel(x, *flat, *got, 2)
        np.testing.assert_array_equal(got[0], walk[0])
        np.testing.assert_array_equal(got[1], walk[1])
    ref_out, ref_switches = cpu_pool.naive_max_pool2d(x, *geometry[:4], out_hw)
    np.testing.assert_array_equal(walk[0], ref_out)
    np.testing.assert_array_equal(walk[1], ref_switches)


def test_unpool_overwrites_whatever_its_buffer_held(rng):
    """unpool zeroes each plane inside the kernel (its output starts as np.empty): planes with no
    switch pointing at a pixel must read 0 there, whatever memory the allocator handed back."""
    values = rng.standard_normal((64, 4, 4))
    switches = np.zeros((64, 4, 4), dtype=np.int64)  # everything lands on pixel 0
    for _ in range(3):
        out = cpu_pool.unpool(values, switches, (9, 9))
        np.testing.assert_array_equal(out.reshape(64, -1)[:, 1:], 0)
        np.testing.assert_allclose(out.reshape(64, -1)[:, 0], values.reshape(64, -1).sum(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(6, 8), (7, 5), (2, 2)])
def test_relu_max_pool2x2_is_the_two_kernels_bit_for_bit(rng, dtype, hw):
    """The fused kernel rectifies each tap as it reads it: values (signed zeros, NaN) and switches
    (windows of negatives and of zeros, ties) as the clip kernel followed by the 2x2 max-pool."""
    from minivis.kernels import cpu_activation

    x = rng.integers(-2, 3, (6, *hw)).astype(dtype)  # many ties, windows of negatives and of zeros
    x[0] = rng.standard_normal(hw)
    x[1].flat[::3] = -0.0
    x[2].flat[::5] = np.nan
    x[3].flat[1::4] = -np.inf
    out, switches = cpu_pool.relu_max_pool2x2(x)
    rectified = cpu_activation.clip(x, 0.0, np.inf)
    want_out, want_switches = cpu_pool.max_pool2d(rectified, (2, 2), (2, 2), (0, 0), (1, 1), (hw[0] // 2, hw[1] // 2))
    np.testing.assert_array_equal(out.view(np.uint8), want_out.view(np.uint8))  # the bits, signed zeros too
    np.testing.assert_array_equal(switches, want_switches)
    naive_out, naive_switches = cpu_pool.naive_relu_max_pool2x2(x)
    np.testing.assert_array_equal(out, naive_out)
    np.testing.assert_array_equal(switches, naive_switches)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_relu_unpool_is_unpool_then_the_rule_bit_for_bit(rng, dtype, rule):
    """The fused backward against its two kernels, with gradients of -0.0, 0.0 and inf at switches
    whose windows were all negative (slope 0: -0.0 and NaN come out as from the two kernels)."""
    from minivis.kernels import cpu_activation
    from minivis.rules import RULE_CODES

    x = rng.integers(-2, 3, (4, 6, 7)).astype(dtype)
    x[0, :2, :2] = -1.0
    pooled, switches = cpu_pool.relu_max_pool2x2(x)
    g = rng.standard_normal(pooled.shape).astype(dtype)
    g[0, 0, :3] = [-0.0, np.inf, -1.5]
    g[1, 0, :2] = [0.0, -np.inf]
    with np.errstate(invalid="ignore"):
        got = cpu_pool.relu_unpool(g, pooled, switches, (6, 7), RULE_CODES[rule])
        want = cpu_activation.relu_rule_backward(cpu_pool.unpool(g, switches, (6, 7)),
                                                 cpu_activation.clip(x, 0.0, np.inf), 0.0, np.inf, 0.0,
                                                 RULE_CODES[rule])
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    bad = switches.copy()
    bad[0, 0, 0] = 10**6  # a tampered switch is skipped, as by unpool
    assert cpu_pool.relu_unpool(g, pooled, bad, (6, 7), RULE_CODES[rule]).shape == (4, 6, 7)
