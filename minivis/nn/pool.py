"""Pooling layers. ``MaxPool2d`` keeps the switches of its last forward pass in ``.switches``
(the argmax locations), which is what a literal DeconvNet needs to unpool."""

from __future__ import annotations

from typing import Any

from minivis import functional as F
from minivis.autograd import Tensor, is_grad_enabled, is_lean
from minivis.nn.activation import ReLU
from minivis.nn.module import Module, call_forward
from minivis.nn.norm import fusion_enabled


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
    if not (fusion_enabled() and type(act) is ReLU and type(pool) is MaxPool2d and not act._hooked()
            and not pool._hooked() and isinstance(x, Tensor) and x.ndim == 4 and x.device == "cpu"
            and min(x.shape[2:]) >= 2):
        return None
    if pool.kernel_size not in (2, (2, 2)) or pool.stride not in (None, 2, (2, 2)) or pool.padding not in (0, (0, 0)) \
            or pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
        return None
    if is_grad_enabled() and x.requires_grad and not is_lean():
        return None

    def fused(x: Tensor) -> Tensor:
        out, pool.switches = F.relu_max_pool2d(x, return_switches=True)
        return out

    return call_forward((act, pool), fused, (x,), {})


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
