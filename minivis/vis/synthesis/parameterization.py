"""How an image being optimised is stored: the *parameterisation* the optimiser actually moves.

Gradient ascent does not have to move pixels. Any differentiable map ``params -> image`` will
do, and the choice changes which images are easy to reach (Olah, Mordvintsev & Schubert,
"Feature Visualization", Distill 2017; the Lucid library):

* ``PixelImage``: the model input itself, ``x = params`` (Simonyan et al. 2014). Every pixel
  moves independently, so steps are dominated by high frequencies: the noisy, checkerboard
  images of plain gradient ascent.
* ``FFTImage``: a *scaled spectrum* and a *decorrelated colour space*,

      t = irfft2(s * Z)               Z: (N, C, H, W//2+1) complex, s_k = 1 / max(|f_k|, 1/max(H, W))^d / 4
      u = M t                         M: 3x3 "square root" of ImageNet's colour covariance (C = 3 only)
      p = sigmoid(u)                  pixels in (0, 1)
      x = (p - mean) / std            the model's input normalisation

  Scaling frequency ``f`` by ``1/f^d`` whitens natural images' ``1/f`` spectrum, so a gradient
  step changes low and high frequencies about equally; ``M`` makes the three channels move
  like natural colours instead of independently; the sigmoid keeps pixels valid.

* ``GeneratorImage``: the image is the output of a fixed generator, ``x = G(z)``, and the
  optimiser moves the code ``z`` (Nguyen et al., "Synthesizing the preferred inputs for neurons
  in neural networks via deep generator networks", NeurIPS 2016: DGN-AM). Only images ``G`` can
  draw are reachable, so the generator *is* the prior; ``z`` can be kept in a box
  ``[low, high]`` after every step (DGN-AM clips its fc6 code to the range seen on real images).

Every parameterisation has ``params`` (the leaf tensors an optimiser updates), ``image()``
(a differentiable (N, C, H, W) model input), ``project()`` (puts the parameters back into their
feasible set after a step: projected gradient ascent; nothing for pixels and spectra) and
``set_image(x)``, its inverse: it re-encodes a model input as parameters, which is how
array-level steps such as Gaussian blur or pixel clipping act on a spectrum (image -> blur ->
spectrum). ``FFTImage`` round-trips exactly for images whose pixels lie strictly inside (0, 1);
a ``GeneratorImage`` cannot re-encode an image (that would be an inversion of ``G``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional import matmul, reshape, sigmoid
from minivis.nn.module import Module
from minivis.validate import check_str, check_tensor

PARAMETERISATIONS = ("pixel", "fft")

# Lucid's colour_correlation_svd_sqrt: a square root of the covariance of ImageNet pixel colours
# (rows: R, G, B), normalised below so that its largest column has unit norm.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]])
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


# ----------------------------------------------------------------------------- the FFT op
def _irfft_weights(w: int, xp: Any, dtype: Any) -> Any:
    """Per rfft column: 2 where a column stands for itself and its mirror image, else 1.

    ``irfft`` reads column k (0 < k < W/2) twice, as k and as W - k (Hermitian symmetry),
    but the DC column (and the Nyquist column when W is even) only once.
    """
    c = xp.full(w // 2 + 1, 2.0, dtype=dtype)
    c[0] = 1.0
    if w % 2 == 0:
        c[-1] = 1.0
    return c


def irfft2(spectrum: Tensor, size: tuple[int, int]) -> Tensor:
    """Real image from a half spectrum: ``numpy.fft.irfft2(re + i im, s=size, norm="ortho")``.

    spectrum: (..., H, W//2+1, 2), the real and imaginary parts stacked last -> (..., H, W).

    The map is linear in (re, im). Its vector-Jacobian product, derived from
    ``y_t = (1/sqrt(HW)) sum_k c_k (Re Z_k cos(2 pi k t / n) - Im Z_k sin(...))``, is
    ``dL/dRe Z + i dL/dIm Z = c * rfft2(g, norm="ortho")``, with ``c`` from ``_irfft_weights``
    (the imaginary parts that ``irfft2`` ignores get exactly zero gradient).
    """
    spectrum = check_tensor(spectrum, "irfft2", "spectrum")
    h, w = size
    if spectrum.ndim < 3 or spectrum.shape[-1] != 2 or spectrum.shape[-3:-1] != (h, w // 2 + 1):
        raise ValueError(f"irfft2: spectrum must be (..., {h}, {w // 2 + 1}, 2) for an image of size {size}, "
                         f"got shape {spectrum.shape}")
    xp = backend.xp(spectrum.data)
    dtype = spectrum.dtype
    z = spectrum.data[..., 0] + 1j * spectrum.data[..., 1]
    out = xp.fft.irfft2(z, s=(h, w), norm="ortho").astype(dtype)

    def backward(g):
        gz = xp.fft.rfft2(g, norm="ortho") * _irfft_weights(w, xp, dtype)
        return (xp.stack([gz.real, gz.imag], axis=-1).astype(dtype),)

    return Tensor.from_op(out, (spectrum,), backward, "irfft2")


def rfft2_numpy(image: Any) -> Any:
    """The inverse of ``irfft2`` on arrays: (..., H, W) -> (..., H, W//2+1, 2) (real, imaginary)."""
    xp = backend.xp(image)
    z = xp.fft.rfft2(image, norm="ortho")
    return xp.stack([z.real, z.imag], axis=-1).astype(image.dtype)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """(H, W//2+1) factors ``1 / max(|f|, 1/max(H, W))^decay_power / 4`` (Lucid's ``fft_image``).

    ``|f|`` is the spatial frequency in cycles per pixel; the floor keeps the DC term finite;
    the 1/4 is Lucid's constant (it sets how far one unit of spectrum moves the pixels).
    """
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power / 4.0


# ----------------------------------------------------------------------------- parameterisations
class ImageParam:
    """Base class: ``params`` to optimise, ``image()`` to read, ``set_image()`` to write back."""

    shape: tuple[int, int, int, int]
    params: list[Tensor]

    def image(self) -> Tensor:
        """The (N, C, H, W) model input, differentiable with respect to ``params``."""
        raise NotImplementedError

    def set_image(self, x: Any) -> None:
        """Re-encode the (N, C, H, W) model input ``x`` as parameters (in place)."""
        raise NotImplementedError

    def project(self) -> None:
        """Move the parameters back into their feasible set after a step (default: no constraint)."""

    def numpy(self) -> Any:
        """The current model input as an array (no graph)."""
        with no_grad():
            return self.image().data.copy()

    def _check_image(self, x: Any, who: str) -> Any:
        data = x.data if isinstance(x, Tensor) else x
        if tuple(data.shape) != tuple(self.shape):
            raise ValueError(f"{who}: image must have shape {self.shape}, got {tuple(data.shape)}")
        return data


class PixelImage(ImageParam):
    """The model input is the parameter: x = params (shape (N, C, H, W))."""

    def __init__(self, x: Any) -> None:
        data = x.data if isinstance(x, Tensor) else x
        if data.ndim != 4:
            raise ValueError(f"PixelImage: x must be (N, C, H, W), got shape {tuple(data.shape)}")
        self.x = Tensor(data.copy(), requires_grad=True)
        self.shape = tuple(self.x.shape)
        self.params = [self.x]

    def image(self) -> Tensor:
        return self.x

    def set_image(self, x: Any) -> None:
        data = self._check_image(x, "PixelImage.set_image")
        self.x.data = backend.xp(data).asarray(data, dtype=self.x.dtype).copy()


class FFTImage(ImageParam):
    """Lucid's spectrum + decorrelated colour + sigmoid parameterisation (see the module docstring).

    mean, std: the model's per-channel input normalisation (pixels in [0, 1]).
    decorrelate: use the colour matrix ``M`` (3-channel images only; ignored for grey).
    decay_power: ``d`` in the 1/f^d spectrum scaling (0 turns the scaling off).
    eps: pixels are clipped into [eps, 1 - eps] before the sigmoid is inverted in ``set_image``.
    """

    def __init__(self, shape: tuple[int, int, int, int], mean: Any, std: Any, decorrelate: bool = True,
                 decay_power: float = 1.0, dtype: Any = np.float32, device: str = "cpu", eps: float = 1e-4) -> None:
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"FFTImage: shape must be (N, C, H, W) with positive sizes, got {shape}")
        n, c, h, w = (int(s) for s in shape)
        self.shape = (n, c, h, w)
        self.dtype = np.dtype(dtype)
        self.device = device
        mean, std = np.asarray(mean, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
        if mean.size not in (1, c) or std.size not in (1, c):
            raise ValueError(f"FFTImage: mean and std need 1 or {c} values, got {mean.size} and {std.size}")
        put = lambda a: backend.to_device(np.asarray(a, self.dtype), device)  # noqa: E731
        self.mean = put(np.broadcast_to(mean, (c,)).reshape(1, c, 1, 1))
        self.std = put(np.broadcast_to(std, (c,)).reshape(1, c, 1, 1))
        self.scale = put(spectrum_scale(h, w, decay_power)[..., None])  # (H, W//2+1, 1): re and im alike
        self.color = put(COLOR_MATRIX if (decorrelate and c == 3) else np.eye(c))
        self.color_inverse = put(np.linalg.inv(COLOR_MATRIX) if (decorrelate and c == 3) else np.eye(c))
        self.eps = float(eps)
        self.spectrum = Tensor(backend.to_device(np.zeros((n, c, h, w // 2 + 1, 2), self.dtype), device),
                               requires_grad=True)
        self.params = [self.spectrum]

    def image(self) -> Tensor:
        n, c, h, w = self.shape
        t = irfft2(self.spectrum * self.scale, (h, w))                    # (N, C, H, W), decorrelated space
        u = reshape(matmul(self.color, reshape(t, (n, c, h * w))), (n, c, h, w))  # mix the colours
        return (sigmoid(u) - self.mean) / self.std

    def set_image(self, x: Any) -> None:
        data = self._check_image(x, "FFTImage.set_image")
        xp = backend.xp(data)
        n, c, h, w = self.shape
        p = xp.clip(data * self.std + self.mean, self.eps, 1.0 - self.eps)
        u = xp.log(p) - xp.log1p(-p)                                       # the inverse of the sigmoid
        t = xp.matmul(self.color_inverse, u.reshape(n, c, h * w)).reshape(n, c, h, w)
        self.spectrum.data = (rfft2_numpy(t) / self.scale).astype(self.dtype)

    def randomize(self, rng: np.random.Generator, sd: float = 0.01) -> None:
        """Lucid's start: a small random spectrum (pixels close to grey, 0.5)."""
        noise = rng.standard_normal(self.spectrum.shape) * sd
        self.spectrum.data = backend.to_device(noise.astype(self.dtype), self.device)


class GeneratorImage(ImageParam):
    """x = G(z): a fixed generator ``G`` (a Module, codes (N, *code_shape) -> model inputs) and a code ``z``.

    code: the starting codes (N, *code_shape). low, high: None, a number or an array broadcastable
    to ``code``; after every step ``z`` is clipped into ``[low, high]`` (``project``). Keep ``G``
    frozen while optimising (``minivis.vis.common.frozen``), so that only ``z`` gets gradients.
    """

    def __init__(self, generator: Any, code: Any, low: Any = None, high: Any = None) -> None:
        if not isinstance(generator, Module):
            raise TypeError(f"GeneratorImage: generator must be a minivis nn.Module, got {type(generator).__name__}")
        data = code.data if isinstance(code, Tensor) else code
        if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)) or data.dtype.kind != "f" or data.ndim < 2:
            raise TypeError(f"GeneratorImage: code must be a float array (N, ...), got {type(code).__name__} "
                            f"{getattr(data, 'shape', '')}")
        xp = backend.xp(data)
        self.generator = generator
        self.low = None if low is None else xp.asarray(low, dtype=data.dtype)
        self.high = None if high is None else xp.asarray(high, dtype=data.dtype)
        if self.low is not None and self.high is not None and bool(xp.any(self.low > self.high)):
            raise ValueError("GeneratorImage: low must not exceed high")
        self.code = Tensor(data.copy(), requires_grad=True)
        self.params = [self.code]
        self.project()
        with no_grad():
            self.shape = tuple(generator(self.code).shape)
        if len(self.shape) != 4:
            raise ValueError(f"GeneratorImage: the generator must return (N, C, H, W) images, got shape {self.shape}")

    def image(self) -> Tensor:
        return self.generator(self.code)

    def project(self) -> None:
        if self.low is not None or self.high is not None:
            self.code.data = backend.xp(self.code.data).clip(self.code.data, self.low, self.high)

    def set_image(self, x: Any) -> None:
        raise NotImplementedError("GeneratorImage.set_image: an image cannot be turned back into a code without "
                                  "inverting the generator; array-level hooks (blur, clipping) do not apply")


def make_param(name: str, x0: Any, mean: Any = 0.0, std: Any = 1.0, method: str = "optimize",
               **kwargs: Any) -> ImageParam:
    """The parameterisation ``name`` ("pixel" or "fft") started at model input ``x0`` (N, C, H, W)."""
    if check_str(name, method, "param", PARAMETERISATIONS) not in PARAMETERISATIONS:
        raise ValueError(f"{method}: param must be one of {PARAMETERISATIONS}, got {name!r}")
    if name == "pixel":
        return PixelImage(x0)
    param = FFTImage(tuple(x0.shape), mean, std, dtype=x0.dtype, device=backend.device_of(x0), **kwargs)
    param.set_image(x0)
    return param
