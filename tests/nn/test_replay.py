"""``mv.nn.ForwardReplay``: the randomisation test's reuse of the unchanged layers below the
randomised ones gives the same maps bit for bit as recomputing them, for every kind of method,
and stops replaying wherever a call could differ (changed weights, other input, training mode,
a module that is more than one op, a module called twice)."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
import minivis.functional as F
from minivis.nn import Conv2d, ForwardReplay, Linear, MaxPool2d, Module, ReLU, Sequential
from minivis.vis.attribution import sanity


@pytest.fixture(scope="module")
def fashion():
    mv.nn.init.seed(5)
    model = mv.models.FashionCNN(widths=(4, 8), hidden=16).double().eval()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28))
    return model, x, np.array([1, 7, 3])


METHODS = [("saliency", {}), ("guided_backprop", {}), ("deconvnet", {}), ("gradient_x_input", {}),
           ("grad_cam", {"layer": "features.2"}), ("lrp", {"composite": "epsilon_plus"}), ("deeplift", {}),
           ("integrated_gradients", {"steps": 4, "batch_size": 2}), ("smoothgrad", {"n": 4, "batch_size": 2})]


@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize(("method", "kwargs"), METHODS, ids=[m for m, _ in METHODS])
def test_reuse_gives_the_same_maps_bit_for_bit(fashion, method, kwargs, mode, monkeypatch):
    model, x, y = fashion
    fresh = sanity.model_randomisation(model, x, y, method, mode, measures=("spearman",), reuse_forward=False,
                                       **kwargs)
    replays = []
    real = sanity.ForwardReplay
    monkeypatch.setattr(sanity, "ForwardReplay", lambda m: replays.append(real(m)) or replays[-1])
    reused = sanity.model_randomisation(model, x, y, method, mode, measures=("spearman",), **kwargs)
    np.testing.assert_array_equal(reused.maps, fresh.maps)
    np.testing.assert_array_equal(reused.scores["spearman"], fresh.scores["spearman"])
    # something was handed back: the first step keeps everything below the logits layer
    assert len(replays) == 1 and replays[0].replayed > 0



def test_the_replayed_calls_stop_at_the_first_changed_layer(fashion):
    model, x, y = fashion
    replay = ForwardReplay(model)
    with replay.record():
        want = mv.vis.saliency(model, x, y)
    # saliency records a lean graph, where each ReLU and its 2x2 max-pool run as one op
    assert [[type(m).__name__ for m in c.modules] for c in replay.calls] == [
        ["Conv2d"], ["ReLU"], ["Conv2d"], ["ReLU", "MaxPool2d"], ["Conv2d"], ["ReLU"], ["Conv2d"],
        ["ReLU", "MaxPool2d"], ["Flatten"], ["Linear"], ["ReLU"], ["Dropout"], ["Linear"]]
    for changed, expect in ((model.classifier[3], 12), (model.features[5], 4), (model.features[0], 0)):
        before = replay.replayed
        with replay.replay([changed]):
            got = mv.vis.saliency(model, x, y)
        np.testing.assert_array_equal(got, want)  # nothing changed in fact: the same map
        assert replay.replayed - before == expect
    before = replay.replayed
    with replay.replay():
        mv.vis.saliency(model, x[::-1].copy(), y)  # another input: the first call already differs
        mv.vis.saliency(model, x, y)  # the recorded input again, in the same block: a new pass
    assert replay.replayed - before == 13


def test_replaced_or_edited_weights_are_never_replayed(fashion):
    model, x, y = fashion
    model = mv.models.FashionCNN(widths=(4, 8), hidden=16).double().eval()
    model.load_state_dict(fashion[0].state_dict())
    replay = ForwardReplay(model)
    with replay.record():
        mv.vis.saliency(model, x, y)
    conv = model.features[2]
    saved = conv.weight
    conv.weight = mv.nn.Parameter(saved.data * 2.0)  # a new parameter object: seen without being told
    want = mv.vis.saliency(model, x, y)
    with replay.replay():
        np.testing.assert_array_equal(mv.vis.saliency(model, x, y), want)
    assert replay.replayed == 2  # conv 0 and its ReLU
    conv.weight = saved
    saved.data[...] *= 3.0  # edited in place: the caller names the module
    try:
        want = mv.vis.saliency(model, x, y)
        with replay.replay([conv]):
            np.testing.assert_array_equal(mv.vis.saliency(model, x, y), want)
    finally:
        saved.data[...] /= 3.0


class _Branchy(Module):
    """A skip connection, a functional op between modules, a module called twice, and a leaf
    module that is two ops: replay must cope with each."""

    def __init__(self):
        super().__init__()
        self.conv = Conv2d(2, 3, 3, padding=1)
        self.act = ReLU()
        self.twice = Conv2d(3, 3, 3, padding=1)
        self.affine = _TwoOps()
        self.pool = MaxPool2d(2)
        self.head = Sequential(Linear(3 * 4 * 4, 5))

    def forward(self, x):
        h = self.act(self.conv(x))
        h = F.relu(self.twice(h)) + h  # functional op, skip connection
        h = self.twice(h)  # the same module again
        h = self.pool(self.affine(h))
        return self.head(h.reshape(len(h), -1))


class _TwoOps(Module):
    def forward(self, x):
        return x * 2.0 + 1.0


def test_unusual_models_give_the_same_maps():
    mv.nn.init.seed(3)
    model = _Branchy().double().eval()
    x = np.random.default_rng(1).standard_normal((2, 2, 8, 8))
    for method in ("saliency", "guided_backprop"):
        fresh = sanity.model_randomisation(model, x, [0, 4], method, measures=("spearman",), reuse_forward=False)
        reused = sanity.model_randomisation(model, x, [0, 4], method, measures=("spearman",))
        np.testing.assert_array_equal(reused.maps, fresh.maps)
    replay = ForwardReplay(model)
    with replay.record():
        mv.vis.saliency(model, x, 0)
    # the second call of ``twice`` ends the recording (one pass per record)
    assert [type(c.modules[0]).__name__ for c in replay.calls] == ["Conv2d", "ReLU", "Conv2d"]


def test_training_mode_and_parameter_gradients(fashion):
    model, x, y = fashion
    model = mv.models.FashionCNN(widths=(4, 8), hidden=16).double()
    model.load_state_dict(fashion[0].state_dict())
    replay = ForwardReplay(model.train())
    with replay.record():
        model(mv.tensor(x))
    assert replay.calls == []  # train mode: dropout draws, batch statistics move; nothing recorded
    model.eval()
    replay = ForwardReplay(model)

    def weight_grads():
        model.zero_grad()
        out = model(mv.tensor(x, requires_grad=True))
        out[np.arange(3), y].sum().backward()
        return [p.grad.copy() for p in model.parameters()]

    with replay.record():
        want = weight_grads()
    with replay.replay([model.classifier[3]]):
        got = weight_grads()
    assert replay.replayed == 14  # a full graph: the ReLUs and max-pools run apart
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_module_under_a_forward_pre_hook_is_never_replayed(fashion):
    """A pre-hook may change its module's input (by returning a new one, or in place): the replay
    stops at the first module with one, or inside a container with one, and the maps are those of a
    pass without replay, bit for bit."""
    model, x, y = fashion
    replay = ForwardReplay(model)
    with replay.record():
        plain = mv.vis.saliency(model, x, y)
    conv = model.features[5]  # the fifth recorded call (see test_the_replayed_calls_stop_at_the_first_changed_layer)
    fired = []
    for hook, same in ((lambda m, a: fired.append(1) or a[0] * 2.0, False), (lambda m, a: fired.append(1), True)):
        with conv.register_forward_pre_hook(hook):
            want = mv.vis.saliency(model, x, y)
            before = replay.replayed
            with replay.replay():
                got = mv.vis.saliency(model, x, y)
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(got, plain) == same
        assert replay.replayed - before == 4  # conv 0, its ReLU, conv 2, its ReLU + max-pool: then it runs
        assert len(fired) == 2 and not fired.clear()  # and its pre-hook fired, with and without replay
    with model.register_forward_pre_hook(lambda m, a: a[0] + 0.5):  # around every layer: nothing replays
        want = mv.vis.saliency(model, x, y)
        before = replay.replayed
        with replay.replay():
            got = mv.vis.saliency(model, x, y)
        np.testing.assert_array_equal(got, want)
        assert replay.replayed == before
    with replay.replay():  # the hooks gone: every call replays again
        np.testing.assert_array_equal(mv.vis.saliency(model, x, y), plain)
    assert replay.replayed - before == 13
    with conv.register_forward_pre_hook(lambda m, a: None), replay.record():  # a record ends at such a module
        mv.vis.saliency(model, x, y)
    assert len(replay.calls) == 4
    with model.register_forward_pre_hook(lambda m, a: None), replay.record():
        mv.vis.saliency(model, x, y)
    assert replay.calls == []


def test_bad_input(fashion):
    with pytest.raises(TypeError, match="ForwardReplay: model must be a minivis Module, got dict"):
        ForwardReplay({})
    model, x, y = fashion
    with pytest.raises(TypeError, match="model_randomisation: reuse_forward must be True or False, got 'yes'"):
        sanity.model_randomisation(model, x, y, "saliency", reuse_forward="yes")
    replay = ForwardReplay(model)
    with pytest.raises(TypeError, match="ForwardReplay.replay: changed must be an iterable of modules, got Conv2d"):
        with replay.replay(model.features[0]):
            pass
    with pytest.raises(TypeError, match=r"ForwardReplay.replay: changed must hold minivis Modules, got \['str'\]"):
        with replay.replay(["features.0"]):
            pass
    with pytest.raises(RuntimeError, match="boom"), replay.record():
        raise RuntimeError("boom")
    with mv.nn.module.observe_forward(lambda key, forward, args, kwargs: forward(*args, **kwargs)):
        pass
    assert mv.nn.module._OBSERVER.get() is None  # the observer ends with its block, error or not
    with pytest.raises(TypeError, match="observe_forward: observer must be callable, got int"):
        with mv.nn.module.observe_forward(3):
            pass


def test_attributes_a_forward_sets_are_set_again_on_replay(fashion):
    """A literal DeconvNet reads each max-pool's switches after the forward pass: a replayed call
    must leave them as its own forward would, even after another input ran in between."""
    model, x, y = fashion
    pools = [model.features[4], model.features[9]]
    replay = ForwardReplay(model)
    with replay.record(), mv.no_grad():
        model(mv.tensor(x))
    want = [p.switches.copy() for p in pools]
    with mv.no_grad():
        model(mv.tensor(x[::-1].copy()))  # other switches now
    with replay.replay(), mv.no_grad():
        model(mv.tensor(x))
    assert replay.replayed == 13
    for p, w in zip(pools, want, strict=True):
        np.testing.assert_array_equal(p.switches, w)
