"""Hand-drawn object masks for the offline photos, for the pointing game (Zhang et al. 2016) and other
localisation checks.

Each object is a few shapes in the photo's native pixel coordinates (x to the right, y down), drawn
by eye over a 50 px grid: rough outlines, a few pixels off at the edges, meant for "is the peak on
the object", not for segmentation scores. ``photo_mask(name)`` rasterises them to a bool (H, W) mask.
"""

from __future__ import annotations

import numpy as np

from minivis.validate import check_str

# photo -> object -> shapes; ("ellipse", cx, cy, rx, ry) or ("polygon", ((x, y), ...)). The first
# object of a photo is its default.
_OBJECTS: dict[str, dict[str, tuple]] = {
    "chelsea": {  # 451 x 300: the cat's face, both eyes to the nose and mouth
        "face": (("ellipse", 245, 165, 165, 125),),
    },
    "coffee": {  # 600 x 400: the cup with its handle (not the saucer or the spoon)
        "cup": (("polygon", ((175, 95), (185, 45), (230, 20), (290, 15), (350, 22), (395, 45), (408, 90),
                             (400, 160), (385, 215), (350, 260), (300, 280), (255, 280), (250, 300), (225, 308),
                             (198, 298), (195, 260), (205, 235), (185, 190))),),
    },
    "rocket": {  # 640 x 427: the launcher on its pad, nose cone to the base (not the towers)
        "rocket": (("polygon", ((322, 126), (330, 135), (334, 160), (335, 405), (309, 405), (309, 160),
                                (313, 135))),),
    },
    "astronaut": {  # 512 x 512: Eileen Collins's head (hair and face), and the shuttle model behind her
        "face": (("ellipse", 226, 100, 76, 92),),
        "shuttle": (("polygon", ((400, 40), (418, 0), (432, 10), (440, 45), (455, 60), (458, 200), (455, 215),
                                 (448, 270), (380, 270), (365, 245), (357, 215), (380, 185), (385, 90),
                                 (395, 70))),),
    },
}

_SIZES = {"chelsea": (300, 451), "coffee": (400, 600), "rocket": (427, 640), "astronaut": (512, 512)}

MASKED_PHOTOS: tuple[str, ...] = tuple(_OBJECTS)


def _inside_polygon(points: tuple, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Even-odd rule at pixel centres, one vectorised pass per edge."""
    inside = np.zeros(np.broadcast(ys, xs).shape, dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        crosses = (y0 > ys) != (y1 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


def photo_objects(name: str) -> tuple[str, ...]:
    """The objects with a mask in photo ``name`` (the first is ``photo_mask``'s default)."""
    if check_str(name, "photo_objects", "name", tuple(MASKED_PHOTOS)) not in _OBJECTS:
        valid = ", ".join(repr(n) for n in MASKED_PHOTOS)
        raise ValueError(f"photo_objects: name must be one of {valid}, got {name!r}")
    return tuple(_OBJECTS[name])


def photo_mask(name: str, obj: str | None = None) -> np.ndarray:
    """The hand-drawn mask of object ``obj`` (default: the photo's main object) in photo ``name``, as
    bool (H, W) at the photo's native size (``mv.data.photo(name).shape[:2]``)."""
    if check_str(name, "photo_mask", "name", tuple(MASKED_PHOTOS)) not in _OBJECTS:
        valid = ", ".join(repr(n) for n in MASKED_PHOTOS)
        raise ValueError(f"photo_mask: name must be one of {valid}, got {name!r}")
    objects = _OBJECTS[name]
    obj = next(iter(objects)) if obj is None else obj
    if obj not in objects:
        raise ValueError(f"photo_mask: obj for {name!r} must be one of {', '.join(map(repr, objects))}, got {obj!r}")
    h, w = _SIZES[name]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    mask = np.zeros((h, w), dtype=bool)
    for shape in objects[obj]:
        if shape[0] == "ellipse":
            _, cx, cy, rx, ry = shape
            mask |= ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
        else:
            mask |= _inside_polygon(shape[1], ys, xs)
    return mask
