"""SGD and Adam in PyTorch's formulation, for model weights or for an image being optimised.

Both update ``param.data`` in place from ``param.grad``; call ``zero_grad()`` between steps
(gradients accumulate, as in PyTorch). Parameters may be any leaf tensors with
``requires_grad=True`` (an input image too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from minivis import backend
from minivis.autograd import Tensor


class Optimizer:
    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: params is empty")
        for p in self.params:
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: params must be leaf tensors with requires_grad=True, "
                                f"got {p!r:.60}")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        self.lr = float(lr)
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                self._update(p, p.grad, self.state.setdefault(id(p), {}))

    def _update(self, p: Tensor, g, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """v <- momentum * v + (g + wd * p);  p <- p - lr * (g + momentum * v if nesterov else v)."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, p: Tensor, g, state: dict) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            if "velocity" not in state:
                state["velocity"] = g.copy()
            else:
                state["velocity"] = self.momentum * state["velocity"] + g
            g = g + self.momentum * state["velocity"] if self.nesterov else state["velocity"]
        p.data = (p.data - self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    """Kingma & Ba 2015: bias-corrected first and second moment estimates of the gradient."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, p: Tensor, g, state: dict) -> None:
        xp = backend.xp(p.data)
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        b1, b2 = self.betas
        t = state["step"] = state.get("step", 0) + 1
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        step = self.lr / (1 - b1 ** t) * m / (xp.sqrt(v / (1 - b2 ** t)) + self.eps)
        p.data = (p.data - step).astype(p.dtype, copy=False)


class StepLR:
    """Multiply the optimiser's learning rate by ``gamma`` every ``step_size`` calls to ``step()``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self) -> None:
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)


class CosineLR:
    """Anneal the learning rate along half a cosine, as PyTorch's ``CosineAnnealingLR``:

        lr_t = eta_min + (lr_0 - eta_min) (1 + cos(pi t / T_max)) / 2,   t = calls to ``step()``

    Large steps early, ever smaller ones near ``T_max``: a noisy objective (a small random batch)
    settles instead of hovering at the noise floor of a constant step.
    """

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0) -> None:
        if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1:
            raise ValueError(f"CosineLR: t_max must be an int >= 1, got {t_max!r}")
        if not 0 <= eta_min < optimizer.lr:
            raise ValueError(f"CosineLR: eta_min must be in [0, lr={optimizer.lr}), got {eta_min!r}")
        self.optimizer, self.t_max, self.eta_min = optimizer, t_max, float(eta_min)
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self) -> None:
        self.epoch += 1
        t = min(self.epoch, self.t_max)
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.t_max)) / 2
