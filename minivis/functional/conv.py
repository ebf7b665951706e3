"""2-D convolution and transposed convolution, forward and backward on one page.

A convolution with weight ``w: (C_out, C_in/G, kh, kw)`` maps ``x: (N, C_in, H, W)`` to
``y: (N, C_out, Ho, Wo)``:

    y[n, co, oh, ow] = b[co] + sum_{c, i, j} w[co, c, i, j] * x_pad[n, g*C_in/G + c, oh*sh + i*dh, ow*sw + j*dw]

with ``g = co // (C_out/G)`` the group of ``co``. It is linear in ``x`` and in ``w``, so its
backward is two more linear maps:

* ``conv2d_backward_input``: the *adjoint* (transpose) of ``x -> conv2d(x)``. Each output pixel
  sends ``g * w`` back onto the input window it read.
* ``conv2d_backward_weight``: each weight tap collects ``g * x`` over all images and output pixels.

With ``cols = im2col(x)`` viewed as ``(N, G, K, L)`` (``K = C_in/G*kh*kw`` rows, ``L = Ho*Wo``
output pixels) and ``W = w`` viewed as ``(G, C_out/G, K)``, all three are matrix products, which
the reference path below computes literally:

    forward            y  = W @ cols                 (reference_conv2d_forward)
    backward-input     dx = col2im(W^T @ g)          (reference_conv2d_backward_input)
    backward-weight    dw = sum_n g[n] @ cols[n]^T   (reference_conv2d_backward_weight)

The engine computes the same numbers faster (the same products in cache-sized tiles, direct
depthwise kernels, Winograd F(2x2, 3x3) for stride-1 3x3 layers, fused per block of tiles for
32-128 channels, and a register-blocked direct kernel for most other layers' forward pass on the
CPU); how, and the rule that picks, is ``minivis/kernels/conv_plan.py``. ``conv_algorithm(name)``
overrides the rule: ``"auto"`` (the default), ``"im2col"`` (never Winograd nor the direct
kernels), ``"winograd"`` (wherever it applies), ``"winograd_fused"`` (the same, its forward pass
and input gradient fused), ``"direct"`` (the direct kernels for every ungrouped CPU layer) or
``"reference"`` (the path on this page).

A transposed convolution is, by definition, the adjoint of a convolution, so
``conv_transpose2d`` needs no kernels of its own: its forward IS ``conv2d_backward_input``, its
input-gradient IS ``conv2d_forward`` and its weight-gradient is ``conv2d_backward_weight`` with
the roles of input and output swapped.

Padding ``pad4`` is ``(top, bottom, left, right)``; ``padding="same"`` follows TensorFlow's SAME
(also for stride > 1): ``total = max((ceil(H/s) - 1)*s + d*(k-1) + 1 - H, 0)``, ``top = total//2``
and the odd pixel at the bottom/right.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, is_lean, lean_error
from minivis.backend import FLOAT_DTYPES
from minivis.functional import lrp
from minivis.kernels import conv_plan
from minivis.kernels.conv_plan import reuse_weight_transforms, shared_winograd_gemms  # noqa: F401 (re-exported for the vis methods)
from minivis.rules import current_lrp
from minivis.validate import check_array_size, check_same_device, check_tensor, int_pair, padding4

Pair = tuple[int, int]
Pad4 = tuple[int, int, int, int]

# ----------------------------------------------------------------------------- the algorithm switch
_ALGORITHM: contextvars.ContextVar[str] = contextvars.ContextVar("minivis_conv_algorithm", default="auto")


def conv_algorithm(name: str) -> Any:
    """``with mv.conv_algorithm(name):`` runs every conv2d / conv_transpose2d (forward and backward)
    in the block with one algorithm: ``"auto"`` (the default rule), ``"im2col"`` (GEMM tiles, never
    Winograd), ``"winograd"`` (Winograd F(2x2, 3x3) wherever it applies: CPU, stride-1 3x3,
    ungrouped, undilated, however small; elsewhere the auto choice), ``"winograd_fused"`` (the same,
    with transforms and products fused per block of tiles for the forward pass and input gradient),
    ``"direct"`` (sliding-window kernels without an im2col matrix, ungrouped CPU layers) or
    ``"reference"`` (the plain ``W @ im2col(x)`` path of this page). All give the same result up to
    rounding.
    """
    if not isinstance(name, str) or name not in conv_plan.ALGORITHMS:
        raise ValueError(f"conv_algorithm: name must be one of {', '.join(map(repr, conv_plan.ALGORITHMS))}, "
                         f"got {name!r}")
    return _algorithm_block(name)


@contextmanager
def _algorithm_block(name: str) -> Iterator[None]:
    token = _ALGORITHM.set(name)
    try:
        yield
    finally:
        _ALGORITHM.reset(token)


# ----------------------------------------------------------------------------- the reference path
def reference_conv2d_forward(x: Any, w: Any, stride: Pair, pad4: Pad4, dilation: Pair, groups: int) -> Any:
    """y[n] = W @ im2col(x)[n] per group, the whole batch in one product: (N, C_in, H, W) -> (N, C_out, Ho, Wo)."""
    kernels, xp = backend.kernels("conv", x, "conv2d"), backend.xp(x)
    (n, c_in), (c_out, _, kh, kw) = x.shape[:2], w.shape
    ho, wo = conv_plan.output_hw(x.shape[2:], (kh, kw), stride, pad4, dilation)
    cols = kernels.im2col(x, kh, kw, stride, pad4, dilation, (ho, wo))  # (N, C_in*kh*kw, Ho*Wo)
    y = xp.matmul(w.reshape(groups, c_out // groups, -1), cols.reshape(n, groups, c_in // groups * kh * kw, ho * wo))
    return y.reshape(n, c_out, ho, wo)


def reference_conv2d_backward_input(g: Any, w: Any, x_shape: tuple[int, ...], stride: Pair, pad4: Pad4,
                                    dilation: Pair, groups: int) -> Any:
    """dx = col2im(W^T @ g): each output pixel's gradient goes back through the taps it read."""
    kernels, xp = backend.kernels("conv", g, "conv2d"), backend.xp(g)
    (n, c_out, ho, wo), (kh, kw) = g.shape, w.shape[2:]
    w_t = w.reshape(groups, c_out // groups, -1).transpose(0, 2, 1)  # (G, K, C_out/G)
    dcols = xp.matmul(w_t, g.reshape(n, groups, c_out // groups, ho * wo))  # (N, G, K, Ho*Wo)
    return kernels.col2im(dcols.reshape(n, x_shape[1] * kh * kw, ho * wo), tuple(x_shape), kh, kw, stride, pad4,
                          dilation, (ho, wo))


def reference_conv2d_backward_weight(g: Any, x: Any, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4,
                                     dilation: Pair, groups: int) -> Any:
    """dw = sum_n g[n] @ im2col(x)[n]^T per group."""
    kernels, xp = backend.kernels("conv", g, "conv2d"), backend.xp(g)
    n, c_out, ho, wo = g.shape
    cols = kernels.im2col(x, w_shape[2], w_shape[3], stride, pad4, dilation, (ho, wo))
    cols_t = cols.reshape(n, groups, cols.shape[1] // groups, ho * wo).transpose(0, 1, 3, 2)  # (N, G, Ho*Wo, K)
    return xp.matmul(g.reshape(n, groups, c_out // groups, ho * wo), cols_t).sum(axis=0).reshape(w_shape)


# ----------------------------------------------------------------------------- array-level conv2d
def forward_algorithm(kernels: Any, x: Any, w: Any, stride: Pair, pad4: Pad4, dilation: Pair, groups: int) -> str:
    """The algorithm ``conv2d_forward`` runs for x and w: ``conv_plan.choose``'s, then the forward pass's
    own rule (``conv_plan.for_pass``; the backward passes decide for themselves)."""
    out_hw = conv_plan.output_hw(x.shape[2:], w.shape[2:], stride, pad4, dilation)
    algorithm = _ALGORITHM.get()
    how = conv_plan.choose(kernels, x.shape, w.shape, out_hw, stride, dilation, groups, algorithm)
    return conv_plan.for_pass("forward", how, algorithm, kernels, x.shape, w.shape, stride, pad4, dilation, groups,
                              x.dtype)


def conv2d_forward(x: Any, w: Any, stride: Pair, pad4: Pad4, dilation: Pair, groups: int, bias: Any = None,
                   bn_relu: tuple | None = None) -> Any:
    """y = conv2d(x, w) + bias on arrays. x: (N, C_in, H, W), w: (C_out, C_in/G, kh, kw) -> (N, C_out, Ho, Wo).

    bias: (C_out,) or None. The algorithm is ``conv_plan.choose``'s (see ``conv_algorithm``).
    bn_relu: (scale, shift, low, high) or None: then ``clip(y * scale + shift, low, high)`` per
    channel, an eval batch norm and its rectifier (``F.conv2d_bn_relu``); the depthwise, direct and fused
    Winograd kernels apply it as they write each output, im2col to each tile, the other paths in one
    pass after (``conv_plan.finish_tile``, in place).
    """
    kernels, xp = backend.kernels("conv", x, "conv2d"), backend.xp(x)
    x = xp.ascontiguousarray(x)
    out_hw = conv_plan.output_hw(x.shape[2:], w.shape[2:], stride, pad4, dilation)
    how = forward_algorithm(kernels, x, w, stride, pad4, dilation, groups)
    if how == "depthwise":  # the fast paths add the bias (and the batch norm) as they write each output row
        return kernels.depthwise_forward(x, w, stride, pad4, dilation, out_hw, bias, bn_relu)
    if how == "winograd":
        out = conv_plan.winograd_forward(x, w, pad4, out_hw, bias)
    elif how == "im2col":  # like the depthwise kernels, finishes each tile while it is in cache
        return conv_plan.im2col_forward(kernels, xp, x, w, stride, pad4, dilation, groups, bias, bn_relu)
    elif how == "direct":  # finishes each output row as it writes it
        return conv_plan.direct_forward(x, w, stride, pad4, dilation, out_hw, bias, bn_relu)
    elif how == "winograd_fused":  # finishes each output as it writes it
        return conv_plan.winograd_fused_forward(x, w, pad4, out_hw, bias, bn_relu)
    else:
        out = reference_conv2d_forward(x, w, stride, pad4, dilation, groups)
        if bias is not None:
            xp.add(out, bias.reshape(1, -1, 1, 1), out=out)
    if bn_relu is not None:  # one pass over the whole output, in place
        conv_plan.finish_tile(xp, out, slice(0, out.shape[0]), 0, out.shape[2], None, bn_relu)
    return out


def conv2d_backward(g: Any, w: Any, x: Any, w_shape: tuple[int, ...], x_shape: tuple[int, ...], stride: Pair,
                    pad4: Pad4, dilation: Pair, groups: int, need_input: bool = True,
                    need_weight: bool = True) -> tuple[Any, Any]:
    """(dL/dx, dL/dw) of a convolution, each None unless asked for.

    g: (N, C_out, Ho, Wo); w: the weight (needed for dL/dx); x: the input (needed for dL/dw).

        dx[n] = col2im(W^T @ g[n])          dw = sum_n g[n] @ im2col(x)[n]^T        (per group)

    On the im2col path both come from one pass over g's tiles; Winograd computes each in its own pass.
    """
    kernels, xp = backend.kernels("conv", g, "conv2d"), backend.xp(g)
    g = xp.ascontiguousarray(g)
    x = None if x is None else xp.ascontiguousarray(x)
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    algorithm = _ALGORITHM.get()
    how = conv_plan.choose(kernels, x_shape, w_shape, g.shape[2:], stride, dilation, groups, algorithm)
    if need_weight and conv_plan.for_pass("weight", how, algorithm, kernels, x_shape, w_shape, stride, pad4, dilation,
                                          groups, g.dtype) == "direct":  # the weight gradient by the direct kernel
        dw = conv_plan.direct_backward(g, None, x, w_shape, x_shape, stride, pad4, dilation, False, True)[1]
        if not need_input:
            return None, dw
        return conv2d_backward(g, w, x, w_shape, x_shape, stride, pad4, dilation, groups, True, False)[0], dw
    refined = conv_plan.for_pass("input", how, algorithm, kernels, x_shape, w_shape, stride, pad4, dilation, groups,
                                 g.dtype)
    if need_input and refined != how:  # the input gradient by a forward kernel (direct, fused Winograd) on g
        if refined == "winograd_fused":
            dx = conv_plan.winograd_fused_backward_input(g, w, pad4, x_shape[2:])
        else:
            dx = conv_plan.direct_backward(g, w, None, w_shape, x_shape, stride, pad4, dilation, True, False)[0]
        if not need_weight:
            return dx, None
        return dx, conv2d_backward(g, w, x, w_shape, x_shape, stride, pad4, dilation, groups, False, True)[1]
    if how == "im2col":
        return conv_plan.im2col_backward(kernels, xp, g, w, x, w_shape, x_shape, stride, pad4, dilation, groups,
                                         need_input, need_weight)
    dx = dw = None
    if how == "reference":
        dx = reference_conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, groups) if need_input else None
        dw = reference_conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation, groups) if need_weight else None
    elif how == "direct":
        dx, dw = conv_plan.direct_backward(g, w, x, w_shape, x_shape, stride, pad4, dilation, need_input, need_weight)
    elif how == "depthwise":
        dx = kernels.depthwise_backward_input(g, w, x_shape, stride, pad4, dilation) if need_input else None
        dw = kernels.depthwise_backward_weight(g, x, w_shape, stride, pad4, dilation) if need_weight else None
    else:  # Winograd: dx as the adjoint convolution, dw through the transforms' adjoints
        dx = conv_plan.winograd_backward_input(g, w, pad4, x_shape[2:]) if need_input else None
        dw = conv_plan.winograd_backward_weight(g, x, pad4, w_shape) if need_weight else None
    return dx, dw


def conv2d_backward_input(g: Any, w: Any, x_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair,
                          groups: int) -> Any:
    """dL/dx = conv2d^T(g): g: (N, C_out, Ho, Wo), w: (C_out, C_in/G, kh, kw) -> (N, C_in, H, W) = ``x_shape``.

    The output size is read from ``g``; input pixels that no output pixel read get 0.
    """
    return conv2d_backward(g, w, None, w.shape, x_shape, stride, pad4, dilation, groups, need_weight=False)[0]


def conv2d_backward_weight(g: Any, x: Any, w_shape: tuple[int, ...], stride: Pair, pad4: Pad4, dilation: Pair,
                           groups: int) -> Any:
    """dL/dw: g: (N, C_out, Ho, Wo), x: (N, C_in, H, W) -> ``w_shape``."""
    return conv2d_backward(g, None, x, w_shape, x.shape, stride, pad4, dilation, groups, need_input=False)[1]


# ----------------------------------------------------------------------------- argument checks
def same_padding(hw: tuple[int, ...], k: tuple[int, ...], stride: Pair, dilation: Pair) -> Pad4:
    """TensorFlow SAME: output ceil(H/s); the total padding is split with the odd pixel at the end."""
    pads = []
    for size, kk, s, d in zip(hw, k, stride, dilation, strict=True):
        total = max((-(-size // s) - 1) * s + d * (kk - 1) + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def _operands(op: str, x: Any, weight: Any, bias: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """x, weight, bias as tensors of one float dtype (arrays become constants of the tensors' dtype)."""
    for name, value in (("input", x), ("weight", weight), ("bias", bias)):
        dtype = getattr(value, "dtype", None)
        if dtype is not None and not isinstance(value, Tensor) and np.dtype(dtype).type not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} must be a float32 or float64 array, got dtype {dtype}")
    tensors = [v for v in (x, weight, bias) if isinstance(v, Tensor)]
    if any(t.dtype != tensors[0].dtype for t in tensors):
        raise TypeError(f"{op}: input, weight and bias must share one dtype, got "
                        f"{', '.join(str(t.dtype) for t in tensors)}")
    # The tensors set the dtype; with none given, the input array does.
    dtype = tensors[0].dtype if tensors else getattr(x, "dtype", None)

    def as_tensor(value: Any, name: str, ndim: int) -> Tensor:
        t = check_tensor(value, op, name)
        if t.dtype != dtype and dtype is not None:
            t = Tensor(t.data, dtype=dtype)  # only arrays get here: tensors all have `dtype`
        if t.ndim != ndim:
            layout = {"input": "4-D (N, C_in, H, W)", "bias": "1-D (C_out,)",
                      "weight": "4-D (C_out, C_in/groups, kh, kw)" if op == "conv2d"
                      else "4-D (C_in, C_out/groups, kh, kw)"}[name]
            raise ValueError(f"{op}: {name} must be {layout}, got shape {t.shape}")
        return t

    x = as_tensor(x, "input", 4)
    weight = as_tensor(weight, "weight", 4)
    bias = None if bias is None else as_tensor(bias, "bias", 1)
    check_same_device(op, x, weight, bias)
    return x, weight, bias


def _check_groups(op: str, groups: Any, channels: dict[str, int]) -> int:
    if not isinstance(groups, int | np.integer) or isinstance(groups, bool):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    for name, count in channels.items():
        if count % groups:
            raise ValueError(f"{op}: {name} ({count}) must be divisible by groups ({groups})")
    return int(groups)


def _check_bias(op: str, bias: Tensor | None, c_out: int) -> None:
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias must have shape (C_out,) = ({c_out},), got {bias.shape}")


def _bias_grad(g: Any) -> Any:
    """dL/db[co] = sum of g over images and pixels."""
    return g.reshape(g.shape[0], g.shape[1], g.shape[2] * g.shape[3]).sum(axis=2).sum(axis=0)


def conv2d_args(op: str, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
                groups: Any) -> tuple[Tensor, Tensor, Tensor | None, Pair, Pad4, Pair, int]:
    """``conv2d``'s arguments checked: (x, weight, bias, stride, pad4, dilation, groups), ready for
    ``conv2d_forward`` (also read by ``F.conv2d_bn_relu``)."""
    x, weight, bias = _operands(op, x, weight, bias)
    backend.kernels("conv", x.data, op)  # fails early, naming the op, where numba-cuda is missing
    stride, dilation = int_pair(stride, op, "stride"), int_pair(dilation, op, "dilation")
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    groups = _check_groups(op, groups, {"input channels C_in": c_in, "output channels C_out": c_out})
    if c_per_group != c_in // groups:
        raise ValueError(f"{op}: weight expects C_in/groups = {c_per_group} channels per group, but the input "
                         f"has C_in={c_in} with groups={groups} ({c_in // groups} per group)")
    _check_bias(op, bias, c_out)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be 'same' or 'valid' when given as a string, got {padding!r}")
        pad4 = same_padding((h, w), (kh, kw), stride, dilation) if padding == "same" else (0, 0, 0, 0)
    else:
        pad4 = padding4(padding, op)
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    padded = (h + pad4[0] + pad4[1], w + pad4[2] + pad4[3])
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(f"{op}: the (dilated) kernel {span[0]}x{span[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]}")
    # a stride past the padded input leaves one output per axis; capped so the kernels' int64 offsets
    # (index * stride) cannot overflow
    stride = (min(stride[0], padded[0]), min(stride[1], padded[1]))
    check_array_size((n, c_out) + conv_plan.output_hw((h, w), (kh, kw), stride, pad4, dilation), x.dtype, op)
    return x, weight, bias, stride, pad4, dilation, groups


# ----------------------------------------------------------------------------- conv2d
def conv2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in every deep-learning library).

    x: (N, C_in, H, W); weight: (C_out, C_in/groups, kh, kw); bias: (C_out,) or None.
    stride, dilation: int or (h, w). padding: int, (ph, pw), (top, bottom, left, right),
    ``"valid"`` (no padding) or ``"same"`` (TensorFlow SAME: output ceil(H/stride)).
    groups: channels are split into ``groups`` independent convolutions (``groups == C_in`` is
    depthwise). Returns (N, C_out, Ho, Wo) with ``Ho = floor((H + top + bottom - dh*(kh-1) - 1)/sh) + 1``.
    """
    op = "conv2d"
    x, weight, bias, stride, pad4, dilation, groups = conv2d_args(op, x, weight, bias, stride, padding, dilation,
                                                                  groups)
    out = conv2d_forward(x.data, weight.data, stride, pad4, dilation, groups, None if bias is None else bias.data)
    return conv2d_node(out, x, weight, bias, stride, pad4, dilation, groups)


def conv2d_node(out: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, pad4: Pad4, dilation: Pair,
                groups: int) -> Tensor:
    """``conv2d``'s output ``out`` (computed by the caller) as a tensor with conv2d's backward pass; the
    arguments checked by ``conv2d_args``. The backward pass never reads ``out``: a fused op that
    never writes the convolution's output (``F.conv2d_relu_max_pool2d``) hands a stand-in of its shape."""
    op = "conv2d"
    # Saved for backward: the input, which dL/dw and the LRP rules read (not in a lean graph with
    # frozen weights: dL/dx needs only the weight). The output is never kept.
    saved_x = x.data if weight.requires_grad or not is_lean() else None
    x_shape, need_input = x.shape, x.requires_grad

    def backward(g):
        rules = current_lrp()
        if rules is not None:  # relevance, not a gradient: the layer's rule (functional/lrp.py) shares it out
            rule = rules.rule_for("conv2d", weight)
            if rule.name != "gradient":
                if saved_x is None:
                    raise lean_error(op, "an LRP rule")
                relevance = lrp.affine_relevance(
                    rule, g, saved_x, weight.data, None if bias is None else bias.data,
                    lambda: conv2d_forward(saved_x, weight.data, stride, pad4, dilation, groups,
                                           None if bias is None else bias.data),  # z, recomputed: not kept
                    lambda a, w, b: conv2d_forward(a, w, stride, pad4, dilation, groups, b),
                    lambda s, w: conv2d_backward_input(s, w, x_shape, stride, pad4, dilation, groups))
                return (relevance, None) if bias is None else (relevance, None, None)
        if weight.requires_grad and saved_x is None:
            raise lean_error(op, "the weight gradient")
        gx, gw = conv2d_backward(g, weight.data, saved_x, weight.shape, x_shape, stride, pad4, dilation, groups,
                                 need_input=need_input, need_weight=weight.requires_grad)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_grad(g) if bias.requires_grad else None

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, op)


# ----------------------------------------------------------------------------- conv_transpose2d
def conv_transpose2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed convolution (PyTorch's ``conv_transpose2d``): the adjoint of ``conv2d``.

    x: (N, C_in, H, W); weight: (C_in, C_out/groups, kh, kw) -- the weight of the conv2d that
    maps (N, C_out, Ho, Wo) back to x's shape; bias: (C_out,) or None. padding: int, (ph, pw) or
    (top, bottom, left, right), removed from the output. Output size
    ``Ho = (H - 1)*sh - top - bottom + dh*(kh - 1) + output_padding_h + 1``; output_padding only
    picks among the sizes that stride hides, so it must be smaller than stride or dilation.
    """
    op = "conv_transpose2d"
    x, weight, bias = _operands(op, x, weight, bias)
    backend.kernels("conv", x.data, op)  # fails early, naming the op, where numba-cuda is missing
    stride, dilation = int_pair(stride, op, "stride"), int_pair(dilation, op, "dilation")
    out_pad = int_pair(output_padding, op, "output_padding", minimum=0)
    n, c_in, h, w = x.shape
    w_in, c_per_group, kh, kw = weight.shape
    groups = _check_groups(op, groups, {"input channels C_in": c_in})
    if w_in != c_in:
        raise ValueError(f"{op}: weight (C_in, C_out/groups, kh, kw) has C_in={w_in}, but the input has "
                         f"C_in={c_in}")
    c_out = c_per_group * groups
    _check_bias(op, bias, c_out)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int, (ph, pw) or (top, bottom, left, right), got {padding!r}")
    pad4 = padding4(padding, op)
    for axis in range(2):
        if out_pad[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, got "
                             f"output_padding={out_pad}, stride={stride}, dilation={dilation}")
    ho = (h - 1) * stride[0] - pad4[0] - pad4[1] + dilation[0] * (kh - 1) + out_pad[0] + 1
    wo = (w - 1) * stride[1] - pad4[2] - pad4[3] + dilation[1] * (kw - 1) + out_pad[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: the output would be empty ({ho}x{wo}): padding {pad4} removes more than "
                         f"the {ho + pad4[0] + pad4[1]}x{wo + pad4[2] + pad4[3]} that the kernel covers")
    out_shape = (n, c_out, ho, wo)
    check_array_size(out_shape, x.dtype, op)

    # The forward of the transpose IS the input-gradient of the conv2d that maps out_shape to x.
    out = conv2d_backward_input(x.data, weight.data, out_shape, stride, pad4, dilation, groups)
    if bias is not None:
        out += bias.data.reshape(1, -1, 1, 1)

    def backward(g):
        gx = gw = None
        if x.requires_grad:
            # ... so its input-gradient IS that conv2d's forward (cropped: with output_padding >= stride,
            # which large dilation allows, the conv2d sees a slightly larger image than x came from).
            gx = conv2d_forward(g, weight.data, stride, pad4, dilation, groups)[:, :, :h, :w]
        if weight.requires_grad:
            # ... and its weight-gradient is conv2d's, with x in the role of the conv's output-gradient
            # and g in the role of the conv's input.
            gw = conv2d_backward_weight(x.data, g, weight.shape, stride, pad4, dilation, groups)
        if bias is None:
            return gx, gw
        return gx, gw, _bias_grad(g) if bias.requires_grad else None

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, op)
