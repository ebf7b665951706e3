"""Activations (relu, relu6, leaky_relu, sigmoid, tanh) under the default "gradient" rule: float64 finite
differences (inputs away from the kinks), PyTorch parity in float64 and float32 (ties at the kinks
included), and bad inputs. The guided/deconvnet rules are tested in tests/test_rules.py."""

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients

F = mv.F
TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}

# name: (minivis op, torch op, kinks to keep finite-difference inputs away from)
ACTIVATIONS = {
    "relu": (F.relu, torch.relu, [0.0]),
    "relu6": (F.relu6, torch.nn.functional.relu6, [0.0, 6.0]),
    "leaky_relu_default": (F.leaky_relu, torch.nn.functional.leaky_relu, [0.0]),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2), [0.0]),
    "leaky_relu_0": (lambda x: F.leaky_relu(x, 0.0), lambda x: torch.nn.functional.leaky_relu(x, 0.0), [0.0]),
    "sigmoid": (F.sigmoid, torch.sigmoid, []),
    "tanh": (F.tanh, torch.tanh, []),
}
SHAPES = [(7,), (2, 3, 4, 5), (1, 1)]


def inputs(rng, shape, kinks, ties=False):
    """Spread over [-8, 8] (both sides of relu6's 6), at least 0.05 from each kink; with ``ties``,
    some entries sit exactly on a kink."""
    x = rng.uniform(-8, 8, shape)
    for k in kinks:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] >= k, 0.1, -0.1)
    if ties and kinks:
        n = min(x.size, 2 * len(kinks))
        x.reshape(-1)[rng.choice(x.size, size=n, replace=False)] = np.resize(kinks, n)
    return x


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_finite_differences(rng, name):
    op, _, kinks = ACTIVATIONS[name]
    x = inputs(rng, (3, 4, 5), kinks)
    check_gradients(op, [x], rng)
    # the finite-difference steps stayed on one side of every kink (same mask at x + h and x - h)
    for k in kinks:
        assert np.array_equal(x + 1e-6 > k, x - 1e-6 > k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_matches_torch(rng, name, shape, dtype):
    op, torch_op, kinks = ACTIVATIONS[name]
    x = inputs(rng, shape, kinks, ties=True).astype(dtype)
    xm, xt = mv.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = op(xm), torch_op(xt)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL[dtype])
    g = rng.standard_normal(shape).astype(dtype)
    out.backward(g)
    ref.backward(torch.tensor(g))
    assert xm.grad.dtype == dtype
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), **TOL[dtype])


def test_kinks_by_hand():
    x = mv.tensor(np.array([-2.0, 0.0, 3.0, 6.0, 7.0]), requires_grad=True)
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    for op, forward, grad in [
        (F.relu, [0, 0, 3, 6, 7], [0, 0, 3, 4, 5]),           # relu'(0) = 0: a tie sends nothing
        (F.relu6, [0, 0, 3, 6, 6], [0, 0, 3, 0, 0]),          # mask 0 < x < 6, strict at both ends
        (lambda t: F.leaky_relu(t, 0.5), [-1, 0, 3, 6, 7], [0.5, 1, 3, 4, 5]),  # slope at 0, like PyTorch
    ]:
        x.zero_grad()
        y = op(x)
        np.testing.assert_array_equal(y.numpy(), forward)
        y.backward(g)
        np.testing.assert_array_equal(x.grad, grad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_and_tanh_are_stable_at_extremes(dtype):
    x = np.array([-1000.0, -80.0, -20.0, 0.0, 20.0, 80.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise"):  # no overflow in exp, no inf/inf
        s = F.sigmoid(mv.tensor(x, requires_grad=True))
        t = F.tanh(mv.tensor(x))
    ref = torch.sigmoid(torch.tensor(x)).numpy()
    np.testing.assert_allclose(s.numpy(), ref, rtol=1e-6, atol=0)  # relative, so tiny values count too
    np.testing.assert_allclose(t.numpy(), np.tanh(x))
    assert s.dtype == dtype and np.all(np.isfinite(s.numpy()))


def test_activations_take_arrays_as_constants():
    y = F.relu(np.array([-1.0, 2.0]))
    assert isinstance(y, mv.Tensor) and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0])
    assert F.relu(np.array([-1, 2])).dtype == np.float32  # ints become the default float


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "sigmoid", "tanh"])
def test_bad_input(name):
    op = getattr(F, name)
    with pytest.raises(TypeError, match=f"{name}: input must be a Tensor or an array, got list"):
        op([1.0, -1.0])
    with pytest.raises(TypeError, match=f"{name}: input must be a float tensor or array, got dtype <U1"):
        op(np.array(["a"]))
    with pytest.raises(TypeError, match=f"{name}: input must be a float tensor or array, got dtype complex128"):
        op(np.array([1j]))


def test_leaky_relu_bad_slope():
    x = mv.tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"leaky_relu: negative_slope must be >= 0.0, got -0.1"):
        F.leaky_relu(x, -0.1)
    with pytest.raises(TypeError, match="leaky_relu: negative_slope must be a number, got str"):
        F.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match="leaky_relu: negative_slope must be a number, got bool"):
        F.leaky_relu(x, True)


@pytest.mark.parametrize("g,x,error,match", [
    (np.ones(2), None, TypeError, "relu_backward_reference: x must be a float array, got NoneType"),
    (np.ones(2), [1.0, 2.0], TypeError, "relu_backward_reference: x must be a float array, got list"),
    (np.ones(2), np.array(["a", "b"]), TypeError, "relu_backward_reference: x must be a float array, got dtype <U1"),
    (np.ones(3), np.ones(2), ValueError, r"relu_backward_reference: g must have x's shape \(2,\), got \(3,\)"),
    ("bogus", np.ones(2), ValueError, r"relu_backward_reference: g must have x's shape \(2,\), got \(\)"),
])
def test_relu_backward_reference_bad_input(g, x, error, match):
    """Once an AttributeError ('list' object has no attribute 'dtype') or NumPy's reshape error."""
    with pytest.raises(error, match=match):
        F.relu_backward_reference(g, x, "gradient")
