"""Filters: the weights of convolution layers, ready to look at.

Why look at raw weights: a first-layer unit computes ``w . x_patch + b``, an inner product of the
filter with an image patch, so it responds most to a patch shaped like the filter itself
(template matching; for a fixed patch norm, the patch that maximises the inner product is
``w / |w|``). The first layer's filters *are* pictures of what it looks for: oriented edges,
opposing colours, blobs. Deeper filters act on feature maps, not pixels, so their weights can
only be shown one input channel at a time, and they are much harder to read.

Contrast normalisation (documented, since it changes what you see): each filter is scaled on
its own so that its largest absolute weight maps to 0 or 1 and zero maps to 0.5,

    shown = 0.5 + 0.5 * w / max|w|        (over all of this filter's taps and input channels)

so zero weight is mid-grey, positive is bright and negative dark, every filter uses the full
contrast range, and the colour balance between the R, G and B planes of one filter is kept
(one scale per filter, not per channel). ``normalize="minmax"`` instead maps each filter's own
minimum to 0 and maximum to 1 (brighter pictures, but zero no longer has a fixed grey).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minivis import backend
from minivis.nn.conv import Conv2d
from minivis.nn.module import Module
from minivis.vis.common import check_layer

NORMALIZATIONS = ("symmetric", "minmax", "none")


def _check_normalize(mode: Any, method: str) -> str:
    if not isinstance(mode, str) or mode not in NORMALIZATIONS:
        raise ValueError(f"{method}: normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    return mode


def _normalize(w: np.ndarray, mode: str) -> np.ndarray:
    """Per-filter scaling of ``w`` (F, ...) to [0, 1] (see the module docstring); ``mode`` is checked."""
    w = w.astype(np.float64)
    axes = tuple(range(1, w.ndim))
    if mode == "none":
        return w
    if mode == "symmetric":
        scale = np.abs(w).max(axis=axes, keepdims=True)
        return 0.5 + 0.5 * np.divide(w, scale, out=np.zeros_like(w), where=scale > 0)
    low, high = w.min(axis=axes, keepdims=True), w.max(axis=axes, keepdims=True)
    return np.divide(w - low, high - low, out=np.full_like(w, 0.5), where=high > low)


def _conv_weight(model: Module, layer: str | None, method: str) -> tuple[str, np.ndarray]:
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    if layer is None:
        convs = [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)]
        if not convs:
            raise ValueError(f"{method}: {type(model).__name__} has no Conv2d layer")
        layer, module = convs[0]
    else:
        module = check_layer(model, layer, method)
        if not isinstance(module, Conv2d):
            raise TypeError(f"{method}: layer {layer!r} is a {type(module).__name__}, not a Conv2d")
    return layer, np.asarray(backend.to_device(module.weight.data, "cpu"))


def first_layer_filters(model: Module, layer: str | None = None, normalize: str = "symmetric") -> np.ndarray:
    """The first convolution's filters as images: (F, kh, kw, 3) for RGB input, (F, kh, kw) for grey.

    layer: the conv layer to show (default: the first ``Conv2d`` in the model); its input must
    have 1 or 3 channels (pixels). Values are in [0, 1] after per-filter contrast normalisation.
    """
    return _first_layer_filters(model, layer, normalize, "first_layer_filters")


def _first_layer_filters(model: Module, layer: str | None, normalize: Any, method: str) -> np.ndarray:
    """``first_layer_filters``, its errors naming ``method``, the public call."""
    normalize = _check_normalize(normalize, method)
    name, w = _conv_weight(model, layer, method)
    if w.shape[1] not in (1, 3):
        raise ValueError(f"{method}: layer {name!r} has {w.shape[1]} input channels; only a layer "
                         f"that sees the image (1 or 3 channels) can be drawn as pictures; use filters() for it")
    shown = _normalize(w, normalize)
    return shown[:, 0] if w.shape[1] == 1 else shown.transpose(0, 2, 3, 1)


def filters(model: Module, layer: str, normalize: str = "symmetric") -> np.ndarray:
    """Any conv layer's filters as grey images, one per (output filter, input channel): (F, C_in/groups, kh, kw).

    Each output filter is normalised on its own, over all its input channels, so the relative
    strength of its input channels stays visible.
    """
    normalize = _check_normalize(normalize, "filters")
    _, w = _conv_weight(model, layer, "filters")
    return _normalize(w, normalize)


def filters_over_training(checkpoints: Sequence[int | Module] | Mapping[str, Module], layer: str | None = None,
                          normalize: str = "symmetric") -> dict[str, np.ndarray]:
    """The same filters at several points of training, for a side-by-side figure.

    checkpoints: epochs of the shipped ``fashion_cnn`` checkpoints (``mv.models.available_checkpoints()``,
    loaded with ``mv.models.load("fashion_cnn", checkpoint=k)``), models, or a mapping label -> model.
    Returns {label: first_layer_filters(...)} in the given order (labels "epoch k" for ints).
    """
    from minivis import models  # noqa: PLC0415 (vis does not need the zoo unless asked for checkpoints)

    method = "filters_over_training"
    normalize = _check_normalize(normalize, method)
    if isinstance(checkpoints, Mapping):
        items = list(checkpoints.items())
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str | bytes):
        items = []
        for i, item in enumerate(checkpoints):
            if isinstance(item, int | np.integer) and not isinstance(item, bool):
                try:
                    items.append((f"epoch {int(item)}", models.load("fashion_cnn", checkpoint=int(item))))
                except (FileNotFoundError, ValueError) as err:  # an epoch with no checkpoint is a bad argument here
                    raise ValueError(f"{method}: checkpoint {i} is epoch {int(item)}, which has no fashion_cnn "
                                     f"checkpoint ({err})") from err
            elif isinstance(item, Module):
                items.append((f"model {i}", item))
            else:
                raise TypeError(f"filters_over_training: checkpoint {i} must be an epoch (int) or a Module, "
                                f"got {type(item).__name__}")
    else:
        raise TypeError(f"filters_over_training: checkpoints must be a list of epochs/models or a dict, "
                        f"got {type(checkpoints).__name__}")
    if not items:
        raise ValueError("filters_over_training: no checkpoints given")
    return {str(label): _first_layer_filters(model, layer, normalize, method) for label, model in items}
