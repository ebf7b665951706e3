"""Activations. The ReLU family (relu, relu6, leaky_relu) sends gradients back by the rule in
force (``minivis.rules``): this is the one place where saliency, guided backprop and DeconvNet
differ, and ``relu_backward_reference`` below writes the three rules out side by side.
Shapes: any; the output has the input's shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, is_lean, lean_error
from minivis.kernels import cpu_activation
from minivis.rules import RULE_CODES, check_rule, current_lrp, current_rule
from minivis.validate import check_float, check_tensor


def relu_backward_reference(g: Any, x: Any, rule: str, low: float = 0.0, high: float = np.inf,
                            negative_slope: float = 0.0) -> Any:
    """What a ReLU-family op sends back under ``rule``: the three rules of ``minivis/rules.py``'s table.

    g: the gradient from above; x: the op's forward input (same shape). ``f'(x)`` is the local
    derivative of ``f(x) = clip(x, low, high)`` (``negative_slope * x`` below ``low``): 1 on
    ``low < x < high``, ``negative_slope`` on ``x <= low``, 0 on ``x >= high``; ties send nothing.
    relu: ``low=0, high=inf``; relu6: ``high=6``; leaky_relu: ``negative_slope > 0``.

    Plain array code (NumPy or CuPy): the reference the fast kernels (``minivis/kernels/cpu_activation.py``,
    ``gpu_activation.py``) are tested equal to. Returns an array of x's dtype and shape.
    """
    # Checked first: the formulas below read x.dtype and x.shape, which a list or None lacks.
    if not (isinstance(x, np.ndarray) or backend.is_gpu_array(x)):
        raise TypeError(f"relu_backward_reference: x must be a float array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"relu_backward_reference: x must be a float array, got dtype {x.dtype}")
    xp = backend.xp(x)
    if np.shape(g) != x.shape:
        raise ValueError(f"relu_backward_reference: g must have x's shape {x.shape}, got {np.shape(g)}")
    g = xp.asarray(g, dtype=x.dtype)
    slope = x.dtype.type(negative_slope)
    df = xp.where((x > low) & (x < high), 1, xp.where(x <= low, slope, 0)).astype(x.dtype)  # f'(x)
    rule = check_rule(rule)
    if rule == "gradient":
        return g * df                   # the chain rule
    if rule == "guided":
        return g * df * (g > 0)         # ...and only positive signal (Springenberg et al.)
    return g * (g > 0)                  # deconvnet: rectify the signal, ignore x (Zeiler & Fergus)


def rescale_backward(g: Any, x: Any, y: Any, fprime: Any, eps: float = 1e-10) -> Any:
    """DeepLIFT's rescale rule (Shrikumar et al. 2017, eq. 3): the batch is [inputs; references], and
    each half sends back g * (y - y_ref) / (x - x_ref), the same multiplier for both halves; where
    |x - x_ref| < eps, the ordinary gradient g * f'(x) of each half (as Captum)."""
    xp = backend.xp(x)
    half = x.shape[0] // 2
    if x.shape[0] != 2 * half:
        raise ValueError(f"rescale rule: the batch must hold inputs then their references (an even number of rows), "
                         f"got {x.shape[0]}")
    dx = x[:half] - x[half:]
    dy = y[:half] - y[half:]
    dx2, dy2 = xp.concatenate([dx, dx]), xp.concatenate([dy, dy])
    small = xp.abs(dx2) < eps
    return xp.where(small, g * fprime, g * dy2 / xp.where(small, 1, dx2))


def _relu_family(x: Tensor, low: float, high: float, negative_slope: float, op: str) -> Tensor:
    """f(x) = clip(x, low, high) (with ``negative_slope * x`` below ``low``) and its rule-aware backward.

    The backward reads the rule in force when ``backward()`` runs and computes
    ``relu_backward_reference(g, x, rule, low, high, negative_slope)`` (above) with the fused
    one-pass kernel of x's device, ``relu_rule_backward`` (tested equal to the reference).

    What it saves: the *output*, as PyTorch does. ``f'(x)`` can be read from it (``low < f(x) < high``
    exactly where ``low < x < high``, and ``f(x) <= low`` exactly where ``x <= low``, for any
    ``negative_slope >= 0``), so the input, usually a convolution's output, is freed during the
    forward pass. Only DeepLIFT's rescale rule needs the input itself: it is kept when the forward
    pass runs inside ``backward_rule("rescale")`` (``mv.vis.deeplift`` does that). In a lean graph
    (``lean_graph()``) it saves one byte per value instead: ``region`` is 0 where ``x <= low``, 1 where
    ``low < x < high`` and 2 where ``x >= high`` (or NaN), which the rule kernel reads as an input
    with ``(low, high) = (0.5, 1.5)``, so the same three rules apply, bit for bit.
    """
    xp = backend.xp(x.data)
    lean = is_lean()
    on_cpu = isinstance(x.data, np.ndarray)
    region = None
    if on_cpu and lean and not negative_slope:  # the output and the code a lean graph saves, in one pass
        out, region = cpu_activation.clip_region(x.data, low, high)
    else:
        out = cpu_activation.clip(x.data, low, high) if on_cpu else xp.clip(x.data, low, high)
    if negative_slope:
        out = xp.where(x.data > low, out, negative_slope * x.data).astype(x.dtype)
    saved_input = x.data if current_rule() == "rescale" and not lean else None
    if lean:  # where f was linear, clipped low, clipped high: the saved "input" and its bounds
        if region is None:
            region = backend.kernels("activation", out, op).relu_region(out, low, high)
        saved, bounds = region, (0.5, 1.5)
    else:
        saved, bounds = out, (low, high)

    def backward(g):
        if current_rule() == "rescale":  # DeepLIFT: the ratio of differences to the reference half
            if lean:
                raise lean_error(op, "the rescale rule")
            if saved_input is None:
                raise RuntimeError(f"{op}: the rescale rule needs the forward input, which is kept only when the "
                                   f"forward pass also runs inside backward_rule('rescale')")
            fprime = relu_backward_reference(xp.ones_like(g), saved_input, "gradient", low, high, negative_slope)
            return (rescale_backward(g, saved_input, saved, fprime),)
        rules = current_lrp()
        if rules is not None and rules.rule_for("relu").name == "pass":
            return (g,)  # LRP: relevance passes through the rectifier (Zennit's Pass)
        code = RULE_CODES[current_rule() if rules is None else "gradient"]  # read when backward runs
        kernels = backend.kernels("activation", g, op)  # cpu_activation (Numba) or gpu_activation (CUDA)
        # f'(x) from f(x) (or from the region code): see above
        return (kernels.relu_rule_backward(g, saved, *bounds, negative_slope, code),)

    return Tensor.from_op(out, (x,), backward, op)


def relu(x: Tensor) -> Tensor:
    """max(x, 0). Backward by rule (``relu_backward_reference``): gradient ``g*(x>0)``, guided
    ``g*(x>0)*(g>0)``, deconvnet ``g*(g>0)``."""
    return _relu_family(check_tensor(x, "relu"), 0.0, np.inf, 0.0, "relu")


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6) (MobileNet/EfficientNet-Lite). Its mask is ``0 < x < 6``; rules as for relu."""
    return _relu_family(check_tensor(x, "relu6"), 0.0, 6.0, 0.0, "relu6")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, ``negative_slope * x`` otherwise; f'(x) is 1 or ``negative_slope``, rules as for relu."""
    x = check_tensor(x, "leaky_relu")
    slope = check_float(negative_slope, "leaky_relu", "negative_slope", low=0.0)
    return _relu_family(x, 0.0, np.inf, slope, "leaky_relu")


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow; d/dx = s (1 - s)."""
    x = check_tensor(x, "sigmoid")
    xp = backend.xp(x.data)
    e = xp.exp(-xp.abs(x.data))
    out = xp.where(x.data >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)

    def backward(g):
        if current_rule() == "rescale":
            return (rescale_backward(g, x.data, out, out * (1 - out)),)
        return (g * out * (1 - out),)

    return Tensor.from_op(out, (x,), backward, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """tanh(x); d/dx = 1 - tanh(x)^2."""
    x = check_tensor(x, "tanh")
    out = backend.xp(x.data).tanh(x.data)

    def backward(g):
        if current_rule() == "rescale":
            return (rescale_backward(g, x.data, out, 1 - out * out),)
        return (g * (1 - out * out),)

    return Tensor.from_op(out, (x,), backward, "tanh")
