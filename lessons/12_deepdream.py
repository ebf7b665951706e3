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
# # Lesson 12: DeepDream, or ask a layer for more of what it sees
#
# **Question.** Class-model visualisation (lesson 10) starts from nothing and asks for one class.
# What happens if we start from a *photo* and ask a whole layer to respond *more strongly to
# whatever it already responds to*? Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into
# Neural Networks" (Google Research blog, 2015): clouds grow dogs, leaves grow eyes.
#
# **Recipe (from the lecture notes).** Forward the image to layer $\ell$, *set the gradient of the
# layer equal to its activations*, backpropagate to the image, take a gradient-ascent step.
#
# ## Why "gradient = activations" is gradient ascent on $\tfrac12\|a\|^2$
#
# Let $a = \Phi_\ell(x) \in \mathbb{R}^D$ be the layer's activations and
# $J(x) = \tfrac12 \|a\|^2 = \tfrac12\sum_d a_d^2$. By the chain rule
#
# $$\frac{\partial J}{\partial x} = \Big(\frac{\partial a}{\partial x}\Big)^{\!\top} \frac{\partial J}{\partial a}
#   = \Big(\frac{\partial a}{\partial x}\Big)^{\!\top} a ,$$
#
# because $\partial J / \partial a_d = a_d$. Backpropagation computes exactly
# $(\partial a/\partial x)^\top g$ for whatever upstream gradient $g$ we start with at the layer;
# starting it with $g = a$ is the same thing as differentiating $J$. Each unit pulls the image in
# the direction that increases it, *weighted by how much it already fires*: a unit that is
# barely active barely pulls, a unit that sees "a bit of a dog" pulls hard. After the step it
# fires more, so it pulls harder next time: a positive feedback loop that amplifies what is
# already there.
#
# ## Why the layer must come after a ReLU
#
# The lecture notes insist on dreaming at a layer "after a ReLU". The derivation says why. The
# objective $\tfrac12\sum_d a_d^2$ does not care about the *sign* of $a_d$: a unit at $-3$
# counts as much as one at $+3$, and its pull $\partial J/\partial a_d = a_d$ is negative, so the
# step makes it *more negative*. After a ReLU every $a_d \ge 0$: the inactive units ($a_d = 0$)
# pull nothing and the active ones pull towards "more of this feature", which is the intended
# dream. Before a ReLU (a convolution's raw output, or a linear bottleneck such as the output of
# an EfficientNet block, which has no activation at all) half of the objective's growth can come
# from pushing units further *below* zero: the dream then amplifies the absence of features as
# eagerly as their presence. Split $J = J_+ + J_-$ with
# $J_\pm = \tfrac12 \|\max(\pm a, 0)\|^2$: after a ReLU $J_- = 0$ always; before one, watch
# $J_-$ grow.
#
# The tricks: **octaves** (dream at several scales, smallest first, carrying the added detail
# up), **jitter** (a random roll each step), a **normalised step**
# $x \leftarrow x + \eta\, g / \overline{|g|}$ and **clipping** to valid pixels.

# %%
import time

import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis.synthesis.objectives import layer_l2

start = time.time()
rng = np.random.default_rng(0)

# %% [markdown]
# ## From scratch in NumPy: one layer, $a = \mathrm{ReLU}(Wx)$
#
# Then $\partial J/\partial x = W^\top (a \odot [Wx > 0]) = W^\top a$ (the mask is already in
# $a$). A dozen lines of gradient ascent show the feedback loop: $J$ grows faster and faster.
# The same loop without the ReLU ($a = Wx$) shows the other half of the story: $J_-$, the part
# of the objective made of negative activations, grows as well.

# %%
W = rng.standard_normal((20, 10))
x_np = rng.standard_normal(10) * 0.1


def dream_numpy(x, steps=8, lr=0.05, relu=True):
    values, negative = [], []
    for _ in range(steps):
        z = W @ x
        a = np.maximum(z, 0.0) if relu else z  # forward to the layer
        values.append(0.5 * a @ a)            # J = 1/2 ||a||^2
        negative.append(0.5 * np.sum(np.minimum(a, 0.0) ** 2))  # J_-: the negative activations' share
        g = W.T @ a                           # backward, started with gradient = activations
        x = x + lr * g / np.abs(g).mean()     # normalised ascent step
    return x, np.array(values), np.array(negative)


x_dream, J_np, J_neg = dream_numpy(x_np)
print("after a ReLU   J per step:", np.round(J_np, 3), " J_- stays", J_neg.max())
assert np.all(np.diff(J_np) > 0) and np.all(J_neg == 0)
_, J_lin, J_lin_neg = dream_numpy(x_np, relu=False)
print("without a ReLU J per step:", np.round(J_lin, 3), "\n               J_- per step:", np.round(J_lin_neg, 3))
assert np.all(np.diff(J_lin) > 0) and J_lin_neg[-1] > 2 * J_lin_neg[0]  # negative units are amplified too

# %% [markdown]
# ## The engine agrees: backward of $\tfrac12\|a\|^2$ = backward started at the layer with $g = a$
#
# On EfficientNet-Lite0 (pretrained on ImageNet), at the ReLU6 after block 2's depthwise
# convolution (`_blocks.2._act1`, 144 channels, every value in $[0, 6]$): (1) differentiate the
# objective `layer_l2`; (2) run the forward pass to the layer, then call `a.backward(a)` by hand.

# %%
model = mv.models.load("efficientnet_lite0")
photo = mv.data.photo("chelsea")
size = sized(224, 64)
x0 = mv.F.interpolate(mv.tensor(model.preprocess(photo)), size=(size, size), mode="bilinear").numpy()
layer = "_blocks.2._act1"
model.requires_grad_(False)

x1 = mv.tensor(x0, requires_grad=True)
layer_l2(layer)(model, x1).sum().backward()

x2 = mv.tensor(x0, requires_grad=True)
a = mv.nn.forward_to(model, x2, layer)
a.backward(a.data.copy())                     # start backprop at the layer with grad = activations
np.testing.assert_allclose(x1.grad, x2.grad, rtol=1e-5, atol=1e-6 * np.abs(x2.grad).max())
print("max |difference| of the two input gradients:", np.abs(x1.grad - x2.grad).max())
model.requires_grad_(True)

# %% [markdown]
# ## DeepDream on a photo
#
# `mv.vis.deepdream` runs the shared optimisation loop once per octave. We dream at the ReLU6
# outputs inside the blocks: shallow layers amplify edges and textures; deeper ones amplify
# object parts (eyes, fur, dog faces at full size). Then, for comparison, at the output of
# block 2 itself, which is a linear projection plus the skip connection: no ReLU after it.

# %%
steps, octaves = sized(10, 3), sized(4, 2)
layers = ["_blocks.2._act1", "_blocks.6._act1", "_blocks.2"] if not FAST else ["_blocks.2._act1", "_blocks.2"]
dreams = {}
for name in layers:
    dreams[name] = mv.vis.deepdream(model, photo, name, steps=steps, lr=0.02, octaves=octaves, size=size,
                                    jitter=sized(32, 4), progress=False)
    r = dreams[name]
    print(name, "octaves", r.info["octave_sizes"], "J first/last:", r.history[0], r.history[-1])
    assert r.image.min() >= 0 and r.image.max() <= 1          # clipping keeps pixels valid
    before = layer_l2(name)(model, mv.tensor(x0)).numpy()[0]
    after = layer_l2(name)(model, mv.tensor(r.x[None])).numpy()[0]
    print(f"  1/2||a||^2 at {name}: photo {before:.1f} -> dream {after:.1f}")
    assert after > before
    for h in r.info["octave_histories"]:
        assert h[-1] > h[0]

# %% [markdown]
# **What to notice.** The dream keeps the cat's layout (we start from the photo) but the
# textures the layer likes are painted over it, at several sizes because of the octaves. The
# objective rises within every octave, and the pixels stay in $[0, 1]$.
#
# ### After a ReLU, or not
#
# Split the objective into its positive and negative parts, before and after dreaming. At the
# ReLU6 output $J_-$ is zero by construction. At the block output the negative part grows about
# as much as the positive part: a good share of "the dream" there is the network being pushed
# to see *less* of the features those units measure.

# %%
def split_energy(name, x):
    a = mv.vis.activations(model, x, name)
    return 0.5 * float((np.maximum(a, 0) ** 2).sum()), 0.5 * float((np.minimum(a, 0) ** 2).sum())


for name, r in dreams.items():
    (p0, n0), (p1, n1) = split_energy(name, x0[0]), split_energy(name, r.x)
    share = (n1 - n0) / ((p1 - p0) + (n1 - n0))
    print(f"{name:16s} J_+ {p0:10.1f} -> {p1:10.1f}   J_- {n0:10.1f} -> {n1:10.1f}   "
          f"share of the growth from negative units {share:.0%}")
    if name.endswith("_act1"):
        assert n0 == 0 and n1 == 0  # after a ReLU there is nothing below zero to amplify
    else:
        assert n1 > 1.2 * n0 and share > 0.25  # before one, the negative units grow too

# %%
fig = mv.plot.synthesis_grid([model.deprocess(x0)[0]] + [r.image for r in dreams.values()],
                             titles=["photo"] + [f"dream at {n}" + ("" if n.endswith("_act1") else "\n(no ReLU)")
                                                 for n in dreams])
savefig(fig, "12_deepdream")
fig = mv.plot.history_plot({f"layer {n}": r.history for n, r in dreams.items()}, ylabel="1/2 ||a||^2",
                           title="DeepDream objective (octaves concatenated)")
savefig(fig, "12_deepdream_history")
print(f"lesson 12 took {time.time() - start:.1f} s")

# %% [markdown]
# ## Summary
#
# - DeepDream is gradient ascent on $\tfrac12\|a_\ell\|^2$; "set the layer's gradient to its
#   activations" is just the chain rule for that objective, checked above to float precision.
# - The update amplifies what the layer already detects (positive feedback), so the result
#   depends on the starting photo, unlike a class model.
# - Dream after a ReLU: the objective ignores signs, so before one it also drives negative
#   activations further down (measured above: a large share of the growth at a block output).
# - Octaves, jitter, a normalised step and clipping are what turn the raw ascent into pictures.
#
# ## Exercises
#
# 1. Dream at `_blocks.1._act1`, `_blocks.6._act1` and `_blocks.12._act1`; describe how the
#    patterns change with depth.
# 2. Replace `layer_l2` by `channel(layer, c)` for one channel: what does a single channel draw?
# 3. Set `octaves=1` and `jitter=0`: what artefacts appear, and which trick removes which?
# 4. At a layer without a ReLU, write an objective that only rewards positive activations,
#    $\tfrac12\|\max(a, 0)\|^2$ (a custom `Objective`, or `layer_l2` on a following ReLU), and
#    compare its dream with the plain $\tfrac12\|a\|^2$ one.
