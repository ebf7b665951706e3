"""Inverted dropout (Srivastava et al. 2014): zero each unit with probability ``p`` while training
and scale the survivors by ``1 / (1 - p)``, so the expected activation is unchanged and
evaluation needs no rescaling. Shapes: any; the output has the input's shape.

    y = x * m / (1 - p),  m ~ Bernoulli(1 - p) elementwise;   dL/dx = g * m / (1 - p)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.validate import check_bool, check_float, check_seed, check_tensor


def _generator(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(check_seed(rng, "dropout", "rng"))
    raise TypeError(f"dropout: rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def dropout(x: Any, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Inverted dropout of ``x``; returns ``x`` itself when ``training`` is False or ``p == 0``.

    p: drop probability in [0, 1). rng: a ``numpy.random.Generator`` (advanced in place), an int
    seed (the same seed gives the same mask) or None (fresh entropy).
    """
    x = check_tensor(x, "dropout")
    p = check_float(p, "dropout", "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    generator = _generator(rng)
    if not check_bool(training, "dropout", "training") or p == 0:
        return x

    # The mask is drawn on the host from NumPy's generator (then moved to x's device), so a seed
    # gives the same mask on CPU and GPU and in float32 and float64.
    keep = generator.random(x.shape) >= p
    scaled_mask = backend.to_device(keep.astype(x.dtype) / x.dtype.type(1.0 - p), x.device)
    return Tensor.from_op(x.data * scaled_mask, (x,), lambda g: (g * scaled_mask,), "dropout")
