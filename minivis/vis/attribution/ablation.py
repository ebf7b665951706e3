"""Ablation: switch off one channel (or one unit) of a layer and watch the target score move.

For a layer with activation ``a: (N, C, H, W)`` (or ``(N, F)``) and each unit ``u`` (a channel
``c``, or a single neuron ``(c, y, x)``), the ablated activation is

    zero:  a'[n, u] = 0
    mean:  a'[n, u] = mean over (y, x) of a[n, c]   (the channel's spatial mean in that image:
                                                      its average level kept, its pattern removed)

and the result is the change of the target logit, ``delta[n, u] = S(a') - S(a)``: negative where
the unit was helping the class, positive where it was holding it back. Many units run as one
batch: the image is repeated and the layer's output edited per copy (``mv.nn.edit_output``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.hooks import capture, edit_output
from minivis.nn.module import Module
from minivis.validate import check_positive_int, check_str
from minivis.vis.common import Target, as_batch, check_layer, inference, model_scores, unbatch

FILLS = ("zero", "mean")


def _units(units: Any, shape: tuple[int, ...], layer: str, op: str) -> np.ndarray:
    """Units as an int array (U, 1) of channels or (U, 3) of (c, y, x) positions, bounds checked."""
    if units is None:
        return np.arange(shape[0])[:, None]
    array = np.asarray(units)
    if array.dtype.kind not in "iu" or array.ndim not in (1, 2) or array.size == 0:
        raise TypeError(f"{op}: units must be a non-empty list of channel indices or of (c, y, x) tuples, "
                        f"got {units!r}")
    array = array[:, None] if array.ndim == 1 else array
    if array.shape[1] not in (1, len(shape)):
        raise ValueError(f"{op}: each unit must be a channel index or a {len(shape)}-tuple for layer {layer!r} "
                         f"with activation shape (N, {', '.join(map(str, shape))}), got {array.shape[1]} values")
    bad = (array < 0) | (array >= np.asarray(shape[:array.shape[1]]))
    if bad.any():
        first = tuple(int(v) for v in array[bad.any(axis=1)][0])
        raise ValueError(f"{op}: unit {first} is out of range for layer {layer!r} "
                         f"with activation shape (N, {', '.join(map(str, shape))})")
    return array


def ablation(model: Module, x: Any, target: Target, layer: str, units: Any = None, fill: str = "zero",
             batch_size: int = 32) -> Any:
    """Change of the target logit when each unit of ``layer`` is zeroed or replaced by its channel's mean.

    x: (C, H, W) or (N, C, H, W). target: a class index, one per image, a callable ``f(logits) -> (N,)``,
    or an objective read at a layer after ``layer`` (then delta is the change of that unit's value).
    layer: dotted layer name. units: None (every channel), channel indices, or (c, y, x) tuples
    of single neurons. fill: ``"zero"`` or ``"mean"`` (the channel's spatial mean in that image;
    needs a 4-D activation). ``batch_size`` ablated copies run together; the model runs in eval
    mode (restored after).

    Returns delta = S(ablated) - S(original): (U,) for one image or (N, U).
    """
    op = "ablation"
    batch, single = as_batch(x, model, op)
    check_layer(model, layer, op)
    if check_str(fill, op, "fill", FILLS) not in FILLS:
        raise ValueError(f"{op}: fill must be 'zero' or 'mean', got {fill!r}")
    check_positive_int(batch_size, op, "batch_size")
    xp = backend.xp(batch)
    n = batch.shape[0]
    with inference(model):
        with capture(model, layer) as acts:
            base = model_scores(model, Tensor(batch), target, op).data
        if layer not in acts:
            raise ValueError(f"{op}: the target is read before layer {layer!r} runs (an objective at an earlier "
                             f"layer), so ablating {layer!r} cannot change it")
        shape = acts[layer].shape[1:]
        if fill == "mean" and len(shape) != 3:
            raise ValueError(f"{op}: fill='mean' replaces a channel by its spatial mean and needs a 4-D "
                             f"(N, C, H, W) layer; {layer!r} gives shape (N, {', '.join(map(str, shape))})")
        chosen = _units(units, shape, layer, op)
        index = None if callable(target) else np.broadcast_to(np.asarray(target), (n,))
        delta = xp.empty((n, len(chosen)), dtype=batch.dtype)
        for lo in range(0, len(chosen), batch_size):
            part = chosen[lo:lo + batch_size]
            b = len(part)
            item = np.arange(n * b)
            unit = part[item % b]  # copy k = image k // b with unit k % b ablated

            def ablate(out: Tensor, unit: np.ndarray = unit, item: np.ndarray = item) -> Tensor:
                where = (item, *unit.T)  # (copy, channel[, y, x]) of each ablated unit
                keep = xp.ones(out.shape, dtype=out.dtype)
                keep[where] = 0
                fill_in = xp.zeros(out.shape, dtype=out.dtype)
                if fill == "mean":
                    means = out.data[item, unit[:, 0]].mean(axis=(-2, -1))  # (copies,)
                    fill_in[where] = means if unit.shape[1] == 3 else means[:, None, None]
                return out * keep + fill_in

            copy_target = target if index is None else index[item // b]
            with edit_output(model, layer, ablate):
                scores = model_scores(model, Tensor(xp.repeat(batch, b, axis=0)), copy_target, op).data.reshape(n, b)
            delta[:, lo:lo + b] = scores - base[:, None]
    return unbatch(delta, single)
