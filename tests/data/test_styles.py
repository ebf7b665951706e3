"""Offline style images (minivis/data/styles.py): every name loads without network, as uint8 RGB."""

import numpy as np
import pytest

import minivis as mv


@pytest.mark.parametrize("name", mv.data.STYLES)
def test_every_style_loads_offline_as_uint8_rgb(name) -> None:
    img = mv.data.style_image(name, size=64)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 5


def test_procedural_styles_are_deterministic_and_sized() -> None:
    for name in ("stripes", "checkerboard", "waves", "mosaic"):
        a, b = mv.data.style_image(name, 48), mv.data.style_image(name, 48)
        assert a.shape == (48, 48, 3) and np.array_equal(a, b)
    board = mv.data.style_image("checkerboard", 16)[:, :, 0]
    assert set(np.unique(board)) == {0, 255} and board[0, 0] != board[0, 2]


def test_bad_names_and_sizes() -> None:
    with pytest.raises(ValueError, match="style_image: name must be one of 'brick'"):
        mv.data.style_image("zebra")
    with pytest.raises(ValueError, match="style_image: size must be a positive int"):
        mv.data.style_image("waves", 0)
