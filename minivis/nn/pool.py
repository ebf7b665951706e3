"""Pooling layers. ``MaxPool2d`` keeps the switches of its last forward pass in ``.switches``
(the argmax locations), which is what a literal DeconvNet needs to unpool."""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor, is_grad_enabled, is_lean
from minivis.functional import fused as Ffused
from minivis.nn.activation import ReLU, ReLU6
from minivis.nn.conv import Conv2d
from minivis.nn.module import _OBSERVER, Module, call_forward
from minivis.nn.norm import _plain_act, fusion_enabled
from minivis.rules import current_rule


class MaxPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.switches = None

    def forward(self, x: Tensor) -> Tensor:
        out, self.switches = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                          self.ceil_mode, return_switches=True)
        return out

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _plain_pool2x2(pool: Module) -> bool:
    """A ``MaxPool2d`` of kernel 2, stride 2, no padding, dilation or ceil mode, without hooks."""
    return (type(pool) is MaxPool2d and not pool._hooked() and pool.kernel_size in (2, (2, 2))
            and pool.stride in (None, 2, (2, 2)) and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1))
            and not pool.ceil_mode)


def relu_max_pool(act: Module, pool: Module, x: Any) -> Tensor | None:
    """``pool(act(x))`` as one op, ``F.relu_max_pool2d``, where nothing could tell; else None.

    Sequential calls this for each pair of neighbours. It fuses a plain ``ReLU`` and a 2x2, stride-2
    ``MaxPool2d`` without padding, dilation or ceil mode, neither with a forward hook or pre-hook
    (the pool's pre-hook must see, and may replace, the ReLU's output), on a CPU tensor, with
    ``fusion`` on, and only where the backward pass can be just the gradient or the ReLU rules: in
    a lean graph (``mv.lean_graph()``) or where no graph is recorded. (A full graph keeps what LRP
    and DeepLIFT need, which the fused op does not.) The pool's ``switches`` are set as its own
    forward would set them.
    """
    if not (fusion_enabled() and type(act) is ReLU and not act._hooked() and _plain_pool2x2(pool)
            and isinstance(x, Tensor) and x.ndim == 4 and x.device == "cpu" and min(x.shape[2:]) >= 2):
        return None
    if is_grad_enabled() and x.requires_grad and not is_lean():
        return None

    def fused(x: Tensor) -> Tensor:
        out, pool.switches = F.relu_max_pool2d(x, return_switches=True)
        return out

    return call_forward((act, pool), fused, (x,), {})


def conv_relu(conv: Module, act: Module, pool: Module | None, x: Any) -> tuple[Tensor, int] | None:
    """``pool(act(conv(x)))`` as one op, ``F.conv2d_relu_max_pool2d``, or ``act(conv(x))``,
    ``F.conv2d_relu``, where nothing could tell: (output, number of modules run: 3 or 2); else None.

    A plain ``Conv2d`` and ``ReLU`` or ``ReLU6``, none with a hook; ``fusion`` on; a CPU tensor; no
    ``observe_forward`` observer (``ForwardReplay`` must see each module's call); no rescale rule
    (DeepLIFT's reference pass keeps the rectifier's input); and no graph recorded, except a lean
    one (``mv.lean_graph()``, training) for a ReLU and its pool: the fused result then carries the
    ReLU-and-pool and convolution backward passes. The pool joins where it is a plain 2x2
    ``MaxPool2d`` (``relu_max_pool``'s terms) and the convolution's output is at least 2x2; otherwise
    it runs as written, and fails there if it must. The convolution's arguments are checked as ``conv2d`` checks
    them, so that a wrong input is named as the convolution's. The pool's ``switches`` are set as its
    own forward would set them.
    """
    if not (fusion_enabled() and type(conv) is Conv2d and not conv._hooked() and _plain_act(act)
            and isinstance(x, Tensor) and x.ndim == 4 and x.device == "cpu" and _OBSERVER.get() is None
            and current_rule() != "rescale"):
        return None
    recorded = is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, conv.weight, conv.bias))
    if recorded and not (is_lean() and type(act) is ReLU and pool is not None and _plain_pool2x2(pool)):
        return None
    max_value = 6.0 if type(act) is ReLU6 else np.inf
    args, out_hw = Ffused.checked("conv2d", x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                  conv.groups, max_value)  # once, and named as the convolution's own call
    with_pool = pool is not None and _plain_pool2x2(pool) and min(out_hw) >= 2
    if recorded and not with_pool:
        return None
    result = Ffused.fused(args, out_hw, max_value, with_pool)
    if result is None:
        return None
    if with_pool:
        pool.switches = result[1]
    return result[0], 3 if with_pool else 2


class MaxUnpool2d(Module):
    """Place each value back where its switch says the maximum came from; zeros elsewhere."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor, switches: Any, output_size: Any = None) -> Tensor:
        return F.max_unpool2d(x, switches, self.kernel_size, self.stride, self.padding, output_size)


class AvgPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
