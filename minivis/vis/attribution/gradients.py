"""Gradient attribution: which input pixels move the score of a class?

Every method here is one backward pass (or the mean of many) from the target score
``S_c(x)`` (a logit, before the softmax) to the input image; they differ only in how the
signal is sent back through the rectifiers (``mv.backward_rule``; the three rules are written out in
``relu_backward_reference``, ``minivis/functional/activation.py``) and in what is done with it:

==========================  ======================================================================
``input_gradient``          dS_c/dx under a ReLU rule, shaped like x: the one place that runs
                            forward + backward; the others build on it
``saliency``                max over channels of |dS_c/dx|, one (H, W) map per image
                            (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks")
``guided_backprop``         the "guided" rule g * 1[x > 0] * 1[g > 0] (Springenberg et al. 2015,
                            "Striving for Simplicity: The All Convolutional Net")
``deconvnet``               the "deconvnet" rule g * 1[g > 0] (Zeiler & Fergus 2014, "Visualizing and
                            Understanding Convolutional Networks")
``smoothgrad``              the mean map over n noisy copies x + N(0, sigma^2), sigma = noise * (max x - min x)
                            (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise")
``integrated_gradients``    (x - x') * mean_k dS_c/dx at x' + alpha_k (x - x'), alpha_k = (k + 1/2) / steps
                            (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks")
==========================  ======================================================================

``x`` is one image ``(C, H, W)`` or a batch ``(N, C, H, W)`` (array or Tensor); ``target`` a class
index, one index per image, a callable ``f(logits) -> (N,)`` scores, or an objective
(``mv.vis.objectives.unit / channel / direction / class_logit``) that reads any layer: then the
map explains that intermediate neuron, channel or direction instead of a logit (the "gradient of
an intermediate neuron" of Zeiler & Fergus and Simonyan et al.), and the forward pass stops at
the objective's layer. SmoothGrad and integrated gradients feed the model chunks of noisy copies /
path points of all images, so a callable target must score each row on its own
(``lambda out: out[:, c]``), not pick rows by image number (objectives do). Results are arrays on the
model's device (NumPy on the CPU, CuPy on the GPU) that follow the input: per image when given one.

While a method runs, the model is put in eval mode and its weights are frozen (no gradients
are accumulated on them); both are restored afterwards, even on error.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, lean_graph, no_grad
from minivis.nn.module import Module
from minivis.rules import RULES, backward_rule
from minivis.validate import check_count, check_fits, check_float, check_progress, check_seed, check_str
from minivis.vis.common import Target, as_batch, frozen, model_scores, unbatch

SMOOTHGRAD_METHODS = ("saliency", "gradient", "guided_backprop", "deconvnet")
_PROGRESS_MIN_PASSES = 8  # progress=None shows a bar from this many batched passes on


# --------------------------------------------------------------------------- model state
# --------------------------------------------------------------------------- argument checks
def _check_int(value: Any, method: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{method}: {name} must be an int >= {minimum}, got {value!r}")
    return check_count(value, method, name, minimum)  # >= minimum, and no longer than a loop can run


def _check_rule(rule: Any, method: str) -> str:
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"{method}: rule must be one of {RULES}, got {rule!r}")
    return rule


def repeat_target(target: Target, images: int, repeats: int, method: str) -> Target:
    """The target for ``repeats`` copies of an ``images``-image batch stacked copy-major
    (row r is image r % images): per-image indices are tiled, an int or a callable stays."""
    if callable(target):
        return target
    index = np.asarray(target)
    if index.ndim == 1:
        if index.shape[0] != images:
            raise ValueError(f"{method}: target has {index.shape[0]} indices for a batch of {images} images")
        return np.tile(index, repeats)
    return target


def _slice_target(target: Target, rows: slice) -> Target:
    if callable(target):
        return target
    index = np.asarray(target)
    return index[rows] if index.ndim == 1 else target


# --------------------------------------------------------------------------- the one backward pass
def batch_gradient(model: Module, batch: Any, target: Target, rule: str, method: str) -> Any:
    """dS/dx (N, C, H, W) of the (N,) target scores of a prepared batch, under ``rule``.

    The images are independent (eval mode), so the gradient of the sum of the scores is each
    image's own gradient. The rule changes only what the ReLU-family ops send back: their
    backward and its three formulas are in ``minivis/functional/activation.py``.
    """
    x = Tensor(batch, requires_grad=True)
    with lean_graph():  # the ReLU rules only: the layers keep just what those need
        scores = model_scores(model, x, target, method)
    if not scores.requires_grad:
        raise ValueError(f"{method}: the target score does not depend on the input")
    with backward_rule(rule):  # set explicitly: a caller's own rule block must not leak in
        scores.backward(backend.xp(batch).ones(scores.shape, dtype=scores.dtype))
    return x.grad if x.grad is not None else backend.xp(batch).zeros_like(batch)


def input_gradient(model: Module, x: Any, target: Target, rule: str = "gradient") -> Any:
    """dS_target/dx under a ReLU backward rule, shaped like x.

    x: (C, H, W) or (N, C, H, W). rule: "gradient" (the true gradient), "guided" or "deconvnet"
    (see ``minivis.rules``). Signed, unlike ``saliency``: this is the raw map the others build on.
    """
    rule = _check_rule(rule, "input_gradient")
    batch, single = as_batch(x, model, "input_gradient")
    with frozen(model):
        return unbatch(batch_gradient(model, batch, target, rule, "input_gradient"), single)


def _abs_max_channels(grad: Any) -> Any:
    """(N, C, H, W) -> (N, H, W): max over channels of |g| (Simonyan et al.'s map for colour images)."""
    return backend.xp(grad).abs(grad).max(axis=1)


def saliency(model: Module, x: Any, target: Target) -> Any:
    """Simonyan et al.'s saliency map: M_ij = max_c |dS_target/dx_cij|.

    x: (C, H, W) -> (H, W), or (N, C, H, W) -> (N, H, W).
    """
    batch, single = as_batch(x, model, "saliency")
    with frozen(model):
        return unbatch(_abs_max_channels(batch_gradient(model, batch, target, "gradient", "saliency")), single)


def guided_backprop(model: Module, x: Any, target: Target) -> Any:
    """Springenberg et al.'s guided backpropagation: the input gradient under the "guided" rule,
    which passes g only where both the forward input and g are positive. Shaped like x.

    ``batch_gradient`` runs ``backward()`` inside ``backward_rule("guided")``; every ReLU-family op
    then sends back ``g * f'(x) * (g > 0)``: see ``relu_backward_reference`` in
    ``minivis/functional/activation.py``, the three rules side by side."""
    batch, single = as_batch(x, model, "guided_backprop")
    with frozen(model):
        return unbatch(batch_gradient(model, batch, target, "guided", "guided_backprop"), single)


def deconvnet(model: Module, x: Any, target: Target) -> Any:
    """Zeiler & Fergus's DeconvNet reconstruction of the target score: the input gradient under the
    "deconvnet" rule (unpool with switches, rectify the signal, transposed convolution). Shaped like x."""
    batch, single = as_batch(x, model, "deconvnet")
    with frozen(model):
        return unbatch(batch_gradient(model, batch, target, "deconvnet", "deconvnet"), single)


# --------------------------------------------------------------------------- means over many samples
def _mean_over_samples(model: Module, batch: Any, target: Target, samples: Callable[[int, int], Any], count: int,
                       rule: str, reduce: Callable[[Any], Any], batch_size: int, method: str,
                       progress: bool | None) -> Any:
    """(1/count) sum_k reduce(dS/dx at samples k), per image, streamed ``batch_size`` rows at a time.

    ``samples(k0, ks)`` returns samples k0 .. k0+ks-1 of every image as a (ks, N, C, H, W) array.
    Rows are taken copy-major (row r is image r % N), so a chunk of ks samples of all N images
    is one contiguous block; at most max(batch_size, N) input rows, and one batch_size-row graph,
    are alive at any time: memory does not grow with ``count``.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 (only the long methods need it)

    n_images = batch.shape[0]
    per_chunk = max(1, batch_size // n_images)  # samples of every image per chunk
    passes = math.ceil(count / per_chunk) * math.ceil(min(per_chunk, count) * n_images / batch_size)
    show = passes >= _PROGRESS_MIN_PASSES if progress is None else progress
    total = None
    with tqdm(total=count * n_images, desc=method, unit="img", disable=not show, leave=False) as bar:
        for k0 in range(0, count, per_chunk):
            ks = min(per_chunk, count - k0)
            rows = samples(k0, ks).reshape((ks * n_images,) + batch.shape[1:])
            row_target = repeat_target(target, n_images, ks, method)
            maps = []
            for r0 in range(0, rows.shape[0], batch_size):
                part = slice(r0, r0 + batch_size)
                maps.append(reduce(batch_gradient(model, rows[part], _slice_target(row_target, part), rule, method)))
                bar.update(maps[-1].shape[0])
            xp = backend.xp(maps[0])
            chunk_sum = xp.concatenate(maps).reshape((ks, n_images) + maps[0].shape[1:]).sum(axis=0)
            total = chunk_sum if total is None else total + chunk_sum
    return total / count


def smoothgrad(model: Module, x: Any, target: Target, n: int = 50, noise: float = 0.15,
               method: str = "saliency", batch_size: int = 8, seed: int | None = 0,
               progress: bool | None = None) -> Any:
    """SmoothGrad: the mean of a sensitivity map over ``n`` noisy copies of each image,

        M_hat(x) = (1/n) sum_k M(x + eps_k),   eps_k ~ N(0, sigma^2 I),   sigma = noise * (max x - min x)

    with the noise level relative to each image's own value range (Smilkov et al. 2017 found
    10-20% works best). ``method`` is the map M:

    * "saliency": max over channels of |dS/dx| -> (H, W) per image (the default);
    * "gradient", "guided_backprop", "deconvnet": the signed input gradient under that rule,
      shaped like x.

    The noisy copies are streamed through the model ``batch_size`` at a time, so memory grows with
    ``batch_size``, not with ``n`` (VGG16's peak at 224 px: benchmarks/README.md, "Attribution,
    CPU" and "Design measurements").
    The noise comes from ``np.random.default_rng(seed)`` (drawn in x's dtype) and the same standard-normal draws
    (scaled by each image's sigma) serve every image of a batch: an image gets the same result
    alone or in a batch, whatever the batch size. ``progress``: show a tqdm bar (None: only for
    long runs).
    """
    n = _check_int(n, "smoothgrad", "n")
    batch_size = _check_int(batch_size, "smoothgrad", "batch_size")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"smoothgrad: noise must be a finite number >= 0 (a fraction of the input range), "
                         f"got {noise!r}")
    if check_str(method, "smoothgrad", "method", SMOOTHGRAD_METHODS) not in SMOOTHGRAD_METHODS:
        raise ValueError(f"smoothgrad: method must be one of {SMOOTHGRAD_METHODS}, got {method!r}")
    seed = check_seed(seed, "smoothgrad")
    progress = check_progress(progress, "smoothgrad")
    batch, single = as_batch(x, model, "smoothgrad")
    axes = tuple(range(1, batch.ndim))
    sigma = noise * (batch.max(axis=axes) - batch.min(axis=axes))  # (N,)
    sigma = sigma.reshape((1, -1) + (1,) * (batch.ndim - 1))
    rng = np.random.default_rng(seed)
    device = backend.device_of(batch)

    def noisy(k0: int, ks: int) -> Any:
        # drawn in sample order from one generator: chunks concatenate to the same stream; drawn in the
        # model's dtype (float32 draws take 2/3 of the time of float64 ones and a rounding less)
        eps = backend.to_device(rng.standard_normal((ks, 1) + batch.shape[1:], dtype=batch.dtype), device)
        return batch[None] + sigma * eps

    rule = {"saliency": "gradient", "gradient": "gradient", "guided_backprop": "guided",
            "deconvnet": "deconvnet"}[method]
    reduce = _abs_max_channels if method == "saliency" else (lambda g: g)
    with frozen(model):
        result = _mean_over_samples(model, batch, target, noisy, n, rule, reduce, batch_size, "smoothgrad",
                                    progress)
    return unbatch(result, single)


def _as_baseline(baseline: Any, batch: Any, method: str) -> Any:
    """None (zeros), a number, one image (C, H, W) or a batch (N, C, H, W) -> an array like ``batch``."""
    xp = backend.xp(batch)
    if baseline is None:
        return xp.zeros_like(batch)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        value = check_float(baseline, method, "baseline")
        check_fits(value, batch.dtype, method, "baseline")
        return xp.full_like(batch, value)
    data = baseline.data if isinstance(baseline, Tensor) else baseline
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)) or data.dtype.kind not in "fiu":
        raise TypeError(f"{method}: baseline must be None, a number or a numeric array, got {type(baseline).__name__}")
    if tuple(data.shape) not in (batch.shape[1:], batch.shape):
        raise ValueError(f"{method}: baseline must be shaped like one image {batch.shape[1:]} or like the batch "
                         f"{batch.shape}, got shape {tuple(data.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as inf, refused just below
        out = backend.to_device(data, backend.device_of(batch)).astype(batch.dtype)
    out = xp.broadcast_to(out, batch.shape).copy()
    if not bool(xp.isfinite(out).all()):
        raise ValueError(f"{method}: baseline contains NaN or infinite values (in the model's {batch.dtype})")
    return out


def integrated_gradients(model: Module, x: Any, target: Target, baseline: Any = None, steps: int = 50,
                         batch_size: int = 8, return_delta: bool = False,
                         progress: bool | None = None) -> Any:
    """Integrated gradients along the straight path from ``baseline`` x' to x, by the midpoint rule:

        IG(x) = (x - x') * (1/steps) sum_k dS/dx (x' + alpha_k (x - x')),   alpha_k = (k + 1/2) / steps.

    By the fundamental theorem of calculus for line integrals the exact IG sums to
    S(x) - S(x') (completeness); the midpoint rule approximates it with an O(1/steps^2) error.
    baseline: None (black, zeros), a number, or an array shaped like one image or like the batch.
    The path points are streamed through the model ``batch_size`` at a time (memory as for
    ``smoothgrad``).

    Returns the attribution shaped like x; with ``return_delta=True`` also the completeness
    error per image, ``sum(IG) - (S(x) - S(x'))`` (a number for one image, (N,) for a batch),
    the same quantity as Captum's convergence delta.
    """
    steps = _check_int(steps, "integrated_gradients", "steps")
    batch_size = _check_int(batch_size, "integrated_gradients", "batch_size")
    progress = check_progress(progress, "integrated_gradients")
    batch, single = as_batch(x, model, "integrated_gradients")
    start = _as_baseline(baseline, batch, "integrated_gradients")
    diff = batch - start
    xp = backend.xp(batch)
    alphas = xp.asarray((np.arange(steps) + 0.5) / steps, dtype=batch.dtype)
    alphas = alphas.reshape((-1,) + (1,) * batch.ndim)

    def path(k0: int, ks: int) -> Any:
        return start[None] + alphas[k0:k0 + ks] * diff[None]

    with frozen(model):
        mean_grad = _mean_over_samples(model, batch, target, path, steps, "gradient", lambda g: g, batch_size,
                                       "integrated_gradients", progress)
        attribution = diff * mean_grad
        if not return_delta:
            return unbatch(attribution, single)
        with no_grad():
            ends = [model_scores(model, Tensor(a), target, "integrated_gradients").data for a in (batch, start)]
    delta = attribution.reshape(batch.shape[0], -1).sum(axis=1) - (ends[0] - ends[1])
    return unbatch(attribution, single), (delta[0] if single else delta)


# --------------------------------------------------------------------------- gradient x input, DeepLIFT
def gradient_x_input(model: Module, x: Any, target: Target) -> Any:
    """x * dS/dx (Shrikumar et al. 2016), shaped like x: the first-order Taylor term of each input.

    On a bias-free ReLU network it sums to the score and equals LRP-0 (``mv.vis.lrp(..., "zero")``).
    """
    batch, single = as_batch(x, model, "gradient_x_input")
    with frozen(model):
        return unbatch(batch * batch_gradient(model, batch, target, "gradient", "gradient_x_input"), single)


def deeplift(model: Module, x: Any, target: Target, baseline: Any = None, return_delta: bool = False) -> Any:
    """DeepLIFT with the rescale rule (Shrikumar, Greenside & Kundaje 2017), shaped like x:

        C(x_i) = (x_i - x'_i) * m_i,   m = the chain of multipliers dS/dx with every nonlinearity's
        derivative replaced by (f(x) - f(x')) / (x - x')

    so that the contributions sum to S(x) - S(x') exactly (summation-to-delta) through the rectifiers,
    sigmoid and tanh. baseline x': None (zeros), a number, one image or one per image. Input and
    baseline run as one batch [x; x'] so that each rectifier sees both (``backward_rule("rescale")``).
    Max-pools send the multiplier to each half's own maximum (the gradient, as in the paper), so
    summation-to-delta is exact only where input and baseline share the winners; Captum's max-pool
    rule gives the same numbers (tested). ``return_delta``: also the error sum(C) - (S(x) - S(x'))
    per image (Captum's convergence delta).
    """
    method = "deeplift"
    batch, single = as_batch(x, model, method)
    reference = _as_baseline(baseline, batch, method)
    n = batch.shape[0]
    both = backend.xp(batch).concatenate([batch, reference])
    with frozen(model), backward_rule("rescale"):  # in force for the forward too: the rectifiers keep their inputs
        xt = Tensor(both, requires_grad=True)
        scores = model_scores(model, xt, repeat_target(target, n, 2, method), method)
        if not scores.requires_grad:
            raise ValueError(f"{method}: the target score does not depend on the input")
        scores.backward(backend.xp(batch).ones(scores.shape, dtype=scores.dtype))
        grad = xt.grad if xt.grad is not None else backend.xp(both).zeros_like(both)
    contributions = (batch - reference) * grad[:n]
    if not return_delta:
        return unbatch(contributions, single)
    delta = contributions.reshape(n, -1).sum(axis=1) - (scores.data[:n] - scores.data[n:])
    return unbatch(contributions, single), (delta[0] if single else delta)
