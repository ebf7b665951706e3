"""Sequential: layers applied in order, named "0", "1", ... (or by an OrderedDict's keys)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from minivis.nn.module import Module
from minivis.nn.pool import relu_max_pool


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
            # a ReLU and a 2x2 max-pool run as one op where nothing can tell (nn/pool.py, relu_max_pool)
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
