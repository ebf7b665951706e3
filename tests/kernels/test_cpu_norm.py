"""The eval-mode batch-norm kernels (affine map; affine map and rectifier fused) against their plain twins
(small: also runs without the JIT)."""

import numpy as np
import pytest

from minivis.kernels import cpu_activation, cpu_norm, cpu_threads
from minivis.rules import DECONVNET, GRADIENT, GUIDED


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


# ----------------------------------------------------------------------------- batch norm + rectifier, fused
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (0, 3, 2, 2)])
@pytest.mark.parametrize("high", [6.0, np.inf])
def test_affine_clip_is_the_affine_map_then_the_clip_bit_for_bit(rng, dtype, shape, high):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    scale, shift = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    if x.size:
        x.reshape(-1)[0] = np.nan
    y, region = cpu_norm.affine_clip(x, scale, shift, dtype(0), dtype(high), region=True)
    expected = cpu_norm.naive_affine_clip(x, scale, shift, dtype(0), dtype(high))
    np.testing.assert_array_equal(y, expected)  # NaN in the same places, every other value identical
    assert y.dtype == dtype
    np.testing.assert_array_equal(region, cpu_activation.naive_relu_region(expected, dtype(0), dtype(high)))
    y_only, none = cpu_norm.affine_clip(x, scale, shift, dtype(0), dtype(high))
    assert none is None
    np.testing.assert_array_equal(y_only, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("high", [6.0, np.inf])
def test_affine_clip_band_finishes_a_band_in_place_as_affine_clip_would(rng, dtype, high):
    out = (3 * rng.standard_normal((3, 4, 9, 7))).astype(dtype)
    out[1, 2, 3, :3] = [np.nan, 0.0, -0.0]
    scale, shift = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    before = out.copy()
    cpu_norm.affine_clip_band(out, slice(1, 3), 2, 6, scale, shift, 0.0, high)  # images 1-2, rows 2-5
    expected = before.copy()
    expected[1:3, :, 2:6] = cpu_norm.naive_affine_clip(before[1:3, :, 2:6], scale, shift, dtype(0), dtype(high))
    np.testing.assert_array_equal(out, expected)  # the band finished, everything around it untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", [GRADIENT, GUIDED, DECONVNET])
@pytest.mark.parametrize("saved", ["output", "region"])
def test_affine_clip_backward_is_the_rule_then_the_scale_bit_for_bit(rng, dtype, rule, saved):
    x = (4 * rng.standard_normal((2, 3, 5, 4))).astype(dtype)
    x[0, 0, 0, :3] = [6.0, 0.0, -0.0]  # ties at the clip bounds send nothing back
    scale = rng.standard_normal(3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    y = np.clip(x, 0, 6)
    key, bounds = (y, (dtype(0), dtype(6))) if saved == "output" else (cpu_activation.relu_region(y, 0, 6), (0.5, 1.5))
    out = cpu_norm.affine_clip_backward(g, key, scale, *bounds, rule)
    by_rule = cpu_activation.relu_rule_backward(g, key, *bounds, 0.0, rule)
    np.testing.assert_array_equal(out, by_rule * scale.reshape(1, 3, 1, 1))
    assert out.dtype == dtype
