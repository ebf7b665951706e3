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
# # Lesson 15: neural style transfer
#
# **The question.** Lesson 11 found images with a given *code* at a layer (feature inversion);
# lesson 14 found images with given *Gram matrices* (texture synthesis). What if we ask for both
# at once, the code of a photo and the Gram matrices of a painting? Gatys, Ecker & Bethge
# ("Image Style Transfer Using Convolutional Neural Networks", CVPR 2016) showed that the answer
# is the photo's layout painted with the painting's texture: *content* lives in the arrangement of
# deep features, *style* in their co-occurrence statistics, and a CNN separates the two well
# enough to recombine them.
#
# Plan: (1) the objective and its gradient; (2) a one-layer network in NumPy, loss and gradient
# checked against minivis; (3) transfer with EfficientNet-Lite0: from the photo, from noise, and
# with the photo's colours kept; (4) the content/style trade-off; (5) trained against random
# features (and VGG, Gatys's network, if you have its weights); (6) summary.

# %%
import os
import time

import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis.synthesis import style as st

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The objective
#
# With $F_l(x)$ the feature maps of layer $l$ flattened to $C_l \times M_l$, the photo $p$, the
# painting $a$, $P = F_c(p)$ at one content layer $c$ and $A_l = G_l(a)$ at the style layers:
#
# $$
# L(x) = \alpha\, \underbrace{\frac{\lVert F_c(x) - P \rVert^2}{\lVert P \rVert^2}}_{L_c}
#      + \beta\, \underbrace{\sum_l w_l \frac{\lVert G_l(x) - A_l \rVert_F^2}{\lVert A_l \rVert_F^2}}_{L_s}
#      + \tau\, \frac{TV^2(x)}{C H W}.
# $$
#
# The content term is lesson 11's reconstruction loss, the style term lesson 14's, and total
# variation keeps the pixels from filling up with high-frequency noise that the network ignores.
# The gradients add: $\partial L_c / \partial F_c = 2 (F_c - P) / \lVert P \rVert^2$ starts a
# backward pass at the content layer, and each style layer sends
# $4 (G_l - A_l) F_l / (M_l \lVert A_l \rVert^2)$ (lesson 14). One forward pass to the deepest
# layer used, one backward pass to the pixels, then L-BFGS (through SciPy) takes the step.
#
# Only the ratio $\alpha / \beta$ matters for the minimiser (up to $\tau$): it says how much of
# the photo's layout may be given up for how much style. Gatys et al. use the raw squared errors
# and report ratios of $10^{-3}$ to $10^{-4}$; with the normalised terms above, the two losses are
# both near 1 at the start and ratios near 1 to 0.01 make sense.

# %% [markdown]
# ## 2. One layer, from scratch
#
# The smallest network with both terms: a 3x3 convolution and a ReLU, used as the content layer
# and the only style layer. NumPy computes the loss and its gradient by the chain rule (im2col
# for the convolution, as in lesson 01); minivis gets the same numbers from its objective.

# %%
def conv3x3(x, w):
    """'same' 3x3 convolution of x (C, H, W) with w (K, C, 3, 3), and the im2col matrix it used."""
    c, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([padded[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=1)  # (C, 9, H, W)
    cols = cols.reshape(c * 9, h * wd)
    return (w.reshape(len(w), -1) @ cols).reshape(len(w), h, wd), cols


def loss_and_grad(x, w, P, A, alpha, beta):
    z, cols = conv3x3(x, w)
    f = np.maximum(z, 0)
    F_ = f.reshape(len(w), -1)
    M = F_.shape[1]
    G = F_ @ F_.T / M
    Lc = ((F_ - P) ** 2).sum() / (P ** 2).sum()
    Ls = ((G - A) ** 2).sum() / (A ** 2).sum()
    dF = alpha * 2 * (F_ - P) / (P ** 2).sum() + beta * 4 * (G - A) @ F_ / (M * (A ** 2).sum())
    dz = dF * (z.reshape(len(w), -1) > 0)                       # through the ReLU
    dcols = w.reshape(len(w), -1).T @ dz                        # through the convolution: W^T, then col2im
    dx = np.zeros((x.shape[0], x.shape[1] + 2, x.shape[2] + 2))
    dcols = dcols.reshape(x.shape[0], 9, x.shape[1], x.shape[2])
    for k, (i, j) in enumerate((i, j) for i in range(3) for j in range(3)):
        dx[:, i:i + x.shape[1], j:j + x.shape[2]] += dcols[:, k]
    return alpha * Lc + beta * Ls, dx[:, 1:-1, 1:-1]


w = rng.standard_normal((6, 3, 3, 3)) * 0.5
photo_small, painting_small, x = (rng.uniform(-1, 1, (3, 10, 10)) for _ in range(3))
P = np.maximum(conv3x3(photo_small, w)[0], 0).reshape(6, -1)
Fa = np.maximum(conv3x3(painting_small, w)[0], 0).reshape(6, -1)
A = Fa @ Fa.T / Fa.shape[1]
value, grad = loss_and_grad(x, w, P, A, alpha=1.0, beta=5.0)

net = mv.nn.Sequential(mv.nn.Conv2d(3, 6, 3, padding=1, bias=False), mv.nn.ReLU()).double()
net.load_state_dict({"0.weight": w})
objective = (st.content_objective("1", P.reshape(6, 10, 10)) * 1.0
             + st.style_objective(st.gram_targets(net, painting_small, ["1"]), {"1": 1.0}) * 5.0)
xt = mv.tensor(x[None], requires_grad=True)
ours = objective(net, xt)
ours.backward(np.ones(1))
assert np.isclose(ours.item(), value, rtol=1e-12)
assert np.allclose(xt.grad[0], grad, rtol=1e-9, atol=1e-12)
print(f"loss {value:.6f} and its gradient: NumPy == minivis")

# %% [markdown]
# ## 3. Style transfer with EfficientNet-Lite0
#
# Lite0's defaults (`model.style_layers`, `model.content_layer`) mirror Gatys's choice for VGG:
# style at the stem and at the ends of the first four stages (1/2 to 1/16 resolution), content
# at the end of the 1/8 stage. Three runs of `mv.vis.style_transfer` on the same pair:
#
# - from the photo (`init="content"`, the usual choice: the content loss starts at 0);
# - from noise (`init="noise"`, Gatys's original: the content has to be rebuilt);
# - from the photo, transferring only luminance (`preserve_color=True`; Gatys et al., "Controlling
#   Perceptual Factors in Neural Style Transfer", CVPR 2017): the style's grey values are matched
#   to the photo's mean and spread, the transfer runs on grey images, and the result's luminance
#   is put back together with the photo's chrominance (the I and Q channels of YIQ).

# %%
lite0 = mv.models.load("efficientnet_lite0")
side = sized(160, 48)
content = st.style_input(lite0, mv.data.photo("chelsea"), size=side)
style_name = "mosaic"
style = st.style_input(lite0, mv.data.style_image(style_name), size=side)
steps = sized(150, 15)
runs = {}
start = time.perf_counter()
for label, kwargs in {"from the photo": {}, "from noise": {"init": "noise"},
                      "colours kept": {"preserve_color": True}}.items():
    runs[label] = mv.vis.style_transfer(lite0, content, style, steps=steps, progress=False, **kwargs)
    info = runs[label].info
    print(f"{label:15s} content loss {info['content_loss']:.3f}  style loss {info['style_loss']:.3f}")
print(f"{len(runs)} transfers of {steps} L-BFGS steps in {time.perf_counter() - start:.1f} s")

start_style = st.style_objective(st.gram_targets(lite0, style, list(lite0.style_layers)),
                                 st.layer_weights(lite0, None, "lesson"))(lite0, mv.tensor(content[None])).item()
assert runs["from the photo"].info["style_loss"] < 0.5 * start_style, "the photo took on the style"
yiq_content = st.rgb_to_yiq(st.to_pixels(lite0, content))
yiq_kept = st.rgb_to_yiq(st.to_pixels(lite0, runs["colours kept"].x))
assert np.allclose(yiq_kept[1:], yiq_content[1:], atol=1e-4), "luminance-only transfer keeps the photo's colours"
fig = mv.plot.style_grid(lite0.deprocess(content), lite0.deprocess(style), runs,
                         suptitle=f"Gatys et al. style transfer on EfficientNet-Lite0 ({style_name})")
savefig(fig, "15_style_transfer")

# %% [markdown]
# **What to notice.** From the photo, the cat's eyes, nose and outline stay where they were,
# while the whole image is redrawn as the mosaic's flat patches with dark outlines, in its
# palette. From noise, the same number of steps rebuilds the layout more roughly (the eyes are
# there, the fur's structure much less; the content layer is at 1/8 resolution, so fine detail
# is left to the style term). With the colours kept, the mosaic's outlines and patches are
# drawn in the photo's own browns: colour is part of what the Gram matrices call "style", and
# this is how to leave it out. The content losses printed above are near 1 (as far from the
# photo's code as the zero code) and yet the cat is plain to see: a relative feature error is
# not a measure of how recognisable an image is. In fast mode (48 px, 15 steps) all of this is
# far from converged; run the lesson without `MINIVIS_FAST` to see it.

# %% [markdown]
# ## 4. The trade-off
#
# Raise the style weight $\beta$ with $\alpha = 1$: the content loss of the result rises and its
# style loss falls. In the full run, $\beta = 1$ leaves the photo almost untouched, $\beta = 10$
# (the default) redraws it as mosaic patches with the cat clearly in place, and $\beta = 100$
# breaks it into smaller, busier cells. Which end looks best is a matter of taste, which is why
# $\beta$ is the one knob every style-transfer tool exposes.

# %%
weights = sized([1.0, 10.0, 100.0], [1.0, 100.0])
sweep = [mv.vis.style_transfer(lite0, content, style, style_weight=b, steps=steps, progress=False) for b in weights]
for b, r in zip(weights, sweep, strict=True):
    print(f"style weight {b:6g}: content loss {r.info['content_loss']:.3f}, style loss {r.info['style_loss']:.3f}")
assert sweep[-1].info["content_loss"] > sweep[0].info["content_loss"]
assert sweep[-1].info["style_loss"] < sweep[0].info["style_loss"]
savefig(mv.plot.weight_sweep(sweep, weights), "15_weight_sweep")

# %% [markdown]
# ## 5. Trained features against random ones
#
# How much of this needs a *trained* network? Ustyuzhaninov et al. ("What does it take to generate
# natural textures?", ICLR 2017) synthesised textures from a single layer of **random** filters of
# several sizes (3x3 to 15x15 here; `mv.models.load("random_multiscale")`): no training, just many
# scales, a ReLU and Gram matrices. Same texture, same steps, Lite0 against random filters, and
# VGG-19 with Gatys's layers if you point `MINIVIS_VGG19` at torchvision's `vgg19-dcbb9e9d.pth`
# (minivis reads it without executing anything; no weights ship because they are 550 MB).

# %%
tex = st.style_input(lite0, mv.data.style_image("brick"), size=sized(128, 40))
nets = {"Lite0 (trained)": lite0, "random multi-scale": mv.models.load("random_multiscale", channels=sized(64, 16))}
if os.environ.get("MINIVIS_VGG19"):
    nets["VGG-19 (trained)"] = mv.models.load("vgg19", weights=os.environ["MINIVIS_VGG19"])
textures = {}
for name, model in nets.items():
    textures[name] = st.texture_synthesis(model, tex, size=sized(160, 48), steps=sized(100, 15), progress=False)
    r = textures[name]
    print(f"{name:20s} style loss {r.info['initial_style_loss']:.3f} -> {r.info['style_loss']:.4f}")
    assert r.info["style_loss"] < r.info["initial_style_loss"] / 3
fig = mv.plot.texture_figure(lite0.deprocess(tex), textures,
                             suptitle="the same texture from trained and random features")
savefig(fig, "15_trained_vs_random")

# %% [markdown]
# **What to notice.** Each network lowers the style loss *in its own feature space*, and these
# losses are not comparable between networks: compare the pictures. In the full run, Lite0's
# synthesis is made of short, light, mortar-like line segments in both orientations (brick
# pieces, but no regular bond), while the random filters keep the grain and some vertical
# streaks and nothing that looks like a brick, under a brownish cast: a grey sample does not
# forbid colour, and noise in directions the Gram matrices barely see survives (a TV weight or
# the Fourier parameterisation pushes it out). The random filters have no reason to respond to
# long straight runs or corners; Ustyuzhaninov et al. found random multi-scale networks close to
# VGG for many textures and behind it for strongly structured ones, as here.

# %% [markdown]
# ## 6. Summary
#
# - Style transfer minimises $\alpha L_c + \beta L_s + \tau\,TV$: feature inversion at one deep
#   layer plus texture synthesis at several, by L-BFGS on the pixels (`mv.vis.style_transfer`).
# - $\beta / \alpha$ trades the photo's layout for the painting's texture; starting from the photo
#   converges faster; `preserve_color=True` transfers luminance only.
# - Trained features make structured styles work; random multi-scale filters already capture
#   much of a texture's local statistics.
# - It is slow: every image is an optimisation with a forward and backward pass per step. Lesson 16
#   trains a network to do it in one forward pass.
#
# ## Exercises
#
# 1. **Which content layer?** Move `content_layer` from `_blocks.4` to `_act_stem` and to
#    `_blocks.7`. How much of the photo's detail survives in each, and why (lesson 11)?
# 2. **Which style layers?** Drop the deep style layers (keep the 1/2 and 1/4 ones). What happens
#    to the size of the brush strokes?
# 3. **Average pooling.** Gatys et al. replace VGG's max pooling by average pooling for smoother
#    gradients. With VGG-19 weights, swap the `MaxPool2d` layers for `AvgPool2d` and compare.
