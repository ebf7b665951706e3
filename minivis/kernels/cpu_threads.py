"""Thread parallelism for the CPU kernels: each thread takes its own slice of the work.

A convolution on the GEMM path alternates im2col (a Numba kernel) and a matrix product (BLAS).
Parallelising each step on its own means two thread pools taking turns, a barrier after every
step, and products split too thin to run fast (a 14x14 layer's per-image product is only
64 x 576 x 196). Instead, ``map_batch`` gives each of T threads a contiguous slice of the batch,
and inside its slice a thread runs everything single-threaded: serial Numba kernels (compiled
with ``nogil=True``, so Python threads really run them side by side) and BLAS limited to one
thread. No synchronisation is needed until the slices are done; this is also how oneDNN
parallelises convolutions, and it beats threading im2col and BLAS each on their own
(measured: benchmarks/README.md, "Design measurements", cpu_threads).

The slices need not be images: ``conv_plan`` hands out *tiles*, chunks of small images or
row bands of one large photo, so a single 224 px image keeps both threads busy too.

Worker threads must never start a Numba ``parallel=True`` kernel: Numba's workqueue threading
layer may not be entered from two threads at once. ``launch`` picks between a ``prange`` kernel and
its serial twin by size: waking Numba's threads costs more than a small memory-bound pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

MIN_WORK = 1 << 22  # multiply-adds; a smaller batch runs in the calling thread: a thread hand-off would cost more
ELEMENTWISE_MIN_WORK = 1 << 21  # elements; a memory-bound kernel on fewer runs on the calling thread alone

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas: list[Any] | None = None  # threadpoolctl's controllers of the BLAS libraries loaded


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < threads:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minivis-batch"), threads
    return _pool


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, restored after.

    The BLAS libraries loaded at the first call (NumPy's, which the hot paths' products use) are
    found once (threadpoolctl) and then set directly: ``threadpoolctl``'s own ``limit()`` re-reads
    every library's state and builds its records on each call (~20 us against ~7 us, on every
    ``map_batch``; benchmarks/README.md, "Design measurements", cpu_threads).
    """
    global _blas
    if _blas is None:
        import threadpoolctl

        _blas = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    changed = []
    for lib in _blas:
        threads = lib.get_num_threads()
        if threads != 1:
            lib.set_num_threads(1)
            changed.append((lib, threads))
    try:
        yield
    finally:
        for lib, threads in changed:
            lib.set_num_threads(threads)


def batch_slices(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices of ``range(n)`` whose lengths differ by at most one."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(parts)]


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """At most ``threads`` CPU threads for minivis's kernels in the calling thread, restored after.

    A Dask worker process with ``nthreads`` task threads runs each task under this, so that its
    ``map_batch`` tiles and ``prange`` kernels stay within the worker's share of the machine
    (Numba otherwise sizes its pool by all the cores, and two workers would oversubscribe them).
    ``numba.set_num_threads`` is per calling thread, so concurrent tasks do not interfere.
    """
    before = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(max(1, min(int(threads), before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def map_batch(fn: Callable[[slice, bool], Any], n: int, work: float) -> list[Any]:
    """``[fn(s, False) for s in batch_slices(n, T)]``, one slice per thread, T = ``numba.get_num_threads()``.

    The calling thread runs the last slice itself and T - 1 pool threads the others: a blocked
    pool thread takes tens of microseconds to wake, and a core left idle between calls runs the
    next one slower (a VGG 64-channel layer's forward + backward after 0.2 s of rest: 32.5 ms with
    every slice in the pool, 24-25 ms this way; benchmarks/README.md, "Design measurements").

    ``fn(part, parallel)``: with ``parallel=False`` (in a worker) it must use only serial kernels.
    BLAS always runs on one thread. ``work``: the multiply-adds of the whole call. Below
    ``MIN_WORK``, or with one thread or one item, ``fn(slice(0, n), True)`` runs once in the
    calling thread instead, where Numba kernels may use all threads.
    """
    threads = min(numba.get_num_threads(), n)
    if threads <= 1 or work < MIN_WORK:
        with _one_blas_thread():  # BLAS on one thread here too: an image's GEMM, and so its rounding,
            return [fn(slice(0, n), True)]  # must not depend on the batch it came in
    parts = batch_slices(n, threads)
    pool = _executor(threads - 1)
    with _one_blas_thread():
        # the calling thread takes the last slice itself: one thread fewer to wake, and its core stays busy
        futures = [pool.submit(fn, part, False) for part in parts[:-1]]
        try:
            last = fn(parts[-1], False)
        finally:
            for future in futures:  # every slice finishes before BLAS gets its threads back, even if one failed
                future.exception()  # (waits without raising; ~10 us cheaper than concurrent.futures.wait)
    return [future.result() for future in futures] + [last]


def launch(kernel: Callable[..., Any], serial: Callable[..., Any], work: int, *args: Any) -> None:
    """``kernel(*args)`` (a Numba ``prange`` kernel) on all threads, or ``serial(*args)``, its
    single-threaded twin, when ``work`` (elements) is below ``ELEMENTWISE_MIN_WORK``.

    Waking Numba's worker threads costs more than one core needs for a whole memory-bound pass
    over a million elements; from about 2M elements the threads win. EfficientNet-Lite0 at batch 1
    makes ~100 such launches per forward pass (measured: benchmarks/README.md, "Design
    measurements", cpu_threads).
    """
    (kernel if work >= ELEMENTWISE_MIN_WORK else serial)(*args)


def bmm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks (N, p, q) @ (N, q, r): the N products split across threads, each on
    single-threaded BLAS (``matmul`` below says why BLAS's own threads are avoided). One image's
    product, and so its rounding, does not depend on the others."""
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    map_batch(lambda part, _: np.matmul(a[part], b[part], out=out[part]), a.shape[0],
              a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2])
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D NumPy arrays, the longer side of the result split across threads.

    Splitting rows makes every thread read (and BLAS pack) all of ``b``, splitting columns all
    of ``a``: cutting the longer side shares the larger operand.

    Why not BLAS's own threads: OpenBLAS's idle threads keep spinning for a while after a threaded
    call, and a convolution that starts within that time runs on cores they occupy (measured:
    benchmarks/README.md, "Design measurements", cpu_threads).
    So minivis's hot paths call BLAS single-threaded, from ``map_batch`` workers, with two
    exceptions at batch 1 where handing work to our threads costs more than the product: a single
    row (a matrix-vector product, bound by reading ``b``; a classifier at batch 1) runs on BLAS's
    own threads here, as one image's 1x1 convolution does (``conv_plan.im2col_forward``): measured
    against one thread and against our split in benchmarks/README.md, "Design measurements", cpu_threads.
    """
    m, n = a.shape[0], b.shape[1]
    if m == 1:
        return np.matmul(a, b)
    out = np.empty((m, n), dtype=np.result_type(a, b))
    work = m * n * a.shape[1]
    if m >= n:
        map_batch(lambda rows, _: np.matmul(a[rows], b, out=out[rows]), m, work)
    else:
        cols_t = out.T  # (n, m) view; each worker writes whole columns of out
        map_batch(lambda cols, _: np.matmul(a, b[:, cols], out=cols_t[cols].T), n, work)
    return out

