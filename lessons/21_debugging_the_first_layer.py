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
# # Lesson 21: debugging a network by looking at its first layer
#
# **The question.** Can visualisation find a design mistake? Zeiler & Fergus ("Visualizing and
# Understanding Convolutional Networks", ECCV 2014, section 4.1) looked at the first two layers
# of Krizhevsky et al.'s AlexNet and saw two problems: the first-layer filters were "a mix of
# extremely high and low frequency information, with little coverage of the mid frequencies",
# and the second layer showed *aliasing* artifacts "caused by the large stride 4 used in the 1st
# layer convolutions". In the notes' words, the first layer's "stride 4 changed to stride 2"
# (and the filters from 11x11 to 7x7), and the network got better. This lesson replays that
# story in miniature on Fashion-MNIST: two small networks that differ *only* in the first
# layer's kernel and stride, trained the same way, compared by their filters, their spectra,
# their sensitivity to one-pixel shifts, their dead filters and their accuracy.
#
# Plan: (1) why a strided convolution aliases: subsampling and the Nyquist frequency, checked
# in NumPy; (2) the two networks and their training; (3) what the first layers look like and
# what the measurements say.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis import nn

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. A strided convolution is a dense one, subsampled
#
# A convolution with stride $s$ computes the stride-1 output $y = w \star x$ and keeps every
# $s$-th value: $y_s[i] = y[s i]$. Subsampling keeps only frequencies below the new Nyquist
# frequency $1/(2s)$ cycles per pixel; any energy of $y$ above it *folds back*: a cosine of
# frequency $f$ sampled every $s$ pixels is indistinguishable from one of frequency
# $\lvert f - k/s \rvert$ for the integer $k$ that brings it below $1/(2s)$, because
# $\cos(2\pi f s i) = \cos(2\pi (f - k/s) s i)$ for every integer $i$. So a first-layer filter
# with a lot of energy above $1/(2s)$ produces feature maps in which fine texture shows up as
# coarse, wrong patterns: aliasing. It also makes the map jump when the image moves by one
# pixel, since which of the $s$ phases is kept changes. With stride 4 the limit is 1/8 cycle
# per pixel, a period of 8 pixels; with stride 2 it is 1/4.
#
# Both facts in NumPy: the strided convolution of minivis equals the dense one subsampled, and
# a frequency above the limit is sampled exactly like its alias.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 1, 28, 28))
w = rng.standard_normal((3, 1, 9, 9))
dense = mv.F.conv2d(mv.tensor(x), mv.tensor(w), padding=4).numpy()
strided = mv.F.conv2d(mv.tensor(x), mv.tensor(w), stride=4, padding=4).numpy()
np.testing.assert_allclose(strided, dense[:, :, ::4, ::4], rtol=1e-12, atol=1e-12)

s, f = 4, 0.3                                          # 0.3 cycles/pixel, far above 1/(2s) = 0.125
alias = abs(f - round(f * s) / s)                      # 0.05 cycles/pixel
i = np.arange(20)
np.testing.assert_allclose(np.cos(2 * np.pi * f * s * i), np.cos(2 * np.pi * alias * s * i), atol=1e-12)
print(f"stride-4 conv == dense conv[::4, ::4]; a {f} cycles/pixel cosine sampled every {s} pixels "
      f"is a {alias:.2f} cycles/pixel one")

# %% [markdown]
# ## 2. Two networks that differ only in the first layer
#
# *Coarse* (AlexNet's choice, scaled): a 9x9 first layer with stride 4, giving 7x7 maps.
# *Fine* (Zeiler & Fergus's fix, scaled): a 5x5 first layer with stride 2, giving 14x14 maps.
# Both have 16 first-layer filters, then the same 3x3 convolution with 32 channels, an average
# pool to 7x7 and a linear classifier; same initialisation seed, same data order, same Adam
# steps. (On 28-pixel images a stride of 4 is far harsher than on AlexNet's 224-pixel ones;
# what matters is how each filter's frequencies compare with its stride.)

# %%
FIRST = {"coarse": (9, 4, 4), "fine": (5, 2, 2)}          # kernel, stride, padding


def small_net(kernel: int, stride: int, padding: int) -> nn.Sequential:
    nn.init.seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, kernel, stride=stride, padding=padding), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 10))


images, labels = mv.data.fashion_mnist("train")
test_images, test_labels = mv.data.fashion_mnist("test")
prep = mv.models.FashionCNN()                             # only for its preprocess (Fashion-MNIST's mean and std)
n_train, epochs = sized(20000, 3000), sized(2, 1)
X, Y = prep.preprocess(images[:n_train, ..., None]), labels[:n_train].astype(int)
XT, YT = prep.preprocess(test_images[:sized(5000, 1000), ..., None]), test_labels[:sized(5000, 1000)].astype(int)

nets = {}
for name, (kernel, stride, padding) in FIRST.items():
    net = small_net(kernel, stride, padding)
    optimizer = mv.optim.Adam(net.parameters(), lr=2e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        for xb, yb in mv.data.batches(X, Y, batch_size=64, shuffle=True, seed=epoch):
            loss = mv.F.cross_entropy(net(mv.tensor(xb)), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    nets[name] = net.eval()
    print(f"{name}: {kernel}x{kernel} stride {stride}, trained {epochs} epoch(s) on {n_train} images in "
          f"{time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## 3. What the first layer shows, and what it costs
#
# Four measurements per network:
#
# - **accuracy** on held-out images;
# - **shift consistency**: the fraction of test images whose predicted class stays the same
#   when the image moves by one pixel (Zhang, "Making Convolutional Networks Shift-Invariant
#   Again", ICML 2019); aliasing makes predictions jump;
# - **energy above the limit**: the fraction of each first-layer filter's spectral power above
#   its stride's Nyquist frequency $1/(2s)$, from the filter's 2-D FFT (zero-padded to 32x32);
# - **dead filters** (`mv.vis.dead_filters`): first-layer channels that never fire on the test set.

# %%
def energy_above(weights: np.ndarray, stride: int) -> np.ndarray:
    """Per filter (F, 1, k, k): the fraction of |FFT|^2 at radial frequency > 1/(2 stride)."""
    power = np.abs(np.fft.fft2(weights[:, 0], s=(32, 32))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")
    above = np.sqrt(fx ** 2 + fy ** 2) > 1 / (2 * stride)
    return (power * above).sum(axis=(1, 2)) / power.sum(axis=(1, 2))


def radial_spectrum(weights: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Mean normalised power of the filters per radial-frequency bin."""
    power = np.abs(np.fft.fft2(weights[:, 0], s=(32, 32))) ** 2
    power /= power.sum(axis=(1, 2), keepdims=True)
    fy, fx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")
    radius = np.sqrt(fx ** 2 + fy ** 2)
    edges = zip(bins[:-1], bins[1:], strict=True)
    return np.array([power[:, (radius >= lo) & (radius < hi)].sum(axis=1).mean() for lo, hi in edges])


rows = {}
for name, net in nets.items():
    kernel, stride, _ = FIRST[name]
    with mv.no_grad():
        plain = net(mv.tensor(XT)).numpy().argmax(axis=1)
        shifted = [net(mv.tensor(np.roll(XT, 1, axis=axis))).numpy().argmax(axis=1) for axis in (2, 3)]
    weights = net[0].weight.numpy()
    report = mv.vis.dead_filters(net, XT, "1")
    rows[name] = {"accuracy": np.mean(plain == YT), "shift": np.mean([np.mean(plain == s) for s in shifted]),
                  "above": energy_above(weights, stride).mean(), "dead": len(report.dead()), "weights": weights}
print("| first layer | accuracy | same class after a 1-pixel shift | filter energy above 1/(2s) | dead filters |")
print("|:---|---:|---:|---:|---:|")
for name, r in rows.items():
    kernel, stride, _ = FIRST[name]
    print(f"| {name}: {kernel}x{kernel}, stride {stride} | {r['accuracy']:.3f} | {r['shift']:.3f} | "
          f"{r['above']:.2f} | {r['dead']} |")
assert min(r["accuracy"] for r in rows.values()) > 0.6, "both networks learn"

# %%
fig = plt.figure(figsize=(12, 4.2))
grid = fig.add_gridspec(2, 3, width_ratios=[1.2, 1.2, 1.4])
for col, (name, r) in enumerate(rows.items()):
    kernel, stride, _ = FIRST[name]
    ax = fig.add_subplot(grid[:, col])
    w = r["weights"][:, 0]
    w = (w - w.min(axis=(1, 2), keepdims=True)) / np.ptp(w, axis=(1, 2), keepdims=True)
    mosaic = np.ones((4 * (kernel + 1) - 1, 4 * (kernel + 1) - 1))
    for k in range(16):
        a, b = divmod(k, 4)
        mosaic[a * (kernel + 1):a * (kernel + 1) + kernel, b * (kernel + 1):b * (kernel + 1) + kernel] = w[k]
    ax.imshow(mosaic, cmap="gray", interpolation="nearest")
    ax.set_title(f"{name}: {kernel}x{kernel} stride {stride}\naccuracy {r['accuracy']:.3f}, "
                 f"shift-consistent {r['shift']:.3f}", fontsize=9)
    ax.axis("off")
ax = fig.add_subplot(grid[:, 2])
bins = np.linspace(0, 0.71, 15)
for name, r in rows.items():
    stride = FIRST[name][1]
    line, = ax.plot((bins[1:] + bins[:-1]) / 2, radial_spectrum(r["weights"], bins), marker="o", label=name)
    ax.axvline(1 / (2 * stride), color=line.get_color(), ls="--", lw=1)
ax.set_xlabel("radial frequency (cycles / pixel); dashed: 1/(2 stride)")
ax.set_ylabel("share of filter power")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.suptitle("the first layer of two networks that differ only in its kernel and stride", y=1.03)
fig.tight_layout()
savefig(fig, "21_first_layer_stride")

# %% [markdown]
# **What to notice.** (The numbers quoted are from the full run; the fast run trains far less,
# and its filters are still mostly their random initialisation.)
#
# - Training moves the coarse network's spectrum towards low frequencies (its 9x9 filters have
#   room for smooth blobs), but relative to its own limit it still keeps most of its power where
#   stride 4 cannot represent it: about 80% above 1/8 cycle per pixel, against about 65% above
#   1/4 for the fine network. Whatever those filters pick up is folded into false, coarser
#   patterns in the 7x7 maps. Both spectra keep a high-frequency bump that is left over from
#   the random initialisation; two short epochs do not smooth it away.
# - The coarse network's predictions change more often when the image moves by one pixel
#   (about 89% against 90% of test images keep their class): the measurable face of aliasing.
#   The fine network is not shift-invariant either; stride 2 aliases too, only less.
# - The accuracy gap is small in this miniature, under a point, in the direction Zeiler &
#   Fergus found. Fashion-MNIST's garments are large, smooth shapes whose class rarely depends
#   on fine texture, so aliasing has less to destroy than in ImageNet photos.
# - Neither network has dead first-layer filters. AlexNet's came with its training (a large
#   learning rate on unnormalised filters; Zeiler & Fergus renormalised any filter whose RMS
#   exceeded a fixed radius), which a small Adam run does not reproduce: a miniature shows the
#   mechanism, not every symptom.

# %% [markdown]
# ## 4. Summary
#
# - A strided convolution is a dense convolution followed by subsampling; filter energy above
#   the stride's Nyquist frequency $1/(2s)$ aliases into false coarse patterns and makes the
#   maps, and the predictions, jump under one-pixel shifts.
# - Zeiler & Fergus saw this in AlexNet's first two layers by *looking* at them, and fixed it
#   with a smaller kernel and stride (11x11/4 to 7x7/2); in miniature the fix makes the network
#   more shift-consistent and a little more accurate.
# - Tools: `mv.F.conv2d(stride=...)`, `mv.vis.dead_filters`, the filters themselves
#   (`net[0].weight`), NumPy's FFT.
#
# ## Exercises
#
# 1. **Blur before subsampling.** Replace the coarse network's first layer by the same 9x9
#    convolution with stride 1, followed by a 4x4 average pool with stride 4 (a low-pass filter
#    before subsampling, Zhang 2019's "anti-aliasing"). Retrain and compare the shift
#    consistency and the accuracy.
# 2. **Dead filters on purpose.** Train the coarse network with SGD and a learning rate of 0.1
#    and count the dead filters after each epoch. Does renormalising large filters (Zeiler &
#    Fergus's fix) after every step keep them alive?
# 3. **Second-layer picture.** Show the second layer's top-activating test patches
#    (`mv.vis.top_activations`) for both networks. Can you see the aliasing Zeiler & Fergus saw
#    in AlexNet's second layer?
