"""Multifaceted class models (minivis/vis/synthesis/multifaceted.py): the clusters, their nearest
images and start images against a direct computation, distinct starts, each class model starting
from its facet's mean image, class_model's image init, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.nn.hooks import forward_to


@pytest.fixture(scope="module")
def fashion():
    return mv.models.load("fashion_cnn")


@pytest.fixture(scope="module")
def bags(fashion):
    images, labels = mv.data.fashion_mnist("train")
    return fashion.preprocess(images[labels == 8][:240, ..., None])


def test_facets_against_a_direct_computation(fashion, bags):
    facets = mv.vis.cluster_facets(fashion, bags, "classifier.1", k=4, n_mean=10, seed=0)
    with mv.no_grad():
        codes = forward_to(fashion, mv.tensor(bags), "classifier.1").numpy().astype(np.float64)
    assert facets.labels.shape == (240,) and set(facets.labels) == {0, 1, 2, 3}
    np.testing.assert_array_equal(facets.sizes, np.bincount(facets.labels, minlength=4))
    for c in range(4):
        members = np.flatnonzero(facets.labels == c)
        np.testing.assert_allclose(facets.centroids[c], codes[members].mean(axis=0), rtol=1e-4, atol=1e-4)
        distances = ((codes[members] - facets.centroids[c]) ** 2).sum(axis=1)
        brute = members[np.argsort(distances, kind="stable")[:10]]
        np.testing.assert_array_equal(np.sort(facets.nearest[c]), np.sort(brute))
        np.testing.assert_allclose(facets.starts[c], bags[facets.nearest[c]].mean(axis=0), rtol=1e-5, atol=1e-6)
    # distinct cluster means: every pair of start images differs clearly
    flat = facets.starts.reshape(4, -1)
    gaps = [np.linalg.norm(flat[i] - flat[j]) / np.linalg.norm(flat[i]) for i in range(4) for j in range(i)]
    assert min(gaps) > 0.05, gaps
    again = mv.vis.cluster_facets(fashion, bags, "classifier.1", k=4, n_mean=10, seed=0)
    np.testing.assert_array_equal(again.labels, facets.labels)  # seeded


def test_each_class_model_starts_from_its_facet(fashion, bags):
    out = mv.vis.multifaceted_class_model(fashion, bags, 8, "classifier.1", k=3, n_mean=8, steps=15, lr=0.05,
                                          progress=False)
    with mv.no_grad():
        start_logits = fashion(mv.tensor(out.facets.starts)).numpy()[:, 8]
    np.testing.assert_allclose(out.result.history[0], start_logits, rtol=1e-5)
    assert out.result.image.shape == (3, 28, 28, 1) and out.target == 8
    assert (out.result.history[-1] > out.result.history[0]).all()


def test_class_model_starts_from_a_given_image(fashion, bags):
    start = bags[0]
    result = mv.vis.class_model(fashion, 2, steps=1, lr=1e-3, init=start, progress=False)
    with mv.no_grad():
        first = fashion(mv.tensor(start[None])).numpy()[0, 2]
    np.testing.assert_allclose(result.history[0], first, rtol=1e-6)
    both = mv.vis.class_model(fashion, [2, 4], steps=1, lr=1e-3, init=start, progress=False)  # one start for both
    np.testing.assert_allclose(both.history[0, 0], first, rtol=1e-6)
    with pytest.raises(ValueError, match=r"class_model: an init image must be \(C, H, W\) = \(1, 28, 28\)"):
        mv.vis.class_model(fashion, [2, 4], steps=1, init=bags[:3], progress=False)
    with pytest.raises(ValueError, match="class_model: the init image contains NaN or infinite values"):
        mv.vis.class_model(fashion, 2, steps=1, init=np.full((1, 28, 28), np.nan, np.float32), progress=False)


def test_bad_input_is_refused(fashion, bags):
    with pytest.raises(ValueError, match="cluster_facets: k must be a positive int, got 0"):
        mv.vis.cluster_facets(fashion, bags, "classifier.1", k=0)
    with pytest.raises(ValueError, match=r"cluster_facets: need at least k = 5 images \(N, C, H, W\)"):
        mv.vis.cluster_facets(fashion, bags[:4], "classifier.1", k=5)
    with pytest.raises(ValueError, match="cluster_facets: layer: 'classifier.7' is not a layer of FashionCNN"):
        mv.vis.cluster_facets(fashion, bags, "classifier.7")
    with pytest.raises(TypeError, match="multifaceted_class_model: init is set by the facets"):
        mv.vis.multifaceted_class_model(fashion, bags, 8, "classifier.1", init="mean")
    with pytest.raises(TypeError, match="multifaceted_class_model: target must be a class index"):
        mv.vis.multifaceted_class_model(fashion, bags, [8], "classifier.1")


def test_multifaceted_class_model_refuses_under_its_own_name(fashion):
    """Its arguments were refused under the names of the calls inside it, cluster_facets and class_model
    (a bad target only after the clustering had run)."""
    images = np.random.default_rng(0).standard_normal((6, 1, 28, 28)).astype(np.float32)
    with pytest.raises(ValueError, match="multifaceted_class_model: k must be a positive int, got 0"):
        mv.vis.multifaceted_class_model(fashion, images, 8, "classifier.1", k=0)
    with pytest.raises(ValueError, match="multifaceted_class_model: layer: 'classifier.7' is not a layer"):
        mv.vis.multifaceted_class_model(fashion, images, 8, "classifier.7")
    with pytest.raises(ValueError, match=r"multifaceted_class_model: target class 10 is out of range for 10 classes"):
        mv.vis.multifaceted_class_model(fashion, images, 10, "classifier.1", k=2)
    with pytest.raises(TypeError, match="multifaceted_class_model: model must be a minivis nn.Module, got str"):
        mv.vis.multifaceted_class_model("fashion_cnn", images, 8, "classifier.1")
    with pytest.raises(ValueError, match="cluster_facets: batch_size must be"):
        mv.vis.cluster_facets(fashion, images, "classifier.1", k=2, batch_size=0)
