"""Activation maps against a direct forward pass, the streamed dead-filter report against a direct
computation over all activations, model state, figures, bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import minivis as mv
from minivis.plot import features as fplot
from minivis.vis.features.activations import activations, dead_filters


@pytest.fixture(scope="module")
def fashion():
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN()
    # Kill channels 3 and 10 of the first conv (a large negative bias: the ReLU never opens) and make
    # channel 5 fire only on bright pixels, so the report has dead, sometimes-off and live channels.
    model.features[0].bias.data[[3, 10]] = -100.0
    model.features[0].weight.data[5] = np.abs(model.features[0].weight.data[5])
    model.features[0].bias.data[5] = -3.0  # off on 12 of the 30 images
    images = mv.data.fashion_mnist("test")[0][:30]
    return model.eval(), images


def test_activations_follow_the_input(fashion):
    model, images = fashion
    x = model.preprocess(images[:3])
    with mv.no_grad():
        direct = mv.nn.forward_to(model, mv.tensor(x), "features.3").data
    batch = activations(model, x, "features.3")
    assert batch.shape == (3, 32, 28, 28)
    np.testing.assert_array_equal(batch, direct)
    one = activations(model, x[1], "features.3")
    assert one.shape == (32, 28, 28)
    np.testing.assert_array_equal(one, direct[1])
    np.testing.assert_array_equal(activations(model, mv.tensor(x), "features.3"), direct)
    assert activations(model, x, "classifier.1").shape == (3, 128)


def test_activations_use_eval_mode_and_restore_it(fashion):
    model, images = fashion
    x = model.preprocess(images[:4])
    model.train()
    try:
        after_dropout = activations(model, x, "classifier.2")  # dropout is off in eval mode
        assert model.training and model.classifier[2].training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
    np.testing.assert_array_equal(after_dropout, activations(model, x, "classifier.1"))


def _direct_report(model, images, layer, threshold=0.0, batch_size=None):
    """All activations stored (in the report's batches, so a Linear layer's float32 sums round the same)."""
    x = model.preprocess(images)
    step = batch_size or len(x)
    with mv.no_grad():
        a = np.concatenate([mv.nn.forward_to(model, mv.tensor(x[i:i + step]), layer).data
                            for i in range(0, len(x), step)])
    flat = a.reshape(a.shape[0], a.shape[1], -1).astype(np.float64)
    return (flat.max(axis=2) <= threshold).mean(axis=0), flat.mean(axis=(0, 2)), flat.max(axis=(0, 2))


@pytest.mark.parametrize("layer,batch_size", [("features.1", 7), ("features.0", 30), ("classifier.1", 4)])
def test_dead_filter_report_equals_direct_computation(fashion, layer, batch_size):
    model, images = fashion
    report = dead_filters(model, images, layer, batch_size=batch_size)
    dead, mean, peak = _direct_report(model, images, layer, batch_size=batch_size)
    np.testing.assert_array_equal(report.dead_fraction, dead)
    np.testing.assert_allclose(report.mean, mean, rtol=1e-12)
    np.testing.assert_array_equal(report.max, peak)
    assert report.count == 30 and report.layer == layer


def test_dead_filters_found(fashion):
    model, images = fashion
    report = dead_filters(model, images, "features.1", batch_size=8)
    assert report.dead().tolist() == [3, 10]
    assert report.mean[3] == 0.0 and report.max[10] == 0.0
    assert report.dead_fraction[5] == pytest.approx(12 / 30)
    assert report.dead(0.4).tolist() == [3, 5, 10]
    # a threshold above zero counts weak maps as off; the model-input route agrees with the raw route
    strict = dead_filters(model, model.preprocess(images), "features.1", batch_size=30, threshold=0.5)
    np.testing.assert_array_equal(strict.dead_fraction, _direct_report(model, images, "features.1", 0.5)[0])
    assert (strict.dead_fraction >= report.dead_fraction).all()


def test_figures(fashion, tmp_path):
    model, images = fashion
    x = model.preprocess(images[:1])
    maps = activations(model, x[0], "features.1")
    figs = [fplot.activation_grid(maps, image=x[0], title="features.1"),
            fplot.activation_grid(maps[:5], shared_scale=False),
            fplot.dead_filter_report(dead_filters(model, images, "features.1"))]
    for i, fig in enumerate(figs):
        assert isinstance(fig, plt.Figure)
        assert mv.plot.save(fig, tmp_path / f"a{i}.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"activation_grid: maps must be \(C, H, W\) for one image"):
        fplot.activation_grid(maps[None])


def test_bad_inputs(fashion):
    model, images = fashion
    x = model.preprocess(images[:2])
    with pytest.raises(ValueError, match=r"activations: x must be \(C, H, W\) or \(N, C, H, W\), got shape \(28, 28\)"):
        activations(model, x[0, 0], "features.1")
    with pytest.raises(ValueError, match="activations: layer: 'features.10' is not a layer"):
        activations(model, x, "features.10")
    with pytest.raises(TypeError, match="activations: x must be numeric"):
        activations(model, x.astype(bool), "features.1")
    with pytest.raises(TypeError, match="activations: model must be a minivis nn.Module"):
        activations(None, x, "features.1")
    with pytest.raises(ValueError, match="dead_filters: batch_size must be a positive int, got 0"):
        dead_filters(model, images, "features.1", batch_size=0)
    with pytest.raises(TypeError, match="dead_filters: threshold must be a number, got 'zero'"):
        dead_filters(model, images, "features.1", threshold="zero")
    with pytest.raises(ValueError, match="dead_filters: layer: 'conv1' is not a layer"):
        dead_filters(model, images, "conv1")
    with pytest.raises(ValueError, match=r"dead_filters: images must be model inputs .* got shape \(2, 3\)"):
        dead_filters(model, np.zeros((2, 3)), "features.1")
    with pytest.raises(TypeError, match="dead_filters: uint8 images need a model with .preprocess"):
        dead_filters(mv.nn.Sequential(mv.nn.Conv2d(1, 1, 3)), images, "0")
    with pytest.raises(ValueError, match="dead_filters: images contains NaN or infinite values"):
        dead_filters(model, np.full((2, 1, 28, 28), np.nan, np.float32), "features.1")
