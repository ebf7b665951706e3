"""LRP on EfficientNet-Lite0 (random weights, batch-norm statistics away from the identity) against
Zennit on identical weights in float64, 64 px: the residual sums by the norm rule (Zennit's ``Sum``
layer in the twin), batch norm canonised on both sides (Zennit: ``NamedMergeBatchNorm`` for every
conv/BN pair, its eps zeroed as in test_lrp.py's canonisation test), the global average pool a
module so that Zennit gives it the norm rule as minivis does."""

import numpy as np
import pytest

import minivis as mv

torch = pytest.importorskip("torch")
pytest.importorskip("zennit", reason="LRP parity needs zennit (test extra)")


def _lite0_twin(model):
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.layer import Sum

    from tests.torch_twins import TorchEfficientNetLite, twin_from_state

    twin = twin_from_state(TorchEfficientNetLite(), model.state_dict(), torch.float64)
    relu6 = torch.nn.functional.relu6
    pairs = [(["_conv_stem"], "_bn0"), (["_conv_head"], "_bn1")]
    for name, module in twin.named_modules():
        if hasattr(module, "skip") and hasattr(module, "_project_conv"):
            module.sum = Sum()

            def forward(x, m=module):
                h = relu6(m._bn0(m._expand_conv(x))) if m.has_expand else x
                h = m._bn2(m._project_conv(relu6(m._bn1(m._depthwise_conv(h)))))
                return m.sum(torch.stack([h, x], dim=-1)) if m.skip else h

            module.forward = forward
            for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
                if hasattr(module, conv):
                    pairs.append(([f"{name}.{conv}"], f"{name}.{bn}"))
    twin.pool = torch.nn.AdaptiveAvgPool2d(1)
    twin.forward = lambda x: twin._fc(twin.pool(relu6(twin._bn1(twin._conv_head(twin._blocks(
        relu6(twin._bn0(twin._conv_stem(x)))))))).flatten(1))
    return twin, [NamedMergeBatchNorm(pairs)]


def _zennit(twin, canonizers, composite, x, target):
    from zennit.attribution import Gradient

    norms = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    composite.canonizers = canonizers
    with Gradient(model=twin, composite=composite) as attributor:
        eps = [m.eps for m in norms]
        for m in norms:  # Zennit's canonised BN keeps x / sqrt(1 + eps): zero it, both explain one function
            m.eps = 0.0
        out, relevance = attributor(torch.from_numpy(x), lambda o: o * torch.eye(o.shape[1], dtype=o.dtype)[[target]])
        for m, e in zip(norms, eps, strict=True):
            m.eps = e
    return relevance.numpy(), out.detach().numpy()


@pytest.fixture(scope="module")
def lite0():
    # one torch thread: on a loaded 2-core machine, torch's float64 depthwise convs with the default
    # OpenMP pool took 46 s a forward at 64 px instead of 0.4 s (threads spinning against other jobs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mv.nn.init.seed(1)
    model = mv.models.build("efficientnet_lite0").eval()
    rng = np.random.default_rng(1)
    for m in model.modules():  # statistics away from the identity, so that canonisation matters
        if isinstance(m, mv.nn.BatchNorm2d):
            m.register_buffer("running_mean", rng.uniform(-0.1, 0.1, m.num_features))
            m.register_buffer("running_var", rng.uniform(0.5, 1.5, m.num_features))
    model = model.double()
    x = model.preprocess((rng.uniform(0, 1, (1, 64, 64, 3)) * 255).astype(np.uint8)).astype(np.float64)
    yield model, x
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["epsilon_gamma_box", "epsilon_plus"])
def test_lite0_lrp_matches_zennit_float64(lite0, name):
    from zennit import composites

    model, x = lite0
    twin, canonizers = _lite0_twin(model)
    low, high = (np.array(b, np.float64).reshape(1, 3, 1, 1) for b in (
        [-m / s for m, s in zip(model.mean, model.std, strict=True)],
        [(1 - m) / s for m, s in zip(model.mean, model.std, strict=True)]))
    composite = (composites.EpsilonGammaBox(low=torch.from_numpy(low), high=torch.from_numpy(high))
                 if name == "epsilon_gamma_box" else composites.EpsilonPlus())
    want, logits = _zennit(twin, canonizers, composite, x, 3)
    with mv.no_grad():
        np.testing.assert_allclose(model(mv.tensor(x)).numpy(), logits, rtol=1e-10, atol=1e-12)  # same function
    got = mv.vis.lrp(model, x, 3, composite=name)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * np.abs(want).max())
