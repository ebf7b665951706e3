"""Top images along directions (Szegedy et al.) against a brute force and against the units' own
ranking (a unit is the direction e_c); activation sparsity against a direct NumPy computation;
bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.features.directions import random_directions, top_images_along
from minivis.vis.features.sparsity import activation_sparsity, hoyer_sparsity


@pytest.fixture(scope="module")
def model():
    mv.nn.init.seed(2)
    return mv.models.FashionCNN(widths=(6, 8), hidden=16).double().eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(6).standard_normal((50, 1, 28, 28))


def brute_force(acts, v, k, score):
    """Every image's score along every direction at once, then sorted (ties to the smaller index)."""
    if acts.ndim == 2:
        s = acts @ v.T  # (N, M)
    else:
        proj = np.einsum("nchw,mc->nmhw", acts, v).reshape(acts.shape[0], v.shape[0], -1)
        s = proj.max(axis=2) if score == "max" else proj.mean(axis=2)
    order = np.lexsort((np.broadcast_to(np.arange(len(s)), s.T.shape), -s.T), axis=-1)[:, :k]
    return order, np.take_along_axis(s.T, order, axis=1)


@pytest.mark.parametrize("layer, score", [("features.8", "max"), ("features.6", "mean"), ("classifier.1", "max")])
def test_top_images_along_random_directions_equal_a_brute_force(model, images, layer, score):
    acts = mv.vis.activations(model, images, layer)
    v = random_directions(acts.shape[1], 5, seed=1)
    got = top_images_along(model, images, layer, v, k=4, score=score, batch_size=7)
    index, value = brute_force(acts, v, 4, score)
    np.testing.assert_array_equal(got.image_index, index)
    np.testing.assert_allclose(got.score, value, rtol=1e-12)
    if acts.ndim == 4:  # the location is where the best position is
        for m in range(5):
            n, (y, x) = got.image_index[m, 0], got.location[m, 0]
            proj = np.einsum("chw,c->hw", acts[n], v[m])
            assert proj[y, x] == proj.max()


def test_unit_axes_give_the_units_own_top_images(model, images):
    layer = "features.8"
    top = mv.vis.top_activations(model, images, layer, k=5, crop=False)[layer]
    axes = np.eye(8)
    got = top_images_along(model, images, layer, axes, k=5)
    np.testing.assert_array_equal(got.image_index, top.image_index)
    np.testing.assert_array_equal(got.score, top.image_score)
    np.testing.assert_array_equal(got.location, top.image_location)


def test_random_directions_are_unit_vectors_and_seeded():
    v = random_directions(16, 100, seed=3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(v, random_directions(16, 100, seed=3))
    assert abs(v.mean()) < 0.05  # no preferred sign or axis


def test_hoyer_sparsity_endpoints():
    np.testing.assert_allclose(hoyer_sparsity(np.array([[0, 0, 5.0, 0], [1, 1, 1, 1.0], [1, 0, 1, 0.0]])),
                               [1.0, 0.0, (2 - np.sqrt(2)) / 1.0])
    assert np.isnan(hoyer_sparsity(np.zeros((1, 3))))[0]


def test_activation_sparsity_equals_numpy(model, images):
    layers = ["features.3", "features.8", "classifier.1"]
    reports = activation_sparsity(model, images, layers, batch_size=16)
    for layer in layers:
        a = mv.vis.activations(model, images, layer)
        r = reports[layer]
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        np.testing.assert_allclose(r.zero_fraction, (flat <= 0).mean(axis=(0, 2)), rtol=1e-12)
        assert r.zero_overall == pytest.approx((a <= 0).mean(), rel=1e-12)
        codes = a.reshape(len(a), -1)
        n = codes.shape[1]
        h = (np.sqrt(n) - np.abs(codes).sum(1) / np.linalg.norm(codes, axis=1)) / (np.sqrt(n) - 1)
        assert r.code_hoyer == pytest.approx(np.nanmean(h), rel=1e-10)
        if a.ndim == 4:
            maps = flat
            m = maps.shape[2]
            with np.errstate(invalid="ignore", divide="ignore"):
                hm = (np.sqrt(m) - np.abs(maps).sum(2) / np.linalg.norm(maps, axis=2)) / (np.sqrt(m) - 1)
                np.testing.assert_allclose(r.hoyer, np.nanmean(hm, axis=0), rtol=1e-10)
        else:
            assert np.isnan(r.hoyer).all()
        assert r.count == 50


def test_bad_input(model, images):
    with pytest.raises(ValueError, match="top_images_along: .*features.99"):
        top_images_along(model, images, "features.99", np.ones(8))
    with pytest.raises(ValueError, match="top_images_along: directions have 3 values, layer 'features.8' has 8"):
        top_images_along(model, images, "features.8", np.ones(3))
    with pytest.raises(ValueError, match="top_images_along: k must be an int >= 1, got 0"):
        top_images_along(model, images, "features.8", np.ones(8), k=0)
    with pytest.raises(ValueError, match="top_images_along: k=51 is larger than the dataset"):
        top_images_along(model, images, "features.8", np.ones(8), k=51)
    with pytest.raises(TypeError, match=r"top_images_along: directions must be a numeric array \(M, C\)"):
        top_images_along(model, images, "features.8", np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match=r"top_images_along: directions must be a numeric array .* got datetime64"):
        top_images_along(model, images, "features.8", np.ones(8).astype("datetime64[s]"))  # was NumPy's buffer error
    with pytest.raises(ValueError, match="top_images_along: directions contain NaN"):
        top_images_along(model, images, "features.8", np.full(8, np.nan))
    with pytest.raises(ValueError, match="top_images_along: score must be one of"):
        top_images_along(model, images, "features.8", np.ones(8), score="median")
    with pytest.raises(ValueError, match="random_directions: count must be an int >= 1"):
        random_directions(4, 0)
    with pytest.raises(ValueError, match="activation_sparsity: .*features.99"):
        activation_sparsity(model, images, "features.99")
    with pytest.raises(ValueError, match="hoyer_sparsity: needs at least 2 values"):
        hoyer_sparsity(np.ones((3, 1)))
    with pytest.raises(TypeError, match="hoyer_sparsity: x must be a numeric array"):
        hoyer_sparsity([1.0, 0.0])
    with pytest.raises(TypeError, match=r"hoyer_sparsity: x must be .* got ndarray float64 \(\)"):
        hoyer_sparsity(np.ones(()))
    with pytest.raises(ValueError, match="random_directions: seed must be an int >= 0 or None, got -1"):
        random_directions(4, 2, seed=-1)
    with pytest.raises(TypeError, match="random_directions: seed must be an int or None, got 'a'"):
        random_directions(4, 2, seed="a")
    for call in (lambda m: top_images_along(m, images, "features.8", np.ones(8)),
                 lambda m: activation_sparsity(m, images, "features.8")):
        with pytest.raises(TypeError, match="(top_images_along|activation_sparsity): model must be a minivis"):
            call(None)


def test_hoyer_sparsity_of_small_ints_does_not_wrap_around():
    """int8 rows were squared in int8 (100 * 100 wrapped), giving a wrong or NaN sparsity."""
    row = np.array([[100, 0, 0, 0]], np.int8)
    np.testing.assert_allclose(hoyer_sparsity(row), [1.0])
