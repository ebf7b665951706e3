"""Module, state_dict, hooks: against a PyTorch twin with the same key names."""

from collections import OrderedDict

import numpy as np
import pytest
import torch

import minivis as mv
from minivis import nn


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    )


def torch_twin() -> torch.nn.Sequential:
    tn = torch.nn
    return tn.Sequential(
        tn.Conv2d(3, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(4, 6, 3, padding=1), tn.ReLU(), tn.Flatten(), tn.Linear(6 * 4 * 4, 5),
    )


def test_state_dict_keys_and_shapes_match_pytorch():
    ours, theirs = small_net().state_dict(), torch_twin().state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert ours[key].shape == tuple(theirs[key].shape), key


def test_pytorch_weights_give_identical_outputs_in_eval_and_train(rng):
    twin = torch_twin().double()
    with torch.no_grad():  # non-trivial running statistics
        twin[1].running_mean.uniform_(-0.5, 0.5)
        twin[1].running_var.uniform_(0.5, 2.0)
    net = small_net().double()
    net.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    assert net[0].weight.dtype == np.float64
    x = rng.standard_normal((2, 3, 8, 8))
    net.eval()
    twin.eval()
    got = net(mv.tensor(x, dtype=np.float64)).numpy()
    want = twin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    net.train()
    twin.train()
    got = net(mv.tensor(x, dtype=np.float64)).numpy()
    want = twin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net[1].running_mean, twin[1].running_mean.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net[1].running_var, twin[1].running_var.numpy(), rtol=1e-10, atol=1e-12)
    assert int(net[1].num_batches_tracked) == int(twin[1].num_batches_tracked)


def test_load_state_dict_is_all_or_nothing():
    net = small_net()
    before = net.state_dict()
    bad = {k: v.copy() + 1 for k, v in before.items()}
    bad["4.weight"] = np.zeros((6, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"4\.weight: expected shape \(6, 4, 3, 3\), got \(6, 4, 5, 5\)"):
        net.load_state_dict(bad)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_reports_missing_and_unexpected_keys():
    net = small_net()
    state = net.state_dict()
    del state["0.bias"]
    state["9.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"missing keys: \['0\.bias'\].*unexpected keys: \['9\.weight'\]"):
        net.load_state_dict(state)
    net.load_state_dict(state, strict=False)  # tolerated when asked
    with pytest.raises(TypeError, match="expected a dict"):
        net.load_state_dict([1, 2])


def test_named_layers_and_unknown_layer_error():
    net = small_net()
    assert net.get_submodule("3") is net[3]
    assert "7" in net.layer_names()
    with pytest.raises(ValueError, match=r"'12' is not a layer of Sequential; known layers: 0, 1"):
        net.get_submodule("12")


def test_capture_reads_activations_and_backward_starts_at_a_layer(rng):
    net = small_net().double().eval()
    x = mv.tensor(rng.standard_normal((1, 3, 8, 8)), requires_grad=True, dtype=np.float64)
    with nn.capture(net, ["2", "5"], retain_grad=True) as acts:
        out = net(x)
    assert acts["2"].shape == (1, 4, 8, 8) and acts["5"].shape == (1, 6, 4, 4)
    out[0, 1].backward(retain_graph=True)
    assert acts["5"].grad is not None and acts["5"].grad.shape == (1, 6, 4, 4)
    # starting the backward at layer 5 with its own gradient reproduces the input gradient
    expected = x.grad.copy()
    x.zero_grad()
    acts["5"].backward(acts["5"].grad)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


def test_forward_to_stops_at_the_layer(rng):
    net = small_net().eval()
    calls = []
    net[7].register_forward_hook(lambda m, i, o: calls.append(1))
    x = mv.tensor(rng.standard_normal((2, 3, 8, 8)), dtype=np.float32)
    h = nn.forward_to(net, x, "3")
    assert h.shape == (2, 4, 4, 4) and not calls
    np.testing.assert_allclose(h.numpy(), net[:4](x).numpy())


def test_edit_output_and_hook_removal(rng):
    net = small_net().eval()
    x = mv.tensor(rng.standard_normal((1, 3, 8, 8)), dtype=np.float32)
    with nn.edit_output(net, "7", lambda out: out * 0):
        assert np.all(net(x).numpy() == 0)
    assert np.any(net(x).numpy() != 0)


# ----------------------------------------------------------------------------- forward pre-hooks, against PyTorch's
def _twins(rng):
    """small_net and its PyTorch twin in eval mode, float64, the same weights and non-trivial statistics."""
    twin = torch_twin().double()
    with torch.no_grad():
        twin[1].running_mean.uniform_(-0.5, 0.5)
        twin[1].running_var.uniform_(0.5, 2.0)
    net = small_net().double()
    net.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    return net.eval(), twin.eval(), rng.standard_normal((2, 3, 8, 8))


def _outputs(net, twin, x):
    got = net(mv.tensor(x, dtype=np.float64)).numpy()
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    return got, want


@pytest.mark.parametrize("returns", ["tensor", "tuple"])
def test_a_pre_hook_that_scales_the_input_gives_pytorchs_output(rng, returns):
    net, twin, x = _twins(rng)
    plain = _outputs(net, twin, x)[0]

    def scale(module, args):
        return args[0] * 2.0 if returns == "tensor" else (args[0] * 2.0,)

    for model in (net, twin):
        model[4].register_forward_pre_hook(scale)  # the second conv
    got, want = _outputs(net, twin, x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(got, plain)


def test_a_pre_hook_that_returns_none_leaves_the_input_and_sees_the_previous_output(rng):
    net, twin, x = _twins(rng)
    plain = _outputs(net, twin, x)[0]
    seen = {"ours": [], "torch": []}
    net[4].register_forward_pre_hook(lambda m, args: seen["ours"].append((m, args)))
    twin[4].register_forward_pre_hook(lambda m, args: seen["torch"].append((m, args)))
    with nn.capture(net, "3") as acts:
        got, want = _outputs(net, twin, x)
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    (module, args), = seen["ours"]
    (torch_module, torch_args), = seen["torch"]
    assert module is net[4] and torch_module is twin[4]
    assert type(args) is tuple and len(args) == len(torch_args) == 1
    assert args[0] is acts["3"]  # the pool's output itself
    np.testing.assert_allclose(args[0].numpy(), torch_args[0].numpy(), rtol=1e-10, atol=1e-12)


def test_pre_hooks_run_in_registration_order_and_forward_hooks_see_the_replaced_args(rng):
    net, twin, x = _twins(rng)
    order = {"ours": [], "torch": []}
    seen_by_forward_hook = {}
    for key, model in (("ours", net), ("torch", twin)):
        layer = model[7]  # the Linear
        layer.register_forward_pre_hook(lambda m, a, key=key: order[key].append("add") or (a[0] + 1.0,))
        layer.register_forward_pre_hook(lambda m, a, key=key: order[key].append("scale") or a[0] * 3.0)
        layer.register_forward_hook(lambda m, a, out, key=key: seen_by_forward_hook.update({key: a[0]}))
    got, want = _outputs(net, twin, x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert order["ours"] == order["torch"] == ["add", "scale"]
    with nn.capture(net, "6") as acts:  # the Linear's forward receives (h + 1) * 3, not h * 3 + 1
        net(mv.tensor(x, dtype=np.float64))
    np.testing.assert_allclose(seen_by_forward_hook["ours"].numpy(), (acts["6"].numpy() + 1.0) * 3.0, rtol=1e-12)
    np.testing.assert_allclose(seen_by_forward_hook["ours"].numpy(), seen_by_forward_hook["torch"].numpy(),
                               rtol=1e-10, atol=1e-12)


def test_removing_a_pre_hook(rng):
    net, twin, x = _twins(rng)
    plain = _outputs(net, twin, x)[0]
    handle = net[0].register_forward_pre_hook(lambda m, a: a[0] * 0.5)
    with net[4].register_forward_pre_hook(lambda m, a: a[0] + 1.0):
        assert not np.allclose(_outputs(net, twin, x)[0], plain)
    handle.remove()
    handle.remove()  # twice is harmless, as in PyTorch
    np.testing.assert_array_equal(_outputs(net, twin, x)[0], plain)
    assert not net[0]._forward_pre_hooks and not net[4]._forward_pre_hooks


class _Affine(nn.Module):
    def forward(self, a, b, scale=1.0):
        return a * scale + b


class _TorchAffine(torch.nn.Module):
    def forward(self, a, b, scale=1.0):
        return a * scale + b


def test_a_pre_hook_sees_every_positional_argument_and_keywords_pass_untouched(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    ours, theirs = _Affine(), _TorchAffine()
    seen = []
    for module in (ours, theirs):
        module.register_forward_pre_hook(lambda m, args: seen.append(len(args)) or (args[1], args[0]))  # swapped
    got = ours(mv.tensor(a), mv.tensor(b), scale=3.0).numpy()
    want = theirs(torch.from_numpy(a), torch.from_numpy(b), scale=3.0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, b * 3.0 + a, rtol=1e-12)
    assert seen == [2, 2]


@pytest.mark.parametrize("hooked", ["relu", "pool"])
@pytest.mark.parametrize("graph", ["lean", "none"])
def test_a_pre_hook_on_a_fused_relu_and_max_pool_is_honoured(rng, hooked, graph):
    """Sequential runs a ReLU and its 2x2 max-pool as one op where nothing can tell; a pre-hook can."""
    net, twin, x = _twins(rng)
    index = 2 if hooked == "relu" else 3
    for model in (net, twin):
        model[index].register_forward_pre_hook(lambda m, a: a[0] * -1.0 + 0.25)
    with mv.lean_graph() if graph == "lean" else mv.no_grad():
        out = net(mv.tensor(x, dtype=np.float64, requires_grad=graph == "lean"))
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-12)
    if graph == "lean":  # the pair ran as its two modules
        ops, node = [], out.grad_fn
        while node is not None:
            ops.append(node.op)
            node = next((i for i in node.inputs if isinstance(i, mv.autograd.Node)), None)
        assert "relu_max_pool2d" not in ops and ops.count("max_pool2d") == 1


@pytest.mark.parametrize("act", ["ReLU", "ReLU6"])
@pytest.mark.parametrize("hooked", ["bn", "act"])
def test_a_pre_hook_on_a_fused_batch_norm_and_rectifier_is_honoured(rng, act, hooked):
    c = 3
    bn, twin_bn = nn.BatchNorm2d(c).double(), torch.nn.BatchNorm2d(c).double()
    with torch.no_grad():
        twin_bn.running_mean.uniform_(-0.5, 0.5)
        twin_bn.running_var.uniform_(0.5, 2.0)
        twin_bn.weight.uniform_(0.5, 2.0)
        twin_bn.bias.uniform_(-1.0, 1.0)
    bn.load_state_dict({k: v.numpy() for k, v in twin_bn.state_dict().items()})
    ours, theirs = getattr(nn, act)(), getattr(torch.nn, act)()
    bn.eval(), twin_bn.eval()
    x = rng.standard_normal((2, c, 5, 5)) * 4.0
    plain = nn.batch_norm_act(bn, ours, mv.tensor(x)).numpy()
    for module in ((bn, twin_bn) if hooked == "bn" else (ours, theirs)):
        module.register_forward_pre_hook(lambda m, a: a[0] * 3.0 + 1.0)
    got = nn.batch_norm_act(bn, ours, mv.tensor(x)).numpy()
    with torch.no_grad():
        want = theirs(twin_bn(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(got, plain)


def test_copies_and_pickles_leave_the_pre_hooks_behind(rng):
    import copy
    import pickle

    net, _, x = _twins(rng)
    plain = net(mv.tensor(x)).numpy()
    net[0].register_forward_pre_hook(lambda m, a: a[0] * 0.0)
    assert np.all(net(mv.tensor(x)).numpy() != plain)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert not clone[0]._forward_pre_hooks
        np.testing.assert_array_equal(clone(mv.tensor(x)).numpy(), plain)
    state = net[0].__getstate__()
    del state["_forward_pre_hooks"]  # a module pickled before pre-hooks existed
    old = nn.Conv2d.__new__(nn.Conv2d)
    old.__setstate__(state)
    np.testing.assert_array_equal(old(mv.tensor(x)).numpy(), net[0].forward(mv.tensor(x)).numpy())


@pytest.mark.parametrize("register", ["register_forward_hook", "register_forward_pre_hook"])
@pytest.mark.parametrize("hook", [None, 3, "scale"])
def test_a_hook_that_is_not_callable_is_refused_by_name(register, hook):
    net = small_net()
    with pytest.raises(TypeError, match=rf"^Module\.{register}: hook must be callable \(module, args.*\) -> .*, "
                                        rf"got {type(hook).__name__}$"):
        getattr(net[0], register)(hook)
    assert not net[0]._forward_hooks and not net[0]._forward_pre_hooks


def test_train_eval_parameters_and_requires_grad():
    net = small_net()
    assert len(list(net.parameters())) == 8
    net.eval()
    assert not any(m.training for m in net.modules())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_sequential_with_ordered_dict_and_bad_layer():
    seq = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())]))
    assert list(seq.state_dict()) == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="Sequential: layer 0 must be a Module"):
        nn.Sequential(lambda x: x)


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Linear: in_features must be a positive int"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\)"):
        nn.Dropout(1.5)


def _assert_unchanged(net, before):
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("key, value, message", [
    ("1.num_batches_tracked", np.array(2.0 ** 70), r"1\.num_batches_tracked: values do not fit int64"),
    ("1.num_batches_tracked", np.array(1.5), r"1\.num_batches_tracked: expected whole numbers"),
    ("1.running_mean", np.array([None] * 4, dtype=object), r"running_mean: expected a numeric array, got dtype object"),
    ("1.running_var", np.array(["a"] * 4), r"1\.running_var: expected a numeric array, got dtype <U1"),
    ("0.bias", np.ones(4, np.complex64), r"0\.bias: expected a numeric array, got dtype complex64"),
    ("1.running_var", np.array([1, 1, -1, 1], np.float32), r"1\.running_var: a running variance must be >= 0"),
    ("1.running_var", np.array([1, np.nan, 1, 1], np.float32), r"1\.running_var: batch-norm statistics must be finite"),
    ("1.running_mean", np.array([0, np.inf, 0, 0], np.float32), r"running_mean: batch-norm statistics must be finite"),
    ("0.bias", np.full(4, 1e39), r"0\.bias: values overflow float32"),
])
def test_load_state_dict_refuses_bad_values_and_changes_nothing(key, value, message):
    # the bad entry comes last, so a loader that wrote as it checked would already have changed the rest
    net = small_net()
    before = net.state_dict()
    bad = {k: v.copy() + 1 for k, v in before.items()}
    del bad[key]
    bad[key] = value
    with pytest.raises(ValueError, match=message):
        net.load_state_dict(bad)
    _assert_unchanged(net, before)


def test_load_state_dict_warns_on_non_finite_parameters_and_copies_its_input():
    net = small_net()
    state = net.state_dict()
    state["7.weight"][0, 0] = np.nan
    with pytest.warns(RuntimeWarning, match=r"NaN or infinite values: \['7\.weight'\]"):
        net.load_state_dict(state)
    state["0.weight"][:] = 5  # the model holds its own copy, not the caller's array
    assert not np.any(net[0].weight.numpy() == 5)
