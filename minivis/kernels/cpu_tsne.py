"""Numba kernels for t-SNE (van der Maaten & Hinton 2008; Barnes-Hut: van der Maaten 2014).

The hot loops of ``minivis.vis.tsne`` and nothing else; each fast kernel has a plain-NumPy
``naive_*`` twin below it that the tests compare it with (tests/kernels/test_cpu_tsne.py).

* ``knn``: exact k nearest neighbours by chunked BLAS distances and a per-row heap selection.
* ``perplexity_search``: per point, the precision ``beta_i`` of a Gaussian whose conditional
  distribution ``p_{j|i} ∝ exp(-beta_i d_ij^2)`` has entropy ``log(perplexity)`` (bisection).
* ``exact_gradient``: ``dC/dy_i = 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j)`` with
  ``w_ij = 1 / (1 + |y_i - y_j|^2)`` and ``q_ij = w_ij / Z``, ``Z = sum_{k != l} w_kl``: O(N^2).
* ``attractive_forces`` (sparse P) + ``QuadTree``/``bh_repulsion``: the same gradient split as
  ``4 (sum_j p_ij w_ij (y_i - y_j) - sum_j w_ij^2 (y_i - y_j) / Z)``, the second sum (and Z)
  approximated with a Barnes-Hut quadtree in O(N log N).

Arrays are float64 C-contiguous; indices int64. Every kernel loops over points with ``prange``.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

# --------------------------------------------------------------------------- k nearest neighbours


@numba.njit(parallel=True, cache=True)
def _select_k_smallest(gram, sq, row_offset, k, out_idx, out_dist):
    """For each row r of a chunk of the Gram matrix (``gram[r, c] = x_{row_offset + r} . x_c``),
    the k smallest squared distances ``sq_r + sq_c - 2 gram[r, c]`` other than the point itself,
    sorted ascending, written to row ``row_offset + r`` of the outputs.

    A max-heap of size k per row: most candidates are rejected by one comparison with the root.
    """
    n_rows, n_cols = gram.shape
    for r in numba.prange(n_rows):
        self_col = row_offset + r
        sq_r = sq[self_col]
        heap_d = np.empty(k, dtype=np.float64)
        heap_i = np.empty(k, dtype=np.int64)
        size = 0
        for c in range(n_cols):
            if c == self_col:
                continue
            d = sq_r + sq[c] - 2.0 * gram[r, c]
            if size < k:  # fill: sift up
                pos = size
                size += 1
                while pos > 0:
                    parent = (pos - 1) >> 1
                    if heap_d[parent] >= d:
                        break
                    heap_d[pos] = heap_d[parent]
                    heap_i[pos] = heap_i[parent]
                    pos = parent
                heap_d[pos] = d
                heap_i[pos] = c
            elif d < heap_d[0]:  # replace the largest: sift down
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and heap_d[child + 1] > heap_d[child]:
                        child += 1
                    if heap_d[child] <= d:
                        break
                    heap_d[pos] = heap_d[child]
                    heap_i[pos] = heap_i[child]
                    pos = child
                heap_d[pos] = d
                heap_i[pos] = c
        order = np.argsort(heap_d)
        for m in range(k):
            out_dist[self_col, m] = heap_d[order[m]]
            out_idx[self_col, m] = heap_i[order[m]]


@numba.njit(parallel=True, cache=True)
def _exact_sq_distances(X, idx, out):
    """``out[i, m] = |X[i] - X[idx[i, m]]|^2`` summed coordinate by coordinate (no cancellation)."""
    n, k = idx.shape
    d = X.shape[1]
    for i in numba.prange(n):
        for m in range(k):
            j = idx[i, m]
            s = 0.0
            for c in range(d):
                diff = X[i, c] - X[j, c]
                s += diff * diff
            out[i, m] = s


def knn(X: np.ndarray, k: int, chunk_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of ``X`` (N, D), excluding the point itself.

    Returns ``indices`` int64 (N, k) and ``sq_distances`` float64 (N, k), nearest first.
    Distances come from one GEMM per chunk of rows, |x|^2 + |y|^2 - 2 x.y, in X's dtype (BLAS);
    the k kept distances are then recomputed exactly in float64 and re-sorted, so rounding in the
    GEMM can only swap near-ties at the k-th place, never corrupt a distance.
    """
    n = X.shape[0]
    Xc = np.ascontiguousarray(X)
    sq = np.einsum("ij,ij->i", Xc, Xc).astype(np.float64)
    if chunk_rows is None:  # small Gram blocks (~8 MB) stay in cache between the GEMM and the selection
        chunk_rows = min(n, max(64, (2 << 20) // max(n, 1)))
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        _select_k_smallest(Xc[start:stop] @ Xc.T, sq, start, k, idx, dist)
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    _exact_sq_distances(X64, idx, dist)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


def naive_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-NumPy twin of ``knn``: the full distance matrix and a sort of each row."""
    X = np.asarray(X, dtype=np.float64)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d2, idx, axis=1)


# --------------------------------------------------------------------------- perplexity calibration


@numba.njit(parallel=True, cache=True)
def _perplexity_search(sq_dist, log_perplexity, tol, max_steps, P_out, beta_out):
    n, k = sq_dist.shape
    for i in numba.prange(n):
        d_min = sq_dist[i, 0]
        for m in range(1, k):
            d_min = min(d_min, sq_dist[i, m])
        beta, lo, hi = 1.0, 0.0, np.inf
        for _ in range(max_steps):
            # p_j ∝ exp(-beta (d_j - d_min)): the shift cancels in the normalisation, avoids underflow
            total, weighted = 0.0, 0.0
            for m in range(k):
                e = np.exp(-beta * (sq_dist[i, m] - d_min))
                P_out[i, m] = e
                total += e
                weighted += e * (sq_dist[i, m] - d_min)
            # H = log(total) + beta * E[d - d_min]  (natural log: perplexity = exp(H))
            entropy = np.log(total) + beta * weighted / total
            diff = entropy - log_perplexity
            if abs(diff) <= tol:
                break
            if diff > 0:  # too flat: sharpen (raise beta)
                lo = beta
                beta = beta * 2.0 if hi == np.inf else 0.5 * (beta + hi)
            else:
                hi = beta
                beta = 0.5 * (beta + lo)
        for m in range(k):
            P_out[i, m] /= total
        beta_out[i] = beta


def perplexity_search(sq_dist: np.ndarray, perplexity: float, tol: float = 1e-5,
                      max_steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Conditional affinities ``p_{j|i}`` (N, k) over each point's candidates and their ``beta_i`` (N,).

    sq_dist: (N, k) squared distances from point i to its k candidate neighbours.
    Bisection on beta_i until ``|H(P_i) - log(perplexity)| <= tol`` (entropy in nats), or
    ``max_steps``; each row of the result sums to 1.
    """
    sq_dist = np.ascontiguousarray(sq_dist, dtype=np.float64)
    P = np.empty_like(sq_dist)
    beta = np.empty(sq_dist.shape[0], dtype=np.float64)
    _perplexity_search(sq_dist, float(np.log(perplexity)), float(tol), int(max_steps), P, beta)
    return P, beta


def naive_perplexity_search(sq_dist: np.ndarray, perplexity: float, xtol: float = 1e-13):
    """Plain twin of ``perplexity_search`` by another route: Brent's method on log(beta) per row
    (scipy.optimize.brentq) rather than bisection, to a tight tolerance."""
    from scipy.optimize import brentq  # noqa: PLC0415 (only the reference needs it)

    sq_dist = np.asarray(sq_dist, dtype=np.float64)
    target = np.log(perplexity)
    P = np.empty_like(sq_dist)
    beta = np.empty(len(sq_dist))
    for i, d in enumerate(sq_dist):
        d = d - d.min()

        def entropy_gap(log_beta, d=d):
            p = np.exp(-np.exp(log_beta) * d)
            p /= p.sum()
            nz = p > 0
            return -np.sum(p[nz] * np.log(p[nz])) - target

        log_beta = brentq(entropy_gap, -50.0, 50.0, xtol=xtol)
        beta[i] = np.exp(log_beta)
        p = np.exp(-beta[i] * d)
        P[i] = p / p.sum()
    return P, beta


# --------------------------------------------------------------------------- exact O(N^2) gradient
#
# Every kernel below makes one parallel pass per call: on a busy machine each parallel region
# costs a thread hand-off, so the parts of the gradient are accumulated together and combined
# (they need Z, known only at the end) with a few vectorised NumPy operations.


@numba.njit(parallel=True, cache=True)
def _exact_parts(P, Y, want_kl, n_threads, attr, rep, row_z, row_plogw):
    """Per point i: attr_i = sum_j p_ij w_ij (y_i - y_j), rep_i = sum_j w_ij^2 (y_i - y_j),
    row_z_i = sum_j w_ij and row_plogw_i = sum_j p_ij log w_ij (when want_kl)."""
    n, dim = Y.shape
    for t in numba.prange(n_threads):
        for i in range(t, n, n_threads):
            for c in range(dim):
                attr[i, c] = 0.0
                rep[i, c] = 0.0
            z, s = 0.0, 0.0
            for j in range(n):
                if j == i:
                    continue
                d2 = 0.0
                for c in range(dim):
                    diff = Y[i, c] - Y[j, c]
                    d2 += diff * diff
                w = 1.0 / (1.0 + d2)
                z += w
                pw, ww = P[i, j] * w, w * w
                for c in range(dim):
                    diff = Y[i, c] - Y[j, c]
                    attr[i, c] += pw * diff
                    rep[i, c] += ww * diff
                if want_kl and P[i, j] > 0:
                    s += P[i, j] * np.log(w)
            row_z[i] = z
            row_plogw[i] = s


def exact_gradient(P: np.ndarray, Y: np.ndarray, exaggeration: float = 1.0,
                   want_kl: bool = True) -> tuple[np.ndarray, float]:
    """Exact t-SNE gradient (N, d) and KL(P || Q) for a dense symmetric P (N, N) summing to 1.

    grad_i = 4 (e sum_j p_ij w_ij (y_i - y_j) - sum_j w_ij^2 (y_i - y_j) / Z), the formula
    ``4 sum_j (e p_ij - q_ij) w_ij (y_i - y_j)`` with q_ij = w_ij / Z split in two. With
    ``exaggeration`` e the attraction uses e * P (early exaggeration); the KL returned is
    always that of the true P: ``sum p log p - sum p log w + log Z`` (NaN when not ``want_kl``).
    """
    P = np.ascontiguousarray(P, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n = Y.shape[0]
    attr, rep = np.empty_like(Y), np.empty_like(Y)
    row_z, row_plogw = np.empty(n), np.empty(n)
    _exact_parts(P, Y, bool(want_kl), numba.get_num_threads(), attr, rep, row_z, row_plogw)
    Z = row_z.sum()
    grad = 4.0 * (exaggeration * attr - rep / Z)
    kl = _p_log_p(P) - row_plogw.sum() + P.sum() * np.log(Z) if want_kl else np.nan
    return grad, float(kl)


def _p_log_p(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(np.sum(p * np.log(p)))


def naive_exact_gradient(P: np.ndarray, Y: np.ndarray, exaggeration: float = 1.0) -> tuple[np.ndarray, float]:
    """Plain-NumPy twin of ``exact_gradient``: the dense W, Q and the textbook formulas."""
    diff = Y[:, None, :] - Y[None, :, :]                     # (N, N, d): y_i - y_j
    W = 1.0 / (1.0 + (diff ** 2).sum(-1))
    np.fill_diagonal(W, 0.0)
    Q = W / W.sum()
    grad = 4.0 * (((exaggeration * P - Q) * W)[:, :, None] * diff).sum(1)
    mask = P > 0
    kl = float(np.sum(P[mask] * np.log(P[mask] / Q[mask])))
    return grad, kl


@numba.njit(parallel=True, cache=True)
def _exact_z(Y, n_threads, row_z):
    n, dim = Y.shape
    for t in numba.prange(n_threads):
        for i in range(t, n, n_threads):  # interleaved rows: row i has n - i - 1 pairs
            s = 0.0
            for j in range(i + 1, n):
                d2 = 0.0
                for c in range(dim):
                    diff = Y[i, c] - Y[j, c]
                    d2 += diff * diff
                s += 1.0 / (1.0 + d2)
            row_z[i] = s


def exact_z(Y: np.ndarray) -> float:
    """``Z = sum_{i != j} 1 / (1 + |y_i - y_j|^2)`` exactly, in O(N^2) time and O(N) memory."""
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    row_z = np.empty(Y.shape[0])
    _exact_z(Y, numba.get_num_threads(), row_z)
    return 2.0 * float(row_z.sum())


def naive_exact_z(Y: np.ndarray) -> float:
    """Plain twin of ``exact_z``."""
    W = 1.0 / (1.0 + ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(W, 0.0)
    return float(W.sum())


# --------------------------------------------------------------------------- sparse attraction


@numba.njit(cache=True)
def _attract_row(i, indptr, indices, data, Y, want_kl):
    """(sum_j p_ij w_ij (y_i - y_j) as fx, fy; sum_j p_ij log w_ij) over row i of a CSR P."""
    yx, yy = Y[i, 0], Y[i, 1]
    fx, fy, s = 0.0, 0.0, 0.0
    for jj in range(indptr[i], indptr[i + 1]):
        j = indices[jj]
        dx, dy = yx - Y[j, 0], yy - Y[j, 1]
        w = 1.0 / (1.0 + dx * dx + dy * dy)
        pw = data[jj] * w
        fx += pw * dx
        fy += pw * dy
        if want_kl:
            s += data[jj] * np.log(w)
    return fx, fy, s


@numba.njit(parallel=True, cache=True)
def _attractive_forces(indptr, indices, data, Y, want_kl, out, row_plogw):
    for i in numba.prange(Y.shape[0]):
        out[i, 0], out[i, 1], row_plogw[i] = _attract_row(i, indptr, indices, data, Y, want_kl)


def _csr_arrays(P) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr, indices (int64: one kernel signature, compiled once) and data (float64) of a CSR P."""
    indptr, indices = P.indptr, P.indices
    if indptr.dtype != np.int64 or indices.dtype != np.int64:
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
    return indptr, indices, np.asarray(P.data, dtype=np.float64)


def attractive_forces(P, Y: np.ndarray, want_kl: bool = False) -> tuple[np.ndarray, float]:
    """``F_i = sum_j p_ij w_ij (y_i - y_j)`` (N, 2) over the stored entries of a CSR matrix P, and
    ``sum p_ij log w_ij`` (the KL's P-dependent part; 0 when not ``want_kl``)."""
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    out, row_plogw = np.empty_like(Y), np.empty(Y.shape[0])
    _attractive_forces(*_csr_arrays(P), Y, bool(want_kl), out, row_plogw)
    return out, float(row_plogw.sum())


def naive_attractive_forces(P, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """Plain twin of ``attractive_forces`` with a dense P."""
    P = P.toarray() if hasattr(P, "toarray") else np.asarray(P)
    diff = Y[:, None, :] - Y[None, :, :]
    W = 1.0 / (1.0 + (diff ** 2).sum(-1))
    mask = P > 0
    return ((P * W)[:, :, None] * diff).sum(1), float(np.sum(P[mask] * np.log(W[mask])))


# --------------------------------------------------------------------------- Barnes-Hut quadtree
#
# The tree is a *compressed* quadtree over the points sorted by Morton (Z-order) code. Sorting
# makes every cell a contiguous range [start, end) of the sorted points, so a cell's centre of
# mass is a difference of prefix sums and "does this cell hold point i" is a range test. A
# cell's size is that of the smallest quadtree square holding its points (the longest common
# prefix of their codes), so chains of one-child cells never appear: at most 2N - 1 cells.

MORTON_BITS = 31  # per axis: 62-bit codes; cells as small as 2^-31 of the bounding square


@numba.njit(cache=True)
def _spread_bits_2d(v):
    """Insert a 0 bit above each of the low 32 bits of v: b2 b1 b0 -> b2 0 b1 0 b0 (2-D interleaving)."""
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


@numba.njit(cache=True)
def _morton_codes(Y, x0, y0, scale, out):
    top = (1 << MORTON_BITS) - 1
    for i in range(Y.shape[0]):  # O(N) and cheap: not worth a parallel region
        qx = min(np.int64((Y[i, 0] - x0) * scale), top)
        qy = min(np.int64((Y[i, 1] - y0) * scale), top)
        out[i] = (_spread_bits_2d(qy) << 1) | _spread_bits_2d(qx)


@numba.njit(cache=True)
def _bit_length(v):
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@numba.njit(cache=True)
def _build_tree(codes, Ys, side, cells, links):
    """Fill the node arrays breadth first (children of a node are consecutive); returns #nodes.

    cells[node] = (centre-of-mass x, y, width, count); links[node] = (start, end, first child,
    number of children). One row of each per node: a visit touches two cache lines, not eight.
    """
    n = codes.shape[0]
    csx = np.zeros(n + 1)
    csy = np.zeros(n + 1)
    for i in range(n):
        csx[i + 1] = csx[i] + Ys[i, 0]
        csy[i + 1] = csy[i] + Ys[i, 1]
    total_bits = 2 * MORTON_BITS
    links[0, 0], links[0, 1] = 0, n
    n_nodes = 1
    node = 0
    while node < n_nodes:
        s, e = links[node, 0], links[node, 1]
        cells[node, 0] = (csx[e] - csx[s]) / (e - s)
        cells[node, 1] = (csy[e] - csy[s]) / (e - s)
        cells[node, 3] = e - s
        links[node, 2] = -1
        links[node, 3] = 0
        diff = codes[s] ^ codes[e - 1]
        if e - s == 1 or diff == 0:  # one point, or points sharing the finest cell: a leaf
            cells[node, 2] = 0.0
        else:
            # the smallest square holding [s, e) is at depth `level`: the codes share
            # 2*level leading bits; the children differ in the next two
            level = (total_bits - _bit_length(diff)) // 2
            cells[node, 2] = side / (1 << level)
            shift = total_bits - 2 * (level + 1)
            links[node, 2] = n_nodes
            lo = s
            for digit in range(4):
                # first index in [lo, e) whose digit at this level exceeds `digit` (binary search)
                a, b = lo, e
                while a < b:
                    mid = (a + b) >> 1
                    if ((codes[mid] >> shift) & 3) <= digit:
                        a = mid + 1
                    else:
                        b = mid
                if a > lo:
                    links[n_nodes, 0], links[n_nodes, 1] = lo, a
                    n_nodes += 1
                    links[node, 3] += 1
                lo = a
        node += 1
    return n_nodes


class QuadTree:
    """Compressed quadtree over 2-D points (see the comment above); build once per iteration.

    ``cells`` (n_nodes, 4) float64: centre of mass x, y, cell width (0 for a leaf), point count;
    ``links`` (n_nodes, 4) int64: start, end (the node's range in Morton order), first child
    (-1 for a leaf), number of children. ``order`` maps sorted position -> point index and
    ``Ys = Y[order]``. Named views: ``com``, ``width``, ``count``, ``start``, ``end``,
    ``first_child``, ``n_children``.
    """

    def __init__(self, Y: np.ndarray):
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        n = Y.shape[0]
        lo, hi = Y.min(0), Y.max(0)
        side = float(max(hi - lo)) * (1.0 + 1e-9) or 1.0
        codes = np.empty(n, dtype=np.int64)
        _morton_codes(Y, float(lo[0]), float(lo[1]), float((1 << MORTON_BITS) / side), codes)
        self.order = np.argsort(codes, kind="stable")
        codes = codes[self.order]
        self.Ys = np.ascontiguousarray(Y[self.order])
        cap = max(2 * n - 1, 1)
        cells, links = np.empty((cap, 4)), np.empty((cap, 4), dtype=np.int64)
        self.n_nodes = _build_tree(codes, self.Ys, side, cells, links)
        self.cells, self.links = cells[:self.n_nodes], links[:self.n_nodes]

    com = property(lambda self: self.cells[:, :2])
    width = property(lambda self: self.cells[:, 2])
    count = property(lambda self: self.cells[:, 3].astype(np.int64))
    start = property(lambda self: self.links[:, 0])
    end = property(lambda self: self.links[:, 1])
    first_child = property(lambda self: self.links[:, 2])
    n_children = property(lambda self: self.links[:, 3])


@numba.njit(cache=True)
def _bh_walk(i, Ys, cells, links, theta2, stack):
    """Barnes-Hut sums for sorted point i: (sum_j w_ij^2 (y_i - y_j) as fx, fy; sum_j w_ij).

    Depth-first walk from the root: a cell not holding i whose ``width^2 < theta^2 |y_i - com|^2``
    counts as ``count`` points at its centre of mass; otherwise open it (leaves exactly).
    """
    yx, yy = Ys[i, 0], Ys[i, 1]
    fx, fy, z = 0.0, 0.0, 0.0
    stack[0] = 0  # the root
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        s, e = links[node, 0], links[node, 1]
        if links[node, 2] < 0:  # leaf: every point exactly
            for j in range(s, e):
                if j != i:
                    dx, dy = yx - Ys[j, 0], yy - Ys[j, 1]
                    w = 1.0 / (1.0 + dx * dx + dy * dy)
                    z += w
                    fx += w * w * dx
                    fy += w * w * dy
            continue
        dx, dy = yx - cells[node, 0], yy - cells[node, 1]
        d2 = dx * dx + dy * dy
        width = cells[node, 2]
        if not (s <= i < e) and width * width < theta2 * d2:  # far enough: one summary term
            w = 1.0 / (1.0 + d2)
            m = cells[node, 3]
            z += m * w
            fx += m * w * w * dx
            fy += m * w * w * dy
        else:
            c0 = links[node, 2]
            for c in range(c0, c0 + links[node, 3]):
                stack[top] = c
                top += 1
    return fx, fy, z


@numba.njit(parallel=True, cache=True)
def _bh_forces(Ys, order, cells, links, theta2, indptr, indices, data, Y, want_kl, n_threads,
               attr, rep, row_z, row_plogw):
    """Attraction (exact, sparse P) and Barnes-Hut repulsion for every point, in one parallel pass.

    Threads take interleaved blocks of the Morton order: neighbouring points walk nearly the same
    cells (cache-friendly), and interleaving balances dense and sparse regions between threads.
    """
    n = Ys.shape[0]
    block = 64
    n_blocks = (n + block - 1) // block
    for t in numba.prange(n_threads):
        stack = np.empty(256, dtype=np.int64)  # the compressed tree is at most 31 levels deep
        for b in range(t, n_blocks, n_threads):
            for i in range(b * block, min(n, (b + 1) * block)):
                p = order[i]
                rep[p, 0], rep[p, 1], row_z[p] = _bh_walk(i, Ys, cells, links, theta2, stack)
                attr[p, 0], attr[p, 1], row_plogw[p] = _attract_row(p, indptr, indices, data, Y, want_kl)


def _bh_parts(P, Y: np.ndarray, theta: float, want_kl: bool):
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    tree = QuadTree(Y)
    n = Y.shape[0]
    attr, rep = np.empty_like(Y), np.empty_like(Y)
    row_z, row_plogw = np.empty(n), np.empty(n)
    _bh_forces(tree.Ys, tree.order, tree.cells, tree.links, float(theta) ** 2, *_csr_arrays(P), Y, bool(want_kl),
               numba.get_num_threads(), attr, rep, row_z, row_plogw)
    return attr, rep, float(row_z.sum()), float(row_plogw.sum())


def bh_repulsion(Y: np.ndarray, theta: float) -> tuple[np.ndarray, float]:
    """Barnes-Hut estimate of ``sum_j w_ij^2 (y_i - y_j)`` (N, 2) and of Z = sum_{i != j} w_ij.

    theta = 0 opens every cell, which gives the exact sums (slowly): the tests use that.
    """
    n = Y.shape[0]
    _, rep, Z, _ = _bh_parts(sp.csr_matrix((n, n)), Y, theta, False)
    return rep, Z


def naive_repulsion(Y: np.ndarray) -> tuple[np.ndarray, float]:
    """Plain twin of ``bh_repulsion`` (exact sums, dense)."""
    diff = Y[:, None, :] - Y[None, :, :]
    W = 1.0 / (1.0 + (diff ** 2).sum(-1))
    np.fill_diagonal(W, 0.0)
    return ((W * W)[:, :, None] * diff).sum(1), float(W.sum())


def bh_gradient(P, Y: np.ndarray, theta: float, exaggeration: float = 1.0,
                want_kl: bool = False) -> tuple[np.ndarray, float]:
    """Barnes-Hut t-SNE gradient (N, 2) for a sparse symmetric P (CSR, sums to 1), and the KL
    estimated with the Barnes-Hut Z (NaN when not ``want_kl``)."""
    attr, rep, Z, plogw = _bh_parts(P, Y, theta, want_kl)
    grad = 4.0 * (exaggeration * attr - rep / Z)
    kl = _p_log_p(np.asarray(P.data)) - plogw + float(P.data.sum()) * np.log(Z) if want_kl else np.nan
    return grad, float(kl)
