"""Backward rules for the ReLU family (minivis/rules.py). Guided and deconvnet are not gradients of
anything, so they are checked against their formulas (DESIGN.md section 3, strict inequalities) and
against small examples worked by hand; the "gradient" rule is the true gradient (see
tests/functional/test_activation.py for finite differences and PyTorch parity)."""

import threading

import numpy as np
import pytest

import minivis as mv

F = mv.F


def rule_grad(op, x, g, rule):
    t = mv.tensor(x, requires_grad=True)
    y = op(t)
    with mv.backward_rule(rule):
        y.backward(g)
    return t.grad


def with_ties(rng, shape, dtype=np.float64):
    """Random x and g with exact zeros in both (and x exactly at relu6's 6), to exercise the strict inequalities."""
    x = rng.uniform(-8, 8, shape)
    g = rng.standard_normal(shape)
    x.reshape(-1)[:3] = [0.0, 6.0, 0.0]
    g.reshape(-1)[2:5] = 0.0
    return x.astype(dtype), g.astype(dtype)


# f'(x) of each op, the local derivative used by "gradient" and "guided"
DERIVATIVES = {
    "relu": (F.relu, lambda x: (x > 0).astype(x.dtype)),
    "relu6": (F.relu6, lambda x: ((x > 0) & (x < 6)).astype(x.dtype)),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.1), lambda x: np.where(x > 0, 1.0, 0.1).astype(x.dtype)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_rules_match_their_formulas(rng, name, dtype):
    op, fprime = DERIVATIVES[name]
    x, g = with_ties(rng, (4, 5, 6), dtype)
    expected = {
        "gradient": g * fprime(x),
        "guided": g * fprime(x) * (g > 0),
        "deconvnet": g * (g > 0),
    }
    for rule, want in expected.items():
        got = rule_grad(op, x, g, rule)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want, err_msg=f"{name} under {rule!r}")


# (low, high, negative_slope) of each op, as relu_backward_reference takes them
BOUNDS = {"relu": (0.0, np.inf, 0.0), "relu6": (0.0, 6.0, 0.0), "leaky_relu": (0.0, np.inf, 0.1)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_reference_matches_the_formulas_and_the_ops(rng, name, dtype):
    """``relu_backward_reference`` (the ten-line page a student reads) is the formulas above, and
    it is what the ops send back: both bit for bit."""
    op, fprime = DERIVATIVES[name]
    x, g = with_ties(rng, (3, 4, 5), dtype)
    formulas = {"gradient": g * fprime(x), "guided": g * fprime(x) * (g > 0), "deconvnet": g * (g > 0)}
    for rule, want in formulas.items():
        ref = F.relu_backward_reference(g, x, rule, *BOUNDS[name])
        assert ref.dtype == dtype and ref.shape == x.shape
        np.testing.assert_array_equal(ref, want, err_msg=f"{name} under {rule!r}")
        np.testing.assert_array_equal(rule_grad(op, x, g, rule), ref, err_msg=f"{name} under {rule!r}")


def test_reference_rejects_an_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        F.relu_backward_reference(np.ones(2), np.ones(2), "lrp")


def test_relu_rules_by_hand():
    x = np.array([-2.0, -1.0, 0.0, 0.0, 1.0, 3.0])
    g = np.array([5.0, -4.0, 3.0, 0.0, -2.0, 1.0])
    np.testing.assert_array_equal(rule_grad(F.relu, x, g, "gradient"), [0, 0, 0, 0, -2, 1])
    np.testing.assert_array_equal(rule_grad(F.relu, x, g, "guided"), [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(rule_grad(F.relu, x, g, "deconvnet"), [5, 0, 3, 0, 0, 1])


def test_relu6_rules_by_hand():
    x = np.array([-1.0, 0.0, 2.0, 5.0, 6.0, 9.0])
    g = np.array([1.0, 1.0, -1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(rule_grad(F.relu6, x, g, "gradient"), [0, 0, -1, 2, 0, 0])
    np.testing.assert_array_equal(rule_grad(F.relu6, x, g, "guided"), [0, 0, 0, 2, 0, 0])
    np.testing.assert_array_equal(rule_grad(F.relu6, x, g, "deconvnet"), [1, 1, 0, 2, 3, 4])


def test_leaky_relu_rules_by_hand():
    x = np.array([-2.0, 0.0, 1.0, -1.0])
    g = np.array([4.0, 2.0, -3.0, -8.0])
    leaky = lambda t: F.leaky_relu(t, 0.25)  # noqa: E731
    np.testing.assert_array_equal(rule_grad(leaky, x, g, "gradient"), [1, 0.5, -3, -2])
    np.testing.assert_array_equal(rule_grad(leaky, x, g, "guided"), [1, 0.5, 0, 0])
    np.testing.assert_array_equal(rule_grad(leaky, x, g, "deconvnet"), [4, 2, 0, 0])


def test_two_layer_network_by_hand():
    # y = w2 . relu(W1 x): the three maps differ only in how the hidden ReLU passes the signal back.
    x = np.array([1.0, 2.0])
    w1 = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, -1.0]])  # h = W1 x = [-1, 3, -3]
    w2 = np.array([3.0, -2.0, 5.0])                         # dy/dh = w2
    maps = {}
    for rule in ("gradient", "guided", "deconvnet"):
        t = mv.tensor(x, requires_grad=True)
        y = F.relu(mv.tensor(w1) @ t) @ mv.tensor(w2)
        with mv.backward_rule(rule):
            y.backward()
        maps[rule] = t.grad
    # gradient: only unit 1 is active: w2[1] * W1[1] = -2 * [2, 0.5]
    np.testing.assert_allclose(maps["gradient"], [-4.0, -1.0])
    # guided: unit 1 is active but its signal -2 is negative: nothing passes
    np.testing.assert_allclose(maps["guided"], [0.0, 0.0])
    # deconvnet: the positive signals 3 (unit 0) and 5 (unit 2) pass, whatever h was
    np.testing.assert_allclose(maps["deconvnet"], 3 * w1[0] + 5 * w1[2])


def test_rule_is_read_when_backward_runs_not_at_forward():
    x, g = np.array([-1.0, 2.0, 3.0]), np.array([1.0, -1.0, 1.0])
    t = mv.tensor(x, requires_grad=True)
    with mv.backward_rule("deconvnet"):
        y = F.relu(t)  # forward inside the block ...
    y.backward(g)      # ... backward outside: the default gradient rule applies
    np.testing.assert_array_equal(t.grad, [0, -1, 1])

    t = mv.tensor(x, requires_grad=True)
    y = F.relu(t)
    with mv.backward_rule("deconvnet"):
        y.backward(g)
    np.testing.assert_array_equal(t.grad, [1, 0, 1])


def test_rules_leave_other_ops_alone():
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for op in (F.sigmoid, F.tanh, F.exp, lambda t: F.clip(t, -0.5, 0.5), F.abs):
        grads = [rule_grad(op, x, g, rule) for rule in ("gradient", "guided", "deconvnet")]
        np.testing.assert_array_equal(grads[0], grads[1])
        np.testing.assert_array_equal(grads[0], grads[2])


def test_nesting_restores_the_outer_rule():
    assert mv.current_rule() == "gradient"
    with mv.backward_rule("guided"):
        assert mv.current_rule() == "guided"
        with mv.backward_rule("deconvnet"):
            assert mv.current_rule() == "deconvnet"
            with mv.backward_rule("gradient"):
                assert mv.current_rule() == "gradient"
            assert mv.current_rule() == "deconvnet"
        assert mv.current_rule() == "guided"
        g = rule_grad(F.relu, np.array([1.0, -1.0]), np.array([-1.0, 1.0]), "deconvnet")
        np.testing.assert_array_equal(g, [0, 1])
        assert mv.current_rule() == "guided"
    assert mv.current_rule() == "gradient"


def test_rule_restored_after_an_exception():
    with pytest.raises(KeyError), mv.backward_rule("guided"):
        raise KeyError("inside the block")
    assert mv.current_rule() == "gradient"


def test_rule_is_per_thread():
    seen = {}

    def worker():
        seen["rule"] = mv.current_rule()

    with mv.backward_rule("deconvnet"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen["rule"] == "gradient"


@pytest.mark.parametrize("rule", ["Guided", "smoothgrad", "", None, 1])
def test_unknown_rule_is_rejected(rule):
    with pytest.raises(ValueError, match=r"backward_rule: rule must be one of \('gradient', 'guided', 'deconvnet'\), "
                                         rf"got {rule!r}"):
        with mv.backward_rule(rule):
            pass
    assert mv.current_rule() == "gradient"
