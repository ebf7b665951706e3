"""The fused ReLU-family backward kernel against the plain-NumPy reference of the three rules,
``minivis.functional.activation.relu_backward_reference``. Shapes are small so that this also
runs quickly with NUMBA_DISABLE_JIT=1."""

import numpy as np
import pytest

from minivis.functional.activation import relu_backward_reference
from minivis.kernels import cpu_activation, cpu_threads
from minivis.kernels.cpu_activation import relu_rule_backward
from minivis.rules import DECONVNET, GRADIENT, GUIDED, RULE_CODES, RULES


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def kernel_twin(request, monkeypatch):
    """Every test here runs on both twins: the serial one (small arrays) and the prange one."""
    monkeypatch.setattr(cpu_threads, "ELEMENTWISE_MIN_WORK", 1 << 60 if request.param == "serial" else 0)


# (low, high, negative_slope): relu, relu6, leaky_relu
FAMILY = {"relu": (0.0, np.inf, 0.0), "relu6": (0.0, 6.0, 0.0), "leaky_relu": (0.0, np.inf, 0.2)}


def sample(rng, shape, dtype):
    x = rng.uniform(-8, 8, shape)
    g = rng.standard_normal(shape)
    if x.size >= 6:  # ties: x exactly at the kinks, g exactly 0
        x.reshape(-1)[:3] = [0.0, 6.0, 0.0]
        g.reshape(-1)[2:5] = 0.0
    return x.astype(dtype), g.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4, 5), (2, 3, 8, 8)])
@pytest.mark.parametrize("rule", list(RULE_CODES))
@pytest.mark.parametrize("family", list(FAMILY))
def test_fused_matches_the_reference(rng, family, rule, shape, dtype):
    low, high, slope = FAMILY[family]
    x, g = sample(rng, shape, dtype)
    fast = relu_rule_backward(g, x, low, high, slope, RULE_CODES[rule])
    naive = relu_backward_reference(g, x, rule, low, high, slope)
    assert fast.shape == naive.shape == shape
    assert fast.dtype == naive.dtype == dtype
    np.testing.assert_array_equal(fast, naive)


@pytest.mark.parametrize("rule", list(RULE_CODES))
def test_fused_accepts_non_contiguous_and_other_dtype_gradients(rng, rule):
    x = rng.uniform(-8, 8, (4, 6)).astype(np.float32)
    g64 = rng.standard_normal((6, 4)).T  # float64 and transposed (not C-contiguous)
    fast = relu_rule_backward(g64, x, 0.0, 6.0, 0.0, RULE_CODES[rule])
    naive = relu_backward_reference(g64, x, rule, 0.0, 6.0, 0.0)
    assert fast.dtype == naive.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, naive)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", list(FAMILY))
def test_region_matches_its_twin_and_drives_the_rules_like_the_input(rng, family, dtype):
    """The int8 region a lean graph saves: equal to the NumPy twin, and the rule kernel fed with it
    (bounds 0.5, 1.5) gives the reference of the input, bit for bit, NaN and ties included."""
    low, high, slope = FAMILY[family]
    x, g = sample(rng, (3, 4, 5), dtype)
    x.reshape(-1)[3:6] = [np.nan, -0.0, 6.0]
    y = np.clip(x, low, high) if not slope else np.where(x > low, x, slope * x).astype(dtype)
    region = cpu_activation.relu_region(y, low, high)
    assert region.dtype == np.int8
    np.testing.assert_array_equal(region, cpu_activation.naive_relu_region(y, low, high))
    for rule in RULE_CODES:
        np.testing.assert_array_equal(relu_rule_backward(g, region, 0.5, 1.5, slope, RULE_CODES[rule]),
                                      relu_backward_reference(g, x, rule, low, high, slope))


def test_rule_codes_name_the_rules():
    assert (GRADIENT, GUIDED, DECONVNET) == (0, 1, 2) and [RULE_CODES[r] for r in RULES] == [0, 1, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_at_the_kinks_send_nothing(dtype):
    """x exactly at 0 (and 6 for relu6) and g exactly 0: strict inequalities, for kernel and reference."""
    x = np.array([0.0, 0.0, 6.0, 6.0, 3.0, -0.0], dtype)
    g = np.array([2.0, -2.0, 2.0, -2.0, 0.0, 2.0], dtype)
    want = {"gradient": [0, 0, 0, 0, 0, 0], "guided": [0, 0, 0, 0, 0, 0], "deconvnet": [2, 0, 2, 0, 0, 2]}
    for rule, expected in want.items():
        for out in (relu_rule_backward(g, x, 0.0, 6.0, 0.0, RULE_CODES[rule]),
                    relu_backward_reference(g, x, rule, 0.0, 6.0, 0.0)):
            np.testing.assert_array_equal(out, np.array(expected, dtype))
    # leaky_relu: at x == 0 the slope is negative_slope (x <= low), in both
    np.testing.assert_array_equal(relu_rule_backward(g, x, 0.0, np.inf, 0.5, GRADIENT), [1, -1, 2, -2, 0, 1])
    np.testing.assert_array_equal(relu_backward_reference(g, x, "gradient", negative_slope=0.5), [1, -1, 2, -2, 0, 1])


def test_fused_by_hand():
    x = np.array([-1.0, 0.0, 2.0, 6.0, 7.0])
    g = np.array([3.0, 3.0, -1.0, 2.0, 0.0])
    code = RULE_CODES
    np.testing.assert_array_equal(relu_rule_backward(g, x, 0.0, 6.0, 0.0, code["gradient"]), [0, 0, -1, 0, 0])
    np.testing.assert_array_equal(relu_rule_backward(g, x, 0.0, 6.0, 0.0, code["guided"]), [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(relu_rule_backward(g, x, 0.0, 6.0, 0.0, code["deconvnet"]), [3, 3, 0, 2, 0])
    np.testing.assert_array_equal(relu_rule_backward(g, x, 0.0, np.inf, 0.5, code["gradient"]),
                                  [1.5, 1.5, -1, 2, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0.0, np.inf), (0.0, 6.0)])
def test_clip_matches_numpy_clip_including_nan_and_inf(rng, dtype, bounds):
    x = (rng.standard_normal((3, 4, 5)) * 8).astype(dtype)
    x.flat[[0, 7, 11]] = [np.nan, np.inf, -np.inf]
    out = cpu_activation.clip(x, *bounds)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, np.clip(x, *bounds))
    assert cpu_activation.clip(np.float32(-2.0), *bounds).shape == ()  # 0-d in, 0-d out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [60, 3_000_000])  # the serial and the threaded kernel
def test_clip_in_place_is_clip_bit_for_bit(rng, dtype, size):
    x = (rng.standard_normal(size) * 8).astype(dtype)
    x[[0, 7, 11, 12]] = [np.nan, np.inf, -np.inf, -0.0]
    want = cpu_activation.clip(x, 0.0, 6.0)
    cpu_activation.clip_(x, 0.0, 6.0)
    np.testing.assert_array_equal(x.view(np.uint8), want.view(np.uint8))
    with pytest.raises(ValueError, match=r"clip_: x must be C-contiguous, got strides"):
        cpu_activation.clip_(np.zeros((4, 4), dtype)[:, ::2], 0.0, 6.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0.0, np.inf), (0.0, 6.0)])
def test_clip_region_is_the_two_passes_bit_for_bit(rng, dtype, bounds):
    """A lean graph's rectifier in one pass: the output (signed zeros, NaN) and the region code."""
    x = (rng.standard_normal((3, 4, 5)) * 8).astype(dtype)
    x.flat[[0, 7, 11, 12, 13]] = [np.nan, np.inf, -np.inf, -0.0, 6.0]
    out, region = cpu_activation.clip_region(x, *bounds)
    want = cpu_activation.clip(x, *bounds)
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
    np.testing.assert_array_equal(region, cpu_activation.relu_region(want, *bounds))
    assert region.dtype == np.int8 and out.dtype == dtype
