"""cpu_threads: the batch split and the thread map that the CPU convolution path runs on."""

import threading

import numba
import numpy as np
import pytest

from minivis.kernels import cpu_threads


@pytest.mark.parametrize("n, parts", [(0, 2), (1, 2), (5, 2), (7, 3), (8, 8), (3, 16)])
def test_batch_slices_cover_the_batch_once_with_balanced_lengths(n, parts):
    slices = cpu_threads.batch_slices(n, parts)
    covered = np.concatenate([np.arange(n)[s] for s in slices])
    np.testing.assert_array_equal(covered, np.arange(n))  # contiguous, in order, no overlap
    lengths = [s.stop - s.start for s in slices]
    assert max(lengths) - min(lengths) <= 1
    assert len(slices) == max(1, min(parts, n))


def test_map_batch_runs_one_slice_per_thread_above_the_work_threshold(monkeypatch):
    if numba.get_num_threads() < 2:
        pytest.skip("needs 2 Numba threads")
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 10)
    seen = {}

    def fn(part, parallel):
        seen[part.start] = (threading.current_thread().name, parallel)
        return part

    parts = cpu_threads.map_batch(fn, 9, work=100)
    assert parts == cpu_threads.batch_slices(9, numba.get_num_threads())  # in order
    assert all(not parallel for _, parallel in seen.values())  # serial kernels everywhere
    # the calling thread takes the last slice; worker threads the others
    assert seen[parts[-1].start][0] == threading.current_thread().name
    assert all(seen[p.start][0].startswith("minivis-batch") for p in parts[:-1])
    # below the threshold: one call on the whole batch, in the calling thread, kernels may go parallel
    seen.clear()
    assert cpu_threads.map_batch(fn, 9, work=5) == [slice(0, 9)]
    assert seen == {0: (threading.current_thread().name, True)}


def test_map_batch_reraises_a_worker_error_after_every_slice_finished(monkeypatch):
    if numba.get_num_threads() < 2:
        pytest.skip("needs 2 Numba threads")
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    finished = []

    def fn(part, parallel):
        if part.start == 0:
            raise RuntimeError("slice 0 failed")
        finished.append(part)

    with pytest.raises(RuntimeError, match="slice 0 failed"):
        cpu_threads.map_batch(fn, 4, work=1)
    assert len(finished) == min(numba.get_num_threads(), 4) - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bmm_equals_numpy_and_each_product_ignores_its_neighbours(rng, dtype, monkeypatch):
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)  # split the stack across threads even when small
    a = rng.standard_normal((5, 4, 7)).astype(dtype)
    b = rng.standard_normal((5, 3, 7)).astype(dtype).transpose(0, 2, 1)  # a transposed view, as gram_matrix passes
    out = cpu_threads.bmm(a, b)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5 if dtype == np.float32 else 1e-12)
    for k in range(5):  # batch invariance: one product alone gives the same bits
        np.testing.assert_array_equal(cpu_threads.bmm(a[k:k + 1], b[k:k + 1])[0], out[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 300, 200), (9, 30, 4), (4, 30, 9), (64, 50, 33)])
def test_matmul_equals_numpy_split_on_either_side_or_as_one_blas_product(rng, dtype, m, k, n, monkeypatch):
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)  # split across threads even when small
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T  # a transposed view, as F.linear passes its weight
    out = cpu_threads.matmul(a, b)
    assert out.shape == (m, n) and out.dtype == dtype
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)
    if m == 1:  # one row: BLAS's own product (a matrix-vector product on its threads), not split by us
        np.testing.assert_array_equal(out, np.matmul(a, b))


def _numpy_blas_threads():
    import threadpoolctl

    infos = threadpoolctl.threadpool_info()
    return [i["num_threads"] for i in infos if i["user_api"] == "blas" and "numpy" in i["filepath"]]


def test_map_batch_runs_blas_on_one_thread_and_gives_its_threads_back_even_after_an_error(monkeypatch):
    """Checked by threadpoolctl's own reading of NumPy's BLAS, not by the cached controllers."""
    import threadpoolctl

    monkeypatch.setattr(cpu_threads, "MIN_WORK", 0)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _numpy_blas_threads()
        assert before and all(t == 2 for t in before)
        inside = []
        cpu_threads.map_batch(lambda part, parallel: inside.append(_numpy_blas_threads()), 4, work=1)
        assert inside and all(t == [1] * len(before) for t in inside)
        assert _numpy_blas_threads() == before

        def fail(part, parallel):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            cpu_threads.map_batch(fail, 4, work=1)
        assert _numpy_blas_threads() == before
        with cpu_threads._one_blas_thread(), cpu_threads._one_blas_thread():  # nested: the outer restores
            assert _numpy_blas_threads() == [1] * len(before)
        assert _numpy_blas_threads() == before
