"""Convolution kernels against their plain-NumPy twins (small shapes: also fast under NUMBA_DISABLE_JIT=1)."""

import numpy as np
import pytest

from minivis.kernels import cpu_conv, cpu_layout, cpu_threads

# (x shape, kh, kw, stride, pad4 (top, bottom, left, right), dilation)
GEOMETRIES = [
    ((2, 3, 5, 6), 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 2, 7, 6), 3, 2, (2, 1), (0, 2, 1, 0), (1, 2)),
    ((1, 2, 6, 7), 2, 3, (2, 3), (2, 0, 0, 3), (2, 1)),
    ((1, 3, 4, 4), 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    ((2, 1, 5, 5), 5, 5, (1, 1), (0, 0, 0, 0), (1, 1)),  # kernel as large as the input: 1x1 output
    ((1, 2, 3, 3), 3, 3, (1, 1), (3, 3, 3, 3), (1, 1)),  # padding wider than the image: whole rows of zeros
    # stride 1 with Wo == W takes the whole-plane copy: same padding, dilated, lopsided, taps entirely off
    ((2, 3, 6, 6), 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),
    ((1, 1, 5, 4), 2, 4, (1, 1), (0, 1, 3, 0), (1, 1)),
    ((1, 2, 4, 5), 5, 3, (1, 1), (4, 0, 1, 1), (1, 1)),
    ((1, 2, 4, 5), 5, 3, (1, 1), (0, 4, 0, 2), (1, 1)),
    # column stride > 1 goes through the plane's column phases: AlexNet-like, dilated columns with
    # a wide left pad, and padding wider than the image
    ((1, 2, 13, 23), 11, 11, (4, 4), (2, 2, 2, 2), (1, 1)),
    ((2, 1, 7, 9), 3, 3, (2, 2), (1, 0, 3, 2), (1, 2)),
    ((1, 1, 3, 3), 3, 3, (1, 2), (3, 3, 4, 4), (1, 1)),
]


def _out_hw(x_shape, kh, kw, stride, pad4, dilation):
    return (cpu_conv.output_size(x_shape[2], kh, stride[0], pad4[0], pad4[1], dilation[0]),
            cpu_conv.output_size(x_shape[3], kw, stride[1], pad4[2], pad4[3], dilation[1]))


@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_and_col2im_match_naive(geometry, dtype, twin, rng, monkeypatch):
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 1 << 60 if twin == "serial" else 0)
    x_shape, kh, kw, stride, pad4, dilation = geometry
    out_hw = _out_hw(x_shape, kh, kw, stride, pad4, dilation)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = cpu_conv.im2col(x, kh, kw, stride, pad4, dilation, out_hw)
    assert cols.dtype == dtype and cols.shape == (x_shape[0], x_shape[1] * kh * kw, out_hw[0] * out_hw[1])
    np.testing.assert_array_equal(cols, cpu_conv.naive_im2col(x, kh, kw, stride, pad4, dilation, out_hw))

    c = rng.standard_normal(cols.shape).astype(dtype)
    back = cpu_conv.col2im(c, x_shape, kh, kw, stride, pad4, dilation, out_hw)
    assert back.dtype == dtype and back.shape == x_shape
    expected = cpu_conv.naive_col2im(c, x_shape, kh, kw, stride, pad4, dilation, out_hw)
    np.testing.assert_allclose(back, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    if dtype == np.float64:
        np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-12)


@pytest.mark.parametrize("parallel", [True, False])
def test_col2im_accumulate_adds_onto_the_output(parallel, rng):
    """Row bands of a large image each add their share into the whole image (``kernels/conv_plan.py``)."""
    x_shape, kh, kw, stride, pad4, dilation = GEOMETRIES[0]
    out_hw = _out_hw(x_shape, kh, kw, stride, pad4, dilation)
    c = rng.standard_normal((x_shape[0], x_shape[1] * kh * kw, out_hw[0] * out_hw[1]))
    before = rng.standard_normal(x_shape)
    out = before.copy()
    cpu_conv.col2im(c, x_shape, kh, kw, stride, pad4, dilation, out_hw, out=out, parallel=parallel, accumulate=True)
    np.testing.assert_allclose(out, before + cpu_conv.naive_col2im(c, x_shape, kh, kw, stride, pad4, dilation,
                                                                   out_hw), rtol=1e-12, atol=1e-12)


def test_im2col_with_fewer_output_positions_than_the_formula(rng):
    """Transposed conv with output_padding >= stride asks for a smaller (Ho, Wo) than the formula gives."""
    x = rng.standard_normal((1, 2, 6, 6))
    args = (3, 3, (1, 1), (1, 1, 1, 1), (2, 2), (3, 4))
    np.testing.assert_array_equal(cpu_conv.im2col(x, *args), cpu_conv.naive_im2col(x, *args))
    c = rng.standard_normal((1, 18, 12))
    np.testing.assert_allclose(cpu_conv.col2im(c, x.shape, *args), cpu_conv.naive_col2im(c, x.shape, *args),
                               rtol=1e-12)


def test_valid_range_solves_the_bounds():
    for n_out in (0, 1, 4, 7):
        for stride in (1, 2, 3):
            for offset in range(-8, 9):
                for size in (1, 3, 6):
                    lo, hi = cpu_layout._valid_range(n_out, stride, offset, size)
                    inside = [o for o in range(n_out) if 0 <= o * stride + offset < size]
                    assert list(range(lo, hi)) == inside, (n_out, stride, offset, size)


def test_naive_conv2d_on_a_hand_worked_example():
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1]
    out = cpu_conv.naive_conv2d(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    np.testing.assert_array_equal(out, [[[[-4.0, -4.0], [-4.0, -4.0]]]])
    # padding one zero on top only, stride 2 along columns, dilation 2 along rows
    out = cpu_conv.naive_conv2d(x, w, (1, 2), (1, 0, 0, 0), (2, 1), 1)
    # rows of the padded input: [0 0 0], [0 1 2], [3 4 5], [6 7 8]; tap (1, 1) reads two rows down
    np.testing.assert_array_equal(out, [[[[0 - 4.0], [0 - 7.0]]]])


@pytest.mark.parametrize("groups", [1, 2])
def test_naive_backward_pieces_are_the_adjoint_and_derivative_of_naive_conv2d(groups, rng):
    stride, pad4, dilation = (2, 1), (1, 0, 2, 1), (1, 2)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((4, 4 // groups, 3, 2))
    out = cpu_conv.naive_conv2d(x, w, stride, pad4, dilation, groups)
    g = rng.standard_normal(out.shape)
    dx = cpu_conv.naive_conv2d_backward_input(g, w, x.shape, stride, pad4, dilation, groups)
    dw = cpu_conv.naive_conv2d_backward_weight(g, x, w.shape, stride, pad4, dilation, groups)
    # conv2d is bilinear: <g, conv(x, w)> == <dx, x> == <dw, w>
    np.testing.assert_allclose(np.vdot(g, out), np.vdot(dx, x), rtol=1e-12)
    np.testing.assert_allclose(np.vdot(g, out), np.vdot(dw, w), rtol=1e-12)
