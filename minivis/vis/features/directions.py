"""Top images along directions of a layer's code, not only along its units (Szegedy et al.,
"Intriguing properties of neural networks", ICLR 2014, section 3).

A unit's top images (``top_activations``) rank the dataset by one coordinate of the code,
``a_c = <e_c, a>``. Szegedy et al. ranked it along random directions ``v`` instead and found
images just as coherent: the basis the units happen to define is not special, the *space* is
(CS231n: the units are "arbitrary axes" of the cloud of codes). For a conv layer the score of an
image along ``v`` is the best position's projection, as ``top_activations`` scores a channel:

    s_v(n) = max_yx <v, a_n[:, y, x]>     (``score="max"``)  or  mean_yx <v, a_n[:, y, x]>  (``"mean"``)

and ``s_v(n) = <v, a_n>`` for a fully connected layer. With ``v = e_c`` this is exactly channel
c's image ranking. One streamed pass over the dataset keeps the running top-k of every
direction (memory: one batch and O(M k)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_array_size, check_seed, check_str, host
from minivis.vis.common import check_layer, inference
from minivis.vis.features.activations import check_batch_size, dataset_kind, layer_outputs, stream_inputs

SCORES = ("max", "mean")


@dataclass
class DirectionTop:
    """Per direction m: the top-k images ``image_index`` (M, k), best first, their scores ``score``
    (M, k) and the (y, x) ``location`` (M, k, 2) of the best position ((0, 0) for an fc layer)."""

    layer: str
    directions: np.ndarray
    image_index: np.ndarray
    score: np.ndarray
    location: np.ndarray
    count: int


def random_directions(dim: int, count: int, seed: int | None = 0) -> np.ndarray:
    """``count`` directions drawn uniformly on the unit sphere of R^dim: (count, dim) float64."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"random_directions: dim must be an int >= 1, got {dim!r}")
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"random_directions: count must be an int >= 1, got {count!r}")
    check_array_size((count, dim), np.float64, "random_directions", "directions")
    v = np.random.default_rng(check_seed(seed, "random_directions")).standard_normal((int(count), int(dim)))
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # a normalised Gaussian is uniform on the sphere


def _check_directions(directions: Any, method: str) -> np.ndarray:
    v = np.asarray(host(directions))
    if v.ndim == 1:
        v = v[None]
    if v.dtype.kind not in "fiu" or v.ndim != 2 or v.size == 0:
        raise TypeError(f"{method}: directions must be a numeric array (M, C), one direction per row, "
                        f"got {v.dtype} {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{method}: directions contain NaN or infinite values")
    return v.astype(np.float64)


def _merge(best_val: np.ndarray, best_idx: np.ndarray, best_loc: np.ndarray, val: np.ndarray, idx: np.ndarray,
           loc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-k of each row of the running lists (M, k) joined with a batch's (M, B): best first,
    ties to the smaller dataset index (the running lists hold only earlier indices)."""
    values = np.concatenate([best_val, val], axis=1)
    index = np.concatenate([best_idx, idx], axis=1)
    where = np.concatenate([best_loc, loc], axis=1)
    order = np.lexsort((np.where(index < 0, np.iinfo(np.int64).max, index), -values), axis=-1)[:, :k]
    return (np.take_along_axis(values, order, axis=1), np.take_along_axis(index, order, axis=1),
            np.take_along_axis(where, order[..., None], axis=1))


def top_images_along(model: Module, images: Any, layer: str, directions: Any, k: int = 9, score: str = "max",
                     batch_size: int = 256) -> DirectionTop:
    """The k images whose code at ``layer`` reaches furthest along each direction (see the module doc).

    images: model inputs (N, C, H, W) or uint8 images (N, H, W[, C]), streamed in batches.
    directions: (M, C) one direction per row (or (C,) for one), in the layer's channel space;
    they are used as given (normalise them to compare scores across directions).
    score: ``"max"`` (best position) or ``"mean"`` (mean over positions) for a conv layer.
    Returns ``DirectionTop``.
    """
    method = "top_images_along"
    check_layer(model, layer, method)
    dataset_kind(model, images, method)
    v = _check_directions(directions, method)
    n = (images.data if isinstance(images, Tensor) else images).shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{method}: k must be an int >= 1, got {k!r}")
    if k > n:
        raise ValueError(f"{method}: k={k} is larger than the dataset ({n} images)")
    if check_str(score, method, "score", SCORES) not in SCORES:
        raise ValueError(f"{method}: score must be one of {SCORES}, got {score!r}")
    check_batch_size(batch_size, method)
    m = v.shape[0]
    best_val, best_idx = np.full((m, k), -np.inf), np.full((m, k), -1, np.int64)
    best_loc = np.zeros((m, k, 2), np.int64)
    with inference(model):
        for start, batch in stream_inputs(model, images, batch_size, method):
            act = np.asarray(backend.to_device(layer_outputs(model, batch, [layer], method)[layer], "cpu"),
                             np.float64)
            if act.ndim not in (2, 4):
                raise ValueError(f"{method}: layer {layer!r} gives shape {act.shape}; expected (N, C, H, W) or (N, C)")
            if act.shape[1] != v.shape[1]:
                raise ValueError(f"{method}: directions have {v.shape[1]} values, layer {layer!r} has "
                                 f"{act.shape[1]} channels")
            b = act.shape[0]
            if act.ndim == 2:
                val, loc = (act @ v.T).T, np.zeros((m, b, 2), np.int64)  # (M, B)
            else:
                proj = np.einsum("bchw,mc->mbhw", act, v).reshape(m, b, -1)  # <v, a[:, y, x]> everywhere
                arg = proj.argmax(axis=2)
                val = proj.max(axis=2) if score == "max" else proj.mean(axis=2)
                loc = np.stack(np.divmod(arg, act.shape[3]), axis=-1)
            idx = np.broadcast_to(np.arange(start, start + b), (m, b))
            best_val, best_idx, best_loc = _merge(best_val, best_idx, best_loc, val, idx, loc, k)
    return DirectionTop(layer=layer, directions=v, image_index=best_idx, score=best_val, location=best_loc, count=n)
