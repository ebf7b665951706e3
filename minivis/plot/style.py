"""Figures for textures and styles: a sample next to its syntheses, content / style / result grids,
the style-weight sweep and the style-interpolation strip. Images are HxW[xC] in [0, 1] (or uint8),
or results with an ``.image``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minivis.plot.core import hide_axes, to_image


def _image(item: Any) -> np.ndarray:
    img = to_image(getattr(item, "image", item))
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img


def _row(images: Sequence[Any], titles: Sequence[str], size: float, suptitle: str | None,
         ncols: int | None = None) -> plt.Figure:
    if not images:
        raise ValueError("plot: no images given")
    if len(titles) != len(images):
        raise ValueError(f"plot: {len(titles)} titles for {len(images)} images")
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        hide_axes(ax)
        if i < len(images):
            img = _image(images[i])
            ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def texture_figure(sample: Any, syntheses: Mapping[str, Any], size: float = 2.2,
                   suptitle: str | None = None) -> plt.Figure:
    """The texture sample, then each synthesis titled by its key (e.g. the layer set used)."""
    return _row([sample, *syntheses.values()], ["sample", *syntheses.keys()], size, suptitle)


def style_grid(content: Any, style: Any, results: Mapping[str, Any], size: float = 2.4,
               suptitle: str | None = None) -> plt.Figure:
    """Content, style, then each result titled by its key."""
    return _row([content, style, *results.values()], ["content", "style", *results.keys()], size, suptitle)


def weight_sweep(results: Sequence[Any], style_weights: Sequence[float], size: float = 2.2,
                 suptitle: str | None = "style weight sweep: more style, less photo") -> plt.Figure:
    """Style-transfer results for increasing style weights, each titled with its weight and losses."""
    titles = []
    for r, w in zip(results, style_weights, strict=True):
        info = getattr(r, "info", {})
        losses = (f"\nL_c {info['content_loss']:.3f}  L_s {info['style_loss']:.3f}"
                  if "content_loss" in info else "")
        titles.append(f"style weight {w:g}{losses}")
    return _row(list(results), titles, size, suptitle)


def interpolation_strip(images: Sequence[Any], alphas: Sequence[float], names: tuple[str, str] = ("a", "b"),
                        size: float = 2.2, suptitle: str | None = None) -> plt.Figure:
    """Images rendered with the blended (gamma, beta) of ``(1 - alpha) a + alpha b``."""
    titles = [f"{(1 - a):.2f} {names[0]} + {a:.2f} {names[1]}" for a in alphas]
    return _row(list(images), titles, size, suptitle)
