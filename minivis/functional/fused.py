"""A convolution, its rectifier and the 2x2 max-pool after it, as one op for inference.

VGG-style nets repeat conv -> ReLU (-> 2x2 max-pool). Run as three ops, the convolution writes its
whole output, the rectifier reads it and writes it again, the pool reads it once more. Where no
graph is recorded nothing needs those intermediate maps, so ``conv2d_relu`` rectifies each output
as the convolution writes it, and ``conv2d_relu_max_pool2d`` goes one step further on the fused
Winograd kernel (``cpu_winograd_fused``): a 2x2 output tile of Winograd F(2x2, 3x3) *is* a 2x2
pool window, so the pool takes the maximum of the tile's four outputs while they are in registers'
reach and only the pooled map (a quarter of the output) and its switches reach memory.

The values (and switches) are those of the separate ops, bit for bit: max commutes with the
rectifier, the pool compares the rectified taps in the window order of ``cpu_pool``'s 2x2 kernel
with the same rule for ties and NaN. Training fuses too: in a lean graph the pooled op's result
carries ``relu_max_pool2d``'s backward pass on ``conv2d``'s, neither of which reads the
convolution's output. Where a full graph is recorded (LRP and DeepLIFT read what it keeps), under
DeepLIFT's rescale rule, or off the CPU, the separate ops run. ``mv.nn.Sequential`` calls these for
its Conv2d, ReLU (, MaxPool2d) runs where nothing could tell the difference (``nn.pool.conv_relu``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, is_grad_enabled, is_lean
from minivis.functional import activation, conv, pool
from minivis.functional.norm import _check_max_value
from minivis.kernels import conv_plan, cpu_activation, cpu_pool
from minivis.rules import current_rule
from minivis.validate import check_bool


def checked(op: str, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
            max_value: Any) -> tuple[tuple, tuple[int, int]]:
    """The arguments checked as ``conv2d`` checks them (errors named ``op``), and the convolution's output
    size: ((x, weight, bias, stride, pad4, dilation, groups), out_hw). ``nn.pool.conv_relu`` checks once,
    names errors as the convolution's, and reads out_hw to decide whether the pool joins."""
    _check_max_value(op, max_value)
    args = conv.conv2d_args(op, x, weight, bias, stride, padding, dilation, groups)
    x, weight, _, stride, pad4, dilation, _ = args
    return args, conv_plan.output_hw(x.shape[2:], weight.shape[2:], stride, pad4, dilation)


def fused(args: tuple, out_hw: tuple[int, int], max_value: float, max_pool: bool) -> tuple[Tensor, Any] | None:
    """The fused forward pass on ``checked`` arguments as a tensor (and switches), or None where the
    separate ops must run.

    Where a graph is recorded, only the pooled op in a lean graph fuses (``relu_max_pool2d``'s terms: a
    plain ReLU, whose rules need only the pooled output and switches): its result carries the two
    ops' own backward passes, ``relu_max_pool2d``'s on ``conv2d``'s, whose node never reads the
    convolution's output, so no output is written for it (a zero-strided stand-in gives its shape)."""
    x, weight, bias, stride, pad4, dilation, groups = args
    recorded = is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if current_rule() == "rescale" or not isinstance(x.data, np.ndarray):
        return None
    if recorded and not (max_pool and max_value == np.inf and is_lean()):
        return None
    out, switches = _forward(x.data, weight.data, None if bias is None else bias.data, stride, pad4, dilation,
                             groups, out_hw, max_value, max_pool, recorded)
    if switches is not None:  # as max_pool2d's: a read-only view (the graph's own, where one is recorded)
        switches.flags.writeable = False
        switches = switches.view()
    if not recorded:
        return Tensor(out), switches
    stand_in = np.broadcast_to(np.zeros((), out.dtype), (x.shape[0], weight.shape[0], *out_hw))
    y = conv.conv2d_node(stand_in, x, weight, bias, stride, pad4, dilation, groups)
    return pool.relu_max_pool2d_node(y, out, switches), switches


def _separate(args: tuple, max_value: float) -> Tensor:
    """The convolution and its rectifier as the two ops (their graph recorded as usual)."""
    x, weight, bias, stride, pad4, dilation, groups = args
    y = conv.conv2d(x, weight, bias, stride, pad4, dilation, groups)
    return activation.relu(y) if max_value == np.inf else activation.relu6(y)


def _forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple, pad4: tuple, dilation: tuple,
             groups: int, out_hw: tuple, max_value: float, max_pool: bool, kept: bool) -> tuple[np.ndarray, Any]:
    """The arrays: the rectified output, or the pooled output and its switches (``kept``: a graph keeps
    them; the fused kernel's pooled outputs always come from the allocator)."""
    kernels = backend.kernels("conv", x, "conv2d")
    how = conv.forward_algorithm(kernels, x, w, stride, pad4, dilation, groups)
    if how == "winograd_fused":
        out = conv_plan.winograd_fused_forward(np.ascontiguousarray(x), w, pad4, out_hw, b,
                                               (None, None, 0.0, max_value), max_pool)
        return out if max_pool else (out, None)
    if how == "direct":  # rectified as each output row is written, by the thread that wrote it
        y = conv_plan.direct_forward(np.ascontiguousarray(x), w, stride, pad4, dilation, out_hw, b,
                                     (None, None, 0.0, max_value))
    else:
        y = conv.conv2d_forward(x, w, stride, pad4, dilation, groups, b)
    if how != "direct" and not (max_pool and max_value == np.inf):
        cpu_activation.clip_(y, 0.0, max_value)  # in place: the output is ours
    if not max_pool:
        return y, None
    # the pool kernel rectifies each tap as it reads it: the ReLU itself, or nothing on taps clipped already
    n, c = y.shape[:2]
    out, switches = cpu_pool.relu_max_pool2x2(y.reshape(n * c, *out_hw), kept)
    return out.reshape(n, c, *out.shape[1:]), switches.reshape(n, c, *out.shape[1:])


def conv2d_relu(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                groups: int = 1, *, max_value: float = np.inf) -> Tensor:
    """``relu(conv2d(x, weight, bias, ...))`` (``relu6`` at ``max_value=6``), for inference.

    Where no graph is recorded (inside ``no_grad()``, or nothing here requires grad), on the CPU, each
    output is rectified as the convolution writes it (the fused Winograd and direct kernels) or in place
    right after (the other algorithms): no second map. Otherwise the two ops run. The same bits either way.
    """
    args, out_hw = checked("conv2d_relu", x, weight, bias, stride, padding, dilation, groups, max_value)
    result = fused(args, out_hw, max_value, False)
    return _separate(args, max_value) if result is None else result[0]


def conv2d_relu_max_pool2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                           dilation: Any = 1, groups: int = 1, *, max_value: float = np.inf,
                           return_switches: bool = False) -> Tensor | tuple[Tensor, Any]:
    """``max_pool2d(relu(conv2d(x, weight, bias, ...)), 2)``, for inference: with ``return_switches`` also
    the pool's switches (flat indices into the convolution's output planes, as ``max_pool2d`` gives them).

    On the fused Winograd kernel (stride-1 3x3 layers of 32-128 channels on AVX-512 CPUs) the pool
    takes each tile's maximum before anything is written; on the other algorithms the rectified
    output goes through ``cpu_pool``'s 2x2 kernel. In a lean graph (``mv.lean_graph()``, as training
    records) with ``max_value=inf`` the result carries ``relu_max_pool2d``'s and ``conv2d``'s backward
    passes (the same gradients, bit for bit, as the separate ops in a lean graph); where a full graph
    is recorded, the three ops run.
    """
    op = "conv2d_relu_max_pool2d"
    return_switches = check_bool(return_switches, op, "return_switches")
    args, out_hw = checked(op, x, weight, bias, stride, padding, dilation, groups, max_value)
    if min(out_hw) < 2:
        raise ValueError(f"{op}: the convolution's output must be at least 2x2 for a 2x2 pool, got "
                         f"{out_hw[0]}x{out_hw[1]}")
    result = fused(args, out_hw, max_value, True)
    if result is None:
        out, switches = pool.max_pool2d(_separate(args, max_value), 2, return_switches=True)
    else:
        out, switches = result
    return (out, switches) if return_switches else out
