"""cpu_workers: the threads that run map_batch's slices, watching for their next task before they sleep."""

import multiprocessing
import threading
import time

import numpy as np
import pytest

from minivis.kernels import cpu_workers


def _where(part, parallel):
    return part.start, threading.current_thread().name, parallel


def test_the_workers_run_all_but_the_last_slice_and_the_caller_the_last():
    pool = cpu_workers.Workers(3)
    parts = [slice(0, 2), slice(2, 4), slice(4, 5), slice(5, 7)]
    out = pool.run(_where, parts)
    assert [start for start, _, _ in out] == [0, 2, 4, 5]  # in order
    assert {name for _, name, _ in out[:-1]} == {"minivis-batch-0", "minivis-batch-1", "minivis-batch-2"}
    assert out[-1][1] == threading.current_thread().name and not any(parallel for _, _, parallel in out)
    out = pool.run(_where, parts[:2])  # fewer slices than workers: the rest stay idle
    assert [start for start, _, _ in out] == [0, 2] and out[0][1] == "minivis-batch-0"


def test_a_worker_asleep_after_its_watch_still_takes_the_next_call():
    pool = cpu_workers.Workers(1)
    pool.run(_where, [slice(0, 1), slice(1, 2)])
    time.sleep(cpu_workers.WATCH_SECONDS * 5)  # past the watch: the worker sleeps on the lock
    assert pool.run(_where, [slice(0, 1), slice(1, 2)])[0][1] == "minivis-batch-0"


def test_the_first_error_is_raised_after_every_slice_finished():
    pool, finished = cpu_workers.Workers(2), []

    def fn(part, parallel):
        time.sleep(0.01 * part.start)
        if part.start < 2:
            raise ValueError(f"slice {part.start}")
        finished.append(part.start)

    with pytest.raises(ValueError, match="slice 0"):
        pool.run(fn, [slice(0, 1), slice(1, 2), slice(2, 3)])
    assert finished == [2]
    assert [s for s, _, _ in pool.run(_where, [slice(0, 1), slice(1, 2), slice(2, 3)])] == [0, 1, 2]  # usable again


def test_a_second_caller_runs_its_slices_itself_in_order():
    pool, started, out = cpu_workers.Workers(1), threading.Event(), {}

    def slow(part, parallel):
        started.set()
        time.sleep(0.2)
        return part.start

    other = threading.Thread(target=lambda: out.setdefault("first", pool.run(slow, [slice(0, 1), slice(1, 2)])))
    other.start()
    started.wait()
    out["second"] = pool.run(_where, [slice(0, 1), slice(1, 2)])  # the workers are busy: both slices here
    other.join()
    assert out["first"] == [0, 1]
    assert [name for _, name, _ in out["second"]] == [threading.current_thread().name] * 2


def test_a_larger_pool_replaces_the_smaller_and_its_threads_stop():
    small = cpu_workers.workers(1)
    large = cpu_workers.workers(small.size + 2)
    assert large is not small and large.size == small.size + 2 and cpu_workers.workers(1) is large
    for thread in small.threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_watch_reads_a_value_another_thread_stores():
    flags = np.zeros(2, np.int64)
    assert cpu_workers._watch(flags, 1, 0, True, 10) == 0  # nothing changed: gives up after its rounds
    threading.Timer(0.05, lambda: flags.__setitem__(1, 7)).start()
    assert cpu_workers._watch(flags, 1, 0, True, 10**9) == 7  # an atomic load: not hoisted out of the loop
    assert cpu_workers._watch(flags, 1, 7, False, 10) == 7


def _in_child(queue):
    from minivis.kernels import cpu_threads

    cpu_threads.MIN_WORK = 0
    queue.put(cpu_threads.map_batch(lambda part, _: part.stop - part.start, 6, 1))


def test_a_forked_child_makes_its_own_workers():
    from minivis.kernels import cpu_threads

    cpu_threads.map_batch(lambda part, _: None, 2, 1 << 30)  # the parent's workers exist
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert sum(got) == 6
