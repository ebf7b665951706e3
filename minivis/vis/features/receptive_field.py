"""Receptive fields: which input pixels can influence one unit of a layer.

For a chain of sliding-window layers, every unit of a layer sees an axis-aligned box of the
input, and the boxes of neighbouring units are shifted by a constant step. Three numbers per
axis describe them all (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional
Neural Networks", Distill 2019; Dumoulin & Visin 2016):

* ``size``  r: the side of the box, in input pixels;
* ``jump``  j: how far the box moves when the unit moves by one position (the product of strides);
* ``start`` s: the input coordinate of the top-left pixel of unit 0's box (negative when it
  reaches into the padding).

Unit ``y`` of the layer then sees input rows ``s + y*j, ..., s + y*j + r - 1`` (the same for
columns). A layer with kernel k, stride t, dilation d and padding p (top/left) reads positions
``y*t - p + i*d`` (``i = 0..k-1``) of its input, so, starting from the image (r, j, s) = (1, 1, 0),

    r_out = r_in + (k - 1) * d * j_in
    j_out = j_in * t
    s_out = s_in - p * j_in

Elementwise layers (activations, batch norm in eval mode, dropout) change nothing. Pooling
layers are sliding windows like convolutions (max-pooling *reads* its whole window even though
its gradient only flows to the maximum). With dilation, ``size`` is the extent of the box: the
pixels it depends on can have holes (for example a dilated conv right after a strided one).

How the walk works: the model's leaf modules are visited in registration order up to and
including ``layer`` (for ``Sequential`` containers and every model in the zoo, registration order
is forward order). An EfficientNet MBConv block is thus walked through its 1x1 expand, kxk
depthwise and 1x1 project convolutions. Its residual add does not change the receptive field:
the skip path sees a 1x1 box centred inside the main path's box (odd kernels, stride 1,
"same" padding), so the union is the main path's box. ``Flatten``, ``Linear`` and a global
``AdaptiveAvgPool2d(1)`` see the whole map: the box of their (single) position covers every
position of their input.

``padding="same"`` depends on the size of the map (TensorFlow puts the odd padding pixel at the
bottom/right), so the walk tracks the map size from ``input_size`` (the model's ``input_size``
by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from minivis.nn.conv import Conv2d
from minivis.nn.linear import Dropout, Flatten, Identity, Linear
from minivis.nn.module import Module
from minivis.nn.norm import BatchNorm1d, BatchNorm2d, InstanceNorm2d, LocalResponseNorm
from minivis.nn.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from minivis.validate import check_bool, int_pair, padding4
from minivis.vis.common import check_layer

Pair = tuple[int, int]

# Layers that act on each position on its own (or normalise channels at one position): the box is unchanged.
_POINTWISE_TYPES = (BatchNorm1d, BatchNorm2d, InstanceNorm2d, LocalResponseNorm, Dropout, Identity)
_ACTIVATION_NAMES = {"ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh"}


class Box(NamedTuple):
    """An image box ``image[top:bottom, left:right]`` (bottom and right are exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


@dataclass(frozen=True)
class ReceptiveField:
    """``size``, ``jump`` and ``start`` as (rows, cols) pairs; ``out_size`` is the layer's map size
    for ``input_size`` (None when no input size was known). Unpacks as ``size, jump, start``."""

    size: Pair
    jump: Pair
    start: Pair
    input_size: Pair | None = None
    out_size: Pair | None = None

    def __iter__(self) -> Iterator[Pair]:
        return iter((self.size, self.jump, self.start))

    def box(self, y: int, x: int, clip: bool = True) -> Box:
        """The input box of unit (y, x); clipped to the image when ``clip`` (needs ``input_size``).

        y, x: the unit's position in the layer's map (within ``out_size`` when that is known)."""
        op = "ReceptiveField.box"
        clip = check_bool(clip, op, "clip")
        if clip and self.input_size is None:
            raise ValueError(f"{op}: clipping needs the image size (pass input_size to receptive_field, "
                             f"or clip=False)")
        for i, (name, value) in enumerate((("y", y), ("x", x))):
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise TypeError(f"{op}: {name} must be an int, got {value!r}")
            if self.out_size is not None and not 0 <= value < self.out_size[i]:
                raise ValueError(f"{op}: {name}={value} is outside the layer's map (0..{self.out_size[i] - 1})")
        top = self.start[0] + int(y) * self.jump[0]
        left = self.start[1] + int(x) * self.jump[1]
        box = Box(top, left, top + self.size[0], left + self.size[1])
        if not clip:
            return box
        h, w = self.input_size
        return Box(max(box.top, 0), max(box.left, 0), min(box.bottom, h), min(box.right, w))

    def center(self, y: int, x: int) -> tuple[float, float]:
        """Input coordinates of the centre of unit (y, x)'s box (a half-integer for even sizes)."""
        return (self.start[0] + y * self.jump[0] + (self.size[0] - 1) / 2,
                self.start[1] + x * self.jump[1] + (self.size[1] - 1) / 2)


class _Axis:
    """(r, j, s) and the map size n along one axis, updated layer by layer."""

    def __init__(self, n: int | None, method: str, size_arg: str) -> None:
        self.r, self.j, self.s, self.n = 1, 1, 0, n
        self.method, self.size_arg = method, size_arg  # the public call and its size argument, for the errors

    def window(self, name: str, k: int, t: int, d: int, pad_before: int, pad_total: int,
               ceil_mode: bool = False) -> None:
        self.r += (k - 1) * d * self.j
        self.s -= pad_before * self.j
        self.j *= t
        if self.n is not None:
            extent = d * (k - 1) + 1
            out = (self.n + pad_total - extent + (t - 1 if ceil_mode else 0)) // t + 1
            if ceil_mode and (out - 1) * t >= self.n + pad_before:  # PyTorch drops a window starting in the pad
                out -= 1
            if out < 1:
                raise ValueError(f"{self.method}: layer {name!r} leaves no output position for a map of {self.n} "
                                 f"(kernel {k}, stride {t}, dilation {d}, padding {pad_total}); "
                                 f"use a larger input_size")
            self.n = out

    def whole(self) -> None:
        """One position that sees every position of the current map."""
        if self.n is None:
            raise ValueError(f"{self.method}: a global layer (Flatten, Linear, global pooling) sees the whole "
                             f"map; pass {self.size_arg} so its size is known")
        self.r += (self.n - 1) * self.j
        self.n = 1


def _same_pads(axis: _Axis, k: int, t: int, d: int, name: str) -> tuple[int, int]:
    """TensorFlow SAME padding (before, total) for a map of n positions: the odd pixel goes after."""
    n = axis.n
    if n is None:
        raise ValueError(f"{axis.method}: layer {name!r} uses padding='same', which depends on the map size; "
                         f"pass {axis.size_arg}")
    total = max((-(-n // t) - 1) * t + d * (k - 1) + 1 - n, 0)
    return total // 2, total


def _leaves_until(model: Module, layer: str) -> list[tuple[str, Module]]:
    """Leaf modules in registration order, up to and including every leaf of ``layer``."""
    leaves, seen_target = [], False
    for name, module in model.named_modules():
        inside = layer == "" or name == layer or name.startswith(layer + ".")
        if seen_target and not inside:
            break
        seen_target = seen_target or inside
        if next(module.children(), None) is None:  # a leaf layer
            leaves.append((name, module))
    return leaves


def _apply(module: Module, name: str, rows: _Axis, cols: _Axis, state: dict[str, Any]) -> None:
    method = rows.method
    if isinstance(module, _POINTWISE_TYPES) or type(module).__name__ in _ACTIVATION_NAMES:
        return
    if isinstance(module, Flatten | Linear):
        if not state["global"]:
            rows.whole()
            cols.whole()
            state["global"] = True
        return
    if state["global"]:
        raise ValueError(f"{method}: layer {name!r} ({type(module).__name__}) comes after the map was "
                         f"flattened; only Linear/Dropout/activations are expected there")
    if isinstance(module, AdaptiveAvgPool2d):
        if int_pair(module.output_size, method, "output_size") != (1, 1):
            raise ValueError(f"{method}: layer {name!r}: adaptive pooling to {module.output_size!r} has "
                             f"bins of unequal size and no single receptive field; only output_size=1 is supported")
        rows.whole()
        cols.whole()
        return
    if isinstance(module, Conv2d | MaxPool2d | AvgPool2d):
        op = f"{method} ({name})"
        k = int_pair(module.kernel_size, op, "kernel_size")
        stride = k if module.stride is None else module.stride  # pools default to stride = kernel
        t = int_pair(stride, op, "stride")
        d = int_pair(getattr(module, "dilation", 1), op, "dilation")
        ceil_mode = bool(getattr(module, "ceil_mode", False))
        padding = module.padding
        if isinstance(padding, str):
            if padding == "valid":
                pads = [(0, 0), (0, 0)]
            elif padding == "same":
                pads = [_same_pads(axis, kk, tt, dd, name)
                        for axis, kk, tt, dd in zip((rows, cols), k, t, d, strict=True)]
            else:
                raise ValueError(f"{method}: layer {name!r} has unknown padding {padding!r}")
        else:
            top, bottom, left, right = padding4(padding, op)
            pads = [(top, top + bottom), (left, left + right)]
        rows.window(name, k[0], t[0], d[0], *pads[0], ceil_mode)
        cols.window(name, k[1], t[1], d[1], *pads[1], ceil_mode)
        return
    raise TypeError(f"{method}: don't know how layer {name!r} ({type(module).__name__}) changes the "
                    f"receptive field; supported: Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, "
                    f"Linear, batch norm, dropout and activations")


def receptive_field(model: Module, layer: str, input_size: int | tuple[int, int] | None = None) -> ReceptiveField:
    """Size, jump and start offset of the receptive field of one unit of ``layer``.

    model: a minivis Module whose leaf layers are registered in forward order.
    layer: dotted layer name (as in the state dict, e.g. ``"features.3"`` or ``"_blocks.4"``).
    input_size: (H, W) of the input image; defaults to ``model.input_size``. Needed for
    ``padding="same"`` and global layers, and for clipping boxes at the image border.

    Returns ``ReceptiveField(size, jump, start, input_size, out_size)``, each a (rows, cols) pair:
    unit (y, x) sees input rows ``start[0] + y*jump[0]`` up to (excluding) ``+ size[0]``.
    """
    return _receptive_field(model, layer, input_size, "receptive_field", "input_size")


def _receptive_field(model: Module, layer: str, input_size: Any, method: str, size_arg: str) -> ReceptiveField:
    """``receptive_field``, its errors naming ``method`` (the public call) and ``size_arg`` (its name for the size)."""
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    check_layer(model, layer, method)
    if input_size is None:
        input_size = getattr(model, "input_size", None)
    if input_size is not None:
        input_size = int_pair(input_size, method, size_arg)
    rows = _Axis(None if input_size is None else input_size[0], method, size_arg)
    cols = _Axis(None if input_size is None else input_size[1], method, size_arg)
    state = {"global": False}
    for name, module in _leaves_until(model, layer):
        _apply(module, name, rows, cols, state)
    out = None if rows.n is None else (rows.n, cols.n)
    return ReceptiveField((rows.r, cols.r), (rows.j, cols.j), (rows.s, cols.s), input_size, out)


def receptive_field_box(model: Module, layer: str, y: int, x: int,
                        image_size: int | tuple[int, int] | None = None) -> Box:
    """The image box ``(top, left, bottom, right)`` (exclusive ends) seen by unit (y, x) of ``layer``,
    clipped at the image border. ``image_size`` defaults to ``model.input_size``."""
    rf = _receptive_field(model, layer, image_size, "receptive_field_box", "image_size")
    if rf.input_size is None:
        raise ValueError("receptive_field_box: pass image_size (the model has no input_size)")
    for name, value, size in (("y", y, rf.out_size[0]), ("x", x, rf.out_size[1])):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise TypeError(f"receptive_field_box: {name} must be an int, got {value!r}")
        if not 0 <= value < size:
            raise ValueError(f"receptive_field_box: {name}={value} is outside layer {layer!r}'s map "
                             f"(0..{size - 1} for a {rf.input_size[0]}x{rf.input_size[1]} image)")
    return rf.box(int(y), int(x))
