"""Image transforms: values against independent references (PyTorch's antialiased bilinear
interpolation, Pillow on RGB images, hand-worked crop offsets), shapes, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from minivis import data


def test_to_float(rng):
    img = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    out = data.to_float(img)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 1, 128, 255]], np.float32) / np.float32(255))
    assert out.min() == 0.0 and out.max() == 1.0
    assert data.to_float(img, dtype=np.float64)[0, 2] == 128 / 255
    x = rng.random((2, 3, 3))
    assert data.to_float(x).dtype == np.float32 and np.allclose(data.to_float(x), x, rtol=1e-7)


def test_to_float_bad_inputs():
    with pytest.raises(TypeError, match=r"to_float: img must be uint8 \(0\.\.255\) or float .*got dtype int32"):
        data.to_float(np.zeros((2, 2), np.int32))
    with pytest.raises(TypeError, match="to_float: img must be a numpy array, got list"):
        data.to_float([[0, 1]])
    with pytest.raises(TypeError, match="to_float: dtype must be a float dtype, got int64"):
        data.to_float(np.zeros((2, 2), np.uint8), dtype=np.int64)


def torch_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PyTorch's antialiased bilinear resize (align_corners=False) in float64, (H, W, C) in and out."""
    torch = pytest.importorskip("torch", reason="torch is the reference for resize")
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))[None].astype(np.float64))
    y = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return y[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("shape,size", [((37, 53, 3), (74, 106)), ((37, 53, 3), (20, 31)),
                                        ((37, 53, 3), (37, 53)), ((37, 53, 3), (11, 90)),
                                        ((16, 16, 1), 5), ((9, 30, 4), (30, 9))])
def test_resize_float_matches_torch_antialiased_bilinear(rng, shape, size):
    img = rng.random(shape).astype(np.float32)
    out = data.resize(img, size)
    hw = (size, size) if isinstance(size, int) else size
    assert out.shape == (*hw, shape[2]) and out.dtype == np.float32
    np.testing.assert_allclose(out, torch_bilinear(img, hw), rtol=0, atol=2e-6)  # Pillow computes in float32


def test_resize_grey_and_float64(rng):
    img = rng.random((20, 24))
    out = data.resize(img, (10, 12))
    assert out.shape == (10, 12) and out.dtype == np.float64
    np.testing.assert_allclose(out, torch_bilinear(img[:, :, None], (10, 12))[:, :, 0], atol=2e-6)


def test_resize_uint8_equals_pillow_rgb(rng):
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in [(20, 31), (80, 40)]:
        expected = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR))
        np.testing.assert_array_equal(data.resize(img, size), expected)


def test_resize_keeps_constant_images_constant():
    img = np.full((13, 17, 3), 77, np.uint8)
    assert np.all(data.resize(img, (40, 5)) == 77)


@pytest.mark.parametrize("shape,size,expected", [((300, 451, 3), 224, (224, 336)), ((451, 300), 224, (336, 224)),
                                                 ((64, 64, 3), 32, (32, 32)), ((10, 33, 3), 7, (7, 23))])
def test_resize_shorter_side(rng, shape, size, expected):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = data.resize_shorter_side(img, size)
    assert out.shape[:2] == expected and out.shape[2:] == shape[2:]
    np.testing.assert_array_equal(out, data.resize(img, expected))


@pytest.mark.parametrize("shape,size,top,left", [
    ((5, 5), 3, 1, 1), ((6, 8), (2, 4), 2, 2),
    ((5, 7), 2, 2, 2),   # (5-2)/2 = 1.5 -> 2, (7-2)/2 = 2.5 -> 2: Python's round, as torchvision
    ((7, 4), (2, 1), 2, 2), ((4, 4), 4, 0, 0),
])
def test_center_crop_offsets(shape, size, top, left):
    img = np.arange(np.prod(shape)).reshape(shape).astype(np.float32)
    out = data.center_crop(img, size)
    h, w = (size, size) if isinstance(size, int) else size
    np.testing.assert_array_equal(out, img[top:top + h, left:left + w])
    out[...] = -1
    assert img.min() >= 0  # a copy, not a view


def test_center_crop_colour(rng):
    img = rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)
    out = data.center_crop(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[38:262, 114:338])


def test_random_crops(rng):
    img = np.arange(5 * 6 * 2).reshape(5, 6, 2).astype(np.uint8)
    crops = data.random_crops(img, (3, 2), n=400, seed=7)
    assert crops.shape == (400, 3, 2, 2) and crops.dtype == np.uint8
    positions = set()
    for crop in crops:  # each crop is the window at the position its top-left value names
        top, left = divmod(int(crop[0, 0, 0]) // 2, 6)
        np.testing.assert_array_equal(crop, img[top:top + 3, left:left + 2])
        positions.add((top, left))
    assert positions == {(t, s) for t in range(3) for s in range(5)}  # every position reachable
    np.testing.assert_array_equal(crops, data.random_crops(img, (3, 2), n=400, seed=7))
    assert not np.array_equal(crops, data.random_crops(img, (3, 2), n=400, seed=8))
    grey = data.random_crops(img[:, :, 0], 5, n=3, seed=0)
    assert grey.shape == (3, 5, 5)


def test_to_nchw(rng):
    batch = rng.random((2, 5, 7, 3)).astype(np.float32)
    out = data.to_nchw(batch)
    assert out.shape == (2, 3, 5, 7) and out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out[1, 2], batch[1, :, :, 2])
    grey = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    out = data.to_nchw(grey)
    assert out.shape == (4, 1, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], grey)


def test_transforms_bad_inputs():
    img = np.zeros((8, 8, 3), np.uint8)
    for op in (data.resize, data.center_crop):
        name = op.__name__
        with pytest.raises(ValueError, match=rf"{name}: img must be 2-D \(H, W\) or 3-D \(H, W, C\), "
                                             r"got shape \(8,\)"):
            op(np.zeros(8, np.uint8), 4)
        with pytest.raises(TypeError, match=rf"{name}: img must be uint8 or float, got dtype int64"):
            op(np.zeros((8, 8), np.int64), 4)
        with pytest.raises(TypeError, match=rf"{name}: img must be a numpy array .*got list"):
            op([[0]], 4)
        with pytest.raises(ValueError, match=rf"{name}: size must be positive, got \(0, 4\)"):
            op(img, (0, 4))
        with pytest.raises(TypeError, match=rf"{name}: size must be an int or a pair .*, got 2\.5"):
            op(img, 2.5)
        with pytest.raises(TypeError, match=rf"{name}: size must be an int or a pair of ints \(h, w\), "
                                           r"got \(1, 2, 3\)"):
            op(img, (1, 2, 3))
    with pytest.raises(ValueError, match=r"center_crop: size \(9, 4\) must fit in the image, "
                                         r"got image \(H, W\) = \(8, 8\)"):
        data.center_crop(img, (9, 4))
    with pytest.raises(ValueError, match=r"random_crops: size \(8, 9\) must fit in the image"):
        data.random_crops(img, (8, 9), n=2, seed=0)
    with pytest.raises(ValueError, match=r"random_crops: n must be a positive int, got 0"):
        data.random_crops(img, 2, n=0, seed=0)
    with pytest.raises(ValueError, match=r"resize: img must not be empty, got shape \(0, 8, 3\)"):
        data.resize(np.zeros((0, 8, 3), np.uint8), 4)
    with pytest.raises(ValueError, match=r"resize_shorter_side: size must be a positive int, got 0"):
        data.resize_shorter_side(img, 0)
    with pytest.raises(TypeError, match=r"resize_shorter_side: size must be a positive int, got \(4, 4\)"):
        data.resize_shorter_side(img, (4, 4))
    with pytest.raises(ValueError, match=r"to_nchw: batch must be 4-D \(N, H, W, C\) or 3-D \(N, H, W\), "
                                         r"got shape \(8, 8\)"):
        data.to_nchw(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="to_nchw: batch must be a numpy array, got list"):
        data.to_nchw([[[0]]])


@pytest.mark.parametrize("call,match", [
    (lambda img: data.resize(img, (2**40, 3)), r"resize: the output would have shape \(1099511627776, 3, 3\)"),
    (lambda img: data.resize(img, 10**30), r"resize: the output would have shape \(10+, 10+, 3\)"),
    (lambda img: data.resize_shorter_side(img, 2**40), r"resize_shorter_side: the output would have shape"),
    (lambda img: data.random_crops(img, 8, n=2**40, seed=0), r"random_crops: the crops would have shape"),
    (lambda img: data.random_crops(img, 4, n=10**30, seed=0), r"random_crops: the crops would have shape"),
])
def test_output_larger_than_memory_is_refused_by_name(call, match):
    """Huge sizes once gave a MemoryError or NumPy's "Maximum allowed dimension exceeded"."""
    with pytest.raises(ValueError, match=match + ".*more than this machine's memory"):
        call(np.zeros((8, 8, 3), np.uint8))


def test_resize_past_pillows_int_sizes_is_refused_by_name():
    """A side of 2**31 fits in memory for a thin grey image, but Pillow raised an OverflowError."""
    with pytest.raises(ValueError, match=r"resize: size must be below 2\*\*31 on each side \(Pillow's limit\), "
                                         r"got \(1, 2147483648\)"):
        data.resize(np.zeros((4, 4), np.uint8), (1, 2**31))
