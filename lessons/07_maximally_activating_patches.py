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
# # Lesson 07: maximally activating patches
#
# **The question.** What does one unit of a hidden layer respond to? Zeiler & Fergus
# ("Visualizing and Understanding Convolutional Networks", ECCV 2014) and Girshick et al.
# ("Rich feature hierarchies for accurate object detection and semantic segmentation", CVPR
# 2014) answered by *retrieval*: run a whole dataset through the network, keep the inputs on
# which the unit is largest, and show the part of each input the unit can see, its receptive
# field (lesson 06). Nine patches per unit, side by side, and a pattern appears: a vertical
# edge, a collar, the sole of a shoe.
#
# Two things make this a small algorithm rather than a loop over a stored array:
#
# * the dataset is big (60,000 Fashion-MNIST images; the activations of four layers would take
#   about 18 GB), so we keep only what we need: **the top $k$ of every channel, in one pass**;
# * the answer must be exact and reproducible, including ties.
#
# A caveat from the CS231n notes (after Szegedy et al., "Intriguing properties of neural
# networks", 2014): a unit is one coordinate axis of the layer's representation, and there is
# nothing special about the axes; patches that maximise a random direction look just as
# "meaningful". Keep that in mind when reading the pictures (exercise 2).

# %%
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
print("fashion_cnn:", "trained weights" if trained else "NO trained weights found: random init "
      "(random conv features still prefer edges and blobs; trained ones are far clearer)")
train_images, train_labels = mv.data.fashion_mnist("train")

# %% [markdown]
# ## 1. The streaming top-$k$
#
# For one channel $c$ of a layer with activations $a_{n,c,y,x}$ we want the $k$ largest values
# over all images $n$ and positions $(y, x)$, with their locations. Number the candidates in
# dataset order, $i = (n \cdot H + y) \cdot W + x$, and order them by value, larger first, and
# by $i$, smaller first, among equal values (so ties resolve to the earlier image, then the
# earlier position: reproducible whatever the batch size).
#
# Keep, per channel, a list $T$ of the best $k$ seen so far, sorted, with $\tau$ its last
# (smallest) value. A new candidate arriving in dataset order enters $T$ iff $v > \tau$
# (strictly: on a tie, the earlier one already in $T$ wins) and is inserted in order, pushing
# out the last entry. After the last batch, $T$ is exactly the top $k$ of the whole dataset,
# because a candidate that was ever pushed out had $k$ better candidates before it.
#
# Cost: once $T$ is full, $\tau$ is the $k$-th best of everything seen, and a map whose
# **maximum** is not above $\tau$ cannot contribute at all. So each batch costs one
# vectorised `max` per map, plus a scan of the rare maps that can beat $\tau$; the expected
# number of insertions over $N$ candidates in random order is about $k \ln(N/k)$. Memory is
# $O(Ck)$ per layer, whatever $N$.
#
# The **top images** ranking is the same algorithm on one score per (image, channel), the
# map's maximum (or its mean), remembering where the maximum was.
#
# From scratch first, the brute force: store every activation of a subset, sort per channel.

# %%
n_check = sized(2000, 64)
layer = "features.8"                  # ReLU of the last conv: 64 channels of 14x14, fields of 14x14 pixels
x = model.preprocess(train_images[:n_check])
a = mv.vis.activations(model, x, layer)                      # (N, 64, 14, 14), all of it in memory
N, C, H, W = a.shape
k = 9
values = a.transpose(1, 0, 2, 3).reshape(C, -1)              # (C, N*H*W): candidate i = (n*H + y)*W + x
order = np.lexsort((np.broadcast_to(np.arange(values.shape[1]), values.shape), -values), axis=1)[:, :k]
bf_value = np.take_along_axis(values, order, axis=1)
bf_image, bf_pos = order // (H * W), order % (H * W)
print("brute force over", a.nbytes / 1e6, "MB of activations")

# %% [markdown]
# The receptive-field crop of unit $(y, x)$ starts at input pixel $s + (y, x)\, j$ and is $r$
# pixels wide (lesson 06); where it reaches past the image there are no pixels (NaN, drawn
# blank).

# %%
rf = mv.vis.receptive_field(model, layer)
r, jump, start = rf.size[0], rf.jump[0], rf.start[0]
pad = r
canvas = np.pad(x[:, 0], ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
top, left = start + (bf_pos // W) * jump + pad, start + (bf_pos % W) * jump + pad
bf_crops = np.stack([[canvas[bf_image[c, j], top[c, j]:top[c, j] + r, left[c, j]:left[c, j] + r]
                      for j in range(k)] for c in range(C)])          # (C, k, r, r)

# %% [markdown]
# Now the streaming miner on the same images, in small batches, and the check that the two
# agree exactly: same images, same positions, same values, same crops (NaN where outside).

# %%
mined = mv.vis.top_activations(model, train_images[:n_check], [layer], k=k, batch_size=25)[layer]
np.testing.assert_array_equal(mined.patch_index, bf_image)
np.testing.assert_array_equal(mined.patch_location[..., 0] * W + mined.patch_location[..., 1], bf_pos)
np.testing.assert_array_equal(mined.patch_value, bf_value)
np.testing.assert_array_equal(mined.patches[:, :, 0], bf_crops)
bf_top_images = np.lexsort((np.broadcast_to(np.arange(N), (C, N)), -a.max(axis=(2, 3)).T), axis=1)[:, :k]
np.testing.assert_array_equal(mined.image_index, bf_top_images)
print("streamed miner == brute force: patches, values, crops and top images")

# %% [markdown]
# ## 2. The whole training set
#
# One pass over the training set (60,000 images in the full run), four layers at once; only
# the top-9 lists and the final crops are kept.

# %%
n_all = sized(60_000, 128)
layers = ["features.1", "features.3", "features.6", "features.8"]
tops = mv.vis.top_activations(model, train_images[:n_all], layers, k=9, batch_size=256)
for name, t in tops.items():
    print(f"{name}: {t.patch_index.shape[0]} channels, field {t.rf.size}, crops {t.patches.shape}, "
          f"best value {t.patch_value.max():.2f}")

# %%
for name in ("features.3", "features.8"):
    t = tops[name]
    channels = np.argsort(-t.patch_value[:, 0])[:8]          # the 8 channels with the strongest responses
    fig = mv.plot.top_patches(t.patches[channels], channels=channels, values=t.patch_value[channels], model=model,
                              title=f"{name}: top-9 patches ({t.rf.size[0]}x{t.rf.size[0]} px fields)")
    savefig(fig, f"07_top_patches_{name.replace('.', '_')}")

# %% [markdown]
# **What to notice.** `features.3` units see $5 \times 5$ pixels: their patches are tiny edges,
# thin lines and corners at one orientation or contrast. `features.8` units see $14 \times 14$
# pixels, half the image: their patches are parts. On the full training set the strongest
# units pick footwear and bag parts (sandal straps, the arch of a bag's handle), and a unit's
# top images usually come from one or two classes (printed below). Blank
# borders mean the field hangs over the image edge. A unit whose nine patches are near-copies of
# one another may be firing at neighbouring positions of the same image; the "top images"
# ranking, one patch per image, rules that out. Where a unit's nine patches already come from
# nine different images, its row is the same in both figures:

# %%
t = tops["features.8"]
channels = np.argsort(-t.image_score[:, 0])[:6]
crops = mv.vis.crop_patches(model, train_images[:n_all], t, channels=channels, which="images")
fig = mv.plot.top_patches(crops, channels=channels, values=t.image_score[channels], model=model,
                          title="features.8: top-9 images (one patch each, at the map's maximum)")
savefig(fig, "07_top_images_features_8")
names = mv.data.FASHION_MNIST_CLASSES
for c in channels[:3]:
    print(f"channel {c}: classes of its top-9 images:", [names[i] for i in train_labels[t.image_index[c]]])

# %% [markdown]
# ## 3. EfficientNet-Lite0 on photo crops
#
# The same miner works for any model and layer: here the pretrained EfficientNet-Lite0 on
# random crops of the offline photos. The network is fully convolutional up to its global
# pool, so small crops are fine inputs; we pass them as model inputs (normalised the way the
# model was trained, $(\text{pixel} - 127)/128$).

# %%
side = sized(128, 64)
per_photo = sized(40, 2)
crops_u8 = np.concatenate([mv.data.random_crops(mv.data.photo(name), side, per_photo, seed=i)
                           for i, name in enumerate(mv.data.PHOTOS)])
effnet = mv.models.load("efficientnet_lite0")
inputs = ((mv.data.to_float(crops_u8) - 127 / 255) / (128 / 255)).transpose(0, 3, 1, 2).astype(np.float32)
e_layer = "_blocks.3"
etop = mv.vis.top_activations(effnet, inputs, e_layer, k=6, batch_size=16, crop=False)[e_layer]
print(f"{len(inputs)} crops of {side} px; {e_layer}: field {etop.rf.size} px, jump {etop.rf.jump}")
channels = np.argsort(-etop.patch_value[:, 0])[:6]
patches = mv.vis.crop_patches(effnet, inputs, etop, channels=channels)
fig = mv.plot.top_patches(patches, channels=channels, values=etop.patch_value[channels], model=effnet, size=1.1,
                          title=f"EfficientNet-Lite0 {e_layer}: top-6 patches over photo crops")
savefig(fig, "07_efficientnet_patches")

# %% [markdown]
# ## Summary
#
# * Maximally activating patches are a retrieval: for each unit, the $k$ (image, position)
#   pairs with the largest activation, shown through the unit's receptive field.
# * One pass, bounded memory: a sorted top-$k$ list per channel, a threshold test per map
#   (its maximum against the $k$-th best), exact ties by dataset order. `mv.vis.top_activations`
#   equals the brute force that stores and sorts everything.
# * Deeper units have larger fields and show larger, more class-specific parts; but a unit
#   is only one axis of the representation.
#
# ## Exercises
#
# 1. Rank images by the **mean** of the map instead of its maximum (`score="mean"`). Which
#    units change their top images the most, and why (think of a unit that fires on a small
#    detail versus one that fires on texture)?
# 2. (Szegedy et al. 2014) Replace a unit by a random direction $v$ in channel space: mine
#    the top patches of $\sum_c v_c\, a_{c,y,x}$ (hint: `mv.vis.activations` on batches, or a
#    1x1 conv layer appended with `mv.nn.Sequential`). Do they look less "meaningful" than a
#    real unit's?
# 3. Measure the mining overhead: time `top_activations` against a plain forward pass over
#    the same images (`benchmarks/mining.py` does this for the full training set).
