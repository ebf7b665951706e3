"""Attribution at any unit: every method takes an objective (a unit, channel, direction or class
at any layer) as its target. The gradients are checked against float64 finite differences of
the objective itself; the other methods against Captum on a PyTorch twin whose "output" is that
unit, and against direct loops; plus the errors for targets that cannot work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, IntegratedGradients, LayerGradCam, Saliency
from torch import nn as tnn

import minivis as mv
from minivis.vis import objectives as ob
from tests.vis.attribution.test_gradients import HIDDEN, WIDTHS, assert_close, torch_input

C2 = WIDTHS[1]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(8).standard_normal((3, 1, 28, 28))


def objective_cases():
    v8 = np.random.default_rng(0).standard_normal(C2)
    v_fc = np.random.default_rng(1).standard_normal(HIDDEN)
    return {
        "unit@features.2": ob.unit("features.2", 5, 9, 12),
        "channel@features.6": ob.channel("features.6", 7),
        "direction@features.8(y,x)": ob.direction("features.8", v8, 6, 4),
        "direction@features.8(mean)": ob.direction("features.8", v8),
        "direction@classifier.1": ob.direction("classifier.1", v_fc),
        "class - unit": ob.class_logit(4) - 0.5 * ob.unit("features.8", 3, 7, 7),
    }


CASES = objective_cases()


# --------------------------------------------------------------------------- the gradient, by finite differences
@pytest.mark.parametrize("name", list(CASES))
def test_gradient_of_an_objective_matches_finite_differences(nets, images, name):
    """<dJ/dx, v> against (J(x + hv) - J(x - hv)) / 2h per image, J the objective (float64)."""
    model, _ = nets
    objective = CASES[name]
    grad = mv.vis.input_gradient(model, images, objective)
    v = np.random.default_rng(3).standard_normal(images.shape)
    h = 1e-6

    def value(x):
        with mv.no_grad():
            return objective(model, mv.tensor(x)).numpy()

    numeric = (value(images + h * v) - value(images - h * v)) / (2 * h)
    analytic = (grad * v).reshape(len(images), -1).sum(axis=1)
    assert np.all(analytic != 0)  # the objective really depends on the input
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9 * np.abs(analytic).max())
    # saliency is the max over channels of its magnitude (one channel here)
    np.testing.assert_allclose(mv.vis.saliency(model, images, objective), np.abs(grad)[:, 0], rtol=1e-12)


def test_unit_and_channel_are_directions_along_an_axis(nets, images):
    model, _ = nets
    axis = np.eye(C2)[6]
    pairs = [(ob.unit("features.8", 6, 2, 5), ob.direction("features.8", axis, 2, 5)),
             (ob.channel("features.8", 6), ob.direction("features.8", axis))]
    for unit, direction in pairs:
        np.testing.assert_allclose(mv.vis.input_gradient(model, images, direction),
                                   mv.vis.input_gradient(model, images, unit), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- against Captum on a unit "head"
class UnitHead(tnn.Module):
    """The torch twin cut at a layer, returning one unit (N,): Captum's forward function."""

    def __init__(self, twin, stop, channel, y=None, x=None):
        super().__init__()
        self.body = twin.features[:stop + 1]
        self.channel, self.y, self.x = channel, y, x

    def forward(self, inputs):
        a = self.body(inputs)[:, self.channel]
        return a[:, self.y, self.x] if self.y is not None else a.mean(dim=(1, 2))


HEADS = {"unit": (ob.unit("features.6", 3, 4, 9), (6, 3, 4, 9)), "channel": (ob.channel("features.8", 2), (8, 2))}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("method", ["saliency", "input_gradient", "guided_backprop", "deconvnet"])
def test_single_pass_methods_at_a_unit_match_captum(nets, images, head, method):
    model, twin = nets
    objective, spec = HEADS[head]
    forward = UnitHead(twin, *spec)
    xt = torch_input(images)
    ref = {"saliency": lambda: Saliency(forward).attribute(xt, abs=True).amax(dim=1),
           "input_gradient": lambda: Saliency(forward).attribute(xt, abs=False),
           "guided_backprop": lambda: GuidedBackprop(forward).attribute(xt),
           "deconvnet": lambda: Deconvolution(forward).attribute(xt)}[method]()
    assert_close(getattr(mv.vis, method)(model, images, objective), ref)


def test_integrated_gradients_at_a_unit_match_captum_and_complete(nets, images):
    model, twin = nets
    objective, spec = HEADS["unit"]
    attr, delta = mv.vis.integrated_gradients(model, images, objective, steps=4, batch_size=5, return_delta=True)
    ref = IntegratedGradients(UnitHead(twin, *spec)).attribute(torch_input(images), baselines=0.0, n_steps=4,
                                                                method="riemann_middle")
    assert_close(attr, ref, rtol=1e-6)  # Captum's alphas are float32-rounded (see test_gradients)
    with mv.no_grad():
        gap = (objective(model, mv.tensor(images)) - objective(model, mv.tensor(np.zeros_like(images)))).numpy()
    np.testing.assert_allclose(attr.reshape(3, -1).sum(axis=1) - gap, delta, rtol=1e-9, atol=1e-12)


def test_smoothgrad_at_a_unit_is_the_mean_over_the_same_noise(nets, images):
    from tests.vis.attribution.test_gradients import same_noise

    model, twin = nets
    objective, spec = HEADS["channel"]
    ours = mv.vis.smoothgrad(model, images, objective, n=3, noise=0.2, method="guided_backprop", batch_size=4,
                             seed=2)
    ref = np.mean([GuidedBackprop(UnitHead(twin, *spec)).attribute(torch_input(xs)).detach().numpy()
                   for xs in same_noise(images, 3, 0.2, seed=2)], axis=0)
    assert_close(ours, ref)


def test_grad_cam_of_a_deeper_unit_matches_captum(nets, images):
    model, twin = nets
    objective, spec = HEADS["unit"]
    forward = UnitHead(twin, *spec)
    ref = LayerGradCam(forward, forward.body[2]).attribute(torch_input(images), relu_attributions=True)
    ours = mv.vis.grad_cam(model, images, objective, layer="features.2", upsample=False)
    assert_close(ours, ref[:, 0])


def test_occlusion_and_ablation_at_a_unit_equal_direct_loops(nets, images):
    model, twin = nets
    objective, spec = HEADS["unit"]
    forward = UnitHead(twin, *spec)
    grid = mv.vis.occlusion(model, images[:2], objective, patch=7, stride=7)
    want = np.empty((2, 4, 4))
    with torch.no_grad():
        for r in range(4):
            for c in range(4):
                xo = images[:2].copy()
                xo[:, :, 7 * r:7 * r + 7, 7 * c:7 * c + 7] = 0.0  # the model's mean pixel
                want[:, r, c] = forward(torch.from_numpy(xo)).numpy()
    np.testing.assert_allclose(grid, want, rtol=1e-10, atol=1e-12)

    delta = mv.vis.ablation(model, images[:2], objective, layer="features.2", units=[0, 5])
    base = forward(torch.from_numpy(images[:2])).detach().numpy()
    for k, channel in enumerate([0, 5]):
        def zero(module, inputs, output, channel=channel):
            output = output.clone()
            output[:, channel] = 0
            return output
        handle = forward.body[2].register_forward_hook(zero)
        with torch.no_grad():
            ablated = forward(torch.from_numpy(images[:2])).numpy()
        handle.remove()
        np.testing.assert_allclose(delta[:, k], ablated - base, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- bad targets
def test_bad_objective_targets_name_the_method(nets, images):
    model, _ = nets
    with pytest.raises(ValueError, match=r"saliency: target unit\('features.99', 0\): .*features.99"):
        mv.vis.saliency(model, images, ob.unit("features.99", 0))
    with pytest.raises(ValueError, match=r"guided_backprop: .*channel 99 is out of range for layer 'features.3' "
                                         r"with 8"):
        mv.vis.guided_backprop(model, images, ob.channel("features.3", 99))
    with pytest.raises(ValueError, match=r"integrated_gradients: .*direction vector has 3 values, layer "
                                         r"'features.8' has 16 channels"):
        mv.vis.integrated_gradients(model, images, ob.direction("features.8", np.ones(3)), steps=2)
    with pytest.raises(ValueError, match=r"grad_cam: the target is read before layer 'features.7' runs"):
        mv.vis.grad_cam(model, images, ob.unit("features.3", 0), layer="features.7")
    with pytest.raises(ValueError, match=r"ablation: the target is read before layer 'features.7' runs"):
        mv.vis.ablation(model, images, ob.unit("features.3", 0), layer="features.7")
    with pytest.raises(ValueError, match=r"occlusion: an objective target .* needs mode='naive'"):
        mv.vis.occlusion(model, images, ob.unit("features.3", 0), mode="incremental")
    with pytest.raises(TypeError, match="objective: direction vector must be a non-empty 1-D numeric array"):
        ob.direction("features.8", np.ones((2, 2)))
    with pytest.raises(ValueError, match="objective: direction vector contains NaN"):
        ob.direction("features.8", np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="objective: direction needs both y and x"):
        ob.direction("features.8", np.ones(16), y=2)
