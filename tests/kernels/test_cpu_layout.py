"""The copies between NCHW images and channels-last planes (Winograd's transforms and the
depthwise kernels run on them) against NumPy transposes."""

import numpy as np
import pytest

from minivis.kernels import cpu_layout


@pytest.mark.parametrize("channels", [1, 7, 8, 13, 32])
def test_the_channels_last_copies_are_transposes_of_a_window(channels, rng):
    """to_channels_last copies a window of an NCHW image into a channels-last plane at a shift, and
    from_channels_last copies a plane back; cells outside the window are left as they were."""
    src = rng.standard_normal((channels, 9, 10)).astype(np.float32)
    dst = np.full((8, 12, channels), np.nan, dtype=np.float32)
    # plane rows 1..7 read image rows 0..6 (row shift -1), plane columns 2..11 image columns 0..9 (col shift 2)
    cpu_layout.to_channels_last(src, -1, 2, 1, 8, 2, 12, dst)
    np.testing.assert_array_equal(dst[1:8, 2:12], src[:, 0:7, 0:10].transpose(1, 2, 0))
    assert np.isnan(dst[0]).all() and np.isnan(dst[:, :2]).all()

    plane = rng.standard_normal((4, 6, channels)).astype(np.float32)
    image = np.full((channels, 9, 10), np.nan, dtype=np.float32)
    cpu_layout.from_channels_last(plane, 3, 4, 5, image)  # plane rows 0..3 -> image rows 3..6, 5 columns
    np.testing.assert_array_equal(image[:, 3:7, :5], plane[:, :5].transpose(2, 0, 1))
    image[:, 3:7, :5] = np.nan
    assert np.isnan(image).all()
