"""Figures for images made by optimisation: the images themselves, their objective curves, and the
feature-inversion table (reconstruction from several layers next to the original)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from minivis.plot.core import (
    as_array,
    check_items,
    check_mapping,
    check_names,
    check_panels,
    check_result,
    check_size,
    check_title,
    hide_axes,
    to_image,
)
from minivis.validate import check_bool
from minivis.vis.synthesis.decoder_inversion import InversionComparison
from minivis.vis.synthesis.inversion import InversionTable


def _show(ax: Any, image: Any, title: str | None = None, op: str = "to_image", arg: str = "image") -> None:
    img = to_image(image, op=op, arg=arg)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    hide_axes(ax)
    if title:
        ax.set_title(title, fontsize=8)


def synthesis_grid(results: Sequence[Any], titles: Sequence[str] | None = None, ncols: int | None = None,
                   size: float = 2.2, suptitle: str | None = None) -> plt.Figure:
    """The ``.image`` of each result (or HxW[xC] images in [0, 1]) side by side."""
    op = "synthesis_grid"
    size, suptitle = check_size(size, op), check_title(suptitle, op, "suptitle")
    images = [getattr(r, "image", r) for r in check_items(results, op, "results", "results or images")]
    if any(img is None for img in images):
        raise ValueError("synthesis_grid: a result has no image (the model has no deprocess)")
    images = [to_image(img, op=op, arg=f"results[{i}]") for i, img in enumerate(images)]
    titles = check_names(titles, len(images), op, "titles", exact=True)
    ncols = min(check_panels(ncols, op, "ncols", allow_none=True) or 6, len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i], str(titles[i]) if titles is not None else None)
        else:
            hide_axes(ax)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def history_plot(histories: Mapping[str, Any], ylabel: str = "objective", title: str | None = None,
                 logy: bool = False) -> plt.Figure:
    """One curve per run: the objective against the step (a result's ``.history``, or an array)."""
    op = "history_plot"
    histories = check_mapping(histories, op, "histories", "result or array")
    title, logy = check_title(title, op), check_bool(logy, op, "logy")
    ylabel = check_title(ylabel, op, "ylabel")
    curves = {}
    for label, h in histories.items():
        values = as_array(getattr(h, "history", h), op, f"histories[{label!r}]")
        if values.ndim == 2:
            values = values.mean(axis=1)
        if values.ndim != 1:
            raise ValueError(f"{op}: histories[{label!r}] must be (steps,) or (steps, N), got shape {values.shape}")
        if logy and values.min() <= 0:
            raise ValueError(f"{op}: logy needs positive values, histories[{label!r}] has {values.min():g}")
        curves[str(label)] = values
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in curves.items():
        ax.plot(np.arange(len(values)), values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def inversion_figure(table: InversionTable, title: str | None = None, size: float = 2.2) -> plt.Figure:
    """Top: the original and its reconstruction from each layer; bottom: the two errors per layer.

    ``table`` is a ``minivis.vis.synthesis.inversion.InversionTable``.
    """
    op = "inversion_figure"
    table = check_result(table, InversionTable, op, "table", "mv.vis.inversion_table")
    size, title = check_size(size, op), check_title(title, op)
    n = len(table.layers)
    fig = plt.figure(figsize=(size * (n + 1), size * 2.1))
    grid = fig.add_gridspec(2, n + 1, height_ratios=[1.0, 0.8])
    original = table.original_image if table.original_image is not None else table.original
    _show(fig.add_subplot(grid[0, 0]), original, "original", op, "table.original")
    for i, (name, result) in enumerate(zip(table.layers, table.results, strict=True)):
        image = result.image if result.image is not None else result.x
        _show(fig.add_subplot(grid[0, i + 1]), image,
              f"{name or '(output)'}\nimage err {table.image_error[i]:.2f}", op, f"table.results[{i}]")
    ax = fig.add_subplot(grid[1, :])
    positions = np.arange(n)
    ax.bar(positions - 0.2, table.image_error, width=0.4, label="image error  ||x* - x0|| / ||x0||")
    ax.bar(positions + 0.2, table.feature_error, width=0.4,
           label="feature error  ||Phi(x*) - Phi0||^2 / ||Phi0||^2")
    ax.set_xticks(positions, [name or "(output)" for name in table.layers], fontsize=7)
    ax.set_ylabel("normalised error")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def inversion_comparison_figure(comparison: InversionComparison, model: Any, count: int = 4, title: str | None = None,
                                size: float = 1.4) -> plt.Figure:
    """Rows: the originals, then for each layer the decoder's and the optimisation's reconstructions;
    right: the mean image error per layer for both methods.

    ``comparison`` is a ``minivis.vis.synthesis.decoder_inversion.InversionComparison``; ``model``
    turns model inputs into pictures (its ``deprocess``).
    """
    op = "inversion_comparison_figure"
    comparison = check_result(comparison, InversionComparison, op, "comparison", "mv.vis.compare_inversions")
    if not callable(getattr(model, "deprocess", None)):
        raise TypeError(f"{op}: model must have a deprocess method (model inputs to pictures), "
                        f"got {type(model).__name__}")
    size, title = check_size(size, op), check_title(title, op)
    count = min(check_panels(count, op, "count"), len(comparison.images))
    rows = [("original", comparison.images[:count])]
    for layer in comparison.layers:
        rows.append((f"{layer}\ndecoder", comparison.decoder_x[layer][:count]))
        rows.append((f"{layer}\noptimisation", comparison.optimisation_x[layer][:count]))
    fig = plt.figure(figsize=(size * (count + 4), size * len(rows)))
    grid = fig.add_gridspec(len(rows), count + 4)
    for r, (label, xs) in enumerate(rows):
        for c in range(count):
            ax = fig.add_subplot(grid[r, c])
            _show(ax, model.deprocess(xs[c]), None, op, "model.deprocess(x)")
            if c == 0:
                ax.text(-0.1, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=7)
    ax = fig.add_subplot(grid[1:, count + 1:])
    positions = np.arange(len(comparison.layers))
    rows_ = comparison.rows()
    ax.bar(positions - 0.2, [r["decoder_image_error"] for r in rows_], width=0.4, label="decoder")
    ax.bar(positions + 0.2, [r["optimisation_image_error"] for r in rows_], width=0.4, label="optimisation")
    ax.set_xticks(positions, comparison.layers, fontsize=7, rotation=30)
    ax.set_ylabel("image error ||x* - x0|| / ||x0||", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
