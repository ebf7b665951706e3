"""Dataset-level methods on a Dask cluster: one partition of the dataset per task, exact merges.

Mining top activations, dead-filter statistics and feature codes are reductions over a dataset:
each image is pushed through the network on its own (an image's activations never depend on its
batch, DESIGN.md section 1), and what is kept per image is combined by an associative merge. So
the dataset can be cut into contiguous partitions, each run on a Dask worker by the very same
single-process code, and the partial results merged on the client:

* **top-k** (``top_activations``): each partition returns its own top-k lists of (value, global
  index); the global top-k under the order "larger value first, then smaller index" is contained
  in the union of the partitions' top-k, so sorting that union by (-value, index) and keeping k
  gives exactly the single-process lists (best first, ties in dataset order);
* **streaming statistics** (``dead_filters``): partitions start at multiples of ``batch_size``,
  so their batches are the single-process batches; each partition returns its per-batch counts,
  sums and maxima, and the client folds them in dataset order: the same floating-point
  additions, in the same order, as one process does;
* **codes** (``feature_codes``): each partition returns its rows, concatenated in order.

The results are therefore identical (bit for bit) to the single-process run. Nothing here is a
scheduler: Dask places the tasks, moves the data and retries lost workers.

The model travels to each worker once (``client.scatter(..., broadcast=True)``); numpy datasets
are scattered partition by partition; a ``dask.array`` dataset is loaded where it lives (for
instance ``dask.array.from_zarr`` on storage the workers can read, or ``from_delayed`` over image
files). A worker process runs one partition at a time, on its ``nthreads`` threads (minivis's
kernels split the partition's batches into tiles themselves): start workers with one process per
machine (or per socket) and as many threads as its cores.

Dask is an optional extra (``pip install minivis[scale]``); this module imports it only when a
client or a Dask array is passed, so the single-machine path never loads it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minivis import backend
from minivis.nn.module import Module
from minivis.validate import check_positive_int


def is_dask_array(images: Any) -> bool:
    """Whether ``images`` is a ``dask.array.Array`` (checked without importing Dask)."""
    return type(images).__module__.split(".")[0] == "dask" and hasattr(images, "chunks")


def wants_dask(images: Any, client: Any) -> bool:
    """Whether a method runs on Dask: a client was given, or the dataset is a Dask array."""
    return client is not None or is_dask_array(images)


def _import_dask(method: str) -> Any:
    try:
        import dask  # noqa: PLC0415 (optional extra, loaded only on this path)
        import dask.array  # noqa: F401, PLC0415
    except ImportError as err:
        raise ImportError(f"{method}: running on Dask needs the optional extra: pip install 'minivis[scale]' "
                          f"(dask[distributed]); {err}") from err
    return dask


def check_client(client: Any, method: str) -> Any:
    """``client`` if it is a ``dask.distributed.Client`` (or None), else a TypeError naming the method."""
    if client is None:
        return None
    _import_dask(method)
    try:
        from distributed import Client  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(f"{method}: client= needs dask.distributed: pip install 'minivis[scale]'") from err
    if not isinstance(client, Client):
        raise TypeError(f"{method}: client must be a dask.distributed.Client, got {type(client).__name__}")
    return client


def check_dataset(images: Any, method: str) -> np.ndarray:
    """A one-image NumPy stand-in of ``images`` (same dtype and image shape), for the single-process checks.

    ``images``: a NumPy array or a ``dask.array`` of model inputs (N, C, H, W) float or uint8
    images (N, H, W[, C]); Tensors and CuPy arrays are refused (the workers are CPU processes).
    """
    if not (isinstance(images, np.ndarray) or is_dask_array(images)):
        raise TypeError(f"{method}: on Dask, images must be a NumPy array or a dask.array, got "
                        f"{type(images).__name__}")
    if images.ndim < 3:
        raise ValueError(f"{method}: images must be (N, C, H, W) model inputs or (N, H, W[, C]) uint8 images, "
                         f"got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{method}: images is empty (0 images)")
    if any(np.isnan(s) for s in images.shape):
        raise ValueError(f"{method}: the dask array's shape must be known, got {images.shape} "
                         f"(call .compute_chunk_sizes() first)")
    return np.zeros((1, *images.shape[1:]), dtype=images.dtype)


def partition_bounds(n: int, batch_size: int, partitions: int) -> list[tuple[int, int]]:
    """``partitions`` contiguous ranges ``[start, stop)`` covering ``range(n)``, each start a multiple of
    ``batch_size`` (so each partition's batches are the single-process batches), sizes within one batch."""
    batches = -(-n // batch_size)
    parts = max(1, min(partitions, batches))
    cuts = [min(n, (batches * p // parts) * batch_size) for p in range(parts + 1)]
    return [(cuts[p], cuts[p + 1]) for p in range(parts)]


def _worker_threads() -> int | None:
    """The ``nthreads`` of the Dask worker running this task (None outside a worker)."""
    try:
        from distributed import get_worker  # noqa: PLC0415

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


# One minivis task at a time per process. Tasks on the threads of one worker (or of Dask's local
# scheduler) receive the same model object, and a pass registers hooks and switches modes on it; and
# Numba's workqueue threading layer aborts the process when two threads enter parallel kernels at
# once. So a process runs one partition at a time, and that partition uses all the process's
# threads for its own tiles (kernels/cpu_threads.py): give a worker T threads, not T processes' worth.
_one_task_at_a_time = threading.Lock()


def _run_partition(fn: Callable[..., Any], model: Module, block: Any, start: int, args: tuple) -> Any:
    """One task: ``fn(model, block, start, *args)``, alone in its process, on at most the worker's
    ``nthreads`` CPU threads."""
    block = np.asarray(block)
    threads = backend.kernels("threads", block, "dask partition")  # minivis/kernels/cpu_threads.py
    with _one_task_at_a_time, threads.limit_threads(_worker_threads()):
        return fn(model, block, start, *args)


def map_partitions(fn: Callable[..., Any], model: Module, images: Any, client: Any, batch_size: int,
                   partitions: int | None, method: str, args: Sequence[Any] = ()) -> list[Any]:
    """``[fn(model, images[a:b], a, *args) for (a, b) in partition_bounds(...)]``, run on Dask, in order.

    client: a ``dask.distributed.Client`` (tasks run on its workers) or None with a Dask array
    (Dask's default scheduler computes it). partitions: how many tasks (default: 4 per worker
    thread with a client, so that a slow worker does not hold up the end; else the array's number
    of chunks). Partition starts are multiples of ``batch_size``; a Dask array is rechunked to them.
    """
    dask = _import_dask(method)
    n = int(images.shape[0])
    if partitions is None:
        if client is not None:
            partitions = 4 * max(1, sum(client.nthreads().values()))
        else:
            partitions = len(images.chunks[0])
    check_positive_int(partitions, method, "partitions")
    bounds = partition_bounds(n, batch_size, partitions)
    args = tuple(args)
    if is_dask_array(images):
        sizes = tuple(b - a for a, b in bounds)
        blocks = list(images.rechunk({0: sizes, **{ax: -1 for ax in range(1, images.ndim)}}).to_delayed().ravel())
    else:
        blocks = [images[a:b] for a, b in bounds]
    if client is not None:
        model_f = client.scatter(model, broadcast=True, hash=False)
        data = client.compute(blocks) if is_dask_array(images) else client.scatter(blocks, hash=False)
        futures = [client.submit(_run_partition, fn, model_f, block, a, args, pure=False)
                   for block, (a, _) in zip(data, bounds, strict=True)]
        return client.gather(futures)
    model_d = dask.delayed(model, name=f"minivis-model-{uuid.uuid4().hex}", traverse=False)
    tasks = [dask.delayed(_run_partition, pure=False)(fn, model_d, block, a, args)
             for block, (a, _) in zip(blocks, bounds, strict=True)]
    return list(dask.compute(*tasks))


def merge_topk(values: Sequence[np.ndarray], indices: Sequence[np.ndarray], k: int,
               *carried: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The top-k of the union of several running top-k lists (each (R, k_p), best first), exactly.

    Order: larger value first, then smaller global index (dataset order), as the streaming kernel
    keeps it. Empty slots (-inf, -1) sort last. ``carried`` arrays (R, k_p) ride along with their
    entries (the argmax position of each top image). Returns (values, indices, *carried), each (R, k).
    """
    val = np.concatenate(values, axis=1)
    idx = np.concatenate(indices, axis=1)
    # an empty slot's index -1 must not sort before a real entry of equal value: map it past every index
    key_idx = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_idx, -val), axis=-1)[:, :k]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return (take(val), take(idx), *(take(np.concatenate(c, axis=1)) for c in carried))
