"""Class models in a decoder's latent space (minivis/vis/synthesis/latent_class_model.py) and the
GeneratorImage parameterisation: the code's gradient against float64 finite differences, the
first SGD step is the textbook one, the box is kept, the class score rises with the shipped
decoder, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.synthesis import objectives as ob
from minivis.vis.synthesis.parameterization import GeneratorImage


def small_pair(seed: int = 0):
    """A small fashion_cnn-shaped classifier and a decoder from 10-d codes, float64."""
    mv.nn.init.seed(seed)
    model = mv.models.FashionCNN(widths=(4, 8), hidden=16).double().eval()
    decoder = mv.models.build_decoder("classifier.3").double().eval()
    return model, decoder


def score(model, decoder, z, target):
    with mv.no_grad():
        return model(decoder(mv.tensor(z))).numpy()[:, target]


def test_the_code_gradient_matches_finite_differences(rng):
    model, decoder = small_pair()
    z = rng.standard_normal((1, 10))
    param = GeneratorImage(decoder, z)
    value = ob.class_logit(3)(model, param.image())
    value.backward(np.ones(1))
    numeric = np.empty(10)
    for i in range(10):
        step = np.zeros_like(z)
        step[0, i] = 1e-6
        numeric[i] = (score(model, decoder, z + step, 3) - score(model, decoder, z - step, 3))[0] / 2e-6
    np.testing.assert_allclose(param.code.grad[0], numeric, rtol=1e-6, atol=1e-9)


def test_one_sgd_step_is_the_textbook_update_and_the_box_holds(rng):
    model, decoder = small_pair(1)
    z0 = np.abs(rng.standard_normal((2, 10)))
    lr = 0.3
    param = GeneratorImage(decoder, z0)
    value = ob.class_logit(5)(model, param.image())
    value.backward(np.ones(2))
    expected = z0 + lr * param.code.grad
    got = mv.vis.latent_class_model(model, decoder, [5, 5], steps=1, lr=lr, init=z0, optimizer="sgd",
                                    progress=False)
    np.testing.assert_allclose(got.info["code"], expected, rtol=1e-12)
    boxed = mv.vis.latent_class_model(model, decoder, 5, steps=20, lr=1.0, init=z0[:1], optimizer="sgd",
                                      code_range=(0.0, 1.5), progress=False)
    assert boxed.info["code"].min() >= 0.0 and boxed.info["code"].max() <= 1.5
    np.testing.assert_allclose(boxed.x, decoder(mv.tensor(boxed.info["code"][None])).numpy()[0], rtol=1e-12)
    assert all(p.requires_grad for p in decoder.parameters()), "the decoder is unfrozen afterwards"


@pytest.mark.slow
def test_the_shipped_decoder_makes_the_class_win():
    """In the code space of the hidden layer, 60 Adam steps from zero make each target class win."""
    model = mv.models.load("fashion_cnn")
    decoder = mv.models.load_decoder("classifier.1")
    targets = [0, 5, 8]
    result = mv.vis.latent_class_model(model, decoder, targets, steps=60, lr=0.1, code_range=(0.0, None),
                                       progress=False)
    with mv.no_grad():
        logits = model(mv.tensor(result.x)).numpy()
    assert (logits.argmax(axis=1) == targets).all()
    assert (result.history[-1] > result.history[0] + 5).all()
    assert result.info["code"].min() >= 0.0


def test_bad_input_is_refused():
    model, decoder = small_pair()
    with pytest.raises(ValueError, match=r"latent_class_model: init must be one of \('zero', 'noise'\)"):
        mv.vis.latent_class_model(model, decoder, 1, init="mean", progress=False)
    with pytest.raises(ValueError, match=r"latent_class_model: init codes must have shape \(1, 10\)"):
        mv.vis.latent_class_model(model, decoder, 1, init=np.zeros((1, 9)), progress=False)
    with pytest.raises(ValueError, match=r"latent_class_model: code_range's high \(shape \(3,\)\) does not broadcast"):
        mv.vis.latent_class_model(model, decoder, 1, code_range=(0, np.ones(3)), progress=False)
    with pytest.raises(ValueError, match="latent_class_model: optimizer must be a gradient-step optimizer"):
        mv.vis.latent_class_model(model, decoder, 1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="latent_class_model: target class 10 is out of range for 10 classes"):
        mv.vis.latent_class_model(model, decoder, 10, progress=False)
    with pytest.raises(TypeError, match="latent_class_model: model and decoder must be minivis nn.Modules"):
        mv.vis.latent_class_model(model, None, 1, progress=False)
    with pytest.raises(ValueError, match="GeneratorImage: low must not exceed high"):
        GeneratorImage(decoder, np.zeros((1, 10)), low=1.0, high=0.0)
    with pytest.raises(NotImplementedError, match="GeneratorImage.set_image: an image cannot be turned back"):
        GeneratorImage(decoder, np.zeros((1, 10))).set_image(np.zeros((1, 1, 28, 28)))
