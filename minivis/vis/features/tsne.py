"""t-SNE from scratch (van der Maaten & Hinton 2008, "Visualizing data using t-SNE"), with the
Barnes-Hut approximation for large N (van der Maaten 2014, "Accelerating t-SNE using tree-based
algorithms").

The objective. High-dimensional neighbours: point i picks neighbour j with probability
``p_{j|i} = exp(-beta_i d_ij^2) / sum_k exp(-beta_i d_ik^2)``, where each ``beta_i`` is found by
bisection so that the entropy of ``p_{.|i}`` is ``log(perplexity)`` (an "effective number of
neighbours"). Symmetrised: ``p_ij = (p_{j|i} + p_{i|j}) / 2N``. In the 2-D map, a Student-t
(Cauchy) kernel: ``w_ij = 1 / (1 + |y_i - y_j|^2)``, ``q_ij = w_ij / Z``, ``Z = sum_{k != l} w_kl``.
t-SNE minimises ``KL(P || Q) = sum_ij p_ij log(p_ij / q_ij)`` whose gradient is

    dC/dy_i = 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j)

(lesson 08 derives it). ``method="exact"`` evaluates it in O(N^2) with a dense P over all pairs;
``method="barnes_hut"`` keeps P sparse (each point's ``3 * perplexity`` nearest neighbours, exact
kNN) so the attractive half costs O(N k), and estimates the repulsive half
``sum_j w_ij^2 (y_i - y_j) / Z`` with a quadtree in O(N log N).

The optimiser is the one scikit-learn and openTSNE use, so comparisons are like for like:
gradient descent with momentum (0.5 during early exaggeration, 0.8 after) and per-coordinate
gains (delta-bar-delta, Jacobs 1988: +0.2 when the gradient's sign flips against the last step,
x0.8 otherwise, at least 0.01); ``exaggeration_iter`` iterations with P multiplied by
``early_exaggeration``, then ``n_iter`` more; the map is re-centred after every step.

Learning rate "auto" is ``max(N / (4 early_exaggeration), 50)``: scikit-learn's rule. Our gradient
keeps the factor 4 of the formula above; openTSNE's drops it, so this is the same step as
openTSNE's ``learning_rate = N / 12`` (Belkina et al. 2019) for N >= 2400.

API: ``tsne(X, ...)`` returns the (N, 2) embedding (DESIGN.md section 2). ``tsne_fit(X, ...)``
takes the same arguments and returns a ``TSNEResult`` with the embedding, the final KL
divergence (computed exactly, O(N^2) once), its history, P, the betas and timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from minivis import backend
from minivis.validate import check_bool, check_count, check_float, check_str
from minivis.vis.common import check_data_matrix
from minivis.vis.features.pca import pca

METHODS = ("auto", "exact", "barnes_hut")
INITS = ("pca", "random")
AUTO_EXACT_MAX_N = 1000  # "auto" uses the exact gradient up to this many points
KL_EVERY = 50            # iterations between KL evaluations (progress bar, history)
MIN_GAIN = 0.01


@dataclass
class TSNEResult:
    """What ``tsne_fit`` returns.

    embedding: (N, 2) float64 map.
    kl: KL(P || Q) of the final map, with Q normalised exactly.
    kl_history: [(iteration, KL)] every 50 iterations (Barnes-Hut estimate of Z for that method).
    P: the joint affinities: dense (N, N) for "exact", scipy CSR for "barnes_hut"; sums to 1.
    beta: (N,) per-point precision 1 / (2 sigma_i^2) found by the perplexity search.
    method, learning_rate, n_iter (total iterations run), seconds ({"affinities", "optimize"}).
    """

    embedding: np.ndarray
    kl: float
    kl_history: list[tuple[int, float]]
    P: Any
    beta: np.ndarray
    method: str
    learning_rate: float
    n_iter: int
    seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- validation


def _check_perplexity(perplexity: Any, n: int, op: str) -> float:
    if isinstance(perplexity, bool) or not isinstance(perplexity, Real):
        raise TypeError(f"{op}: perplexity must be a number, got {type(perplexity).__name__}")
    if not 1 < perplexity < n - 1:
        raise ValueError(f"{op}: perplexity must be in (1, N - 1) = (1, {n - 1}) for N = {n} points, "
                         f"got {perplexity}")
    return float(perplexity)


def _check_method(method: Any, allowed: tuple[str, ...], op: str) -> str:
    if check_str(method, op, "method", allowed) not in allowed:
        raise ValueError(f"{op}: method must be one of {allowed}, got {method!r}")
    return method


def _check_embedding(Y: Any, n: int | None, op: str) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.dtype.kind not in "fiu":
        raise TypeError(f"{op}: Y must be a numeric array (N, 2), got dtype {Y.dtype}")
    if Y.ndim != 2 or Y.shape[1] != 2 or (n is not None and Y.shape[0] != n):
        expected = f"({n}, 2)" if n is not None else "(N, 2)"
        raise ValueError(f"{op}: Y must be {expected}, got shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError(f"{op}: Y contains NaN or infinite values")
    return np.ascontiguousarray(Y, dtype=np.float64)


def _check_csr(P: sp.csr_matrix, op: str) -> None:
    """The CSR invariants every kernel relies on: indptr starts at 0, never decreases, ends within
    the stored entries, and the entries it covers have column indices in [0, N)."""
    indptr, indices = P.indptr, P.indices
    problem = None
    if indptr.shape != (P.shape[0] + 1,):
        problem = f"indptr must have N + 1 = {P.shape[0] + 1} entries, got {indptr.shape[0]}"
    elif indptr[0] != 0 or (np.diff(indptr) < 0).any():
        problem = "indptr must start at 0 and be non-decreasing"
    elif indptr[-1] > min(indices.shape[0], P.data.shape[0]):
        problem = f"indptr ends at {indptr[-1]}, past the {min(indices.shape[0], P.data.shape[0])} stored entries"
    else:
        used = indices[:indptr[-1]]
        if used.size and (used.min() < 0 or used.max() >= P.shape[1]):
            problem = f"column indices must lie in [0, {P.shape[1]}), got [{used.min()}, {used.max()}]"
    if problem is not None:
        raise ValueError(f"{op}: P is not a valid sparse matrix ({problem})")


def _check_P(P: Any, op: str) -> Any:
    if sp.issparse(P):
        # A private copy, checked in full: the kernels index with its arrays unchecked, and SciPy trusts
        # a CSR matrix's arrays (its own check_format skips them when indptr[-1] is 0).
        try:
            P = sp.csr_matrix(P, dtype=np.float64, copy=True)
        except ValueError as err:
            raise ValueError(f"{op}: P is not a valid sparse matrix ({err})") from None
        _check_csr(P, op)
        P.prune()  # drop stored entries past indptr[-1]: the kernels see exactly nnz of them
        P.sum_duplicates()  # a pair stored twice is one affinity (as in P.toarray()), not two terms of the KL
        shape_ok = P.shape[0] == P.shape[1]
    else:
        P = np.asarray(P)
        if P.dtype.kind != "f":
            raise TypeError(f"{op}: P must be a float array or a scipy sparse matrix, got dtype {P.dtype}")
        P = np.ascontiguousarray(P, dtype=np.float64)
        shape_ok = P.ndim == 2 and P.shape[0] == P.shape[1]
    if not shape_ok:
        raise ValueError(f"{op}: P must be square (N, N), got shape {P.shape}")
    values = P.data if sp.issparse(P) else P
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{op}: P must hold finite non-negative affinities")
    return P


# --------------------------------------------------------------------------- affinities


def tsne_affinities(X: Any, perplexity: float = 30.0, method: str = "barnes_hut",
                    tol: float = 1e-5) -> tuple[Any, np.ndarray]:
    """Joint affinities P and per-point precisions beta (N,) for the data X (N, D).

    method "exact": dense P (N, N) over all pairs; "barnes_hut": sparse CSR P over each point's
    ``min(N - 1, floor(3 perplexity))`` exact nearest neighbours (as in van der Maaten 2014).
    Each conditional row ``p_{.|i}`` has entropy ``log(perplexity)`` to within ``tol`` nats;
    ``P = (P_cond + P_cond^T) / 2N`` is symmetric and sums to 1.
    """
    X = check_data_matrix(X, "tsne_affinities")
    kernels = backend.kernels("tsne", X, "tsne_affinities")  # X is on the host: minivis/kernels/cpu_tsne.py
    n = X.shape[0]
    perplexity = _check_perplexity(perplexity, n, "tsne_affinities")
    _check_method(method, ("exact", "barnes_hut"), "tsne_affinities")
    tol = check_float(tol, "tsne_affinities", "tol", low=0.0)
    if method == "exact":
        X64 = X.astype(np.float64)
        sq = np.einsum("ij,ij->i", X64, X64)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (X64 @ X64.T), 0.0)
        off = ~np.eye(n, dtype=bool)
        cond, beta = kernels.perplexity_search(d2[off].reshape(n, n - 1), perplexity, tol=tol)
        P = np.zeros((n, n))
        P[off] = cond.ravel()
        P = (P + P.T) / (2.0 * n)
        return P, beta
    k = min(n - 1, int(3 * perplexity))
    idx, d2 = kernels.knn(X, k)
    cond, beta = kernels.perplexity_search(d2, perplexity, tol=tol)
    rows = np.repeat(np.arange(n), k)
    P = sp.csr_matrix((cond.ravel(), (rows, idx.ravel())), shape=(n, n))
    P = (P + P.T).tocsr()
    P.sum_duplicates()
    P.sort_indices()
    P.data /= 2.0 * n
    return P, beta


# --------------------------------------------------------------------------- objective


def tsne_gradient(P: Any, Y: Any, exaggeration: float = 1.0, method: str = "exact",
                  theta: float = 0.5) -> tuple[np.ndarray, float]:
    """The t-SNE gradient dC/dY (N, 2) and KL(P || Q) at the map Y (N, 2).

    P: (N, N) joint affinities summing to 1, dense or scipy sparse. ``exaggeration`` multiplies
    P in the gradient only (the KL is that of P itself). method "exact" is O(N^2) and exact;
    "barnes_hut" estimates the repulsion and Z with a quadtree (theta = 0: exact, slowly), so its
    KL uses the estimated Z too.
    """
    P = _check_P(P, "tsne_gradient")
    Y = _check_embedding(Y, P.shape[0], "tsne_gradient")
    kernels = backend.kernels("tsne", Y, "tsne_gradient")
    _check_method(method, ("exact", "barnes_hut"), "tsne_gradient")
    _check_theta(theta, "tsne_gradient")
    exaggeration = check_float(exaggeration, "tsne_gradient", "exaggeration", low=0.0)
    if method == "exact":
        return kernels.exact_gradient(P.toarray() if sp.issparse(P) else P, Y, exaggeration)
    return kernels.bh_gradient(P if sp.issparse(P) else sp.csr_matrix(P), Y, theta, exaggeration, want_kl=True)


def kl_divergence(P: Any, Y: Any) -> float:
    """KL(P || Q) of the map Y (N, 2), with Q normalised by the exact Z (O(N^2) time, O(N) memory)."""
    P = _check_P(P, "kl_divergence")
    Y = _check_embedding(Y, P.shape[0], "kl_divergence")
    kernels = backend.kernels("tsne", Y, "kl_divergence")
    if not sp.issparse(P):
        return kernels.exact_gradient(P, Y)[1]
    _, plogw = kernels.attractive_forces(P, Y, want_kl=True)
    data = P.data[P.data > 0]
    return float(np.sum(data * np.log(data)) - plogw + data.sum() * np.log(kernels.exact_z(Y)))


def _check_theta(theta: Any, op: str) -> float:
    if isinstance(theta, bool) or not isinstance(theta, Real):
        raise TypeError(f"{op}: theta must be a number, got {type(theta).__name__}")
    if not 0 <= theta <= 1.5:
        raise ValueError(f"{op}: theta must be in [0, 1.5] (0 = exact; 0.5 is usual), got {theta}")
    return float(theta)


# --------------------------------------------------------------------------- fitting


def _initial_map(X: np.ndarray, init: Any, seed: int, op: str = "tsne") -> np.ndarray:
    """PCA (first two components, rescaled to std 1e-4 along the first, as scikit-learn and
    openTSNE do: a tiny start lets early exaggeration form clusters), random N(0, 1e-4^2), or an
    explicit (N, 2) array used as given."""
    n = X.shape[0]
    if isinstance(init, str):
        if init == "pca" and X.shape[1] >= 2:
            Y = pca(X.astype(np.float64), 2, seed=seed)
            std = Y[:, 0].std()
            if std > 0:
                return np.ascontiguousarray(Y / std * 1e-4)
        return 1e-4 * np.random.default_rng(seed).standard_normal((n, 2))
    return _check_embedding(init, n, op).copy()


def tsne_fit(X: Any, perplexity: float = 30.0, n_iter: int = 750, early_exaggeration: float = 12.0,
             exaggeration_iter: int = 250, learning_rate: float | str = "auto", method: str = "auto",
             theta: float = 0.5, seed: int = 0, init: str | np.ndarray = "pca",
             progress: bool = True) -> TSNEResult:
    """Embed X (N, D) in 2-D with t-SNE; see the module docstring for the method.

    perplexity: effective number of neighbours, in (1, N - 1).
    n_iter: iterations after early exaggeration (total = exaggeration_iter + n_iter, as openTSNE).
    early_exaggeration, exaggeration_iter: P is multiplied by the former for the first iterations.
    learning_rate: "auto" (= max(N / (4 early_exaggeration), 50)) or a positive number.
    method: "exact" (O(N^2) per iteration), "barnes_hut" (O(N log N)) or "auto" (exact up to
        1,000 points). theta: Barnes-Hut opening angle (0 = exact).
    seed: random init and PCA; init: "pca", "random" or an (N, 2) array. progress: tqdm bar.
    """
    return _fit("tsne_fit", X, perplexity, n_iter, early_exaggeration, exaggeration_iter, learning_rate, method,
                theta, seed, init, progress)


def _fit(op: str, X: Any, perplexity: Any, n_iter: Any, early_exaggeration: Any, exaggeration_iter: Any,
         learning_rate: Any, method: Any, theta: Any, seed: Any, init: Any, progress: Any) -> TSNEResult:
    """``tsne_fit``, its errors naming ``op``, the public call (``tsne`` or ``tsne_fit``)."""
    X = check_data_matrix(X, op)
    kernels = backend.kernels("tsne", X, op)  # X is on the host: minivis/kernels/cpu_tsne.py
    n = X.shape[0]
    perplexity = _check_perplexity(perplexity, n, op)
    method = _check_method(method, METHODS, op)
    theta = _check_theta(theta, op)
    progress = check_bool(progress, op, "progress")
    for name, value in (("n_iter", n_iter), ("exaggeration_iter", exaggeration_iter), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{op}: {name} must be >= 0, got {value}")
        if name != "seed":  # the iteration counts: not past sys.maxsize (a loop that long never ends)
            check_count(value, op, name, minimum=0)
    if isinstance(early_exaggeration, bool) or not isinstance(early_exaggeration, Real) or early_exaggeration <= 0:
        raise ValueError(f"{op}: early_exaggeration must be a positive number, got {early_exaggeration!r}")
    if isinstance(learning_rate, str):
        if learning_rate != "auto":
            raise ValueError(f"{op}: learning_rate must be 'auto' or a positive number, got {learning_rate!r}")
        learning_rate = max(n / (4.0 * early_exaggeration), 50.0)
    elif isinstance(learning_rate, bool) or not isinstance(learning_rate, Real) or not learning_rate > 0:
        raise ValueError(f"{op}: learning_rate must be 'auto' or a positive number, got {learning_rate!r}")
    if isinstance(init, str) and init not in INITS:
        raise ValueError(f"{op}: init must be one of {INITS} or an (N, 2) array, got {init!r}")
    if method == "auto":
        method = "exact" if n <= AUTO_EXACT_MAX_N else "barnes_hut"

    t0 = time.perf_counter()
    P, beta = tsne_affinities(X, perplexity, method)
    Y = _initial_map(X, init, seed, op)
    t1 = time.perf_counter()

    if method == "exact":
        def gradient(Y, exaggeration, want_kl):
            return kernels.exact_gradient(P, Y, exaggeration, want_kl)
    else:
        def gradient(Y, exaggeration, want_kl):
            return kernels.bh_gradient(P, Y, theta, exaggeration, want_kl)

    total = exaggeration_iter + n_iter
    update = np.zeros_like(Y)
    gains = np.ones_like(Y)
    history: list[tuple[int, float]] = []
    bar = tqdm(total=total, desc=f"t-SNE ({method}, N={n})", disable=not progress, leave=False, mininterval=0.5)
    try:
        for it in range(total):
            early = it < exaggeration_iter
            want_kl = (it + 1) % KL_EVERY == 0
            grad, kl = gradient(Y, early_exaggeration if early else 1.0, want_kl)
            # delta-bar-delta: a coordinate whose gradient keeps its sign speeds up (the step,
            # -grad, points the same way as the last update); one that flips slows down.
            flipped = update * grad < 0.0
            gains = np.where(flipped, gains + 0.2, gains * 0.8)
            np.maximum(gains, MIN_GAIN, out=gains)
            update = (0.5 if early else 0.8) * update - learning_rate * gains * grad
            Y += update
            Y -= Y.mean(axis=0)  # the objective is translation invariant; keep the map centred
            if want_kl:
                history.append((it + 1, kl))
                bar.set_postfix(kl=f"{kl:.4f}")
            bar.update(1)
    finally:
        bar.close()
    t2 = time.perf_counter()
    final_kl = kl_divergence(P, Y)
    return TSNEResult(embedding=Y, kl=final_kl, kl_history=history, P=P, beta=beta, method=method,
                      learning_rate=float(learning_rate), n_iter=total,
                      seconds={"affinities": t1 - t0, "optimize": t2 - t1, "final_kl": time.perf_counter() - t2})


def tsne(X: Any, perplexity: float = 30.0, n_iter: int = 750, early_exaggeration: float = 12.0,
         exaggeration_iter: int = 250, learning_rate: float | str = "auto", method: str = "auto",
         theta: float = 0.5, seed: int = 0, init: str | np.ndarray = "pca", progress: bool = True) -> np.ndarray:
    """The (N, 2) t-SNE map of X (N, D). Same arguments as ``tsne_fit`` (which also returns the
    KL divergence, its history, P and timings)."""
    return _fit("tsne", X, perplexity, n_iter, early_exaggeration, exaggeration_iter, learning_rate, method, theta,
                seed, init, progress).embedding
