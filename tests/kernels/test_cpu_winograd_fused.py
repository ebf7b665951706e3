"""Fused Winograd F(2x2, 3x3) (minivis/kernels/cpu_winograd_fused.py) against the plain-NumPy direct
twin and PyTorch: forward and input gradient over paddings (asymmetric too), odd sizes, channel
counts off the 8-channel register block, both dtypes; the polyphase layout; batch invariance (an
image's bits alone, in a batch, on one or two threads); reads that stay inside the buffers; the
epilogues (rectifier, eval batch norm, 2x2 max-pool with switches) against the separate ops, bit for bit;
image lanes against tile lanes, bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from minivis.kernels import cpu_activation, cpu_direct, cpu_pool, cpu_threads, cpu_winograd
from minivis.kernels import cpu_simd as simd
from minivis.kernels import cpu_winograd_fused as fused

# (N, C_in, H, W), C_out, pad4 (top, bottom, left, right): every pad at most 2 (the input gradient's 2 - pad)
GEOMETRIES = [
    ((2, 3, 7, 9), 5, (1, 1, 1, 1)),
    ((1, 8, 12, 12), 8, (1, 1, 1, 1)),  # one photo: the threads share its tile blocks
    ((3, 9, 6, 5), 17, (0, 0, 0, 0)),  # odd output width and height, two partial channel blocks
    ((2, 4, 8, 8), 9, (2, 1, 0, 2)),
    ((4, 16, 5, 13), 3, (0, 2, 2, 1)),
    ((33, 6, 7, 9), 11, (2, 0, 1, 2)),  # image lanes: two groups of 16 and a partial one
]


def _conv(x, w, pad4):
    xt = torch.nn.functional.pad(torch.tensor(x), (pad4[2], pad4[3], pad4[0], pad4[1]))
    return torch.nn.functional.conv2d(xt, torch.tensor(w)).numpy()


def _packed(w):
    u = cpu_winograd.filter_transform(w)
    return fused.pack_filters(u), fused.pack_filters(fused.adjoint_filters(u))


@pytest.mark.parametrize(("x_shape", "c_out", "pad4"), GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_and_input_gradient_equal_the_direct_sums_and_torch(x_shape, c_out, pad4, dtype, monkeypatch):
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)  # small shapes: still split between the threads
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c_out, x_shape[1], 3, 3)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    out_hw = (x_shape[2] + pad4[0] + pad4[1] - 2, x_shape[3] + pad4[2] + pad4[3] - 2)
    up, up_adjoint = _packed(w)
    y = fused.forward(x, up, c_out, pad4, out_hw, bias)
    want = cpu_direct.naive_forward(x.astype(np.float64), w.astype(np.float64), (1, 1), pad4, (1, 1), out_hw)
    want += bias[:, None, None]
    tol = 1e-12 if dtype == np.float64 else 2e-6  # Winograd's transforms round differently from the direct sums
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_allclose(y, _conv(x.astype(np.float64), w.astype(np.float64), pad4) + bias[:, None, None],
                               rtol=tol, atol=tol * np.abs(want).max())
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = fused.backward_input(g, up_adjoint, x_shape[1], pad4, x_shape[2:])
    want = cpu_direct.naive_backward_input(g.astype(np.float64), w.astype(np.float64), x_shape, (1, 1), pad4, (1, 1))
    np.testing.assert_allclose(dx, want, rtol=tol, atol=tol * np.abs(want).max())
    assert y.dtype == dx.dtype == dtype


def test_the_planes_are_the_stride_2_polyphase_input_image_after_image():
    """Plane (ci, py, px) holds x_pad[n, ci, 2r + py, 2c + px] at n*Hq*Wq + r*Wq + c, zero outside x and
    from the last image to the plane's end."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    top, left, hq, wq, plane = 1, 2, 5, 6, 70
    src = np.full(3 * 4 * plane, np.nan)
    fused._planes(x, top, left, hq, wq, plane, src)
    padded = np.zeros((2, 3, 2 * hq, 2 * wq))
    padded[:, :, top:top + 7, left:left + 6] = x
    for ci in range(3):
        for py in range(2):
            for px in range(2):
                p = src[((ci * 2 + py) * 2 + px) * plane:][:plane]
                for n in range(2):
                    np.testing.assert_array_equal(p[n * hq * wq:(n + 1) * hq * wq].reshape(hq, wq),
                                                  padded[n, ci, py::2, px::2])
                assert (p[2 * hq * wq:] == 0).all()


def test_an_image_gives_the_same_bits_alone_in_a_batch_and_on_any_number_of_threads(monkeypatch):
    """Each lane (tile) runs its own fixed sequence of adds and multiply-adds, so where a tile sits in a
    block (which image shares it, which band or thread runs it) does not change its bits."""
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 12, 11, 10)).astype(np.float32)
    w = rng.standard_normal((10, 12, 3, 3)).astype(np.float32)
    up, up_adjoint = _packed(w)
    batch = fused.forward(x, up, 10, (1, 1, 1, 1), (11, 10)).copy()
    g = rng.standard_normal(batch.shape).astype(np.float32)
    dx = fused.backward_input(g, up_adjoint, 12, (1, 1, 1, 1), (11, 10)).copy()
    monkeypatch.setattr(fused, "CHUNK_BYTES", 1)  # bands of one tile row
    threads = numba.get_num_threads()
    try:
        for t in {1, min(2, numba.config.NUMBA_NUM_THREADS)}:
            numba.set_num_threads(t)
            np.testing.assert_array_equal(fused.forward(x, up, 10, (1, 1, 1, 1), (11, 10)), batch)
            for i in (0, 4):
                np.testing.assert_array_equal(fused.forward(x[i:i + 1], up, 10, (1, 1, 1, 1), (11, 10))[0], batch[i])
                np.testing.assert_array_equal(
                    fused.backward_input(g[i:i + 1], up_adjoint, 12, (1, 1, 1, 1), (11, 10))[0], dx[i])
    finally:
        numba.set_num_threads(threads)


GUARD = 64  # guard elements around each buffer


def _one_task_guarded(x, c_out, out_hw):
    """The plan of x's pass as one task (one thread), and its buffers, each as (guarded, inner): the
    inner buffer with GUARD elements either side, NaN around the planes and -7 around the others."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        plan = fused._Plan(x.shape, c_out, out_hw, None, x.dtype)
    finally:
        numba.set_num_threads(threads)
    guarded = []
    for buf, value in zip(plan.scratch(x.shape[1], x.dtype), (np.nan, -7, -7, -7), strict=True):
        a = np.full(buf.shape[0] + 2 * GUARD, value, buf.dtype)
        guarded.append((a, a[GUARD:-GUARD]))
    return plan, *guarded


def test_the_tile_blocks_read_and_write_only_inside_their_buffers():
    """The vector loads and stores are not bounds-checked: the plan sizes each plane for the last block's
    reads (``wq + 1`` past its last tile). NaN guards around the planes never reach an output, and guard
    values around the other buffers stay untouched."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((9, 3, 3, 3)).astype(np.float32)
    up, _ = _packed(w)
    plan, (src_g, src), (vb_g, vb), (mb_g, mb), (out_g, out) = _one_task_guarded(x, 9, (9, 7))  # both images
    hq = 5 + 1  # 5 tile rows (9 output rows) and the row below them
    fused._planes(x, 1, 1, hq, plan.wq, plan.plane, src)
    blocks = -(-(2 * hq * plan.wq) // plan.block)
    assert blocks == plan.blocks  # both images in one task: the largest
    no_finish = (plan.per_channel(None, x.dtype), plan.per_channel(None, x.dtype), np.float32([-np.inf, np.inf]))
    fused._tile_blocks(src, plan.plane, plan.wq, up, plan.offs, plan.n_cb, 0, blocks, plan.bias, no_finish, False,
                       vb, mb, out, blocks * plan.block, (0, 0, 0, 0, 0))
    for a in (vb_g, mb_g, out_g):
        assert (a[:GUARD] == -7).all() and (a[-GUARD:] == -7).all()
    y = np.empty((2, 9, 9, 7), np.float32)
    fused._crop(out, blocks * plan.block, hq, plan.wq, 2, 0, 0, 9, y)
    want = cpu_direct.naive_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 7))
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_aligned_buffers_start_a_vector():
    for dtype in (np.float32, np.float64):
        for size in (1, 17, 1000):
            a = simd.aligned_empty(size, dtype)
            assert a.shape == (size,) and a.dtype == dtype and a.ctypes.data % simd.VECTOR_BYTES == 0


# (N, C_in, H, W), C_out, pad4: even and odd outputs; one image (bands of tile rows on two threads)
EPILOGUE_GEOMETRIES = [((3, 8, 10, 12), 9, (1, 1, 1, 1)), ((2, 5, 9, 7), 16, (1, 1, 1, 1)),
                       ((1, 4, 30, 11), 8, (0, 1, 2, 0))]


def _specials(x):
    """x with a NaN, a -0.0 and an infinity in it: what the epilogues must carry as the separate ops do."""
    flat = x.reshape(-1)
    flat[5], flat[17], flat[40] = np.nan, -0.0, np.inf
    return x


def _epilogue_case(rng, x_shape, c_out, pad4, dtype):
    """x (with ``_specials``), w, bias, a batch norm's scale and shift, and the output size of one case."""
    x = _specials(rng.standard_normal(x_shape).astype(dtype))
    w = rng.standard_normal((c_out, x_shape[1], 3, 3)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    scale, shift = rng.uniform(0.5, 2, c_out).astype(dtype), rng.standard_normal(c_out).astype(dtype)
    return x, w, bias, scale, shift, (x_shape[2] + pad4[0] + pad4[1] - 2, x_shape[3] + pad4[2] + pad4[3] - 2)


@pytest.mark.parametrize(("x_shape", "c_out", "pad4"), EPILOGUE_GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_epilogues_equal_the_separate_ops_bit_for_bit(x_shape, c_out, pad4, dtype, monkeypatch):
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    rng = np.random.default_rng(5)
    x, w, bias, scale, shift, out_hw = _epilogue_case(rng, x_shape, c_out, pad4, dtype)
    up, _ = _packed(w)
    y = fused.forward(x, up, c_out, pad4, out_hw, bias)

    def same(a, b):  # the same bits: -0.0 is not 0.0 here, and NaN equals NaN
        np.testing.assert_array_equal(a.view(np.uint64 if dtype == np.float64 else np.uint32),
                                      b.view(np.uint64 if dtype == np.float64 else np.uint32))

    relu = cpu_activation.clip(y, 0.0, np.inf)
    same(fused.forward(x, up, c_out, pad4, out_hw, bias, (None, None, 0.0, np.inf)), relu)
    bn_relu6 = np.clip(y * scale[:, None, None] + shift[:, None, None], 0, 6)  # each op rounds: as NumPy does
    same(fused.forward(x, up, c_out, pad4, out_hw, bias, (scale, shift, 0.0, 6.0)), bn_relu6)
    same(fused.forward(x, up, c_out, pad4, out_hw, bias, (None, None, -np.inf, np.inf)), y)  # no-op finish
    for finish, rectified in (((None, None, 0.0, np.inf), relu), ((scale, shift, 0.0, 6.0), bn_relu6)):
        pooled, switches = fused.forward(x, up, c_out, pad4, out_hw, bias, finish, pool=True)
        want, want_switches = cpu_pool.relu_max_pool2x2(rectified.reshape(-1, *out_hw))  # taps >= 0: max_pool2d
        same(pooled, want.reshape(pooled.shape))
        np.testing.assert_array_equal(switches, want_switches.reshape(switches.shape))
        assert pooled.shape == (x_shape[0], c_out, out_hw[0] // 2, out_hw[1] // 2) and switches.dtype == np.int64
    assert np.isnan(y).any() and np.isnan(pooled).any()  # the NaN did reach the outputs and the pool


def test_the_pool_epilogue_keeps_the_first_maximum_of_a_window():
    """Ties (a window of zeros after the rectifier) give the window's first tap, as the pool kernel does."""
    x = np.zeros((1, 2, 6, 6), np.float32)
    w = -np.ones((3, 2, 3, 3), np.float32)  # every output <= 0: rectified to zeros, all ties
    x[0, :, 4:, 4:] = 1.0
    up, _ = _packed(w)
    pooled, switches = fused.forward(x, up, 3, (1, 1, 1, 1), (6, 6), None, (None, None, 0.0, np.inf), pool=True)
    assert (pooled == 0).all()
    np.testing.assert_array_equal(switches[0, 0], (np.arange(3)[:, None] * 2 * 6 + np.arange(3) * 2))


TASK_SHAPES = [((64, 32, 14, 14), 64, (14, 14)), ((40, 32, 14, 14), 32, (14, 14)),  # image lanes (groups of 16)
               ((64, 32, 28, 28), 32, (28, 28)), ((5, 32, 28, 28), 32, (28, 28)), ((1, 64, 224, 224), 64, (224, 224)),
               ((3, 64, 112, 112), 64, (112, 112)), ((2, 8, 3, 3), 8, (3, 3))]


@pytest.mark.parametrize(("x_shape", "c_out", "out_hw"), TASK_SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_tasks_cover_the_work_once_in_even_runs_per_thread(x_shape, c_out, out_hw, threads):
    """Threads take equal numbers of tasks, so the tasks are as even as the chunk size allows (chunks of 21,
    21, 21 and 1 images gave one of two threads 42 of 64) and a whole number per thread where they can be."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs {threads} Numba threads")
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        plan = fused._Plan(x_shape, c_out, out_hw, None, np.float32)
    finally:
        numba.set_num_threads(before)
    tasks, n, nty = plan.tasks, x_shape[0], -(-out_hw[0] // 2)
    covered = np.zeros((n, nty), int)
    for n0, n1, ty0, ty1 in tasks:
        covered[n0:n1, ty0:ty1] += 1
    assert (covered == 1).all()  # every tile row of every image, once
    lanes = simd.lanes_of(np.float32) if plan.ntx else 1  # image lanes: the units are groups of L images
    images, rows = -(-(tasks[:, 1] - tasks[:, 0]) // lanes), tasks[:, 3] - tasks[:, 2]
    assert images.max() - images.min() <= 1 and rows.max() - rows.min() <= 1
    units = -(-n // lanes)
    whole_per_thread = len(tasks) % threads == 0
    assert whole_per_thread or len(tasks) == units * nty
    unit = images if (rows == nty).all() else rows  # chunks of whole images, or bands of one image's rows
    loads = [int(unit[part].sum()) for part in cpu_threads.batch_slices(len(tasks), threads)]
    assert max(loads) - min(loads) <= (len(tasks) // threads if whole_per_thread else unit.max())


def _lanes(monkeypatch, images: bool) -> None:
    monkeypatch.setattr(fused, "IMAGE_LANES_AT", np.inf if images else 0.0)


def test_image_lanes_are_chosen_where_they_light_a_tenth_fewer_lanes():
    assert fused._Plan((64, 32, 14, 14), 64, (14, 14), None, np.float32).ntx == 7  # 3136 lanes against 4096
    assert fused._Plan((64, 32, 28, 28), 32, (28, 28), None, np.float32).ntx == 14  # 12544 against 14400
    assert fused._Plan((1, 64, 224, 224), 64, (224, 224), None, np.float32).ntx == 0  # 1 image fills 1/16 of a group
    assert fused._Plan((16, 64, 224, 224), 64, (224, 224), None, np.float32).ntx == 0  # 0.98: a band outgrows L2
    assert fused._Plan((17, 32, 14, 14), 32, (14, 14), None, np.float32).ntx == 0  # 32 x 49 against 17 x 64


def test_the_image_planes_hold_a_pixel_of_16_images_in_one_vector():
    """src[ci*plane + ((g*hp + yp)*wp + xp)*L + l] = x_pad[g*L + l, ci, yp, xp]: zero outside x and in the
    lanes past the last image."""
    rng = np.random.default_rng(6)
    lanes = simd.lanes_of(np.float64)
    m, c_in, h, w = lanes + 3, 2, 5, 6
    x = rng.standard_normal((m, c_in, h, w))
    top, left, hp, wp = 1, 2, 8, 10  # rows below x and columns right of it too
    groups = 2
    plane = groups * hp * wp * lanes
    src = np.full(c_in * plane, np.nan)
    fused._planes_images(x, top, left, hp, wp, plane, src)
    padded = np.zeros((groups * lanes, c_in, hp, wp))
    padded[:m, :, top:top + h, left:left + w] = x
    want = padded.reshape(groups, lanes, c_in, hp, wp).transpose(2, 0, 3, 4, 1).reshape(-1)
    np.testing.assert_array_equal(src, want)
    band = np.full(c_in * plane, np.nan)  # a band starting three rows into x: top - 2*ty0 < 0
    fused._planes_images(x, -3, left, hp, wp, plane, band)
    shifted = np.zeros_like(padded)
    shifted[:m, :, :h - 3, left:left + w] = x[:, :, 3:]
    want = shifted.reshape(groups, lanes, c_in, hp, wp).transpose(2, 0, 3, 4, 1).reshape(-1)
    np.testing.assert_array_equal(band, want)


@pytest.mark.parametrize(("x_shape", "c_out", "pad4"), [((35, 8, 10, 12), 9, (1, 1, 1, 1)),
                                                        ((16, 5, 9, 7), 16, (0, 2, 2, 1)),
                                                        ((20, 4, 13, 6), 8, (2, 2, 0, 1))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_image_lanes_give_the_bits_of_tile_lanes(x_shape, c_out, pad4, dtype, monkeypatch):
    """Each lane runs the same fixed sequence of adds and multiply-adds whether it holds a tile of one image
    or one tile of 16 images: the forward pass, its epilogues and pool, the input gradient, on chunks of
    groups and on bands of tile rows (``CHUNK_BYTES``), on one or two threads: the same bits."""
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    rng = np.random.default_rng(7)
    x, w, bias, scale, shift, out_hw = _epilogue_case(rng, x_shape, c_out, pad4, dtype)
    up, up_adjoint = _packed(w)
    g = rng.standard_normal((x_shape[0], c_out, *out_hw)).astype(dtype)

    def run():
        return [fused.forward(x, up, c_out, pad4, out_hw, bias).copy(),
                fused.forward(x, up, c_out, pad4, out_hw, bias, (scale, shift, 0.0, 6.0)).copy(),
                *(a.copy() for a in fused.forward(x, up, c_out, pad4, out_hw, bias, (None, None, 0.0, np.inf), True)),
                fused.backward_input(g, up_adjoint, x_shape[1], pad4, x_shape[2:]).copy()]

    _lanes(monkeypatch, False)
    assert fused._Plan(x_shape, c_out, out_hw, bias, dtype).ntx == 0
    tiles = run()
    _lanes(monkeypatch, True)
    assert fused._Plan(x_shape, c_out, out_hw, bias, dtype).ntx > 0
    threads = numba.get_num_threads()
    try:
        for chunk in (fused.CHUNK_BYTES, 1):  # chunks of groups; bands of one tile row
            monkeypatch.setattr(fused, "CHUNK_BYTES", chunk)
            for t in {1, min(2, numba.config.NUMBA_NUM_THREADS)}:
                numba.set_num_threads(t)
                for a, b in zip(run(), tiles, strict=True):
                    np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
    finally:
        numba.set_num_threads(threads)


def test_the_image_lanes_read_and_write_only_inside_their_buffers(monkeypatch):
    """As for tile lanes: NaN guards around the image planes never reach an output (the block past the last
    tile reads the last tile again), and guard values around the other buffers stay untouched."""
    _lanes(monkeypatch, True)
    rng = np.random.default_rng(8)
    lanes = simd.lanes_of(np.float32)
    x = rng.standard_normal((lanes + 5, 3, 9, 7)).astype(np.float32)  # a partial second group
    w = rng.standard_normal((9, 3, 3, 3)).astype(np.float32)
    up, _ = _packed(w)
    plan, (src_g, src), (vb_g, vb), (mb_g, mb), (out_g, out) = _one_task_guarded(x, 9, (9, 7))  # both groups
    assert plan.ntx == 4 and len(plan.tasks) == 1
    rows, hp, wp = 5, 12, 10  # 5 tile rows and 4 columns: the planes reach 2 past them
    tiles = 2 * rows * plan.ntx
    blocks = -(-tiles // fused.PV)
    assert blocks == plan.blocks and tiles % fused.PV  # the last block reads past the last tile
    fused._planes_images(x, 1, 1, hp, wp, plan.plane, src)
    no_finish = (plan.per_channel(None, x.dtype), plan.per_channel(None, x.dtype), np.float32([-np.inf, np.inf]))
    fused._tile_blocks(src, plan.plane, 0, up, plan.offs, plan.n_cb, 0, blocks, plan.bias, no_finish, False,
                       vb, mb, out, blocks * plan.block, (plan.ntx, rows, hp, wp, tiles))
    for a in (vb_g, mb_g, out_g):
        assert (a[:GUARD] == -7).all() and (a[-GUARD:] == -7).all()
    y = np.empty((len(x), 9, 9, 7), np.float32)
    fused._crop_images(out, blocks * plan.block, plan.ntx, len(x), 0, 0, rows, 7, y, np.empty((0, 0, 0, 0), np.int64),
                       False)
    want = cpu_direct.naive_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 7))
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
