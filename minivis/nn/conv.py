"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` (weights as in PyTorch)."""

from __future__ import annotations

from typing import Any

from minivis import functional as F
from minivis.autograd import Tensor
from minivis.nn import init
from minivis.nn.module import Module, Parameter
from minivis.validate import check_positive_int, int_pair


def _check_channels(op: str, in_channels: int, out_channels: int, groups: int) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        check_positive_int(value, op, name)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                         f"must both be divisible by groups ({groups})")


class Conv2d(Module):
    """y = conv2d(x, weight, bias): weight (out_channels, in_channels/groups, kh, kw), bias (out_channels,).

    ``padding`` also takes ``"same"`` (TensorFlow's SAME, valid for any stride) and 4-tuples
    (top, bottom, left, right).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        _check_channels("Conv2d", in_channels, out_channels, groups)
        kh, kw = int_pair(kernel_size, "Conv2d", "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(init.uniform_fan_in((out_channels, in_channels // groups, kh, kw), fan_in,
                                                     owner="Conv2d"))
        self.bias = Parameter(init.uniform_fan_in((out_channels,), fan_in)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}" + (f", groups={self.groups}" if self.groups > 1 else ""))


class ConvTranspose2d(Module):
    """The adjoint of Conv2d: weight (in_channels, out_channels/groups, kh, kw), bias (out_channels,)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1) -> None:
        super().__init__()
        _check_channels("ConvTranspose2d", in_channels, out_channels, groups)
        kh, kw = int_pair(kernel_size, "ConvTranspose2d", "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups, self.dilation = groups, dilation
        fan_in = out_channels // groups * kh * kw  # PyTorch computes fan_in from weight.shape[1:]
        self.weight = Parameter(init.uniform_fan_in((in_channels, out_channels // groups, kh, kw), fan_in,
                                                     owner="ConvTranspose2d"))
        self.bias = Parameter(init.uniform_fan_in((out_channels,), fan_in)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
