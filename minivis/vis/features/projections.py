"""Projections of single units to pixel space (Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks", ECCV 2014, figures 2 and 4).

Zeiler & Fergus explain what a unit has learned by its strongest activations over a dataset, and
show each one twice: the image patch the unit sees (its receptive field), and a *projection* of
the activation down to the pixels. For one unit ``u = (c, y, x)`` of layer ``l`` in image ``n``:

1. run the forward pass, keeping the max-pool switches;
2. keep that one activation and zero all others of the layer: ``g = a_u e_u`` (same shape as a_l);
3. send ``g`` down through the DeconvNet: unpool with the switches, rectify, transposed
   convolution with the same filters, layer by layer.

Step 3 is backpropagation under the ``deconvnet`` ReLU rule (``minivis.rules``; lesson 04), so

    P_deconvnet(u) = a_u * d a_u / d x   under ``backward_rule("deconvnet")``,

and with the ``guided`` rule the same seed gives the guided-backprop projection of Springenberg
et al. (2015). The projection is zero outside the unit's receptive field (nothing else of the
image reaches the unit), so each one is stored as a crop of that box, beside the image patch.

``project_units`` projects given units of given images (one row each, one backward pass for a
whole batch, since the images are independent); ``project_top_activations`` mines the top-k
activations of each channel with ``top_activations`` (one streamed pass, bounded memory) and
projects them; ``projections_over_training`` does it for the strongest activation of each
channel at every checkpoint of a training run (Zeiler & Fergus figure 4, "evolution of features").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.hooks import forward_to
from minivis.nn.module import Module
from minivis.rules import RULES, backward_rule
from minivis.validate import check_bool, check_positive_int
from minivis.vis.common import as_batch, check_layer, frozen
from minivis.vis.features.activations import dataset_kind, model_inputs
from minivis.vis.features.receptive_field import ReceptiveField
from minivis.vis.features.top_activations import LayerTop, crop_boxes, crop_patches, top_activations

PROJECTION_RULES = ("deconvnet", "guided", "gradient")


# --------------------------------------------------------------------------- argument checks
def _check_rules(rules: Any, method: str) -> tuple[str, ...]:
    names = (rules,) if isinstance(rules, str) else rules
    if not isinstance(names, list | tuple) or not names or any(r not in RULES for r in names):
        raise ValueError(f"{method}: rules must be a rule or a non-empty list of rules from {RULES}, got {rules!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{method}: rules has duplicates: {list(names)}")
    return tuple(names)


def _check_k(k: Any, method: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{method}: k must be an int >= 1, got {k!r}")
    return int(k)


def _check_channels(channels: Any, count: int, layer: str, method: str) -> np.ndarray:
    if channels is None:
        return np.arange(count)
    array = np.asarray(channels)
    if array.ndim == 0:
        array = array[None]
    if array.dtype.kind not in "iu" or array.ndim != 1 or array.size == 0:
        raise TypeError(f"{method}: channels must be a channel index or a non-empty list of them, got {channels!r}")
    bad = array[(array < 0) | (array >= count)]
    if bad.size:
        raise ValueError(f"{method}: channel {int(bad[0])} is out of range for layer {layer!r} with {count} "
                         f"channels (0..{count - 1})")
    return array.astype(np.int64)


def _check_units(units: Any, rows: int, method: str) -> np.ndarray:
    """(B, 3) (c, y, x) or (B, 1) (c,) int array, one unit per input row."""
    array = np.asarray(units)
    if array.dtype.kind not in "iu" or array.ndim != 2 or array.shape[1] not in (1, 3):
        raise TypeError(f"{method}: units must be an int array (B, 3) of (channel, y, x), or (B, 1) of channels for "
                        f"a fully connected layer, got {array.dtype} {array.shape}")
    if array.shape[0] != rows:
        raise ValueError(f"{method}: units has {array.shape[0]} rows for a batch of {rows} images (one unit per image)")
    return array.astype(np.int64)


# --------------------------------------------------------------------------- one unit per image
def project_units(model: Module, x: Any, layer: str, units: Any, rules: str | Sequence[str] = "deconvnet") -> Any:
    """Project unit ``units[b]`` of ``layer`` in image ``x[b]`` to pixel space, for each row b.

    x: (B, C, H, W) model inputs. units: (B, 3) ``(channel, y, x)`` per row; for a fully connected
    layer (B, 1) channels, or (B, 3) with y = x = 0 (how ``LayerTop`` records its positions).
    rules: ``"deconvnet"`` (Zeiler & Fergus), ``"guided"`` (guided
    backprop) or ``"gradient"``, or a list of them.

    Returns (projections, values): projections (B, C, H, W) for one rule, or {rule: (B, C, H, W)}
    for a list; values (B,) the activations a_u that seeded them. Row b is
    ``a_u * d a_u / d x_b`` under the rule: the unit kept, the rest of the layer zeroed, sent down.
    """
    method = "project_units"
    names = _check_rules(rules, method)
    check_layer(model, layer, method)
    batch, single = as_batch(x, model, method)
    if single:
        raise ValueError(f"{method}: x must be a batch (B, C, H, W) with one unit per image, got one image")
    units = _check_units(units, batch.shape[0], method)
    xp = backend.xp(batch)
    out: dict[str, Any] = {}
    with frozen(model):
        inputs = Tensor(batch, requires_grad=True)
        act = forward_to(model, inputs, layer)
        if not isinstance(act, Tensor) or act.ndim not in (2, 4):
            raise ValueError(f"{method}: layer {layer!r} gives {getattr(act, 'shape', type(act).__name__)}; expected "
                             f"(N, C, H, W) or (N, F)")
        if act.ndim == 2 and units.shape[1] == 3 and not units[:, 1:].any():
            units = units[:, :1]  # a fully connected unit recorded at position (0, 0)
        if units.shape[1] != act.ndim - 1:
            raise ValueError(f"{method}: layer {layer!r} has activations (N, {', '.join(map(str, act.shape[1:]))}), so "
                             f"each unit needs {act.ndim - 1} index(es), got {units.shape[1]}")
        limits = np.asarray(act.shape[1:])
        bad = np.nonzero(((units < 0) | (units >= limits)).any(axis=1))[0]
        if bad.size:
            raise ValueError(f"{method}: unit {tuple(int(v) for v in units[bad[0]])} is out of range for layer "
                             f"{layer!r} with activations (N, {', '.join(map(str, act.shape[1:]))})")
        if not act.requires_grad:
            raise ValueError(f"{method}: layer {layer!r} does not depend on the input")
        where = (np.arange(len(units)), *units.T)
        values = act.data[where]
        seed = xp.zeros_like(act.data)
        seed[where] = values  # the one activation kept, every other one of the layer zeroed
        for i, rule in enumerate(names):
            inputs.grad = None
            with backward_rule(rule):
                act.backward(seed, retain_graph=i < len(names) - 1)
            out[rule] = inputs.grad if inputs.grad is not None else xp.zeros_like(batch)
    return (out[names[0]] if isinstance(rules, str) else out), values


# --------------------------------------------------------------------------- the top activations, projected
@dataclass
class LayerProjections:
    """The top-k activations of some channels of one layer, each projected to pixel space.

    Arrays are indexed [channel row, rank]: ``channels`` (R,) the channels; ``values`` (R, k)
    activations, best first; ``image_index`` (R, k) dataset indices and ``location`` (R, k, 2)
    (y, x) positions in the layer's map (index -1 / value -inf where the dataset had fewer than k);
    ``patches`` (R, k, C_in, h, w) the receptive-field crops of the images in model-input space
    and ``projections`` {rule: (R, k, C_in, h, w)} the projections cropped to the same boxes, NaN
    where a box reaches past the image. ``top`` is the full mining result it came from.
    """

    layer: str
    channels: np.ndarray
    values: np.ndarray
    image_index: np.ndarray
    location: np.ndarray
    patches: np.ndarray
    projections: dict[str, np.ndarray]
    rf: ReceptiveField
    top: LayerTop


def _crop_to_fields(maps: np.ndarray, locations: np.ndarray, rf: ReceptiveField) -> np.ndarray:
    """Crops (M, C, h, w) of full-size maps (M, C, H, W) to the receptive field of unit (y, x) of each,
    as ``crop_patches`` crops the images (the whole image along an axis the field overflows)."""
    h_img, w_img = maps.shape[2:]
    tops = rf.start[0] + locations[:, 0] * rf.jump[0]
    lefts = rf.start[1] + locations[:, 1] * rf.jump[1]
    h, w = rf.size
    if h > h_img:
        tops, h = np.zeros_like(tops), h_img
    if w > w_img:
        lefts, w = np.zeros_like(lefts), w_img
    return crop_boxes(maps, tops, lefts, (h, w))


def project_top_activations(model: Module, images: Any, layer: str, channels: Any = None, k: int = 9,
                            rules: str | Sequence[str] = ("deconvnet", "guided"), batch_size: int = 256,
                            top: LayerTop | None = None, progress: bool = False) -> LayerProjections:
    """Zeiler & Fergus's figure for ``layer``: per channel, the top-k activations over ``images``,
    each shown as its receptive-field patch and projected to pixel space by each of ``rules``.

    images: model inputs (N, C, H, W) or uint8 images (N, H, W[, C]) (as for ``top_activations``);
    streamed once in batches of ``batch_size`` to find the top-k (value, image, position) of every
    channel, then only the R*k winning images are run again to project them, ``batch_size`` at a
    time. channels: which channels (default all). top: a ``LayerTop`` from an earlier
    ``top_activations`` call on the same images and layer, to skip the mining pass.
    progress: a tqdm bar over the projection batches.

    Memory: one batch of activations and of gradients, plus the crops (R, k, C_in, h, w).
    """
    method = "project_top_activations"
    progress = check_bool(progress, method, "progress")
    check_layer(model, layer, method)
    dataset_kind(model, images, method)
    k = _check_k(k, method)
    names = _check_rules(rules, method)
    batch_size = check_positive_int(batch_size, method, "batch_size")
    if top is None:
        top = top_activations(model, images, layer, k=k, batch_size=batch_size, crop=False)[layer]
    elif not isinstance(top, LayerTop) or top.layer != layer:
        raise ValueError(f"{method}: top must be the LayerTop of layer {layer!r}, got "
                         f"{getattr(top, 'layer', type(top).__name__)!r}")
    if k > top.patch_index.shape[1]:
        raise ValueError(f"{method}: k={k} is more than the {top.patch_index.shape[1]} activations kept in top")
    rows = _check_channels(channels, top.patch_index.shape[0], layer, method)
    index = top.patch_index[rows, :k]
    location = top.patch_location[rows, :k]
    values = top.patch_value[rows, :k]
    patches = crop_patches(model, images, top, channels=rows, which="patches")[:, :k]

    flat_index, flat_loc = index.reshape(-1), location.reshape(-1, 2)
    flat_channel = np.repeat(rows, k)
    valid = np.nonzero(flat_index >= 0)[0]
    crops: dict[str, np.ndarray] = {rule: np.full(patches.shape, np.nan, np.float32) for rule in names}
    flat_crops = {rule: crops[rule].reshape(-1, *patches.shape[2:]) for rule in names}
    from tqdm.auto import tqdm  # noqa: PLC0415 (only needed here)

    for lo in tqdm(range(0, len(valid), batch_size), desc=method, disable=not progress, leave=False):
        part = valid[lo:lo + batch_size]
        x = model_inputs(model, images, flat_index[part], method)
        units = np.column_stack([flat_channel[part], flat_loc[part]])
        maps, _ = project_units(model, x, layer, units, list(names))
        for rule in names:
            full = np.asarray(backend.to_device(maps[rule], "cpu"), np.float32)
            flat_crops[rule][part] = _crop_to_fields(full, flat_loc[part], top.rf)
    return LayerProjections(layer=layer, channels=rows, values=values, image_index=index, location=location,
                            patches=patches, projections=crops, rf=top.rf, top=top)


def projections_over_training(models: Mapping[str, Module] | Sequence[Module], images: Any, layer: str,
                              channels: Any = None, k: int = 1, rules: str | Sequence[str] = "deconvnet",
                              batch_size: int = 256) -> dict[str, LayerProjections]:
    """Zeiler & Fergus's "evolution of features": for each checkpoint, the strongest activation(s) of
    each channel over ``images`` projected to pixel space (their figure 4 shows k = 1).

    models: {label: model} (e.g. {"epoch 0": mv.models.load("fashion_cnn", checkpoint=0), ...}) or a
    list (labelled "0", "1", ...), all with the same architecture. Each is mined on its own, so
    a channel's top image can change from one checkpoint to the next. Returns {label: LayerProjections}.
    """
    method = "projections_over_training"
    if isinstance(models, Mapping):
        labelled = list(models.items())
    elif isinstance(models, list | tuple):
        labelled = [(str(i), m) for i, m in enumerate(models)]
    else:
        raise TypeError(f"{method}: models must be a dict {{label: model}} or a list of models, "
                        f"got {type(models).__name__}")
    if not labelled:
        raise ValueError(f"{method}: models is empty")
    for label, model in labelled:
        if not isinstance(model, Module):
            raise TypeError(f"{method}: model {label!r} must be a minivis nn.Module, got {type(model).__name__}")
    return {str(label): project_top_activations(model, images, layer, channels=channels, k=k, rules=rules,
                                                batch_size=batch_size)
            for label, model in labelled}
