"""Adversarial and fooling images (minivis/vis/adversarial.py): FGSM equals a direct PyTorch FGSM on
the twin with the same weights, targeted attacks stay within epsilon (pixel units) and reach their
target probability, fooling images reach their confidence, the model is left as it was, and bad
input is refused.

The test network is a seeded random FashionCNN whose last layer is scaled up (x256): a random
network's logits are nearly equal (every probability ~0.1), while a trained one is confident;
scaling the last layer gives the attacks a network with a trained network's logit range in
milliseconds instead of a training run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from tests.torch_twins import TorchFashionCNN, twin_from_state

WIDTHS, HIDDEN = (8, 16), 32


def confident_fashion(seed: int = 0, dtype=np.float32) -> mv.models.FashionCNN:
    mv.nn.init.seed(seed)
    model = mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN).astype(dtype).eval()
    model.classifier[3].weight.data *= 256  # a power of two: exact in float32 too (twin_from_state loads via float32)
    return model


def photos(model, n: int = 2, seed: int = 0) -> np.ndarray:
    """Uniform-noise "photos" in [0, 1] as model inputs (N, 1, 28, 28)."""
    pixels = np.random.default_rng(seed).uniform(0, 1, (n, 1, 28, 28))
    return ((pixels - model.mean[0]) / model.std[0]).astype(model.classifier[3].weight.dtype)


def probs_of(model, x) -> np.ndarray:
    with mv.no_grad():
        return mv.F.softmax(model(mv.tensor(x[None] if x.ndim == 3 else x)), axis=-1).numpy()


def pixel_linf(model, a, b) -> np.ndarray:
    return (np.abs(a - b) * model.std[0]).reshape(len(a), -1).max(axis=1)


@pytest.mark.parametrize("epsilon", [0.01, 0.05, 0.2])
def test_fgsm_matches_a_direct_pytorch_fgsm(epsilon) -> None:
    """Same weights in float64: x + (eps/std) sign(dCE/dx), clipped to the valid pixel range."""
    model = confident_fashion(dtype=np.float64)
    x = photos(model, 3, seed=1)
    labels = np.array([0, 4, 9])
    result = mv.vis.fgsm(model, x, labels, epsilon)
    twin = twin_from_state(TorchFashionCNN(widths=WIDTHS, hidden=HIDDEN), model.state_dict(), torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(twin(xt), torch.tensor(labels), reduction="sum").backward()
    mean, std = model.mean[0], model.std[0]
    expected = torch.clamp(xt + epsilon / std * xt.grad.sign(), (0 - mean) / std, (1 - mean) / std).detach().numpy()
    assert np.array_equal(np.sign(result.x - x), np.sign(expected - x))
    np.testing.assert_allclose(result.x, expected, rtol=1e-12, atol=1e-12)
    assert (result.linf <= epsilon + 1e-12).all()
    np.testing.assert_allclose(result.probs, torch.softmax(twin(torch.tensor(expected)), -1).detach().numpy(),
                               rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(result.target_prob, result.probs[np.arange(3), labels])


def test_fgsm_lowers_the_true_class_and_follows_the_input_shape() -> None:
    model = confident_fashion()
    x = photos(model, 1)[0]
    label = int(probs_of(model, x)[0].argmax())
    result = mv.vis.fgsm(model, x, label, 0.05)
    assert result.x.shape == x.shape and result.image.shape[:2] == (28, 28)
    assert result.target_prob < probs_of(model, x)[0, label]
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_targeted_attack_reaches_the_target_within_epsilon() -> None:
    """Each image's runner-up class becomes >= 99% likely while ||x_adv - x||_inf <= epsilon (pixels)."""
    model = confident_fashion()
    x = photos(model, 2)
    targets = np.argsort(probs_of(model, x), axis=1)[:, -2]
    result = mv.vis.targeted_attack(model, x, targets, epsilon=0.2, steps=40, confidence=0.99, progress=False)
    assert result.info["success"]
    assert (result.target_prob >= 0.99).all()
    assert (pixel_linf(model, result.x, x) <= 0.2 + 1e-6).all()
    np.testing.assert_allclose(probs_of(model, result.x)[np.arange(2), targets], result.target_prob, rtol=1e-5)
    assert (result.prediction == targets).all()
    low, high = (0 - model.mean[0]) / model.std[0], (1 - model.mean[0]) / model.std[0]
    assert result.x.min() >= low - 1e-6 and result.x.max() <= high + 1e-6
    # history: the target probability before each step, stopping once reached
    assert result.history.shape[1] == 2 and (result.history[-1] >= 0.99).all()
    assert all(model_param.grad is None for model_param in model.parameters())


def test_targeted_attack_stays_in_the_ball_when_the_target_is_out_of_reach() -> None:
    model = confident_fashion()
    x = photos(model, 1)[0]
    result = mv.vis.targeted_attack(model, x, 3, epsilon=0.01, steps=3, progress=False)
    assert not result.info["success"] and result.steps == 3
    assert pixel_linf(model, result.x[None], x[None])[0] <= 0.01 + 1e-6
    assert result.history.shape == (4,) and result.history[-1] > result.history[0]


@pytest.mark.parametrize("start", ["noise", "zero"])
def test_fooling_image_reaches_its_confidence(start) -> None:
    model = confident_fashion()
    result = mv.vis.fooling_image(model, [4, 7], start=start, confidence=0.996, max_steps=150, step_size=0.02,
                                  progress=False)
    assert result.info["success"]
    probs = probs_of(model, result.x)
    assert (probs[[0, 1], [4, 7]] >= 0.996).all()
    np.testing.assert_allclose(result.target_prob, probs[[0, 1], [4, 7]], rtol=1e-5)
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.linf.shape == (2,) and (result.linf <= 1 + 1e-6).all()


def test_fooling_image_from_zero_starts_black_and_is_seeded() -> None:
    model = confident_fashion()
    a = mv.vis.fooling_image(model, 4, start="noise", max_steps=2, confidence=1.0, seed=3, progress=False)
    b = mv.vis.fooling_image(model, 4, start="noise", max_steps=2, confidence=1.0, seed=3, progress=False)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (1, 28, 28) and not a.info["success"] and a.steps == 2


@pytest.mark.slow
def test_targeted_attack_on_chelsea_with_efficientnet() -> None:
    """The photo of a cat becomes a 99%-sure goldfish (class 1) at 64 px within 8/255 per pixel."""
    model = mv.models.load("efficientnet_lite0")
    x = mv.F.interpolate(mv.tensor(model.preprocess(mv.data.photo("chelsea"))), size=(64, 64),
                         mode="bilinear").numpy()[0]
    result = mv.vis.targeted_attack(model, x, 1, epsilon=8 / 255, step_size=2 / 255, steps=20, progress=False)
    assert result.info["success"] and result.target_prob >= 0.99
    assert np.abs(result.x - x).max() * model.std[0] <= 8 / 255 + 1e-6


def test_bad_input() -> None:
    model = confident_fashion()
    x = photos(model, 1)[0]
    with pytest.raises(ValueError, match=r"fgsm: epsilon must be in \[0, 1\]"):
        mv.vis.fgsm(model, x, 1, -0.1)
    with pytest.raises(ValueError, match=r"fgsm: label class 10 is out of range for 10 classes"):
        mv.vis.fgsm(model, x, 10, 0.1)
    with pytest.raises(TypeError, match=r"fgsm: label must be a class index"):
        mv.vis.fgsm(model, x, 1.5, 0.1)
    with pytest.raises(ValueError, match=r"fgsm: x has 3 channels, the model expects 1"):
        mv.vis.fgsm(model, np.zeros((3, 28, 28), np.float32), 1, 0.1)
    with pytest.raises(ValueError, match=r"targeted_attack: epsilon must be in \[0, 1\]"):
        mv.vis.targeted_attack(model, x, 1, -1.0)
    with pytest.raises(ValueError, match=r"targeted_attack: target class -1 is out of range"):
        mv.vis.targeted_attack(model, x, -1, 0.1)
    with pytest.raises(ValueError, match=r"targeted_attack: confidence must be in \[0.0, 1.0\]"):
        mv.vis.targeted_attack(model, x, 1, 0.1, confidence=1.5)
    with pytest.raises(ValueError, match=r"targeted_attack: steps must be >= 1"):
        mv.vis.targeted_attack(model, x, 1, 0.1, steps=0)
    with pytest.raises(ValueError, match=r"fooling_image: target class 12 is out of range"):
        mv.vis.fooling_image(model, 12)
    with pytest.raises(ValueError, match=r"fooling_image: start must be 'noise' or 'zero'"):
        mv.vis.fooling_image(model, 1, start="grey")
