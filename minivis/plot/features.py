"""Figures for the network-centric views: filters, activation maps, dead filters, receptive-field
boxes, maximally activating patches, their projections to pixel space (also over training) and
nearest neighbours.

Inputs are what the ``mv.vis`` methods return (NumPy arrays in [0, 1] for filters, raw values
for activations); every function returns the matplotlib Figure (save it with ``mv.plot.save``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from minivis.plot.core import (
    as_array,
    check_cmap,
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
from minivis.validate import check_bool, host
from minivis.vis.features.activations import DeadFilterReport
from minivis.vis.features.projections import LayerProjections

NAN_GREY = 0.85  # how the part of a receptive field outside the image is drawn in RGB crops


def _axes_grid(nrows: int, ncols: int, size: float, title: str | None) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.5 if title else 0.1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        hide_axes(ax)
    if title:
        fig.suptitle(title)
    return fig, axes


def _show(ax: Any, img: np.ndarray, vmin: float | None = 0.0, vmax: float | None = 1.0, cmap: str = "gray") -> None:
    """Grey (H, W) with a fixed value range, or RGB (H, W, 3) in [0, 1]; NaN is drawn blank/grey."""
    if img.ndim == 3:
        img = np.where(np.isnan(img), NAN_GREY, np.clip(img, 0.0, 1.0))
        ax.imshow(img, interpolation="nearest")
    else:
        colormap = plt.get_cmap(cmap).with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
        ax.imshow(np.ma.masked_invalid(img), cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.axis("on")  # a frame around the image, and room for a row label (set_ylabel)
    ax.xaxis.set_visible(True)
    ax.yaxis.set_visible(True)
    ax.set_xticks([])
    ax.set_yticks([])


def _check_filters(filters: Any, fn: str, ndims: tuple[int, ...], arg: str = "filters") -> np.ndarray:
    array = as_array(filters, fn, arg)
    if array.ndim not in ndims or array.shape[0] == 0:
        raise ValueError(f"{fn}: expected filters shaped {' or '.join(f'{n}-D' for n in ndims)} with at least "
                         f"one filter, got shape {array.shape}")
    return array


def filter_grid(filters: Any, ncols: int | None = None, size: float = 0.7, title: str | None = None) -> plt.Figure:
    """First-layer filters (F, kh, kw) grey or (F, kh, kw, 3) RGB, values in [0, 1], in a grid."""
    op = "filter_grid"
    size, title = check_size(size, op), check_title(title, op)
    array = _check_filters(filters, op, (3, 4))
    n = array.shape[0]
    ncols = min(check_panels(ncols, op, "ncols", allow_none=True) or 8, n)
    fig, axes = _axes_grid(math.ceil(n / ncols), ncols, size, title)
    for i in range(n):
        ax = axes.flat[i]
        _show(ax, array[i])
        ax.set_title(str(i), fontsize=6, pad=1)
    return fig


def filter_channels(filters: Any, max_filters: int = 8, max_channels: int = 16, size: float = 0.5,
                    title: str | None = None) -> plt.Figure:
    """Deeper filters (F, C_in, kh, kw) in [0, 1]: one row per output filter, one column per input channel."""
    op = "filter_channels"
    size, title = check_size(size, op), check_title(title, op)
    array = _check_filters(filters, op, (4,))
    f = min(array.shape[0], check_panels(max_filters, op, "max_filters"))
    c = min(array.shape[1], check_panels(max_channels, op, "max_channels"))
    fig, axes = _axes_grid(f, c, size, title)
    for i in range(f):
        for j in range(c):
            _show(axes[i, j], array[i, j])
        axes[i, 0].set_ylabel(f"f{i}", fontsize=6, rotation=0, labelpad=8)
    for j in range(c):
        axes[0, j].set_title(f"in {j}", fontsize=6, pad=1)
    return fig


def filter_history(filters_by_label: Mapping[str, Any], max_filters: int = 16, size: float = 0.6,
                          title: str | None = None) -> plt.Figure:
    """One row per checkpoint (``mv.vis.filters_over_training``), the same first filters in each row."""
    op = "filter_history"
    filters_by_label = check_mapping(filters_by_label, op, "filters_by_label", "filters")
    size, title = check_size(size, op), check_title(title, op)
    arrays = {label: _check_filters(f, op, (3, 4), f"filters_by_label[{label!r}]")
              for label, f in filters_by_label.items()}
    n = min(check_panels(max_filters, op, "max_filters"), min(a.shape[0] for a in arrays.values()))
    fig, axes = _axes_grid(len(arrays), n, size, title)
    for row, (label, array) in enumerate(arrays.items()):
        for i in range(n):
            _show(axes[row, i], array[i])
        axes[row, 0].set_ylabel(str(label), fontsize=7, rotation=0, ha="right", va="center")
    return fig


def activation_grid(maps: Any, image: Any = None, ncols: int = 8, size: float = 1.0, shared_scale: bool = True,
                    title: str | None = None, cmap: str = "viridis") -> plt.Figure:
    """Activation maps (C, H, W) of one image (``mv.vis.activations``), optionally after the image itself.

    shared_scale: one colour scale for all maps (0 to the largest value), so a weak or dead map looks
    dark next to a strong one; False stretches each map on its own.
    """
    op = "activation_grid"
    cmap, size, title = check_cmap(cmap, op), check_size(size, op), check_title(title, op)
    shared_scale = check_bool(shared_scale, op, "shared_scale")
    array = as_array(maps, op, "maps")
    if array.ndim != 3:
        raise ValueError(f"activation_grid: maps must be (C, H, W) for one image, got shape {array.shape}")
    img = None if image is None else to_image(image, op=op)
    panels = array.shape[0] + (image is not None)
    ncols = min(check_panels(ncols, op, "ncols"), panels)
    fig, axes = _axes_grid(math.ceil(panels / ncols), ncols, size, title)
    offset = 0
    if img is not None:
        _show(axes.flat[0], img, float(np.nanmin(img)), float(np.nanmax(img)))
        axes.flat[0].set_title("input", fontsize=6, pad=1)
        offset = 1
    low = high = None
    if shared_scale:
        low, high = min(0.0, float(array.min())), float(array.max())
        high = high if high > low else low + 1.0
    for c in range(array.shape[0]):
        ax = axes.flat[offset + c]
        _show(ax, array[c], low, high, cmap)
        ax.set_title(str(c), fontsize=6, pad=1)
    return fig


def dead_filter_report(report: DeadFilterReport, title: str | None = None) -> plt.Figure:
    """Bar charts of ``mv.vis.dead_filters``: the fraction of inputs with an all-off map, and the mean activation."""
    report = check_result(report, DeadFilterReport, "dead_filter_report", "report", "mv.vis.dead_filters")
    title = check_title(title, "dead_filter_report")
    dead = as_array(report.dead_fraction, "dead_filter_report", "report.dead_fraction")
    mean = as_array(report.mean, "dead_filter_report", "report.mean")
    channels = np.arange(dead.size)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(4.0, 0.12 * dead.size + 2), 4), sharex=True)
    top.bar(channels, dead, color=np.where(dead >= 1.0, "crimson", "steelblue"))
    top.set_ylabel("fraction off")
    top.set_ylim(0, 1.05)
    bottom.bar(channels, mean, color="gray")
    bottom.set_ylabel("mean activation")
    bottom.set_xlabel("channel")
    fig.suptitle(title or f"{report.layer}: {len(report.dead())} dead of {dead.size} channels ({report.count} inputs)")
    fig.tight_layout()
    return fig


def receptive_field_boxes(image: Any, boxes: Sequence[Sequence[int]], labels: Sequence[str] | None = None,
                          size: float = 3.0, title: str | None = None) -> plt.Figure:
    """An image with the given (top, left, bottom, right) boxes drawn on it (exclusive bottom/right)."""
    op = "receptive_field_boxes"
    size, title = check_size(size, op), check_title(title, op)
    img = to_image(image, op=op)
    boxes = _check_boxes(boxes, op)
    labels = check_names(labels, len(boxes), op, "labels")
    fig, ax = plt.subplots(figsize=(size, size))
    _show(ax, img, float(img.min()), float(img.max()))
    colours = plt.get_cmap("tab10")
    for i, (top, left, bottom, right) in enumerate(boxes):
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               edgecolor=colours(i % 10), linewidth=1.5))
        if labels is not None:
            ax.text(left, top - 1, str(labels[i]), color=colours(i % 10), fontsize=7, va="bottom")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def _check_boxes(boxes: Any, op: str) -> list[tuple[int, int, int, int]]:
    """Boxes as (top, left, bottom, right) ints, bottom >= top and right >= left (none is fine)."""
    if isinstance(boxes, np.ndarray):
        boxes = boxes.tolist()
    if not isinstance(boxes, list | tuple):
        raise TypeError(f"{op}: boxes must be a list of (top, left, bottom, right), got {type(boxes).__name__}")
    out = []
    for i, box in enumerate(boxes):
        if (not isinstance(box, list | tuple | np.ndarray) or len(box) != 4
                or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in box)):
            raise TypeError(f"{op}: boxes[{i}] must be 4 ints (top, left, bottom, right), got {box!r}")
        top, left, bottom, right = (int(v) for v in box)
        if bottom < top or right < left:
            raise ValueError(f"{op}: boxes[{i}] must have bottom >= top and right >= left, got {box!r}")
        out.append((top, left, bottom, right))
    return out


def _check_model(model: Any, op: str) -> Any:
    """None (a min-max stretch of each crop) or an object with a callable ``deprocess``."""
    if model is not None and not callable(getattr(model, "deprocess", None)):
        raise TypeError(f"{op}: model must be None or have a deprocess method (model inputs to pictures), "
                        f"got {type(model).__name__}")
    return model


def _display(crop: np.ndarray, model: Any, op: str) -> np.ndarray:
    """A model-input crop (C, h, w) as a displayable image: the model's deprocess, or a min-max stretch.

    What ``deprocess`` returns is checked here, under the figure's name: an (h, w) or (h, w, C) numeric
    image (C 1 or 3; uint8 is scaled to [0, 1]); its own ValueError or TypeError gets the figure's name."""
    if model is None:
        img = np.moveaxis(crop, 0, -1)
        low, high = np.nanmin(img), np.nanmax(img)
        img = (img - low) / (high - low) if high > low else np.zeros_like(img)
        return img[..., 0] if img.shape[-1] == 1 else img
    try:
        img = model.deprocess(crop)  # HxWxC in [0, 1]; NaN (outside the image) stays NaN
    except (ValueError, TypeError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"{op}: model.deprocess failed on a patch of shape {crop.shape}: {err}") from err
    img = host(img)
    if not isinstance(img, np.ndarray) or img.dtype.kind not in "biuf":
        what = f"dtype {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
        raise TypeError(f"{op}: model.deprocess must return a numeric image array, got {what}")
    hw = crop.shape[1:]
    if img.shape[:2] != hw or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"{op}: model.deprocess must turn a {crop.shape} patch into an image {hw} or "
                         f"({hw[0]}, {hw[1]}, 1 or 3), got shape {img.shape}")
    img = img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def top_patches(patches: Any, channels: Sequence[int] | None = None, values: Any = None, model: Any = None,
                size: float = 0.8, title: str | None = None) -> plt.Figure:
    """Maximally activating patches: one row per channel, its k crops best first.

    patches: (C, k, C_in, h, w) crops in model-input space (``LayerTop.patches`` or ``crop_patches``),
    NaN outside the image (drawn blank). channels: row labels (default 0..C-1). values: (C, k)
    activations to print above each crop. model: None (each crop min-max stretched) or a model whose
    ``deprocess`` turns inputs back into pixels.
    """
    op = "top_patches"
    size, title = check_size(size, op), check_title(title, op)
    array = as_array(patches, op, "patches", allow_nan=True)  # NaN: past the image, drawn blank
    model = _check_model(model, op)
    if array.ndim != 5:
        raise ValueError(f"top_patches: patches must be (C, k, C_in, h, w), got shape {array.shape}")
    rows, k = array.shape[:2]
    labels = list(range(rows)) if channels is None else check_names(channels, rows, op, "channels")
    if values is not None:
        values = as_array(values, op, "values", allow_nan=True)
        if values.ndim != 2 or values.shape[0] < rows or values.shape[1] < k:
            raise ValueError(f"{op}: values must be ({rows}, {k}), one per patch, got shape {values.shape}")
    fig, axes = _axes_grid(rows, k, size, title)
    for r in range(rows):
        for j in range(k):
            ax = axes[r, j]
            _show(ax, _display(array[r, j], model, op))
            if values is not None:
                ax.set_title(f"{values[r, j]:.2f}", fontsize=5, pad=1)
        axes[r, 0].set_ylabel(f"ch {labels[r]}", fontsize=7, rotation=0, ha="right", va="center")
    return fig


def _projection_display(crop: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """A projection crop (C, h, w) drawn as the papers do: 0 at mid-grey, each crop scaled on its own
    (by the ``percentile`` of |value|, so a few extreme pixels do not hide the rest), (h, w) or
    (h, w, 3) in [0, 1]; NaN (outside the image) stays NaN."""
    img = np.moveaxis(crop, 0, -1).astype(np.float64)
    finite = np.isfinite(img)
    top = np.percentile(np.abs(img[finite]), percentile) if finite.any() else 0.0
    img = np.clip(0.5 + 0.5 * img / top, 0.0, 1.0) if top > 0 else np.where(finite, 0.5, np.nan)
    return img[..., 0] if img.shape[-1] == 1 else img


def top_projections(result: LayerProjections, rules: Sequence[str] | None = None, max_channels: int = 8,
                    model: Any = None, size: float = 0.7, title: str | None = None) -> plt.Figure:
    """Zeiler & Fergus's figure: per channel, a row of its top-k receptive-field patches and below it
    a row of their projections by each rule (``LayerProjections`` from ``project_top_activations``).

    rules: which projections to draw (default all in the result). max_channels: the first this many
    channels of the result. model: its ``deprocess`` turns the patches back into pixels.
    """
    op = "top_projections"
    result = check_result(result, LayerProjections, op, "result", "mv.vis.project_top_activations")
    size, title = check_size(size, op), check_title(title, op)
    max_channels = check_panels(max_channels, op, "max_channels")
    model = _check_model(model, op)
    if isinstance(rules, str):
        rules = [rules]
    if rules is not None and not isinstance(rules, list | tuple):
        raise TypeError(f"{op}: rules must be a list of rule names or None, got {type(rules).__name__}")
    names = list(result.projections) if rules is None else list(rules)
    unknown = [r for r in names if r not in result.projections]
    if unknown or not names:
        raise ValueError(f"top_projections: rules must be among {list(result.projections)}, got {rules!r}")
    channels = min(len(result.channels), max_channels)
    k = result.patches.shape[1]
    per = 1 + len(names)
    fig, axes = _axes_grid(channels * per, k, size, title)
    for r in range(channels):
        for j in range(k):
            if result.image_index[r, j] < 0:
                continue
            _show(axes[r * per, j], _display(result.patches[r, j], model, op))
            for i, rule in enumerate(names):
                _show(axes[r * per + 1 + i, j], _projection_display(result.projections[rule][r, j]))
        axes[r * per, 0].set_ylabel(f"ch {int(result.channels[r])}", fontsize=7, rotation=0, ha="right",
                                    va="center")
        for i, rule in enumerate(names):
            axes[r * per + 1 + i, 0].set_ylabel(rule, fontsize=6, rotation=0, ha="right", va="center")
    return fig


def projections_over_training(results: Mapping[str, LayerProjections], rule: str = "deconvnet", max_channels: int = 16,
                              size: float = 0.7, title: str | None = None) -> plt.Figure:
    """Zeiler & Fergus's figure 4: one row per checkpoint (labels of ``results``), one column per channel,
    each cell the projection of that channel's strongest activation at that checkpoint."""
    op = "projections_over_training"
    results = check_mapping(results, op, "results", "LayerProjections")
    for label, res in results.items():
        check_result(res, LayerProjections, op, f"results[{label!r}]", "mv.vis.project_top_activations")
    size, title = check_size(size, op), check_title(title, op)
    labels = list(results)
    first = results[labels[0]]
    channels = min(len(first.channels), check_panels(max_channels, op, "max_channels"))
    for label in labels:
        maps = results[label].projections.get(rule) if isinstance(rule, str) else None
        if maps is None:
            raise ValueError(f"projections_over_training: result {label!r} has no {rule!r} projections "
                             f"(it has {list(results[label].projections)})")
        if len(maps) < channels:  # every row draws the same channels as the first checkpoint
            raise ValueError(f"{op}: result {label!r} has {len(maps)} channels, the first has {channels}")
    fig, axes = _axes_grid(len(labels), channels, size, title)
    for row, label in enumerate(labels):
        maps = results[label].projections[rule]
        for c in range(channels):
            _show(axes[row, c], _projection_display(maps[c, 0]))
            if row == 0:
                axes[row, c].set_title(f"ch {int(first.channels[c])}", fontsize=6, pad=1)
        axes[row, 0].set_ylabel(str(label), fontsize=7, rotation=0, ha="right", va="center")
    return fig


def neighbour_grid(queries: Any, results: Mapping[str, Any], size: float = 0.9, title: str | None = None) -> plt.Figure:
    """Query images and their nearest neighbours in several spaces, one row per (query, space).

    queries: Q displayable images (H, W), (H, W, 3) or (C, H, W).
    results: {space label: (Q, k, ...) neighbour images}, e.g. {"pixels": ..., "fc features": ...}.
    """
    op = "neighbour_grid"
    results = check_mapping(results, op, "results", "(Q, k, ...) images")
    size, title = check_size(size, op), check_title(title, op)
    queries = [to_image(img, op=op, arg=f"queries[{i}]")
               for i, img in enumerate(check_items(queries, op, "queries"))]
    q = len(queries)
    sets = {label: [[to_image(img, op=op, arg=f"results[{label!r}][{i}][{j}]")
                     for j, img in enumerate(check_items(row, op, f"results[{label!r}][{i}]"))]
                    for i, row in enumerate(check_items(images, op, f"results[{label!r}]"))]
            for label, images in results.items()}
    for label, images in sets.items():
        if len(images) != q:
            raise ValueError(f"neighbour_grid: {label!r} has neighbours for {len(images)} queries, expected {q}")
    k = max(len(row) for images in sets.values() for row in images)
    fig, axes = _axes_grid(q * len(sets), k + 1, size, title)
    row = 0
    for i in range(q):
        for label, images in sets.items():
            query = queries[i]
            _show(axes[row, 0], query, float(query.min()), float(query.max()))
            axes[row, 0].set_ylabel(str(label), fontsize=7, rotation=0, ha="right", va="center")
            for j, img in enumerate(images[i]):
                _show(axes[row, j + 1], img, float(img.min()), float(img.max()))
            row += 1
    axes[0, 0].set_title("query", fontsize=7)
    return fig
