"""Total variation ``TV^beta`` (``minivis.vis.synthesis.regularizers.tv``) and its gradient, one pass each.

    TV^beta(x) = sum_{c, i < H-1, j < W-1} s_cij^(beta/2),   s = dx^2 + dy^2 + eps
    dx_cij = x_{c,i,j+1} - x_cij,   dy_cij = x_{c,i+1,j} - x_cij

The array code ``regularizers.tv_reference`` is the reference (and the GPU path): it makes some fifteen
passes over the image and its slices. Here each plane is read once forward and once backward.
The backward is written as a *gather*: with ``u = w dx`` and ``v = w dy``, where
``w = beta g s^(beta/2 - 1)``, pixel (i, j) receives

    grad_ij = u_{i,j-1} + v_{i-1,j} - (u_ij + v_ij)

(each term only where that difference exists), so every output is written once, by one loop
over a row that vectorises; a scatter (``grad[i, j+1] += u_ij``) would chain the iterations.
For beta = 2 the weight is the constant ``2 g`` and no power is taken. Sums in float64.
``tests/kernels/test_cpu_tv.py`` checks both against the reference.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _weights_of_row(p, i, beta, eps, gw, u, v):
    """u, v = w dx, w dy along row i of plane p (length W - 1), w = beta g s^(beta/2 - 1)."""
    row, below = p[i], p[i + 1]
    if beta == 2.0:  # w = 2 g: no power
        for j in range(row.shape[0] - 1):
            u[j] = gw * (row[j + 1] - row[j])
            v[j] = gw * (below[j] - row[j])
    else:
        for j in range(row.shape[0] - 1):
            dx, dy = np.float64(row[j + 1] - row[j]), np.float64(below[j] - row[j])
            w = gw * (dx * dx + dy * dy + eps) ** (beta / 2 - 1)
            u[j] = w * dx
            v[j] = w * dy


@numba.njit(cache=True)
def _tv_forward(x, beta, eps, out):
    n, c, h, w_px = x.shape
    for k in range(n):
        total = 0.0
        for ch in range(c):
            p = x[k, ch]
            for i in range(h - 1):
                for j in range(w_px - 1):
                    dx = np.float64(p[i, j + 1] - p[i, j])  # the difference in x's dtype, as the array code
                    dy = np.float64(p[i + 1, j] - p[i, j])
                    s = dx * dx + dy * dy + eps
                    total += s if beta == 2.0 else s ** (beta / 2)
        out[k] = total


@numba.njit(cache=True)
def _tv_backward(x, g, beta, eps, grad):
    n, c, h, w_px = x.shape
    u = np.empty(w_px - 1, dtype=np.float64)
    v = np.empty(w_px - 1, dtype=np.float64)
    v_up = np.zeros(w_px - 1, dtype=np.float64)  # v of the row above (none above row 0)
    for k in range(n):
        gw = beta * np.float64(g[k])
        for ch in range(c):
            p, q = x[k, ch], grad[k, ch]
            v_up[:] = 0.0
            for i in range(h):
                if i < h - 1:
                    _weights_of_row(p, i, beta, eps, gw, u, v)
                    row = q[i]
                    row[0] = v_up[0] - (u[0] + v[0])
                    for j in range(1, w_px - 1):
                        row[j] = u[j - 1] + v_up[j] - (u[j] + v[j])
                    row[w_px - 1] = u[w_px - 2]
                    v, v_up = v_up, v  # this row's v is the next row's v_up
                else:  # the last row only receives from the row above
                    row = q[i]
                    for j in range(w_px - 1):
                        row[j] = v_up[j]
                    row[w_px - 1] = 0.0


def tv_forward(x: np.ndarray, beta: float, eps: float) -> np.ndarray:
    """TV^beta of each image of x (N, C, H, W), H, W >= 2 -> (N,) float64."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _tv_forward(np.ascontiguousarray(x), float(beta), float(eps), out)
    return out


def tv_backward(x: np.ndarray, g: np.ndarray, beta: float, eps: float) -> np.ndarray:
    """d(sum_n g_n TV^beta(x_n))/dx for x (N, C, H, W) and g (N,), in x's dtype."""
    grad = np.empty_like(x)
    _tv_backward(np.ascontiguousarray(x), np.asarray(g, dtype=np.float64).reshape(-1), float(beta), float(eps), grad)
    return grad
