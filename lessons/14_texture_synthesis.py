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
# # Lesson 14: texture synthesis
#
# **The question.** Given a small sample of a texture (bricks, gravel, a mosaic), make a *new*
# image, as large as we like, that looks like more of the same, without being a tiled copy. What
# must a model of "the same texture" keep, and what may it throw away?
#
# Two answers, twenty years apart:
#
# 1. **Non-parametric sampling** (Efros & Leung, "Texture Synthesis by Non-parametric Sampling",
#    ICCV 1999): a texture is a Markov random field, each pixel depends only on its neighbourhood,
#    so grow the output one pixel at a time by copying a sample pixel whose neighbourhood looks
#    like the one already synthesised. No model at all: the sample *is* the model.
# 2. **Gram matrices of CNN features** (Gatys, Ecker & Bethge, "Texture Synthesis Using
#    Convolutional Neural Networks", NeurIPS 2015): describe a texture by which features of a
#    trained network fire *together*, averaged over all positions, and search for a new image
#    with the same statistics by gradient descent.
#
# Plan: (1) Efros & Leung from scratch, checked against `mv.vis.efros_leung`; (2) what the window
# size does; (3) the Gram matrix, why it keeps texture and drops layout, and its gradient, by
# hand; (4) Gram synthesis with EfficientNet-Lite0 with more and more layers; (5) summary.

# %%
import time

import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis.synthesis import nonparametric as npt
from minivis.vis.synthesis import style as st

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Non-parametric sampling
#
# Visit the output pixels in raster order (row by row, Wei & Levoy's variant of the scan). For
# pixel $p$ the already-known pixels of its $w \times w$ window are the rows above and the pixels
# to its left: the *causal* neighbourhood $N(p) = \{p + o_k\}$. For every sample pixel $q$ whose
# window fits in the sample, measure
#
# $$
# d(q) = \sum_k g_k \,\lVert \text{out}[p + o_k] - \text{sample}[q + o_k] \rVert^2,
# \qquad g_k = e^{-\lVert o_k \rVert^2 / 2\sigma^2},\ \sigma = w / 6.4,
# $$
#
# (the Gaussian makes near pixels count most), and copy the colour of a $q$ drawn at random among
# those with $d(q) \le (1 + \epsilon) \min d$. The randomness is what makes the output new rather
# than a copy; the window size is the *scale* of structure the model can keep.
#
# A direct NumPy version: a Python loop over the candidates, which is fine for a tiny sample.

# %%
def efros_leung_numpy(sample, size, window, eps, seed):
    """Raster-order Efros & Leung, directly from the formula (sample: (H, W) floats)."""
    r = window // 2
    offsets = [(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if dy < 0 or dx < 0]
    g = [np.exp(-(dy * dy + dx * dx) / (2 * (window / 6.4) ** 2)) for dy, dx in offsets]
    candidates = [(y, x) for y in range(r, sample.shape[0]) for x in range(r, sample.shape[1] - r)]
    gen = np.random.default_rng(seed)
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            known = [(k, i + dy, j + dx) for k, (dy, dx) in enumerate(offsets)
                     if i + dy >= 0 and 0 <= j + dx < size]
            if not known:
                pick = candidates[gen.integers(len(candidates))]
            else:
                d = np.array([sum(g[k] * (out[a, b] - sample[y + offsets[k][0], x + offsets[k][1]]) ** 2
                                  for k, a, b in known) for y, x in candidates])
                tol = 1e-12 * sum(g[k] for k, _, _ in known)
                close = np.flatnonzero(d <= d.min() * (1 + eps) + tol)
                pick = candidates[close[gen.integers(len(close))]]
            out[i, j] = sample[pick]
    return out


# %% [markdown]
# `mv.vis.efros_leung` does the same, but never loops over candidates: with $P$ the matrix of all
# candidate neighbourhoods (one row per $q$, built once) and $t$ the output neighbourhood,
# $d = (P \odot P)\,g - 2 P (g \odot t) + (g \odot t) \cdot t$, one matrix-vector product per
# output pixel (in float32, with the short list of near-best candidates re-measured in float64 so
# that the choice is exact). On a binary sample (many exact ties, so any difference in the
# choices would show) both give the same image, pixel for pixel:

# %%
sample = (rng.uniform(size=(12, 12)) > 0.5).astype(np.float64)
ours = npt.efros_leung(sample, 14, window=5, eps=0.0, seed=1, progress=False)
assert np.array_equal(ours, efros_leung_numpy(sample, 14, window=5, eps=0.0, seed=1))
print("NumPy loop == mv.vis.efros_leung (14x14 from a 12x12 binary sample)")

# A periodic texture comes back exactly: every neighbourhood has a perfect match in the sample.
board = lambda y, x: ((y // 3 + x // 3) % 2).astype(np.float64)  # noqa: E731
grown = npt.efros_leung(board(*np.mgrid[:24, :24]), 40, window=7, progress=False)
yy, xx = np.mgrid[:40, :40]
assert any(np.array_equal(grown, board(yy + a, xx + b)) for a in range(6) for b in range(6))
print("a 24x24 checkerboard grows into an exact, shifted 40x40 checkerboard")

# %% [markdown]
# ## 2. What the window size does
#
# The window is the largest structure the method can see. Too small, and the texture falls apart
# into noise with the right colours; large enough to cover one brick or one mosaic cell, and the
# whole element is copied coherently.

# %%
side = sized(64, 32)
out_side = sized(96, 40)
samples = {name: mv.data.resize(mv.data.style_image(name), (side, side)) for name in ("brick", "mosaic")}
windows = sized([5, 11, 17], [5, 9])
panels, titles = [], []
start = time.perf_counter()
for name, img in samples.items():
    panels.append(img)
    titles.append(f"{name} sample ({side} px)")
    for w in windows:
        panels.append(mv.vis.efros_leung(img, out_side, window=w, progress=False))
        titles.append(f"window {w}")
print(f"{len(samples) * len(windows)} syntheses in {time.perf_counter() - start:.1f} s")
fig = mv.plot.image_grid(panels, titles=titles, ncols=len(windows) + 1, size=2.2,
                         suptitle="Efros & Leung: the window is the scale of structure that survives")
savefig(fig, "14_efros_leung_windows")

# %% [markdown]
# **What to notice.** With the smallest window the mosaic falls apart into fragments of cells,
# and the bricks lose their regular bond (a 5x5 window cannot tell a brick's middle from a
# flat patch, and in the full run a large featureless block grows out of one). From 11 pixels
# on, whole bricks and whole cells are copied and the bond is right. The largest window shows
# the method's known failure: once the scan enters a region that matches itself (a large flat
# cell), it keeps copying it, and a blob much larger than anything in the sample grows ("garbage
# growing", in Efros & Leung's words); what comes out depends on the first few pixels. Every
# pixel is copied: the output has no colour the sample lacks. Cost: one product of a
# (candidates x window pixels) matrix per output pixel.

# %% [markdown]
# ## 3. Gram matrices: texture without layout
#
# Take a layer's feature maps for one image and flatten the positions: $F \in \mathbb{R}^{C \times M}$,
# $M = HW$, column $k$ the feature vector $f_k$ at position $k$. The Gram matrix
#
# $$
# G = \frac{1}{M} F F^\top = \frac{1}{M} \sum_{k=1}^{M} f_k f_k^\top,
# \qquad G_{ij} = \frac{1}{M} \sum_k F_{ik} F_{jk},
# $$
#
# is the average over positions of the outer product of the feature vector with itself: the
# (uncentred) second moments of the features. A sum over positions does not care about their
# order, so **any permutation of the positions gives the same G**: the arrangement, the layout,
# is exactly what is discarded. What is kept is which features occur, how strongly, and which
# ones occur *together at the same place*: stripes of a given orientation *with* this colour,
# edges *with* that curvature. Features of deeper layers see larger windows, so their
# co-occurrences describe larger structures, just as a larger window did in section 2.
#
# Matching Gram matrices is a search problem. The style loss at one layer, with $A$ the target,
#
# $$
# E = \frac{\lVert G - A \rVert_F^2}{\lVert A \rVert_F^2},
# \qquad \frac{\partial E}{\partial G} = \frac{2 (G - A)}{\lVert A \rVert_F^2}.
# $$
#
# For the Gram matrix itself, $G$ is bilinear in $F$: perturbing $F$ by $\delta F$ changes $G$
# by $(\delta F\, F^\top + F \,\delta F^\top)/M$, so for any upstream gradient $U = \partial L / \partial G$,
#
# $$
# \frac{\partial L}{\partial F} = \frac{(U + U^\top) F}{M},
# \qquad\text{and for the style loss}\qquad
# \frac{\partial E}{\partial F} = \frac{4 (G - A) F}{M \lVert A \rVert_F^2}
# $$
#
# ($G - A$ is symmetric). Gatys et al. write the same loss with the raw sums and a factor
# $1 / (4 C^2 M^2)$; dividing by $\lVert A \rVert^2$ instead makes 1 mean "as far as the zero
# matrix" at every layer, so layer weights are comparable. The loss over layers is
# $L_s = \sum_l w_l E_l$, and $\partial E_l / \partial F_l$ starts an ordinary backward pass
# from layer $l$ to the pixels.

# %%
F_ = rng.standard_normal((5, 12))                # C = 5 features at M = 12 positions
A = rng.standard_normal((5, 5))
A = A @ A.T
G = F_ @ F_.T / 12
E = ((G - A) ** 2).sum() / (A ** 2).sum()
dE_dF = 4 * (G - A) @ F_ / (12 * (A ** 2).sum())

feat = mv.tensor(F_.reshape(1, 5, 3, 4), requires_grad=True)
loss = st.style_loss({"layer": feat}, {"layer": A}, {"layer": 1.0})
loss.backward(np.ones(1))
assert np.isclose(loss.item(), E, rtol=1e-12)
assert np.allclose(feat.grad.reshape(5, 12), dE_dF, rtol=1e-10)
v = rng.standard_normal(F_.shape)
numeric = ((((F_ + 1e-6 * v) @ (F_ + 1e-6 * v).T / 12 - A) ** 2).sum()
           - (((F_ - 1e-6 * v) @ (F_ - 1e-6 * v).T / 12 - A) ** 2).sum()) / 2e-6 / (A ** 2).sum()
assert np.isclose(numeric, (dE_dF * v).sum(), rtol=1e-6)
perm = rng.permutation(12)                       # shuffle the positions: G does not change
assert np.allclose(F_[:, perm] @ F_[:, perm].T / 12, G)
print("style loss and its gradient: NumPy == minivis == finite differences; G ignores the positions' order")

# %% [markdown]
# ## 4. Gram synthesis with EfficientNet-Lite0
#
# Start from grey noise and minimise $L_s$ with L-BFGS through SciPy (`mv.vis.texture_synthesis`,
# which runs the shared `mv.vis.optimize` loop). The output size is free: the Gram matrices are
# averages over positions, so a larger canvas has the same statistics. Add the layers one by one:
# the stem alone (1/2 resolution, 32 features), then blocks at 1/4, 1/8 and 1/16 resolution.

# %%
lite0 = mv.models.load("efficientnet_lite0")
tex_side = sized(128, 48)
texture = st.style_input(lite0, mv.data.style_image("mosaic"), size=tex_side)
layer_sets = {"stem": ["_act_stem"],
              "+ 1/4": ["_act_stem", "_blocks.0", "_blocks.2"],
              "+ 1/8, 1/16": list(lite0.style_layers)}
steps = sized(100, 20)
results = {}
start = time.perf_counter()
for label, layers in layer_sets.items():
    results[label] = st.texture_synthesis(lite0, texture, size=sized(160, 56), layers=layers, steps=steps,
                                          progress=False)
    r = results[label]
    print(f"{label:12s} style loss {r.info['initial_style_loss']:.3f} -> {r.info['style_loss']:.4f}")
print(f"{len(layer_sets)} syntheses in {time.perf_counter() - start:.1f} s")
factor = sized(10, 4)  # the short fast-mode run gets part of the way
for r in results.values():
    assert r.info["style_loss"] < r.info["initial_style_loss"] / factor, "the Gram matrices are matched"
fig = mv.plot.texture_figure(lite0.deprocess(texture), {k: r for k, r in results.items()},
                             suptitle="Gram-matrix texture synthesis with more and more layers (Lite0)")
savefig(fig, "14_gram_layers")

# %% [markdown]
# **What to notice.**
#
# - The stem alone can only reproduce colours and the finest grain: its features see 3x3
#   pixels, so their co-occurrences describe nothing larger, and the result is coloured noise.
# - With the layers at 1/4 resolution, closed cells with dark borders appear, but smaller than
#   the sample's; adding the 1/8 and 1/16 layers makes them larger and closer to the sample's size.
#   This is the window of section 2 again, but learned: each layer's features are a vocabulary
#   for structures of its own size. The cells' interiors stay speckled: no statistic here forbids
#   fine colour noise (a TV penalty, `tv_weight=`, or `param="fft"` removes it).
# - Unlike Efros & Leung, nothing is copied: every pixel is synthesised, so colours can mix,
#   and long-range arrangements (a regular brick bond, straight stripes over the whole image) are
#   not enforced, because no statistic of the model describes them.
# - The fast mode (48 px, 20 steps) is far from converged; run the lesson without
#   `MINIVIS_FAST` to see the structure appear.

# %% [markdown]
# ## 5. Summary
#
# - Efros & Leung: a texture is a Markov random field; grow it by copying the pixel whose causal
#   neighbourhood matches best (within $1 + \epsilon$). Exact for periodic textures, excellent
#   for regular ones, but it only copies, and can stick to one part of the sample.
#   `mv.vis.efros_leung(sample, size, window)`; the matching is one BLAS product per pixel.
# - Gatys et al.: a texture is the set of Gram matrices $G_l = F_l F_l^\top / M_l$ of a CNN's
#   layers: second-order statistics that keep which features co-occur and drop where. Synthesis
#   is $\min_x \sum_l w_l \lVert G_l(x) - A_l \rVert^2 / \lVert A_l \rVert^2$ from noise, any
#   output size. `mv.F.gram_matrix`, `mv.vis.style_loss`, `mv.vis.texture_synthesis`.
#
# ## Exercises
#
# 1. **Onion order.** Efros & Leung grow the texture outward from a seed patch, filling the
#    pixels with the most known neighbours first. Change the scan order of `efros_leung_numpy`
#    to that and compare the "sticking" artefacts with raster order.
# 2. **Mean and covariance.** The Gram matrix is uncentred. Synthesise with only the *means* of
#    the feature maps (the diagonal of a 1x1 Gram matrix of the spatial mean) and then with
#    centred covariances. What does each lose?
# 3. **Fourier versus pixels.** Run `texture_synthesis(..., optimizer="adam", param="fft")` and
#    compare with pixels at the same number of steps. Which one gets rid of high-frequency noise
#    faster, and why (lesson 10)?
