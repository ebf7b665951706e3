"""Normalisation layers: BatchNorm (1d/2d), InstanceNorm2d, LocalResponseNorm."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor, is_grad_enabled
from minivis.nn.activation import ReLU, ReLU6
from minivis.nn.conv import Conv2d
from minivis.nn.module import _OBSERVER, Module, Parameter
from minivis.validate import check_array_size, check_bool, check_positive_int


class _BatchNorm(Module):
    """Normalise each channel by batch statistics (train) or running statistics (eval), then scale
    and shift: y = (x - mean) / sqrt(var + eps) * weight + bias (Ioffe & Szegedy 2015)."""

    expected_ndim = (2, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        check_positive_int(num_features, type(self).__name__, "num_features")
        check_array_size((num_features,), np.float32, type(self).__name__, "running statistics")
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


_FUSION = ContextVar("minivis_fusion", default=True)


@contextlib.contextmanager
def fusion(enabled: bool) -> Iterator[None]:
    """Within the block, ``batch_norm_act``, ``conv_bn_act`` and ``Sequential``'s conv + batch norm (+ ReLU)
    runs, conv + ReLU (+ 2x2 max-pool) runs (``nn.pool.conv_relu``) and ReLU + 2x2 max-pool pairs
    (``nn.pool.relu_max_pool``) fuse (True, the default) or always run the modules one by one.

    The results are the same bit for bit; turning fusion off shows each module's own op in the
    graph (and costs a pass over memory or more each way)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"fusion: enabled must be True or False, got {enabled!r}")
    token = _FUSION.set(enabled)
    try:
        yield
    finally:
        _FUSION.reset(token)


def fusion_enabled() -> bool:
    """Whether ``fusion`` is on here."""
    return _FUSION.get()


def _plain_eval_bn(bn: Module, types: tuple[type, ...]) -> bool:
    """An eval-mode batch norm of one of ``types`` (not a subclass), without hooks: its output is
    ``x * scale + shift`` and nothing needs to see it on its own."""
    return type(bn) in types and not bn.training and not bn._hooked()


def _plain_act(act: Module) -> bool:
    """A plain ReLU or ReLU6 without hooks."""
    return type(act) in (ReLU, ReLU6) and not act._hooked()


def batch_norm_act(bn: Module, act: Module, x: Tensor) -> Tensor:
    """``act(bn(x))``: a model's batch norm and the rectifier after it.

    Where nothing could tell the difference it runs them as one op, ``F.batch_norm_relu``: the
    batch norm in eval mode, the activation a plain ``ReLU`` or ``ReLU6``, neither module with a
    forward hook or pre-hook (a hook must see its module's own output, a pre-hook its own input,
    which it may replace), and ``fusion`` not turned off.
    Otherwise, and always in training mode, the two modules run as written.
    """
    if (fusion_enabled() and _plain_eval_bn(bn, (BatchNorm1d, BatchNorm2d)) and _plain_act(act)
            and isinstance(x, Tensor) and x.ndim in bn.expected_ndim):
        return F.batch_norm_relu(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps,
                                 6.0 if type(act) is ReLU6 else np.inf)
    return act(bn(x))


def conv_bn_fusable(conv: Module, bn: Module, act: Module | None, x: Any) -> bool:
    """Whether ``conv_bn_act(conv, bn, act, x)`` runs as one op: for inference, where nothing could tell.

    A plain ``Conv2d`` and eval ``BatchNorm2d`` (and a plain ``ReLU``/``ReLU6``, or no rectifier),
    none with a hook; ``fusion`` on; no ``observe_forward`` observer (``ForwardReplay`` must see each
    module's call); and no graph recorded (``no_grad()``, or nothing requires grad): the backward
    pass would need the convolution's own node.
    """
    return (type(conv) is Conv2d and not conv._hooked() and _plain_eval_bn(bn, (BatchNorm2d,))
            and (act is None or _plain_act(act)) and fusion_enabled() and isinstance(x, Tensor) and x.ndim == 4
            and _OBSERVER.get() is None
            and not (is_grad_enabled() and any(t is not None and t.requires_grad
                                               for t in (x, conv.weight, conv.bias, bn.weight, bn.bias))))


def conv_bn_act(conv: Module, bn: Module, act: Module | None, x: Tensor) -> Tensor:
    """``act(bn(conv(x)))``: a model's convolution, its batch norm and the rectifier after them
    (``act=None``: ``bn(conv(x))``, no rectifier).

    Where ``conv_bn_fusable`` says so, the three run as one op, ``F.conv2d_bn_relu`` (``F.conv2d_bn``),
    the values bit for bit the same; otherwise the modules run as written (``batch_norm_act`` for the
    last two). ``Sequential`` does this for its Conv2d, BatchNorm2d (, ReLU) runs.
    """
    if conv_bn_fusable(conv, bn, act, x):
        args = (x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        stats = dict(running_mean=bn.running_mean, running_var=bn.running_var, bn_weight=bn.weight,
                     bn_bias=bn.bias, eps=bn.eps)
        if act is None:
            return F.conv2d_bn(*args, **stats)
        return F.conv2d_bn_relu(*args, **stats, max_value=6.0 if type(act) is ReLU6 else np.inf)
    return bn(conv(x)) if act is None else batch_norm_act(bn, act, conv(x))


class InstanceNorm2d(Module):
    """Normalise each (image, channel) plane on its own (Ulyanov et al. 2016; style transfer)."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__()
        check_positive_int(num_features, "InstanceNorm2d", "num_features")
        check_array_size((num_features,), np.float32, "InstanceNorm2d", "weight")
        affine = check_bool(affine, "InstanceNorm2d", "affine")
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
