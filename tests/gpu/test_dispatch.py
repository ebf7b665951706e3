"""The CPU/GPU seams without a GPU: which kernel module an op picks, the GPU modules' interface,
the errors when CuPy, a GPU or numba-cuda is missing, the TF32 switch, and that ``import minivis``
stays free of ``numba.cuda``. Runs in the main suite and under the simulator alike."""

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minivis as mv
from minivis import backend
from minivis.kernels import cpu_activation, cpu_conv, cpu_pool
from tests.gpu.sim import SIMULATED

ROOT = Path(__file__).resolve().parents[2]
no_gpu = pytest.mark.skipif(backend.gpu_available(), reason="checks the errors raised when no GPU is usable")

# what the ops call on a kernel module (functional/conv.py and kernels/conv_plan.py, pool.py, activation.py)
INTERFACE = {
    "conv": (cpu_conv, ["im2col", "col2im", "depthwise_forward", "depthwise_backward_input",
                        "depthwise_backward_weight", "output_size"]),
    "pool": (cpu_pool, ["max_pool2d", "unpool", "gather", "box_mean", "box_mean_backward"]),
    "activation": (cpu_activation, ["relu_rule_backward", "relu_region"]),
}


class FakeCupyArray:  # backend recognises CuPy arrays by their type's module, without importing CuPy
    __module__ = "cupy._core.core"


@pytest.mark.parametrize("family", list(INTERFACE))
def test_gpu_kernel_modules_offer_the_cpu_modules_functions(family):
    cpu, names = INTERFACE[family]
    gpu = backend.gpu_kernels(family, "test")
    for name in names:
        assert list(inspect.signature(getattr(gpu, name)).parameters) == \
            list(inspect.signature(getattr(cpu, name)).parameters), f"gpu_{family}.{name}"


def test_the_one_seam_picks_kernels_by_array_type():
    fake = FakeCupyArray()
    assert backend.kernels("conv", fake, "conv2d").__name__ == "minivis.kernels.gpu_conv"
    assert backend.kernels("pool", fake, "max_pool2d").__name__ == "minivis.kernels.gpu_pool"
    assert backend.kernels("activation", fake, "relu").__name__ == "minivis.kernels.gpu_activation"
    host = np.zeros(3)
    assert backend.kernels("conv", host, "conv2d") is cpu_conv
    assert backend.kernels("pool", host, "max_pool2d") is cpu_pool
    assert backend.kernels("activation", host, "relu") is cpu_activation


def test_missing_numba_cuda_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "minivis.kernels.gpu_conv", None)  # makes its import fail
    with pytest.raises(RuntimeError, match=r"conv2d: the GPU kernels need numba-cuda .*pip install minivis\[gpu\]"):
        backend.kernels("conv", FakeCupyArray(), "conv2d")


def test_force_kernels_checks_its_argument_and_restores_the_seam():
    with pytest.raises(ValueError, match=r"device: expected one of \('cpu', 'gpu'\), got 'tpu'"):
        with backend.force_kernels("tpu"):
            pass
    with backend.force_kernels("cpu"):
        assert backend.kernel_device(np.zeros(2)) == "cpu"
    if SIMULATED:
        with backend.force_kernels("gpu"):
            assert backend.kernel_device(np.zeros(2)) == "gpu"
            assert backend.kernels("conv", np.zeros(2), "conv2d").__name__ == "minivis.kernels.gpu_conv"
    assert backend.kernel_device(np.zeros(2)) == "cpu"


@pytest.mark.skipif(SIMULATED, reason="checks the error raised outside the CUDA simulator")
def test_force_kernels_gpu_needs_the_simulator():
    with pytest.raises(RuntimeError, match=r"force_kernels\('gpu'\) .* NUMBA_ENABLE_CUDASIM=1"):
        with backend.force_kernels("gpu"):
            pass
    assert backend.kernel_device(np.zeros(2)) == "cpu"


def test_kernel_launches_refuse_host_arrays_on_a_real_gpu():
    """Outside the simulator Numba would copy a NumPy argument to the device and back on every
    launch: a silent host round trip, refused with a clear message."""
    launcher = backend.gpu_kernels("launch", "test")
    with pytest.raises(TypeError, match=r"GPU kernel: got a host \(NumPy\) array.*x.to\('gpu'\)"):
        launcher.device_args((np.zeros(2), 3), simulated=False)
    assert launcher.device_args((np.zeros(2), 3), simulated=True)[1] == 3


@no_gpu
def test_every_way_onto_the_gpu_explains_what_is_missing():
    message = r"device='gpu' needs CuPy and a CUDA GPU, but CuPy .*pip install minivis\[gpu\]"
    x = np.ones((1, 2, 3, 3))
    with pytest.raises(RuntimeError, match=message):
        mv.tensor(x, device="gpu")
    with pytest.raises(RuntimeError, match=message):
        mv.tensor(x).to("gpu")
    net = mv.nn.Sequential(mv.nn.Conv2d(2, 3, 3), mv.nn.BatchNorm2d(3))
    with pytest.raises(RuntimeError, match=message):
        net.to("gpu")
    assert all(p.device == "cpu" for p in net.parameters())  # nothing moved half-way


def test_tf32_is_an_explicit_opt_in():
    assert backend.tf32_allowed() is False  # the default: full float32 GEMMs
    with pytest.raises(TypeError, match="allow_tf32: allowed must be True or False, got 1"):
        backend.allow_tf32(1)
    try:
        backend.allow_tf32(True)
        assert backend.tf32_allowed() is True
    finally:
        backend.allow_tf32(False)
    assert backend.tf32_allowed() is False


def test_import_minivis_does_not_load_numba_cuda():
    """numba.cuda takes about a second to import: only the first GPU array may pay for it."""
    code = ("import sys, numpy as np, minivis as mv\n"
            "x = mv.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)\n"
            "y = mv.F.max_pool2d(mv.F.relu(mv.F.conv2d(x, np.ones((1, 1, 3, 3)))), 2)\n"
            "y.backward(np.ones(y.shape))\n"
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@no_gpu
def test_kernel_benchmark_on_gpu_without_one_says_what_is_missing(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--device", "gpu", "--quick", "--threads", "1",
           "--out", str(tmp_path), "--readme", "none"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--device gpu needs CuPy with a visible CUDA device (pip install minivis[gpu])" in proc.stderr
    assert not list(tmp_path.iterdir())  # no partial record
