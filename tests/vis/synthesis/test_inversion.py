"""Feature inversion (minivis/vis/inversion.py) and the SciPy L-BFGS adapter (minivis/optim/lbfgs.py):
the adapter against SciPy on a quadratic, inversion errors fall and grow with depth, the
objective's gradient, the table and figure, and bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.optimize

import minivis as mv
from minivis.optim.lbfgs import ScipyAdapter, minimize_lbfgs
from minivis.vis.synthesis.inversion import pixel_bound, reconstruction_objective
from tests.gradcheck import check_gradients


# ----------------------------------------------------------------------------- the L-BFGS adapter
def quadratic(rng: np.random.Generator, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    m = rng.standard_normal((n, n))
    return m @ m.T + n * np.eye(n), rng.standard_normal(n)  # symmetric positive definite


def test_adapter_drives_lbfgs_like_scipy_on_a_quadratic(rng: np.random.Generator) -> None:
    """f(x) = 1/2 x^T A x - b^T x over two tensors (x split 5 + 7): same iterates as SciPy on NumPy."""
    a, b = quadratic(rng)
    x0 = rng.standard_normal(12)
    u = mv.tensor(x0[:5].reshape(5, 1), requires_grad=True)
    v = mv.tensor(x0[5:].reshape(1, 7), requires_grad=True)

    def closure():
        x = mv.F.concat([u.reshape(5), v.reshape(7)])
        return 0.5 * (x * mv.F.matmul(a, x)).sum() - (x * b).sum()

    ours = minimize_lbfgs([u, v], closure, maxiter=50)
    theirs = scipy.optimize.minimize(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), x0, jac=True,
                                     method="L-BFGS-B", options={"maxiter": 50, "maxfun": 120})
    solution = np.linalg.solve(a, b)
    found = np.concatenate([u.data.ravel(), v.data.ravel()])
    np.testing.assert_allclose(found, theirs.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(found, solution, rtol=1e-5, atol=1e-6)
    assert ours.nit == theirs.nit and ours.success
    assert ours.fun == pytest.approx(-0.5 * b @ solution, rel=1e-9)


def test_adapter_value_gradient_pack_and_unpack(rng: np.random.Generator) -> None:
    a, b = quadratic(rng, 6)
    x = mv.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    adapter = ScipyAdapter([x], lambda: 0.5 * (x.reshape(6) * mv.F.matmul(a.astype(np.float32), x.reshape(6))).sum())
    v = rng.standard_normal(6)
    value, grad = adapter(v)
    assert grad.dtype == np.float64 and x.dtype == np.float32  # SciPy gets float64, the tensor keeps float32
    np.testing.assert_allclose(x.data.ravel(), v.astype(np.float32))
    np.testing.assert_allclose(value, 0.5 * v @ a @ v, rtol=1e-5)
    np.testing.assert_allclose(grad, a @ v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(adapter.pack(), v.astype(np.float32))
    adapter(v)  # gradients do not accumulate between evaluations
    np.testing.assert_allclose(adapter(v)[1], grad)


def test_lbfgs_respects_bounds(rng: np.random.Generator) -> None:
    x = mv.tensor(np.zeros(4), requires_grad=True)
    target = np.array([2.0, -3.0, 0.5, 9.0])
    minimize_lbfgs([x], lambda: ((x - target) ** 2).sum(), maxiter=30, bounds=[(-1.0, 1.0)] * 4)
    np.testing.assert_allclose(x.data, [1.0, -1.0, 0.5, 1.0], atol=1e-8)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ScipyAdapter([], lambda: None), ValueError, "ScipyAdapter: params is empty"),
    (lambda: ScipyAdapter([mv.tensor(np.ones(2))], lambda: None), TypeError,
     "ScipyAdapter: params must be leaf tensors with requires_grad=True"),
    (lambda: ScipyAdapter([mv.tensor(np.ones(2), requires_grad=True)], 3), TypeError,
     "ScipyAdapter: closure must be callable"),
    (lambda: ScipyAdapter([mv.tensor(np.ones(2), requires_grad=True)], lambda: None).unpack(np.ones(3)), ValueError,
     r"ScipyAdapter: expected a vector of 2 values, got shape \(3,\)"),
    (lambda: (lambda t: ScipyAdapter([t], lambda: t * 2)(np.ones(2)))(mv.tensor(np.ones(2), requires_grad=True)),
     ValueError, "ScipyAdapter: the closure must return a one-element Tensor, got"),
    (lambda: minimize_lbfgs([mv.tensor(np.ones(2), requires_grad=True)], lambda: None, maxiter=0), ValueError,
     "minimize_lbfgs: maxiter must be an int >= 1, got 0"),
])
def test_adapter_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- inversion
def small_fashion(seed: int = 0, dtype=np.float32) -> mv.models.FashionCNN:
    mv.nn.init.seed(seed)
    return mv.models.FashionCNN(widths=(8, 16), hidden=32).astype(dtype).eval()


@pytest.fixture(scope="module")
def garment() -> np.ndarray:
    """One Fashion-MNIST test image as a FashionCNN input (1, 28, 28)."""
    try:
        images, _ = mv.data.fashion_mnist("test")
    except (FileNotFoundError, OSError):
        images = (np.random.default_rng(0).uniform(0, 255, (1, 28, 28))).astype(np.uint8)
    return small_fashion().preprocess(images[:1][..., None])[0]


def test_reconstruction_objective_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    model = mv.nn.Sequential(mv.nn.Conv2d(1, 3, 3), mv.nn.Tanh(), mv.nn.Conv2d(3, 2, 3, stride=2)).double().eval()
    with mv.no_grad():
        code = model(mv.tensor(rng.standard_normal((2, 1, 7, 7)))).data
    objective = reconstruction_objective("1", mv.nn.forward_to(model, mv.tensor(rng.standard_normal((2, 1, 7, 7))),
                                                               "1").data)
    check_gradients(lambda t: objective(model, t), [rng.standard_normal((2, 1, 7, 7))], rng=rng)
    # and its value is the normalised squared distance of the codes
    x = rng.standard_normal((2, 1, 7, 7))
    with mv.no_grad():
        got = reconstruction_objective("", code)(model, mv.tensor(x)).numpy()
        mine = model(mv.tensor(x)).numpy()
    expected = ((mine - code) ** 2).sum(axis=(1, 2, 3)) / (code ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1.0), ("adam", 0.05)])
def test_inversion_error_decreases(garment, optimizer, lr) -> None:
    model = small_fashion()
    result = mv.vis.invert(model, garment, "features.4", steps=40, optimizer=optimizer, lr=lr, progress=False)
    assert result.x.shape == garment.shape and result.image.shape == (28, 28, 1)
    assert result.history.shape == (len(result.history),) and len(result.history) <= 40
    assert result.history[-1] < 0.1 * result.history[0]
    assert result.info["feature_error"] == pytest.approx(result.history[-1], rel=0.5)
    assert result.info["image_error"] < 1.0


def test_earlier_layers_reconstruct_better(garment) -> None:
    model = small_fashion()
    layers = ["features.1", "features.4", "features.9", ""]
    table = mv.vis.inversion_table(model, garment, layers, steps=40, progress=False)
    assert table.layers == layers
    assert np.all(np.diff(table.image_error) > 0), table.markdown()
    assert table.image_error[0] < 0.25 and table.image_error[-1] > 0.6
    assert np.all(table.feature_error < 0.05)  # every layer's own code is matched closely
    rows = table.rows()
    assert [r["layer"] for r in rows] == ["features.1", "features.4", "features.9", "(output)"]
    assert "| `features.9` |" in str(table)
    fig = mv.plot.inversion_figure(table, title="test")
    assert isinstance(fig, plt.Figure) and len(fig.axes) == len(layers) + 2
    plt.close(fig)


def test_a_conv_layer_is_inverted_almost_exactly() -> None:
    """A linear, over-complete first layer loses nothing: without priors L-BFGS recovers the image."""
    model = small_fashion(0, np.float64)
    x0 = np.random.default_rng(1).standard_normal((1, 28, 28))
    result = mv.vis.invert(model, x0, "features.0", steps=200, alpha_weight=0.0, tv_weight=0.0, progress=False)
    assert result.info["feature_error"] < 1e-6
    assert result.info["image_error"] < 1e-2  # what is left sits in the kernels' weakest frequencies


def test_batches_and_model_state(garment) -> None:
    model = small_fashion().train()
    batch = np.stack([garment, -garment])
    result = mv.vis.invert(model, mv.tensor(batch), "features.1", steps=5, progress=False)
    assert result.x.shape == (2, 1, 28, 28) and result.history.shape[1] == 2
    assert result.info["image_error"].shape == (2,)
    assert all(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_pixel_bound() -> None:
    assert pixel_bound(small_fashion()) == pytest.approx((1 - 0.2860) / 0.3530)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(layer="features.42"), ValueError, "invert: layer: 'features.42' is not a layer"),
    (dict(layer=3), TypeError, "invert: layer must be a dotted layer name"),
    (dict(steps=-1), ValueError, "invert: steps must be >= 1, got -1"),
    (dict(lr=-1.0), ValueError, "invert: lr must be > 0"),
    (dict(alpha=0.5), ValueError, "invert: alpha must be >= 1.0, got 0.5"),
    (dict(tv_beta=0.0), ValueError, "invert: tv_beta must be >= 1.0"),
    (dict(tv_weight=-1.0), ValueError, "invert: tv_weight must be >= 0.0"),
    (dict(optimizer="newton"), ValueError, r"invert: optimizer must be one of \('lbfgs', 'adam', 'sgd'\)"),
    (dict(init="photo"), ValueError, "invert: init must be 'noise' or 'mean'"),
    (dict(image=np.zeros((3, 28, 28))), ValueError, "invert: image has 3 channels, the model expects 1"),
    (dict(image=np.zeros((28, 28))), ValueError, r"invert: image must be \(C, H, W\) or \(N, C, H, W\)"),
    (dict(image=np.full((1, 28, 28), -10.0), layer="features.1"), ValueError,
     "invert: the code of layer 'features.1' is all zeros"),
])
def test_invert_bad_input(garment, kwargs, error, match) -> None:
    args = dict(image=garment, layer="features.4", steps=2, progress=False)
    args.update(kwargs)
    model = small_fashion()
    if "code of layer" in match:  # a strongly negative image silences every ReLU of the first layer
        for p in model.features[0].parameters():
            p.data = np.abs(p.data)
    with pytest.raises(error, match=match):
        mv.vis.invert(model, **args)


def test_inversion_table_bad_input(garment) -> None:
    model = small_fashion()
    with pytest.raises(TypeError, match="inversion_table: layers must be a non-empty list"):
        mv.vis.inversion_table(model, garment, "features.1")
    with pytest.raises(TypeError, match="inversion_table: layers must be a non-empty list"):
        mv.vis.inversion_table(model, garment, [])
    with pytest.raises(ValueError, match="inversion_table: give one image"):
        mv.vis.inversion_table(model, garment[None], ["features.1"])
    with pytest.raises(ValueError, match="inversion_table: layer: 'nope' is not a layer"):
        mv.vis.inversion_table(model, garment, ["features.1", "nope"])
