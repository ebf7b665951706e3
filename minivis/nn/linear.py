"""Linear, Flatten, Dropout and Identity layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor
from minivis.nn import init
from minivis.nn.module import Module, Parameter
from minivis.validate import check_float, check_positive_int, check_seed


class Linear(Module):
    """y = x W^T + b with weight (out_features, in_features), as PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            check_positive_int(value, "Linear", name)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.uniform_fan_in((out_features, in_features), in_features, owner="Linear"))
        self.bias = Parameter(init.uniform_fan_in((out_features,), in_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)


class Dropout(Module):
    """Inverted dropout while training; the identity in eval mode."""

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        p = check_float(p, "Dropout", "p")
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        seed = check_seed(seed, "Dropout")
        self.p = p
        # Unseeded dropout draws its seed from the init generator, so init.seed(n) fixes training runs too.
        self.rng = np.random.default_rng(init.generator().integers(2**63) if seed is None else seed)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Identity(Module):
    def forward(self, x: Any) -> Any:
        return x
