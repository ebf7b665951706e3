"""Model-parameter randomisation (minivis/vis/attribution/sanity.py): the similarity measures
against SciPy and scikit-image, the cascade and independent modes restoring the model, Adebayo
et al.'s finding on fashion_cnn, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from scipy.stats import rankdata, spearmanr

import minivis as mv
from minivis.vis.attribution import sanity


def test_ssim_and_hog_match_scikit_image(rng):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from skimage.feature import hog

    a = rng.random((28, 28))
    b = 0.6 * a + 0.4 * rng.random((28, 28))
    want = skimage_metrics.structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False)
    np.testing.assert_allclose(sanity.ssim(a, b), want, rtol=1e-12)
    ref = hog(a, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")
    # measured difference 2e-8: scikit-image's Cython cell histogram does not sum in float64 order
    np.testing.assert_allclose(sanity.hog(a), ref, rtol=1e-6, atol=1e-7)
    assert sanity.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], rel=1e-12)


def test_cascade_restores_the_model_and_finds_the_papers_ordering():
    """Adebayo et al.: the gradient changes as layers are randomised, guided backprop barely does."""
    model = mv.models.load("fashion_cnn").double()
    images, _ = mv.data.fashion_mnist("test")
    x = model.preprocess(images[:4]).astype(np.float64)
    state = {k: np.array(v) for k, v in model.state_dict().items()}
    target = np.array([9, 2, 1, 1])
    grad = sanity.model_randomisation(model, x, target, "input_gradient", layers=["classifier.3", "classifier.0"])
    guided = sanity.model_randomisation(model, x, target, "guided_backprop", layers=["classifier.3", "classifier.0"])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert grad.scores["spearman_abs"].shape == (2, 4) and grad.maps.shape == (3, 4, 1, 28, 28)
    print("\n" + grad.table() + "\n" + guided.table())
    assert guided.scores["spearman_abs"].mean() > grad.scores["spearman_abs"].mean() + 0.2
    assert guided.scores["ssim"].mean() > grad.scores["ssim"].mean()
    # independent mode: the first step equals the cascade's first step (same draws)
    indep = sanity.model_randomisation(model, x, target, "input_gradient", "independent",
                                       layers=["classifier.3", "classifier.0"])
    np.testing.assert_allclose(indep.maps[1], grad.maps[1], rtol=1e-12)
    assert not np.allclose(indep.maps[2], grad.maps[2])


def test_bad_input():
    model = mv.models.FashionCNN().double().eval()
    x = np.zeros((1, 1, 28, 28))
    with pytest.raises(ValueError, match="model_randomisation: mode must be one of"):
        sanity.model_randomisation(model, x, 0, "saliency", mode="top_down")
    with pytest.raises(ValueError, match=r"model_randomisation: layers \['features.1'\] are not conv or linear"):
        sanity.model_randomisation(model, x, 0, "saliency", layers=["features.1"])
    with pytest.raises(ValueError, match="model_randomisation: method must be a callable"):
        sanity.model_randomisation(model, x, 0, "salience")
    with pytest.raises(ValueError, match=r"model_randomisation: measures must be a non-empty selection of .* got \(\)"):
        sanity.model_randomisation(model, x, 0, "saliency", measures=())
    with pytest.raises(TypeError, match="model_randomisation: measures must be a tuple of names from .* got set"):
        sanity.model_randomisation(model, x, 0, "saliency", measures={"ssim"})
    with pytest.raises(TypeError, match="model_randomisation: reinit must be a callable .* got str"):
        sanity.model_randomisation(model, x, 0, "saliency", reinit="uniform")
    with pytest.raises(TypeError, match="model_randomisation: progress must be True or False, got 1"):
        sanity.model_randomisation(model, x, 0, "saliency", progress=1)
    with pytest.raises(TypeError, match="model_randomisation: layers must be a list of layer names .* got 3"):
        sanity.model_randomisation(model, x, 0, "saliency", layers=3)
    with pytest.raises(TypeError, match=r"model_randomisation: layers must be .* got \[\['fc'\]\]"):
        sanity.model_randomisation(model, x, 0, "saliency", layers=[["fc"]])


def test_batched_spearman_matches_scipy_row_by_row(rng):
    a, b = rng.random((5, 12, 12)), rng.random((5, 12, 12))
    b[1] = a[1] ** 3  # monotone: 1
    a[2, :6] = 0.5  # ties
    b[3] = 0.25  # constant: 0, as spearman()
    want = [sanity.spearman(p, q) for p, q in zip(a, b, strict=True)]
    np.testing.assert_allclose(sanity.spearman_rows(a, b), want, rtol=1e-12, atol=1e-15)
    assert want[1] == pytest.approx(1.0) and want[3] == 0.0
    assert want[2] == pytest.approx(spearmanr(a[2].ravel(), b[2].ravel())[0], rel=1e-12)


def test_similarities_reuse_the_reference_ranks_across_steps(rng, monkeypatch):
    """A cascade compares one original map with every step's: its ranks are computed once, into
    the caller's dict, and the scores equal those computed afresh."""
    before, afters = rng.standard_normal((4, 10, 10)), rng.standard_normal((3, 4, 10, 10))
    fresh = [sanity.similarities(before, a, ("spearman_abs", "spearman")) for a in afters]
    calls = []
    ranks = sanity._centred_ranks
    monkeypatch.setattr(sanity, "_centred_ranks", lambda a: calls.append(a.shape) or ranks(a))
    kept = {}
    cached = [sanity.similarities(before, a, ("spearman_abs", "spearman"), kept) for a in afters]
    assert sorted(kept) == ["spearman", "spearman_abs"]
    assert len(calls) == 2 + 2 * len(afters)  # the original's two rankings once, each step's two
    for f, c in zip(fresh, cached, strict=True):
        for measure in f:
            np.testing.assert_array_equal(f[measure], c[measure])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
              elements=st.sampled_from([0.0, -0.0, 1.0, -2.5, 3.0, np.inf, -np.inf, np.nan, 1e-300])))
def test_average_ranks_match_scipy_rankdata(a):
    """Ties (many, from a small alphabet), signed zeros, infinities and NaN rows, as scipy ranks them."""
    np.testing.assert_array_equal(sanity.average_ranks(a), rankdata(a, axis=1), strict=True)


def test_average_ranks_bad_input():
    with pytest.raises(ValueError, match=r"average_ranks: a must be a 2-D numeric array .* got shape \(3,\)"):
        sanity.average_ranks(np.zeros(3))
    with pytest.raises(ValueError, match="average_ranks: a must be a 2-D numeric array .* dtype <U1"):
        sanity.average_ranks(np.array([["a", "b"]]))
