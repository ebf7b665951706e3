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
# # Lesson 06: filters, activations and receptive fields
#
# **The question.** Before asking *why* a network made a decision, look at the network
# itself. Three views need nothing but the weights and a forward pass (the CS231n notes,
# "Visualizing what ConvNets learn"; Zeiler & Fergus, "Visualizing and Understanding
# Convolutional Networks", ECCV 2014; Yosinski et al., "Understanding Neural Networks Through
# Deep Visualization", 2015):
#
# 1. **Filters**: the weights of the first layer, drawn as pictures. Why should a weight
#    vector look like anything? Because a unit computes an inner product, and an inner
#    product is a *template match*.
# 2. **Activations**: the maps a layer produces for one image, and, over a whole dataset,
#    the maps that are *always* zero: **dead filters**.
# 3. **Receptive fields**: which pixels can reach one unit. A small arithmetic recursion gives
#    its size, step and offset exactly (Araujo, Norris & Sim, "Computing Receptive Fields of
#    Convolutional Neural Networks", Distill 2019); we check it against the gradient.
#
# The network is `fashion_cnn` (two blocks of two 3x3 convolutions and a 2x2 max-pool) on
# Fashion-MNIST; where we need filters that were certainly learned from colour photos, the
# pretrained EfficientNet-Lite0.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

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
print("fashion_cnn:", "trained weights" if trained else "NO trained weights found, using a random init "
      "(the arithmetic below holds either way; the pictures are only meaningful once trained)")

images, labels = mv.data.fashion_mnist("test")
x = model.preprocess(images[:sized(2000, 200)])  # (N, 1, 28, 28) model inputs
print(model)

# %% [markdown]
# ## 1. First-layer filters are templates
#
# A first-layer unit at one position sees a $3 \times 3$ patch $p$ of the image and computes
#
# $$ z = w \cdot p + b = \|w\|\,\|p\| \cos\theta + b . $$
#
# For patches of a fixed brightness $\|p\|$ the response depends only on the angle between
# $p$ and $w$: it is largest when $p$ points the same way as $w$, i.e. when the patch *looks
# like* the filter (Cauchy-Schwarz: $w \cdot p \le \|w\|\,\|p\|$, with equality iff
# $p \propto w$). That is template matching, and the reason the weights are worth drawing:
# the filter is a picture of the pattern the unit fires on.
#
# From scratch: every $3 \times 3$ patch of the images (zero-padded by one pixel, as the layer
# does) times every filter is one matrix product, and it must equal minivis's first-layer
# output. Then the check of the claim: for each filter, the patch with the largest
# $\cos\theta$ over the dataset is close to the filter itself, and no patch beats the bound.

# %%
conv1 = model.features[0]
w = conv1.weight.data[:, 0]                      # (32, 3, 3)
b = conv1.bias.data                              # (32,)
padded = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # (N, 28, 28, 3, 3)
z_np = np.einsum("nyxab,fab->nfyx", patches, w) + b[None, :, None, None]   # the layer, by hand

z_mv = mv.vis.activations(model, x, "features.0")
np.testing.assert_allclose(z_mv, z_np, rtol=1e-4, atol=1e-5)
print("conv1 by hand == mv.vis.activations(model, x, 'features.0'):", z_mv.shape)

flat = patches.reshape(-1, 9).astype(np.float64)
flat = flat[np.linalg.norm(flat, axis=1) > 1e-6]
w_flat = w.reshape(32, 9).astype(np.float64)
cos = (flat / np.linalg.norm(flat, axis=1, keepdims=True)) @ (w_flat / np.linalg.norm(w_flat, axis=1, keepdims=True)).T
best_cos = cos.max(axis=0)
assert (best_cos <= 1 + 1e-9).all()              # Cauchy-Schwarz
print("best cos(patch, filter) per filter:", np.round(np.sort(best_cos)[::-1][:8], 3), "...")
print(f"median best cos {np.median(best_cos):.3f} vs median cos of a random patch {np.median(np.abs(cos)):.3f}")

# %% [markdown]
# Now the same filters through minivis. Each filter is scaled on its own,
# $\tfrac12 + \tfrac12\, w / \max|w|$, so zero weight is mid-grey, positive is bright and
# negative dark, and a weak filter is as visible as a strong one (`normalize="minmax"` is the
# other common choice; it brightens but loses the fixed grey for zero).

# %%
shown = mv.vis.first_layer_filters(model)
w64 = w.astype(np.float64)  # the normalisation is computed in float64
np.testing.assert_allclose(shown, 0.5 + 0.5 * w64 / np.abs(w64).max(axis=(1, 2), keepdims=True), rtol=1e-12)
fig = mv.plot.filter_grid(shown, title="fashion_cnn conv1 filters" + ("" if trained else " (random init)"))
savefig(fig, "06_fashion_filters")

effnet = mv.models.load("efficientnet_lite0")
fig = mv.plot.filter_grid(mv.vis.first_layer_filters(effnet), title="EfficientNet-Lite0 stem filters (ImageNet)")
savefig(fig, "06_efficientnet_filters")

# %% [markdown]
# **What to notice.** The EfficientNet stem filters are learned from millions of photos:
# light-dark edges at several orientations and colour-opponent blobs (one colour
# positive, its complement negative), and, because one scale is shared by R, G and B, a grey
# filter means the unit ignores colour. With $3 \times 3$ filters the pictures are tiny; the
# $11 \times 11$ filters of AlexNet show the same structure more clearly. The `fashion_cnn`
# filters are grey (one input channel) and look like salt-and-pepper noise, and the
# filters-over-training figure below shows why: each is still close to its random
# initialisation, although the network ends above 90% test accuracy (lesson 02 measures both).
# With nine weights, a random filter already matches some edge or blob: the best patch of a
# typical filter above has a cosine near 0.9 with it. So the CS231n notes' "noisy filters mean
# an undertrained network" is a rule for large first-layer filters, not for $3 \times 3$ ones.
#
# Deeper filters have one $3 \times 3$ slice per *input channel*: there is no picture to draw
# per filter, only a grid of grey slices, much harder to read.

# %%
fig = mv.plot.filter_channels(mv.vis.filters(model, "features.2"), max_filters=8, max_channels=16,
                              title="conv2: rows = filters, columns = input channels")
savefig(fig, "06_conv2_filters")
epochs = mv.models.available_checkpoints()
if epochs:
    fig = mv.plot.filter_history(mv.vis.filters_over_training(epochs), title="conv1 filters over training")
    savefig(fig, "06_filters_over_training")
else:
    print("no fashion_cnn checkpoints shipped: skipping the filters-over-training figure")

# %% [markdown]
# ## 2. Activation maps
#
# The output of a conv layer is a volume $C \times H' \times W'$; each slice is an
# **activation map**: where in the image the channel's template matched. From scratch, the
# first block's ReLU output is `max(z, 0)` of what we computed above.

# %%
a1 = mv.vis.activations(model, x, "features.1")
np.testing.assert_array_equal(a1, np.maximum(z_mv, 0))
i = int(np.flatnonzero(labels[: len(x)] == 9)[0])  # an ankle boot
fig = mv.plot.activation_grid(a1[i], image=x[i, 0], ncols=11, size=0.9, title="features.1 (ReLU of conv1)")
savefig(fig, "06_activations_conv1")
a8 = mv.vis.activations(model, x[i], "features.8")
fig = mv.plot.activation_grid(a8[:32], ncols=11, size=0.9, title="features.8 (ReLU of conv4), first 32 of 64")
savefig(fig, "06_activations_conv4")

# %% [markdown]
# **What to notice.** First-layer maps are sharp copies of the image filtered for edges of one
# orientation or for bright/dark regions. The maps of the last conv block are $14 \times 14$,
# blobbier and sparser: each unit sees more of the image (section 3) and fires on a larger
# part. One colour scale is shared by all maps of a figure, so a dark map is a weak channel,
# not an artefact of stretching.
#
# ## 3. Dead filters
#
# A ReLU unit whose pre-activation is negative for every input outputs zero everywhere and
# receives zero gradient: once dead (often after a too-large step pushes its bias far
# negative), it never recovers. A map that is zero for *many different* inputs flags it.
# `mv.vis.dead_filters` streams a dataset in batches and reports, per channel, the fraction
# of inputs whose whole map is zero, and the mean activation; the memory is one batch.
#
# Check against a direct computation, then simulate the accident: push the bias of two conv1
# filters far negative and watch the report find them.

# %%
report = mv.vis.dead_filters(model, x, "features.1", batch_size=64)
direct = (a1.reshape(len(x), 32, -1).max(axis=2) <= 0).mean(axis=0)
np.testing.assert_array_equal(report.dead_fraction, direct)
np.testing.assert_allclose(report.mean, a1.mean(axis=(0, 2, 3)), rtol=1e-5)
print("dead on every input:", report.dead().tolist())

saved = conv1.bias.data.copy()
conv1.bias.data[[4, 20]] -= 50.0                  # the "too large learning rate" accident
broken = mv.vis.dead_filters(model, images[: len(x)], "features.1", batch_size=64)  # raw uint8 works too
conv1.bias.data[:] = saved
assert {4, 20} <= set(broken.dead().tolist())
fig = mv.plot.dead_filter_report(broken)
savefig(fig, "06_dead_filters")

# %% [markdown]
# ## 4. Receptive fields
#
# **The recursion.** Describe the units of a layer along one axis by three numbers: the
# receptive field **size** $r$ (how many input pixels one unit sees), the **jump** $j$ (how
# far apart, in input pixels, two neighbouring units' fields are) and the **start** $s$ (the
# input coordinate of the first pixel of unit 0's field). The image itself has
# $(r, j, s) = (1, 1, 0)$. A layer with kernel $k$, stride $t$, dilation $d$ and padding $p$
# makes its output unit $u$ read input units $u t - p + i d$ for $i = 0, \dots, k-1$. Those
# are $(k-1)d$ input units apart at the extremes, i.e. $(k-1) d\, j_{in}$ pixels, plus one
# input unit's own field; the first one starts at $s_{in} + (0 \cdot t - p) j_{in}$; and
# moving $u$ by one moves everything by $t$ input units. So
#
# $$
# r_{out} = r_{in} + (k-1)\, d\, j_{in}, \qquad j_{out} = j_{in}\, t, \qquad s_{out} = s_{in} - p\, j_{in} ,
# $$
#
# and unit $u$ of the layer sees input pixels $s + u j, \dots, s + u j + r - 1$. ReLU, batch
# norm and dropout act per position and change nothing; a max-pool is a window like a conv
# (it *reads* its whole window, even though only the maximum passes on).
#
# From scratch, walking `fashion_cnn`'s layers:

# %%
def receptive_fields_np(layers):
    """(r, j, s) after each layer of a list of (name, kernel, stride, dilation, padding) windows."""
    r, j, s, out = 1, 1, 0, {}
    for name, k, t, d, p in layers:
        r, j, s = r + (k - 1) * d * j, j * t, s - p * j
        out[name] = (r, j, s)
    return out


windows = [("features.0", 3, 1, 1, 1), ("features.2", 3, 1, 1, 1), ("features.4", 2, 2, 1, 0),
           ("features.5", 3, 1, 1, 1), ("features.7", 3, 1, 1, 1), ("features.9", 2, 2, 1, 0)]
print(f"{'layer':12s} {'r':>3s} {'j':>3s} {'s':>3s}")
for name, (r, j, s) in receptive_fields_np(windows).items():
    rf = mv.vis.receptive_field(model, name)
    assert rf.size == (r, r) and rf.jump == (j, j) and rf.start == (s, s), (name, rf)
    print(f"{name:12s} {r:3d} {j:3d} {s:3d}   map {rf.out_size}")

# %% [markdown]
# **The check: the gradient's support.** $\partial a_{c,y,x} / \partial \text{input}$ is
# nonzero only on pixels the unit depends on. With the trained network, zeros can also come
# from closed ReLUs, from max-pool switches (the gradient reaches only the maximum of each
# window) and from cancellations. So we build a twin of the network in which nothing can
# cancel: positive weights, positive biases, a positive image (every ReLU open), and
# average-pooling over the same windows as the max-pools. Its gradient is nonzero *exactly* on
# the receptive field, clipped at the border.

# %%
mv.nn.init.seed(1)
twin = mv.models.FashionCNN()
for idx in ("4", "9"):  # replace in place, keeping the layer order
    twin.features._modules[idx] = mv.nn.AvgPool2d(2)
for m in twin.modules():
    if isinstance(m, mv.nn.Conv2d | mv.nn.Linear):
        m.weight.data = rng.uniform(0.5, 1.0, m.weight.shape) / np.prod(m.weight.shape[1:])
        m.bias.data = np.full(m.bias.shape, 0.01)
twin.double().eval().requires_grad_(False)

probe = mv.tensor(rng.uniform(0.1, 1.0, (1, 1, 28, 28)), requires_grad=True)
supports, boxes = [], []
for layer, (y, xx) in [("features.2", (5, 20)), ("features.7", (3, 10)), ("features.9", (4, 4)),
                       ("features.9", (0, 6))]:
    probe.grad = None
    mv.nn.forward_to(twin, probe, layer)[0, 0, y, xx].backward()
    support = probe.grad[0, 0] != 0
    box = mv.vis.receptive_field_box(model, layer, y, xx)
    expected = np.zeros_like(support)
    expected[box.top:box.bottom, box.left:box.right] = True
    np.testing.assert_array_equal(support, expected)
    supports.append(support)
    boxes.append((layer, y, xx, box))
    print(f"{layer} unit ({y}, {xx}): gradient support == receptive-field box {tuple(box)}")

fig, axes = plt.subplots(1, len(supports) + 1, figsize=(2.4 * (len(supports) + 1), 2.6))
for ax, support, (layer, y, xx, box) in zip(axes[1:], supports, boxes, strict=True):
    ax.imshow(support, cmap="gray", vmin=0, vmax=1)
    ax.add_patch(plt.Rectangle((box.left - 0.5, box.top - 0.5), box.width, box.height, fill=False, ec="red"))
    ax.set_title(f"{layer} ({y},{xx})", fontsize=8)
    ax.axis("off")
axes[0].imshow(x[i, 0], cmap="gray")
for *_, box in boxes:
    axes[0].add_patch(plt.Rectangle((box.left - 0.5, box.top - 0.5), box.width, box.height, fill=False, ec="red"))
axes[0].set_title("boxes on an image", fontsize=8)
axes[0].axis("off")
fig.suptitle("white: nonzero input gradient of one unit; red: receptive_field_box", fontsize=9)
savefig(fig, "06_receptive_fields")

# %% [markdown]
# **What to notice.** The white region and the red box coincide, including the last unit
# whose field hangs over the top border (the box is clipped; the padding has no pixels). A
# unit of `features.9` sees $16 \times 16$ pixels, more than half the image's width, although every
# kernel is only $3 \times 3$: the pools double the jump, and each later $3 \times 3$ layer
# adds $2j$.
#
# The same walk handles `padding="same"` (whose split depends on the map size, so the
# input size matters), dilation, and EfficientNet's MBConv blocks (the residual add keeps the
# main path's field: the skip's field is centred inside it). At 224 pixels the later stages of
# EfficientNet-Lite0 see far more than the image:

# %%
for layer in ["_conv_stem", "_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.15"]:
    rf = mv.vis.receptive_field(effnet, layer)
    print(f"{layer:12s} size {rf.size[0]:4d}  jump {rf.jump[0]:3d}  start {rf.start[0]:5d}  map {rf.out_size}")

# %% [markdown]
# ## Summary
#
# * A unit is an inner product, so first-layer weights are templates: draw them (per-filter
#   contrast, zero at mid-grey) and you see what the unit fires on. Deeper filters act on
#   feature maps and have no such picture.
# * Activation maps show where each template matched in one image; over a dataset, a map that
#   is always zero is a dead filter (`mv.vis.dead_filters`, streamed in batches).
# * Receptive fields follow $r_{out} = r_{in} + (k-1) d\, j_{in}$, $j_{out} = j_{in} t$,
#   $s_{out} = s_{in} - p\, j_{in}$; `mv.vis.receptive_field` walks any sequential-style model,
#   and the gradient of a unit of a "nothing cancels" twin network confirms it pixel for pixel.
#
# ## Exercises
#
# 1. Add a $3 \times 3$ conv with dilation 2 right after the first max-pool of a copy of
#    `fashion_cnn`. Predict its receptive field with the recursion, then look at the
#    gradient support: why does it have holes, and what would remove them?
# 2. Train `fashion_cnn` with a learning rate ten times too large (`minivis train fashion_cnn
#    --lr ...`) and run `mv.vis.dead_filters` on every ReLU layer. Which layer loses the most
#    units?
# 3. The effective receptive field (Luo et al., NeurIPS 2016) is the *magnitude* of the
#    gradient, not its support. Plot $|\partial a / \partial x|$ of a `features.9` unit of the
#    trained network averaged over 100 images: how much of the $16 \times 16$ box matters?
