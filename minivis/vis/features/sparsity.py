"""How sparse and how localised a layer's activations are, over a dataset (CS231n notes: for ReLU
networks the activations "start out looking relatively blobby and dense, but as the training
progresses ... become more sparse and localized").

Two numbers per channel c of a layer, streamed over the dataset:

* ``zero_fraction[c]``: the fraction of activations a[n, c, y, x] that are <= 0 (for a ReLU output:
  exactly zero). *Sparse*: few units fire.
* ``hoyer[c]``: the mean over images of the Hoyer sparsity of the map m = a[n, c] (n_pos positions),

      H(m) = (sqrt(n_pos) - ||m||_1 / ||m||_2) / (sqrt(n_pos) - 1)   in [0, 1],

  which is 1 for a map with a single non-zero position and 0 for a constant map (Hoyer, "Non-
  negative matrix factorization with sparseness constraints", JMLR 2004). *Localised*: a channel
  fires in a few places of an image, not everywhere. Maps that are all zero have no shape and are
  left out of the mean (NaN if a channel never fires).

For a fully connected layer (N, C), the map of a channel is one number, so ``hoyer`` is NaN per
channel and ``code_hoyer`` (the Hoyer sparsity of the whole code vector of each image, averaged)
is the number to read; it is reported for conv layers too (over the flattened C x H x W code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.nn.module import Module
from minivis.vis.common import inference
from minivis.vis.features.activations import check_batch_size, check_layers, layer_outputs, stream_inputs


@dataclass
class SparsityReport:
    """Per channel (C,): ``zero_fraction`` and ``hoyer`` (see the module doc); ``code_hoyer`` the mean
    Hoyer sparsity of the whole code; ``zero_overall`` the fraction of all activations <= 0."""

    layer: str
    zero_fraction: np.ndarray
    hoyer: np.ndarray
    code_hoyer: float
    zero_overall: float
    count: int


def hoyer_sparsity(x: np.ndarray) -> np.ndarray:
    """Hoyer sparsity of each row of ``x`` (..., n) with n >= 2: NaN for an all-zero row."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub" or x.ndim < 1:
        raise TypeError(f"hoyer_sparsity: x must be a numeric array (..., n), got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}".rstrip())
    if x.dtype.kind != "f":
        x = x.astype(np.float64)  # x * x below must not wrap around in a small int type
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"hoyer_sparsity: needs at least 2 values per row, got {n}")
    l1 = np.abs(x).sum(axis=-1)
    l2 = np.sqrt((x * x).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(l2 > 0, (np.sqrt(n) - l1 / l2) / (np.sqrt(n) - 1), np.nan)


def activation_sparsity(model: Module, images: Any, layers: str | Sequence[str],
                        batch_size: int = 256) -> dict[str, SparsityReport]:
    """Sparsity and localisation of each layer's activations over ``images`` (model inputs (N, C, H, W)
    or uint8 images), streamed once in batches. Returns {layer: SparsityReport}."""
    method = "activation_sparsity"
    names = check_layers(model, layers, method)
    check_batch_size(batch_size, method)
    sums: dict[str, dict[str, Any]] = {}
    count = 0
    with inference(model):
        for _, batch in stream_inputs(model, images, batch_size, method):
            acts = layer_outputs(model, batch, names, method)
            count += batch.shape[0]
            for name in names:
                a = np.asarray(backend.to_device(acts[name], "cpu"), np.float64)
                if a.ndim not in (2, 4):
                    raise ValueError(f"{method}: layer {name!r} gives shape {a.shape}; expected (N, C, H, W) or (N, C)")
                s = sums.setdefault(name, {"zeros": 0.0, "hoyer": 0.0, "maps": 0.0, "code": 0.0, "codes": 0,
                                           "size": 0})
                flat = a.reshape(a.shape[0], a.shape[1], -1)  # (N, C, positions)
                s["zeros"] = s["zeros"] + (flat <= 0).sum(axis=(0, 2))
                s["size"] += flat.shape[0] * flat.shape[2]
                if flat.shape[2] > 1:
                    h = hoyer_sparsity(flat)  # (N, C), NaN for all-zero maps
                    s["hoyer"] = s["hoyer"] + np.nansum(h, axis=0)
                    s["maps"] = s["maps"] + np.isfinite(h).sum(axis=0)
                code = hoyer_sparsity(a.reshape(a.shape[0], -1))
                s["code"] += float(np.nansum(code))
                s["codes"] += int(np.isfinite(code).sum())
    reports = {}
    for name in names:
        s = sums[name]
        zeros = np.asarray(s["zeros"], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            hoyer = (np.asarray(s["hoyer"]) / np.asarray(s["maps"]) if np.ndim(s["maps"])
                     else np.full(zeros.shape, np.nan))
        reports[name] = SparsityReport(layer=name, zero_fraction=zeros / s["size"], hoyer=hoyer,
                                       code_hoyer=s["code"] / s["codes"] if s["codes"] else float("nan"),
                                       zero_overall=float(zeros.sum() / (s["size"] * zeros.size)), count=count)
    return reports
