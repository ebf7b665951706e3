"""Normalisation layers: BatchNorm (1d/2d), InstanceNorm2d, LocalResponseNorm."""

from __future__ import annotations

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor
from minivis.nn.module import Module, Parameter
from minivis.validate import check_positive_int


class _BatchNorm(Module):
    """Normalise each channel by batch statistics (train) or running statistics (eval), then scale
    and shift: y = (x - mean) / sqrt(var + eps) * weight + bias (Ioffe & Szegedy 2015)."""

    expected_ndim = (2, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        check_positive_int(num_features, type(self).__name__, "num_features")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.expected_ndim:
            raise ValueError(f"{type(self).__name__}: input must have {self.expected_ndim} dims, got shape {x.shape}")
        if self.training:
            self._set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class BatchNorm2d(_BatchNorm):
    expected_ndim = (4,)


class BatchNorm1d(_BatchNorm):
    expected_ndim = (2,)


class InstanceNorm2d(Module):
    """Normalise each (image, channel) plane on its own (Ulyanov et al. 2016; style transfer)."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, self.weight, self.bias, self.eps)


class LocalResponseNorm(Module):
    """AlexNet's cross-channel normalisation: x / (k + alpha/size * sum_window x^2)^beta."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
