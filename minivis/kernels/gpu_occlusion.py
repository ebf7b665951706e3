"""The splice of incremental occlusion on the GPU: no Numba-CUDA kernel, the plain-array version.

``cpu_occlusion.naive_gather`` is array-module generic, so on CuPy arrays it is a handful of
fancy-index gathers on the device; it is also the reference the CPU kernel is tested equal to.
"""

from __future__ import annotations

from typing import Any

from minivis.kernels.cpu_occlusion import naive_gather


def gather(cache: Any, img: Any, region: Any, ry0: Any, rx0: Any, wy0: Any, wx0: Any, wh: int, ww: int,
           pad: float = 0.0) -> Any:
    """Windows of the patched maps (see ``cpu_occlusion.naive_gather``), on the GPU."""
    return naive_gather(cache, img, region, ry0, rx0, wy0, wx0, wh, ww, pad)
