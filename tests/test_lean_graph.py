"""``mv.lean_graph()``: a graph that keeps only what the gradient and the ReLU rules need.

Checked: the same gradients, bit for bit, under all three ReLU rules (and with trainable weights,
whose convolutions still keep their inputs); the intermediate arrays are gone after the forward
pass; LRP and DeepLIFT's rescale rule through a lean graph are refused with a clear error.
"""

import gc
import weakref
from contextlib import nullcontext

import numpy as np
import pytest

import minivis as mv
from minivis import nn
from minivis.rules import LRPRule, LRPRules


def net(rng, dtype=np.float64):
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3), nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5),
    )
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    bn = model[1]
    bn.running_mean[...] = rng.standard_normal(6) * 0.1
    bn.running_var[...] = rng.uniform(0.5, 2.0, 6)
    model.astype(dtype)
    return model.eval()


def input_gradient(model, x, rule, lean):
    xt = mv.tensor(x, requires_grad=True)
    with mv.lean_graph() if lean else nullcontext():
        logits = model(xt)
    with mv.backward_rule(rule):
        logits[:, 2].sum().backward()
    return xt.grad


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lean_graph_gives_the_same_input_gradient_bit_for_bit(rng, rule, dtype):
    model = net(rng, dtype)
    model.requires_grad_(False)
    x = rng.standard_normal((3, 3, 10, 10)).astype(dtype)
    x[0, 0, 0, :3] = 0.0  # exact zeros hit the rectifiers' ties
    np.testing.assert_array_equal(input_gradient(model, x, rule, True), input_gradient(model, x, rule, False))


def test_lean_graph_with_trainable_weights_keeps_what_the_weight_gradients_need(rng):
    model = net(rng)
    x = rng.standard_normal((2, 3, 10, 10))
    grads = []
    for lean in (True, False):
        model.zero_grad()
        input_gradient(model, x, "gradient", lean)
        grads.append([p.grad.copy() for p in model.parameters()])
    for lean_grad, full_grad in zip(*grads, strict=True):
        np.testing.assert_array_equal(lean_grad, full_grad)


def test_lean_graph_frees_the_intermediate_arrays(rng):
    model = net(rng)
    model.requires_grad_(False)
    x = mv.tensor(rng.standard_normal((2, 3, 10, 10)), requires_grad=True)
    probes = []
    with mv.lean_graph(), nn.capture(model, ["0", "2", "4", "5"]) as acts:
        logits = model(x)
        probes = [weakref.ref(a.data) for a in acts.values()]
    del acts
    gc.collect()
    assert all(p() is None for p in probes)  # conv, rectifier and pool outputs: none kept by the graph
    logits.sum().backward()
    assert x.grad.shape == x.shape


def test_a_full_graph_keeps_the_rectifier_outputs_lrp_reads(rng):
    model = net(rng)
    model.requires_grad_(False)
    x = mv.tensor(rng.standard_normal((2, 3, 10, 10)), requires_grad=True)
    with nn.capture(model, ["2"]) as acts:
        logits = model(x)
        probe = weakref.ref(acts["2"].data)
    del acts
    gc.collect()
    assert probe() is not None and logits.requires_grad  # the graph (held by logits) keeps it


def test_lrp_and_rescale_through_a_lean_graph_are_refused(rng):
    model = net(rng)
    model.requires_grad_(False)
    x = mv.tensor(rng.standard_normal((2, 3, 10, 10)), requires_grad=True)
    with mv.lean_graph():
        score = model(x)[:, 1].sum()
    rules = LRPRules({}, {"conv2d": LRPRule("epsilon"), "linear": LRPRule("epsilon")})
    with pytest.raises(RuntimeError, match=r"an LRP rule needs the forward pass's arrays.*lean_graph\(\)"), \
            mv.backward_rule(rules):
        score.backward(retain_graph=True)
    with mv.lean_graph():
        y = mv.F.relu(mv.tensor(rng.standard_normal((4, 3)), requires_grad=True)).sum()
    with pytest.raises(RuntimeError, match=r"relu: the rescale rule needs the forward pass's arrays"), \
            mv.backward_rule("rescale"):
        y.backward()


def test_the_saliency_methods_record_lean_graphs_and_match_a_full_graph(rng):
    model = net(rng)
    x = rng.standard_normal((2, 3, 10, 10))
    lean = mv.vis.smoothgrad(model, x, 1, n=4, method="gradient", batch_size=4, progress=False)
    # the same noise draws by hand (one generator, seed 0, copy-major rows), through a full graph
    sigma = 0.15 * (x.reshape(2, -1).max(axis=1) - x.reshape(2, -1).min(axis=1))
    draws = np.random.default_rng(0).standard_normal((4, 1) + x.shape[1:])
    noisy = (x[None] + draws * sigma[None, :, None, None, None]).reshape((8,) + x.shape[1:])
    xt = mv.tensor(noisy, requires_grad=True)
    with mv.vis.common.frozen(model):
        model(xt)[:, 1].sum().backward()
    full = xt.grad.reshape((4, 2) + x.shape[1:]).mean(axis=0)
    np.testing.assert_allclose(lean, full, rtol=1e-12, atol=1e-14)


def test_a_training_step_on_a_lean_graph_is_the_full_graphs_step_bit_for_bit(rng):
    """``minivis train`` records lean graphs (ReLU + max-pool fused, a byte per rectifier value):
    in train mode, dropout included, Adam's update is the same to the last bit."""
    x = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    weights = []
    for lean in (False, True):
        mv.nn.init.seed(3)
        model = mv.models.FashionCNN(widths=(4, 8), hidden=16).train()
        opt = mv.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(2):
            with mv.lean_graph() if lean else nullcontext():
                logits = model(mv.tensor(x))
            loss = mv.F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        weights.append({k: np.array(v) for k, v in model.state_dict().items()})
    for k in weights[0]:
        np.testing.assert_array_equal(weights[1][k].view(np.uint32), weights[0][k].view(np.uint32), err_msg=k)
