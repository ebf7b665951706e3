"""Regularisers (minivis/vis/regularizers.py): penalty gradients against finite differences and
PyTorch, each prior's effect on an image, the clipping masks, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

import minivis as mv
from minivis.vis.synthesis import regularizers as reg
from tests.gradcheck import check_gradients


def torch_tv(x: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    return ((dx ** 2 + dy ** 2 + eps) ** (beta / 2)).sum(dim=(1, 2, 3))


# ----------------------------------------------------------------------------- penalties
@pytest.mark.parametrize("beta, eps", [(2.0, None), (1.0, 1e-3), (1.5, 1e-3), (3.0, None)])
@pytest.mark.parametrize("shape", [(1, 1, 4, 5), (2, 3, 5, 4)])
def test_tv_gradient_matches_finite_differences(beta, eps, shape, rng: np.random.Generator) -> None:
    check_gradients(lambda t: reg.tv(t, beta, eps), [rng.standard_normal(shape)], rng=rng)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 6.0])
def test_alpha_norm_gradient_matches_finite_differences(alpha, rng: np.random.Generator) -> None:
    x = rng.uniform(0.2, 1.5, (2, 3, 4, 4)) * rng.choice([-1.0, 1.0], (2, 3, 4, 4))  # away from the kink at 0
    check_gradients(lambda t: reg.alpha_norm(t, alpha), [x], rng=rng)


def test_l2_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    check_gradients(reg.l2, [rng.standard_normal((2, 3, 4, 5))], rng=rng)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", ["tv2", "tv1", "alpha6", "l2"])
def test_penalties_match_pytorch(name, dtype, rtol, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    upstream = rng.standard_normal(2).astype(dtype)
    ours = {"tv2": lambda t: reg.tv(t, 2.0), "tv1": lambda t: reg.tv(t, 1.0, 1e-6),
            "alpha6": lambda t: reg.alpha_norm(t, 6.0), "l2": reg.l2}[name]
    theirs = {"tv2": lambda t: torch_tv(t, 2.0, 0.0), "tv1": lambda t: torch_tv(t, 1.0, 1e-6),
              "alpha6": lambda t: (t.abs() ** 6).sum(dim=(1, 2, 3)), "l2": lambda t: (t * t).sum(dim=(1, 2, 3))}[name]
    xm = mv.tensor(x, requires_grad=True)
    value = ours(xm)
    value.backward(upstream)
    xt = torch.tensor(x, requires_grad=True)
    reference = theirs(xt)
    reference.backward(torch.tensor(upstream))
    assert value.dtype == dtype and xm.grad.dtype == dtype
    np.testing.assert_allclose(value.numpy(), reference.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=rtol, atol=rtol * np.abs(xt.grad.numpy()).max())


def test_tv_of_a_constant_image_is_zero_and_of_a_ramp_is_known() -> None:
    assert reg.tv(mv.tensor(np.full((1, 2, 4, 4), 3.0))).item() == 0.0
    ramp = np.arange(5.0)[None, None, None, :] * np.ones((1, 1, 3, 1))  # dx = 1, dy = 0 everywhere
    assert reg.tv(mv.tensor(ramp), 2.0).item() == pytest.approx(2 * 4)  # (H-1)(W-1) = 2*4 terms of 1
    assert reg.tv(mv.tensor(2 * ramp), 1.0, 0.0).item() == pytest.approx(2 * 4 * 2)


@pytest.mark.parametrize("penalty", [lambda t: reg.tv(t, 2.0), lambda t: reg.tv(t, 1.0),
                                     lambda t: reg.alpha_norm(t, 6.0), reg.l2], ids=["tv2", "tv1", "alpha6", "l2"])
def test_a_small_step_against_its_own_gradient_decreases_the_penalty(penalty, rng: np.random.Generator) -> None:
    x = mv.tensor(rng.standard_normal((1, 3, 16, 16)), requires_grad=True)
    before = penalty(x)
    before.backward(np.ones(1))
    step = 1e-3 / np.abs(x.grad).max()
    after = penalty(mv.tensor(x.data - step * x.grad))
    assert after.item() < before.item()


def test_tv_descent_smooths_noise(rng: np.random.Generator) -> None:
    """Many TV steps turn noise into a smoother image: less energy in the top half of the spectrum."""
    x = rng.standard_normal((1, 1, 32, 32))
    start = x.copy()
    for _ in range(50):
        t = mv.tensor(x, requires_grad=True)
        reg.tv(t, 2.0).backward(np.ones(1))
        x = x - 0.05 * t.grad
    assert high_frequency_energy(x) < 0.2 * high_frequency_energy(start)


# ----------------------------------------------------------------------------- image operations
def high_frequency_energy(x: np.ndarray) -> float:
    """Energy of the frequencies above a quarter of the sampling rate (|f| > 0.25 cycles/pixel)."""
    spectrum = np.abs(np.fft.fft2(x, axes=(-2, -1))) ** 2
    fy = np.fft.fftfreq(x.shape[-2])[:, None]
    fx = np.fft.fftfreq(x.shape[-1])[None, :]
    return float(spectrum[..., np.sqrt(fx ** 2 + fy ** 2) > 0.25].sum())


def test_gaussian_blur_removes_high_frequencies_and_keeps_the_mean(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    blurred = reg.gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape and blurred.dtype == np.float32
    # a Gaussian's power gain exp(-4 pi^2 sigma^2 f^2) is at most 0.085 above f = 0.25 for sigma = 1
    assert high_frequency_energy(blurred) < 0.085 * high_frequency_energy(x)
    np.testing.assert_allclose(blurred.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=1e-5)  # reflecting borders
    # channel by channel, the same as a plain 2-D Gaussian filter; sigma 0 is the identity
    np.testing.assert_allclose(blurred[1, 2], scipy.ndimage.gaussian_filter(x[1, 2], 1.0, mode="reflect"), rtol=1e-6)
    np.testing.assert_array_equal(reg.gaussian_blur(x, 0.0), x)


def test_small_norm_mask_picks_the_weakest_pixels() -> None:
    x = np.zeros((1, 3, 2, 2))
    x[0, :, 0, 0] = [3.0, 4.0, 0.0]   # norm 5
    x[0, :, 0, 1] = [0.0, 0.0, -1.0]  # norm 1
    x[0, :, 1, 0] = [0.0, 2.0, 0.0]   # norm 2
    x[0, :, 1, 1] = [-6.0, 0.0, 8.0]  # norm 10
    mask = reg.small_norm_mask(x, 50)
    assert mask.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(mask[0, 0], [[False, True], [True, False]])
    clipped = reg.clip_small_norm(x, 50)
    np.testing.assert_array_equal(clipped[0, :, 0, 1], 0)
    np.testing.assert_array_equal(clipped[0, :, 1, 0], 0)
    np.testing.assert_array_equal(clipped[0, :, ::1, ::1][:, [0, 1], [0, 1]], x[0][:, [0, 1], [0, 1]])
    assert not reg.small_norm_mask(x, 0).any()


def test_small_contribution_mask_uses_the_absolute_linearised_contribution() -> None:
    x = np.ones((1, 2, 1, 4))
    grad = np.zeros((1, 2, 1, 4))
    grad[0, :, 0, 0] = [0.1, 0.0]     # contribution  0.1
    grad[0, :, 0, 1] = [-3.0, -2.0]   # contribution -5: large in size, kept
    grad[0, :, 0, 2] = [0.5, -0.3]    # contribution  0.2
    grad[0, :, 0, 3] = [2.0, 2.0]     # contribution  4
    mask = reg.small_contribution_mask(x, grad, 50)
    np.testing.assert_array_equal(mask[0, 0, 0], [True, False, True, False])
    clipped = reg.clip_small_contribution(x, grad, 50)
    np.testing.assert_array_equal(clipped[0, :, 0], [[0, 1, 0, 1], [0, 1, 0, 1]])


def test_percentiles_are_per_image(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 8, 8))
    x[1] *= 100  # a much stronger second image must not swallow the first one's pixels
    mask = reg.small_norm_mask(x, 25)
    assert mask[0].sum() == mask[1].sum() == 16


def test_valid_range_and_clip_to_range() -> None:
    low, high = reg.valid_range((0.5, 0.25), (0.5, 0.25))
    np.testing.assert_allclose(low.ravel(), [-1.0, -1.0])
    np.testing.assert_allclose(high.ravel(), [1.0, 3.0])
    x = np.array([-5.0, 0.0, 5.0]).reshape(1, 1, 1, 3) * np.ones((1, 2, 1, 1))
    clipped = reg.clip_to_range(x, low, high)
    np.testing.assert_array_equal(clipped[0, 1, 0], [-1.0, 0.0, 3.0])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, match", [
    (lambda: reg.tv(mv.tensor(np.ones((3, 4, 4)))), ValueError, r"tv: x must be 4-D \(N, C, H, W\), got shape"),
    (lambda: reg.tv(mv.tensor(np.ones((1, 1, 1, 4)))), ValueError, "tv: the image must be at least 2x2"),
    (lambda: reg.tv(mv.tensor(np.ones((1, 1, 4, 4))), beta=0.5), ValueError, "tv: beta must be >= 1.0, got 0.5"),
    (lambda: reg.tv(mv.tensor(np.ones((1, 1, 4, 4))), eps=-1.0), ValueError, "tv: eps must be >= 0"),
    (lambda: reg.tv([[1.0]]), TypeError, "tv: x must be a Tensor or an array"),
    (lambda: reg.alpha_norm(mv.tensor(np.ones((1, 1, 4, 4))), 0.5), ValueError, "alpha_norm: alpha must be >= 1.0"),
    (lambda: reg.alpha_norm(mv.tensor(np.ones((1, 1, 4, 4))), "6"), TypeError, "alpha_norm: alpha must be a number"),
    (lambda: reg.l2(mv.tensor(np.ones(4))), ValueError, "l2: x must be 4-D"),
    (lambda: reg.gaussian_blur(np.ones((1, 1, 4, 4)), -1.0), ValueError, "gaussian_blur: sigma must be >= 0.0"),
    (lambda: reg.gaussian_blur(np.ones((4, 4)), 1.0), ValueError, r"gaussian_blur: x must be \(N, C, H, W\)"),
    (lambda: reg.gaussian_blur(np.ones((1, 1, 4, 4), dtype=np.int64), 1.0), TypeError,
     "gaussian_blur: x must be a float array, got dtype int64"),
    (lambda: reg.gaussian_blur([1.0], 1.0), TypeError, "gaussian_blur: x must be an array"),
    (lambda: reg.small_norm_mask(np.ones((1, 1, 4, 4)), 101), ValueError,
     r"small_norm_mask: pct must be in \[0.0, 100.0\], got 101"),
    (lambda: reg.clip_small_norm(np.ones((1, 1, 4, 4)), -1), ValueError, "pct must be in"),
    (lambda: reg.small_contribution_mask(np.ones((1, 1, 4, 4)), np.ones((1, 1, 4, 5)), 10), ValueError,
     r"small_contribution_mask: grad must have x's shape \(1, 1, 4, 4\), got \(1, 1, 4, 5\)"),
])
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
