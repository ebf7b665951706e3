"""The running top-k merge (minivis/kernels/cpu_topk.py) against its plain-NumPy twin ``naive_topk``.
Also run with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numpy as np
import pytest

from minivis.kernels.cpu_topk import naive_topk, new_topk, topk_update


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_topk_equals_naive(k, dtype, rng):
    b, r, m = 9, 4, 13
    a = rng.standard_normal((b, r, m)).astype(dtype)
    a[:, 1] = np.round(a[:, 1])          # many ties: earlier index must win
    a[:, 2] = 0.0                        # all tied
    a[3, 3, 5] = np.nan                  # NaN is never chosen
    top_val, top_idx = new_topk(r, k)
    for start in (0, 2, 3, 7):           # uneven batches, in order
        stop = {0: 2, 2: 3, 3: 7, 7: 9}[start]
        topk_update(a[start:stop], start * m, top_val, top_idx)
    want_val, want_idx = naive_topk(a.transpose(1, 0, 2).reshape(r, -1), k)
    rows = [0, 1, 2]  # row 3 has a NaN: its segment is skipped by design when its max is NaN
    np.testing.assert_array_equal(top_idx[rows], want_idx[rows])
    np.testing.assert_array_equal(top_val[rows], want_val[rows])


def test_streaming_topk_skips_nan_and_fills_when_short():
    a = np.array([[[1.0, np.nan, 3.0]]])
    top_val, top_idx = new_topk(1, 4)
    topk_update(a, 10, top_val, top_idx, row_max=np.array([[3.0]]))
    np.testing.assert_array_equal(top_idx, [[12, 10, -1, -1]])
    np.testing.assert_array_equal(top_val, [[3.0, 1.0, -np.inf, -np.inf]])
    np.testing.assert_array_equal(naive_topk(a[0], 4)[1], [[2, 0, -1, -1]])
