"""DeepDream: ask a layer for more of whatever it already sees.

Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into Neural Networks" (Google Research
blog, 2015). Forward an image to a layer with activations ``a``, and ascend

    J(x) = 1/2 ||a(x)||^2,        dJ/da = a,

so backpropagating J is exactly "start the backward pass at the layer with the gradient set to
the activations". A channel that responds a little gets a gradient in proportion, the image
changes to make it respond more, and the loop feeds back on itself: clouds grow dogs.

The tricks that make the pictures (all in the original notebook):

* **octaves**: dream on the image shrunk by ``octave_scale`` several times, smallest first; after
  each octave the *detail* it added (dreamed minus shrunk original) is enlarged and added to the
  next, larger version, so patterns appear at several scales, not only at the receptive-field size;
* **jitter**: roll the image by a random shift before each step (and the gradient back), which
  stops the ascent from exploiting the exact pixel grid;
* **normalised step**: ``x += lr * g / mean|g|``, so ``lr`` is the mean change per step whatever
  the layer's gradient scale (the shared loop's ``optimizer="normalized"``);
* **clipping**: after every step, pixels are clipped to the valid range ``[(0 - mean)/std,
  (1 - mean)/std]``, so the deprocessed image stays in [0, 1].

Everything runs through ``minivis.vis.synthesis.optimize.optimize`` (one call per octave).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional import interpolate
from minivis.nn.module import Module
from minivis.validate import check_float, check_int
from minivis.vis.common import as_batch, check_layer, model_device_dtype
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis import transforms as tr
from minivis.vis.synthesis.objectives import layer_l2
from minivis.vis.synthesis.optimize import SynthesisResult, check_steps_lr, optimize
from minivis.vis.synthesis.parameterization import PixelImage


def octave_sizes(size: tuple[int, int], octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """The image size at each octave, smallest first: ``round(size / octave_scale^k)``, k = octaves-1 .. 0."""
    h, w = size
    return [(max(1, round(h / octave_scale ** k)), max(1, round(w / octave_scale ** k)))
            for k in range(octaves - 1, -1, -1)]


def _resize(x: Any, size: tuple[int, int]) -> Any:
    """Bilinear resize of an (N, C, H, W) array (no graph)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    with no_grad():
        return interpolate(Tensor(x), size=size, mode="bilinear", align_corners=False).data


def _model_input(model: Module, image: Any, method: str) -> tuple[Any, bool]:
    """An HxWxC photo goes through ``model.preprocess``; a (C, H, W) / (N, C, H, W) model input passes."""
    data = image.data if isinstance(image, Tensor) else image
    channels = int(getattr(model, "in_channels", 3))
    # a photo is HxWxC with channels last (uint8, or float when the first axis is not the channels)
    is_photo = isinstance(data, np.ndarray) and (data.ndim == 2 or (data.ndim == 3 and data.shape[-1] == channels and (
        data.dtype == np.uint8 or data.shape[0] != channels)))
    if is_photo:
        preprocess = getattr(model, "preprocess", None)
        if not callable(preprocess):
            raise TypeError(f"{method}: an HxWxC photo needs a model with preprocess(); give a model input instead")
        return as_batch(preprocess(data), model, method, "image")[0], True
    return as_batch(image, model, method, "image")


def deepdream(model: Module, image: Any, layer: str, steps: int = 10, lr: float = 0.01, octaves: int = 4,
              octave_scale: float = 1.4, jitter: int = 32, min_size: int = 32, size: Any = None,
              seed: int = 0, progress: bool = True) -> SynthesisResult:
    """Amplify the activations of ``layer`` in ``image`` (DeepDream).

    model: a classifier (frozen during the run). image: an HxWx3 photo (uint8, through
        ``model.preprocess``) or a model input (C, H, W) / (N, C, H, W).
    layer: a dotted layer name, e.g. ``"_blocks.6"`` on EfficientNet-Lite0.
    steps: gradient-ascent steps per octave. lr: mean change per step (model-input units).
    octaves, octave_scale: dream at ``octaves`` sizes, each ``octave_scale`` times the previous.
    jitter: random roll by up to this many pixels each step (0: off; capped at each octave's
        shorter side - 1, as a longer roll only wraps around).
    min_size: the smallest octave's shorter side must be at least this (the network needs
        some spatial extent left at ``layer``); too many octaves for the image is a ValueError
        (with one octave the image is used as given).
    size: (H, W) or an int to resize the model input to first (None: keep it).

    Returns a ``SynthesisResult``: ``.image`` HxWxC in [0, 1] (NxHxWxC for a batch), ``.x`` the
    model input, ``.history`` the objective 1/2||a||^2 at every step of every octave (concatenated,
    smallest octave first), ``.info["octave_sizes"]`` and ``.info["octave_histories"]``.
    """
    method = "deepdream"
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    check_layer(model, layer, method)
    steps, lr = check_steps_lr(steps, lr, method)
    for name, value, low in (("octaves", octaves, 1), ("jitter", jitter, 0), ("min_size", min_size, 1)):
        check_int(value, method, name, low)
    seed = check_int(seed, method, "seed", 0)  # octave k draws with seed + k
    octave_scale = check_float(octave_scale, method, "octave_scale")
    if not octave_scale > 1.0:
        raise ValueError(f"{method}: octave_scale must be > 1, got {octave_scale}")
    x0, single = _model_input(model, image, method)
    if size is not None:
        pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
        if len(pair) != 2 or min(pair) < 1:
            raise ValueError(f"{method}: size must be a positive int or (H, W), got {size!r}")
        x0 = _resize(x0, (int(pair[0]), int(pair[1])))
    if (octaves - 1) * math.log(octave_scale) > math.log(2 * min(x0.shape[2:])):  # before listing the octaves
        raise ValueError(f"{method}: octaves={octaves} with octave_scale={octave_scale:g} shrinks the "
                         f"{x0.shape[2]}x{x0.shape[3]} image below one pixel at the smallest octave; use fewer "
                         f"octaves or a larger image")
    sizes = octave_sizes(tuple(x0.shape[2:]), int(octaves), octave_scale)
    if octaves > 1 and min(sizes[0]) < min_size:  # one octave: the image as given
        raise ValueError(f"{method}: octaves={octaves} with octave_scale={octave_scale:g} shrinks the "
                         f"{x0.shape[2]}x{x0.shape[3]} image to {sizes[0][0]}x{sizes[0][1]} at the smallest "
                         f"octave, below min_size={min_size}; use fewer octaves or a larger image")
    _, dtype = model_device_dtype(model)
    low, high = reg.valid_range(getattr(model, "mean", (0.0,)), getattr(model, "std", (1.0,)), dtype)
    xp = backend.xp(x0)
    low, high = xp.asarray(low), xp.asarray(high)
    x0 = reg.clip_to_range(x0, low, high)
    clip = lambda step, x, g: reg.clip_to_range(x, low, high)  # noqa: E731
    objective = layer_l2(layer)
    # jitter larger than the smallest octave would only wrap around: cap it per octave
    detail = None
    histories, totals = [], []
    result = None
    for k, octave in enumerate(sizes):
        base = _resize(x0, octave)
        x = base if detail is None else base + _resize(detail, octave)
        shift = min(int(jitter), min(octave) - 1)
        result = optimize(model, objective, PixelImage(reg.clip_to_range(x, low, high)), steps=steps, lr=lr,
                          optimizer="normalized", transforms=tr.RandomRoll(shift) if shift > 0 else None,
                          hooks=[clip], seed=seed + k, progress=progress,
                          desc=f"{method} octave {k + 1}/{len(sizes)}")
        detail = result.x - base  # what this octave added, carried up to the next size
        histories.append(result.history)
        totals.append(result.total)
    assert result is not None
    history, total = np.concatenate(histories), np.concatenate(totals)
    x, image = result.x, result.image
    if single:
        x, history, total = x[0], history[:, 0], total[:, 0]
        image = None if image is None else image[0]
    info = {"octave_sizes": sizes, "octave_histories": [h[:, 0] if single else h for h in histories],
            "layer": layer}
    return SynthesisResult(x=x, image=image, history=history, total=total, info=info)
