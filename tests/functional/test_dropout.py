"""dropout: mask statistics, inverted scaling, seeding, gradient = mask * scale, eval identity, bad input."""

import numpy as np
import pytest

import minivis as mv
from tests.gradcheck import check_gradients


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics_and_scaling(p):
    n = 200_000
    y = mv.F.dropout(np.ones(n), p=p, rng=0).numpy()
    kept = y != 0
    # Survivors are scaled by exactly 1/(1-p); the dropped ones are exactly 0.
    np.testing.assert_array_equal(y[kept], np.full(kept.sum(), 1 / (1 - p)))
    # The kept fraction is Binomial(n, 1-p)/n: allow 5 standard deviations.
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    # Inverted dropout keeps the expected activation: E[y] = 1.
    assert abs(y.mean() - 1) < 5 * sigma / (1 - p)


def test_dropout_mask_has_no_spatial_structure():
    """Each element is dropped independently: the mask of neighbours is uncorrelated."""
    y = mv.F.dropout(np.ones((400, 500)), p=0.5, rng=3).numpy() != 0
    a, b = y[:, :-1].ravel().astype(float), y[:, 1:].ravel().astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02


def test_dropout_is_deterministic_for_a_seed(rng):
    x = rng.standard_normal((4, 3, 5, 5))
    a = mv.F.dropout(x, p=0.3, rng=42).numpy()
    b = mv.F.dropout(x, p=0.3, rng=42).numpy()
    c = mv.F.dropout(x, p=0.3, rng=np.random.default_rng(42)).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # an int seed is default_rng(seed)
    assert not np.array_equal(a, mv.F.dropout(x, p=0.3, rng=43).numpy())


def test_dropout_generator_advances_and_none_is_fresh(rng):
    x = np.ones((50, 50))
    gen = np.random.default_rng(7)
    first, second = mv.F.dropout(x, rng=gen).numpy(), mv.F.dropout(x, rng=gen).numpy()
    assert not np.array_equal(first, second)
    assert not np.array_equal(mv.F.dropout(x).numpy(), mv.F.dropout(x).numpy())


def test_dropout_same_mask_in_float32_and_float64(rng):
    x = rng.standard_normal((6, 7))
    y64 = mv.F.dropout(x, p=0.4, rng=5)
    y32 = mv.F.dropout(x.astype(np.float32), p=0.4, rng=5)
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    np.testing.assert_array_equal(y64.numpy() != 0, y32.numpy() != 0)
    np.testing.assert_allclose(y32.numpy(), y64.numpy(), rtol=1e-6)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_dropout_gradient_is_mask_times_scale(rng, p):
    x = mv.tensor(rng.uniform(0.5, 2.0, (3, 4, 5)), requires_grad=True)  # nonzero, so y != 0 marks the mask
    y = mv.F.dropout(x, p=p, rng=11)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    mask = y.numpy() != 0
    np.testing.assert_array_equal(x.grad, g * (mask / (1 - p)))
    np.testing.assert_allclose(y.numpy(), x.numpy() * mask / (1 - p), rtol=1e-15)


def test_dropout_finite_differences(rng):
    # An int seed draws the same mask on every call, so the op is a fixed linear map.
    check_gradients(lambda x: mv.F.dropout(x, p=0.3, rng=9), [rng.standard_normal((4, 6))],
                    rng=np.random.default_rng(1))


def test_dropout_identity_when_not_training_or_p_zero(rng):
    x = mv.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert mv.F.dropout(x, p=0.5, training=False) is x
    assert mv.F.dropout(x, p=0.0, rng=1) is x
    y = mv.F.dropout(x, p=0.9, training=False) * 2.0
    y.backward(np.ones((3, 4)))
    np.testing.assert_array_equal(x.grad, np.full((3, 4), 2.0))


def test_dropout_bad_input():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\), got 1.0"):
        mv.F.dropout(x, p=1.0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\), got -0.1"):
        mv.F.dropout(x, p=-0.1)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\), got 1.5"):
        mv.F.dropout(x, p=1.5, training=False)  # checked even when it would be the identity
    with pytest.raises(TypeError, match="dropout: p must be a number, got str"):
        mv.F.dropout(x, p="0.5")
    with pytest.raises(TypeError, match="dropout: rng must be a numpy Generator, an int seed or None, "
                                        "got str"):
        mv.F.dropout(x, rng="seed")
    with pytest.raises(TypeError, match="dropout: rng must be a numpy Generator, an int seed or None, "
                                        "got float"):
        mv.F.dropout(x, rng=1.5)
    with pytest.raises(TypeError, match="dropout: input must be a Tensor or an array, got list"):
        mv.F.dropout([1.0, 2.0])
    with pytest.raises(TypeError, match="dropout: input must be a float tensor or array, got dtype <U1"):
        mv.F.dropout(np.array(["a"]))
