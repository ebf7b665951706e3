"""Running top-k lists merged with a stream of batches: the kernel of dataset mining
(``minivis.vis.features.top_activations``) and of nearest-neighbour search (``neighbours``).

For each row r (a channel, or a query), the k largest values seen so far and their global
indices are kept best first; ``topk_update`` merges one batch in place, reading only the
segments whose max beats the current k-th value (after the first batches almost none).
``naive_topk`` is the plain-NumPy twin the tests compare it with. CPU only: callers bring their
batches to the host (one small copy per batch).

Order and ties: best first; an equal value never displaces an earlier index; NaN is never chosen.
"""

from __future__ import annotations

import numba
import numpy as np


# Serial on purpose: after the first batches the kernel reads almost nothing (see the skip below),
# and a parallel launch costs more than that work (measured on 2 busy cores: 30 ms per call with
# 2 OpenMP threads vs 0.07 ms on one thread for a (128, 32, 784) batch).
@numba.njit(cache=True)
def _stream_topk(a, offset, row_max, top_val, top_idx):
    """Merge ``a`` (B, R, M) into the running top-k of each row r (``top_val``/``top_idx`` (R, k),
    best first), in place. Element (b, r, m) has global index ``offset + b*M + m``; indices grow
    in scan order, so an equal value never displaces an earlier one. ``row_max`` (B, R) is the max
    of each segment: a segment whose max cannot beat the current k-th value is skipped unread,
    which after the first batches is almost every segment."""
    n_b, n_r, n_m = a.shape
    k = top_val.shape[1]
    for r in range(n_r):
        kth = top_val[r, k - 1]
        for b in range(n_b):
            if not row_max[b, r] > kth:  # also skips a segment whose max is NaN
                continue
            base = offset + b * n_m
            for m in range(n_m):
                v = a[b, r, m]
                if v > kth:  # insertion into the sorted list of k
                    j = k - 1
                    while j > 0 and top_val[r, j - 1] < v:
                        top_val[r, j] = top_val[r, j - 1]
                        top_idx[r, j] = top_idx[r, j - 1]
                        j -= 1
                    top_val[r, j] = v
                    top_idx[r, j] = base + m
                    kth = top_val[r, k - 1]


def new_topk(rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty running lists: values -inf, indices -1 (any finite value beats them)."""
    return np.full((rows, k), -np.inf), np.full((rows, k), -1, dtype=np.int64)


def topk_update(a: np.ndarray, offset: int, top_val: np.ndarray, top_idx: np.ndarray,
                row_max: np.ndarray | None = None) -> None:
    """Merge ``a`` (B, R, M) into the running top-k (R, k) lists in place (see ``_stream_topk``).

    ``row_max``: ``a.max(axis=2)`` if the caller already has it (NumPy's SIMD max is the fast way
    to find the few segments that need the scalar insertion scan).
    """
    a = np.ascontiguousarray(a)
    row_max = a.max(axis=2) if row_max is None else row_max
    _stream_topk(a, np.int64(offset), np.ascontiguousarray(row_max), top_val, top_idx)


def naive_topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-NumPy twin: the top-k of each row of ``values`` (R, T) by value, ties to the smaller
    index, NaN never chosen (rows with fewer than k non-NaN values are padded with -inf, -1)."""
    rows, total = values.shape
    v = np.where(np.isnan(values), -np.inf, values.astype(np.float64))
    index = np.broadcast_to(np.arange(total), v.shape)
    order = np.lexsort((index, -v), axis=-1)[:, :k]  # primary key: -value; secondary: index
    top_v = np.take_along_axis(v, order, axis=1)
    top_i = np.where(np.isneginf(top_v), -1, order)
    if total < k:
        pad = k - total
        top_v = np.concatenate([top_v, np.full((rows, pad), -np.inf)], axis=1)
        top_i = np.concatenate([top_i, np.full((rows, pad), -1)], axis=1)
    return top_v, top_i.astype(np.int64)
