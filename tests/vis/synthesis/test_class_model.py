"""Class-model visualisation (minivis/vis/class_model.py) and the shared loop (minivis/vis/optimize.py):
the target logit rises well above the others, the SGD path is the textbook update, each Yosinski
regulariser acts, runs are seeded, the model is left as it was, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.synthesis import objectives as ob
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis.optimize import optimize
from minivis.vis.synthesis.parameterization import PixelImage


@pytest.fixture(scope="module")
def effnet() -> mv.models.ImageClassifier:
    return mv.models.load("efficientnet_lite0")


def small_fashion(seed: int = 0, dtype=np.float32) -> mv.models.FashionCNN:
    mv.nn.init.seed(seed)
    return mv.models.FashionCNN(widths=(8, 16), hidden=32).astype(dtype).eval()


def logits_of(model, x) -> np.ndarray:
    with mv.no_grad():
        return model(mv.tensor(x[None] if x.ndim == 3 else x)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("param", ["pixel", "fft"])
def test_efficientnet_class_model_makes_the_target_win_by_far(effnet, param) -> None:
    """20 Adam steps from the mean image at 64 px: goldfish (1) ends far ahead of every other class."""
    result = mv.vis.class_model(effnet, 1, steps=20, size=64, param=param, progress=False)
    logits = logits_of(effnet, result.x)[0]
    others = np.delete(logits, 1)
    assert logits.argmax() == 1
    assert logits[1] > 1.5 * others.max() and logits[1] - others.max() > 20
    assert result.history[-1] > result.history[0] + 50
    assert result.image.shape == (64, 64, 3) and 0 <= result.image.min() and result.image.max() <= 1
    assert result.x.shape == (3, 64, 64) and result.history.shape == (20,)


def test_fashion_class_model_lifts_the_target_above_the_others() -> None:
    """Even an untrained (random) network has an input that makes any class win, by more than half
    the spread of its logits at the mean image. 120 steps: at 40, class 6's margin was 0.22-0.54
    spreads depending on the float rounding (ReLU kinks make the ascent path sensitive); at 120 every
    class clears 1.3 spreads in float32 and float64."""
    model = small_fashion()
    start = logits_of(model, np.zeros((1, 28, 28), np.float32))[0]
    for target in (0, 6):
        result = mv.vis.class_model(model, target, steps=120, lr=0.3, l2=0.0, progress=False)
        logits = logits_of(model, result.x)[0]
        assert logits.argmax() == target
        assert logits[target] - np.delete(logits, target).max() > 0.5 * (start.max() - start.min())
        assert result.history[0] == pytest.approx(start[target], rel=1e-5)


def test_trained_fashion_cnn_class_model() -> None:
    try:
        model = mv.models.load("fashion_cnn")
    except FileNotFoundError:
        pytest.skip("fashion_cnn weights are not shipped yet (minivis train fashion_cnn)")
    for target in (1, 7):
        result = mv.vis.class_model(model, target, steps=30, lr=0.05, progress=False)
        logits = logits_of(model, result.x)[0]
        assert logits.argmax() == target and logits[target] - np.delete(logits, target).max() > 5


def test_sgd_path_is_the_textbook_update() -> None:
    """optimizer="sgd": I <- I + lr (dS_c/dI - 2 lambda I), written out with the model's gradient."""
    model = small_fashion(1, np.float64)
    lr, lam, steps, c = 0.5, 0.01, 5, 3
    result = mv.vis.class_model(model, c, steps=steps, lr=lr, l2=lam, optimizer="sgd", progress=False)
    image = np.zeros((1, 1, 28, 28))
    history, total = [], []
    for _ in range(steps):
        x = mv.tensor(image, requires_grad=True)
        score = model(x)[:, c]
        score.backward(np.ones(1))
        history.append(score.item())
        total.append(score.item() - lam * float((image ** 2).sum()))
        image = image + lr * (x.grad - 2 * lam * image)
    np.testing.assert_allclose(result.x, image[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.history, history, rtol=1e-12)
    np.testing.assert_allclose(result.total, total, rtol=1e-12)
    assert result.history[-1] > result.history[0]


def test_a_list_of_targets_makes_one_image_per_class() -> None:
    model = small_fashion(0, np.float64)
    result = mv.vis.class_model(model, [2, 5, 9], steps=10, lr=2.0, optimizer="sgd", progress=False)
    assert result.x.shape == (3, 1, 28, 28) and result.image.shape == (3, 28, 28, 1)
    assert result.history.shape == (10, 3)
    logits = logits_of(model, result.x)
    np.testing.assert_array_less(logits_of(model, np.zeros((3, 1, 28, 28)))[[0, 1, 2], [2, 5, 9]],
                                 logits[[0, 1, 2], [2, 5, 9]])
    # each image is optimised on its own: the second one equals a run for class 5 alone
    alone = mv.vis.class_model(model, 5, steps=10, lr=2.0, optimizer="sgd", progress=False)
    np.testing.assert_allclose(result.x[1], alone.x, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(result.history[:, 1], alone.history, rtol=1e-10)


def test_an_objective_target_raises_a_channel(rng) -> None:
    model = small_fashion()
    objective = ob.channel("features.6", 3)
    result = mv.vis.class_model(model, objective, steps=15, lr=0.1, init="noise", progress=False)
    assert result.history[-1] > 3 * max(result.history[0], 1e-3)


def test_yosinski_clipping_zeroes_the_right_share_of_pixels() -> None:
    model = small_fashion()
    result = mv.vis.class_model(model, 4, steps=6, lr=0.1, clip_norm_pct=40, progress=False)
    assert (result.x == 0).mean() == pytest.approx(0.4, abs=0.01)
    result = mv.vis.class_model(model, 4, steps=6, lr=0.1, clip_contrib_pct=25, init="noise", progress=False)
    assert (result.x == 0).mean() == pytest.approx(0.25, abs=0.01)


def test_blur_every_k_steps_smooths_the_image() -> None:
    model = small_fashion()
    sharp = mv.vis.class_model(model, 1, steps=8, lr=0.1, progress=False).x
    smooth = mv.vis.class_model(model, 1, steps=8, lr=0.1, blur_every=4, blur_sigma=1.0, progress=False).x
    assert reg.tv(mv.tensor(smooth[None]), 2.0).item() < 0.5 * reg.tv(mv.tensor(sharp[None]), 2.0).item()


def test_runs_are_seeded() -> None:
    model = small_fashion()
    kw = dict(steps=4, lr=0.1, jitter=3, init="noise", progress=False)
    a = mv.vis.class_model(model, 3, seed=1, **kw).x
    b = mv.vis.class_model(model, 3, seed=1, **kw).x
    c = mv.vis.class_model(model, 3, seed=2, **kw).x
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fft_and_transforms_on_a_fixed_size_model() -> None:
    """fashion_cnn takes 28x28 only: the transform chain resizes back; pixels stay in the valid range."""
    model = small_fashion()
    result = mv.vis.class_model(model, 8, steps=6, lr=0.1, param="fft", transforms="standard", jitter=2,
                                progress=False)
    low, high = reg.valid_range(model.mean, model.std)
    assert result.x.shape == (1, 28, 28)
    assert low.min() <= result.x.min() and result.x.max() <= high.max()


def test_the_model_is_left_as_it_was() -> None:
    model = small_fashion().train()
    with pytest.raises(ValueError):
        mv.vis.class_model(model, 99, steps=2, progress=False)
    mv.vis.class_model(model, 2, steps=2, progress=False)
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


# ----------------------------------------------------------------------------- the shared loop
def test_normalized_step_moves_each_image_by_lr_on_average(rng) -> None:
    model = small_fashion()
    x0 = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    result = optimize(model, ob.class_logit(0), PixelImage(x0), steps=1, lr=0.01, optimizer="normalized",
                      progress=False)
    np.testing.assert_allclose(np.abs(result.x - x0).mean(axis=(1, 2, 3)), 0.01, rtol=1e-4)


def test_sign_step_moves_every_pixel_by_lr(rng) -> None:
    model = small_fashion(0, np.float64)
    x0 = rng.standard_normal((1, 1, 28, 28))
    result = optimize(model, ob.class_logit(3), PixelImage(x0), steps=1, lr=0.01, optimizer="sign", progress=False)
    x = mv.tensor(x0, requires_grad=True)
    model(x)[:, 3].backward(np.ones(1))
    np.testing.assert_allclose(result.x - x0, 0.01 * np.sign(x.grad), rtol=1e-12, atol=1e-15)  # ascent: + sign
    down = optimize(model, ob.class_logit(3), PixelImage(x0), steps=1, lr=0.01, optimizer="sign", maximize=False,
                    progress=False)
    np.testing.assert_allclose(down.x - x0, -0.01 * np.sign(x.grad), rtol=1e-12, atol=1e-15)


def test_hooks_see_the_ascent_gradient(rng) -> None:
    model = small_fashion(2, np.float64)
    x0 = rng.standard_normal((1, 1, 28, 28))
    seen = {}

    def hook(step, image, grad):
        seen["grad"] = grad

    optimize(model, ob.class_logit(5), PixelImage(x0), steps=1, lr=1e-9, optimizer="sgd", hooks=[hook],
             penalties=[(0.1, reg.l2)], progress=False)
    x = mv.tensor(x0, requires_grad=True)
    (model(x)[:, 5] - 0.1 * reg.l2(x)).backward(np.ones(1))
    np.testing.assert_allclose(seen["grad"], x.grad, rtol=1e-12)


def test_lbfgs_minimises_and_refuses_random_transforms(rng) -> None:
    """Reconstructing a layer's code (the inversion objective) from the mean image: L-BFGS drives it near 0."""
    from minivis.vis.synthesis.inversion import reconstruction_objective  # noqa: PLC0415

    model = small_fashion(3, np.float64)
    with mv.no_grad():
        code = mv.nn.forward_to(model, mv.tensor(rng.standard_normal((1, 1, 28, 28))), "features.1").data
    x0 = np.zeros((1, 1, 28, 28))
    result = optimize(model, reconstruction_objective("features.1", code), PixelImage(x0), steps=15, lr=1.0,
                      optimizer="lbfgs", maximize=False, progress=False)
    assert result.history[-1] < 1e-3 * result.history[0]
    assert "message" in result.info and 1 <= result.info["nit"] <= 15 and len(result.history) == result.info["nit"]
    with pytest.raises(ValueError, match="optimizer='lbfgs' needs a deterministic objective"):
        optimize(model, ob.class_logit(0), PixelImage(x0), steps=2, lr=1.0, optimizer="lbfgs",
                 transforms=lambda x, r: x, progress=False)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(target=10), ValueError, r"class_model: target class 10 is out of range for 10 classes \(0..9\)"),
    (dict(target=-1), ValueError, "class_model: target class -1 is out of range"),
    (dict(target=[1, 12]), ValueError, "class_model: target class 12 is out of range"),
    (dict(target="shirt"), TypeError, "class_model: target must be a class index, a list of indices or an Objective"),
    (dict(target=[1.5]), TypeError, "class_model: target must be a class index"),
    (dict(steps=-5), ValueError, "class_model: steps must be >= 1, got -5"),
    (dict(steps=2.5), TypeError, "class_model: steps must be an int"),
    (dict(steps=10**30), ValueError, "class_model: steps must be at most 9223372036854775807, got 10+$"),
    (dict(lr=-0.1), ValueError, r"class_model: lr must be > 0, got -0.1"),
    (dict(lr=0), ValueError, "class_model: lr must be > 0"),
    (dict(l2=-1.0), ValueError, "class_model: l2 must be >= 0.0"),
    (dict(param="wavelet"), ValueError, r"class_model: param must be one of \('pixel', 'fft'\), got 'wavelet'"),
    (dict(init="ones"), ValueError, r"class_model: init must be one of \('zero', 'mean', 'noise'\)"),
    (dict(optimizer="rmsprop"), ValueError, "class_model: optimizer must be one of"),
    (dict(transforms="lucid"), ValueError, "class_model: transforms must be 'standard'"),
    (dict(transforms=5), TypeError, "class_model: transforms must be 'standard'"),
    (dict(jitter=-2), ValueError, "class_model: jitter must be an int >= 0"),
    (dict(jitter=10**30), ValueError, r"class_model: jitter must be an int >= 0 \(pixels\) and less than the 28x28 "
                                      r"image's size \(at most 27"),
    (dict(jitter=28), ValueError, "class_model: jitter must be .* less than the 28x28 image's size"),
    (dict(jitter=2.0), TypeError, r"class_model: jitter must be an int >= 0 \(pixels\), got 2.0"),
    (dict(blur_every=-1), ValueError, "class_model: blur_every must be an int >= 0"),
    (dict(clip_norm_pct=120), ValueError, r"class_model: clip_norm_pct must be in \[0.0, 100.0\], got 120"),
    (dict(size=(28,)), TypeError, r"class_model: size must be an int or \(H, W\)"),
    (dict(size=0), ValueError, "class_model: size must be positive"),
    (dict(seed=-1), ValueError, "class_model: seed must be an int >= 0 or None, got -1"),
    (dict(seed="a"), TypeError, "class_model: seed must be an int or None, got 'a'"),
])
def test_bad_input(kwargs, error, match) -> None:
    kwargs = dict(dict(target=0, steps=2, progress=False), **kwargs)
    with pytest.raises(error, match=match):
        mv.vis.class_model(small_fashion(), **kwargs)


def test_bad_model_and_objective() -> None:
    with pytest.raises(TypeError, match="class_model: model must be a minivis nn.Module, got str"):
        mv.vis.class_model("resnet", 0)
    with pytest.raises(ValueError, match="'features.99' is not a layer"):
        mv.vis.class_model(small_fashion(), ob.channel("features.99", 0), steps=2, progress=False)
    with pytest.raises(ValueError, match=r"optimize: the objective must return one value per image"):
        optimize(small_fashion(), lambda m, x: m(x).sum(), PixelImage(np.zeros((1, 1, 28, 28), np.float32)),
                 steps=1, lr=0.1, progress=False)
