"""Figures for embeddings: a 2-D map coloured by label, the t-SNE image grid, PCA's spectrum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minivis.plot.core import (
    Axes,
    as_array,
    check_ax,
    check_cmap,
    check_names,
    check_size,
    check_title,
    hide_axes,
    host,
    plt,
    to_image,
)
from minivis.validate import check_float
from minivis.vis.features.embedding_grid import GridLayout
from minivis.vis.features.pca import PCAResult


def embedding_scatter(embedding: Any, labels: Any = None, class_names: Sequence[str] | None = None,
                      title: str | None = None, ax: Axes | None = None, size: float = 4.0,
                      point_size: float = 3.0) -> plt.Figure:
    """Scatter of an (N, 2) map, one colour per integer label (tab10/tab20), legend by class name.

    labels: N ints >= 0; class_names: a name for each label value (labels past its end are shown
    as numbers)."""
    op = "embedding_scatter"
    ax, size, title = check_ax(ax, op), check_size(size, op), check_title(title, op)
    point_size = check_float(point_size, op, "point_size")
    if not 0 < point_size <= 1000:
        raise ValueError(f"{op}: point_size must be in (0, 1000] (points squared), got {point_size:g}")
    Y = as_array(embedding, op, "embedding")
    if Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"embedding_scatter: embedding must be (N, 2), got shape {Y.shape}")
    class_names = check_names(class_names, 0, op, "class_names")
    if ax is None:
        fig, ax = plt.subplots(figsize=(size, size))
    else:
        fig = ax.figure
    if labels is None:
        ax.scatter(Y[:, 0], Y[:, 1], s=point_size, c="0.3", linewidths=0)
    else:
        labels = np.asarray(host(labels))
        if labels.shape != (Y.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError(f"embedding_scatter: labels must be {Y.shape[0]} integers, got "
                             f"{labels.dtype} {labels.shape}")
        if labels.min() < 0:  # class_names[-1] would silently name it after the last class
            raise ValueError(f"embedding_scatter: labels must be integers >= 0, got {labels.min()}")
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if classes.max(initial=0) < 10 else "tab20")
        for k in classes:
            name = class_names[k] if class_names is not None and k < len(class_names) else str(k)
            sel = labels == k
            ax.scatter(Y[sel, 0], Y[sel, 1], s=point_size, color=cmap(int(k) % cmap.N), label=name, linewidths=0)
        ax.legend(markerscale=12 / max(point_size, 1), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  frameon=False)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def embedding_mosaic(mosaic: Any, title: str | None = None, size: float = 6.0, cmap: str = "gray") -> plt.Figure:
    """The image mosaic of ``mv.vis.tsne_grid`` (pass the GridLayout or its ``mosaic``)."""
    op = "embedding_mosaic"
    cmap, size, title = check_cmap(cmap, op), check_size(size, op), check_title(title, op)
    img = to_image(mosaic.mosaic if isinstance(mosaic, GridLayout) else mosaic, op=op, arg="mosaic")
    fig, ax = plt.subplots(figsize=(size, size * img.shape[0] / img.shape[1]))
    ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
    hide_axes(ax)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def explained_variance(result: PCAResult | Any, title: str | None = None, size: float = 4.0) -> plt.Figure:
    """Bars of each component's explained-variance ratio and their running total (a PCAResult)."""
    op = "explained_variance"
    size, title = check_size(size, op), check_title(title, op)
    if not isinstance(result, PCAResult | np.ndarray | list | tuple):
        raise TypeError(f"{op}: result must be a PCAResult (from mv.vis.pca_fit) or a 1-D ratio array, "
                        f"got {type(result).__name__}")
    ratio = as_array(result.explained_variance_ratio if isinstance(result, PCAResult) else result, op, "result")
    if ratio.ndim != 1:
        raise ValueError(f"explained_variance: expected a PCAResult or a 1-D ratio array, got shape {ratio.shape}")
    fig, ax = plt.subplots(figsize=(size * 1.4, size))
    k = np.arange(1, len(ratio) + 1)
    ax.bar(k, ratio, color="C0", label="per component")
    ax.plot(k, np.cumsum(ratio), "o-", color="C1", markersize=3, label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("fraction of variance")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
