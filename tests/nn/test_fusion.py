"""``mv.nn.batch_norm_act``: a model's batch norm and rectifier run as one op where nothing can tell,
with results identical bit for bit to the two modules, under every backward rule; ``conv_bn_act``
adds the convolution before them where no graph is recorded; ``Sequential``'s ReLU + max-pool pairs."""

from contextlib import nullcontext

import numpy as np
import pytest

import minivis as mv
from minivis.nn import BatchNorm2d, ReLU, ReLU6
from minivis.nn.module import observe_forward


def _bn(rng, c=3):
    bn = BatchNorm2d(c).double()
    bn.running_mean[...] = rng.standard_normal(c)
    bn.running_var[...] = rng.uniform(0.5, 2.0, c)
    bn.weight.data[...] = rng.uniform(0.5, 2.0, c)
    bn.bias.data[...] = rng.standard_normal(c)
    return bn.eval()


def _op(bn, act, x, requires_grad=True):
    return mv.nn.batch_norm_act(bn, act, mv.tensor(x, requires_grad=requires_grad)).grad_fn.op


def test_fused_only_where_nothing_can_tell(rng):
    bn, x = _bn(rng), rng.standard_normal((2, 3, 4, 4))
    bn.requires_grad_(False)
    assert _op(bn, ReLU6(), x) == "batch_norm_relu"
    assert _op(bn, ReLU(), x) == "batch_norm_relu"
    assert _op(bn, mv.nn.LeakyReLU(0.1), x) == "leaky_relu"  # only the plain rectifiers
    with mv.nn.fusion(False):
        assert _op(bn, ReLU6(), x) == "relu6"
    act = ReLU6()
    with act.register_forward_hook(lambda m, i, o: None):  # a hook must see its module's own output
        assert _op(bn, act, x) == "relu6"
    with bn.register_forward_hook(lambda m, i, o: None):
        assert _op(bn, ReLU6(), x) == "relu6"
    for module in (bn, act):  # a pre-hook must see its module's own input (and may replace it)
        with module.register_forward_pre_hook(lambda m, a: None):
            assert _op(bn, act, x) == "relu6"
    assert _op(bn, act, x) == "batch_norm_relu"  # the hooks removed: fused again
    bn.train()
    assert _op(bn, ReLU6(), x) == "relu6"  # training mode: the batch statistics depend on x


def test_fusion_bad_input():
    with pytest.raises(TypeError, match="fusion: enabled must be True or False, got 'no'"):
        with mv.nn.fusion("no"):
            pass


@pytest.fixture(scope="module")
def lite0():
    model = mv.models.load("efficientnet_lite0").double()
    model.requires_grad_(False)
    return model


def _run(model, x, rule, lean):
    xt = mv.tensor(x, requires_grad=True)
    with mv.lean_graph() if lean else nullcontext():
        y = model(xt)
    with mv.backward_rule(rule):
        y[:, 7].sum().backward()
    return y.numpy(), xt.grad


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
@pytest.mark.parametrize("lean", [False, True])
def test_efficientnet_lite0_fused_equals_unfused_bit_for_bit(lite0, rng, rule, lean):
    x = rng.standard_normal((2, 3, 48, 48))
    fused = _run(lite0, x, rule, lean)
    with mv.nn.fusion(False):
        unfused = _run(lite0, x, rule, lean)
    np.testing.assert_array_equal(fused[0], unfused[0])
    np.testing.assert_array_equal(fused[1], unfused[1])


def test_lrp_and_deeplift_through_fused_layers_equal_unfused(lite0, rng):
    x = rng.standard_normal((3, 40, 40))
    for method in (lambda: mv.vis.lrp(lite0, x, 3, canonize=False), lambda: mv.vis.lrp(lite0, x, 3),
                   lambda: mv.vis.deeplift(lite0, x, 3)):
        fused = method()
        with mv.nn.fusion(False):
            np.testing.assert_array_equal(fused, method())


def test_a_fused_forward_outside_the_rescale_rule_says_why_its_backward_cannot_run(lite0, rng):
    y = lite0(mv.tensor(rng.standard_normal((1, 3, 32, 32)), requires_grad=True))
    with mv.backward_rule("rescale"), pytest.raises(RuntimeError, match="rescale rule needs"):
        y[:, 0].sum().backward()


# ----------------------------------------------------------------------------- conv + batch norm + rectifier
def _conv_op(conv, bn, act, x, requires_grad=False):
    """The op that made conv_bn_act's result (its ``_op``: also set where no graph is recorded)."""
    return mv.nn.conv_bn_act(conv, bn, act, mv.tensor(x, requires_grad=requires_grad))._op


def test_conv_bn_act_fuses_the_convolution_only_where_no_graph_is_recorded(rng):
    conv, bn, x = mv.nn.Conv2d(3, 3, 3, padding=1, groups=3).double(), _bn(rng), rng.standard_normal((2, 3, 5, 5))
    with mv.no_grad():
        assert _conv_op(conv, bn, ReLU6(), x) == "conv2d_bn_relu"
        with mv.nn.fusion(False):
            assert _conv_op(conv, bn, ReLU6(), x) == "relu6"
        # a hook on any of the three modules sees that module's own call; the others may still fuse
        with conv.register_forward_hook(lambda m, i, o: None):
            assert _conv_op(conv, bn, ReLU6(), x) == "batch_norm_relu"
        with bn.register_forward_hook(lambda m, i, o: None):
            assert _conv_op(conv, bn, ReLU6(), x) == "relu6"
        act = ReLU6()
        with act.register_forward_pre_hook(lambda m, a: None):
            assert _conv_op(conv, bn, act, x) == "relu6"
        assert _conv_op(conv, bn, mv.nn.LeakyReLU(0.1), x) == "leaky_relu"
        assert _conv_op(conv, bn, None, x) == "conv2d_bn"  # no rectifier
        with mv.nn.fusion(False):
            assert _conv_op(conv, bn, None, x) == "batch_norm"
        with observe_forward(lambda key, forward, args, kwargs: forward(*args, **kwargs)):
            assert _conv_op(conv, bn, ReLU6(), x) == "batch_norm_relu"  # an observer sees the conv's own call
        bn.train()
        assert _conv_op(conv, bn, ReLU6(), x) == "relu6"
        bn.eval()
    # with grad enabled and trainable parameters a graph is recorded, through the three modules
    assert _conv_op(conv, bn, ReLU6(), x) == "relu6"
    conv.requires_grad_(False)
    bn.requires_grad_(False)
    assert _conv_op(conv, bn, ReLU6(), x) == "conv2d_bn_relu"  # nothing requires grad: no graph to record
    assert _conv_op(conv, bn, ReLU6(), x, requires_grad=True) == "batch_norm_relu"


def _vgg_bn_like(rng):
    """Conv-BN-ReLU runs (and a conv-BN pair without one) as in torchvision's vgg*_bn."""
    layers = [mv.nn.Conv2d(3, 4, 3, padding=1), BatchNorm2d(4), ReLU(), mv.nn.MaxPool2d(2),
              mv.nn.Conv2d(4, 4, 3, padding=1, groups=4), BatchNorm2d(4), ReLU6(),
              mv.nn.Conv2d(4, 5, 1), BatchNorm2d(5), mv.nn.Conv2d(5, 2, 3)]
    for bn in layers:
        if isinstance(bn, BatchNorm2d):
            c = bn.num_features
            bn.running_mean[...] = rng.standard_normal(c)
            bn.running_var[...] = rng.uniform(0.5, 2.0, c)
            bn.bias.data[...] = rng.standard_normal(c)
    return mv.nn.Sequential(*layers).double().eval()


def test_sequential_fuses_conv_bn_relu_runs_for_inference_bit_for_bit(rng, monkeypatch):
    model, x = _vgg_bn_like(rng), rng.standard_normal((2, 3, 12, 12))
    seen = []
    for name in ("conv2d_bn_relu", "conv2d_bn"):
        op = getattr(mv.F, name)
        monkeypatch.setattr(mv.F, name, lambda *a, _name=name, _op=op, **k: seen.append(_name) or _op(*a, **k))
    with mv.no_grad():
        fused = model(mv.tensor(x)).numpy()
    assert seen == ["conv2d_bn_relu", "conv2d_bn_relu", "conv2d_bn"]  # the last conv has no batch norm
    with mv.no_grad(), mv.nn.fusion(False):
        unfused = model(mv.tensor(x)).numpy()
    np.testing.assert_array_equal(fused, unfused)
    xt = mv.tensor(x, requires_grad=True)  # a graph: the modules one by one, the same values
    np.testing.assert_array_equal(model(xt).numpy(), fused)
    assert seen == ["conv2d_bn_relu", "conv2d_bn_relu", "conv2d_bn"]


@pytest.mark.parametrize("dtype", ["double", "float"])
def test_efficientnet_lite0_inference_fused_equals_unfused_bit_for_bit(rng, dtype):
    # 64 px: depthwise planes from 32 px (the planar kernels) down to 2 px (channels last)
    model = getattr(mv.models.load("efficientnet_lite0"), dtype)()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float64 if dtype == "double" else np.float32)
    with mv.no_grad():
        fused = model(mv.tensor(x)).numpy()
        with mv.nn.fusion(False):
            unfused = model(mv.tensor(x)).numpy()
    np.testing.assert_array_equal(fused, unfused)


# ----------------------------------------------------------------------------- ReLU + 2x2 max-pool in a Sequential
def _ops(model, x, requires_grad=True, lean=True):
    """The op names of a forward pass's graph, from the output down."""
    with mv.lean_graph() if lean else nullcontext():
        node = model(mv.tensor(x, requires_grad=requires_grad)).grad_fn
    ops = []
    while node is not None:
        ops.append(node.op)
        node = next((i for i in node.inputs if isinstance(i, mv.autograd.Node)), None)
    return ops


def test_relu_and_max_pool_fuse_only_where_nothing_can_tell(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    relu, pool = ReLU(), mv.nn.MaxPool2d(2)
    net = mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3, padding=1), relu, pool).double()
    assert _ops(net, x) == ["relu_max_pool2d", "conv2d"]  # in a lean graph
    assert _ops(net, x, lean=False) == ["max_pool2d", "relu", "conv2d"]  # a full graph keeps what LRP needs
    with mv.no_grad():  # no graph at all: fused
        want = net(mv.tensor(x)).numpy()
        switches = pool.switches.copy()
        with mv.nn.fusion(False):
            np.testing.assert_array_equal(net(mv.tensor(x)).numpy(), want)
            np.testing.assert_array_equal(pool.switches, switches)  # the pool's switches as its own forward sets
    with mv.nn.fusion(False):
        assert _ops(net, x) == ["max_pool2d", "relu", "conv2d"]
    for module in (relu, pool):
        with module.register_forward_hook(lambda m, i, o: None):  # a hook must see its module's own output
            assert _ops(net, x) == ["max_pool2d", "relu", "conv2d"]
        with module.register_forward_pre_hook(lambda m, a: None):  # a pre-hook its own input
            assert _ops(net, x) == ["max_pool2d", "relu", "conv2d"]
    assert _ops(net, x) == ["relu_max_pool2d", "conv2d"]
    for other in (mv.nn.MaxPool2d(3, 2), mv.nn.MaxPool2d(2, ceil_mode=True), mv.nn.MaxPool2d(2, padding=1),
                  mv.nn.MaxPool2d(2, 1), mv.nn.MaxPool2d(2, dilation=2)):
        assert _ops(mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3, padding=1), ReLU(), other).double(), x)[:2] == [
            "max_pool2d", "relu"]
    assert _ops(mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3), mv.nn.MaxPool2d((2, 2), 2), ReLU()).double(), x) == [
        "relu", "max_pool2d", "conv2d"]  # pool then ReLU: not this pattern


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_fashion_cnn_fused_equals_unfused_bit_for_bit(rng, rule):
    mv.nn.init.seed(4)
    model = mv.models.FashionCNN(widths=(4, 8), hidden=16).eval()
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    fused = _run(model, x, rule, lean=True)
    with mv.nn.fusion(False):
        unfused = _run(model, x, rule, lean=True)
    np.testing.assert_array_equal(fused[0], unfused[0])
    np.testing.assert_array_equal(fused[1].view(np.uint32), unfused[1].view(np.uint32))


# ------------------------------------------------------------------------- conv + ReLU (+ 2x2 max-pool), inference
def _calls(monkeypatch):
    """The fused runs, by the public op they stand for (``F.conv2d_relu`` or ``F.conv2d_relu_max_pool2d``)."""
    from minivis.functional import fused

    seen, run = [], fused.fused

    def record(args, out_hw, max_value, max_pool):
        result = run(args, out_hw, max_value, max_pool)
        if result is not None:
            seen.append("conv2d_relu_max_pool2d" if max_pool else "conv2d_relu")
        return result

    monkeypatch.setattr(fused, "fused", record)
    return seen


def test_conv_relu_and_pool_fuse_for_inference_only_where_nothing_can_tell(rng, monkeypatch):
    seen = _calls(monkeypatch)
    conv, relu, pool = mv.nn.Conv2d(32, 32, 3, padding=1), ReLU(), mv.nn.MaxPool2d(2)
    net = mv.nn.Sequential(conv, relu, pool, mv.nn.Conv2d(32, 8, 3, padding=1), ReLU6())
    x = mv.tensor(rng.standard_normal((2, 32, 9, 11)).astype(np.float32))

    def run(expect):
        seen.clear()
        with mv.no_grad():
            y = net(x).numpy()
        assert seen == expect
        return y, pool.switches.copy()

    fused = run(["conv2d_relu_max_pool2d", "conv2d_relu"])
    with mv.nn.fusion(False):
        unfused = run([])
    np.testing.assert_array_equal(fused[0].view(np.uint32), unfused[0].view(np.uint32))
    np.testing.assert_array_equal(fused[1], unfused[1])  # the pool's switches as its own forward sets them
    for module in (conv, relu):  # a hook sees its module's own call: then no conv fusion here (relu + pool may)
        with module.register_forward_hook(lambda m, i, o: None):
            np.testing.assert_array_equal(run(["conv2d_relu"])[0], fused[0])
    with pool.register_forward_pre_hook(lambda m, a: None):  # the pool alone runs as written
        np.testing.assert_array_equal(run(["conv2d_relu", "conv2d_relu"])[0], fused[0])
    with observe_forward(lambda key, forward, args, kwargs: forward(*args, **kwargs)):
        np.testing.assert_array_equal(run([])[0], fused[0])
    with mv.backward_rule("rescale"):  # DeepLIFT's reference pass keeps the rectifier's input
        np.testing.assert_array_equal(run([])[0], fused[0])
    pool.ceil_mode = True  # not a plain 2x2 pool: the conv and ReLU fuse, the pool runs as written
    ceil = run(["conv2d_relu", "conv2d_relu"])
    with mv.nn.fusion(False):
        np.testing.assert_array_equal(run([])[0], ceil[0])
    pool.ceil_mode = False
    seen.clear()
    y = net(mv.tensor(x.numpy(), requires_grad=True))  # a graph: the modules one by one
    assert seen == [] and y.grad_fn is not None
    np.testing.assert_array_equal(y.numpy(), fused[0])


def test_a_pool_too_large_for_the_conv_output_fails_as_the_pool(rng):
    net = mv.nn.Sequential(mv.nn.Conv2d(3, 4, 3), ReLU(), mv.nn.MaxPool2d(2))
    with mv.no_grad(), pytest.raises(ValueError, match="max_pool2d"):
        net(mv.tensor(rng.standard_normal((1, 3, 3, 3)).astype(np.float32)))  # a 1x1 conv output
    with mv.no_grad(), pytest.raises(ValueError, match="conv2d: "):  # the convolution's error, named as its own
        net(mv.tensor(rng.standard_normal((1, 2, 8, 8)).astype(np.float32)))


@pytest.mark.parametrize("size", [28, 27])
def test_fashion_cnn_inference_fused_equals_unfused_bit_for_bit(rng, size):
    model = mv.models.load("fashion_cnn")
    x = rng.standard_normal((5, 1, size, size)).astype(np.float32)
    with mv.no_grad():
        fused = model.features(mv.tensor(x)).numpy()
        with mv.nn.fusion(False):
            unfused = model.features(mv.tensor(x)).numpy()
    np.testing.assert_array_equal(fused.view(np.uint32), unfused.view(np.uint32))


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_a_lean_graph_fuses_conv_relu_pool_with_the_separate_ops_gradients_bit_for_bit(rng, monkeypatch, rule):
    """Training records a lean graph: the conv, ReLU and pool run as one op whose result carries the
    ReLU-and-pool and convolution backward passes; the weight and input gradients are the separate ops'."""
    seen = _calls(monkeypatch)
    model = mv.models.load("fashion_cnn")  # eval: no dropout masks to match; the weights still require grad
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)

    def grads():
        model.zero_grad()
        xt = mv.tensor(x, requires_grad=True)
        with mv.lean_graph():
            y = model(xt)
        with mv.backward_rule(rule):
            (y * mv.tensor(np.arange(10, dtype=np.float32))).sum().backward()
        return [xt.grad] + [p.grad for p in model.parameters()], model.features[4].switches.copy()

    fused, switches = grads()
    assert seen == ["conv2d_relu_max_pool2d", "conv2d_relu_max_pool2d"]
    with mv.nn.fusion(False):
        unfused, unfused_switches = grads()
    for a, b in zip(fused, unfused, strict=True):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    np.testing.assert_array_equal(switches, unfused_switches)
    with mv.lean_graph():  # the fused result's graph: the pool's node on the convolution's
        assert _ops(model.features, x, lean=True)[:3] == ["relu_max_pool2d", "conv2d", "relu"]
