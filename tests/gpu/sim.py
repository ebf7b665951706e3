"""Whether this test process runs Numba's CUDA simulator, and why the GPU test modules skip.

``NUMBA_ENABLE_CUDASIM`` is read once, when ``numba.cuda`` is first imported, so it must be set for
the whole pytest process: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/gpu`` (a line of .ci/run).
"""

import os

from minivis import backend

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

SIMULATOR_REASON = ("GPU kernels under the CUDA simulator: run `NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/gpu` "
                    "(the flag must be set before numba.cuda is imported)")


def gpu_missing() -> str | None:
    """Why the real-GPU tests cannot run here, or None."""
    if SIMULATED:
        return "needs a real GPU (the CUDA simulator is on)"
    if not backend.gpu_available():
        return "needs CuPy and a CUDA GPU"
    return None
