"""Let ``scipy.optimize.minimize`` (L-BFGS-B) drive tensors: an image, a spectrum, any leaves.

SciPy's quasi-Newton methods want a function of one flat float64 vector that returns the value
and the gradient. ``ScipyAdapter`` is that function for a closure written with minivis ops:

    flat float64 vector --unpack--> the tensors' .data (their own dtype and device)
    closure() -> scalar Tensor loss;  loss.backward()
    (loss, gradients) --pack--> (float, flat float64 vector)

Mahendran & Vedaldi (2015) inverted CNN features this way; L-BFGS builds a curvature model from
past gradients, so it needs neither a learning rate nor many steps for a smooth objective. The
closure must be deterministic (no random transforms): L-BFGS compares values across calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.optimize

from minivis import backend
from minivis.autograd import Tensor


class ScipyAdapter:
    """``fun(v) -> (value, grad)`` over the concatenated, flattened ``params`` (a list of leaf tensors)."""

    def __init__(self, params: Sequence[Tensor], closure: Callable[[], Tensor]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("ScipyAdapter: params is empty")
        for p in self.params:
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise TypeError(f"ScipyAdapter: params must be leaf tensors with requires_grad=True, got {p!r:.60}")
        if not callable(closure):
            raise TypeError(f"ScipyAdapter: closure must be callable () -> scalar Tensor, got {closure!r}")
        self.closure = closure
        self.sizes = [p.size for p in self.params]
        self.calls = 0

    def pack(self) -> np.ndarray:
        """The tensors' current values as one flat float64 vector."""
        return np.concatenate([backend.to_device(p.data, "cpu").astype(np.float64).ravel() for p in self.params])

    def unpack(self, v: np.ndarray) -> None:
        """Write the flat vector ``v`` back into the tensors (cast to their dtype and device)."""
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (sum(self.sizes),):
            raise ValueError(f"ScipyAdapter: expected a vector of {sum(self.sizes)} values, got shape {v.shape}")
        offset = 0
        for p, n in zip(self.params, self.sizes, strict=True):
            chunk = v[offset:offset + n].reshape(p.shape).astype(p.dtype)
            p.data = backend.to_device(chunk, p.device)
            offset += n

    def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        self.unpack(v)
        for p in self.params:
            p.grad = None
        loss = self.closure()
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise ValueError(f"ScipyAdapter: the closure must return a one-element Tensor, got "
                             f"{getattr(loss, 'shape', type(loss).__name__)}")
        loss.backward()
        grads = [np.zeros(p.size) if p.grad is None else
                 backend.to_device(p.grad, "cpu").astype(np.float64).ravel() for p in self.params]
        self.calls += 1
        return float(loss.item()), np.concatenate(grads)


def minimize_lbfgs(params: Sequence[Tensor], closure: Callable[[], Tensor], maxiter: int = 100,
                   bounds: Sequence[tuple[float | None, float | None]] | None = None,
                   callback: Callable[[np.ndarray], Any] | None = None,
                   options: dict[str, Any] | None = None) -> scipy.optimize.OptimizeResult:
    """Minimise ``closure()`` over ``params`` with L-BFGS-B; the tensors hold the solution afterwards.

    ``maxiter`` counts L-BFGS iterations (each may evaluate the closure more than once);
    ``callback(v)`` runs after each iteration; ``bounds`` is SciPy's per-element (low, high).
    Returns SciPy's ``OptimizeResult`` (``fun``, ``nit``, ``nfev``, ``message``, ...).
    """
    if not isinstance(maxiter, int | np.integer) or isinstance(maxiter, bool) or maxiter < 1:
        raise ValueError(f"minimize_lbfgs: maxiter must be an int >= 1, got {maxiter!r}")
    adapter = ScipyAdapter(params, closure)
    opts = {"maxiter": int(maxiter), "maxfun": 2 * int(maxiter) + 20}
    opts.update(options or {})
    result = scipy.optimize.minimize(adapter, adapter.pack(), jac=True, method="L-BFGS-B", bounds=bounds,
                                     callback=callback, options=opts)
    adapter.unpack(result.x)  # the last evaluation need not be at the returned point
    return result
