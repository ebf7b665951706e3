"""Winograd F(2x2, 3x3) kernels against the matrices of Lavin & Gray, applied literally with NumPy."""

import numpy as np
import pytest

from minivis.kernels import cpu_winograd

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

# (x shape, top, left, output rows, output cols): odd and even sizes, no/negative/wide padding
GEOMETRIES = [
    ((2, 3, 6, 6), 1, 1, 6, 6),
    ((1, 2, 7, 5), 1, 1, 7, 5),
    ((2, 2, 6, 7), 0, 1, 6, 8),
    ((1, 3, 8, 6), -1, 2, 5, 7),
    ((1, 1, 3, 3), 3, 3, 7, 7),  # padding wider than the image
    ((2, 19, 5, 6), 1, 1, 5, 6),  # 19 channels: two 8-channel passes of the copies and a remainder of 3
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_transform_is_g_g_gt(dtype, rng):
    w = rng.standard_normal((5, 70, 3, 3)).astype(dtype)  # 70 input channels: two blocks of filters
    expected = np.einsum("ai,ocij,bj->aboc", G, w.astype(np.float64), G).reshape(16, 5, 70)
    u = cpu_winograd.filter_transform(w)
    assert u.dtype == dtype and u.shape == (16, 5, 70)
    np.testing.assert_allclose(u, expected, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-6)
    u_t = cpu_winograd.filter_transform(w, transposed=True)
    assert u_t.shape == (16, 70, 5) and u_t.flags.c_contiguous
    np.testing.assert_array_equal(u_t, u.transpose(0, 2, 1))


def test_adjoint_slots_transform_the_flipped_transposed_kernel(rng):
    """U' of the input-gradient's kernel (flipped, channel axes swapped) is U read at ADJOINT_SLOTS, transposed."""
    w = rng.standard_normal((4, 6, 3, 3))
    u_adjoint = cpu_winograd.filter_transform(np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)))
    np.testing.assert_allclose(cpu_winograd.filter_transform(w)[cpu_winograd.ADJOINT_SLOTS].transpose(0, 2, 1),
                               u_adjoint, rtol=1e-14, atol=1e-15)


def _blocks(x, top, left, ho, wo):
    """Each tile's 4x4 input block, literally: (N, C, tile rows, tile cols, 4, 4) from a zero-padded copy."""
    nty, ntx = -(-ho // 2), -(-wo // 2)
    n, c, h, w = x.shape
    padded = np.zeros((n, c, 2 * nty + 2 + max(top, 0) + h, 2 * ntx + 2 + max(left, 0) + w))
    src = x[:, :, max(-top, 0):, max(-left, 0):]
    padded[:, :, max(top, 0):max(top, 0) + src.shape[2], max(left, 0):max(left, 0) + src.shape[3]] = src
    return np.stack([np.stack([padded[:, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] for tx in range(ntx)], axis=2)
                     for ty in range(nty)], axis=2)


# Both layouts: channels last, V (n, 16, tiles, C), the kernels conv_plan runs on small maps; and
# planar, V (n, 16, C, tiles), on wide ones. The tests build the channels-last arrays and view them.
TRANSFORMS = {"channels_last": (cpu_winograd.input_transform, cpu_winograd.output_transform),
              "planar": (cpu_winograd.input_transform_planar, cpu_winograd.output_transform_planar)}


def _in_layout(a, layout):
    """A (n, 16, tiles, C) array as the layout's kernels take it (planar: a transposed copy)."""
    return a if layout == "channels_last" else np.ascontiguousarray(a.transpose(0, 1, 3, 2))


def _from_layout(a, layout):
    return a if layout == "channels_last" else a.transpose(0, 1, 3, 2)


@pytest.mark.parametrize("layout", list(TRANSFORMS))
@pytest.mark.parametrize("slots", ["forward", "adjoint"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_input_transform_is_bt_d_b(geometry, slots, layout, rng):
    x_shape, top, left, ho, wo = geometry
    transform = TRANSFORMS[layout][0]
    x = rng.standard_normal(x_shape)
    nty, ntx = -(-ho // 2), -(-wo // 2)
    expected = np.einsum("ai,nctsij,bj->nabcts", B_T, _blocks(x, top, left, ho, wo), B_T)
    expected = expected.reshape(x_shape[0], 16, x_shape[1], nty * ntx).transpose(0, 1, 3, 2)  # channels last
    order = cpu_winograd.ADJOINT_SLOTS if slots == "adjoint" else cpu_winograd.FORWARD_SLOTS
    v = _in_layout(np.full((x_shape[0], 16, nty * ntx, x_shape[1]), np.nan), layout)
    transform(x, top, left, 0, nty, order, v)
    np.testing.assert_allclose(_from_layout(v, layout)[:, order], expected, rtol=1e-15, atol=1e-15)
    if layout == "channels_last":  # told ntx, it leaves a buffer's extra tiles alone
        spare = np.full((x_shape[0], 16, nty * ntx + 2, x_shape[1]), np.nan)
        transform(x, top, left, 0, nty, order, spare, ntx)
        np.testing.assert_array_equal(spare[:, :, :nty * ntx], v)
        assert np.isnan(spare[:, :, nty * ntx:]).all()
    if nty > 1:  # a band of tile rows fills its own tiles only
        band = _in_layout(np.full((x_shape[0], 16, (nty - 1) * ntx, x_shape[1]), np.nan), layout)
        transform(x, top, left, 1, nty, order, band)
        np.testing.assert_array_equal(_from_layout(band, layout), _from_layout(v, layout)[:, :, ntx:])


@pytest.mark.parametrize("layout", list(TRANSFORMS))
@pytest.mark.parametrize("slots", ["forward", "adjoint"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_output_transform_is_at_m_a_plus_bias(geometry, slots, layout, rng):
    x_shape, _, _, ho, wo = geometry
    transform = TRANSFORMS[layout][1]
    n, c_out = x_shape[0], x_shape[1] + 2  # 3 to 21 channels: the copies' 8-channel passes and remainders
    nty, ntx = -(-ho // 2), -(-wo // 2)
    order = cpu_winograd.ADJOINT_SLOTS if slots == "adjoint" else cpu_winograd.FORWARD_SLOTS
    mm, bias = rng.standard_normal((n, 16, nty * ntx, c_out)), rng.standard_normal(c_out)
    blocks = mm[:, order].transpose(0, 1, 3, 2).reshape(n, 4, 4, c_out, nty, ntx)
    full = np.einsum("ia,nabcts,jb->nctisj", A_T, blocks, A_T).reshape(n, c_out, 2 * nty, 2 * ntx)
    y = np.full((n, c_out, ho, wo), np.nan)
    transform(_in_layout(mm, layout), bias, 0, nty, order, y)
    np.testing.assert_allclose(y, full[:, :, :ho, :wo] + bias[:, None, None], rtol=1e-14, atol=1e-14)
    if layout == "channels_last":  # told ntx, it reads no extra tile
        spare = np.concatenate([mm, np.full((n, 16, 2, c_out), np.nan)], axis=2)
        y_spare = np.full_like(y, np.nan)
        transform(spare, bias, 0, nty, order, y_spare, ntx)
        np.testing.assert_array_equal(y_spare, y)
    band = np.full((n, c_out, ho, wo), np.nan)  # tile rows 1.. write output rows 2.. only
    transform(_in_layout(np.ascontiguousarray(mm[:, :, ntx:]), layout), bias, 1, nty, order, band)
    np.testing.assert_array_equal(band[:, :, 2:], y[:, :, 2:])
    assert np.isnan(band[:, :, :2]).all()


def test_the_three_steps_make_a_convolution(rng):
    """filter, input and output transforms with 16 GEMMs between them equal the literal 3x3 correlation."""
    x, w, bias = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    ho, wo = 7, 6  # padding 1
    nty, ntx = 4, 3
    v = np.empty((2, 16, nty * ntx, 4))
    cpu_winograd.input_transform(x, 1, 1, 0, nty, cpu_winograd.FORWARD_SLOTS, v)
    mm = np.matmul(v, cpu_winograd.filter_transform(w, transposed=True))
    y = np.empty((2, 5, ho, wo))
    cpu_winograd.output_transform(mm, bias, 0, nty, cpu_winograd.FORWARD_SLOTS, y)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # (N, C, Ho, Wo, 3, 3)
    expected = np.einsum("ncxyij,ocij->noxy", windows, w) + bias[:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_gradient_transform_is_a_g_at(geometry, rng):
    """The adjoint of the output transform: each 2x2 tile of the output gradient (zero beyond its edge) -> A g A^T."""
    x_shape, _, _, ho, wo = geometry
    n, c_out = x_shape[0], x_shape[1] + 2  # 3 to 21 channels: the copies' 8-channel passes and remainders
    nty, ntx = -(-ho // 2), -(-wo // 2)
    g = rng.standard_normal((n, c_out, ho, wo))
    padded = np.zeros((n, c_out, 2 * nty, 2 * ntx))
    padded[:, :, :ho, :wo] = g
    tiles = padded.reshape(n, c_out, nty, 2, ntx, 2)  # (n, c, ty, i, tx, j)
    expected = np.einsum("ia,nctisj,jb->nabtsc", A_T, tiles, A_T).reshape(n, 16, nty * ntx, c_out)
    gm = np.full((n, 16, nty * ntx, c_out), np.nan)
    cpu_winograd.gradient_transform(g, 0, nty, gm)
    np.testing.assert_allclose(gm, expected, rtol=1e-15, atol=1e-15)
    spare = np.full((n, 16, nty * ntx + 2, c_out), np.nan)  # told ntx, it leaves extra tiles alone
    cpu_winograd.gradient_transform(g, 0, nty, spare, ntx)
    np.testing.assert_array_equal(spare[:, :, :nty * ntx], gm)
    assert np.isnan(spare[:, :, nty * ntx:]).all()
    # the adjoint identity <output_transform(m), g> = <m, gradient_transform(g)> (no bias)
    mm = rng.standard_normal(gm.shape)
    y = np.empty_like(g)
    cpu_winograd.output_transform(mm, np.zeros(c_out), 0, nty, cpu_winograd.FORWARD_SLOTS, y)
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(mm, gm), rtol=1e-12)
    if nty > 1:  # a band of tile rows reads its own output rows only
        band = np.full((n, 16, (nty - 1) * ntx, c_out), np.nan)
        cpu_winograd.gradient_transform(g, 1, nty, band)
        np.testing.assert_array_equal(band, gm[:, :, ntx:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_channels_and_leftovers_in_any_buffer_layout(dtype, rng):
    """The input and gradient transforms do whole vectors of channels as explicit vectors and the last
    ``C % lanes`` one at a time: 35 channels (float32: 2 vectors and 3; float64: 4 and 3), into a
    contiguous buffer, a slot-major view (``conv_plan._winograd_shared``'s) and a view whose channels
    are not adjacent (no vectors at all). The same bits in all three, and B^T d B / A g A^T."""
    m, c, ho, wo = 3, 35, 5, 6
    nty, ntx = -(-ho // 2), -(-wo // 2)
    x, g = rng.standard_normal((m, c, ho, wo)).astype(dtype), rng.standard_normal((m, c, ho, wo)).astype(dtype)

    def layouts():
        yield np.full((m, 16, nty * ntx, c), np.nan, dtype)
        yield np.full((16, m, nty * ntx, c), np.nan, dtype).transpose(1, 0, 2, 3)  # slot-major
        yield np.full((m, 16, nty * ntx, 2 * c), np.nan, dtype)[..., ::2]  # every other channel of a wider buffer

    outputs = []
    for v, gm in zip(layouts(), layouts(), strict=True):
        cpu_winograd.input_transform(x, 1, 1, 0, nty, cpu_winograd.ADJOINT_SLOTS, v, ntx)
        cpu_winograd.gradient_transform(g, 0, nty, gm, ntx)
        outputs.append((np.array(v), np.array(gm)))
    for v, gm in outputs[1:]:
        np.testing.assert_array_equal(v, outputs[0][0])
        np.testing.assert_array_equal(gm, outputs[0][1])
    expected = np.einsum("ai,nctsij,bj->nabcts", B_T, _blocks(x.astype(np.float64), 1, 1, ho, wo), B_T)
    expected = expected.reshape(m, 16, c, nty * ntx).transpose(0, 1, 3, 2)
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-15, "atol": 1e-14}
    np.testing.assert_allclose(outputs[0][0][:, cpu_winograd.ADJOINT_SLOTS], expected, **tol)
    padded = np.zeros((m, c, 2 * nty, 2 * ntx))
    padded[:, :, :ho, :wo] = g
    tiles = padded.reshape(m, c, nty, 2, ntx, 2)
    expected = np.einsum("ia,nctisj,jb->nabtsc", A_T, tiles, A_T).reshape(m, 16, nty * ntx, c)
    np.testing.assert_allclose(outputs[0][1], expected, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_gradient_is_gt_du_g_the_adjoint_of_the_filter_transform(dtype, rng):
    du = rng.standard_normal((16, 5, 70)).astype(dtype)
    dw = np.full((5, 70, 3, 3), np.nan, dtype=dtype)
    cpu_winograd.filter_gradient(du, dw)
    expected = np.einsum("ai,aboc,bj->ocij", G, du.astype(np.float64).reshape(4, 4, 5, 70), G)
    np.testing.assert_allclose(dw, expected, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-6)
    w = rng.standard_normal((5, 70, 3, 3))  # <filter_transform(w), du> = <w, filter_gradient(du)>
    np.testing.assert_allclose(np.vdot(cpu_winograd.filter_transform(w), du.astype(np.float64)),
                               np.vdot(w, expected), rtol=1e-12)


def test_the_three_adjoint_steps_make_the_weight_gradient(rng):
    """input transform, gradient transform, 16 GEMMs summing over tiles and the filter gradient equal
    the literal weight gradient sum_n,p g[n, o, p] x[n, c, p + (i, j)]."""
    x, g = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((2, 5, 7, 6))  # padding 1
    nty, ntx = 4, 3
    v, gm = np.empty((2, 16, nty * ntx, 4)), np.empty((2, 16, nty * ntx, 5))
    cpu_winograd.input_transform(x, 1, 1, 0, nty, cpu_winograd.FORWARD_SLOTS, v)
    cpu_winograd.gradient_transform(g, 0, nty, gm)
    du = np.einsum("nstc,nsti->sci", gm, v)
    dw = np.empty((5, 4, 3, 3))
    cpu_winograd.filter_gradient(du, dw)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # (N, C, Ho, Wo, 3, 3)
    np.testing.assert_allclose(dw, np.einsum("noxy,ncxyij->ocij", g, windows), rtol=1e-13, atol=1e-13)
