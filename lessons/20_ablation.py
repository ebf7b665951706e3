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
# # Lesson 20: ablation, switching units off
#
# **The question.** Which parts of a network does a decision rely on? The most direct test is
# the experimentalist's: remove a part and measure what changes. The lecture notes list
# *ablation* among the ways to look inside a network ("eliminating or cutting out some kind of
# input ... replace the ablated portion with the mean value"). Occlusion (lesson 03) ablates
# patches of the *input*; here we ablate *units* inside the network: one channel of a layer, or
# one neuron, is set to zero (or to its mean) and the class score is measured again. Zhou, Sun,
# Bau & Torralba ("Revisiting the Importance of Individual Units in CNNs via Ablation", 2018)
# and Morcos, Barrett, Rabinowitz & Botvinick ("On the importance of single directions for
# generalization", ICLR 2018) used it to ask whether single units matter, and whether the
# units that look most interpretable (the most class-selective) matter most.
#
# Plan: (1) the definition, and when ablation equals a gradient; (2) an exact check at the
# hidden layer from scratch, and the batched implementation against a one-at-a-time loop;
# (3) ablation against its first-order estimate at a conv layer; (4) how much the network
# relies on its most important channels, and whether selective channels are the important ones.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.nn.hooks import capture, edit_output

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Definition, and its first-order estimate
#
# Let $a \in \mathbb R^{C \times H \times W}$ be a layer's activation for an image, $S(a)$ the
# class logit computed from it by the rest of the network, and $u$ a unit (a channel $c$, or a
# single position $(c, y, x)$). *Zero ablation* sets $a_u = 0$; *mean ablation* replaces a
# channel by its spatial mean in that image (its average level kept, its pattern removed). The
# effect is
#
# $$
# \Delta_u = S(a') - S(a),
# $$
#
# negative where the unit was helping the class. A first-order Taylor expansion of $S$ around
# $a$ gives, for zero ablation of a channel ($a' = a - a_c$),
#
# $$
# \Delta_c \approx -\sum_{y, x} a_{cyx}\, \frac{\partial S}{\partial a_{cyx}} ,
# $$
#
# "gradient times activation" at that layer: one backward pass estimates all channels at once,
# where ablation needs one forward pass per channel. The estimate is *exact* when the rest of
# the network is linear in $a$: for `fashion_cnn`'s hidden layer (`classifier.1`, 128 ReLU units
# followed by dropout, the identity at test time, and the last linear layer) the logit is
# $S = \sum_j W_{cj} a_j + b_c$, so $\Delta_j = -W_{cj}\, a_j$ exactly.

# %% [markdown]
# ## 2. From scratch: the hidden layer
#
# The hidden code in NumPy from the model's weights, the exact formula, and `mv.vis.ablation`.

# %%
model = mv.models.load("fashion_cnn")
images, labels = mv.data.fashion_mnist("test")
n = sized(200, 24)
x = model.preprocess(images[:n, ..., None])
y = labels[:n].astype(int)

state = model.state_dict()
with mv.no_grad(), capture(model, "flatten") as acts:
    model(mv.tensor(x))
flat = acts["flatten"].numpy().astype(np.float64)                                    # (n, 3136)
hidden = np.maximum(flat @ state["classifier.0.weight"].T + state["classifier.0.bias"], 0)   # (n, 128)
W = state["classifier.3.weight"].astype(np.float64)                                   # (10, 128)
exact = -W[y] * hidden                                                                # (n, 128)

ours = mv.vis.ablation(model, x, y, "classifier.1")
np.testing.assert_allclose(ours, exact, rtol=1e-4, atol=1e-4)
print(f"hidden layer: mv.vis.ablation == -W[c, j] a_j for {n} images x 128 units "
      f"(largest effect {np.abs(exact).max():.2f})")

# %% [markdown]
# At a convolutional layer there is no formula, so the reference is the definition itself: a
# loop that zeroes one channel at a time with `mv.nn.edit_output` and runs the network again.
# `mv.vis.ablation` instead repeats each image once per channel and edits all copies in one
# batch; the results must agree.

# %%
layer = "features.8"                          # the last conv layer's ReLU: 64 channels of 14x14
few = x[:sized(4, 2)]
with mv.no_grad():
    base = model(mv.tensor(few)).numpy()[np.arange(len(few)), y[:len(few)]]
loop = np.empty((len(few), 64))
for c in range(64):
    keep = np.ones((1, 64, 1, 1), np.float32)
    keep[0, c] = 0
    with mv.no_grad(), edit_output(model, layer, lambda out, keep=keep: out * keep):
        loop[:, c] = model(mv.tensor(few)).numpy()[np.arange(len(few)), y[:len(few)]] - base
batched = mv.vis.ablation(model, few, y[:len(few)], layer)
np.testing.assert_allclose(batched, loop, rtol=1e-4, atol=1e-4)
print("conv layer: batched ablation == one channel at a time")

# %% [markdown]
# ## 3. Ablation versus its first-order estimate
#
# All 64 channels of `features.8` for every image, by ablation ($64 n$ forward passes) and by
# the Taylor estimate (one backward pass), zero and mean fill.

# %%
delta = mv.vis.ablation(model, x, y, layer)                                            # (n, 64)
delta_mean = mv.vis.ablation(model, x, y, layer, fill="mean")
xt = mv.tensor(x)
with capture(model, layer, retain_grad=True) as acts:
    logits = model(xt)
logits[np.arange(n), y].sum().backward()
activation, gradient = acts[layer].data, acts[layer].grad
taylor = -(activation * gradient).sum(axis=(2, 3))                                      # (n, 64)
r = np.corrcoef(taylor.ravel(), delta.ravel())[0, 1]
print(f"correlation of ablation with -sum(a * dS/da): {r:.4f}")
print(f"mean drop of the true-class logit over all channels: zero fill {-delta.mean():.3f}, "
      f"mean fill {-delta_mean.mean():.3f}")
assert r > 0.9, "for single channels the network is close to linear in the activation"

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
axes[0].scatter(taylor.ravel(), delta.ravel(), s=3, alpha=0.4)
lim = np.abs(delta).max()
axes[0].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
axes[0].set_xlabel("first-order estimate  -sum a dS/da")
axes[0].set_ylabel("ablation  S(a') - S(a)")
axes[0].set_title(f"{layer}: ablation vs gradient x activation (r = {r:.3f})", fontsize=9)
importance = -delta.mean(axis=0)
order = np.argsort(-importance)
axes[1].bar(np.arange(64), importance[order], label="zero")
axes[1].bar(np.arange(64), -delta_mean.mean(axis=0)[order], alpha=0.6, label="mean")
axes[1].set_xlabel("channel (sorted by zero-ablation effect)")
axes[1].set_ylabel("mean drop of the true-class logit")
axes[1].legend(fontsize=8)
axes[1].set_title("how much each channel helps, on average", fontsize=9)
per_class = np.stack([-delta[y == c].mean(axis=0) if (y == c).any() else np.zeros(64) for c in range(10)])
im = axes[2].imshow(per_class[:, order[:20]], cmap="RdBu_r", vmin=-np.abs(per_class).max(),
                    vmax=np.abs(per_class).max(), aspect="auto")
axes[2].set_yticks(range(10), model.labels, fontsize=7)
axes[2].set_xlabel("the 20 most important channels")
axes[2].set_title("drop of the logit, per true class", fontsize=9)
fig.colorbar(im, ax=axes[2])
fig.tight_layout()
savefig(fig, "20_ablation_features8")

# %% [markdown]
# **What to notice.** The points lie close to the diagonal: one channel out of 64 is a small
# change, and to first order the rest of the network responds linearly, so gradient times
# activation predicts the ablation well at a fraction of the cost. The effects are small
# compared with the logits (which are around 10 to 20): no single channel carries a class.
# Mean ablation hurts about as much as zero ablation: keeping a channel's average level while
# removing its pattern takes away nearly all it contributes, so what these channels tell the
# classifier is *where* they fire, not how much on average. Per class, the important channels
# differ (trousers and bags lean on a few channels of their own), and a channel can help one
# class and slightly hurt another.

# %% [markdown]
# ## 4. How much does the network rely on single channels?
#
# Remove channels of `features.8` cumulatively, the most important first, and measure the test
# accuracy; compare with removing random channels and the least important first.

# %%
m = sized(2000, 200)
xm = model.preprocess(images[:m, ..., None])
ym = labels[:m].astype(int)


def accuracy_without(channels: np.ndarray) -> float:
    keep = np.ones((1, 64, 1, 1), np.float32)
    keep[0, channels] = 0
    with mv.no_grad(), edit_output(model, layer, lambda out: out * keep):
        return float(np.mean(model(mv.tensor(xm)).numpy().argmax(axis=1) == ym))


rng = np.random.default_rng(0)
counts = [0, 4, 8, 16, 24, 32, 48]
curves = {"most important first": [accuracy_without(order[:k]) for k in counts],
          "random": [np.mean([accuracy_without(rng.choice(64, k, replace=False)) for _ in range(3)]) for k in counts],
          "least important first": [accuracy_without(order[::-1][:k]) for k in counts]}
for name, values in curves.items():
    print(f"{name:22s}", " ".join(f"{v:.3f}" for v in values))
assert curves["most important first"][-1] < curves["least important first"][-1]

# %% [markdown]
# **Class selectivity.** Morcos et al. asked whether the units that respond to one class much
# more than to others (the easy-to-interpret ones) are the important ones. With $\mu_k$ the
# channel's mean activation over the test images of class $k$, the selectivity index is
# $(\mu_{\max} - \bar\mu_{\text{rest}}) / (\mu_{\max} + \bar\mu_{\text{rest}})$, 0 for a channel that
# responds equally to all classes and 1 for one that responds to a single class.

# %%
mean_act = activation.mean(axis=(2, 3))                                                  # (n, 64)
by_class = np.stack([mean_act[y == c].mean(axis=0) for c in range(10) if (y == c).any()])
top = by_class.max(axis=0)
rest = (by_class.sum(axis=0) - top) / (len(by_class) - 1)
selectivity = (top - rest) / np.maximum(top + rest, 1e-12)
rho = np.corrcoef(selectivity, importance)[0, 1]
print(f"correlation between class selectivity and ablation importance: {rho:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for name, values in curves.items():
    axes[0].plot(counts, values, marker="o", label=name)
axes[0].set_xlabel(f"channels of {layer} zeroed (of 64)")
axes[0].set_ylabel(f"test accuracy ({m} images)")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
axes[1].scatter(selectivity, importance)
axes[1].set_xlabel("class selectivity index")
axes[1].set_ylabel("mean drop of the true-class logit")
axes[1].set_title(f"selectivity vs importance (r = {rho:.2f})", fontsize=9)
fig.tight_layout()
savefig(fig, "20_cumulative_ablation")

# %% [markdown]
# **What to notice.**
#
# - The network barely notices a few missing channels, whichever they are, and even with half
#   of its last conv layer gone it keeps most of its accuracy: the information is spread over
#   many channels, the robustness Morcos et al. found in networks that generalise well.
# - Up to about a third of the channels it hardly matters which ones go. Beyond that the order
#   counts: in the full run, with 48 of the 64 channels zeroed, removing the most important first
#   leaves about 71% accuracy against about 88% for random channels and 90% for the least
#   important. "Important" was measured one channel at a time on the logit; the accuracy
#   depends on the margin to the next class and on channels acting together, which single
#   ablations only start to reveal when many go at once.
# - Class selectivity predicts importance only weakly: a channel that fires for one class is
#   not, on average, one the network cannot do without. Interpretable-looking units are not
#   privileged, a warning against reading a network one unit at a time (lesson 17's directions
#   make the same point from the other side).

# %% [markdown]
# ## 5. Summary
#
# - Ablation measures what a unit contributes by removing it: $\Delta_u = S(a') - S(a)$, with
#   zero or mean fill.
# - Its first-order estimate is gradient times activation at the layer; exact where the rest of
#   the network is linear (the last hidden layer), and close for single conv channels.
# - Single channels of `fashion_cnn` matter little; the network degrades gracefully as channels
#   are removed, and class-selective channels are not the most important ones.
# - `mv.vis.ablation(model, x, target, layer, units=None, fill="zero" | "mean")`; several units
#   at once with `mv.nn.edit_output`.
#
# ## Exercises
#
# 1. **Pairs.** Ablate every pair of the ten most important channels of `features.8` and
#    compare $\Delta_{\{c, d\}}$ with $\Delta_c + \Delta_d$. Where does the sum fail, and what does
#    that say about channels that work together?
# 2. **Earlier layers.** Repeat section 4 at `features.3` (32 channels at full resolution). Is the
#    first block more or less redundant than the second?
# 3. **Units, not channels.** Ablate single neurons `(c, y, x)` of `features.8` for one image
#    (`units=[(c, y, x), ...]`) and draw the effect as a 14x14 map per channel. Compare it with
#    the occlusion map of lesson 03.
