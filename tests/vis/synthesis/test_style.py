"""Gram-matrix textures and neural style transfer (minivis/vis/synthesis/style.py): the losses and
their gradients against PyTorch and finite differences, texture synthesis lowers the style loss
tenfold, the content/style trade-off, luminance-only transfer, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.vis.synthesis import style as st
from tests.gradcheck import check_gradients

LAYERS = {"1": 0.3, "3": 0.7}


def tiny_net(seed: int = 0, dtype=np.float64) -> mv.nn.Sequential:
    """Two conv + ReLU layers with fixed random weights; carries the attributes the methods read."""
    rng = np.random.default_rng(seed)
    net = mv.nn.Sequential(mv.nn.Conv2d(3, 6, 3, padding=1), mv.nn.ReLU(),
                           mv.nn.Conv2d(6, 8, 3, stride=2, padding=1), mv.nn.ReLU())
    net.load_state_dict({"0.weight": rng.standard_normal((6, 3, 3, 3)) * 0.4, "0.bias": rng.uniform(0, 0.2, 6),
                         "2.weight": rng.standard_normal((8, 6, 3, 3)) * 0.3, "2.bias": rng.uniform(0, 0.2, 8)})
    net = net.double() if dtype == np.float64 else net
    net.in_channels, net.mean, net.std = 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    net.style_layers, net.content_layer = ("1", "3"), "3"
    return net.eval()


def torch_twin(net: mv.nn.Sequential) -> torch.nn.Sequential:
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(6, 8, 3, stride=2, padding=1), torch.nn.ReLU()).double()
    twin.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    return twin


def torch_losses(twin, x, style_grams, content_target, weights=LAYERS):
    acts, h = {}, x
    for i, layer in enumerate(twin):
        h = layer(h)
        acts[str(i)] = h
    style = 0
    for name, w in weights.items():
        f = acts[name]
        n, c, hh, ww = f.shape
        g = f.reshape(n, c, -1) @ f.reshape(n, c, -1).transpose(1, 2) / (hh * ww)
        a = torch.tensor(style_grams[name])
        style = style + w * ((g - a) ** 2).sum(dim=(1, 2)) / (a * a).sum()
    p = torch.tensor(content_target)
    content = ((acts["3"] - p) ** 2).sum(dim=(1, 2, 3)) / (p * p).sum()
    return style, content


def test_style_and_content_loss_match_pytorch_to_float64_rounding(rng) -> None:
    net = tiny_net()
    twin = torch_twin(net)
    style_img, content_img = rng.uniform(-1, 1, (3, 12, 10)), rng.uniform(-1, 1, (3, 8, 8))
    x = rng.uniform(-1, 1, (2, 3, 8, 8))
    grams = st.gram_targets(net, style_img, list(LAYERS))
    with mv.no_grad():
        target = net(mv.tensor(content_img[None])).numpy()
    xm = mv.tensor(x, requires_grad=True)
    s_obj, c_obj = st.style_objective(grams, LAYERS), st.content_objective("3", target)
    (s_obj(net, xm) * 2.0 + c_obj(net, xm) * 3.0).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    style, content = torch_losses(twin, xt, grams, target)
    (style * 2.0 + content * 3.0).sum().backward()
    with mv.no_grad():
        np.testing.assert_allclose(s_obj(net, mv.tensor(x)).numpy(), style.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(c_obj(net, mv.tensor(x)).numpy(), content.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_style_loss_gradient_matches_finite_differences(rng) -> None:
    """With respect to the features and through the network to the image (ReLU kinks avoided by positive biases)."""
    feats = {"a": rng.standard_normal((2, 3, 4, 4)), "b": rng.standard_normal((2, 4, 2, 3))}
    targets = {"a": rng.standard_normal((3, 3)), "b": rng.standard_normal((2, 4, 4))}  # shared, per image
    weights = {"a": 0.4, "b": 1.5}
    check_gradients(lambda a, b: st.style_loss({"a": a, "b": b}, targets, weights), [feats["a"], feats["b"]], rng)
    check_gradients(lambda f: st.content_loss(f, feats["b"][0] + 0.5), [feats["b"]], rng)
    net = tiny_net()
    grams = st.gram_targets(net, rng.uniform(-1, 1, (3, 8, 8)), list(LAYERS))
    objective = st.style_objective(grams, LAYERS)
    check_gradients(lambda x: objective(net, x), [rng.uniform(-1, 1, (1, 3, 6, 6))], rng, rtol=1e-6)


def test_texture_synthesis_lowers_the_style_loss_tenfold_from_noise(rng) -> None:
    net = tiny_net(dtype=np.float32)
    sample = rng.uniform(-1.5, 1.5, (3, 16, 16)).astype(np.float32)
    result = st.texture_synthesis(net, sample, size=(20, 12), steps=25, progress=False)
    assert result.x.shape == (3, 20, 12) and result.image.shape == (20, 12, 3)   # any output size
    assert result.info["style_loss"] <= result.info["initial_style_loss"] / 10
    adam = st.texture_synthesis(net, sample, steps=30, optimizer="adam", lr=0.05, param="fft", progress=False)
    assert adam.x.shape == (3, 16, 16) and adam.history[-1] < adam.history[0] / 2


def test_style_transfer_trades_content_for_style(rng) -> None:
    """Content + style keeps the content loss below the style-only result's, and the style loss below
    the content-only result's (both started from the content image)."""
    net = tiny_net(dtype=np.float32)
    content = rng.uniform(-1.5, 1.5, (3, 16, 16)).astype(np.float32)
    y, x = np.mgrid[:16, :16]
    style = np.stack([np.sin(x + y), np.cos(x - y), np.sin(2 * x)]).astype(np.float32)
    run = lambda cw, sw: st.style_transfer(net, content, style, content_weight=cw, style_weight=sw,  # noqa: E731
                                           tv_weight=0.0, steps=30, progress=False)
    both, style_only, content_only = run(1.0, 1.0), run(0.0, 1.0), run(1.0, 0.0)
    assert both.info["content_loss"] < style_only.info["content_loss"]
    assert both.info["style_loss"] < content_only.info["style_loss"]
    assert both.info["style_loss"] < 0.5 * st.style_objective(  # the style moved towards the target
        st.gram_targets(net, style, ["1", "3"]), {"1": 0.5, "3": 0.5})(net, mv.tensor(content[None])).item()


def test_preserve_color_keeps_the_content_chroma(rng) -> None:
    net = tiny_net(dtype=np.float32)
    content = st.style_input(net, rng.uniform(0.2, 0.8, (16, 16, 3)))
    style = st.style_input(net, rng.uniform(0, 1, (12, 12, 3)))
    result = st.style_transfer(net, content, style, preserve_color=True, steps=10, progress=False, init="noise")
    yiq_content = st.rgb_to_yiq(st.to_pixels(net, content))
    yiq_result = st.rgb_to_yiq(st.to_pixels(net, result.x))
    np.testing.assert_allclose(yiq_result[1:], yiq_content[1:], atol=1e-5)    # I, Q: the content's colours
    assert np.abs(yiq_result[0] - yiq_content[0]).max() > 1e-3              # Y: changed by the transfer
    np.testing.assert_allclose(st.yiq_to_rgb(st.rgb_to_yiq(content)), content, atol=1e-6)


def test_default_layers_and_images() -> None:
    lite0 = mv.models.build("efficientnet_lite0")
    assert st.layer_weights(lite0, None, "t") == {name: 0.2 for name in lite0.style_layers}
    vgg = mv.models.build("vgg19")
    assert vgg.content_layer == "features.22"
    x = st.style_input(lite0, mv.data.style_image("stripes", 64), size=32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    full = st.style_input(lite0, mv.data.style_image("stripes", 64))             # no resize: exact pixels
    np.testing.assert_allclose(st.to_pixels(lite0, full), mv.data.style_image("stripes", 64).transpose(2, 0, 1) / 255,
                               atol=1e-6)


def test_bad_input(rng) -> None:
    net = tiny_net(dtype=np.float32)
    img = rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="texture_synthesis: .*nope"):
        st.texture_synthesis(net, img, layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="texture_synthesis: the weight of layer '1' must be >= 0"):
        st.texture_synthesis(net, img, layers={"1": -1.0}, progress=False)
    with pytest.raises(ValueError, match="all zero"):
        st.texture_synthesis(net, img, layers={"1": 0.0}, progress=False)
    with pytest.raises(TypeError, match="layers must be a non-empty list"):
        st.texture_synthesis(net, img, layers="1", progress=False)
    with pytest.raises(ValueError, match="style_transfer: style_weight must be >= 0"):
        st.style_transfer(net, img, img, style_weight=-1.0, progress=False)
    with pytest.raises(TypeError, match="texture_synthesis: seed must be an int or None, got 'a'"):
        st.texture_synthesis(net, img, steps=1, seed="a", progress=False)
    with pytest.raises(ValueError, match="style_transfer: seed must be an int >= 0 or None, got -1"):
        st.style_transfer(net, img, img, init="noise", steps=1, seed=-1, progress=False)
    with pytest.raises(ValueError, match="style_transfer: init must be one of"):
        st.style_transfer(net, img, img, init="zeros", progress=False)
    with pytest.raises(ValueError, match="style_transfer: optimizer must be one of"):
        st.style_transfer(net, img, img, optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="style_transfer: give one content and one style image"):
        st.style_transfer(net, img[None].repeat(2, 0), img, progress=False)
    with pytest.raises(ValueError, match="texture_synthesis: size must be >= 8"):
        st.texture_synthesis(net, img, size=4, progress=False)
    with pytest.raises(ValueError, match="has no default style_layers"):
        st.texture_synthesis(mv.nn.Sequential(mv.nn.Conv2d(3, 2, 1)), img, progress=False)
    with pytest.raises(ValueError, match="style_input: image must be"):
        st.style_input(net, np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="all zeros"):
        st.style_loss({"a": mv.tensor(np.ones((1, 2, 2, 2)))}, {"a": np.zeros((2, 2))}, {"a": 1.0})


def test_style_and_content_loss_take_targets_as_arrays_or_tensors_shared_or_per_image(rng) -> None:
    f = rng.standard_normal((2, 3, 4, 5))
    gram, code = rng.standard_normal((3, 3)), rng.standard_normal((3, 4, 5))
    ft, gt, ct = torch.tensor(f), torch.tensor(gram), torch.tensor(code)
    g = ft.reshape(2, 3, -1) @ ft.reshape(2, 3, -1).transpose(1, 2) / 20
    want_style = (0.5 * ((g - gt) ** 2).sum(dim=(1, 2)) / (gt * gt).sum()).numpy()
    want_content = (((ft - ct) ** 2).sum(dim=(1, 2, 3)) / (ct * ct).sum()).numpy()
    for target in (gram, gram[None], mv.tensor(gram)):
        got = st.style_loss({"a": mv.tensor(f)}, {"a": target}, {"a": 0.5, "b": 0.0})  # "b": weight 0, skipped
        np.testing.assert_allclose(got.numpy(), want_style, rtol=1e-12)
    for target in (code, code[None], mv.tensor(code)):
        np.testing.assert_allclose(st.content_loss(mv.tensor(f), target).numpy(), want_content, rtol=1e-12)


F4 = np.ones((2, 3, 4, 4))
G3 = np.eye(3)


@pytest.mark.parametrize("call,error,match", [
    (lambda: st.style_loss([F4], {"a": G3}, {"a": 1.0}), TypeError,
     r"style_loss: features must be a dict \{layer: Tensor \(N, C, H, W\)\}, got list"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, G3, {"a": 1.0}), TypeError,
     r"style_loss: targets must be a dict \{layer: Gram matrix array \(C, C\) or \(N, C, C\)\}, got ndarray"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": G3}, ["a"]), TypeError,
     r"style_loss: weights must be a dict \{layer: weight \(float\)\}, got list"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": G3}, {"a": "1"}), TypeError,
     r"style_loss: weights\['a'\] must be a number, got str"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": G3}, {"a": 0.0}), ValueError,
     "style_loss: weights must give at least one layer a nonzero weight"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": G3}, {"b": 1.0}), ValueError,
     r"style_loss: weights name layer 'b', which features lacks \(it has \['a'\]\)"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"c": G3}, {"a": 1.0}), ValueError,
     r"style_loss: weights name layer 'a', which targets lacks \(it has \['c'\]\)"),
    (lambda: st.style_loss({"a": [1.0]}, {"a": G3}, {"a": 1.0}), TypeError,
     r"style_loss: features\['a'\] must be a Tensor or an array, got list"),
    (lambda: st.style_loss({"a": mv.tensor(F4[0])}, {"a": G3}, {"a": 1.0}), ValueError,
     r"style_loss: features\['a'\] must be 4-D \(N, C, H, W\), got shape \(3, 4, 4\)"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": G3.tolist()}, {"a": 1.0}), TypeError,
     r"style_loss: targets\['a'\] must be an array or Tensor \(C, C\) or \(N, C, C\), got list"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": np.eye(3, dtype=int)}, {"a": 1.0}), TypeError,
     r"style_loss: targets\['a'\] must be a float array, got dtype int"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": np.eye(4)}, {"a": 1.0}), ValueError,
     r"style_loss: targets\['a'\] must be \(C, C\) or \(N, C, C\) with \(3, 3\) as in its features, for a "
     r"batch of 2; got shape \(4, 4\)"),
    (lambda: st.style_loss({"a": mv.tensor(F4)}, {"a": np.ones((3, 3, 3))}, {"a": 1.0}), ValueError,
     r"style_loss: targets\['a'\] .* got shape \(3, 3, 3\)"),
    (lambda: st.content_loss(F4.tolist(), F4[0]), TypeError,
     "content_loss: feature must be a Tensor or an array, got list"),
    (lambda: st.content_loss(mv.tensor(F4), None), TypeError,
     r"content_loss: target must be an array or Tensor \(C, H, W\) or \(N, C, H, W\), got NoneType"),
    (lambda: st.content_loss(mv.tensor(F4), {"a": F4}), TypeError, "content_loss: target must be an array .*got dict"),
    (lambda: st.content_loss(mv.tensor(F4), F4[0, :2]), ValueError,
     r"content_loss: target must be \(C, H, W\) or \(N, C, H, W\) with \(3, 4, 4\) as in its features, for a "
     r"batch of 2; got shape \(2, 4, 4\)"),
])
def test_the_losses_refuse_bad_arguments_by_name(call, error, match) -> None:
    """A list or an array where a dict belongs, or a list where an array does, once gave a bare AttributeError."""
    with pytest.raises(error, match=match):
        call()


def flat_net() -> mv.nn.Sequential:
    """tiny_net with a Flatten ('4') and a Linear ('5') on top: layers that give no (N, C, H, W) maps."""
    net = tiny_net(dtype=np.float32)
    top = mv.nn.Sequential(*[net[i] for i in range(len(net))], mv.nn.Flatten(), mv.nn.Linear(8 * 4 * 4, 3))
    top.in_channels, top.mean, top.std = net.in_channels, net.mean, net.std
    return top.eval()


@pytest.mark.parametrize("call,match", [
    (lambda net, img: st.style_transfer(net, img, img, content_layer="4", style_layers=["1"], steps=1,
                                        progress=False), "style_transfer: content_layer '4' must give feature maps"),
    (lambda net, img: st.style_transfer(net, img, img, content_layer="5", style_layers=["1"], steps=1,
                                        progress=False), "style_transfer: content_layer '5' must give feature maps"),
    (lambda net, img: st.style_transfer(net, img, img, content_layer="3", style_layers=["5"], steps=1,
                                        progress=False), "style_transfer: style layer '5' must give feature maps"),
    (lambda net, img: st.texture_synthesis(net, img, layers=["4"], steps=1, progress=False),
     "texture_synthesis: style layer '4' must give feature maps"),
])
def test_layers_without_feature_maps_are_refused_by_name(rng, call, match) -> None:
    """A Linear or Flatten content layer once gave NumPy's AxisError (the content loss sums over
    (C, H, W)); a style layer, gram_matrix's shape error without the method's name."""
    img = rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=match + r" \(N, C, H, W\), got shape \(1, \d+\); choose a convolutional"):
        call(flat_net(), img)
