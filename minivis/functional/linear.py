"""The fully connected (affine) layer: ``y = x W^T + b``.

Shapes: x (..., in), weight (out, in), bias (out,) -> y (..., out). One GEMM forward and two
GEMMs backward (on the CPU through ``cpu_threads.matmul``: single-threaded BLAS on each of our
threads, a single row on BLAS's own; see there why; on the GPU ``cupy.matmul``):

    dL/dx = g W            (..., out) @ (out, in)
    dL/dW = g^T x          summed over every leading axis of x: (out, N) @ (N, in)
    dL/db = sum of g over the leading axes

Batch invariance holds here only to rounding, unlike the convolutions (``kernels/conv_plan.py``,
whose per-image products keep one shape whatever the batch): the product is one GEMM over the
whole batch, and BLAS picks its kernel by the product's height (one row goes down its GEMV
path), so a row's last bits can change with the batch size. A fixed-height product (every row
in a padded block of 8) would make it exact, at about twice the cost of a batch-1 classifier,
which is why it is not done (benchmarks/README.md, "Design measurements", linear).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.functional import lrp
from minivis.kernels import cpu_threads
from minivis.rules import current_lrp
from minivis.validate import check_same_device, check_tensor


def _matmul(a: Any, b: Any) -> Any:
    """a @ b for 2-D arrays on a's device."""
    return cpu_threads.matmul(a, b) if isinstance(a, np.ndarray) else backend.xp(a).matmul(a, b)


def linear(x: Any, weight: Any, bias: Any = None) -> Tensor:
    """x @ weight.T + bias (``torch.nn.functional.linear``).

    x: (..., in) (usually (N, in)); weight: (out, in); bias: (out,) or None. Returns (..., out).
    """
    op = "linear"
    x = check_tensor(x, op, "input")
    weight = check_tensor(weight, op, "weight")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dim (..., in_features), got a 0-d tensor")
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features:
        raise ValueError(f"{op}: input has {x.shape[-1]} features in its last dim but weight "
                         f"{weight.shape} expects {in_features} (input shape {x.shape})")
    if bias is not None:
        bias = check_tensor(bias, op, "bias")
        if bias.shape != (out_features,):
            raise ValueError(f"{op}: bias must have shape ({out_features},) to match weight {weight.shape}, "
                             f"got shape {bias.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} dtype {t.dtype} differs from input dtype {x.dtype}; "
                            f"convert one of them")
    check_same_device(op, x, weight, bias)

    # Flatten the leading axes: every product is one 2-D GEMM.
    x2 = x.data.reshape(-1, in_features)
    out = _matmul(x2, weight.data.T).reshape(x.shape[:-1] + (out_features,))
    if bias is not None:
        out += bias.data

    def backward(g):
        rules = current_lrp()
        if rules is not None:  # relevance, not a gradient: the layer's rule (functional/lrp.py) shares it out
            rule = rules.rule_for("linear", weight)
            if rule.name != "gradient":
                relevance = lrp.affine_relevance(
                    rule, g.reshape(-1, out_features), x2, weight.data, None if bias is None else bias.data,
                    lambda: _matmul(x2, weight.data.T) + (0 if bias is None else bias.data),  # z, not kept
                    lambda a, w, b: _matmul(a, w.T) + (0 if b is None else b),
                    _matmul).reshape(x.shape)
                return (relevance, None) if bias is None else (relevance, None, None)
        g2 = g.reshape(-1, out_features)
        gx = _matmul(g2, weight.data).reshape(x.shape) if x.requires_grad else None
        gw = _matmul(g2.T, x2) if weight.requires_grad else None
        if bias is None:
            return gx, gw
        return gx, gw, (g2.sum(axis=0) if bias.requires_grad else None)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, op)
