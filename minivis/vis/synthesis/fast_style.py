"""Feed-forward style transfer: one pass through a trained ``TransformNet`` instead of an optimisation.

Johnson, Alahi & Fei-Fei (ECCV 2016) train the network once per style (``minivis train style``);
Dumoulin, Shlens & Kudlur (ICLR 2017) share it between styles, which differ only in the (gamma,
beta) rows of the conditional instance norms. Blending those rows,

    gamma(alpha) = (1 - alpha) gamma_a + alpha gamma_b,    beta(alpha) likewise,

gives styles *between* two trained ones (``interpolate_styles``), with no further training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minivis.autograd import tensor
from minivis.models.style_nets import TransformNet
from minivis.validate import check_float, check_int
from minivis.vis.common import inference


def _style_index(net: TransformNet, style: Any, method: str) -> int:
    """A style given by index or by name (``net.styles``) as an index, checked."""
    if isinstance(style, str):
        if style not in net.styles:
            raise ValueError(f"{method}: unknown style {style!r}; this network knows {net.styles}")
        return net.styles.index(style)
    index = check_int(style, method, "style")
    if not 0 <= index < net.num_styles:
        raise ValueError(f"{method}: style index {index} is out of range for a network with {net.num_styles} "
                         f"style(s) (0..{net.num_styles - 1})")
    return index


def _style_arg(net: TransformNet, style: Any, method: str) -> int | np.ndarray:
    """An index or name as an index; a mapping {style: weight} as mixture weights over ``net.styles``
    (weights >= 0, scaled to sum to 1: a convex blend of the trained (gamma, beta) rows)."""
    if not isinstance(style, Mapping):
        return _style_index(net, style, method)
    if not style:
        raise ValueError(f"{method}: the style mixture is empty; give {{style: weight, ...}}")
    mix = np.zeros(net.num_styles)
    for name, weight in style.items():
        mix[_style_index(net, name, method)] += check_float(weight, method, f"the weight of {name!r}", low=0.0)
    if mix.sum() <= 0:
        raise ValueError(f"{method}: the style mixture's weights sum to 0; give at least one positive weight")
    return mix / mix.sum()


def _pixels(photo: Any, method: str) -> np.ndarray:
    """An HxWx3 photo (uint8, or float in [0, 1]) -> (1, 3, H', W') float32, cropped to multiples of 4."""
    array = np.asarray(photo)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype.kind not in "uif":
        raise ValueError(f"{method}: photo must be an HxWx3 image, got shape {array.shape} dtype {array.dtype}")
    img = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    if not np.isfinite(img).all():
        raise ValueError(f"{method}: photo contains NaN or infinite values")
    h, w = img.shape[0] // 4 * 4, img.shape[1] // 4 * 4
    if min(h, w) < 8:
        raise ValueError(f"{method}: photo must be at least 8x8 pixels, got {array.shape[:2]}")
    return np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)[None])


def _run(net: TransformNet, x: np.ndarray, style: Any) -> np.ndarray:
    with inference(net):
        y = net(tensor(x.astype(net.down1.conv.weight.dtype)), style=style).numpy()
    return np.clip(y[0].transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)


def stylize(net: TransformNet, photo: Any, style: int | str | Mapping[Any, float] = 0) -> np.ndarray:
    """``photo`` (HxWx3) in ``style`` (an index or a name in ``net.styles``) -> HxWx3 floats in [0, 1].

    style may also be a mixture ``{"mosaic": 0.5, "waves": 0.5}`` (names or indices; weights >= 0,
    scaled to sum to 1) for a multi-style network: the norms' (gamma, beta) are blended.

    H and W are cropped to multiples of 4 (two stride-2 steps down and up).
    """
    method = "stylize"
    if not isinstance(net, TransformNet):
        raise TypeError(f"{method}: net must be a TransformNet (mv.models.load('fast_style', style=...)), "
                        f"got {type(net).__name__}")
    return _run(net, _pixels(photo, method), _style_arg(net, style, method))


def interpolate_styles(net: TransformNet, photo: Any, a: int | str, b: int | str,
                       alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> list[np.ndarray]:
    """``photo`` rendered with the (gamma, beta) of ``(1 - alpha) a + alpha b`` for each alpha in [0, 1]."""
    method = "interpolate_styles"
    if not isinstance(net, TransformNet):
        raise TypeError(f"{method}: net must be a TransformNet, got {type(net).__name__}")
    ia, ib = _style_index(net, a, method), _style_index(net, b, method)
    x = _pixels(photo, method)
    if not isinstance(alphas, list | tuple | np.ndarray) or np.ndim(alphas) != 1 or len(alphas) == 0:
        raise TypeError(f"{method}: alphas must be a non-empty list of numbers in [0, 1], got {alphas!r}")
    images = []
    for alpha in alphas:
        alpha = check_float(alpha, method, "alpha", low=0.0, high=1.0)
        mix = np.zeros(net.num_styles)
        mix[ia] += 1.0 - alpha
        mix[ib] += alpha
        images.append(_run(net, x, mix))
    return images
