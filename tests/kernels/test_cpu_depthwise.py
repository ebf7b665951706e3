"""The depthwise kernels (``cpu_depthwise``) against the naive convolution and its gradients (small shapes:
also fast under NUMBA_DISABLE_JIT=1), both layouts, both thread paths."""

import numpy as np
import pytest

from minivis.kernels import cpu_conv, cpu_depthwise, cpu_norm, cpu_threads


def _out_hw(x_shape, kh, kw, stride, pad4, dilation):
    return (cpu_conv.output_size(x_shape[2], kh, stride[0], pad4[0], pad4[1], dilation[0]),
            cpu_conv.output_size(x_shape[3], kw, stride[1], pad4[2], pad4[3], dilation[1]))


# (x shape, channel multiplier, kh, kw, stride, pad4, dilation)
DEPTHWISE = [
    ((2, 3, 6, 5), 1, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 2, 7, 7), 2, 3, 3, (2, 2), (1, 0, 0, 1), (1, 1)),
    ((1, 3, 8, 7), 3, 2, 3, (1, 2), (2, 1, 3, 0), (2, 1)),
    ((1, 2, 5, 5), 1, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 3, 8, 7), 2, 3, 2, (1, 1), (2, 0, 0, 3), (2, 3)),  # stride 1, asymmetric, dilated: the wide grid
    ((2, 2, 6, 9), 1, 1, 4, (1, 1), (0, 1, 5, 0), (1, 1)),  # padding wider than the kernel on one side
    ((1, 2, 7, 6), 1, 3, 3, (2, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 2, 11, 10), 1, 5, 5, (2, 2), (1, 2, 1, 2), (1, 1)),  # strided: 4 polyphase components, 9/6/6/4 taps
    ((1, 2, 13, 12), 2, 3, 3, (3, 2), (1, 1, 2, 0), (2, 2)),  # a component that no tap reads (dw = sw = 2)
    ((2, 2, 9, 9), 1, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1)),  # 1x1 stride 2: one component of four
    ((2, 3, 10, 12), 1, 3, 3, (2, 2), (0, 1, 0, 1), (1, 1)),  # TF SAME at stride 2 (EfficientNet-Lite0)
    ((1, 2, 11, 9), 1, 2, 2, (3, 3), (0, 4, 3, 0), (1, 1)),  # stride > kernel: pixels no tap reads, and
    # output rows that read only the bottom padding
    ((1, 2, 9, 10), 2, 5, 3, (2, 3), (3, 1, 0, 2), (1, 2)),  # unequal strides, dilation, multiplier 2
    ((2, 19, 7, 6), 1, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),  # 19 channels: the channels-last transposes
    # take 8 channels per pass, then a remainder of 3
    ((1, 16, 9, 9), 1, 5, 5, (2, 2), (1, 2, 1, 2), (1, 1)),  # 16 channels: two whole passes, stride 2
]


@pytest.mark.parametrize("layout", ["planar", "channels_last"])
@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DEPTHWISE)
def test_depthwise_kernels_match_naive_conv(case, dtype, twin, layout, rng, monkeypatch):
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 1 << 60 if twin == "serial" else 0)
    monkeypatch.setattr(cpu_depthwise, "CHANNELS_LAST_MAX_PIXELS", 0 if layout == "planar" else 1 << 30)
    x_shape, mult, kh, kw, stride, pad4, dilation = case
    c_in = x_shape[1]
    w_shape = (c_in * mult, 1, kh, kw)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}

    out_hw = _out_hw(x_shape, kh, kw, stride, pad4, dilation)
    out = cpu_depthwise.depthwise_forward(x, w, stride, pad4, dilation, out_hw)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, stride, pad4, dilation, c_in), **tol)
    # the bias, added as each plane is written out, rounds as a separate add after the kernel would
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    with_bias = cpu_depthwise.depthwise_forward(x, w, stride, pad4, dilation, out_hw, bias)
    np.testing.assert_array_equal(with_bias, out + bias[:, None, None])
    # an eval batch norm and clip, applied as each plane is written out: bit for bit the separate pass,
    # with and without the bias, for ReLU6 and ReLU bounds
    scale, shift = rng.uniform(0.5, 2.0, w_shape[0]).astype(dtype), rng.standard_normal(w_shape[0]).astype(dtype)
    for b, before in ((None, out), (bias, with_bias)):
        for high in (6.0, np.inf):
            fused = cpu_depthwise.depthwise_forward(x, w, stride, pad4, dilation, out_hw, b, (scale, shift, 0.0, high))
            want = cpu_norm.affine_clip(before, scale, shift, dtype(0), dtype(high))[0]
            np.testing.assert_array_equal(fused, want)

    g = rng.standard_normal(out.shape).astype(dtype)
    dx = cpu_depthwise.depthwise_backward_input(g, w, x_shape, stride, pad4, dilation)
    assert dx.dtype == dtype
    np.testing.assert_allclose(
        dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, c_in), **tol)

    dw = cpu_depthwise.depthwise_backward_weight(g, x, w_shape, stride, pad4, dilation)
    assert dw.dtype == dtype and dw.shape == w_shape
    np.testing.assert_allclose(
        dw, cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation, c_in), **tol)


@pytest.mark.parametrize("layout", ["planar", "channels_last"])
@pytest.mark.parametrize("threaded", [False, True])
def test_strided_depthwise_input_gradient_is_batch_invariant(threaded, layout, rng, monkeypatch):
    """The strided input gradient of one image (polyphase, or channels last) does not depend on its
    batch (bit for bit), with the threads splitting the batch or not; an empty batch gives an empty
    gradient."""
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 0 if threaded else 1 << 60)
    monkeypatch.setattr(cpu_depthwise, "CHANNELS_LAST_MAX_PIXELS", 0 if layout == "planar" else 1 << 30)
    w = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    g = rng.standard_normal((5, 6, 8, 8)).astype(np.float32)
    geometry = ((2, 2), (1, 2, 1, 2), (1, 1))
    batch = cpu_depthwise.depthwise_backward_input(g, w, (5, 6, 16, 16), *geometry)
    for i in range(5):
        alone = cpu_depthwise.depthwise_backward_input(g[i:i + 1], w, (1, 6, 16, 16), *geometry)
        np.testing.assert_array_equal(alone[0], batch[i])
    empty = cpu_depthwise.depthwise_backward_input(g[:0], w, (0, 6, 16, 16), *geometry)
    assert empty.shape == (0, 6, 16, 16)
    out = cpu_depthwise.depthwise_forward(g, w, (1, 1), (2, 2, 2, 2), (1, 1), (8, 8))
    for i in range(5):
        np.testing.assert_array_equal(cpu_depthwise.depthwise_forward(g[i:i + 1], w, (1, 1), (2, 2, 2, 2), (1, 1),
                                                                 (8, 8))[0], out[i])
