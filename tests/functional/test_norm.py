"""Normalisation ops: finite differences, PyTorch parity (float64 and float32), running statistics,
conditional instance norm against its definition, bad input."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients

TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def _upstream_rng():
    return np.random.default_rng(99)  # upstream gradients independent of the data


def _run_ours(fn, arrays, upstream_rng):
    tensors = [mv.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    upstream = upstream_rng.standard_normal(out.shape).astype(out.dtype)
    out.backward(upstream)
    return out.numpy(), [t.grad for t in tensors], upstream


def _run_torch(fn, arrays, upstream):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.tensor(upstream))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def _assert_parity(ours, theirs, dtype):
    (out, grads, _), (out_t, grads_t) = ours, theirs
    assert out.dtype == dtype
    np.testing.assert_allclose(out, out_t, **TOL[dtype])
    for g, gt in zip(grads, grads_t, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, gt, **TOL[dtype])


# ----------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_finite_differences(rng, shape, affine):
    c = shape[1]
    arrays = [rng.standard_normal(shape) * 2 + 1]
    if affine:
        arrays += [rng.uniform(0.5, 2.0, c), rng.standard_normal(c)]
    check_gradients(lambda x, *wb: mv.F.batch_norm(x, None, None, *wb, training=True), arrays,
                    rng=_upstream_rng())


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
def test_batch_norm_eval_finite_differences(rng, shape):
    c = shape[1]
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 2.0, c), rng.standard_normal(c)]
    check_gradients(lambda x, w, b: mv.F.batch_norm(x, mean, var, w, b, training=False), arrays,
                    rng=_upstream_rng())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, momentum", [((5, 3), 0.1), ((8, 1), 0.5), ((4, 3, 5, 6), 0.1),
                                             ((1, 2, 3, 3), 0.3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(rng, dtype, shape, momentum, training, affine):
    c, eps = shape[1], 1e-5
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    params = [rng.uniform(0.5, 2.0, c).astype(dtype), rng.standard_normal(c).astype(dtype)] if affine else []
    mean0, var0 = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)
    ours_mean, ours_var = mean0.copy(), var0.copy()
    torch_mean, torch_var = torch.tensor(mean0), torch.tensor(var0)

    ours = _run_ours(lambda x, *wb: mv.F.batch_norm(x, ours_mean, ours_var, *wb, training=training,
                                                    momentum=momentum, eps=eps),
                     [x, *params], rng)
    theirs = _run_torch(lambda x, *wb: torch.nn.functional.batch_norm(
        x, torch_mean, torch_var, *wb, training=training, momentum=momentum, eps=eps), [x, *params], ours[2])
    _assert_parity(ours, theirs, dtype)
    # The running statistics were updated in place exactly as PyTorch does (or left alone in eval).
    np.testing.assert_allclose(ours_mean, torch_mean.numpy(), **TOL[dtype])
    np.testing.assert_allclose(ours_var, torch_var.numpy(), **TOL[dtype])
    if not training:
        np.testing.assert_array_equal(ours_mean, mean0)
        np.testing.assert_array_equal(ours_var, var0)


# ----------------------------------------------------------------------------- batch norm + ReLU, fused
def _bn_case(rng, dtype, shape=(2, 4, 5, 6)):
    c = shape[1]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x.reshape(-1)[:2] = [0.0, -0.0]
    stats = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)
    wb = [rng.uniform(0.5, 2.0, c).astype(dtype), rng.standard_normal(c).astype(dtype)]
    return x, stats, wb


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_value", [6.0, np.inf])
@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
@pytest.mark.parametrize("lean", [False, True])
def test_batch_norm_relu_is_the_two_ops_bit_for_bit(rng, dtype, max_value, rule, lean):
    x, (mean, var), wb = _bn_case(rng, dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for fused in (True, False):
        xt = mv.tensor(x, requires_grad=True)
        with mv.lean_graph() if lean else nullcontext():
            if fused:
                y = mv.F.batch_norm_relu(xt, mean, var, *wb, eps=1e-3, max_value=max_value)
                assert y.grad_fn.op == "batch_norm_relu"
            else:
                z = mv.F.batch_norm(xt, mean, var, *wb, training=False, eps=1e-3)
                y = mv.F.relu(z) if max_value == np.inf else mv.F.relu6(z)
        with mv.backward_rule(rule):
            y.backward(g)
        results.append((y.numpy(), xt.grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_relu6_matches_torch(rng, dtype):
    x, (mean, var), wb = _bn_case(rng, dtype, (3, 5, 4, 4))
    ours = _run_ours(lambda x: mv.F.batch_norm_relu(x, mean, var, *wb, eps=1e-3, max_value=6), [x], rng)
    theirs = _run_torch(lambda x: torch.nn.functional.relu6(torch.nn.functional.batch_norm(
        x, torch.tensor(mean), torch.tensor(var), *map(torch.tensor, wb), eps=1e-3)), [x], ours[2])
    _assert_parity(ours, theirs, dtype)


def test_batch_norm_relu_finite_differences(rng):
    x, (mean, var), wb = _bn_case(rng, np.float64, (2, 3, 4, 4))
    x = np.where(np.abs(x) < 0.1, 0.5, x)  # away from the kinks, where finite differences are defined
    check_gradients(lambda t: mv.F.batch_norm_relu(t, mean, var, *wb, max_value=np.inf), [x], rng=_upstream_rng())


def test_batch_norm_relu_falls_back_to_the_two_ops_for_trainable_parameters_and_rescale(rng):
    x, (mean, var), wb = _bn_case(rng, np.float64)
    w, b = mv.tensor(wb[0], requires_grad=True), mv.tensor(wb[1], requires_grad=True)
    y = mv.F.batch_norm_relu(mv.tensor(x, requires_grad=True), mean, var, w, b, max_value=6)
    assert y.grad_fn.op == "relu6"  # a relu6 node over a batch_norm node: the parameters get gradients
    y.sum().backward()
    assert w.grad is not None and b.grad is not None
    with mv.no_grad():  # no graph, nothing to differentiate: fused
        np.testing.assert_array_equal(mv.F.batch_norm_relu(mv.tensor(x), mean, var, w, b, max_value=6).numpy(),
                                      y.numpy())
    with mv.backward_rule("rescale"):
        assert mv.F.batch_norm_relu(mv.tensor(x, requires_grad=True), mean, var, *wb).grad_fn.op == "relu"
    y = mv.F.batch_norm_relu(mv.tensor(x, requires_grad=True), mean, var, *wb)
    with mv.backward_rule("rescale"), pytest.raises(RuntimeError, match="batch_norm_relu: the rescale rule needs"):
        y.backward(np.ones(x.shape))


def test_batch_norm_relu_bad_input(rng):
    x, (mean, var), wb = _bn_case(rng, np.float64)
    with pytest.raises(ValueError, match=r"batch_norm_relu: max_value must be 6 \(relu6\) or inf \(relu\), got 3"):
        mv.F.batch_norm_relu(x, mean, var, max_value=3)
    with pytest.raises(TypeError, match="batch_norm_relu: max_value must be a number"):
        mv.F.batch_norm_relu(x, mean, var, max_value="6")
    with pytest.raises(ValueError, match=r"batch_norm_relu: input must be"):
        mv.F.batch_norm_relu(x[0], mean, var)
    with pytest.raises(ValueError, match="batch_norm_relu: running_mean must have shape"):
        mv.F.batch_norm_relu(x, mean[:2], var)
    with pytest.raises(ValueError, match="batch_norm_relu: running_mean and running_var are both required"):
        mv.F.batch_norm_relu(x, None, var)
    with pytest.raises(ValueError, match="batch_norm_relu: eps must be"):
        mv.F.batch_norm_relu(x, mean, var, eps=-1.0)


# ----------------------------------------------------------------------------- conv + batch norm + ReLU, for inference
# (x shape, weight shape, stride, padding, algorithm): each path conv2d_forward can take
CONV_BN_CASES = [
    ((2, 6, 20, 20), (6, 1, 3, 3), 1, 1, "auto"),  # depthwise, planes of 400 px: the planar kernels
    ((2, 6, 21, 21), (6, 1, 5, 5), 2, "same", "auto"),  # depthwise stride 2 (TF SAME), 11 px: channels last
    ((2, 4, 9, 9), (8, 1, 3, 3), 1, 1, "auto"),  # depthwise, two output channels per input channel
    ((2, 3, 12, 12), (5, 3, 3, 3), 2, 1, "im2col"),
    ((2, 4, 10, 10), (5, 4, 3, 3), 1, 1, "winograd"),
    ((2, 3, 10, 10), (1, 3, 5, 5), 1, 2, "direct"),
    ((2, 4, 7, 7), (6, 4, 1, 1), 1, 0, "auto"),  # a 1x1 convolution: x is its own cols matrix
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_value", [6.0, np.inf, None])  # None: conv2d_bn, no rectifier
@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("case", CONV_BN_CASES)
def test_conv2d_bn_relu_is_the_three_ops_bit_for_bit(rng, dtype, max_value, conv_bias, case):
    x_shape, w_shape, stride, padding, algorithm = case
    x = (2 * rng.standard_normal(x_shape)).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if conv_bias else None
    _, (mean, var), wb = _bn_case(rng, dtype, (1, w_shape[0], 2, 1))
    groups = x_shape[1] if w_shape[1] == 1 and x_shape[1] > 1 else 1
    x.reshape(-1)[:3] = [np.nan, 0.0, -0.0]
    stats = dict(running_mean=mean, running_var=var, bn_weight=wb[0], bn_bias=wb[1], eps=1e-3)
    with mv.F.conv_algorithm(algorithm), mv.no_grad():
        y = mv.F.conv2d(x, w, b, stride, padding, groups=groups)
        if max_value is None:
            fused = mv.F.conv2d_bn(x, w, b, stride, padding, groups=groups, **stats)
            apart = mv.F.batch_norm(y, mean, var, *wb, training=False, eps=1e-3)
        else:
            fused = mv.F.conv2d_bn_relu(x, w, b, stride, padding, groups=groups, **stats, max_value=max_value)
            apart = mv.F.batch_norm_relu(y, mean, var, *wb, eps=1e-3, max_value=max_value)
    assert fused.dtype == dtype and fused.grad_fn is None
    np.testing.assert_array_equal(fused.numpy(), apart.numpy())
    if w_shape[2:] != (1, 1):  # batch invariance (a 1x1 convolution of one image runs on BLAS's threads)
        with mv.F.conv_algorithm(algorithm), mv.no_grad():
            op = mv.F.conv2d_bn if max_value is None else mv.F.conv2d_bn_relu
            extra = {} if max_value is None else {"max_value": max_value}
            alone = op(x[1:], w, b, stride, padding, groups=groups, **stats, **extra)
        np.testing.assert_array_equal(alone.numpy()[0], fused.numpy()[1])


def test_conv2d_bn_relu_records_the_separate_ops_where_a_graph_is_needed(rng):
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((4, 1, 3, 3))
    _, (mean, var), wb = _bn_case(rng, np.float64, (1, 4, 2, 1))
    kwargs = dict(groups=4, running_mean=mean, running_var=var, bn_weight=wb[0], bn_bias=wb[1], max_value=6)
    xt = mv.tensor(x, requires_grad=True)
    y = mv.F.conv2d_bn_relu(xt, w, None, 1, 1, **kwargs)
    assert y.grad_fn.op == "batch_norm_relu"  # over a conv2d node: the gradient of the three ops
    g = rng.standard_normal(y.shape)
    y.backward(g)
    xt2 = mv.tensor(x, requires_grad=True)
    mv.F.batch_norm_relu(mv.F.conv2d(xt2, w, None, 1, 1, groups=4), mean, var, *wb, max_value=6).backward(g)
    np.testing.assert_array_equal(xt.grad, xt2.grad)
    wt = mv.tensor(w, requires_grad=True)  # a trainable weight records the graph too
    assert mv.F.conv2d_bn_relu(x, wt, None, 1, 1, **kwargs).grad_fn.op == "batch_norm_relu"
    with mv.no_grad():  # nothing to differentiate: one op, no graph, the same values
        z = mv.F.conv2d_bn_relu(xt, wt, None, 1, 1, **kwargs)
    assert z.grad_fn is None and not z.requires_grad
    np.testing.assert_array_equal(z.numpy(), y.numpy())
    del kwargs["max_value"]  # conv2d_bn: the graph of conv2d and batch_norm
    assert mv.F.conv2d_bn(xt, w, None, 1, 1, **kwargs).grad_fn.op == "batch_norm"
    check_gradients(lambda t: mv.F.conv2d_bn_relu(t, w, None, 1, 1, **{**kwargs, "max_value": np.inf}),
                    [np.where(np.abs(x) < 0.1, 0.5, x)], rng=_upstream_rng())


def test_conv2d_bn_relu_bad_input(rng):
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    stats = dict(running_mean=np.zeros(3), running_var=np.ones(3))
    with mv.no_grad():
        with pytest.raises(ValueError, match=r"conv2d_bn_relu: running_mean must have shape \(3,\)"):
            mv.F.conv2d_bn_relu(x, w, running_mean=np.zeros(2), running_var=np.ones(3))
        with pytest.raises(ValueError, match="conv2d_bn_relu: running_mean and running_var are both required"):
            mv.F.conv2d_bn_relu(x, w, running_mean=None, running_var=np.ones(3))
        with pytest.raises(ValueError, match=r"conv2d_bn_relu: max_value must be 6 \(relu6\) or inf"):
            mv.F.conv2d_bn_relu(x, w, **stats, max_value=5)
        with pytest.raises(ValueError, match=r"conv2d_bn_relu: bn_weight must have shape \(3,\)"):
            mv.F.conv2d_bn_relu(x, w, **stats, bn_weight=np.ones(2))
        with pytest.raises(TypeError, match="conv2d_bn_relu: bn_bias dtype float32 differs from input dtype float64"):
            mv.F.conv2d_bn_relu(x, w, **stats, bn_bias=np.ones(3, np.float32))
        with pytest.raises(ValueError, match="conv2d_bn_relu: eps must be"):
            mv.F.conv2d_bn_relu(x, w, **stats, eps=-1.0)
        with pytest.raises(ValueError, match=r"conv2d_bn_relu: output channels C_out \(3\) must be divisible by"):
            mv.F.conv2d_bn_relu(x, w, **stats, groups=2)
        with pytest.raises(TypeError, match="conv2d_bn_relu: running_var must be an array"):
            mv.F.conv2d_bn_relu(x, w, running_mean=np.zeros(3), running_var="ones")


def test_batch_norm_running_stats_use_unbiased_variance(rng):
    x = rng.standard_normal((6, 2, 3, 4))
    mean, var = np.zeros(2), np.ones(2)
    y = mv.F.batch_norm(x, mean, var, training=True, momentum=0.25)
    batch_mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(mean, 0.25 * batch_mean, rtol=1e-14)
    np.testing.assert_allclose(var, 0.75 + 0.25 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-14)
    # ... while the output is normalised with the biased variance.
    expected = (x - batch_mean[:, None, None]) / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)[:, None, None]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)


def test_batch_norm_train_without_running_stats_matches_torch(rng):
    x = rng.standard_normal((4, 3, 2, 2))
    ours = _run_ours(lambda x: mv.F.batch_norm(x, None, None, training=True), [x], rng)
    theirs = _run_torch(lambda x: torch.nn.functional.batch_norm(x, None, None, training=True), [x], ours[2])
    _assert_parity(ours, theirs, np.float64)


def test_batch_norm_eval_backward_uses_forward_time_statistics(rng):
    x = mv.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    mean, var = np.zeros(2), np.full(2, 4.0)
    y = mv.F.batch_norm(x, mean, var, training=False, eps=0.0)
    var[:] = 100.0  # e.g. a later training step updating the buffers before this backward runs
    y.backward(np.ones((3, 2)))
    np.testing.assert_allclose(x.grad, np.full((3, 2), 0.5))


def test_batch_norm_bad_input(rng):
    x = rng.standard_normal((4, 3))
    mean, var = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm: input must be 2-D \(N, F\) or 4-D \(N, C, H, W\), "
                                         r"got shape \(4, 3, 2\)"):
        mv.F.batch_norm(rng.standard_normal((4, 3, 2)), mean, var)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\) for an input with "
                                         r"3 channels \(4, 3\), got shape \(4,\)"):
        mv.F.batch_norm(x, np.zeros(4), var)
    with pytest.raises(ValueError, match=r"batch_norm: running_var must have shape \(5,\) .* got shape \(3,\)"):
        mv.F.batch_norm(rng.standard_normal((2, 5, 2, 2)), np.zeros(5), var)
    with pytest.raises(TypeError, match="batch_norm: running_var must be a float array .* got dtype int64"):
        mv.F.batch_norm(x, mean, np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match=r"batch_norm: running_mean must be an array of shape \(3,\), got list"):
        mv.F.batch_norm(x, [0.0, 0.0, 0.0], var)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are both required when "
                                         "training=False"):
        mv.F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\) to match the input "
                                         r"\(4, 3\), got shape \(2,\)"):
        mv.F.batch_norm(x, mean, var, weight=np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm: bias must have shape \(3,\)"):
        mv.F.batch_norm(x, mean, var, bias=np.ones((3, 1)))
    with pytest.raises(TypeError, match="batch_norm: weight dtype float32 differs from input dtype float64"):
        mv.F.batch_norm(x, mean, var, weight=np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be in \[0.0, 1.0\], got 1.5"):
        mv.F.batch_norm(x, mean, var, training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than 1 value per channel .* "
                                         r"got input shape \(1, 3\)"):
        mv.F.batch_norm(x[:1], mean, var, training=True)
    with pytest.raises(TypeError, match="batch_norm: input must be a Tensor or an array, got list"):
        mv.F.batch_norm([[1.0, 2.0, 3.0]], mean, var)


# ----------------------------------------------------------------------------- instance norm
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_finite_differences(rng, affine):
    arrays = [rng.standard_normal((2, 3, 3, 4)) * 2 - 1]
    if affine:
        arrays += [rng.uniform(0.5, 2.0, 3), rng.standard_normal(3)]
    check_gradients(lambda x, *wb: mv.F.instance_norm(x, *wb), arrays, rng=_upstream_rng())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 2, 1), (2, 3, 4, 5), (3, 2, 7, 6)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_instance_norm_matches_torch(rng, dtype, shape, affine, eps):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    params = [rng.uniform(0.5, 2.0, c).astype(dtype), rng.standard_normal(c).astype(dtype)] if affine else []
    ours = _run_ours(lambda x, *wb: mv.F.instance_norm(x, *wb, eps=eps), [x, *params], rng)
    theirs = _run_torch(lambda x, *wb: torch.nn.functional.instance_norm(
        x, None, None, *wb, eps=eps), [x, *params], ours[2])
    _assert_parity(ours, theirs, dtype)


def test_instance_norm_bad_input(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"instance_norm: input must be 4-D \(N, C, H, W\), got shape \(2, 3\)"):
        mv.F.instance_norm(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match=r"instance_norm: weight must have shape \(3,\) .* got shape \(4,\)"):
        mv.F.instance_norm(x, np.ones(4))
    with pytest.raises(ValueError, match=r"instance_norm: bias must have shape \(3,\) .* got shape \(1,\)"):
        mv.F.instance_norm(x, np.ones(3), np.ones(1))
    with pytest.raises(ValueError, match=r"instance_norm: needs more than 1 spatial element .* \(2, 3, 1, 1\)"):
        mv.F.instance_norm(x[:, :, :1, :1])
    with pytest.raises(ValueError, match=r"instance_norm: eps must be >= 0.0, got -1"):
        mv.F.instance_norm(x, eps=-1)


# ----------------------------------------------------------------------------- conditional instance norm
def _torch_cin(x, weight, bias, style, eps=1e-5):
    """The definition (Dumoulin et al. 2017): instance norm, then each image's row of the style tables."""
    index = torch.as_tensor(np.broadcast_to(style, (x.shape[0],)).copy())
    xhat = torch.nn.functional.instance_norm(x, eps=eps)
    return xhat * weight[index][:, :, None, None] + bias[index][:, :, None, None]


@pytest.mark.parametrize("style", [2, np.array([0, 2, 2]), np.array([1, 1, 1])])
def test_conditional_instance_norm_finite_differences(rng, style):
    arrays = [rng.standard_normal((3, 2, 3, 3)), rng.uniform(0.5, 2.0, (4, 2)), rng.standard_normal((4, 2))]
    check_gradients(lambda x, w, b: mv.F.conditional_instance_norm(x, style, w, b), arrays, rng=_upstream_rng())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, styles, style", [((1, 3, 4, 4), 1, 0), ((2, 3, 5, 4), 5, 3),
                                                  ((4, 2, 3, 3), 3, [2, 0, 2, 1]), ((3, 4, 6, 5), 2, [1, 1, 0])])
def test_conditional_instance_norm_matches_torch(rng, dtype, shape, styles, style):
    c = shape[1]
    arrays = [(rng.standard_normal(shape) * 2 + 1).astype(dtype), rng.uniform(0.5, 2.0, (styles, c)).astype(dtype),
              rng.standard_normal((styles, c)).astype(dtype)]
    ours = _run_ours(lambda x, w, b: mv.F.conditional_instance_norm(x, style, w, b), arrays, rng)
    theirs = _run_torch(lambda x, w, b: _torch_cin(x, w, b, style), arrays, ours[2])
    _assert_parity(ours, theirs, dtype)


def test_conditional_instance_norm_with_one_style_is_instance_norm(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    weight, bias = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    np.testing.assert_allclose(mv.F.conditional_instance_norm(x, 4, weight, bias).numpy(),
                               mv.F.instance_norm(x, weight[4], bias[4]).numpy(), rtol=1e-14)
    # Styles not chosen by any image get zero gradient.
    w = mv.tensor(weight, requires_grad=True)
    mv.F.conditional_instance_norm(x, [4, 1], w, bias).backward(np.ones(x.shape))
    np.testing.assert_array_equal(w.grad[[0, 2, 3]], 0.0)


def test_conditional_instance_norm_bad_input(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    w, b = np.ones((4, 3)), np.zeros((4, 3))
    cin = mv.F.conditional_instance_norm
    with pytest.raises(ValueError, match=r"conditional_instance_norm: input must be 4-D \(N, C, H, W\)"):
        cin(x[0], 0, w, b)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: weight must be 2-D \(styles, 3\) for an "
                                         r"input with 3 channels, got shape \(3,\)"):
        cin(x, 0, np.ones(3), b)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: weight must be 2-D \(styles, 3\) .* "
                                         r"got shape \(4, 5\)"):
        cin(x, 0, np.ones((4, 5)), b)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: bias must have the shape of weight "
                                         r"\(4, 3\) .* got shape \(3, 3\)"):
        cin(x, 0, w, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"conditional_instance_norm: style indices must be in \[0, 4\) .* "
                                         r"got 4"):
        cin(x, 4, w, b)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: style indices must be in \[0, 4\) .* "
                                         r"got -1"):
        cin(x, np.array([0, -1]), w, b)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: style must be an int or one index per "
                                         r"image, shape \(2,\), got shape \(3,\)"):
        cin(x, [0, 1, 2], w, b)
    with pytest.raises(TypeError, match="conditional_instance_norm: style must be .* got dtype float64"):
        cin(x, 1.0, w, b)
    with pytest.raises(TypeError, match="conditional_instance_norm: style must be .* got a Tensor"):
        cin(x, mv.tensor([0.0, 1.0]), w, b)
    with pytest.raises(TypeError, match="conditional_instance_norm: bias dtype float32 differs from input "
                                        "dtype float64"):
        cin(x, 0, w, b.astype(np.float32))


# ----------------------------------------------------------------------------- local response norm
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_local_response_norm_finite_differences(rng, size):
    # A large alpha makes the normalising term matter (AlexNet's 1e-4 would barely test it).
    check_gradients(lambda x: mv.F.local_response_norm(x, size, alpha=0.8, beta=0.75, k=1.5),
                    [rng.standard_normal((2, 5, 3, 3))], rng=_upstream_rng())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 1, 3, 3), (3, 8, 2, 2)])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("alpha, beta, k", [(1e-4, 0.75, 1.0), (0.5, 1.5, 2.0)])
def test_local_response_norm_matches_torch(rng, dtype, shape, size, alpha, beta, k):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    ours = _run_ours(lambda x: mv.F.local_response_norm(x, size, alpha, beta, k), [x], rng)
    theirs = _run_torch(lambda x: torch.nn.functional.local_response_norm(x, size, alpha, beta, k), [x], ours[2])
    _assert_parity(ours, theirs, dtype)


def test_local_response_norm_window_by_hand():
    # One pixel, channels [1, 2, 3], size 2: window of c is channels c-1..c, zero-padded below.
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = mv.F.local_response_norm(x, 2, alpha=2.0, beta=1.0, k=1.0).numpy().ravel()
    np.testing.assert_allclose(y, [1 / (1 + 1), 2 / (1 + 1 + 4), 3 / (1 + 4 + 9)], rtol=1e-15)


def test_local_response_norm_bad_input(rng):
    x = rng.standard_normal((1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"local_response_norm: input must be 4-D \(N, C, H, W\), "
                                         r"got shape \(3, 2, 2\)"):
        mv.F.local_response_norm(x[0], 3)
    with pytest.raises(ValueError, match="local_response_norm: size must be >= 1, got 0"):
        mv.F.local_response_norm(x, 0)
    with pytest.raises(TypeError, match="local_response_norm: size must be an int, got float"):
        mv.F.local_response_norm(x, 2.5)
    with pytest.raises(TypeError, match="local_response_norm: beta must be a number, got str"):
        mv.F.local_response_norm(x, 3, beta="0.75")


EVAL_BATCH_NORMS = {
    "batch_norm": lambda x, var, eps: mv.F.batch_norm(x, np.zeros(3), var, training=False, eps=eps),
    "batch_norm_relu": lambda x, var, eps: mv.F.batch_norm_relu(x, np.zeros(3), var, eps=eps),
    "conv2d_bn_relu": lambda x, var, eps: mv.F.conv2d_bn_relu(x, np.ones((3, 3, 1, 1)), running_mean=np.zeros(3),
                                                               running_var=var, eps=eps),
    "conv2d_bn": lambda x, var, eps: mv.F.conv2d_bn(x, np.ones((3, 3, 1, 1)), running_mean=np.zeros(3),
                                                     running_var=var, eps=eps),
}


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("op", sorted(EVAL_BATCH_NORMS))
def test_eval_batch_norms_refuse_a_variance_that_is_not_positive(op, grad, rng):
    """A negative or NaN running variance (or a zero one with eps 0) would make its channel NaN in
    silence: every eval batch norm refuses it, naming the op and the channel, fused or not."""
    x = mv.tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=grad)
    for var, eps, shown in (([1.0, -0.5, 1.0], 1e-5, r"-0\.5 \+ 1e-05 in channel 1"),
                            ([1.0, 1.0, np.nan], 1e-5, r"nan \+ 1e-05 in channel 2"),
                            ([0.0, 1.0, 1.0], 0.0, r"0\.0 \+ 0\.0 in channel 0")):
        with pytest.raises(ValueError, match=rf"{op}: running_var \+ eps must be positive in every channel, "
                                             rf"got {shown}"):
            EVAL_BATCH_NORMS[op](x, np.array(var), eps)
    # the boundary: a zero variance with a positive eps is a constant channel, and fine
    out = EVAL_BATCH_NORMS[op](x, np.array([0.0, 1.0, 1.0]), 1e-5)
    assert np.isfinite(out.data).all()


@pytest.mark.parametrize("threaded", [False, True])
def test_a_constant_group_under_eps_zero_is_refused(threaded, rng, monkeypatch):
    """Standardising a constant channel (batch norm, training) or plane (instance norms) with eps 0 is
    0/0: a clear error instead of NaN (or the kernel's ZeroDivisionError), on the threaded and the serial
    kernel; eps 0 on varied values still works."""
    from minivis.kernels import cpu_norm
    monkeypatch.setattr(cpu_norm, "INSTANCE_MIN_WORK", 0 if threaded else 1 << 60)
    x = rng.standard_normal((2, 3, 4, 4))
    x[1, 2] = 0.5  # one constant plane; channel 2 still varies across the batch
    with pytest.raises(ValueError, match=r"instance_norm: an \(image, channel\) plane of the input is constant and "
                                         r"eps is 0, so its standardised values would be 0/0 \(NaN\); use eps > 0"):
        mv.F.instance_norm(x, eps=0.0)
    with pytest.raises(ValueError, match=r"conditional_instance_norm: an \(image, channel\) plane of the input is "
                                         r"constant and eps is 0"):
        mv.F.conditional_instance_norm(x, 0, np.ones((1, 3)), np.zeros((1, 3)), eps=0.0)
    assert np.isfinite(mv.F.batch_norm(x, None, None, training=True, eps=0.0).data).all()
    x[:, 1] = -2.0
    with pytest.raises(ValueError, match=r"batch_norm: a channel of the input is constant and eps is 0"):
        mv.F.batch_norm(x, None, None, training=True, eps=0.0)
    varied = rng.standard_normal((2, 3, 4, 4))
    assert np.isfinite(mv.F.instance_norm(varied, eps=0.0).data).all()
    np.testing.assert_allclose(mv.F.instance_norm(x, eps=1e-5).data[1, 2], 0.0)  # eps > 0: a constant plane is 0


def test_the_array_path_refuses_a_constant_group_under_eps_zero():
    """The array code (the instance norms' path for CuPy arrays, and batch norm's) checks the same."""
    from minivis.functional.norm import _standardize
    with pytest.raises(ValueError, match=r"op: a group of the input is constant and eps is 0"):
        _standardize(np.ones((2, 3, 4, 4)), (2, 3), 0.0, "op", "a group")
    assert np.isfinite(_standardize(np.ones((2, 3, 4, 4)), (2, 3), 1e-5, "op", "a group")[3]).all()
