"""LRP (minivis/vis/attribution/lrp.py, minivis/functional/lrp.py): conservation and the LRP-0 =
gradient x input identity checked directly; every rule and composite against Zennit on identical
weights in float64 (a small VGG-style net, fashion_cnn, a VGG16 twin); batch-norm canonisation
against Zennit's canonizer, and where Zennit departs from the papers (WSquare's bias, the
canonised batch norm's eps) the difference is tested explicitly."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.rules import LRPRule, LRPRules
from minivis.vis.attribution.lrp import COMPOSITES, Composite, canonized, lrp, lrp_composite

nn = mv.nn


def small_net(bias: bool = True, bn: bool = False) -> nn.Module:
    """conv-relu-conv-relu-maxpool-conv-relu-avgpool-flatten-linear-relu-linear, float64 (optionally with BN)."""
    layers = [nn.Conv2d(3, 6, 3, padding=1, bias=bias)] + ([nn.BatchNorm2d(6)] if bn else []) + [nn.ReLU(),
              nn.Conv2d(6, 8, 3, padding=1, bias=bias)] + ([nn.BatchNorm2d(8)] if bn else []) + [
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 12, bias=bias), nn.ReLU(), nn.Linear(12, 5, bias=bias)]
    net = nn.Sequential(*layers).double()
    rng = np.random.default_rng(7)
    for m in net.modules():  # biases of both signs, and BN statistics far from the identity
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight = nn.Parameter(rng.uniform(0.5, 1.5, c))
            m.bias = nn.Parameter(rng.uniform(-0.3, 0.3, c))
            m.register_buffer("running_mean", rng.uniform(-0.5, 0.5, c))
            m.register_buffer("running_var", rng.uniform(0.5, 2.0, c))
        elif bias and isinstance(m, nn.Conv2d | nn.Linear):
            m.bias = nn.Parameter(rng.uniform(-0.1, 0.1, m.bias.shape))
    return net.eval()


def as_torch(net: nn.Module):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    layers = []
    for m in net:
        if isinstance(m, nn.Conv2d):
            layers.append(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding,
                                     bias=m.bias is not None))
        elif isinstance(m, nn.BatchNorm2d):
            layers.append(tnn.BatchNorm2d(m.num_features, eps=m.eps))
        elif isinstance(m, nn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, nn.MaxPool2d):
            layers.append(tnn.MaxPool2d(2))
        elif isinstance(m, nn.AvgPool2d):
            layers.append(tnn.AvgPool2d(2))
        elif isinstance(m, nn.Flatten):
            layers.append(tnn.Flatten())
        elif isinstance(m, nn.Linear):
            layers.append(tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None))
    twin = tnn.Sequential(*layers).double()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    return twin.eval()


def zennit_relevance(twin, x: np.ndarray, target: int, composite) -> np.ndarray:
    """Zennit's relevance of the input, seeded with the target logit (one-hot times the output)."""
    torch = pytest.importorskip("torch")
    from zennit.attribution import Gradient

    def seed(out):
        onehot = torch.zeros_like(out)
        onehot[:, target] = 1
        return out * onehot

    with Gradient(model=twin, composite=composite) as attributor:
        _, relevance = attributor(torch.from_numpy(x), seed)
    return relevance.detach().numpy()


def zennit_single_rule(conv_rule, linear_rule, first_rule=None, first_types=None):
    """A Zennit composite with one rule for convs and one for linears (and the first layer's), its base layer map."""
    pytest.importorskip("zennit", reason="LRP parity needs zennit (test extra)")
    import torch
    from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite, layer_map_base
    from zennit.types import Convolution

    layer_map = layer_map_base() + [(Convolution, conv_rule), (torch.nn.Linear, linear_rule)]
    if first_rule is None:
        return LayerMapComposite(layer_map=layer_map)
    return SpecialFirstLayerMapComposite(layer_map=layer_map, first_map=[(first_types or Convolution, first_rule)])


# --------------------------------------------------------------------------- direct checks
def test_lrp0_is_gradient_times_input_and_conserves(rng):
    """On a bias-free ReLU network LRP-0 equals gradient x input (Ancona et al. 2018, Prop. 1) and
    its relevance sums to the logit exactly."""
    net = small_net(bias=False)
    x = rng.standard_normal((3, 3, 8, 8))
    relevance = lrp(net, x, 2, composite="zero")
    xt = mv.tensor(x, requires_grad=True)
    logits = net(xt)
    logits[:, 2].sum().backward()
    np.testing.assert_allclose(relevance, x * xt.grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), logits.numpy()[:, 2], rtol=1e-10)


@pytest.mark.parametrize("name", ["zero", "epsilon", "epsilon_plus", "epsilon_alpha2_beta1", "epsilon_plus_flat",
                                  "epsilon_alpha2_beta1_flat", "epsilon_gamma_box"])
def test_conserving_composites_sum_to_the_logit(rng, name):
    """Without biases every rule conserves relevance up to its stabiliser (and the epsilon rule's absorption):
    the input relevance sums to the explained logit."""
    net = small_net(bias=False)
    x = rng.standard_normal((2, 3, 8, 8))
    logits = net(mv.tensor(x)).numpy()
    target = np.array([0, 3])
    relevance = lrp(net, x, target, composite=name, epsilon=1e-9, low=-4.0, high=4.0)
    wanted = logits[np.arange(2), target]
    np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), wanted, rtol=1e-3)


def test_epsilon_absorbs_relevance():
    """A large epsilon takes relevance from weak outputs: the sum shrinks towards 0, never changes sign."""
    net = small_net(bias=False)
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8))
    total = lrp(net, x, 1, composite="epsilon", epsilon=1e-9).sum()
    for eps in (0.01, 0.1, 1.0):
        shrunk = lrp(net, x, 1, composite="epsilon", epsilon=eps).sum()
        assert abs(shrunk) < abs(total) and np.sign(shrunk) == np.sign(total)


def test_rule_reads_the_rule_in_force_at_backward_time(rng):
    """The rule is read when backward() runs, as for the ReLU rules: a graph built outside any rule block
    gives relevance when backpropagated under an LRPRules map, and the gradient outside it."""
    net = small_net(bias=False)
    x = rng.standard_normal((1, 3, 8, 8))
    xt = mv.tensor(x, requires_grad=True)
    score = net(xt)[:, 1]
    by_weight = {m.weight: (n, "zero") for n, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    with mv.backward_rule(LRPRules(by_weight, {"avg_pool2d": "zero"})):
        assert mv.current_rule() == "lrp"
        score.backward(score.data)
    assert mv.current_rule() == "gradient"
    np.testing.assert_allclose(xt.grad, lrp(net, x, 1, composite="zero"), rtol=1e-12)


def test_canonisation_keeps_the_output_and_restores_the_model(rng):
    net = small_net(bn=True)
    x = rng.standard_normal((2, 3, 8, 8))
    before = net(mv.tensor(x)).numpy()
    state = {k: np.array(v) for k, v in net.state_dict().items()}
    with canonized(net, x) as folded:
        assert folded == ["1", "4"]
        np.testing.assert_allclose(net(mv.tensor(x)).numpy(), before, rtol=1e-12, atol=1e-14)
        assert net[0].bias is not None and np.allclose(net[1].weight.data, 1)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_canonisation_refuses_a_variance_that_is_not_positive_and_restores_the_model(rng):
    net = small_net(bn=True)
    x = rng.standard_normal((2, 3, 8, 8))
    net[4].running_var[1] = -1.0  # a buffer changed by hand, past load_state_dict's check
    state = {k: np.array(v) for k, v in net.state_dict().items()}
    # the tracing pass that pairs each batch norm with its layer meets it first, and the op refuses it
    with pytest.raises(ValueError, match=r"batch_norm: running_var \+ eps must be positive in every channel, "
                                         r"got -1\.0 \+ 1e-05 in channel 1"):
        with canonized(net, x):
            pass
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_bad_input_is_refused(rng):
    net = small_net()
    x = rng.standard_normal((1, 3, 8, 8))
    with pytest.raises(ValueError, match="lrp: composite must be one of"):
        lrp(net, x, 0, composite="epsilon_minus")
    with pytest.raises(ValueError, match="unknown LRP rule 'gama'"):
        lrp(net, x, 0, composite="epsilon", rules={"0": "gama"})
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        lrp(net, x, 0, composite="epsilon", rules={"0": LRPRule("gamma", gamma=-0.5)})
    with pytest.raises(ValueError, match="lrp: gamma must be >= 0"):
        lrp(net, x, 0, composite="epsilon_gamma_box", gamma=-1.0, low=-1.0, high=1.0)
    with pytest.raises(ValueError, match="alpha - beta must be 1"):
        LRPRule("alpha_beta", alpha=3.0, beta=1.0)
    with pytest.raises(ValueError, match="needs low and high"):
        lrp(net, x, 0, composite="epsilon_gamma_box")  # a plain Sequential has no preprocessing to read bounds from
    with pytest.raises(ValueError, match="'7', which is not a Conv2d or Linear"):
        lrp(net, x, 0, rules={"7": "epsilon"}, composite="epsilon")
    with pytest.raises(ValueError, match="is a max_pool2d op, whose rules are"):
        LRPRules(by_kind={"max_pool2d": "gamma"})
    with pytest.raises(TypeError, match="takes .*'gamma'"):
        LRPRule("epsilon", gamma=0.1)
    # a layer without a rule: backward meets the hidden linear layer, which the map does not know
    xt = mv.tensor(x, requires_grad=True)
    score = net(xt)[:, 0]
    with pytest.raises(ValueError, match=r"a linear op with weight shape \(12, 32\) has no rule"), \
            mv.backward_rule(LRPRules({net[11].weight: ("11", "epsilon")})):
        score.backward(score.data)


# --------------------------------------------------------------------------- Zennit parity
RULES = {  # name: (minivis rule, Zennit rule factory)
    "zero": (LRPRule("zero"), lambda r: r.Epsilon(epsilon=0.0)),
    "epsilon": (LRPRule("epsilon", epsilon=1e-6), lambda r: r.Epsilon(epsilon=1e-6)),
    "epsilon_large": (LRPRule("epsilon", epsilon=0.25), lambda r: r.Epsilon(epsilon=0.25)),
    "gamma": (LRPRule("gamma", gamma=0.25), lambda r: r.Gamma(gamma=0.25)),
    "gamma_large": (LRPRule("gamma", gamma=2.0), lambda r: r.Gamma(gamma=2.0)),
    "zplus": (LRPRule("zplus"), lambda r: r.ZPlus()),
    "alpha_beta": (LRPRule("alpha_beta", alpha=2.0, beta=1.0), lambda r: r.AlphaBeta(alpha=2.0, beta=1.0)),
    "alpha_beta_1_0": (LRPRule("alpha_beta", alpha=1.0, beta=0.0), lambda r: r.AlphaBeta(alpha=1.0, beta=0.0)),
    "flat": (LRPRule("flat"), lambda r: r.Flat()),
    "wsquare": (LRPRule("wsquare"), lambda r: r.WSquare(zero_params="bias")),
}


@pytest.mark.parametrize("name", list(RULES))
def test_rules_match_zennit(rng, name):
    """Each rule on every conv and linear layer (pools by Norm, rectifiers Pass), float64, on signed inputs."""
    rules = pytest.importorskip("zennit.rules", reason="LRP parity needs zennit (test extra)")
    ours, theirs = RULES[name]
    net = small_net()
    x = rng.standard_normal((2, 3, 8, 8))
    for target in (1, 4):
        got = lrp(net, x, target, composite=Composite(ours, ours, kinds={"avg_pool2d": "norm"}))
        want = zennit_relevance(as_torch(net), x, target, zennit_single_rule(theirs(rules), theirs(rules)))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_zbox_first_layer_matches_zennit(rng):
    rules = pytest.importorskip("zennit.rules", reason="LRP parity needs zennit (test extra)")
    import torch

    low = -rng.uniform(1.5, 2.5, (3, 1, 1))
    high = rng.uniform(2.0, 3.0, (3, 1, 1))
    x = np.clip(rng.standard_normal((2, 3, 8, 8)), low, high)
    net = small_net()
    comp = Composite("epsilon", "epsilon", first=LRPRule("zbox", low=low, high=high))
    got = lrp(net, x, 3, composite=comp)
    theirs = zennit_single_rule(rules.Epsilon(), rules.Epsilon(),
                                rules.ZBox(low=torch.from_numpy(low[None]), high=torch.from_numpy(high[None])))
    want = zennit_relevance(as_torch(net), x, 3, theirs)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_wsquare_follows_the_paper_not_zennits_default_bias(rng):
    """Montavon et al. 2017's w^2 rule has no bias; Zennit's WSquare adds b^2 to the denominator unless
    zero_params='bias'. minivis follows the paper: equal to the latter, different from the default."""
    rules = pytest.importorskip("zennit.rules", reason="LRP parity needs zennit (test extra)")
    net = small_net()
    x = rng.standard_normal((1, 3, 8, 8))
    got = lrp(net, x, 2, composite=Composite("wsquare", "wsquare"))
    paper = zennit_relevance(as_torch(net), x, 2, zennit_single_rule(rules.WSquare(zero_params="bias"),
                                                                     rules.WSquare(zero_params="bias")))
    default = zennit_relevance(as_torch(net), x, 2, zennit_single_rule(rules.WSquare(), rules.WSquare()))
    np.testing.assert_allclose(got, paper, rtol=1e-10, atol=1e-12 * np.abs(paper).max())
    assert np.abs(got - default).max() > 1e-4 * np.abs(got).max()


def zennit_composite(name: str, low=None, high=None):
    composites = pytest.importorskip("zennit.composites", reason="LRP parity needs zennit (test extra)")
    import torch

    if name == "epsilon_gamma_box":
        return composites.EpsilonGammaBox(low=torch.as_tensor(low), high=torch.as_tensor(high))
    return {"epsilon_plus": composites.EpsilonPlus, "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1,
            "epsilon_plus_flat": composites.EpsilonPlusFlat,
            "epsilon_alpha2_beta1_flat": composites.EpsilonAlpha2Beta1Flat}[name]()


ZENNIT_COMPOSITES = [c for c in COMPOSITES if c not in ("zero", "epsilon")]


@pytest.mark.parametrize("name", ZENNIT_COMPOSITES)
def test_composites_match_zennit_on_a_small_net(rng, name):
    net = small_net()
    x = rng.standard_normal((2, 3, 8, 8))
    low, high = np.full((1, 3, 1, 1), -3.0), np.full((1, 3, 1, 1), 3.0)
    got = lrp(net, x, 0, composite=name, low=low[0], high=high[0])
    want = zennit_relevance(as_torch(net), x, 0, zennit_composite(name, low, high))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("name", ZENNIT_COMPOSITES)
def test_composites_match_zennit_on_fashion_cnn(name):
    pytest.importorskip("zennit", reason="LRP parity needs zennit (test extra)")
    from tests.torch_twins import TorchFashionCNN, twin_from_state

    model = mv.models.load("fashion_cnn").double()
    twin = twin_from_state(TorchFashionCNN(), model.state_dict(), dtype=__import__("torch").float64)
    images = (np.random.default_rng(5).uniform(0, 1, (2, 28, 28)) * 255).astype(np.uint8)
    x = model.preprocess(images).astype(np.float64)
    low, high = (0 - model.mean[0]) / model.std[0], (1 - model.mean[0]) / model.std[0]
    got = lrp(model, x, 3, composite=name)  # z^B's bounds read from the model's preprocessing
    want = zennit_relevance(twin, x, 3, zennit_composite(name, np.full((1, 1, 1, 1), low),
                                                         np.full((1, 1, 1, 1), high)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.slow
def test_epsilon_gamma_box_matches_zennit_on_vgg16():
    """VGG16 (random weights, torchvision's layout) at 32 px: the adaptive pool then copies one pixel
    into 7x7 bins, which the norm rule also passes through."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("zennit", reason="LRP parity needs zennit (test extra)")
    from tests.torch_twins import torchvision_vgg, twin_from_state

    model = mv.models.build("vgg16", num_classes=10).double()
    twin = twin_from_state(torchvision_vgg(mv.models.VGG_CONFIGS["vgg16"], 10), model.state_dict(), torch.float64)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32))
    low, high = (np.array(b, np.float64).reshape(1, 3, 1, 1) for b in (
        [-m / s for m, s in zip(model.mean, model.std, strict=True)],
        [(1 - m) / s for m, s in zip(model.mean, model.std, strict=True)]))
    x = np.clip(x, low, high)
    got = lrp(model, x, 4, composite="epsilon_gamma_box")
    want = zennit_relevance(twin, x, 4, zennit_composite("epsilon_gamma_box", low, high))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * np.abs(want).max())


def test_canonisation_matches_zennits_canonizer(rng):
    """minivis folds BN into the conv before it and makes the BN exactly the identity (eps 0). Zennit's
    MergeBatchNorm leaves the BN's eps, so its canonised net computes x / sqrt(1 + eps) at each BN: its
    output moves by about eps/2 per batch norm (tested), and with that eps zeroed the relevances agree."""
    torch = pytest.importorskip("torch")
    composites = pytest.importorskip("zennit.composites", reason="LRP parity needs zennit (test extra)")
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm

    net = small_net(bn=True)
    twin = as_torch(net)
    x = rng.standard_normal((2, 3, 8, 8))
    original = twin(torch.from_numpy(x)).detach().numpy()
    composite = composites.EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])
    norms = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with Gradient(model=twin, composite=composite) as attributor:
        zennit_canonised = twin(torch.from_numpy(x)).detach().numpy()
        for m in norms:
            m.eps = 0.0
        _, relevance = attributor(torch.from_numpy(x), lambda out: out * torch.eye(5, dtype=out.dtype)[[2, 2]])
        for m in norms:
            m.eps = 1e-5
    drift = np.abs(zennit_canonised - original).max() / np.abs(original).max()
    assert 1e-7 < drift < 1e-4  # Zennit's canonised net is not quite the original...
    with canonized(net, x):     # ...ours is, to rounding
        np.testing.assert_allclose(net(mv.tensor(x)).numpy(), original, rtol=1e-12, atol=1e-13)
    got = lrp(net, x, 2, composite="epsilon_plus")
    want = relevance.detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_lrp_composite_builds_rules():
    comp = lrp_composite("epsilon_gamma_box", gamma=0.5, low=-1.0, high=1.0)
    rules = comp.assign(small_net())
    assert [r.name for r in rules.values()] == ["zbox", "gamma", "gamma", "epsilon", "epsilon"]
    assert list(rules) == ["0", "2", "5", "9", "11"] and rules["2"].gamma == 0.5
