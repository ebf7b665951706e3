"""Evaluation metrics (minivis/vis/attribution/metrics.py): deletion against Quantus's PixelFlipping
on identical weights (and the difference in how the two integrate the curve), infidelity and
max-sensitivity against Captum with the same perturbations, insertion and the pointing game
against direct computations, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.attribution import metrics

nn = mv.nn


def tiny_net():
    mv.nn.init.seed(9)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 3)).double().eval()
    return net


def as_torch(net):
    torch = pytest.importorskip("torch")
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(64, 3)).double().eval()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    return twin


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_deletion_by_hand(rng):
    net = tiny_net()
    x = rng.standard_normal((2, 1, 8, 8))
    a = rng.standard_normal((2, 8, 8))
    result = metrics.deletion(net, x, np.array([0, 2]), a, pixels_per_step=5, baseline=-1.0, batch_size=3)
    steps = int(np.ceil(64 / 5))
    assert result.scores.shape == (2, steps + 1) and result.fractions[-1] == 1.0
    for i, c in enumerate([0, 2]):
        order = np.argsort(-a[i].ravel(), kind="stable")
        for k in (0, 1, 7, steps):
            img = x[i].copy().reshape(1, -1)
            img[:, order[:k * 5]] = -1.0
            p = softmax(net(mv.tensor(img.reshape(1, 1, 8, 8))).numpy())[0, c]
            np.testing.assert_allclose(result.scores[i, k], p, rtol=1e-12)
    np.testing.assert_allclose(result.auc, np.trapezoid(result.scores, result.fractions, axis=1), rtol=1e-12)


@pytest.mark.parametrize("curve", [metrics.deletion, metrics.insertion])
def test_curves_do_not_depend_on_how_the_steps_are_batched(rng, curve):
    """The steps of all images share the batches (a batch may hold the end of one image's curve and
    the start of the next one's): every batch size gives the same curves as one image at a time."""
    net = tiny_net()
    x, a = rng.standard_normal((3, 1, 8, 8)), rng.standard_normal((3, 1, 8, 8))
    target = np.array([2, 0, 1])
    alone = [curve(net, x[i:i + 1], target[i:i + 1], a[i:i + 1], pixels_per_step=6, batch_size=4).scores[0]
             for i in range(3)]
    for batch_size in (1, 5, 12, 13, 100):
        got = curve(net, x, target, a, pixels_per_step=6, batch_size=batch_size).scores
        np.testing.assert_allclose(got, np.stack(alone), rtol=1e-12, atol=1e-15)


def test_insertion_starts_blurred_and_ends_at_the_image(rng):
    net = tiny_net()
    x = rng.standard_normal((1, 1, 8, 8))
    result = metrics.insertion(net, x, 1, rng.standard_normal((1, 8, 8)), pixels_per_step=8)
    blurred = metrics._fill("blur", x, net, "insertion", "start")
    full = softmax(net(mv.tensor(x)).numpy())[0, 1]
    np.testing.assert_allclose(result.scores[0, 0], softmax(net(mv.tensor(blurred)).numpy())[0, 1], rtol=1e-12)
    np.testing.assert_allclose(result.scores[0, -1], full, rtol=1e-12)


def test_deletion_matches_quantus_pixel_flipping(rng):
    """Same curve as Quantus's PixelFlipping (features_in_step pixels, a constant baseline, softmax), but
    Quantus leaves out the intact image's point and integrates with unit steps; the paper's AUC is over
    fractions in [0, 1] from the intact image on. Both differences are checked."""
    torch = pytest.importorskip("torch")
    quantus = pytest.importorskip("quantus", reason="metric parity needs quantus (test extra)")
    net = tiny_net()

    class Float64(torch.nn.Module):  # Quantus hands the model float32 inputs: compute in float64 all the same
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs):
            return self.inner(inputs.double())

    twin = Float64(as_torch(net)).eval()
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32).astype(np.float64)  # exact in float32 too
    y = np.array([0, 1, 2])
    a = rng.standard_normal((3, 1, 8, 8))
    ours = metrics.deletion(net, x, y, a, pixels_per_step=4, baseline=-0.5)
    pf = quantus.PixelFlipping(features_in_step=4, perturb_baseline=-0.5, normalise=False, abs=False,
                               disable_warnings=True, display_progressbar=False)
    curves = np.array(pf(model=twin, x_batch=x, y_batch=y, a_batch=a, device="cpu", softmax=True))
    np.testing.assert_allclose(ours.scores[:, 1:], curves, rtol=1e-10)
    quantus_auc = np.trapezoid(curves, dx=1, axis=1)
    assert not np.allclose(ours.auc, quantus_auc)
    np.testing.assert_allclose(ours.auc, np.trapezoid(np.concatenate([ours.scores[:, :1], curves], 1),
                                                      dx=1 / 16, axis=1), rtol=1e-10)


def test_infidelity_matches_captum(rng):
    torch = pytest.importorskip("torch")
    captum_metrics = pytest.importorskip("captum.metrics", reason="metric parity needs captum (test extra)")
    net = tiny_net()
    twin = as_torch(net)
    x = rng.standard_normal((2, 1, 8, 8))
    a = mv.vis.gradient_x_input(net, x, np.array([1, 2]))
    noise = rng.standard_normal((2, 5, 1, 8, 8)) * 0.2
    flat = torch.from_numpy(noise.reshape(10, 1, 8, 8))  # Captum repeats each input S times in a row

    def perturb(inputs):
        return flat, inputs - flat

    for normalize in (False, True):
        ref = captum_metrics.infidelity(twin, perturb, torch.from_numpy(x), torch.from_numpy(a),
                                        target=torch.tensor([1, 2]), n_perturb_samples=5, normalize=normalize)
        ours = metrics.infidelity(net, x, np.array([1, 2]), a, perturbations=noise, normalize=normalize)
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-10)


def test_max_sensitivity_by_hand(rng):
    """max_s ||phi(x + d_s) - phi(x)||_F / ||phi(x)||_F, as Captum's sensitivity_max computes it (its
    source, captum/metrics/_core/sensitivity.py); checked directly with given perturbations."""
    net = tiny_net()
    x = rng.standard_normal((2, 1, 8, 8))
    deltas = rng.uniform(-0.05, 0.05, (2, 4, 1, 8, 8))

    def explain(b):
        return mv.vis.input_gradient(net, b, np.array([1, 2]))

    ours = metrics.max_sensitivity(explain, x, perturbations=deltas)
    phi = explain(x)
    want = [max(np.linalg.norm(explain(x + deltas[:, s])[i] - phi[i]) for s in range(4)) / np.linalg.norm(phi[i])
            for i in range(2)]
    np.testing.assert_allclose(ours, want, rtol=1e-12)
    assert (metrics.max_sensitivity(explain, x, radius=0.0, n_samples=2) == 0).all()


def test_pointing_game():
    a = np.zeros((2, 5, 5))
    a[0, 1, 1] = 1
    a[1, 4, 4] = 1
    mask = np.zeros((5, 5), bool)
    mask[0:3, 0:3] = True
    np.testing.assert_array_equal(metrics.pointing_game(a, mask), [True, False])
    np.testing.assert_array_equal(metrics.pointing_game(a, mask, tolerance=2), [True, True])


def test_bad_input(rng):
    net = tiny_net()
    x = rng.standard_normal((1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"deletion: attribution must be shaped like x \(1, 1, 8, 8\) or \(N, H, W\)"):
        metrics.deletion(net, x, 0, np.zeros((1, 7, 8)))
    with pytest.raises(ValueError, match="insertion: pixels_per_step must be a positive int, got 0"):
        metrics.insertion(net, x, 0, np.zeros((1, 8, 8)), pixels_per_step=0)
    with pytest.raises(ValueError, match="deletion: baseline must be a number"):
        metrics.deletion(net, x, 0, np.zeros((1, 8, 8)), baseline="grey")
    with pytest.raises(ValueError, match="infidelity: attribution must be shaped like x"):
        metrics.infidelity(net, x, 0, np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="infidelity: n_samples must be a positive int"):
        metrics.infidelity(net, x, 0, np.zeros_like(x), n_samples=0)
    with pytest.raises(ValueError, match="max_sensitivity: perturbations must be"):
        metrics.max_sensitivity(lambda b: b, x, perturbations=np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="pointing_game: attribution .* and mask .* must match"):
        metrics.pointing_game(np.zeros((1, 4, 4)), np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="deletion: attribution contains NaN"):
        metrics.deletion(net, x, 0, np.full((1, 8, 8), np.nan))


@pytest.mark.parametrize("call, error, match", [
    # non-numeric maps are refused by name, not by NumPy's float() conversion
    (lambda net, x: metrics.deletion(net, x, 0, "map"), TypeError, "deletion: attribution must be a numeric array"),
    (lambda net, x: metrics.insertion(net, x, 0, {}), TypeError, "insertion: attribution must be a numeric array"),
    (lambda net, x: metrics.infidelity(net, x, 0, 1 + 2j), TypeError, "infidelity: attribution must be a numeric"),
    (lambda net, x: metrics.pointing_game("map", np.ones((1, 8, 8), bool)), TypeError,
     "pointing_game: attribution must be a numeric array"),
    # datetime maps: an ndarray's .data (its memoryview) was taken for a Tensor's and failed in NumPy's
    # buffer protocol ("cannot include dtype 'M' in a buffer")
    (lambda net, x: metrics.deletion(net, x, 0, np.zeros((1, 8, 8), "datetime64[s]")), TypeError,
     r"deletion: attribution must be a numeric array or Tensor, got ndarray of dtype datetime64\[s\]"),
    (lambda net, x: metrics.infidelity(net, x, 0, np.zeros(x.shape, "timedelta64[s]")), TypeError,
     r"infidelity: attribution must be a numeric array or Tensor, got ndarray of dtype timedelta64\[s\]"),
    (lambda net, x: metrics.pointing_game(np.zeros((1, 8, 8), "timedelta64[s]"), np.ones((8, 8), bool)),
     TypeError, "pointing_game: attribution must be a numeric array or Tensor, got ndarray of dtype timedelta64"),
    (lambda net, x: metrics.deletion(net, x, 0, np.zeros((1, 8, 8)), baseline=np.zeros(x.shape, "timedelta64[s]")),
     TypeError, r"deletion: baseline must be a number, .* got an array of dtype timedelta64\[s\]"),
    # a NaN map gave a NaN infidelity
    (lambda net, x: metrics.infidelity(net, x, 0, np.full(x.shape, np.nan)), ValueError,
     "infidelity: attribution contains NaN or infinite values"),
    # a target of the wrong length failed in np.broadcast_to
    (lambda net, x: metrics.deletion(net, x, [0, 1], np.zeros((1, 8, 8))), ValueError,
     "deletion: target has 2 indices for a batch of 1 images"),
    (lambda net, x: metrics.infidelity(net, x, np.array([[0]]), np.zeros(x.shape)), TypeError,
     "infidelity: target must be a class index or one per image"),
    # seeds went to np.random.default_rng unchecked
    (lambda net, x: metrics.infidelity(net, x, 0, np.zeros(x.shape), seed=-1), ValueError,
     "infidelity: seed must be an int >= 0 or None, got -1"),
    (lambda net, x: metrics.max_sensitivity(lambda b: b, x, seed=1.5), TypeError,
     "max_sensitivity: seed must be an int or None, got 1.5"),
    # tolerance went through int(): NaN, strings and huge values failed there or in SciPy
    (lambda net, x: metrics.pointing_game(np.zeros((1, 8, 8)), np.ones((8, 8), bool), tolerance=float("nan")),
     TypeError, "pointing_game: tolerance must be an int, got nan"),
    (lambda net, x: metrics.pointing_game(np.zeros((1, 8, 8)), np.ones((8, 8), bool), tolerance=-1),
     ValueError, "pointing_game: tolerance must be >= 0, got -1"),
])
def test_bad_input_is_refused_by_name(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_net(), rng.standard_normal((1, 1, 8, 8)))


def test_huge_steps_and_tolerances_are_capped_at_the_image(rng):
    """pixels_per_step and tolerance past the image's size overflowed int64 / a C int; they now act as
    the image's size does."""
    net, x = tiny_net(), rng.standard_normal((1, 1, 8, 8))
    a = rng.standard_normal((1, 8, 8))
    whole = metrics.deletion(net, x, 0, a, pixels_per_step=64)
    huge = metrics.deletion(net, x, 0, a, pixels_per_step=10**30)
    np.testing.assert_array_equal(huge.scores, whole.scores)
    np.testing.assert_array_equal(huge.fractions, [0.0, 1.0])
    mask = np.zeros((8, 8), bool)
    mask[0, 0] = True
    np.testing.assert_array_equal(metrics.pointing_game(a, mask, tolerance=2**63), [True])
