"""``tsne_grid``: lay the images of a 2-D map (PCA, t-SNE: ``pca``, ``tsne`` beside this module)
out on a square grid, the picture Karpathy's CS231n notes show.

A scatter of thumbnails overlaps where the map is dense and leaves holes where it is sparse.
``tsne_grid`` instead gives every image its own cell of a rows x cols grid, choosing the
one-to-one assignment of points to cells that moves them least in total: with the map scaled to
the unit square and cell centres ``c_g``, it minimises ``sum_i |y_i - c_{g(i)}|^2`` over
assignments g (a linear assignment problem, solved exactly by
``scipy.optimize.linear_sum_assignment``; O(N^3) in the worst case, about a second for 2,000
points: subsample larger maps). Neighbours on the map stay neighbours on the grid.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from minivis.validate import check_array_size, check_float, host


class GridLayout(NamedTuple):
    """What ``tsne_grid`` returns.

    cells: (N, 2) int, the (row, col) cell of each point.
    mosaic: (rows * H, cols * W) or (rows * H, cols * W, C) image of the tiles (empty cells = fill).
    grid: (rows, cols).
    """

    cells: np.ndarray
    mosaic: np.ndarray
    grid: tuple[int, int]


def _images_hwc(images: Any, n: int) -> np.ndarray:
    images = np.asarray(host(images))
    if images.dtype.kind not in "fiub":
        raise TypeError(f"tsne_grid: images must be numeric, got dtype {images.dtype}")
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"tsne_grid: images must be (N, H, W), (N, H, W, 3) or (N, C, H, W) with C in (1, 3), "
                         f"got shape {images.shape}")
    if images.shape[0] != n:
        raise ValueError(f"tsne_grid: got {images.shape[0]} images for {n} embedding points")
    return images


def _grid_shape(grid: Any, n: int) -> tuple[int, int]:
    if grid is None:
        side = math.ceil(math.sqrt(n))
        return side, side
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        rows = cols = int(grid)
    elif isinstance(grid, (tuple, list)) and len(grid) == 2 and all(
            isinstance(g, (int, np.integer)) and not isinstance(g, bool) for g in grid):
        rows, cols = int(grid[0]), int(grid[1])
    else:
        raise TypeError(f"tsne_grid: grid must be None, an int side or a (rows, cols) pair of ints, got {grid!r}")
    if rows < 1 or cols < 1 or rows * cols < n:
        raise ValueError(f"tsne_grid: a {rows} x {cols} grid has {rows * cols} cells, fewer than the {n} points "
                         f"(need rows * cols >= N)")
    return rows, cols


def tsne_grid(embedding: Any, images: Any, grid: int | tuple[int, int] | None = None,
              fill: float = 0.0) -> GridLayout:
    """Snap a 2-D embedding (N, 2) of ``images`` onto a grid and tile the images there.

    images: (N, H, W), (N, H, W, 3) or (N, C, H, W) with C in (1, 3); uint8 or float.
    grid: None (the smallest square with at least N cells), an int side, or (rows, cols).
    fill: the value of empty cells in the mosaic.
    Row 0 is the top of the mosaic and holds the points with the largest second coordinate, so
    the mosaic has the orientation of a scatter plot of the embedding.
    """
    Y = np.asarray(host(embedding))
    if Y.dtype.kind not in "fiu":
        raise TypeError(f"tsne_grid: embedding must be a numeric array (N, 2), got dtype {Y.dtype}")
    if Y.ndim != 2 or Y.shape[1] != 2 or Y.shape[0] < 1:
        raise ValueError(f"tsne_grid: embedding must be (N, 2) with N >= 1, got shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("tsne_grid: embedding contains NaN or infinite values")
    n = Y.shape[0]
    images = _images_hwc(images, n)
    rows, cols = _grid_shape(grid, n)
    fill = check_float(fill, "tsne_grid", "fill")
    check_array_size((n, rows * cols), np.float64, "tsne_grid", "assignment cost matrix")
    check_array_size((rows * images.shape[1], cols * images.shape[2]) + images.shape[3:], images.dtype, "tsne_grid",
                     "mosaic")

    # Scale the map into the unit square (each axis to [0, 1]) and put cell centres on a lattice.
    Y = Y.astype(np.float64)
    span = Y.max(0) - Y.min(0)
    U = (Y - Y.min(0)) / np.where(span > 0, span, 1.0)
    r, c = np.divmod(np.arange(rows * cols), cols)
    centres = np.stack([(c + 0.5) / cols, 1.0 - (r + 0.5) / rows], axis=1)  # (x, y); row 0 at the top
    cost = ((U[:, None, :] - centres[None, :, :]) ** 2).sum(-1)           # (N, rows*cols)
    point, cell = linear_sum_assignment(cost)
    cells = np.empty((n, 2), dtype=np.int64)
    cells[point] = np.stack(np.divmod(cell, cols), axis=1)

    h, w = images.shape[1:3]
    mosaic = np.full((rows * h, cols * w) + images.shape[3:], fill, dtype=images.dtype)
    for i, (ri, ci) in enumerate(cells):  # N tile copies (not a pixel loop)
        mosaic[ri * h:(ri + 1) * h, ci * w:(ci + 1) * w] = images[i]
    return GridLayout(cells=cells, mosaic=mosaic, grid=(rows, cols))
