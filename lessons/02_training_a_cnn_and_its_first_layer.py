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
# # Lesson 02: training a CNN and watching its first layer
#
# **The question.** What does a convolutional network learn in its first layer, and how does
# that change while it trains? The first layer is the one place where a filter lives in the same
# space as the image: a 3x3 filter of a grey-scale network *is* a tiny 3x3 picture, and its
# response at a position is the inner product of that picture with the image patch there
# (template matching). So we can simply look at it. The CS231n course notes ("Visualizing what
# ConvNets learn") point out two practical uses: well-trained networks have smooth, structured
# filters (noisy ones suggest too little training or regularisation), and a unit whose
# activation map is zero for every input is *dead*, often a sign of a learning rate that was
# too high. Zeiler & Fergus (ECCV 2014, section 4.2, figure 4) also followed features through
# training, but not by drawing the weights: at each epoch they took every unit's strongest
# activation over the training set and projected it to the pixels with their DeconvNet. Drawing
# the filters, as here, works only for the first layer; their projections work at any depth and
# are built in lesson 17.
#
# Plan: (1) derive the gradient of the loss with respect to a first-layer filter and check it
# from scratch against the engine; (2) train `fashion_cnn` for a short while with minivis and see
# the loss fall; (3) look at the first-layer filters across the checkpoints that ship with
# minivis (saved after every epoch of `minivis train fashion_cnn`); (4) look at activation
# maps; (5) count dead filters, in the shipped network and in the short run of step (2).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
import minivis.functional as F

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The gradient of a first-layer filter
#
# Write the first layer for one input channel (Fashion-MNIST is grey) as
# $z_{c}(i, j) = b_c + \sum_{a,b} w_{c}(a, b)\, x(i + a - p, j + b - p)$, and let
# $g_c(i, j) = \partial L / \partial z_c(i, j)$ be the error signal that backpropagation brings
# down to the layer. By the chain rule, each weight collects the error at every position it was
# used, times the pixel it touched there:
#
# $$
# \frac{\partial L}{\partial w_c(a, b)} \;=\; \sum_{n} \sum_{i,j} g_{n,c}(i, j)\; x_n(i + a - p,\, j + b - p).
# $$
#
# That is a correlation of the *input* with the *error*: if we collect every image patch as a
# row of a matrix $P$ (im2col), it is the matrix product $g^\top P$. A filter therefore moves
# towards the patches where the loss wants its response larger, which is why trained filters
# come to look like the patches they detect (edges, blobs, stripes).
#
# Check it from scratch: run the network, start the backward pass at the first conv layer's
# output with its own gradient, and compare the engine's `weight.grad` with the formula.

# %%
mv.nn.init.seed(0)
net = mv.models.FashionCNN().double()
images, labels = mv.data.fashion_mnist("train")
x = net.preprocess(images[:8, :, :, None]).astype(np.float64)
y = np.array(labels[:8])

with mv.nn.capture(net, "features.0", retain_grad=True) as acts:
    loss = F.cross_entropy(net(mv.tensor(x)), y)
loss.backward()
g = acts["features.0"].grad  # dL/dz for the first conv layer, shape (N, 32, 28, 28)

# from scratch: zero-pad, take every 3x3 patch (im2col), correlate with the error
padded = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # (N, 28, 28, 3, 3)
grad_w = np.einsum("ncij,nijab->cab", g, patches)[:, None]  # (32, 1, 3, 3)
grad_b = g.sum(axis=(0, 2, 3))

np.testing.assert_allclose(net.features[0].weight.grad, grad_w, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(net.features[0].bias.grad, grad_b, rtol=1e-10, atol=1e-12)
print("first-layer weight and bias gradients match the correlation formula")

# %% [markdown]
# ## 2. Training, briefly
#
# `minivis train fashion_cnn` runs mini-batch Adam on the cross-entropy, with the learning rate cut
# tenfold for the last epoch (see `minivis/train.py`). Here is the same loop in a dozen lines, for a
# few hundred steps, with the plainer optimizer, SGD with Nesterov momentum: the update for every
# parameter $\theta$ is $v \leftarrow \mu v + (\nabla_\theta L + \lambda\theta)$,
# $\theta \leftarrow \theta - \eta\,(\nabla_\theta L + \lambda\theta + \mu v)$. Swapping in
# `mv.optim.Adam(model.parameters(), lr=1e-3)` changes nothing else in the loop.

# %%
mv.nn.init.seed(1)
model = mv.models.FashionCNN()
steps, batch = sized(300, 60), 64
train_x = model.preprocess(images[: steps * batch, :, :, None])
train_y = np.array(labels[: steps * batch])
optimizer = mv.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
losses = []
model.train()
for step, (xb, yb) in enumerate(mv.data.batches(train_x, train_y, batch_size=batch, shuffle=True, seed=0)):
    loss = F.cross_entropy(model(mv.tensor(xb)), yb)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if step + 1 == steps:
        break
first, last = np.mean(losses[:10]), np.mean(losses[-10:])
print(f"loss over the first 10 steps {first:.3f}, over the last 10 {last:.3f}")
assert last < 0.75 * first, "the loss should fall clearly within a few dozen steps"

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(losses, lw=0.8)
ax.set(xlabel="step", ylabel="cross-entropy", title="training fashion_cnn with minivis")
savefig(fig, "02_training_loss")

# %% [markdown]
# ## 3. First-layer filters across training
#
# The shipped checkpoints are the weights at the end of each epoch of the full training run
# (epoch 00 is the random initialisation). Each filter is shown on its own contrast scale
# (min-max per filter), because what matters is its *pattern*, not its overall size; grey is
# the filter's middle value, not zero.

# %%
checkpoints = mv.models.available_checkpoints()
assert checkpoints and checkpoints[0] == 0, "minivis ships fashion_cnn checkpoints from epoch 0"
shown = sorted({checkpoints[0], checkpoints[1], checkpoints[len(checkpoints) // 2], checkpoints[-1]})
filters = {k: mv.models.load("fashion_cnn", checkpoint=k).features[0].weight.numpy()[:, 0] for k in shown}


def contrast(w):
    """Min-max scale each filter to [0, 1] on its own."""
    low = w.min(axis=(1, 2), keepdims=True)
    high = w.max(axis=(1, 2), keepdims=True)
    return (w - low) / np.maximum(high - low, 1e-12)


fig, axes = plt.subplots(len(shown), 16, figsize=(12, 0.9 * len(shown)))
for row, k in enumerate(shown):
    for col in range(16):
        axes[row, col].imshow(contrast(filters[k])[col], cmap="gray", vmin=0, vmax=1)
        axes[row, col].axis("off")
    axes[row, 0].set_title(f"epoch {k}", fontsize=8, loc="left")
fig.suptitle("the first 16 first-layer filters of fashion_cnn, per checkpoint")
savefig(fig, "02_filters_over_training")

# How far did the filters move? Relative change of the whole first layer from one checkpoint to the next.
moves = [np.linalg.norm(filters[b] - filters[a]) / np.linalg.norm(filters[a])
         for a, b in zip(shown[:-1], shown[1:], strict=True)]
print("relative change of the first layer between the shown checkpoints:", np.round(moves, 3))
assert moves[0] > 0.05, "training changed the first-layer filters"
assert moves[0] == max(moves), "the first layer moves most in the first epoch"

# The same measure for every weight layer, from the random start to the last checkpoint.
start, end = (mv.models.load("fashion_cnn", checkpoint=k).state_dict() for k in (checkpoints[0], checkpoints[-1]))
total_move = {name: np.linalg.norm(end[name] - start[name]) / np.linalg.norm(start[name])
              for name in start if name.endswith(".weight")}
print(f"relative change from epoch {checkpoints[0]} to {checkpoints[-1]}:",
      {name.removesuffix(".weight"): round(float(v), 2) for name, v in total_move.items()})
assert min(total_move, key=total_move.get) == "features.0.weight", "the first layer moved least"
assert total_move["features.0.weight"] < 0.5 < 1 < min(total_move[f"features.{i}.weight"] for i in (2, 5, 7))

log_path = mv.models.WEIGHTS_DIR / "fashion_cnn_train_log.json"
log = json.loads(log_path.read_text())
print("test accuracy after each epoch:", [round(e["test_accuracy"], 4) for e in log["history"]])
assert log["test_accuracy"] > 0.9

# %% [markdown]
# **What to notice.** The filters barely change their look: every filter in the last row is
# still recognisably the random pattern it had at epoch 0, only slightly reshaped. The numbers
# agree: the first layer moves most in the first epoch and less after, and over the whole run
# by less than half its initial size, the least of all the layers, while the later conv layers
# move by more than their own initial size. Yet the test accuracy (last line printed) ends above
# 90%. So the rule of thumb from the introduction, "smooth filters mean a well-trained network",
# does not apply here: a 3x3 filter has only nine weights, a random one already responds to
# some edge or blob, and this network did most of its learning in the later layers. The rule
# was made for large first-layer filters such as AlexNet's 11x11.
#
# ## 4. Activation maps
#
# The first layer's output for one image is 32 maps, one per filter: each is the image
# correlated with that filter, then rectified. Edge filters light up along the garment's
# outline in their own direction.

# %%
final = mv.models.load("fashion_cnn")
img = images[0]
with mv.no_grad(), mv.nn.capture(final, ["features.1"]) as acts:
    final(mv.tensor(final.preprocess(img[:, :, None])))
maps = acts["features.1"].numpy()[0]
fig, axes = plt.subplots(4, 9, figsize=(10, 4.6))
axes[0, 0].imshow(img, cmap="gray")
axes[0, 0].set_title("input", fontsize=8)
for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if 0 < i <= 32:
        ax.imshow(maps[i - 1], cmap="viridis")
fig.suptitle("first-layer activation maps (after ReLU) of the trained fashion_cnn")
savefig(fig, "02_activation_maps")

# %% [markdown]
# ## 5. Dead filters
#
# A ReLU unit whose input is negative for every image outputs zero everywhere and gets zero
# gradient, so it never recovers: it is dead. Count them over a set of images: for each channel,
# the fraction of images whose whole activation map is zero.


# %%
def dead_fractions(model, x, layer, batch_size=500):
    """Per channel: fraction of images whose map at ``layer`` is all zero (streamed in batches)."""
    zero_counts = None
    with mv.no_grad():
        for xb in mv.data.batches(x, batch_size=batch_size):
            with mv.nn.capture(model, layer) as acts:
                model(mv.tensor(xb))
            all_zero = (acts[layer].numpy() <= 0).all(axis=(2, 3)).sum(axis=0)
            zero_counts = all_zero if zero_counts is None else zero_counts + all_zero
    return zero_counts / len(x)


test_images, _ = mv.data.fashion_mnist("test")
probe = final.preprocess(test_images[: sized(2000, 300), :, :, None])
healthy = dead_fractions(final, probe, "features.1")
print(f"trained network: {np.sum(healthy == 1.0)} of {healthy.size} first-layer channels dead")

# %% [markdown]
# Now the second conv layer, counted the same way and checked against `mv.vis.dead_filters`,
# which streams the same statistic over the dataset; and the same layer of the network that
# section 2 trained for a few hundred steps with SGD at learning rate 0.05.

# %%
healthy3 = dead_fractions(final, probe, "features.3")
report = mv.vis.dead_filters(final, probe, "features.3")
np.testing.assert_allclose(report.dead_fraction, healthy3)
print(f"trained network: {np.sum(healthy3 == 1.0)} of {healthy3.size} channels of features.3 dead")
model.eval()
sgd3 = dead_fractions(model, probe, "features.3")
print(f"section 2's SGD run: {np.sum(sgd3 == 1.0)} of {sgd3.size} channels of features.3 dead")
assert healthy.max() < 1.0 and healthy3.max() < 1.0, "the shipped network has no dead channel in either layer"
assert np.any(sgd3 == 1.0), "SGD at learning rate 0.05 kills some second-layer channels"

fig, axes = plt.subplots(1, 3, figsize=(12, 2.8), sharey=True)
axes[0].bar(range(healthy.size), healthy)
axes[0].set(title="shipped: features.1", xlabel="channel", ylabel="fraction of all-zero maps", ylim=(0, 1.05))
axes[1].bar(range(healthy3.size), healthy3)
axes[1].set(title="shipped: features.3", xlabel="channel")
axes[2].bar(range(sgd3.size), sgd3, color="tab:red")
axes[2].set(title="section 2's SGD run: features.3", xlabel="channel")
savefig(fig, "02_dead_filters")

# %% [markdown]
# **What to notice.** The shipped network (Adam at learning rate 1e-3, cut tenfold for the last
# epoch) has no dead channel in either layer: every channel fires on some test images, so the
# first two panels have no bar at 1.0. The short SGD run of section 2 (learning rate 0.05,
# Nesterov momentum, no batch norm) already has channels in its second conv layer that output
# zero for *every* test image: the red bars at 1.0. Such a unit typically dies when a large
# update pushes its input negative everywhere; from then on it gets zero gradient, so the loss
# cannot pull it back. That is wasted capacity, and it is what the CS231n notes warn about.
# (The two networks differ in optimizer, learning rate and length of training, so this does not
# say which of them is to blame: exercise 1 separates them.)
#
# ## Summary
#
# * The gradient of a first-layer filter is the correlation of the input with the error signal
#   (asserted above against the engine), so filters grow to resemble the patches they detect.
# * First-layer filters are pictures. In the shipped network they stay close to their random
#   start (the first layer moves least of all layers), so "noisy filters" is no sign of poor
#   training for 3x3 filters.
# * Dead filters are units that are zero for every input. Count them over a dataset; the shipped
#   network has none in its first two conv layers, while a short SGD run at learning rate 0.05
#   already has some.
#
# ## Exercises
#
# 1. Which matters for dead units, the optimizer or the learning rate? Rerun section 2's loop
#    with `lr=0.01`, then with `mv.optim.Adam(model.parameters(), lr=1e-3)` and with `lr=1e-2`,
#    and count the dead channels of `features.3` each time. For a full run, `minivis train
#    fashion_cnn --epochs 1 --lr 0.01 --out /tmp/hot` trains with Adam at ten times the shipped
#    rate; load it with `mv.models.load("fashion_cnn", weights="/tmp/hot/fashion_cnn.npz")`.
# 2. Replace the per-filter contrast scaling in section 3 by one common scale for all filters.
#    Which filters disappear, and what does that tell you about their norms?
# 3. Section 1 checked the weight gradient of the first layer. Derive and check the gradient of
#    the *second* conv layer's weights the same way (its input is the first block's ReLU output).
