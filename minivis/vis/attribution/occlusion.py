"""Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014).

Slide a ``P x P`` square of a constant ``fill`` over the image with stride ``s``; for every
position ``(r, c)`` (top-left corner ``(r*s, c*s)``, the square always inside the image) run the
network and record the target class *probability*

    grid[n, r, c] = softmax(f(x_n with the square at (r*s, c*s) filled))[target_n]

A sharp drop at a position says that the covered pixels matter for the class. ``grid`` has
``rows = (H - P) // s + 1`` by ``cols = (W - P) // s + 1`` positions.

The square should look like "nothing": by default it is the model's *mean pixel*, the mean colour
of its training set (the grey square of Zeiler & Fergus; the CS231n notes set the patch to zero,
which is the same thing in the units of a network whose input has the mean subtracted). In
model-input units that is ``(mean - mean) / std = 0`` for every model of the zoo, whose
``preprocess`` subtracts ``model.mean``; it is computed from the model's ``mean``/``std`` so that
a model normalising differently gets its own mean pixel.

The target may also be an objective at any layer (``objectives.unit / channel / direction``):
then the grid holds the objective's value with the square at each position (a unit has no
probability), computed in ``"naive"`` mode.

Two ways to paint the grid back onto the pixels (``occlusion_map``): each pixel gets the *mean*
over the patches that cover it, of the probability (a heat map of "how likely the class stays
when this pixel is hidden"), or, in ``occlusion_attribution``, of the drop ``p_clean - p_occluded``
(Captum's ``Occlusion`` attribution with sliding window (C, P, P) and strides (C, s, s)).

Three modes compute the same grid:

* ``"naive"``: every occluded image through the whole network, in batches (the reference);
* ``"incremental"``: one clean forward pass cached, then per position only the layers' changed
  regions (``minivis.vis.attribution.occlusion_incremental``); identical to naive up to float rounding;
* ``"approximate"``: incremental with each layer's changed region capped at ``threshold`` of the
  map per axis (Krypton's projective-field threshold): faster, not exact.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from minivis import backend
from minivis import functional as F
from minivis.autograd import Tensor
from minivis.functional.conv import shared_winograd_gemms
from minivis.nn.module import Module
from minivis.validate import check_array_size, check_fits, check_positive_int, check_progress, check_str, int_pair
from minivis.vis.attribution.occlusion_incremental import Incremental, Region, build_plan, conv_macs, trace
from minivis.vis.common import Target, as_batch, inference, is_objective, model_scores, target_scores, unbatch

MODES = ("naive", "incremental", "approximate")
_PROGRESS_MIN_BATCHES = 8  # progress=None shows a bar from this many batches of positions on


def window(image_hw: tuple[int, ...], patch: Any, stride: Any, op: str) -> tuple[tuple[int, int], ...]:
    """Validated ``(patch, stride, (rows, cols))``, each an (h, w) pair."""
    patch = int_pair(patch, op, "patch")
    stride = int_pair(stride, op, "stride")
    if patch[0] > image_hw[0] or patch[1] > image_hw[1]:
        raise ValueError(f"{op}: patch {patch} is larger than the image {tuple(image_hw)}")
    # a stride past the image leaves one patch per axis; capped so offsets (index * stride) fit in int64
    stride = (min(stride[0], image_hw[0]), min(stride[1], image_hw[1]))
    grid = tuple((size - p) // s + 1 for size, p, s in zip(image_hw, patch, stride, strict=True))
    return patch, stride, grid


FILLS = ("model_mean", "mean")


def mean_pixel(model: Module, channels: int) -> np.ndarray:
    """The model's mean pixel in model-input units, (C,): an image of the training set's mean colour
    ``model.mean`` (in [0, 1]) through ``model.preprocess``. For the zoo, whose preprocess maps p to
    ``(p - mean) / std``, that is 0 in every channel. A model without ``mean`` and ``preprocess``
    (a bare Sequential) is taken to see zero-mean inputs: 0 as well."""
    mean, preprocess = getattr(model, "mean", None), getattr(model, "preprocess", None)
    if mean is None or not callable(preprocess):
        return np.zeros(channels)
    h, w = getattr(model, "input_size", (1, 1))
    colour = np.broadcast_to(np.asarray(mean, dtype=np.float32), (h, w, channels))  # a float image in [0, 1]
    return np.asarray(preprocess(colour), dtype=np.float64)[0, :, 0, 0]


def fill_values(fill: Any, batch: Any, op: str, model: Module | None = None) -> Any:
    """The patch colour per image and channel, (N, C): ``"model_mean"`` (the model's mean pixel, see
    ``mean_pixel``), ``"mean"`` (each image's own channel means), a number or (C,) values."""
    xp = backend.xp(batch)
    n, c = batch.shape[:2]
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"{op}: fill must be a number, one value per channel, 'model_mean' or 'mean', "
                             f"got {fill!r}")
        if fill == "mean":
            return batch.mean(axis=(2, 3))
        return xp.asarray(np.broadcast_to(mean_pixel(model, c), (n, c)), dtype=batch.dtype)
    if isinstance(fill, bool) or not isinstance(fill, int | float | np.integer | np.floating | list | tuple
                                                | np.ndarray):
        raise TypeError(f"{op}: fill must be a number, one value per channel, 'model_mean' or 'mean', "
                        f"got {type(fill).__name__}")
    values = np.asarray(fill, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != c):
        raise ValueError(f"{op}: fill must be a number or {c} values (one per channel), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{op}: fill must be finite, got {fill!r}")
    check_fits(values, batch.dtype, op, "fill")
    return xp.asarray(np.broadcast_to(values, (n, c)), dtype=batch.dtype)


def occluded_batch(batch: Any, fills: Any, img: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   patch: tuple[int, int]) -> Any:
    """Copies of images ``img`` (B,) with a patch of their fill colour at (rows[b], cols[b]): (B, C, H, W)."""
    xp = backend.xp(batch)
    h, w = batch.shape[2:]
    inside_r = (xp.arange(h)[None] >= rows[:, None]) & (xp.arange(h)[None] < rows[:, None] + patch[0])
    inside_c = (xp.arange(w)[None] >= cols[:, None]) & (xp.arange(w)[None] < cols[:, None] + patch[1])
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]  # (B, 1, H, W)
    return xp.where(mask, fills[img][:, :, None, None], batch[img])


def _check_options(mode: Any, threshold: Any, batch_size: Any, op: str) -> None:
    if check_str(mode, op, "mode", MODES) not in MODES:
        raise ValueError(f"{op}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ValueError(f"{op}: threshold must be a number in (0, 1], got {threshold!r}")
    check_positive_int(batch_size, op, "batch_size")


def _item_scores(logits: Any, target: Target, index: np.ndarray | None, op: str) -> Any:
    """Target probability of each occluded copy (B,), or a callable target's score of the logits."""
    if callable(target):  # (an objective never gets here: it reads its own layers, see _run)
        return target_scores(Tensor(logits), target, op).data
    probs = F.softmax(Tensor(logits), axis=-1).data
    return probs[np.arange(len(index)), index]


def _positions(positions: Any, rows: int, cols: int, op: str) -> np.ndarray:
    """Grid indices (K, 2) of the patch positions to evaluate (all of them, row-major, by default)."""
    if positions is None:
        return np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)
    array = np.asarray(positions)
    if array.dtype.kind not in "iu" or array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise ValueError(f"{op}: positions must be a non-empty (K, 2) array of (row, col) grid indices, "
                         f"got {np.shape(positions)} {array.dtype}")
    if (array < 0).any() or (array[:, 0] >= rows).any() or (array[:, 1] >= cols).any():
        raise ValueError(f"{op}: positions must lie in the {rows} x {cols} grid of patch positions")
    return array.astype(np.int64)


def _run(model: Module, x: Any, target: Target, patch: Any, stride: Any, fill: Any, batch_size: int, mode: str,
         threshold: float, op: str, positions: Any = None,
         progress: bool | None = None) -> tuple[Any, Any, bool, dict]:
    """(scores (N, K), clean scores (N,), single-image flag, info) at K grid positions (default: all,
    row-major, so scores reshape to (N, rows, cols)), for occlusion and its attribution."""
    batch, single = as_batch(x, model, op)
    patch, stride, (rows, cols) = window(batch.shape[2:], patch, stride, op)
    fills = fill_values(fill, batch, op, model)
    _check_options(mode, threshold, batch_size, op)
    progress = check_progress(progress, op)
    from tqdm.auto import tqdm  # noqa: PLC0415 (only long runs show it)

    objective = is_objective(target)
    if objective and mode != "naive":
        raise ValueError(f"{op}: an objective target ({target.name}) needs mode='naive' (the incremental modes "
                         f"follow the changed regions up to the logits only), got mode={mode!r}")
    grid_index = _positions(positions, rows, cols, op)
    xp = backend.xp(batch)
    n = batch.shape[0]
    start = time.perf_counter()
    with inference(model):
        if objective:
            clean = None
        elif mode == "naive":
            clean = model(Tensor(batch)).data
        else:
            plan = build_plan(model)
            clean = trace(plan, model, batch)
            engine = Incremental(plan, threshold if mode == "approximate" else None)
        if objective:
            base = model_scores(model, Tensor(batch), target, op).data  # also checks the layer and index
        else:
            target_scores(Tensor(clean), target, op)  # checks the target (class range, per-image count) first
        index = None if callable(target) else np.broadcast_to(np.asarray(target), (n,)).astype(np.int64)
        if not objective:
            base = _item_scores(clean, target, index, op)
        k = len(grid_index)
        m = np.arange(n * k)  # item m: image m // k at position m % k
        img, r, c = m // k, grid_index[m % k, 0] * stride[0], grid_index[m % k, 1] * stride[1]
        out = xp.empty(len(m), dtype=batch.dtype)
        batches = [slice(lo, min(lo + batch_size, len(m))) for lo in range(0, len(m), batch_size)]
        show = len(batches) >= _PROGRESS_MIN_BATCHES if progress is None else progress
        with tqdm(total=len(m), desc=op, unit="pos", disable=not show, leave=False) as bar:
            if objective:
                for sl in batches:
                    occluded = Tensor(occluded_batch(batch, fills, img[sl], r[sl], c[sl], patch))
                    out[sl] = model_scores(model, occluded, target, op).data
                    bar.update(sl.stop - sl.start)
            elif mode == "naive":
                for sl in batches:
                    logits = model(Tensor(occluded_batch(batch, fills, img[sl], r[sl], c[sl], patch))).data
                    out[sl] = _item_scores(logits, target, None if index is None else index[img[sl]], op)
                    bar.update(sl.stop - sl.start)
            else:  # the patches as regions; the engine may hand back several batches' logits at once
                patches = ((Region(xp.ascontiguousarray(xp.broadcast_to(fills[img[sl]][:, :, None, None],
                                                                        (len(img[sl]), batch.shape[1], *patch))),
                                   r[sl], c[sl]), img[sl], sl) for sl in batches)
                with shared_winograd_gemms():  # the regions' products shared across positions (its docstring)
                    for sl, logits in engine.stream(patches):
                        out[sl] = _item_scores(logits, target, None if index is None else index[img[sl]], op)
                        bar.update(sl.stop - sl.start)
    info = {"mode": mode, "positions": k, "grid": (rows, cols), "seconds": time.perf_counter() - start}
    if mode != "naive":
        naive_macs = conv_macs(plan) * len(m)
        info.update(conv_macs_naive=naive_macs, conv_macs=engine.macs_done,
                    mac_speedup=naive_macs / max(engine.macs_done, 1), region_sizes=dict(engine.sizes))
    return out.reshape(n, k), base, single, info


def occlusion(model: Module, x: Any, target: Target, patch: Any = 8, stride: Any = 4, fill: Any = "model_mean",
              batch_size: int = 32, mode: str = "naive", threshold: float = 0.5, positions: Any = None,
              return_info: bool = False, progress: bool | None = None) -> Any:
    """Target-class probability with a ``patch`` square of ``fill`` at each position of a sliding grid.

    x: (C, H, W) or (N, C, H, W) in the model's input units. target: a class index, one per image,
    a callable ``f(logits) -> (N,)`` or an objective at any layer (``objectives.unit(...)``; naive
    mode): for these two the score itself is reported instead of a probability.
    patch, stride: int or (h, w). fill: ``"model_mean"`` (default: the model's mean pixel, the mean
    colour of its training set, which is 0 in input units for a model whose preprocess subtracts
    its mean; Zeiler & Fergus's grey square), ``"mean"`` (each image's own per-channel mean), a
    number in input units, or one value per channel. mode: ``"naive"`` (reference), ``"incremental"``
    (exact, recomputes only the changed regions) or ``"approximate"`` (regions capped at
    ``threshold`` of each map per axis, 0 < threshold <= 1). ``batch_size`` patch positions run
    together. The model runs in eval mode (restored after). ``progress``: a tqdm bar over the
    positions (None: from 8 batches on).

    Returns grid (rows, cols) for one image or (N, rows, cols), with ``rows = (H - patch)//stride + 1``.
    ``positions``, (K, 2) (row, col) grid indices, evaluates only those positions and returns (K,)
    or (N, K) (e.g. to refine a coarse run where it matters). With ``return_info`` also a dict:
    seconds; for the incremental modes the convolution multiply-adds done and those a naive run
    needs, their ratio ``mac_speedup``, and ``region_sizes``, each layer's changed region (h, w)
    in the last batch (None where it ran on full maps).
    """
    scores, _, single, info = _run(model, x, target, patch, stride, fill, batch_size, mode, threshold, "occlusion",
                                   positions, progress)
    grid = unbatch(scores if positions is not None else scores.reshape(-1, *info["grid"]), single)
    return (grid, info) if return_info else grid


def occlusion_map(grid: Any, size: Any, patch: Any, stride: Any) -> Any:
    """Paint a grid (..., rows, cols) back onto the pixels (..., H, W): each pixel gets the mean of the
    values of the patches covering it, NaN where no patch does (the right/bottom edge when
    ``stride`` does not divide ``H - patch``).

    With R[h, r] = 1 if patch row r covers pixel row h (and C likewise for columns), the map is
    (R grid C^T) / (R 1)(C 1)^T: the sum over covering patches over their count.
    """
    op = "occlusion_map"
    if not (isinstance(grid, np.ndarray) or backend.is_gpu_array(grid)) or grid.dtype.kind not in "fiu":
        raise TypeError(f"{op}: grid must be a numeric array (..., rows, cols), got {type(grid).__name__} "
                        f"{getattr(grid, 'dtype', '')}".rstrip())
    xp = backend.xp(grid)
    size, patch, stride = int_pair(size, op, "size"), int_pair(patch, op, "patch"), int_pair(stride, op, "stride")
    if grid.ndim < 2:
        raise ValueError(f"{op}: grid must be (..., rows, cols), got shape {grid.shape}")
    check_array_size(grid.shape[:-2] + size, grid.dtype, op)
    covers = []
    for axis in range(2):
        count = grid.shape[axis - 2]
        starts = np.arange(count) * min(stride[axis], size[axis])  # capped: no int64 overflow, same fit test
        if count < 1 or int(starts[-1]) + patch[axis] > size[axis]:
            raise ValueError(f"{op}: {count} patches of {patch[axis]} at stride {stride[axis]} do not fit in "
                             f"{size[axis]} pixels")
        pixel = np.arange(size[axis])[:, None]
        covers.append(xp.asarray((pixel >= starts) & (pixel < starts + patch[axis]), dtype=grid.dtype))
    rows, cols = covers
    total = rows @ grid @ cols.T
    count = rows.sum(axis=1)[:, None] * cols.sum(axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)


def occlusion_attribution(model: Module, x: Any, target: Target, patch: Any = 8, stride: Any = 4,
                          fill: Any = "model_mean",
                          batch_size: int = 32, mode: str = "naive", threshold: float = 0.5,
                          progress: bool | None = None) -> Any:
    """Per pixel, the mean over the patches covering it of ``p_clean - p_occluded`` (H, W) or (N, H, W).

    This is Captum's ``Occlusion(forward=softmax(model)).attribute(x, target,
    sliding_window_shapes=(C, P, P), strides=(C, s, s), baselines=fill)`` when ``s`` divides
    ``H - P`` (Captum also slides a last, clipped window past the edge when it does not; here
    patches stay inside and uncovered pixels get 0). Arguments as for ``occlusion``.
    """
    op = "occlusion_attribution"
    scores, base, single, info = _run(model, x, target, patch, stride, fill, batch_size, mode, threshold, op,
                                      progress=progress)
    grid = scores.reshape(-1, *info["grid"])
    drop = occlusion_map(base[:, None, None] - grid, x.shape[-2:], patch, stride)
    xp = backend.xp(drop)
    return unbatch(xp.nan_to_num(drop, nan=0.0), single)
