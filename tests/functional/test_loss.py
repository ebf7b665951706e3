"""softmax, log_softmax, cross_entropy, mse_loss: finite differences, PyTorch parity, stability, bad input."""

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients

TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
REDUCTIONS = ["mean", "sum", "none"]


def _parity(ours_fn, torch_fn, arrays, rng, dtype, wrt=None):
    """Forward and gradients (random upstream) of ours_fn vs torch_fn on the same arrays."""
    wrt = range(len(arrays)) if wrt is None else wrt
    ours = [mv.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    theirs = [torch.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    y, yt = ours_fn(*ours), torch_fn(*theirs)
    assert y.shape == tuple(yt.shape) and y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL[dtype])
    upstream = rng.standard_normal(y.shape).astype(dtype)
    y.backward(upstream)  # a 0-d upstream gradient for the mean/sum reductions
    yt.backward(torch.tensor(upstream))
    for i in wrt:
        assert ours[i].grad.dtype == dtype
        np.testing.assert_allclose(ours[i].grad, theirs[i].grad.numpy(), **TOL[dtype])


# ----------------------------------------------------------------------------- softmax, log_softmax
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_finite_differences(rng, op, axis):
    fn = getattr(mv.F, op)
    check_gradients(lambda x: fn(x, axis=axis), [rng.standard_normal((3, 4, 2)) * 2], rng=np.random.default_rng(7))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, axis", [((5,), 0), ((4, 10), -1), ((4, 10), 0), ((2, 3, 4, 5), 1)])
def test_softmax_matches_torch(rng, op, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    _parity(lambda t: getattr(mv.F, op)(t, axis=axis), lambda t: getattr(torch, op)(t, dim=axis), [x], rng, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_is_numerically_stable(dtype):
    x = np.array([[1000.0, 1001.0, -1000.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    p = mv.F.softmax(x).numpy()
    lp = mv.F.log_softmax(x).numpy()
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(lp, torch.log_softmax(torch.tensor(x), dim=1).numpy(), **TOL[dtype])
    np.testing.assert_allclose(lp[0, 2], -2001 - np.log1p(np.exp(-1)), rtol=1e-6)


def test_softmax_bad_input(rng):
    x = rng.standard_normal((2, 3))
    for op in ("softmax", "log_softmax"):
        fn = getattr(mv.F, op)
        with pytest.raises(ValueError, match=rf"{op}: axis 2 is out of range for an input of shape \(2, 3\)"):
            fn(x, axis=2)
        with pytest.raises(TypeError, match=f"{op}: axis must be an int, got tuple"):
            fn(x, axis=(0, 1))
        with pytest.raises(TypeError, match=f"{op}: input must be a Tensor or an array, got list"):
            fn([1.0, 2.0])


# ----------------------------------------------------------------------------- cross_entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_finite_differences(rng, reduction):
    logits = rng.standard_normal((5, 4)) * 2
    target = np.array([0, 3, 1, 1, 2])
    check_gradients(lambda z: mv.F.cross_entropy(z, target, reduction), [logits],
                    rng=np.random.default_rng(7))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, k", [(1, 1), (1, 5), (6, 3), (16, 10)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_torch(rng, dtype, n, k, reduction):
    logits = (rng.standard_normal((n, k)) * 4).astype(dtype)
    target = rng.integers(0, k, n)
    _parity(lambda z: mv.F.cross_entropy(z, target, reduction),
            lambda z: torch.nn.functional.cross_entropy(z, torch.tensor(target), reduction=reduction),
            [logits], rng, dtype)


def test_cross_entropy_value_and_target_forms(rng):
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    loss = mv.F.cross_entropy(logits, np.array([0, 2]))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), -(np.log(0.5) + np.log(0.8)) / 2, rtol=1e-14)
    # Lists and unsigned ints are class indices too; large logits stay finite.
    assert mv.F.cross_entropy(logits, [0, 2]).item() == loss.item()
    assert mv.F.cross_entropy(logits, np.array([0, 2], dtype=np.uint8)).item() == loss.item()
    assert np.isfinite(mv.F.cross_entropy(np.array([[1e4, -1e4]]), np.array([1])).item())


def test_cross_entropy_bad_input(rng):
    logits = rng.standard_normal((3, 4))
    ce = mv.F.cross_entropy
    with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 4\), got 4"):
        ce(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 4\), got -1"):
        ce(logits, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices, got dtype float64"):
        ce(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="cross_entropy: target must be an integer array of class indices"):
        ce(logits, mv.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: target must have shape \(3,\), one class index per row "
                                         r"of logits, got shape \(2,\)"):
        ce(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be 2-D \(N, classes\), got shape \(4,\)"):
        ce(logits[0], np.array([1]))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        ce(logits, np.array([0, 1, 2]), reduction="avg")


# ----------------------------------------------------------------------------- mse_loss
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_finite_differences(rng, reduction):
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]
    check_gradients(lambda a, b: mv.F.mse_loss(a, b, reduction), arrays, rng=np.random.default_rng(7))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1,), (5, 3), (2, 3, 4, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_grad", [True, False])
def test_mse_loss_matches_torch(rng, dtype, shape, reduction, target_grad):
    arrays = [rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)]
    _parity(lambda a, b: mv.F.mse_loss(a, b, reduction),
            lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
            arrays, rng, dtype, wrt=[0, 1] if target_grad else [0])


def test_mse_loss_array_target_takes_input_dtype(rng):
    x = mv.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    loss = mv.F.mse_loss(x, np.zeros(4))  # float64 constant target: no error, float32 result
    assert loss.dtype == np.float32
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * x.numpy() / 4, rtol=1e-6)


def test_mse_loss_bad_input(rng):
    x = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match=r"mse_loss: target must have the input's shape \(2, 3\), got shape \(3,\)"):
        mv.F.mse_loss(x, x[0])
    with pytest.raises(TypeError, match="mse_loss: target dtype float32 differs from input dtype float64"):
        mv.F.mse_loss(mv.tensor(x), mv.tensor(x, dtype=np.float32))
    with pytest.raises(TypeError, match="mse_loss: target must be a Tensor or an array, got float"):
        mv.F.mse_loss(x, 1.0)
    with pytest.raises(ValueError, match="mse_loss: reduction must be 'mean', 'sum' or 'none', got 'max'"):
        mv.F.mse_loss(x, x, reduction="max")
