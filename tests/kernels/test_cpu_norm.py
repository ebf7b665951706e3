"""The eval-mode batch-norm affine kernel against its plain-NumPy twin (small: also runs without the JIT)."""

import numpy as np
import pytest

from minivis.kernels import cpu_norm, cpu_threads


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def kernel_twin(request, monkeypatch):
    """Every test here runs on both twins: the serial one (small arrays) and the prange one."""
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 1 << 60 if request.param == "serial" else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (0, 3, 2, 2), (1, 1, 1, 1)])
def test_channel_affine_matches_naive(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    scale, shift = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    out = cpu_norm.channel_affine(x, scale, shift)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, cpu_norm.naive_channel_affine(x, scale, shift), rtol=1e-6 if dtype == np.float32
                               else 1e-15, atol=1e-6 if dtype == np.float32 else 1e-15)


def test_channel_affine_reads_a_non_contiguous_input_correctly(rng):
    x = rng.standard_normal((2, 6, 4, 4))[:, ::2]  # every other channel: a strided view
    scale, shift = np.arange(3.0), -np.arange(3.0)
    np.testing.assert_allclose(cpu_norm.channel_affine(x, scale, shift),
                               cpu_norm.naive_channel_affine(x, scale, shift), rtol=1e-15, atol=1e-15)
