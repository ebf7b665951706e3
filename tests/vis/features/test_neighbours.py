"""Nearest neighbours against a brute-force distance matrix (scipy.spatial.distance.cdist), ties,
self-exclusion, feature codes against a direct forward pass, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import minivis as mv
from minivis.vis.features.neighbours import feature_codes, nearest_neighbours


def _reference(q, db, k, metric):
    """Brute force: the full distance matrix, then a stable sort (equal distances by database index)."""
    d = cdist(np.asarray(q, np.float64), np.asarray(db, np.float64), "euclidean" if metric == "l2" else "cosine")
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk", [7, 64, 1024])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_cdist(metric, chunk, dtype, rng):
    db = rng.standard_normal((300, 24)).astype(dtype)
    q = rng.standard_normal((45, 24)).astype(dtype)
    idx, dist = nearest_neighbours(q, db, k=6, metric=metric, chunk=chunk)
    want_idx, want_dist = _reference(q, db, 6, metric)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12, atol=1e-12)
    assert idx.dtype == np.int64 and dist.dtype == np.float64


def test_uint8_pixels_and_codes_far_from_the_origin(rng):
    # The expansion ||a||^2 + ||b||^2 - 2ab loses digits when the points are far from the origin
    # and close to each other; float64 keeps the ranking exact here.
    db = rng.integers(0, 256, (200, 49), dtype=np.uint8)
    q = rng.integers(0, 256, (10, 49), dtype=np.uint8)
    idx, dist = nearest_neighbours(q, db, k=4, chunk=50)
    want_idx, want_dist = _reference(q, db, 4, "l2")
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12)
    far = 1e4 + rng.standard_normal((100, 8))
    near = far[:5] + 1e-3 * rng.standard_normal((5, 8))
    idx, dist = nearest_neighbours(near, far, k=3)
    want_idx, want_dist = _reference(near, far, 3, "l2")
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-9)  # distances are recomputed directly, not expanded
    assert (idx[:, 0] == np.arange(5)).all()


def test_ties_keep_database_order(rng):
    db = rng.standard_normal((50, 5))
    db[[20, 33]] = db[4]                   # two exact copies of row 4
    q = np.vstack([db[4] + 1e-3, rng.standard_normal(5)])
    for metric in ("l2", "cosine"):
        idx, dist = nearest_neighbours(q, db, k=3, metric=metric, chunk=16)
        assert idx[0].tolist() == [4, 20, 33], metric
        assert dist[0, 0] == dist[0, 1] == dist[0, 2]
    # all-equal distances: the first k rows in order
    idx, _ = nearest_neighbours(np.zeros((1, 3)), np.ones((10, 3)), k=4, chunk=3)
    assert idx.tolist() == [[0, 1, 2, 3]]


def test_exclude_self_and_single_query(rng):
    x = rng.standard_normal((40, 6))
    idx, dist = nearest_neighbours(x, x, k=3, exclude_self=True, chunk=9)
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(idx, np.argsort(d, axis=1, kind="stable")[:, :3])
    assert not (idx == np.arange(40)[:, None]).any()
    one_idx, one_dist = nearest_neighbours(x[3], x, k=2)
    assert one_idx.shape == (2,) and one_idx[0] == 3 and one_dist[0] == 0.0
    tensor_idx, _ = nearest_neighbours(mv.tensor(x[:2]), mv.tensor(x), k=1)
    assert tensor_idx.tolist() == [[0], [1]]


def test_feature_codes_equal_a_direct_forward_pass():
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN().eval()
    images = mv.data.fashion_mnist("test")[0][:20]
    codes = feature_codes(model, images, "features.9", batch_size=8)
    with mv.no_grad():
        direct = mv.nn.forward_to(model, mv.tensor(model.preprocess(images)), "features.9").data
    assert codes.shape == (20, 64 * 7 * 7) and codes.dtype == np.float32
    np.testing.assert_array_equal(codes, direct.reshape(20, -1))
    fc = feature_codes(model, model.preprocess(images), "classifier.1", batch_size=20)
    assert fc.shape == (20, 128)


def test_bad_inputs(rng):
    db = rng.standard_normal((10, 4))
    with pytest.raises(ValueError, match="nearest_neighbours: queries have 3 features, database has 4"):
        nearest_neighbours(np.zeros((2, 3)), db)
    with pytest.raises(ValueError, match=r"nearest_neighbours: database must be 2-D \(N, D\) with N, D >= 1, "
                                         r"got shape \(10, 4, 1\)"):
        nearest_neighbours(db, db[..., None])
    with pytest.raises(TypeError, match="nearest_neighbours: queries must be numeric, got dtype <U1"):
        nearest_neighbours(np.array([["a"] * 4]), db)
    with pytest.raises(TypeError, match="nearest_neighbours: database must be an array or Tensor"):
        nearest_neighbours(db, db.tolist())
    with pytest.raises(ValueError, match=r"nearest_neighbours: metric must be one of \('l2', 'cosine'\), got 'l1'"):
        nearest_neighbours(db, db, metric="l1")
    with pytest.raises(ValueError, match=r"nearest_neighbours: k must be an int in 1..10, got 11"):
        nearest_neighbours(db, db, k=11)
    with pytest.raises(ValueError, match=r"nearest_neighbours: k must be an int in 1..9, got 10"):
        nearest_neighbours(db, db, k=10, exclude_self=True)
    with pytest.raises(ValueError, match="nearest_neighbours: exclude_self needs queries == database"):
        nearest_neighbours(db[:3], db, exclude_self=True)
    with pytest.raises(ValueError, match="nearest_neighbours: chunk must be a positive int, got 0"):
        nearest_neighbours(db, db, chunk=0)
    with pytest.raises(ValueError, match="nearest_neighbours: queries contains NaN or infinite values"):
        nearest_neighbours(np.full((1, 4), np.nan), db)
    zero = db.copy()
    zero[[2, 7]] = 0
    with pytest.raises(ValueError, match=r"cosine distance is undefined for zero vectors; database rows \[2, 7\]"):
        nearest_neighbours(db, zero, metric="cosine")
    model = mv.models.FashionCNN()
    with pytest.raises(ValueError, match="feature_codes: layer: 'head' is not a layer"):
        feature_codes(model, np.zeros((2, 1, 28, 28), np.float32), "head")
    with pytest.raises(ValueError, match="feature_codes: batch_size must be a positive int, got -1"):
        feature_codes(model, np.zeros((2, 1, 28, 28), np.float32), "features.0", batch_size=-1)
    with pytest.raises(ValueError, match=r"feature_codes: images must be model inputs"):
        feature_codes(model, np.zeros((2, 28, 28), np.float32), "features.0")


def test_neighbour_grid_figure(tmp_path):
    import matplotlib.pyplot as plt

    from minivis.plot import features as fplot

    images = mv.data.fashion_mnist("test")[0][:30]
    flat = images.reshape(30, -1)
    idx, _ = nearest_neighbours(flat[:2], flat, k=3)
    fig = fplot.neighbour_grid(images[:2], {"pixels": images[idx], "again": images[idx]})
    assert isinstance(fig, plt.Figure) and mv.plot.save(fig, tmp_path / "n.png").stat().st_size > 0
    with pytest.raises(ValueError, match="neighbour_grid: 'pixels' has neighbours for 1 queries, expected 2"):
        fplot.neighbour_grid(images[:2], {"pixels": images[idx[:1]]})
    with pytest.raises(ValueError, match="neighbour_grid: results must be a non-empty mapping"):
        fplot.neighbour_grid(images[:2], {})
