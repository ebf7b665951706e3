"""Multifaceted class models: one class model per *kind* of training image of the class.

Nguyen, Yosinski & Clune, "Multifaceted Feature Visualization: Uncovering the Different Types of
Features Learned By Each Neuron in Deep Neural Networks" (ICML workshop 2016). A class is many
things (a shirt seen flat, folded, worn; a bag with or without a strap), and gradient ascent from
the mean image finds one compromise. Instead:

1. take the codes ``phi_i = Phi(x_i)`` of the class's training images at a late layer, where
   images that look alike for the network are close;
2. cluster them with k-means into ``k`` facets: ``min sum_i ||phi_i - mu_{c(i)}||^2``;
3. for each facet, average the ``n_mean`` images whose codes are nearest its centroid: a blurry
   but typical picture of that facet;
4. start one class-model optimisation (``class_model``) from each of these mean images.

The optimisation changes the start towards the class, but stays near it, so each result shows a
different facet. (The paper clusters a 2-D t-SNE map of fc7 codes; here k-means runs on the codes
themselves, ``scipy.cluster.vq.kmeans2`` with k-means++ seeding.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.nn.module import Module
from minivis.validate import check_int, check_positive_int
from minivis.vis.common import as_batch, check_layer
from minivis.vis.features.activations import check_batch_size
from minivis.vis.features.neighbours import feature_codes
from minivis.vis.synthesis.class_model import class_model, class_objective
from minivis.vis.synthesis.optimize import SynthesisResult


@dataclass
class Facets:
    """The clusters of a class's codes and the start image of each.

    labels: (N,) cluster of each image. centroids: (k, D) cluster centres in code space.
    nearest: (k, n_mean) indices of the images nearest each centroid. starts: (k, C, H, W) their
    mean images (model inputs). sizes: (k,) images per cluster.
    """

    layer: str
    labels: np.ndarray
    centroids: np.ndarray
    nearest: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


@dataclass
class MultifacetedResult:
    """``facets``: the clusters and starts; ``result``: the k class models (a ``SynthesisResult``
    whose ``.image`` is (k, H, W, C)); ``target``: the class."""

    target: int
    facets: Facets
    result: SynthesisResult


def cluster_facets(model: Module, images: Any, layer: str, k: int = 4, n_mean: int = 15, seed: int = 0,
                   batch_size: int = 256) -> Facets:
    """Cluster the codes of ``images`` (model inputs (N, C, H, W)) at ``layer`` into ``k`` facets.

    Each facet's start image is the mean of the ``n_mean`` images nearest its centroid (all its
    images if it has fewer).
    """
    return _cluster_facets(model, images, layer, k, n_mean, seed, batch_size, "cluster_facets")


def _cluster_facets(model: Module, images: Any, layer: str, k: Any, n_mean: Any, seed: Any, batch_size: Any,
                    method: str) -> Facets:
    """``cluster_facets``, its errors naming ``method``, the public call."""
    from scipy.cluster.vq import kmeans2  # noqa: PLC0415 (SciPy only when clustering)

    check_layer(model, layer, method)
    k = check_positive_int(k, method, "k")
    n_mean = check_positive_int(n_mean, method, "n_mean")
    seed = check_int(seed, method, "seed", 0)
    batch_size = check_batch_size(batch_size, method)
    x, single = as_batch(images, model, method, "images")
    if single or x.shape[0] < k:
        raise ValueError(f"{method}: need at least k = {k} images (N, C, H, W), got shape {tuple(x.shape)}")
    codes = np.asarray(backend.to_device(feature_codes(model, x, layer, batch_size), "cpu"), np.float64)
    centroids, labels = kmeans2(codes, k, minit="++", rng=np.random.default_rng(seed))
    sizes = np.bincount(labels, minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"{method}: k-means left {int((sizes == 0).sum())} of {k} clusters empty; use a smaller k "
                         f"or more images")
    host = np.asarray(backend.to_device(x, "cpu"))
    take = min(n_mean, int(sizes.min()))
    nearest = np.empty((k, take), np.int64)
    starts = np.empty((k, *host.shape[1:]), host.dtype)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        dist = ((codes[members] - centroids[c]) ** 2).sum(axis=1)
        nearest[c] = members[np.argsort(dist, kind="stable")[:take]]
        starts[c] = host[nearest[c]].mean(axis=0)
    return Facets(layer, labels, centroids, nearest, starts, sizes)


def multifaceted_class_model(model: Module, images: Any, target: int, layer: str, k: int = 4, n_mean: int = 15,
                             seed: int = 0, **class_model_kwargs: Any) -> MultifacetedResult:
    """One class model of ``target`` per facet of its training ``images`` (Nguyen et al. 2016).

    images: model inputs (N, C, H, W) of class ``target``. layer: where to cluster the codes (a
    late layer, e.g. ``"classifier.1"`` for ``fashion_cnn``). class_model_kwargs: passed to
    ``class_model`` (steps, lr, l2, blur_every, jitter, ...; not ``init``, which is the facets' starts).
    """
    method = "multifaceted_class_model"
    if "init" in class_model_kwargs:
        raise TypeError(f"{method}: init is set by the facets (their mean images); don't pass it")
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    if not isinstance(target, int | np.integer) or isinstance(target, bool):
        raise TypeError(f"{method}: target must be a class index (int), got {target!r}")
    class_objective(model, int(target), method)  # the class is in range: checked before the clustering
    facets = _cluster_facets(model, images, layer, k, n_mean, seed, 256, method)
    result = class_model(model, [int(target)] * k, init=facets.starts, seed=seed, **class_model_kwargs)
    return MultifacetedResult(int(target), facets, result)
