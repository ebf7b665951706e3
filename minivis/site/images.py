"""Small pictures for the site written straight with Pillow: a filter, a feature visualisation, a mosaic
of patches. Hundreds of these make a microscope page, and a matplotlib figure each would cost far more
than the numbers behind them; the captioned figures with axes and colour bars go through ``minivis.plot``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray, stretch: bool = False) -> np.ndarray:
    """HxW or HxWxC floats in [0, 1] (or min-max stretched when ``stretch``) -> uint8; NaN becomes white."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    blank = np.isnan(img)
    if stretch:
        finite = img[~blank]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    img = np.where(blank, 1.0, np.clip(img, 0.0, 1.0))
    return np.round(img * 255).astype(np.uint8)


def signed_image(crop: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """A signed (C, h, w) map as a picture: 0 at mid-grey, +-(the ``percentile`` of |value|) at white and
    black, (h, w) or (h, w, 3) in [0, 1]; NaN (outside the image) stays NaN (drawn white)."""
    img = np.moveaxis(np.asarray(crop, dtype=np.float64), 0, -1)
    finite = np.isfinite(img)
    top = np.percentile(np.abs(img[finite]), percentile) if finite.any() else 0.0
    img = np.clip(0.5 + 0.5 * img / top, 0.0, 1.0) if top > 0 else np.where(finite, 0.5, np.nan)
    return img[..., 0] if img.shape[-1] == 1 else img


def save_image(image: np.ndarray, path: Path, min_size: int = 96, stretch: bool = False) -> Path:
    """Save an HxW[xC] image as PNG, enlarged with nearest-neighbour sampling to at least ``min_size`` px
    (a 3x3 filter stays a crisp 3x3 checkerboard instead of a blur)."""
    pixels = to_uint8(image, stretch)
    scale = max(1, int(np.ceil(min_size / max(pixels.shape[:2]))))
    if scale > 1:
        pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    Image.fromarray(pixels).save(path, optimize=False)
    return path


def mosaic(images: Sequence[np.ndarray], ncols: int, gap: int = 2) -> np.ndarray:
    """Equal-sized HxW[xC] float images in a grid with white gaps (NaN cells stay NaN: drawn white)."""
    if not len(images):
        raise ValueError("mosaic: no images given")
    first = np.asarray(images[0])
    h, w = first.shape[:2]
    nrows = -(-len(images) // ncols)
    canvas = np.ones((nrows * (h + gap) - gap, ncols * (w + gap) - gap) + first.shape[2:], dtype=np.float64)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    return canvas
