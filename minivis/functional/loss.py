"""Softmax, log-softmax and the two losses used to train and probe the models.

    softmax(x)_i     = exp(x_i - m) / sum_j exp(x_j - m)        (m = max_j x_j: nothing overflows)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
    cross_entropy    = -log_softmax(logits)[n, target[n]],  d/dlogits = softmax - one_hot(target)
    mse_loss         = (input - target)^2,                  d/dinput  = 2 (input - target)

Each loss is reduced by ``reduction``: "mean" (over every element), "sum", or "none".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.validate import check_same_device, check_str, check_tensor

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: Any, op: str) -> str:
    if check_str(reduction, op, "reduction", REDUCTIONS) not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _check_axis(axis: Any, x: Tensor, op: str) -> int:
    if not isinstance(axis, int | np.integer) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for an input of shape {x.shape}")
    if x.shape[axis] == 0:  # no values to normalise over (NumPy's max would fail without the op's name)
        raise ValueError(f"{op}: axis {axis} of the input {x.shape} is empty")
    return int(axis) % x.ndim


def _log_softmax(a: Any, axis: int) -> Any:
    xp = backend.xp(a)
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _reduce(values: Any, reduction: str) -> Any:
    """Reduce per-element losses; mean and sum give a 0-d array of the same dtype."""
    if reduction == "none":
        return values
    total = values.sum() if reduction == "sum" else values.mean()
    return backend.xp(values).asarray(total, dtype=values.dtype)


def softmax(x: Any, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (any shape); d/dx: y * (g - sum(g * y, axis))."""
    x = check_tensor(x, "softmax")
    axis = _check_axis(axis, x, "softmax")
    out = backend.xp(x.data).exp(_log_softmax(x.data, axis))
    return Tensor.from_op(out, (x,), lambda g: (out * (g - (g * out).sum(axis=axis, keepdims=True)),),
                          "softmax")


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis`` without overflow; d/dx: g - softmax(x) * sum(g, axis)."""
    x = check_tensor(x, "log_softmax")
    axis = _check_axis(axis, x, "log_softmax")
    xp = backend.xp(x.data)
    out = _log_softmax(x.data, axis)
    return Tensor.from_op(out, (x,), lambda g: (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),),
                          "log_softmax")


def _class_indices(target: Any, op: str, batch: int, classes: int, device: str) -> Any:
    """``target`` as an integer array (N,) on ``device``, each entry checked to be in [0, classes)."""
    if isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be an integer array of class indices (N,), got a float Tensor; "
                        f"pass an int array such as numpy.array([3, 1, ...])")
    host = backend.to_device(target, "cpu") if backend.is_gpu_array(target) else np.asarray(target)
    if host.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {host.dtype}")
    if host.shape != (batch,):
        raise ValueError(f"{op}: target must have shape ({batch},), one class index per row of logits, "
                         f"got shape {host.shape}")
    bad = host[(host < 0) | (host >= classes)]
    if bad.size:
        raise ValueError(f"{op}: target class indices must be in [0, {classes}), got {int(bad[0])}")
    return backend.to_device(host.astype(np.int64), device)


def cross_entropy(logits: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, K) against integer class indices target (N,).

    loss[n] = -log softmax(logits[n])[target[n]]; "mean" averages over the N rows. The gradient
    w.r.t. logits is (softmax - one_hot(target)) times the upstream gradient of each row.
    """
    op = "cross_entropy"
    logits = check_tensor(logits, op, "logits")
    if logits.ndim != 2:
        raise ValueError(f"{op}: logits must be 2-D (N, classes), got shape {logits.shape}")
    reduction = _check_reduction(reduction, op)
    batch, classes = logits.shape
    if batch == 0:
        raise ValueError(f"{op}: logits must have at least one row, got shape {logits.shape}")
    index = _class_indices(target, op, batch, classes, logits.device)
    xp = backend.xp(logits.data)
    log_probs = _log_softmax(logits.data, 1)
    rows = xp.arange(batch)
    out = _reduce(-log_probs[rows, index], reduction)

    def backward(g):
        grad = xp.exp(log_probs)
        grad[rows, index] -= 1
        # g is one number for mean/sum and one per row for "none"; mean divides by N.
        scale = g[:, None] if reduction == "none" else g / batch if reduction == "mean" else g
        return (grad * scale,)

    return Tensor.from_op(out, (logits,), backward, op)


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002 (torch's name)
    """Squared error (input - target)^2 reduced by ``reduction``; input and target share a shape.

    ``target`` may be a Tensor (and then receives the opposite gradient) or an array.
    """
    op = "mse_loss"
    input = check_tensor(input, op, "input")  # noqa: A001
    reduction = _check_reduction(reduction, op)
    if isinstance(target, Tensor):
        if target.dtype != input.dtype:
            raise TypeError(f"{op}: target dtype {target.dtype} differs from input dtype {input.dtype}")
    else:  # a constant array: take the input's dtype
        target = Tensor(check_tensor(target, op, "target").data.astype(input.dtype, copy=False))
    if target.shape != input.shape:
        raise ValueError(f"{op}: target must have the input's shape {input.shape}, got shape {target.shape}")
    check_same_device(op, input, target)
    diff = input.data - target.data
    out = _reduce(diff * diff, reduction)
    count = diff.size

    def backward(g):
        grad = 2 * diff * (g / count if reduction == "mean" else g)
        return (grad if input.requires_grad else None, -grad if target.requires_grad else None)

    return Tensor.from_op(out, (input, target), backward, op)
