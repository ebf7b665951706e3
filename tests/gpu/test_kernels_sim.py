"""The GPU kernels (Numba-CUDA) under the CUDA simulator, against the CPU kernels and ops.

Run with ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/gpu`` (skipped otherwise). The simulator
runs every CUDA thread as a Python thread, so the shapes are tiny; the kernels' index arithmetic
(strides, padding, dilation, groups, ceil_mode, bins, switches) is what is under test here.

Two levels:
* kernel level: every function of ``gpu_conv``, ``gpu_pool``, ``gpu_activation`` against its
  ``cpu_*`` twin. The gather kernels sum in the CPU's order, so most results must be *identical*.
* op level: the same op code (conv2d / conv_transpose2d forward and backward, max-pool with
  switches, unpool, average pools, the ReLU rules) run inside ``backend.force_kernels("gpu")``,
  i.e. through the GPU kernels, against the same ops on the CPU kernels.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

import minivis as mv
from minivis import backend
from minivis.functional.pool import _adaptive_bins, _avg_bins, _pool_output_size
from minivis.kernels import cpu_activation, cpu_conv, cpu_pool
from minivis.rules import RULE_CODES, RULES
from tests.gpu.cases import CONV_OPS, MAX_GEOMETRIES, TRANSPOSE_OPS
from tests.gpu.sim import SIMULATED, SIMULATOR_REASON

if not SIMULATED:
    pytest.skip(SIMULATOR_REASON, allow_module_level=True)

from numba import cuda  # noqa: E402 (after the skip: the simulator must be on when numba.cuda loads)

from minivis.kernels import gpu_activation, gpu_conv, gpu_launch, gpu_pool  # noqa: E402

# Tolerances of GPU vs CPU where the summation order differs (depthwise, op-level GEMM paths).
CLOSE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [np.float32, np.float64]


@pytest.fixture
def launches(monkeypatch):
    """Counts GPU kernel launches (every launch converts its arguments through device_args)."""
    count = {"n": 0}
    original = gpu_launch.device_args

    def counting(args, *rest):
        count["n"] += 1
        return original(args, *rest)

    monkeypatch.setattr(gpu_launch, "device_args", counting)
    return count


# ----------------------------------------------------------------------------- conv kernels
# (kh, kw, stride, pad4 = (top, bottom, left, right), dilation)
CONV_GEOMETRIES = [
    (3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),      # stride 1, same width: the CPU's special path
    (3, 2, (2, 1), (1, 0, 2, 1), (1, 2)),      # asymmetric everything
    (2, 3, (1, 3), (0, 0, 0, 0), (2, 1)),
    (5, 5, (2, 2), (2, 2, 2, 2), (1, 1)),
    (1, 1, (2, 2), (0, 0, 0, 0), (1, 1)),
]


def _conv_out_hw(hw, kh, kw, stride, pad4, dilation):
    return (cpu_conv.output_size(hw[0], kh, stride[0], pad4[0], pad4[1], dilation[0]),
            cpu_conv.output_size(hw[1], kw, stride[1], pad4[2], pad4[3], dilation[1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_im2col_and_col2im_equal_the_cpu_kernels(rng, dtype, geometry, launches):
    kh, kw, stride, pad4, dilation = geometry
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    out_hw = _conv_out_hw(x.shape[2:], *geometry)
    cols = gpu_conv.im2col(x, kh, kw, stride, pad4, dilation, out_hw)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, cpu_conv.im2col(x, kh, kw, stride, pad4, dilation, out_hw))
    buffer = np.full((3,) + cols.shape[1:], np.nan, dtype=dtype)  # a reused buffer, as conv2d passes
    assert gpu_conv.im2col(x[:1], kh, kw, stride, pad4, dilation, out_hw, out=buffer[:1]) is not None
    np.testing.assert_array_equal(buffer[0], cols[0])

    dcols = rng.standard_normal(cols.shape).astype(dtype)
    want = cpu_conv.col2im(dcols, x.shape, kh, kw, stride, pad4, dilation, out_hw)
    # same taps, same order of additions: bit-identical, not just close
    np.testing.assert_array_equal(gpu_conv.col2im(dcols, x.shape, kh, kw, stride, pad4, dilation, out_hw), want)
    target = np.full(x.shape, np.nan, dtype=dtype)  # every element must be overwritten
    gpu_conv.col2im(dcols, x.shape, kh, kw, stride, pad4, dilation, out_hw, out=target)
    np.testing.assert_array_equal(target, want)
    assert launches["n"] == 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES[:4])
def test_depthwise_forward_and_input_gradient_match_the_cpu_kernels(rng, dtype, mult, geometry):
    kh, kw, stride, pad4, dilation = geometry
    x = rng.standard_normal((2, 2, 7, 6)).astype(dtype)
    w = rng.standard_normal((2 * mult, 1, kh, kw)).astype(dtype)
    out_hw = _conv_out_hw(x.shape[2:], *geometry)
    y = gpu_conv.depthwise_forward(x, w, stride, pad4, dilation, out_hw)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, cpu_conv.depthwise_forward(x, w, stride, pad4, dilation, out_hw), **CLOSE[dtype])
    bias, scale, shift = (rng.standard_normal(w.shape[0]).astype(dtype) for _ in range(3))
    np.testing.assert_allclose(  # the bias, then an eval batch norm and ReLU6 (F.conv2d_bn_relu)
        gpu_conv.depthwise_forward(x, w, stride, pad4, dilation, out_hw, bias, (scale, shift, 0.0, 6.0)),
        cpu_conv.depthwise_forward(x, w, stride, pad4, dilation, out_hw, bias, (scale, shift, 0.0, 6.0)),
        **CLOSE[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(gpu_conv.depthwise_backward_input(g, w, x.shape, stride, pad4, dilation),
                               cpu_conv.depthwise_backward_input(g, w, x.shape, stride, pad4, dilation),
                               **CLOSE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES[:3])
def test_depthwise_weight_gradient_matches_the_cpu_kernel(rng, dtype, geometry):
    """One block per weight tap, a tree reduction in shared memory (slow under the simulator:
    few taps here)."""
    kh, kw, stride, pad4, dilation = geometry
    x = rng.standard_normal((2, 2, 6, 5)).astype(dtype)
    out_hw = _conv_out_hw(x.shape[2:], *geometry)
    g = rng.standard_normal((2, 4) + out_hw).astype(dtype)
    w_shape = (4, 1, kh, kw)  # channel multiplier 2
    dw = gpu_conv.depthwise_backward_weight(g, x, w_shape, stride, pad4, dilation)
    assert dw.shape == w_shape and dw.dtype == dtype
    np.testing.assert_allclose(dw, cpu_conv.depthwise_backward_weight(g, x, w_shape, stride, pad4, dilation),
                               **CLOSE[dtype])


def test_depthwise_weight_gradient_of_an_empty_batch_is_zero():
    g, x = np.zeros((0, 2, 3, 3)), np.zeros((0, 2, 3, 3))
    np.testing.assert_array_equal(gpu_conv.depthwise_backward_weight(g, x, (2, 1, 1, 1), (1, 1), (0,) * 4, (1, 1)),
                                  np.zeros((2, 1, 1, 1)))


# ----------------------------------------------------------------------------- pool kernels
def _pool_out_hw(in_hw, kernel, stride, padding, dilation, ceil_mode):
    return tuple(_pool_output_size(*args, ceil_mode)
                 for args in zip(in_hw, kernel, stride, padding, dilation, strict=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", MAX_GEOMETRIES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_values_and_switches_equal_the_cpu_kernel(rng, dtype, geometry, ties):
    x = (rng.integers(0, 3, (3, 7, 8)) if ties else rng.standard_normal((3, 7, 8))).astype(dtype)
    out_hw = _pool_out_hw(x.shape[1:], *geometry)
    out, switches = gpu_pool.max_pool2d(x, *geometry[:4], out_hw)
    want_out, want_switches = cpu_pool.max_pool2d(x, *geometry[:4], out_hw)
    assert out.dtype == dtype and switches.dtype == np.int64
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(switches, want_switches)


def test_max_pool2d_nan_and_all_minus_inf_windows():
    x = np.array([[[1.0, np.nan, 3.0, 0.0],
                   [-np.inf, -np.inf, 2.0, 5.0]]])
    out, switches = gpu_pool.max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 2))
    np.testing.assert_array_equal(out, [[[np.nan, 5.0]]])
    np.testing.assert_array_equal(switches, [[[1, 7]]])
    minus_inf = np.full((1, 3, 3), -np.inf)  # padding must not win over a -inf input
    geometry = ((3, 3), (2, 2), (1, 1), (1, 1), (2, 2))
    np.testing.assert_array_equal(gpu_pool.max_pool2d(minus_inf, *geometry)[1],
                                  cpu_pool.max_pool2d(minus_inf, *geometry)[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpool_and_gather_match_the_cpu_kernels(rng, dtype):
    values = rng.standard_normal((3, 3, 4)).astype(dtype)
    distinct = np.stack([rng.permutation(6 * 7)[:12] for _ in range(3)]).reshape(3, 3, 4)
    out = gpu_pool.unpool(values, distinct, (6, 7))
    assert out.dtype == dtype and out.shape == (3, 6, 7)
    np.testing.assert_array_equal(out, cpu_pool.unpool(values, distinct, (6, 7)))  # no shared switch: exact
    repeated = rng.integers(0, 5, (3, 3, 4))  # many duplicates: atomic adds in any order
    np.testing.assert_allclose(gpu_pool.unpool(values, repeated, (2, 3)), cpu_pool.unpool(values, repeated, (2, 3)),
                               **CLOSE[dtype])
    source = rng.standard_normal((3, 6, 7)).astype(dtype)
    np.testing.assert_array_equal(gpu_pool.gather(source, repeated), cpu_pool.gather(source, repeated))


BOX_CASES = [  # name: (rows, cols) bins over a 7 x 6 input
    ("avg k3 s2 p1 include pad", lambda: (_avg_bins(7, 3, 2, 1, 4, True), _avg_bins(6, 3, 2, 1, 3, True))),
    ("avg k3 s2 p1 exclude pad, ceil", lambda: (_avg_bins(7, 3, 2, 1, 4, False), _avg_bins(6, 3, 2, 1, 4, False))),
    ("avg k2 s1", lambda: (_avg_bins(7, 2, 1, 0, 6, True), _avg_bins(6, 2, 1, 0, 5, True))),
    ("adaptive 3x4 (overlapping bins)", lambda: (_adaptive_bins(7, 3), _adaptive_bins(6, 4))),
    ("adaptive 1x1", lambda: (_adaptive_bins(7, 1), _adaptive_bins(6, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BOX_CASES, ids=[c[0] for c in BOX_CASES])
def test_box_mean_and_its_backward_equal_the_cpu_kernels(rng, dtype, case):
    rows, cols = case[1]()
    x = rng.standard_normal((3, 7, 6)).astype(dtype)
    out = gpu_pool.box_mean(x, rows, cols)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, cpu_pool.box_mean(x, rows, cols))
    g = rng.standard_normal(out.shape).astype(dtype)
    # the gather sums each pixel's shares in the CPU scatter's order and rounding: identical
    np.testing.assert_array_equal(gpu_pool.box_mean_backward(g, rows, cols, (7, 6)),
                                  cpu_pool.box_mean_backward(g, rows, cols, (7, 6)))


# ----------------------------------------------------------------------------- ReLU rules
RELU_FAMILY = {"relu": (0.0, np.inf, 0.0), "relu6": (0.0, 6.0, 0.0), "leaky_relu 0.2": (0.0, np.inf, 0.2)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(RELU_FAMILY))
@pytest.mark.parametrize("rule", RULES)
def test_relu_rule_backward_equals_the_reference_and_the_cpu_kernel(rng, dtype, op, rule):
    """The CUDA kernel against the plain reference of the three rules (functional/activation.py)."""
    x = rng.uniform(-8, 8, (3, 5)).astype(dtype)
    x.flat[:5] = [0.0, 6.0, -0.0, 0.0, 6.0]  # ties at the kinks: strict inequalities send nothing
    g = rng.standard_normal((3, 5)).astype(dtype)
    g.flat[3] = 0.0
    g.flat[4] = -abs(g.flat[4])
    args = (*RELU_FAMILY[op], RULE_CODES[rule])
    out = gpu_activation.relu_rule_backward(g, x, *args)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, mv.F.relu_backward_reference(g, x, rule, *RELU_FAMILY[op]))
    np.testing.assert_array_equal(out, cpu_activation.relu_rule_backward(g, x, *args))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(RELU_FAMILY))
@pytest.mark.parametrize("rule", RULES)
def test_relu_rule_backward_from_a_lean_graphs_region_code(rng, dtype, op, rule):
    """A lean graph saves the rectifier's region (0 clipped low, 1 linear, 2 clipped high) as int8 and
    reads it with bounds (0.5, 1.5): the same result as from the input, on both devices."""
    low, high, slope = RELU_FAMILY[op]
    x = rng.uniform(-8, 8, (3, 5)).astype(dtype)
    x.flat[:5] = [0.0, 6.0, -0.0, 0.0, 6.0]
    g = rng.standard_normal((3, 5)).astype(dtype)
    region = ((x > low) & (x < high)).astype(np.int8) + 2 * (x >= high)
    args = (0.5, 1.5, slope, RULE_CODES[rule])
    expected = mv.F.relu_backward_reference(g, x, rule, low, high, slope)
    for kernels in (gpu_activation, cpu_activation):
        out = kernels.relu_rule_backward(g, region.astype(np.int8), *args)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, expected)


def test_relu_rule_backward_of_a_scalar_keeps_its_shape():
    x, g = np.array(2.0), np.array(3.0)
    out = gpu_activation.relu_rule_backward(g, x, 0.0, np.inf, 0.0, RULE_CODES["gradient"])
    assert out.shape == () and out == 3.0


# ----------------------------------------------------------------------------- op level, forced GPU kernels
def _run(op, arrays, upstream_seed, rule="gradient"):
    """Forward and backward of ``op`` on fresh tensors; returns the output and the input gradients."""
    tensors = [mv.tensor(a, requires_grad=True, dtype=a.dtype) for a in arrays]
    out = op(*tensors)
    g = np.random.default_rng(upstream_seed).standard_normal(out.shape).astype(arrays[0].dtype)
    with mv.backward_rule(rule):
        out.backward(g)
    return out.numpy(), [t.grad for t in tensors]


def _compare_ops(op, arrays, dtype, rule="gradient", exact=False):
    want = _run(op, arrays, 7, rule)
    with backend.force_kernels("gpu"):
        got = _run(op, arrays, 7, rule)
    check = np.testing.assert_array_equal if exact else \
        (lambda a, b: np.testing.assert_allclose(a, b, **CLOSE[dtype]))
    check(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        assert a.dtype == dtype
        check(a, b)


F = mv.F
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_OPS))
def test_conv2d_forward_and_backward_through_gpu_kernels(rng, dtype, case, launches):
    x_shape, w_shape, kwargs = CONV_OPS[case]
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    _compare_ops(lambda x, w, b: F.conv2d(x, w, b, **kwargs), [x, w, b], dtype)
    if case.startswith("1x1") and "stride" not in case:
        assert launches["n"] == 0  # the pointwise path is GEMMs only
    else:
        assert launches["n"] >= 3  # forward, input-gradient and weight-gradient kernels ran


@pytest.mark.parametrize("case", ["3x3 pad 1", "groups 2", "depthwise x2, stride 2"])
def test_the_reference_conv_path_through_gpu_kernels(rng, case, launches):
    """``mv.conv_algorithm("reference")`` (one im2col / col2im over the whole batch) on the GPU kernels."""
    x_shape, w_shape, kwargs = CONV_OPS[case]
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    with mv.conv_algorithm("reference"):
        _compare_ops(lambda x, w: F.conv2d(x, w, **kwargs), [x, w], np.float64)
    assert launches["n"] >= 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRANSPOSE_OPS))
def test_conv_transpose2d_through_gpu_kernels(rng, dtype, case, launches):
    """The transposed conv is conv2d's backward-input (col2im or the depthwise gather) forward,
    and conv2d's forward backward: the GPU kernels in the other roles."""
    x_shape, w_shape, kwargs = TRANSPOSE_OPS[case]
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    _compare_ops(lambda x, w: F.conv_transpose2d(x, w, **kwargs), [x, w], dtype)
    assert launches["n"] >= 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", MAX_GEOMETRIES[:4])
def test_max_pool2d_switches_and_unpool_through_gpu_kernels(rng, dtype, geometry, launches):
    kernel, stride, padding, dilation, ceil_mode = geometry
    x = rng.permutation(2 * 3 * 7 * 8).reshape(2, 3, 7, 8).astype(dtype) / 10  # distinct: no ties
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    # close, not identical: the backward's atomic adds meet in pixels that win overlapping windows
    _compare_ops(lambda t: F.max_pool2d(t, kernel, **kwargs), [x], dtype)
    _, want = F.max_pool2d(x, kernel, **kwargs, return_switches=True)
    with backend.force_kernels("gpu"):
        pooled, switches = F.max_pool2d(x, kernel, **kwargs, return_switches=True)
    np.testing.assert_array_equal(switches, want)
    if dilation == (1, 1):  # max_unpool2d inverts an undilated pool; forward and backward
        unpool = lambda v: F.max_unpool2d(v, switches, kernel, stride, padding, output_size=x.shape)  # noqa: E731
        _compare_ops(unpool, [pooled.numpy()], dtype)
    assert launches["n"] >= 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", [
    lambda t: F.avg_pool2d(t, 3, 2, 1),
    lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
], ids=["avg 3/2/1", "avg ceil exclude pad", "adaptive 3x4"])
def test_average_pools_through_gpu_kernels(rng, dtype, op, launches):
    _compare_ops(op, [rng.standard_normal((2, 2, 7, 6)).astype(dtype)], dtype, exact=True)
    assert launches["n"] == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("op", [F.relu, F.relu6, lambda t: F.leaky_relu(t, 0.1)], ids=["relu", "relu6", "leaky"])
def test_relu_rules_through_gpu_kernels(rng, dtype, rule, op, launches):
    x = rng.uniform(-8, 8, (2, 3, 3)).astype(dtype)
    x.flat[:2] = [0.0, 6.0]
    _compare_ops(op, [x], dtype, rule=rule, exact=True)
    assert launches["n"] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", RULES)
def test_fused_relu_max_pool_through_gpu_kernels(rng, dtype, rule, launches):
    """On the GPU the fused op runs the two ops' kernels; on the CPU its own: the same bits."""
    x = rng.integers(-2, 3, (2, 2, 5, 4)).astype(dtype)
    _compare_ops(F.relu_max_pool2d, [x], dtype, rule=rule, exact=True)
    assert launches["n"] >= 2


def test_a_small_network_forward_and_backward_through_gpu_kernels(rng):
    """conv -> relu -> max-pool -> depthwise conv -> relu6 -> global average -> linear, end to end."""
    net = mv.nn.Sequential(mv.nn.Conv2d(2, 4, 3, padding=1), mv.nn.ReLU(), mv.nn.MaxPool2d(2),
                           mv.nn.Conv2d(4, 4, 3, padding=1, groups=4), mv.nn.ReLU6(),
                           mv.nn.AdaptiveAvgPool2d(1), mv.nn.Flatten(), mv.nn.Linear(4, 3)).double()
    x = rng.standard_normal((2, 2, 6, 6))
    grads = {}
    for mode in ("cpu", "gpu"):
        net.zero_grad()
        t = mv.tensor(x, requires_grad=True, dtype=np.float64)
        if mode == "gpu":
            with backend.force_kernels("gpu"):
                out = net(t)
                out.backward(np.ones(out.shape))
        else:
            out = net(t)
            out.backward(np.ones(out.shape))
        grads[mode] = [out.numpy(), t.grad] + [p.grad for p in net.parameters()]
    for a, b in zip(grads["gpu"], grads["cpu"], strict=True):
        np.testing.assert_allclose(a, b, **CLOSE[np.float64])


# ----------------------------------------------------------------------------- no host round trips
GPU_MODULES = ["gpu_conv.py", "gpu_pool.py", "gpu_activation.py", "gpu_launch.py"]
HOST_CALLS = {"get", "asnumpy", "copy_to_host", "to_device", "device_array", "device_array_like",
              "pinned_array", "mapped_array", "tolist", "item"}
NUMPY_NAMES_ALLOWED = {"int64", "ndarray"}  # dtypes and isinstance checks, never array functions


@pytest.mark.parametrize("module", GPU_MODULES)
def test_gpu_kernel_modules_never_touch_host_arrays(module):
    """By design: every array is allocated and reshaped with the input's array module ``xp``; no
    NumPy array function, no ``.get()``/``asnumpy``/``copy_to_host``/``to_device`` appears."""
    source = (Path(backend.__file__).parent / "kernels" / module).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "np":
                assert node.attr in NUMPY_NAMES_ALLOWED, f"{module}:{node.lineno} uses np.{node.attr}"
            if isinstance(node.ctx, ast.Load) and node.attr in HOST_CALLS:
                raise AssertionError(f"{module}:{node.lineno} calls .{node.attr} (a host transfer)")


def test_ops_through_gpu_kernels_make_no_transfers(rng, monkeypatch, launches):
    """Run every kernel-backed op forward and backward with Numba's transfer functions disabled:
    nothing may copy between host and device. (On a real GPU, tests/gpu/test_gpu.py also runs the
    ops with CuPy's synchronisation guard, which catches any device-to-host copy.)"""
    def forbidden(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"numba.cuda.{name} called inside an op")
        return fail

    for name in ("to_device", "device_array", "device_array_like", "pinned_array", "mapped_array"):
        monkeypatch.setattr(cuda, name, forbidden(name), raising=False)
    x = rng.standard_normal((1, 2, 6, 6))
    with backend.force_kernels("gpu"):
        t = mv.tensor(x, requires_grad=True, dtype=np.float64)
        h = F.conv2d(t, rng.standard_normal((4, 2, 3, 3)), padding=1)
        h = F.conv2d(F.relu(h), rng.standard_normal((4, 1, 3, 3)), padding=1, groups=4)
        pooled, switches = F.max_pool2d(h, 2, return_switches=True)
        u = F.max_unpool2d(F.relu6(pooled), switches, 2, output_size=h.shape)
        out = F.avg_pool2d(u, 2) + F.adaptive_avg_pool2d(u, 3)
        out = F.conv_transpose2d(F.leaky_relu(out), rng.standard_normal((4, 2, 3, 3)), stride=2)
        out.backward(np.ones(out.shape))
    assert t.grad.shape == x.shape and launches["n"] >= 15


def test_the_gpu_unpooling_kernels_take_an_empty_batch():
    """``unpool`` and ``gather`` flatten (P, H, W) planes with the plane size spelled out, as the CPU
    kernels do: ``reshape(0, -1)`` is undefined, so max-pool's backward failed on no images."""
    values, switches = np.zeros((0, 3, 3), np.float32), np.zeros((0, 3, 3), np.int64)
    assert gpu_pool.unpool(values, switches, (6, 6)).shape == (0, 6, 6)
    assert cpu_pool.unpool(values, switches, (6, 6)).shape == (0, 6, 6)
    source = np.zeros((0, 6, 6), np.float32)
    assert gpu_pool.gather(source, switches).shape == cpu_pool.gather(source, switches).shape == (0, 3, 3)
    with backend.force_kernels("gpu"):
        x = mv.tensor(np.zeros((0, 4, 8, 8), np.float32), requires_grad=True)
        y = mv.F.max_pool2d(x, 3, 2, 1)
        y.backward(np.ones(y.shape, np.float32))
        assert x.grad.shape == x.shape
