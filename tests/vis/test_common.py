"""``vis.common.as_batch``: its errors name the public call and that call's own name for the image
argument (``x``, ``image``, ``images``, ``sample``, ``content``, ``style``), whichever path leads there:
a direct call, deepdream's photo-or-input helper, the facet clustering, or the dataset streams
(``stream_inputs`` and ``model_inputs``)."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.common import as_batch

V = mv.vis
GOOD = np.zeros((1, 28, 28), np.float32)
RGB = np.zeros((3, 28, 28), np.float32)  # three channels for a one-channel model
RGB4 = np.zeros((4, 3, 28, 28), np.float32)
STYLE = dict(content_layer="features.3", style_layers=["features.1"], steps=1, progress=False)


@pytest.fixture(scope="module")
def model():
    mv.nn.init.seed(0)
    return mv.models.FashionCNN(widths=(4, 8), hidden=16).eval()


def _top(model):
    images = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    return V.top_activations(model, images, "features.1", k=2, crop=False)["features.1"]


CALLS = {  # name: (call with the bad image, the argument it should be called)
    "saliency": (lambda m: V.saliency(m, RGB, 0), "x"),  # the default
    "fgsm": (lambda m: V.fgsm(m, RGB, 0, 0.1), "x"),
    "invert": (lambda m: V.invert(m, RGB, "features.3", steps=1, progress=False), "image"),
    "inversion_table": (lambda m: V.inversion_table(m, RGB, ["features.3"]), "image"),
    "gram_targets": (lambda m: V.gram_targets(m, RGB, ["features.1"]), "image"),
    "texture_synthesis": (lambda m: V.texture_synthesis(m, RGB, size=28, layers=["features.1"], steps=1,
                                                        progress=False), "sample"),
    "style_transfer content": (lambda m: V.style_transfer(m, RGB, GOOD, **STYLE), "content"),
    "style_transfer style": (lambda m: V.style_transfer(m, GOOD, RGB, **STYLE), "style"),
    "deepdream": (lambda m: V.deepdream(m, RGB, "features.3", steps=1, octaves=1, progress=False), "image"),
    "cluster_facets": (lambda m: V.cluster_facets(m, RGB4, "features.3", k=2), "images"),
    "multifaceted_class_model": (lambda m: V.multifaceted_class_model(m, RGB4, 1, "features.3", k=2), "images"),
    "top_activations": (lambda m: V.top_activations(m, RGB4, "features.1", k=2), "images"),  # stream_inputs
    "feature_codes": (lambda m: V.feature_codes(m, RGB4, "features.3"), "images"),
    "crop_patches": (lambda m: V.crop_patches(m, RGB4, _top(m)), "images"),  # model_inputs
}


@pytest.mark.parametrize("name", list(CALLS))
def test_the_image_argument_is_named_as_the_call_names_it(model, name):
    call, arg = CALLS[name]
    method = name.split()[0]
    with pytest.raises(ValueError, match=rf"^{method}: {arg} has 3 channels, the model expects 1$"):
        call(model)


@pytest.mark.parametrize(("value", "error", "message"), [
    ([[0.0]], TypeError, r"must be an array or Tensor of shape \(C, H, W\) or \(N, C, H, W\), got list"),
    (np.zeros((28, 28), np.float32), ValueError, r"must be \(C, H, W\) or \(N, C, H, W\), got shape \(28, 28\)"),
    (np.zeros((1, 28, 28), bool), TypeError, "must be numeric, got dtype bool"),
    (np.zeros((0, 1, 28, 28), np.float32), ValueError, r"must be non-empty, got shape \(0, 1, 28, 28\)"),
    (np.full((1, 28, 28), np.nan, np.float32), ValueError, "contains NaN or infinite values"),
])
@pytest.mark.parametrize("arg", [None, "x", "sample"])
def test_every_as_batch_error_names_the_argument(model, value, error, message, arg):
    kwargs = {} if arg is None else {"arg": arg}
    with pytest.raises(error, match=rf"^some_method: {arg or 'x'} {message}$"):
        as_batch(value, model, "some_method", **kwargs)


def test_as_batch_returns_a_batch_in_the_models_dtype():
    model = mv.nn.Sequential(mv.nn.Conv2d(1, 2, 3)).double()
    batch, single = as_batch(np.ones((1, 28, 28), np.uint8), model, "some_method", arg="image")
    assert single and batch.shape == (1, 1, 28, 28) and batch.dtype == np.float64
    np.testing.assert_array_equal(batch, 1.0)
