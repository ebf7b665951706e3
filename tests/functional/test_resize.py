"""interpolate (nearest, bilinear) and pad (constant, reflect, replicate): finite differences,
PyTorch parity (forward and backward), hand-worked examples and bad inputs."""

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.functional.resize import interpolation_matrix, nearest_indices
from tests.gradcheck import check_gradients

TOL = {np.float64: dict(rtol=1e-7, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-5)}

# (H_in, W_in) -> size, covering up/down-sampling, 1x (PyTorch copies), 2x (special-cased), 1-pixel sides
SIZE_CASES = [((4, 5), (8, 10)), ((5, 4), (3, 7)), ((7, 7), (224 // 16, 5)), ((3, 3), (3, 3)),
              ((1, 4), (3, 1)), ((6, 9), (4, 4)), ((10, 6), (6, 10))]
SCALE_CASES = [((4, 5), 2.0), ((5, 5), 1.3), ((6, 4), 0.5), ((7, 3), (2.5, 0.7)), ((3, 4), 2.2), ((9, 9), 1 / 3)]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


def _torch_interpolate(x, grad, **kwargs):
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, **kwargs)
    yt.backward(torch.tensor(grad))
    return yt.detach().numpy(), xt.grad.numpy()


def _ours(fn, x, grad, **kwargs):
    xm = mv.tensor(x, requires_grad=True)
    y = fn(xm, **kwargs)
    y.backward(grad)
    return y.numpy(), xm.grad


# ----------------------------------------------------------------------------- interpolate
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("in_size,size", SIZE_CASES)
def test_interpolate_size_matches_torch(rng, dtype, mode, align_corners, in_size, size):
    x = rng.standard_normal((2, 3, *in_size)).astype(dtype)
    kwargs = dict(size=size, mode=mode, align_corners=align_corners)
    with torch.no_grad():
        out_shape = torch.nn.functional.interpolate(torch.tensor(x), **kwargs).shape
    grad = rng.standard_normal(out_shape).astype(dtype)
    ref_y, ref_g = _torch_interpolate(x, grad, **kwargs)
    y, g = _ours(mv.F.interpolate, x, grad, **kwargs)
    assert y.dtype == dtype and g.dtype == dtype
    np.testing.assert_allclose(y, ref_y, **TOL[dtype])
    np.testing.assert_allclose(g, ref_g, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("in_size,scale_factor", SCALE_CASES)
def test_interpolate_scale_factor_matches_torch(rng, dtype, mode, align_corners, in_size, scale_factor):
    # PyTorch samples at 1/scale_factor (not H_in/H_out) when a scale factor is given: 5 -> 6 at 1.3
    x = rng.standard_normal((1, 2, *in_size)).astype(dtype)
    kwargs = dict(scale_factor=scale_factor, mode=mode, align_corners=align_corners)
    with torch.no_grad():
        out_shape = torch.nn.functional.interpolate(torch.tensor(x), **kwargs).shape
    grad = rng.standard_normal(out_shape).astype(dtype)
    ref_y, ref_g = _torch_interpolate(x, grad, **kwargs)
    y, g = _ours(mv.F.interpolate, x, grad, **kwargs)
    assert y.shape == ref_y.shape
    np.testing.assert_allclose(y, ref_y, **TOL[dtype])
    np.testing.assert_allclose(g, ref_g, **TOL[dtype])


@pytest.mark.parametrize("n_in", [3, 7, 21, 65])
def test_nearest_indices_match_torch_on_every_size(n_in):
    # Exhaustive over output sizes, including ones where dst * scale lands exactly on a pixel boundary
    # and float32 rounding decides (65 -> 55: output 11 reads input 12).
    x = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, 1, n_in)
    for n_out in range(1, 3 * n_in):
        ref = torch.nn.functional.interpolate(x, size=(1, n_out), mode="nearest").flatten().long().numpy()
        np.testing.assert_array_equal(nearest_indices(n_in, n_out), ref, err_msg=f"{n_in} -> {n_out}")


@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("in_size,size", [((3, 4), (5, 7)), ((4, 4), (2, 3)), ((2, 3), (4, 6))])
def test_interpolate_finite_differences(rng, mode, align_corners, in_size, size):
    x = rng.standard_normal((2, 2, *in_size))
    check_gradients(lambda t: mv.F.interpolate(t, size=size, mode=mode, align_corners=align_corners), [x], rng)


def test_interpolate_finite_differences_random_directions(rng):
    x = rng.standard_normal((2, 3, 9, 11))  # > 400 elements: random-direction check
    check_gradients(lambda t: mv.F.interpolate(t, scale_factor=1.7, mode="bilinear"), [x], rng)


def test_bilinear_by_hand():
    # 1 x 2 -> 1 x 4, half-pixel centres: source x = (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25
    x = mv.tensor(np.array([[[[0.0, 4.0]]]]), requires_grad=True)
    y = mv.F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(y.numpy().ravel(), [0.0, 1.0, 3.0, 4.0])
    y.backward(np.array([[[[1.0, 10.0, 100.0, 1000.0]]]]))
    # each output sends its gradient to its two sources with the same weights
    np.testing.assert_allclose(x.grad.ravel(), [1 + 7.5 + 25, 2.5 + 75 + 1000])
    # corners aligned: 0, 1/3, 2/3, 1 of the way
    y = mv.F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(y.numpy().ravel(), [0.0, 4 / 3, 8 / 3, 4.0])


def test_nearest_by_hand():
    # 3 -> 5: src = floor(d * 3/5) = 0, 0, 1, 1, 2
    x = mv.tensor(np.array([[[[1.0, 2.0, 3.0]]]]), requires_grad=True)
    y = mv.F.interpolate(x, size=(1, 5))
    np.testing.assert_array_equal(y.numpy().ravel(), [1, 1, 2, 2, 3])
    y.backward(np.ones((1, 1, 1, 5)))
    np.testing.assert_array_equal(x.grad.ravel(), [2, 2, 1])  # the backward counts the copies


def test_nearest_copies_inf_and_nan_exactly():
    x = np.array([[[[np.inf, np.nan], [1.0, -np.inf]]]])
    y = mv.F.interpolate(mv.tensor(x), scale_factor=2)
    np.testing.assert_array_equal(y.numpy(), np.repeat(np.repeat(x, 2, axis=2), 2, axis=3))


def test_interpolation_matrix_rows_sum_to_one():
    for mode, corners in [("nearest", False), ("bilinear", False), ("bilinear", True)]:
        for n_in, n_out in [(1, 5), (5, 1), (7, 3), (3, 7), (6, 6)]:
            a = interpolation_matrix(n_in, n_out, mode, corners, dtype=np.float64)
            assert a.shape == (n_out, n_in)
            np.testing.assert_allclose(a.sum(axis=1), 1.0)
            assert a.min() >= 0


def test_interpolate_accepts_arrays_and_keeps_no_graph():
    x = np.ones((1, 1, 2, 2), dtype=np.float32)
    y = mv.F.interpolate(x, size=3, mode="bilinear")
    assert y.shape == (1, 1, 3, 3) and not y.requires_grad
    np.testing.assert_allclose(y.numpy(), 1.0)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(size=4, mode="bicubic"), ValueError, r"interpolate: mode must be one of .*got 'bicubic'"),
    (dict(size=4, align_corners=True), ValueError, r"interpolate: align_corners applies only to mode='bilinear'"),
    (dict(size=4, mode="bilinear", align_corners=1), TypeError, r"interpolate: align_corners must be a bool"),
    (dict(), ValueError, r"interpolate: give exactly one of size and scale_factor, got size=None"),
    (dict(size=4, scale_factor=2), ValueError, r"interpolate: give exactly one of size and scale_factor"),
    (dict(size=0), ValueError, r"interpolate: size must be >= 1, got 0"),
    (dict(size=(2, 3, 4)), TypeError, r"interpolate: size must be an int or a pair of ints, got \(2, 3, 4\)"),
    (dict(size=2.5), TypeError, r"interpolate: size must be an int or a pair of ints, got 2.5"),
    (dict(scale_factor=-2), ValueError, r"interpolate: scale_factor must be positive and finite, got -2"),
    (dict(scale_factor="2"), TypeError, r"interpolate: scale_factor must be a number or a pair of numbers"),
    (dict(scale_factor=0.1), ValueError, r"interpolate: scale_factor=0.1 turns input size \(4, 5\) into an empty"),
])
def test_interpolate_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mv.F.interpolate(mv.tensor(np.zeros((1, 2, 4, 5))), **kwargs)


def test_interpolate_bad_input():
    with pytest.raises(ValueError, match=r"interpolate: input must be 4-D \(N, C, H, W\), got shape \(2, 4, 5\)"):
        mv.F.interpolate(mv.tensor(np.zeros((2, 4, 5))), size=3)
    with pytest.raises(TypeError, match="interpolate: input must be a Tensor or an array, got list"):
        mv.F.interpolate([[[[1.0]]]], size=3)
    with pytest.raises(TypeError, match="interpolate: input must be a float tensor or array, got dtype <U1"):
        mv.F.interpolate(np.array("a").reshape(1, 1, 1, 1), size=3)


# ----------------------------------------------------------------------------- pad
PAD_CASES = [((2, 3, 4, 5), (1, 2, 3, 0)), ((2, 3, 4, 5), (3, 3, 3, 3)), ((3, 4, 5), (0, 2, 1, 0)),
             ((3, 4, 5), (2, 1)), ((3, 5), (4, 0)), ((1, 1, 2, 2), (0, 0, 0, 0))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("shape,widths", PAD_CASES)
def test_pad_matches_torch(rng, dtype, mode, shape, widths):
    if mode == "reflect" and max(widths) >= min(shape[-2:] if len(widths) == 4 else shape[-1:]):
        pytest.skip("reflect padding must be smaller than the dim (tested in test_pad_bad_arguments)")
    x = rng.standard_normal(shape).astype(dtype)
    value = 0.7 if mode == "constant" else None
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pad(xt, widths, mode=mode, value=value)
    grad = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.tensor(grad))
    y, g = _ours(mv.F.pad, x, grad, pad=widths, mode=mode, value=0.7)
    assert y.dtype == dtype and g.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(g, xt.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_finite_differences(rng, mode):
    check_gradients(lambda t: mv.F.pad(t, (2, 1, 1, 3), mode=mode, value=-1.5), [rng.standard_normal((2, 2, 4, 5))],
                    rng)
    check_gradients(lambda t: mv.F.pad(t, (3, 2), mode=mode), [rng.standard_normal((2, 6))], rng)


def test_pad_by_hand():
    x = mv.tensor(np.array([[1.0, 2.0, 3.0, 4.0]]), requires_grad=True)
    np.testing.assert_array_equal(mv.F.pad(x, (2, 1), value=9).numpy(), [[9, 9, 1, 2, 3, 4, 9]])
    np.testing.assert_array_equal(mv.F.pad(x, (2, 1), "replicate").numpy(), [[1, 1, 1, 2, 3, 4, 4]])
    y = mv.F.pad(x, (2, 1), "reflect")
    np.testing.assert_array_equal(y.numpy(), [[3, 2, 1, 2, 3, 4, 3]])
    y.backward(np.array([[1.0, 10.0, 100.0, 1000.0, 1e4, 1e5, 1e6]]))
    # x[1] is copied once into the left band, x[2] once into each band
    np.testing.assert_array_equal(x.grad, [[100, 1000 + 10, 1e4 + 1 + 1e6, 1e5]])


@pytest.mark.parametrize("args,kwargs,error,match", [
    (((1, 2, 3),), {}, TypeError, r"pad: pad must be 2 ints \(left, right\) or 4 ints .*got \(1, 2, 3\)"),
    ((1,), {}, TypeError, r"pad: pad must be 2 ints"),
    (((1.0, 2),), {}, TypeError, r"pad: pad must be 2 ints"),
    (((1, -1),), {}, ValueError, r"pad: pad widths must be >= 0, got \(1, -1\)"),
    (((1, 1),), dict(mode="circular"), ValueError, r"pad: mode must be one of .*got 'circular'"),
    (((1, 1),), dict(value="0"), TypeError, r"pad: value must be a number, got str"),
    (((4, 0),), dict(mode="reflect"), ValueError,
     r"pad: reflect padding must be smaller than the padded dim, got pad \(4, 0\) for dim 2 of size 4"),
])
def test_pad_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        mv.F.pad(mv.tensor(np.zeros((2, 3, 4))), *args, **kwargs)


def test_pad_bad_input():
    with pytest.raises(ValueError, match=r"pad: a 4-tuple pads the last 2 dims, but the input has only 1"):
        mv.F.pad(mv.tensor(np.zeros(3)), (1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"pad: replicate padding needs a non-empty dim"):
        mv.F.pad(mv.tensor(np.zeros((2, 0))), (1, 1), mode="replicate")
    with pytest.raises(TypeError, match="pad: input must be a Tensor or an array, got float"):
        mv.F.pad(1.0, (1, 1))
