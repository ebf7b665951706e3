"""t-SNE from scratch: the gradient against finite differences, the affinities against a direct
computation and the references (openTSNE, scikit-learn), Barnes-Hut against the exact gradient,
the embedding against openTSNE's on the same data, the image grid, the figures, bad input."""

import itertools

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl

import minivis as mv
from minivis.autograd import Tensor
from minivis.kernels import cpu_tsne
from minivis.vis.features.tsne import _initial_map
from tests.gradcheck import check_gradients, relative_error


@pytest.fixture(autouse=True)
def one_thread():
    """These tests check results, not speed: one thread each for Numba, BLAS and openTSNE. On a
    shared CI machine, waking a second thread for every iteration of a small t-SNE (or a small
    SVD) costs more than the work itself."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    with threadpoolctl.threadpool_limits(1):
        yield
    numba.set_num_threads(previous)


def _blobs(rng, n_per=60, d=10, centres=3, spread=6.0):
    X = np.concatenate([rng.standard_normal((n_per, d)) + spread * rng.standard_normal(d) for _ in range(centres)])
    return X, np.repeat(np.arange(centres), n_per)


def _random_P(rng, n):
    P = rng.random((n, n)) + 0.05
    P = P + P.T
    np.fill_diagonal(P, 0.0)
    return P / P.sum()


def _knn_preservation(X, Y, k=10):
    """Mean fraction of each point's k nearest neighbours in X that are also among its k in Y."""
    a, _ = cpu_tsne.naive_knn(X, k)
    b, _ = cpu_tsne.naive_knn(Y, k)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))]))


# --------------------------------------------------------------------------- the gradient


def test_exact_gradient_matches_finite_differences_of_the_kl(rng):
    P = _random_P(rng, 12)
    Y = rng.standard_normal((12, 2))

    def kl_op(y: Tensor) -> Tensor:
        grad, kl = mv.vis.tsne_gradient(P, y.data, method="exact")
        return Tensor.from_op(np.array(kl), (y,), lambda g: (g * grad,), "tsne_kl")

    check_gradients(kl_op, [Y], rng=rng, rtol=1e-7)


@pytest.mark.parametrize("exaggeration", [1.0, 4.0, 12.0])
def test_exaggerated_gradient_is_the_gradient_of_the_exaggerated_objective(rng, exaggeration):
    """With P scaled by e in the attraction, the gradient is that of -e sum p log w + log Z."""
    P = _random_P(rng, 10)
    Y = rng.standard_normal((10, 2))

    def objective(y: Tensor) -> Tensor:
        grad, _ = mv.vis.tsne_gradient(P, y.data, exaggeration=exaggeration, method="exact")
        W = 1.0 / (1.0 + ((y.data[:, None] - y.data[None]) ** 2).sum(-1))
        np.fill_diagonal(W, 1.0)  # log 1 = 0 on the diagonal; excluded from Z below
        value = -exaggeration * np.sum(P * np.log(W)) + np.log(W.sum() - len(W))
        return Tensor.from_op(np.array(value), (y,), lambda g: (g * grad,), "tsne_objective")

    check_gradients(objective, [Y], rng=rng, rtol=1e-7)


def test_kl_matches_its_definition(rng):
    P = _random_P(rng, 15)
    Y = rng.standard_normal((15, 2))
    W = 1.0 / (1.0 + ((Y[:, None] - Y[None]) ** 2).sum(-1))
    np.fill_diagonal(W, 0.0)
    Q = W / W.sum()
    off = ~np.eye(15, dtype=bool)
    expected = np.sum(P[off] * np.log(P[off] / Q[off]))
    assert mv.vis.kl_divergence(P, Y) == pytest.approx(expected, rel=1e-12)
    assert mv.vis.kl_divergence(sp.csr_matrix(P), Y) == pytest.approx(expected, rel=1e-12)
    assert mv.vis.tsne_gradient(P, Y)[1] == pytest.approx(expected, rel=1e-12)


def test_barnes_hut_gradient_approaches_the_exact_one(rng):
    X, _ = _blobs(rng, n_per=100)
    res = mv.vis.tsne_fit(X, perplexity=20, method="barnes_hut", n_iter=100, progress=False)
    P, Y = res.P, res.embedding
    exact, kl = mv.vis.tsne_gradient(P, Y, method="exact")
    errors = {}
    for theta in (0.0, 0.05, 0.1, 0.5):
        grad, kl_bh = mv.vis.tsne_gradient(P, Y, method="barnes_hut", theta=theta)
        errors[theta] = relative_error(grad, exact)
        assert abs(kl_bh / kl - 1) < (1e-12 if theta == 0 else 0.02)
    assert errors[0.0] < 1e-12
    assert errors[0.05] < 3e-3 and errors[0.1] < 2e-2
    assert errors[0.05] < errors[0.1] < errors[0.5]


def test_barnes_hut_is_as_accurate_as_opentsne_at_theta_half(rng):
    openTSNE_tsne = pytest.importorskip("openTSNE.tsne")
    X, _ = _blobs(rng, n_per=100)
    res = mv.vis.tsne_fit(X, perplexity=20, method="barnes_hut", n_iter=100, progress=False)
    P, Y = res.P, res.embedding
    exact, _ = mv.vis.tsne_gradient(P, Y, method="exact")
    ours, _ = mv.vis.tsne_gradient(P, Y, method="barnes_hut", theta=0.5)
    # openTSNE's gradient leaves out the constant 4
    _, theirs = openTSNE_tsne.kl_divergence_bh(Y.copy(), P, dof=1, bh_params={"theta": 0.5}, n_jobs=1)
    assert relative_error(ours, exact) < 1.25 * relative_error(4 * theirs, exact)


# --------------------------------------------------------------------------- affinities


@pytest.mark.parametrize("method", ["barnes_hut", "exact"])
@pytest.mark.parametrize("perplexity", [5.0, 20.0])
def test_affinities_match_a_direct_computation(rng, method, perplexity):
    X, _ = _blobs(rng, n_per=40)
    n = len(X)
    P, beta = mv.vis.tsne_affinities(X, perplexity, method=method)
    P = P.toarray() if sp.issparse(P) else P
    k = n - 1 if method == "exact" else min(n - 1, int(3 * perplexity))
    idx, d2 = cpu_tsne.naive_knn(X, k)
    cond = np.exp(-beta[:, None] * d2)
    cond /= cond.sum(1, keepdims=True)
    entropy = -np.sum(cond * np.log(np.where(cond > 0, cond, 1.0)), axis=1)
    np.testing.assert_allclose(entropy, np.log(perplexity), atol=1e-5)  # the bisection's tolerance
    direct = np.zeros((n, n))
    np.put_along_axis(direct, idx, cond, axis=1)
    direct = (direct + direct.T) / (2 * n)
    np.testing.assert_allclose(P, direct, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(P, P.T, rtol=0, atol=0)
    assert P.sum() == pytest.approx(1.0, rel=1e-12) and np.all(np.diag(P) == 0)


def test_knn_affinities_match_opentsne(rng):
    affinity = pytest.importorskip("openTSNE.affinity")
    X, _ = _blobs(rng, n_per=100, d=8)
    P, _ = mv.vis.tsne_affinities(X, 20)
    ref = affinity.PerplexityBasedNN(X, perplexity=20, method="exact", n_jobs=1).P
    assert P.nnz == ref.nnz
    # both stop their bisections at an entropy tolerance of ~1e-5: P agrees to ~1e-5 relative
    assert abs(P - ref).max() < 1e-4 * P.max()


def test_exact_affinities_match_sklearn(rng):
    t_sne = pytest.importorskip("sklearn.manifold._t_sne")
    from scipy.spatial.distance import pdist, squareform

    X, _ = _blobs(rng, n_per=50)
    P, _ = mv.vis.tsne_affinities(X, 15, method="exact")
    ref = squareform(t_sne._joint_probabilities(squareform(pdist(X, "sqeuclidean")), 15, 0))
    assert np.abs(P - ref).max() < 1e-4 * P.max()


# --------------------------------------------------------------------------- fitting


def test_tsne_separates_clusters_and_reports_kl(rng):
    X, labels = _blobs(rng, n_per=50)
    res = mv.vis.tsne_fit(X, perplexity=15, progress=False)
    assert res.method == "exact" and res.embedding.shape == (150, 2) and res.embedding.dtype == np.float64
    assert res.n_iter == 1000 and res.learning_rate == 50.0
    assert [it for it, _ in res.kl_history] == list(range(50, 1001, 50))
    assert res.kl == pytest.approx(mv.vis.kl_divergence(res.P, res.embedding), rel=1e-12)
    assert res.kl == pytest.approx(res.kl_history[-1][1], rel=1e-2)
    assert res.kl_history[-1][1] < res.kl_history[5][1]  # still descending after early exaggeration
    nearest, _ = cpu_tsne.naive_knn(res.embedding, 1)
    assert np.all(labels[nearest[:, 0]] == labels)


def test_tsne_is_deterministic_and_returns_the_fit_embedding(rng):
    X, _ = _blobs(rng, n_per=20)
    kwargs = dict(perplexity=10, n_iter=60, exaggeration_iter=40, progress=False)
    a = mv.vis.tsne(X, **kwargs)
    np.testing.assert_array_equal(a, mv.vis.tsne(X, **kwargs))
    np.testing.assert_array_equal(a, mv.vis.tsne_fit(X, **kwargs).embedding)
    r1 = mv.vis.tsne(X, init="random", seed=1, **kwargs)
    r2 = mv.vis.tsne(X, init="random", seed=2, **kwargs)
    assert not np.allclose(r1, r2)


def test_barnes_hut_with_all_neighbours_and_theta_zero_follows_the_exact_run(rng):
    """With k = N - 1 neighbours the sparse P is the dense one, and theta = 0 makes Barnes-Hut
    exact: the two optimisations must trace the same path (up to rounding). A gentle step keeps
    the run from amplifying rounding chaotically (the 'auto' minimum of 50 is large for N = 45)."""
    X, _ = _blobs(rng, n_per=15)
    kwargs = dict(perplexity=15, n_iter=50, exaggeration_iter=50, learning_rate=2.0, progress=False)
    exact = mv.vis.tsne_fit(X, method="exact", **kwargs)
    bh = mv.vis.tsne_fit(X, method="barnes_hut", theta=0.0, **kwargs)
    np.testing.assert_allclose(bh.P.toarray(), exact.P, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(bh.embedding, exact.embedding, rtol=1e-7, atol=1e-7 * np.abs(exact.embedding).max())


def test_init_array_and_learning_rate(rng):
    X, _ = _blobs(rng, n_per=20)
    Y0 = 1e-4 * rng.standard_normal((60, 2))
    res = mv.vis.tsne_fit(X, perplexity=10, n_iter=0, exaggeration_iter=1, learning_rate=10.0, init=Y0,
                          progress=False)
    grad, _ = mv.vis.tsne_gradient(res.P, Y0, exaggeration=12.0)
    # first step: no momentum yet, and update * grad = 0 is "no sign flip", so the gains go 1 -> 0.8
    step = -10.0 * 0.8 * grad
    np.testing.assert_allclose(res.embedding, Y0 + step - (Y0 + step).mean(0), rtol=1e-10, atol=1e-16)


def test_progress_bar_shows_the_kl(rng, capsys):
    X, _ = _blobs(rng, n_per=20)
    mv.vis.tsne(X, perplexity=10, n_iter=50, exaggeration_iter=50, progress=True)
    assert "t-SNE (exact, N=60)" in capsys.readouterr().err


@pytest.mark.slow
def test_embedding_quality_matches_opentsne_on_digits():
    """Same P, same PCA start, same schedule (momentum 0.5 -> 0.8, 250 exaggerated + 750
    iterations, the same step): the KL within 3% and k-NN preservation within 2 points."""
    openTSNE = pytest.importorskip("openTSNE")
    from openTSNE.affinity import PrecomputedAffinities

    images, labels = mv.data.digits()
    X = images.reshape(len(images), -1).astype(np.float64)
    res = mv.vis.tsne_fit(X, method="barnes_hut", progress=False)
    Y0 = _initial_map(X, "pca", 0)
    reference = openTSNE.TSNEEmbedding(Y0.copy(), PrecomputedAffinities(res.P, normalize=False),
                                       negative_gradient_method="bh", theta=0.5, n_jobs=1,
                                       learning_rate=4 * res.learning_rate, max_step_norm=None)
    reference.optimize(250, exaggeration=12, momentum=0.5, inplace=True)
    reference.optimize(750, exaggeration=1, momentum=0.8, inplace=True)
    theirs = np.asarray(reference)
    kl_ours, kl_theirs = res.kl, mv.vis.kl_divergence(res.P, theirs)
    assert abs(kl_ours / kl_theirs - 1) < 0.03, (kl_ours, kl_theirs)
    keep_ours, keep_theirs = _knn_preservation(X, res.embedding), _knn_preservation(X, theirs)
    assert abs(keep_ours - keep_theirs) < 0.02, (keep_ours, keep_theirs)
    assert keep_ours > 0.5


def test_tsne_bad_input(rng):
    X, _ = _blobs(rng, n_per=20)
    with pytest.raises(ValueError, match=r"tsne: X must be 2-D \(N samples, D features\), got shape \(60,\)"):
        mv.vis.tsne(X[:, 0])
    with pytest.raises(TypeError, match="tsne: X must be a numeric array .* got dtype bool"):
        mv.vis.tsne(X > 0)
    with pytest.raises(ValueError, match="tsne: X contains NaN or infinite values"):
        mv.vis.tsne(np.where(X > 3, np.inf, X))
    with pytest.raises(ValueError, match=r"tsne: perplexity must be in \(1, N - 1\) = \(1, 19\) for N = 20 points, "
                                         r"got 30"):
        mv.vis.tsne(X[:20], perplexity=30)
    with pytest.raises(TypeError, match="tsne: perplexity must be a number, got str"):
        mv.vis.tsne(X, perplexity="30")
    with pytest.raises(ValueError, match=r"tsne: method must be one of \('auto', 'exact', 'barnes_hut'\), got 'fft'"):
        mv.vis.tsne(X, perplexity=10, method="fft")
    with pytest.raises(ValueError, match=r"tsne: theta must be in \[0, 1.5\] .* got -0.1"):
        mv.vis.tsne(X, perplexity=10, theta=-0.1)
    with pytest.raises(TypeError, match="tsne: n_iter must be an int, got float"):
        mv.vis.tsne(X, perplexity=10, n_iter=10.0)
    with pytest.raises(ValueError, match="tsne: exaggeration_iter must be >= 0, got -1"):
        mv.vis.tsne(X, perplexity=10, exaggeration_iter=-1)
    with pytest.raises(ValueError, match="tsne: learning_rate must be 'auto' or a positive number, got 0"):
        mv.vis.tsne(X, perplexity=10, learning_rate=0)
    with pytest.raises(ValueError, match="tsne: learning_rate must be 'auto' or a positive number, got 'fast'"):
        mv.vis.tsne(X, perplexity=10, learning_rate="fast")
    with pytest.raises(ValueError, match="tsne: early_exaggeration must be a positive number, got -2"):
        mv.vis.tsne(X, perplexity=10, early_exaggeration=-2)
    with pytest.raises(ValueError, match=r"tsne: init must be one of \('pca', 'random'\) or an \(N, 2\) array, "
                                         r"got 'spectral'"):
        mv.vis.tsne(X, perplexity=10, init="spectral")
    with pytest.raises(ValueError, match=r"tsne: Y must be \(60, 2\), got shape \(60, 3\)"):
        mv.vis.tsne(X, perplexity=10, init=np.zeros((60, 3)))
    with pytest.raises(TypeError, match=r"tsne: X must be a numeric array \(N, D\), got dtype timedelta64\[s\]"):
        mv.vis.tsne(X.astype("timedelta64[s]"))  # was NumPy's "cannot include dtype 'm' in a buffer"


def test_tsne_fit_refuses_under_its_own_name(rng):
    """tsne_fit's errors said "tsne:", the function that wraps it, not the one that was called."""
    X, _ = _blobs(rng, n_per=20)
    with pytest.raises(ValueError, match=r"tsne_fit: X must be 2-D \(N samples, D features\), got shape \(60,\)"):
        mv.vis.tsne_fit(X[:, 0])
    with pytest.raises(TypeError, match="tsne_fit: n_iter must be an int, got float"):
        mv.vis.tsne_fit(X, perplexity=10, n_iter=10.0)
    with pytest.raises(ValueError, match=r"tsne_fit: Y must be \(60, 2\), got shape \(60, 3\)"):
        mv.vis.tsne_fit(X, perplexity=10, init=np.zeros((60, 3)))


def test_objective_functions_bad_input(rng):
    P = _random_P(rng, 8)
    Y = rng.standard_normal((8, 2))
    with pytest.raises(ValueError, match=r"tsne_gradient: P must be square \(N, N\), got shape \(8, 7\)"):
        mv.vis.tsne_gradient(P[:, :7], Y)
    with pytest.raises(TypeError, match="tsne_gradient: P must be a float array or a scipy sparse matrix, got dtype"):
        mv.vis.tsne_gradient(P > 0, Y)
    with pytest.raises(ValueError, match="tsne_gradient: P must hold finite non-negative affinities"):
        mv.vis.tsne_gradient(-P, Y)
    with pytest.raises(ValueError, match=r"tsne_gradient: Y must be \(8, 2\), got shape \(7, 2\)"):
        mv.vis.tsne_gradient(P, Y[:7])
    with pytest.raises(ValueError, match=r"tsne_gradient: method must be one of \('exact', 'barnes_hut'\)"):
        mv.vis.tsne_gradient(P, Y, method="auto")
    with pytest.raises(ValueError, match="kl_divergence: Y contains NaN or infinite values"):
        mv.vis.kl_divergence(P, np.full((8, 2), np.nan))
    with pytest.raises(ValueError, match=r"tsne_affinities: method must be one of \('exact', 'barnes_hut'\), got 'x'"):
        mv.vis.tsne_affinities(Y, 2.0, method="x")
    with pytest.raises(ValueError, match=r"tsne_affinities: perplexity must be in \(1, N - 1\)"):
        mv.vis.tsne_affinities(Y, 1.0)



_CSR_ATTACKS = {  # each edit of a valid CSR matrix's arrays, and the complaint it must get
    "column past the end": (lambda P: P.indices.__setitem__(0, 10**9), r"column indices must lie in \[0, 8\)"),
    "negative column": (lambda P: P.indices.__setitem__(0, -3), r"column indices must lie in \[0, 8\), got \[-3"),
    "indptr past nnz": (lambda P: P.indptr.__setitem__(-1, P.nnz + 50), "(past the .* stored|ast value of index)"),
    "decreasing indptr": (lambda P: P.indptr.__setitem__(2, P.indptr[3] + 1), "non-decreasing"),
    "nothing stored, garbage indptr": (lambda P: P.indptr.__setitem__(slice(None), [0, 5, 3, 0, 0, 0, 0, 0, 0]),
                                       "non-decreasing"),
}


@pytest.mark.parametrize("attack", list(_CSR_ATTACKS))
def test_a_malformed_sparse_P_is_refused_before_any_kernel_runs(rng, attack):
    # The check runs in Python before any Numba code: each of these edits reached the kernels before.
    edit, message = _CSR_ATTACKS[attack]
    P = sp.csr_matrix(_random_P(rng, 8) * (rng.random((8, 8)) < 0.5))
    edit(P)
    Y = rng.standard_normal((8, 2))
    for call in (lambda: mv.vis.kl_divergence(P, Y), lambda: mv.vis.tsne_gradient(P, Y, method="barnes_hut"),
                 lambda: mv.vis.tsne_gradient(P, Y)):
        with pytest.raises(ValueError, match=r"(kl_divergence|tsne_gradient): P is not a valid sparse matrix \(.*"
                           + message):
            call()


# --------------------------------------------------------------------------- the image grid


def test_grid_points_already_on_the_lattice_keep_their_cells(rng):
    rows, cols = 3, 4
    r, c = np.divmod(np.arange(rows * cols), cols)
    Y = np.stack([c, rows - 1 - r], axis=1).astype(float)  # row 0 at the top: largest y
    perm = rng.permutation(rows * cols)
    images = np.arange(rows * cols, dtype=np.float32)[perm, None, None] * np.ones((1, 2, 2), np.float32)
    layout = mv.vis.tsne_grid(Y[perm], images, grid=(rows, cols))
    np.testing.assert_array_equal(layout.cells, np.stack([r, c], axis=1)[perm])
    assert layout.grid == (rows, cols) and layout.mosaic.shape == (6, 8) and layout.mosaic.dtype == np.float32
    np.testing.assert_array_equal(layout.mosaic[::2, ::2], np.arange(12).reshape(3, 4))


def test_grid_assignment_is_optimal_by_brute_force(rng):
    Y = rng.random((5, 2))
    layout = mv.vis.tsne_grid(Y, np.zeros((5, 3, 3)), grid=(2, 3))
    U = (Y - Y.min(0)) / (Y.max(0) - Y.min(0))
    centres = {(r, c): np.array([(c + 0.5) / 3, 1 - (r + 0.5) / 2]) for r in range(2) for c in range(3)}

    def cost(cells):
        return sum(np.sum((U[i] - centres[tuple(cell)]) ** 2) for i, cell in enumerate(cells))

    best = min(cost(p) for p in itertools.permutations(centres, 5))
    assert cost(layout.cells) == pytest.approx(best, rel=1e-12)
    assert len({tuple(cell) for cell in layout.cells}) == 5  # one point per cell


def test_grid_defaults_images_layouts_and_fill(rng):
    Y = rng.standard_normal((7, 2))
    rgb = rng.integers(0, 255, (7, 3, 4, 5), dtype=np.uint8)  # NCHW
    layout = mv.vis.tsne_grid(Y, rgb, fill=255)
    assert layout.grid == (3, 3) and layout.mosaic.shape == (12, 15, 3) and layout.mosaic.dtype == np.uint8
    for i, (r, c) in enumerate(layout.cells):
        np.testing.assert_array_equal(layout.mosaic[4 * r:4 * r + 4, 5 * c:5 * c + 5], rgb[i].transpose(1, 2, 0))
    used = {tuple(cell) for cell in layout.cells}
    empty = [cell for cell in itertools.product(range(3), range(3)) if cell not in used]
    assert len(empty) == 2 and all((layout.mosaic[4 * r:4 * r + 4, 5 * c:5 * c + 5] == 255).all() for r, c in empty)
    grey = mv.vis.tsne_grid(Y, rng.random((7, 1, 4, 4)), grid=4)
    assert grey.grid == (4, 4) and grey.mosaic.shape == (16, 16)


def test_tsne_grid_bad_input(rng):
    Y = rng.standard_normal((5, 2))
    images = np.zeros((5, 4, 4))
    with pytest.raises(ValueError, match=r"tsne_grid: embedding must be \(N, 2\) with N >= 1, got shape \(5, 3\)"):
        mv.vis.tsne_grid(np.zeros((5, 3)), images)
    with pytest.raises(ValueError, match="tsne_grid: got 4 images for 5 embedding points"):
        mv.vis.tsne_grid(Y, images[:4])
    with pytest.raises(ValueError, match=r"tsne_grid: images must be \(N, H, W\), \(N, H, W, 3\) or \(N, C, H, W\)"):
        mv.vis.tsne_grid(Y, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="tsne_grid: a 2 x 2 grid has 4 cells, fewer than the 5 points"):
        mv.vis.tsne_grid(Y, images, grid=2)
    with pytest.raises(TypeError, match=r"tsne_grid: grid must be None, an int side or a \(rows, cols\) pair"):
        mv.vis.tsne_grid(Y, images, grid=(2.5, 3))
    with pytest.raises(ValueError, match="tsne_grid: embedding contains NaN or infinite values"):
        mv.vis.tsne_grid(np.full((5, 2), np.nan), images)
    # datetimes failed in NumPy's buffer protocol ("cannot include dtype 'M' in a buffer")
    with pytest.raises(TypeError, match=r"tsne_grid: embedding must be a numeric array \(N, 2\), got dtype datetime64"):
        mv.vis.tsne_grid(Y.astype("datetime64[s]"), images)
    with pytest.raises(TypeError, match=r"tsne_grid: images must be numeric, got dtype timedelta64\[s\]"):
        mv.vis.tsne_grid(Y, images.astype("timedelta64[s]"))


# --------------------------------------------------------------------------- figures


def test_embedding_figures(rng, tmp_path):
    Y = rng.standard_normal((30, 2))
    labels = np.arange(30) % 3
    fig = mv.plot.embedding_scatter(Y, labels, class_names=["a", "b", "c"], title="map")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    mv.plot.save(fig, tmp_path / "scatter.png")
    layout = mv.vis.tsne_grid(Y, rng.random((30, 4, 4)))
    mv.plot.save(mv.plot.embedding_mosaic(layout, title="grid"), tmp_path / "mosaic.png")
    mv.plot.save(mv.plot.explained_variance(mv.vis.pca_fit(rng.standard_normal((20, 6)), 4)), tmp_path / "ev.png")
    assert all((tmp_path / name).stat().st_size > 0 for name in ("scatter.png", "mosaic.png", "ev.png"))
    with pytest.raises(ValueError, match=r"embedding_scatter: embedding must be \(N, 2\), got shape \(30, 3\)"):
        mv.plot.embedding_scatter(np.zeros((30, 3)))
    with pytest.raises(ValueError, match=r"embedding_scatter: labels must be 30 integers, got float64 \(30,\)"):
        mv.plot.embedding_scatter(Y, labels.astype(float))
    with pytest.raises(ValueError, match="explained_variance: expected a PCAResult or a 1-D ratio array"):
        mv.plot.explained_variance(np.zeros((2, 2)))


def test_duplicate_sparse_entries_count_once_as_in_the_dense_matrix(rng):
    # found by tests/fuzz: a CSR pair stored twice gave two p log p terms instead of one (2p) log (2p)
    P = sp.csr_matrix((np.array([0.25, 0.25, 0.5]), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 2))
    Y = rng.standard_normal((2, 2))
    np.testing.assert_allclose(mv.vis.kl_divergence(P, Y), mv.vis.kl_divergence(P.toarray(), Y), rtol=1e-12)
    assert P.nnz == 3 and not P.has_canonical_format  # the caller's matrix is left as it was
