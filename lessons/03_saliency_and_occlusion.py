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
# # Lesson 03: saliency and occlusion
#
# **The question.** A network looks at a photo and says "tabby cat". Which pixels made it
# say so? This lesson answers twice, in the two ways that every later method varies:
#
# * **by differentiating**: Simonyan, Vedaldi & Zisserman ("Deep Inside Convolutional
#   Networks: Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014)
#   treat the class score as a linear function of the pixels near the photo and read off the
#   weights: one backward pass, a *saliency map*;
# * **by perturbing**: Zeiler & Fergus ("Visualizing and Understanding Convolutional
#   Networks", ECCV 2014) hide one square of the photo at a time and watch the class
#   probability: one forward pass per square, an *occlusion map*.
#
# The gradient is cheap but local (it describes infinitesimal changes); occlusion asks about
# real, large changes but costs hundreds of forward passes. The last part of the lesson makes
# occlusion cheaper without changing a single number: hiding a square only changes the
# activations inside its *cone of influence*, so only those need recomputing (Nakandala,
# Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster Occlusion-based
# Deep CNN Explanations", SIGMOD 2019).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

try:
    fashion = mv.models.load("fashion_cnn")
    trained = True
except FileNotFoundError:  # the weights ship with the project once trained; until then, a fixed random init
    mv.nn.init.seed(0)
    fashion = mv.models.FashionCNN().eval()
    trained = False
print("fashion_cnn:", "trained weights" if trained else "NO trained weights found, using a random init "
      "(every check below holds either way; the pictures only mean something once trained)")
images, labels = mv.data.fashion_mnist("test")
x_fashion = fashion.preprocess(images[:8])  # (8, 1, 28, 28) model inputs

effnet = mv.models.load("efficientnet_lite0")
photos = [mv.data.photo("chelsea"), mv.data.photo("coffee")]
x_photos = effnet.preprocess(photos)  # (2, 3, 224, 224)
if FAST:  # 2x2 mean pooling: 112 px keeps both classes and makes every step four times cheaper
    x_photos = x_photos.reshape(2, 3, 112, 2, 112, 2).mean(axis=(3, 5))
with mv.no_grad():
    photo_classes = effnet(mv.tensor(x_photos)).data.argmax(axis=1)
print("EfficientNet-Lite0 sees:", [effnet.labels[c] for c in photo_classes], "at", x_photos.shape[-1], "px")

# %% [markdown]
# ## 1. Saliency: the class score as a linear function of the pixels
#
# Let $S_c(I)$ be the score (the logit, before the softmax) of class $c$ for image $I$, a
# vector of $C \cdot H \cdot W$ numbers. Near a given photo $I_0$, expand $S_c$ to first order:
#
# $$
# S_c(I) \;\approx\; S_c(I_0) + \nabla S_c(I_0)^\top (I - I_0) \;=\; w^\top I + b,
# \qquad w = \left.\frac{\partial S_c}{\partial I}\right|_{I_0},\quad b = S_c(I_0) - w^\top I_0 .
# $$
#
# In a linear model $w^\top I + b$ the size of $w_k$ says how much pixel $k$ matters, so
# Simonyan et al. take $|w|$ as the importance of each pixel, and for a colour image the
# largest over the three channels:
#
# $$
# M_{ij} \;=\; \max_{c'} \,\bigl|\, w_{c', i, j} \bigr| .
# $$
#
# For a network made of convolutions, ReLUs and max-pools, $S_c$ is *piecewise linear*: as long
# as no ReLU changes sign and no max-pool changes its winner, $S_c(I) = w^\top I + b$ holds
# exactly, and $w$ is the product of the weights along the active paths. That is why the
# gradient is computed by backpropagation: one backward pass gives all $CHW$ numbers.
#
# **From scratch**, without backpropagation: a central finite difference per pixel,
# $w_k \approx (S_c(I_0 + h e_k) - S_c(I_0 - h e_k)) / 2h$, i.e. $2HW$ forward passes, batched.
# In float64 this agrees with the backward pass to many digits (a ReLU network is linear on
# the tiny segment $[I_0 - h e_k, I_0 + h e_k]$ unless a unit sits within $h$ of its kink).

# %%
model64 = mv.models.FashionCNN().double().eval()  # float64 copy for the finite differences
model64.load_state_dict(fashion.state_dict())
# The flat black background gives every max-pool window there several equal maxima: a kink,
# where the gradient is a convention and finite differences average the two sides. A little
# noise makes every maximum unique, so the function is differentiable at x0.
x0 = x_fashion[0].astype(np.float64) + 0.01 * rng.standard_normal((1, 28, 28))
with mv.no_grad():
    c = int(model64(mv.tensor(x0[None])).data.argmax())


def score(batch: np.ndarray) -> np.ndarray:
    """S_c for a batch of images (N, 1, 28, 28), forward passes only."""
    with mv.no_grad():
        return model64(mv.tensor(batch)).data[:, c]


h = 1e-5
checked = rng.choice(x0.size, size=sized(x0.size, 96), replace=False)  # every pixel (fast mode: 96 of them)
steps = np.zeros((len(checked), x0.size))
steps[np.arange(len(checked)), checked] = h  # h e_k for each checked pixel k
steps = steps.reshape(-1, *x0.shape)
w_fd = np.concatenate([(score(x0 + part) - score(x0 - part)) / (2 * h) for part in np.array_split(steps, 4)])

# the same through the engine: one forward, one backward
x = mv.tensor(x0[None], requires_grad=True)
model64(x)[0, c].backward()
w = x.grad[0]
err = np.abs(w_fd - w.reshape(-1)[checked]).max()
print(f"class {c} ({fashion.labels[c]}): {len(checked)} pixels, max |w_fd - w| = {err:.2e}, "
      f"max |w| = {np.abs(w).max():.2e}")
assert err <= 1e-6 * np.abs(w).max()

# mv.vis.saliency is max over channels of |w| (one channel here)
M = mv.vis.saliency(model64, x0, c)
assert M.shape == (28, 28) and np.allclose(M, np.abs(w).max(axis=0))

# the linear model predicts the score of a nearby image
delta = 1e-3 * rng.standard_normal(x0.shape)
print(f"S(I0 + d) = {score((x0 + delta)[None])[0]:.6f}, linear model w.(I0 + d) + b = "
      f"{score(x0[None])[0] + (w * delta).sum():.6f}")

# %% [markdown]
# Saliency maps of eight test images, each for the class the network predicts. (With a random
# init the maps are noise-like: there is no object to find.)

# %%
with mv.no_grad():
    predicted = fashion(mv.tensor(x_fashion)).data.argmax(axis=1)
maps = mv.vis.saliency(fashion, x_fashion, predicted)  # (8, 28, 28)
fig = mv.plot.image_grid(list(images[:8]) + [mv.plot.normalize(m) for m in maps], ncols=8,
                         titles=[fashion.labels[p] for p in predicted] + ["saliency"] * 8,
                         suptitle="Fashion-MNIST: image and |dS_c/dx|")
savefig(fig, "03_saliency_fashion")

# %% [markdown]
# On photos the map is the gradient of EfficientNet-Lite0's logit for its top class. What to
# notice: the large values sit on the object (the cat's face and stripes, the cup's rim) but the
# map is speckled: the gradient describes *infinitesimal* changes, pixel by pixel, and
# neighbouring pixels can have opposite signs. Occlusion, next, asks about real changes.

# %%
photo_maps = mv.vis.saliency(effnet, x_photos, photo_classes)  # (2, H, W)
shown = effnet.deprocess(x_photos)
fig, axes = plt.subplots(2, 2, figsize=(6, 6))
for i in range(2):
    axes[i, 0].imshow(shown[i])
    axes[i, 0].set_title(effnet.labels[photo_classes[i]], fontsize=9)
    axes[i, 1].imshow(np.clip(photo_maps[i] / np.percentile(photo_maps[i], 99), 0, 1), cmap="gray")
    axes[i, 1].set_title("saliency (clipped at the 99th percentile)", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
savefig(fig, "03_saliency_photos")

# %% [markdown]
# **What the backward pass has to keep.** A saliency map needs only dS/dx, and the chain rule
# through each layer needs surprisingly little of the forward pass: a convolution's input
# gradient is ``W^T g`` (the weights, not the input: the input is needed only for dS/dW, and the
# weights are frozen here), a max-pool's is ``g`` put back at the switches, and a rectifier's is
# ``g`` where it was linear and 0 elsewhere: one byte per value says which. Other backward
# rules need more (LRP reads every layer's input), and the rule is chosen only when
# ``backward()`` runs, so by default every op keeps what any rule could read. Inside
# ``mv.lean_graph()`` the ops keep only what the gradient, guided backprop and DeconvNet need,
# and the arrays of the forward pass are freed as it goes. The saliency methods record their
# graphs that way, and so does every image optimisation (class models, inversion, DeepDream,
# textures, style transfer). Below: the memory the graph holds after the forward pass, and the
# gradient, which is the same to the last bit. (The weights are frozen by hand here, not with
# the methods' ``frozen(model)``: that one also keeps the memory of dead arrays for the next
# batch, ``backend.reuse_buffers``, and tracemalloc would count it.)

# %%
import tracemalloc  # noqa: E402 (this section's only import)


def held_after_forward(lean: bool) -> tuple[float, np.ndarray]:
    x = mv.tensor(x_photos, requires_grad=True)
    effnet.eval().requires_grad_(False)
    tracemalloc.start()
    with mv.lean_graph() if lean else mv.enable_grad():
        logits = effnet(x)
    held = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    logits[np.arange(2), photo_classes].sum().backward()
    effnet.requires_grad_(True)
    return held, x.grad


full_mb, full_grad = held_after_forward(False)
lean_mb, lean_grad = held_after_forward(True)
print(f"arrays held by the graph after the forward pass: {full_mb:.1f} MB, lean {lean_mb:.1f} MB")
assert np.array_equal(full_grad, lean_grad) and lean_mb < 0.5 * full_mb

# %% [markdown]
# **Fusing two ops into one.** In eval mode a batch norm is a per-channel affine map
# ``y = x s + t`` (``s = gamma / sqrt(var + eps)``, ``t = beta - mean s``), and EfficientNet follows
# each with a ReLU6. As two ops, each makes a pass over memory forward and another backward, with
# an array between them. As one op (``mv.F.batch_norm_relu``, which the model's blocks reach through
# ``mv.nn.batch_norm_act``) the forward is ``clip(x s + t, 0, 6)`` and the backward
# ``g * [0 < y < 6] * s`` under the rule in force: one pass each way, the same arithmetic in the
# same order, so the same bits. Fusion stays off wherever something could tell the difference
# (a hook on either module, training mode, DeepLIFT's rescale rule); ``mv.nn.fusion(False)`` turns
# it off by hand, which is how the check below compares the two.

# %%
fused_grads = []
for fused in (True, False):
    with mv.vis.common.frozen(effnet), mv.nn.fusion(fused):
        x = mv.tensor(x_photos, requires_grad=True)
        effnet(x)[np.arange(2), photo_classes].sum().backward()
        fused_grads.append(x.grad)
assert np.array_equal(*fused_grads)

# %% [markdown]
# Where no graph is recorded at all (inference under ``mv.no_grad()``, as occlusion below runs), the
# convolution before the pair joins it too (``mv.nn.conv_bn_act``, ``mv.F.conv2d_bn_relu``): the
# depthwise kernels compute ``clip((w * x) s + t, 0, 6)`` as they write each output row, so the
# batch norm and ReLU6 cost no pass over memory of their own. With a graph, the three ops run
# apart, since the backward pass needs the convolution's own node.

# %%
inference_logits = []
for fused in (True, False):
    with mv.no_grad(), mv.nn.fusion(fused):
        inference_logits.append(effnet(mv.tensor(x_photos)).numpy())
assert np.array_equal(*inference_logits)

# %% [markdown]
# ## 2. Occlusion: hide a square, watch the probability
#
# Slide a $P \times P$ square of a constant colour $f$ over the image with stride $s$. At grid
# position $(r, q)$ the square covers rows $[rs, rs + P)$ and columns $[qs, qs + P)$; with
# $I^{(r,q)}$ the occluded image,
#
# $$
# G_{rq} \;=\; \operatorname{softmax}\bigl(f_\theta(I^{(r,q)})\bigr)_c,
# \qquad 0 \le r < \left\lfloor \frac{H - P}{s} \right\rfloor + 1 .
# $$
#
# Where $G$ drops, the hidden pixels mattered for class $c$. Zeiler & Fergus use the
# *probability*, not the logit: hiding the object should also make other classes likelier.
# To paint $G$ back onto pixels, give each pixel the mean over the squares covering it. With
# $R_{hr} = 1$ when square-row $r$ covers pixel-row $h$ (and $Q$ likewise for columns) that is
# $\bigl(R\,G\,Q^\top\bigr) \oslash \bigl(R\mathbf{1}\,(Q\mathbf{1})^\top\bigr)$; Captum's
# `Occlusion` does the same with the drop $p_{\text{clean}} - G_{rq}$
# (`mv.vis.occlusion_attribution`). The choice of $f$ matters: a patch should look like
# "nothing", so we use 0 in model-input units, the training set's mean colour.
#
# **From scratch**: a dozen lines of NumPy around the forward pass.

# %%
P, s, fill = 6, 2, 0.0
xi = x_fashion[:1]  # (1, 1, 28, 28)
target = int(predicted[0])
rows = (28 - P) // s + 1
grid = np.empty((rows, rows), dtype=np.float32)
for r in range(rows):
    for q in range(rows):
        occluded = xi.copy()
        occluded[:, :, r * s:r * s + P, q * s:q * s + P] = fill
        with mv.no_grad():
            logits = fashion(mv.tensor(occluded)).data[0]
        e = np.exp(logits - logits.max())
        grid[r, q] = e[target] / e.sum()

ours = mv.vis.occlusion(fashion, xi[0], target, patch=P, stride=s, fill=fill)
print(f"{rows}x{rows} positions, max |loop - mv.vis.occlusion| = {np.abs(ours - grid).max():.2e}")
assert np.allclose(ours, grid, atol=1e-6)
heat = mv.vis.occlusion_map(ours, 28, P, s)
fig = mv.plot.occlusion_figure(images[0], ours, heat, title=f"fashion_cnn, class {fashion.labels[target]}")
savefig(fig, "03_occlusion_fashion")

# %% [markdown]
# ## 3. Incremental occlusion: recompute only the cone of influence
#
# The loop above runs the whole network $\text{rows}^2$ times, yet each occluded image differs
# from the clean one only in a $P \times P$ square. Follow that square through one layer,
# along one axis. An output $o$ of a layer with kernel $k$, stride $\sigma$, dilation $d$ and
# padding $p$ (before the first pixel) reads inputs $[o\sigma - p,\; o\sigma - p + e)$ with
# reach $e = d(k - 1) + 1$. If the input changed on $[a, a + L)$, exactly the outputs whose
# window meets it change:
#
# $$
# o_{\text{lo}} = \left\lceil \frac{a + p - e + 1}{\sigma} \right\rceil, \qquad
# o_{\text{hi}} = \left\lfloor \frac{a + L - 1 + p}{\sigma} \right\rfloor
# \qquad(\text{clipped to the output map}),
# $$
#
# and recomputing them needs the input window $[o_{\text{lo}}\sigma - p,\; o_{\text{hi}}\sigma
# - p + e)$: the changed region plus a *halo* of unchanged values, which we take from a cached
# clean forward pass. Padding is real only at the image border: inside the map the halo is
# cached activations, outside it the layer's pad value (0, or $-\infty$ for a max-pool), so
# running the layer with no padding on the window reproduces the full layer there exactly.
# Pointwise layers (ReLU, batch norm in eval mode) keep the region; a residual block's region is
# the union of its two branches'. Layer by layer the region grows by $e - 1$ and shrinks by the
# stride: that is the cone. Once it covers (nearly) the whole map, the region is pasted into a
# copy of the cached map and the remaining layers run in full.
#
# **From scratch** for one layer, `fashion_cnn`'s first convolution (3x3, padding 1): recompute
# only the changed outputs of the occluded image and splice them into the clean output.

# %%
conv1 = fashion.features[0]
r0, q0 = 8, 14  # the square's top-left corner
occluded = xi.copy()
occluded[:, :, r0:r0 + P, q0:q0 + P] = fill
with mv.no_grad():
    clean_out = conv1(mv.tensor(xi)).data
    full_out = conv1(mv.tensor(occluded)).data
# k=3, stride 1, pad 1: outputs [a - 1, a + L] change; they read inputs [a - 2, a + L + 1)
lo_r, hi_r, lo_q, hi_q = max(r0 - 1, 0), min(r0 + P, 27), max(q0 - 1, 0), min(q0 + P, 27)
padded = np.pad(occluded, ((0, 0), (0, 0), (1, 1), (1, 1)))  # zeros: the border's padding
window = padded[:, :, lo_r:hi_r + 3, lo_q:hi_q + 3]  # input rows lo_r-1 .. hi_r+1, shifted by the pad
with mv.no_grad():
    patch_out = mv.F.conv2d(mv.tensor(window), conv1.weight, conv1.bias).data  # no padding: a valid conv
spliced = clean_out.copy()
spliced[:, :, lo_r:hi_r + 1, lo_q:hi_q + 1] = patch_out
print(f"recomputed {patch_out.shape[-2]}x{patch_out.shape[-1]} of 28x28 outputs; "
      f"max |spliced - full| = {np.abs(spliced - full_out).max():.1e}")
assert np.allclose(spliced, full_out, atol=1e-6)

# %% [markdown]
# `mv.vis.occlusion(..., mode="incremental")` does this for every layer and many square
# positions at once (a batch of regions, one per position, spliced by a small Numba kernel),
# and follows EfficientNet's residual MBConv blocks. It must give the same numbers as the naive
# mode; `return_info=True` reports the region each layer had to recompute and the convolution
# multiply-adds saved. On layers of 128 channels or more (VGG's), the regions of a batch also
# share their Winograd products, in 4x4 blocks where those fill a region well (lesson 01,
# section 7): their float32 results round a little differently from the naive mode's, well
# inside the 1e-5 this lesson and the benchmark check.

# %%
naive = mv.vis.occlusion(fashion, xi[0], target, patch=P, stride=s, fill=fill, mode="naive")
fast, info = mv.vis.occlusion(fashion, xi[0], target, patch=P, stride=s, fill=fill, mode="incremental",
                              return_info=True)
print(f"fashion_cnn: max |incremental - naive| = {np.abs(fast - naive).max():.1e}; "
      f"{info['mac_speedup']:.1f}x fewer convolution multiply-adds")
assert np.allclose(fast, naive, atol=1e-6)
print("region per layer (last batch):", {k: v for k, v in info["region_sizes"].items() if k.startswith("features")})

# %% [markdown]
# Now EfficientNet-Lite0 on the photos, with a square of an eighth of the image. The cone of
# a 3x3 or 5x5 depthwise convolution grows fast and every stride-2 stage halves the map, so
# from the 14x14 stage on the region covers the map: the exact saving is modest. Krypton's
# *approximate* mode caps each layer's region at a fraction $\tau$ of the map (values beyond
# the cap are taken from the clean pass); it is faster and no longer exact, so we print its
# largest error next to its saving.

# %%
size = x_photos.shape[-1]
P, s = size // 7, sized(size // 28, 12)  # 32 and 8 at 224 px (the benchmark's setting); 16 and 12 at 112
results = {}
for mode in ("incremental", "approximate"):
    start = time.perf_counter()
    results[mode] = mv.vis.occlusion(effnet, x_photos[0], photo_classes[0], patch=P, stride=s, fill=0.0, mode=mode,
                                     batch_size=96, return_info=True)
    print(f"{mode}: {time.perf_counter() - start:.1f} s, {results[mode][1]['mac_speedup']:.2f}x fewer conv MACs")
grid_photo, info = results["incremental"]
every = sized(7, 8)  # the naive reference on every 7th (8th) position keeps the check affordable
cells = np.stack(np.divmod(np.arange(0, grid_photo.size, every), grid_photo.shape[1]), axis=1)
start = time.perf_counter()
naive = mv.vis.occlusion(effnet, x_photos[0], photo_classes[0], patch=P, stride=s, fill=0.0, positions=cells)
print(f"naive on {len(cells)} positions: {time.perf_counter() - start:.1f} s")
exact_err = np.abs(grid_photo[cells[:, 0], cells[:, 1]] - naive).max()
approx_err = np.abs(results["approximate"][0][cells[:, 0], cells[:, 1]] - naive).max()
print(f"max |incremental - naive| = {exact_err:.1e}; approximate (tau 0.5) max error = {approx_err:.3f}")
assert exact_err < 1e-5
last = {k: v for k, v in info["region_sizes"].items() if k.count(".") <= 1 and k}
print("region per block (last batch; None = full map):", last)

# %%
with mv.no_grad():
    clean_p = mv.F.softmax(effnet(mv.tensor(x_photos[:1])), axis=-1).data[0, photo_classes[0]]
heat = mv.vis.occlusion_map(grid_photo, size, P, s)
fig = mv.plot.occlusion_figure(shown[0], grid_photo, heat, clean=float(clean_p),
                               title=f"EfficientNet-Lite0: p({effnet.labels[photo_classes[0]]}) with a {P}px square")
savefig(fig, "03_occlusion_photo")

# %% [markdown]
# What to notice: the probability falls where the square hides what identifies the class
# (on the cat, an eye and the striped fur around it: the overlay "glows" there) and barely
# moves elsewhere; unlike the saliency map the occlusion
# map is smooth, because it is blurred by the square's size, and it can only see parts larger
# than the square. The red line on the colour bar is the clean probability: some squares
# *raise* it (they hide evidence for a competing class).
#
# ## Summary
#
# * Saliency is the weight vector of the first-order Taylor model $S_c(I) \approx w^\top I + b$:
#   one backward pass, $M_{ij} = \max_{c'} |w_{c'ij}|$. Finite differences agree with the
#   backward pass to better than 1e-9 in float64.
# * Occlusion measures the target *probability* with a $P \times P$ square at each of
#   $\bigl(\lfloor (H-P)/s \rfloor + 1\bigr)^2$ positions: expensive, but it asks about real
#   changes. The heat map is the mean over the squares covering each pixel.
# * A square changes only its cone of influence; recomputing that region layer by layer
#   (halo from the cache, padding only at the border) gives identical numbers with far fewer
#   multiply-adds on VGG-like nets and fewer on EfficientNet, whose cone fills its small maps.
#
# ## Exercises
#
# 1. Replace the fill value 0 by the image's mean colour (`fill="mean"`) and by a random
#    colour. How much does the occlusion map of the cat change? Which fill is "neutral"?
# 2. For `fashion_cnn`, derive by hand the region each layer recomputes for a 6x6 square at
#    the centre and compare with `info["region_sizes"]`. At which layer does the cone cover
#    the map for a 14x14 square?
# 3. Sweep $\tau$ in the approximate mode from 0.2 to 1.0 on a photo; plot the maximum error
#    against the multiply-adds saved. Where would you set $\tau$ for an explanation you trust?
