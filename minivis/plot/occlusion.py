"""Figures for perturbation methods: the occlusion grid and its heat map over the photo, channel
ablation bars, and a saliency-seeded segmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minivis.plot.core import (
    _overlay,
    _scale,
    as_array,
    check_names,
    check_panels,
    check_size,
    check_title,
    hide_axes,
    host,
    to_image,
)
from minivis.validate import check_float


def occlusion_figure(image: Any, grid: Any, heatmap: Any = None, clean: float | None = None,
                     title: str | None = None, size: float = 3.0) -> plt.Figure:
    """Photo | occlusion grid (target probability per patch position) | heat map over the photo.

    image: HxW[x3] or CxHxW. grid: (rows, cols) probabilities. heatmap: (H, W) (e.g.
    ``mv.vis.occlusion_map``); default: the grid stretched over the photo. ``clean``: the
    unoccluded probability, marked on the colour bar. Low values (dark) are where hiding the
    pixels hurt the class: the overlay shows ``1 - normalised probability`` so they glow. NaN in the
    heat map (pixels no patch covered) is drawn as the largest value, i.e. not hurt.
    """
    op = "occlusion_figure"
    size, title = check_size(size, op), check_title(title, op)
    clean = None if clean is None else check_float(clean, op, "clean")
    img, grid = to_image(image, op=op), as_array(grid, op, "grid")
    if grid.ndim != 2:
        raise ValueError(f"occlusion_figure: grid must be 2-D (rows, cols), got shape {grid.shape}")
    heat = grid if heatmap is None else as_array(heatmap, op, "heatmap", allow_nan=True)
    if heat.ndim != 2 or np.isnan(heat).all():
        raise ValueError(f"{op}: heatmap must be 2-D (H, W) with at least one value that is not NaN, "
                         f"got shape {heat.shape}")
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + 0.3))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("input", fontsize=9)
    hide_axes(axes[0])
    shown = axes[1].imshow(grid, cmap="viridis", interpolation="nearest")
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    if clean is not None:
        bar.ax.axhline(clean, color="red", linewidth=2)
        bar.ax.set_ylabel(f"clean p = {clean:.3f}", fontsize=8)
    axes[1].set_title("p(target) per patch position", fontsize=9)
    hide_axes(axes[1])
    _overlay(img, 1.0 - _scale(np.nan_to_num(heat, nan=np.nanmax(heat))), 0.5, "jet", axes[2],
             "where occlusion hurts", op)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def ablation_figure(deltas: Any, labels: Sequence[str] | None = None, top: int = 20,
                    title: str | None = None) -> plt.Figure:
    """Bars of the ``top`` largest target-score changes (U,) by absolute value, most harmful first."""
    op = "ablation_figure"
    top, title = check_panels(top, op, "top"), check_title(title, op)
    deltas = as_array(deltas, op, "deltas")
    if deltas.ndim != 1:
        raise ValueError(f"ablation_figure: deltas must be 1-D (units,), got shape {deltas.shape}")
    labels = ([str(i) for i in range(len(deltas))] if labels is None
              else check_names(labels, len(deltas), op, "labels", exact=True))
    order = np.argsort(-np.abs(deltas))[:top]
    order = order[np.argsort(deltas[order])]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(order) + 1), 3))
    ax.bar(range(len(order)), deltas[order], color=np.where(deltas[order] < 0, "tab:red", "tab:blue"))
    ax.set_xticks(range(len(order)), [str(labels[i]) for i in order], rotation=90, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("change of target score")
    ax.set_title(title or "ablated unit", fontsize=9)
    fig.tight_layout()
    return fig


def segmentation_figure(image: Any, saliency_map: Any, mask: Any, title: str | None = None,
                        size: float = 3.0) -> plt.Figure:
    """Photo | saliency map | the foreground mask cut out of the photo."""
    op = "segmentation_figure"
    size, title = check_size(size, op), check_title(title, op)
    img, sal = to_image(image, op=op), as_array(saliency_map, op, "saliency_map")
    mask = np.asarray(host(mask))
    if mask.dtype.kind not in "biu":
        raise TypeError(f"{op}: mask must be a bool (or 0/1 int) array, got dtype {mask.dtype}")
    mask = mask.astype(bool)
    if mask.shape != img.shape[:2] or sal.shape != img.shape[:2]:
        raise ValueError(f"segmentation_figure: saliency {sal.shape} and mask {mask.shape} must match the image "
                         f"{img.shape[:2]}")
    shown = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 else 1.0)
    cut = np.where(mask[..., None] if shown.ndim == 3 else mask, shown, 0.15 * shown)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size))
    for ax, picture, name in zip(axes, (shown, _scale(sal), cut), ("input", "saliency", "GrabCut foreground"),
                                 strict=True):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        hide_axes(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
