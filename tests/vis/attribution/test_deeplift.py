"""Gradient x input and DeepLIFT (rescale) against Captum on identical weights (float64), the
summation-to-delta property checked directly, and where Captum departs from the paper (max-pools)
the difference tested explicitly."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr", reason="DeepLIFT parity needs captum (test extra)")

nn = mv.nn


def smooth_net(activation: str = "relu") -> tuple[nn.Module, object]:
    """conv-act-conv-act-avgpool-flatten-linear-act-linear (no max-pool), and its torch twin."""
    act = {"relu": (nn.ReLU, torch.nn.ReLU), "tanh": (nn.Tanh, torch.nn.Tanh),
           "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid)}
    ours_act, torch_act = act[activation]
    mv.nn.init.seed(3)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), ours_act(), nn.Conv2d(4, 6, 3, padding=1), ours_act(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 10), ours_act(), nn.Linear(10, 5))
    net = net.double().eval()
    tnn = torch.nn
    twin = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), torch_act(), tnn.Conv2d(4, 6, 3, padding=1), torch_act(),
                          tnn.AvgPool2d(2), tnn.Flatten(), tnn.Linear(6 * 4 * 4, 10), torch_act(),
                          tnn.Linear(10, 5)).double().eval()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    return net, twin


def close(ours, ref, rtol=1e-10):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_gradient_x_input_matches_captum(rng):
    net, twin = smooth_net()
    x = rng.standard_normal((3, 2, 8, 8))
    ref = captum_attr.InputXGradient(twin).attribute(torch.tensor(x, requires_grad=True), target=[1, 4, 0])
    close(mv.vis.gradient_x_input(net, x, np.array([1, 4, 0])), ref)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("baseline", ["zeros", "image"])
def test_deeplift_rescale_matches_captum(rng, activation, baseline):
    net, twin = smooth_net(activation)
    x = rng.standard_normal((3, 2, 8, 8))
    base = np.zeros_like(x) if baseline == "zeros" else rng.standard_normal((3, 2, 8, 8)) * 0.3
    targets = [2, 0, 3]
    ref, ref_delta = captum_attr.DeepLift(twin).attribute(torch.tensor(x, requires_grad=True), target=targets,
                                                          baselines=torch.tensor(base), return_convergence_delta=True)
    ours, delta = mv.vis.deeplift(net, x, np.array(targets), baseline=base, return_delta=True)
    close(ours, ref)
    # summation-to-delta: the contributions add up to S(x) - S(x')
    assert np.abs(delta).max() < 1e-10 * np.abs(ours).sum()
    np.testing.assert_allclose(delta, ref_delta.detach().numpy(), atol=1e-10)


def test_deeplift_on_a_linear_model_is_the_exact_difference(rng):
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double().eval()
    x, base = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    c = mv.vis.deeplift(net, x, 1, baseline=base)
    w = net[1].weight.numpy()[1].reshape(3, 2, 2)
    np.testing.assert_allclose(c, (x - base) * w, rtol=1e-12)


def test_deeplift_through_max_pools_matches_captum(rng):
    """Max-pools: each half's multiplier goes to its own maximum in minivis; Captum's own max-pool rule
    gives the same contributions here (checked), and neither conserves the delta exactly through a
    max-pool whose winner differs between input and baseline (the error is reported, not zero)."""
    mv.nn.init.seed(4)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 4)).double().eval()
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(48, 4)).double().eval()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    x, base = rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((2, 1, 8, 8))
    ours, delta = mv.vis.deeplift(net, x, 1, baseline=base, return_delta=True)
    ref, ref_delta = captum_attr.DeepLift(twin).attribute(torch.tensor(x, requires_grad=True), target=1,
                                                          baselines=torch.tensor(base), return_convergence_delta=True)
    close(ours, ref)
    np.testing.assert_allclose(delta, ref_delta.detach().numpy(), atol=1e-10)


def test_bad_input(rng):
    net, _ = smooth_net()
    x = rng.standard_normal((1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"deeplift: baseline must be shaped like one image \(2, 8, 8\)"):
        mv.vis.deeplift(net, x, 0, baseline=np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="deeplift: target class 9 is out of range"):
        mv.vis.deeplift(net, x, 9)
    with pytest.raises(TypeError, match="gradient_x_input: x must be an array"):
        mv.vis.gradient_x_input(net, [1, 2], 0)
    with pytest.raises(ValueError, match="rescale rule: the batch must hold inputs then their references"):
        t = mv.tensor(rng.standard_normal((3, 4)), requires_grad=True)
        with mv.backward_rule("rescale"):
            mv.F.relu(t).sum().backward()
    t = mv.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    y = mv.F.relu(t).sum()  # recorded outside the rule: the rectifier kept its output only
    message = r"relu: the rescale rule needs the forward input.*backward_rule\('rescale'\)"
    with pytest.raises(RuntimeError, match=message), mv.backward_rule("rescale"):
        y.backward()
