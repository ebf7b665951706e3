"""The Gram matrix op (minivis/functional/gram.py): finite differences, PyTorch parity, bad input."""

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients


def torch_gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 4, 3, 3)])
def test_gram_gradient_matches_finite_differences(shape, rng) -> None:
    check_gradients(mv.F.gram_matrix, [rng.standard_normal(shape)], rng)


@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-12, atol=1e-14)),
                                        (np.float32, dict(rtol=1e-5, atol=1e-6))])
def test_gram_matches_pytorch(dtype, tol, rng) -> None:
    x = rng.standard_normal((2, 5, 6, 7)).astype(dtype)
    upstream = rng.standard_normal((2, 5, 5)).astype(dtype)
    ours_x = mv.tensor(x, requires_grad=True)
    ours = mv.F.gram_matrix(ours_x)
    ours.backward(upstream)
    theirs_x = torch.tensor(x, requires_grad=True)
    theirs = torch_gram(theirs_x)
    theirs.backward(torch.tensor(upstream))
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), **tol)
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), **tol)


def test_gram_is_position_free(rng) -> None:
    """Shuffling the positions (the same permutation in every channel) leaves G unchanged: layout is gone."""
    x = rng.standard_normal((1, 3, 4, 6))
    perm = rng.permutation(24)
    shuffled = x.reshape(1, 3, 24)[:, :, perm].reshape(1, 3, 4, 6)
    np.testing.assert_allclose(mv.F.gram_matrix(shuffled).numpy(), mv.F.gram_matrix(x).numpy(), rtol=1e-12)


def test_gram_bad_input() -> None:
    with pytest.raises(ValueError, match="gram_matrix"):
        mv.F.gram_matrix(np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="gram_matrix"):
        mv.F.gram_matrix([[1.0]])
