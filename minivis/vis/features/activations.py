"""Activations: what a layer's units output for an image, and which units never fire on a dataset.

* ``activations(model, x, layer)``: the activation volume of ``layer`` for an image (C, H', W')
  or a batch (N, C, H', W'); each slice ``[c]`` is one *activation map* (CS231n notes).
* ``dead_filters(model, images, layer)``: streamed over a dataset in batches, per channel the
  fraction of inputs whose whole map is ``<= 0`` (for a ReLU output: all zero) and the mean
  activation. A channel that is zero for every input is a *dead filter*: its ReLU never opens,
  so it gets no gradient and never recovers (often a symptom of too high a learning rate).

Also the plumbing that every dataset-level method here shares: ``stream_inputs`` (a dataset as
model-input batches, so nothing proportional to the dataset is ever held), ``inference`` (eval
mode and no graph, restored afterwards) and ``layer_outputs`` (one forward pass that records
several layers and stops after the last of them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.hooks import StopForward
from minivis.nn.module import Module
from minivis.validate import check_positive_int
from minivis.vis.common import as_batch, check_layer, inference, unbatch
from minivis.vis.features import distributed


# --------------------------------------------------------------------------- shared plumbing
def check_layers(model: Module, layers: str | Sequence[str], method: str) -> list[str]:
    """``layers`` as a non-empty list of distinct, existing layer names."""
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, list | tuple) or not names:
        raise TypeError(f"{method}: layers must be a layer name or a non-empty list of names, got {layers!r}")
    for name in names:
        check_layer(model, name, method)
    if len(set(names)) != len(names):
        raise ValueError(f"{method}: layers has duplicates: {list(names)}")
    return list(names)


def layer_outputs(model: Module, x: Any, layers: Sequence[str], method: str) -> dict[str, Any]:
    """One forward pass of ``x`` (a model-input batch) recording each layer's output as an array;
    the layers after the last of them are not run."""
    acts: dict[str, Any] = {}
    pending = set(layers)
    handles = []
    for name in layers:
        def record(module, inputs, output, name=name):
            if not isinstance(output, Tensor):
                raise TypeError(f"{method}: layer {name!r} returned {type(output).__name__}, not a Tensor")
            acts[name] = output.data
            pending.discard(name)
            if not pending:
                raise StopForward(output)  # nothing after the last requested layer is needed
        handles.append(model.get_submodule(name).register_forward_hook(record))
    try:
        model(Tensor(x))
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if pending:
        raise RuntimeError(f"{method}: layers {sorted(pending)} were never reached in the forward pass")
    return acts


def dataset_kind(model: Module, images: Any, method: str) -> str:
    """``"inputs"`` for model-ready float batches (N, C, H, W); ``"raw"`` for uint8 images
    (N, H, W) or (N, H, W, C) that ``model.preprocess`` turns into inputs batch by batch."""
    data = images.data if isinstance(images, Tensor) else images
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)):
        raise TypeError(f"{method}: images must be an array of model inputs (N, C, H, W) or of uint8 images "
                        f"(N, H, W[, C]), got {type(images).__name__}")
    if data.dtype == np.uint8 and (data.ndim == 3 or (data.ndim == 4 and data.shape[-1] in (1, 3, 4))):
        if not callable(getattr(model, "preprocess", None)):
            raise TypeError(f"{method}: uint8 images need a model with .preprocess; pass model inputs "
                            f"(N, C, H, W) floats instead")
        kind = "raw"
    elif data.ndim == 4 and data.dtype.kind == "f":
        kind = "inputs"
    else:
        raise ValueError(f"{method}: images must be model inputs (N, C, H, W) float or uint8 images "
                         f"(N, H, W[, C]), got shape {tuple(data.shape)} dtype {data.dtype}")
    if data.shape[0] == 0:
        raise ValueError(f"{method}: images is empty (0 images)")
    return kind


def check_batch_size(batch_size: Any, method: str) -> int:
    return check_positive_int(batch_size, method, "batch_size")


def stream_inputs(model: Module, images: Any, batch_size: int, method: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(start, batch)``: model-input batches of ``images[start:start + batch_size]``, on the
    model's device and dtype. Only one batch is materialised at a time (``images`` may be a memmap)."""
    kind = dataset_kind(model, images, method)
    batch_size = check_batch_size(batch_size, method)
    data = images.data if isinstance(images, Tensor) else images
    for start in range(0, data.shape[0], batch_size):
        chunk = data[start:start + batch_size]
        if kind == "raw":
            chunk = model.preprocess(backend.to_device(chunk, "cpu"))
        batch, _ = as_batch(chunk, model, method, "images")
        yield start, batch


def model_inputs(model: Module, images: Any, index: np.ndarray, method: str) -> Any:
    """The model inputs of ``images[index]`` (preprocessed when ``images`` are raw uint8 images)."""
    kind = dataset_kind(model, images, method)
    data = images.data if isinstance(images, Tensor) else images
    chunk = data[backend.to_device(np.asarray(index), backend.device_of(data))]
    if kind == "raw":
        chunk = model.preprocess(backend.to_device(chunk, "cpu"))
    return as_batch(chunk, model, method, "images")[0]


# --------------------------------------------------------------------------- the methods
def activations(model: Module, x: Any, layer: str) -> Any:
    """The output of ``layer`` for ``x`` in eval mode, without building a graph.

    x: one image (C, H, W) or a batch (N, C, H, W) of model inputs (array or Tensor).
    Returns (C', H', W') for one image, (N, C', H', W') for a batch (or (F,) / (N, F) for a
    fully connected layer), as an array on the model's device.
    """
    batch, single = as_batch(x, model, "activations")
    check_layer(model, layer, "activations")
    with inference(model):
        out = layer_outputs(model, batch, [layer], "activations")[layer]
    return unbatch(out, single)


class DeadFilterReport(NamedTuple):
    """Per channel of a layer, over ``count`` inputs:

    * ``dead_fraction[c]``: fraction of inputs whose map of channel c is ``<= threshold`` everywhere;
    * ``mean[c]``: mean activation of channel c over inputs and positions;
    * ``max[c]``: largest activation of channel c anywhere.
    """

    layer: str
    dead_fraction: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    count: int
    threshold: float

    def dead(self, fraction: float = 1.0) -> np.ndarray:
        """Channels whose map is off for at least ``fraction`` of the inputs (1.0: dead on all)."""
        return np.flatnonzero(self.dead_fraction >= fraction)


def dead_filters(model: Module, images: Any, layer: str, batch_size: int = 256,
                 threshold: float = 0.0, client: Any = None, partitions: int | None = None) -> DeadFilterReport:
    """Which channels of ``layer`` never fire, streamed over a dataset.

    images: model inputs (N, C, H, W) float, or uint8 images (N, H, W[, C]) that are run
    through ``model.preprocess`` one batch at a time (a ``dask.array`` of either runs on Dask).
    A map counts as "off" when all its values are ``<= threshold`` (0: for a ReLU output, all
    zero; for a conv output, the ReLU after it would be all zero). Memory is one batch of
    activations, whatever N is.
    client: a ``dask.distributed.Client``: ``partitions`` parts of the dataset (starting at
    multiples of ``batch_size``) run on its workers; their per-batch counts, sums and maxima are
    folded in dataset order, so the report is identical to the single-process one.
    """
    check_layer(model, layer, "dead_filters")
    if not isinstance(threshold, int | float | np.integer | np.floating) or isinstance(threshold, bool):
        raise TypeError(f"dead_filters: threshold must be a number, got {threshold!r}")
    batch_size = check_batch_size(batch_size, "dead_filters")
    if distributed.wants_dask(images, client):
        distributed.check_client(client, "dead_filters")
        dataset_kind(model, distributed.check_dataset(images, "dead_filters"), "dead_filters")
        parts = distributed.map_partitions(_dead_filter_batches, model, images, client, batch_size, partitions,
                                           "dead_filters", (layer, batch_size, threshold))
        batches = [b for part in parts for b in part]
    else:
        batches = _dead_filter_batches(model, images, 0, layer, batch_size, threshold)
    return _fold_dead_filter_batches(batches, layer, threshold)


def _dead_filter_batches(model: Module, images: Any, offset: int, layer: str, batch_size: int,
                         threshold: float) -> list[tuple[Any, Any, Any, int, int]]:
    """Per batch of ``images``: (maps off per channel, float64 sum per channel, max per channel,
    images, positions). ``offset`` (where ``images`` start in the dataset) is unused: the batches
    carry no index. One Dask partition runs exactly this."""
    out = []
    with inference(model):
        for _, batch in stream_inputs(model, images, batch_size, "dead_filters"):
            act = layer_outputs(model, batch, [layer], "dead_filters")[layer]
            xp = backend.xp(act)
            flat = act.reshape(act.shape[0], act.shape[1], -1)  # (B, C, positions)
            batch_max = flat.max(axis=2)
            out.append(((batch_max <= threshold).sum(axis=0), flat.sum(axis=(0, 2), dtype=xp.float64),
                        batch_max.max(axis=0), act.shape[0], flat.shape[2]))
    return out


def _fold_dead_filter_batches(batches: list[tuple[Any, Any, Any, int, int]], layer: str,
                              threshold: float) -> DeadFilterReport:
    """The report from the per-batch statistics, folded in dataset order (the same additions in the
    same order whether the batches came from one process or from many partitions)."""
    off = total = peak = None
    count = positions = 0
    for batch_off, batch_sum, batch_peak, images, batch_positions in batches:
        xp = backend.xp(batch_sum)
        off = batch_off if off is None else off + batch_off
        total = batch_sum if total is None else total + batch_sum
        peak = batch_peak if peak is None else xp.maximum(peak, batch_peak)
        count += images
        positions = batch_positions
    to_cpu = lambda a: np.asarray(backend.to_device(a, "cpu"))  # noqa: E731
    return DeadFilterReport(layer, to_cpu(off) / count, to_cpu(total) / (count * positions),
                            to_cpu(peak).astype(np.float64), count, float(threshold))
