"""Nearest neighbours in feature space (Krizhevsky, Sutskever & Hinton, "ImageNet Classification
with Deep Convolutional Neural Networks", NeurIPS 2012, figure 4).

Take a layer's output as a *code* for each image (AlexNet's 4096-d fc7; here any layer,
flattened) and retrieve the images whose codes are closest to a query's. Neighbours in the code
of a late layer share the class although their pixels differ (a shoe pointing left next to one
pointing right); neighbours in pixel space share the layout and brightness instead.

* ``feature_codes(model, images, layer)``: (N, D) codes, streamed in batches.
* ``nearest_neighbours(queries, database, k, metric)``: the exact k nearest database rows of
  every query, by Euclidean (``"l2"``) or cosine distance.

How it stays exact and fast: the squared distance expands as
``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b``, so for a fixed query the ranking of the database is
the ranking of ``2 a.b - ||b||^2``: one matrix product (BLAS) per block of queries and
database rows, in float64 so that rounding cannot reorder distinct distances in practice. The
blocks are ``chunk x chunk`` (memory stays bounded whatever N is), and a running top-k per
query merges block after block. The distances returned are then recomputed directly,
``sqrt(sum((a - b)^2))``, for the k winners only.

Ties: equal scores keep database order (the smaller index comes first), so a duplicated
database row appears right after its first copy. Cosine distance is ``1 - a.b / (|a| |b|)``;
zero vectors have no direction and are rejected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_positive_int, check_str
from minivis.vis.common import check_layer
from minivis.vis.features import distributed
from minivis.vis.features.activations import check_batch_size, dataset_kind, inference, layer_outputs, stream_inputs

METRICS = ("l2", "cosine")


def feature_codes(model: Module, images: Any, layer: str, batch_size: int = 256, client: Any = None,
                  partitions: int | None = None) -> Any:
    """The output of ``layer`` for every image, flattened to one row per image: (N, D).

    images: model inputs (N, C, H, W) float, or uint8 images (N, H, W[, C]) preprocessed per batch.
    Runs in eval mode without a graph, one batch at a time; the result is on the model's device.
    client (or a ``dask.array`` of images): ``partitions`` parts of the dataset run on Dask workers
    and their rows are concatenated in order (a NumPy array, identical to the single-process one).
    """
    check_layer(model, layer, "feature_codes")
    batch_size = check_batch_size(batch_size, "feature_codes")
    if distributed.wants_dask(images, client):
        distributed.check_client(client, "feature_codes")
        dataset_kind(model, distributed.check_dataset(images, "feature_codes"), "feature_codes")
        parts = distributed.map_partitions(_codes, model, images, client, batch_size, partitions,
                                           "feature_codes", (layer, batch_size))
        return np.concatenate(parts, axis=0)
    dataset_kind(model, images, "feature_codes")
    return _codes(model, images, 0, layer, batch_size)


def _codes(model: Module, images: Any, offset: int, layer: str, batch_size: int) -> Any:
    """(N, D) codes of ``images`` (``offset``, where they start in the dataset, is unused). One Dask
    partition runs exactly this."""
    n = (images.data if isinstance(images, Tensor) else images).shape[0]
    codes = None
    with inference(model):
        for start, batch in stream_inputs(model, images, batch_size, "feature_codes"):
            act = layer_outputs(model, batch, [layer], "feature_codes")[layer]
            flat = act.reshape(act.shape[0], -1)
            if codes is None:
                codes = backend.xp(flat).empty((n, flat.shape[1]), dtype=flat.dtype)
            codes[start:start + flat.shape[0]] = flat
    return codes


def _as_codes(codes: Any, name: str) -> np.ndarray:
    data = codes.data if isinstance(codes, Tensor) else codes
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)):
        raise TypeError(f"nearest_neighbours: {name} must be an array or Tensor (N, D), got {type(codes).__name__}")
    data = np.asarray(backend.to_device(data, "cpu"))
    if data.dtype.kind not in "fiu":
        raise TypeError(f"nearest_neighbours: {name} must be numeric, got dtype {data.dtype}")
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"nearest_neighbours: {name} must be 2-D (N, D) with N, D >= 1, got shape {data.shape}")
    data = data.astype(np.float64)
    if not np.isfinite(data).all():
        raise ValueError(f"nearest_neighbours: {name} contains NaN or infinite values")
    return data


def _unit_rows(codes: np.ndarray, name: str) -> np.ndarray:
    norms = np.sqrt(np.einsum("nd,nd->n", codes, codes))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"nearest_neighbours: cosine distance is undefined for zero vectors; {name} rows "
                         f"{zero[:10].tolist()}{' ...' if zero.size > 10 else ''} are all zero")
    return codes / norms[:, None]


def nearest_neighbours(queries: Any, database: Any, k: int = 5, metric: str = "l2", chunk: int = 1024,
                       exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``database`` for each query, exactly.

    queries: (Q, D) or one query (D,); database: (N, D); any numeric dtype (computed in float64).
    metric: ``"l2"`` (Euclidean distance) or ``"cosine"`` (1 - cosine similarity).
    chunk: block side: ``chunk x chunk`` scores are held at a time.
    exclude_self: queries *are* the database (Q == N): skip each query's own row.

    Returns ``(indices, distances)``, each (Q, k) (or (k,) for one query), nearest first; equal
    distances are ordered by database index.
    """
    single = getattr(queries, "ndim", None) == 1
    if single:
        queries = (queries.data if isinstance(queries, Tensor) else queries)[None]
    q = _as_codes(queries, "queries")
    db = _as_codes(database, "database")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"nearest_neighbours: queries have {q.shape[1]} features, database has {db.shape[1]}")
    if check_str(metric, "nearest_neighbours", "metric", METRICS) not in METRICS:
        raise ValueError(f"nearest_neighbours: metric must be one of {METRICS}, got {metric!r}")
    check_positive_int(chunk, "nearest_neighbours", "chunk")
    if exclude_self and q.shape[0] != db.shape[0]:
        raise ValueError(f"nearest_neighbours: exclude_self needs queries == database, got {q.shape[0]} queries "
                         f"and {db.shape[0]} database rows")
    available = db.shape[0] - (1 if exclude_self else 0)
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 1 <= k <= available:
        raise ValueError(f"nearest_neighbours: k must be an int in 1..{available}, got {k!r}")
    if metric == "cosine":
        q, db = _unit_rows(q, "queries"), _unit_rows(db, "database")
        bias = np.zeros(db.shape[0])
        scale = 1.0
    else:
        bias = np.einsum("nd,nd->n", db, db)  # ||b||^2
        scale = 2.0
    topk = backend.kernels("topk", q, "nearest_neighbours")  # the running top-k merge, minivis/kernels/cpu_topk.py
    top_val, top_idx = topk.new_topk(q.shape[0], int(k))
    for q0 in range(0, q.shape[0], chunk):
        rows = slice(q0, q0 + chunk)
        for d0 in range(0, db.shape[0], chunk):
            cols = slice(d0, d0 + chunk)
            # score = 2 a.b - ||b||^2 (l2) or a.b (cosine, unit rows): larger is nearer
            score = scale * (q[rows] @ db[cols].T) - bias[cols]
            if exclude_self:
                i = np.arange(max(q0, d0), min(q0 + score.shape[0], d0 + score.shape[1]))
                score[i - q0, i - d0] = -np.inf
            topk.topk_update(score[None], d0, top_val[rows], top_idx[rows])
    distances = _distances(q, db, top_idx, metric, chunk)
    return (top_idx[0], distances[0]) if single else (top_idx, distances)


def _distances(q: np.ndarray, db: np.ndarray, idx: np.ndarray, metric: str, chunk: int) -> np.ndarray:
    """Distances of each query to its k chosen rows, computed directly (not from the expansion)."""
    out = np.empty(idx.shape)
    for q0 in range(0, q.shape[0], chunk):
        a = q[q0:q0 + chunk, None, :]
        b = db[idx[q0:q0 + chunk]]  # (chunk, k, D)
        if metric == "l2":
            out[q0:q0 + chunk] = np.sqrt(((a - b) ** 2).sum(axis=2))
        else:
            out[q0:q0 + chunk] = 1.0 - (a * b).sum(axis=2)
    return out
