"""Tensor math (minivis/functional/math.py): every op against float64 central finite differences and
against PyTorch autograd (forward and backward with a random upstream gradient, float64 and float32),
plus hand-worked cases (max ties, repeated fancy indices) and bad inputs."""

import numpy as np
import pytest
import torch

import minivis as mv
from tests.gradcheck import check_gradients

F = mv.F
TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape, low=0.5, high=2.0):
    return lambda rng: rng.uniform(low, high, shape)


def away_from(points, *shape, margin=0.1):
    """Normal samples kept at least ``margin`` away from each kink in ``points``."""
    def make(rng):
        x = rng.standard_normal(shape)
        for p in points:
            near = np.abs(x - p) < margin
            x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
        return x
    return make


def distinct(*shape):
    """Values at least 0.1 apart, so a max over any axis is stable under the finite-difference steps."""
    return lambda rng: (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.uniform(-0.02, 0.02, shape))


def all_dims(t):
    return tuple(range(t.ndim))


# name: (minivis op, torch op, input makers)
CASES = {
    "add_broadcast": (F.add, torch.add, [normal(2, 3, 4), normal(3, 1)]),
    "add_scalar_tensor": (F.add, torch.add, [normal(2, 3), normal()]),
    "sub_broadcast": (F.sub, torch.sub, [normal(4), normal(2, 3, 4)]),
    "mul_broadcast": (F.mul, torch.mul, [normal(2, 1, 3), normal(4, 3)]),
    "div_broadcast": (F.div, torch.div, [normal(3, 4), away_from([0.0], 4, margin=0.5)]),
    "neg": (F.neg, torch.neg, [normal(3, 4)]),
    "pow_3": (lambda x: F.pow(x, 3), lambda x: torch.pow(x, 3), [normal(3, 4)]),
    "pow_2.5": (lambda x: x ** 2.5, lambda x: x ** 2.5, [positive(3, 4)]),
    "pow_-1.5": (lambda x: x ** -1.5, lambda x: x ** -1.5, [positive(5)]),
    "pow_0.5": (lambda x: F.pow(x, 0.5), lambda x: x ** 0.5, [positive(2, 3)]),
    "exp": (F.exp, torch.exp, [normal(3, 4)]),
    "log": (F.log, torch.log, [positive(3, 4)]),
    "sqrt": (F.sqrt, torch.sqrt, [positive(3, 4)]),
    "abs": (F.abs, torch.abs, [away_from([0.0], 3, 4)]),
    "clip_both": (lambda x: F.clip(x, -0.5, 0.5), lambda x: torch.clamp(x, -0.5, 0.5),
                  [away_from([-0.5, 0.5], 4, 5)]),
    "clip_low": (lambda x: x.clip(0.2), lambda x: torch.clamp(x, min=0.2), [away_from([0.2], 4, 5)]),
    "clip_high": (lambda x: F.clip(x, high=-0.1), lambda x: torch.clamp(x, max=-0.1), [away_from([-0.1], 4, 5)]),
    "sum_all": (F.sum, torch.sum, [normal(2, 3, 4)]),
    "sum_axis": (lambda x: F.sum(x, 1), lambda x: torch.sum(x, 1), [normal(2, 3, 4)]),
    "sum_axes_keepdims": (lambda x: x.sum(axis=(0, 2), keepdims=True),
                          lambda x: x.sum(dim=(0, 2), keepdim=True), [normal(2, 3, 4)]),
    "sum_negative_axis": (lambda x: x.sum(-1), lambda x: x.sum(-1), [normal(2, 3, 4)]),
    "mean_all": (F.mean, torch.mean, [normal(2, 3, 4)]),
    "mean_axis": (lambda x: F.mean(x, 2), lambda x: torch.mean(x, 2), [normal(2, 3, 4)]),
    "mean_axes_keepdims": (lambda x: x.mean(axis=(0, -1), keepdims=True),
                           lambda x: x.mean(dim=(0, -1), keepdim=True), [normal(2, 3, 4)]),
    "max_all": (F.max, lambda x: torch.amax(x, dim=all_dims(x)), [distinct(2, 3, 4)]),
    "max_axis": (lambda x: F.max(x, 1), lambda x: torch.amax(x, 1), [distinct(2, 3, 4)]),
    "max_axes_keepdims": (lambda x: x.max(axis=(0, 2), keepdims=True),
                          lambda x: torch.amax(x, (0, 2), keepdim=True), [distinct(2, 3, 4)]),
    "reshape": (lambda x: F.reshape(x, (4, -1)), lambda x: x.reshape(4, -1), [normal(2, 3, 4)]),
    "reshape_method": (lambda x: x.reshape(3, 8), lambda x: x.reshape(3, 8), [normal(2, 3, 4)]),
    "flatten": (F.flatten, torch.flatten, [normal(2, 3, 4)]),
    "flatten_from_1": (lambda x: x.flatten(1), lambda x: torch.flatten(x, 1), [normal(2, 3, 4)]),
    "flatten_0_1": (lambda x: F.flatten(x, 0, 1), lambda x: torch.flatten(x, 0, 1), [normal(2, 3, 4)]),
    "transpose_axes": (lambda x: F.transpose(x, (2, 0, 1)), lambda x: x.permute(2, 0, 1), [normal(2, 3, 4)]),
    "transpose_method": (lambda x: x.transpose(1, 0, 2), lambda x: x.permute(1, 0, 2), [normal(2, 3, 4)]),
    "transpose_T": (lambda x: x.T, lambda x: x.permute(2, 1, 0), [normal(2, 3, 4)]),
    "getitem_slices": (lambda x: x[1:, ::2], lambda x: x[1:, ::2], [normal(3, 5, 2)]),
    "getitem_int_ellipsis": (lambda x: x[..., 1], lambda x: x[..., 1], [normal(3, 5, 2)]),
    "getitem_newaxis": (lambda x: x[:, None, 0], lambda x: x[:, None, 0], [normal(3, 5, 2)]),
    "getitem_fancy_repeats": (lambda x: x[[0, 2, 0, 0, 1]], lambda x: x[[0, 2, 0, 0, 1]], [normal(3, 4)]),
    "getitem_fancy_pairs": (lambda x: x[[0, 1, 1, 0], [2, 2, 0, 2]], lambda x: x[[0, 1, 1, 0], [2, 2, 0, 2]],
                            [normal(3, 4)]),
    "getitem_fancy_axis1": (lambda x: x[:, [3, 3, 0]], lambda x: x[:, [3, 3, 0]], [normal(2, 4, 3)]),
    "getitem_mask": (lambda x: x[np.array([True, False, True])], lambda x: x[torch.tensor([True, False, True])],
                     [normal(3, 4)]),
    "concat_axis0": (lambda a, b, c: F.concat([a, b, c]), lambda a, b, c: torch.cat([a, b, c]),
                     [normal(2, 3), normal(1, 3), normal(4, 3)]),
    "concat_last_axis": (lambda a, b: F.concat([a, b], axis=-1), lambda a, b: torch.cat([a, b], -1),
                         [normal(2, 3, 1), normal(2, 3, 5)]),
    "matmul_2d": (F.matmul, torch.matmul, [normal(3, 4), normal(4, 5)]),
    "matmul_batched": (F.matmul, torch.matmul, [normal(2, 3, 4), normal(2, 4, 5)]),
    "matmul_broadcast_batch": (F.matmul, torch.matmul, [normal(2, 1, 3, 4), normal(3, 4, 2)]),
    "matmul_batched_by_matrix": (lambda a, b: a @ b, torch.matmul, [normal(2, 3, 4), normal(4, 5)]),
    "matmul_vec_mat": (F.matmul, torch.matmul, [normal(4), normal(4, 5)]),
    "matmul_mat_vec": (F.matmul, torch.matmul, [normal(3, 4), normal(4)]),
    "matmul_vec_vec": (F.matmul, torch.matmul, [normal(4), normal(4)]),
    "matmul_batched_vec": (F.matmul, torch.matmul, [normal(2, 3, 4), normal(4)]),
    "matmul_vec_batched": (F.matmul, torch.matmul, [normal(4), normal(2, 4, 3)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_finite_differences(rng, name):
    op, _, makers = CASES[name]
    check_gradients(op, [make(rng) for make in makers], rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(rng, name, dtype):
    op, torch_op, makers = CASES[name]
    arrays = [np.asarray(make(rng), dtype=dtype) for make in makers]
    ours = [mv.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = op(*ours), torch_op(*theirs)
    assert out.shape == tuple(ref.shape) and out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL[dtype])
    upstream = rng.standard_normal(out.shape).astype(dtype)
    out.backward(upstream)
    ref.backward(torch.tensor(upstream))
    for t, r in zip(ours, theirs, strict=True):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        np.testing.assert_allclose(t.grad, r.grad.numpy(), **TOL[dtype])


# ----------------------------------------------------------------------------- hand-worked cases
def test_max_ties_share_the_gradient_like_torch_amax():
    x = mv.tensor(np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]]), requires_grad=True)
    x.max(axis=1).backward(np.array([1.0, 6.0]))
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5, 0], [2, 2, 2, 0]])
    xt = torch.tensor(x.numpy(), requires_grad=True)
    torch.amax(xt, 1).backward(torch.tensor([1.0, 6.0], dtype=torch.float64))
    np.testing.assert_allclose(x.grad, xt.grad.numpy())


def test_repeated_fancy_indices_accumulate():
    x = mv.tensor(np.arange(4.0), requires_grad=True)
    x[[1, 1, 3, 1]].backward(np.array([1.0, 10.0, 100.0, 1000.0]))
    np.testing.assert_array_equal(x.grad, [0, 1011, 0, 100])


def test_abs_and_clip_at_their_kinks_follow_torch():
    # |x| sends 0 at x = 0 (sign), clamp passes the gradient at the bounds (inclusive)
    x = mv.tensor(np.array([-1.0, 0.0, 0.5, 1.0]), requires_grad=True)
    (F.abs(x) + F.clip(x, 0.0, 0.5)).backward(np.ones(4))
    np.testing.assert_array_equal(x.grad, [-1, 0 + 1, 1 + 1, 1 + 0])


def test_sum_and_mean_gradients_are_writable_arrays():
    x = mv.tensor(np.ones((2, 3)), requires_grad=True)
    x.sum(axis=0).backward(np.ones(3))
    x.grad[0, 0] = 5.0  # not a read-only broadcast view
    assert x.grad[0, 0] == 5.0


def test_matmul_vec_vec_is_a_scalar():
    a, b = mv.tensor([1.0, 2.0], requires_grad=True), mv.tensor([3.0, 4.0], requires_grad=True)
    out = a @ b
    assert out.shape == () and out.item() == 11.0
    out.backward()
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])
    np.testing.assert_array_equal(b.grad, [1.0, 2.0])


def test_only_inputs_that_require_grad_get_one():
    a, b = mv.tensor(np.ones((2, 3)), requires_grad=True), mv.tensor(np.ones((3, 2)))
    (a @ b).sum().backward()
    assert b.grad is None and a.grad.shape == (2, 3)


# ----------------------------------------------------------------------------- bad inputs
def x23():
    return mv.tensor(np.ones((2, 3)))


BINARY = ["add", "sub", "mul", "div", "matmul"]


@pytest.mark.parametrize("call,error,match", [
    (lambda: F.add(1.0, 2.0), TypeError, "add: expected at least one Tensor operand, got float and float"),
    (lambda: F.pow(x23(), x23()), TypeError, "pow: exponent must be a number, got Tensor"),
    (lambda: F.pow(x23(), "2"), TypeError, "pow: exponent must be a number, got str"),
    (lambda: F.clip(x23()), ValueError, "clip: give at least one of low and high"),
    (lambda: F.clip(x23(), 1.0, 0.0), ValueError, "clip: low must be <= high, got low=1.0, high=0.0"),
    (lambda: F.sum(x23(), 2), ValueError, "sum: axis 2 is out of range for a tensor with 2 dims"),
    (lambda: F.mean(x23(), (0, -3)), ValueError, "mean: axis -3 is out of range for a tensor with 2 dims"),
    (lambda: F.max(x23(), 5), ValueError, "max: axis 5 is out of range"),
    (lambda: F.max(mv.tensor(np.ones((0, 3)))), ValueError, "max: the tensor is empty"),
    (lambda: F.reshape(x23(), (4, 2)), ValueError, r"reshape: cannot reshape a tensor of shape \(2, 3\) into \(4, 2\)"),
    (lambda: F.flatten(x23(), 1, 0), ValueError, r"flatten: start_dim \(1\) must not come after end_dim \(0\)"),
    (lambda: F.flatten(x23(), 2), ValueError, "flatten: start_dim 2 is out of range"),
    (lambda: F.transpose(x23(), (0, 0)), ValueError, r"transpose: axes must be a permutation of 0..1, got \(0, 0\)"),
    (lambda: F.transpose(x23(), (0, 3)), ValueError, r"transpose: axes must be a permutation of 0..1, got \(0, 3\)"),
    (lambda: F.getitem(x23(), mv.tensor([0])), TypeError, "getitem: index with an integer array, not a Tensor"),
    (lambda: F.concat([]), ValueError, "concat: expected a non-empty list of tensors"),
    (lambda: F.concat([x23(), mv.tensor(np.ones((2, 4)))]), ValueError,
     r"concat: shapes \[\(2, 3\), \(2, 4\)\] do not match off axis 0"),
    (lambda: F.concat([x23(), x23()], axis=2), ValueError, "concat: axis 2 is out of range for a tensor with 2 dims"),
    (lambda: F.matmul(x23(), x23()), ValueError, r"matmul: inner dims differ: \(2, 3\) @ \(2, 3\)"),
    (lambda: F.matmul(x23(), mv.tensor(2.0)), ValueError, "matmul: both operands need at least 1 dim"),
    (lambda: F.matmul(mv.tensor(np.ones((2, 2, 3))), mv.tensor(np.ones((3, 3, 4)))), ValueError,
     r"matmul: batch dims do not broadcast: \(2, 2, 3\) @ \(3, 3, 4\)"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# Hostile axes, shapes, indices and operands: each once gave an IndexError, a NumPy error or a Python
# TypeError without the op's name ("'float' object is not iterable", "data: expected ...").
@pytest.mark.parametrize("call,error,match", [
    (lambda: F.getitem(x23(), 5), ValueError,
     r"getitem: index 5 does not fit a tensor of shape \(2, 3\): index 5 is out of bounds"),
    (lambda: F.getitem(x23(), (0, 1, 2)), ValueError, r"getitem: index \(0, 1, 2\) does not fit .*too many indices"),
    (lambda: F.getitem(x23(), "a"), ValueError, "getitem: index 'a' does not fit a tensor of shape"),
    (lambda: F.getitem(x23(), 2**63), ValueError, "getitem: index 9223372036854775808 does not fit"),
    (lambda: F.getitem(x23(), np.zeros(1)), ValueError, "getitem: index .* does not fit .*integer"),
    (lambda: F.flatten(x23(), []), TypeError, r"flatten: start_dim must be an int, got \[\]"),
    (lambda: F.flatten(x23(), 0, "a"), TypeError, "flatten: end_dim must be an int, got 'a'"),
    (lambda: mv.nn.Flatten(start_dim=[])(x23()), TypeError, r"flatten: start_dim must be an int, got \[\]"),
    (lambda: F.concat([x23(), x23()], []), TypeError, r"concat: axis must be an int, got \[\]"),
    (lambda: F.concat(True), TypeError, "concat: tensors must be a list of tensors, got bool"),
    (lambda: F.concat(np.zeros(0)), TypeError, "concat: tensors must be a list of tensors, got ndarray"),
    (lambda: F.concat([x23(), None]), TypeError, r"concat: tensors\[1\]: expected an array, .*got NoneType"),
    (lambda: F.sum(x23(), "a"), TypeError, "sum: axis must be an int, a tuple of ints or None, got 'a'"),
    (lambda: F.mean(x23(), float("nan")), TypeError, "mean: axis must be an int, a tuple of ints or None, got nan"),
    (lambda: F.max(x23(), True), TypeError, "max: axis must be an int, a tuple of ints or None, got True"),
    (lambda: F.sum(x23(), (1, -1)), ValueError, r"sum: axis names an axis twice, got \(1, -1\)"),
    (lambda: F.sum(x23(), 1, None), TypeError, "sum: keepdims must be True or False, got None"),
    (lambda: F.mean(x23(), 1, 10**30), TypeError, "mean: keepdims must be True or False, got 1000000000000000000"),
    (lambda: F.max(x23(), 1, np.zeros(0)), TypeError, "max: keepdims must be True or False, got array"),
    (lambda: F.transpose(x23(), True), TypeError, "transpose: axes must be None or a tuple of ints, got True"),
    (lambda: F.transpose(x23(), np.zeros(0)), TypeError, "transpose: axes must be None or a tuple of ints, got array"),
    (lambda: F.transpose(x23(), -1), ValueError, r"transpose: axes must be a permutation of 0..1, got \(-1,\)"),
    (lambda: F.reshape(x23(), None), TypeError, "reshape: shape must be an int or a tuple of ints, got None"),
    (lambda: F.reshape(x23(), (2.0, 3)), TypeError,
     r"reshape: shape must be an int or a tuple of ints, got \(2.0, 3\)"),
    (lambda: F.reshape(x23(), True), TypeError, "reshape: shape must be an int or a tuple of ints, got True"),
    *[(lambda op=op: getattr(F, op)(x23(), None), TypeError,
       rf"{op}: b: expected an array, a number or a \(nested\) list, got NoneType") for op in BINARY],
    *[(lambda op=op: getattr(F, op)(np.ones((2, 3), np.complex64), x23()), TypeError,
       rf"{op}: a: expected real numbers \(bool, int or float\), got dtype complex64") for op in BINARY],
    *[(lambda op=op: getattr(F, op)(x23(), np.ones((2, 3), object)), TypeError,
       f"{op}: b: expected numeric data, got an object array") for op in BINARY],
    *[(lambda op=op: getattr(F, op)(x23(), np.ones((0, 3))), ValueError,
       rf"{op}: shapes \(2, 3\) and \(0, 3\) do not broadcast") for op in BINARY[:-1]],
])
def test_hostile_arguments_name_the_op(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_tensors_still_iterate_by_rows():
    """Python's fallback iteration stopped at getitem's IndexError; getitem now raises a ValueError,
    so Tensor.__iter__ spells the iteration out."""
    rows = list(mv.tensor(np.arange(6.0).reshape(3, 2)))
    assert len(rows) == 3 and all(isinstance(r, mv.Tensor) for r in rows)
    np.testing.assert_array_equal(rows[2].numpy(), [4.0, 5.0])
    a, b = mv.tensor([1.0, 2.0])
    assert (a.item(), b.item()) == (1.0, 2.0)
    with pytest.raises(TypeError, match="iter: a 0-d tensor has no rows"):
        list(mv.tensor(1.0))


@pytest.mark.parametrize("name", ["neg", "exp", "log", "sqrt", "abs", "sum", "mean", "max", "flatten", "transpose"])
def test_single_input_ops_reject_non_tensors(name):
    with pytest.raises(TypeError, match=f"{name}: input must be a Tensor or an array, got list"):
        getattr(F, name)([1.0, 2.0])
    with pytest.raises(TypeError, match=f"{name}: input must be a float tensor or array, got dtype <U1"):
        getattr(F, name)(np.array(["a"]))
    assert getattr(F, name)(np.array([1.0, 2.0])).shape in {(2,), ()}  # arrays are taken as constants
