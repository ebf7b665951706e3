"""Weight initialisation, seeded from one module-level generator (``seed(n)`` makes models reproducible)."""

from __future__ import annotations

import math

import numpy as np

from minivis.validate import check_array_size

_rng = np.random.default_rng(0)


def seed(value: int) -> None:
    """Reseed the generator every layer constructor draws its initial weights from."""
    global _rng
    _rng = np.random.default_rng(value)


def generator() -> np.random.Generator:
    return _rng


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, dtype=np.float32, owner: str = "init") -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv and Linear weights and biases
    (kaiming_uniform with a=sqrt(5) reduces to this bound). ``owner`` names the layer in errors."""
    check_array_size(shape, np.float64, owner, "weight")  # drawn in float64 first
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal(shape: tuple[int, ...], fan_in: int, dtype=np.float32, owner: str = "init") -> np.ndarray:
    """N(0, 2/fan_in) (He et al. 2015): keeps activation variance through ReLU layers."""
    check_array_size(shape, np.float64, owner, "weight")
    return (_rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)
