"""Layers and models in PyTorch's style: ``Module``, ``Parameter``, ``Sequential``, layers, hooks."""

from minivis.nn import init
from minivis.nn.activation import LeakyReLU, ReLU, ReLU6, Sigmoid, Tanh
from minivis.nn.container import Sequential
from minivis.nn.conv import Conv2d, ConvTranspose2d
from minivis.nn.hooks import capture, edit_output, forward_to
from minivis.nn.linear import Dropout, Flatten, Identity, Linear
from minivis.nn.module import HookHandle, Module, Parameter
from minivis.nn.norm import (
    BatchNorm1d,
    BatchNorm2d,
    InstanceNorm2d,
    LocalResponseNorm,
    batch_norm_act,
    conv_bn_act,
    conv_bn_fusable,
    fusion,
)
from minivis.nn.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from minivis.nn.replay import ForwardReplay

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dropout",
    "Flatten", "ForwardReplay", "HookHandle", "Identity", "InstanceNorm2d", "LeakyReLU", "Linear", "LocalResponseNorm",
    "MaxPool2d", "MaxUnpool2d", "Module", "Parameter", "ReLU", "ReLU6", "Sequential", "Sigmoid", "Tanh",
    "batch_norm_act", "capture", "conv_bn_act", "conv_bn_fusable", "edit_output", "forward_to", "fusion", "init",
]
