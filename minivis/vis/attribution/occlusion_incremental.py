"""Incremental inference for occlusion: recompute only each layer's cone of influence.

Occluding a ``P x P`` patch changes only the pixels under it. A convolution or pooling output
reads a small window of its input, so the first layer's output changes only where a window
touches the patch, the next layer's only where *its* windows touch that region, and so on: the
changed region grows layer by layer by the kernel's reach (Nakandala, Kumar & Papakonstantinou,
"Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations",
SIGMOD 2019, "Krypton"). So one full forward pass of the clean image is cached, and for each
patch position only the changed region of each layer is recomputed and spliced into the cache.

Along one axis, a layer with kernel ``k``, stride ``s``, dilation ``d`` and padding ``p`` before
the first pixel has output ``o`` reading inputs ``[o*s - p, o*s - p + e)`` with reach
``e = d*(k - 1) + 1``. If the input changed on ``[a, a + L)``, the outputs that change are

    o_lo = ceil((a + p - e + 1) / s),   o_hi = floor((a + L - 1 + p) / s)      (clipped to the map)

and computing them needs the input window ``[o_lo*s - p, o_hi*s - p + e)``: the changed region
plus a halo of cached values around it. Padding is only real at the image border: inside the
map the halo comes from the cache, outside it is the layer's pad value (0 for convolutions and
average pools, -inf for max-pools), so running the layer with *no* padding on that window gives
exactly the full layer's values there.

The model is followed as a tree of *units*, checked against one real forward pass:

* a ``Leaf`` layer is ``spatial`` (Conv2d, MaxPool2d, AvgPool2d: the region grows by its
  geometry), ``pointwise`` (activations, eval-mode BatchNorm/Dropout, LocalResponseNorm,
  Identity: the region stays) or ``opaque`` (Flatten, Linear, a global pool, anything unknown:
  it needs the whole map, so the region is spliced into the cache and the rest runs in full);
* a ``Chain`` is a module whose children run one after the other (Sequential, the zoo's
  models), optionally with a residual skip ``out = chain(x) + x`` (MBConv blocks with
  ``skip=True``), whose changed region is the union of both branches' regions.

A convolution followed by an eval-mode batch norm (and a ReLU or ReLU6) runs as one op
(``fuse_batch_norms``, ``F.conv2d_bn_relu``): the same values bit for bit, without the passes of
the batch norm and rectifier over the regions.

Every position in a batch has a region of the same size (the largest; a larger region only
recomputes unchanged values), at its own offset. Once a region covers nearly the whole map
(``FULL_AT``), the region is spliced into copies of the cached map and the remaining layers run
in full. The approximate mode (Krypton's *projective-field threshold* ``tau``) caps each layer's
region at ``ceil(tau * size)`` per axis around its centre and takes cached values beyond it.

The layers after the model's top-level Flatten (its *dense head*: VGG's classifier, Lite0's
fully connected layer) see whole rows, never regions, and a Linear layer reads all of its
weights on every call however few rows it gets. So ``Incremental.stream`` runs each batch up to
the Flatten and the head on the rows of several batches at once (``HEAD_BYTES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis import functional as F
from minivis.autograd import Tensor
from minivis.functional.conv import same_padding
from minivis.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    ReLU6,
    Sigmoid,
    Tanh,
)
from minivis.nn.module import Module
from minivis.validate import int_pair, padding4

FULL_AT = 0.9
"""Switch to full maps once a layer's changed region covers this fraction of its output map."""

HEAD_BYTES = 64 << 20
"""Input rows the dense head (the layers after the model's top-level Flatten) collects before it
runs: a Linear layer reads all its weights once per call, whatever the rows (VGG16's first one,
411 MB, per batch of 32 positions cost more than its arithmetic), so it runs on the rows of
several batches at once, up to this many bytes of its input (benchmarks/README.md, "Occlusion")."""

POINTWISE = (ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, BatchNorm2d, Dropout, Identity, LocalResponseNorm)
"""Layers whose output pixel depends on the same input pixel only (BatchNorm/Dropout in eval mode;
LRN mixes channels, never pixels)."""


# ----------------------------------------------------------------------------- the splice kernel
def gather(cache: Any, img: Any, region: Any, ry0: Any, rx0: Any, wy0: Any, wx0: Any, wh: int, ww: int,
           pad: float = 0.0) -> Any:
    """Windows (B, C, wh, ww) of the patched maps: item b's map (``cache[img[b]]`` with ``region[b]``
    spliced in at rows ``ry0[b]``, columns ``rx0[b]``) read from (``wy0[b]``, ``wx0[b]``), ``pad``
    outside the map. The kernel is ``minivis/kernels/cpu_occlusion.py`` (Numba; its plain twin
    ``naive_gather`` beside it is what the GPU runs)."""
    return backend.kernels("occlusion", cache, "occlusion").gather(cache, img, region, ry0, rx0, wy0, wx0, wh, ww,
                                                                   pad)


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Axis:
    """One axis of a sliding-window layer: output o reads inputs [o*stride - pad, o*stride - pad + reach)."""

    kernel: int
    stride: int
    pad: int       # padding before the first pixel (top or left)
    dilation: int
    size_in: int
    size_out: int

    @property
    def reach(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def affected(self, start: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """First and last output (B,) whose window meets inputs [start, start + length), clipped to the map."""
        lo = -((-(start + self.pad - self.reach + 1)) // self.stride)  # ceil division
        hi = (start + length - 1 + self.pad) // self.stride
        return np.maximum(lo, 0), np.minimum(hi, self.size_out - 1)

    def window(self, out_start: np.ndarray, out_length: int) -> tuple[np.ndarray, int]:
        """Start (B,) and length of the input window that outputs [out_start, out_start + out_length) read."""
        return out_start * self.stride - self.pad, (out_length - 1) * self.stride + self.reach


def place(lo: np.ndarray, hi: np.ndarray, size: int, cap: int | None) -> tuple[np.ndarray, int]:
    """One region length for the batch (the largest ``hi - lo + 1``, at most ``cap``) and each start.

    Without a cap the region covers [lo, hi] of every item; with one (approximate mode) it is
    centred on [lo, hi] and the rest of the change is dropped.
    """
    length = int(max(1, (hi - lo + 1).max()))
    if cap is not None and length > cap:
        length = cap
        lo = (lo + hi + 1) // 2 - length // 2
    return np.clip(lo, 0, size - length), length


# ----------------------------------------------------------------------------- the model as units
class Unit:
    """A module in the plan; after ``trace`` it holds its clean input and output arrays (N, ...)."""

    def __init__(self, module: Module, name: str) -> None:
        self.module, self.name = module, name
        self.input: Any = None
        self.output: Any = None

    def walk(self) -> Iterator[Unit]:
        """Units in the order their forward hooks fire (children before their parent)."""
        yield self


class Leaf(Unit):
    kind = "opaque"           # "spatial" | "pointwise" | "opaque", set by classify()
    axes: tuple[Axis, Axis]   # spatial only
    pad_value = 0.0
    op: Callable[[Tensor], Tensor]  # on a region (spatial: a window, run without padding)

    def full(self, x: Tensor) -> Tensor:
        """The layer on whole maps."""
        return self.module(x)

    def classify(self) -> None:
        m, x, y = self.module, self.input, self.output
        if x is None or x.ndim != 4 or y.ndim != 4:
            return
        if isinstance(m, POINTWISE) and x.shape == y.shape:
            self.kind, self.op = "pointwise", m
        elif isinstance(m, AdaptiveAvgPool2d) and x.shape == y.shape:
            self.kind, self.op = "pointwise", lambda t: t  # each bin is one pixel: the identity
        elif isinstance(m, Conv2d):
            stride, dilation = int_pair(m.stride, "Conv2d", "stride"), int_pair(m.dilation, "Conv2d", "dilation")
            if m.padding == "same":
                pad4 = same_padding(x.shape[2:], m.kernel_size, stride, dilation)
            else:
                pad4 = (0, 0, 0, 0) if m.padding == "valid" else padding4(m.padding, "Conv2d")
            self._spatial(m.kernel_size, stride, (pad4[0], pad4[2]), dilation, 0.0)
            self.op = lambda t: F.conv2d(t, m.weight, m.bias, stride, 0, dilation, m.groups)
        elif isinstance(m, MaxPool2d):
            kernel = int_pair(m.kernel_size, "MaxPool2d", "kernel_size")
            stride = kernel if m.stride is None else int_pair(m.stride, "MaxPool2d", "stride")
            dilation = int_pair(m.dilation, "MaxPool2d", "dilation")
            # ceil_mode windows that run past the input see -inf there, as in the layer itself
            self._spatial(kernel, stride, int_pair(m.padding, "MaxPool2d", "padding", 0), dilation, -np.inf)
            self.op = lambda t: F.max_pool2d(t, kernel, stride, 0, dilation)
        elif isinstance(m, AvgPool2d) and not m.ceil_mode and (m.count_include_pad or m.padding == 0):
            kernel = int_pair(m.kernel_size, "AvgPool2d", "kernel_size")
            stride = kernel if m.stride is None else int_pair(m.stride, "AvgPool2d", "stride")
            # zero padding counted in the divisor (k*k) is what a zero halo gives
            self._spatial(kernel, stride, int_pair(m.padding, "AvgPool2d", "padding", 0), (1, 1), 0.0)
            self.op = lambda t: F.avg_pool2d(t, kernel, stride, 0)

    def _spatial(self, kernel, stride, pad, dilation, pad_value) -> None:
        self.kind, self.pad_value = "spatial", pad_value
        self.axes = tuple(Axis(kernel[i], stride[i], pad[i], dilation[i], self.input.shape[2 + i],
                               self.output.shape[2 + i]) for i in range(2))


class Chain(Unit):
    """Children run in order; with ``residual`` the output is chain(x) + x."""

    def __init__(self, module: Module, name: str, units: list[Unit], residual: bool) -> None:
        super().__init__(module, name)
        self.units, self.residual = units, residual

    def walk(self) -> Iterator[Unit]:
        for unit in self.units:
            yield from unit.walk()
        yield self


def fuse_batch_norms(plan: Unit) -> None:
    """Run every convolution followed by an eval-mode BatchNorm2d (and a plain ReLU or ReLU6) as one
    op, ``F.conv2d_bn_relu`` (``F.conv2d_bn``), after ``trace``.

    The fused op applies the batch norm and rectifier as the convolution's output is written (no
    passes of their own over the regions) with the separate ops' arithmetic, bit for bit; the
    batch norm and rectifier units become the identity, and the convolution now produces the last
    one's output, so its regions splice into that unit's cached output.
    """
    for chain in (u for u in plan.walk() if isinstance(u, Chain)):
        units = chain.units
        for i, (conv, bn) in enumerate(zip(units, units[1:], strict=False)):
            if not (isinstance(conv, Leaf) and isinstance(bn, Leaf) and type(conv.module) is Conv2d
                    and type(bn.module) is BatchNorm2d and conv.kind == "spatial" and bn.kind == "pointwise"
                    and not bn.module.training):
                continue
            act = units[i + 2] if i + 2 < len(units) else None
            if not (isinstance(act, Leaf) and type(act.module) in (ReLU, ReLU6) and act.kind == "pointwise"):
                act = None
            conv.op, conv.full = _fused(conv.module, bn.module, act and act.module)
            last = act or bn
            conv.output = last.output
            for unit in (bn, act) if act else (bn,):  # now the identity: their input is the output too
                unit.input = unit.output = last.output
                unit.op = unit.full = lambda t: t


def _fused(m: Conv2d, norm: BatchNorm2d, act: Module | None) -> tuple[Callable, Callable]:
    """(on a region, without padding; on whole maps) for ``act(norm(m(x)))``."""
    stats = dict(running_mean=norm.running_mean, running_var=norm.running_var, bn_weight=norm.weight,
                 bn_bias=norm.bias, eps=norm.eps)
    if act is not None:
        stats["max_value"] = 6.0 if type(act) is ReLU6 else np.inf
    op = F.conv2d_bn if act is None else F.conv2d_bn_relu
    return (lambda t: op(t, m.weight, m.bias, m.stride, 0, m.dilation, m.groups, **stats),
            lambda t: op(t, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, **stats))


def build_plan(module: Module, name: str = "") -> Unit:
    """The unit tree of ``module``: leaves for layers without children, chains for the rest."""
    children = list(module.named_children())
    if not children:
        return Leaf(module, name)
    units = [build_plan(child, f"{name}.{key}" if name else key) for key, child in children]
    return Chain(module, name, units, residual=bool(getattr(module, "skip", False)))


def conv_macs(unit: Unit, per_pixel: bool = False) -> int:
    """Multiply-adds of the convolutions in ``unit`` for one image (per output pixel for a single conv)."""
    total = 0
    for leaf in unit.walk():
        if isinstance(leaf, Leaf) and isinstance(leaf.module, Conv2d):
            area = 1 if per_pixel else leaf.output.shape[2] * leaf.output.shape[3]
            total += area * int(np.prod(leaf.module.weight.shape))  # C_out * C_in/groups * kh * kw
    return total


def head_start(plan: Unit) -> int | None:
    """Where the dense head starts: the index of the unit after the plan's first top-level Flatten
    (VGG's classifier, Lite0's dropout and fully connected layer), or None when there is none.
    Everything from there runs on whole rows, so its rows may run in any grouping."""
    if not isinstance(plan, Chain) or plan.residual:
        return None
    for i, unit in enumerate(plan.units[:-1]):
        if isinstance(unit, Leaf) and isinstance(unit.module, Flatten):
            return i + 1
    return None


class UnsupportedModel(ValueError):
    pass


def trace(plan: Unit, model: Module, x: Any) -> Any:
    """Run the clean forward pass once, fill every unit's input/output, and check the plan.

    The check: every unit runs exactly once, in plan order; the model reads the given input (no
    forward pre-hook replaced it); each chain's first child reads the chain's input and each next
    child the previous one's output (the same tensor object, so a pre-hook that replaces a layer's
    input is refused too); the chain returns its last child's output, plus its input for a
    residual chain. A model whose forward does anything else (a functional op between layers, a
    layer used twice) raises ``UnsupportedModel``. Returns the logits array.
    """
    order = list(plan.walk())
    fired: list[tuple[Unit, Any, Any]] = []
    handles = [u.module.register_forward_hook(lambda m, args, out, u=u: fired.append((u, args, out)))
               for u in order]
    given = Tensor(x)
    try:
        logits = model(given)
    finally:
        for handle in handles:
            handle.remove()

    def fail(why: str) -> UnsupportedModel:
        return UnsupportedModel(f"occlusion: incremental mode cannot follow {type(model).__name__}: {why}; "
                                "use mode='naive'")

    if [u for u, _, _ in fired] != order:
        seen = [u.name for u, _, _ in fired]
        missing = [u.name for u in order if seen.count(u.name) != 1]
        raise fail(f"layers {missing[:5] or seen[:5]} do not run exactly once in the order they are registered")
    tensors = {}
    for unit, args, out in fired:
        if len(args) != 1 or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            raise fail(f"layer {unit.name or '(model)'} does not map one tensor to one tensor")
        tensors[unit] = (args[0], out)
        unit.input, unit.output = args[0].data, out.data
    if tensors[plan][0] is not given:  # the regions are patches of the given input, spliced into plan.input
        raise fail("its input is replaced before its forward runs (a forward pre-hook)")
    for chain in (u for u in order if isinstance(u, Chain)):
        previous = tensors[chain][0]
        for unit in chain.units:
            if tensors[unit][0] is not previous:
                raise fail(f"layer {unit.name} does not read the output of the layer before it")
            previous = tensors[unit][1]
        if chain.residual:
            if chain.input.shape != previous.shape or not np.array_equal(chain.output, previous.data + chain.input):
                raise fail(f"block {chain.name} is not its layers plus a skip connection")
        elif tensors[chain][1] is not previous:
            raise fail(f"{chain.name or 'the model'} does not return the output of its last layer")
    for unit in order:
        if isinstance(unit, Leaf):
            unit.classify()
    fuse_batch_norms(plan)
    return logits.data


# ----------------------------------------------------------------------------- running one batch
@dataclass
class Region:
    """The changed part of each item's map: values (B, C, Rh, Rw) at rows y0 (B,), columns x0 (B,)."""

    values: Any
    y0: np.ndarray
    x0: np.ndarray


@dataclass
class Full:
    """Whole maps (B, ...) once a region covers (nearly) everything."""

    values: Any


State = Region | Full


class Incremental:
    """Runs batches of patched copies of the cached images through the plan.

    ``img`` (B,) says which cached image each item is; ``tau`` is the approximate mode's
    threshold (None: exact). ``sizes`` records, per layer name, the region size of the last
    batch (None once the layer ran on full maps): the cone of influence, layer by layer.
    """

    def __init__(self, plan: Unit, tau: float | None = None) -> None:
        self.plan, self.tau = plan, tau
        self.macs_done = 0  # multiply-adds of the convolutions actually run (naive: conv_macs(plan) per item)
        self.sizes: dict[str, tuple[int, int] | None] = {}  # each layer's last region (Rh, Rw); None: full map
        self.head = head_start(plan)

    def __call__(self, state: Region, img: np.ndarray) -> Any:
        self.img = img
        out = self.run(self.plan, state)
        return self.full(self.plan, out) if isinstance(out, Region) else out.values

    def stream(self, batches: Iterable[tuple[Region, np.ndarray, slice]]) -> Iterator[tuple[slice, Any]]:
        """The outputs of the whole plan for batches of items ``(state, img, items)``, as ``(items, outputs)``.

        Each batch runs up to the dense head (``head_start``); the head then runs once per
        ``HEAD_BYTES`` of collected rows, so consecutive batches come back together (``items``
        spans them; the batches must be consecutive slices). Without a dense head every batch
        runs whole and comes back alone.
        """
        if self.head is None:
            for state, img, items in batches:
                yield items, self(state, img)
            return
        rows: list[Any] = []
        imgs: list[np.ndarray] = []
        first = None
        for state, img, items in batches:
            self.img = img
            for unit in self.plan.units[:self.head]:
                state = self.run(unit, state)
            rows.append(state.values)  # the Flatten is opaque: its output is always Full
            imgs.append(img)
            first = items.start if first is None else first
            if sum(r.nbytes for r in rows) >= HEAD_BYTES:
                yield slice(first, items.stop), self._run_head(rows, imgs)
                rows, imgs, first = [], [], None
        if rows:
            yield slice(first, first + sum(len(r) for r in rows)), self._run_head(rows, imgs)

    def _run_head(self, rows: list[Any], imgs: list[np.ndarray]) -> Any:
        self.img = np.concatenate(imgs)
        state: State = Full(backend.xp(rows[0]).concatenate(rows))
        for unit in self.plan.units[self.head:]:
            state = self.run(unit, state)
        return state.values

    def full(self, unit: Unit, state: State) -> Any:
        """Whole output maps of ``unit`` for every item: the region spliced into the cached output."""
        if isinstance(state, Full):
            return state.values
        h, w = unit.output.shape[2:]
        zeros = np.zeros(len(self.img), dtype=np.int64)
        return gather(unit.output, self.img, state.values, state.y0, state.x0, zeros, zeros, h, w)

    def full_input(self, unit: Unit, state: State) -> Any:
        if isinstance(state, Full):
            return state.values
        h, w = unit.input.shape[2:]
        zeros = np.zeros(len(self.img), dtype=np.int64)
        return gather(unit.input, self.img, state.values, state.y0, state.x0, zeros, zeros, h, w)

    def run(self, unit: Unit, state: State) -> State:
        out = self._run(unit, state)
        self.sizes[unit.name] = out.values.shape[2:] if isinstance(out, Region) else None
        return out

    def _run(self, unit: Unit, state: State) -> State:
        if isinstance(unit, Chain):
            inner = state
            for child in unit.units:
                inner = self.run(child, inner)
            return self.add_skip(unit, state, inner) if unit.residual else inner
        if isinstance(state, Full):
            self.macs_done += len(self.img) * conv_macs(unit)
            return Full(unit.full(Tensor(state.values)).data)
        if unit.kind == "pointwise":
            return Region(unit.op(Tensor(state.values)).data, state.y0, state.x0)
        if unit.kind == "spatial":
            return self.spatial(unit, state)
        return Full(unit.full(Tensor(self.full_input(unit, state))).data)

    def spatial(self, unit: Leaf, state: Region) -> State:
        ay, ax = unit.axes
        rh, rw = state.values.shape[2:]
        caps = [None, None] if self.tau is None else [max(1, int(np.ceil(self.tau * a.size_out))) for a in unit.axes]
        oy, lh = place(*ay.affected(state.y0, rh), ay.size_out, caps[0])
        ox, lw = place(*ax.affected(state.x0, rw), ax.size_out, caps[1])
        if lh * lw >= FULL_AT * ay.size_out * ax.size_out:
            self.macs_done += len(self.img) * conv_macs(unit)
            return Full(unit.full(Tensor(self.full_input(unit, state))).data)
        self.macs_done += len(self.img) * lh * lw * conv_macs(unit, per_pixel=True)
        (wy, wh), (wx, ww) = ay.window(oy, lh), ax.window(ox, lw)
        window = gather(unit.input, self.img, state.values, state.y0, state.x0, wy, wx, wh, ww, unit.pad_value)
        return Region(unit.op(Tensor(window)).data, oy, ox)

    def add_skip(self, chain: Chain, x: Region, h: State) -> State:
        """out = h + x over the union of both regions (or in full)."""
        if isinstance(h, Full):
            return Full(h.values + self.full_input(chain, x))
        size_h, size_w = chain.output.shape[2:]
        (xh, xw), (hh, hw) = x.values.shape[2:], h.values.shape[2:]
        y_lo, y_hi = np.minimum(x.y0, h.y0), np.maximum(x.y0 + xh, h.y0 + hh)
        x_lo, x_hi = np.minimum(x.x0, h.x0), np.maximum(x.x0 + xw, h.x0 + hw)
        uy, lh = place(y_lo, y_hi - 1, size_h, None)
        ux, lw = place(x_lo, x_hi - 1, size_w, None)
        if lh * lw >= FULL_AT * size_h * size_w:
            return Full(self.full(chain.units[-1], h) + self.full_input(chain, x))
        skip = gather(chain.input, self.img, x.values, x.y0, x.x0, uy, ux, lh, lw)
        main = gather(chain.units[-1].output, self.img, h.values, h.y0, h.x0, uy, ux, lh, lw)
        return Region(main + skip, uy, ux)
