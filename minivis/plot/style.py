"""Figures for textures and styles: a sample next to its syntheses, content / style / result grids,
the style-weight sweep and the style-interpolation strip. Images are HxW[xC] in [0, 1] (or uint8),
or results with an ``.image``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minivis.plot.core import (
    check_items,
    check_mapping,
    check_names,
    check_size,
    check_title,
    hide_axes,
    to_image,
)
from minivis.validate import check_float


def _image(item: Any, op: str, arg: str) -> np.ndarray:
    """An image, or a result's ``.image`` (None when the model had no deprocess: refused by name)."""
    picture = getattr(item, "image", item)
    if picture is None:
        raise ValueError(f"{op}: {arg} has no image (None: the model has no deprocess)")
    img = to_image(picture, op=op, arg=arg)
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img


def _row(images: Sequence[Any], args: Sequence[str], titles: Sequence[str], size: Any, suptitle: Any,
         op: str) -> plt.Figure:
    """One row of images (each named by its argument in errors), checked under the public call ``op``."""
    size, suptitle = check_size(size, op), check_title(suptitle, op, "suptitle")
    pictures = [_image(img, op, arg) for img, arg in zip(images, args, strict=True)]
    fig, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax, img, title in zip(axes.flat, pictures, titles, strict=True):
        hide_axes(ax)
        ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def texture_figure(sample: Any, syntheses: Mapping[str, Any], size: float = 2.2,
                   suptitle: str | None = None) -> plt.Figure:
    """The texture sample, then each synthesis titled by its key (e.g. the layer set used)."""
    syntheses = check_mapping(syntheses, "texture_figure", "syntheses", "result or image")
    return _row([sample, *syntheses.values()], ["sample", *(f"syntheses[{k!r}]" for k in syntheses)],
                ["sample", *map(str, syntheses)], size, suptitle, "texture_figure")


def style_grid(content: Any, style: Any, results: Mapping[str, Any], size: float = 2.4,
               suptitle: str | None = None) -> plt.Figure:
    """Content, style, then each result titled by its key."""
    results = check_mapping(results, "style_grid", "results", "result or image")
    return _row([content, style, *results.values()], ["content", "style", *(f"results[{k!r}]" for k in results)],
                ["content", "style", *map(str, results)], size, suptitle, "style_grid")


def weight_sweep(results: Sequence[Any], style_weights: Sequence[float], size: float = 2.2,
                 suptitle: str | None = "style weight sweep: more style, less photo") -> plt.Figure:
    """Style-transfer results for increasing style weights, each titled with its weight and losses."""
    op = "weight_sweep"
    results = check_items(results, op, "results", "results or images")
    weights = check_names(style_weights, len(results), op, "style_weights", exact=True, required=True)
    titles = []
    for i, (r, w) in enumerate(zip(results, weights, strict=True)):
        w = check_float(w, op, f"style_weights[{i}]")
        info = getattr(r, "info", None)
        info = info if isinstance(info, Mapping) else {}
        losses = (f"\nL_c {float(info['content_loss']):.3f}  L_s {float(info['style_loss']):.3f}"
                  if "content_loss" in info and "style_loss" in info else "")
        titles.append(f"style weight {w:g}{losses}")
    return _row(results, [f"results[{i}]" for i in range(len(results))], titles, size, suptitle, op)


def interpolation_strip(images: Sequence[Any], alphas: Sequence[float], names: tuple[str, str] = ("a", "b"),
                        size: float = 2.2, suptitle: str | None = None) -> plt.Figure:
    """Images rendered with the blended (gamma, beta) of ``(1 - alpha) a + alpha b``."""
    op = "interpolation_strip"
    images = check_items(images, op, "images")
    alphas = [check_float(a, op, f"alphas[{i}]")
              for i, a in enumerate(check_names(alphas, len(images), op, "alphas", exact=True, required=True))]
    names = check_names(names, 2, op, "names", exact=True, required=True)
    titles = [f"{(1 - a):.2f} {names[0]} + {a:.2f} {names[1]}" for a in alphas]
    return _row(images, [f"images[{i}]" for i in range(len(images))], titles, size, suptitle, op)
