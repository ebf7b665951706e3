"""Filters as pictures: the per-filter contrast normalisation against its formula, layouts, checkpoints,
the figures, bad input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import minivis as mv
from minivis.plot import features as fplot
from minivis.vis.features.filters import filters, filters_over_training, first_layer_filters


@pytest.fixture(scope="module")
def fashion():
    mv.nn.init.seed(0)
    return mv.models.FashionCNN()


def test_grey_first_layer_is_symmetric_per_filter(fashion):
    w = fashion.features[0].weight.data.astype(np.float64)  # (32, 1, 3, 3)
    shown = first_layer_filters(fashion)
    assert shown.shape == (32, 3, 3)
    scale = np.abs(w).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(shown, (0.5 + 0.5 * w / scale)[:, 0], rtol=1e-15)
    assert shown.min() >= 0 and shown.max() <= 1
    # every filter reaches 0 or 1 (its largest |weight|), and zero weight would be mid-grey
    assert np.allclose(np.maximum(shown.max(axis=(1, 2)), 1 - shown.min(axis=(1, 2))), 1.0)


def test_rgb_first_layer_keeps_colour_balance():
    mv.nn.init.seed(1)
    model = mv.models.EfficientNetLite()
    w = model._conv_stem.weight.data.astype(np.float64)  # (32, 3, 3, 3)
    shown = first_layer_filters(model)
    assert shown.shape == (32, 3, 3, 3)  # (F, kh, kw, RGB)
    centred = (shown - 0.5).transpose(0, 3, 1, 2)
    # one scale per filter: the ratio between the R, G and B planes is the weights' ratio
    ratio = centred / w
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1, :1, :1], ratio.shape), rtol=1e-12)


def test_minmax_none_and_zero_filters(fashion):
    w = fashion.features[0].weight.data.astype(np.float64)[:, 0]
    minmax = first_layer_filters(fashion, normalize="minmax")
    np.testing.assert_allclose(minmax.min(axis=(1, 2)), 0.0, atol=1e-15)
    np.testing.assert_allclose(minmax.max(axis=(1, 2)), 1.0)
    np.testing.assert_array_equal(first_layer_filters(fashion, normalize="none"), w)
    model = mv.nn.Sequential(mv.nn.Conv2d(1, 2, 3))
    model[0].weight.data[0] = 0.0
    assert (first_layer_filters(model)[0] == 0.5).all()
    assert (first_layer_filters(model, normalize="minmax")[0] == 0.5).all()


def test_deeper_filters_per_input_channel(fashion):
    w = fashion.features[2].weight.data.astype(np.float64)  # (32, 32, 3, 3)
    shown = filters(fashion, "features.2")
    assert shown.shape == (32, 32, 3, 3)
    np.testing.assert_allclose(shown, 0.5 + 0.5 * w / np.abs(w).max(axis=(1, 2, 3), keepdims=True), rtol=1e-15)
    assert filters(fashion, "features.7", normalize="minmax").shape == (64, 64, 3, 3)
    # a first layer can be named explicitly too
    assert first_layer_filters(fashion, "features.0").shape == (32, 3, 3)


def test_filters_over_training(monkeypatch):
    mv.nn.init.seed(2)
    a, b = mv.models.FashionCNN(), mv.models.FashionCNN()
    out = filters_over_training([a, b])
    assert list(out) == ["model 0", "model 1"]
    np.testing.assert_array_equal(out["model 1"], first_layer_filters(b))
    assert list(filters_over_training({"start": a, "end": b})) == ["start", "end"]
    loaded = []

    def fake_load(name, checkpoint=None, **kwargs):
        loaded.append((name, checkpoint))
        mv.nn.init.seed(checkpoint)
        return mv.models.FashionCNN()

    monkeypatch.setattr(mv.models, "load", fake_load)
    out = filters_over_training([1, 5])
    assert list(out) == ["epoch 1", "epoch 5"] and loaded == [("fashion_cnn", 1), ("fashion_cnn", 5)]


def test_shipped_checkpoints_when_present():
    epochs = mv.models.available_checkpoints()
    if not epochs:
        pytest.skip("no fashion_cnn checkpoints shipped yet (minivis/models/weights/fashion_cnn_epochNN.npz)")
    out = filters_over_training(epochs[:2])
    assert all(f.shape == (32, 3, 3) for f in out.values())


def test_figures(fashion, tmp_path):
    figs = [
        fplot.filter_grid(first_layer_filters(fashion), title="layer 1"),
        fplot.filter_grid(first_layer_filters(mv.models.EfficientNetLite())),
        fplot.filter_channels(filters(fashion, "features.2"), max_filters=4, max_channels=6),
        fplot.filter_history(filters_over_training([fashion, fashion]), max_filters=8),
    ]
    for i, fig in enumerate(figs):
        assert isinstance(fig, plt.Figure)
        path = mv.plot.save(fig, tmp_path / f"f{i}.png")
        assert path.stat().st_size > 0
    with pytest.raises(ValueError, match=r"filter_grid: expected filters shaped 3-D or 4-D"):
        fplot.filter_grid(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="filter_history: filters_by_label must be a non-empty mapping"):
        fplot.filter_history({})


def test_bad_inputs(fashion):
    with pytest.raises(TypeError, match="first_layer_filters: model must be a minivis nn.Module, got str"):
        first_layer_filters("fashion_cnn")
    with pytest.raises(TypeError, match=r"filters: layer 'features.1' is a ReLU, not a Conv2d"):
        filters(fashion, "features.1")
    with pytest.raises(ValueError, match=r"filters: layer: 'features.77' is not a layer"):
        filters(fashion, "features.77")
    with pytest.raises(ValueError, match=r"first_layer_filters: layer 'features.2' has 32 input channels"):
        first_layer_filters(fashion, "features.2")
    with pytest.raises(ValueError, match="first_layer_filters: Sequential has no Conv2d layer"):
        first_layer_filters(mv.nn.Sequential(mv.nn.ReLU()))
    with pytest.raises(ValueError, match=r"normalize must be one of \('symmetric', 'minmax', 'none'\), got 'max'"):
        first_layer_filters(fashion, normalize="max")
    with pytest.raises(ValueError, match="filters_over_training: no checkpoints given"):
        filters_over_training([])
    with pytest.raises(TypeError, match="filters_over_training: checkpoint 0 must be an epoch"):
        filters_over_training(["epoch 1"])
    with pytest.raises(TypeError, match="filters_over_training: checkpoints must be a list"):
        filters_over_training(3)
    with pytest.raises(TypeError, match="filters_over_training: checkpoints must be a list"):
        filters_over_training(b"x")  # bytes are a sequence of ints: it loaded epoch 120
    # arguments passed on to first_layer_filters were refused under its name (normalize even as filters')
    with pytest.raises(ValueError, match="filters_over_training: normalize must be one of"):
        filters_over_training([fashion], normalize="max")
    with pytest.raises(ValueError, match="filters_over_training: layer: 'features.99' is not a layer"):
        filters_over_training([fashion], layer="features.99")
    with pytest.raises(ValueError, match="first_layer_filters: normalize must be one of"):
        first_layer_filters(fashion, normalize="max")
    with pytest.raises(ValueError, match="filters_over_training: checkpoint 0 is epoch 999, which has no fashion_cnn "
                                         "checkpoint"):  # was models.load's FileNotFoundError
        filters_over_training([999])
