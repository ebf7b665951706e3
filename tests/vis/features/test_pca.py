"""PCA from scratch against scikit-learn's PCA (exact SVD), randomized SVD against the exact one."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

import minivis as mv


def _data(rng, n, d, decay=0.7, rank=None):
    """Rows with a decaying spectrum (distinct singular values: a well-defined subspace) and an offset."""
    rank = rank or min(n, d)
    U, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    s = 10.0 * decay ** np.arange(rank)
    return (U * s) @ V.T + rng.standard_normal(d) * 3.0


@pytest.mark.parametrize("shape,k", [((200, 30), 5), ((60, 40), 40), ((50, 300), 10)])
def test_pca_svd_matches_sklearn(rng, shape, k):
    X = _data(rng, *shape)
    res = mv.vis.pca_fit(X, k, method="svd")
    ref = PCA(n_components=k, svd_solver="full").fit(X)
    np.testing.assert_allclose(res.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(res.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(res.singular_values, ref.singular_values_, rtol=1e-10)
    np.testing.assert_allclose(res.mean, ref.mean_, rtol=1e-12, atol=1e-12)
    # same subspace (principal angles ~ 0) and, with the same sign rule, the same directions
    assert np.max(subspace_angles(res.components.T, ref.components_.T)) < 1e-8
    np.testing.assert_allclose(res.components, ref.components_, atol=1e-8)
    np.testing.assert_allclose(res.projection, ref.transform(X), atol=1e-8)
    np.testing.assert_allclose(mv.vis.pca(X, k, method="svd"), res.projection)
    assert res.method == "svd" and res.projection.shape == (shape[0], k)


def test_components_are_orthonormal_and_sorted(rng):
    res = mv.vis.pca_fit(_data(rng, 100, 20), 8)
    np.testing.assert_allclose(res.components @ res.components.T, np.eye(8), atol=1e-12)
    assert np.all(np.diff(res.explained_variance) <= 0)
    # largest-magnitude coordinate of each direction is positive (the sign rule)
    assert np.all(res.components[np.arange(8), np.abs(res.components).argmax(1)] > 0)


@pytest.mark.parametrize("shape", [(80, 3000), (3000, 80)])
def test_randomized_is_close_to_exact(rng, shape):
    X = _data(rng, *shape, decay=0.8, rank=60)
    X = X + 1e-3 * rng.standard_normal(X.shape)  # a noise floor far below the top components
    exact = mv.vis.pca_fit(X, 10, method="svd")
    approx = mv.vis.pca_fit(X, 10, method="randomized", seed=3)
    assert approx.method == "randomized"
    np.testing.assert_allclose(approx.explained_variance, exact.explained_variance, rtol=1e-8)
    np.testing.assert_allclose(approx.explained_variance_ratio, exact.explained_variance_ratio, rtol=1e-8)
    assert np.max(subspace_angles(approx.components.T, exact.components.T)) < 1e-5
    np.testing.assert_allclose(approx.components, exact.components, atol=1e-5)
    np.testing.assert_allclose(approx.transform(X), approx.projection, atol=1e-9)


def test_auto_picks_randomized_for_big_data_and_svd_for_small(rng):
    assert mv.vis.pca_fit(rng.standard_normal((510, 520)), 5).method == "randomized"
    assert mv.vis.pca_fit(rng.standard_normal((510, 520)), 410).method == "svd"  # k >= 0.8 min(N, D)
    assert mv.vis.pca_fit(rng.standard_normal((100, 700)), 5).method == "svd"


def test_float32_and_integer_inputs(rng):
    X = _data(rng, 150, 20)
    ref = mv.vis.pca_fit(X, 4, method="svd")
    res32 = mv.vis.pca_fit(X.astype(np.float32), 4, method="svd")
    assert res32.projection.dtype == np.float32
    np.testing.assert_allclose(res32.explained_variance, ref.explained_variance, rtol=1e-4)
    np.testing.assert_allclose(res32.projection, ref.projection, rtol=1e-4, atol=1e-4 * np.abs(ref.projection).max())
    Xi = rng.integers(0, 256, (50, 12)).astype(np.uint8)
    np.testing.assert_allclose(mv.vis.pca(Xi, 3), mv.vis.pca(Xi.astype(np.float64), 3))


def test_transform_and_inverse_transform(rng):
    X = _data(rng, 40, 6)
    full = mv.vis.pca_fit(X, 6)
    np.testing.assert_allclose(full.inverse_transform(full.transform(X)), X, atol=1e-10)
    res = mv.vis.pca_fit(X, 2)
    np.testing.assert_allclose(res.transform(X[:5]), res.projection[:5], atol=1e-12)


def test_pca_bad_input(rng):
    X = rng.standard_normal((20, 5))
    with pytest.raises(ValueError, match=r"pca: X must be 2-D \(N samples, D features\), got shape \(20,\)"):
        mv.vis.pca(X[:, 0], 1)
    with pytest.raises(TypeError, match="pca: X must be a numeric array .* got dtype <U1"):
        mv.vis.pca(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(ValueError, match="pca: X contains NaN or infinite values"):
        mv.vis.pca(np.where(X > 2, np.nan, X), 2)
    with pytest.raises(ValueError, match=r"pca: k must be in 1..min\(N, D\) = 1..5 for X of shape \(20, 5\), got 6"):
        mv.vis.pca(X, 6)
    with pytest.raises(ValueError, match="pca: k must be in .* got 0"):
        mv.vis.pca(X, 0)
    with pytest.raises(TypeError, match="pca: k must be an int, got float"):
        mv.vis.pca(X, 2.0)
    with pytest.raises(ValueError, match=r"pca: method must be one of \('auto', 'svd', 'randomized'\), got 'eig'"):
        mv.vis.pca(X, 2, method="eig")
    with pytest.raises(ValueError, match="pca: needs at least 2 samples"):
        mv.vis.pca(X[:1], 1)
    with pytest.raises(TypeError, match=r"pca: X must be a numeric array \(N, D\), got dtype timedelta64\[s\]"):
        mv.vis.pca(X.astype("timedelta64[s]"), 2)  # was NumPy's "cannot include dtype 'm' in a buffer"
    with pytest.raises(TypeError, match="pca: seed must be an int or None, got 'a'"):
        mv.vis.pca(X, 2, method="randomized", seed="a")  # was NumPy's SeedSequence error
    res = mv.vis.pca_fit(X, 2)
    with pytest.raises(ValueError, match=r"PCAResult.transform: X must have 5 columns .* got shape \(3, 4\)"):
        res.transform(X[:3, :4])
    with pytest.raises(ValueError, match=r"PCAResult.inverse_transform: Z must be \(M, 2\), got shape \(3, 3\)"):
        res.inverse_transform(np.zeros((3, 3)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(X=np.zeros(20)), ValueError, r"pca_fit: X must be 2-D \(N samples, D features\), got shape \(20,\)"),
    (dict(k=6), ValueError, r"pca_fit: k must be in 1..min\(N, D\) = 1..5"),
    (dict(method="eig"), ValueError, "pca_fit: method must be one of"),
    (dict(seed=-1), ValueError, "pca_fit: seed must be an int >= 0 or None, got -1"),
])
def test_pca_fit_refuses_under_its_own_name(rng, kwargs, error, match):
    """pca_fit's errors said "pca:", the function that wraps it, not the one that was called."""
    with pytest.raises(error, match=match):
        mv.vis.pca_fit(**{"X": rng.standard_normal((20, 5)), "k": 2, **kwargs})
