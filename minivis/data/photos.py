"""Offline photographs for trying the visualisation methods on natural images.

Every photo ships inside scikit-image or scikit-learn (no download: only images bundled with the
packages are used). Each call returns a fresh uint8 array (H, W, 3), RGB.
"""

from __future__ import annotations

import numpy as np

from minivis.data._optional import require
from minivis.validate import check_str

# name -> (module, pip package, how to get the image from the module)
_SOURCES = {
    "chelsea": ("skimage.data", "scikit-image", lambda m: m.chelsea()),          # a tabby cat, 300x451
    "coffee": ("skimage.data", "scikit-image", lambda m: m.coffee()),            # a cup of espresso, 400x600
    "astronaut": ("skimage.data", "scikit-image", lambda m: m.astronaut()),      # Eileen Collins, 512x512
    "rocket": ("skimage.data", "scikit-image", lambda m: m.rocket()),            # a launch, 427x640
    "motorcycle": ("skimage.data", "scikit-image", lambda m: m.stereo_motorcycle()[0]),  # left view, 500x741
    "camera": ("skimage.data", "scikit-image", lambda m: m.camera()),            # a photographer, grey 512x512
    "china": ("sklearn.datasets", "scikit-learn", lambda m: m.load_sample_image("china.jpg")),  # 427x640
    "flower": ("sklearn.datasets", "scikit-learn", lambda m: m.load_sample_image("flower.jpg")),  # 427x640
}

PHOTOS: tuple[str, ...] = tuple(_SOURCES)


def photo(name: str) -> np.ndarray:
    """The photo ``name`` (one of ``PHOTOS``) as uint8 (H, W, 3); grey photos are replicated to 3 channels."""
    if check_str(name, "photo", "name", tuple(PHOTOS)) not in _SOURCES:
        valid = ", ".join(repr(n) for n in PHOTOS)
        raise ValueError(f"photo: name must be one of {valid}, got {name!r}")
    module, pip_name, get = _SOURCES[name]
    image = np.asarray(get(require(module, pip_name, f"photo({name!r})")))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    # Bundled images are 8-bit RGB already; the checks guard against a package changing that.
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"photo: {name!r} from {module} is {image.dtype} {image.shape}, "
                         "expected uint8 (H, W, 3)")
    return np.array(image, copy=True)
