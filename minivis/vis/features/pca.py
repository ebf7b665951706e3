"""Principal component analysis from scratch: the SVD of the centred data, exact or randomized.

For data ``X`` (N, D) with column means ``mu``, the centred matrix ``Xc = X - mu`` has the thin
SVD ``Xc = U S V^T``. The rows of ``V^T`` are the principal directions (unit vectors, ordered
by the variance they carry), the variance along direction i is ``S_i^2 / (N - 1)``, and the
projection onto the first k directions is ``Xc V_k = U_k S_k`` (N, k).

``method="randomized"`` (Halko, Martinsson & Tropp 2011, "Finding structure with randomness")
never forms the full SVD: it multiplies ``Xc`` by a random (D, k + p) Gaussian matrix, sharpens
the resulting basis with a few power iterations ``(Xc Xc^T)^q``, orthonormalises it (Q, N x
(k + p)), and takes the exact SVD of the small matrix ``Q^T Xc``. It costs O(N D k) instead of
O(N D min(N, D)), which is what makes PCA of wide data (many pixels) or many points cheap.

Signs: an SVD fixes each direction only up to sign, so we flip each component to make its
largest-magnitude coordinate positive (deterministic, and what scikit-learn does too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis.validate import check_seed
from minivis.vis.common import check_data_matrix

METHODS = ("auto", "svd", "randomized")


@dataclass
class PCAResult:
    """A fitted PCA.

    projection: (N, k) the data in the first k principal coordinates, ``(X - mean) @ components.T``.
    components: (k, D) unit principal directions, largest variance first.
    explained_variance: (k,) variance along each direction, ``S_i^2 / (N - 1)``.
    explained_variance_ratio: (k,) that variance over the data's total variance.
    singular_values: (k,) ``S_i``.
    mean: (D,) the column means that were subtracted.
    method: "svd" or "randomized", the one that ran.
    """

    projection: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    mean: np.ndarray
    method: str

    def transform(self, X: Any) -> np.ndarray:
        """Project new rows X (M, D) onto the fitted components -> (M, k)."""
        X = check_data_matrix(X, "PCAResult.transform")
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"PCAResult.transform: X must have {self.mean.shape[0]} columns (as fitted), "
                             f"got shape {X.shape}")
        return (X - self.mean) @ self.components.T

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Back to data space from k principal coordinates: ``Z @ components + mean`` (M, D)."""
        Z = np.asarray(Z, dtype=self.components.dtype)
        if Z.ndim != 2 or Z.shape[1] != self.components.shape[0]:
            raise ValueError(f"PCAResult.inverse_transform: Z must be (M, {self.components.shape[0]}), "
                             f"got shape {Z.shape}")
        return Z @ self.components + self.mean


def _flip_signs(Vt: np.ndarray) -> np.ndarray:
    """Make the largest-|.| entry of each row of Vt positive."""
    signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    signs[signs == 0] = 1
    return Vt * signs[:, None]


def randomized_svd(A: np.ndarray, k: int, oversample: int = 10, power_iters: int = 4,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top-k SVD ``A ~ U diag(S) Vt`` (Halko et al. 2011, algorithms 4.4 and 5.1).

    A: (N, D). Returns U (N, k), S (k,), Vt (k, D). ``power_iters`` rounds of ``A A^T`` push the
    basis towards the top singular vectors (the error shrinks like (s_{k+p+1} / s_k)^(2q+1));
    each round is re-orthonormalised with a QR so small singular values are not lost to rounding.
    """
    rng = np.random.default_rng(seed)
    ell = min(k + oversample, min(A.shape))
    Q = A @ rng.standard_normal((A.shape[1], ell)).astype(A.dtype, copy=False)
    Q, _ = np.linalg.qr(Q)
    for _ in range(power_iters):
        Q, _ = np.linalg.qr(A.T @ Q)
        Q, _ = np.linalg.qr(A @ Q)
    B = Q.T @ A                                    # (ell, D): A restricted to the range of Q
    Ub, S, Vt = np.linalg.svd(B, full_matrices=False)
    return (Q @ Ub)[:, :k], S[:k], Vt[:k]


def pca_fit(X: Any, k: int, method: str = "auto", seed: int = 0) -> PCAResult:
    """Fit a k-component PCA of X (N, D) and return the projection with the fitted directions.

    method: "svd" (exact thin SVD), "randomized" (Halko et al.; for wide or large data) or "auto":
        randomized when min(N, D) > 500 and k < 0.8 min(N, D) (scikit-learn's rule), else svd.
    seed: the random test matrix of the randomized method.
    The computation runs in X's float dtype (float32 stays float32; integers become float64).
    """
    return _fit(X, k, method, seed, "pca_fit")


def _fit(X: Any, k: Any, method: Any, seed: Any, op: str) -> PCAResult:
    """``pca_fit``, its errors naming ``op``, the public call (``pca`` or ``pca_fit``)."""
    X = check_data_matrix(X, op)
    n, d = X.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{op}: k must be an int, got {type(k).__name__}")
    if not 1 <= k <= min(n, d):
        raise ValueError(f"{op}: k must be in 1..min(N, D) = 1..{min(n, d)} for X of shape {X.shape}, got {k}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"{op}: method must be one of {METHODS}, got {method!r}")
    seed = check_seed(seed, op)
    if n < 2:
        raise ValueError(f"{op}: needs at least 2 samples to measure variance, got X of shape {X.shape}")
    if method == "auto":
        method = "randomized" if min(n, d) > 500 and k < 0.8 * min(n, d) else "svd"

    mean = X.mean(axis=0)
    Xc = X - mean
    if method == "svd":
        _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
        S, Vt = S[:k], Vt[:k]
    else:
        _, S, Vt = randomized_svd(Xc, k, seed=seed)
    Vt = _flip_signs(Vt)
    explained = S.astype(np.float64) ** 2 / (n - 1)
    # The total variance is the trace of the covariance: exact whichever method ran.
    total = float(np.einsum("ij,ij->", Xc, Xc, dtype=np.float64)) / (n - 1)
    ratio = explained / total if total > 0 else np.zeros_like(explained)
    # Xc V_k (= U_k S_k for the exact SVD); for the randomized one it is the exact projection
    # onto the directions found, so ``transform(X)`` reproduces it.
    return PCAResult(projection=Xc @ Vt.T, components=Vt, explained_variance=explained,
                     explained_variance_ratio=ratio, singular_values=S, mean=mean, method=method)


def pca(X: Any, k: int, method: str = "auto", seed: int = 0) -> np.ndarray:
    """The (N, k) projection of X (N, D) onto its first k principal components.

    ``mv.vis.pca_fit`` takes the same arguments and also returns the components, explained
    variance (ratio) and mean (a ``PCAResult``).
    """
    return _fit(X, k, method, seed, "pca").projection
