"""Objectives (minivis/vis/objectives.py): gradients against float64 finite differences on a tiny
smooth model, the DeepDream identity, parity with PyTorch on a FashionCNN twin, early stopping,
and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.vis.synthesis import objectives as ob
from tests.gradcheck import check_gradients
from tests.torch_twins import TorchFashionCNN, twin_from_state


def tiny_model() -> mv.nn.Module:
    """Smooth (tanh) so that central differences hold to rtol 1e-7: (N, 2, 6, 6) -> 5 logits.

    Layers: "0" conv 2->3, "1" tanh, "2" conv 3->4 stride 2 (-> 3x3), "3" tanh, "4" flatten, "5" linear.
    """
    mv.nn.init.seed(3)
    net = mv.nn.Sequential(mv.nn.Conv2d(2, 3, 3, padding=1), mv.nn.Tanh(),
                           mv.nn.Conv2d(3, 4, 3, stride=2, padding=1), mv.nn.Tanh(),
                           mv.nn.Flatten(), mv.nn.Linear(36, 5))
    return net.double().eval().requires_grad_(False)


OBJECTIVES = {
    "class_logit": ob.class_logit(2),
    "unit": ob.unit("2", 1, 1, 2),
    "unit_centre": ob.unit("3", 3),
    "unit_linear": ob.unit("5", 4),
    "channel": ob.channel("1", 2),
    "layer_l2": ob.layer_l2("3"),
    "weighted_sum": ob.channel("1", 0) - 0.5 * ob.class_logit(1) + 2 * ob.layer_l2("3"),
    "sum_builtin": sum([ob.unit("2", 0, 0, 0), ob.channel("3", 1), ob.class_logit(0)]),
    "negated": -ob.layer_l2("1"),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize("batch", [1, 2])
def test_objective_gradient_matches_finite_differences(name: str, batch: int, rng: np.random.Generator) -> None:
    model = tiny_model()
    objective = OBJECTIVES[name]
    x = rng.standard_normal((batch, 2, 6, 6))
    check_gradients(lambda t: objective(model, t), [x], rng=rng)


def _values(model, x):
    """Every objective above, written out by hand from a full forward pass."""
    acts = {}
    with mv.nn.capture(model, ["1", "2", "3", "5"]) as captured:
        logits = model(mv.tensor(x))
        acts = {k: v.numpy() for k, v in captured.items()}
    logits = logits.numpy()
    return {
        "class_logit": logits[:, 2],
        "unit": acts["2"][:, 1, 1, 2],
        "unit_centre": acts["3"][:, 3, 1, 1],
        "unit_linear": acts["5"][:, 4],
        "channel": acts["1"][:, 2].mean(axis=(1, 2)),
        "layer_l2": 0.5 * (acts["3"] ** 2).sum(axis=(1, 2, 3)),
        "weighted_sum": acts["1"][:, 0].mean(axis=(1, 2)) - 0.5 * logits[:, 1] + (acts["3"] ** 2).sum(axis=(1, 2, 3)),
        "sum_builtin": acts["2"][:, 0, 0, 0] + acts["3"][:, 1].mean(axis=(1, 2)) + logits[:, 0],
        "negated": -0.5 * (acts["1"] ** 2).sum(axis=(1, 2, 3)),
    }


def test_objective_values_match_their_definitions(rng: np.random.Generator) -> None:
    model = tiny_model()
    x = rng.standard_normal((3, 2, 6, 6))
    expected = _values(model, x)
    with mv.no_grad():
        for name, objective in OBJECTIVES.items():
            np.testing.assert_allclose(objective(model, mv.tensor(x)).numpy(), expected[name], rtol=1e-12,
                                       err_msg=name)


def test_layer_l2_sends_the_activation_itself_back(rng: np.random.Generator) -> None:
    """DeepDream's trick: d(1/2 ||a||^2)/da = a, so the backward starts from the activation."""
    model = tiny_model()
    x = mv.tensor(rng.standard_normal((2, 2, 6, 6)), requires_grad=True)
    with mv.nn.capture(model, "2", retain_grad=True) as acts:
        ob.layer_l2("2")(model, x).sum().backward()
    np.testing.assert_allclose(acts["2"].grad, acts["2"].data, rtol=1e-14)


def test_forward_stops_after_the_deepest_layer_needed(rng: np.random.Generator) -> None:
    model = tiny_model()
    calls = []
    handle = model.get_submodule("5").register_forward_hook(lambda m, i, o: calls.append(1))
    x = mv.tensor(rng.standard_normal((1, 2, 6, 6)))
    ob.channel("1", 0)(model, x)
    assert calls == []  # the linear layer never ran
    ob.channel("1", 0)(model, x) + ob.class_logit(0)(model, x)
    (ob.channel("1", 0) + ob.class_logit(0))(model, x)
    assert len(calls) == 2
    handle.remove()
    assert not any(m._forward_hooks for m in model.modules())  # the objective removed its own hooks


@pytest.mark.parametrize("objective", [ob.class_logit(7), ob.unit("features.3", 2, 5, 9), ob.channel("features.4", 1),
                                       ob.layer_l2("features.7"), ob.unit("classifier.1", 5)],
                         ids=["class_logit", "unit", "channel", "layer_l2", "unit_fc"])
def test_objective_gradients_match_pytorch_on_fashion_cnn(objective: ob.Objective, rng: np.random.Generator) -> None:
    """The same objective, written with torch hooks on the twin network, gives the same input gradient."""
    mv.nn.init.seed(5)
    model = mv.models.FashionCNN(widths=(4, 6), hidden=12).double().eval().requires_grad_(False)
    twin = twin_from_state(TorchFashionCNN(widths=(4, 6), hidden=12), model.state_dict(), torch.float64)
    x = rng.standard_normal((2, 1, 28, 28))

    xm = mv.tensor(x, requires_grad=True)
    value = objective(model, xm)
    upstream = rng.standard_normal(2)
    value.backward(upstream)

    xt = torch.tensor(x, requires_grad=True)
    acts = {}
    handles = [twin.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: acts.__setitem__(name, o))
               for name in ("features.3", "features.4", "features.7", "classifier.1")]
    logits = twin(xt)
    for h in handles:
        h.remove()
    reference = {
        "class_logit(7)": logits[:, 7],
        "unit('features.3', 2)": acts["features.3"][:, 2, 5, 9],
        "channel('features.4', 1)": acts["features.4"][:, 1].mean(dim=(1, 2)),
        "layer_l2('features.7')": 0.5 * (acts["features.7"] ** 2).sum(dim=(1, 2, 3)),
        "unit('classifier.1', 5)": acts["classifier.1"][:, 5],
    }[objective.name]
    reference.backward(torch.tensor(upstream))
    np.testing.assert_allclose(value.numpy(), reference.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- bad input
def test_unknown_layer_is_named(rng: np.random.Generator) -> None:
    x = mv.tensor(rng.standard_normal((1, 2, 6, 6)))
    with pytest.raises(ValueError, match="'conv9' is not a layer"):
        ob.channel("conv9", 0)(tiny_model(), x)


def test_a_layer_that_never_runs_is_reported(rng: np.random.Generator) -> None:
    class WithSpare(mv.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.spare = tiny_model(), mv.nn.Tanh()

        def forward(self, x):  # never calls self.spare
            return self.net(x)

    model = WithSpare()
    with pytest.raises(ValueError, match=r"layer\(s\) \['spare'\] never ran"):
        ob.layer_l2("spare")(model, mv.tensor(rng.standard_normal((1, 2, 6, 6))))


@pytest.mark.parametrize("objective, match", [
    (ob.class_logit(5), r"class 5 is out of range for logits with 5 \(0..4\)"),
    (ob.class_logit(-1), "class -1 is out of range"),
    (ob.unit("2", 4), "channel 4 is out of range for layer '2' with 4"),
    (ob.unit("2", 0, 3, 0), "y 3 is out of range"),
    (ob.unit("2", 0, 0, -1), "x -1 is out of range"),
    (ob.channel("1", 3), "channel 3 is out of range"),
])
def test_indices_out_of_range(objective: ob.Objective, match: str, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match=match):
        objective(tiny_model(), mv.tensor(rng.standard_normal((1, 2, 6, 6))))


@pytest.mark.parametrize("make, match", [
    (lambda: ob.class_logit(1.5)(tiny_model(), mv.tensor(np.ones((1, 2, 6, 6)))), "class must be an int"),
    (lambda: ob.unit("2", True)(tiny_model(), mv.tensor(np.ones((1, 2, 6, 6)))), "channel must be an int"),
    (lambda: ob.class_logit(0) * "2", "can only be scaled by a number"),
    (lambda: ob.class_logit(0) + 1, "expected an Objective, got int"),
    (lambda: ob.as_objective(True), "expected a class index or an Objective"),
    (lambda: ob.as_objective("dog"), "expected a class index or an Objective"),
])
def test_bad_types(make, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        make()


def test_as_objective() -> None:
    assert ob.as_objective(np.int64(3)).name == "class_logit(3)"
    objective = ob.layer_l2("1")
    assert ob.as_objective(objective) is objective
