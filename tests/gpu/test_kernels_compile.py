"""Every GPU kernel compiles for a real GPU (PTX for compute capability 8.0), without a GPU.

The simulator runs the kernels as Python, so it cannot catch what only the CUDA target rejects
(an untyped expression, a NumPy call Numba-CUDA does not support). Numba can compile to PTX on a
machine without a GPU when the CUDA compiler libraries (NVVM, NVRTC) are installed; elsewhere,
and under the simulator, this module is skipped with the reason.
"""

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


@pytest.fixture(scope="module")
def compile_ptx():
    from numba import cuda, types  # noqa: PLC0415

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (types.Array(types.float32, 1, "C"),), cc=(8, 0))
    except Exception as err:  # no NVVM/NVRTC libraries on this machine
        pytest.skip(f"no CUDA compiler libraries to compile PTX with ({type(err).__name__}: {str(err)[:120]})")
    return lambda kernel, signature: cuda.compile_ptx(kernel.py_func, signature, cc=(8, 0))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_gpu_kernel_compiles_to_ptx(compile_ptx, dtype):
    import importlib  # noqa: PLC0415

    for name, signature in _signatures()[dtype].items():
        module, kernel = name.split(".")
        ptx, _ = compile_ptx(getattr(importlib.import_module(f"minivis.kernels.{module}"), kernel), signature)
        assert ".entry" in ptx or ".visible" in ptx, name
