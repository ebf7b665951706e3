"""Sanity checks for explanations (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, "Sanity
Checks for Saliency Maps"): an explanation of the *model* must change when the model does.

``model_randomisation(model, x, target, method)`` re-initialises the weights of the conv and linear
layers and compares each new map with the original one:

* ``mode="cascading"``: from the logits downwards, each step keeping the layers above random too;
* ``mode="independent"``: one layer at a time, the others trained.

Similarity per image, as in the paper: the Spearman rank correlation of |map| (and of the signed
map), the structural similarity (SSIM, Wang et al. 2004) of the maps scaled to [0, 1], and the
Pearson correlation of their histograms of oriented gradients (HOG, Dalal & Triggs 2005). A map
that stays similar while the weights it claims to explain are destroyed is explaining the image,
not the model: Adebayo et al. found that of guided backprop and guided Grad-CAM, while the
gradient and Grad-CAM change. ``method`` is any function ``(model, batch, target) -> maps``, or the
name of an ``mv.vis`` method.

``data_randomisation(model, random_label_model, x, target, method)`` is their second test: the same
architecture trained on permuted labels (``mv.models.load("fashion_cnn", weights="permuted_labels")``)
has memorised noise, so an explanation of what the model learned must differ between the two.

Quantus's ``MPRT`` (0.6.0) computes the same Spearman scores on the same random weights (tested in
``tests/vis/attribution/test_sanity_quantus.py``) but departs from the paper in three ways we do
not follow: it reseeds the generator with the same seed before every layer, so all layers draw the
same uniform stream (correlated weights); ``return_average_correlation`` averages in the original
model's self-similarity 1.0 (it skips a key "orig" that is named "original"); and its SSIM runs on
the flattened map, with a data range shared by the two maps, after a max-normalisation over the
whole batch, so one image's score depends on the others. Here each layer draws from its own stream
(``[seed, k]``), the mean is over the randomised steps, and SSIM is 2-D, per image.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, stats
from tqdm import tqdm

from minivis import backend
from minivis.nn import Conv2d, Linear, Parameter
from minivis.nn.module import Module
from minivis.nn.replay import ForwardReplay
from minivis.validate import check_bool, check_int, check_str
from minivis.vis.common import Target, as_batch

MODES = ("cascading", "independent")  # of model_randomisation; data_randomisation's is "data"
MEASURES = ("spearman_abs", "spearman", "ssim", "hog")


# --------------------------------------------------------------------------- similarity measures
def _as_2d(maps: np.ndarray, absolute: bool) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) -> (N, H, W): |map| (or the map) summed over channels."""
    maps = np.abs(maps) if absolute else maps
    return maps.sum(axis=1) if maps.ndim == 4 else maps


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (flattened); 0 where either map is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a, b)[0])


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean structural similarity of two 2-D images (Wang et al. 2004), Gaussian window of ``sigma``
    (truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, population covariances; the border of the
    window's half-width is left out of the mean (as scikit-image's ``gaussian_weights=True``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)

    def blur(img: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(img, sigma=sigma, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    pad = (int(3.5 * sigma + 0.5) * 2 + 1) // 2
    return float(s[pad:-pad, pad:-pad].mean()) if min(s.shape) > 2 * pad else float(s.mean())


def hog(image: np.ndarray, orientations: int = 9, cell: int = 4, block: int = 2) -> np.ndarray:
    """Histogram of oriented gradients of a 2-D image (Dalal & Triggs 2005), as scikit-image's ``hog``:
    centred differences (0 at the border), unsigned orientation in [0, 180) binned without
    interpolation, per-cell mean magnitude per bin, blocks of ``block`` x ``block`` cells (stride one
    cell) normalised by L2-Hys (clip at 0.2). Returns the flat feature vector."""
    img = np.asarray(image, np.float64)
    g_row, g_col = np.zeros_like(img), np.zeros_like(img)
    g_row[1:-1] = img[2:] - img[:-2]
    g_col[:, 1:-1] = img[:, 2:] - img[:, :-2]
    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    rows, cols = img.shape[0] // cell, img.shape[1] // cell
    bins = np.minimum((angle / (180 / orientations)).astype(np.int64), orientations - 1)
    hist = np.zeros((rows, cols, orientations))
    mag = magnitude[:rows * cell, :cols * cell].reshape(rows, cell, cols, cell)
    idx = bins[:rows * cell, :cols * cell].reshape(rows, cell, cols, cell)
    for o in range(orientations):
        hist[:, :, o] = np.where(idx == o, mag, 0).sum(axis=(1, 3)) / (cell * cell)
    eps = 1e-5
    out = []
    for r in range(rows - block + 1):
        for c in range(cols - block + 1):
            v = hist[r:r + block, c:c + block]
            v = np.minimum(v / np.sqrt((v ** 2).sum() + eps ** 2), 0.2)
            out.append(v / np.sqrt((v ** 2).sum() + eps ** 2))
    return np.concatenate([v.ravel() for v in out]) if out else hist.ravel()


def hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the HOG features of two maps (0 if either is constant)."""
    ha, hb = hog(a), hog(b)
    if np.ptp(ha) == 0 or np.ptp(hb) == 0:
        return 0.0
    return float(np.corrcoef(ha, hb)[0, 1])


def _unit(a: np.ndarray) -> np.ndarray:
    low, high = a.min(), a.max()
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Each row's ranks from 1, ties sharing their mean rank (``scipy.stats.rankdata(a, axis=1)``,
    a NaN making its row NaN), for (N, M) ``a``.

    One unstable sort per row (NumPy's vectorised sort; scipy's stable one costs 5x here), and ties
    found afterwards: rank average is (first + last position of the run of equal sorted values) / 2.
    """
    a = np.asarray(a)
    if a.ndim != 2 or a.dtype.kind not in "biuf":
        raise ValueError(f"average_ranks: a must be a 2-D numeric array (rows ranked), got shape {a.shape} "
                         f"and dtype {a.dtype}")
    n, m = a.shape
    order = np.argsort(a, axis=1)
    s = np.take_along_axis(a, order, axis=1)
    first = np.empty((n, m), bool)  # the sorted value starts a run of equal values
    first[:, :1] = True
    np.not_equal(s[:, 1:], s[:, :-1], out=first[:, 1:])
    if first.all():  # no ties (the usual case for real-valued maps): position + 1
        avg = np.broadcast_to(np.arange(1.0, m + 1), (n, m))
    else:
        at = np.arange(m)
        last = np.empty((n, m), bool)
        last[:, -1:] = True
        last[:, :-1] = first[:, 1:]
        start = np.maximum.accumulate(np.where(first, at, 0), axis=1)
        end = np.minimum.accumulate(np.where(last, at, m)[:, ::-1], axis=1)[:, ::-1]
        avg = (start + end) / 2 + 1
    ranks = np.empty((n, m))
    np.put_along_axis(ranks, order, avg, axis=1)
    ranks[np.isnan(s[:, -1:]).any(axis=1)] = np.nan  # argsort sorts NaN last
    return ranks


def _centred_ranks(a: np.ndarray) -> np.ndarray:
    """Each row's average ranks (ties share their mean rank), minus the row's mean rank."""
    ranks = average_ranks(a.reshape(len(a), -1).astype(np.float64, copy=False))
    return ranks - ranks.mean(axis=1, keepdims=True)


def spearman_rows(a: np.ndarray, b: np.ndarray, ranks_a: np.ndarray | None = None) -> np.ndarray:
    """``spearman`` of each row pair of (N, ...) arrays at once: the Pearson correlation of the average
    ranks (what ``scipy.stats.spearmanr`` computes), 0 for a row where either map is constant.

    ``ranks_a``: ``a``'s centred ranks, when the caller compares one ``a`` with many ``b``."""
    ra = _centred_ranks(a) if ranks_a is None else ranks_a
    rb = _centred_ranks(b)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    num = (ra * rb).sum(axis=1)
    return np.divide(num, den, out=np.zeros(len(a)), where=den > 0)


def similarities(before: np.ndarray, after: np.ndarray, measures: tuple[str, ...] = MEASURES,
                 before_ranks: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The ``measures`` per image, {measure: (N,)}, for maps (N, H, W) or (N, C, H, W).

    ``before_ranks``: a dict kept by a caller that compares one ``before`` with many ``after`` maps
    (the randomisation steps); ``before``'s ranks are computed once into it and reused.
    """
    abs_a, abs_b = _as_2d(before, True), _as_2d(after, True)
    kept = {} if before_ranks is None else before_ranks
    out = {}
    for measure, absolute in (("spearman_abs", True), ("spearman", False)):
        if measure in measures:
            a = abs_a if absolute else _as_2d(before, False)
            if measure not in kept:
                kept[measure] = _centred_ranks(a)
            out[measure] = spearman_rows(a, abs_b if absolute else _as_2d(after, False), kept[measure])
    if "ssim" in measures:
        out["ssim"] = np.array([ssim(_unit(a), _unit(b)) for a, b in zip(abs_a, abs_b, strict=True)])
    if "hog" in measures:
        out["hog"] = np.array([hog_similarity(a, b) for a, b in zip(abs_a, abs_b, strict=True)])
    return {m: out[m] for m in measures}


# --------------------------------------------------------------------------- the randomisation test
@dataclass
class SanityResult:
    """``steps``: what was randomised at each step ("layer" for independent, "layer and above" for
    cascading); ``scores[measure]``: (steps, N) similarities to the original map; ``maps``: the
    original then each step's maps, (steps + 1, N, ...)."""

    method: str
    mode: str
    steps: list[str]
    scores: dict[str, np.ndarray]
    maps: np.ndarray
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A Markdown table: one row per step, the mean of each measure over the images."""
        measures = list(self.scores)
        head = "| randomised | " + " | ".join(measures) + " |\n|" + " --- |" * (len(measures) + 1) + "\n"
        rows = [f"| {step} | " + " | ".join(f"{self.scores[m][k].mean():.3f}" for m in measures) + " |"
                for k, step in enumerate(self.steps)]
        return head + "\n".join(rows)


def _layers(model: Module) -> list[tuple[str, Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2d | Linear)]


def _redraw(module: Module, rng: np.random.Generator) -> None:
    """New weights from the layer's own default initialisation (PyTorch's uniform fan-in)."""
    w = module.weight
    fan_in = int(np.prod(w.shape[1:]))
    bound = 1.0 / np.sqrt(fan_in)
    xp = backend.xp(w.data)
    module.weight = Parameter(xp.asarray(rng.uniform(-bound, bound, w.shape), dtype=w.dtype), w.requires_grad)
    if module.bias is not None:
        b = module.bias
        module.bias = Parameter(xp.asarray(rng.uniform(-bound, bound, b.shape), dtype=b.dtype), b.requires_grad)


def _method(method: str | Callable, who: str) -> tuple[str, Callable]:
    if callable(method):
        return getattr(method, "__name__", "method"), method
    if isinstance(method, str):
        from minivis import vis  # noqa: PLC0415 (the methods live beside this module)

        fn = getattr(vis, method, None)
        if callable(fn):
            return method, fn
    raise ValueError(f"{who}: method must be a callable (model, x, target) -> maps or the name of an mv.vis "
                     f"method, got {method!r}")


def _check_measures(measures: Any, who: str) -> tuple[str, ...]:
    if isinstance(measures, str):
        measures = (measures,)
    if not isinstance(measures, tuple | list):
        raise TypeError(f"{who}: measures must be a tuple of names from {MEASURES}, got {type(measures).__name__}")
    unknown = [m for m in measures if m not in MEASURES]
    if not measures or unknown:
        raise ValueError(f"{who}: measures must be a non-empty selection of {MEASURES}, got {tuple(measures)!r}")
    return tuple(measures)


def _explain(fn: Callable, model: Module, batch: Any, target: Target, kwargs: dict[str, Any]) -> np.ndarray:
    return np.asarray(backend.to_device(fn(model, batch, target, **kwargs), "cpu"), dtype=np.float64)


def model_randomisation(model: Module, x: Any, target: Target, method: str | Callable, mode: str = "cascading",
                        layers: list[str] | None = None, seed: int = 0,
                        measures: tuple[str, ...] = MEASURES,
                        reinit: Callable[[str, Module, np.random.Generator], None] | None = None,
                        progress: bool = False, reuse_forward: bool = True, **method_kwargs: Any) -> SanityResult:
    """Adebayo et al.'s model-parameter randomisation test for ``method`` on a batch.

    x: (N, C, H, W) (or one image); layers: the conv/linear layers to randomise, top (logits) first
    (default: all of them, in reverse ``named_modules`` order); seed: the new weights' generator
    (the same draws for every method, so methods are compared on the same random models);
    measures: which of ``MEASURES`` to compute (SSIM and HOG cost most); reinit: how a layer gets
    new weights, ``(name, module, rng)`` (default: the layer's own PyTorch-style uniform fan-in
    init; the Quantus parity test passes Quantus's draws); progress: a tqdm bar over the steps;
    reuse_forward: hand back the layers below the randomised ones from the first pass instead of
    recomputing them (``mv.nn.ForwardReplay``: the same maps bit for bit; False recomputes everything).
    ``method_kwargs`` go to the method (e.g. ``layer=`` for Grad-CAM). The model is restored after.
    """
    who = "model_randomisation"
    if check_str(mode, who, "mode", MODES) not in MODES:
        raise ValueError(f"{who}: mode must be one of {MODES}, got {mode!r}")
    seed = check_int(seed, who, "seed", minimum=0)
    measures = _check_measures(measures, who)
    progress = check_bool(progress, who, "progress")
    reuse_forward = check_bool(reuse_forward, who, "reuse_forward")
    if reinit is not None and not callable(reinit):
        raise TypeError(f"{who}: reinit must be a callable (name, module, rng) -> None or None, "
                        f"got {type(reinit).__name__}")
    name, fn = _method(method, who)
    batch, _ = as_batch(x, model, who)
    available = _layers(model)[::-1]
    if layers is None:
        chosen = available
    else:
        if not isinstance(layers, list | tuple) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"{who}: layers must be a list of layer names (str) or None, got {layers!r}")
        by_name = dict(available)
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise ValueError(f"{who}: layers {unknown} are not conv or linear layers of the model; "
                             f"known: {[n for n, _ in available]}")
        chosen = [(n, by_name[n]) for n in layers]
    if not chosen:
        raise ValueError(f"{who}: the model has no conv or linear layer to randomise")

    replay = ForwardReplay(model)
    with replay.record() if reuse_forward else nullcontext():
        original = _explain(fn, model, batch, target, method_kwargs)
    saved = [(m, m.weight, m.bias) for _, m in chosen]
    maps, scores, original_ranks = [original], {m: [] for m in measures}, {}
    steps = []
    redraw = reinit or (lambda _name, module, rng: _redraw(module, rng))
    try:
        for k, (layer_name, module) in enumerate(tqdm(chosen, desc=f"{who} ({name})", disable=not progress)):
            if mode == "independent" and k > 0:
                prev = saved[k - 1]
                prev[0].weight, prev[0].bias = prev[1], prev[2]
            redraw(layer_name, module, np.random.default_rng([seed, k]))
            steps.append(layer_name if mode == "independent" else f"{layer_name} and above")
            changed = [module] if mode == "independent" else [m for _, m in chosen[:k + 1]]
            with replay.replay(changed) if reuse_forward else nullcontext():  # the layers below run once
                after = _explain(fn, model, batch, target, method_kwargs)
            maps.append(after)
            for measure, values in similarities(original, after, measures, original_ranks).items():
                scores[measure].append(values)
    finally:
        for module, w, b in saved:
            module.weight, module.bias = w, b
    return SanityResult(name, mode, steps, {m: np.stack(v) for m, v in scores.items()}, np.stack(maps))


def data_randomisation(model: Module, random_label_model: Module, x: Any, target: Target, method: str | Callable,
                       measures: tuple[str, ...] = MEASURES, **method_kwargs: Any) -> SanityResult:
    """Adebayo et al.'s data-randomisation test: ``method``'s maps of ``model`` against those of
    ``random_label_model``, the same architecture trained on permuted labels.

    x: (N, C, H, W) (or one image); target: the classes explained, the same for both models. One
    step, ``"random labels"``: ``scores[measure]`` is (1, N), ``maps`` (2, N, ...), trained then
    random-label, so ``table()`` and ``mv.plot.sanity_figure`` show it like a randomisation step.
    """
    who = "data_randomisation"
    for arg, value in (("model", model), ("random_label_model", random_label_model)):
        if not isinstance(value, Module):
            raise TypeError(f"{who}: {arg} must be a minivis Module, got {type(value).__name__}")
    if random_label_model is model:
        raise ValueError(f"{who}: random_label_model must be a second model (trained on permuted labels), "
                         f"got the same object as model")
    shapes = {k: np.shape(v) for k, v in model.state_dict().items()}
    other = {k: np.shape(v) for k, v in random_label_model.state_dict().items()}
    if shapes != other:
        raise ValueError(f"{who}: random_label_model must have model's architecture (the same parameter names and "
                         f"shapes), got {sorted(set(shapes) ^ set(other)) or 'different shapes'}")
    measures = _check_measures(measures, who)
    name, fn = _method(method, who)
    batch, _ = as_batch(x, model, who)
    original = _explain(fn, model, batch, target, method_kwargs)
    after = _explain(fn, random_label_model, batch, target, method_kwargs)
    scores = {m: v[None] for m, v in similarities(original, after, measures).items()}
    return SanityResult(name, "data", ["random labels"], scores, np.stack([original, after]))
