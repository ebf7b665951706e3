"""The Gram matrix of a layer's feature maps: the second-order statistics that describe a texture.

Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks" (NeurIPS 2015):
flatten the C feature maps of one image to ``F`` (C, M) with ``M = H W`` positions, then

    G = F F^T / M          G[i, j] = (1/M) sum_k F[i, k] F[j, k]

is the average over positions of the outer product of the feature vector with itself. Summing
over positions throws away *where* things are and keeps *which features occur together*: that is
why it describes a texture and not a layout, and why the synthesised image can have any size.
(Gatys et al. use the raw sum, ``M G`` here; dividing by ``M`` makes images of different sizes
comparable.)

Backward: G is bilinear in F, so for an upstream gradient ``g`` = dL/dG (C, C)

    dL/dF = (g + g^T) F / M.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.kernels import cpu_threads
from minivis.validate import check_tensor


def _bmm(a: Any, b: Any) -> Any:
    """Stacked matrix products; on the CPU on single-threaded BLAS (``cpu_threads.bmm``): BLAS's own
    threads keep spinning after a call and would slow the convolutions of the backward pass."""
    return cpu_threads.bmm(a, b) if isinstance(a, np.ndarray) else backend.xp(a).matmul(a, b)


def gram_matrix(x: Any) -> Tensor:
    """Gram matrices ``F F^T / (H W)`` of each image: x (N, C, H, W) -> (N, C, C)."""
    x = check_tensor(x, "gram_matrix", "x", ndim=4)
    n, c, h, w = x.shape
    if h * w == 0:
        raise ValueError(f"gram_matrix: x must have at least one position, got shape {x.shape}")
    f = x.data.reshape(n, c, h * w)
    m = float(h * w)
    out = _bmm(f, f.transpose(0, 2, 1)) / m

    def backward(g):
        sym = g + g.transpose(0, 2, 1)
        return ((_bmm(sym, f) / m).reshape(x.shape).astype(x.dtype, copy=False),)

    return Tensor.from_op(out.astype(x.dtype, copy=False), (x,), backward, "gram_matrix")
