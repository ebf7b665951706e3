"""Differentiable tensor arithmetic: elementwise math, reductions, shape ops, matmul.

Each op computes its forward on the arrays and hands ``Tensor.from_op`` a closure that maps
the upstream gradient ``g`` to one gradient per input. Binary elementwise ops broadcast like
NumPy; their backward sums ``g`` back over the broadcast axes (``unbroadcast``).
"""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, as_tensor
from minivis.functional import lrp
from minivis.rules import current_lrp
from minivis.validate import check_bool, check_float, check_int, check_tensor


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it has ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _is_int(value: Any) -> bool:
    """An int for an axis or a dim: Python or NumPy, but not a bool (``True`` is no axis)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _pair(a: Any, b: Any, op: str, elementwise: bool = True) -> tuple[Tensor, Tensor]:
    """Both operands as tensors (the non-Tensor one takes the other's dtype and device); a bad
    operand's error names the op and the operand (``add: b: ...``), not the converter inside."""
    if isinstance(a, Tensor):
        b = as_tensor(b, like=a, name=f"{op}: b")
    elif isinstance(b, Tensor):
        a = as_tensor(a, like=b, name=f"{op}: a")
    else:
        raise TypeError(f"{op}: expected at least one Tensor operand, got {type(a).__name__} and {type(b).__name__}")
    if elementwise and a.shape != b.shape:
        try:  # checked here so that NumPy's "operands could not be broadcast" does not surface unnamed
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b


# ----------------------------------------------------------------------------- elementwise
def add(a: Any, b: Any) -> Tensor:
    """a + b (broadcasting). Under LRP, a sum of two same-shaped tensors (a residual connection)
    shares relevance in proportion to each term (``lrp.sum_relevance``)."""
    a, b = _pair(a, b, "add")
    out = a.data + b.data

    def backward(g):
        rules = current_lrp()
        if rules is not None and a.shape == b.shape:
            rule = rules.rule_for("add")
            if rule.name != "gradient":
                return lrp.sum_relevance(rule, g, a.data, b.data, out)
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)

    return Tensor.from_op(out, (a, b), backward, "add")


def sub(a: Any, b: Any) -> Tensor:
    a, b = _pair(a, b, "sub")
    return Tensor.from_op(a.data - b.data, (a, b),
                          lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)), "sub")


def mul(a: Any, b: Any) -> Tensor:
    a, b = _pair(a, b, "mul")

    def backward(g):
        return (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                unbroadcast(g * a.data, b.shape) if b.requires_grad else None)

    return Tensor.from_op(a.data * b.data, (a, b), backward, "mul")


def div(a: Any, b: Any) -> Tensor:
    a, b = _pair(a, b, "div")
    out = a.data / b.data

    def backward(g):
        return (unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None)

    return Tensor.from_op(out, (a, b), backward, "div")


def neg(x: Tensor) -> Tensor:
    x = check_tensor(x, "neg")
    return Tensor.from_op(-x.data, (x,), lambda g: (-g,), "neg")


def pow(x: Tensor, exponent: float) -> Tensor:  # noqa: A001 (mirrors torch.pow)
    """x ** exponent for a constant (Python number) exponent."""
    x = check_tensor(x, "pow")
    exponent = check_float(exponent, "pow", "exponent")
    return Tensor.from_op(x.data ** exponent, (x,),
                          lambda g: (g * exponent * x.data ** (exponent - 1),), "pow")


def exp(x: Tensor) -> Tensor:
    x = check_tensor(x, "exp")
    out = backend.xp(x.data).exp(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * out,), "exp")


def log(x: Tensor) -> Tensor:
    x = check_tensor(x, "log")
    return Tensor.from_op(backend.xp(x.data).log(x.data), (x,), lambda g: (g / x.data,), "log")


def sqrt(x: Tensor) -> Tensor:
    x = check_tensor(x, "sqrt")
    out = backend.xp(x.data).sqrt(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * 0.5 / out,), "sqrt")


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """|x|; the gradient at exactly 0 is 0 (the sign function), as in PyTorch."""
    x = check_tensor(x, "abs")
    xp = backend.xp(x.data)
    return Tensor.from_op(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


def clip(x: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """Clamp to [low, high]; the gradient passes where low <= x <= high (PyTorch's clamp)."""
    x = check_tensor(x, "clip")
    if low is None and high is None:
        raise ValueError("clip: give at least one of low and high")
    for name, bound in (("low", low), ("high", high)):  # +-inf are bounds too; NaN would clip everything to NaN
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float | np.integer
                                                                              | np.floating) or bound != bound):
            raise TypeError(f"clip: {name} must be a number or None, got {bound!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: low must be <= high, got low={low}, high={high}")
    xp = backend.xp(x.data)
    out = xp.clip(x.data, low, high)
    inside = xp.ones(x.shape, dtype=bool)
    if low is not None:
        inside &= x.data >= low
    if high is not None:
        inside &= x.data <= high
    return Tensor.from_op(out, (x,), lambda g: (g * inside,), "clip")


# ----------------------------------------------------------------------------- reductions
def _axes(axis: Any, ndim: int, op: str, name: str = "axis") -> tuple[int, ...]:
    """``axis`` (None for all, an int or a tuple/list of ints) as sorted axes in 0..ndim-1."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if _is_int(axis) else axis
    if not isinstance(axes, tuple | list) or not all(_is_int(a) for a in axes):
        raise TypeError(f"{op}: {name} must be an int, a tuple of ints or None, got {axis!r}")
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: {name} {a} is out of range for a tensor with {ndim} dims")
    axes = tuple(sorted(a % ndim for a in axes))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: {name} names an axis twice, got {axis!r}")
    return axes


def _expand(g: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Broadcast a reduced gradient back to the input's shape."""
    xp = backend.xp(g)
    if not keepdims:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return xp.broadcast_to(g, shape)


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    x = check_tensor(x, "sum")
    axes = _axes(axis, x.ndim, "sum")
    keepdims = check_bool(keepdims, "sum", "keepdims")
    out = x.data.sum(axis=axes, keepdims=keepdims)
    return Tensor.from_op(out, (x,), lambda g: (_expand(g, x.shape, axes, keepdims).copy(),), "sum")


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    x = check_tensor(x, "mean")
    axes = _axes(axis, x.ndim, "mean")
    keepdims = check_bool(keepdims, "mean", "keepdims")
    count = int(np.prod([x.shape[a] for a in axes]))
    if count == 0:  # NumPy would return NaN with a warning
        raise ValueError(f"mean: no values to average over axes {axes} of a tensor of shape {x.shape}")
    out = x.data.mean(axis=axes, keepdims=keepdims)
    return Tensor.from_op(out, (x,), lambda g: (_expand(g / count, x.shape, axes, keepdims).copy(),), "mean")


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; ties share the gradient equally (like ``torch.amax``)."""
    x = check_tensor(x, "max")
    axes = _axes(axis, x.ndim, "max")
    keepdims = check_bool(keepdims, "max", "keepdims")
    if x.size == 0:
        raise ValueError("max: the tensor is empty")
    out = x.data.max(axis=axes, keepdims=True)

    def backward(g):
        hit = x.data == out
        g = _expand(g, x.shape, axes, keepdims)
        ties = hit.sum(axis=axes, keepdims=True).astype(x.dtype)  # an int count would promote to float64
        return (g * hit / ties,)

    return Tensor.from_op(out if keepdims else out.reshape([n for i, n in enumerate(x.shape) if i not in axes]),
                          (x,), backward, "max")


# ----------------------------------------------------------------------------- shape
def reshape(x: Tensor, shape: Any) -> Tensor:
    x = check_tensor(x, "reshape")
    shape = (shape,) if _is_int(shape) else shape
    if not isinstance(shape, tuple | list) or not all(_is_int(n) for n in shape):
        raise TypeError(f"reshape: shape must be an int or a tuple of ints, got {shape!r}")
    shape = tuple(shape)
    try:
        out = x.data.reshape(shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {shape}") from err
    return Tensor.from_op(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one (``torch.flatten``)."""
    x = check_tensor(x, "flatten")
    start = _axes(check_int(start_dim, "flatten", "start_dim"), x.ndim, "flatten", "start_dim")[0]
    end = _axes(check_int(end_dim, "flatten", "end_dim"), x.ndim, "flatten", "end_dim")[0]
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
    merged = int(np.prod(x.shape[start:end + 1]))  # not -1: an empty dim elsewhere would leave it undefined
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


def transpose(x: Tensor, axes: Any = None) -> Tensor:
    """Permute the axes (reverse them when ``axes`` is None), like ``np.transpose``."""
    x = check_tensor(x, "transpose")
    axes = (axes,) if _is_int(axes) else axes
    if axes is not None and not (isinstance(axes, tuple | list) and all(_is_int(a) for a in axes)):
        raise TypeError(f"transpose: axes must be None or a tuple of ints, got {axes!r}")
    axes = tuple(range(x.ndim))[::-1] if not axes else tuple(axes)
    if sorted(a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes must be a permutation of 0..{x.ndim - 1}, got {axes}")
    axes = tuple(a % x.ndim for a in axes)
    inverse = tuple(np.argsort(axes))
    return Tensor.from_op(x.data.transpose(axes), (x,), lambda g: (g.transpose(inverse),), "transpose")


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` with NumPy indexing; repeated fancy indices accumulate in the backward."""
    x = check_tensor(x, "getitem")
    if isinstance(index, Tensor):
        raise TypeError("getitem: index with an integer array, not a Tensor")
    try:
        out = x.data[index]
    except (IndexError, OverflowError, ValueError) as err:  # NumPy's words, with the op and the shape
        raise ValueError(f"getitem: index {reprlib.repr(index)} does not fit a tensor of shape {x.shape}: "
                         f"{err}") from err
    except TypeError as err:
        raise TypeError(f"getitem: index {reprlib.repr(index)} is not an index: {err}") from err
    xp = backend.xp(x.data)

    def backward(g):
        grad = xp.zeros_like(x.data)
        if xp is np:
            np.add.at(grad, index, g)
        else:
            xp.add.at(grad, index, g)
        return (grad,)

    return Tensor.from_op(out, (x,), backward, "getitem")


def concat(tensors: list[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along ``axis`` (``torch.cat``)."""
    if not isinstance(tensors, list | tuple):
        raise TypeError(f"concat: tensors must be a list of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError("concat: expected a non-empty list of tensors")
    like = tensors[0] if isinstance(tensors[0], Tensor) else None
    tensors = [as_tensor(t, like=like, name=f"concat: tensors[{i}]") for i, t in enumerate(tensors)]
    xp = backend.xp(tensors[0].data)
    axis = _axes(check_int(axis, "concat", "axis"), tensors[0].ndim, "concat")[0]
    try:
        out = xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as err:
        raise ValueError(f"concat: shapes {[t.shape for t in tensors]} do not match off axis {axis}") from err
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return Tensor.from_op(out, tuple(tensors), lambda g: tuple(xp.split(g, bounds, axis=axis)), "concat")


# ----------------------------------------------------------------------------- matmul
def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy's rules (batched, broadcast over leading dims)."""
    a, b = _pair(a, b, "matmul", elementwise=False)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands need at least 1 dim")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: inner dims differ: {a.shape} @ {b.shape}")
    xp = backend.xp(a.data)
    try:
        out = xp.matmul(a.data, b.data)
    except ValueError as err:
        raise ValueError(f"matmul: batch dims do not broadcast: {a.shape} @ {b.shape}") from err

    def backward(g):
        # Promote 1-d operands to matrices so the two products below are plain GEMMs.
        am = a.data[None, :] if a.ndim == 1 else a.data
        bm = b.data[:, None] if b.ndim == 1 else b.data
        # g lacks the dims that the 1-d operands dropped (both, for vector @ vector: g is 0-d).
        gm = g.reshape(np.broadcast_shapes(am.shape[:-2], bm.shape[:-2]) + (am.shape[-2], bm.shape[-1]))
        ga = gb = None
        if a.requires_grad:
            ga = unbroadcast(xp.matmul(gm, xp.swapaxes(bm, -1, -2)), am.shape).reshape(a.shape)
        if b.requires_grad:
            gb = unbroadcast(xp.matmul(xp.swapaxes(am, -1, -2), gm), bm.shape).reshape(b.shape)
        return ga, gb

    return Tensor.from_op(out, (a, b), backward, "matmul")
