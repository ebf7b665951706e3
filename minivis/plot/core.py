"""Figure building blocks shared by every method: image grids, heat-map overlays, saving PNGs.

Images are HxW (grey) or HxWx3 floats in [0, 1] or uint8; CHW arrays are accepted too and moved
to HWC. Functions return the matplotlib Figure so callers can add to it; ``save`` writes a PNG.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ and "IPython" not in sys.modules:
    matplotlib.use("Agg")  # no screen here: render off-screen to PNG

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minivis import backend  # noqa: E402


def to_image(array: Any) -> np.ndarray:
    """An array as a displayable HxW or HxWx3 image (CHW moved to HWC, single channel squeezed)."""
    img = np.asarray(backend.to_device(getattr(array, "data", array), "cpu"))
    if img.dtype.kind not in "biuf":  # strings, complex, objects: matplotlib's errors would not say where
        raise TypeError(f"to_image: expected a numeric image, got dtype {img.dtype}")
    if img.size == 0:
        raise ValueError(f"to_image: the image is empty, got shape {img.shape}")
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"to_image: expected an HxW, HxWx3 or CxHxW image, got shape {img.shape}")
    return img


def check_cmap(cmap: Any, op: str) -> Any:
    """``cmap`` if it is a Colormap or a registered colormap name; refused under the op's name before
    matplotlib meets it (its error lists every colormap and names neither the op nor the argument)."""
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    if not isinstance(cmap, str):
        raise TypeError(f"{op}: cmap must be a colormap name or a matplotlib Colormap, got {type(cmap).__name__}")
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"{op}: cmap must be a matplotlib colormap name (e.g. 'gray', 'viridis', 'jet'), "
                         f"got {cmap!r}")
    return cmap


def normalize(array: np.ndarray, symmetric: bool = False) -> np.ndarray:
    """Scale to [0, 1] for display: min-max, or around 0 (0 -> 0.5) when ``symmetric``."""
    array = np.asarray(array, dtype=np.float64)
    if symmetric:
        scale = np.abs(array).max()
        return 0.5 + 0.5 * array / scale if scale > 0 else np.full_like(array, 0.5)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def image_grid(images: Sequence[Any], titles: Sequence[str] | None = None, ncols: int | None = None,
               cmap: str = "gray", size: float = 2.0, suptitle: str | None = None) -> plt.Figure:
    """Images side by side in a grid (floats are shown as given: normalise them first if needed)."""
    cmap = check_cmap(cmap, "image_grid")
    n = len(images)
    if n == 0:
        raise ValueError("image_grid: no images given")
    ncols = ncols or min(n, 8)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        hide_axes(ax)
        if i < n:
            img = to_image(images[i])
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def overlay(image: Any, heatmap: Any, alpha: float = 0.5, cmap: str = "jet", ax: Any = None,
            title: str | None = None) -> plt.Figure:
    """A heat map (any size; stretched to the image) drawn over a photo."""
    cmap = check_cmap(cmap, "overlay")
    img = to_image(image)
    heat = np.asarray(backend.to_device(getattr(heatmap, "data", heatmap), "cpu"), dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"overlay: heatmap must be 2-D (H, W), got shape {heat.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    ax.imshow(normalize(heat), cmap=cmap, alpha=alpha, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5),
              interpolation="bilinear")
    hide_axes(ax)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def hide_axes(ax: Any) -> None:
    """``ax.axis("off")``, and its x and y axes hidden too: then matplotlib never lays out the ticks
    nobody sees (without it, most of the time of a grid of images goes into invisible tick labels)."""
    ax.axis("off")
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)


def save(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (the folder is created) and close it."""
    if not isinstance(fig, plt.Figure):
        raise TypeError(f"save: fig must be a matplotlib Figure, got {type(fig).__name__}")
    name = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(name, str):
        raise TypeError(f"save: path must be a str or an os.PathLike file name, got {path!r}")
    if "\0" in name:
        raise ValueError(f"save: path must not contain a NUL character, got {name!r}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save: figures are saved as PNG, got {path.name!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    except OSError as err:  # a folder or file in the way, no permission, a name too long: say which call
        raise type(err)(err.errno, f"save: cannot write {str(path)!r}: {err.strerror}") from err
    plt.close(fig)
    return path
