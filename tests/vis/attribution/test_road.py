"""ROAD (Rong et al. 2022): noisy linear imputation and MoRF/LeRF scores, against the paper's equations
and pytorch-grad-cam's ``pytorch_grad_cam.metrics.road`` on identical weights; each place where
grad-cam departs from the paper gets its own test."""

import copy

import numpy as np
import pytest
from scipy import ndimage

import minivis as mv
from minivis.vis.attribution.road import removed_counts


class _GradCam:
    """pytorch-grad-cam's modules, imported only by the tests that compare with it (the tests of the
    paper's equations run without torch and grad-cam)."""

    def __init__(self):
        self.torch = pytest.importorskip("torch")
        self.road = pytest.importorskip("pytorch_grad_cam.metrics.road")
        self.confidence = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
        targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
        self.Softmax, self.Logit = targets.ClassifierOutputSoftmaxTarget, targets.ClassifierOutputTarget


@pytest.fixture
def gc():
    return _GradCam()


def _random_case(seed=0, shape=(3, 24, 31), p=0.7):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, shape), rng.uniform(size=shape[1:]) < p


def _gradcam_imputation_float64(gc, img, removed):
    """grad-cam's own system (its setup_sparse_system), solved in float64 (its __call__ casts to float32)."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    a, b = gc.road.NoisyLinearImputer.setup_sparse_system((~removed).astype(np.float64), img,
                                                           gc.road.neighbors_weights)
    out = img.reshape(img.shape[0], -1).copy()
    out[:, removed.ravel()] = np.asarray(spsolve(csc_matrix(a), b)).reshape(-1, img.shape[0]).T
    return out.reshape(img.shape)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.95])
def test_imputation_matches_gradcams_system_in_float64(gc, p):
    img, removed = _random_case(1, p=p)
    ours = mv.vis.noisy_linear_imputation(img, removed, noise=0.0)
    np.testing.assert_allclose(ours, _gradcam_imputation_float64(gc, img, removed), rtol=0, atol=1e-12)


def test_imputation_matches_gradcams_imputer_in_float32(gc):
    img, removed = _random_case(2)
    img = img.astype(np.float32)
    keep = gc.torch.from_numpy((~removed).astype(np.float32))
    ref = gc.road.NoisyLinearImputer(noise=0.0)(gc.torch.from_numpy(img), keep)
    ours = mv.vis.noisy_linear_imputation(img, removed, noise=0.0)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-6)


def test_each_imputed_pixel_is_the_weighted_mean_of_its_neighbours():
    """The paper's equation, checked directly: x_i = sum_j w_ij x_j / sum_j w_ij over in-image neighbours."""
    img, removed = _random_case(3, p=0.6)
    out = mv.vis.noisy_linear_imputation(img, removed, noise=0.0)
    kernel = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
    weights = ndimage.correlate(np.ones(removed.shape), kernel, mode="constant", cval=0.0)
    for c in range(img.shape[0]):
        mean = ndimage.correlate(out[c], kernel, mode="constant", cval=0.0) / weights
        np.testing.assert_allclose(out[c][removed], mean[removed], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(out[c][~removed], img[c][~removed])  # kept pixels untouched


def test_imputation_commutes_with_normalisation():
    """Weights of each mean sum to 1, so imputing normalised pixels = normalising imputed pixels: the
    reason ROAD can impute the model's prepared input and only rescale the noise."""
    img, removed = _random_case(4)
    mean, std = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]
    lhs = mv.vis.noisy_linear_imputation((img - mean) / std, removed, noise=0.0)
    rhs = (mv.vis.noisy_linear_imputation(img, removed, noise=0.0) - mean) / std
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-12)


def test_noise_is_in_pixel_units_scaled_per_channel():
    img, removed = _random_case(5, shape=(3, 60, 60), p=0.9)
    scale = 1 / np.array([0.229, 0.224, 0.225])
    clean = mv.vis.noisy_linear_imputation(img, removed, noise=0.0)
    noisy = mv.vis.noisy_linear_imputation(img, removed, noise=0.01, seed=7, scale=scale)
    draws = np.random.default_rng(7).standard_normal((3, int(removed.sum())))
    np.testing.assert_allclose((noisy - clean)[:, removed], 0.01 * scale[:, None] * draws, rtol=0, atol=1e-12)


def test_gradcam_adds_its_noise_in_normalised_units(gc, monkeypatch):
    torch, road_ref = gc.torch, gc.road
    """Departure: grad-cam adds sigma * N(0, 1) to the prepared (normalised) input, so its sigma = 0.01
    is 0.01 * std in pixel units (about 0.0023 for ImageNet's std); the paper's code imputes pixels in
    [0, 1] before normalising, so sigma = 0.01 there. Made visible by replacing its draws with ones."""
    img, removed = _random_case(6)
    img = img.astype(np.float32)
    keep = torch.from_numpy((~removed).astype(np.float32))
    clean = road_ref.NoisyLinearImputer(noise=0.0)(torch.from_numpy(img), keep).numpy()
    monkeypatch.setattr(road_ref.torch, "randn_like", lambda t: torch.ones_like(t))
    noisy = road_ref.NoisyLinearImputer(noise=0.01)(torch.from_numpy(img), keep).numpy()
    np.testing.assert_allclose((noisy - clean)[:, removed], 0.01, atol=1e-6)  # the same for every channel


def _gradcam_removed(gc, cam, q, least_first):
    torch, confidence = gc.torch, gc.confidence
    """The pixels grad-cam's RemoveMost/LeastRelevantFirst(q) hand to the imputer as missing."""
    seen = {}

    def spy(img, mask):
        seen["mask"] = mask.numpy()
        return img

    remover = (confidence.RemoveLeastRelevantFirst if least_first else confidence.RemoveMostRelevantFirst)(q, spy)
    remover(torch.zeros((1,) + cam.shape), torch.from_numpy(cam))
    return seen["mask"] == 0


def test_gradcam_thresholds_at_a_percentile_instead_of_counting(gc):
    """Departure: grad-cam keeps the pixels strictly below np.percentile(cam, q) (interpolated), the paper
    removes exactly int(p * H * W) by sorting. On 28 x 28 = 784 distinct values and q = 80 it removes 157,
    the paper floor(0.2 * 784) = 156."""
    cam = np.random.default_rng(8).uniform(size=(28, 28))
    gc = _gradcam_removed(gc, cam, 80, least_first=False)
    ours = mv.vis.removal_mask(cam, 0.2, "morf")
    assert ours.sum() == int(784 * 0.2) == 156
    assert gc.sum() == 157
    assert np.all(cam[ours].min() > cam[~ours].max())  # ours: exactly the top 156
    assert ours[gc].sum() == 156  # grad-cam: the same top pixels and one more


def test_gradcam_removes_every_pixel_of_a_map_with_many_ties(gc):
    """Departure: with ties (a ReLU'd CAM whose lower 60% is 0) the percentile threshold is 0 and
    ``cam < 0`` keeps nothing: grad-cam's MoRF at q = 50 removes 100% of the pixels (its imputer then
    has an empty right-hand side), the paper's sort removes 50%, ties in a fixed order."""
    rng = np.random.default_rng(9)
    cam = np.maximum(rng.uniform(-1.5, 1, size=(20, 20)), 0)
    assert (cam == 0).mean() > 0.55
    assert _gradcam_removed(gc, cam, 50, least_first=False).all()
    ours = mv.vis.removal_mask(cam, 0.5, "morf")
    assert ours.sum() == 200 and cam[ours].min() >= cam[~ours].max()


def test_gradcam_lerf_percentile_is_the_fraction_kept(gc):
    """grad-cam's ROADLeastRelevantFirst(q) removes the (100 - q)% least relevant: our LeRF at p = 1 - q/100."""
    cam = np.random.default_rng(10).uniform(size=(16, 16))
    gc = _gradcam_removed(gc, cam, 30, least_first=True)
    count = int(gc.sum())
    ours = mv.vis.removal_mask(cam, count / 256, "lerf")
    np.testing.assert_array_equal(ours, gc)
    assert abs(count / 256 - 0.7) < 2 / 256


@pytest.mark.parametrize("least_first", [False, True])
def test_scores_match_gradcam_on_identical_weights(gc, nets, least_first):
    torch, confidence, road_ref = gc.torch, gc.confidence, gc.road
    """Noise 0 on both sides; our fractions are the counts grad-cam removes (previous test), so both
    impute the same pixels; softmax scores of the same target on the same images must agree."""
    model, twin = nets
    twin = copy.deepcopy(twin).float()  # grad-cam's imputer writes float32 values: it only runs in float32
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    cams = rng.uniform(size=(2, 28, 28))
    y = [3, 7]
    qs = [20, 50, 90]
    counts = []
    for q in qs:
        per_image = {int(_gradcam_removed(gc, c, q, least_first).sum()) for c in cams}
        assert len(per_image) == 1  # distinct values: the same count for both images
        counts.append(per_image.pop())
    remover = confidence.RemoveLeastRelevantFirst if least_first else confidence.RemoveMostRelevantFirst
    ref = np.stack([confidence.PerturbationConfidenceMetric(remover(q, road_ref.NoisyLinearImputer(noise=0.0)))(
        torch.from_numpy(x), cams, [gc.Logit(t) for t in y], twin, return_diff=False)
        for q in qs], axis=1)
    order = "lerf" if least_first else "morf"
    fractions = np.array(counts) / 784
    ours = mv.vis.road(model, x, np.array(y), cams, fractions=fractions, order=order, noise=0.0, probability=False)
    # grad-cam's side runs in float32 (ours in float64 on the same float32 inputs), hence 1e-5 and not 1e-12
    np.testing.assert_allclose(getattr(ours, order), ref, rtol=1e-5, atol=1e-6)
    assert np.ptp(ref, axis=1).min() > 1e-3  # the scores move with the fraction: the check has teeth
    ours = mv.vis.road(model, x, np.array(y), cams, fractions=fractions, order=order, noise=0.0)
    base = confidence.PerturbationConfidenceMetric(remover(qs[0], road_ref.NoisyLinearImputer(noise=0.0)))(
        torch.from_numpy(x), cams, [gc.Softmax(t) for t in y], twin, return_diff=True)
    np.testing.assert_allclose(getattr(ours, order)[:, 0] - ours.base, base, rtol=1e-5, atol=1e-6)


def test_road_noise_draws_follow_the_documented_order(nets):
    """road() = removal_mask + noisy_linear_imputation with sigma / std (pixel units), one generator
    drawn MoRF then LeRF, image by image, fraction by fraction."""
    model, _ = nets
    rng = np.random.default_rng(13)
    x, a = rng.standard_normal((2, 1, 28, 28)), rng.standard_normal((2, 28, 28))
    fractions = (0.25, 0.6)
    got = mv.vis.road(model, x, 4, a, fractions=fractions, noise=0.05, seed=3, probability=False)
    draws = np.random.default_rng(3)
    expect = {}
    for order in ("morf", "lerf"):
        rows = [mv.vis.noisy_linear_imputation(x[i], mv.vis.removal_mask(a[i], p, order), 0.05,
                                               scale=1 / np.asarray(model.std), rng=draws)
                for i in range(2) for p in fractions]
        with mv.no_grad():
            logits = model(mv.Tensor(np.stack(rows))).data[:, 4]
        expect[order] = logits.reshape(2, len(fractions))
    np.testing.assert_allclose(got.morf, expect["morf"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.lerf, expect["lerf"], rtol=1e-12, atol=1e-12)
    assert got.combined.shape == (2,)
    np.testing.assert_allclose(got.combined, (got.lerf.mean(1) - got.morf.mean(1)) / 2)


def test_batching_and_single_image(nets):
    model, _ = nets
    rng = np.random.default_rng(14)
    x, a = rng.standard_normal((3, 1, 28, 28)), rng.standard_normal((3, 1, 28, 28))
    one = mv.vis.road(model, x, 2, a, fractions=(0.3, 0.7), batch_size=1, noise=0.0)
    many = mv.vis.road(model, x, 2, a, fractions=(0.3, 0.7), batch_size=64, noise=0.0)
    np.testing.assert_allclose(one.morf, many.morf, rtol=1e-12)
    single = mv.vis.road(model, x[0], 2, a[0], fractions=(0.3, 0.7), order="lerf", noise=0.0)
    assert single.morf is None
    np.testing.assert_allclose(single.lerf, many.lerf[:1], rtol=1e-12)
    with pytest.raises(ValueError, match="both orders"):
        single.combined  # noqa: B018


def test_bad_input(nets):
    model, _ = nets
    x, a = np.zeros((1, 1, 28, 28)), np.zeros((1, 28, 28))
    with pytest.raises(ValueError, match="road: order must be"):
        mv.vis.road(model, x, 0, a, order="up")
    with pytest.raises(ValueError, match=r"road: fractions must be .* \[0, 1\)"):
        mv.vis.road(model, x, 0, a, fractions=(0.5, 1.0))
    with pytest.raises(TypeError, match="road: fractions"):
        mv.vis.road(model, x, 0, a, fractions=("a", None))
    with pytest.raises(ValueError, match="road: attribution must be shaped like x"):
        mv.vis.road(model, x, 0, np.zeros((5, 5)))
    with pytest.raises(ValueError, match="road: noise must be >= 0"):
        mv.vis.road(model, x, 0, a, noise=-1.0)
    with pytest.raises(TypeError, match="road: target"):
        mv.vis.road(model, x, 0.5, a)
    with pytest.raises(TypeError, match="noisy_linear_imputation: removed must be a boolean"):
        mv.vis.noisy_linear_imputation(np.zeros((1, 4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"noisy_linear_imputation: removed must be \(H, W\) = \(4, 4\)"):
        mv.vis.noisy_linear_imputation(np.zeros((1, 4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="nothing to impute from"):
        mv.vis.noisy_linear_imputation(np.zeros((1, 4, 4)), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="removal_mask: order must be"):
        mv.vis.removal_mask(np.zeros((4, 4)), 0.5, "most")
    with pytest.raises(TypeError, match="removal_mask: attribution must be a numeric array or Tensor, got str"):
        mv.vis.removal_mask("map", 0.5)
    with pytest.raises(TypeError, match="road: attribution must be a numeric array or Tensor, got dict"):
        mv.vis.road(model, x, 0, {})
    with pytest.raises(ValueError, match="road: target has 2 indices for a batch of 1 images"):
        mv.vis.road(model, x, [0, 1], a)
    with pytest.raises(ValueError, match="road: seed must be an int >= 0 or None, got -1"):
        mv.vis.road(model, x, 0, a, seed=-1)
    with pytest.raises(TypeError, match="noisy_linear_imputation: seed must be an int or None, got 'a'"):
        mv.vis.noisy_linear_imputation(np.zeros((1, 4, 4)), np.eye(4, dtype=bool), seed="a")
    with pytest.raises(ValueError, match="noisy_linear_imputation: image contains NaN or infinite values"):
        mv.vis.noisy_linear_imputation(np.full((1, 4, 4), np.nan), np.eye(4, dtype=bool))
    with pytest.raises(ValueError, match=r"noisy_linear_imputation: image must be a float array \(C, H, W\)"):
        mv.vis.noisy_linear_imputation(np.zeros((0, 4, 4)), np.eye(4, dtype=bool))


def test_datetime_maps_and_images_are_refused_by_name(nets):
    """An ndarray's .data is its memoryview, which NumPy cannot make for datetime64/timedelta64: taking it
    for a Tensor's data failed with "cannot include dtype 'M' in a buffer", naming no call."""
    model, _ = nets
    x, a = np.zeros((1, 1, 28, 28)), np.zeros((1, 28, 28))
    with pytest.raises(TypeError, match=r"removal_mask: attribution must be a numeric array or Tensor, got ndarray "
                                        r"of dtype datetime64\[s\]"):
        mv.vis.removal_mask(a[0].astype("datetime64[s]"), 0.5)
    with pytest.raises(TypeError, match=r"road: attribution must be .* got ndarray of dtype timedelta64\[s\]"):
        mv.vis.road(model, x, 0, a.astype("timedelta64[s]"))
    with pytest.raises(ValueError, match=r"noisy_linear_imputation: image must be a float array \(C, H, W\), "
                                         r"got timedelta64\[s\]"):
        mv.vis.noisy_linear_imputation(np.zeros((1, 4, 4), "timedelta64[s]"), np.eye(4, dtype=bool))


def test_removed_counts_follow_the_papers_int():
    assert list(removed_counts([0.1, 0.29, 0.3, 0.9], 100)) == [10, 29, 30, 90]
    assert list(removed_counts([0.2], 784)) == [int(784 * 0.2)]
