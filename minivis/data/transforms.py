"""Image transforms on NumPy arrays: one image is (H, W) or (H, W, C), uint8 in 0..255 or float in [0, 1].

Resizing goes through Pillow's bilinear filter, which antialiases when shrinking (its kernel widens
by the scale factor), the same as torchvision's ``Resize`` on PIL images; crops follow torchvision's
offset rounding, so a model's ``preprocess`` built from these matches its torchvision original.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from minivis.validate import check_array_size, check_positive_int, check_seed


def _check_image(img: Any, op: str) -> np.ndarray:
    """``img`` as an array (H, W) or (H, W, C) of uint8 or float."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{op}: img must be a numpy array (H, W) or (H, W, C), got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"{op}: img must be 2-D (H, W) or 3-D (H, W, C), got shape {img.shape}")
    if img.dtype != np.uint8 and img.dtype.kind != "f":
        raise TypeError(f"{op}: img must be uint8 or float, got dtype {img.dtype}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{op}: img must not be empty, got shape {img.shape}")
    return img


def _size_pair(size: Any, op: str, name: str = "size") -> tuple[int, int]:
    """An int (a square) or a pair ``(h, w)`` of positive ints."""
    pair = (size, size) if isinstance(size, int | np.integer) else size
    if (not isinstance(pair, tuple | list) or len(pair) != 2
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (h, w), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{op}: {name} must be positive, got {size!r}")
    return int(pair[0]), int(pair[1])


def to_float(img: Any, dtype: Any = np.float32) -> np.ndarray:
    """uint8 0..255 -> float in [0, 1] (x / 255); float input is only cast to ``dtype``. Any shape."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"to_float: img must be a numpy array, got {type(img).__name__}")
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"to_float: dtype must be a float dtype, got {np.dtype(dtype)}")
    if img.dtype == np.uint8:
        return img.astype(dtype) / np.asarray(255, dtype=dtype)
    if img.dtype.kind == "f":
        return img.astype(dtype)
    raise TypeError(f"to_float: img must be uint8 (0..255) or float ([0, 1]), got dtype {img.dtype}")


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``img`` (H, W[, C]) to ``size`` = (h, w) (an int means (size, size)) by antialiased bilinear
    interpolation. The dtype is kept: uint8 is rounded by Pillow; float is computed in float32."""
    img = _check_image(img, "resize")
    h, w = _size_pair(size, "resize")
    planes = img[:, :, None] if img.ndim == 2 else img
    check_array_size((h, w, planes.shape[2]), img.dtype, "resize")  # not a MemoryError from np.empty
    if max(h, w) >= 2**31:  # Pillow takes sizes as C ints: an OverflowError past this
        raise ValueError(f"resize: size must be below 2**31 on each side (Pillow's limit), got {(h, w)}")
    # Pillow resamples each band on its own, so one plane at a time gives the same result as an RGB
    # image for uint8 and lets float planes ("F" mode) through too; the loop runs over channels only.
    out = np.empty((h, w, planes.shape[2]), dtype=img.dtype)
    for c in range(planes.shape[2]):
        plane = planes[:, :, c] if img.dtype == np.uint8 else planes[:, :, c].astype(np.float32)
        # PIL takes the size as (width, height).
        out[:, :, c] = np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((w, h), Image.BILINEAR))
    return out[:, :, 0] if img.ndim == 2 else out


def resize_shorter_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side becomes ``size``, keeping the aspect ratio (the longer side is
    ``int(size * long / short)``, truncated as torchvision's ``Resize(size)`` does)."""
    img = _check_image(img, "resize_shorter_side")
    if not isinstance(size, int | np.integer) or isinstance(size, bool):
        raise TypeError(f"resize_shorter_side: size must be a positive int, got {size!r}")
    if size < 1:
        raise ValueError(f"resize_shorter_side: size must be a positive int, got {size}")
    # The output is at least size x size: refuse a huge size here, under this op's name, before the
    # float arithmetic below can overflow (size * width / height) or resize() refuses it under its own.
    check_array_size((size, size) + img.shape[2:], img.dtype, "resize_shorter_side")
    height, width = img.shape[:2]
    if height <= width:
        return resize(img, (int(size), int(size * width / height)))
    return resize(img, (int(size * height / width), int(size)))


def center_crop(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The central (h, w) window of ``img`` (H, W[, C]).
    Offsets are ``round((H - h) / 2)``, as in torchvision."""
    img = _check_image(img, "center_crop")
    h, w = _size_pair(size, "center_crop")
    height, width = img.shape[:2]
    if h > height or w > width:
        raise ValueError(f"center_crop: size {(h, w)} must fit in the image, "
                         f"got image (H, W) = {(height, width)}")
    top, left = int(round((height - h) / 2.0)), int(round((width - w) / 2.0))
    return img[top:top + h, left:left + w].copy()


def random_crops(img: np.ndarray, size: int | tuple[int, int], n: int,
                 seed: int | np.random.Generator | None = None) -> np.ndarray:
    """``n`` crops of (h, w) from ``img`` (H, W[, C]) at positions drawn uniformly by
    ``np.random.default_rng(seed)``. Returns (n, h, w[, C])."""
    img = _check_image(img, "random_crops")
    h, w = _size_pair(size, "random_crops")
    check_positive_int(n, "random_crops", "n")
    height, width = img.shape[:2]
    if h > height or w > width:
        raise ValueError(f"random_crops: size {(h, w)} must fit in the image, "
                         f"got image (H, W) = {(height, width)}")
    # n, h and w are checked one by one above; their product may still outgrow memory
    check_array_size((n, h, w) + img.shape[2:], img.dtype, "random_crops", "crops")
    check_array_size((n, 2), np.int64, "random_crops", "crop positions")  # 16 bytes a crop: more than 1x1 crops
    rng = np.random.default_rng(check_seed(seed, "random_crops", generator_ok=True))
    tops = rng.integers(0, height - h + 1, size=n)
    lefts = rng.integers(0, width - w + 1, size=n)
    # All windows as a view (H-h+1, W-w+1[, C], h, w); gather the chosen ones, then move C last.
    windows = np.lib.stride_tricks.sliding_window_view(img, (h, w), axis=(0, 1))[tops, lefts]
    return np.moveaxis(windows, 1, -1).copy() if img.ndim == 3 else windows.copy()


def to_nchw(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W), or grey (N, H, W) -> (N, 1, H, W); C-contiguous, dtype kept.
    A single image (H, W, C) is a batch of one: pass ``img[None]``."""
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"to_nchw: batch must be a numpy array, got {type(batch).__name__}")
    if batch.ndim == 3:
        return np.ascontiguousarray(batch[:, None])
    if batch.ndim == 4:
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    raise ValueError(f"to_nchw: batch must be 4-D (N, H, W, C) or 3-D (N, H, W), got shape {batch.shape}")
