"""Offline photos: shape and dtype of every name, grey replication, and bad names."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minivis import data

PACKAGES = {"chelsea": "skimage", "coffee": "skimage", "astronaut": "skimage", "rocket": "skimage",
            "motorcycle": "skimage", "camera": "skimage", "china": "sklearn", "flower": "sklearn"}
SHAPES = {"chelsea": (300, 451, 3), "coffee": (400, 600, 3), "astronaut": (512, 512, 3), "rocket": (427, 640, 3),
          "motorcycle": (500, 741, 3), "camera": (512, 512, 3), "china": (427, 640, 3), "flower": (427, 640, 3)}


def test_photo_names():
    assert data.PHOTOS == tuple(PACKAGES)


@pytest.mark.parametrize("name", list(PACKAGES))
def test_photo(name):
    pytest.importorskip(PACKAGES[name], reason=f"photo {name!r} needs the optional package {PACKAGES[name]}")
    img = data.photo(name)
    assert img.dtype == np.uint8 and img.shape == SHAPES[name]
    assert img.flags.writeable and img.flags.c_contiguous
    assert img.max() > 200 and img.min() < 50  # a real photograph, not a blank
    img[...] = 0  # a fresh copy each call
    assert data.photo(name).max() > 0


def test_camera_is_grey_replicated():
    skimage_data = pytest.importorskip("skimage.data", reason="camera needs the optional package scikit-image")
    img = data.photo("camera")
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], skimage_data.camera())


def test_motorcycle_is_left_view():
    skimage_data = pytest.importorskip("skimage.data", reason="motorcycle needs the optional package scikit-image")
    np.testing.assert_array_equal(data.photo("motorcycle"), skimage_data.stereo_motorcycle()[0])


def test_unknown_photo():
    with pytest.raises(ValueError, match=r"photo: name must be one of 'chelsea', 'coffee', .*'flower', got 'cat'"):
        data.photo("cat")


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ImportError, match=r"photo\('coffee'\) needs the optional package 'scikit-image'.*"
                                          r"pip install scikit-image"):
        data.photo("coffee")
