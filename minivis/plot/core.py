"""Figure building blocks shared by every method: image grids, heat-map overlays, saving PNGs.

Images are HxW (grey) or HxWx3 floats in [0, 1] or uint8; CHW arrays are accepted too and moved
to HWC. Functions return the matplotlib Figure so callers can add to it; ``save`` writes a PNG.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ and "IPython" not in sys.modules:
    matplotlib.use("Agg")  # no screen here: render off-screen to PNG

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from minivis.validate import check_bool, check_float, host  # noqa: E402

MAX_SIZE = 100.0  # inches per panel: far past any screen or page, well short of matplotlib's 2**16-pixel limit


def to_image(array: Any, *, op: str = "to_image", arg: str = "image") -> np.ndarray:
    """An array as a displayable HxW or HxWx3 image (CHW moved to HWC, single channel squeezed).

    NaN and infinities are refused: matplotlib would draw them as holes or as one saturated colour.
    ``op`` and ``arg`` name the public call and argument in the errors (every figure converts its
    images here)."""
    img = np.asarray(host(array))
    if img.dtype.kind not in "biuf":  # strings, complex, objects: matplotlib's errors would not say where
        raise TypeError(f"{op}: expected a numeric {arg}, got dtype {img.dtype}")
    if img.size == 0:
        raise ValueError(f"{op}: the {arg} is empty, got shape {img.shape}")
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise ValueError(f"{op}: expected an HxW, HxWx3 or CxHxW {arg}, got shape {img.shape}")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        raise ValueError(f"{op}: the {arg} has {int((~np.isfinite(img)).sum())} NaN or infinite values")
    return img


def as_array(value: Any, op: str, arg: str, *, allow_nan: bool = False) -> np.ndarray:
    """A numeric array or Tensor (any device) as a non-empty float64 host array without infinities.

    allow_nan: keep NaN where the docstring says it is drawn (blank: the part of a receptive field
    past the image, an occlusion position no patch covered); otherwise it is refused, as a NaN would
    silently blank a panel or turn a whole min-max scale into NaN."""
    data = host(value)
    if not isinstance(data, np.ndarray | list | tuple):
        raise TypeError(f"{op}: {arg} must be a numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(data)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{op}: {arg} must be a rectangular numeric array: {err}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected a numeric array for {arg}, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{op}: {arg} is empty, got shape {array.shape}")
    array = array.astype(np.float64)
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        what = "infinite" if allow_nan else "NaN or infinite"
        raise ValueError(f"{op}: {arg} has {int(bad.sum())} {what} values")
    return array


# --------------------------------------------------------------------------- argument checks
# Shared by every public figure, so that a bad argument is refused at the entry point under the
# call's name, not deep inside matplotlib (a singular transform for size 0, "figure size must be
# positive finite", "'float' object is not iterable", an IndexError for a short list of titles).

def check_size(size: Any, op: str, arg: str = "size") -> float:
    """A panel size in inches: a finite number in (0, MAX_SIZE]."""
    value = check_float(size, op, arg)  # TypeError for non-numbers, ValueError for NaN and infinities
    if not 0 < value <= MAX_SIZE:
        raise ValueError(f"{op}: {arg} must be a number of inches in (0, {MAX_SIZE:g}], got {size!r}")
    return value


def check_panels(value: Any, op: str, arg: str, *, allow_none: bool = False) -> int | None:
    """A count (columns, rows, top-k, the most filters or channels to draw): an int >= 1, or None
    where ``allow_none`` (then the figure picks). Larger than there is to draw is fine: callers cap it."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{op}: {arg} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    if value < 1:
        raise ValueError(f"{op}: {arg} must be an int >= 1, got {value}")
    return int(value)


def check_alpha(alpha: Any, op: str) -> float:
    """An opacity in [0, 1] (matplotlib's own message names neither the call nor the argument)."""
    return check_float(alpha, op, "alpha", 0.0, 1.0)


def check_title(title: Any, op: str, arg: str = "title") -> str | None:
    """None or a str (an array as a title fails in ``if title:`` with NumPy's truth-value error)."""
    if title is not None and not isinstance(title, str):
        raise TypeError(f"{op}: {arg} must be a str or None, got {type(title).__name__}")
    return title


def check_ax(ax: Any, op: str) -> Axes | None:
    """None (a new figure) or a matplotlib Axes to draw into."""
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"{op}: ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def check_names(names: Any, n: int, op: str, arg: str, *, exact: bool = False,
                required: bool = False) -> list[Any] | None:
    """None (unless ``required``), or a list/tuple/1-D array of at least (``exact``: exactly) ``n``
    labels or values, one per panel.

    A str is refused although it is a sequence: its characters would become the labels."""
    if names is None and not required:
        return None
    if isinstance(names, np.ndarray):
        names = names.tolist() if names.ndim == 1 else names
    if isinstance(names, str | bytes | Mapping) or not isinstance(names, Sequence):
        raise TypeError(f"{op}: {arg} must be a list{'' if required else ' or None'}, got {type(names).__name__}")
    if len(names) < n or (exact and len(names) != n):
        raise ValueError(f"{op}: {arg} must have {'' if exact else 'at least '}{n} entries (one per panel), "
                         f"got {len(names)}")
    return list(names)


def check_mapping(value: Any, op: str, arg: str, what: str) -> dict[Any, Any]:
    """A non-empty mapping, e.g. {method name: map}; ``what`` says what its values are."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{op}: {arg} must be a mapping {{name: {what}}}, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{op}: {arg} must be a non-empty mapping {{name: {what}}}, got an empty one")
    return dict(value)


def check_items(value: Any, op: str, arg: str, what: str = "images") -> list[Any]:
    """A non-empty list, tuple or array (a batch along its first axis) of ``what``, as a list."""
    data = host(value)
    if isinstance(data, np.ndarray) and data.ndim == 0 or not isinstance(data, np.ndarray | list | tuple):
        raise TypeError(f"{op}: {arg} must be a list or array of {what}, got {type(value).__name__}")
    if len(data) == 0:
        raise ValueError(f"{op}: {arg} must hold at least one of the {what}, got none")
    return list(data)


def check_result(value: Any, cls: type, op: str, arg: str, made_by: str) -> Any:
    """``value`` if it is the result object ``cls`` the figure draws (say which call makes one)."""
    if not isinstance(value, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"{op}: {arg} must be {article} {cls.__name__} (from {made_by}), got {type(value).__name__}")
    return value


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


def normalize(array: Any, symmetric: bool = False) -> np.ndarray:
    """Scale to [0, 1] for display: min-max, or around 0 (0 -> 0.5) when ``symmetric``.

    A constant array becomes all 0 (all 0.5 when ``symmetric``). Empty arrays and NaN or infinite
    values are refused: they have no range to scale by (the result would be NaN everywhere)."""
    symmetric = check_bool(symmetric, "normalize", "symmetric")
    return _scale(as_array(array, "normalize", "array"), symmetric)


def _scale(array: np.ndarray, symmetric: bool = False) -> np.ndarray:
    """``normalize`` of an array its caller has already checked (non-empty, finite, float64)."""
    if symmetric:
        scale = np.abs(array).max()
        return 0.5 + 0.5 * array / scale if scale > 0 else np.full_like(array, 0.5)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def image_grid(images: Sequence[Any], titles: Sequence[str] | None = None, ncols: int | None = None,
               cmap: str = "gray", size: float = 2.0, suptitle: str | None = None) -> plt.Figure:
    """Images side by side in a grid (floats are shown as given: normalise them first if needed).

    ncols: columns (default: up to 8; more than there are images is capped)."""
    op = "image_grid"
    cmap, size, suptitle = check_cmap(cmap, op), check_size(size, op), check_title(suptitle, op, "suptitle")
    images = [to_image(img, op=op, arg=f"images[{i}]") for i, img in enumerate(check_items(images, op, "images"))]
    n = len(images)
    titles = check_names(titles, n, op, "titles")
    ncols = min(check_panels(ncols, op, "ncols", allow_none=True) or 8, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        hide_axes(ax)
        if i < n:
            img = images[i]
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def overlay(image: Any, heatmap: Any, alpha: float = 0.5, cmap: str = "jet", ax: Axes | None = None,
            title: str | None = None) -> plt.Figure:
    """A heat map (any size; stretched to the image) drawn over a photo (on ``ax``, or a new figure)."""
    return _overlay(image, heatmap, alpha, cmap, ax, title, op="overlay")


def _overlay(image: Any, heatmap: Any, alpha: Any, cmap: Any, ax: Any, title: Any, op: str) -> plt.Figure:
    """``overlay``, its errors under the name of the public call ``op`` that draws it."""
    cmap, alpha = check_cmap(cmap, op), check_alpha(alpha, op)
    ax, title = check_ax(ax, op), check_title(title, op)
    img = to_image(image, op=op)
    heat = as_array(heatmap, op, "heatmap")
    if heat.ndim != 2:
        raise ValueError(f"{op}: heatmap must be 2-D (H, W), got shape {heat.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    ax.imshow(_scale(heat), cmap=cmap, alpha=alpha, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5),
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
    dpi = check_float(dpi, "save", "dpi")
    if dpi < 10:  # below it FreeType cannot size the small labels (RuntimeError "invalid ppem value")
        raise ValueError(f"save: dpi must be >= 10, got {dpi:g}")
    pixels = fig.get_size_inches() * dpi
    if pixels.max() >= 2**16:  # Agg's limit; its own error names neither the call nor the dpi
        raise ValueError(f"save: the figure would be {pixels[0]:.0f}x{pixels[1]:.0f} pixels at dpi {dpi:g}, "
                         f"more than the PNG renderer's 65536 in a direction; lower the dpi or the figure's size")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    except OSError as err:  # a folder or file in the way, no permission, a name too long: say which call
        raise type(err)(err.errno, f"save: cannot write {str(path)!r}: {err.strerror}") from err
    plt.close(fig)
    return path
