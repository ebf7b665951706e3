"""The splice kernel of incremental occlusion (minivis/kernels/cpu_occlusion.py) against its plain
twin ``naive_gather`` (which is also what the GPU runs, gpu_occlusion). Also run with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numpy as np
import pytest

from minivis.kernels import gpu_occlusion
from minivis.kernels.cpu_occlusion import gather, naive_gather


@pytest.mark.parametrize("pad", [0.0, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_kernel_equals_its_numpy_twin(pad, dtype, rng) -> None:
    cache = rng.standard_normal((3, 4, 9, 11)).astype(dtype)
    region = rng.standard_normal((6, 4, 3, 5)).astype(dtype)
    img = np.array([0, 2, 1, 1, 0, 2])
    ry0, rx0 = np.array([0, 6, 3, 2, 5, 0]), np.array([0, 6, 2, 0, 3, 6])
    wy0, wx0 = np.array([-2, 4, 1, 0, 7, -3]), np.array([-1, 5, 0, -2, 2, 4])
    got = gather(cache, img, region, ry0, rx0, wy0, wx0, 7, 9, pad)
    want = naive_gather(cache, img, region, ry0, rx0, wy0, wx0, 7, 9, pad)
    np.testing.assert_array_equal(got, want)
    # spot checks of the definition: padding outside the map, the region inside it, the cache elsewhere
    assert got[0, 1, 0, 0] == pad                                   # map row -2
    assert got[0, 2, 2, 1] == region[0, 2, 0, 0]                    # map (0, 0) is in item 0's region
    assert got[1, 3, 0, 0] == cache[2, 3, 4, 5]                     # map (4, 5): before item 1's region


def test_the_gpu_module_runs_the_twin(rng) -> None:
    """gpu_occlusion has no CUDA kernel: it is the array version, run here on NumPy arrays."""
    cache = rng.standard_normal((2, 3, 6, 6))
    region = rng.standard_normal((2, 3, 2, 2))
    args = (np.array([1, 0]), np.array([1, 4]), np.array([0, 3]), np.array([-1, 2]), np.array([0, 1]), 5, 4, -np.inf)
    np.testing.assert_array_equal(gpu_occlusion.gather(cache, args[0], region, *args[1:]),
                                  gather(cache, args[0], region, *args[1:]))


def test_gather_equals_its_twin_on_random_geometries(rng) -> None:
    """Windows partly or wholly outside the map, wider than it, regions cut by the window's edges or
    missing it: the kernel's runs (pad, cached row, pad, region) against the twin's element rule."""
    for _ in range(60):
        h, w = rng.integers(1, 9, size=2)
        rh, rw = rng.integers(1, h + 1), rng.integers(1, w + 1)
        wh, ww = rng.integers(1, 12, size=2)
        items = int(rng.integers(1, 4))
        cache = rng.standard_normal((2, 3, h, w))
        region = rng.standard_normal((items, 3, rh, rw))
        img = rng.integers(0, 2, items)
        ry0, rx0 = rng.integers(0, h - rh + 1, items), rng.integers(0, w - rw + 1, items)
        wy0, wx0 = rng.integers(-12, h + 2, items), rng.integers(-12, w + 2, items)
        pad = float(rng.choice([0.0, -np.inf]))
        np.testing.assert_array_equal(gather(cache, img, region, ry0, rx0, wy0, wx0, int(wh), int(ww), pad),
                                      naive_gather(cache, img, region, ry0, rx0, wy0, wx0, int(wh), int(ww), pad))
