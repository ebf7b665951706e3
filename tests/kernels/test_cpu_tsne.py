"""t-SNE kernels == their plain-NumPy twins (small sizes: also quick under NUMBA_DISABLE_JIT=1)."""

import numpy as np
import pytest
import scipy.sparse as sp

from minivis.kernels import cpu_tsne


def _random_joint_P(rng, n, density=1.0):
    """A symmetric non-negative P with a zero diagonal that sums to 1 (dense or sparse)."""
    P = rng.random((n, n)) * (rng.random((n, n)) < density)
    P = P + P.T
    np.fill_diagonal(P, 0.0)
    return P / P.sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_knn_matches_brute_force(rng, dtype, chunk_rows):
    X = rng.standard_normal((120, 9))
    idx, d2 = cpu_tsne.knn(X.astype(dtype), 11, chunk_rows=chunk_rows)
    ref_idx, ref_d2 = cpu_tsne.naive_knn(X.astype(dtype), 11)
    assert idx.shape == (120, 11) and idx.dtype == np.int64 and d2.dtype == np.float64
    np.testing.assert_array_equal(idx, ref_idx)  # continuous data: no ties
    np.testing.assert_allclose(d2, ref_d2, rtol=1e-12)  # recomputed exactly in float64
    assert not (idx == np.arange(120)[:, None]).any()


def test_knn_keeps_duplicates_of_a_point_but_not_the_point(rng):
    X = np.repeat(rng.standard_normal((20, 3)), 2, axis=0)  # every point twice
    idx, d2 = cpu_tsne.knn(X, 3)
    twin = np.arange(40) ^ 1
    np.testing.assert_array_equal(idx[:, 0], twin)
    np.testing.assert_array_equal(d2[:, 0], 0.0)


@pytest.mark.parametrize("perplexity", [2.5, 8.0, 20.0])
def test_perplexity_search_matches_brent(rng, perplexity):
    sq = np.sort(rng.random((40, 30)) * 5, axis=1)
    P, beta = cpu_tsne.perplexity_search(sq, perplexity, tol=1e-12)
    ref_P, ref_beta = cpu_tsne.naive_perplexity_search(sq, perplexity)
    np.testing.assert_allclose(beta, ref_beta, rtol=1e-9)
    np.testing.assert_allclose(P, ref_P, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-14)
    entropy = -np.sum(P * np.log(P), axis=1)
    np.testing.assert_allclose(entropy, np.log(perplexity), atol=1e-12)


def test_perplexity_search_far_points_underflow_to_zero_cleanly():
    sq = np.array([[0.0, 1.0, 2.0, 3.0, 1e6, 1e7]])
    P, beta = cpu_tsne.perplexity_search(sq, 2.0, tol=1e-10)
    assert np.isfinite(P).all() and P[0, -1] == 0.0 and np.isfinite(beta).all()
    p = P[0][P[0] > 0]
    assert abs(-np.sum(p * np.log(p)) - np.log(2.0)) < 1e-10


@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_exact_gradient_matches_naive(rng, exaggeration):
    P = _random_joint_P(rng, 30)
    Y = rng.standard_normal((30, 2))
    grad, kl = cpu_tsne.exact_gradient(P, Y, exaggeration)
    ref_grad, ref_kl = cpu_tsne.naive_exact_gradient(P, Y, exaggeration)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)
    assert kl == pytest.approx(ref_kl, rel=1e-12)


def test_exact_gradient_works_in_any_dimension(rng):
    P = _random_joint_P(rng, 15)
    Y = rng.standard_normal((15, 3))
    np.testing.assert_allclose(cpu_tsne.exact_gradient(P, Y)[0], cpu_tsne.naive_exact_gradient(P, Y)[0], rtol=1e-12)


def test_exact_z_matches_naive(rng):
    Y = rng.standard_normal((57, 2)) * 3
    assert cpu_tsne.exact_z(Y) == pytest.approx(cpu_tsne.naive_exact_z(Y), rel=1e-13)


def test_attractive_forces_match_naive(rng):
    P = sp.csr_matrix(_random_joint_P(rng, 40, density=0.2))
    Y = rng.standard_normal((40, 2))
    force, plogw = cpu_tsne.attractive_forces(P, Y, want_kl=True)
    ref_force, ref_plogw = cpu_tsne.naive_attractive_forces(P, Y)
    np.testing.assert_allclose(force, ref_force, rtol=1e-12, atol=1e-17)
    assert plogw == pytest.approx(ref_plogw, rel=1e-12)
    assert cpu_tsne.attractive_forces(P, Y)[1] == 0.0  # the KL part only when asked


@pytest.mark.parametrize("layout", ["gaussian", "clusters", "duplicates", "line"])
def test_barnes_hut_with_theta_zero_is_exact(rng, layout):
    if layout == "gaussian":
        Y = rng.standard_normal((150, 2)) * 5
    elif layout == "clusters":
        Y = np.concatenate([rng.standard_normal((50, 2)) * 0.01 + c for c in ((0, 0), (30, 5), (-8, 40))])
    elif layout == "duplicates":  # identical points share the finest cell: a multi-point leaf
        Y = np.repeat(rng.standard_normal((40, 2)), 3, axis=0)
    else:  # all on one vertical line: zero extent along x
        Y = np.stack([np.zeros(60), rng.standard_normal(60)], axis=1)
    neg, Z = cpu_tsne.bh_repulsion(Y, 0.0)
    ref_neg, ref_Z = cpu_tsne.naive_repulsion(Y)
    np.testing.assert_allclose(neg, ref_neg, rtol=1e-11, atol=1e-13 * np.abs(ref_neg).max())
    assert Z == pytest.approx(ref_Z, rel=1e-12)


def test_barnes_hut_error_shrinks_with_theta(rng):
    Y = np.concatenate([rng.standard_normal((100, 2)) + c for c in ((0, 0), (10, 0), (0, 12))])
    ref_neg, ref_Z = cpu_tsne.naive_repulsion(Y)
    errors = []
    for theta in (0.8, 0.5, 0.2):
        neg, Z = cpu_tsne.bh_repulsion(Y, theta)
        errors.append(np.linalg.norm(neg - ref_neg) / np.linalg.norm(ref_neg))
        assert abs(Z / ref_Z - 1) < 0.02
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


def test_quadtree_structure(rng):
    Y = np.concatenate([rng.standard_normal((90, 2)), np.repeat(rng.standard_normal((5, 2)), 2, axis=0)])
    tree = cpu_tsne.QuadTree(Y)
    n_nodes = tree.n_nodes
    assert n_nodes <= 2 * len(Y) - 1
    np.testing.assert_array_equal(tree.Ys, Y[tree.order])
    assert sorted(tree.order) == list(range(len(Y)))
    for node in range(n_nodes):
        s, e = tree.start[node], tree.end[node]
        pts = tree.Ys[s:e]
        np.testing.assert_allclose(tree.com[node], pts.mean(0), rtol=1e-12, atol=1e-14)
        assert tree.count[node] == e - s
        if tree.first_child[node] < 0:  # a leaf: one point or coincident points
            assert e - s == 1 or np.ptp(pts, axis=0).max() < 1e-6
            continue
        kids = range(tree.first_child[node], tree.first_child[node] + tree.n_children[node])
        assert 2 <= len(kids) <= 4  # compressed: no one-child chains
        # the children partition the parent's range, in order
        assert [tree.start[c] for c in kids][0] == s and tree.end[kids[-1]] == e
        assert all(tree.end[a] == tree.start[b] for a, b in zip(kids[:-1], kids[1:], strict=True))
        # each child is a square half as wide (or less) that holds its points
        for c in kids:
            assert tree.width[c] <= tree.width[node] / 2 or tree.first_child[c] < 0
        assert np.ptp(pts, axis=0).max() <= tree.width[node] * (1 + 1e-9)


def test_bh_gradient_theta_zero_equals_exact_gradient(rng):
    P = _random_joint_P(rng, 50, density=0.3)
    Y = rng.standard_normal((50, 2))
    grad, kl = cpu_tsne.bh_gradient(sp.csr_matrix(P), Y, 0.0, exaggeration=4.0, want_kl=True)
    ref_grad, ref_kl = cpu_tsne.naive_exact_gradient(P, Y, 4.0)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-14)
    assert kl == pytest.approx(ref_kl, rel=1e-11)
    assert np.isnan(cpu_tsne.bh_gradient(sp.csr_matrix(P), Y, 0.0)[1])
