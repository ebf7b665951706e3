"""Mini-batches of aligned arrays, e.g. images and their labels, optionally shuffled by a seeded generator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from minivis.validate import check_seed


class Batches:
    """Re-iterable mini-batches over the first axis of several equally long arrays.

    ``len(batches)`` is the number of batches per pass. Each pass (``for`` loop) with ``shuffle=True``
    draws a fresh permutation from one ``np.random.default_rng(seed)`` stream, so epochs differ from
    each other but the whole sequence of epochs is the same for the same seed.
    """

    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = False,
                 seed: int | np.random.Generator | None = None, drop_last: bool = False):
        if not arrays:
            raise ValueError("batches: need at least one array, got none")
        if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool):
            raise TypeError(f"batches: batch_size must be a positive int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batches: batch_size must be a positive int, got {batch_size}")
        if seed is not None and not isinstance(seed, int | np.integer | np.random.Generator):
            raise TypeError(f"batches: seed must be None, an int or a numpy Generator, got {seed!r}")
        # Keep ndarray-likes (NumPy, CuPy) as they are: indexing them yields the same kind of array.
        arrays = tuple(a if hasattr(a, "shape") and hasattr(a, "__getitem__") else np.asarray(a)
                       for a in arrays)
        for i, a in enumerate(arrays):
            if len(a.shape) == 0:
                raise ValueError(f"batches: array {i} must have at least 1 dimension, got a scalar")
        lengths = [a.shape[0] for a in arrays]
        if len(set(lengths)) > 1:
            raise ValueError(f"batches: all arrays must have the same length (first axis), "
                             f"got lengths {lengths}")
        self.arrays = arrays
        self.n = lengths[0]
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = np.random.default_rng(check_seed(seed, "batches", generator_ok=True))

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Any]:
        order = self._rng.permutation(self.n) if self.shuffle else None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n)
            # Unshuffled batches are slices (views, no copy); shuffled ones gather by index.
            index = slice(lo, hi) if order is None else order[lo:hi]
            batch = tuple(a[index] for a in self.arrays)
            yield batch[0] if len(batch) == 1 else batch


def batches(*arrays: Any, batch_size: int, shuffle: bool = False,
            seed: int | np.random.Generator | None = None, drop_last: bool = False) -> Batches:
    """Mini-batches of ``arrays`` (each ``(N, ...)``), aligned by index.

    Yields one array per batch when given one array, else a tuple in the order given. Batches hold
    ``batch_size`` items; the last holds ``N % batch_size`` unless ``drop_last``. With ``shuffle`` each
    pass visits every index exactly once in an order drawn from ``np.random.default_rng(seed)``.

        for xb, yb in mv.data.batches(images, labels, batch_size=64, shuffle=True, seed=0): ...
    """
    return Batches(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
