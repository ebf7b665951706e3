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
# # Lesson 16: fast style transfer, and one network for many styles
#
# **The question.** Lesson 15's style transfer solves an optimisation for every photo: hundreds
# of forward and backward passes through a large network. Can we pay that price once, in
# training, and then stylise any photo with a single forward pass?
#
# Johnson, Alahi & Fei-Fei ("Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
# ECCV 2016) train an *image transformation network* $f_W$ to minimise lesson 15's loss, averaged
# over a set of photos: the **perceptual loss**, measured by a fixed, pretrained *loss network*.
# Dumoulin, Shlens & Kudlur ("A Learned Representation for Artistic Style", ICLR 2017) then
# noticed that networks trained for different styles can share everything except the scale and
# shift of their normalisation layers: **conditional instance norm** gives one network many
# styles, and blending the scales and shifts blends the styles.
#
# Plan: (1) the perceptual loss and what is trained; (2) the transformation network and the
# checkerboard artefacts of transposed convolutions, from scratch; (3) training it with
# `minivis train style`, and the shipped networks on photos they never saw; (4) conditional
# instance norm from scratch, one network for four styles, and style interpolation; (5) summary.

# %%
import json
import tempfile
import time

import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.models.style_nets import ConditionalInstanceNorm2d, TransformNet
from minivis.train_style import EVAL_PHOTOS, TRAIN_PHOTOS, train_style

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The perceptual loss
#
# With $\phi$ the loss network (here EfficientNet-Lite0, the pretrained network that ships
# offline; Johnson et al. used VGG-16), $y = f_W(x)$ the stylised photo, and lesson 15's terms
# computed in $\phi$'s feature space,
#
# $$
# \min_W \; \mathbb{E}_{x \sim \text{photos}} \Big[ \alpha\, L_c\big(\phi(f_W(x)), \phi(x)\big)
#   + \beta\, L_s\big(\phi(f_W(x)), A\big) + \tau\, TV(f_W(x)) \Big].
# $$
#
# Two differences from lesson 15. The *content target is the input itself*: the network must
# keep each photo's layout, whatever photo it gets. And the variable is $W$, not the pixels:
# the gradient $\partial L / \partial y$ is exactly lesson 15's, and the backward pass simply
# continues from $y$ into the transformation network's weights (the loss network is frozen).
# Training is ordinary mini-batch Adam on random crops of photos.

# %% [markdown]
# ## 2. The transformation network, and checkerboards
#
# Johnson's network: a 9x9 convolution, two stride-2 convolutions down to 1/4 resolution, a few
# residual blocks, two upsampling steps back, a 9x9 convolution to RGB; instance norm and ReLU
# after every convolution but the last, and reflection padding so that the borders look like the
# rest. minivis makes one change: the network outputs a correction to the photo,
# $\sigma(\mathrm{logit}(x) + f(x))$, with the last convolution starting at zero. Training then
# starts from the identity (the plain network must first learn to reproduce the photo at all,
# which took more steps than fit in a few minutes on two CPU cores), and the sigmoid keeps every
# pixel inside $[0, 1]$, as Johnson's scaled tanh does. The first networks minivis shipped
# used $x + f(x)$, unbounded: they learned to lower the style loss with pixels far outside
# $[0, 1]$, which clipping for display threw away, leaving saturated rainbow blobs and a style
# loss, measured on the displayed image, barely below the photo's own.
# Upsampling by a stride-2 **transposed convolution** scatters each input pixel's 3x3 kernel
# onto the output, two pixels apart: the footprints overlap on every other row and column. On a
# constant input the output is therefore a checkerboard of overlap counts, before any training
# (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
# **Resize-convolution** (nearest-neighbour upsampling, then an ordinary convolution) has no
# uneven overlap. In NumPy, counting the footprints:

# %%
n = 6
counts = np.zeros((2 * n + 1, 2 * n + 1))
for i in range(n):
    for j in range(n):
        counts[2 * i:2 * i + 3, 2 * j:2 * j + 3] += 1          # input pixel (i, j) scatters a 3x3 footprint
counts = counts[1:2 * n + 1, 1:2 * n + 1]                        # padding=1, output_padding=1: the 2n x 2n window
ones = mv.tensor(np.ones((1, 1, n, n)))
transposed = mv.F.conv_transpose2d(ones, np.ones((1, 1, 3, 3)), stride=2, padding=1, output_padding=1).numpy()[0, 0]
resized = mv.F.conv2d(mv.F.interpolate(ones, scale_factor=2), np.ones((1, 1, 3, 3)), padding=1).numpy()[0, 0]
assert np.array_equal(transposed, counts)
print("transposed convolution of ones (interior):\n", transposed[2:6, 2:6])
print("resize + convolution of ones (interior):\n", resized[2:6, 2:6])
assert len(np.unique(transposed[1:-1, 1:-1])) > 1 and len(np.unique(resized[1:-1, 1:-1])) == 1

net = TransformNet(channels=16, blocks=3, upsample="transpose")
print(f"TransformNet(16 channels, 3 residual blocks): {sum(p.size for p in net.parameters()):,} parameters")

# %% [markdown]
# The interior of the transposed result alternates 1, 2, 4 (how many footprints cover each
# pixel); the resize-convolution is 9 everywhere. A trained network can learn weights that
# cancel the pattern, but it starts from it and often keeps traces, which is why later work
# prefers resize-convolution. minivis offers both (`upsample="transpose"` or `"resize"`); the
# shipped networks use transposed convolutions, because on 2 CPU cores they train several times
# faster here (the convolution after a nearest-neighbour resize runs at full resolution).

# %% [markdown]
# ## 3. Training, and the shipped networks
#
# The shipped networks were trained by
# `minivis train style --style waves --steps 3000 --crop 96 --lr 4e-3 --lr-schedule cosine --style-weight 50`
# on random 96x96 crops (with flips) of six offline photos, with $\alpha = 1$, $\beta = 50$,
# $\tau = 10$, Adam whose step falls from $4\cdot10^{-3}$ to 0 along a cosine, batches of 4:
# about fifteen minutes on one core (`mosaic`: `--steps 6000`, 24 minutes on two). Naming several styles
# (`--style mosaic waves immunohistochemistry stripes --steps 4000`) trains one
# conditional-instance-norm network for all of them (section 4). The log next to the weights
# records every setting, the loss every 20 steps, the wall time, and the losses on two photos
# kept out of training. Here is the same loop for a few steps, to see it run:

# %%
start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    log = train_style(folder, ["waves"], steps=sized(20, 2), batch_size=2, crop=32, checkpoint_every=0,
                      progress=False)
print(f"{log['steps']} steps in {time.perf_counter() - start:.1f} s, loss {log['history'][-1]['loss']:.3f}")

# %% [markdown]
# The shipped networks, and their training curves (from their logs). They are evaluated on
# photos that were **not** in the training set.

# %%
print("trained on", TRAIN_PHOTOS, "- evaluated on", EVAL_PHOTOS)
styles = mv.models.shipped_styles()
side = sized(256, 96)
photos = [mv.data.resize_shorter_side(mv.data.photo(name), side) for name in EVAL_PHOTOS]
panels, titles = [], []
for p, name in zip(photos, EVAL_PHOTOS, strict=True):
    panels.append(p)
    titles.append(f"{name} (unseen)")
    for style in styles:
        net = mv.models.load("fast_style", style=style)
        start = time.perf_counter()
        panels.append(mv.vis.stylize(net, p))
        titles.append(f"{style}: {1e3 * (time.perf_counter() - start):.0f} ms")
fig = mv.plot.image_grid(panels, titles=titles, ncols=len(styles) + 1, size=2.6,
                         suptitle="feed-forward style transfer: one forward pass per photo")
savefig(fig, "16_fast_style")
for style in styles:
    history = json.loads((mv.models.WEIGHTS_DIR / f"fast_style_{style}_train_log.json").read_text())["history"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], "training lowered the perceptual loss"

# %% [markdown]
# **What to notice.** Each photo is stylised in a fraction of a second, against many seconds for
# lesson 15's optimisation (`benchmarks/style.py` measures both on the same objective: about 60 ms
# against 11 s for L-BFGS to reach the network's style loss on an unseen 256 px photo). The price is
# generality and, here, polish: these small networks (16 base channels, three residual blocks,
# fifteen to twenty-five minutes on 96-pixel crops of six photos) repaint the photo with the
# style's palette and strokes (the mosaic's dark-edged cells, the waves' swirls) but also leave
# saturated blobs where the sigmoid output runs into 0 or 1, and the checkerboard texture of
# section 2. Their style losses on the held-out photos (in the logs: 0.06-0.20) are those that
# the optimisation needs 30-50 L-BFGS steps to reach, while it keeps more of the content: a
# network trades content for style more crudely than an optimisation of each photo can. Johnson
# et al. trained for hours on 80,000 COCO images; exercise 2 shows what more steps buy.

# %% [markdown]
# ## 4. One network, many styles
#
# Dumoulin et al. replace every instance norm by a **conditional** one: the normalised
# activation $\hat z$ is scaled and shifted by the parameters of style $s$,
#
# $$
# y = \gamma_s \odot \hat z + \beta_s, \qquad \hat z = \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \epsilon}}
# \ \text{(per image and channel)},
# $$
#
# with $\gamma, \beta$ tables of shape (styles, channels). All the convolutions are shared; a
# style is just its rows of the tables (a few hundred numbers per style, printed below, against
# a quarter of a million shared weights). Training draws a style per image, and only that
# style's rows receive its gradient.
# Because a style is a point in $(\gamma, \beta)$ space, mixing two of them,
# $\gamma = (1 - t)\gamma_a + t \gamma_b$ (and $\beta$ alike), renders styles in between, with no
# training at all. From scratch:

# %%
x = rng.standard_normal((1, 4, 5, 5))
gamma, beta = rng.uniform(0.5, 2, (3, 4)), rng.standard_normal((3, 4))
zhat = (x - x.mean(axis=(2, 3), keepdims=True)) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + 1e-5)
mix = np.array([0.3, 0.0, 0.7])
ours_numpy = zhat * (mix @ gamma)[None, :, None, None] + (mix @ beta)[None, :, None, None]
layer = ConditionalInstanceNorm2d(4, 3).double()
layer.load_state_dict({"weight": gamma, "bias": beta})
assert np.allclose(layer(mv.tensor(x), mix).numpy(), ours_numpy, rtol=1e-10)
assert np.allclose(layer(mv.tensor(x), 2).numpy(), zhat * gamma[2, :, None, None] + beta[2, :, None, None])
print("conditional instance norm and its mixtures: NumPy == minivis")

multi = mv.models.load("fast_style_multi")
multi_log = json.loads((mv.models.WEIGHTS_DIR / "fast_style_multi_train_log.json").read_text())
per_style = sum(m.num_features for m in multi.modules() if isinstance(m, ConditionalInstanceNorm2d))
shared = sum(p.size for name, p in multi.named_parameters() if "norm" not in name)
print(f"one network, {multi.num_styles} styles {multi.styles}: trained {multi_log['steps']} steps in "
      f"{multi_log['total_seconds']:.0f} s; 2 x {per_style} numbers per style, {shared:,} shared weights")
photo = photos[0]
renders = [mv.vis.stylize(multi, photo, s) for s in multi.styles]
fig = mv.plot.image_grid([photo, *renders], titles=["photo", *multi.styles], size=2.6,
                         suptitle="one network, four styles (conditional instance norm)")
savefig(fig, "16_multi_style")

a, b = multi.styles[0], multi.styles[1]
alphas = sized([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.5, 1.0])
strip = mv.vis.interpolate_styles(multi, photo, a, b, alphas)
assert np.allclose(strip[0], renders[0], atol=1e-5) and np.allclose(strip[-1], renders[1], atol=1e-5)
savefig(mv.plot.interpolation_strip(strip, alphas, (a, b), suptitle=f"from {a} to {b} by mixing (gamma, beta)"),
        "16_interpolation")

# %% [markdown]
# **What to notice.** The four renderings come from the same convolutions: only the
# (gamma, beta) rows differ, and they are four different pictures (the mosaic's flat patches,
# the waves' bands of colour, the stain's pale cells, the stripes' diagonals), after 4000 steps
# shared by four styles (about 1000 batches each). The strip moves smoothly from one end to the
# other; the ends are exactly the two trained styles (asserted above), and the middle is a style
# nobody trained: the $(\gamma, \beta)$ rows form a space in which straight lines give sensible
# styles.

# %% [markdown]
# ## 5. Summary
#
# - Fast style transfer trains a transformation network $f_W$ on the perceptual loss (lesson
#   15's loss in a frozen network's features, with the input photo as content target); then a
#   photo is stylised by one forward pass, orders of magnitude faster than the optimisation.
# - Transposed convolutions with stride 2 overlap unevenly and leave checkerboards;
#   resize-convolution avoids them.
# - Conditional instance norm shares every convolution between styles; a style is its
#   $(\gamma, \beta)$ rows, and mixing rows interpolates styles.
# - `minivis train style --style NAME [NAME ...]`, `mv.models.load("fast_style", style=...)`,
#   `mv.vis.stylize`, `mv.vis.interpolate_styles`.
#
# ## Exercises
#
# 1. **Resize-convolution.** Train `--upsample resize` for the same style and steps and compare
#    the two networks' outputs on a flat region of a photo. Where do checkerboards show?
# 2. **More data, longer.** Train with `--steps 10000 --crop 128` (a few hours of one core).
#    Which aspects of the style improve with training, and which do not? And with `--unbounded`,
#    the first shipped networks' unbounded output: where do the rainbow blobs come from?
# 3. **A new style in an old network.** Freeze the convolutions of the multi-style network and
#    train only a new row of $(\gamma, \beta)$ for a fifth style (Dumoulin et al.'s section 4).
#    How close does it get to a network trained for that style alone?
