"""Dataset-level methods on Dask: the exact top-k merge against a brute-force top-k, partition
bounds, and top_activations / dead_filters / feature_codes on a 2-process LocalCluster identical
(bit for bit) to the single-process run; bad input; the single-machine path never imports Dask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minivis as mv
from minivis.kernels.cpu_topk import naive_topk, new_topk, topk_update
from minivis.vis.features.distributed import merge_topk, partition_bounds

ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- the merge, without Dask
@pytest.mark.parametrize("seed", range(4))
def test_merge_of_partition_topk_equals_topk_of_everything(seed):
    rng = np.random.default_rng(seed)
    rows, total, k = 5, 60, 7
    values = rng.integers(0, 6, size=(rows, total)).astype(np.float64)  # many ties
    want_v, want_i = naive_topk(values, k)
    cuts = np.sort(rng.choice(np.arange(1, total), size=3, replace=False))
    bounds = list(zip([0, *cuts], [*cuts, total], strict=True))
    vals, idxs, carried = [], [], []
    for a, b in bounds:  # each partition: the streaming kernel with global indices
        v, i = new_topk(rows, k)
        topk_update(values[None, :, a:b], a, v, i)
        vals.append(v), idxs.append(i), carried.append(i * 10)
    got_v, got_i, got_c = merge_topk(vals, idxs, k, carried)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_c, want_i * 10)


def test_merge_keeps_empty_slots_last():
    v1, i1 = new_topk(1, 3)
    v2, i2 = np.array([[-1.0, -np.inf, -np.inf]]), np.array([[4, -1, -1]])
    got_v, got_i = merge_topk([v1, v2], [i1, i2], 3)
    np.testing.assert_array_equal(got_i, [[4, -1, -1]])
    np.testing.assert_array_equal(got_v, [[-1.0, -np.inf, -np.inf]])


@pytest.mark.parametrize("n,batch,parts", [(10, 3, 2), (10, 3, 9), (7, 7, 3), (1000, 16, 8), (5, 1, 5)])
def test_partition_bounds_cover_the_dataset_on_batch_boundaries(n, batch, parts):
    bounds = partition_bounds(n, batch, parts)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(bounds[:-1], bounds[1:], strict=True))
    assert all(a % batch == 0 and b > a for a, b in bounds)
    sizes = [b - a for a, b in bounds[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= batch
    assert len(bounds) == min(parts, -(-n // batch))


# --------------------------------------------------------------------------- on a LocalCluster
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="the 'scale' extra (dask[distributed]) is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def fashion():
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN().eval()
    images = mv.data.fashion_mnist("test")[0][:70]
    return model, images


def _assert_same_tops(got, want):
    assert got.keys() == want.keys()
    for name in want:
        g, w = got[name], want[name]
        for field in ("image_index", "image_score", "image_location", "patch_index", "patch_value",
                      "patch_location", "patches"):
            np.testing.assert_array_equal(getattr(g, field), getattr(w, field), err_msg=f"{name}.{field}")
        assert (g.map_size, g.rf, g.count, g.score) == (w.map_size, w.rf, w.count, w.score)


@pytest.mark.slow
def test_dask_methods_equal_the_single_process_run(client, fashion):
    da = pytest.importorskip("dask.array")
    model, images = fashion
    layers = ["features.1", "features.8", "classifier.1"]
    want = mv.vis.top_activations(model, images, layers, k=6, batch_size=16)
    for parts in (2, 5):  # numpy dataset, scattered partition by partition
        _assert_same_tops(mv.vis.top_activations(model, images, layers, k=6, batch_size=16, client=client,
                                                 partitions=parts), want)
    lazy = da.from_array(images, chunks=(23, -1, -1))  # chunks that are not batch multiples get rechunked
    _assert_same_tops(mv.vis.top_activations(model, lazy, layers, k=6, batch_size=16, client=client), want)
    mean = mv.vis.top_activations(model, images, "features.3", k=4, batch_size=16, score="mean", crop=False)
    _assert_same_tops(mv.vis.top_activations(model, images, "features.3", k=4, batch_size=16, score="mean",
                                             crop=False, client=client, partitions=3), mean)

    dead = mv.vis.dead_filters(model, images, "features.4", batch_size=8)
    for got in (mv.vis.dead_filters(model, images, "features.4", batch_size=8, client=client, partitions=3),
                mv.vis.dead_filters(model, lazy, "features.4", batch_size=8, client=client)):
        for field in ("dead_fraction", "mean", "max"):
            np.testing.assert_array_equal(getattr(got, field), getattr(dead, field), err_msg=field)
        assert got.count == dead.count == 70

    codes = mv.vis.feature_codes(model, images, "classifier.1", batch_size=16)
    np.testing.assert_array_equal(mv.vis.feature_codes(model, lazy, "classifier.1", batch_size=16,
                                                       client=client, partitions=4), codes)


def test_dask_array_without_a_client_runs_on_the_local_scheduler(fashion):
    da = pytest.importorskip("dask.array")
    model, images = fashion
    x = model.preprocess(images[:20])
    lazy = da.from_array(x, chunks=(6, -1, -1, -1))
    want = mv.vis.top_activations(model, x, "features.4", k=3, batch_size=4)
    _assert_same_tops(mv.vis.top_activations(model, lazy, "features.4", k=3, batch_size=4), want)
    np.testing.assert_array_equal(mv.vis.feature_codes(model, lazy, "features.8", batch_size=4),
                                  mv.vis.feature_codes(model, x, "features.8", batch_size=4))


def test_bad_input_on_dask(fashion):
    pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    model, images = fashion
    with pytest.raises(TypeError, match="top_activations: client must be a dask.distributed.Client, got str"):
        mv.vis.top_activations(model, images, "features.1", client="tcp://localhost:8786")
    lazy = da.from_array(images[:8], chunks=4)
    with pytest.raises(ValueError, match="dead_filters: partitions must be a positive int"):
        mv.vis.dead_filters(model, lazy, "features.1", partitions=0)
    with pytest.raises(ValueError, match="feature_codes: images must be model inputs"):
        mv.vis.feature_codes(model, da.from_array(np.zeros((4, 3, 8, 8), np.int32)), "features.1")
    with pytest.raises(ValueError, match="top_activations: k=9 is larger than the dataset"):
        mv.vis.top_activations(model, lazy, "features.1")
    unknown = lazy[lazy[:, 0, 0] >= 0]  # a boolean mask: the length is unknown until computed
    with pytest.raises(ValueError, match="top_activations: the dask array's shape must be known"):
        mv.vis.top_activations(model, unknown, "features.1", k=1)


def test_the_single_machine_path_never_imports_dask():
    code = ("import sys, numpy as np, minivis as mv\n"
            "mv.nn.init.seed(0); m = mv.models.FashionCNN().eval()\n"
            "x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)\n"
            "mv.vis.top_activations(m, x, 'features.1', k=2); mv.vis.dead_filters(m, x, 'features.1')\n"
            "mv.vis.feature_codes(m, x, 'features.1')\n"
            "assert not [name for name in sys.modules if name.split('.')[0] in ('dask', 'distributed')]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_pickled_or_copied_model_leaves_its_hooks_behind():
    """A worker may ship its copy of the model to another worker while a pass has hooks on it."""
    import copy
    import pickle

    model = mv.models.FashionCNN()
    fired = []
    handle = model.features[1].register_forward_hook(lambda m, i, o: fired.append(1))
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert not clone.features[1]._forward_hooks and clone.features is clone.get_submodule("features")
        clone(mv.tensor(np.zeros((1, 1, 28, 28), np.float32)))
        np.testing.assert_array_equal(clone.features[0].weight.data, model.features[0].weight.data)
    assert fired == []
    handle.remove()
