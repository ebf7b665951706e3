"""Maximally activating images and patches (Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks", ECCV 2014; Girshick et al., "Rich feature hierarchies for accurate
object detection and semantic segmentation", CVPR 2014).

Pick a unit (a channel of a layer); run a whole dataset through the network; keep the inputs
that excite it most; show the part of each input the unit can see (its receptive field). Two
rankings per channel c of each chosen layer:

* **top images**: the k images with the largest score of channel c's map, the score being the
  map's ``max`` (default) or ``mean``; with the position of the map's maximum in each;
* **top patches**: the k (image, position) pairs with the largest single activation
  ``a[n, c, y, x]`` over the whole dataset (the same image can appear at several positions).

One pass, bounded memory: the dataset is streamed in batches, and for every channel only the
running top-k (value, index) lists are kept, merged with each batch by a Numba kernel
(``minivis/kernels/cpu_topk.py``, reached through ``backend.kernels``) that takes a SIMD max
of each map and then reads only the maps whose max beats the current k-th best (after the
first batches almost none), so mining costs a fraction of the forward pass.
Nothing of size N x C x H x W is ever stored. With a Dask client (or a Dask array of images)
the dataset is mined partition by partition on the workers and the top-k lists merged exactly
(``minivis/vis/features/distributed.py``).

Order and ties: best first; equal values keep dataset order (the earlier image, then the
earlier position in row-major order, comes first). A map containing NaN is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_float, check_str
from minivis.vis.features import distributed
from minivis.vis.features.activations import (
    check_batch_size,
    check_layers,
    dataset_kind,
    inference,
    layer_outputs,
    model_inputs,
    stream_inputs,
)
from minivis.vis.features.distributed import is_dask_array
from minivis.vis.features.receptive_field import ReceptiveField, receptive_field

SCORES = ("max", "mean")


# --------------------------------------------------------------------------- results
@dataclass
class LayerTop:
    """The top-k of every channel of one layer (arrays are (C, k), best first; locations (C, k, 2) as (y, x)).

    ``patches`` holds the receptive-field crops of the top patches, (C, k, C_in, h, w) in model-input
    space, NaN where the field reaches past the image (None when mined with ``crop=False``).
    """

    layer: str
    score: str
    image_index: np.ndarray
    image_score: np.ndarray
    image_location: np.ndarray
    patch_index: np.ndarray
    patch_value: np.ndarray
    patch_location: np.ndarray
    map_size: tuple[int, int]
    rf: ReceptiveField
    count: int
    patches: np.ndarray | None = None

    def boxes(self, which: str = "patches") -> np.ndarray:
        """(C, k, 4) input boxes (top, left, bottom, right) of the top patches or of the top images'
        maximal units, clipped at the image border."""
        loc = _which(self, which)[1]
        top = self.rf.start[0] + loc[..., 0] * self.rf.jump[0]
        left = self.rf.start[1] + loc[..., 1] * self.rf.jump[1]
        h, w = self.rf.input_size
        return np.stack([np.maximum(top, 0), np.maximum(left, 0),
                         np.minimum(top + self.rf.size[0], h), np.minimum(left + self.rf.size[1], w)], axis=-1)


def _which(top: LayerTop, which: str, op: str = "top_activations") -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(top, LayerTop):
        raise TypeError(f"{op}: top must be a LayerTop (a value of top_activations' result), got {type(top).__name__}")
    if check_str(which, op, "which", ("patches", "images")) == "patches":
        return top.patch_index, top.patch_location
    if which == "images":
        return top.image_index, top.image_location
    raise ValueError(f"{op}: which must be 'patches' or 'images', got {which!r}")


# --------------------------------------------------------------------------- the method
def _check_k(k: Any, n: int) -> int:
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_activations: k must be a positive int, got {k!r}")
    if k > n:
        raise ValueError(f"top_activations: k={k} is larger than the dataset ({n} images)")
    return int(k)


class _LayerState:
    """Running top-k lists of one layer during the pass."""

    def __init__(self, channels: int, k: int, map_size: tuple[int, int], topk: Any) -> None:
        self.topk = topk  # the kernel module (backend.kernels("topk", ...)): running lists and their merge
        self.patch_val, self.patch_idx = topk.new_topk(channels, k)
        self.image_val, self.image_idx = topk.new_topk(channels, k)
        self.image_arg = np.full((channels, k), -1, dtype=np.int64)
        self.map_size = map_size

    def update(self, act: np.ndarray, start: int, score: str) -> None:
        n, c = act.shape[:2]
        if (c, *self.map_size) != (self.patch_val.shape[0], *_map_size(act)):
            raise ValueError(f"top_activations: layer output changed shape mid-pass to {act.shape}")
        flat = np.ascontiguousarray(act).reshape(n, c, -1)
        positions = flat.shape[2]
        row_max = flat.max(axis=2)  # (B, C)
        self.topk.topk_update(flat, start * positions, self.patch_val, self.patch_idx, row_max)
        scores = row_max if score == "max" else flat.sum(axis=2, dtype=np.float64) / positions
        previous_idx, previous_arg = self.image_idx.copy(), self.image_arg.copy()
        self.topk.topk_update(scores[:, :, None], start, self.image_val, self.image_idx, scores)
        # Carry each kept image's argmax position along with it: entries that survived the merge
        # keep theirs; the few new ones (from this batch) get the first argmax of their map.
        match = self.image_idx[:, :, None] == previous_idx[:, None, :]  # (C, k, k)
        self.image_arg = np.take_along_axis(previous_arg, match.argmax(axis=2), axis=1)
        ch, slot = np.nonzero(self.image_idx >= start)
        if ch.size:
            self.image_arg[ch, slot] = flat[self.image_idx[ch, slot] - start, ch].argmax(axis=1)


def _map_size(act: Any) -> tuple[int, int]:
    return (act.shape[2], act.shape[3]) if act.ndim == 4 else (1, 1)


def _locations(flat_pos: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
    return np.stack([flat_pos // map_size[1], flat_pos % map_size[1]], axis=-1).astype(np.int64)


def top_activations(model: Module, images: Any, layers: str | Sequence[str], k: int = 9, batch_size: int = 256,
                    score: str = "max", crop: bool = True, client: Any = None,
                    partitions: int | None = None) -> dict[str, LayerTop]:
    """Stream ``images`` through ``model`` once; per channel of each layer keep the top-k images and
    the top-k (image, position) patches.

    images: model inputs (N, C, H, W) float, or uint8 images (N, H, W[, C]) preprocessed per batch;
    a ``dask.array`` of either runs on Dask.
    layers: a layer name or a list of them (conv-like (N, C, H, W) or fully connected (N, F) outputs).
    score: how an image is ranked for a channel: ``"max"`` or ``"mean"`` of its map.
    crop: also crop every top patch's receptive field into ``LayerTop.patches`` (C*k crops per
    layer; for wide layers pass False and call ``crop_patches`` for the channels you want).
    client: a ``dask.distributed.Client``: mine ``partitions`` contiguous parts of the dataset on
    its workers and merge their top-k lists exactly (``minivis/vis/features/distributed.py``); the
    result is identical to the single-process run.

    Returns {layer: LayerTop}. Memory: one batch of activations plus O(C k) per layer (per worker).
    """
    names = check_layers(model, layers, "top_activations")
    on_dask = distributed.wants_dask(images, client)
    if on_dask:
        distributed.check_client(client, "top_activations")
        dataset_kind(model, distributed.check_dataset(images, "top_activations"), "top_activations")
        n = int(images.shape[0])
    else:
        dataset_kind(model, images, "top_activations")
        n = (images.data if isinstance(images, Tensor) else images).shape[0]
    k = _check_k(k, n)
    batch_size = check_batch_size(batch_size, "top_activations")
    if check_str(score, "top_activations", "score", SCORES) not in SCORES:
        raise ValueError(f"top_activations: score must be one of {SCORES}, got {score!r}")
    if on_dask:
        parts = distributed.map_partitions(_mine, model, images, client, batch_size, partitions,
                                           "top_activations", (names, k, batch_size, score))
        lists, input_size = _merge_mined(parts, names, k), parts[0][1]
    else:
        lists, input_size = _mine(model, images, 0, names, k, batch_size, score)
    results = {}
    for name in names:
        m = lists[name]
        positions = m["map_size"][0] * m["map_size"][1]
        rf = receptive_field(model, name, tuple(input_size))
        results[name] = LayerTop(
            layer=name, score=score,
            image_index=m["image_idx"], image_score=m["image_val"],
            image_location=_locations(m["image_arg"], m["map_size"]),
            patch_index=m["patch_idx"] // positions, patch_value=m["patch_val"],
            patch_location=_locations(m["patch_idx"] % positions, m["map_size"]),
            map_size=m["map_size"], rf=rf, count=n)
        if crop:
            results[name].patches = (_crop_from_dask(model, images, results[name], client) if on_dask
                                     else crop_patches(model, images, results[name]))
    return results


def _mine(model: Module, images: Any, offset: int, names: list[str], k: int, batch_size: int,
          score: str) -> tuple[dict[str, dict[str, Any]], tuple[int, ...]]:
    """One pass over ``images`` (the dataset's images ``offset, offset + 1, ...``): per layer the running
    top-k lists with global indices, and the model-input size. One Dask partition runs exactly this."""
    states: dict[str, _LayerState] = {}
    input_size = None
    with inference(model):
        for start, batch in stream_inputs(model, images, batch_size, "top_activations"):
            input_size = tuple(batch.shape[2:])
            acts = layer_outputs(model, batch, names, "top_activations")
            for name in names:
                act = backend.to_device(acts[name], "cpu")  # the GPU path copies each batch's maps to the host
                if act.ndim not in (2, 4):
                    raise ValueError(f"top_activations: layer {name!r} gives shape {act.shape}; expected "
                                     f"(N, C, H, W) or (N, F)")
                if name not in states:
                    topk = backend.kernels("topk", act, "top_activations")  # act is on the host: cpu_topk
                    states[name] = _LayerState(act.shape[1], k, _map_size(act), topk)
                states[name].update(act, offset + start, score)
    lists = {name: dict(patch_val=st.patch_val, patch_idx=st.patch_idx, image_val=st.image_val,
                        image_idx=st.image_idx, image_arg=st.image_arg, map_size=st.map_size)
             for name, st in states.items()}
    return lists, input_size


def _merge_mined(parts: list[tuple[dict[str, dict[str, Any]], tuple[int, ...]]], names: list[str],
                 k: int) -> dict[str, dict[str, Any]]:
    """The partitions' top-k lists merged into the dataset's (``distributed.merge_topk``: exact)."""
    merged = {}
    for name in names:
        got = [p[0][name] for p in parts]
        if len({g["map_size"] for g in got}) != 1 or len({p[1] for p in parts}) != 1:
            raise ValueError("top_activations: partitions gave different map or input sizes (images of "
                             "different sizes?)")
        patch_val, patch_idx = distributed.merge_topk([g["patch_val"] for g in got], [g["patch_idx"] for g in got], k)
        image_val, image_idx, image_arg = distributed.merge_topk(
            [g["image_val"] for g in got], [g["image_idx"] for g in got], k, [g["image_arg"] for g in got])
        merged[name] = dict(patch_val=patch_val, patch_idx=patch_idx, image_val=image_val, image_idx=image_idx,
                            image_arg=image_arg, map_size=got[0]["map_size"])
    return merged


def _crop_from_dask(model: Module, images: Any, top: LayerTop, client: Any) -> np.ndarray:
    """``crop_patches`` for a dataset on Dask: fetch only the images the top patches come from."""
    used, where = np.unique(top.patch_index, return_inverse=True)
    subset = images[used]
    if is_dask_array(subset):
        subset = client.compute(subset).result() if client is not None else subset.compute()
    local = replace(top, patch_index=where.reshape(top.patch_index.shape))
    return crop_patches(model, np.asarray(subset), local)


# --------------------------------------------------------------------------- cropping
def crop_boxes(inputs: np.ndarray, tops: np.ndarray, lefts: np.ndarray, size: tuple[int, int],
               fill: float = np.nan) -> np.ndarray:
    """Crops ``inputs[m, :, tops[m]:tops[m]+h, lefts[m]:lefts[m]+w]`` (M, C, h, w); the parts of a
    box outside the image are ``fill``. One gather from a padded copy, no loop over crops."""
    m, c, height, width = inputs.shape
    h, w = size
    pad_t, pad_l = max(0, -int(tops.min())), max(0, -int(lefts.min()))
    pad_b, pad_r = max(0, int(tops.max()) + h - height), max(0, int(lefts.max()) + w - width)
    padded = np.full((m, c, height + pad_t + pad_b, width + pad_l + pad_r), fill, dtype=np.float32)
    padded[:, :, pad_t:pad_t + height, pad_l:pad_l + width] = inputs
    rows = (tops + pad_t)[:, None] + np.arange(h)  # (M, h)
    cols = (lefts + pad_l)[:, None] + np.arange(w)  # (M, w)
    return padded[np.arange(m)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def crop_patches(model: Module, images: Any, top: LayerTop, channels: Sequence[int] | None = None,
                 which: str = "patches", fill: float = np.nan) -> np.ndarray:
    """Receptive-field crops of the top patches (``which="patches"``) or of the maximal unit of each
    top image (``which="images"``) for ``channels`` (all by default): (len(channels), k, C_in, h, w)
    in model-input space.

    A crop is the unit's whole receptive field, ``fill`` (NaN) where it reaches past the image, so
    the unit sits at the centre of every crop; along an axis where the field is larger than the
    image, the crop is the whole image.
    """
    index, loc = _which(top, which, "crop_patches")
    if not (isinstance(fill, float | np.floating) and np.isnan(fill)):  # NaN, the default, marks pixels past the image
        fill = check_float(fill, "crop_patches", "fill")
    channels = np.arange(index.shape[0]) if channels is None else np.asarray(channels)
    if channels.ndim != 1 or channels.dtype.kind not in "iu" or (
            channels.size and (channels.min() < 0 or channels.max() >= index.shape[0])):
        raise ValueError(f"crop_patches: channels must be ints in 0..{index.shape[0] - 1}, got {channels!r}")
    idx = index[channels].reshape(-1)
    yx = loc[channels].reshape(-1, 2)
    inputs = np.asarray(backend.to_device(model_inputs(model, images, idx, "crop_patches"), "cpu"), np.float32)
    (h_img, w_img), rf = inputs.shape[2:], top.rf
    tops, lefts = rf.start[0] + yx[:, 0] * rf.jump[0], rf.start[1] + yx[:, 1] * rf.jump[1]
    h, w = rf.size
    if h > h_img:  # the field covers the whole height: show the whole image
        tops, h = np.zeros_like(tops), h_img
    if w > w_img:
        lefts, w = np.zeros_like(lefts), w_img
    crops = crop_boxes(inputs, tops, lefts, (h, w), fill)
    return crops.reshape(len(channels), index.shape[1], *crops.shape[1:])
