"""Offline style and texture images: bundled with scikit-image, or drawn by a formula.

    img = mv.data.style_image("immunohistochemistry")   # uint8 (H, W, 3), RGB
    mv.data.STYLES                                      # every name

No download: the scikit-image ones ship inside the package (``skimage.data``), the others are
procedural (deterministic for a given size and seed). Grey textures are replicated to 3 channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minivis.data._optional import require
from minivis.validate import check_array_size, check_positive_int, check_str


def _skimage(getter: Callable) -> Callable[[int], np.ndarray]:
    def load(size: int) -> np.ndarray:
        return np.asarray(getter(require("skimage.data", "scikit-image", "style_image")))
    return load


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return y / size, x / size


def stripes(size: int = 256) -> np.ndarray:
    """Diagonal bands of three colours, period size / 8: a periodic texture (uint8 (size, size, 3))."""
    y, x = _grid(size)
    band = np.floor((x + y) * 8 * 1.5).astype(int) % 3
    colours = np.array([[230, 57, 70], [241, 250, 238], [29, 53, 87]], np.uint8)
    return colours[band]


def checkerboard(size: int = 256, squares: int = 8) -> np.ndarray:
    """Black and white squares, ``squares`` per side (uint8 (size, size, 3))."""
    y, x = _grid(size)
    cells = (np.floor(y * squares) + np.floor(x * squares)).astype(int) % 2
    return np.repeat((cells * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def waves(size: int = 256) -> np.ndarray:
    """Interfering sine waves mapped to a colour ramp (uint8 (size, size, 3)): smooth, flowing strokes."""
    y, x = _grid(size)
    t = (np.sin(2 * np.pi * (3 * x + np.sin(2 * np.pi * 2 * y) * 0.6))
         + np.sin(2 * np.pi * (4 * y + np.cos(2 * np.pi * 3 * x) * 0.5)))
    t = (t + 2) / 4
    rgb = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (t + s)) for s in (0.0, 0.33, 0.67)], axis=2)
    return np.round(255 * rgb).astype(np.uint8)


def mosaic(size: int = 256, cells: int = 90, seed: int = 0) -> np.ndarray:
    """Voronoi cells in a random palette with dark grout (uint8 (size, size, 3)): a stained-glass look."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (cells, 2))
    palette = np.array([[38, 70, 83], [42, 157, 143], [233, 196, 106], [244, 162, 97], [231, 111, 81],
                        [108, 52, 131]], np.float64)
    colours = palette[rng.integers(len(palette), size=cells)] * rng.uniform(0.8, 1.1, (cells, 1))
    y, x = _grid(size)
    d = (y.ravel()[:, None] - points[None, :, 0]) ** 2 + (x.ravel()[:, None] - points[None, :, 1]) ** 2
    order = np.argsort(d, axis=1)[:, :2]
    nearest = np.take_along_axis(d, order, axis=1)
    edge = (np.sqrt(nearest[:, 1]) - np.sqrt(nearest[:, 0])) * size < 2.0     # within ~1 px of a border
    image = colours[order[:, 0]]
    image[edge] = (20, 20, 20)
    return np.clip(image, 0, 255).reshape(size, size, 3).astype(np.uint8)


# name -> (loader(size) -> image, description)
_SOURCES: dict[str, tuple[Callable[[int], np.ndarray], str]] = {
    "brick": (_skimage(lambda m: m.brick()), "skimage: a brick wall, grey 512x512"),
    "grass": (_skimage(lambda m: m.grass()), "skimage: grass, grey 512x512"),
    "gravel": (_skimage(lambda m: m.gravel()), "skimage: gravel, grey 512x512"),
    "immunohistochemistry": (_skimage(lambda m: m.immunohistochemistry()),
                             "skimage: stained tissue under a microscope, 512x512"),
    "hubble": (_skimage(lambda m: m.hubble_deep_field()), "skimage: the Hubble deep field, 872x1000"),
    "retina": (_skimage(lambda m: m.retina()), "skimage: a human retina, 1411x1411"),
    "stripes": (stripes, "procedural: three-colour diagonal stripes"),
    "checkerboard": (checkerboard, "procedural: black and white squares"),
    "waves": (waves, "procedural: interfering sine waves on a colour ramp"),
    "mosaic": (mosaic, "procedural: Voronoi stained glass"),
}

STYLES: tuple[str, ...] = tuple(_SOURCES)


def style_image(name: str, size: int = 256) -> np.ndarray:
    """The style or texture ``name`` (one of ``STYLES``) as uint8 (H, W, 3), RGB.

    size: the side of the procedural images (the bundled ones keep their own size).
    """
    if check_str(name, "style_image", "name", tuple(STYLES)) not in _SOURCES:
        raise ValueError(f"style_image: name must be one of {', '.join(map(repr, STYLES))}, got {name!r}")
    size = check_positive_int(size, "style_image", "size")
    check_array_size((size, size, 3), np.uint8, "style_image")
    image = np.asarray(_SOURCES[name][0](size))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"style_image: {name!r} is {image.dtype} {image.shape}, expected uint8 (H, W, 3)")
    return np.array(image, copy=True)
