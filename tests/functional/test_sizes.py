"""Sizes past what the input or the machine holds: a stride beyond the input is one output (not an
int64 overflow in the kernels), and an array larger than this machine's memory is refused by name
before NumPy is asked for it (``validate.check_array_size``)."""

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.validate import _memory_bytes, check_array_size

X = np.arange(2 * 2 * 7 * 6, dtype=np.float64).reshape(2, 2, 7, 6) / 50
W = np.linspace(-1, 1, 3 * 2 * 3 * 3).reshape(3, 2, 3, 3)
WT = np.linspace(-1, 1, 2 * 3 * 3 * 3).reshape(2, 3, 3, 3)


@pytest.mark.parametrize("stride", [(7, 6), (8, 100), (2**40, 2**63), (10**30, 10**30)])
def test_conv2d_with_a_stride_past_the_input_is_one_window(stride):
    """Output and both gradients equal PyTorch's at the stride that just fits (7, 6)."""
    x, w = mv.tensor(X, requires_grad=True), mv.tensor(W, requires_grad=True)
    y = mv.F.conv2d(x, w, stride=stride, padding=0)
    xt, wt = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=(7, 6))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12)
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad, wt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: mv.F.conv2d(mv.tensor(X), mv.tensor(W), padding=2**40), r"conv2d: the output would have shape \(2, 3, "),
    (lambda: mv.F.conv_transpose2d(mv.tensor(X), mv.tensor(WT), stride=2**40),
     r"conv_transpose2d: the output would have shape \(2, 3, "),
    (lambda: mv.F.conv_transpose2d(mv.tensor(X), mv.tensor(WT), dilation=2**63),
     r"conv_transpose2d: the output would have shape"),
    (lambda: mv.F.interpolate(mv.tensor(X), size=(2**40, 2)), r"interpolate: the output would have shape \(2, 2, "),
    (lambda: mv.F.interpolate(mv.tensor(X), scale_factor=1e12), r"interpolate: the output would have shape"),
    (lambda: mv.F.adaptive_avg_pool2d(mv.tensor(X), (2**40, 2)), r"adaptive_avg_pool2d: the output would have"),
    (lambda: mv.F.max_unpool2d(mv.tensor(X), np.zeros(X.shape, np.int64), 2, stride=2**40),
     r"max_unpool2d: the output would have shape \(2, 2, "),
    (lambda: mv.nn.Linear(2**40, 2**30), r"Linear: the weight would have shape \(1073741824, 1099511627776\)"),
    (lambda: mv.nn.Conv2d(2**30, 2**30, 3), r"Conv2d: the weight would have shape"),
    (lambda: mv.nn.ConvTranspose2d(2**30, 2**30, 3), r"ConvTranspose2d: the weight would have shape"),
])
def test_arrays_larger_than_the_machine_are_refused_by_name(call, match):
    with pytest.raises(ValueError, match=match + r".*GiB\), more than this machine's memory"):
        call()


def test_check_array_size_counts_bytes_not_elements():
    check_array_size((1024, 1024), np.float64, "op")
    limit = _memory_bytes()
    check_array_size((limit // 8,), np.float64, "op")  # exactly the machine's memory still passes
    with pytest.raises(ValueError, match=r"op: the buffer would have shape"):
        check_array_size((limit // 8 + 1,), np.float64, "op", "buffer")
    with pytest.raises(ValueError, match=r"op: the output"):
        check_array_size((limit // 2,), np.float32, "op")
    with pytest.raises(ValueError, match=r"op: the output would have shape \(10+,\) \(inf GiB\)"):
        check_array_size((10**400,), np.float32, "op")  # past a float's range: still the ValueError


def test_max_unpool2d_output_size_must_be_a_shape():
    with pytest.raises(TypeError, match=r"max_unpool2d: output_size must be \(H, W\) or a full \(N, C, H, W\) "
                                        r"shape, got 4"):
        mv.F.max_unpool2d(mv.tensor(X), np.zeros(X.shape, np.int64), 2, output_size=4)


@pytest.mark.parametrize("size", [7, 11, 2**62])
def test_local_response_norm_window_wider_than_the_channels(size):
    """Every window covers all 2 channels (zero padding beyond): d = k + alpha/size * sum_c x_c^2,
    computed directly; a window of 2**62 channels runs in no time (its reach is capped at C - 1)."""
    alpha, beta, k = 0.7, 0.75, 1.5
    y = mv.F.local_response_norm(mv.tensor(X), size, alpha, beta, k).numpy()
    denom = k + alpha / size * (X * X).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, X * denom ** -beta, rtol=1e-13)
    if size < 100:
        ref = torch.nn.functional.local_response_norm(torch.tensor(X), size, alpha, beta, k)
        np.testing.assert_allclose(y, ref.numpy(), rtol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda m, x: mv.vis.smoothgrad(m, x, 0, n=10**30), r"smoothgrad: n must be at most 9223372036854775807"),
    (lambda m, x: mv.vis.integrated_gradients(m, x, 0, steps=2**63), r"integrated_gradients: steps must be at most"),
    (lambda m, x: mv.vis.tsne(np.random.default_rng(0).random((12, 4)), perplexity=3, n_iter=10**30),
     r"tsne: n_iter must be at most 9223372036854775807"),
    (lambda m, x: mv.vis.class_model(m, 0, steps=10**30), r"class_model: steps must be at most"),
    # 1.4**(10**30) overflowed a float; the octaves are now checked before they are listed
    (lambda m, x: mv.vis.deepdream(m, np.zeros((28, 28, 1), np.uint8), "features.3", octaves=10**30, min_size=1),
     r"deepdream: octaves=10+ with octave_scale=1.4 shrinks the 28x28 image below one pixel"),
])
def test_counts_no_loop_can_run_are_refused_by_name(call, match):
    """A count past sys.maxsize hung (smoothgrad, t-SNE) or raised OverflowError (a progress bar's len)."""
    with pytest.raises(ValueError, match=match):
        call(mv.models.load("fashion_cnn"), np.zeros((1, 28, 28), np.float32))


EMPTY_CONVS = [  # (x shape, w shape, groups, padding, stride): one per path of conv_plan.choose
    ((0, 32, 14, 14), (32, 32, 3, 3), 1, 1, 1),  # Winograd
    ((0, 3, 14, 14), (8, 3, 5, 5), 1, 1, 1),  # im2col
    ((0, 8, 14, 14), (8, 1, 3, 3), 8, 1, 1),  # depthwise
    ((0, 16, 14, 14), (1, 16, 3, 3), 1, 1, 1),  # direct
    ((0, 16, 14, 14), (8, 16, 1, 1), 1, 0, 1),  # pointwise
    ((0, 3, 15, 15), (8, 3, 3, 3), 1, 1, 2),  # strided
]


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "winograd", "direct", "reference"])
@pytest.mark.parametrize(("x_shape", "w_shape", "groups", "padding", "stride"), EMPTY_CONVS)
def test_an_empty_batch_goes_through_every_convolution_path(x_shape, w_shape, groups, padding, stride, algorithm):
    """No images: an empty output, an empty input gradient and a zero weight gradient, like PyTorch's
    (the Winograd path had failed on taking the largest of no tiles)."""
    x = mv.tensor(np.zeros(x_shape, np.float32), requires_grad=True)
    w = mv.tensor(np.ones(w_shape, np.float32), requires_grad=True)
    with mv.conv_algorithm(algorithm):
        y = mv.F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
        y.backward(np.ones(y.shape, np.float32))
    yt = torch.nn.functional.conv2d(torch.zeros(x_shape), torch.ones(w_shape), stride=stride, padding=padding,
                                    groups=groups)
    assert y.shape == tuple(yt.shape) and x.grad.shape == x_shape
    np.testing.assert_array_equal(w.grad, np.zeros(w_shape, np.float32))


def test_an_empty_batch_goes_through_the_pools_and_the_models():
    """The unpooling kernels flatten (P, H, W) planes with the plane size spelled out (``reshape(0, -1)``
    is undefined), and a model takes no images as PyTorch does."""
    x = mv.tensor(np.zeros((0, 4, 8, 8), np.float32), requires_grad=True)
    for op in (lambda: mv.F.max_pool2d(x, 2), lambda: mv.F.max_pool2d(x, 3, 2, 1), lambda: mv.F.relu_max_pool2d(x),
               lambda: mv.F.max_unpool2d(*mv.F.max_pool2d(x, 2, return_switches=True), 2)):
        y = op()
        y.backward(np.ones(y.shape, np.float32))
        assert x.grad.shape == x.shape
        x.grad = None
    with mv.no_grad():
        assert mv.models.load("fashion_cnn")(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)
