"""The buffer pool of the streamed methods: a block serves a new array only once nothing uses it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import minivis as mv
from minivis import backend
from minivis.kernels import cpu_simd, cpu_workspace

SHAPE = (4, 8, 32, 32)  # 128 KB of float32


@pytest.fixture(autouse=True)
def pool_everything(monkeypatch):
    monkeypatch.setattr(cpu_workspace, "MIN_BYTES", 1024)


def test_outside_a_block_every_array_is_fresh():
    a = cpu_workspace.empty(SHAPE, np.float32)
    del a
    b, c = cpu_workspace.empty(SHAPE, np.float32), cpu_workspace.empty(SHAPE, np.float32)
    assert b.base is None and c.base is None and not np.shares_memory(b, c)


def test_a_dead_array_s_block_serves_the_next_request():
    with backend.reuse_buffers():
        a = cpu_workspace.empty(SHAPE, np.float32)
        block = id(a.base)  # the id: a reference would keep the block in use
        del a
        b = cpu_workspace.empty(SHAPE, np.float32)
        assert id(b.base) == block and b.shape == SHAPE and b.dtype == np.float32
        c = cpu_workspace.empty((SHAPE[0] * 2,) + SHAPE[1:], np.float16)  # same bytes, another dtype
        assert id(c.base) != block  # b still holds it


@pytest.mark.parametrize("keep", ["array", "view", "reshape", "list"])
def test_a_block_is_not_reused_while_anything_refers_to_it(keep):
    with backend.reuse_buffers():
        a = cpu_workspace.empty(SHAPE, np.float32)
        a[...] = 7
        held = {"array": a, "view": a[:, ::2], "reshape": a.reshape(-1), "list": [a]}[keep]
        del a
        for _ in range(3):
            cpu_workspace.empty(SHAPE, np.float32)[...] = -1
        assert (np.asarray(held[0] if keep == "list" else held) == 7).all()


def test_small_arrays_and_loose_fits_stay_out_of_the_pool():
    with backend.reuse_buffers():
        small = cpu_workspace.empty((10,), np.float32)  # below MIN_BYTES
        assert small.base is None
        big = cpu_workspace.empty((1000,), np.float64)
        block = id(big.base)
        del big
        fifth = cpu_workspace.empty((200,), np.float64)  # would keep five times its size alive
        assert id(fifth.base) != block
        quarter = cpu_workspace.empty((250,), np.float64)  # served by the block
        assert id(quarter.base) == block


def test_blocks_nest_share_one_pool_and_end_with_the_outer_one():
    with backend.reuse_buffers():
        with backend.reuse_buffers():
            a = cpu_workspace.empty(SHAPE, np.float32)
            block = id(a.base)
            del a
        assert id(cpu_workspace.empty(SHAPE, np.float32).base) == block  # the inner exit kept the pool
    assert cpu_workspace.empty(SHAPE, np.float32).base is None


def test_each_thread_has_its_own_pool():
    seen = []
    with backend.reuse_buffers():
        worker = threading.Thread(target=lambda: seen.append(cpu_workspace.empty(SHAPE, np.float32).base))
        worker.start()
        worker.join()
    assert seen == [None]


def test_consecutive_forward_passes_reuse_the_dead_activations():
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN(widths=(8, 16), hidden=32).eval()
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    with mv.no_grad():
        fresh = model(mv.tensor(x)).numpy().copy()
    hits = []
    real_empty = cpu_workspace.empty

    def spy(shape, dtype):
        out = real_empty(shape, dtype)
        hits.append(None if out.base is None else id(out.base))
        return out

    with mv.vis.common.inference(model):
        cpu_workspace.empty = spy
        try:
            first = model(mv.tensor(x)).numpy().copy()
            blocks = {b for b in hits if b is not None}
            hits.clear()
            second = model(mv.tensor(x)).numpy()
        finally:
            cpu_workspace.empty = real_empty
    assert any(b in blocks for b in hits)
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(second, fresh)


def test_what_a_graph_keeps_comes_from_the_allocator():
    """Region codes and switches live until the backward pass: from the pool they would hold a larger
    block that long (a block is never split)."""
    from minivis.kernels import cpu_activation, cpu_norm, cpu_pool  # noqa: PLC0415

    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    ones, zeros = np.ones(SHAPE[1], np.float32), np.zeros(SHAPE[1], np.float32)
    with backend.reuse_buffers():
        y, codes = cpu_norm.affine_clip(x, ones, zeros, 0.0, 6.0, region=True)
        out, region = cpu_activation.clip_region(x, 0.0, np.inf)
        pooled, switches = cpu_pool.relu_max_pool2x2(x.reshape(-1, 32, 32))
        _, switches2 = cpu_pool.max_pool2d(x.reshape(-1, 32, 32), (3, 3), (2, 2), (1, 1), (1, 1), (16, 16))
        kept = [codes, region, cpu_activation.relu_region(out, 0.0, np.inf), switches, switches2]
        assert all(a.base is None for a in kept)
        assert y.base is not None and out.base is not None  # the outputs do come from the pool


def test_scratch_is_per_thread_and_slot_reused_between_calls_and_vector_aligned():
    a = cpu_workspace.scratch("test a", 1000, np.float32)
    assert a.shape == (1000,) and a.dtype == np.float32 and a.ctypes.data % cpu_simd.VECTOR_BYTES == 0
    assert np.shares_memory(cpu_workspace.scratch("test a", 500, np.float64), a)  # the same slot: the same memory
    assert not np.shares_memory(cpu_workspace.scratch("test b", 1000, np.float32), a)  # another slot
    grown = cpu_workspace.scratch("test a", 100_000, np.float32)  # larger: a new block, kept from now on
    assert grown.shape == (100_000,) and np.shares_memory(cpu_workspace.scratch("test a", 10, np.float32), grown)
    other = []
    thread = threading.Thread(target=lambda: other.append(cpu_workspace.scratch("test a", 1000, np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], grown)  # another thread: its own
    huge = cpu_workspace.SCRATCH_KEEP_BYTES // 4 + 16
    first = cpu_workspace.scratch("test c", huge, np.float32)
    assert not np.shares_memory(cpu_workspace.scratch("test c", huge, np.float32), first)  # too large to keep
