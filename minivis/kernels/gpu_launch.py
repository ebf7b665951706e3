"""How the GPU kernels (``gpu_conv``, ``gpu_pool``, ``gpu_activation``) are launched.

The kernels are Numba-CUDA (``@cuda.jit``) functions on plain arrays. On a GPU they receive CuPy
arrays, which Numba reads in place through the CUDA array interface (no copy), and they run on
CuPy's current stream, so they queue behind and ahead of CuPy's own work (cuBLAS GEMMs,
elementwise math) without any host synchronisation.

Under ``NUMBA_ENABLE_CUDASIM=1`` the very same kernel source runs on the CPU, on NumPy arrays:
the simulator runs every CUDA thread as a Python thread. That is how CI checks the kernels'
index arithmetic on machines without a GPU (``tests/gpu/test_kernels_sim.py``).

Every kernel is written as a *grid-stride loop*: thread ``t`` of ``T`` handles elements
``t, t + T, t + 2T, ...``. On a GPU the grid is sized so that each thread gets one element (up to
``MAX_BLOCKS`` blocks); under the simulator it is one small block, because starting a Python
thread costs far more than the element it would compute (measured: benchmarks/README.md,
"Design measurements", gpu_launch).

This module imports ``numba.cuda``, which is slow to import; the op modules therefore import
the GPU kernel modules only when the first GPU array (or forced-GPU test) arrives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from minivis import backend

SIMULATED = bool(cuda.config.ENABLE_CUDASIM)  # read once: numba.cuda fixes it at import time

THREADS = 256            # threads per block on a GPU: a multiple of the 32-thread warp
MAX_BLOCKS = 1 << 16     # grid cap; the grid-stride loops cover anything larger
SIM_THREADS = 16         # simulator: one block of a few threads (each is a Python thread)
REDUCE_THREADS = 4 if SIMULATED else 128  # block size of the block-reduction kernels (a power of two)

_streams: dict[int, Any] = {}


def _stream(xp_module: Any) -> Any:
    """CuPy's current stream as a Numba stream (0, Numba's default, for CuPy's null stream)."""
    ptr = xp_module.cuda.get_current_stream().ptr
    if ptr == 0:
        return 0
    if ptr not in _streams:
        _streams[ptr] = cuda.external_stream(ptr)
    return _streams[ptr]


def device_args(args: tuple, simulated: bool = SIMULATED) -> tuple:
    """The kernel arguments as Numba sees them: CuPy arrays as zero-copy device views.

    ``sync=False``: the kernel runs on the stream that produced the arrays (CuPy's current one),
    so Numba need not wait for it. A NumPy array on a real GPU would be copied to the device and
    back by Numba on every launch, a silent host round trip: that is an error here.
    """
    out = []
    for a in args:
        if backend.is_gpu_array(a):
            a = cuda.as_cuda_array(a, sync=False)
        elif isinstance(a, np.ndarray) and not simulated:
            raise TypeError("GPU kernel: got a host (NumPy) array; ops on the GPU must keep every array "
                            "on the device (move inputs with x.to('gpu'))")
        out.append(a)
    return tuple(out)


def launch(kernel: Any, n: int, like: Any, *args: Any) -> None:
    """Run a grid-stride ``kernel(*args)`` over ``n`` elements on ``like``'s device and stream."""
    if n <= 0:
        return
    if SIMULATED:
        blocks, threads = 1, min(n, SIM_THREADS)
    else:
        threads = THREADS
        blocks = min(-(-n // THREADS), MAX_BLOCKS)
    launch_blocks(kernel, blocks, threads, like, *args)


def launch_blocks(kernel: Any, blocks: int, threads: int, like: Any, *args: Any) -> None:
    """Run ``kernel[blocks, threads](*args)`` on CuPy's current stream (block-reduction kernels)."""
    if blocks <= 0:
        return
    stream = _stream(backend.xp(like)) if backend.is_gpu_array(like) else 0
    kernel[blocks, threads, stream](*device_args(args))
