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

``scratch`` is the kernels' own working memory (polyphase planes, blocks of partial sums), which
never leaves a kernel call: each thread keeps one buffer per named slot between calls, so a call
after a pause does not fault its scratch pages in again.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Iterator

import numpy as np

from minivis.kernels import cpu_simd as simd

MIN_BYTES = 1 << 20  # smaller arrays stay with the allocator, whose heap serves them without faults
# A block serves arrays down to a quarter of its size, so a layer's output can reuse the block of a
# larger layer's; an array kept after the method pins at most 4x its own size. SmoothGrad's peak
# at batch 8: Lite0 175 MB without the pool, 279 MB with at most a quarter spare, 207 MB with 4x;
# VGG16 606, 731 and 546 MB (benchmarks/README.md, "Attribution, CPU").
SPARE = 4
SCRATCH_KEEP_BYTES = 8 << 20  # a thread keeps each scratch slot up to this size between calls
_local = threading.local()


def scratch(slot: str, size: int, dtype: np.dtype | type) -> np.ndarray:
    """A flat, vector-aligned (``cpu_simd.aligned_empty``) buffer of ``size`` elements, private to this
    thread and ``slot``: the next call for the same slot in the same thread gets the same memory.

    For a kernel's working memory only: its contents are undefined, and it must not outlive the call
    that asked for it (nor two live buffers share a slot). Larger than ``SCRATCH_KEEP_BYTES``: a fresh buffer.
    """
    dtype = np.dtype(dtype)
    nbytes = size * dtype.itemsize
    if nbytes > SCRATCH_KEEP_BYTES:
        return simd.aligned_empty(size, dtype)
    slots = getattr(_local, "scratch", None)
    if slots is None:
        slots = _local.scratch = {}
    block = slots.get(slot)
    if block is None or block.nbytes < nbytes:
        block = slots[slot] = simd.aligned_empty(nbytes, np.uint8)
    return block[:nbytes].view(dtype)


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
