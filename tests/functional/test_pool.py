"""Pooling ops: finite differences, PyTorch parity (outputs, switches, gradients) and bad input."""

import subprocess
import sys
from contextlib import nullcontext

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as tF  # noqa: N812

import minivis as mv
from tests.gradcheck import check_gradients

TOL = {np.float64: {"rtol": 1e-7, "atol": 1e-12}, np.float32: {"rtol": 1e-4, "atol": 1e-5}}

# (input (H, W), kernel_size, stride, padding, dilation, ceil_mode)
MAX_GRID = [
    ((8, 8), 2, None, 0, 1, False),
    ((9, 10), 3, 2, 1, 1, False),        # overlapping windows: k3 s2
    ((9, 10), 3, 2, 1, 1, True),
    ((7, 9), 3, 2, 0, 1, True),          # ceil_mode adds a partial last window
    ((10, 11), 3, 1, 1, 2, False),       # dilation
    ((11, 9), (3, 2), (2, 1), (1, 0), (2, 1), True),
    ((6, 7), (2, 4), (1, 3), (1, 2), 1, True),
    ((5, 5), 5, 1, 2, 1, False),         # padding = kernel // 2
]


def _distinct(shape, rng):
    """A permutation of evenly spaced values in [-1, 1): every window has one clear maximum, at least
    2/size (>= 1e-3 here) above the runner-up, far beyond the finite-difference step (no ties, no kinks)."""
    size = int(np.prod(shape))
    return (rng.permutation(size) * (2.0 / size) - 1.0).reshape(shape)


def _torch_grads(fn, x, upstream):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt)
    first = out[0] if isinstance(out, tuple) else out
    first.backward(torch.tensor(upstream))
    return out, xt.grad.numpy()


def _mv_grads(fn, x, upstream):
    xm = mv.tensor(x, requires_grad=True)
    out = fn(xm)
    first = out[0] if isinstance(out, tuple) else out
    first.backward(upstream)
    return out, xm.grad


@pytest.fixture
def one_numba_thread():
    """Finite differences call each op hundreds of times on tiny inputs, where a parallel region's
    fork/join costs more than the work (milliseconds on a busy machine); run those calls serially.
    The parity tests below keep the default thread count and so still exercise the parallel loops."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


# ----------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("case", [MAX_GRID[0], MAX_GRID[1], MAX_GRID[4], MAX_GRID[5]])
def test_max_pool2d_finite_differences(one_numba_thread, rng, case):
    hw, k, s, p, d, ceil = case
    x = _distinct((1, 2, *hw), rng)
    op = lambda t: mv.F.max_pool2d(t, k, s, p, d, ceil)  # noqa: E731
    check_gradients(op, [x], rng)
    # The switches do not move within the finite-difference step (values >= 1e-3 apart, eps is 1e-6).
    v = rng.standard_normal(x.shape)
    plus = mv.F.max_pool2d(x + 1e-6 * v, k, s, p, d, ceil, return_switches=True)[1]
    minus = mv.F.max_pool2d(x - 1e-6 * v, k, s, p, d, ceil, return_switches=True)[1]
    np.testing.assert_array_equal(plus, minus)


def test_max_unpool2d_finite_differences(one_numba_thread, rng):
    x = _distinct((1, 2, 7, 8), rng)
    _, switches = mv.F.max_pool2d(x, 2, return_switches=True)
    pooled = rng.standard_normal(switches.shape)
    check_gradients(lambda t: mv.F.max_unpool2d(t, switches, 2, output_size=x.shape), [pooled], rng)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                         count_include_pad=False)])
def test_avg_pool2d_finite_differences(one_numba_thread, rng, kwargs):
    check_gradients(lambda t: mv.F.avg_pool2d(t, **kwargs), [rng.standard_normal((1, 2, 7, 8))], rng)


@pytest.mark.parametrize("output_size", [(3, 2), (9, 4)])
def test_adaptive_and_global_avg_pool2d_finite_differences(one_numba_thread, rng, output_size):
    x = rng.standard_normal((1, 2, 7, 5))
    check_gradients(lambda t: mv.F.adaptive_avg_pool2d(t, output_size), [x], rng)
    check_gradients(mv.F.global_avg_pool2d, [x], rng)


# ----------------------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MAX_GRID)
def test_max_pool2d_matches_torch(rng, dtype, case):
    hw, k, s, p, d, ceil = case
    x = rng.standard_normal((2, 3, *hw)).astype(dtype)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    (yt, it), gt = _torch_grads(lambda t: tF.max_pool2d(t, return_indices=True, **kw), x,
                                upstream := rng.standard_normal(
                                    tF.max_pool2d(torch.tensor(x), **kw).shape).astype(dtype))
    (y, switches), g = _mv_grads(lambda t: mv.F.max_pool2d(t, return_switches=True, **kw), x, upstream)
    assert y.dtype == dtype and switches.dtype == np.int64 and switches.shape == y.shape
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(switches, it.numpy())
    np.testing.assert_allclose(g, gt, **TOL[dtype])


def test_max_pool2d_ties_go_to_first_maximum():
    x = np.array([[[[1.0, 1.0, 0.0, 2.0],
                    [1.0, 1.0, 2.0, 2.0],
                    [0.0, 3.0, 4.0, 4.0],
                    [3.0, 3.0, 4.0, 4.0]]]])
    y, switches = mv.F.max_pool2d(x, 2, return_switches=True)
    np.testing.assert_array_equal(switches, [[[[0, 3], [9, 10]]]])
    np.testing.assert_array_equal(y.numpy(), [[[[1.0, 2.0], [3.0, 4.0]]]])


@pytest.mark.parametrize("case", MAX_GRID)
def test_max_pool2d_ties_match_torch(rng, case):
    hw, k, s, p, d, ceil = case
    x = rng.integers(0, 3, (2, 3, *hw)).astype(np.float64)  # many ties in every window
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    _, it = tF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(mv.F.max_pool2d(x, return_switches=True, **kw)[1], it.numpy())


# Overlapping pools large enough for the separable kernel's vectorized interior (AlexNet/ResNet stems).
OVERLAPPING = [((33, 32), 3, 2, 1, 1, False), ((32, 35), 3, 2, 1, 1, True), ((31, 30), 3, 2, 0, 1, True),
               ((30, 33), 3, 2, 1, 2, False), ((29, 28), 5, 2, 2, 1, True)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", OVERLAPPING)
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_overlapping_max_pool2d_matches_torch(rng, dtype, case, values):
    """Outputs, switches (return_indices) and input gradients equal PyTorch's, ties and NaNs included."""
    hw, k, s, p, d, ceil = case
    x = (rng.integers(0, 3, (2, 5, *hw)) if values == "ties" else rng.standard_normal((2, 5, *hw))).astype(dtype)
    if values == "nan":  # at most one NaN per window (extent <= 5): with two, PyTorch's CPU kernel
        # takes the last NaN while minivis keeps its rule, the first maximum in window order
        grid = np.zeros(x.shape, dtype=bool)
        grid[..., 2::6, 3::6] = rng.random(grid[..., 2::6, 3::6].shape) < 0.7
        x[grid] = np.nan
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    upstream = rng.standard_normal(tF.max_pool2d(torch.tensor(x), **kw).shape).astype(dtype)
    (yt, it), gt = _torch_grads(lambda t: tF.max_pool2d(t, return_indices=True, **kw), x, upstream)
    (y, switches), g = _mv_grads(lambda t: mv.F.max_pool2d(t, return_switches=True, **kw), x, upstream)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(switches, it.numpy())
    np.testing.assert_allclose(g, gt, **TOL[dtype])


def test_overlapping_max_pool2d_finite_differences(one_numba_thread, rng):
    """3x3 stride 2 on a plane wide enough for the vectorized interior, padding 1 and 0."""
    x = _distinct((1, 2, 19, 18), rng)
    for padding in (1, 0):
        check_gradients(lambda t, p=padding: mv.F.max_pool2d(t, 3, 2, p), [x], rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw, k, s, output_size", [
    ((8, 8), 2, None, None),
    ((7, 9), 2, 2, (7, 9)),             # odd input: output_size restores the size floor lost
    ((7, 9), 3, 3, "full"),             # a full (N, C, H, W) shape
    ((9, 8), (3, 2), (3, 2), (10, 9)),
])
def test_max_unpool2d_matches_torch(rng, dtype, hw, k, s, output_size):
    x = rng.standard_normal((2, 3, *hw)).astype(dtype)
    size = x.shape if output_size == "full" else output_size
    pooled, it = tF.max_pool2d(torch.tensor(x), k, s, return_indices=True)
    _, switches = mv.F.max_pool2d(x, k, s, return_switches=True)
    upstream_shape = tF.max_unpool2d(pooled, it, k, s, output_size=size).shape
    upstream = rng.standard_normal(upstream_shape).astype(dtype)
    p = pooled.numpy()
    ut, gt = _torch_grads(lambda t: tF.max_unpool2d(t, it, k, s, output_size=size), p, upstream)
    u, g = _mv_grads(lambda t: mv.F.max_unpool2d(t, switches, k, s, output_size=size), p, upstream)
    assert u.dtype == dtype
    np.testing.assert_array_equal(u.numpy(), ut.detach().numpy())
    np.testing.assert_allclose(g, gt, **TOL[dtype])


@pytest.mark.parametrize("case", [MAX_GRID[1], MAX_GRID[2], MAX_GRID[4]])
def test_max_pool2d_backward_is_unpooling_with_switches(rng, case):
    hw, k, s, p, d, ceil = case
    x = rng.standard_normal((2, 3, *hw))
    xt = mv.tensor(x, requires_grad=True)
    y, switches = mv.F.max_pool2d(xt, k, s, p, d, ceil, return_switches=True)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    x_grad = xt.grad
    # Unpooling knows no dilation: its kernel_size is the dilated window's extent d*(k - 1) + 1.
    extent = d * (k - 1) + 1
    unpooled = mv.F.max_unpool2d(g, switches, extent, s, p, output_size=x.shape)
    np.testing.assert_array_equal(x_grad, unpooled.numpy())  # same kernel, same sums, bit for bit
    assert np.unique(switches[0, 0]).size < switches[0, 0].size or k == 1  # overlap really duplicated some


def test_max_unpool2d_sums_duplicate_switches():
    x = np.array([[[[0.0, 1.0, 5.0, 2.0, 3.0]]]])  # the 5 wins both overlapping windows
    y, switches = mv.F.max_pool2d(x, (1, 3), (1, 2), return_switches=True)
    np.testing.assert_array_equal(switches, [[[[2, 2]]]])
    np.testing.assert_array_equal(mv.F.max_unpool2d(y, switches, (1, 3), (1, 2)).numpy(),
                                  [[[[0.0, 0.0, 10.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw, k, s, p, ceil, include", [
    ((8, 8), 2, None, 0, False, True),
    ((9, 10), 3, 2, 1, False, True),
    ((9, 10), 3, 2, 1, False, False),
    ((7, 9), 3, 2, 1, True, True),       # the last window pokes past the padding
    ((7, 9), 3, 2, 1, True, False),
    ((11, 6), (4, 3), (3, 2), (2, 1), True, True),
    ((11, 6), (4, 3), (3, 2), (2, 1), True, False),
])
def test_avg_pool2d_matches_torch(rng, dtype, hw, k, s, p, ceil, include):
    x = rng.standard_normal((2, 3, *hw)).astype(dtype)
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=include)
    upstream = rng.standard_normal(tF.avg_pool2d(torch.tensor(x), **kw).shape).astype(dtype)
    yt, gt = _torch_grads(lambda t: tF.avg_pool2d(t, **kw), x, upstream)
    y, g = _mv_grads(lambda t: mv.F.avg_pool2d(t, **kw), x, upstream)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(g, gt, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw, output_size", [
    ((8, 8), 4), ((7, 5), (3, 2)), ((10, 7), (4, 3)), ((5, 5), (7, 3)), ((6, 9), (None, 4)), ((5, 6), 1),
])
def test_adaptive_avg_pool2d_matches_torch(rng, dtype, hw, output_size):
    x = rng.standard_normal((2, 3, *hw)).astype(dtype)
    upstream = rng.standard_normal(tF.adaptive_avg_pool2d(torch.tensor(x), output_size).shape).astype(dtype)
    yt, gt = _torch_grads(lambda t: tF.adaptive_avg_pool2d(t, output_size), x, upstream)
    y, g = _mv_grads(lambda t: mv.F.adaptive_avg_pool2d(t, output_size), x, upstream)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(g, gt, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_global_avg_pool2d_matches_torch(rng, dtype):
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    upstream = rng.standard_normal((2, 3, 1, 1)).astype(dtype)
    yt, gt = _torch_grads(lambda t: t.mean(dim=(2, 3), keepdim=True), x, upstream)
    y, g = _mv_grads(mv.F.global_avg_pool2d, x, upstream)
    assert y.shape == (2, 3, 1, 1) and y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(g, gt, **TOL[dtype])


# ----------------------------------------------------------------------------- devices and bad input
def test_max_pool2d_bad_input(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"max_pool2d: input must be 4-D \(N, C, H, W\), got shape \(2, 5, 5\)"):
        mv.F.max_pool2d(x[0], 2)
    with pytest.raises(TypeError, match="max_pool2d: input must be a float tensor or array, got dtype complex128"):
        mv.F.max_pool2d(x.astype(complex), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: stride must be >= 1, got 0"):
        mv.F.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size must be >= 1, got \(2, 0\)"):
        mv.F.max_pool2d(x, (2, 0))
    with pytest.raises(ValueError, match=r"max_pool2d: padding must be at most half the kernel size.*"
                                         r"got padding=\(2, 2\) for kernel_size=\(3, 3\)"):
        mv.F.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size \(4, 4\) \(extent \(7, 7\) with dilation "
                                         r"\(2, 2\)\) is larger than the padded input \(5, 5\)"):
        mv.F.max_pool2d(x, 4, dilation=2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size \(7, 7\).*larger than the padded input"):
        mv.F.max_pool2d(x, 7)
    with pytest.raises(TypeError, match="max_pool2d: ceil_mode must be True or False, got 1"):
        mv.F.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(TypeError, match="max_pool2d: kernel_size must be an int or a pair of ints, got 2.0"):
        mv.F.max_pool2d(x, 2.0)


def test_max_unpool2d_bad_input(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    y, switches = mv.F.max_pool2d(x, 2, return_switches=True)
    with pytest.raises(TypeError, match="max_unpool2d: switches must have dtype int64, got float64"):
        mv.F.max_unpool2d(y, switches.astype(np.float64), 2)
    with pytest.raises(TypeError, match="max_unpool2d: switches must have dtype int64, got int32"):
        mv.F.max_unpool2d(y, switches.astype(np.int32), 2)
    with pytest.raises(TypeError, match="max_unpool2d: switches must be the int64 array .* got Tensor"):
        mv.F.max_unpool2d(y, mv.tensor(switches), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: switches must have the input's shape \(N, C, H, W\) = "
                                         r"\(1, 2, 3, 3\), got \(1, 2, 3, 2\)"):
        mv.F.max_unpool2d(y, switches[..., :2], 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: switches must lie in \[0, 16\) for output size "
                                         r"\(4, 4\), got values in \[\d+, 35\]"):
        mv.F.max_unpool2d(y, switches, 2, stride=1)
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size \(8, 6\) must lie strictly between 4 and 8"):
        mv.F.max_unpool2d(y, switches, 2, output_size=(8, 6))
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size must be \(H, W\) or a full"):
        mv.F.max_unpool2d(y, switches, 2, output_size=(6, 6, 6))
    with pytest.raises(ValueError, match=r"max_unpool2d: input must be 4-D \(N, C, H, W\), got shape \(2, 3, 3\)"):
        mv.F.max_unpool2d(y.numpy()[0], switches[0], 2)


def test_avg_pools_bad_input(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"avg_pool2d: input must be 4-D \(N, C, H, W\), got shape \(5, 5\)"):
        mv.F.avg_pool2d(x[0, 0], 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding must be at most half the kernel size"):
        mv.F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool2d: stride must be >= 1, got \(1, 0\)"):
        mv.F.avg_pool2d(x, 2, stride=(1, 0))
    with pytest.raises(ValueError, match=r"avg_pool2d: kernel_size \(6, 6\).*larger than the padded input"):
        mv.F.avg_pool2d(x, 6)
    with pytest.raises(TypeError, match="avg_pool2d: count_include_pad must be True or False, got 'yes'"):
        mv.F.avg_pool2d(x, 2, count_include_pad="yes")
    with pytest.raises(TypeError, match="avg_pool2d: input must be a float tensor or array, got dtype complex128"):
        mv.F.avg_pool2d(x.astype(complex), 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be >= 1, got \(0, 2\)"):
        mv.F.adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(TypeError, match=r"adaptive_avg_pool2d: output_size must be an int or a pair of ints"):
        mv.F.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: input must be 4-D \(N, C, H, W\)"):
        mv.F.adaptive_avg_pool2d(x[0], 2)
    with pytest.raises(ValueError, match=r"global_avg_pool2d: input must be 4-D \(N, C, H, W\)"):
        mv.F.global_avg_pool2d(x[0])
    with pytest.raises(ValueError, match=r"global_avg_pool2d: input must have at least one pixel"):
        mv.F.global_avg_pool2d(np.zeros((1, 2, 0, 3)))
    with pytest.raises(TypeError, match="global_avg_pool2d: input must be a Tensor or an array, got str"):
        mv.F.global_avg_pool2d("image")


# Editing the switches a user was handed must never let a kernel index outside its buffers. A
# regression here would crash the interpreter, so each attack runs in a child process. The
# switches handed out are a read-only view of the graph's own (NumPy refuses the edit); forcing
# the write through the base array reaches the kernels, which skip indices outside the plane.
_REFUSED = """
try:
    {target}[...] = {value}
    raise SystemExit("the edit was not refused")
except ValueError as error:
    assert "read-only" in str(error), error
"""
_SWITCH_ATTACKS = {
    "pool_backward": """
y, sw = mv.F.max_pool2d(x, 2, return_switches=True)
""" + _REFUSED.format(target="sw", value="{value}") + """
y.backward(np.ones(y.shape, np.float32))
assert x.grad.shape == x.shape and np.isfinite(x.grad).all()
""",
    "module_backward": """
pool = mv.nn.MaxPool2d(2)
y = pool(x)
""" + _REFUSED.format(target="pool.switches", value="{value}") + """
y.backward(np.ones(y.shape, np.float32))
""",
    "forced_through_the_base": """
y, sw = mv.F.max_pool2d(x, 2, return_switches=True)
sw.base.flags.writeable = True
sw.base[...] = {value}
y.backward(np.ones(y.shape, np.float32))
assert np.isfinite(x.grad).all() and not x.grad.any()  # every index skipped: no gradient, no stray write
""",
    "unpool_backward": """
y, sw = mv.F.max_pool2d(x, 2, return_switches=True)
u = mv.F.max_unpool2d(mv.tensor(y.numpy(), requires_grad=True), sw, 2)
sw.base.flags.writeable = True  # max_unpool2d checked and copied them: later edits cannot reach its backward
sw.base[...] = {value}
u.backward(np.ones(u.shape, np.float32))
""",
}


@pytest.mark.parametrize("value", [10**11, 1000, -1])
@pytest.mark.parametrize("attack", list(_SWITCH_ATTACKS))
def test_edited_switches_cannot_reach_outside_the_buffers(attack, value):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np
        import minivis as mv
        x = mv.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    """) + _SWITCH_ATTACKS[attack].format(value=value) + "\nprint('survived')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


# ----------------------------------------------------------------------------- the fused rectifier + 2x2 max-pool
def _two_ops(x):
    return mv.F.max_pool2d(mv.F.relu(x), 2, return_switches=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
@pytest.mark.parametrize("lean", [False, True])
def test_relu_max_pool2d_is_the_two_ops_bit_for_bit(rng, dtype, rule, lean):
    """Values, switches and the input gradient under each ReLU rule, with ties, zeros, windows of
    negatives and an odd size (the last row and column are dropped, as by the pool)."""
    x = rng.integers(-2, 3, (2, 3, 7, 6)).astype(dtype)
    x[0, 0] = rng.standard_normal((7, 6))
    x[1, 1].flat[::4] = -0.0
    g = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    g[0, 0, 0] = [0.0, -0.0, np.inf]  # an infinite gradient times a zero slope: NaN, in both
    results = []
    for op in (lambda t: mv.F.relu_max_pool2d(t, return_switches=True), _two_ops):
        t = mv.tensor(x, requires_grad=True)
        with mv.lean_graph() if lean else nullcontext():
            out, switches = op(t)
        with mv.backward_rule(rule), np.errstate(invalid="ignore"):
            out.backward(g)
        results.append((out.numpy(), switches, t.grad))
    (out, switches, grad), (want_out, want_switches, want_grad) = results
    np.testing.assert_array_equal(out.view(np.uint8), want_out.view(np.uint8))
    np.testing.assert_array_equal(switches, want_switches)
    np.testing.assert_array_equal(grad.view(np.uint8), want_grad.view(np.uint8))
    assert not switches.flags.writeable  # as max_pool2d: a read-only view of the graph's own switches


def test_relu_max_pool2d_finite_differences(one_numba_thread, rng):
    x = _distinct((1, 2, 6, 8), rng)
    check_gradients(mv.F.relu_max_pool2d, [x], rng)


def test_relu_max_pool2d_under_lrp_and_rescale_rules():
    x = mv.tensor(np.arange(-8.0, 8.0).reshape(1, 1, 4, 4), requires_grad=True)
    out = mv.F.relu_max_pool2d(x)
    with mv.backward_rule("rescale"), pytest.raises(RuntimeError, match="relu_max_pool2d: the rescale rule needs "
                                                                        r"the rectifier's input.*fusion\(False\)"):
        out.backward(np.ones((1, 1, 2, 2)))
    out = mv.F.relu_max_pool2d(x)
    with mv.backward_rule(mv.LRPRules(by_kind={"max_pool2d": "norm"})), \
            pytest.raises(RuntimeError, match="relu_max_pool2d: the LRP norm rule needs the pool's input"):
        out.backward(np.ones((1, 1, 2, 2)))
    # LRP's default: relevance passes the rectifier and goes to the window's winner, as through the two ops
    grads = []
    for op in (mv.F.relu_max_pool2d, lambda t: mv.F.max_pool2d(mv.F.relu(t), 2)):
        t = mv.tensor(x.data, requires_grad=True)
        with mv.backward_rule(mv.LRPRules()):
            op(t).backward(np.array([[[[1.0, -2.0], [3.0, 4.0]]]]))
        grads.append(t.grad)
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0].ravel()[[0, 2, 13, 15]], [1.0, -2.0, 3.0, 4.0])  # all-negative
    # windows (the top two) send it to their first pixel, where the rectified map has its first maximum


def test_relu_max_pool2d_bad_input():
    with pytest.raises(ValueError, match="relu_max_pool2d: the input must be at least 2x2 for a 2x2 pool, got 1x4"):
        mv.F.relu_max_pool2d(mv.tensor(np.zeros((1, 1, 1, 4))))
    with pytest.raises(ValueError, match="relu_max_pool2d"):
        mv.F.relu_max_pool2d(mv.tensor(np.zeros((4, 4))))
    with pytest.raises(TypeError, match="relu_max_pool2d: return_switches must be True or False"):
        mv.F.relu_max_pool2d(mv.tensor(np.zeros((1, 1, 4, 4))), return_switches=1)


def test_a_stride_past_the_input_is_one_window_not_an_out_of_bounds_read():
    """stride=2**63 wrapped to a negative int64 offset in the kernels and killed the interpreter
    (SIGSEGV), so the check runs in a child process; any stride past the padded input is one window."""
    child = """
import numpy as np, minivis as mv
x = mv.tensor(np.arange(72, dtype=np.float32).reshape(1, 2, 6, 6), requires_grad=True)
for pool in (mv.F.max_pool2d, mv.F.avg_pool2d):
    for stride in (2**63, 10**30):
        for ceil_mode in (False, True):
            got = pool(x, 2, stride=stride, ceil_mode=ceil_mode).numpy()
            np.testing.assert_array_equal(got, pool(x, 2, stride=6, ceil_mode=ceil_mode).numpy())
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "OK", (result.returncode, result.stderr[-2000:])
