"""The worker threads of ``cpu_threads.map_batch``, which watch for their next task before they sleep.

A thread that sleeps on a lock between tasks must be woken by the kernel, and on a virtual machine an
idle virtual CPU is halted too: measured here, a pool thread started its slice 150-420 us (median;
p90 up to 1.1 ms) after the caller handed it over, and the caller, asleep in its turn, learnt of the
end as late. A training step of ``fashion_cnn`` makes 17 such hand-offs, a 28 px layer's forward
pass takes about a millisecond: the hand-off was a large part of the small layers' time.

So, as OpenMP runtimes do (PyTorch's threads spin too), a worker that has finished a task *watches*
for the next one for ``WATCH_SECONDS`` before it sleeps, and the caller watches for the workers to
finish. Watching is a loop of atomic loads in ``nogil`` Numba code, so it never holds the GIL, and
each round calls ``sched_yield``: a thread that needs the core (a Numba ``prange`` kernel's, BLAS's)
gets it at once. The hand-off is then a store and a load: a few microseconds.

Protocol (``flags``, int64): flags[0] is the call's sequence number (negative: stop), flags[1 + k]
the last call worker k finished. The caller writes the tasks, then flags[0] under the condition's
lock (a sleeping worker cannot miss it); worker k runs its task, stores flags[1 + k], and notifies
under the lock (the caller cannot miss it either). One caller at a time: a second thread that finds
the workers busy runs its slices itself, in order (the same slices, so the same sums).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

WATCH_SECONDS = 0.002  # how long an idle worker, or a waiting caller, watches before sleeping on the lock

_sched_yield = ctypes.CDLL(ctypes.util.find_library("c") or None).sched_yield
_sched_yield.restype, _sched_yield.argtypes = ctypes.c_int, []


@intrinsic
def _load_acquire(typingctx, arr, i):  # noqa: ANN001, ANN201
    """arr[i] of an int64 array as an atomic load: the compiler may not hoist it out of a loop."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        raise numba.core.errors.TypingError("cpu_workers._load_acquire: an int64 array expected")

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load_atomic(builder.gep(data, [args[1]]), "acquire", 8)

    return types.int64(arr, types.intp), codegen


@numba.njit(nogil=True)  # not cached: it calls libc through a ctypes pointer
def _watch(flags, i, until, differ, rounds):
    """Watch flags[i] (without the GIL) until it equals ``until`` (``differ`` False) or differs from it
    (``differ`` True), for at most ``rounds`` rounds of a load and a yield; returns the last value read."""
    v = _load_acquire(flags, i)
    for _ in range(rounds):
        if (v != until) == differ:
            return v
        _sched_yield()
        v = _load_acquire(flags, i)
    return v


def _rounds() -> int:
    """Rounds of ``_watch`` in ``WATCH_SECONDS`` on this machine (measured once)."""
    flags = np.zeros(1, np.int64)
    _watch(flags, 0, 0, True, 10)  # compile
    start = time.perf_counter()
    _watch(flags, 0, 0, True, 20_000)
    per_round = max((time.perf_counter() - start) / 20_000, 1e-8)
    return max(1, int(WATCH_SECONDS / per_round))


class Workers:
    """``size`` daemon threads that run the slices ``run`` hands them."""

    def __init__(self, size: int) -> None:
        self.size, self.rounds = size, _rounds()
        self.flags = np.zeros(1 + size, np.int64)
        self.cond, self.busy = threading.Condition(), threading.Lock()
        self.tasks: list[Any] = [None] * size
        self.results: list[Any] = [None] * size
        self.threads = [threading.Thread(target=self._loop, args=(k,), name=f"minivis-batch-{k}", daemon=True)
                        for k in range(size)]
        for thread in self.threads:
            thread.start()

    def _loop(self, k: int) -> None:
        flags, seen = self.flags, 0
        while True:
            seq = int(_watch(flags, 0, seen, True, self.rounds))
            if seq == seen:  # nothing came while it watched: sleep until a caller notifies
                with self.cond:
                    while flags[0] == seen:
                        self.cond.wait()
                    seq = int(flags[0])
            if seq < 0:
                return
            seen = seq
            if self.tasks[k] is not None:  # a call with fewer slices than workers leaves some idle
                fn, part = self.tasks[k]
                try:
                    self.results[k] = (fn(part, False), None)
                except BaseException as error:  # noqa: BLE001 (handed to the caller, raised there)
                    self.results[k] = (None, error)
                self.tasks[k] = None
            with self.cond:
                flags[1 + k] = seq
                self.cond.notify_all()

    def run(self, fn: Callable[[slice, bool], Any], parts: Sequence[slice]) -> list[Any]:
        """``[fn(part, False) for part in parts]``: all parts but the last on the workers, the last in the
        calling thread; the workers' exceptions are raised here (the first one), after all finish."""
        if not 2 <= len(parts) <= self.size + 1 or not self.busy.acquire(blocking=False):
            return [fn(part, False) for part in parts]  # another caller has the workers: the same slices here
        try:
            seq, given = int(self.flags[0]) + 1, len(parts) - 1
            for k in range(given):
                self.tasks[k] = (fn, parts[k])
            with self.cond:
                self.flags[0] = seq
                self.cond.notify_all()
            try:
                last = fn(parts[-1], False)
            finally:
                self._wait(seq)  # every slice finishes before the caller goes on, even if its own failed
            results, self.results = self.results[:given], [None] * self.size
            for _, error in results:
                if error is not None:
                    raise error
            return [value for value, _ in results] + [last]
        finally:
            self.busy.release()

    def _wait(self, seq: int) -> None:
        for k in range(self.size):
            if _watch(self.flags, 1 + k, seq, False, self.rounds) != seq:
                with self.cond:
                    while self.flags[1 + k] != seq:
                        self.cond.wait()


_workers: Workers | None = None
_lock = threading.Lock()


def workers(size: int) -> Workers:
    """The process's workers, at least ``size`` of them (made again, larger, when a call wants more)."""
    global _workers
    with _lock:
        if _workers is None or _workers.size < size:
            if _workers is not None:  # the old threads stop at their next look
                with _workers.cond:
                    _workers.flags[0] = -1
                    _workers.cond.notify_all()
            _workers = Workers(size)
        return _workers


def _forget() -> None:
    """In a forked child the workers' threads do not exist: the next call makes new ones."""
    global _workers, _lock
    _workers, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)
