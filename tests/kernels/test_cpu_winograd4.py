"""Winograd F(4x4, 3x3) kernels against the matrices of Lavin & Gray applied literally with NumPy,
and the three steps together against the sliding-window convolution."""

import numpy as np
import pytest

from minivis.kernels import cpu_conv, cpu_winograd, cpu_winograd4

BT, G, AT = cpu_winograd4.BT, cpu_winograd4.G, cpu_winograd4.AT

# (x shape, top, left, output rows, output cols): sizes that are and are not multiples of 4, no,
# negative and wide padding; channels whole vectors (16 float32, or 2 x 8 float64)
GEOMETRIES = [
    ((2, 16, 10, 10), 1, 1, 10, 10),
    ((1, 32, 9, 7), 1, 1, 9, 7),
    ((3, 16, 6, 6), 0, 0, 4, 4),
    ((1, 16, 11, 8), -1, 2, 6, 9),
    ((1, 16, 3, 3), 3, 3, 7, 7),  # padding wider than the image
]


def padded(x, top, left, rows, cols):
    """xp[n, c, r, q] = x[n, c, r - top, q - left] for r < rows, q < cols, zero outside x (top, left may be < 0)."""
    m, c, h, w = x.shape
    xp = np.zeros((m, c, rows, cols), dtype=x.dtype)
    r0, q0 = max(0, top), max(0, left)
    r1, q1 = min(rows, top + h), min(cols, left + w)
    xp[:, :, r0:r1, q0:q1] = x[:, :, r0 - top:r1 - top, q0 - left:q1 - left]
    return xp


def padded_blocks(x, top, left, nty, ntx):
    """d[n, c, t] = the 6x6 input block of tile t: rows 4*ty - top .., columns 4*tx - left .., zero outside."""
    xp = padded(x, top, left, 4 * nty + 2, 4 * ntx + 2)
    blocks = np.empty(x.shape[:2] + (nty * ntx, 6, 6), dtype=x.dtype)
    for ty in range(nty):
        for tx in range(ntx):
            blocks[:, :, ty * ntx + tx] = xp[:, :, 4 * ty:4 * ty + 6, 4 * tx:4 * tx + 6]
    return blocks


def test_the_matrices_compute_a_4x4_block_of_a_3x3_correlation(rng):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the correlation of a 6x6 block with a 3x3 filter (float64)."""
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    expected = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_transform_is_g_g_gt(dtype, rng):
    w = rng.standard_normal((24, 16, 3, 3)).astype(dtype)
    expected = np.einsum("ai,ocij,bj->abco", G, w.astype(np.float64), G).reshape(36, 16, 24)
    u = cpu_winograd4.filter_transform(w)
    assert u.dtype == dtype and u.shape == (36, 16, 24) and u.flags.c_contiguous
    np.testing.assert_allclose(u, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-7)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_transform_is_bt_d_b(geometry, dtype, rng):
    """Every tile's 36 components, and nothing past the group's rows of V (a spare row stays NaN)."""
    shape, top, left, ho, wo = geometry
    nty, ntx = -(-ho // 4), -(-wo // 4)
    x = rng.standard_normal(shape).astype(dtype)
    rows = shape[0] * nty * ntx
    v = np.full((36, rows + 1, shape[1]), np.nan, dtype=dtype)
    cpu_winograd4.input_transform(x, top, left, nty, ntx, v)
    d = padded_blocks(x.astype(np.float64), top, left, nty, ntx)
    expected = np.einsum("ai,nctij,bj->abntc", BT, d, BT).reshape(36, rows, shape[1])
    np.testing.assert_allclose(v[:, :rows], expected, rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=1e-5 if dtype == np.float32 else 1e-13)
    assert np.isnan(v[:, rows:]).all()


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_transform_is_at_m_a_plus_bias(geometry, dtype, rng):
    """Every output pixel written (cropped at the map's edge), from A^T m A + bias."""
    shape, _, _, ho, wo = geometry
    m, c_out = shape[0], 32
    nty, ntx = -(-ho // 4), -(-wo // 4)
    mm = rng.standard_normal((36, m * nty * ntx + 1, c_out)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    y = np.full((m, c_out, ho, wo), np.nan, dtype=dtype)
    cpu_winograd4.output_transform(mm, bias, nty, ntx, y)
    blocks = mm[:, :m * nty * ntx].astype(np.float64).reshape(6, 6, m, nty, ntx, c_out)
    tiles = np.einsum("ia,abnyxc,kb->ncyixk", AT, blocks, AT).reshape(m, c_out, 4 * nty, 4 * ntx)
    expected = tiles[:, :, :ho, :wo] + bias[:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_the_three_steps_make_a_convolution(geometry, rng):
    """Input transform, 36 GEMMs, output transform: the sliding-window correlation, in float64."""
    shape, top, left, ho, wo = geometry
    nty, ntx = -(-ho // 4), -(-wo // 4)
    x, w, bias = rng.standard_normal(shape), rng.standard_normal((16, shape[1], 3, 3)), rng.standard_normal(16)
    v = np.empty((36, shape[0] * nty * ntx, shape[1]))
    cpu_winograd4.input_transform(x, top, left, nty, ntx, v)
    y = np.empty((shape[0], 16, ho, wo))
    cpu_winograd4.output_transform(v @ cpu_winograd4.filter_transform(w), bias, nty, ntx, y)
    xp = padded(x, top, left, ho + 2, wo + 2)  # the sliding window over the padded input
    expected = cpu_conv.naive_conv2d(xp, w, (1, 1), (0, 0, 0, 0), (1, 1), 1) + bias[:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_float32_rounding_is_larger_than_f2x2s_but_bounded(rng):
    """What the module's docstring says: in float32 the larger tile's transforms round more than F(2x2)'s
    (both measured against float64), by about an order of magnitude (5-6e-6 of the output's scale against
    3-4e-7 on this layer), still within 2e-5."""
    x, w = rng.standard_normal((4, 64, 16, 16)), rng.standard_normal((64, 64, 3, 3)) / 24
    expected = cpu_conv.naive_conv2d(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    x32, w32, zero = x.astype(np.float32), w.astype(np.float32), np.zeros(64, np.float32)
    v = np.empty((36, 4 * 16, 64), np.float32)
    cpu_winograd4.input_transform(x32, 1, 1, 4, 4, v)
    f4 = np.empty((4, 64, 16, 16), np.float32)
    cpu_winograd4.output_transform(v @ cpu_winograd4.filter_transform(w32), zero, 4, 4, f4)
    v2, m2 = np.empty((4, 16, 64, 64), np.float32), np.empty((4, 16, 64, 64), np.float32)
    cpu_winograd.input_transform(x32, 1, 1, 0, 8, cpu_winograd.FORWARD_SLOTS, v2, 8)
    np.matmul(v2, cpu_winograd.filter_transform(w32, transposed=True), out=m2)
    f2 = np.empty((4, 64, 16, 16), np.float32)
    cpu_winograd.output_transform(m2, zero, 0, 8, cpu_winograd.FORWARD_SLOTS, f2, 8)
    scale = np.abs(expected).max()
    err4, err2 = np.abs(f4 - expected).max() / scale, np.abs(f2 - expected).max() / scale
    assert 2 * err2 < err4 < 30 * err2 and err4 < 2e-5


def test_the_transforms_refuse_buffers_they_would_overrun(rng):
    """Channels that are not whole vectors, or buffers too small for the tiles, are refused before
    anything is read or written (the vectors are not bounds-checked)."""
    lanes = 16  # float32 with AVX-512; 8 otherwise: 12 channels are not whole vectors either way
    x = rng.standard_normal((2, 12, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="input_transform"):
        cpu_winograd4.input_transform(x, 0, 0, 1, 1, np.zeros((36, 2, 12), np.float32))
    x = rng.standard_normal((2, lanes, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="input_transform"):
        cpu_winograd4.input_transform(x, 0, 0, 1, 1, np.zeros((36, 1, lanes), np.float32))  # 2 images, 1 row
    y = np.zeros((2, 12, 4, 4), np.float32)
    with pytest.raises(ValueError, match="output_transform"):
        cpu_winograd4.output_transform(np.zeros((36, 2, 12), np.float32), np.zeros(12, np.float32), 1, 1, y)
    y = np.zeros((2, lanes, 4, 4), np.float32)
    with pytest.raises(ValueError, match="output_transform"):
        cpu_winograd4.output_transform(np.zeros((36, 2, lanes), np.float32), np.zeros(lanes - 1, np.float32), 1, 1, y)
