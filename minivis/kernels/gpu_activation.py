"""GPU kernel for the ReLU-family backward rules (Numba-CUDA): the same function as ``cpu_activation``.

One thread per element, the same branches as ``cpu_activation._rule_one`` (on the rule codes
``rules.GRADIENT``, ``GUIDED``, ``DECONVNET``), so the results are bit-identical to the CPU's and
to the plain reference ``relu_backward_reference`` in ``minivis/functional/activation.py``. One
read of ``g`` and ``x`` and one write per element: this kernel is bound by memory bandwidth.
"""

from __future__ import annotations

from typing import Any

from numba import cuda

from minivis import backend
from minivis.kernels.cpu_activation import naive_relu_region as relu_region  # noqa: F401 (array code: CuPy too)
from minivis.kernels.gpu_launch import launch
from minivis.rules import DECONVNET, GUIDED


@cuda.jit
def _relu_rule_backward(g, x, low, high, negative_slope, rule_code, out):
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        gi = g[i]
        if rule_code == DECONVNET:  # deconvnet: rectify the signal going down, ignore the forward input
            out[i] = gi if gi > 0 else 0.0
            continue
        xi = x[i]
        if xi > low and xi < high:
            slope = 1.0
        elif xi <= low:
            slope = negative_slope
        else:
            slope = 0.0
        if rule_code == GUIDED and not gi > 0:  # guided: also needs a positive signal
            slope = 0.0
        out[i] = gi * slope


def relu_rule_backward(g: Any, x: Any, low: float, high: float, negative_slope: float, rule_code: int) -> Any:
    """``g * f'(x)`` (gradient), ``g * f'(x) * (g > 0)`` (guided) or ``g * (g > 0)`` (deconvnet),
    where ``f'(x)`` is 1 on ``low < x < high``, ``negative_slope`` on ``x <= low`` and 0 on
    ``x >= high``. g, x: same shape, on the GPU -> an array of x's dtype and shape."""
    xp = backend.xp(x)
    dtype = x.dtype if x.dtype.kind == "f" else g.dtype  # x may be a lean graph's int8 region code
    g = xp.asarray(g, dtype=dtype, order="C")
    negative_slope = dtype.type(negative_slope)  # in the op's dtype, so g * slope rounds like the CPU kernel
    out = xp.empty_like(g)
    launch(_relu_rule_backward, g.size, g, g.reshape(-1), xp.asarray(x, order="C").reshape(-1),
           float(low), float(high), negative_slope, int(rule_code), out.reshape(-1))
    return out
