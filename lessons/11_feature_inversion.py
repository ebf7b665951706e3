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
# # Lesson 11: feature inversion
#
# **The question.** A layer turns a photo into a code: a stack of feature maps. What does that
# code still know about the photo? If we could find *every* image with the same code, we would
# see exactly what the layer keeps and what it throws away. Mahendran & Vedaldi
# ("Understanding Deep Image Representations by Inverting Them", CVPR 2015) turned this into an
# optimisation problem: given the code $\Phi_0 = \Phi(x_0)$ of an image at some layer, find
#
# $$
# x^\star \;=\; \arg\min_x \;
# \frac{\lVert \Phi(x) - \Phi_0 \rVert^2}{\lVert \Phi_0 \rVert^2}
# \;+\; \lambda_\alpha\, \mathcal{N}_\alpha(x) \;+\; \lambda_{TV}\, \mathcal{N}_{TV}(x).
# $$
#
# Many images share a code (that is what "throwing information away" means), so the two priors
# pick a *natural-looking* one among them: a bound on the pixel range (the $\alpha$-norm) and a
# preference for piecewise-smooth images (total variation). What is the same in every
# reconstruction is what the layer keeps.
#
# Plan: (1) the objective and its gradients, TV in particular; (2) TV in NumPy, checked against
# minivis and finite differences; (3) inverting a *linear* code from scratch, where the role of
# the prior is plain to see, checked against `mv.vis.invert`; (4) inverting EfficientNet-Lite0
# from several layers, with the reconstruction error per layer; (5) what each prior does.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis.synthesis import regularizers as reg

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The objective, term by term
#
# **Data term.** $\ell(x) = \lVert \Phi(x) - \Phi_0 \rVert^2 / \lVert \Phi_0 \rVert^2$, so that
# $\ell = 1$ means "as far from $\Phi_0$ as the all-zero code", whatever the layer's scale. Its
# gradient is one backward pass from the layer with the upstream gradient
# $2 (\Phi(x) - \Phi_0) / \lVert \Phi_0 \rVert^2$, exactly like DeepDream (lesson 12) sends
# the activation itself back.
#
# **$\alpha$-norm.** $\mathcal{N}_\alpha(x) = \lVert x \rVert_\alpha^\alpha / (H W B^\alpha)$ with
# $B$ the largest valid pixel magnitude. For $\alpha = 6$ a pixel twice as bright costs
# $2^6 = 64$ times more, so the prior ignores moderate pixels and stops extreme ones; its
# gradient is $\alpha \lvert x \rvert^{\alpha - 1} \operatorname{sign}(x) / (H W B^\alpha)$.
#
# **Total variation.** With forward differences $\delta^x_{ij} = x_{i,j+1} - x_{ij}$ and
# $\delta^y_{ij} = x_{i+1,j} - x_{ij}$,
#
# $$
# TV^\beta(x) = \sum_{ij} \big( (\delta^x_{ij})^2 + (\delta^y_{ij})^2 \big)^{\beta/2},
# \qquad \mathcal{N}_{TV}(x) = \frac{TV^\beta(x)}{H W V^\beta}, \quad V = B / 6.5 .
# $$
#
# Each term $s_{ij}^{\beta/2}$, $s_{ij} = (\delta^x_{ij})^2 + (\delta^y_{ij})^2$, depends on three
# pixels. With $w_{ij} = \beta\, s_{ij}^{\beta/2 - 1}$ the chain rule gives
#
# $$
# \frac{\partial TV^\beta}{\partial x_{i,j+1}} \mathrel{+}= w_{ij}\, \delta^x_{ij}, \qquad
# \frac{\partial TV^\beta}{\partial x_{i+1,j}} \mathrel{+}= w_{ij}\, \delta^y_{ij}, \qquad
# \frac{\partial TV^\beta}{\partial x_{ij}} \mathrel{-}= w_{ij}\, (\delta^x_{ij} + \delta^y_{ij}).
# $$
#
# For $\beta = 2$, $w = 2$ and the gradient is a discrete Laplacian: descending it is heat
# diffusion, which is why TV smooths. For $\beta < 2$ it penalises many small steps more than
# one big one, which keeps edges sharp (and needs a small $\epsilon$ inside $s$ where the image
# is flat).
#
# **The optimiser.** The objective is smooth almost everywhere and deterministic, so a
# quasi-Newton method fits: L-BFGS builds a curvature model from the last few gradients and
# needs no learning rate. `mv.vis.invert` hands the image to `scipy.optimize.minimize(method=
# "L-BFGS-B")` through `minivis.optim.lbfgs`, which converts between SciPy's flat float64
# vector and the image tensor.

# %% [markdown]
# ## 2. TV from scratch

# %%
def tv_numpy(x: np.ndarray, beta: float = 2.0) -> tuple[float, np.ndarray]:
    """TV^beta of x (..., H, W) and its gradient, straight from the formulas above."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    s = dx ** 2 + dy ** 2
    w = beta * s ** (beta / 2 - 1)
    grad = np.zeros_like(x)
    grad[..., :-1, 1:] += w * dx
    grad[..., 1:, :-1] += w * dy
    grad[..., :-1, :-1] -= w * (dx + dy)
    return float((s ** (beta / 2)).sum()), grad


x = rng.standard_normal((1, 3, 6, 7))
for beta in (2.0, 1.5):
    value, grad = tv_numpy(x, beta)
    xt = mv.tensor(x, requires_grad=True)
    ours = reg.tv(xt, beta, eps=0.0)
    ours.backward(np.ones(1))
    np.testing.assert_allclose(ours.item(), value, rtol=1e-12)
    np.testing.assert_allclose(xt.grad, grad, rtol=1e-12)
    v = rng.standard_normal(x.shape)  # and the gradient against central differences along v
    numeric = (tv_numpy(x + 1e-6 * v, beta)[0] - tv_numpy(x - 1e-6 * v, beta)[0]) / 2e-6
    np.testing.assert_allclose(np.vdot(grad, v), numeric, rtol=1e-6)
print("TV: NumPy == mv.vis.regularizers.tv, and both match finite differences")

# %% [markdown]
# ## 3. Inverting a linear code, from scratch
#
# The simplest "layer": $\Phi(x) = W x$ with $W$ a random $196 \times 784$ matrix, a quarter as
# many numbers as the $28 \times 28$ image. The codes of $x_0$ and $x_0 + n$ agree for every $n$
# in the 588-dimensional null space of $W$, so the data term alone cannot recover $x_0$: its
# minimum-norm solution is the pseudo-inverse $W^+ W x_0$, which sets the null-space part to
# zero. TV picks, among all images with the right code, a smooth one instead.
#
# Gradient descent in NumPy, with the normalisations of section 1:

# %%
images, labels = mv.data.fashion_mnist("test")
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
x0 = (images[0] / 255.0 - FASHION_MEAN) / FASHION_STD                    # (28, 28), model-input units
W = rng.standard_normal((196, 784)) / np.sqrt(784)
B = (1 - FASHION_MEAN) / FASHION_STD                                       # the largest valid |pixel|
tv_weight, lr, steps = 1e-3, 30.0, sized(100, 40)
tv_scale = 1.0 / (28 * 28 * (B / 6.5) ** 2)

code = W @ x0.ravel()
x = np.zeros(784)                                                          # start from the mean image
for _ in range(steps):
    data_grad = 2 * W.T @ (W @ x - code) / (code @ code)
    x = x - lr * (data_grad + tv_weight * tv_scale * tv_numpy(x.reshape(28, 28))[1].ravel())

# %% [markdown]
# The same through minivis: the linear map as an `mv.nn` network (its output is the code, layer
# `""`), inverted with `optimizer="sgd"` from the mean image and no $\alpha$ prior.

# %%
linear = mv.nn.Sequential(mv.nn.Flatten(), mv.nn.Linear(784, 196, bias=False)).double()
linear.load_state_dict({"1.weight": W})
linear.in_channels, linear.mean, linear.std = 1, (FASHION_MEAN,), (FASHION_STD,)  # for B, as above
result = mv.vis.invert(linear, x0[None], "", steps=steps, optimizer="sgd", lr=lr, init="mean", alpha_weight=0.0,
                       tv_weight=tv_weight, progress=False)
np.testing.assert_allclose(result.x[0], x.reshape(28, 28), rtol=1e-10, atol=1e-12)
print("NumPy gradient descent == mv.vis.invert(optimizer='sgd')")

# L-BFGS converges much further in the same number of iterations; compare the three reconstructions
pinv = (np.linalg.pinv(W) @ code).reshape(28, 28)
lbfgs = mv.vis.invert(linear, x0[None], "", steps=steps, init="mean", alpha_weight=0.0, tv_weight=tv_weight,
                      progress=False)
error = lambda r: np.linalg.norm(r - x0) / np.linalg.norm(x0)  # noqa: E731
print(f"image error: pseudo-inverse {error(pinv):.3f}, gradient descent + TV {error(result.x[0]):.3f}, "
      f"L-BFGS + TV {error(lbfgs.x[0]):.3f} (feature error {lbfgs.info['feature_error']:.1e})")
assert error(lbfgs.x[0]) < 0.6 * error(pinv), "the TV prior recovers much of what the code does not pin down"

shown = [x0, pinv, result.x[0], lbfgs.x[0]]
fig = mv.plot.image_grid([np.clip(s * FASHION_STD + FASHION_MEAN, 0, 1) for s in shown], size=2.2,
                         titles=["original", f"pseudo-inverse\nerr {error(pinv):.2f}",
                                 f"{steps} steps of GD + TV\nerr {error(result.x[0]):.2f}",
                                 f"L-BFGS + TV\nerr {error(lbfgs.x[0]):.2f}"],
                         suptitle="inverting 196 random projections of a 784-pixel image")
savefig(fig, "11_linear_inversion")

# %% [markdown]
# **What to notice.** The pseudo-inverse has the code of the original exactly, yet it is covered
# in noise: the null-space directions it sets to zero are not zero in the photo. With the TV
# prior, L-BFGS fills them in smoothly, and the error roughly halves. Plain gradient descent
# is the same method but slow here: the data term settles quickly, while the TV term (a weak
# heat diffusion) needs many more steps; the curvature model of L-BFGS takes much larger steps
# along those directions. The prior adds information the code does not have; it is a *guess*
# about natural images, and inversions of real networks should always be read with that in mind.

# %% [markdown]
# ## 4. Inverting EfficientNet-Lite0, layer by layer
#
# Now the real thing: the code of a photo at several depths of EfficientNet-Lite0, each inverted
# from small noise by L-BFGS with both priors (`alpha=6`, `tv_beta=2`, the default weights).
# `mv.vis.inversion_table` runs `mv.vis.invert` once per layer and reports two errors: the
# *feature error* $\lVert \Phi(x^\star) - \Phi_0 \rVert^2 / \lVert \Phi_0 \rVert^2$ (did the
# optimiser match the code?) and the *image error* $\lVert x^\star - x_0 \rVert / \lVert x_0 \rVert$
# (how much of the photo came back?).

# %%
effnet = mv.models.load("efficientnet_lite0")
size = sized(128, 64)
effnet.input_size, effnet.resize_size = (size, size), round(size * 256 / 224)  # a smaller centre crop
photo = effnet.preprocess(mv.data.photo("chelsea"))[0]
layers = sized(["_act_stem", "_blocks.2", "_blocks.5", "_blocks.10", "_blocks.15", ""],
               ["_act_stem", "_blocks.2", "_blocks.7", ""])
start = time.perf_counter()
table = mv.vis.inversion_table(effnet, photo, layers, steps=sized(150, 30), progress=False)
print(f"{len(layers)} inversions in {time.perf_counter() - start:.1f} s\n")
print(table)

assert table.image_error[0] < table.image_error[-1], "the first layer keeps more of the image than the logits"
assert table.image_error[0] < 0.5
assert all(r.history[-1] < 0.7 * r.history[0] for r in table.results), "each code is matched far better than at first"
savefig(mv.plot.inversion_figure(table, title=f"EfficientNet-Lite0: reconstructions from the code at each layer "
                                                f"({size} px)"), "11_inversion_by_layer")

# %% [markdown]
# **What to notice.**
#
# - Every reconstruction matches its own code much better than the starting noise did (in the
#   full run, to a few percent; the logits are the hardest to match), yet the image errors
#   grow with depth: the codes get more *invariant*, so more and more different images share them.
# - The stem's code (32 channels at half resolution, after ReLU6) gives the photo back almost
#   exactly, colours included. A few blocks in, colour and fine texture start to go, but the
#   eyes, the nose and the fur's direction are still in place.
# - In the middle of the network the arrangement loosens: eye-like and fur-like pieces are
#   there, not quite where they were, with less contrast. From the deepest layers and the
#   logits the reconstruction is a texture of cat-ish parts: the code says *what* is present
#   much more than *where*.
# - An image error near 1 means "no closer to the photo than the mean image is"; it does not
#   mean the reconstruction is meaningless (look at it), only that the pixels differ.

# %% [markdown]
# ## 5. What the priors do
#
# Invert one middle layer with the TV weight off, at its default, and ten times larger.

# %%
layer = sized("_blocks.5", "_blocks.2")
weights = [0.0, 1e-2, 1e-1]
runs = [mv.vis.invert(effnet, photo, layer, steps=sized(150, 30), tv_weight=w, progress=False) for w in weights]
tvs = [reg.tv(mv.tensor(r.x[None]), 2.0).item() for r in runs]
for w, r, t in zip(weights, runs, tvs, strict=True):
    print(f"tv_weight {w:g}: feature error {r.info['feature_error']:.4f}, image error {r.info['image_error']:.3f}, "
          f"TV {t:.1f}")
assert tvs[0] > tvs[2], "a larger TV weight gives a smoother reconstruction"

fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
panels = [(effnet.deprocess(photo), "original")] + [
    (r.image, f"tv_weight {w:g}\nimage err {r.info['image_error']:.2f}") for w, r in zip(weights, runs, strict=True)]
for ax, (img, title) in zip(axes, panels, strict=True):
    ax.imshow(img)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle(f"inverting {layer}: the TV prior trades detail for smoothness")
fig.tight_layout()
savefig(fig, "11_tv_prior")

# %% [markdown]
# **What to notice.** Without TV the reconstruction matches the code with high-frequency
# speckle that the network does not care about: the code does not pin those frequencies down,
# so nothing stops them. A moderate weight removes the speckle and the image error drops; too
# large a weight starts to blur away detail that the code *did* keep, and the feature error
# rises. The right weight is a property of the layer: deeper layers leave more unconstrained
# and need more smoothing (Mahendran & Vedaldi increase it with depth).

# %% [markdown]
# ## 6. Summary
#
# - Feature inversion finds an image whose code at a layer equals the code of a given photo:
#   $\min_x \lVert \Phi(x) - \Phi_0 \rVert^2 / \lVert \Phi_0 \rVert^2$ plus natural-image priors
#   ($\alpha$-norm for the range, $TV^\beta$ for smoothness), solved here by L-BFGS through SciPy.
# - For a linear code the data term leaves the null space free; the prior fills it in. Deep codes
#   are far from linear, but the same holds: the reconstruction shows what the code constrains,
#   and the prior's guess everywhere else.
# - Early layers give the photo back almost exactly; deeper ones keep parts and their identity
#   but lose position, colour and detail, the invariance a classifier needs.
# - `mv.vis.invert(model, image, layer)` and `mv.vis.inversion_table(model, image, layers)`.
#
# ## Exercises
#
# 1. **Random networks remember too.** Invert the same layers of a *randomly initialised*
#    EfficientNet-Lite0 (`mv.models.build("efficientnet_lite0").eval()`). Are the early layers
#    still invertible? Where does the trained network keep more, and why might an untrained
#    network keep a lot (compare Ulyanov et al., "Deep Image Prior", 2018)?
# 2. **The alpha-norm.** Set `tv_weight=0` and vary `alpha_weight` from 0 to 1e-2 with
#    `alpha=6`, then with `alpha=2`. Plot the histogram of reconstructed pixel values for each.
#    Why does a large $\alpha$ leave most pixels alone and clip only the extremes?
# 3. **Which photo?** Start the inversion of `_blocks.10` from a *different* photo
#    (`mv.vis.invert` starts from noise; write the loop with `mv.vis.optimize` and
#    `PixelImage(other_photo)` instead). What survives from the starting image, and what is
#    forced by the code?
