"""Normalisation layers: batch norm, instance norm, conditional instance norm, local response norm.

Batch, instance and conditional instance norm all standardise groups of values and then apply
a per-channel affine map; they differ only in which axes form a group:

    xhat = (x - mean) / sqrt(var + eps)   (mean, biased var over the group)
    y    = gamma * xhat + beta

    batch norm     groups: one per channel, over (N, H, W)     (Ioffe & Szegedy 2015)
    instance norm  groups: one per (n, c) plane, over (H, W)   (Ulyanov et al. 2016)
    conditional    instance norm, with gamma, beta rows picked per image from a style table
                                                               (Dumoulin et al. 2017)

Their backward is the same closed form (``_standardize_backward``), one fused expression rather
than a chain of small ops. Local response norm (Krizhevsky et al. 2012, AlexNet) instead divides
each value by a power of the energy in a window of neighbouring channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, is_grad_enabled, is_lean, lean_error
from minivis.functional import activation, conv, lrp
from minivis.kernels import conv_plan, cpu_norm
from minivis.rules import RULE_CODES, current_lrp, current_rule
from minivis.validate import check_float, check_same_device, check_tensor


# ----------------------------------------------------------------------------- shared helpers
def _check_param(t: Any, op: str, name: str, shape: tuple[int, ...], x: Tensor, of: str = "the input") -> Tensor | None:
    """A weight/bias argument as a Tensor of ``shape`` and x's dtype (None stays None); ``of``: what x is."""
    if t is None:
        return None
    t = check_tensor(t, op, name)
    if t.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape} to match {of} {x.shape}, "
                         f"got shape {t.shape}")
    if t.dtype != x.dtype:
        raise TypeError(f"{op}: {name} dtype {t.dtype} differs from input dtype {x.dtype}")
    return t


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """(1, C, 1, 1) for 4-D input, (1, C) for 2-D: a per-channel vector ready to broadcast."""
    return (1, channels) + (1,) * (ndim - 2)


def _constant_group_error(op: str, what: str) -> ValueError:
    """A group of values with zero variance under eps 0: its standardised values would be 0/0."""
    return ValueError(f"{op}: {what} of the input is constant and eps is 0, so its standardised values "
                      f"would be 0/0 (NaN); use eps > 0")


def _standardize(x: Any, axes: tuple[int, ...], eps: float, op: str, what: str) -> tuple[Any, Any, Any, Any]:
    """Mean, biased variance, 1/sqrt(var + eps) and xhat over ``axes`` (kept as size-1 dims).

    ``what`` names a group in the error for a constant group under eps 0."""
    xp = backend.xp(x)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)  # two-pass: no cancellation
    if eps == 0 and bool((var == 0).any()):  # with eps > 0, var + eps > 0 always
        raise _constant_group_error(op, what)
    inv_std = 1.0 / xp.sqrt(var + eps)
    return mean, var, inv_std, centered * inv_std


def _standardize_backward(g_hat: Any, xhat: Any, inv_std: Any, axes: tuple[int, ...]) -> Any:
    """dL/dx given dL/dxhat, for xhat = (x - mean(x)) / sqrt(var(x) + eps) over ``axes``.

    With m values per group, d mean/dx = 1/m and d var/dx = 2 (x - mean)/m, so

        dL/dx = inv_std * (g_hat - mean(g_hat) - xhat * mean(g_hat * xhat))

    (the two subtracted terms remove the parts of g_hat that only shift or scale the group).
    """
    return inv_std * (g_hat - g_hat.mean(axis=axes, keepdims=True)
                      - xhat * (g_hat * xhat).mean(axis=axes, keepdims=True))


def _running_stat(a: Any, op: str, name: str, channels: int, x: Tensor, of: str = "an input") -> Any:
    """A running_mean/running_var buffer: a float array (or Tensor, whose data is used) of shape (C,)."""
    if isinstance(a, Tensor):
        a = a.data
    if not (isinstance(a, np.ndarray) or backend.is_gpu_array(a)):
        raise TypeError(f"{op}: {name} must be an array of shape ({channels},), got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a float array (it is updated in place), got dtype {a.dtype}")
    if a.shape != (channels,):
        raise ValueError(f"{op}: {name} must have shape ({channels},) for {of} with {channels} channels "
                         f"{x.shape}, got shape {a.shape}")
    if backend.device_of(a) != x.device:
        raise ValueError(f"{op}: {name} is on {backend.device_of(a)} but the input is on {x.device}")
    return a


# ----------------------------------------------------------------------------- batch norm
def _eval_affine(op: str, stats: tuple[Any, Any], weight: Tensor | None, bias: Tensor | None, eps: float,
                 x: Tensor) -> tuple[Any, Any, Any, Any]:
    """Eval batch norm as the per-channel map ``y = x * scale + shift``: (mean, inv_std, scale, shift),
    each shaped to broadcast against x. New arrays: later running-stat updates don't change a backward.

    ``running_var + eps`` must be positive in every channel: a negative (or NaN) variance, say from a
    damaged checkpoint, would turn the whole channel into NaN without a word."""
    xp, shape = backend.xp(x.data), _channel_shape(x.ndim, x.shape[1])
    mean = stats[0].astype(x.dtype, copy=False).reshape(shape)
    denominator = stats[1].astype(x.dtype, copy=False) + eps
    if denominator.size and not denominator.min() > 0:  # a NaN minimum compares False too
        channel = int(xp.argmin(xp.where(denominator > 0, 1, 0)))
        raise ValueError(f"{op}: running_var + eps must be positive in every channel, got "
                         f"{float(stats[1][channel])} + {eps} in channel {channel}")
    inv_std = (1.0 / xp.sqrt(denominator)).reshape(shape)
    scale = inv_std if weight is None else inv_std * weight.data.reshape(shape)
    shift = -mean * scale if bias is None else bias.data.reshape(shape) - mean * scale
    return mean, inv_std, scale, shift


def _apply_affine(a: Any, scale: Any, shift: Any) -> Any:
    """``a * scale + shift`` (shift None: ``a * scale``), one parallel pass on the CPU."""
    if isinstance(a, np.ndarray):
        return cpu_norm.channel_affine(a, scale, shift)
    y = a * scale
    if shift is not None:
        y += shift
    return y


def _eval_input_grad(op: str, g: Any, saved_x: Any, weight: Tensor | None, scale: Any, shift: Any) -> Any:
    """dL/dx of eval batch norm, ``g * scale``; under LRP the batch-norm rule's relevance instead:
    passed on (Zennit's default) or shared by the z-rule, which reads the saved input x."""
    rules = current_lrp()
    if rules is None:
        return _apply_affine(g, scale, None)
    rule = rules.rule_for("batch_norm", weight)
    if saved_x is None and rule.name == "epsilon":
        raise lean_error(op, "the LRP epsilon rule")
    return lrp.elementwise_relevance(rule, g, saved_x, lambda: _apply_affine(saved_x, scale, shift),  # z recomputed
                                     lambda r: r * scale)


def batch_norm(x: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation (``torch.nn.functional.batch_norm``).

    x: (N, C) or (N, C, H, W); running_mean, running_var: arrays (C,); weight (gamma), bias
    (beta): (C,) or None. Training uses the batch's mean and biased variance over (N[, H, W]) and
    updates the running estimates in place with the *unbiased* variance:

        running = (1 - momentum) * running + momentum * batch_stat

    (the running arrays may be None when training, to skip tracking). Evaluation uses the
    running estimates, so the op is a per-channel affine map of x.
    """
    op = "batch_norm"
    x = check_tensor(x, op, "input", ndim=(2, 4))
    channels = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // channels if channels else 0
    weight = _check_param(weight, op, "weight", (channels,), x)
    bias = _check_param(bias, op, "bias", (channels,), x)
    momentum = check_float(momentum, op, "momentum", 0.0, 1.0)
    eps = check_float(eps, op, "eps", 0.0)
    if training and running_mean is None and running_var is None:
        stats = None
    elif running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are both required when training=False "
                         f"(both may be None only when training)")
    else:
        stats = (_running_stat(running_mean, op, "running_mean", channels, x),
                 _running_stat(running_var, op, "running_var", channels, x))
    check_same_device(op, x, weight, bias)
    shape = _channel_shape(x.ndim, channels)

    if training:
        if count < 2:
            raise ValueError(f"{op}: training needs more than 1 value per channel to estimate a variance, "
                             f"got input shape {x.shape}")
        mean, var, inv_std, xhat = _standardize(x.data, axes, eps, op, "a channel")
        if stats is not None:
            running_mean, running_var = stats
            unbiased = var.reshape(channels) * (count / (count - 1))
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean.reshape(channels)
            running_var[...] = (1 - momentum) * running_var + momentum * unbiased
    else:
        mean, inv_std, scale, shift = _eval_affine(op, stats, weight, bias, eps, x)
        xhat = None

    gamma = weight.data.reshape(shape) if weight is not None else None
    if training:
        out = xhat if gamma is None else xhat * gamma
        if bias is not None:
            out = out + bias.data.reshape(shape)
    else:
        out = _apply_affine(x.data, scale, shift)  # eval: a per-channel affine map, one pass over x
    # Saved in eval: the input, which the weight gradient and the LRP rule read (not in a lean graph
    # with a frozen weight: dx = g * scale needs nothing else). The output is never kept.
    saved_x = None if training or (is_lean() and (weight is None or not weight.requires_grad)) else x.data
    need_input = x.requires_grad

    def backward(g):
        grads = [None]
        if need_input:
            # Training: the batch statistics depend on x. Eval: they are constants, dx = g * scale.
            if training:
                grads[0] = _standardize_backward(g if gamma is None else g * gamma, xhat, inv_std, axes)
            else:
                grads[0] = _eval_input_grad(op, g, saved_x, weight, scale, shift)
        if weight is not None:
            if weight.requires_grad and current_lrp() is None:
                if saved_x is None and not training:
                    raise lean_error(op, "the weight gradient")
                x_hat = xhat if training else (saved_x - mean) * inv_std
                grads.append((g * x_hat).sum(axis=axes))
            else:
                grads.append(None)
        if bias is not None:
            grads.append(g.sum(axis=axes) if bias.requires_grad and current_lrp() is None else None)
        return tuple(grads)

    parents = tuple(t for t in (x, weight, bias) if t is not None)
    return Tensor.from_op(out, parents, backward, op)


def _check_max_value(op: str, max_value: Any) -> None:
    if isinstance(max_value, bool) or not isinstance(max_value, int | float | np.floating | np.integer):
        raise TypeError(f"{op}: max_value must be a number, 6 (relu6) or inf (relu), got {max_value!r}")
    if max_value not in (6, np.inf):
        raise ValueError(f"{op}: max_value must be 6 (relu6) or inf (relu), got {max_value!r}")


def _check_bn_params(op: str, x: Tensor, weight: Any, bias: Any,
                     names: tuple[str, str, str] = ("weight", "bias", "the input")) -> tuple[Any, Any]:
    """An eval batch norm's weight and bias as tensors matching x's channels.
    names: what the weight, the bias and x are called in the errors."""
    channels = x.shape[1]
    return (_check_param(weight, op, names[0], (channels,), x, names[2]),
            _check_param(bias, op, names[1], (channels,), x, names[2]))


def _eval_bn_relu(op: str, x: Tensor, running_mean: Any, running_var: Any, weight: Tensor | None,
                  bias: Tensor | None, eps: Any, max_value: float | None,
                  of: str = "an input") -> tuple[Any, Any, Any, Any]:
    """Eval batch norm + rectifier on x as ``clip(x * scale + shift, low, high)``: (scale, shift, low, high).
    max_value None: no rectifier (low, high = -inf, inf: the clip changes nothing, NaN included)."""
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are both required")
    channels = x.shape[1]
    stats = (_running_stat(running_mean, op, "running_mean", channels, x, of),
             _running_stat(running_var, op, "running_var", channels, x, of))
    eps = check_float(eps, op, "eps", 0.0)
    check_same_device(op, x, weight, bias)
    _, _, scale, shift = _eval_affine(op, stats, weight, bias, eps, x)
    if max_value is None:
        return scale, shift, x.dtype.type(-np.inf), x.dtype.type(np.inf)
    return scale, shift, x.dtype.type(0), x.dtype.type(max_value)


def batch_norm_relu(x: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                    eps: float = 1e-5, max_value: float = np.inf) -> Tensor:
    """``relu(batch_norm(x, ...))`` in eval mode, as one op: ``max_value=6`` makes it relu6.

    Eval batch norm is a per-channel affine map, so the pair is ``y = clip(x * scale + shift, 0,
    max_value)``: one pass over memory forward and one backward (``g * f'(y) * scale``, under the
    ReLU rule in force when ``backward()`` runs), where the two ops make two each and keep an array
    between them. Results are bit for bit those of the two ops; ``mv.nn.fusion(False)`` turns the
    fused path off in models. Saves what the two ops would: y (its region code in a lean graph) for
    the rectifier, x for the LRP rules (not in a lean graph).

    The two ops run instead where the fused backward could not stand in for theirs: a weight or
    bias that requires grad (outside ``no_grad()``), or a forward pass under DeepLIFT's rescale
    rule (it reads the rectifier's input).
    """
    op = "batch_norm_relu"
    x = check_tensor(x, op, "input", ndim=(2, 4))
    _check_max_value(op, max_value)
    weight, bias = _check_bn_params(op, x, weight, bias)
    trainable = is_grad_enabled() and any(t is not None and t.requires_grad for t in (weight, bias))
    if trainable or current_rule() == "rescale":
        y = batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
        return activation.relu(y) if max_value == np.inf else activation.relu6(y)
    scale, shift, low, high = _eval_bn_relu(op, x, running_mean, running_var, weight, bias, eps, max_value)
    lean = is_lean()
    if isinstance(x.data, np.ndarray):
        out, region = cpu_norm.affine_clip(x.data, scale, shift, low, high, region=lean)
    else:
        out = backend.xp(x.data).clip(_apply_affine(x.data, scale, shift), low, high)
        region = backend.kernels("activation", out, op).relu_region(out, low, high) if lean else None
    saved, bounds = (region, (0.5, 1.5)) if lean else (out, (low, high))  # as the rectifier saves (activation.py)
    saved_x = None if lean else x.data

    def backward(g):
        rules = current_lrp()
        if rules is None and current_rule() == "rescale":
            raise RuntimeError(f"{op}: the rescale rule needs the rectifier's input, which is kept only when the "
                               f"forward pass also runs inside backward_rule('rescale')")
        if rules is None and isinstance(g, np.ndarray):  # the common case: one pass
            return (cpu_norm.affine_clip_backward(g, saved, scale, *bounds, RULE_CODES[current_rule()]),)
        kernels = backend.kernels("activation", g, op)
        if rules is None:
            return (kernels.relu_rule_backward(g, saved, *bounds, 0.0, RULE_CODES[current_rule()]) * scale,)
        # LRP: the rectifier's rule (relevance passes through, or the gradient rule), then the batch norm's
        if rules.rule_for("relu").name != "pass":
            g = kernels.relu_rule_backward(g, saved, *bounds, 0.0, RULE_CODES["gradient"])
        return (_eval_input_grad(op, g, saved_x, weight, scale, shift),)

    return Tensor.from_op(out, (x,), backward, op)


class _OutputOf:
    """What the batch-norm checks read of their input (shape, ndim, dtype, device, and ``data``, an
    array on its device), here for a convolution's output before it is computed: its shape, and
    everything else from the convolution's input ``x``."""

    __slots__ = ("shape", "ndim", "dtype", "device", "data")

    def __init__(self, x: Tensor, shape: tuple[int, ...]) -> None:
        self.shape, self.ndim, self.dtype, self.device, self.data = shape, len(shape), x.dtype, x.device, x.data


def _conv2d_bn_clip(op: str, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
                    running_mean: Any, running_var: Any, bn_weight: Any, bn_bias: Any, eps: Any,
                    max_value: float | None) -> Tensor:
    """``conv2d_bn_relu`` (max_value 6 or inf) and ``conv2d_bn`` (max_value None: no rectifier).

    The arguments are checked first, so that an error names the op called on either path."""
    args = conv.conv2d_args(op, x, weight, bias, stride, padding, dilation, groups)
    x, weight, bias, stride, pad4, dilation, groups = args
    out_hw = conv_plan.output_hw(x.shape[2:], weight.shape[2:], stride, pad4, dilation)
    like = _OutputOf(x, (x.shape[0], weight.shape[0]) + out_hw)
    of = "the convolution's output"
    bn_weight, bn_bias = _check_bn_params(op, like, bn_weight, bn_bias, ("bn_weight", "bn_bias", of))
    bn_relu = _eval_bn_relu(op, like, running_mean, running_var, bn_weight, bn_bias, eps, max_value, of)
    recorded = is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, bn_weight,
                                                                                      bn_bias))
    if recorded or current_rule() == "rescale":
        y = conv.conv2d(x, weight, bias, stride, pad4, dilation, groups)
        if max_value is None:
            return batch_norm(y, running_mean, running_var, bn_weight, bn_bias, False, 0.0, eps)
        return batch_norm_relu(y, running_mean, running_var, bn_weight, bn_bias, eps, max_value)
    out = conv.conv2d_forward(x.data, weight.data, stride, pad4, dilation, groups,
                              None if bias is None else bias.data, bn_relu)
    return Tensor.from_op(out, (), None, op)


def conv2d_bn_relu(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                   groups: int = 1, *, running_mean: Any, running_var: Any, bn_weight: Any = None,
                   bn_bias: Any = None, eps: float = 1e-5, max_value: float = np.inf) -> Tensor:
    """``batch_norm_relu(conv2d(x, weight, bias, ...), running_mean, ...)``: a convolution, an eval
    batch norm and the rectifier after it, for inference.

    Where no graph is recorded (inside ``no_grad()``, or nothing here requires grad) the three run as
    one op: the batch norm and rectifier, ``clip(y * scale + shift, 0, max_value)``, are applied to the
    convolution's output as the depthwise and direct kernels write each row (the fused Winograd kernel
    each output) and to each tile of im2col's products while it is in cache, in place (other
    algorithms: one pass after, as ``batch_norm_relu`` makes). The values are bit for bit those of
    the separate ops. Where a graph is recorded, the separate ops run (``conv2d`` and
    ``batch_norm_relu``): their backward passes, rules and saved arrays are the ones to use.
    """
    _check_max_value("conv2d_bn_relu", max_value)
    return _conv2d_bn_clip("conv2d_bn_relu", x, weight, bias, stride, padding, dilation, groups, running_mean,
                           running_var, bn_weight, bn_bias, eps, max_value)


def conv2d_bn(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
              groups: int = 1, *, running_mean: Any, running_var: Any, bn_weight: Any = None, bn_bias: Any = None,
              eps: float = 1e-5) -> Tensor:
    """``batch_norm(conv2d(x, weight, bias, ...), running_mean, ..., training=False)``: ``conv2d_bn_relu``
    without the rectifier (EfficientNet's projection layers), fused on the same terms."""
    return _conv2d_bn_clip("conv2d_bn", x, weight, bias, stride, padding, dilation, groups, running_mean,
                           running_var, bn_weight, bn_bias, eps, None)


# ----------------------------------------------------------------------------- instance norm
def _instance_standardize(x: Tensor, op: str, eps: float, gamma: Any = None, beta: Any = None) -> tuple[Any, Any, Any]:
    """(inv_std, xhat, gamma * xhat + beta) per (n, c) plane; gamma, beta: (N, C) arrays or None (1, 0).

    On the CPU one fused kernel makes the three passes per plane (``cpu_norm.instance_standardize``);
    elsewhere the array code below is the reference.
    """
    if x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"{op}: needs more than 1 spatial element per plane to estimate a variance, "
                         f"got input shape {x.shape}")
    if isinstance(x.data, np.ndarray) and x.size:
        inv_std, xhat, out = cpu_norm.instance_standardize(x.data, eps, gamma, beta)
        if eps == 0 and np.isinf(inv_std).any():  # the kernel's mark of a constant plane
            raise _constant_group_error(op, "an (image, channel) plane")
        return inv_std, xhat, out
    _, _, inv_std, xhat = _standardize(x.data, (2, 3), eps, op, "an (image, channel) plane")
    out = xhat if gamma is None else xhat * gamma[:, :, None, None]
    return inv_std, xhat, out if beta is None else out + beta[:, :, None, None]


def instance_norm(x: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Tensor:
    """Instance normalisation: standardise every (n, c) plane over (H, W), then ``gamma * xhat + beta``.

    x: (N, C, H, W); weight (gamma), bias (beta): (C,) or None. Always uses the input's own
    statistics (``torch.nn.functional.instance_norm`` with ``use_input_stats=True``).
    """
    op = "instance_norm"
    x = check_tensor(x, op, "input", ndim=4)
    channels = x.shape[1]
    weight = _check_param(weight, op, "weight", (channels,), x)
    bias = _check_param(bias, op, "bias", (channels,), x)
    eps = check_float(eps, op, "eps", 0.0)
    check_same_device(op, x, weight, bias)
    shape, rows = _channel_shape(4, channels), (x.shape[0], channels)
    inv_std, xhat, out = _instance_standardize(
        x, op, eps, None if weight is None else backend.xp(x.data).broadcast_to(weight.data, rows),
        None if bias is None else backend.xp(x.data).broadcast_to(bias.data, rows))
    gamma = weight.data.reshape(shape) if weight is not None else None

    def backward(g):
        grads = [None]
        if x.requires_grad:
            grads[0] = _standardize_backward(g if gamma is None else g * gamma, xhat, inv_std, (2, 3))
        if weight is not None:
            grads.append((g * xhat).sum(axis=(0, 2, 3)) if weight.requires_grad else None)
        if bias is not None:
            grads.append(g.sum(axis=(0, 2, 3)) if bias.requires_grad else None)
        return tuple(grads)

    parents = tuple(t for t in (x, weight, bias) if t is not None)
    return Tensor.from_op(out, parents, backward, op)


def _style_indices(style: Any, op: str, batch: int, styles: int) -> np.ndarray:
    """``style`` (an int, or one int per image) as an int64 host array of shape (N,)."""
    if isinstance(style, Tensor):
        raise TypeError(f"{op}: style must be an int or an integer array of shape ({batch},), got a Tensor")
    if isinstance(style, bool):
        raise TypeError(f"{op}: style must be an int or an integer array of shape ({batch},), got bool")
    index = np.asarray(backend.to_device(style, "cpu") if backend.is_gpu_array(style) else style)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: style must be an int or an integer array of shape ({batch},), "
                        f"got dtype {index.dtype}")
    if index.ndim == 0:
        index = np.full(batch, int(index))
    elif index.shape != (batch,):
        raise ValueError(f"{op}: style must be an int or one index per image, shape ({batch},), "
                         f"got shape {index.shape}")
    bad = index[(index < 0) | (index >= styles)]
    if bad.size:
        raise ValueError(f"{op}: style indices must be in [0, {styles}) (rows of weight/bias), "
                         f"got {int(bad[0])}")
    return index.astype(np.int64)


def conditional_instance_norm(x: Any, style: Any, weight: Any, bias: Any, eps: float = 1e-5) -> Tensor:
    """Conditional instance norm (Dumoulin et al. 2017): instance norm, then a per-style affine map.

    x: (N, C, H, W); weight (gamma), bias (beta): (S, C) tables, one row per style; style: an
    int (every image) or ints (N,) choosing each image's row. With s = style[n]:

        y[n, c] = weight[s, c] * xhat[n, c] + bias[s, c]

    One network then renders S styles; blending rows interpolates between them. The table
    gradients add each image's (N, C) contribution into its style's row.
    """
    op = "conditional_instance_norm"
    x = check_tensor(x, op, "input", ndim=4)
    weight = check_tensor(weight, op, "weight")
    bias = check_tensor(bias, op, "bias")
    batch, channels = x.shape[:2]
    if weight.ndim != 2 or weight.shape[1] != channels:
        raise ValueError(f"{op}: weight must be 2-D (styles, {channels}) for an input with {channels} "
                         f"channels, got shape {weight.shape}")
    styles = weight.shape[0]
    if bias.shape != weight.shape:
        raise ValueError(f"{op}: bias must have the shape of weight {weight.shape} (styles, channels), "
                         f"got shape {bias.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} dtype {t.dtype} differs from input dtype {x.dtype}")
    eps = check_float(eps, op, "eps", 0.0)
    check_same_device(op, x, weight, bias)
    xp = backend.xp(x.data)
    index = xp.asarray(_style_indices(style, op, batch, styles))
    inv_std, xhat, out = _instance_standardize(x, op, eps, weight.data[index], bias.data[index])
    gamma = weight.data[index][:, :, None, None]  # (N, C, 1, 1)

    def backward(g):
        gx = _standardize_backward(g * gamma, xhat, inv_std, (2, 3)) if x.requires_grad else None
        # Scatter-add the per-image (N, C) gradients into the (S, C) tables as a small GEMM with a
        # one-hot (N, S) matrix: array-module generic, and repeated styles accumulate.
        one_hot = (index[:, None] == xp.arange(styles)[None, :]).astype(x.dtype)
        gw = one_hot.T @ (g * xhat).sum(axis=(2, 3)) if weight.requires_grad else None
        gb = one_hot.T @ g.sum(axis=(2, 3)) if bias.requires_grad else None
        return gx, gw, gb

    return Tensor.from_op(out, (x, weight, bias), backward, op)


# ----------------------------------------------------------------------------- local response norm
def _channel_window_sum(a: Any, before: int, after: int) -> Any:
    """s[:, c] = sum of a[:, c - before : c + after + 1] (zero outside 0..C-1), for a (N, C, H, W).

    A loop over the few window offsets (not over channels): each step adds one shifted view.
    Summing slices is exact in a way that a cumulative-sum difference would not be in float32.
    """
    xp = backend.xp(a)
    channels = a.shape[1]
    # window reach past the last channel reads only the zero padding: adding those zeros changes nothing
    before, after = min(before, max(channels - 1, 0)), min(after, max(channels - 1, 0))
    padded = xp.zeros((a.shape[0], channels + before + after) + a.shape[2:], dtype=a.dtype)
    padded[:, before:before + channels] = a
    total = padded[:, 0:channels].copy()
    for offset in range(1, before + after + 1):
        total += padded[:, offset:offset + channels]
    return total


def local_response_norm(x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """Local response normalisation across channels (AlexNet), with PyTorch's conventions.

    x: (N, C, H, W). Each value is divided by the energy of a window of ``size`` channels,
    channels c - size//2 .. c + (size-1)//2 (zero-padded at the ends):

        d[n, c] = k + alpha / size * sum_{c' in window(c)} x[n, c']^2,    y = x * d^(-beta)

    Backward (the window is transposed when going back, j in window(i) <=> i in window^T(j)):

        dL/dx_j = g_j d_j^(-beta) - 2 alpha beta / size * x_j * sum_{i in window^T(j)} g_i y_i / d_i
    """
    op = "local_response_norm"
    x = check_tensor(x, op, "input", ndim=4)
    if not isinstance(size, int | np.integer) or isinstance(size, bool):
        raise TypeError(f"{op}: size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"{op}: size must be >= 1, got {size}")
    # with alpha >= 0 and k > 0 the divisor d is >= k > 0, so d^(-beta) is a number: a negative
    # divisor raised to a fractional power would be NaN, a zero one infinite
    alpha = check_float(alpha, op, "alpha", 0.0)
    beta = check_float(beta, op, "beta")
    k = check_float(k, op, "k")
    if k <= 0:
        raise ValueError(f"{op}: k must be > 0 (the divisor is k + alpha/size * sum x^2), got {k}")
    before, after = size // 2, (size - 1) // 2
    denom = k + (alpha / size) * _channel_window_sum(x.data * x.data, before, after)
    out = x.data * denom ** -beta

    def backward(g):
        back = _channel_window_sum(g * out / denom, after, before)
        return (g * denom ** -beta - (2.0 * alpha * beta / size) * x.data * back,)

    return Tensor.from_op(out, (x,), backward, op)
