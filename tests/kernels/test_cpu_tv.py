"""The one-pass total-variation kernels against ``regularizers.tv_reference``, the op's plain array code."""

import numpy as np
import pytest

import minivis as mv
from minivis.kernels import cpu_tv
from minivis.vis.synthesis import regularizers as reg


def reference(x, g, beta, eps):
    """TV^beta and its gradient by the op's plain array code (its GPU path)."""
    value, grad_of = reg.tv_reference(x, beta, eps)
    return value, grad_of(g)


@pytest.mark.parametrize("shape", [(1, 3, 7, 9), (2, 2, 2, 2), (3, 1, 5, 2), (1, 1, 2, 6)])
@pytest.mark.parametrize("beta,eps", [(2.0, 0.0), (1.0, 1e-8), (3.0, 0.0), (2.0, 0.5)])
def test_tv_kernels_match_the_array_code(rng, shape, beta, eps):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape[0])
    value, grad = reference(x, g, beta, eps)
    np.testing.assert_allclose(cpu_tv.tv_forward(x, beta, eps), value, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cpu_tv.tv_backward(x, g, beta, eps), grad, rtol=1e-12, atol=1e-12)


def test_tv_kernels_in_float32_round_like_float64_to_float32_precision(rng):
    x = rng.standard_normal((2, 3, 16, 12))
    g = np.array([1.0, -2.0])
    value, grad = reference(x, g, 2.0, 0.0)
    x32 = x.astype(np.float32)
    out = cpu_tv.tv_backward(x32, g, 2.0, 0.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, grad, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cpu_tv.tv_forward(x32, 2.0, 0.0), value, rtol=1e-5)


def test_the_tv_op_uses_the_kernels_on_the_cpu_and_agrees_with_its_array_path(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 5))
    xt = mv.tensor(x, requires_grad=True)
    reg.tv(xt, 1.5).backward(np.array([1.0, 3.0]))
    value, grad = reference(x, np.array([1.0, 3.0]), 1.5, 1e-8)
    np.testing.assert_allclose(xt.grad, grad, rtol=1e-12, atol=1e-12)
    calls = []
    monkeypatch.setattr(cpu_tv, "tv_forward", lambda *a: calls.append(a) or np.zeros(2))
    reg.tv(mv.tensor(x), 2.0)
    assert len(calls) == 1
