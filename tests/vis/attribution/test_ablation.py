"""Ablation against a direct computation on the PyTorch twin (a forward hook that zeroes or
mean-fills one channel or one unit), on conv and linear layers, plus bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis import nn
from tests.torch_twins import TorchFashionCNN, twin_from_state


def fashion() -> mv.models.FashionCNN:
    nn.init.seed(0)
    return mv.models.FashionCNN(widths=(8, 16), hidden=32).double().eval()


def twin_of(model: mv.models.FashionCNN) -> torch.nn.Module:
    return twin_from_state(TorchFashionCNN(widths=(8, 16), hidden=32), model.state_dict(), torch.float64)


def torch_ablation(twin, x: np.ndarray, targets, layer: str, unit: tuple, fill: str) -> np.ndarray:
    """Target logit with ``unit`` of ``layer`` ablated, minus the clean logit, per image (the definition)."""
    module = twin.get_submodule(layer)

    def edit(mod, inputs, out):
        out = out.clone()
        index = (slice(None), *unit)
        out[index] = out[:, unit[0]].mean(dim=(-2, -1)).reshape(-1, *[1] * (out[index].dim() - 1)) \
            if fill == "mean" else 0.0
        return out

    xt = torch.from_numpy(x)
    rows = torch.arange(len(x))
    with torch.no_grad():
        clean = twin(xt)[rows, targets]
        handle = module.register_forward_hook(edit)
        try:
            ablated = twin(xt)[rows, targets]
        finally:
            handle.remove()
    return (ablated - clean).numpy()


@pytest.mark.parametrize("layer", ["features.1", "features.7", "features.9"])
@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_channel_ablation_equals_a_direct_computation(layer, fill, rng) -> None:
    model = fashion()
    twin = twin_of(model)
    x = rng.standard_normal((2, 1, 28, 28))
    targets = [3, 8]
    units = None if layer == "features.1" else [0, 5, 6, 15]  # every channel once; a few deeper down
    got = mv.vis.ablation(model, x, targets, layer, units=units, fill=fill, batch_size=3)  # 3 divides neither 8 nor 4
    channels = range(8) if units is None else units
    assert got.shape == (2, len(channels))
    want = np.stack([torch_ablation(twin, x, targets, layer, (c,), fill) for c in channels], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert np.abs(want).max() > 1e-4  # the ablations matter


def test_unit_ablation_and_linear_layers(rng) -> None:
    model = fashion()
    twin = twin_of(model)
    x = rng.standard_normal((1, 28, 28))
    units = [(2, 3, 4), (5, 0, 13), (7, 27, 27)]
    for fill in ("zero", "mean"):
        got = mv.vis.ablation(model, x, 6, "features.3", units=units, fill=fill)
        want = [torch_ablation(twin, x[None], [6], "features.3", unit, fill)[0] for unit in units]
        assert got.shape == (3,)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    got = mv.vis.ablation(model, x, 6, "classifier.1", units=[0, 9, 31])  # the hidden ReLU layer (N, 32)
    want = [torch_ablation(twin, x[None], [6], "classifier.1", (u,), "zero")[0] for u in (0, 9, 31)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_callable_target_and_model_state(rng) -> None:
    model = fashion().train()
    x = rng.standard_normal((2, 1, 28, 28))
    margin = mv.vis.ablation(model, x, lambda out: out[:, 1] - out[:, 2], "features.4", units=[0, 3])
    model.eval()
    direct = mv.vis.ablation(model, x, 1, "features.4", units=[0, 3]) - mv.vis.ablation(
        model, x, 2, "features.4", units=[0, 3])
    np.testing.assert_allclose(margin, direct, rtol=1e-9, atol=1e-13)
    model.train()
    mv.vis.ablation(model, x, 1, "features.4", units=[0])
    assert all(m.training for m in model.modules()) and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"layer": "features.99"}, ValueError, r"ablation: layer: 'features.99' is not a layer of FashionCNN"),
    ({"layer": 3}, TypeError, "ablation: layer must be a dotted layer name"),
    ({"target": 10}, ValueError, r"ablation: target class 10 is out of range for 10 classes"),
    ({"fill": "noise"}, ValueError, "ablation: fill must be 'zero' or 'mean', got 'noise'"),
    ({"units": [8]}, ValueError, r"ablation: unit \(8,\) is out of range for layer 'features.1'"),
    ({"units": [(1, 2)]}, ValueError, r"ablation: each unit must be a channel index or a 3-tuple"),
    ({"units": [0.5]}, TypeError, "ablation: units must be a non-empty list of channel indices"),
    ({"units": []}, TypeError, "ablation: units must be a non-empty list"),
    ({"layer": "classifier.1", "fill": "mean"}, ValueError, r"ablation: fill='mean' .* needs a 4-D"),
    ({"batch_size": 0}, ValueError, "ablation: batch_size must be a positive int"),
])
def test_bad_input(kwargs, error, match, rng) -> None:
    args = {"target": 0, "layer": "features.1", **kwargs}
    with pytest.raises(error, match=match):
        mv.vis.ablation(fashion(), rng.standard_normal((1, 28, 28)), **args)


def test_bad_image(rng) -> None:
    with pytest.raises(ValueError, match=r"ablation: x must be \(C, H, W\) or \(N, C, H, W\)"):
        mv.vis.ablation(fashion(), rng.standard_normal((28, 28)), 0, "features.1")
