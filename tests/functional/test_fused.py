"""``F.conv2d_relu`` and ``F.conv2d_relu_max_pool2d`` (minivis/functional/fused.py) against the separate ops,
bit for bit (values, signed zeros, NaN, switches), on the fused Winograd kernel and on the other algorithms;
the separate ops where a graph is recorded; bad input named by the op."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis import functional as F
from minivis.kernels import conv_plan, cpu_simd

# (x shape, weight shape, stride, padding, groups): 3x3 stride 1 at 32-64 channels (the fused Winograd kernel on
# AVX-512 CPUs, odd and even maps), a first layer (direct), grouped and strided layers (the other algorithms)
CASES = [((2, 32, 14, 14), (64, 32, 3, 3), 1, 1, 1), ((3, 32, 11, 9), (32, 32, 3, 3), 1, 1, 1),
         ((2, 1, 12, 12), (32, 1, 3, 3), 1, 1, 1), ((2, 4, 11, 10), (6, 2, 3, 3), 2, 1, 2),
         ((1, 3, 9, 9), (5, 3, 5, 5), 1, 2, 1)]


def _bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "groups"), CASES)
@pytest.mark.parametrize("max_value", [np.inf, 6.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_ops_equal_the_separate_ops_bit_for_bit(rng, x_shape, w_shape, stride, padding, groups,
                                                          max_value, dtype):
    x = rng.standard_normal(x_shape).astype(dtype) * 3
    x.reshape(-1)[[3, 50]] = np.nan, -0.0
    w, b = rng.standard_normal(w_shape).astype(dtype), rng.standard_normal(w_shape[0]).astype(dtype)
    args = (mv.tensor(x), mv.tensor(w), mv.tensor(b), stride, padding, 1, groups)
    act = F.relu if max_value == np.inf else F.relu6
    with mv.no_grad():
        y = act(F.conv2d(*args))
        want, want_switches = F.max_pool2d(y, 2, return_switches=True)
        np.testing.assert_array_equal(_bits(F.conv2d_relu(*args, max_value=max_value).numpy()), _bits(y.numpy()))
        out, switches = F.conv2d_relu_max_pool2d(*args, max_value=max_value, return_switches=True)
        out_only = F.conv2d_relu_max_pool2d(*args, max_value=max_value)
    np.testing.assert_array_equal(_bits(out.numpy()), _bits(want.numpy()))
    np.testing.assert_array_equal(_bits(out_only.numpy()), _bits(want.numpy()))
    np.testing.assert_array_equal(switches, want_switches)
    assert np.isnan(y.numpy()).any()  # the NaN reached the outputs compared


def test_the_layers_of_32_to_128_channels_do_run_on_the_fused_kernel(rng):
    """The case the fused epilogues exist for is the one the tests above exercise (on AVX-512 CPUs)."""
    x, w = rng.standard_normal((2, 32, 14, 14)).astype(np.float32), np.zeros((64, 32, 3, 3), np.float32)
    kernels = mv.backend.kernels("conv", x, "test")
    how = F.conv.forward_algorithm(kernels, x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert how == ("winograd_fused" if cpu_simd.WIDE else conv_plan.choose(kernels, x.shape, w.shape, (14, 14),
                                                                            (1, 1), (1, 1), 1, "auto"))


def test_where_a_graph_is_recorded_the_separate_ops_run_and_differentiate(rng):
    x = mv.tensor(rng.standard_normal((2, 3, 8, 8)), requires_grad=True)
    w, b = mv.tensor(rng.standard_normal((4, 3, 3, 3))), mv.tensor(rng.standard_normal(4))
    y = F.conv2d_relu_max_pool2d(x, w, b, padding=1)
    assert y.grad_fn.op == "max_pool2d"
    y.sum().backward()
    x2 = mv.tensor(x.numpy(), requires_grad=True)
    F.max_pool2d(F.relu(F.conv2d(x2, w, b, padding=1)), 2).sum().backward()
    np.testing.assert_array_equal(x.grad, x2.grad)
    assert F.conv2d_relu(x, w, b, padding=1).grad_fn.op == "relu"


def test_bad_input_is_named_by_the_fused_op(rng):
    x, w = rng.standard_normal((1, 3, 5, 5)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with mv.no_grad():
        with pytest.raises(ValueError, match=r"conv2d_relu: max_value must be 6 \(relu6\) or inf"):
            F.conv2d_relu(x, w, max_value=5)
        with pytest.raises(ValueError, match="conv2d_relu_max_pool2d: the convolution's output must be at least 2x2"):
            F.conv2d_relu_max_pool2d(x, w, stride=3)
        with pytest.raises(TypeError, match="conv2d_relu_max_pool2d: return_switches must be"):
            F.conv2d_relu_max_pool2d(x, w, return_switches="yes")
        with pytest.raises(ValueError, match="conv2d_relu"):
            F.conv2d_relu(x, w[:, :2])


@pytest.mark.parametrize(("channels", "size"), [(32, 64), (4, 256)])  # the fused Winograd kernel's pool, cpu_pool's
def test_what_a_lean_graph_keeps_comes_from_the_allocator_not_the_reuse_pool(rng, channels, size):
    """The pooled output and its switches live until the backward pass: from a pooled block they would pin
    a block up to 4x their size for the whole pass (VGG16 SmoothGrad's peak went 476 -> 607 MB)."""
    from minivis.kernels import cpu_workspace

    x = mv.tensor(rng.standard_normal((8, channels, size, size)).astype(np.float32), requires_grad=True)
    w = mv.tensor(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32))
    pooled = 8 * channels * (size // 2) ** 2  # elements: at least cpu_workspace.MIN_BYTES as float32
    assert pooled * 4 >= cpu_workspace.MIN_BYTES
    with cpu_workspace.reuse(), mv.lean_graph():
        cpu_workspace.empty((3 * pooled,), np.float32)  # a block that the pooled output would fit, now free
        y = F.conv2d_relu_max_pool2d(x, w, padding=1)
        blocks = [id(b) for b in cpu_workspace._local.pool]
    base = y.data
    while base.base is not None:
        base = base.base
    assert y.grad_fn.op == "relu_max_pool2d" and id(base) not in blocks
