# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 08: PCA and t-SNE from scratch
#
# **The question.** A classifier turns each image into a *code*, the vector of activations
# just before the last layer, and the last layer separates the classes with hyperplanes in
# that code space. What does the code space look like? Which images does the network put
# close together, and which classes does it confuse? The codes have hundreds of dimensions, so
# we need a map: a 2-D picture in which images that are near in code space are near on paper.
#
# Two classic answers. **PCA** (Pearson 1901, Hotelling 1933) projects onto the two directions
# of largest variance: linear, exact, fast, and it keeps the *big* distances. **t-SNE**
# (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008) gives up on distances
# and keeps *neighbourhoods*: it moves 2-D points until each one's neighbours on the map are
# the neighbours it had in code space. The CS231n notes ("Visualizing what ConvNets learn")
# embed AlexNet's fc7 codes this way and then snap the map onto a grid of thumbnails.
#
# Plan: (1) PCA as the SVD of the centred data, from scratch, checked against an eigen-
# decomposition of the covariance and against `mv.vis.pca`; (2) the t-SNE objective and its
# gradient, derived; (3) a dozen-line NumPy t-SNE checked against minivis's exact gradient;
# (4) the Fashion-MNIST map with the O(N log N) Barnes-Hut method (van der Maaten, "Accelerating
# t-SNE using Tree-Based Algorithms", JMLR 2014); (5) the image grid.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## The data: Fashion-MNIST codes
#
# We take the 128-d code of `fashion_cnn` at `classifier.1` (the ReLU after the first fully
# connected layer, "crucially including the ReLU", as the CS231n notes put it). If the trained
# weights are not installed yet, a random network's codes would be meaningless, so we fall
# back to the raw pixels: every step below works the same on any (N, D) matrix.

# %%
images, labels = mv.data.fashion_mnist("test")
n = sized(5000, 2000)
images, labels = images[:n], labels[:n]
classes = mv.data.FASHION_MNIST_CLASSES
try:
    model = mv.models.load("fashion_cnn")
    X = np.asarray(mv.vis.feature_codes(model, images, "classifier.1"), dtype=np.float64)
    source = "fashion_cnn classifier.1 codes"
except FileNotFoundError:
    X = images.reshape(n, -1).astype(np.float64) / 255.0
    source = "raw pixels (fashion_cnn weights not installed)"
print(f"{n} images -> X {X.shape} from {source}")

# %% [markdown]
# ## 1. PCA is an SVD
#
# Centre the data, $X_c = X - \mathbf{1}\mu^\top$ (rows are points, $\mu$ the column means).
# The covariance is $S = X_c^\top X_c / (N-1)$. The direction $v$ ($\|v\| = 1$) along which the
# projected data varies most maximises $v^\top S v$; with a Lagrange multiplier for the unit
# norm, $S v = \lambda v$: the top eigenvector, and the variance along it is $\lambda$. The
# next direction is the best one orthogonal to the first, and so on.
#
# We need not form $S$. The thin SVD $X_c = U \Sigma V^\top$ gives
# $S = V \Sigma^2 V^\top / (N-1)$: the right singular vectors *are* the eigenvectors of $S$,
# with eigenvalues $\sigma_i^2 / (N-1)$, and the projection onto the first $k$ directions is
# $X_c V_k = U_k \Sigma_k$. The SVD is also the more accurate route: forming $X_c^\top X_c$
# squares the condition number. An SVD fixes each direction only up to sign; we make each
# direction's largest coordinate positive, so results are reproducible.

# %%
def pca_numpy(X, k):
    mu = X.mean(axis=0)
    Xc = X - mu
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    Vt = Vt[:k] * np.sign(Vt[np.arange(k), np.abs(Vt[:k]).argmax(1)])[:, None]  # sign rule
    variance = s[:k] ** 2 / (len(X) - 1)
    return Xc @ Vt.T, Vt, variance, variance / (s ** 2).sum() * (len(X) - 1)


proj, components, variance, ratio = pca_numpy(X, 50)

# check 1: the eigen-decomposition of the covariance gives the same variances
Xc = X - X.mean(0)
eigenvalues = np.linalg.eigvalsh(Xc.T @ Xc / (n - 1))[::-1]
np.testing.assert_allclose(variance, eigenvalues[:50], rtol=1e-8)
# check 2: minivis, exact SVD
fit = mv.vis.pca_fit(X, 50, method="svd")
np.testing.assert_allclose(fit.explained_variance, variance, rtol=1e-10)
np.testing.assert_allclose(fit.components, components, atol=1e-8)
np.testing.assert_allclose(fit.projection, proj, atol=1e-8)
print(f"first 5 components explain {ratio[:5].round(3)} of the variance; 50 explain {ratio.sum():.1%}")

# %% [markdown]
# For wide or large data (many pixels, many points), the full SVD does far more work than the
# first 50 directions need. The randomized SVD (Halko, Martinsson & Tropp, "Finding Structure
# with Randomness", SIAM Review 2011) multiplies $X_c$ by a random $D \times (k + p)$ matrix,
# sharpens the result with a few power iterations $(X_c X_c^\top)^q$, orthonormalises it to
# $Q$, and takes the exact SVD of the small matrix $Q^\top X_c$. `mv.vis.pca` picks it
# automatically for big inputs; here we check it finds the same top directions.

# %%
fast_fit = mv.vis.pca_fit(X, 50, method="randomized", seed=0)
cosines = np.abs(np.sum(fast_fit.components[:10] * fit.components[:10], axis=1))
print("randomized vs exact, |cos| of the first 10 directions:", cosines.round(6))
assert cosines.min() > 0.999
np.testing.assert_allclose(fast_fit.explained_variance[:10], fit.explained_variance[:10], rtol=1e-4)

fig = mv.plot.explained_variance(fit, title=f"PCA spectrum of {source}")
savefig(fig, "08_pca_spectrum")

# %% [markdown]
# **What to notice.** The spectrum decays fast but has a long tail: the first two components
# hold well under half of the variance, so a 2-D PCA map must squash classes on top of each
# other. Fifty components hold nearly all of it, which is why t-SNE is usually run on a PCA-50
# projection: it discards noise and makes the neighbour search cheap without moving the
# neighbours much.
#
# ## 2. The t-SNE objective and its gradient
#
# **High-dimensional neighbours.** Point $i$ picks a neighbour $j$ with probability
# $$ p_{j|i} = \frac{\exp(-\beta_i \|x_i - x_j\|^2)}{\sum_{k \ne i} \exp(-\beta_i \|x_i - x_k\|^2)}, $$
# a Gaussian of precision $\beta_i = 1/2\sigma_i^2$ around $x_i$. A single width would be
# too narrow in sparse regions and too wide in dense ones, so each $\beta_i$ is tuned so that
# the distribution has a fixed *perplexity* $2^{H}$ (we use nats: $e^{H}$), where
# $H(P_i) = -\sum_j p_{j|i} \log p_{j|i}$. Perplexity 30 means "about 30 effective
# neighbours". $H$ falls monotonically as $\beta_i$ grows, so bisection finds $\beta_i$.
# Symmetrise: $p_{ij} = (p_{j|i} + p_{i|j}) / 2N$, so $\sum_{ij} p_{ij} = 1$ and every point
# keeps at least $1/2N$ of the mass (outliers are not ignored).
#
# **Low-dimensional neighbours.** On the map, with a Student-t kernel (one degree of freedom):
# $$ w_{ij} = \frac{1}{1 + \|y_i - y_j\|^2}, \qquad q_{ij} = \frac{w_{ij}}{Z}, \qquad Z = \sum_{k \ne l} w_{kl}. $$
# Its heavy tail lets moderately distant points sit *far* apart on the map, which is what
# opens the gaps between clusters (the "crowding problem" of SNE).
#
# **The objective** is the Kullback-Leibler divergence of Q from P,
# $$ C = \mathrm{KL}(P \,\|\, Q) = \sum_{i \ne j} p_{ij} \log p_{ij} - \sum_{i \ne j} p_{ij} \log q_{ij} . $$
# The first sum does not depend on $Y$. With $\log q_{ij} = \log w_{ij} - \log Z$ and
# $\sum p_{ij} = 1$:
# $$ C = \text{const} - \sum_{i \ne j} p_{ij} \log w_{ij} + \log Z . $$
#
# **The gradient.** Only the pairs that contain $y_i$ depend on it, and each unordered pair
# appears twice ($ij$ and $ji$, with $p_{ij} = p_{ji}$, $w_{ij} = w_{ji}$). From
# $w_{ij} = (1 + \|y_i - y_j\|^2)^{-1}$ we get
# $\partial w_{ij} / \partial y_i = -2 w_{ij}^2 (y_i - y_j)$ and
# $\partial \log w_{ij} / \partial y_i = -2 w_{ij} (y_i - y_j)$. So the two terms give
# $$ \frac{\partial}{\partial y_i} \Big( -\sum_{k \ne l} p_{kl} \log w_{kl} \Big)
#    = 2 \sum_j p_{ij} \cdot 2 w_{ij} (y_i - y_j), $$
# $$ \frac{\partial \log Z}{\partial y_i} = \frac{1}{Z} \cdot 2 \sum_j \big( -2 w_{ij}^2 (y_i - y_j) \big)
#    = -4 \sum_j q_{ij}\, w_{ij}\, (y_i - y_j), $$
# and together
# $$ \boxed{\;\frac{\partial C}{\partial y_i} = 4 \sum_j (p_{ij} - q_{ij})\, w_{ij}\, (y_i - y_j)\;} $$
# Read it as springs: pair $ij$ pulls $y_i$ towards $y_j$ when the map under-represents it
# ($q_{ij} < p_{ij}$) and pushes it away when it over-represents it. The $p_{ij} w_{ij}$ part
# (attraction) is sparse, since $p_{ij}$ is negligible beyond the nearest neighbours; the
# $q_{ij} w_{ij} = w_{ij}^2 / Z$ part (repulsion) involves every pair, and that is where the
# Barnes-Hut tree comes in (section 4).
#
# **The optimiser** (as in the paper, scikit-learn and openTSNE): gradient descent with
# momentum (0.5, then 0.8) and per-coordinate *gains* that grow by 0.2 while the gradient keeps
# its sign and shrink by 0.8 when it flips (Jacobs' delta-bar-delta, 1988). For the first 250
# iterations P is multiplied by 12, *early exaggeration*: the attraction dominates, so clusters
# form tightly and have room to move past each other before the map settles.
#
# ## 3. A dozen lines of NumPy
#
# First the perplexity search for one point, then the whole exact t-SNE. We work on a small
# subset (the exact gradient costs $O(N^2)$ per iteration) and check each piece against minivis.

# %%
def beta_for_perplexity(d2, perplexity, steps=100):
    """Bisection on beta so that H(p) = log(perplexity); d2: squared distances to the others."""
    lo, hi, beta = 0.0, np.inf, 1.0
    for _ in range(steps):
        p = np.exp(-beta * (d2 - d2.min()))
        p /= p.sum()
        entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
        if entropy > np.log(perplexity):   # too many neighbours: sharpen
            lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
        else:
            hi, beta = beta, (beta + lo) / 2
    return beta


m = sized(500, 300)
Z50 = fit.projection[:m]  # PCA-50 coordinates of the first m images
d2_all = ((Z50[:, None] - Z50[None]) ** 2).sum(-1)
P_small, betas = mv.vis.tsne_affinities(Z50, perplexity=30, method="exact")
b0 = beta_for_perplexity(np.delete(d2_all[0], 0), 30)
print(f"beta of point 0: from scratch {b0:.6g}, minivis {betas[0]:.6g}")
assert abs(b0 / betas[0] - 1) < 1e-4  # both stop at an entropy tolerance, minivis at 1e-5 nats


def tsne_numpy(P, Y, iters, exaggerate=250, lr=50.0):
    Y, update, gains = Y.copy(), np.zeros_like(Y), np.ones_like(Y)
    for t in range(iters):
        diff = Y[:, None] - Y[None]                       # y_i - y_j, (N, N, 2)
        W = 1 / (1 + (diff ** 2).sum(-1))
        np.fill_diagonal(W, 0)
        E = 12.0 if t < exaggerate else 1.0               # early exaggeration
        grad = 4 * (((E * P - W / W.sum()) * W)[..., None] * diff).sum(1)
        gains = np.maximum(np.where(update * grad < 0, gains + 0.2, gains * 0.8), 0.01)
        update = (0.5 if t < exaggerate else 0.8) * update - lr * gains * grad
        Y = Y + update
        Y -= Y.mean(0)
    return Y


# %% [markdown]
# The check has two parts. The gradient on a random map must equal `mv.vis.tsne_gradient`
# (which runs a Numba kernel, not this formula) to rounding. And the whole optimisation, from
# the same start with the same schedule, must follow the same path as `mv.vis.tsne_fit` with
# `method="exact"`: we compare after 20 iterations (a long run amplifies rounding chaotically,
# as any iterated map with large steps does; the maps would still agree in quality, not bits).

# %%
Y_rand = rng.standard_normal((m, 2))
diff = Y_rand[:, None] - Y_rand[None]
W = 1 / (1 + (diff ** 2).sum(-1))
np.fill_diagonal(W, 0)
grad_numpy = 4 * (((P_small - W / W.sum()) * W)[..., None] * diff).sum(1)
grad_mv, kl_mv = mv.vis.tsne_gradient(P_small, Y_rand, method="exact")
np.testing.assert_allclose(grad_mv, grad_numpy, rtol=1e-10, atol=1e-14)
print(f"gradient: NumPy == mv.vis.tsne_gradient (KL of the random map {kl_mv:.3f})")

Y0 = 1e-4 * rng.standard_normal((m, 2))
ours = tsne_numpy(P_small, Y0, iters=20)
theirs = mv.vis.tsne_fit(Z50, perplexity=30, method="exact", n_iter=0, exaggeration_iter=20, init=Y0,
                         progress=False).embedding
np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())
print("20 iterations: NumPy t-SNE == mv.vis.tsne_fit(method='exact')")

# %% [markdown]
# ## 4. The Fashion-MNIST map, with Barnes-Hut
#
# For thousands of points the $O(N^2)$ gradient is too slow. Barnes-Hut t-SNE makes two
# approximations. P is kept only on each point's $3 \times \text{perplexity}$ nearest
# neighbours (beyond them the Gaussian weights are negligible), so the attraction costs
# $O(N k)$. The repulsion $\sum_j w_{ij}^2 (y_i - y_j) / Z$ is estimated with a quadtree over the
# map: seen from $y_i$, a cell of width $r$ at distance $d$ with $r / d < \theta$ acts like
# all of its points sitting at their centre of mass, one term instead of many; $O(N \log N)$.
# `mv.vis.tsne` does this in Numba (`minivis/kernels/cpu_tsne.py`), with $\theta = 0.5$.
#
# The whole set: PCA to 50 dimensions, then t-SNE with the defaults (perplexity 30, 250
# exaggerated + 750 iterations). The progress bar shows the KL divergence as it falls.

# %%
result = mv.vis.tsne_fit(fit.projection, perplexity=30, seed=0)
print(f"t-SNE of {n} points: KL {result.kl:.4f}, affinities {result.seconds['affinities']:.1f} s, "
      f"optimisation {result.seconds['optimize']:.1f} s")
kl_pca = mv.vis.kl_divergence(result.P, fit.projection[:, :2])
print(f"the same P against the PCA-2 map: KL {kl_pca:.4f}")
assert result.kl < kl_pca


# %% [markdown]
# A check of the approximation on the finished map: with $\theta = 0$ no cell is summarised
# and Barnes-Hut must give the exact gradient; with $\theta = 0.5$ the KL (which needs $Z$,
# estimated by the same tree) stays close. The gradient's *relative* error looks large at the
# end of a run because the attraction and repulsion nearly cancel there: what Barnes-Hut
# approximates is the repulsion, to about 1%.

# %%
exact_grad, exact_kl = mv.vis.tsne_gradient(result.P, result.embedding, method="exact")
for theta in (0.0, 0.5):
    g, kl_bh = mv.vis.tsne_gradient(result.P, result.embedding, method="barnes_hut", theta=theta)
    err = np.linalg.norm(g - exact_grad) / np.linalg.norm(exact_grad)
    print(f"theta={theta}: relative gradient error {err:.2e}, KL {kl_bh:.4f} (exact {exact_kl:.4f})")
    if theta == 0.0:
        assert err < 1e-10
assert abs(kl_bh / exact_kl - 1) < 0.02
assert abs(exact_kl - result.kl) < 1e-12

# %% [markdown]
# How much of each image's neighbourhood survives? For each point, the fraction of its 10
# nearest neighbours in the PCA-50 space that are also among its 10 nearest on the map.

# %%
def neighbours_kept(A, B, k=10):
    """Fraction of each point's k nearest neighbours in A that are also among its k in B."""
    from minivis.kernels.cpu_tsne import knn

    a, _ = knn(A, k)
    b, _ = knn(B, k)
    return np.mean((a[:, :, None] == b[:, None, :]).any(-1))


keep_tsne = neighbours_kept(fit.projection, result.embedding)
keep_pca = neighbours_kept(fit.projection, fit.projection[:, :2])
print(f"10 nearest neighbours kept: t-SNE {keep_tsne:.1%}, PCA-2 {keep_pca:.1%}")
assert keep_tsne > keep_pca

fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
mv.plot.embedding_scatter(fit.projection[:, :2], labels, ax=axes[0], title="PCA: first two components")
mv.plot.embedding_scatter(result.embedding, labels, class_names=classes, ax=axes[1],
                          title=f"t-SNE (KL {result.kl:.2f})")
axes[0].get_legend().remove()
fig.suptitle(f"Fashion-MNIST, {n} test images, {source}", fontsize=10)
fig.tight_layout()
savefig(fig, "08_pca_vs_tsne")

# %% [markdown]
# **What to notice.** PCA keeps the large-scale layout (bags and footwear stretched out along
# one axis, the tops piled along the other with trousers at its far end) but puts shirts,
# pullovers and coats on top of each other; t-SNE keeps far more of each image's nearest
# neighbours and opens clear gaps between most classes. The classes that stay entangled (shirt
# with T-shirt, pullover, coat and dress) are the ones a Fashion-MNIST classifier confuses.
# Do not read too much into t-SNE's *between-cluster* distances or cluster sizes: the
# objective barely constrains them (large $d_{ij}$ have tiny $p_{ij}$ and $q_{ij}$ alike).
#
# ## 5. The image grid
#
# A scatter of thumbnails overlaps where the map is dense. `mv.vis.tsne_grid` gives each image
# its own cell of a square grid instead, choosing the one-to-one assignment of points to cells
# that minimises the total squared displacement (a linear assignment problem, solved exactly
# by `scipy.optimize.linear_sum_assignment`). Neighbours on the map stay neighbours on the grid.

# %%
g = sized(40, 24)                    # a g x g grid
pick = rng.choice(n, g * g, replace=False)
layout = mv.vis.tsne_grid(result.embedding[pick], images[pick], grid=g)
assert sorted(map(tuple, layout.cells)) == [(r, c) for r in range(g) for c in range(g)]  # a permutation
# each point's cell vs. its position on the map (both scaled to the unit square)
E = result.embedding[pick]
U = (E - E.min(0)) / (E.max(0) - E.min(0))
cell_xy = np.stack([(layout.cells[:, 1] + 0.5) / g, 1 - (layout.cells[:, 0] + 0.5) / g], 1)
print(f"mean displacement onto the grid: {np.linalg.norm(U - cell_xy, axis=1).mean():.3f} of the map's width")
fig = mv.plot.embedding_mosaic(255 - layout.mosaic, title=f"t-SNE grid of {g * g} Fashion-MNIST images")
savefig(fig, "08_tsne_grid")

# %% [markdown]
# **What to notice.** The blocks follow the classes. The footwear shares one region, with
# boots, sneakers and sandals in neighbouring blocks; bags have a block of their own, and
# trousers form a strip next to the dresses. Look *inside* a class too: the long-sleeved tops
# sit apart from the short-sleeved ones, and the bags are sorted by shape (with or without a
# handle). That within-class order is what the code encodes beyond the labels.
#
# ## Summary
#
# - PCA is the SVD of the centred data: directions $V$, variances $\sigma_i^2 / (N - 1)$,
#   projection $U \Sigma$. The randomized SVD gets the top directions for a fraction of the cost.
# - t-SNE matches neighbour distributions: Gaussian $p_{j|i}$ calibrated to a perplexity, a
#   Student-t $q_{ij}$ on the map, and $\partial C / \partial y_i = 4 \sum_j (p_{ij} - q_{ij}) w_{ij} (y_i - y_j)$.
# - Barnes-Hut makes it $O(N \log N)$: sparse P for the attraction, a quadtree for the repulsion.
# - Trust t-SNE's neighbourhoods, not its global geometry.
#
# ## Exercises
#
# 1. Run `mv.vis.tsne` with perplexity 5, 30 and 300 on the same codes. What happens to the
#    clusters, and to the structure inside them? Why does a large perplexity bring the map
#    closer to PCA?
# 2. Set `early_exaggeration=1` (none). Compare the KL and the picture after 1,000 iterations.
#    Where do the clusters that got stuck end up?
# 3. Time `mv.vis.tsne_fit(..., method="barnes_hut", theta=t)` for t in 0.2, 0.5, 0.8 on 5,000
#    points and plot time and final KL against t. Where is the sweet spot?
