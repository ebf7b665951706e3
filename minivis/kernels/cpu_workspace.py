"""Output buffers reused across the batches of a batched method (SmoothGrad, IG, Score-CAM, ...).

A method that runs one model on batch after batch asks for the same large arrays every batch.
glibc serves arrays above 32 MB, and memory it has trimmed, from fresh ``mmap``s, and every fresh
page costs a page fault (benchmarks/README.md, "Where a fresh process loses time: the allocator").
Inside ``reuse()`` the kernels' large outputs come from a pool of blocks instead: a block serves
a new array once no array or view of it is alive any more, which its reference count tells
(CPython's: every array and view of a block holds a reference to it as its ``base``).

Only arrays that die within the pass come from here (layer outputs, gradients). What a graph
keeps until its backward pass (region codes, max-pool switches) comes from the allocator: a
block is never split, so a long-lived array would hold a larger block for the whole pass.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Iterator

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays stay with the allocator, whose heap serves them without faults
# A block serves arrays down to a quarter of its size, so a layer's output can reuse the block of a
# larger layer's; an array kept after the method pins at most 4x its own size. SmoothGrad's peak
# at batch 8: Lite0 175 MB without the pool, 279 MB with at most a quarter spare, 207 MB with 4x;
# VGG16 606, 731 and 546 MB (benchmarks/README.md, "Attribution, CPU").
SPARE = 4
_local = threading.local()


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """Serve ``empty`` from a pool in this thread until the block ends (nested blocks share one pool)."""
    if getattr(_local, "pool", None) is not None:
        yield
        return
    _local.pool = []
    try:
        yield
    finally:
        _local.pool = None


def empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """``np.empty(shape, dtype)``; inside ``reuse()`` from the pool: the smallest free block that fits."""
    pool = getattr(_local, "pool", None)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if pool is None or nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    best = None
    for block in pool:
        # A free block is referenced by the pool's list, this loop's variable and getrefcount's argument.
        fits = nbytes <= block.nbytes <= nbytes * SPARE
        if fits and sys.getrefcount(block) == 3 and (best is None or block.nbytes < best.nbytes):
            best = block
    if best is None:
        best = np.empty(nbytes, np.uint8)
        pool.append(best)
    return best[:nbytes].view(dtype).reshape(shape)
