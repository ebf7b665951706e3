"""Natural-image priors for images made by optimisation.

Two kinds, because the papers use both:

* **Penalties** (differentiable ``Tensor -> (N,)`` functions, one value per image, subtracted
  from the objective and so part of the gradient):

  - ``l2(x) = ||x||_2^2``: Simonyan et al. 2014's ``lambda ||I||^2``; with plain gradient
    ascent its gradient ``2 lambda x`` is Yosinski et al. 2015's "L2 decay" ``x <- (1 - theta) x``.
  - ``alpha_norm(x, alpha) = sum |x|^alpha``: Mahendran & Vedaldi 2015's bound on the pixel range
    (alpha = 6 penalises the few extreme pixels much more than the many moderate ones).
  - ``tv(x, beta) = sum_ij ((x_{i,j+1} - x_ij)^2 + (x_{i+1,j} - x_ij)^2)^(beta/2)``: total
    variation (Mahendran & Vedaldi): small for piecewise-smooth images, large for noise.

* **Image operations** applied to the array between steps (Yosinski et al. 2015, "Understanding
  Neural Networks Through Deep Visualization"), not differentiated:

  - ``gaussian_blur(x, sigma)``: every k steps, removes the high frequencies gradient ascent
    keeps adding;
  - ``small_norm_mask`` / ``clip_small_norm``: zero the pixels whose colour vector has a small
    norm (a percentile), keeping only the strongest parts of the image;
  - ``small_contribution_mask`` / ``clip_small_contribution``: zero the pixels whose linearised
    contribution to the objective, ``|sum_c x_c * dJ/dx_c|``, is small.

  Zero is the model input of the mean image, so "clipping" sets a pixel to the mean colour.

Shapes: x is (N, C, H, W) everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.validate import check_float, check_tensor

# ----------------------------------------------------------------------------- penalties


def _per_image(values: Tensor) -> Tensor:
    return values.sum(axis=tuple(range(1, values.ndim)))


def l2(x: Tensor) -> Tensor:
    """||x||_2^2 per image: (N, C, H, W) -> (N,). Gradient 2 x."""
    x = check_tensor(x, "l2", "x", ndim=4)
    return _per_image(x * x)


def alpha_norm(x: Tensor, alpha: float = 6.0) -> Tensor:
    """sum |x|^alpha per image: (N, C, H, W) -> (N,). Gradient alpha |x|^(alpha-1) sign(x) (alpha >= 1)."""
    x = check_tensor(x, "alpha_norm", "x", ndim=4)
    alpha = check_float(alpha, "alpha_norm", "alpha", low=1.0)
    return _per_image(x.abs() ** alpha)


def tv_reference(a: Any, beta: float, eps: float) -> tuple[Any, Callable[[Any], Any]]:
    """``tv`` in plain array code (NumPy or CuPy): (TV^beta of each image, g -> its gradient for the
    upstream g (N,)). The GPU path, and the reference the one-pass CPU kernels are tested against."""
    dx = a[:, :, :-1, 1:] - a[:, :, :-1, :-1]
    dy = a[:, :, 1:, :-1] - a[:, :, :-1, :-1]
    s = dx * dx + dy * dy + eps

    def grad_of(g: Any) -> Any:
        w = g.reshape(-1, 1, 1, 1) * beta * s ** (beta / 2 - 1)
        wx, wy = w * dx, w * dy
        grad = backend.xp(a).zeros_like(a)
        grad[:, :, :-1, 1:] += wx
        grad[:, :, 1:, :-1] += wy
        grad[:, :, :-1, :-1] -= wx + wy
        return grad

    return (s ** (beta / 2)).sum(axis=(1, 2, 3)), grad_of


def tv(x: Tensor, beta: float = 2.0, eps: float | None = None) -> Tensor:
    """Total variation TV^beta per image: (N, C, H, W) -> (N,).

        TV^beta(x) = sum_{c, i < H-1, j < W-1} (dx_cij^2 + dy_cij^2 + eps)^(beta/2)
        dx_cij = x_{c,i,j+1} - x_cij,   dy_cij = x_{c,i+1,j} - x_cij

    Backward, with ``w = beta (dx^2 + dy^2 + eps)^(beta/2 - 1)``: each difference sends ``w dx``
    to its right neighbour and ``-w dx`` to its own pixel (and ``w dy`` down, ``-w dy`` likewise).
    For beta < 2 the power has an infinite slope where the image is flat, so ``eps`` (default 1e-8
    for beta < 2, 0 for beta >= 2) keeps the gradient finite.
    """
    x = check_tensor(x, "tv", "x", ndim=4)
    beta = check_float(beta, "tv", "beta", low=1.0)
    eps = (0.0 if beta >= 2 else 1e-8) if eps is None else check_float(eps, "tv", "eps", low=0.0)
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"tv: the image must be at least 2x2, got shape {x.shape}")
    a = x.data
    if backend.kernel_device(a) == "cpu":  # one pass each way (kernels/cpu_tv.py), tested equal to tv_reference
        kernels = backend.kernels("tv", a, "tv")
        out = kernels.tv_forward(a, beta, eps)

        def backward(g):
            return (kernels.tv_backward(a, g, beta, eps),)
    else:
        out, grad_of = tv_reference(a, beta, eps)

        def backward(g):
            return (grad_of(g),)

    return Tensor.from_op(out.astype(x.dtype, copy=False), (x,), backward, "tv")


# ----------------------------------------------------------------------------- image operations
def _check_array(x: Any, op: str) -> Any:
    data = x.data if isinstance(x, Tensor) else x
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)):
        raise TypeError(f"{op}: x must be an array of shape (N, C, H, W), got {type(x).__name__}")
    if data.ndim != 4:
        raise ValueError(f"{op}: x must be (N, C, H, W), got shape {tuple(data.shape)}")
    if data.dtype.kind != "f":
        raise TypeError(f"{op}: x must be a float array, got dtype {data.dtype}")
    return data


def _check_percentile(pct: Any, op: str) -> float:
    return check_float(pct, op, "pct", low=0.0, high=100.0)


def gaussian_blur(x: Any, sigma: float) -> Any:
    """Blur each channel of x (N, C, H, W) with a Gaussian of std ``sigma`` pixels (reflecting borders).

    scipy.ndimage.gaussian_filter (cupyx on the GPU): separable, truncated at 4 sigma.
    """
    data = _check_array(x, "gaussian_blur")
    sigma = check_float(sigma, "gaussian_blur", "sigma", low=0.0)
    if sigma == 0:
        return data.copy()
    if backend.is_gpu_array(data):
        from cupyx.scipy import ndimage  # noqa: PLC0415 (GPU only)
    else:
        from scipy import ndimage  # noqa: PLC0415
    return ndimage.gaussian_filter(data, sigma=(0, 0, sigma, sigma), mode="reflect").astype(data.dtype)


def _below_percentile(values: Any, pct: float) -> Any:
    """values (N, 1, H, W) -> bool mask of the entries below the ``pct``-th percentile of their image."""
    xp = backend.xp(values)
    if pct == 0:
        return xp.zeros(values.shape, dtype=bool)
    cut = xp.percentile(values.reshape(values.shape[0], -1), pct, axis=1).reshape(-1, 1, 1, 1)
    return values < cut


def small_norm_mask(x: Any, pct: float) -> Any:
    """(N, 1, H, W) bool: pixels whose colour norm ``||x[:, :, i, j]||`` is below the ``pct``-th percentile."""
    data = _check_array(x, "small_norm_mask")
    pct = _check_percentile(pct, "small_norm_mask")
    norms = backend.xp(data).sqrt((data * data).sum(axis=1, keepdims=True))
    return _below_percentile(norms, pct)


def small_contribution_mask(x: Any, grad: Any, pct: float) -> Any:
    """(N, 1, H, W) bool: pixels with a small linearised contribution ``|sum_c x_c dJ/dx_c|``.

    Setting pixel (i, j) to zero changes the objective J by about ``-sum_c x_cij dJ/dx_cij``
    (first-order Taylor); Yosinski et al. zero the pixels for which that change is smallest in size.
    """
    data = _check_array(x, "small_contribution_mask")
    g = _check_array(grad, "small_contribution_mask")
    if g.shape != data.shape:
        raise ValueError(f"small_contribution_mask: grad must have x's shape {tuple(data.shape)}, "
                         f"got {tuple(g.shape)}")
    pct = _check_percentile(pct, "small_contribution_mask")
    contribution = backend.xp(data).abs((data * g).sum(axis=1, keepdims=True))
    return _below_percentile(contribution, pct)


def clip_small_norm(x: Any, pct: float) -> Any:
    """x with its small-norm pixels (``small_norm_mask``) set to 0 in every channel."""
    data = _check_array(x, "clip_small_norm")
    return data * ~small_norm_mask(data, pct)


def clip_small_contribution(x: Any, grad: Any, pct: float) -> Any:
    """x with its small-contribution pixels (``small_contribution_mask``) set to 0 in every channel."""
    data = _check_array(x, "clip_small_contribution")
    return data * ~small_contribution_mask(data, grad, pct)


def clip_to_range(x: Any, low: Any, high: Any) -> Any:
    """x clipped into [low, high] (arrays broadcast per channel, e.g. ``valid_range(model)``)."""
    data = _check_array(x, "clip_to_range")
    return backend.xp(data).clip(data, low, high).astype(data.dtype)


def valid_range(mean: Any, std: Any, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs of pixel values 0 and 1: ``(0 - mean) / std`` and ``(1 - mean) / std``, each (1, C, 1, 1)."""
    mean = np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float64).reshape(1, -1, 1, 1)
    return ((0.0 - mean) / std).astype(dtype), ((1.0 - mean) / std).astype(dtype)
