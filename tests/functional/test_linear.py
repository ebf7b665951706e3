"""linear: finite differences, PyTorch parity (float64 and float32), bad input."""

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients

TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_finite_differences(rng, x_shape, with_bias):
    arrays = [rng.standard_normal(x_shape), rng.standard_normal((5, 4))]
    if with_bias:
        arrays.append(rng.standard_normal(5))
    check_gradients(lambda *t: mv.F.linear(*t), arrays, rng=np.random.default_rng(1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, out_features", [((1, 1), 1), ((8, 7), 3), ((2, 3, 5), 6), ((5,), 2)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(rng, dtype, x_shape, out_features, with_bias):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((out_features, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    arrays = [a for a in (x, w, b) if a is not None]

    ours = [mv.tensor(a, requires_grad=True) for a in arrays]
    y = mv.F.linear(*ours)
    upstream = rng.standard_normal(y.shape).astype(dtype)
    y.backward(upstream)

    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = torch.nn.functional.linear(*theirs)
    yt.backward(torch.tensor(upstream))

    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL[dtype])
    for a, t in zip(ours, theirs, strict=True):
        assert a.grad.dtype == dtype
        np.testing.assert_allclose(a.grad, t.grad.numpy(), **TOL[dtype])


def test_linear_constant_weight_gets_no_gradient(rng):
    x = mv.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w = rng.standard_normal((4, 3))
    mv.F.linear(x, w).backward(np.ones((2, 4)))
    np.testing.assert_allclose(x.grad, np.ones((2, 4)) @ w)


def test_linear_bad_input(rng):
    x = rng.standard_normal((2, 3))
    w = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D \(out_features, in_features\), "
                                         r"got shape \(4, 3, 1\)"):
        mv.F.linear(x, w[..., None])
    with pytest.raises(ValueError, match=r"linear: input has 5 features .* weight \(4, 3\) expects 3"):
        mv.F.linear(rng.standard_normal((2, 5)), w)
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(4,\) .* got shape \(3,\)"):
        mv.F.linear(x, w, rng.standard_normal(3))
    with pytest.raises(ValueError, match="linear: input must have at least 1 dim"):
        mv.F.linear(mv.tensor(np.ones(3)).sum(), w)  # a 0-d tensor
    with pytest.raises(TypeError, match="linear: weight dtype float32 differs from input dtype float64"):
        mv.F.linear(x, w.astype(np.float32))
    with pytest.raises(TypeError, match="linear: input must be a Tensor or an array, got list"):
        mv.F.linear([[1.0, 2.0, 3.0]], w)
    with pytest.raises(TypeError, match="linear: weight must be a float tensor or array, "
                                        "got dtype complex128"):
        mv.F.linear(x, w.astype(complex))
