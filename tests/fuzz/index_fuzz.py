"""Hypothesis fuzzing of every public call whose kernels index with arrays a user can hand in.

Run as a script (``python tests/fuzz/index_fuzz.py [examples]``) by ``test_index_fuzz.py``, in a
child process, because a regression here is an out-of-bounds read or write that can kill the
interpreter instead of failing a test. Each property: the call either raises ValueError/TypeError
or returns exactly what a plain NumPy reference computes. Prints the number of examples run.
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minivis as mv

EXAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 100
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
RUN = {"unpool": 0, "pool_backward": 0, "relu_pool_backward": 0, "sparse_P": 0}

# Index values that matter: in range, at the edges, just past them, far past them, negative.
INDEX = st.one_of(st.integers(-3, 40), st.sampled_from([-(2**63), -(2**40), 2**31, 2**40, 2**63 - 1]))


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 2), hw=st.integers(1, 3), data=st.data())
def fuzz_unpool(n: int, c: int, hw: int, data: st.DataObject) -> None:
    RUN["unpool"] += 1
    switches = data.draw(hnp.arrays(np.int64, (n, c, hw, hw), elements=INDEX))
    x = np.random.default_rng(0).standard_normal((n, c, hw, hw)).astype(np.float32)
    out_hw = (2 * hw, 2 * hw)
    xt = mv.tensor(x, requires_grad=True)
    try:
        out = mv.F.max_unpool2d(xt, switches, 2, output_size=out_hw)
    except (ValueError, TypeError):
        assert switches.min() < 0 or switches.max() >= out_hw[0] * out_hw[1]
        return
    expected = np.zeros((n * c, out_hw[0] * out_hw[1]), np.float32)
    for plane in range(n * c):  # the reference: a plain scatter-add, one plane at a time
        np.add.at(expected[plane], switches.reshape(n * c, -1)[plane], x.reshape(n * c, -1)[plane])
    np.testing.assert_allclose(out.numpy().reshape(n * c, -1), expected, rtol=1e-6, atol=1e-6)
    switches[...] = data.draw(INDEX)  # editing the caller's array after the call must not reach backward
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    assert xt.grad.shape == x.shape and np.isfinite(xt.grad).all()


@SETTINGS
@given(hw=st.integers(2, 5), k=st.integers(1, 3), s=st.integers(1, 3), value=INDEX)
def fuzz_pool_backward(hw: int, k: int, s: int, value: int) -> None:
    RUN["pool_backward"] += 1
    k = min(k, hw)
    x = mv.tensor(np.random.default_rng(hw).standard_normal((1, 2, hw, hw)), requires_grad=True)
    y, switches = mv.F.max_pool2d(x, k, s, return_switches=True)
    kept = switches.copy()
    try:  # the user edits what they were handed: a read-only view of the graph's own switches
        switches[...] = value
        raise AssertionError("the edit was not refused")
    except ValueError as error:
        assert "read-only" in str(error)
    y.backward(np.ones(y.shape))
    expected = np.zeros((2, hw * hw))
    for plane in range(2):
        np.add.at(expected[plane], kept[0, plane].ravel(), 1.0)
    np.testing.assert_array_equal(x.grad.reshape(2, -1), expected)


@SETTINGS
@given(h=st.integers(2, 7), w=st.integers(2, 7), value=INDEX, rule=st.sampled_from(["gradient", "guided", "deconvnet"]))
def fuzz_relu_pool_backward(h: int, w: int, value: int, rule: str) -> None:
    """The fused ReLU + 2x2 max-pool hands out read-only switches too, and its one-pass backward
    scatters exactly where the two ops' backward does."""
    RUN["relu_pool_backward"] += 1
    x_np = np.random.default_rng(h * 8 + w).integers(-2, 3, (1, 2, h, w)).astype(np.float64)
    x = mv.tensor(x_np, requires_grad=True)
    y, switches = mv.F.relu_max_pool2d(x, return_switches=True)
    try:
        switches[...] = value
        raise AssertionError("the edit was not refused")
    except ValueError as error:
        assert "read-only" in str(error)
    g = np.random.default_rng(w).standard_normal(y.shape)
    with mv.backward_rule(rule):
        y.backward(g)
    two = mv.tensor(x_np, requires_grad=True)
    with mv.backward_rule(rule):
        mv.F.max_pool2d(mv.F.relu(two), 2).backward(g)
    np.testing.assert_array_equal(x.grad, two.grad)


@SETTINGS
@given(n=st.integers(2, 6), data=st.data())
def fuzz_sparse_P(n: int, data: st.DataObject) -> None:
    RUN["sparse_P"] += 1
    nnz = data.draw(st.integers(0, n * n))
    indices = data.draw(hnp.arrays(np.int32, nnz, elements=st.integers(-2, n + 2)))
    indptr = data.draw(hnp.arrays(np.int32, n + 1, elements=st.integers(-1, nnz + 1)))
    values = data.draw(hnp.arrays(np.float64, nnz, elements=st.floats(0, 1)))
    P = sp.csr_matrix((n, n))
    P.data, P.indices, P.indptr = values, indices, indptr  # as a caller could build it, unchecked
    Y = np.random.default_rng(n).standard_normal((n, 2))
    structure = indptr[0] == 0 and 0 <= indptr[-1] <= nnz and (np.diff(indptr) >= 0).all()
    used = indices[:indptr[-1]] if structure else indices  # SciPy reads only the first indptr[-1] entries
    valid = structure and (used.size == 0 or (used.min() >= 0 and used.max() < n))
    for call in (lambda: mv.vis.kl_divergence(P, Y), lambda: mv.vis.tsne_gradient(P, Y, method="barnes_hut")):
        try:
            result = call()
        except (ValueError, TypeError):
            assert not valid, "a valid CSR matrix was refused"
            continue
        assert valid, "an invalid CSR matrix reached the kernels"
        dense = sp.csr_matrix((values, indices, indptr), shape=(n, n)).toarray()
        reference = mv.vis.kl_divergence(dense, Y) if isinstance(result, float) else None
        if reference is not None:
            np.testing.assert_allclose(result, reference, rtol=1e-9, atol=1e-12)


if __name__ == "__main__":
    fuzz_unpool()
    fuzz_pool_backward()
    fuzz_relu_pool_backward()
    fuzz_sparse_P()
    print("examples", RUN)
