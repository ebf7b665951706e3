"""conv2d and conv_transpose2d: finite differences, PyTorch parity, the adjoint identity, bad input."""

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minivis as mv
from minivis.functional.conv import (
    conv2d,
    conv2d_backward,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
    conv_transpose2d,
    reuse_weight_transforms,
)
from minivis.kernels import conv_plan, cpu_conv, cpu_direct, cpu_simd, cpu_threads, cpu_winograd, cpu_winograd_fused
from minivis.validate import int_pair
from tests.gradcheck import check_gradients

# name -> (x shape, weight shape, kwargs, pad4 that the padding means: (top, bottom, left, right)).
# The kwargs cover every path of the implementation: im2col + GEMM, the no-copy 1x1 path, the
# direct depthwise kernels (multiplier 1 and > 1), grouped GEMMs. The "same" pads are worked
# out by hand from TensorFlow's rule so the test does not reuse the code under test.
CONV_CASES = {
    "3x3 pad 1": ((2, 3, 7, 6), (4, 3, 3, 3), {"padding": 1}, (1, 1, 1, 1)),
    "stride 2 dilation 2": ((2, 4, 9, 8), (6, 4, 3, 3), {"stride": 2, "padding": 2, "dilation": 2}, (2, 2, 2, 2)),
    "asymmetric padding": ((2, 3, 6, 7), (5, 3, 3, 2), {"padding": (0, 2, 1, 3), "stride": (1, 2)}, (0, 2, 1, 3)),
    "pair padding": ((2, 3, 6, 7), (5, 3, 3, 3), {"padding": (2, 0), "dilation": (1, 2)}, (2, 2, 0, 0)),
    # H=8, k=4, s=1: total 3 -> (1, 2); W=7 likewise
    "same, stride 1, even kernel": ((2, 3, 8, 7), (4, 3, 4, 4), {"padding": "same"}, (1, 2, 1, 2)),
    # H=8, s=2: out 4, total 3*2 + 3 - 8 = 1 -> (0, 1); W=7: out 4, total 6 + 3 - 7 = 2 -> (1, 1)
    "same, stride 2": ((2, 3, 8, 7), (4, 3, 3, 3), {"padding": "same", "stride": 2}, (0, 1, 1, 1)),
    # H=9, k=3, d=2, s=2: out 5, total 8 + 5 - 9 = 4 -> (2, 2); W=10: out 5, total 3 -> (1, 2)
    "same, stride 2, dilation 2": ((1, 2, 9, 10), (3, 2, 3, 3), {"padding": "same", "stride": 2, "dilation": 2},
                                   (2, 2, 1, 2)),
    "valid": ((2, 2, 6, 6), (3, 2, 3, 3), {"padding": "valid"}, (0, 0, 0, 0)),
    "groups 2": ((2, 4, 7, 7), (6, 2, 3, 3), {"groups": 2, "padding": 1}, (1, 1, 1, 1)),
    "depthwise": ((2, 5, 7, 7), (5, 1, 3, 3), {"groups": 5, "padding": 1}, (1, 1, 1, 1)),
    "depthwise x2, stride 2": ((2, 3, 8, 8), (6, 1, 3, 3), {"groups": 3, "stride": 2, "padding": (1, 0)},
                               (1, 1, 0, 0)),
    "depthwise 5x5, dilation 2": ((2, 4, 9, 9), (4, 1, 5, 5), {"groups": 4, "dilation": 2,
                                                              "padding": (2, 3, 4, 1)}, (2, 3, 4, 1)),
    "depthwise same stride 2": ((2, 4, 9, 8), (4, 1, 3, 3), {"groups": 4, "stride": 2, "padding": "same"},
                                (1, 1, 0, 1)),
    # H=11, k=5, s=2: out 6, total 10 + 5 - 11 = 4 -> (2, 2); W=12: out 6, total 3 -> (1, 2) (EfficientNet-Lite0)
    "depthwise 5x5 same stride 2": ((2, 3, 11, 12), (3, 1, 5, 5), {"groups": 3, "stride": 2, "padding": "same"},
                                    (2, 2, 1, 2)),
    "1x1": ((2, 6, 5, 5), (4, 6, 1, 1), {}, (0, 0, 0, 0)),
    "1x1 stride 2": ((2, 6, 5, 5), (4, 6, 1, 1), {"stride": 2}, (0, 0, 0, 0)),
    "1x1 groups 3": ((2, 6, 5, 5), (3, 2, 1, 1), {"groups": 3}, (0, 0, 0, 0)),
    "one input channel 5x5": ((3, 1, 9, 9), (4, 1, 5, 5), {}, (0, 0, 0, 0)),
    "kernel covers the input": ((2, 3, 4, 4), (2, 3, 4, 4), {}, (0, 0, 0, 0)),
    "11x11 stride 4": ((1, 3, 27, 27), (4, 3, 11, 11), {"stride": 4, "padding": 2}, (2, 2, 2, 2)),
    "3x3 lopsided padding": ((2, 3, 6, 7), (5, 3, 3, 3), {"padding": (0, 2, 1, 3)}, (0, 2, 1, 3)),
    "3x3 padding wider than the kernel": ((1, 2, 4, 5), (3, 2, 3, 3), {"padding": (3, 0, 0, 4)}, (3, 0, 0, 4)),
}

# name -> (x shape, weight shape (C_in, C_out/groups, kh, kw), kwargs)
TRANSPOSE_CASES = {
    "stride 2 output_padding 1": ((2, 4, 5, 6), (4, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    "groups 2 dilation 2": ((2, 4, 5, 5), (4, 2, 3, 3), {"groups": 2, "dilation": 2, "padding": 1}),
    "depthwise stride 2": ((2, 4, 5, 5), (4, 1, 3, 3), {"groups": 4, "stride": 2, "output_padding": 1}),
    "channel multiplier": ((2, 3, 5, 4), (3, 2, 3, 3), {"groups": 3, "padding": (1, 0)}),
    "output_padding >= stride": ((2, 3, 5, 5), (3, 2, 3, 3), {"dilation": 2, "padding": 1, "output_padding": 1}),
    "asymmetric padding": ((2, 3, 5, 6), (3, 2, 3, 4), {"stride": 2, "padding": (1, 0, 2, 1),
                                                        "output_padding": (1, 0)}),
    "1x1": ((2, 4, 5, 5), (4, 3, 1, 1), {}),
    "3x3 stride 1": ((2, 4, 5, 6), (4, 3, 3, 3), {"padding": (1, 0)}),
    "1x1 stride 2": ((2, 4, 5, 5), (4, 3, 1, 1), {"stride": 2, "output_padding": 1}),
    "mixed": ((1, 4, 4, 5), (4, 2, 3, 3), {"groups": 2, "stride": (2, 3), "padding": (1, 0), "dilation": (1, 2),
                                           "output_padding": (1, 2)}),
}


def _torch_conv2d(x, w, b, kwargs, pad4):
    """PyTorch reference; explicit F.pad for the paddings that torch's conv2d cannot express."""
    kwargs = dict(kwargs)
    padding = kwargs.pop("padding", 0)
    if isinstance(padding, str) or (isinstance(padding, tuple) and len(padding) == 4):
        top, bottom, left, right = pad4
        x = TF.pad(x, (left, right, top, bottom))
        padding = 0
    return TF.conv2d(x, w, b, padding=padding, **kwargs)


def _torch_conv_transpose2d(x, w, b, kwargs):
    """PyTorch reference; 4-tuple padding = full output (padding 0) cropped by (top, bottom, left, right)."""
    kwargs = dict(kwargs)
    padding = kwargs.pop("padding", 0)
    if isinstance(padding, tuple) and len(padding) == 4:
        top, bottom, left, right = padding
        out = TF.conv_transpose2d(x, w, b, padding=0, **kwargs)
        return out[:, :, top:out.shape[2] - bottom, left:out.shape[3] - right]
    return TF.conv_transpose2d(x, w, b, padding=padding, **kwargs)


def _winograd_eligible(w_shape, kwargs):
    return (tuple(w_shape[2:]) == (3, 3) and kwargs.get("stride", 1) in (1, (1, 1))
            and kwargs.get("dilation", 1) in (1, (1, 1)) and kwargs.get("groups", 1) == 1)


def _paths(cases, weight_index=1, reference=False):
    """(case, algorithm) pairs for ``mv.conv_algorithm``: every stride-1 3x3 case runs through
    Winograd (however small; GEMM and fused) and im2col, others through the default rule; every ungrouped case also
    through the direct kernels; ``reference``: and every case through the plain reference path."""
    return [pytest.param(name, path, id=f"{name}-{path}") for name, case in cases.items()
            for path in (("im2col", "winograd", "winograd_fused") if _winograd_eligible(case[weight_index], case[2])
                         else ("auto",))
            + (("direct",) if case[2].get("groups", 1) == 1 else ())
            + (("reference",) if reference else ())]


@pytest.fixture
def winograd_everywhere():
    """Every stride-1 3x3 convolution of the test takes Winograd, however small."""
    with mv.conv_algorithm("winograd"):
        yield


def _parity(ours, theirs, arrays, rng, dtype):
    """Forward and every gradient of ``ours`` vs ``theirs`` with one random upstream gradient."""
    tol = {"rtol": 1e-7, "atol": 1e-10} if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-5}
    mine = [mv.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    ref = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out, expected = ours(*mine), theirs(*ref)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), **tol)
    upstream = rng.standard_normal(expected.shape).astype(dtype)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for name, a, b in zip(("input", "weight", "bias"), mine, ref, strict=True):
        assert a.grad.dtype == dtype, name
        np.testing.assert_allclose(a.grad, b.grad.numpy(), **tol, err_msg=f"gradient of {name}")


# ----------------------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("case", "path"), _paths(CONV_CASES, reference=True))
def test_conv2d_matches_torch(case, path, dtype, rng):
    with mv.conv_algorithm(path):
        x_shape, w_shape, kwargs, pad4 = CONV_CASES[case]
        arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
        _parity(lambda x, w, b: conv2d(x, w, b, **kwargs),
                lambda x, w, b: _torch_conv2d(x, w, b, kwargs, pad4), arrays, rng, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("case", "path"), _paths(TRANSPOSE_CASES, reference=True))
def test_conv_transpose2d_matches_torch(case, path, dtype, rng):
    with mv.conv_algorithm(path):
        x_shape, w_shape, kwargs = TRANSPOSE_CASES[case]
        c_out = w_shape[1] * kwargs.get("groups", 1)
        arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(c_out)]
        _parity(lambda x, w, b: conv_transpose2d(x, w, b, **kwargs),
                lambda x, w, b: _torch_conv_transpose2d(x, w, b, kwargs), arrays, rng, dtype)


def test_same_padding_gives_ceil_of_size_over_stride(rng):
    x = mv.tensor(rng.standard_normal((1, 2, 11, 10)))
    for stride in (1, 2, 3, 4):
        for k in (1, 2, 3, 5):
            out = conv2d(x, rng.standard_normal((3, 2, k, k)), padding="same", stride=stride)
            assert out.shape[2:] == (-(-11 // stride), -(-10 // stride)), (stride, k)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_same_padding_matches_torch_same_at_stride_1(rng):
    """For stride 1 torch supports padding='same' itself (the odd pixel also goes bottom/right)."""
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 4, 3))
    expected = TF.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=(1, 2)).numpy()
    np.testing.assert_allclose(conv2d(x, w, padding="same", dilation=(1, 2)).numpy(), expected, rtol=1e-12)


def test_without_bias_and_with_constant_operands(rng):
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    expected = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    out = conv2d(mv.tensor(x, requires_grad=True), w, padding=1)  # weight is a plain array: a constant
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    out.backward(np.ones(out.shape))
    wt = mv.tensor(w, requires_grad=True)
    out = conv2d(x, wt, padding=1)  # the input is a constant: only the weight gets a gradient
    out.backward(np.ones(out.shape))
    assert wt.grad.shape == w.shape


# ----------------------------------------------------------------------------- finite differences
GRADCHECK_CONV = ["3x3 pad 1", "asymmetric padding", "same, stride 2", "same, stride 2, dilation 2",
                  "groups 2", "depthwise x2, stride 2", "depthwise 5x5, dilation 2", "depthwise 5x5 same stride 2",
                  "1x1 stride 2",
                  "3x3 lopsided padding", "3x3 padding wider than the kernel"]
GRADCHECK_TRANSPOSE = ["stride 2 output_padding 1", "groups 2 dilation 2", "depthwise stride 2",
                       "output_padding >= stride", "asymmetric padding", "3x3 stride 1"]


@pytest.mark.parametrize(("case", "path"), _paths({name: CONV_CASES[name] for name in GRADCHECK_CONV}))
def test_conv2d_gradients_match_finite_differences(case, path, rng):
    with mv.conv_algorithm(path):
        x_shape, w_shape, kwargs, _ = CONV_CASES[case]
        arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
        check_gradients(lambda x, w, b: conv2d(x, w, b, **kwargs), arrays, rng)


@pytest.mark.parametrize(("case", "path"), _paths({name: TRANSPOSE_CASES[name] for name in GRADCHECK_TRANSPOSE}))
def test_conv_transpose2d_gradients_match_finite_differences(case, path, rng):
    with mv.conv_algorithm(path):
        x_shape, w_shape, kwargs = TRANSPOSE_CASES[case]
        c_out = w_shape[1] * kwargs.get("groups", 1)
        arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(c_out)]
        check_gradients(lambda x, w, b: conv_transpose2d(x, w, b, **kwargs), arrays, rng)


# ----------------------------------------------------------------------------- the transpose is the adjoint
ADJOINT_CASES = [  # (x shape, weight shape, stride, pad4, dilation, groups)
    ((2, 3, 8, 7), (4, 3, 3, 3), 1, (1, 1, 1, 1), 1, 1),
    ((2, 16, 8, 7), (17, 16, 3, 3), 1, (0, 2, 1, 0), 1, 1),  # Winograd
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 3), (0, 2, 1, 0), (1, 2), 2),
    ((1, 4, 10, 9), (8, 1, 3, 3), 2, (1, 0, 2, 1), 1, 4),  # depthwise, multiplier 2
    ((1, 4, 7, 7), (4, 1, 5, 5), 1, (4, 4, 4, 4), 2, 4),  # depthwise, padding wider than the kernel reach
    ((2, 6, 5, 5), (4, 6, 1, 1), 1, (0, 0, 0, 0), 1, 1),  # 1x1
]


@pytest.mark.parametrize("case", ADJOINT_CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case, rng):
    """<conv2d(x), y> == <x, conv_transpose2d(y)> for every x, y (same weight, stride, padding, ...)."""
    x_shape, w_shape, stride, pad4, dilation, groups = case
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_t = conv2d(x, w, stride=stride, padding=pad4, dilation=dilation, groups=groups)
    y = rng.standard_normal(y_t.shape)
    # output_padding recovers the rows/cols that the conv's stride left unread
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    out_pad = tuple((x_shape[2 + a] + pad4[2 * a] + pad4[2 * a + 1] - d[a] * (w_shape[2 + a] - 1) - 1) % s[a]
                    for a in range(2))
    xt = conv_transpose2d(y, w, stride=stride, padding=pad4, output_padding=out_pad, groups=groups,
                          dilation=dilation)
    assert xt.shape == x_shape
    np.testing.assert_allclose(np.vdot(y_t.numpy(), y), np.vdot(x, xt.numpy()), rtol=1e-12)


# ----------------------------------------------------------------------------- array-level building blocks
BLOCK_CASES = ["3x3 pad 1", "asymmetric padding", "groups 2", "depthwise x2, stride 2", "1x1", "1x1 groups 3",
               "one input channel 5x5", "3x3 lopsided padding", "3x3 padding wider than the kernel"]


@pytest.mark.parametrize(("case", "path"), _paths({name: CONV_CASES[name] for name in BLOCK_CASES}, reference=True))
def test_building_blocks_match_the_literal_sliding_window(case, path, rng):
    with mv.conv_algorithm(path):
        x_shape, w_shape, kwargs, pad4 = CONV_CASES[case]
        stride = kwargs.get("stride", 1)
        stride = (stride, stride) if isinstance(stride, int) else stride
        dilation = kwargs.get("dilation", 1)
        dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
        groups = kwargs.get("groups", 1)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        out = conv2d_forward(x, w, stride, pad4, dilation, groups)
        np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, stride, pad4, dilation, groups), rtol=1e-12)
        g = rng.standard_normal(out.shape)
        np.testing.assert_allclose(conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, groups),
                                   cpu_conv.naive_conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, groups),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation, groups),
                                   cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation, groups),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["3x3 pad 1", "asymmetric padding", "groups 2", "1x1 stride 2"])
@pytest.mark.parametrize("images_per_chunk", [1, 2])
@pytest.mark.parametrize("threaded", [False, True])
def test_building_blocks_split_the_batch_into_chunks_correctly(case, images_per_chunk, threaded, rng, monkeypatch):
    """Large batches go through im2col in chunks, one slice of the batch per thread; shrink the chunk
    (and, with ``threaded``, the work threshold of ``cpu_threads``) so these small shapes take both paths."""
    if threaded:
        if numba.get_num_threads() < 2:
            pytest.skip("needs 2 Numba threads")
        monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    x_shape, w_shape, kwargs, pad4 = CONV_CASES[case]
    x_shape = (3,) + x_shape[1:]  # 3 images: with 2 per chunk the last chunk is partial
    stride = kwargs.get("stride", 1)
    stride = (stride, stride) if isinstance(stride, int) else stride
    groups = kwargs.get("groups", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    ho = cpu_conv.output_size(x_shape[2], w_shape[2], stride[0], pad4[0], pad4[1], 1)
    wo = cpu_conv.output_size(x_shape[3], w_shape[3], stride[1], pad4[2], pad4[3], 1)
    per_image = x_shape[1] * w_shape[2] * w_shape[3] * ho * wo * 8
    monkeypatch.setattr(conv_plan, "CHUNK_BYTES", images_per_chunk * per_image)
    assert len(conv_plan.batch_chunks(slice(0, 3), per_image)) == -(-3 // images_per_chunk)
    out = conv2d_forward(x, w, stride, pad4, (1, 1), groups)
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, stride, pad4, (1, 1), groups), rtol=1e-12)
    bias = rng.standard_normal(w_shape[0])  # added chunk by chunk
    np.testing.assert_allclose(conv2d_forward(x, w, stride, pad4, (1, 1), groups, bias),
                               out + bias[:, None, None], rtol=1e-12)
    g = rng.standard_normal(out.shape)
    np.testing.assert_allclose(conv2d_backward_input(g, w, x_shape, stride, pad4, (1, 1), groups),
                               cpu_conv.naive_conv2d_backward_input(g, w, x_shape, stride, pad4, (1, 1), groups),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_backward_weight(g, x, w_shape, stride, pad4, (1, 1), groups),
                               cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, (1, 1), groups),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["3x3 pad 1", "stride 2 dilation 2", "asymmetric padding", "groups 2",
                                  "one input channel 5x5", "11x11 stride 4", "same, stride 2, dilation 2"])
@pytest.mark.parametrize("threaded", [False, True])
def test_large_images_split_into_row_bands_correctly(case, threaded, rng, monkeypatch):
    """A large image is cut into bands of output rows (two threads add into the rows where bands
    overlap, in two waves); shrink the thresholds so these small shapes are cut into several bands."""
    if threaded:
        if numba.get_num_threads() < 2:
            pytest.skip("needs 2 Numba threads")
        monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    monkeypatch.setattr(conv_plan, "BAND_BYTES", 0)
    monkeypatch.setattr(conv_plan, "BAND_PIXELS", 1)
    x_shape, w_shape, kwargs, pad4 = CONV_CASES[case]
    x_shape = (3, x_shape[1], 4 * x_shape[2] + 3, x_shape[3])  # taller: room for several bands
    stride = int_pair(kwargs.get("stride", 1), "test", "stride")
    dilation = int_pair(kwargs.get("dilation", 1), "test", "dilation")
    groups = kwargs.get("groups", 1)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out = conv2d_forward(x, w, stride, pad4, dilation, groups, bias)
    ho, wo = out.shape[2:]
    min_rows = conv_plan.min_band_rows(w_shape[2], stride, dilation)
    tiles = conv_plan.split_into_tiles(cpu_conv, 3, ho, wo, 1 << 20, min_rows)
    assert len(tiles) // 3 >= 2 and all(t[0].stop - t[0].start == 1 for t in tiles)
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, stride, pad4, dilation, groups)
                               + bias[:, None, None], rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(g, w, x, w_shape, x_shape, stride, pad4, dilation, groups)
    np.testing.assert_allclose(dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, stride, pad4, dilation, groups),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, dilation,
                                                                         groups), rtol=1e-12, atol=1e-12)
    # The bands of an image do not depend on the batch it came in: bit-identical results alone.
    alone = conv2d_forward(x[2:], w, stride, pad4, dilation, groups, bias)
    dx_alone, _ = conv2d_backward(g[2:], w, x[2:], w_shape, (1,) + x_shape[1:], stride, pad4, dilation,
                                              groups)
    np.testing.assert_array_equal(alone[0], out[2])
    np.testing.assert_array_equal(dx_alone[0], dx[2])


def test_a_large_map_with_a_small_cols_matrix_splits_into_min_bands(rng):
    """EfficientNet's stem at batch 1 (3 -> 32, stride 2, 112 px out: a 1.4 MB cols matrix) would be one
    tile on one thread; from SPLIT_PIXELS output pixels it is cut into MIN_BANDS bands, shapes only."""
    x_shape, w_shape, stride, pad4 = (2, 3, 129, 131), (5, 3, 3, 3), (2, 2), (0, 1, 1, 0)
    ho, wo = 64, 65
    assert ho * wo >= conv_plan.SPLIT_PIXELS and 27 * ho * wo * 8 < conv_plan.BAND_BYTES
    min_rows = conv_plan.min_band_rows(3, stride, (1, 1))
    tiles = conv_plan.split_into_tiles(cpu_conv, 2, ho, wo, 27 * ho * wo * 8, min_rows)
    assert len(tiles) == 2 * conv_plan.MIN_BANDS
    assert [t[1:] for t in tiles[:4]] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert len(conv_plan.split_into_tiles(cpu_conv, 2, 63, 65, 1, 1)) == 1  # below SPLIT_PIXELS: one chunk
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    out = conv2d_forward(x, w, stride, pad4, (1, 1), 1)
    assert out.shape[2:] == (ho, wo)
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, stride, pad4, (1, 1), 1), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(g, w, x, w_shape, x_shape, stride, pad4, (1, 1), 1)
    np.testing.assert_allclose(dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, stride, pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, stride, pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(conv2d_forward(x[1:], w, stride, pad4, (1, 1), 1)[0], out[1])  # batch invariant


@pytest.mark.parametrize("case", ["1x1", "1x1 groups 3"])
@pytest.mark.parametrize("threaded", [False, True])
def test_pointwise_bias_is_added_per_slice_of_the_batch(case, threaded, rng, monkeypatch):
    """A 1x1 convolution with a bias on a batch runs a slice of it per thread and adds the bias while
    the slice's output is in cache: equal to the naive conv plus the bias, and an image's bits do not
    depend on its batch (float32: the product and the add round the same way alone)."""
    if threaded:
        if numba.get_num_threads() < 2:
            pytest.skip("needs 2 Numba threads")
        monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    x_shape, w_shape, kwargs, pad4 = CONV_CASES[case]
    x_shape = (3,) + x_shape[1:]
    groups = kwargs.get("groups", 1)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out = conv2d_forward(x, w, (1, 1), pad4, (1, 1), groups, bias)
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, (1, 1), pad4, (1, 1), groups) + bias[:, None, None],
                               rtol=1e-12, atol=1e-12)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, bias))
    batch = conv2d_forward(x32, w32, (1, 1), pad4, (1, 1), groups, b32)
    for i in range(3):
        np.testing.assert_array_equal(conv2d_forward(x32[i:i + 1], w32, (1, 1), pad4, (1, 1), groups, b32)[0],
                                      batch[i])


def _winograd_tiling(monkeypatch, tiling: str, threaded: bool) -> None:
    """Winograd on row bands of each image (``tiling="bands"``) or on whole images; on two threads or one."""
    if threaded:
        if numba.get_num_threads() < 2:
            pytest.skip("needs 2 Numba threads")
        monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    if tiling == "bands":
        monkeypatch.setattr(conv_plan, "WINOGRAD_BAND_BYTES", 0)
        monkeypatch.setattr(conv_plan, "WINOGRAD_BAND_TILES", 1)


@pytest.mark.parametrize("layout", ["channels_last", "planar"])
@pytest.mark.parametrize("tiling", ["bands", "chunks"])
@pytest.mark.parametrize("threaded", [False, True])
def test_winograd_tilings_match_the_sliding_window_and_each_other(tiling, threaded, layout, rng, monkeypatch,
                                                                  winograd_everywhere):
    """Winograd splits a batch into chunks of images or (large images) bands of tile rows; a single
    small image on several threads splits its 16 GEMMs instead; small maps run channels last, wide
    ones planar. Each image's result is bit-identical whichever way it was computed: alone
    (threaded: the split GEMMs) or in a batch."""
    monkeypatch.setattr(conv_plan, "WINOGRAD_PLANAR_TILES", 0 if layout == "planar" else 1 << 20)
    monkeypatch.setattr(conv_plan, "WINOGRAD_PLANAR_WIDE", (1 << 20, 1 << 20))
    _winograd_tiling(monkeypatch, tiling, threaded)
    calls = []
    name = "input_transform_planar" if layout == "planar" else "input_transform"
    transform = getattr(cpu_winograd, name)
    monkeypatch.setattr(cpu_winograd, name, lambda *args: calls.append(args[3:5]) or transform(*args))
    x_shape, w_shape, pad4 = (3, 16, 9, 7), (17, 16, 3, 3), (1, 0, 2, 1)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out = conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)
    assert calls and (tiling == "chunks") == all(rows == (0, 4) for rows in calls)  # 4 tile rows, one per band
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, (1, 1), pad4, (1, 1), 1) + bias[:, None, None],
                               rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(g, w, x, w_shape, x_shape, (1, 1), pad4, (1, 1), 1)
    np.testing.assert_allclose(dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, (1, 1), pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, (1, 1), pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    for i in range(3):
        np.testing.assert_array_equal(conv2d_forward(x[i:i + 1], w, (1, 1), pad4, (1, 1), 1, bias)[0], out[i])
        np.testing.assert_array_equal(conv2d_backward_input(g[i:i + 1], w, (1,) + x_shape[1:], (1, 1), pad4, (1, 1),
                                                            1)[0], dx[i])


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("rows", [1 << 10, 9])
def test_shared_winograd_gemms_give_the_per_image_convolution(threaded, rows, rng, monkeypatch, winograd_everywhere):
    """Under ``shared_winograd_gemms`` small maps' products run one per slot across images (groups of
    ``SHARED_ROWS`` rows): forward and input gradient equal the sliding window in float64, and the
    float32 results the per-image path's to rounding. Wide maps (planar) and maps with more tiles
    than ``SHARED_MAX_TILES`` keep the per-image products."""
    _winograd_tiling(monkeypatch, "chunks", threaded)
    monkeypatch.setattr(conv_plan, "CHUNK_BYTES", 1)  # a tile per image: threaded, each thread takes a run of them
    monkeypatch.setattr(conv_plan, "SHARED_ROWS", rows)  # 9: below one image's 12 tiles, one per product
    shared = []
    original = conv_plan._winograd_shared
    monkeypatch.setattr(conv_plan, "_winograd_shared", lambda *args: shared.append(args[-3:-1]) or original(*args))
    x_shape, w_shape, pad4 = (5, 16, 7, 6), (17, 16, 3, 3), (1, 0, 2, 1)  # out 6 x 7: 3 x 4 = 12 tiles per image
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    with mv.functional.conv.shared_winograd_gemms():
        out = conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)
        g = rng.standard_normal(out.shape)
        dx = conv2d_backward_input(g, w, x_shape, (1, 1), pad4, (1, 1), 1)
        out32 = conv2d_forward(*(a.astype(np.float32) for a in (x, w)), (1, 1), pad4, (1, 1), 1,
                               bias.astype(np.float32))
    assert shared and sorted({i for first, stop in shared for i in range(first, stop)}) == list(range(5))
    assert len(shared) == 3 * (2 if threaded else 1)  # forward, input gradient, float32 forward: a call per thread
    np.testing.assert_allclose(out, cpu_conv.naive_conv2d(x, w, (1, 1), pad4, (1, 1), 1) + bias[:, None, None],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, (1, 1), pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    per_image = conv2d_forward(*(a.astype(np.float32) for a in (x, w)), (1, 1), pad4, (1, 1), 1,
                               bias.astype(np.float32))
    np.testing.assert_allclose(out32, per_image, rtol=1e-5, atol=1e-5 * np.abs(per_image).max())
    shared.clear()
    monkeypatch.setattr(conv_plan, "SHARED_MAX_TILES", 11)
    with mv.functional.conv.shared_winograd_gemms():
        conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)
    assert not shared  # 12 tiles per image: above the limit
    monkeypatch.setattr(conv_plan, "SHARED_MAX_TILES", 64)
    monkeypatch.setattr(conv_plan, "WINOGRAD_PLANAR_TILES", 0)  # every map planar (tiles last)
    with mv.functional.conv.shared_winograd_gemms():
        conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)
    assert not shared  # the planar layout keeps its per-image products


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("rows", [1 << 10, 5])
def test_shared_products_take_4x4_blocks_where_they_pay(threaded, rows, rng, monkeypatch, winograd_everywhere):
    """Inside ``shared_winograd_gemms``, forward passes whose maps ``winograd4_pays`` for run F(4x4, 3x3)
    (``cpu_winograd4``) in groups of ``SHARED_ROWS`` rows: the sliding window in float64, and within
    float32 rounding in float32. The input gradient, and maps it does not pay for, keep 2x2 blocks."""
    _winograd_tiling(monkeypatch, "chunks", threaded)
    monkeypatch.setattr(conv_plan, "SHARED_ROWS", rows)  # 5: below one image's 3 x 4 = 12 tiles, one image a group
    monkeypatch.setattr(conv_plan, "WINOGRAD4_MIN_CHANNELS", 16)  # small channel counts, to keep the test small
    calls = []
    original = conv_plan._winograd4_shared
    monkeypatch.setattr(conv_plan, "_winograd4_shared", lambda *args: calls.append(tuple(args[-1])) or original(*args))
    x_shape, w_shape, pad4 = (5, 16, 11, 14), (32, 16, 3, 3), (1, 0, 2, 1)  # out 10 x 15
    assert conv_plan.winograd4_pays(10, 15, 16, 32)  # 16 * 5 * 8 = 640 products against 36 * 3 * 4 = 432
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    with mv.functional.conv.shared_winograd_gemms():
        out = conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)
        out32 = conv2d_forward(*(a.astype(np.float32) for a in (x, w)), (1, 1), pad4, (1, 1), 1,
                               bias.astype(np.float32))
        g = rng.standard_normal(out.shape)
        dx = conv2d_backward_input(g, w, x_shape, (1, 1), pad4, (1, 1), 1)
    assert calls == [(10, 15), (10, 15)]  # both forward passes; not the input gradient
    expected = cpu_conv.naive_conv2d(x, w, (1, 1), pad4, (1, 1), 1) + bias[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(dx, cpu_conv.naive_conv2d_backward_input(g, w, x_shape, (1, 1), pad4, (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    calls.clear()
    with mv.functional.conv.shared_winograd_gemms():
        conv2d_forward(x[:, :, :8, :8], w, (1, 1), (0, 0, 0, 0), (1, 1), 1, bias)  # 6 x 6: 144 products either way
    conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1, bias)  # outside the block: the engine's 2x2 blocks
    assert not calls


def test_winograd4_pays_where_its_tiles_fill_the_map():
    """The docstring's examples: 4x4 blocks where F(2x2)'s products outnumber theirs by 1.25x, with 128
    channels or more, in whole vectors."""
    assert conv_plan.winograd4_pays(14, 16, 512, 512) and conv_plan.winograd4_pays(14, 14, 512, 512)
    assert conv_plan.winograd4_pays(10, 14, 128, 256)
    assert not conv_plan.winograd4_pays(6, 6, 512, 512)  # 144 against 144
    assert not conv_plan.winograd4_pays(9, 9, 512, 512)  # 400 against 324: 1.23x
    assert not conv_plan.winograd4_pays(14, 14, 64, 512)  # few channels: the transforms weigh more
    assert not conv_plan.winograd4_pays(14, 14, 136, 520) and conv_plan.winograd4_pays(14, 14, 144, 528)


@pytest.mark.parametrize("tiling", ["bands", "images"])
@pytest.mark.parametrize("threaded", [False, True])
def test_winograd_weight_gradient_matches_the_sliding_window_however_it_is_tiled(tiling, threaded, rng, monkeypatch):
    """The weight gradient's GEMMs sum over the tiles of one image, or of one band of it, on one
    thread or two (each summing into its own dU), in float64 and float32."""
    _winograd_tiling(monkeypatch, tiling, threaded)
    x_shape, w_shape, pad4 = (5, 6, 7, 8), (4, 6, 3, 3), (1, 1, 0, 2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = rng.standard_normal(conv2d_forward(x, w, (1, 1), pad4, (1, 1), 1).shape)
    expected = cpu_conv.naive_conv2d_backward_weight(g, x, w_shape, (1, 1), pad4, (1, 1), 1)
    np.testing.assert_allclose(conv_plan.winograd_backward_weight(g, x, pad4, w_shape), expected, rtol=1e-12,
                               atol=1e-12)
    dw32 = conv_plan.winograd_backward_weight(g.astype(np.float32), x.astype(np.float32), pad4, w_shape)
    assert dw32.dtype == np.float32
    np.testing.assert_allclose(dw32, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_default_rule_takes_winograd_where_it_pays(rng, monkeypatch):
    """VGG-sized layers take Winograd; few channels, many channels on tiny maps, strides, groups and
    other kernels keep im2col."""
    def takes(c_in, c_out, hw, stride=(1, 1), groups=1, k=3, pad=1):
        out = (hw + 2 * pad - k) // stride[0] + 1
        return conv_plan.is_winograd(cpu_conv, (1, c_in, hw, hw), (c_out, c_in // groups, k, k), (out, out),
                                     stride, (1, 1), groups)

    assert takes(64, 64, 224) and takes(512, 512, 14) and takes(32, 32, 28) and takes(32, 64, 14)
    assert not takes(3, 64, 224) and not takes(16, 16, 112)  # few channels: thin GEMMs
    assert takes(64, 64, 7) and takes(96, 128, 4)  # few channels: any map
    assert not takes(256, 256, 7) and not takes(128, 128, 5)  # many channels, under 32 blocks per image
    planar = conv_plan.winograd_planar
    assert planar(112, 64) and planar(28, 256) and planar(14, 512) and not planar(14, 128) and not planar(7, 512)
    assert takes(256, 256, 9, pad=0) and takes(32, 64, 16, pad=0)  # unpadded: im2col's slow path
    assert not takes(64, 64, 56, stride=(2, 2)) and not takes(64, 64, 56, groups=2) and not takes(64, 64, 56, k=5)
    calls = []
    transform = cpu_winograd.input_transform
    monkeypatch.setattr(cpu_winograd, "input_transform", lambda *args: calls.append(1) or transform(*args))
    x, w = rng.standard_normal((1, 320, 9, 9)), rng.standard_normal((32, 320, 3, 3))  # neither direct nor fused
    out = conv2d_forward(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert calls
    expected = cpu_conv.naive_conv2d(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13 * np.abs(expected).max())


@pytest.mark.skipif(not cpu_simd.WIDE, reason="the direct forward rule needs AVX-512")
def test_the_default_rule_takes_the_direct_forward_kernel_where_it_pays(rng, monkeypatch):
    """Ungrouped CPU layers with up to 128 input channels whose padded image fits L2 run their forward
    pass on the register-blocked direct kernel; their backward pass keeps Winograd or im2col."""
    def takes(c_in, c_out, hw, k=3, stride=1, groups=1, dtype=np.float32):
        return conv_plan.is_direct_forward(cpu_conv, (1, c_in, hw, hw), (c_out, c_in // groups, k, k), (1, 1, 1, 1),
                                           groups, np.dtype(dtype))

    assert takes(3, 64, 224, k=11, stride=4) and takes(1, 32, 28, k=5) and takes(32, 32, 32) and takes(64, 64, 56)
    assert takes(128, 128, 28) and takes(16, 3, 128, k=9) and takes(3, 64, 224, dtype=np.float64)
    assert not takes(256, 256, 28) and not takes(64, 64, 224)  # many channels; an image larger than L2
    assert not takes(64, 128, 28, k=1) and not takes(32, 32, 56, groups=2) and not takes(32, 32, 28, dtype=np.int32)
    calls = []
    forward = cpu_direct.forward
    monkeypatch.setattr(cpu_direct, "forward", lambda *args: calls.append(1) or forward(*args))
    x, w = rng.standard_normal((2, 32, 20, 20)), rng.standard_normal((16, 32, 3, 3))  # 16 outputs: not fused
    out = conv2d_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert calls
    expected = cpu_conv.naive_conv2d(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13 * np.abs(expected).max())
    how = conv_plan.choose(cpu_conv, x.shape, w.shape, (20, 20), (1, 1), (1, 1), 1)
    assert how == "im2col"  # the weight gradient's (16 outputs: too few for Winograd); the input gradient's: direct
    args = (cpu_conv, x.shape, w.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1, np.dtype(np.float64))
    assert conv_plan.for_pass("input", how, "auto", *args) == "direct"  # 16 <= 64 outputs, 32 >= 8 inputs
    assert conv_plan.for_pass("forward", how, "auto", *args) == "direct"
    assert conv_plan.for_pass("input", how, "im2col", *args) == "im2col"  # only "auto" refines
    fused = (cpu_conv, x.shape, (80, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, np.dtype(np.float64))
    assert conv_plan.for_pass("input", "winograd", "auto", *fused) == "winograd_fused"  # 32-128 channels a side
    with conv_plan.shared_winograd_gemms():  # incremental occlusion: its regions keep the shared products
        assert conv_plan.for_pass("forward", "winograd", "auto", *fused) == "direct"
        assert conv_plan.for_pass("forward", "winograd", "winograd_fused", *fused) == "winograd_fused"
    many = (cpu_conv, (1, 512, 14, 14), (512, 512, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, np.dtype(np.float32))
    assert conv_plan.for_pass("input", "winograd", "auto", *many) == "winograd"  # neither fused nor direct


def test_weight_transforms_are_reused_inside_the_block_only(rng, monkeypatch, winograd_everywhere):
    """Inside ``reuse_weight_transforms`` a weight is transformed once per layout (the forward's
    ``U^T``, the input gradient's ``U``; later passes reuse both); outside, every call transforms
    the weight it is given, so in-place edits count."""
    calls = []
    transform = cpu_winograd.filter_transform
    monkeypatch.setattr(cpu_winograd, "filter_transform",
                        lambda w, transposed=False: calls.append((w, transposed)) or transform(w, transposed))
    x = mv.tensor(rng.standard_normal((1, 16, 6, 6)), requires_grad=True)
    w = mv.tensor(rng.standard_normal((16, 16, 3, 3)))
    with reuse_weight_transforms():
        first = conv2d(x, w, padding=1)
        first.backward(np.ones(first.shape))
        with reuse_weight_transforms():  # nested: the outer block's cache
            np.testing.assert_array_equal(conv2d(x, w, padding=1).numpy(), first.numpy())
    assert [t for _, t in calls] == [True, False] and all(a is w.data for a, _ in calls)
    w.data *= 2
    np.testing.assert_allclose(conv2d(x, w, padding=1).numpy(), 2 * first.numpy(), rtol=1e-12)
    assert len(calls) == 3


# ----------------------------------------------------------------------------- the algorithm switch
SWITCH_CASES = [  # (x shape, weight shape, kwargs): Winograd-sized, a small 3x3 one, strided and grouped
    ((2, 32, 12, 11), (24, 32, 3, 3), {"padding": 1}),
    ((2, 3, 9, 8), (5, 3, 3, 3), {"padding": (0, 1)}),
    ((2, 4, 9, 9), (6, 2, 3, 3), {"stride": 2, "padding": 1, "dilation": 1, "groups": 2}),
]


@pytest.mark.parametrize("case", SWITCH_CASES)
def test_every_conv_algorithm_gives_the_same_result_as_torch(case, rng):
    """conv2d and conv_transpose2d, forward and both gradients, under every ``mv.conv_algorithm``."""
    x_shape, w_shape, kwargs = case
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
    upstream = None
    results = {}
    for algorithm in ("reference", "im2col", "winograd", "winograd_fused", "direct", "auto"):
        with mv.conv_algorithm(algorithm):
            x, w, b = (mv.tensor(a, requires_grad=True) for a in arrays)
            out = conv2d(x, w, b, **kwargs)
            upstream = rng.standard_normal(out.shape) if upstream is None else upstream
            out.backward(upstream)
            back = conv_transpose2d(mv.tensor(upstream), w.detach(), **kwargs).numpy()
        results[algorithm] = [out.numpy(), x.grad, w.grad, b.grad, back]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in arrays)
    expected = TF.conv2d(xt, wt, bt, **kwargs)
    expected.backward(torch.tensor(upstream))
    back = TF.conv_transpose2d(torch.tensor(upstream), wt.detach(), **kwargs)
    reference = [expected.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy(), back.numpy()]
    for algorithm, result in results.items():
        for name, ours, theirs in zip(("output", "dx", "dw", "db", "transpose"), result, reference, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10, err_msg=f"{algorithm}: {name}")


def test_conv_algorithm_picks_the_kernels_it_names(rng, monkeypatch):
    """A small 3x3 layer: the direct forward kernel by default (im2col without AVX-512), im2col under
    "im2col", Winograd under "winograd", fused Winograd under "winograd_fused", the direct kernels under
    "direct", none of them under "reference"."""
    calls = []
    monkeypatch.setattr(cpu_winograd, "input_transform", lambda *args: calls.append("winograd"))
    monkeypatch.setattr(cpu_winograd_fused, "forward", lambda *args: calls.append("fused") or np.zeros((1, 4, 8, 8)))
    monkeypatch.setattr(conv_plan, "im2col_forward", lambda *args: calls.append("im2col"))
    monkeypatch.setattr(cpu_direct, "forward", lambda *args: calls.append("direct") or np.zeros((1, 4, 8, 8)))
    x, w = rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    for algorithm in ("auto", "im2col", "winograd", "winograd_fused", "direct", "reference"):
        with mv.conv_algorithm(algorithm):
            conv2d_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert calls == ["direct" if cpu_simd.WIDE else "im2col", "im2col", "winograd", "fused", "direct"]


@pytest.mark.parametrize("w_shape,expected", [
    ((3, 16, 9, 9), "direct"),    # a style network's RGB output layer
    ((1, 8, 3, 3), "direct"),     # one output channel, K = 72
    ((4, 3, 5, 5), "direct"),
    ((4, 3, 3, 3), "im2col"),     # K = 27 with a 3x3 window: the cols matrix is small
    ((1, 1, 3, 3), "im2col"),     # K = 9
    ((8, 16, 9, 9), "im2col"),    # more output channels than one register block
])
def test_auto_takes_the_direct_kernels_for_few_output_channels(w_shape, expected, rng, monkeypatch):
    """``conv_plan.is_direct``: few output channels and a large window -> the direct kernels under "auto",
    for the backward pass too (the forward pass of the others may take the direct forward kernel:
    ``is_direct_forward``, their weight gradient the direct one: ``is_direct_weight``)."""
    x_shape = (1, w_shape[1], 12, 12)
    out_hw = (12 - w_shape[2] + 1, 12 - w_shape[3] + 1)
    assert conv_plan.choose(cpu_conv, x_shape, w_shape, out_hw, (1, 1), (1, 1), 1) == expected
    calls = []
    monkeypatch.setattr(cpu_direct, "backward_weight", lambda *args: calls.append("direct"))
    monkeypatch.setattr(conv_plan, "im2col_backward", lambda *args: calls.append("im2col") or (None, None))
    conv2d_backward(rng.standard_normal((1, w_shape[0], *out_hw)), None, rng.standard_normal(x_shape), w_shape,
                    x_shape, (1, 1), (0, 0, 0, 0), (1, 1), 1, need_input=False)
    direct_weight = conv_plan.is_direct_weight(cpu_conv, w_shape, 1, np.dtype(np.float64))
    assert calls == ["direct" if expected == "direct" or direct_weight else expected]


def test_the_weight_gradient_of_few_input_channels_takes_the_direct_kernel(rng, monkeypatch):
    """``is_direct_weight``: ungrouped, a window, at most 32 input channels, float, AVX-512; and
    conv2d_backward then runs ``cpu_direct.backward_weight``, equal to the reference path."""
    def takes(c_in, k=3, groups=1, dtype=np.float32):
        return conv_plan.is_direct_weight(cpu_conv, (64, c_in // groups, k, k), groups, np.dtype(dtype))

    assert takes(1, k=5) == takes(32) == takes(3, k=11) == cpu_simd.WIDE
    assert not takes(48) and not takes(64) and not takes(32, k=1) and not takes(32, groups=2)
    assert not takes(16, dtype=np.float16)
    x, w = rng.standard_normal((3, 16, 10, 9)), rng.standard_normal((24, 16, 3, 3))
    g = rng.standard_normal((3, 24, 10, 9))
    args = ((24, 16, 3, 3), x.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    calls = []
    weight = cpu_direct.backward_weight
    monkeypatch.setattr(cpu_direct, "backward_weight", lambda *a: calls.append(1) or weight(*a))
    dx, dw = conv2d_backward(g, w, x, *args)
    assert len(calls) == cpu_simd.WIDE
    with mv.conv_algorithm("reference"):
        want_dx, want_dw = conv2d_backward(g, w, x, *args)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-10)


def test_conv_algorithm_rejects_an_unknown_name():
    for bad in ("fft", "Winograd", None):
        with pytest.raises(ValueError, match=r"conv_algorithm: name must be one of 'auto', 'im2col', 'winograd', "
                                             r"'winograd_fused', 'reference', 'direct', got " + repr(repr(bad))[1:-1]):
            mv.conv_algorithm(bad)
    assert mv.F.conv_algorithm is mv.conv_algorithm


def test_conv_algorithm_is_restored_after_the_block_and_after_an_exception(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(conv_plan, "im2col_forward", lambda *args: calls.append("im2col"))
    x, w = rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    with mv.conv_algorithm("reference"):
        with mv.conv_algorithm("winograd"):
            pass
        conv2d_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)  # the outer block's choice again
    assert calls == []
    with pytest.raises(RuntimeError, match="inside"), mv.conv_algorithm("reference"):
        raise RuntimeError("inside")
    monkeypatch.setattr(conv_plan, "is_direct_forward", lambda *args: False)  # so that "auto" means im2col here
    conv2d_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)  # "auto" again
    assert calls == ["im2col"]


@pytest.mark.parametrize("case", ["3x3 pad 1", "depthwise", "1x1"])
def test_float32_stays_float32(case, rng):
    """No silent float64 upcasts: float32 input gives float32 output and gradients (arrays too)."""
    x_shape, w_shape, kwargs, _ = CONV_CASES[case]
    x = mv.tensor(rng.standard_normal(x_shape).astype(np.float32), requires_grad=True)
    w = mv.tensor(rng.standard_normal(w_shape).astype(np.float32), requires_grad=True)
    b = rng.standard_normal(w_shape[0])  # a float64 constant array follows the tensors' dtype
    out = conv2d(x, w, b, **kwargs)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    w_t = mv.tensor(rng.standard_normal((w_shape[0], 2, 3, 3)).astype(np.float32), requires_grad=True)
    y = conv_transpose2d(out.detach(), w_t, stride=2)
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert w_t.grad.dtype == np.float32


@pytest.mark.parametrize("algorithm", ["auto", "reference", "direct"])
@pytest.mark.parametrize("case", ["3x3 pad 1", "depthwise", "depthwise x2, stride 2", "1x1"])
def test_an_empty_batch_gives_empty_results(case, algorithm):
    x_shape, w_shape, kwargs, _ = CONV_CASES[case]
    x = mv.tensor(np.zeros((0,) + x_shape[1:]), requires_grad=True)
    w = mv.tensor(np.ones(w_shape), requires_grad=True)
    with mv.conv_algorithm(algorithm):
        out = conv2d(x, w, **kwargs)
        out.backward(np.zeros(out.shape))
    expected = TF.conv2d(torch.zeros((0,) + x_shape[1:], dtype=torch.float64), torch.tensor(w.numpy()), **kwargs)
    assert out.shape == tuple(expected.shape)
    assert x.grad.shape == x.shape and np.all(w.grad == 0)


# ----------------------------------------------------------------------------- bad input
X = np.ones((1, 3, 5, 5))
W = np.ones((4, 3, 3, 3))

CONV_BAD = [
    (lambda: conv2d(np.ones((3, 5, 5)), W), ValueError,
     r"conv2d: input must be 4-D \(N, C_in, H, W\), got shape \(3, 5, 5\)"),
    (lambda: conv2d(X, np.ones((3, 3))), ValueError,
     r"conv2d: weight must be 4-D \(C_out, C_in/groups, kh, kw\), got shape \(3, 3\)"),
    (lambda: conv2d(X, np.ones((4, 2, 3, 3))), ValueError,
     r"conv2d: weight expects C_in/groups = 2 channels per group, but the input has C_in=3 with groups=1"),
    (lambda: conv2d(X, np.ones((4, 1, 3, 3)), groups=2), ValueError,
     r"conv2d: input channels C_in \(3\) must be divisible by groups \(2\)"),
    (lambda: conv2d(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2), ValueError,
     r"conv2d: output channels C_out \(3\) must be divisible by groups \(2\)"),
    (lambda: conv2d(X, W, groups=0), ValueError, r"conv2d: groups must be >= 1, got 0"),
    (lambda: conv2d(X, W, groups=1.5), TypeError, r"conv2d: groups must be an int, got 1.5"),
    (lambda: conv2d(X, np.ones((4, 3, 7, 7))), ValueError,
     r"conv2d: the \(dilated\) kernel 7x7 is larger than the padded input 5x5"),
    (lambda: conv2d(X, W, padding=(1, 0), dilation=3), ValueError,
     r"conv2d: the \(dilated\) kernel 7x7 is larger than the padded input 7x5"),
    (lambda: conv2d(X, W, stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
    (lambda: conv2d(X, W, stride=(1, -2)), ValueError, r"conv2d: stride must be >= 1, got \(1, -2\)"),
    (lambda: conv2d(X, W, dilation=0), ValueError, r"conv2d: dilation must be >= 1, got 0"),
    (lambda: conv2d(X, W, stride=(1, 1, 1)), TypeError, r"conv2d: stride must be an int or a pair of ints"),
    (lambda: conv2d(X, W, padding=-1), ValueError, r"conv2d: padding must be >= 0, got \(-1, -1\)"),
    (lambda: conv2d(X, W, padding=(0, 1, -1, 0)), ValueError, r"conv2d: padding must be >= 0, got \(0, 1, -1, 0\)"),
    (lambda: conv2d(X, W, padding=(1, 1, 1)), TypeError, r"conv2d: padding must be an int, \(ph, pw\)"),
    (lambda: conv2d(X, W, padding="full"), ValueError,
     r"conv2d: padding must be 'same' or 'valid' when given as a string, got 'full'"),
    (lambda: conv2d(X.astype(np.int64), W), TypeError,
     r"conv2d: input must be a float32 or float64 array, got dtype int64"),
    (lambda: conv2d(X, W.astype(np.int32)), TypeError,
     r"conv2d: weight must be a float32 or float64 array, got dtype int32"),
    (lambda: conv2d(X, W, np.ones(3)), ValueError, r"conv2d: bias must have shape \(C_out,\) = \(4,\), got \(3,\)"),
    (lambda: conv2d(X, W, np.ones((4, 1))), ValueError, r"conv2d: bias must be 1-D \(C_out,\), got shape \(4, 1\)"),
    (lambda: conv2d(mv.tensor(X, dtype=np.float32), mv.tensor(W)), TypeError,
     r"conv2d: input, weight and bias must share one dtype, got float32, float64"),
    (lambda: conv2d([[1.0]], W), TypeError, r"conv2d: input must be a Tensor or an array, got list"),
]

XT = np.ones((1, 4, 3, 3))
WT = np.ones((4, 2, 3, 3))

TRANSPOSE_BAD = [
    (lambda: conv_transpose2d(np.ones((4, 3, 3)), WT), ValueError,
     r"conv_transpose2d: input must be 4-D \(N, C_in, H, W\), got shape \(4, 3, 3\)"),
    (lambda: conv_transpose2d(XT, np.ones((4, 2, 3))), ValueError,
     r"conv_transpose2d: weight must be 4-D \(C_in, C_out/groups, kh, kw\), got shape \(4, 2, 3\)"),
    (lambda: conv_transpose2d(XT, np.ones((3, 2, 3, 3))), ValueError,
     r"conv_transpose2d: weight \(C_in, C_out/groups, kh, kw\) has C_in=3, but the input has C_in=4"),
    (lambda: conv_transpose2d(XT, WT, groups=3), ValueError,
     r"conv_transpose2d: input channels C_in \(4\) must be divisible by groups \(3\)"),
    (lambda: conv_transpose2d(XT, WT, stride=2, output_padding=2), ValueError,
     r"conv_transpose2d: output_padding must be smaller than stride or dilation, got output_padding=\(2, 2\)"),
    (lambda: conv_transpose2d(XT, WT, output_padding=-1), ValueError,
     r"conv_transpose2d: output_padding must be >= 0, got -1"),
    (lambda: conv_transpose2d(XT, WT, padding="same"), ValueError,
     r"conv_transpose2d: padding must be an int, \(ph, pw\) or \(top, bottom, left, right\), got 'same'"),
    (lambda: conv_transpose2d(XT, WT, padding=3), ValueError,
     r"conv_transpose2d: the output would be empty \(-1x-1\)"),
    (lambda: conv_transpose2d(XT, WT, stride=0), ValueError, r"conv_transpose2d: stride must be >= 1, got 0"),
    (lambda: conv_transpose2d(XT, WT, dilation=-1), ValueError, r"conv_transpose2d: dilation must be >= 1"),
    (lambda: conv_transpose2d(XT, WT, np.ones(3)), ValueError,
     r"conv_transpose2d: bias must have shape \(C_out,\) = \(2,\), got \(3,\)"),
    (lambda: conv_transpose2d(XT.astype(bool), WT), TypeError,
     r"conv_transpose2d: input must be a float32 or float64 array, got dtype bool"),
]


@pytest.mark.parametrize(("call", "error", "message"), CONV_BAD + TRANSPOSE_BAD)
def test_bad_input_is_rejected_with_a_clear_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("value", [2, (2, 3), [2, 3], np.int64(2), (np.int32(2), 3)])
def test_int_pair_gives_plain_ints_whichever_form_the_pair_came_in(value):
    pair = int_pair(value, "conv2d", "stride")
    assert pair in ((2, 2), (2, 3)) and all(type(v) is int for v in pair)


@pytest.mark.parametrize(("value", "error"), [(True, TypeError), ((1, True), TypeError), ((1, 2.0), TypeError),
                                              (0, ValueError), ((1, 0), ValueError), ((1, 2, 3), TypeError)])
def test_int_pair_rejects_what_the_fast_path_must_not_let_through(value, error):
    with pytest.raises(error, match=r"conv2d: stride must be"):
        int_pair(value, "conv2d", "stride")


def test_the_array_level_fused_path_takes_a_weight_of_another_dtype(rng):
    """``conv2d_forward`` / ``conv2d_backward`` are also called below the tensor API (LRP rules, occlusion
    regions) with a weight in another float dtype: the fused kernel, whose vectors have one dtype, casts it."""
    x, w = rng.standard_normal((2, 32, 10, 10)), rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    with mv.conv_algorithm("winograd_fused"):
        y = conv2d_forward(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        dx, _ = conv2d_backward(x.astype(np.float32), w.astype(np.float64), None, w.shape, x.shape, (1, 1),
                                (1, 1, 1, 1), (1, 1), 1, need_weight=False)
    want = cpu_conv.naive_conv2d(x, w.astype(np.float64), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert y.dtype == np.float64 and dx.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
