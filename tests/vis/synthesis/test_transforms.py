"""Transformation robustness (minivis/vis/transforms_robust.py): each transform against its NumPy or
PyTorch definition and finite differences, seeded randomness, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF  # noqa: N812

import minivis as mv
from minivis.vis.synthesis import transforms as tr
from tests.gradcheck import check_gradients


def test_crop_and_roll_are_slicing_and_np_roll(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 5, 6))
    np.testing.assert_array_equal(tr.crop(mv.tensor(x), 1, 2, 3, 4).numpy(), x[:, :, 1:4, 2:6])
    for dy, dx in [(0, 0), (2, -1), (-7, 3), (5, 6)]:
        np.testing.assert_array_equal(tr.roll(mv.tensor(x), dy, dx).numpy(), np.roll(x, (dy, dx), axis=(2, 3)))


@pytest.mark.parametrize("op", [
    lambda t: tr.crop(t, 1, 0, 3, 4),
    lambda t: tr.roll(t, 2, -3),
    lambda t: tr.scale(t, 1.3),
    lambda t: tr.scale(t, 0.8),
    lambda t: tr.rotate(t, 17.0),
    lambda t: tr.rotate(t, -90.0),
    lambda t: tr.Pad(2, mode="reflect")(t, None),
    lambda t: tr.standard_transforms(0.25)(t, np.random.default_rng(4)),
], ids=["crop", "roll", "scale_up", "scale_down", "rotate", "rotate_90", "pad", "standard"])
def test_transform_gradients_match_finite_differences(op, rng: np.random.Generator) -> None:
    check_gradients(op, [rng.standard_normal((1, 2, 5, 6))], rng=rng)


def test_rotating_by_90_degrees_is_rot90(rng: np.random.Generator) -> None:
    x = rng.standard_normal((1, 2, 5, 5))
    out = tr.rotate(mv.tensor(x), 90.0).numpy()
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(2, 3)), atol=1e-12)  # counter-clockwise as displayed
    np.testing.assert_array_equal(tr.rotate(mv.tensor(x), 360.0).numpy(), x)


@pytest.mark.parametrize("degrees", [-10.0, 7.5, 33.0])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_rotate_matches_pytorch_grid_sample(degrees, dtype, rtol, rng: np.random.Generator) -> None:
    """The same bilinear warp as affine_grid + grid_sample (zeros outside, pixel centres at +-1) on square images."""
    x = rng.standard_normal((2, 3, 9, 9)).astype(dtype)
    upstream = rng.standard_normal(x.shape).astype(dtype)
    xm = mv.tensor(x, requires_grad=True)
    out = tr.rotate(xm, degrees)
    out.backward(upstream)

    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]] * 2,
                         dtype=torch.float64 if dtype == np.float64 else torch.float32)
    xt = torch.tensor(x, requires_grad=True)
    grid = TF.affine_grid(theta, list(x.shape), align_corners=True)
    ref = TF.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    ref.backward(torch.tensor(upstream))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=rtol, atol=rtol)


def test_scale_is_bilinear_interpolate(rng: np.random.Generator) -> None:
    x = rng.standard_normal((1, 1, 10, 8))
    out = tr.scale(mv.tensor(x), 1.25).numpy()
    ref = TF.interpolate(torch.tensor(x), size=(12, 10), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_random_transforms_are_seeded_and_shape_the_image(rng: np.random.Generator) -> None:
    x = mv.tensor(rng.standard_normal((1, 3, 32, 32)))
    assert tr.Pad(4)(x, rng).shape == (1, 3, 40, 40)
    assert tr.Jitter(5)(x, rng).shape == (1, 3, 27, 27)
    assert tr.RandomRoll(5)(x, rng).shape == x.shape
    assert tr.RandomScale([0.5])(x, rng).shape == (1, 3, 16, 16)
    assert tr.ResizeTo((20, 24))(x, rng).shape == (1, 3, 20, 24)
    chain = tr.standard_transforms()
    a = chain(x, np.random.default_rng(7)).numpy()
    b = chain(x, np.random.default_rng(7)).numpy()
    np.testing.assert_array_equal(a, b)
    outs = {chain(x, np.random.default_rng(k)).shape for k in range(8)}
    assert len(outs) > 1  # the scale draw changes the size
    # zero-width transforms are the identity
    for t in (tr.Pad(0), tr.Jitter(0), tr.RandomRoll(0)):
        assert t(x, rng) is x


@pytest.mark.parametrize("call, error, match", [
    (lambda: tr.Jitter(-1), ValueError, "Jitter: d must be >= 0, got -1"),
    (lambda: tr.Jitter(1.5), TypeError, "Jitter: d must be an int, got 1.5"),
    (lambda: tr.Jitter(8)(mv.tensor(np.zeros((1, 1, 8, 8))), np.random.default_rng(0)), ValueError,
     "Jitter: d=8 leaves nothing of a 8x8 image"),
    (lambda: tr.RandomRoll(-2), ValueError, "RandomRoll: d must be >= 0"),
    (lambda: tr.RandomRoll(10**30)(mv.tensor(np.zeros((1, 1, 8, 8))), np.random.default_rng(0)), ValueError,
     "RandomRoll: d=1000000000000000000000000000000 must be less than the size of a 8x8 image"),
    (lambda: tr.Pad(2, mode="wrap"), ValueError, "Pad: mode must be 'reflect', 'constant' or 'replicate'"),
    (lambda: tr.RandomScale([]), ValueError, "RandomScale: scales must be a non-empty list"),
    (lambda: tr.RandomScale([1.0, -0.5]), ValueError, "RandomScale: scales must be a non-empty list of positive"),
    (lambda: tr.RandomRotate([]), ValueError, "RandomRotate: angles must be a non-empty list"),
    (lambda: tr.RandomRotate(["ten"]), TypeError, "RandomRotate: angles must be a number"),
    (lambda: tr.Compose([tr.Pad(1), 3]), TypeError, "Compose: every transform must be callable"),
    (lambda: tr.ResizeTo((0, 4)), ValueError, "ResizeTo: height must be >= 1"),
    (lambda: tr.crop(mv.tensor(np.zeros((1, 1, 4, 4))), 2, 0, 3, 4), ValueError,
     r"crop: window \(top=2, left=0, height=3, width=4\) does not fit in a 4x4 image"),
    (lambda: tr.rotate(mv.tensor(np.zeros((1, 1, 4, 4))), float("inf")), ValueError,
     "rotate: degrees must be a finite number"),
    (lambda: tr.rotate(mv.tensor(np.zeros((4, 4))), 10.0), ValueError, "rotate: x must be 4-D"),
    (lambda: tr.scale(mv.tensor(np.zeros((1, 1, 4, 4))), 0.0), ValueError, "scale: factor must be > 0, got 0.0"),
    (lambda: tr.roll(np.zeros((1, 4, 4)), 1, 1), ValueError, "roll: x must be 4-D"),
])
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
