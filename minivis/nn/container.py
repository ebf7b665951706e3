"""Sequential: layers applied in order, named "0", "1", ... (or by an OrderedDict's keys)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from minivis.nn.activation import ReLU, ReLU6
from minivis.nn.module import Module
from minivis.nn.norm import conv_bn_act, conv_bn_fusable
from minivis.nn.pool import conv_relu, relu_max_pool


class Sequential(Module):
    def __init__(self, *layers: Module | OrderedDict) -> None:
        super().__init__()
        named = layers[0].items() if len(layers) == 1 and isinstance(layers[0], OrderedDict) else (
            (str(i), layer) for i, layer in enumerate(layers))
        for name, layer in named:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {name} must be a Module, got {type(layer).__name__}")
            setattr(self, name, layer)

    def forward(self, x: Any) -> Any:
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            # a Conv2d, BatchNorm2d (and ReLU) for inference, a Conv2d, ReLU (and 2x2 max-pool) for inference,
            # and a ReLU and 2x2 max-pool, run as one op where nothing can tell (nn/norm.py, conv_bn_fusable;
            # nn/pool.py, conv_relu and relu_max_pool)
            if i + 1 < len(layers):
                act = layers[i + 2] if i + 2 < len(layers) and type(layers[i + 2]) in (ReLU, ReLU6) else None
                if conv_bn_fusable(layers[i], layers[i + 1], act, x):
                    x, i = conv_bn_act(layers[i], layers[i + 1], act, x), i + (2 if act is None else 3)
                    continue
                fused = conv_relu(layers[i], layers[i + 1], layers[i + 2] if i + 2 < len(layers) else None, x)
                if fused is not None:
                    x, i = fused[0], i + fused[1]
                    continue
            fused = relu_max_pool(layers[i], layers[i + 1], x) if i + 1 < len(layers) else None
            if fused is None:
                x, i = layers[i](x), i + 1
            else:
                x, i = fused, i + 2
        return x

    def __getitem__(self, index: int | slice) -> Module:
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return layers[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, layer: Module) -> Sequential:
        setattr(self, str(len(self)), layer)
        return self
