"""Evaluating attributions: does the map say what the model does?

=======================  ==========================================================  =========================
metric                   what it measures                                            paper
=======================  ==========================================================  =========================
``deletion``             the class probability as the most relevant pixels are       Petsiuk, Das & Saenko 2018
                         removed first (lower area under the curve is better)        (RISE)
``insertion``            the probability as they are put back into a blurred         Petsiuk et al. 2018
                         image, most relevant first (higher is better)
``infidelity``           E[(I . phi - (f(x) - f(x - I)))^2] over random              Yeh et al. 2019
                         perturbations I: does the map predict the output change?
``max_sensitivity``      max ||phi(x + d) - phi(x)|| / ||phi(x)|| over small d:      Yeh et al. 2019
                         how much the map moves when the input barely does
``pointing_game``        whether the map's maximum falls inside a known object mask  Zhang et al. 2016
=======================  ==========================================================  =========================

Known biases, to keep in mind when reading the numbers. Deletion feeds the model images with
holes it never saw in training: the probability can collapse because the input is *out of
distribution*, not because the removed pixels carried the evidence, and a map that draws sharp
high-frequency patterns is rewarded for it. Insertion starts from a blurred image, which favours
maps whose pixels restore edges. ROAD (Rong et al. 2022; ``road`` in road.py) removes pixels by noisy
linear imputation to reduce that leak of the mask's shape, and in turn favours smooth (blur-like) maps.
Infidelity depends on the perturbation distribution chosen; max-sensitivity rewards maps that
ignore the input (a constant map scores 0).

Every function takes prepared model inputs x (C, H, W) or (N, C, H, W) and attributions shaped
like x or (N, H, W) (a (C, H, W) map is summed over channels to rank pixels). Forward passes are
batched ``batch_size`` images at a time, with a progress bar for long runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from minivis import backend
from minivis.autograd import Tensor
from minivis.functional.loss import softmax
from minivis.nn.module import Module
from minivis.validate import (
    check_array_size,
    check_bool,
    check_float,
    check_int,
    check_positive_int,
    check_progress,
    check_seed,
    host,
)
from minivis.vis.common import Target, as_batch, inference, target_scores


@dataclass
class CurveResult:
    """A deletion or insertion curve: ``fractions`` (steps + 1,) of pixels removed/inserted,
    ``scores`` (N, steps + 1) the target's probability (or logit) there, ``auc`` (N,) the area under
    each curve by the trapezoid rule over fractions in [0, 1] (Petsiuk et al.)."""

    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    mode: str


def _attribution_array(attribution: Any, method: str) -> np.ndarray:
    """An attribution map (array or Tensor, any device) as a float64 host array; non-numeric input is refused."""
    a = np.asarray(host(attribution))
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{method}: attribution must be a numeric array or Tensor, got "
                        f"{type(attribution).__name__} of dtype {a.dtype}")
    return a.astype(np.float64)


def _pixel_ranking(attribution: Any, batch: Any, method: str) -> np.ndarray:
    """(N, H*W) pixel indices, most relevant first (a stable sort: ties keep row-major order)."""
    a = _attribution_array(attribution, method)
    n, c, h, w = batch.shape
    if a.shape == (n, c, h, w):
        a = a.sum(axis=1)
    elif a.shape == (c, h, w) and n == 1:
        a = a.sum(axis=0)[None]
    elif a.shape == (h, w) and n == 1:
        a = a[None]
    if a.shape != (n, h, w):
        raise ValueError(f"{method}: attribution must be shaped like x {tuple(batch.shape)} or (N, H, W) = "
                         f"{(n, h, w)}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{method}: attribution contains NaN or infinite values")
    return np.argsort(-a.reshape(n, h * w), axis=1, kind="stable")


def _fill(value: Any, batch: Any, model: Module, method: str, name: str) -> Any:
    """A start/fill image shaped like the batch: a number, an array like x, "black" (pixel 0 through
    the model's preprocessing, 0 if it has none) or "blur" (Gaussian, sigma 5 as Petsiuk et al.)."""
    xp = backend.xp(batch)
    if isinstance(value, str):
        if value == "black":
            mean, std = getattr(model, "mean", None), getattr(model, "std", None)
            if mean is None or std is None:
                return xp.zeros_like(batch)
            black = -np.broadcast_to(np.asarray(mean, np.float64), (batch.shape[1],)) / np.asarray(std)
            return xp.broadcast_to(xp.asarray(black.reshape(1, -1, 1, 1), dtype=batch.dtype), batch.shape).copy()
        if value == "blur":
            host = np.asarray(backend.to_device(batch, "cpu"), dtype=np.float64)
            blurred = ndimage.gaussian_filter(host, sigma=(0, 0, 5, 5), mode="nearest", truncate=1.0)
            return backend.to_device(blurred.astype(batch.dtype), backend.device_of(batch))
        raise ValueError(f"{method}: {name} must be a number, an array shaped like x, 'black' or 'blur', "
                         f"got {value!r}")
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return xp.full_like(batch, check_float(value, method, name))
    data = value.data if isinstance(value, Tensor) else value
    if getattr(data, "dtype", np.dtype("f")).kind not in "biuf":
        raise TypeError(f"{method}: {name} must be a number, an array shaped like x, 'black' or 'blur', "
                        f"got an array of dtype {data.dtype}")
    if hasattr(data, "shape") and tuple(data.shape) in (batch.shape, batch.shape[1:]):
        return xp.broadcast_to(xp.asarray(data, dtype=batch.dtype), batch.shape).copy()
    raise ValueError(f"{method}: {name} must be a number, an array shaped like x, 'black' or 'blur', "
                     f"got {type(value).__name__} {getattr(data, 'shape', '')}")


def _scores(model: Module, rows: Any, target_index: np.ndarray, probability: bool) -> np.ndarray:
    out = model(Tensor(rows))
    values = softmax(out).data if probability else out.data
    return np.asarray(backend.to_device(values[np.arange(len(rows)), target_index], "cpu"), dtype=np.float64)


def _curve(model: Module, x: Any, target: Target, attribution: Any, mode: str, pixels_per_step: int,
           start: Any, fill: Any, probability: bool, batch_size: int, progress: bool | None) -> CurveResult:
    from tqdm.auto import tqdm  # noqa: PLC0415

    method = mode
    pixels_per_step = check_positive_int(pixels_per_step, method, "pixels_per_step")
    batch_size = check_positive_int(batch_size, method, "batch_size")
    probability = check_bool(probability, method, "probability")
    progress = check_progress(progress, method)
    batch, _ = as_batch(x, model, method)
    order = _pixel_ranking(attribution, batch, method)
    n, c, h, w = batch.shape
    pixels_per_step = min(pixels_per_step, h * w)  # more than the image holds: one step takes it all
    steps = math.ceil(h * w / pixels_per_step)
    origin = _fill(start, batch, model, method, "start") if mode == "insertion" else batch
    source = batch if mode == "insertion" else _fill(fill, batch, model, method, "baseline")
    chosen = _target_indices(model, batch, target, method)
    with inference(model):
        target_scores(model(Tensor(batch[:1])), chosen[:1], method)  # the class index is in range
        xp = backend.xp(batch)
        scores = np.zeros((n, steps + 1))
        show = (n * (steps + 1) >= 512) if progress is None else progress
        with tqdm(total=n * (steps + 1), desc=method, unit="img", disable=not show, leave=False) as bar:
            # item m is image m // (steps + 1) after k = m % (steps + 1) steps: its first k * pixels_per_step
            # ranked pixels come from `source`; the items of all images share the batches
            flat_origin, flat_source = origin.reshape(n, c, h * w), source.reshape(n, c, h * w)
            flat_scores = scores.reshape(-1)
            for lo in range(0, n * (steps + 1), batch_size):
                items = np.arange(lo, min(lo + batch_size, n * (steps + 1)))
                images = items // (steps + 1)
                first = images[0]
                rank_of = np.empty((images[-1] + 1 - first, h * w), dtype=np.int64)  # the chunk's images only
                np.put_along_axis(rank_of, order[first:images[-1] + 1], np.arange(h * w)[None], axis=1)
                ks = items % (steps + 1)
                taken = xp.asarray(rank_of[images - first] < (ks[:, None] * pixels_per_step))  # (b, H*W)
                on_device = xp.asarray(images)
                rows = xp.where(taken[:, None, :], flat_source[on_device], flat_origin[on_device])
                flat_scores[items] = _scores(model, rows.reshape(len(items), c, h, w), chosen[images], probability)
                bar.update(len(items))
    fractions = np.minimum(np.arange(steps + 1) * pixels_per_step, h * w) / (h * w)
    auc = ((scores[:, 1:] + scores[:, :-1]) / 2 * np.diff(fractions)).sum(axis=1)  # the trapezoid rule
    return CurveResult(fractions, scores, auc, mode)


def deletion(model: Module, x: Any, target: Target, attribution: Any, pixels_per_step: int = 1,
             baseline: Any = "black", probability: bool = True, batch_size: int = 64,
             progress: bool | None = None) -> CurveResult:
    """Petsiuk et al.'s deletion curve: remove (set to ``baseline``) the ``pixels_per_step`` most relevant
    pixels at a time (all channels of a pixel together) and record the target's probability, from the
    intact image (fraction 0) to none left (fraction 1). A faithful map makes it fall fast: low AUC.

    baseline: "black" (pixel value 0 through the model's preprocessing), "blur", a number or an array
    like x. probability: softmax probability (the paper) or the logit. Returns a ``CurveResult``.
    Quantus's PixelFlipping is the same curve without its first point, integrated with unit steps.
    """
    return _curve(model, x, target, attribution, "deletion", pixels_per_step, None, baseline, probability,
                  batch_size, progress)


def insertion(model: Module, x: Any, target: Target, attribution: Any, pixels_per_step: int = 1,
              start: Any = "blur", probability: bool = True, batch_size: int = 64,
              progress: bool | None = None) -> CurveResult:
    """Petsiuk et al.'s insertion curve: start from ``start`` (a blurred copy of the image, sigma 5) and
    put the most relevant pixels of x back first. A faithful map makes it rise fast: high AUC."""
    return _curve(model, x, target, attribution, "insertion", pixels_per_step, start, None, probability,
                  batch_size, progress)


def infidelity(model: Module, x: Any, target: Target, attribution: Any, n_samples: int = 10, noise: float = 0.1,
               normalize: bool = False, seed: int | None = 0, perturbations: Any = None,
               batch_size: int = 64) -> np.ndarray:
    """Yeh et al.'s infidelity per image, (N,):

        INFD = (1/S) sum_s (I_s . phi - (f(x) - f(x - I_s)))^2,   I_s ~ N(0, noise^2)

    with f the target logit. ``normalize=True`` first rescales phi by the optimal
    beta = E[(I.phi)(f(x) - f(x-I))] / E[(I.phi)^2] (as Captum's ``normalize``). ``perturbations``: an
    array (N, S, C, H, W) of I to use instead of the Gaussian draws. The x - I are batched.
    """
    method = "infidelity"
    batch, _ = as_batch(x, model, method)
    n = batch.shape[0]
    phi = _attribution_array(attribution, method)
    if phi.shape != batch.shape:
        raise ValueError(f"{method}: attribution must be shaped like x {tuple(batch.shape)}, got shape {phi.shape}")
    if not np.isfinite(phi).all():
        raise ValueError(f"{method}: attribution contains NaN or infinite values")
    batch_size = check_positive_int(batch_size, method, "batch_size")
    normalize = check_bool(normalize, method, "normalize")
    if perturbations is None:
        n_samples = check_positive_int(n_samples, method, "n_samples")
        noise = check_float(noise, method, "noise", low=0.0)
        rng = np.random.default_rng(check_seed(seed, method))
        check_array_size((n, n_samples) + batch.shape[1:], np.float64, method, "perturbations")
        perturbations = rng.standard_normal((n, n_samples) + batch.shape[1:]) * noise
    perturbations = np.asarray(perturbations, dtype=np.float64)
    if perturbations.ndim != 5 or perturbations.shape[0] != n or perturbations.shape[2:] != batch.shape[1:]:
        raise ValueError(f"{method}: perturbations must be (N, S, C, H, W) with N={n} and (C, H, W)="
                         f"{batch.shape[1:]}, got shape {perturbations.shape}")
    s = perturbations.shape[1]
    xp = backend.xp(batch)
    index = _target_indices(model, batch, target, method)
    with inference(model):
        base = target_scores(model(Tensor(batch)), index, method).data
        base = np.asarray(backend.to_device(base, "cpu"), dtype=np.float64)
        rows = (np.asarray(backend.to_device(batch, "cpu"), dtype=np.float64)[:, None] - perturbations)
        rows = rows.reshape((n * s,) + batch.shape[1:])
        perturbed = np.concatenate([
            _scores(model, xp.asarray(rows[r:r + batch_size], dtype=batch.dtype),
                    np.repeat(index, s)[r:r + batch_size], False) for r in range(0, n * s, batch_size)]).reshape(n, s)
    dots = (perturbations * phi[:, None]).reshape(n, s, -1).sum(axis=2)
    diffs = base[:, None] - perturbed
    if normalize:
        beta = (dots * diffs).sum(axis=1) / np.where((dots * dots).sum(axis=1) == 0, 1, (dots * dots).sum(axis=1))
        dots = beta[:, None] * dots
    return ((dots - diffs) ** 2).mean(axis=1)


def _target_indices(model: Module, batch: Any, target: Target, method: str) -> np.ndarray:
    if callable(target):
        raise TypeError(f"{method}: target must be a class index or one per image, not a callable")
    index = np.asarray(target)
    if index.dtype.kind not in "iu" or index.ndim > 1:
        raise TypeError(f"{method}: target must be a class index or one per image, got {target!r}")
    if index.ndim == 1 and index.shape[0] != batch.shape[0]:
        raise ValueError(f"{method}: target has {index.shape[0]} indices for a batch of {batch.shape[0]} images")
    return np.broadcast_to(index, (batch.shape[0],)).astype(np.int64)


def max_sensitivity(explain: Callable[[Any], Any], x: Any, radius: float = 0.02, n_samples: int = 10,
                    seed: int | None = 0, perturbations: Any = None) -> np.ndarray:
    """Yeh et al.'s max-sensitivity per image, (N,): max over s of ||phi(x + d_s) - phi(x)||_F / ||phi(x)||_F
    with d_s uniform in the L-infinity ball of ``radius`` (Captum's ``sensitivity_max`` and its default
    perturbation). ``explain(batch) -> maps``: any attribution of a batch (e.g.
    ``lambda b: mv.vis.saliency(model, b, c)``). ``perturbations``: (N, S, C, H, W) to use instead."""
    method = "max_sensitivity"
    if not callable(explain):
        raise TypeError(f"{method}: explain must be a callable batch -> attribution, got {type(explain).__name__}")
    data = np.asarray(host(x))
    if data.ndim != 4 or data.shape[0] == 0:
        raise ValueError(f"{method}: x must be a non-empty batch (N, C, H, W), got shape {data.shape}")
    if data.dtype.kind != "f":
        raise TypeError(f"{method}: x must be a float array (a batch of model inputs), got dtype {data.dtype}")
    n = data.shape[0]
    if perturbations is None:
        radius = check_float(radius, method, "radius", low=0.0)
        n_samples = check_positive_int(n_samples, method, "n_samples")
        rng = np.random.default_rng(check_seed(seed, method))
        check_array_size((n, n_samples) + data.shape[1:], np.float64, method, "perturbations")
        perturbations = rng.uniform(-radius, radius, (n, n_samples) + data.shape[1:])
    perturbations = np.asarray(perturbations, dtype=data.dtype)
    if perturbations.ndim != 5 or perturbations.shape[0] != n or perturbations.shape[2:] != data.shape[1:]:
        raise ValueError(f"{method}: perturbations must be (N, S, C, H, W) with N={n} and (C, H, W)="
                         f"{data.shape[1:]}, got shape {perturbations.shape}")
    phi = np.asarray(backend.to_device(explain(data), "cpu"), dtype=np.float64).reshape(n, -1)
    norm = np.linalg.norm(phi, axis=1)
    norm = np.where(norm == 0, 1.0, norm)
    worst = np.zeros(n)
    for s in range(perturbations.shape[1]):
        moved = np.asarray(backend.to_device(explain(data + perturbations[:, s]), "cpu"), dtype=np.float64)
        worst = np.maximum(worst, np.linalg.norm(moved.reshape(n, -1) - phi, axis=1) / norm)
    return worst


def pointing_game(attribution: Any, mask: Any, tolerance: int = 0) -> np.ndarray:
    """Zhang et al.'s pointing game per image, (N,) bool: is the map's maximum inside the object mask
    (dilated by ``tolerance`` pixels, the paper's 15 px at 224)? attribution: (N, H, W) or (N, C, H, W)
    (summed over channels); mask: (N, H, W) or (H, W) bool."""
    method = "pointing_game"
    a = _attribution_array(attribution, method)
    if a.ndim == 4:
        a = a.sum(axis=1)
    m = np.asarray(backend.to_device(mask, "cpu"))
    if m.ndim == 2 and a.ndim == 3 and m.shape == a.shape[1:]:
        m = np.broadcast_to(m, a.shape)
    if a.ndim != 3 or m.shape != a.shape:
        raise ValueError(f"{method}: attribution (N, H, W) and mask (N, H, W) or (H, W) must match, got shapes "
                         f"{a.shape} and {m.shape}")
    if m.dtype != bool:
        raise TypeError(f"{method}: mask must be a boolean array, got dtype {m.dtype}")
    # past the image's size a larger tolerance dilates no further (and would overflow SciPy's C int)
    tolerance = min(check_int(tolerance, method, "tolerance", minimum=0), max(a.shape[1:]))
    hits = np.zeros(len(a), dtype=bool)
    for i, (ai, mi) in enumerate(zip(a, m, strict=True)):
        if tolerance:
            mi = ndimage.binary_dilation(mi, structure=np.ones((3, 3), bool), iterations=tolerance)  # Chebyshev
        peak = np.unravel_index(np.argmax(ai), ai.shape)
        hits[i] = bool(mi[peak])
    return hits
