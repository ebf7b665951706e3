"""Image parameterisations (minivis/vis/parameterization.py): the irfft2 op against NumPy, PyTorch
and finite differences; FFTImage round trips (image -> spectrum -> image) and its gradient; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.vis.synthesis import parameterization as pz
from tests.gradcheck import check_gradients

SIZES = [(4, 4), (5, 3), (4, 5), (3, 6)]  # even and odd heights and widths (the Nyquist column)


@pytest.mark.parametrize("size", SIZES)
def test_irfft2_forward_is_numpy_irfft2(size, rng: np.random.Generator) -> None:
    h, w = size
    spec = rng.standard_normal((2, 3, h, w // 2 + 1, 2))
    out = pz.irfft2(mv.tensor(spec), size)
    np.testing.assert_allclose(out.numpy(), np.fft.irfft2(spec[..., 0] + 1j * spec[..., 1], s=size, norm="ortho"),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("size", SIZES)
def test_irfft2_gradient_matches_finite_differences(size, rng: np.random.Generator) -> None:
    h, w = size
    check_gradients(lambda t: pz.irfft2(t, size), [rng.standard_normal((1, 2, h, w // 2 + 1, 2))], rng=rng)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("size", SIZES)
def test_irfft2_matches_pytorch(size, dtype, rtol, rng: np.random.Generator) -> None:
    h, w = size
    spec = rng.standard_normal((2, 3, h, w // 2 + 1, 2)).astype(dtype)
    upstream = rng.standard_normal((2, 3, h, w)).astype(dtype)
    ours = mv.tensor(spec, requires_grad=True)
    out = pz.irfft2(ours, size)
    out.backward(upstream)
    theirs = torch.tensor(spec, requires_grad=True)
    ref = torch.fft.irfft2(torch.view_as_complex(theirs), s=size, norm="ortho")
    ref.backward(torch.tensor(upstream))
    assert out.dtype == dtype and ours.grad.dtype == dtype
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=rtol, atol=rtol)


def test_spectrum_scale_and_colour_matrix() -> None:
    scale = pz.spectrum_scale(8, 6)
    assert scale.shape == (8, 4)
    assert scale[0, 0] == pytest.approx(8 / 4)       # DC: 1 / (1 / max(H, W)) / 4
    assert scale[0, 1] == pytest.approx(1 / (1 / 6) / 4)  # f = 1/6 cycles per pixel
    assert np.all(np.diff(scale[0]) < 0)               # higher frequencies get smaller steps
    assert np.linalg.norm(pz.COLOR_MATRIX, axis=0).max() == pytest.approx(1.0)
    np.testing.assert_allclose(pz.spectrum_scale(8, 6, decay_power=0.0), 0.25)


def random_input(rng, shape, mean, std, dtype=np.float64):
    """A model input whose pixels lie inside (0.05, 0.95), where the sigmoid can be inverted."""
    pixels = rng.uniform(0.05, 0.95, shape)
    mean = np.asarray(mean).reshape(1, -1, 1, 1)
    std = np.asarray(std).reshape(1, -1, 1, 1)
    return ((pixels - mean) / std).astype(dtype)


@pytest.mark.parametrize("shape, mean, std, decorrelate", [
    ((2, 3, 8, 8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True),
    ((1, 3, 7, 10), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True),
    ((1, 3, 6, 5), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False),
    ((3, 1, 9, 7), (0.286,), (0.353,), True),  # grey: no colour matrix
])
def test_fft_image_round_trips(shape, mean, std, decorrelate, rng: np.random.Generator) -> None:
    x = random_input(rng, shape, mean, std)
    param = pz.FFTImage(shape, mean, std, decorrelate=decorrelate, dtype=np.float64)
    param.set_image(x)
    np.testing.assert_allclose(param.numpy(), x, rtol=1e-10, atol=1e-10)
    # and the other way: a random spectrum's image re-encodes to a spectrum with the same image
    param.randomize(rng, sd=0.5)
    image = param.numpy()
    param.set_image(image)
    np.testing.assert_allclose(param.numpy(), image, rtol=1e-10, atol=1e-10)


def test_fft_image_float32_round_trip_and_pixels_stay_valid(rng: np.random.Generator) -> None:
    mean, std = (0.498,) * 3, (0.502,) * 3
    x = random_input(rng, (1, 3, 16, 16), mean, std, np.float32)
    param = pz.make_param("fft", x, mean, std)
    assert param.spectrum.dtype == np.float32 and param.numpy().dtype == np.float32
    np.testing.assert_allclose(param.numpy(), x, rtol=1e-4, atol=1e-4)
    param.randomize(rng, sd=100.0)  # however far the spectrum goes, the sigmoid keeps pixels in (0, 1)
    pixels = param.numpy() * 0.502 + 0.498
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_out_of_range_pixels_are_clipped_into_the_sigmoid_range() -> None:
    param = pz.FFTImage((1, 1, 4, 4), 0.0, 1.0, dtype=np.float64, eps=1e-3)
    param.set_image(np.full((1, 1, 4, 4), 5.0))  # pixel 5 is not reachable: it becomes 1 - eps
    np.testing.assert_allclose(param.numpy(), 1 - 1e-3, rtol=1e-9)


@pytest.mark.parametrize("shape, decorrelate", [((1, 3, 4, 5), True), ((2, 1, 5, 4), False)])
def test_fft_image_gradient_matches_finite_differences(shape, decorrelate, rng: np.random.Generator) -> None:
    mean, std = (0.4,) * shape[1], (0.3,) * shape[1]
    param = pz.FFTImage(shape, mean, std, decorrelate=decorrelate, dtype=np.float64)

    def image_of(spectrum: mv.Tensor) -> mv.Tensor:
        param.spectrum = spectrum
        return param.image()

    spectrum = rng.standard_normal(param.spectrum.shape) * 0.3
    check_gradients(image_of, [spectrum], rng=rng)


def test_pixel_image_is_the_parameter(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    param = pz.make_param("pixel", x)
    assert param.image() is param.params[0] and param.params[0].requires_grad
    np.testing.assert_array_equal(param.numpy(), x)
    x[0, 0, 0, 0] = 99.0  # the parameter holds its own copy
    assert param.numpy()[0, 0, 0, 0] != 99.0
    param.set_image(np.zeros((2, 3, 4, 4)))
    assert param.numpy().dtype == np.float32 and not param.numpy().any()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, match", [
    (lambda: pz.make_param("dct", np.zeros((1, 3, 4, 4))), ValueError,
     r"optimize: param must be one of \('pixel', 'fft'\), got 'dct'"),
    (lambda: pz.irfft2(mv.tensor(np.zeros((1, 4, 3, 2))), (4, 6)), ValueError,
     r"irfft2: spectrum must be \(\.\.\., 4, 4, 2\) for an image of size \(4, 6\), got shape \(1, 4, 3, 2\)"),
    (lambda: pz.irfft2([[0.0, 1.0]], (4, 4)), TypeError, "irfft2: spectrum must be a Tensor or an array, got list"),
    (lambda: pz.FFTImage((1, 3, 4), 0.5, 0.5), ValueError, r"FFTImage: shape must be \(N, C, H, W\)"),
    (lambda: pz.FFTImage((1, 3, 4, 4), (0.5, 0.5), 0.5), ValueError,
     "FFTImage: mean and std need 1 or 3 values, got 2 and 1"),
    (lambda: pz.FFTImage((1, 3, 4, 4), 0.5, 0.5).set_image(np.zeros((1, 3, 4, 5))), ValueError,
     r"FFTImage.set_image: image must have shape \(1, 3, 4, 4\), got \(1, 3, 4, 5\)"),
    (lambda: pz.PixelImage(np.zeros((3, 4, 4))), ValueError, r"PixelImage: x must be \(N, C, H, W\)"),
    (lambda: pz.PixelImage(np.zeros((1, 1, 4, 4))).set_image(np.zeros((1, 1, 4, 3))), ValueError,
     "PixelImage.set_image: image must have shape"),
])
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
