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
# # Lesson 05: Grad-CAM
#
# **The question.** Saliency, the DeconvNet and guided backprop (lessons 03 and 04) answer
# "which *pixels*" and draw fine detail, but they are poor at telling classes apart: the
# guided-backprop picture of a cat-and-dog photo looks much the same whether you ask for "cat"
# or "dog". Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual
# Explanations from Deep Networks via Gradient-based Localization", ICCV 2017) answers a
# coarser question: *where* in the image is the evidence for this class? It reads the answer
# off the last convolutional feature maps, which are still spatial but already semantic.
#
# It grew out of CAM (Zhou, Khosla, Lapedriza, Oliva & Torralba, "Learning Deep Features for
# Discriminative Localization", CVPR 2016), which works only for networks that end in global
# average pooling and one linear layer. Grad-CAM replaces CAM's classifier weights by averaged
# gradients, which exist for any network and any layer, and reduces to CAM where CAM applies.
# We derive it, prove that reduction on EfficientNet-Lite0 (which does end that way), code it
# in a dozen lines of NumPy, compare with `mv.vis.grad_cam`, and then look at which layer to
# use, at class discrimination, and at guided Grad-CAM.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

effnet = mv.models.load("efficientnet_lite0")
effnet.requires_grad_(False)  # we differentiate with respect to activations and pixels only
size = sized(224, 128)


def prepare(photo):
    x = effnet.preprocess(photo)  # (1, 3, 224, 224)
    if size != 224:
        x = mv.F.interpolate(mv.tensor(x), size=(size, size), mode="bilinear").numpy()
    return x[0]


def top_class(x):
    with mv.no_grad():
        return int(effnet(mv.tensor(x[None])).numpy()[0].argmax())


cat_x, coffee_x = prepare(mv.data.photo("chelsea")), prepare(mv.data.photo("coffee"))
cat, coffee = top_class(cat_x), top_class(coffee_x)
print(f"{size} px: chelsea -> {effnet.labels[cat]} ({cat}), coffee -> {effnet.labels[coffee]} ({coffee})")

# %% [markdown]
# ## 1. From CAM to Grad-CAM
#
# Let $A^k \in \mathbb{R}^{h \times w}$, $k = 1 \dots K$, be the feature maps of a
# convolutional layer, and $S_c$ the score (logit) of class $c$.
#
# **CAM.** Suppose the network ends with global average pooling and a linear layer:
#
# $$
# S_c = \sum_k W_{ck}\, \frac{1}{Z} \sum_{i,j} A^k_{ij} + b_c
#     = \frac{1}{Z} \sum_{i,j} \underbrace{\sum_k W_{ck} A^k_{ij}}_{M^c_{ij}} + b_c,
# \qquad Z = hw .
# $$
#
# Swapping the two sums shows that the score is the average over positions of one map,
# $M^c = \sum_k W_{ck} A^k$: the class activation map. Where $M^c$ is large, the image
# contributes much to class $c$.
#
# **Grad-CAM.** For any network, weight each feature map by how much the class score depends
# on it on average, the spatially averaged gradient, and keep the positive part:
#
# $$
# \alpha^c_k = \frac{1}{Z} \sum_{i,j} \frac{\partial S_c}{\partial A^k_{ij}}, \qquad
# L^c_{\text{Grad-CAM}} = \operatorname{ReLU}\Big(\sum_k \alpha^c_k A^k\Big).
# $$
#
# The ReLU keeps the evidence *for* the class; negative values belong to other classes.
#
# **The reduction.** In the CAM network, $\partial S_c / \partial A^k_{ij} = W_{ck} / Z$ at
# every position, so $\alpha^c_k = W_{ck} / Z$ and
# $L^c_{\text{Grad-CAM}} = \operatorname{ReLU}(M^c) / Z$: the same map, up to a constant.
#
# **Upsampling.** The map has the layer's resolution ($7 \times 7$ for a $224$-pixel input at
# the last block of EfficientNet). It is stretched to the input size by bilinear interpolation
# with half-pixel centres (PyTorch's `align_corners=False`): output pixel $u$ of $H$ samples
# the map at $s = (u + \tfrac12) \tfrac{h}{H} - \tfrac12$ (clamped at 0), mixing its two
# neighbours $\lfloor s \rfloor$ and $\lfloor s \rfloor + 1$ with weights $1 - (s - \lfloor s
# \rfloor)$ and $s - \lfloor s \rfloor$. In matrix form, $L_{\uparrow} = U_h\, L\, U_w^\top$.

# %% [markdown]
# ## 2. From scratch in NumPy
#
# Everything we need from the network is the activation $A$ of the layer and its gradient
# $\partial S_c / \partial A$: `mv.nn.capture(..., retain_grad=True)` records the first in the
# forward pass and keeps the second after `backward()`. The rest is NumPy.

# %%
def bilinear_matrix(n_in, n_out):
    """U (n_out, n_in): bilinear resampling with half-pixel centres (align_corners=False)."""
    s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, None)
    lo = np.minimum(np.floor(s).astype(int), n_in - 1)
    hi, frac = np.minimum(lo + 1, n_in - 1), s - lo
    U = np.zeros((n_out, n_in))
    np.add.at(U, (np.arange(n_out), lo), 1 - frac)
    np.add.at(U, (np.arange(n_out), hi), frac)
    return U


def grad_cam_numpy(model, x, target, layer):
    with mv.nn.capture(model, layer, retain_grad=True) as acts:
        model(mv.tensor(x[None], requires_grad=True))[0, target].backward()
    A, dA = acts[layer].numpy()[0], acts[layer].grad[0]  # (K, h, w) each
    alpha = dA.mean(axis=(1, 2))  # alpha_k: the averaged gradient
    cam = np.maximum(np.tensordot(alpha, A, axes=1), 0)  # ReLU(sum_k alpha_k A^k), (h, w)
    H, W = x.shape[1:]
    return bilinear_matrix(cam.shape[0], H) @ cam @ bilinear_matrix(cam.shape[1], W).T, cam


# %% [markdown]
# The check, at the last activation of EfficientNet-Lite0 (`_act_head`, 1280 maps), which is
# followed by global average pooling, dropout (the identity at test time) and the linear
# classifier `_fc`: the NumPy version equals `mv.vis.grad_cam`, and both equal CAM computed from
# the classifier's weights alone, with no gradient at all.

# %%
head = "_act_head"
ours_up, ours_small = grad_cam_numpy(effnet, cat_x, cat, head)
mv_small = mv.vis.grad_cam(effnet, cat_x, cat, head, upsample=False)
mv_up = mv.vis.grad_cam(effnet, cat_x, cat, head)
np.testing.assert_allclose(mv_small, ours_small, rtol=1e-5, atol=1e-6 * ours_small.max())
np.testing.assert_allclose(mv_up, ours_up, rtol=1e-5, atol=1e-6 * ours_up.max())

with mv.no_grad(), mv.nn.capture(effnet, head) as acts:
    effnet(mv.tensor(cat_x[None]))
A = acts[head].numpy()[0]  # (1280, h, w)
W_fc = effnet._fc.weight.numpy()  # (1000, 1280)
cam_map = np.tensordot(W_fc[cat], A, axes=1)  # M^c = sum_k W_ck A^k
Z = A.shape[1] * A.shape[2]
np.testing.assert_allclose(mv_small, np.maximum(cam_map, 0) / Z, rtol=1e-4, atol=1e-6 * cam_map.max() / Z)
print(f"Grad-CAM at {head} ({A.shape[1]}x{A.shape[2]}): NumPy == mv.vis.grad_cam == ReLU(CAM) / {Z}")

# %% [markdown]
# `mv.vis.grad_cam` also agrees with Captum's `LayerGradCam` (with `relu_attributions=True`
# and bilinear `LayerAttribution.interpolate`) on identical weights to float64 rounding; that
# check lives in `tests/vis/attribution/test_cam.py`. One engineering detail: minivis does not backpropagate
# below the chosen layer. A forward hook replaces the layer's output by a fresh leaf tensor, so
# the backward pass starts at the logits and stops at the layer: Grad-CAM costs a forward pass
# plus the top part of a backward pass.

# %% [markdown]
# ## 3. Which layer?
#
# Grad-CAM can be computed at any convolutional layer. Early layers have fine resolution but
# their channels mean "edge" or "fur", not "cat"; the last layers mean "cat" but are coarse.
# Selvaraju et al. use the last convolutional layer. Here are four depths of EfficientNet-Lite0.
#
# **What to notice** (224 px). At `_blocks.2` (stride 4) the map traces low-level structure
# all over the photo: the outlines of the eyes, the dots of the whisker roots, fur stripes.
# At `_blocks.4` it gathers on the eyes' outlines, at `_blocks.10` on a few scattered parts
# (forehead markings, the nose). Only at the head is it one region, the face, in a handful of
# coarse cells: that map is about the class, the earlier ones about parts and edges the class
# happens to use. Unlike the head, the inner blocks' outputs are signed and feed many classes
# at once, which is why the ReLU in the definition matters more there.

# %%
layers = ["_blocks.2", "_blocks.4", "_blocks.10", "_act_head"]  # strides 4, 8, 16, 32
cams = {layer: mv.vis.grad_cam(effnet, cat_x, cat, layer, upsample=False) for layer in layers}
fig, axes = plt.subplots(1, len(layers), figsize=(3 * len(layers), 3.3))
for ax, (layer, c) in zip(axes, cams.items(), strict=True):
    mv.plot.overlay(effnet.deprocess(cat_x), c, ax=ax, title=f"{layer}: {c.shape[0]}x{c.shape[1]}")
fig.suptitle(f"Grad-CAM for '{effnet.labels[cat]}' at four depths of EfficientNet-Lite0", fontsize=10)
savefig(fig, "05_layer_choice")

# %% [markdown]
# ## 4. Class discrimination
#
# Put the cat and the coffee cup side by side in one image and ask for each class in turn.
# A class-discriminative method must light up the cat for the cat class and the cup for the
# coffee class. Guided backprop, for comparison, shows both objects either way.

# %%
quarter = size // 4
both = np.concatenate([cat_x[:, :, quarter:quarter + size // 2], coffee_x[:, :, quarter:size - quarter]], axis=2)
assert both.shape == cat_x.shape
targets = {effnet.labels[cat]: cat, effnet.labels[coffee]: coffee}
both_cams = {name: mv.vis.grad_cam(effnet, both, c, head) for name, c in targets.items()}
both_guided = {name: mv.vis.guided_backprop(effnet, both, c) for name, c in targets.items()}

half = both.shape[2] // 2
for name, c in both_cams.items():
    left, right = c[:, :half].sum(), c[:, half:].sum()
    print(f"Grad-CAM for '{name}': {100 * left / (left + right):.0f}% of the map on the left (cat) half")
cat_name, coffee_name = list(targets)
assert both_cams[cat_name][:, :half].sum() > both_cams[cat_name][:, half:].sum()
assert both_cams[coffee_name][:, half:].sum() > both_cams[coffee_name][:, :half].sum()

fig, axes = plt.subplots(2, 2, figsize=(6.4, 6.6))
for col, name in enumerate(targets):
    mv.plot.overlay(effnet.deprocess(both), both_cams[name], ax=axes[0, col], title=f"Grad-CAM: {name}")
    axes[1, col].imshow(mv.plot.attribution_image(both_guided[name], "rgb"))
    axes[1, col].set_title(f"guided backprop: {name}", fontsize=9)
    axes[1, col].axis("off")
savefig(fig, "05_class_discrimination")

# %% [markdown]
# **What to notice.** The two Grad-CAM maps fall on different halves of the image; the two
# guided-backprop images are nearly the same picture, edges of both objects, whatever class
# is asked for.

# %% [markdown]
# ## 5. Guided Grad-CAM
#
# Grad-CAM knows *where* but is blurry; guided backprop is sharp but does not know *which
# class*. Selvaraju et al. multiply them pixel by pixel (the Grad-CAM map upsampled to the input):
#
# $$
# \text{Guided Grad-CAM}^c = \text{GuidedBackprop}^c \odot L^c_{\text{Grad-CAM}\uparrow}.
# $$

# %%
guided_cam = mv.vis.guided_grad_cam(effnet, both, coffee, head)
np.testing.assert_allclose(guided_cam, both_guided[coffee_name] * both_cams[coffee_name][None], rtol=1e-5,
                           atol=1e-7 * np.abs(guided_cam).max())
fig = mv.plot.show_grad_cam(effnet.deprocess(both), mv.vis.grad_cam(effnet, both, coffee, head, upsample=False),
                            guided_cam, title=f"'{coffee_name}' in the two-photo image")
savefig(fig, "05_guided_grad_cam")

# %% [markdown]
# **What to notice.** The guided Grad-CAM image keeps the sharp edges of guided backprop, but
# only on the cup: the cat, which guided backprop drew just as clearly, is gone.

# %% [markdown]
# ## 6. Summary
#
# - Grad-CAM weights each feature map of a layer by its spatially averaged gradient,
#   $\alpha_k = \operatorname{mean}_{ij} \partial S_c / \partial A^k_{ij}$, sums, and keeps the
#   positive part; then it upsamples bilinearly to the input.
# - For a network that ends with global average pooling and a linear layer, Grad-CAM at the
#   last layer is CAM: $\alpha_k = W_{ck} / Z$. We checked it on EfficientNet-Lite0 from the
#   classifier weights alone.
# - Deeper layers: more semantic, coarser maps. The last convolutional layer is the usual
#   choice.
# - Grad-CAM is class-discriminative where guided backprop is not; guided Grad-CAM combines
#   the two.
#
# ## Exercises
#
# 1. **Counterfactual maps.** Selvaraju et al. also show *negative* evidence: replace
#    $\alpha_k$ by $-\alpha_k$ (or pass `relu=False` and keep the negative part). Where is the
#    evidence *against* "tiger cat" in the two-photo image?
# 2. **Grad-CAM++ in ten lines.** Chattopadhay et al. (WACV 2018) weight the positive
#    gradients per position instead of averaging all of them. Implement it with the NumPy
#    function above as a template and compare the maps on an image with two cats (tile the cat
#    photo twice).
# 3. **Sanity check.** Re-draw the weights of `_fc` (`effnet._fc.weight.data = ...`, keep a copy
#    to restore) and recompute the head's Grad-CAM. Does it change? Compare with guided
#    backprop, as in lesson 04.
