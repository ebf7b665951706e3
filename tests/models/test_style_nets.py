"""Style networks (minivis/models/style_nets.py) and feed-forward stylisation
(minivis/vis/synthesis/fast_style.py): conditional instance norm against plain instance norm and
PyTorch, style mixtures, the transformation network against a PyTorch twin, the shipped weights,
and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF  # noqa: N812

import minivis as mv
from minivis.models.style_nets import ConditionalInstanceNorm2d, RandomMultiScale, TransformNet


def cin(rng, styles=3, channels=4) -> ConditionalInstanceNorm2d:
    layer = ConditionalInstanceNorm2d(channels, styles).double()
    layer.load_state_dict({"weight": rng.uniform(0.5, 2, (styles, channels)),
                           "bias": rng.standard_normal((styles, channels))})
    return layer


def test_one_hot_style_equals_instance_norm_with_that_styles_parameters(rng) -> None:
    layer = cin(rng)
    x = rng.standard_normal((2, 4, 5, 6))
    for s in range(3):
        expected = mv.F.instance_norm(mv.tensor(x), layer.weight.data[s], layer.bias.data[s]).numpy()
        one_hot = np.eye(3)[s]
        np.testing.assert_allclose(layer(mv.tensor(x), s).numpy(), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layer(mv.tensor(x), one_hot).numpy(), expected, rtol=1e-12, atol=1e-12)
        reference = TF.instance_norm(torch.tensor(x), weight=torch.tensor(layer.weight.data[s]),
                                     bias=torch.tensor(layer.bias.data[s]), eps=1e-5)
        np.testing.assert_allclose(expected, reference.numpy(), rtol=1e-10, atol=1e-12)


def test_mixture_blends_the_parameters_and_its_gradient_reaches_both_rows(rng) -> None:
    layer = cin(rng)
    x = rng.standard_normal((1, 4, 4, 4))
    mix = np.array([0.25, 0.0, 0.75])
    gamma = mix @ layer.weight.data
    beta = mix @ layer.bias.data
    expected = mv.F.instance_norm(mv.tensor(x), gamma, beta).numpy()
    out = layer(mv.tensor(x), mix)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert np.abs(layer.bias.grad[[0, 2]]).min() > 0 and not layer.bias.grad[1].any()


def tiny_transform(rng, upsample: str, styles: int = 2, bounded: bool = False) -> TransformNet:
    net = TransformNet(channels=2, blocks=1, num_styles=styles, upsample=upsample, bounded=bounded).double()
    assert not net.out.weight.data.any() and net.residual  # starts as the identity
    state = {k: rng.standard_normal(v.shape) * 0.3 + (1.0 if k.endswith("norm.weight") else 0.0)
             for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    return net


def torch_transform(state: dict, x: torch.Tensor, style: int, upsample: str, blocks: int = 1,
                    bounded: bool = False) -> torch.Tensor:
    """The same network written directly in PyTorch from the state dict (instance norm per style row)."""
    t = {k: torch.tensor(v) for k, v in state.items()}

    def reflect(h, p):
        return TF.pad(h, (p, p, p, p), mode="reflect")

    def cnr(h, prefix, stride=1, relu=True):
        w = t[f"{prefix}.conv.weight"]
        h = TF.conv2d(reflect(h, w.shape[-1] // 2), w, t[f"{prefix}.conv.bias"], stride=stride)
        h = TF.instance_norm(h, weight=t[f"{prefix}.norm.weight"][style], bias=t[f"{prefix}.norm.bias"][style])
        return TF.relu(h) if relu else h

    def up(h, prefix):
        if upsample == "transpose":
            h = TF.conv_transpose2d(h, t[f"{prefix}.conv.weight"], t[f"{prefix}.conv.bias"], stride=2, padding=1,
                                    output_padding=1)
        else:
            h = TF.conv2d(reflect(TF.interpolate(h, scale_factor=2, mode="nearest"), 1), t[f"{prefix}.conv.weight"],
                          t[f"{prefix}.conv.bias"])
        return TF.relu(TF.instance_norm(h, weight=t[f"{prefix}.norm.weight"][style],
                                        bias=t[f"{prefix}.norm.bias"][style]))

    h = cnr(cnr(cnr(x, "down1"), "down2", 2), "down3", 2)
    for i in range(blocks):
        h = h + cnr(cnr(h, f"res{i}.a"), f"res{i}.b", relu=False)
    h = up(up(h, "up1"), "up2")
    f = TF.conv2d(reflect(h, 4), t["out.weight"], t["out.bias"])
    if bounded:
        return torch.sigmoid(torch.logit(x, eps=1e-3) + f)
    return x + f


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_transform_net_matches_pytorch(upsample, bounded, rng) -> None:
    net = tiny_transform(rng, upsample, bounded=bounded)
    x = rng.uniform(0, 1, (2, 3, 12, 16))
    x[0, 0, 0, :3] = (0.0, 1.0, 5e-4)  # inside the clipped margin of the logit
    for style in (0, 1):
        xm = mv.tensor(x, requires_grad=True)
        ours = net(xm, style=style)
        xt = torch.tensor(x, requires_grad=True)
        theirs = torch_transform(net.state_dict(), xt, style, upsample, bounded=bounded)
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-9, atol=1e-11)
        g = rng.standard_normal(x.shape)
        ours.backward(g)
        theirs.backward(torch.tensor(g))
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_bounded_output_starts_as_the_identity_and_stays_in_the_unit_interval(rng) -> None:
    net = TransformNet(channels=2, blocks=1, bounded=True).double()
    x = rng.uniform(0.01, 0.99, (1, 3, 12, 12))
    net.out.bias.data = np.zeros(3)  # the last layer's weights start at zero; with a zero bias it is the identity
    np.testing.assert_allclose(net(mv.tensor(x)).numpy(), x, rtol=1e-12)
    net.out.bias.data = np.array([50.0, -50.0, 0.0])  # a last layer pushing far outside [0, 1]
    y = net(mv.tensor(x)).numpy()
    assert (y >= 0).all() and (y <= 1).all() and y[:, 0].min() > 0.99 and y[:, 1].max() < 0.01
    with pytest.raises(ValueError, match="bounded=True needs residual=True"):
        TransformNet(residual=False, bounded=True)


def test_random_multiscale_is_seeded_and_multiscale(rng) -> None:
    a, b = RandomMultiScale(sizes=(3, 7), channels=4), RandomMultiScale(sizes=(3, 7), channels=4)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(a(mv.tensor(x)).numpy(), b(mv.tensor(x)).numpy())
    assert a(mv.tensor(x)).shape == (1, 8, 9, 9) and a.style_layers == ("scales.0.1", "scales.1.1")
    assert a.get_submodule("scales.1.0").weight.shape == (4, 3, 7, 7)


def test_interpolation_at_0_and_1_gives_the_two_styles(rng) -> None:
    net = tiny_transform(rng, "transpose", styles=3).float()
    net.styles = ["a", "b", "c"]
    photo = rng.integers(0, 256, (14, 17, 3)).astype(np.uint8)
    strip = mv.vis.interpolate_styles(net, photo, "a", "c", alphas=[0.0, 0.5, 1.0])
    np.testing.assert_allclose(strip[0], mv.vis.stylize(net, photo, "a"), atol=1e-6)
    np.testing.assert_allclose(strip[2], mv.vis.stylize(net, photo, 2), atol=1e-6)
    assert strip[1].shape == (12, 16, 3)  # cropped to multiples of 4
    assert np.abs(strip[1] - strip[0]).max() > 1e-3


def test_shipped_weights_load_and_stylise() -> None:
    shipped = mv.models.shipped_styles()
    assert len(shipped) >= 2, f"at least two single-style networks ship, found {shipped}"
    photo = mv.data.photo("chelsea")[:64, :96]
    for style in shipped:
        net = mv.models.load("fast_style", style=style)
        out = mv.vis.stylize(net, photo)
        assert out.shape == (64, 96, 3) and np.isfinite(out).all() and out.std() > 0.02
    multi = mv.models.load("fast_style_multi")
    assert multi.num_styles >= 4 and len(multi.styles) == multi.num_styles
    outs = [mv.vis.stylize(multi, photo, s) for s in multi.styles]
    differences = [np.abs(a - b).mean() for i, a in enumerate(outs) for b in outs[i + 1:]]
    assert min(differences) > 0.01  # every pair of styles renders differently


def test_bad_input(rng) -> None:
    net = tiny_transform(rng, "transpose").float()
    photo = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"stylize: style index 2 is out of range for a network with 2 style\(s\)"):
        mv.vis.stylize(net, photo, 2)
    with pytest.raises(ValueError, match="stylize: unknown style 'zebra'"):
        mv.vis.stylize(net, photo, "zebra")
    with pytest.raises(ValueError, match="stylize: photo must be an HxWx3 image"):
        mv.vis.stylize(net, np.zeros((16, 16)))
    with pytest.raises(TypeError, match="stylize: net must be a TransformNet"):
        mv.vis.stylize(RandomMultiScale(channels=2), photo)
    with pytest.raises(ValueError, match=r"interpolate_styles: alpha must be in \[0.0, 1.0\], got 1.5"):
        mv.vis.interpolate_styles(net, photo, 0, 1, alphas=[1.5])
    with pytest.raises(ValueError, match="style indices must be in"):
        net(mv.tensor(np.zeros((1, 3, 8, 8), np.float32)), style=5)
    with pytest.raises(ValueError, match="mixture weights must be >= 0 and sum to 1"):
        net(mv.tensor(np.zeros((1, 3, 8, 8), np.float32)), style=np.array([0.7, 0.7]))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(mv.tensor(np.zeros((1, 3, 10, 8), np.float32)))
    with pytest.raises(ValueError, match="at least 8"):
        net(mv.tensor(np.zeros((1, 3, 4, 8), np.float32)))
    with pytest.raises(ValueError, match="upsample must be one of"):
        TransformNet(upsample="bilinear")
    with pytest.raises(ValueError, match="no fast_style network ships for style 'zebra'"):
        mv.models.load("fast_style", style="zebra")
