"""Figures for gradient attributions and Grad-CAM: each map beside (or over) its photo.

Two kinds of result come out of ``mv.vis``:

* a heat map (H, W) per image: ``saliency``, ``grad_cam``, ``smoothgrad(method="saliency")``;
  drawn over the photo (``overlay``) or on its own;
* a signed map shaped like the image (C, H, W): ``input_gradient``, ``guided_backprop``,
  ``deconvnet``, ``integrated_gradients``, ``guided_grad_cam``; drawn as an image, with 0 at
  mid-grey and the largest |value| at black or white (as Zeiler & Fergus and Springenberg et
  al. show their reconstructions), or as |value| max over channels, or summed over channels
  in a red/blue colour map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minivis.plot.core import (
    _overlay,
    _scale,
    as_array,
    check_alpha,
    check_cmap,
    check_items,
    check_mapping,
    check_names,
    check_result,
    check_size,
    check_title,
    hide_axes,
    to_image,
)
from minivis.validate import check_float, check_int
from minivis.vis.attribution.metrics import CurveResult
from minivis.vis.attribution.sanity import SanityResult

KINDS = ("auto", "heat", "rgb", "abs", "signed")


def _check_percentile(percentile: Any, op: str) -> float:
    value = check_float(percentile, op, "percentile")
    if not 0 < value <= 100:
        raise ValueError(f"{op}: percentile must be in (0, 100], got {percentile!r}")
    return value


def attribution_image(attribution: Any, kind: str = "auto", percentile: float = 99.5) -> np.ndarray:
    """An attribution as something ``imshow`` can draw, in [0, 1] (``signed``: in [-1, 1]).

    attribution: (H, W) heat map or (C, H, W) signed map of one image.
    kind: "heat" (min-max of an (H, W) map), "rgb" (a (C, H, W) map as an image, 0 -> 0.5, HxWx3 or
    HxW for one channel), "abs" (max over channels of |a|, min-max), "signed" (sum over channels,
    divided by its largest |value|); "auto" is "heat" for 2-D and "rgb" for 3-D input.
    percentile: the largest values are clipped at this percentile of |a| before scaling (a few
    extreme pixels would otherwise make the rest invisible; 100 keeps everything).
    """
    return _attribution_image(attribution, kind, percentile, "attribution_image", "attribution")


def _attribution_image(attribution: Any, kind: Any, percentile: Any, op: str, arg: str) -> np.ndarray:
    """``attribution_image``, its errors under the name of the public call ``op`` and its argument."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{op}: kind must be one of {KINDS}, got {kind!r}")
    percentile = _check_percentile(percentile, op)
    a = as_array(attribution, op, arg)  # empty or NaN/inf maps have no range to scale by
    if a.ndim not in (2, 3):
        raise ValueError(f"{op}: expected one image's map, (H, W) or (C, H, W), got shape {a.shape}")
    if kind == "auto":
        kind = "heat" if a.ndim == 2 else "rgb"
    if kind != "heat" and a.ndim != 3:
        raise ValueError(f"{op}: kind {kind!r} needs a (C, H, W) map, got shape {a.shape}")
    if kind == "heat" and a.ndim != 2:
        raise ValueError(f"{op}: kind 'heat' needs an (H, W) map, got shape {a.shape}")
    if kind == "rgb" and a.shape[0] not in (1, 3):
        raise ValueError(f"{op}: kind 'rgb' needs 1 or 3 channels, got shape {a.shape}")
    if kind == "abs":
        a = np.abs(a).max(axis=0)
    elif kind == "signed":
        a = a.sum(axis=0)
    top = np.percentile(np.abs(a), percentile)
    if top > 0:
        a = np.clip(a, -top, top)
    if kind in ("heat", "abs"):
        return _scale(a)
    if kind == "signed":
        return a / top if top > 0 else a
    return to_image(_scale(a, symmetric=True), op=op, arg=arg)  # rgb: 0 is mid-grey


def _draw(ax: Any, image: np.ndarray, result: np.ndarray, kind: str, alpha: float, title: str, op: str) -> None:
    if result.ndim == 2 and kind in ("auto", "heat"):
        _overlay(image, _attribution_image(result, "heat", 99.5, op, f"results[{title!r}]"), alpha, "jet", ax,
                 title, op)
        return
    shown = _attribution_image(result, kind, 99.5, op, f"results[{title!r}]")
    if kind == "signed":
        ax.imshow(shown, cmap="RdBu_r", vmin=-1, vmax=1)
    else:
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 and kind in ("auto", "rgb") else "inferno",
                  vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    hide_axes(ax)


def show_attributions(image: Any, results: Mapping[str, Any], kinds: Mapping[str, str] | None = None,
                      alpha: float = 0.5, size: float = 2.6, title: str | None = None) -> plt.Figure:
    """The photo, then one panel per named result of one image, side by side.

    image: the photo (HxW[x3] or CxHxW, in [0, 1] or uint8; e.g. ``model.deprocess(x)``).
    results: {"saliency": (H, W), "guided backprop": (C, H, W), ...}. Heat maps are drawn over the
    photo; maps shaped like the image are drawn with ``attribution_image`` (``kinds`` picks how,
    per name: "rgb", "abs" or "signed").
    """
    op = "show_attributions"
    results = check_mapping(results, op, "results", "map")
    if kinds is not None and not isinstance(kinds, Mapping):
        raise TypeError(f"{op}: kinds must be a mapping {{name: kind}} or None, got {type(kinds).__name__}")
    kinds = dict(kinds or {})
    alpha, size, title = check_alpha(alpha, op), check_size(size, op), check_title(title, op)
    img = to_image(image, op=op)
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(size * (len(results) + 1), size + 0.3), squeeze=False)
    axes = axes[0]
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("input", fontsize=9)
    hide_axes(axes[0])
    for ax, (name, result) in zip(axes[1:], results.items(), strict=True):
        result = as_array(result, op, f"results[{name!r}]")
        if result.ndim not in (2, 3) or (result.ndim == 3 and result.shape[-2:] != img.shape[:2]):
            raise ValueError(f"show_attributions: {name!r} must be one image's (H, W) or (C, H, W) map "
                             f"matching the image {img.shape[:2]}, got shape {result.shape}")
        _draw(ax, img, result, kinds.get(name, "auto"), alpha, str(name), op)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_grad_cam(image: Any, cam: Any, guided: Any = None, alpha: float = 0.5, size: float = 2.8,
                  title: str | None = None) -> plt.Figure:
    """Grad-CAM of one image: the photo, the heat map alone, the overlay, and (if given) guided Grad-CAM.

    cam: (H, W) (any resolution: the layer's own is drawn stretched); guided: (C, H, W).
    """
    op = "show_grad_cam"
    alpha, size, title = check_alpha(alpha, op), check_size(size, op), check_title(title, op)
    img = to_image(image, op=op)
    heat = as_array(cam, op, "cam")
    if heat.ndim != 2:
        raise ValueError(f"show_grad_cam: cam must be one image's (H, W) map, got shape {heat.shape}")
    shown_guided = None if guided is None else _attribution_image(guided, "rgb", 99.5, op, "guided")
    panels = 3 if guided is None else 4
    fig, axes = plt.subplots(1, panels, figsize=(size * panels, size + 0.3), squeeze=False)
    axes = axes[0]
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(_scale(heat), cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(f"Grad-CAM {heat.shape[0]}x{heat.shape[1]}", fontsize=9)
    _overlay(img, heat, alpha, "jet", axes[2], "overlay", op)
    if shown_guided is not None:
        axes[3].imshow(shown_guided, cmap="gray")
        axes[3].set_title("guided Grad-CAM", fontsize=9)
    for ax in axes:
        hide_axes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def relevance_image(relevance: Any, percentile: float = 99.5) -> tuple[np.ndarray, float]:
    """One image's relevance (C, H, W) or (H, W) summed over channels, and the symmetric colour limit.

    Sign-honest: 0 stays 0 (white in ``bwr``), positive and negative share one scale, the
    ``percentile`` of |R| (so a few extreme pixels do not wash the rest out).
    """
    return _relevance_image(relevance, percentile, "relevance_image", "relevance")


def _relevance_image(relevance: Any, percentile: Any, op: str, arg: str) -> tuple[np.ndarray, float]:
    percentile = _check_percentile(percentile, op)
    r = as_array(relevance, op, arg)  # NaN/inf would make the colour limit NaN: a blank panel
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ValueError(f"{op}: expected one image's (C, H, W) or (H, W) {arg}, got shape {r.shape}")
    limit = float(np.percentile(np.abs(r), percentile))
    return r, (limit if limit > 0 else 1.0)


def _rows_of_maps(images: Any, labels: Any, maps: Any, op: str, arg: str) -> tuple[list, list | None, dict]:
    """The checked images, row labels and {name: maps} of a figure with one row per image."""
    maps = check_mapping(maps, op, arg, "maps")
    imgs = [to_image(img, op=op, arg=f"images[{i}]") for i, img in enumerate(check_items(images, op, "images"))]
    labels = check_names(labels, len(imgs), op, "labels")
    return imgs, labels, {name: as_array(m, op, f"{arg}[{name!r}]") for name, m in maps.items()}


def show_relevance(images: Any, relevances: Mapping[str, Any], labels: Any = None, cmap: str = "bwr",
                   size: float = 2.2, title: str | None = None) -> plt.Figure:
    """LRP (or any signed) maps: one row per image, the image then one panel per method.

    images: a list or array of images (each HxW[x3] or CxHxW); relevances: {name: (N, C, H, W) or
    (N, H, W) array}, N as many as images. Each panel is summed over channels and drawn in a
    diverging map centred at 0 (red: evidence for the class, blue: against), its own symmetric scale.
    """
    op = "show_relevance"
    cmap, size, title = check_cmap(cmap, op), check_size(size, op), check_title(title, op)
    imgs, labels, maps = _rows_of_maps(images, labels, relevances, op, "relevances")
    for name, r in maps.items():
        if r.ndim not in (3, 4) or r.shape[0] != len(imgs):
            raise ValueError(f"show_relevance: {name!r} must be (N, C, H, W) or (N, H, W) with N = {len(imgs)} "
                             f"images, got shape {r.shape}")
    rows, cols = len(imgs), len(maps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.4), squeeze=False)
    for i, img in enumerate(imgs):
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 0].set_title("input" if labels is None else str(labels[i]), fontsize=8)
        for j, (name, r) in enumerate(maps.items(), start=1):
            shown, limit = _relevance_image(r[i], 99.5, op, f"relevances[{name!r}]")
            axes[i, j].imshow(shown, cmap=cmap, vmin=-limit, vmax=limit)
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
    for ax in axes.ravel():
        hide_axes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_cams(images: Any, cams: Mapping[str, Any], labels: Any = None, alpha: float = 0.5, size: float = 2.2,
              title: str | None = None) -> plt.Figure:
    """CAM variants side by side: one row per image, the image then each method's map over it.

    images: a list or array of images (each HxW[x3] or CxHxW); cams: {method: (N, H, W) maps}
    (any resolution: drawn stretched over the image), each min-max scaled on its own.
    """
    op = "show_cams"
    alpha, size, title = check_alpha(alpha, op), check_size(size, op), check_title(title, op)
    imgs, labels, maps = _rows_of_maps(images, labels, cams, op, "cams")
    for name, c in maps.items():
        if c.ndim != 3 or c.shape[0] != len(imgs):
            raise ValueError(f"show_cams: {name!r} must be (N, H, W) with N = {len(imgs)} images, got shape {c.shape}")
    rows, cols = len(imgs), len(maps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.4), squeeze=False)
    for i, img in enumerate(imgs):
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 0].set_title("input" if labels is None else str(labels[i]), fontsize=8)
        for j, (name, c) in enumerate(maps.items(), start=1):
            _overlay(img, c[i], alpha, "jet", axes[i, j], str(name) if i == 0 else None, op)
    for ax in axes.ravel():
        hide_axes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sanity_figure(results: SanityResult | Sequence[SanityResult], image_index: int = 0,
                  size: float = 1.6) -> plt.Figure:
    """The randomisation cascade: one row of maps per ``SanityResult`` (original, then each step, |map|
    summed over channels), and a panel of the mean Spearman rank correlation of |map| per step.
    A ``data_randomisation`` result shows the trained and the random-label model's maps."""
    op = "sanity_figure"
    results = list(results) if isinstance(results, list | tuple) else [results]
    if not results:
        raise ValueError("sanity_figure: give at least one SanityResult")
    for i, res in enumerate(results):
        check_result(res, SanityResult, op, f"results[{i}]" if len(results) > 1 else "results",
                     "mv.vis.model_randomisation or mv.vis.data_randomisation")
    size = check_size(size, op)
    images = min(np.shape(res.maps)[1] if np.ndim(res.maps) > 1 else 0 for res in results)
    image_index = check_int(image_index, op, "image_index", 0)
    if image_index >= images:
        raise ValueError(f"{op}: image_index must be < {images} (the images in the results), got {image_index}")
    steps = results[0].steps
    cols = len(steps) + 2
    fig, axes = plt.subplots(len(results), cols, figsize=(size * cols, size * len(results) + 0.6), squeeze=False)
    for r, res in enumerate(results):
        maps = np.abs(np.asarray(res.maps[:, image_index], dtype=np.float64))
        maps = maps.sum(axis=1) if maps.ndim == 4 else maps
        for k in range(len(steps) + 1):
            ax = axes[r, k]
            ax.imshow(_scale(maps[k]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if k == 0 else steps[k - 1].replace(" and above", "+"), fontsize=6)
        axes[r, 0].set_ylabel(res.method, fontsize=8)
        ax = axes[r, -1]
        for measure, style, label in (("spearman_abs", "o-", "rank |map|"), ("spearman", "v-", "rank map"),
                                      ("ssim", "s-", "SSIM"), ("hog", "^-", "HOG")):
            if measure in res.scores and (measure != "spearman" or "spearman_abs" not in res.scores):
                ax.plot(range(1, len(steps) + 1), res.scores[measure].mean(axis=1), style, label=label)
        ax.set_ylim(-0.2, 1.05)
        ax.tick_params(labelsize=6)
        if r == 0:
            ax.legend(fontsize=5)
    mode = results[0].mode
    fig.suptitle("data randomisation: trained model, then the model trained on permuted labels" if mode == "data"
                 else f"{mode} randomisation, top layer first: similarity to the original map", fontsize=9)
    fig.tight_layout()
    return fig


def curve_figure(curves: Mapping[str, CurveResult], size: float = 3.0) -> plt.Figure:
    """Deletion / insertion curves ({method: CurveResult}), the mean over images, AUC in the legend."""
    op = "curve_figure"
    curves = check_mapping(curves, op, "curves", "CurveResult")
    for name, c in curves.items():
        check_result(c, CurveResult, op, f"curves[{name!r}]", "mv.vis.deletion or mv.vis.insertion")
    size = check_size(size, op)
    modes = sorted({c.mode for c in curves.values()})
    fig, axes = plt.subplots(1, len(modes), figsize=(size * 1.4 * len(modes), size), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for name, c in curves.items():
            if c.mode == mode:
                ax.plot(c.fractions, c.scores.mean(axis=0), label=f"{name} (AUC {c.auc.mean():.3f})")
        ax.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'inserted'}", fontsize=8)
        ax.set_ylabel("class probability", fontsize=8)
        ax.set_title(mode, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
