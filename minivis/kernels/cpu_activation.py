"""Fused elementwise kernel for the ReLU-family backward rules (see ``minivis.rules``)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _relu_rule_backward(g, x, low, high, negative_slope, rule_code, out):
    for i in numba.prange(g.size):
        gi = g[i]
        if rule_code == 2:  # deconvnet: rectify the signal going down, ignore the forward input
            out[i] = gi if gi > 0 else 0.0
            continue
        xi = x[i]
        if xi > low and xi < high:
            slope = 1.0
        elif xi <= low:
            slope = negative_slope
        else:
            slope = 0.0
        if rule_code == 1 and not gi > 0:  # guided: also needs a positive signal
            slope = 0.0
        out[i] = gi * slope


def relu_rule_backward(g: np.ndarray, x: np.ndarray, low: float, high: float, negative_slope: float,
                       rule_code: int) -> np.ndarray:
    """``g * f'(x)`` (gradient), ``g * f'(x) * (g > 0)`` (guided) or ``g * (g > 0)`` (deconvnet)
    in one pass over memory, where ``f'(x)`` is 1 on ``low < x < high``, ``negative_slope`` on
    ``x <= low`` and 0 on ``x >= high``. Rule codes are the indices of ``rules.RULES``."""
    g = np.ascontiguousarray(g, dtype=x.dtype)
    out = np.empty_like(g)
    _relu_rule_backward(g.reshape(-1), np.ascontiguousarray(x).reshape(-1), low, high, negative_slope,
                        rule_code, out.reshape(-1))
    return out


def naive_relu_rule_backward(g, x, low, high, negative_slope, rule_code):
    """Plain-NumPy twin of ``relu_rule_backward`` (the tests compare the two)."""
    if rule_code == 2:
        return g * (g > 0)
    slope = np.where((x > low) & (x < high), 1.0, np.where(x <= low, negative_slope, 0.0))
    out = g * slope
    return out * (g > 0) if rule_code == 1 else out
