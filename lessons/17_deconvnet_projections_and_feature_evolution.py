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
# # Lesson 17: DeconvNet projections of the top activations, and how features evolve
#
# **The question.** Lesson 07 showed, for each unit, the image patches that excite it most.
# A patch shows *where* the unit looked, but not *what in the patch* it responded to: a
# 14x14 crop of a sneaker contains a sole, a lace hole, an edge and a background. Zeiler &
# Fergus ("Visualizing and Understanding Convolutional Networks", ECCV 2014, figures 2 and 4)
# answered it by projecting each top activation back to the pixels with their DeconvNet. The
# recipe in the lecture notes: pick a single intermediate neuron, *zero out all other
# activations of its layer*, and run the backward pass of the DeconvNet to the image.
#
# This lesson builds that figure and two of its companions:
#
# 1. the projection of one unit, derived, written from scratch in NumPy and checked against
#    `mv.vis.project_units` and against the unit's own gradient;
# 2. the top-9 activations of many channels over the whole Fashion-MNIST test set, each shown
#    as its patch beside its DeconvNet and guided-backprop projections, and the same on
#    EfficientNet-Lite0 with crops of photos;
# 3. the *evolution of features*: the projection of each channel's strongest activation at
#    every shipped checkpoint of `fashion_cnn`, and how sparse the activations become as the
#    network trains (CS231n: "more sparse and localized");
# 4. any attribution method aimed at a unit instead of a class (the "gradient of an
#    intermediate neuron"), and Szegedy et al.'s point that the unit axes are not special
#    ("Intriguing properties of neural networks", ICLR 2014).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis import objectives as ob

np.set_printoptions(precision=4, suppress=True, linewidth=120)
start = time.time()
print("fast mode" if FAST else "full mode")
model = mv.models.load("fashion_cnn")
images, labels = mv.data.fashion_mnist("test")
n_data = sized(10_000, 500)
images, labels = images[:n_data], labels[:n_data]
names = mv.data.FASHION_MNIST_CLASSES

# %% [markdown]
# ## 1. One unit, sent back to the pixels
#
# Let $a = \Phi_\ell(x)$ be the activations of layer $\ell$ for image $x$ and $u = (c, y, x)$
# one unit of it. Zeiler & Fergus's projection starts the DeconvNet from the layer with
#
# $$
# g_\ell = a_u\, e_u \qquad (\text{the unit's own value at its place, zeros everywhere else})
# $$
#
# and sends it down: through a max-pool by *unpooling* with the switches ($P^\top$), through
# a ReLU by *rectifying the signal* ($g \odot \mathbb 1[g > 0]$), through a convolution by the
# *transposed convolution* with the same filters ($C^\top$). Lesson 04 showed that this is
# backpropagation with one change, the ReLU's mask taken from the signal instead of the
# forward input: the `deconvnet` rule. Backpropagation of a seed $g_\ell$ computes
# $J^\top g_\ell$ with $J = \partial a / \partial x$ (with the rule's masks in place of the
# true ones); for the seed $a_u e_u$ that is $a_u$ times row $u$ of $J$:
#
# $$
# P(u) \;=\; a_u\, \frac{\partial a_u}{\partial x}\Big|_{\text{rule}} .
# $$
#
# Every rule is positively homogeneous (scaling $g$ by $a_u > 0$ scales what comes out), so
# the projection is the unit's gradient under the rule, scaled by how strongly it fired. With
# the `guided` rule the same seed gives guided backprop's projection (Springenberg et al.
# 2015), the one most later papers show.
#
# **Where it can be non-zero.** Unit $u$ reads only the pixels of its receptive field
# (lesson 06): every path from a pixel outside the box to $u$ has a zero weight somewhere, and
# each backward step ($P^\top$, $C^\top$, the masks) only moves signal along those same paths.
# So the projection is zero outside the box, and we can store it as a crop of the box, side by
# side with the patch.
#
# **From scratch.** The mirror network of `fashion_cnn` from `features.8` (the ReLU of the
# last convolution, 64 channels on a 14x14 map) down, in NumPy: the forward pass through
# minivis only records the pool's switches.

# %%
def unpool(g, switches, size):
    """Each value of g (N, C, h, w) put back at its switch, in zeros of spatial size ``size``."""
    n, c = g.shape[:2]
    out = np.zeros((n, c, size[0] * size[1]))
    np.put_along_axis(out, switches.reshape(n, c, -1), g.reshape(n, c, -1), axis=2)
    return out.reshape(n, c, *size)


def conv_t(g, w):
    """C^T g for a 3x3, stride-1, padding-1 convolution: correlate with the flipped, transposed kernel."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(g, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), (2, 3))
    return np.einsum("nohwab,oiab->nihw", windows, w[:, :, ::-1, ::-1])


def project_by_hand(net, x, unit):
    """Zeiler & Fergus's projection of unit (c, y, x) of features.8 for one image x (1, 1, 28, 28)."""
    f = net.features
    with mv.no_grad(), mv.nn.capture(net, "features.8") as acts:
        net(mv.tensor(x))  # the max-pool layers keep their switches
    a = acts["features.8"].numpy()
    c, y, xx = unit
    g = np.zeros_like(a)
    g[0, c, y, xx] = a[0, c, y, xx]  # keep the unit, zero the rest of the layer
    w = {i: f[i].weight.numpy() for i in (0, 2, 5, 7)}
    g = conv_t(np.maximum(g, 0), w[7])  # ReLU 8 (rectify), conv 7 (transpose)
    g = conv_t(np.maximum(g, 0), w[5])  # ReLU 6, conv 5
    g = unpool(g, f[4].switches, (28, 28))  # pool 4: unpool with the switches
    g = conv_t(np.maximum(g, 0), w[2])  # ReLU 3, conv 2
    return conv_t(np.maximum(g, 0), w[0]), a[0, c, y, xx]  # ReLU 1, conv 0


net64 = mv.models.load("fashion_cnn").double()
x0 = net64.preprocess(images[:1]).astype(np.float64)
a8 = mv.vis.activations(net64, x0[0], "features.8")  # (64, 14, 14)
unit = tuple(int(i) for i in np.unravel_index(a8.argmax(), a8.shape))  # the strongest unit of this image
by_hand, value = project_by_hand(net64, x0, unit)
ours, values = mv.vis.project_units(net64, x0, "features.8", [unit], "deconvnet")
gradient = mv.vis.deconvnet(net64, x0[0], ob.unit("features.8", *unit))  # the unit's gradient, deconvnet rule
print(f"unit {unit}: activation {value:.3f}, projection max |.| {np.abs(by_hand).max():.3f}")
np.testing.assert_allclose(ours[0], by_hand[0], rtol=1e-10, atol=1e-12 * np.abs(by_hand).max())
np.testing.assert_allclose(ours[0], value * gradient, rtol=1e-10, atol=1e-12 * np.abs(by_hand).max())
print("NumPy mirror network == mv.vis.project_units == a_u * (deconvnet-rule gradient of the unit)")

rf = mv.vis.receptive_field(net64, "features.8", (28, 28))
box = rf.box(unit[1], unit[2])
outside = np.ones((28, 28), bool)
outside[box.top:box.bottom, box.left:box.right] = False
assert np.all(ours[0, 0][outside] == 0) and np.abs(ours[0, 0][~outside]).max() > 0
print(f"receptive field {rf.size} px; the projection is zero outside the box {tuple(box)}")

# %% [markdown]
# ## 2. The top-9 activations of every channel, projected
#
# `mv.vis.project_top_activations` streams the dataset once through `top_activations`
# (lesson 07: a running top-$k$ per channel, bounded memory), then runs only the winning
# images again, a batch at a time, each row of a batch seeded at its own unit. The rows are
# independent images, so one backward pass projects a whole batch. For every channel of
# `features.8` (64 x 9 projections) over the test set:

# %%
tic = time.perf_counter()
proj = mv.vis.project_top_activations(model, images, "features.8", k=9, rules=("deconvnet", "guided"))
print(f"{len(proj.channels)} channels x 9 projections over {n_data} images in {time.perf_counter() - tic:.1f} s")

# a check of the mining against the brute force on a small slice (every activation kept and sorted)
few = mv.vis.project_top_activations(model, images[:300], "features.8", channels=[5, 17], k=3, rules="guided")
acts = mv.vis.activations(model, model.preprocess(images[:300]), "features.8")
for row, c in enumerate([5, 17]):
    flat = acts[:, c].reshape(-1)
    best = np.lexsort((np.arange(flat.size), -flat))[:3]
    assert np.array_equal(few.image_index[row], best // 196)
    assert np.array_equal(few.values[row], flat[best])
print("top-3 of two channels over 300 images == brute force")

# %% [markdown]
# The figure: for a few channels (the ones with the strongest activations), a row of their
# nine patches and, below, the DeconvNet and guided-backprop projections of the same units.
# Grey is zero, white positive, black negative; each projection is scaled on its own.
#
# **What to notice.** The patches of a channel can look varied (the arch of a bag's handle,
# the strap of a sandal, the neckline of a dress); the projections say what they have in
# common, a shape at the centre of the field: an inverted V, a dark corner below a bright edge,
# a short diagonal stroke. Everything else in the patch is drawn grey: it did not contribute.
# On this small network with max-pooling the DeconvNet and guided projections look much alike
# (lesson 04 found the same for class scores): the switches already tie the DeconvNet to the
# image. The difference shows on the next network.

# %%
order = np.argsort(-proj.values[:, 0])[:sized(6, 3)]
strong = mv.vis.project_top_activations(model, images, "features.8", channels=order, k=9, top=proj.top)
fig = mv.plot.top_projections(strong, model=model, title="fashion_cnn features.8: top-9 patches, DeconvNet and "
                              "guided projections")
savefig(fig, "17_fashion_projections")

# %% [markdown]
# ### EfficientNet-Lite0 on photo crops
#
# The same function on the pretrained EfficientNet-Lite0, with random crops of the offline
# photos as the dataset (as lesson 07: the network is fully convolutional up to its pool, so
# crops are fine inputs, normalised as the model was trained). EfficientNet has no max-pool,
# batch norm and ReLU6: the rule carries over unchanged (lesson 04), and the receptive-field
# walk handles its "same" padding.
#
# **What to notice.** The DeconvNet projections of one channel look nearly the same for every
# patch: a fixed grid pattern, the footprint of the strided convolutions, because without
# max-pool switches and with a mask that never looks at the forward pass nothing in the
# backward pass depends on the image (lesson 04 saw the same on the whole cat). Guided
# backprop keeps the forward masks and draws the patch's own edges. For networks without
# pooling, the guided projection is the one to read.

# %%
side, per_photo = sized(128, 64), sized(24, 2)
crops_u8 = np.concatenate([mv.data.random_crops(mv.data.photo(name), side, per_photo, seed=i)
                           for i, name in enumerate(mv.data.PHOTOS)])
effnet = mv.models.load("efficientnet_lite0")
mean, std = np.asarray(effnet.mean, np.float32), np.asarray(effnet.std, np.float32)
inputs = ((mv.data.to_float(crops_u8) - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
e_layer = "_blocks.3"
etop = mv.vis.top_activations(effnet, inputs, e_layer, k=6, batch_size=16, crop=False)[e_layer]
e_channels = np.argsort(-etop.patch_value[:, 0])[:sized(4, 2)]
eproj = mv.vis.project_top_activations(effnet, inputs, e_layer, channels=e_channels, k=6, top=etop, batch_size=16)
print(f"{len(inputs)} crops of {side} px; {e_layer}: field {etop.rf.size} px")
fig = mv.plot.top_projections(eproj, model=effnet, size=1.0,
                              title=f"EfficientNet-Lite0 {e_layer}: top-6 patches and their projections")
savefig(fig, "17_efficientnet_projections")

# %% [markdown]
# ## 3. The evolution of features during training
#
# Zeiler & Fergus's figure 4 follows a few units through training: at each checkpoint, the
# strongest activation of the unit over the dataset, projected. `fashion_cnn` ships its
# weights at the end of every epoch (`checkpoint=0` is the random initialisation, 1 to 4 the
# trained epochs). Each checkpoint is mined on its own, so a channel may pick a different
# top image at every epoch.

# %%
checkpoints = {("init" if e == 0 else f"epoch {e}"): mv.models.load("fashion_cnn", checkpoint=e)
               for e in mv.models.available_checkpoints()}
evolution = {}
for layer, count in (("features.3", sized(12, 6)), ("features.8", sized(12, 6))):
    evolution[layer] = mv.vis.projections_over_training(checkpoints, images[:sized(n_data, 300)], layer,
                                                        channels=range(count), rules="guided")
    fig = mv.plot.projections_over_training(evolution[layer], rule="guided",
                                            title=f"{layer}: each channel's strongest activation, projected")
    savefig(fig, f"17_evolution_{layer.replace('.', '_')}")
    stays = [np.mean(evolution[layer][a].image_index[:, 0] == evolution[layer][b].image_index[:, 0])
             for a, b in zip(list(checkpoints)[1:], list(checkpoints)[2:], strict=False)]
    print(f"{layer}: fraction of channels whose top image stays the same between trained epochs:", np.round(stays, 2))

# %% [markdown]
# **What to notice.** At initialisation the projections are noise spread over the whole
# field: a random unit responds a little to everything. After one epoch the early channels
# (`features.3`, a 5x5 field) already show the oriented strokes they keep to the end;
# the deeper ones (`features.8`) settle later and keep changing their top image, as Zeiler &
# Fergus saw for their upper layers ("only develop after a considerable number of epochs").
#
# ### Activations become sparse and localised
#
# The notes add that ReLU activations "start out looking relatively blobby and dense" and
# become "more sparse and localized" as training goes on. Two numbers per layer over the
# dataset (`mv.vis.activation_sparsity`): the fraction of activations that are zero
# (*sparse*), and the Hoyer sparsity of each channel's map,
# $H(m) = (\sqrt n - \|m\|_1 / \|m\|_2) / (\sqrt n - 1)$, which is 1 for a map with a single
# active position and 0 for a flat one (*localised*).

# %%
layers = ["features.1", "features.3", "features.6", "features.8", "classifier.1"]
sparsity = {label: mv.vis.activation_sparsity(net, images[:sized(4000, 300)], layers)
            for label, net in checkpoints.items()}
zeros = np.array([[sparsity[label][layer].zero_overall for layer in layers] for label in checkpoints])
hoyer = np.array([[np.nanmean(sparsity[label][layer].hoyer) for layer in layers[:4]] for label in checkpoints])
print("zero fraction (rows: checkpoints, columns:", layers, ")\n", zeros)
print("mean Hoyer sparsity of the maps (conv layers)\n", hoyer)
assert zeros[-1, 3] > zeros[0, 3] + 0.1 and zeros[-1, 4] > zeros[0, 4] + 0.1  # deep layers: much sparser
assert hoyer[-1, 3] > hoyer[0, 3] + 0.1  # and more localised
assert zeros[-1, 0] < zeros[0, 0]  # ... while the first layer becomes denser

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for j, layer in enumerate(layers):
    axes[0].plot(range(len(checkpoints)), zeros[:, j], "o-", label=layer)
for j, layer in enumerate(layers[:4]):
    axes[1].plot(range(len(checkpoints)), hoyer[:, j], "o-", label=layer)
for ax, what in zip(axes, ("fraction of zero activations", "Hoyer sparsity of the maps"), strict=True):
    ax.set_xticks(range(len(checkpoints)), list(checkpoints), fontsize=7)
    ax.set_ylabel(what)
axes[0].legend(fontsize=7)
savefig(fig, "17_sparsity_over_training")

# %% [markdown]
# **What to notice.** The statement holds for the *deep* layers: at `features.8` and the
# hidden layer the share of zeros grows from about one half at initialisation to three
# quarters or more, and the maps concentrate on fewer positions. The first layer goes the
# other way and becomes denser: its filters turn into edge and blob detectors that fire on
# most of a garment. "Sparse and localised" is a property of the units that have become
# selective, not of every layer.

# %% [markdown]
# ## 4. Any attribution method, aimed at a unit
#
# The projection is one answer to "which pixels made this unit fire". Every attribution
# method of lessons 03-05 answers it too, once its target is the unit instead of a class
# logit: the objectives of the synthesis family (`ob.unit`, `ob.channel`, `ob.direction`) are
# accepted as `target` everywhere, and the forward pass stops at the unit's layer. For the
# strongest unit of the first channel above, in its top image:

# %%
c0 = int(strong.channels[0])
n0, (y0, xx0) = int(strong.image_index[0, 0]), strong.location[0, 0]
target = ob.unit("features.8", c0, int(y0), int(xx0))
x_top = model.preprocess(images[n0])[0]
maps = {"saliency": mv.vis.saliency(model, x_top, target),
        "guided backprop": mv.vis.guided_backprop(model, x_top, target),
        "Grad-CAM at features.2": mv.vis.grad_cam(model, x_top, target, layer="features.2"),
        "occlusion (unit value)": mv.vis.occlusion_map(mv.vis.occlusion(model, x_top, target, patch=4, stride=2),
                                                       28, 4, 2)}
projection = mv.vis.project_units(model, x_top[None], "features.8", [[c0, int(y0), int(xx0)]], "guided")[0][0]
np.testing.assert_allclose(projection, strong.values[0, 0] * maps["guided backprop"], rtol=1e-4,
                           atol=1e-5 * np.abs(projection).max())
fig = mv.plot.show_attributions(images[n0] / 255.0, maps, title=f"unit ({c0}, {y0}, {xx0}) of features.8 in test "
                                f"image {n0} ({names[labels[n0]]})")
savefig(fig, "17_attribution_at_a_unit")

# %% [markdown]
# **What to notice.** Saliency and guided backprop are confined to the unit's receptive field
# (the 14x14 box around the hole of the sandal here): nothing outside it reaches the unit.
# Grad-CAM is not: it weights *whole channels* of `features.2` by their average gradient, so
# wherever those channels fire (the sole, the outline) it lights up, even out of the unit's
# reach; at a unit it is a statement about channels, not pixels. Occlusion reports the unit's
# own value (a unit has no probability): it drops where the grey square hides what the unit
# detects, and it can also rise where a square *creates* an edge the unit likes.
#
# ## 5. Units or directions?
#
# A unit is one coordinate of the layer's code. Szegedy et al. asked whether that coordinate
# is special: they ranked images along random directions $v$ of the code instead,
# $s_v(n) = \langle v, a_n \rangle$, and found sets of top images just as coherent. We do the
# same at the 128-unit hidden layer `classifier.1`, and measure coherence by the label purity
# of the nine top images (the share of the most common class).

# %%
count = sized(32, 16)
hidden = mv.vis.activations(model, model.preprocess(images[:2]), "classifier.1").shape[1]
rankings = {"unit axes": mv.vis.top_images_along(model, images, "classifier.1", np.eye(hidden)[:count], k=9),
            "random directions": mv.vis.top_images_along(model, images, "classifier.1",
                                                         mv.vis.random_directions(hidden, count, seed=0), k=9)}
purity = {kind: np.array([np.bincount(labels[row], minlength=10).max() / 9 for row in r.image_index])
          for kind, r in rankings.items()}
for kind, p in purity.items():
    print(f"{kind:17s}: mean label purity of the top-9 images {p.mean():.2f}")
assert purity["random directions"].mean() > 0.8 * purity["unit axes"].mean()

fig, axes = plt.subplots(8, 9, figsize=(6.2, 5.8))
for block, kind in enumerate(rankings):
    for r in range(4):
        for j in range(9):
            ax = axes[block * 4 + r, j]
            ax.imshow(images[rankings[kind].image_index[r, j]], cmap="gray")
            ax.axis("off")
        axes[block * 4 + r, 0].set_title(f"{kind} {r}", fontsize=6, loc="left")
savefig(fig, "17_units_versus_directions")

# %% [markdown]
# **What to notice.** The rows along random directions are as coherent as the rows along
# units (here even purer, because a random direction mixes many units that fire for the same
# class). Nothing in the network prefers the axes: the next layer reads the code through a
# matrix, and any rotation of the code could be absorbed into that matrix. Reading single
# units is a convenient way to slice the space, not a discovery of where the meaning lives.
#
# ## Summary
#
# - A projection keeps one activation, zeroes the rest of the layer and sends it down the
#   DeconvNet; it equals $a_u$ times the unit's gradient under the `deconvnet` rule (checked
#   against a NumPy mirror network), with guided backprop as the cleaner variant, and it is
#   zero outside the unit's receptive field.
# - `mv.vis.project_top_activations` mines the top-$k$ of every channel in one streamed pass
#   and projects only the winners; for 64 channels x 9 over 10,000 images it takes seconds
#   (`benchmarks/projections.py`).
# - Over training the early channels settle first; deep activations become much sparser and
#   more localised, the first layer does not.
# - Every attribution method accepts a unit, channel or direction as its target; and the
#   unit axes are no more meaningful than random directions of the same code.
#
# ## Exercises
#
# 1. Project the top activations of `features.3` and of `classifier.1` (whose field is the
#    whole image). How does the size of what the projection draws grow with depth?
# 2. Seed the projection with $+1$ instead of $a_u$, and with a whole channel map instead of
#    one unit (`ob.channel`). Which pictures change, and which only change scale? Why?
# 3. Repeat section 5 with `features.8` and `score="mean"` (`top_images_along`). Are random
#    directions still as pure? Try directions restricted to the positive orthant (all
#    $v_c \ge 0$): what changes, and what does that say about ReLU codes?

# %%
print(f"lesson 17 took {time.time() - start:.1f} s")
