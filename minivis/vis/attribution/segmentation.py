"""Weakly supervised segmentation from a saliency map (Simonyan, Vedaldi & Zisserman, "Deep Inside
Convolutional Networks", ICLR 2014 workshop, section 3.2).

A classifier trained on image labels alone already knows roughly where the object is: its
saliency map is large there. The map is too spotty to be a mask by itself, so it only *seeds*
a colour-model segmentation:

1. saliency ``M`` (the max over channels of |dS_c/dx|);
2. pixels above the ``fg_quantile`` of M (top 5%) are surely foreground, pixels below the
   ``bg_quantile`` (bottom 30%) surely background, the rest unknown (probably background);
3. GrabCut (Rother, Kolmogorov & Blake 2004) fits a Gaussian-mixture colour model to each side
   and cuts the graph of neighbouring pixels so that the labels follow the colours and edges.

GrabCut comes from OpenCV (``cv2.grabCut``), an optional dependency imported only here:
``pip install opencv-python-headless``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_positive_int, host
from minivis.vis.common import Target, as_batch, inference, model_scores, unbatch

INSTALL_HINT = "pip install opencv-python-headless"


def _cv2() -> Any:
    try:
        import cv2  # noqa: PLC0415 (optional dependency: only this method needs it)
    except ImportError as err:
        raise ImportError(f"saliency_segmentation needs OpenCV's GrabCut: `{INSTALL_HINT}`") from err
    return cv2


def _as_uint8_images(images: Any, n: int, hw: tuple[int, int], op: str) -> np.ndarray:
    """(N, H, W, 3) uint8 from HxW[x3] or NxHxW[x3] images, uint8 or float in [0, 1]."""
    arr = np.asarray(host(images))
    if arr.ndim in (2, 3) and arr.shape[:2] == tuple(hw):
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[:3] != (n, *hw) or arr.shape[3] not in (1, 3):
        raise ValueError(f"{op}: image must be HxW[x3] (or N of them) matching x's {n} image(s) of size {hw}, "
                         f"got shape {arr.shape}")
    if arr.dtype.kind == "f":
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255)
    elif arr.dtype.kind not in "ui":
        raise TypeError(f"{op}: image must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    return np.ascontiguousarray(np.repeat(arr, 3 // arr.shape[3], axis=3).astype(np.uint8))


def _display_images(model: Module, batch: Any) -> np.ndarray:
    """What the model saw, as photos: ``model.deprocess`` if it has one, else min-max per image."""
    if hasattr(model, "deprocess"):
        return np.asarray(model.deprocess(batch))
    data = np.asarray(backend.to_device(batch, "cpu"), dtype=np.float64).transpose(0, 2, 3, 1)
    low = data.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(data.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    return (data - low) / span


def seeds(saliency_map: np.ndarray, fg_quantile: float, bg_quantile: float, op: str) -> np.ndarray:
    """GrabCut's starting labels (H, W) uint8: GC_FGD above the fg quantile, GC_BGD below the bg
    quantile, GC_PR_BGD (probably background) in between."""
    cv2 = _cv2()
    high, low = np.quantile(saliency_map, fg_quantile), np.quantile(saliency_map, bg_quantile)
    mask = np.full(saliency_map.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    mask[saliency_map >= high] = cv2.GC_FGD
    mask[saliency_map <= low] = cv2.GC_BGD
    if not (mask == cv2.GC_FGD).any() or not (mask == cv2.GC_BGD).any() or high <= low:
        raise ValueError(f"{op}: the saliency map is too flat to seed both foreground and background "
                         f"(quantiles {bg_quantile} -> {low:.3g}, {fg_quantile} -> {high:.3g})")
    return mask


def saliency_segmentation(model: Module, x: Any, target: Target, fg_quantile: float = 0.95,
                          bg_quantile: float = 0.30, iterations: int = 5, image: Any = None,
                          saliency_map: Any = None) -> np.ndarray:
    """Foreground mask of the target class: saliency seeds -> GrabCut. (H, W) bool, or (N, H, W).

    x: (C, H, W) or (N, C, H, W) model input. target: class index, one per image, or callable.
    fg_quantile, bg_quantile: saliency quantiles that seed sure foreground / sure background.
    iterations: GrabCut iterations. image: the photo GrabCut models colours on (HxWx3, uint8 or
    float in [0, 1]); default ``model.deprocess(x)``. saliency_map: (H, W) or (N, H, W) to use
    instead of computing ``mv.vis.saliency(model, x, target)``.
    """
    op = "saliency_segmentation"
    cv2 = _cv2()
    batch, single = as_batch(x, model, op)
    n, hw = batch.shape[0], tuple(batch.shape[2:])
    for name, value in (("fg_quantile", fg_quantile), ("bg_quantile", bg_quantile)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(f"{op}: {name} must be in (0, 1), got {value!r}")
    if bg_quantile >= fg_quantile:
        raise ValueError(f"{op}: bg_quantile ({bg_quantile}) must be below fg_quantile ({fg_quantile})")
    check_positive_int(iterations, op, "iterations")
    if iterations > np.iinfo(np.int32).max:  # OpenCV takes a C int
        raise ValueError(f"{op}: iterations must be <= {np.iinfo(np.int32).max}, got {iterations}")
    with inference(model):  # the target is checked here, under this method's name
        model_scores(model, Tensor(batch), target, op)
    if saliency_map is None:
        from minivis.vis.attribution.gradients import saliency  # noqa: PLC0415 (attribution imports nothing from here)

        saliency_map = saliency(model, batch, target)
    maps = np.asarray(host(saliency_map))
    if maps.dtype.kind not in "biuf":
        raise TypeError(f"{op}: saliency_map must be a numeric array (H, W) or (N, H, W), got dtype {maps.dtype}")
    maps = maps.astype(np.float64)
    maps = maps[None] if maps.ndim == 2 else maps
    if maps.shape != (n, *hw):
        raise ValueError(f"{op}: saliency_map must be (H, W) or (N, H, W) = {(n, *hw)}, got {maps.shape}")
    photos = _as_uint8_images(_display_images(model, batch) if image is None else image, n, hw, op)
    masks = np.empty((n, *hw), dtype=bool)
    for i in range(n):  # GrabCut segments one image at a time
        labels = seeds(maps[i], fg_quantile, bg_quantile, op)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)  # GMM state (5 components)
        cv2.grabCut(photos[i], labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
        masks[i] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return unbatch(masks, single)
