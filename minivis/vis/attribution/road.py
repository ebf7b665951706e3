"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods").

Deletion curves remove pixels by painting them a constant, and the model then sees a hole shaped
like the attribution map: the *shape* of the removed set can tell the model the class (the paper
trains a classifier on the masks alone and gets far above chance). ROAD removes a fraction p of
the pixels and fills each removed pixel from its neighbours, so that little of that shape is left:
noisy linear imputation solves, for every removed pixel i,

    x_i = sum_{j in N(i)} w_ij x_j / sum_{j in N(i)} w_ij  +  sigma * eps_i,   eps_i ~ N(0, 1)

with N(i) the 8-neighbours inside the image, w = 1/6 for the 4 direct neighbours and 1/12 for the
4 diagonal ones. Neighbours that are themselves removed are unknowns too, so the values solve one
sparse linear system (U unknowns, U equations, one right-hand side per channel):

    (sum_j w_ij) x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij x_j.

MoRF removes the most relevant pixels first (a faithful map makes the score fall fast), LeRF the
least relevant first (the score should stay up). The paper's numbers are the model's score after
removing p = 10%, 20%, ... 90%, the same p for both orders.

Known biases. The imputation is a smooth (harmonic-like) interpolation, so removed regions look
blurred: ROAD still moves the input off the data distribution, only in a blur-like direction, and
it favours maps whose removal a blur can hide; it removes most of the mask's shape cue, not all of
it (large removed blobs stay visibly smooth). Noise sigma = 0.01 (in pixel units of [0, 1], as
the paper's code imputes before normalising) breaks the exact linear dependence on neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_bool, check_float, check_positive_int, check_progress, check_seed, check_str, host
from minivis.vis.attribution.metrics import _attribution_array, _pixel_ranking, _scores, _target_indices
from minivis.vis.common import Target, as_batch, inference, target_scores

# (row offset, column offset, weight): the paper's 1/6 for direct and 1/12 for diagonal neighbours
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12),
    (0, -1, 1 / 6), (0, 1, 1 / 6),
    (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)

PAPER_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _imputation_system(removed: np.ndarray) -> tuple[sparse.csc_matrix, sparse.csr_matrix, np.ndarray]:
    """The system of the module docstring for an (H, W) bool mask of removed pixels: A (U, U), the
    kept-neighbour weights K (U, H*W) (right-hand side = K @ image.T) and the U removed flat indices."""
    h, w = removed.shape
    flat = removed.ravel()
    unknown = np.flatnonzero(flat)
    variable = np.full(h * w, -1, dtype=np.int64)
    variable[unknown] = np.arange(len(unknown))
    r, c = np.divmod(unknown, w)
    diagonal = np.zeros(len(unknown))
    a_rows, a_cols, a_vals, k_rows, k_cols, k_vals = [], [], [], [], [], []
    for dr, dc, weight in NEIGHBOURS:  # 8 vectorised passes, one per neighbour offset
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        diagonal[inside] += weight  # out-of-image neighbours drop out of the mean
        rows, neighbour = np.flatnonzero(inside), (rr * w + cc)[inside]
        is_unknown = flat[neighbour]
        a_rows.append(rows[is_unknown])
        a_cols.append(variable[neighbour[is_unknown]])
        a_vals.append(np.full(int(is_unknown.sum()), -weight))
        k_rows.append(rows[~is_unknown])
        k_cols.append(neighbour[~is_unknown])
        k_vals.append(np.full(int((~is_unknown).sum()), weight))
    u = len(unknown)
    a = sparse.coo_matrix((np.concatenate(a_vals + [diagonal]),
                           (np.concatenate(a_rows + [np.arange(u)]), np.concatenate(a_cols + [np.arange(u)]))),
                          shape=(u, u)).tocsc()
    k = sparse.coo_matrix((np.concatenate(k_vals), (np.concatenate(k_rows), np.concatenate(k_cols))),
                          shape=(u, h * w)).tocsr()
    return a, k, unknown


def noisy_linear_imputation(image: Any, removed: Any, noise: float = 0.01, seed: int | None = 0,
                            scale: Any = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill the ``removed`` pixels of one image by ROAD's noisy linear imputation (module docstring).

    image: (C, H, W) array; removed: (H, W) bool, True where a pixel is removed (all its channels);
    noise: sigma, added to every imputed value; scale: (C,) factors on sigma per channel (1/std to
    give sigma in pixel units when the image is normalised); seed/rng: the noise's generator.
    Returns a new array like ``image`` (solved in float64, cast back). The imputation is affine-
    equivariant per channel (the weights of each mean sum to 1), so imputing a normalised image and
    normalising the imputed one agree.
    """
    method = "noisy_linear_imputation"
    img = np.asarray(host(image))
    if img.ndim != 3 or img.dtype.kind != "f" or 0 in img.shape:
        raise ValueError(f"{method}: image must be a float array (C, H, W), got {img.dtype} shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError(f"{method}: image contains NaN or infinite values")
    mask = np.asarray(backend.to_device(removed, "cpu"))
    if mask.dtype != bool:
        raise TypeError(f"{method}: removed must be a boolean (H, W) array, got dtype {mask.dtype}")
    if mask.shape != img.shape[1:]:
        raise ValueError(f"{method}: removed must be (H, W) = {img.shape[1:]}, got shape {mask.shape}")
    noise = check_float(noise, method, "noise", low=0.0)
    seed = check_seed(seed, method)
    c = img.shape[0]
    factors = np.ones(c) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), (c,))
    out = img.astype(np.float64, copy=True).reshape(c, -1)
    if not mask.any():
        return out.reshape(img.shape).astype(img.dtype)
    if mask.all():
        raise ValueError(f"{method}: removed covers every pixel: there is nothing to impute from")
    a, k, unknown = _imputation_system(mask)
    solved = spsolve(a, k @ out.T)  # (U, C): one factorisation, a right-hand side per channel
    solved = np.asarray(solved).reshape(len(unknown), c).T
    if noise:
        generator = rng if rng is not None else np.random.default_rng(seed)
        solved = solved + noise * factors[:, None] * generator.standard_normal(solved.shape)
    out[:, unknown] = solved
    return out.reshape(img.shape).astype(img.dtype)


@dataclass
class RoadResult:
    """ROAD scores: ``fractions`` (K,) of pixels removed, ``morf`` / ``lerf`` (N, K) the target's
    probability (or logit) after removing that fraction most / least relevant first (None if not
    run), ``base`` (N,) the score on the intact image."""

    fractions: np.ndarray
    morf: np.ndarray | None
    lerf: np.ndarray | None
    base: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        """(mean LeRF - mean MoRF) / 2 per image (pytorch-grad-cam's ROADCombined): higher is better."""
        if self.morf is None or self.lerf is None:
            raise ValueError("RoadResult.combined: needs both orders, run road(..., order='both')")
        return (self.lerf.mean(axis=1) - self.morf.mean(axis=1)) / 2


def removed_counts(fractions: Any, pixels: int) -> np.ndarray:
    """Pixels removed at each fraction: floor(p * H * W) as the paper's code (``int(w * h * th_p)``);
    the 1e-9 keeps 0.3 * 100 = 30.000000000000004 and 0.29 * 100 = 28.999999999999996 at 30 and 29."""
    return np.floor(np.asarray(fractions, dtype=np.float64) * pixels + 1e-9).astype(np.int64)


def removal_mask(attribution: Any, fraction: float, order: str = "morf") -> np.ndarray:
    """The (H, W) bool mask of the pixels ROAD removes at ``fraction`` for one map (H, W) or (C, H, W)
    (channels summed): the floor(p * H * W) most ("morf") or least ("lerf") relevant, ties in
    row-major order (a stable sort; the paper's code breaks ties by adding 1e-4 Gaussian noise)."""
    method = "removal_mask"
    a = _attribution_array(attribution, method)
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"{method}: attribution must be (H, W) or (C, H, W), got shape {a.shape}")
    if check_str(order, method, "order", ("morf", "lerf")) not in ("morf", "lerf"):
        raise ValueError(f"{method}: order must be 'morf' or 'lerf', got {order!r}")
    fraction = check_float(fraction, method, "fraction", low=0.0, high=1.0)
    h, w = a.shape
    ranked = _pixel_ranking(a if order == "morf" else -a, np.empty((1, 1, h, w)), method)[0]
    removed = np.zeros(h * w, dtype=bool)
    removed[ranked[:removed_counts(fraction, h * w)]] = True
    return removed.reshape(h, w)


def road(model: Module, x: Any, target: Target, attribution: Any, fractions: Sequence[float] = PAPER_FRACTIONS,
         order: str = "both", noise: float = 0.01, probability: bool = True, seed: int | None = 0,
         batch_size: int = 64, progress: bool | None = None) -> RoadResult:
    """ROAD (Rong et al. 2022): remove the floor(p * H * W) most (MoRF) or least (LeRF) relevant pixels
    for each p in ``fractions``, impute them by noisy linear imputation, and record the target's score.

    x: prepared inputs (C, H, W) or (N, C, H, W); attribution: like x or (N, H, W) (channels summed,
    ties ranked in row-major order); order: "morf", "lerf" or "both"; noise: sigma in pixel units
    of [0, 1] (divided by the model's ``std`` per channel when it has one, since x is normalised);
    probability: softmax probability (default) or the logit. Imputations are solved one at a time
    (scipy's sparse LU), the model runs ``batch_size`` imputed images at a time. The noise comes from
    ``np.random.default_rng(seed)``, drawn MoRF before LeRF, image by image, fraction by fraction.
    pytorch-grad-cam's ``ROADMostRelevantFirst(q)`` / ``ROADLeastRelevantFirst(q)`` keep q% of the
    pixels (p = 1 - q / 100 here), threshold at ``np.percentile`` instead of counting, and draw the
    noise in normalised units (tests/vis/attribution/test_road.py tests each difference).
    Bias (module docstring): the imputed patches look blurred, so maps whose removal a blur can hide
    score well, and some of the mask's shape still shows; compare maps under one protocol only.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    method = "road"
    if check_str(order, method, "order", ("morf", "lerf", "both")) not in ("morf", "lerf", "both"):
        raise ValueError(f"{method}: order must be 'morf', 'lerf' or 'both', got {order!r}")
    batch_size = check_positive_int(batch_size, method, "batch_size")
    probability = check_bool(probability, method, "probability")
    noise = check_float(noise, method, "noise", low=0.0)
    progress = check_progress(progress, method)
    batch, _ = as_batch(x, model, method)
    n, c, h, w = batch.shape
    try:
        fracs = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{method}: fractions must be a sequence of numbers in [0, 1), got {fractions!r}") from None
    if fracs.ndim != 1 or len(fracs) == 0 or not np.all((fracs >= 0) & (fracs < 1)):
        raise ValueError(f"{method}: fractions must be a non-empty 1-D sequence of numbers in [0, 1) "
                         f"(removing every pixel leaves nothing to impute from), got {fractions!r}")
    counts = removed_counts(fracs, h * w)
    raw = _attribution_array(attribution, method)
    orders = {}
    if order in ("morf", "both"):
        orders["morf"] = _pixel_ranking(raw, batch, method)
    if order in ("lerf", "both"):
        orders["lerf"] = _pixel_ranking(-raw, batch, method)  # ascending relevance, ties row-major
    std = getattr(model, "std", None)
    scale = None if std is None else 1 / np.broadcast_to(np.asarray(std, np.float64), (c,))
    chosen = _target_indices(model, batch, target, method)
    host = np.asarray(backend.to_device(batch, "cpu"), dtype=np.float64)
    rng = np.random.default_rng(check_seed(seed, method))
    jobs = [(name, i, j) for name in orders for i in range(n) for j in range(len(fracs))]
    results = {name: np.zeros((n, len(fracs))) for name in orders}
    device = backend.device_of(batch)
    show = len(jobs) >= 32 if progress is None else progress
    with inference(model):
        target_scores(model(Tensor(batch[:1])), chosen[:1], method)  # the class index is in range
        base = np.concatenate([_scores(model, batch[k:k + batch_size], chosen[k:k + batch_size], probability)
                               for k in range(0, n, batch_size)])
        with tqdm(total=len(jobs), desc=method, unit="img", disable=not show, leave=False) as bar:
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start:start + batch_size]
                rows = np.empty((len(chunk), c, h, w), dtype=batch.dtype)
                for r, (name, i, j) in enumerate(chunk):
                    removed = np.zeros(h * w, dtype=bool)
                    removed[orders[name][i, :counts[j]]] = True
                    rows[r] = noisy_linear_imputation(host[i], removed.reshape(h, w), noise, scale=scale, rng=rng)
                    bar.update(1)
                scores = _scores(model, backend.to_device(rows, device), chosen[[i for _, i, _ in chunk]],
                                 probability)
                for r, (name, i, j) in enumerate(chunk):
                    results[name][i, j] = scores[r]
    return RoadResult(fracs, results.get("morf"), results.get("lerf"), base)

