"""The array backend (minivis/backend.py): array module dispatch, devices and the dtype policy."""

import numpy as np
import pytest

from minivis import backend

needs_gpu = pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")


def test_cpu_arrays_use_numpy():
    a = np.zeros(3)
    assert backend.xp(a) is np
    assert backend.device_of(a) == "cpu"
    assert not backend.is_gpu_array(a)
    assert backend.to_device(a, "cpu") is a  # no copy when already there


def test_gpu_arrays_are_recognised_by_their_module_without_importing_cupy():
    fake = type("ndarray", (), {"__module__": "cupy._core.core"})()
    assert backend.is_gpu_array(fake)
    assert backend.device_of(fake) == "gpu"
    assert isinstance(backend.gpu_available(), bool)


def test_check_device():
    assert backend.check_device("cpu") == "cpu" and backend.check_device("gpu") == "gpu"
    for bad in ("cuda", "CPU", None, 0):
        with pytest.raises(ValueError, match=r"device: expected one of \('cpu', 'gpu'\), got "):
            backend.check_device(bad)


@pytest.mark.skipif(backend.gpu_available(), reason="checks the error raised when no GPU is usable")
def test_moving_to_gpu_without_one_explains_what_is_missing():
    with pytest.raises(RuntimeError, match=r"device='gpu' needs CuPy and a CUDA GPU.*pip install minivis\[gpu\]"):
        backend.to_device(np.zeros(2), "gpu")


@pytest.mark.parametrize("data,dtype,expected", [
    (np.zeros(2, np.float32), None, np.float32),
    (np.zeros(2, np.float64), None, np.float64),
    (np.zeros(2, np.float16), None, np.float32),
    (np.zeros(2, np.int64), None, np.float32),
    (np.zeros(2, bool), None, np.float32),
    ([1.0, 2.0], None, np.float32),
    (3, None, np.float32),
    (np.float64(3), None, np.float64),
    (np.zeros(2, np.float32), np.float64, np.float64),
    ([1, 2], "float64", np.float64),
])
def test_as_float_array_dtype_policy(data, dtype, expected):
    out = backend.as_float_array(data, dtype)
    assert isinstance(out, np.ndarray) and out.dtype == expected and out.flags.c_contiguous
    assert out.shape == np.shape(data)


def test_as_float_array_keeps_0d_and_copies_only_when_needed():
    assert backend.as_float_array(2.5).shape == ()
    a = np.ones((2, 3), np.float32)
    assert backend.as_float_array(a) is a  # already a contiguous float array: no copy
    strided = np.ones((4, 6))[::2, ::3]
    out = backend.as_float_array(strided)
    assert out.flags.c_contiguous and not np.shares_memory(out, strided)
    np.testing.assert_array_equal(out, strided)


@pytest.mark.parametrize("data,match", [
    ("x", "weights: expected an array, a number or a \\(nested\\) list, got str"),
    (b"x", "weights: expected an array, a number or a \\(nested\\) list, got bytes"),
    (np.array(["x"]), r"weights: expected real numbers \(bool, int or float\), got dtype <U1"),
    (np.array([1j]), r"weights: expected real numbers .*got dtype complex128"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), r"weights: expected real numbers .*got dtype datetime64\[D\]"),
    (np.array([{}]), "weights: expected numeric data, got an object array"),
])
def test_as_float_array_rejects_non_numbers(data, match):
    with pytest.raises(TypeError, match=match):
        backend.as_float_array(data, name="weights")


@pytest.mark.parametrize("dtype,shown", [(np.int32, "int32"), (np.float16, "float16"), ("nope", "'nope'"),
                                         (complex, "complex128")])
def test_as_float_array_rejects_non_float_dtypes(dtype, shown):
    with pytest.raises(TypeError, match=f"weights: dtype must be float32 or float64, got {shown}"):
        backend.as_float_array([1.0], dtype, name="weights")


@pytest.mark.gpu
@needs_gpu
def test_gpu_round_trip():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = backend.to_device(a, "gpu")
    assert backend.is_gpu_array(d) and backend.device_of(d) == "gpu" and backend.xp(d).__name__ == "cupy"
    assert backend.as_float_array(d).dtype == np.float32
    back = backend.to_device(d, "cpu")
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
