"""The eval-mode batch-norm affine kernel against its plain-NumPy twin (small: also runs without the JIT)."""

import numpy as np
import pytest

from minivis.kernels import cpu_norm, cpu_threads


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def kernel_twin(request, monkeypatch):
    """Every test here runs on both twins: the serial one (small arrays) and the prange one."""
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 1 << 60 if request.param == "serial" else 0)
    monkeypatch.setattr(cpu_norm, "INSTANCE_MIN_WORK", 1 << 60 if request.param == "serial" else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (0, 3, 2, 2), (1, 1, 1, 1)])
def test_channel_affine_matches_naive(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    scale, shift = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    out = cpu_norm.channel_affine(x, scale, shift)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, cpu_norm.naive_channel_affine(x, scale, shift), rtol=1e-6 if dtype == np.float32
                               else 1e-15, atol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_scale_without_a_shift_is_the_plain_product_bit_for_bit(rng, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    x[0, 0, 0, :2] = [-0.0, 0.0]
    scale = rng.standard_normal(3).astype(dtype)
    out = cpu_norm.channel_affine(x, scale, None)
    expected = x * scale.reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(out, expected)
    assert np.array_equal(np.signbit(out), np.signbit(expected))  # -0.0 stays -0.0 (no "+ 0")
    np.testing.assert_array_equal(cpu_norm.naive_channel_affine(x, scale, None), expected)


def test_channel_affine_reads_a_non_contiguous_input_correctly(rng):
    x = rng.standard_normal((2, 6, 4, 4))[:, ::2]  # every other channel: a strided view
    scale, shift = np.arange(3.0), -np.arange(3.0)
    np.testing.assert_allclose(cpu_norm.channel_affine(x, scale, shift),
                               cpu_norm.naive_channel_affine(x, scale, shift), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 2), (3, 1, 9, 7)])
def test_instance_standardize_matches_naive_and_torch(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 3 + 100).astype(dtype)  # a large mean: cancellation would show
    gamma, beta = rng.uniform(0.5, 2, shape[:2]).astype(dtype), rng.standard_normal(shape[:2]).astype(dtype)
    inv_std, xhat, out = cpu_norm.instance_standardize(x, 1e-5, gamma, beta)
    assert inv_std.dtype == xhat.dtype == out.dtype == dtype and inv_std.shape == shape[:2] + (1, 1)
    want_inv, want_hat, want_out = cpu_norm.naive_instance_standardize(x, 1e-5, gamma, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(inv_std, want_inv, rtol=tol)
    np.testing.assert_allclose(xhat, want_hat, rtol=tol, atol=tol)
    np.testing.assert_allclose(out, want_out, rtol=tol, atol=tol)
    _, plain_hat, plain_out = cpu_norm.instance_standardize(x, 1e-5)  # no affine map: out is xhat
    np.testing.assert_array_equal(plain_out, plain_hat)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.instance_norm(torch.tensor(x.astype(np.float64)), eps=1e-5).numpy()
    np.testing.assert_allclose(xhat, ref, rtol=tol, atol=tol)


def test_instance_standardize_of_a_constant_plane_is_zero():
    x = np.full((1, 2, 3, 3), 7.0, dtype=np.float32)
    inv_std, xhat, _ = cpu_norm.instance_standardize(x, 1e-5)
    assert not xhat.any() and np.allclose(inv_std, 1 / np.sqrt(1e-5))
