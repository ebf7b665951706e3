"""Every GPU kernel compiles for a real GPU (PTX for compute capability 8.0), without a GPU.

The simulator runs the kernels as Python, so it cannot catch what only the CUDA target rejects
(an untyped expression, a NumPy call Numba-CUDA does not support). Numba can compile to PTX on a
machine without a GPU when the CUDA compiler libraries (NVVM, NVRTC) are installed; elsewhere,
and under the simulator, this module is skipped with the reason.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu.sim import SIMULATED

pytestmark = pytest.mark.skipif(SIMULATED, reason="compiles for a real GPU: run without NUMBA_ENABLE_CUDASIM")


def _signatures():
    """kernel name -> argument types, for each float dtype (arrays C-contiguous, as launched)."""
    from numba import types  # noqa: PLC0415

    i64 = types.int64
    index = types.Array(i64, 1, "C")
    out = {}
    for dtype in (types.float32, types.float64):
        def a(ndim, dt=dtype):
            return types.Array(dt, ndim, "C")
        geometry = (i64,) * 6
        out[dtype.name] = {
            "gpu_conv._im2col": (a(4), i64, i64, *geometry, i64, a(3)),
            "gpu_conv._col2im": (a(3), i64, i64, *geometry, i64, i64, a(4)),
            "gpu_conv._depthwise_forward": (a(4), a(4), *geometry, a(4)),
            "gpu_conv._depthwise_backward_input": (a(4), a(4), *geometry, a(4)),
            "gpu_conv._depthwise_backward_weight": (a(4), a(4), *geometry, a(4)),
            "gpu_pool._max_pool2d": (a(3), *(i64,) * 8, a(3), types.Array(i64, 3, "C")),
            "gpu_pool._unpool": (a(2), types.Array(i64, 2, "C"), a(2)),
            "gpu_pool._gather": (a(2), types.Array(i64, 2, "C"), a(2)),
            "gpu_pool._box_mean": (a(3), *(index,) * 6, a(3)),
            "gpu_pool._box_mean_backward": (a(3), *(index,) * 6, a(3)),  # first/last bins per pixel, divisors
            "gpu_activation._relu_rule_backward": (a(1), a(1), types.float64, types.float64, dtype, i64, a(1)),
        }
    return out


# Compiling runs in a fresh interpreter: numba-cuda keeps per-thread driver state, and after other
# tests have probed for a GPU (and found none) in this process, compiling a kernel that calls a
# device function can fail for reasons that have nothing to do with the kernel.
COMPILE_SCRIPT = """
import importlib, sys
from numba import cuda, types
from tests.gpu.test_kernels_compile import _signatures

def probe(a):
    a[0] = 1.0

try:
    cuda.compile_ptx(probe, (types.Array(types.float32, 1, "C"),), cc=(8, 0))
except Exception as err:  # no NVVM/NVRTC libraries on this machine
    print(f"SKIP no CUDA compiler libraries to compile PTX with ({type(err).__name__}: {str(err)[:120]})")
    sys.exit(0)
for name, signature in _signatures()[sys.argv[1]].items():
    module, kernel = name.split(".")
    fn = getattr(importlib.import_module(f"minivis.kernels.{module}"), kernel)
    ptx, _ = cuda.compile_ptx(fn.py_func, signature, cc=(8, 0))
    assert ".entry" in ptx or ".visible" in ptx, name
    print("compiled", name)
print("OK")
"""


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_gpu_kernel_compiles_to_ptx(dtype):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, dtype], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.stdout.startswith("SKIP"):
        pytest.skip(proc.stdout[5:].strip())
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout[-2000:] + proc.stderr[-3000:]
