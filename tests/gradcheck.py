"""Float64 finite-difference checks shared by the op tests (DESIGN.md section 4).

``check_gradients(op, arrays)`` runs ``op`` on float64 tensors, backpropagates a *random*
upstream gradient ``u`` (not ``.sum()``, which would hide transposition bugs) and compares
every input's gradient with central differences of ``<u, op(x)>``: element by element for
small inputs, along random directions for large ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import minivis as mv

FULL_CHECK_LIMIT = 400  # inputs with at most this many elements are checked element by element


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||): scale-free, 0 when both are 0."""
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def _scalar(op: Callable, arrays: Sequence[np.ndarray], upstream: np.ndarray) -> float:
    with mv.no_grad():
        out = op(*[mv.tensor(a, dtype=np.float64) for a in arrays])
    return float(np.sum(out.numpy() * upstream))


def analytic_gradients(op: Callable, arrays: Sequence[np.ndarray], upstream: np.ndarray,
                       wrt: Sequence[int] | None = None) -> list[np.ndarray | None]:
    wrt = range(len(arrays)) if wrt is None else wrt
    tensors = [mv.tensor(a, dtype=np.float64, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = op(*tensors)
    out.backward(upstream)
    return [t.grad if i in wrt else None for i, t in enumerate(tensors)]


def check_gradients(op: Callable, arrays: Sequence[np.ndarray], rng: np.random.Generator | None = None,
                    eps: float = 1e-6, rtol: float = 1e-7, wrt: Sequence[int] | None = None,
                    directions: int = 6) -> None:
    """Assert that ``op``'s backward matches central differences for each input in ``wrt``."""
    rng = np.random.default_rng(0) if rng is None else rng
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    with mv.no_grad():
        out_shape = op(*[mv.tensor(a, dtype=np.float64) for a in arrays]).shape
    upstream = rng.standard_normal(out_shape)
    grads = analytic_gradients(op, arrays, upstream, wrt)
    for i in wrt:
        analytic = grads[i]
        assert analytic is not None, f"input {i} got no gradient"
        assert analytic.shape == arrays[i].shape

        def shifted(step, i=i):
            moved = list(arrays)
            moved[i] = arrays[i] + step
            return _scalar(op, moved, upstream)

        if arrays[i].size <= FULL_CHECK_LIMIT:
            numeric = np.zeros_like(arrays[i])
            for j in range(arrays[i].size):
                e = np.zeros(arrays[i].size)
                e[j] = eps
                e = e.reshape(arrays[i].shape)
                numeric.flat[j] = (shifted(e) - shifted(-e)) / (2 * eps)
            err = relative_error(analytic, numeric)
            assert err < rtol, f"input {i}: relative error {err:.3e} (elementwise finite differences)"
        else:
            for _ in range(directions):
                v = rng.standard_normal(arrays[i].shape)
                v /= np.linalg.norm(v)
                numeric = (shifted(eps * v) - shifted(-eps * v)) / (2 * eps)
                exact = float(np.sum(analytic * v))
                # Scale by ||grad|| (= the largest |<grad, v>| over unit v): dividing by |<grad, v>| itself
                # blows up whenever a random v happens to be nearly orthogonal to the gradient.
                err = abs(exact - numeric) / max(np.linalg.norm(analytic), 1e-300)
                assert err < rtol, f"input {i}: relative error {err:.3e} along a random direction"
