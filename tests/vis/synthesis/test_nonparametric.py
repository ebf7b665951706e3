"""Non-parametric texture synthesis (minivis/vis/synthesis/nonparametric.py): periodic textures are
reproduced exactly, the BLAS distance expansion equals the direct sum, every pixel is copied from
the sample, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis.synthesis import nonparametric as npt


def is_shift_of(out: np.ndarray, pattern, period: tuple[int, int]) -> bool:
    """True when ``out`` equals ``pattern(y + a, x + b)`` for some shift (a, b) within one period."""
    y, x = np.mgrid[:out.shape[0], :out.shape[1]]
    return any(np.array_equal(out, pattern(y + a, x + b)) for a in range(period[0]) for b in range(period[1]))


def test_checkerboard_is_reproduced_exactly() -> None:
    board = lambda y, x: ((y // 2 + x // 2) % 2).astype(np.float64)  # noqa: E731
    sample = board(*np.mgrid[:20, :20])
    out = npt.efros_leung(sample, (30, 34), window=5, progress=False)
    assert out.shape == (30, 34) and out.dtype == np.float64
    assert is_shift_of(out, board, (4, 4))


def test_colour_stripes_are_reproduced_exactly_in_uint8() -> None:
    colours = np.array([[230, 57, 70], [241, 250, 238], [29, 53, 87]], np.uint8)
    stripes = lambda y, x: colours[(x + 2 * y) // 2 % 3]  # noqa: E731  (diagonal, period 6 along x)
    sample = stripes(*np.mgrid[:24, :24])
    out, source = npt.efros_leung(sample, 40, window=7, seed=3, progress=False, return_source=True)
    assert out.dtype == np.uint8 and out.shape == (40, 40, 3)
    assert is_shift_of(out, stripes, (6, 6))
    np.testing.assert_array_equal(out, sample[source[..., 0], source[..., 1]])  # every pixel copied


def test_distances_equal_the_direct_weighted_sum(rng) -> None:
    sample = rng.uniform(0, 1, (12, 14, 3))
    offsets = npt.causal_offsets(5)
    assert len(offsets) == 12 and (offsets[:, 0] <= 0).all()
    assert not ((offsets[:, 0] == 0) & (offsets[:, 1] >= 0)).any()             # causal: nothing at or after p
    p, centres = npt.candidate_matrix(sample, offsets, 5)
    weights = np.repeat(npt.gaussian_weights(offsets, 5), 3) * rng.integers(0, 2, 36)   # a border mask
    target = rng.uniform(0, 1, 36)
    ours = npt.masked_distances(p, (p * p) @ weights, target, weights)
    direct = np.array([sum(weights[k] * (sample[cy + offsets[k // 3, 0], cx + offsets[k // 3, 1], k % 3]
                                         - target[k]) ** 2 for k in range(36)) for cy, cx in centres])
    np.testing.assert_allclose(ours, direct, rtol=1e-10, atol=1e-12)


def test_grey_texture_and_eps_zero_pick_only_best_matches(rng) -> None:
    sample = (rng.uniform(0, 1, (16, 16)) > 0.5).astype(np.float32)
    out = npt.efros_leung(sample, 20, window=3, eps=0.0, progress=False)
    assert out.shape == (20, 20) and out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, 1.0}
    np.testing.assert_array_equal(out, npt.efros_leung(sample, 20, window=3, eps=0.0, progress=False))  # seeded


def test_bad_input() -> None:
    sample = np.zeros((8, 10, 3))
    with pytest.raises(ValueError, match=r"efros_leung: the sample \(8x10\) is smaller than the 11x11"):
        npt.efros_leung(sample, 16, window=11)
    with pytest.raises(ValueError, match="efros_leung: window must be odd"):
        npt.efros_leung(sample, 16, window=4)
    with pytest.raises(ValueError, match="efros_leung: sample must be an HxW or HxWxC image"):
        npt.efros_leung(np.zeros((4, 4, 4, 4)), 16)
    with pytest.raises(ValueError, match="efros_leung: size must be >= 1"):
        npt.efros_leung(sample, 0, window=3)
    with pytest.raises(ValueError, match="efros_leung: eps must be >= 0"):
        npt.efros_leung(sample, 8, window=3, eps=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        npt.efros_leung(np.full((8, 8), np.nan), 8, window=3)
    assert mv.vis.efros_leung is npt.efros_leung
