"""DeepDream (minivis/vis/deepdream.py): it raises 1/2||a||^2 at the chosen layer, keeps pixels in the
valid range, carries the octaves' detail up to the full size, is seeded, and refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.synthesis.deepdream import octave_sizes
from minivis.vis.synthesis.objectives import layer_l2


def fashion(seed: int = 0) -> mv.models.FashionCNN:
    mv.nn.init.seed(seed)
    return mv.models.FashionCNN(widths=(8, 16), hidden=32).eval()


def l2_at(model, layer, x) -> np.ndarray:
    with mv.no_grad():
        return layer_l2(layer)(model, mv.tensor(x[None] if x.ndim == 3 else x)).numpy()


def valid(model):
    mean, std = np.asarray(model.mean), np.asarray(model.std)
    return ((0 - mean) / std).reshape(-1, 1, 1), ((1 - mean) / std).reshape(-1, 1, 1)


def test_deepdream_raises_the_layer_norm_and_clips_pixels() -> None:
    """FashionCNN takes 28x28 only, so one octave."""
    model = fashion()
    x = np.random.default_rng(0).uniform(0, 1, (1, 28, 28))
    x = ((x - model.mean[0]) / model.std[0]).astype(np.float32)
    result = mv.vis.deepdream(model, x, "features.7", steps=6, lr=0.1, octaves=1, jitter=2,
                              progress=False)
    assert result.x.shape == x.shape and result.image.shape[:2] == (28, 28)
    assert l2_at(model, "features.7", result.x)[0] > 1.5 * l2_at(model, "features.7", x)[0]
    low, high = valid(model)
    assert result.x.min() >= low.min() - 1e-6 and result.x.max() <= high.max() + 1e-6
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.info["octave_sizes"] == [(28, 28)] and result.history.shape == (6,)
    assert result.history[-1] > result.history[0]
    assert all(p.grad is None for p in model.parameters()) and all(p.requires_grad for p in model.parameters())


def test_deepdream_is_seeded_and_handles_batches() -> None:
    model = fashion()
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    a = mv.vis.deepdream(model, x, "features.2", steps=2, octaves=1, jitter=3, seed=5, progress=False)
    b = mv.vis.deepdream(model, x, "features.2", steps=2, octaves=1, jitter=3, seed=5, progress=False)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (2, 1, 28, 28) and a.history.shape == (2, 2)


def test_octave_sizes_go_from_small_to_full() -> None:
    assert octave_sizes((224, 300), 4, 1.4) == [(82, 109), (114, 153), (160, 214), (224, 300)]
    assert octave_sizes((64, 64), 1, 1.4) == [(64, 64)]


def test_deepdream_on_a_photo_with_efficientnet() -> None:
    """chelsea through model.preprocess, shrunk to 48 px, two octaves (34 and 48 px) of a shallow block."""
    model = mv.models.load("efficientnet_lite0")
    photo = mv.data.photo("chelsea")
    result = mv.vis.deepdream(model, photo, "_blocks.1", steps=2, lr=0.05, octaves=2, size=48, jitter=4,
                              progress=False)
    x0 = mv.F.interpolate(mv.tensor(model.preprocess(photo)), size=(48, 48), mode="bilinear").numpy()[0]
    assert result.image.shape == (48, 48, 3) and 0 <= result.image.min() and result.image.max() <= 1
    assert result.info["octave_sizes"] == [(34, 34), (48, 48)] and result.history.shape == (4,)
    assert l2_at(model, "_blocks.1", result.x)[0] > 1.1 * l2_at(model, "_blocks.1", x0)[0]
    low, high = valid(model)
    assert (result.x >= low - 1e-6).all() and (result.x <= high + 1e-6).all()
    # the small octave's detail was carried up: the second octave starts above the plain resized photo
    assert result.info["octave_histories"][1][0] > l2_at(model, "_blocks.1", x0)[0]


def test_bad_input() -> None:
    model = fashion()
    x = np.zeros((1, 28, 28), np.float32)
    with pytest.raises(ValueError, match=r"deepdream: .*no submodule|deepdream: .*features.99"):
        mv.vis.deepdream(model, x, "features.99", progress=False)
    with pytest.raises(ValueError, match=r"deepdream: octaves=4 with octave_scale=1.4 shrinks the 28x28 image "
                                         r"to 10x10 at the smallest octave, below min_size=16"):
        mv.vis.deepdream(model, x, "features.2", octaves=4, min_size=16, progress=False)
    with pytest.raises(ValueError, match=r"deepdream: octaves must be >= 1, got 0"):
        mv.vis.deepdream(model, x, "features.2", octaves=0, progress=False)
    with pytest.raises(ValueError, match=r"deepdream: octave_scale must be > 1"):
        mv.vis.deepdream(model, x, "features.2", octave_scale=0.5, progress=False)
    with pytest.raises(ValueError, match=r"deepdream: steps must be >= 1"):
        mv.vis.deepdream(model, x, "features.2", steps=0, progress=False)
    with pytest.raises(TypeError, match=r"deepdream: seed must be an int, got None"):  # seed + k failed
        mv.vis.deepdream(model, x, "features.2", steps=1, seed=None, progress=False)
    with pytest.raises(ValueError, match=r"deepdream: image has 3 channels, the model expects 1"):
        mv.vis.deepdream(model, np.zeros((3, 28, 28), np.float32), "features.2", progress=False)
    with pytest.raises(TypeError, match=r"deepdream: layer must be a dotted layer name"):
        mv.vis.deepdream(model, x, 3, progress=False)
