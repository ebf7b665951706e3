"""Tensor and reverse-mode automatic differentiation.

A ``Tensor`` wraps an array (``.data``) and, when it was produced by an op while gradients
are being recorded, points to a ``Node`` (PyTorch's ``grad_fn``): the op's ``backward`` closure
and the nodes of its inputs. Calling ``y.backward(g)`` walks the graph from ``y`` in reverse
topological order: every node's closure receives dL/d(its result) and returns dL/d(input) for
each input (the vector-Jacobian product). Gradients that meet at a node are summed (the
multivariate chain rule); leaves that ``requires_grad`` accumulate theirs in ``.grad`` across
calls, exactly as in PyTorch.

The graph is made of nodes, not of tensors: a node keeps only its result's shape and dtype, so
an intermediate array lives only as long as the caller or a backward closure holds it. Each op
saves what its own backward needs (a conv its input, a ReLU its output), so the conv output
under a ReLU is freed during the forward pass, as in PyTorch.

Every op lives in ``minivis.functional`` with its backward written right next to its forward;
this module knows nothing about any particular op. The arithmetic dunder methods below only
forward to ``minivis.functional.math``.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from minivis import backend

BackwardFn = Callable[[Any], Sequence[Any]]

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph (False inside ``no_grad()``)."""
    return getattr(_state, "grad_enabled", True)


@contextmanager
def no_grad() -> Iterator[None]:
    """Run ops without recording the graph: saves memory and time for inference."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextmanager
def enable_grad() -> Iterator[None]:
    """Record the graph again inside a ``no_grad()`` block."""
    previous = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_lean() -> bool:
    """Whether ops record a lean graph (inside ``lean_graph()``)."""
    return getattr(_state, "lean", False)


@contextmanager
def lean_graph() -> Iterator[None]:
    """Record graphs whose backward pass will use only the gradient and the ReLU rules.

    By default an op saves everything any backward rule could read, since the rule is chosen when
    ``backward()`` runs: LRP needs every layer's input. Inside this block an op saves only what the
    gradient, guided backprop and DeconvNet need: a convolution keeps its input only if its weights
    want a gradient, a max-pool only its switches, a rectifier one byte per value saying where it
    was linear, an eval batch norm nothing but its scale. The intermediate arrays are then freed
    as the forward pass goes (VGG16's SmoothGrad at batch 8: benchmarks/README.md, "Attribution,
    CPU"). Backpropagating LRP or DeepLIFT's rescale rule through such a graph is an error.
    """
    previous = is_lean()
    _state.lean = True
    try:
        yield
    finally:
        _state.lean = previous


def lean_error(op: str, what: str) -> RuntimeError:
    """The error of an op whose backward needs an array that a lean graph did not save."""
    return RuntimeError(f"{op}: {what} needs the forward pass's arrays, which a graph recorded inside "
                        f"lean_graph() does not keep; record the forward pass outside it")


def _math():
    # Imported lazily: functional.math imports this module, so a top-level import would cycle.
    from minivis.functional import math  # noqa: PLC0415

    return math


class Node:
    """One recorded op (PyTorch's ``grad_fn``): its backward closure and what it was applied to.

    ``inputs``: per input of the op, the input's ``Node`` if it was computed, the ``Tensor`` itself
    if it is a leaf that requires gradients, else None. ``shape``/``dtype``: the result's, to
    check the gradients the backward pass hands back. ``tensor``: a weak reference to the result,
    so that ``retain_grad()`` can store its gradient while the graph never keeps it alive.
    """

    __slots__ = ("backward", "inputs", "op", "shape", "dtype", "tensor")

    def __init__(self, backward: BackwardFn, inputs: tuple[Any, ...], op: str, result: Tensor) -> None:
        self.backward, self.inputs, self.op = backward, inputs, op
        self.shape, self.dtype = tuple(result.data.shape), result.data.dtype
        self.tensor = weakref.ref(result)

    def __repr__(self) -> str:
        return f"<{self.op} backward>"


def graph_input(t: Tensor) -> Any:
    """How a node refers to one of its op's inputs: its node, the leaf itself, or None (no gradient)."""
    if not t.requires_grad:
        return None
    return t if t._node is None else t._node


def _own(g: Any) -> Any:
    """A leaf's first gradient: ``g`` itself where nothing else can see it, else a copy.

    A gradient array may also be another leaf's (``a + b`` sends one array to both), the caller's
    (``y.backward(g)``) or a view into a reused buffer (``cpu_workspace``); the leaf must not share
    it, or an in-place change to one ``.grad`` would change the other. A fresh NumPy array that owns
    its data and is referenced only here (the caller's name, this argument, ``getrefcount``'s) is
    taken as it is, as PyTorch's gradient accumulation does: copying a photo batch's input
    gradient cost ~10% of a convolution's backward pass (benchmarks/README.md, "Convolution planning").
    """
    if isinstance(g, np.ndarray) and g.base is None and sys.getrefcount(g) <= 3:
        return g
    return g.copy()


class Tensor:
    """An array plus what is needed to differentiate through the ops that made it.

    Attributes:
        data: the values, a numpy (CPU) or cupy (GPU) array.
        grad: dL/d(self) after ``backward()``: an array shaped like ``data``, or None.
        requires_grad: whether gradients flow to (and accumulate in) this tensor.
    """

    __array_priority__ = 1000  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data = backend.as_float_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node: Node | None = None
        self._op = ""
        self._retains_grad = False

    # ----------------------------------------------------------------- graph building
    @classmethod
    def from_op(cls, data: Any, parents: Sequence[Tensor], backward: BackwardFn, op: str) -> Tensor:
        """The result of an op: records ``backward`` when a parent needs gradients.

        ``backward(g)`` must return one entry per parent: an array shaped like that parent,
        or None where no gradient is needed.
        """
        out = cls.__new__(cls)
        out.data = data
        out.grad = None
        out._op = op
        out._retains_grad = False
        if is_grad_enabled() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._node = Node(backward, tuple(graph_input(p) for p in parents), op, out)
        else:
            out.requires_grad = False
            out._node = None
        return out

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        """The node that computed this tensor (None for a leaf), as PyTorch's ``grad_fn``."""
        return self._node

    def retain_grad(self) -> Tensor:
        """Keep this intermediate tensor's gradient in ``.grad`` (leaves always keep theirs)."""
        self._retains_grad = True
        return self

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Backpropagate ``grad`` (dL/d self) to every leaf that requires gradients.

        ``grad`` may be omitted only for a one-element tensor (it is then 1). It can be
        called on any tensor in the graph, which starts the backward pass at that layer with
        a gradient of your choice (DeepDream and DeconvNet do this). The graph is freed
        afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad (no input had requires_grad=True, "
                "or it was computed inside no_grad())"
            )
        xp = backend.xp(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: grad can be omitted only for a one-element tensor; "
                    f"this one has shape {self.shape}"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            grad = backend.to_device(backend.as_float_array(grad, self.data.dtype, "grad"), self.device)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: grad must have shape {self.shape}, got {tuple(grad.shape)}")

        root = self if self._node is None else self._node
        grads: dict[int, Any] = {id(root): grad}
        order = _topological_order(root)
        for i, item in enumerate(order):
            order[i] = None  # drop our reference so a freed node's arrays can go as soon as it is done
            g = grads.pop(id(item), None)
            if g is None:
                continue
            if isinstance(item, Tensor):  # a leaf: accumulate
                item.grad = _own(g) if item.grad is None else item.grad + g
                continue
            result = item.tensor()
            if result is not None and result._retains_grad:
                result.grad = g.copy() if result.grad is None else result.grad + g
            input_grads = item.backward(g)
            if len(input_grads) != len(item.inputs):
                raise RuntimeError(f"{item.op}: backward returned {len(input_grads)} grads "
                                   f"for {len(item.inputs)} inputs")
            for source, pg in zip(item.inputs, input_grads, strict=True):
                if pg is None or source is None:
                    continue
                if pg.shape != source.shape:
                    raise RuntimeError(f"{item.op}: backward produced a gradient of shape "
                                       f"{tuple(pg.shape)} for an input of shape {source.shape}")
                if pg.dtype != source.dtype:  # mixed float32/float64 ops: as in PyTorch, a
                    pg = pg.astype(source.dtype)  # gradient always has its input's dtype
                key = id(source)
                grads[key] = pg if key not in grads else grads[key] + pg
            input_grads = pg = None  # ``grads`` holds them now, and only it: a leaf may take its array (``_own``)
            if not retain_graph:
                item.backward = _freed_backward(item.op)
                item.inputs = ()  # release the inputs too: peak memory stays near the forward's

    # ----------------------------------------------------------------- array-like basics
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        """The rows ``self[0], self[1], ...``, as NumPy iterates. Spelled out because ``getitem``
        reports an index past the end as a ValueError, not the IndexError that would end Python's
        fallback iteration over ``__getitem__``."""
        if self.ndim == 0:
            raise TypeError("iter: a 0-d tensor has no rows to iterate over")
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        grad = f", op={self._op}" if self._op else (", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({np.array2string(self.numpy(), precision=4, threshold=20)}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU if needed; no graph)."""
        return backend.to_device(self.data, "cpu")

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a number, shape is {self.shape}")
        return float(self.data.reshape(-1)[0])

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor.from_op(self.data, (), lambda g: (), "detach")

    def to(self, device: str) -> Tensor:
        """A copy on ``device`` ("cpu" or "gpu"); differentiable (the gradient moves back)."""
        if backend.check_device(device) == self.device:
            return self
        source = self.device
        return Tensor.from_op(backend.to_device(self.data, device), (self,),
                              lambda g: (backend.to_device(g, source),), "to")

    def zero_grad(self) -> None:
        self.grad = None

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad")
        self.requires_grad = bool(flag)
        return self

    # ----------------------------------------------------------------- math (see functional/math.py)
    def __add__(self, other: Any) -> Tensor:
        return _math().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _math().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _math().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _math().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _math().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _math().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _math().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _math().div(other, self)

    def __neg__(self) -> Tensor:
        return _math().neg(self)

    def __pow__(self, exponent: float) -> Tensor:
        return _math().pow(self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        return _math().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _math().matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return _math().getitem(self, index)

    def exp(self) -> Tensor:
        return _math().exp(self)

    def log(self) -> Tensor:
        return _math().log(self)

    def sqrt(self) -> Tensor:
        return _math().sqrt(self)

    def abs(self) -> Tensor:
        return _math().abs(self)

    def clip(self, low: float | None = None, high: float | None = None) -> Tensor:
        return _math().clip(self, low, high)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _math().sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _math().mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _math().max(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return _math().reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def transpose(self, *axes: Any) -> Tensor:
        return _math().transpose(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _math().flatten(self, start_dim, end_dim)

    @property
    def T(self) -> Tensor:  # noqa: N802 (NumPy's name)
        return _math().transpose(self, None)


def _topological_order(root: Any) -> list[Any]:
    """The nodes and leaves reachable from ``root``, each after every node that consumes it (iterative DFS)."""
    order: list[Any] = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        item, expanded = stack.pop()
        if expanded:
            order.append(item)
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        stack.append((item, True))
        if isinstance(item, Node):
            for source in item.inputs:
                if source is not None and id(source) not in visited:
                    stack.append((source, False))
    order.reverse()
    return order


def _freed_backward(op: str) -> BackwardFn:
    def backward(g: Any) -> Sequence[Any]:
        raise RuntimeError(
            f"backward through {op!r} a second time: the graph was freed by the first backward(); "
            "pass retain_graph=True to the first call if you need to backpropagate twice"
        )

    return backward


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str = "cpu") -> Tensor:
    """Make a tensor from an array, a number or a nested list.

    ``dtype`` is float32 or float64; ``None`` keeps float32/float64 arrays as they are and turns
    anything else (ints, bools, Python numbers and lists) into float32. ``device`` is ``"cpu"`` or ``"gpu"``.
    The data is always copied (as ``torch.tensor``), so later in-place edits of either side stay apart.
    """
    if isinstance(data, Tensor):
        data = data.data
    source = data
    array = backend.to_device(backend.as_float_array(data, dtype), backend.check_device(device))
    if array is source or backend.xp(array).shares_memory(array, source):
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(value: Any, like: Tensor | None = None, name: str = "data") -> Tensor:
    """``value`` itself if it is a Tensor, else a constant tensor (dtype and device of ``like``).

    ``name`` heads the error for a value that is not numeric data: an op passes its own name and
    the argument's (``"add: b"``), so the message points at the call, not at this converter."""
    if isinstance(value, Tensor):
        return value
    if like is None:
        return Tensor(backend.as_float_array(value, None, name))
    array = backend.as_float_array(value, like.dtype, name) if not backend.is_gpu_array(value) else value
    return Tensor(backend.to_device(array, like.device), dtype=like.dtype)
