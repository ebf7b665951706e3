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
# # Lesson 09: nearest neighbours in feature space
#
# **The question.** What has the last hidden layer of a network learned to treat as "the
# same"? Krizhevsky, Sutskever & Hinton ("ImageNet Classification with Deep Convolutional
# Neural Networks", NeurIPS 2012, figure 4) looked at it by retrieval: take the 4096-d code
# of the last hidden layer for a query image, find the training images whose codes are
# closest in Euclidean (L2) distance, and show them. The neighbours were elephants in other
# poses, on other backgrounds, facing the other way: far apart as pixels, close as codes.
# In pixel space, by contrast, the nearest image is the one with the same layout and
# brightness, whatever it shows. That contrast, *semantic* versus *pixel* similarity, is what
# this lesson measures on Fashion-MNIST with `fashion_cnn`'s 128-d hidden layer.
#
# Plan: (1) derive exact k-nearest-neighbour search as matrix products, code it from scratch,
# check `mv.vis.nearest_neighbours` against it and against SciPy; (2) compute codes with
# `mv.vis.feature_codes`; (3) compare pixel-space and feature-space neighbours: pictures, label
# agreement, and what a small shift of the query does to each.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized
from scipy.spatial.distance import cdist

import minivis as mv

rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

try:
    model = mv.models.load("fashion_cnn")
    trained = True
except FileNotFoundError:  # the weights ship with the project once trained; until then, a fixed random init
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN().eval()
    trained = False
print("fashion_cnn:", "trained weights" if trained else "NO trained weights found: random init. The search is "
      "exact either way, but only a trained network's codes are semantic: rerun once the weights ship.")

# %% [markdown]
# ## 1. Exact k-NN as matrix products
#
# For a query $a$ and database rows $b_1, \dots, b_N$ (all $D$-dimensional),
#
# $$ \|a - b_i\|^2 = \|a\|^2 + \|b_i\|^2 - 2\, a \cdot b_i . $$
#
# For a fixed query, $\|a\|^2$ is the same for every $i$, so the ranking of the database is
# the ranking of $s_i = 2\, a \cdot b_i - \|b_i\|^2$ (larger is nearer). For $Q$ queries at
# once that is one matrix product $A B^\top$ ($Q \times N$), the fastest thing a CPU does
# (BLAS), instead of $Q N$ separate differences. For large $N$ the $Q \times N$ matrix is
# computed in blocks of a few thousand columns and a running top-$k$ per query is merged block
# by block (the same streaming top-$k$ as lesson 07), so memory stays bounded.
#
# Two details make it exact. The expansion subtracts large numbers to get a small one, which
# loses digits in float32 when the points are far from the origin and close together, so the
# products are done in float64. And the distances returned are recomputed directly,
# $\sqrt{\sum (a - b_i)^2}$, for the $k$ winners only. Cosine distance
# $1 - a \cdot b / (\|a\| \|b\|)$ is the same search on unit vectors, since
# $\|\hat a - \hat b\|^2 = 2 - 2 \cos\theta$. Ties (equal distances) are ordered by database
# index.
#
# From scratch, the whole distance matrix of a small problem:

# %%
def knn_np(queries, database, k):
    """Indices (Q, k) of the k nearest database rows by L2, ties by index: the dozen-line version."""
    a, b = queries.astype(np.float64), database.astype(np.float64)
    scores = 2 * a @ b.T - (b * b).sum(axis=1)                     # larger = nearer
    index = np.broadcast_to(np.arange(len(b)), scores.shape)
    return np.lexsort((index, -scores), axis=1)[:, :k]


db_small = rng.standard_normal((500, 32)).astype(np.float32)
q_small = rng.standard_normal((20, 32)).astype(np.float32)
mine = knn_np(q_small, db_small, 5)
idx, dist = mv.vis.nearest_neighbours(q_small, db_small, k=5, chunk=128)
np.testing.assert_array_equal(idx, mine)
reference = cdist(q_small.astype(np.float64), db_small.astype(np.float64))
np.testing.assert_array_equal(idx, np.argsort(reference, axis=1, kind="stable")[:, :5])
np.testing.assert_allclose(dist, np.take_along_axis(reference, idx, axis=1), rtol=1e-12)
print("from scratch == mv.vis.nearest_neighbours == scipy cdist + argsort")

# %% [markdown]
# ## 2. Codes
#
# The database is the training set, the queries come from the test set. Two representations
# of each image: its 784 pixels, and its 128-d code at `classifier.1` (the ReLU after the
# first fully connected layer, the analogue of AlexNet's fc7 code, "crucially including the
# ReLU" as the CS231n notes put it). `feature_codes` streams the images through the network
# in batches and stacks the flattened layer outputs.

# %%
train_images, train_labels = mv.data.fashion_mnist("train")
test_images, test_labels = mv.data.fashion_mnist("test")
n_db, n_q = sized(20_000, 300), sized(1000, 40)
db_images, db_labels = train_images[:n_db], train_labels[:n_db]
q_images, q_labels = test_images[:n_q], test_labels[:n_q]

layer = "classifier.1"
db_codes = mv.vis.feature_codes(model, db_images, layer, batch_size=256)
q_codes = mv.vis.feature_codes(model, q_images, layer, batch_size=256)
first = min(256, n_q)  # the check: the first batch's codes straight from the network (same batch, same floats)
with mv.no_grad():
    direct = mv.nn.forward_to(model, mv.tensor(model.preprocess(q_images[:first])), layer).data
np.testing.assert_array_equal(q_codes[:first], direct)
db_pixels = db_images.reshape(n_db, -1).astype(np.float32) / 255
q_pixels = q_images.reshape(n_q, -1).astype(np.float32) / 255
print(f"database {n_db} images: pixels {db_pixels.shape}, codes {db_codes.shape}; queries {n_q}")

# %% [markdown]
# ## 3. Pixel space versus feature space

# %%
k = 8
pix_idx, _ = mv.vis.nearest_neighbours(q_pixels, db_pixels, k=k)
feat_idx, _ = mv.vis.nearest_neighbours(q_codes, db_codes, k=k)
show = [int(np.flatnonzero(q_labels == c)[0]) for c in (0, 5, 8, 9) if (q_labels == c).any()][:4]
fig = mv.plot.neighbour_grid(q_images[show], {"pixels": db_images[pix_idx[show]],
                                              f"{layer} code": db_images[feat_idx[show]]},
                             title=f"nearest training images of 4 test images ({n_db} candidates)")
savefig(fig, "09_neighbours")

# %% [markdown]
# A number for the picture: how often a neighbour has the query's class (the accuracy of a
# $k$-NN vote, roughly), in each space.

# %%
pix_agree = (db_labels[pix_idx] == q_labels[:, None]).mean()
feat_agree = (db_labels[feat_idx] == q_labels[:, None]).mean()
print(f"neighbours with the query's class: pixels {pix_agree:.1%}, {layer} codes {feat_agree:.1%}")
if trained:
    assert feat_agree > pix_agree, "a trained network's code should group classes better than pixels"

# %% [markdown]
# **What to notice.** Pixel neighbours copy the query's silhouette, pose and brightness. With
# 20,000 candidates a near-copy of the same class is often there to be found (all four queries
# above find one); with fewer candidates, as in fast mode, pixel neighbours drift more often to
# another class with a similar outline. Code neighbours (with trained weights) keep the class
# and let print, shade and style vary: printed and plain T-shirts together, boots of different
# cuts. The numbers over all queries show the difference better than four rows.
#
# **A shift.** Pixel distance knows nothing of translation: moving an image by two pixels
# can carry it far away from itself. Does the code do better? Rank the original among the whole
# database by distance to its shifted copy, in each space:

# %%
shifted = np.roll(q_images, 2, axis=2)                          # 2 pixels to the right
database_pixels = np.vstack([db_pixels, q_pixels])               # the originals join the database
database_codes = np.vstack([db_codes, q_codes])
s_pix = shifted.reshape(n_q, -1).astype(np.float32) / 255
s_codes = mv.vis.feature_codes(model, shifted, layer)


def rank_of_original(query, database):
    """1 + how many database rows are nearer to each query than the query's own original."""
    d = cdist(query.astype(np.float64), database.astype(np.float64))
    own = d[np.arange(n_q), n_db + np.arange(n_q)]
    return 1 + (d < own[:, None]).sum(axis=1)


rank_pix, rank_feat = rank_of_original(s_pix, database_pixels), rank_of_original(s_codes, database_codes)
print(f"median rank of the unshifted original: pixels {np.median(rank_pix):.0f}, codes {np.median(rank_feat):.0f} "
      f"(out of {n_db + n_q})")
fig, ax = plt.subplots(figsize=(5, 3))
bins = np.logspace(0, np.log10(n_db + n_q), 25)
ax.hist(rank_pix, bins=bins, alpha=0.6, label="pixels")
ax.hist(rank_feat, bins=bins, alpha=0.6, label=f"{layer} code")
ax.set_xscale("log")
ax.set_xlabel("rank of the original among the database (1 = nearest)")
ax.set_ylabel("queries")
ax.legend()
ax.set_title("a 2-pixel shift: where does the original end up?", fontsize=9)
savefig(fig, "09_shift_ranks")
if trained:
    assert np.median(rank_feat) > np.median(rank_pix), "the code is no more shift-tolerant than the pixels"

# %% [markdown]
# **What to notice.** The code does *not* do better: after a 2-pixel shift the original typically
# ranks further down in code space than in pixel space. Max-pooling forgives a shift only while
# each window's maximum stays inside the window, and `classifier.0` is a fully connected layer
# with separate weights for each of the $7 \times 7$ positions, so features that move to other
# positions meet other weights. Nothing in the architecture makes the code invariant, and
# training (on centred images, without shifted copies) never asked for it.

# %% [markdown]
# ## Summary
#
# * Exact k-NN is a matrix product: rank by $2 a \cdot b - \|b\|^2$, in float64, in blocks,
#   with a running top-$k$; recompute the winners' distances directly.
#   `mv.vis.nearest_neighbours` equals the full distance matrix of SciPy, ties included.
# * In pixel space neighbours share layout and brightness; in a trained network's late code
#   they share the class. That is the evidence that the network maps images to a space where
#   semantics, not pixels, decide distance.
# * That space is not shift-invariant: a 2-pixel shift sends the original further down the code
#   ranking than the pixel ranking. Two max-pools and a fully connected layer do not make one.
#
# ## Exercises
#
# 1. Repeat with the codes of `features.4`, `features.9` and `classifier.1`. How does the
#    label agreement change with depth? Where does the biggest jump happen?
# 2. Use `metric="cosine"`. For ReLU codes, why might the cosine neighbours differ from the
#    L2 ones (think of two images whose codes differ mostly in overall scale)?
# 3. Time `nearest_neighbours` for 10,000 queries against 60,000 codes with `chunk` = 256,
#    1024 and 4096. Which part dominates: the matrix products or the top-$k$ merge?
# 4. Repeat the shift test with shifts of 1, 2, 4 and 8 pixels, and with the codes of
#    `features.9` (after the second max-pool) as well as `classifier.1`. Is a shift by the two
#    pools' total stride, 4 pixels, any easier on the code?
