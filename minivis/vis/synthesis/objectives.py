"""Objectives for optimising an image: what a class-model visualisation, DeepDream or a feature
visualisation pushes up. Each objective maps (model, image batch) to one score per image:

* ``class_logit(c)``: the pre-softmax score S_c(I) (Simonyan et al. 2014);
* ``unit(layer, channel, y, x)``: one neuron of a layer's activation;
* ``channel(layer, c)``: the mean of one channel's activation map;
* ``direction(layer, v, y, x)``: the code of a layer read along a direction v of its channel
  space, <v, a[:, y, x]> (Szegedy et al. 2014): ``unit`` and ``channel`` are the special case of an
  axis e_c;
* ``layer_l2(layer)``: 1/2 ||a_layer||^2, whose gradient at the layer is the activation itself,
  so backpropagating it "asks the network for more of whatever it already sees" (DeepDream);
* sums, differences and scalar multiples of these (``channel(...) - 0.5 * class_logit(...)``).

Only the layers an objective needs are captured, and the forward pass stops after the deepest
of them unless the logits are needed too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.hooks import StopForward
from minivis.nn.module import Module
from minivis.validate import host

LOGITS = ""  # the "layer" name under which an objective reads the model's output

Reader = Callable[[dict[str, Tensor]], Tensor]


class Objective:
    """A differentiable score per image, read from named layers (``""`` is the model output)."""

    def __init__(self, layers: frozenset[str], read: Reader, name: str) -> None:
        self.layers, self.read, self.name = frozenset(layers), read, name

    def __call__(self, model: Module, x: Tensor) -> Tensor:
        """Run ``model`` on ``x`` and return the (N,) scores."""
        for layer in self.layers - {LOGITS}:
            model.get_submodule(layer)  # clear error for unknown names, before any work
        acts: dict[str, Tensor] = {}
        pending = set(self.layers - {LOGITS})
        handles = []
        for layer in pending.copy():
            def record(module, inputs, output, layer=layer):
                acts[layer] = output
                pending.discard(layer)
                if not pending and LOGITS not in self.layers:
                    raise StopForward(output)  # nothing after this layer is needed
            handles.append(model.get_submodule(layer).register_forward_hook(record))
        try:
            acts[LOGITS] = model(x)
        except StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = sorted(self.layers - set(acts))
        if missing:
            raise ValueError(f"objective {self.name}: layer(s) {missing} never ran in the forward pass of "
                             f"{type(model).__name__}")
        scores = self.read(acts)
        if scores.shape != (x.shape[0],):
            raise ValueError(f"objective {self.name}: expected one score per image, got shape {scores.shape}")
        return scores

    def __add__(self, other: Objective) -> Objective:
        other = _as_objective(other)
        return Objective(self.layers | other.layers, lambda a: self.read(a) + other.read(a),
                         f"({self.name} + {other.name})")

    def __radd__(self, other: object) -> Objective:
        # sum([a, b, c]) starts from the integer 0
        if isinstance(other, int | float) and other == 0:
            return self
        return _as_objective(other) + self

    def __sub__(self, other: Objective) -> Objective:
        return self + (-1.0) * _as_objective(other)

    def __mul__(self, weight: float) -> Objective:
        if not isinstance(weight, int | float | np.integer | np.floating):
            raise TypeError(f"objective: can only be scaled by a number, got {type(weight).__name__}")
        return Objective(self.layers, lambda a: self.read(a) * float(weight), f"{weight:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _as_objective(value: object) -> Objective:
    if not isinstance(value, Objective):
        raise TypeError(f"objective: expected an Objective, got {type(value).__name__}")
    return value


def _check_index(value: int, size: int, what: str, where: str) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"objective: {what} must be an int, got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"objective: {what} {value} is out of range for {where} with {size} (0..{size - 1})")


def class_logit(target: int) -> Objective:
    """S_c: the logit of class ``target`` (before the softmax, so other classes are not pushed down)."""
    def read(acts):
        logits = acts[LOGITS]
        _check_index(target, logits.shape[-1], "class", "logits")
        return logits[:, int(target)]
    return Objective(frozenset({LOGITS}), read, f"class_logit({target})")


def unit(layer: str, channel: int, y: int | None = None, x: int | None = None) -> Objective:
    """One neuron: activation[channel, y, x] of ``layer`` (the centre position by default)."""
    def read(acts):
        a = acts[layer]
        _check_index(channel, a.shape[1], "channel", f"layer {layer!r}")
        if a.ndim == 2:
            return a[:, int(channel)]
        row = a.shape[2] // 2 if y is None else y
        col = a.shape[3] // 2 if x is None else x
        _check_index(row, a.shape[2], "y", f"layer {layer!r}")
        _check_index(col, a.shape[3], "x", f"layer {layer!r}")
        return a[:, int(channel), int(row), int(col)]
    return Objective(frozenset({layer}), read, f"unit({layer!r}, {channel})")


def channel(layer: str, index: int) -> Objective:
    """The mean activation of channel ``index`` of ``layer`` over all positions."""
    def read(acts):
        a = acts[layer]
        _check_index(index, a.shape[1], "channel", f"layer {layer!r}")
        c = a[:, int(index)]
        return c.mean(axis=tuple(range(1, c.ndim))) if c.ndim > 1 else c
    return Objective(frozenset({layer}), read, f"channel({layer!r}, {index})")


def direction(layer: str, vector: np.ndarray, y: int | None = None, x: int | None = None) -> Objective:
    """The code of ``layer`` along ``vector`` (C,) in its channel space (Szegedy et al. 2014,
    "Intriguing properties of neural networks"):

        <v, a[:, y, x]>                     at position (y, x) of a conv layer, when both are given;
        (1 / HW) sum_yx <v, a[:, y, x]>     over all positions otherwise (``channel`` for v = e_c);
        <v, a>                              for a fully connected layer (N, C).

    ``direction(layer, e_c, y, x)`` is ``unit(layer, c, y, x)``: a unit is a direction along an axis.
    """
    v = np.asarray(host(vector))
    if v.dtype.kind not in "fiu" or v.ndim != 1 or v.size == 0:
        raise TypeError(f"objective: direction vector must be a non-empty 1-D numeric array (one value per "
                        f"channel), got {type(vector).__name__} of shape {getattr(v, 'shape', None)}")
    if not np.isfinite(v).all():
        raise ValueError("objective: direction vector contains NaN or infinite values")
    if (y is None) != (x is None):
        raise ValueError(f"objective: direction needs both y and x (a position) or neither, got y={y}, x={x}")
    v = v.astype(np.float64)

    def read(acts):
        a = acts[layer]
        if a.shape[1] != v.shape[0]:
            raise ValueError(f"objective: direction vector has {v.shape[0]} values, layer {layer!r} has "
                             f"{a.shape[1]} channels")
        weight = Tensor(backend.xp(a.data).asarray(v, dtype=a.dtype))
        if a.ndim == 2:
            return (a * weight).sum(axis=1)
        if y is not None:
            _check_index(y, a.shape[2], "y", f"layer {layer!r}")
            _check_index(x, a.shape[3], "x", f"layer {layer!r}")
            return (a[:, :, int(y), int(x)] * weight).sum(axis=1)
        return (a * weight.reshape(1, -1, 1, 1)).sum(axis=1).mean(axis=(1, 2))
    where = "" if y is None else f", y={y}, x={x}"
    return Objective(frozenset({layer}), read, f"direction({layer!r}, {v.shape[0]} values{where})")


def layer_l2(layer: str) -> Objective:
    """1/2 ||a||^2 per image: its gradient with respect to the activation is the activation (DeepDream)."""
    def read(acts):
        a = acts[layer]
        return (a * a).sum(axis=tuple(range(1, a.ndim))) * 0.5
    return Objective(frozenset({layer}), read, f"layer_l2({layer!r})")


def as_objective(target: int | Objective) -> Objective:
    """A class index becomes ``class_logit(index)``; an Objective passes through."""
    if isinstance(target, Objective):
        return target
    if isinstance(target, int | np.integer) and not isinstance(target, bool):
        return class_logit(int(target))
    raise TypeError(f"objective: expected a class index or an Objective, got {target!r}")
