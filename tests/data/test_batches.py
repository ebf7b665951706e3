"""Mini-batches: coverage, alignment, determinism by seed, lengths and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minivis import data


@pytest.mark.parametrize("n,batch_size", [(10, 3), (10, 5), (10, 10), (10, 64), (1, 1), (0, 4), (257, 32)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_once_and_len(n, batch_size, drop_last, shuffle):
    x = np.arange(n)
    loader = data.batches(x, batch_size=batch_size, shuffle=shuffle, seed=0, drop_last=drop_last)
    expected_len = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(loader) == expected_len
    seen = list(loader)
    assert len(seen) == expected_len
    assert all(len(b) == batch_size for b in seen[:-1])
    if drop_last:
        assert all(len(b) == batch_size for b in seen)
        covered = np.concatenate(seen) if seen else np.array([], int)
        assert len(np.unique(covered)) == len(covered) == expected_len * batch_size
    else:
        covered = np.concatenate(seen) if seen else np.array([], int)
        np.testing.assert_array_equal(np.sort(covered), x)  # every index exactly once
        if seen:
            assert len(seen[-1]) == n - (expected_len - 1) * batch_size
    if not shuffle:
        np.testing.assert_array_equal(covered, x[:len(covered)])  # in order


def test_arrays_stay_aligned(rng):
    images = rng.standard_normal((23, 2, 4, 4))
    labels = np.arange(23)
    for xb, yb in data.batches(images, labels, batch_size=5, shuffle=True, seed=3):
        np.testing.assert_array_equal(xb, images[yb])
    xb, yb, zb = next(iter(data.batches(images, labels, [str(i) for i in range(23)], batch_size=4)))
    assert xb.shape == (4, 2, 4, 4) and list(zb) == ["0", "1", "2", "3"]


def test_shuffle_is_deterministic_by_seed_and_epochs_differ():
    x = np.arange(100)
    a = data.batches(x, batch_size=7, shuffle=True, seed=42)
    b = data.batches(x, batch_size=7, shuffle=True, seed=42)
    epochs_a = [np.concatenate(list(a)) for _ in range(3)]
    epochs_b = [np.concatenate(list(b)) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b, strict=True):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs_a[0], epochs_a[1])  # a fresh permutation each pass
    assert not np.array_equal(epochs_a[0], x)
    # The order is the permutation drawn by default_rng(seed).
    np.testing.assert_array_equal(epochs_a[0], np.random.default_rng(42).permutation(100))
    other = np.concatenate(list(data.batches(x, batch_size=7, shuffle=True, seed=43)))
    assert not np.array_equal(other, epochs_a[0])


def test_unshuffled_batches_are_views():
    x = np.arange(12.0)
    first = next(iter(data.batches(x, batch_size=4)))
    assert np.shares_memory(first, x)


def test_accepts_lists_and_generators_as_seed():
    out = list(data.batches([1, 2, 3], batch_size=2, shuffle=True, seed=np.random.default_rng(0)))
    assert sorted(np.concatenate(out).tolist()) == [1, 2, 3]


@pytest.mark.parametrize("batch_size,error,match", [
    (0, ValueError, "batch_size must be a positive int, got 0"),
    (-3, ValueError, "batch_size must be a positive int, got -3"),
    (2.5, TypeError, "batch_size must be a positive int, got 2.5"),
    (True, TypeError, "batch_size must be a positive int, got True"),
    (None, TypeError, "batch_size must be a positive int, got None"),
])
def test_bad_batch_size(batch_size, error, match):
    with pytest.raises(error, match=f"batches: {match}"):
        data.batches(np.arange(4), batch_size=batch_size)


def test_bad_arrays_and_seed():
    with pytest.raises(ValueError, match="batches: need at least one array, got none"):
        data.batches(batch_size=2)
    with pytest.raises(ValueError, match=r"batches: all arrays must have the same length \(first axis\), "
                                         r"got lengths \[4, 5\]"):
        data.batches(np.zeros(4), np.zeros(5), batch_size=2)
    with pytest.raises(ValueError, match="batches: array 1 must have at least 1 dimension, got a scalar"):
        data.batches(np.zeros(4), np.float64(3.0), batch_size=2)
    with pytest.raises(TypeError, match="batches: seed must be None, an int or a numpy Generator, got 'a'"):
        data.batches(np.zeros(4), batch_size=2, seed="a")
