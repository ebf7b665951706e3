"""The direct convolution kernels (minivis/kernels/cpu_direct.py) against their plain-NumPy twins
and PyTorch, over strides, paddings (asymmetric too), dilations and kernel sizes; batch invariance
(an image's output and input gradient are bit-identical alone and in a batch) and the thread split."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from minivis.kernels import cpu_direct, cpu_threads

# (N, C_in, H, W), (C_out, kh, kw), stride, pad4 (top, bottom, left, right), dilation
GEOMETRIES = [
    ((2, 3, 9, 11), (5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 1, 12, 10), (6, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((2, 3, 23, 21), (4, 11, 11), (4, 4), (2, 2, 2, 2), (1, 1)),  # AlexNet's first layer, small
    ((1, 2, 8, 9), (7, 3, 2), (2, 3), (0, 1, 1, 0), (2, 1)),
    ((3, 3, 7, 7), (8, 2, 2), (3, 3), (0, 0, 0, 0), (1, 1)),  # windows that skip the last columns
    ((1, 4, 6, 5), (3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((2, 3, 10, 9), (5, 3, 4), (1, 1), (2, 1, 3, 0), (1, 2)),  # stride 1, asymmetric: the adjoint runs as forward
    ((1, 2, 9, 9), (2, 3, 3), (1, 1), (3, 0, 0, 1), (1, 1)),  # padding beyond the reach: the scatter
]


def _out_hw(x_shape, k, stride, pad4, dilation):
    return tuple((x_shape[2 + a] + pad4[2 * a] + pad4[2 * a + 1] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1
                 for a in (0, 1))


@pytest.mark.parametrize(("x_shape", "w_dims", "stride", "pad4", "dilation"), GEOMETRIES)
def test_direct_kernels_equal_their_numpy_twins_and_torch(x_shape, w_dims, stride, pad4, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((w_dims[0], x_shape[1], *w_dims[1:]))
    out_hw = _out_hw(x_shape, w_dims[1:], stride, pad4, dilation)
    y = cpu_direct.forward(x, w, stride, pad4, dilation, out_hw)
    np.testing.assert_allclose(y, cpu_direct.naive_forward(x, w, stride, pad4, dilation, out_hw), rtol=1e-12,
                               atol=1e-12)
    bias = rng.standard_normal(w_dims[0])  # added as each row is written: the bits of a separate add
    np.testing.assert_array_equal(cpu_direct.forward(x, w, stride, pad4, dilation, out_hw, bias),
                                  y + bias[:, None, None])
    xt = torch.nn.functional.pad(torch.tensor(x), (pad4[2], pad4[3], pad4[0], pad4[1]))
    want = torch.nn.functional.conv2d(xt, torch.tensor(w), stride=stride, dilation=dilation).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(cpu_direct.backward_input(g, w, x_shape, stride, pad4, dilation),
                               cpu_direct.naive_backward_input(g, w, x_shape, stride, pad4, dilation),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cpu_direct.backward_weight(g, x, w.shape, stride, pad4, dilation),
                               cpu_direct.naive_backward_weight(g, x, w.shape, stride, pad4, dilation),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("split_small_work", [False, True])
def test_an_image_gives_the_same_bits_alone_as_in_a_batch(split_small_work, monkeypatch):
    """Alone (fewer images than threads) the forward splits one image's output rows between the
    threads; in a batch it splits the images: the same sums in the same order either way."""
    if split_small_work:
        monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)  # these small shapes would otherwise run on one thread
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 14, 13)).astype(np.float32)
    w = rng.standard_normal((9, 3, 5, 5)).astype(np.float32)
    args = ((2, 1), (2, 1, 2, 2), (1, 1))
    out_hw = _out_hw(x.shape, (5, 5), *args)
    batch = cpu_direct.forward(x, w, *args, out_hw)
    g = rng.standard_normal(batch.shape).astype(np.float32)
    dx = cpu_direct.backward_input(g, w, x.shape, *args)
    threads = numba.get_num_threads()
    try:
        for t in {1, threads}:
            numba.set_num_threads(t)
            for i in (0, 3, 4):
                np.testing.assert_array_equal(cpu_direct.forward(x[i:i + 1], w, *args, out_hw)[0], batch[i])
                np.testing.assert_array_equal(cpu_direct.backward_input(g[i:i + 1], w, x[i:i + 1].shape, *args)[0],
                                              dx[i])
    finally:
        numba.set_num_threads(threads)


def test_polyphase_relayout_reads_every_column_of_the_padded_input():
    x = np.arange(2 * 7, dtype=np.float64).reshape(1, 1, 2, 7)
    ph = cpu_direct.polyphase(x, (0, 0, 1, 2), 3, 4)  # padded width 10 -> 3 phases of 4 columns
    padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 4)))  # and 2 zero columns to fill the last phase
    for p in range(3):
        np.testing.assert_array_equal(ph[0, 0, :, p, :], padded[0, 0, :, p::3][:, :4])


@pytest.mark.parametrize("c_out", [1, 3, 8, 9, 17])
@pytest.mark.parametrize(("k", "stride", "dilation"), [((3, 3), (1, 1), (1, 1)), ((5, 2), (1, 1), (2, 3)),
                                                      ((11, 11), (4, 4), (1, 1)), ((3, 3), (2, 1), (1, 2))])
def test_the_block_kernel_gives_the_same_bits_however_the_threads_split_an_image(c_out, k, stride, dilation,
                                                                                  monkeypatch):
    """One image's forward split by channel blocks, by pixel blocks, or not at all (and the same
    image inside a batch): each pixel's taps summed in the same order, so the same bits; every
    remainder of the 8-channel register block; against the float64 NumPy twin."""
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)  # these small shapes would otherwise run on one thread
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 3, 29, 31)).astype(np.float32)
    w = rng.standard_normal((c_out, 3, *k)).astype(np.float32)
    pad4, bias = (2, 1, 3, 0), rng.standard_normal(c_out).astype(np.float32)
    out_hw = _out_hw(x.shape, k, stride, pad4, dilation)
    batch = cpu_direct.forward(x, w, stride, pad4, dilation, out_hw, bias)
    threads = numba.get_num_threads()
    try:
        for t in {1, min(2, numba.config.NUMBA_NUM_THREADS)}:
            numba.set_num_threads(t)  # 2: one image's pixel blocks (<= 8 channels) or channel blocks split
            np.testing.assert_array_equal(cpu_direct.forward(x[1:2], w, stride, pad4, dilation, out_hw, bias)[0],
                                          batch[1])
    finally:
        numba.set_num_threads(threads)
    want = cpu_direct.naive_forward(x.astype(np.float64), w.astype(np.float64), stride, pad4, dilation, out_hw)
    np.testing.assert_allclose(batch, want + bias[:, None, None], rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_block_kernel_reads_and_writes_only_inside_its_buffers():
    """The kernel's vector loads are not bounds-checked: the plan pads the polyphase buffer for the
    last block's reads. Guard values around every buffer stay untouched, and NaN guards past the
    padded input never reach an output."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 9, 7)).astype(np.float32)
    w = rng.standard_normal((9, 2, 3, 3)).astype(np.float32)
    plan = cpu_direct._Plan(x.shape, w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 7))
    guard = 64
    src = np.full(plan.src_size + 2 * guard, np.nan, np.float32)
    buf = np.full(plan.buf_size + 2 * guard, -7, np.float32)
    y = np.full((1, 9, 9, 7), np.nan, np.float32)
    cpu_direct._phases(x[0], *plan.geometry, plan.hq, plan.wq, src[guard:-guard])
    cpu_direct._finished_blocks(src[guard:-guard], plan.offs, plan.wp, 0, plan.n_cb, plan.blocks, plan.wq,
                                np.zeros(1, np.float32), False, *cpu_direct.finish_arrays(None, np.float32),
                                buf[guard:-guard], y[0])
    assert np.isnan(src[:guard]).all() and np.isnan(src[-guard:]).all()
    assert (buf[:guard] == -7).all() and (buf[-guard:] == -7).all()
    want = cpu_direct.naive_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 7))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_one_image_weight_gradient_split_over_output_channels_gives_the_same_bits(monkeypatch):
    """With fewer images than threads the threads take blocks of output channels: each computes whole
    filters, so the bits equal one thread's sum over everything (9 channels: a partial block too)."""
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal((1, 5, 12, 10)), rng.standard_normal((1, 9, 12, 10))
    args = ((9, 5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
    split = cpu_direct.backward_weight(g, x, *args)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        whole = cpu_direct.backward_weight(g, x, *args)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_allclose(split, cpu_direct.naive_backward_weight(g, x, *args), rtol=1e-12, atol=1e-12)


def test_the_weight_gradient_sums_images_in_chunks(monkeypatch):
    """Images go through the weight-gradient kernel a chunk at a time (as many as fit ``CHUNK_BYTES``):
    chunks of 1, 3 and all images give the same sums up to rounding."""
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((7, 3, 11, 9)), rng.standard_normal((7, 6, 11, 9))
    args = ((6, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
    want = cpu_direct.naive_backward_weight(g, x, *args)
    per_image = (3 * 13 * 11 + 8 * 11 * 11) * 8  # about one image's buffers, in bytes
    for chunk in (1, 3, 100):
        monkeypatch.setattr(cpu_direct, "CHUNK_BYTES", chunk * per_image)
        np.testing.assert_allclose(cpu_direct.backward_weight(g, x, *args), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n", "c_out"), [(3, 9), (1, 17), (1, 5)])  # batch; one image by channel / pixel blocks
@pytest.mark.parametrize("finish", ["relu", "relu6", "bn_relu", "bn"])
def test_the_finish_gives_the_bits_of_the_separate_ops_on_every_thread_split(n, c_out, finish, monkeypatch):
    """``finish`` applied as each output row is written equals the convolution then the ops after it
    (+ bias, then the eval batch norm's ``* scale + shift``, then the clip), bit for bit: NaN, -0.0
    and infinities included, on the batch split, one image's channel blocks and its pixel blocks."""
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((n, 3, 13, 15)) * 3).astype(np.float32)
    x[0, 0, 4, 5], x[0, 1, 9, 2], x[-1, 2, 0, 0] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((c_out, 3, 3, 3)).astype(np.float32)
    w[0] = 0.0  # channel 0: only the bias (and +-0.0 where the bias is dropped)
    bias = rng.standard_normal(c_out).astype(np.float32)
    scale, shift = rng.standard_normal(c_out).astype(np.float32), rng.standard_normal(c_out).astype(np.float32)
    low, high = (-np.inf, np.inf) if finish == "bn" else (0.0, 6.0 if finish == "relu6" else np.inf)
    affine = finish.startswith("bn")
    args = ((1, 1), (1, 1, 1, 1), (1, 1), (13, 15))
    for b in (bias, None):
        want = cpu_direct.forward(x, w, *args, b).copy()
        if affine:
            want = want * scale[:, None, None] + shift[:, None, None]
        want = np.where(want < low, np.float32(low), want)
        want = np.where(want > high, np.float32(high), want)
        got = cpu_direct.forward(x, w, *args, b, (scale, shift, low, high) if affine else (None, None, low, high))
        np.testing.assert_array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))
    assert np.isnan(got).any()  # the NaN reached the outputs compared
