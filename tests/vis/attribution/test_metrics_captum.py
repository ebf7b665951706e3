"""max-sensitivity against Captum's ``captum.metrics.sensitivity_max`` on identical weights and identical
perturbations.

How Captum draws them (captum/metrics/_core/sensitivity.py and _utils/batching.py, 0.9): the batch is
``repeat_interleave``d k times (example-major: x0 k times, then x1 ...) and ``perturb_func`` is called
once on that (N * k) batch; the default adds ``torch.FloatTensor(size).uniform_(-r, r)`` (float32 draws
from torch's global generator, whatever the input's dtype). k = n_perturb_samples when
``max_examples_per_batch`` is None, else max_examples_per_batch // N (at least 1), and the remaining
samples come in further calls of k (the last one shorter), the max taken across calls. So with one
seed, the draws an example gets depend on ``max_examples_per_batch`` and on the batch size: the same
seed gives different sensitivities (tested below); the samples themselves are still uniform in the
L-inf ball. The parity tests rebuild Captum's samples as (N, S, C, H, W) in that layout and hand them
to ours.
"""

import numpy as np
import pytest

import minivis as mv

torch = pytest.importorskip("torch")
captum_metrics = pytest.importorskip("captum.metrics")
from captum.attr import Saliency  # noqa: E402
from captum.metrics._core import sensitivity as captum_sensitivity  # noqa: E402


def _recording(perturb):
    """Wrap a Captum perturb_func; collect each call's deltas as (N, k, C, H, W)."""
    calls = []

    def func(inputs, radius):
        out = perturb(inputs, radius)
        moved = out[0] if isinstance(out, tuple) else out
        calls.append((moved - inputs).detach().numpy())
        return out

    return func, calls


def _as_samples(calls, n):
    """Captum's chunks (N * k_j rows, example-major) -> (N, S, C, H, W), samples in draw order."""
    return np.concatenate([d.reshape((n, -1) + d.shape[1:]) for d in calls], axis=1)


def _explainers(nets, target):
    model, twin = nets
    saliency = Saliency(twin)

    def theirs(inputs, **kwargs):
        return saliency.attribute(inputs, **kwargs)  # |gradient|, (N, 1, H, W)

    def ours(batch):
        return mv.vis.saliency(model, batch, target)  # max_c |gradient| = |gradient| for one channel

    return theirs, ours


@pytest.mark.parametrize("max_examples_per_batch", [None, 3, 6, 9])
def test_matches_captum_on_its_own_default_draws(nets, max_examples_per_batch):
    """Captum's default perturbation under a seed, recorded, then given to ours: the same values."""
    n, s, target = 3, 5, 4
    x = np.random.default_rng(0).standard_normal((n, 1, 28, 28))
    theirs, ours = _explainers(nets, target)
    func, calls = _recording(captum_sensitivity.default_perturb_func)
    torch.manual_seed(0)
    want = captum_metrics.sensitivity_max(theirs, torch.from_numpy(x), perturb_func=func, perturb_radius=0.05,
                                          n_perturb_samples=s, max_examples_per_batch=max_examples_per_batch,
                                          target=target).numpy()
    deltas = _as_samples(calls, n)
    assert deltas.shape == (n, s, 1, 28, 28)
    assert np.abs(deltas).max() <= 0.05 and np.abs(deltas).max() > 0.04  # uniform in the L-inf ball
    got = mv.vis.max_sensitivity(ours, x, perturbations=deltas)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert want.min() > 0


def test_matches_captum_with_a_deterministic_perturbation(nets):
    """A deterministic perturb_func (sample index t -> a fixed pattern per example) makes Captum's result
    independent of max_examples_per_batch, and equal to ours on the same (N, S, C, H, W) array."""
    n, s, target = 2, 4, 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 1, 28, 28))
    fixed = rng.uniform(-0.03, 0.03, (n, s, 1, 28, 28))
    theirs, ours = _explainers(nets, target)
    results = []
    for per_batch in (None, 2, 4, 6):
        used = [0]

        def perturb(inputs, radius, used=used):
            k = inputs.shape[0] // n
            delta = fixed[:, used[0]:used[0] + k].reshape((n * k,) + fixed.shape[2:])
            used[0] += k
            return inputs + torch.from_numpy(delta)

        results.append(captum_metrics.sensitivity_max(theirs, torch.from_numpy(x), perturb_func=perturb,
                                                      n_perturb_samples=s, max_examples_per_batch=per_batch,
                                                      target=target).numpy())
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-12)
    np.testing.assert_allclose(mv.vis.max_sensitivity(ours, x, perturbations=fixed), results[0], rtol=1e-10,
                               atol=1e-12)


def test_captums_draws_depend_on_max_examples_per_batch(nets):
    """The inconsistency seen before: one seed, two batchings, different samples for the same example
    (and so different sensitivities). Ours takes its draws once, shaped (N, S, ...), from its own seed."""
    n, s, target = 2, 4, 0
    x = np.random.default_rng(2).standard_normal((n, 1, 28, 28))
    theirs, ours = _explainers(nets, target)
    draws = []
    for per_batch in (None, 2):
        func, calls = _recording(captum_sensitivity.default_perturb_func)
        torch.manual_seed(0)
        captum_metrics.sensitivity_max(theirs, torch.from_numpy(x), perturb_func=func, n_perturb_samples=s,
                                       max_examples_per_batch=per_batch, target=target)
        draws.append(_as_samples(calls, n))
    assert not np.allclose(draws[0], draws[1])
    # the same numbers, laid out differently: one batch draws N*S values example-major, the batched
    # run draws them chunk by chunk, so example 0's first sample is the first row in both
    np.testing.assert_array_equal(draws[0][0, 0], draws[1][0, 0])
    # ours draws (N, S, C, H, W) at once, example-major: the first example's samples (and score) do not
    # depend on what else is in the batch
    a = mv.vis.max_sensitivity(ours, x, seed=5, n_samples=s)
    b = mv.vis.max_sensitivity(ours, x[:1], seed=5, n_samples=s)
    np.testing.assert_allclose(a[:1], b, rtol=1e-12)
