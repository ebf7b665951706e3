"""The autograd engine: graph recording, accumulation, no_grad, detach, retain_grad, backward from an
intermediate, errors, diamond graphs, broadcasting, the dtype policy and ``mv.tensor``'s input checks."""

import numpy as np
import pytest
import torch

import minivis as mv


def leaf(array, dtype=np.float64):
    return mv.tensor(np.asarray(array, dtype=dtype), requires_grad=True)


# ----------------------------------------------------------------------------- graph recording
def test_graph_records_parents_and_ops():
    x, w = leaf([1.0, 2.0]), mv.tensor(np.array([3.0, 4.0]))
    y = x * w
    z = y.sum()
    assert x.is_leaf and w.is_leaf and not y.is_leaf and not z.is_leaf
    assert y.requires_grad and z.requires_grad and not w.requires_grad
    # the graph holds nodes (grad_fn): a leaf that needs a gradient by itself, a computed input by its node,
    # and None for an input that needs no gradient (w)
    assert y.grad_fn.inputs == (x, None) and z.grad_fn.inputs == (y.grad_fn,)
    assert y._op == "mul" and z._op == "sum" and y.grad_fn.op == "mul" and x.grad_fn is None
    assert "op=mul" in repr(y)


def test_no_graph_without_requires_grad():
    x = mv.tensor(np.ones(3))
    y = (x * 2).exp()
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None
    with pytest.raises(RuntimeError, match="backward: this tensor does not require grad"):
        y.sum().backward()


def test_gradient_of_a_small_expression_by_hand():
    # f = sum(x * w + x^2) -> df/dx = w + 2x, df/dw = x
    x, w = leaf([1.0, -2.0]), leaf([3.0, 0.5])
    (x * w + x ** 2).sum().backward()
    np.testing.assert_allclose(x.grad, [3 + 2, 0.5 - 4])
    np.testing.assert_allclose(w.grad, [1.0, -2.0])
    assert x.grad.dtype == np.float64 and x.grad.shape == (2,)


def test_gradients_accumulate_on_leaves_across_backward_calls():
    x = leaf([1.0, 2.0, 3.0])
    (x * 2).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 + 2 * np.array([1.0, 2.0, 3.0]))
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0, 3.0])


def test_leaf_grad_is_a_copy_not_the_upstream_array():
    x = leaf([1.0, 2.0])
    g = np.array([5.0, 6.0])
    x.backward(g)
    g[0] = 100.0
    np.testing.assert_allclose(x.grad, [5.0, 6.0])


def test_diamond_graph_sums_both_paths():
    # x -> a = 2x, b = x^2 -> c = a * b = 2 x^3: dc/dx = 6 x^2 (both paths through x summed)
    x = leaf([0.5, -1.5, 2.0])
    a, b = x * 2, x ** 2
    c = a * b
    u = np.array([1.0, -2.0, 0.25])
    c.backward(u)
    np.testing.assert_allclose(x.grad, u * 6 * x.numpy() ** 2, rtol=1e-14)


def test_same_tensor_twice_in_one_op_and_deep_reuse():
    x = leaf([3.0])
    y = x * x  # both parents are x
    for _ in range(3):
        y = y + x  # x^2 + 3x
    y.backward()
    np.testing.assert_allclose(x.grad, [2 * 3.0 + 3])


def test_long_chain_does_not_hit_the_recursion_limit():
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_broadcasting_gradients_are_summed_back_to_each_shape():
    rng = np.random.default_rng(0)
    shapes = [((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((5, 1), (1, 6)), ((3,), ()), ((1, 1, 2), (2, 3, 2))]
    for sa, sb in shapes:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        for op in (lambda p, q: p + q, lambda p, q: p - q, lambda p, q: p * q, lambda p, q: p / q):
            ta, tb = leaf(a), leaf(b)
            out = op(ta, tb)
            g = rng.standard_normal(out.shape)
            out.backward(g)
            ra, rb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
            op(ra, rb).backward(torch.tensor(g))
            assert ta.grad.shape == sa and tb.grad.shape == sb
            np.testing.assert_allclose(ta.grad, ra.grad.numpy(), rtol=1e-12)
            np.testing.assert_allclose(tb.grad, rb.grad.numpy(), rtol=1e-12)


def test_python_numbers_and_arrays_mix_with_tensors():
    x = leaf([1.0, 2.0])
    y = 3.0 - x
    z = 2 / x
    w = np.array([1.0, 10.0]) * x  # ndarray on the left still makes a Tensor (__array_priority__)
    v = np.ones((1, 2)) @ x
    assert all(isinstance(t, mv.Tensor) for t in (y, z, w, v))
    (y.sum() + z.sum() + w.sum() + v.sum()).backward()
    np.testing.assert_allclose(x.grad, -1 - 2 / np.array([1.0, 4.0]) + np.array([1.0, 10.0]) + 1)


def test_the_graph_does_not_keep_intermediate_results_alive():
    """Nodes hold shapes and closures, not results: a conv output under a ReLU (which saves its own
    output) is freed as soon as the forward pass drops it, as in PyTorch; the gradients are unchanged."""
    import gc
    import weakref

    rng = np.random.default_rng(0)
    x = leaf(rng.standard_normal((2, 3, 8, 8)))
    w = leaf(rng.standard_normal((4, 3, 3, 3)))
    conv_out = mv.F.conv2d(x, w, padding=1)
    probe = weakref.ref(conv_out.data)
    y = mv.F.relu(conv_out)
    del conv_out
    gc.collect()
    assert probe() is None  # nothing in the graph held the conv's output
    (y * y).sum().backward()
    xt, wt = torch.tensor(x.data, requires_grad=True), torch.tensor(w.data, requires_grad=True)
    yt = torch.relu(torch.nn.functional.conv2d(xt, wt, padding=1))
    (yt * yt).sum().backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.grad, wt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_retain_grad_still_reaches_an_intermediate_through_the_node_graph():
    x = leaf([1.0, -2.0, 3.0])
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)  # dL/dh = 2h
    np.testing.assert_allclose(x.grad, 8 * x.data)


# ----------------------------------------------------------------------------- no_grad / detach
def test_no_grad_and_enable_grad():
    x = leaf([1.0, 2.0])
    assert mv.is_grad_enabled()
    with mv.no_grad():
        assert not mv.is_grad_enabled()
        y = x * 2
        with mv.enable_grad():
            assert mv.is_grad_enabled()
            z = x * 3
        assert not mv.is_grad_enabled()
    assert mv.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(KeyError), mv.no_grad():
        raise KeyError("inside no_grad")
    assert mv.is_grad_enabled()


def test_detach_cuts_the_graph_and_shares_data():
    x = leaf([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * d  # d is a constant now: dy/dx = d
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    e = x.detach()
    assert np.shares_memory(e.data, x.data)


def test_requires_grad_flag_only_on_leaves():
    x = mv.tensor(np.ones(2))
    assert x.requires_grad_() is x and x.requires_grad
    y = x * 2
    with pytest.raises(RuntimeError, match="requires_grad_: only leaf tensors"):
        y.requires_grad_(False)


# ----------------------------------------------------------------------------- retain_grad / intermediate backward
def test_intermediates_keep_grad_only_when_retained():
    x = leaf([1.0, -2.0])
    h = x * 3
    h2 = (h * h).retain_grad()
    out = h2.sum() + h.sum()
    out.backward()
    assert h.grad is None  # not retained
    np.testing.assert_allclose(h2.grad, [1.0, 1.0])
    np.testing.assert_allclose(x.grad, 3 * (2 * 3 * x.numpy()) + 3)


def test_backward_from_an_intermediate_with_a_given_gradient():
    # DeepDream/DeconvNet start the backward pass at a layer with a gradient of their choice.
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    h = x * x
    _ = h.sum() * 10  # a later part of the graph is simply ignored
    g = np.array([[1.0, 0.0], [-1.0, 0.5]])
    h.backward(g)
    np.testing.assert_allclose(x.grad, g * 2 * x.numpy())


def test_backward_grad_may_be_a_tensor_and_is_cast_to_the_output_dtype():
    x = leaf([1.0, 2.0], dtype=np.float32)
    y = x * 2
    y.backward(mv.tensor(np.array([1.0, 1.0]), dtype=np.float64))
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


# ----------------------------------------------------------------------------- backward errors
def test_backward_errors():
    x = leaf([1.0, 2.0])
    y = x * 2
    with pytest.raises(ValueError, match=r"backward: grad can be omitted only for a one-element tensor; "
                                         r"this one has shape \(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"backward: grad must have shape \(2,\), got \(3,\)"):
        y.backward(np.ones(3))
    with pytest.raises(ValueError, match=r"backward: grad must have shape \(2,\), got \(1, 2\)"):
        y.backward(np.ones((1, 2)))  # no silent broadcasting of the seed gradient
    with pytest.raises(TypeError, match="grad: expected real numbers"):
        y.backward(np.array(["a", "b"]))
    with pytest.raises(RuntimeError, match="backward: this tensor does not require grad"):
        mv.tensor(np.ones(2)).backward(np.ones(2))


def test_second_backward_needs_retain_graph():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="a second time: the graph was freed .* retain_graph=True"):
        loss.backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])  # the failed call added nothing

    x.zero_grad()
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_scalar_backward_and_item():
    x = leaf([2.0])
    y = (x * 3).sum()
    assert y.shape == () and y.item() == 6.0
    y.backward(1.0)
    np.testing.assert_allclose(x.grad, [3.0])
    with pytest.raises(ValueError, match=r"item: only one-element tensors convert to a number, shape is \(2,\)"):
        leaf([1.0, 2.0]).item()


# ----------------------------------------------------------------------------- dtype policy and mv.tensor
@pytest.mark.parametrize("data,expected", [
    (np.zeros(3, dtype=np.float32), np.float32),
    (np.zeros(3, dtype=np.float64), np.float64),
    (np.zeros(3, dtype=np.float16), np.float32),
    (np.arange(3), np.float32),
    (np.arange(3, dtype=np.uint8), np.float32),
    (np.array([True, False]), np.float32),
    ([1, 2, 3], np.float32),
    ([1.5, 2.5], np.float32),  # Python floats: the default dtype, as in PyTorch
    (2.5, np.float32),
    (np.float64(2.5), np.float64),
])
def test_dtype_policy(data, expected):
    t = mv.tensor(data)
    assert t.dtype == expected
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=expected))


def test_explicit_dtype_and_shapes():
    assert mv.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert mv.tensor(np.ones(2, dtype=np.float64), dtype="float32").dtype == np.float32
    assert mv.tensor(3.0).shape == ()  # a number stays 0-d
    assert mv.tensor([[1.0]]).shape == (1, 1)
    t = mv.tensor(np.ones((3, 4))[:, ::2])  # non-contiguous input is made contiguous
    assert t.data.flags.c_contiguous and t.shape == (3, 2)
    assert mv.tensor(mv.tensor([1.0, 2.0])).shape == (2,)


def test_gradient_dtype_follows_each_input():
    x32, x64 = leaf([1.0, 2.0], np.float32), leaf([3.0, 4.0], np.float64)
    y = x32 * x64  # float32 * float64 -> float64, like NumPy and PyTorch
    assert y.dtype == np.float64
    y.backward(np.ones(2))
    assert x32.grad.dtype == np.float32 and x64.grad.dtype == np.float64
    np.testing.assert_allclose(x32.grad, [3.0, 4.0])
    y = x32 * np.ones(2)  # a float64 array operand takes the tensor's dtype
    assert y.dtype == np.float32


@pytest.mark.parametrize("data,match", [
    ("abc", "data: expected an array, a number or a \\(nested\\) list, got str"),
    (None, "data: expected an array, a number or a \\(nested\\) list, got NoneType"),
    ({"a": 1}, "data: expected an array, a number or a \\(nested\\) list, got dict"),
    (["a", "b"], "data: expected real numbers \\(bool, int or float\\), got dtype <U1"),
    (np.array([1 + 2j]), "data: expected real numbers .*got dtype complex128"),
    (np.array([1, "a"], dtype=object), "data: expected numeric data, got an object array"),
])
def test_tensor_rejects_bad_data(data, match):
    with pytest.raises(TypeError, match=match):
        mv.tensor(data)


def test_tensor_rejects_bad_dtype_and_device():
    with pytest.raises(TypeError, match="data: dtype must be float32 or float64, got int32"):
        mv.tensor([1, 2], dtype=np.int32)
    with pytest.raises(TypeError, match="data: dtype must be float32 or float64, got float16"):
        mv.tensor([1, 2], dtype=np.float16)
    with pytest.raises(TypeError, match="data: dtype must be float32 or float64, got 'floaty'"):
        mv.tensor([1, 2], dtype="floaty")
    with pytest.raises(ValueError, match=r"device: expected one of \('cpu', 'gpu'\), got 'tpu'"):
        mv.tensor([1, 2], device="tpu")
    with pytest.raises(ValueError, match="device: expected one of"):
        mv.tensor([1, 2]).to("cuda")


def test_to_cpu_is_identity_and_numpy_round_trips():
    x = mv.tensor(np.arange(6.0).reshape(2, 3))
    assert x.to("cpu") is x and x.device == "cpu"
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3))
    assert x.size == 6 and x.ndim == 2 and len(x) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not mv.backend.gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_round_trip_is_differentiable():
    x = leaf([1.0, 2.0])
    y = (x.to("gpu") * 3).to("cpu")
    assert y.device == "cpu"
    y.backward(np.ones(2))
    assert x.grad.dtype == np.float64 and type(x.grad) is np.ndarray
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_a_leaf_never_shares_its_gradient_array_with_another_leaf_or_the_caller():
    """A leaf takes a fresh gradient array as it is (no copy), but never one that something else
    holds: the other input of an add, the caller's upstream gradient, a view into a buffer."""
    a, b = mv.tensor(np.ones(3), requires_grad=True), mv.tensor(np.ones(3), requires_grad=True)
    (a + b).backward(np.ones(3))  # add sends one array to both inputs
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 5
    np.testing.assert_array_equal(b.grad, np.ones(3))
    upstream = np.ones((2, 3))
    x = mv.tensor(np.ones((2, 3)), requires_grad=True)
    x.backward(upstream)  # the root is the leaf: its gradient is the caller's array
    assert not np.shares_memory(x.grad, upstream)
    base = np.ones(6)
    y = mv.tensor(np.ones((2, 3)), requires_grad=True)
    y.backward(base.reshape(2, 3))  # a view: its base is someone else's
    assert not np.shares_memory(y.grad, base)
    z = mv.tensor(np.ones((2, 3)), requires_grad=True)
    (z * 2).backward(upstream)
    assert not np.shares_memory(z.grad, upstream)
    np.testing.assert_array_equal(z.grad, 2 * upstream)
