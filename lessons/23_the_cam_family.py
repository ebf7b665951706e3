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
# # Lesson 23: The CAM family
#
# **The question.** Lesson 05 built Grad-CAM: weight each feature map $A^k$ of a convolutional
# layer by the averaged gradient of the class score, add them up, keep the positive part. Since
# 2017 a family of variants has appeared, each with a paper: Grad-CAM++ (Chattopadhay et al.,
# WACV 2018), XGrad-CAM (Fu et al., BMVC 2020), Score-CAM (Wang et al., CVPR-W 2020),
# Ablation-CAM (Desai & Ramaswamy, WACV 2020), Eigen-CAM (Muhammad & Yeasin, IJCNN 2020),
# HiRes-CAM (Draelos & Carin, 2020), LayerCAM (Jiang et al., IEEE TIP 2021). They look like nine
# methods. They are one formula,
#
# $$L^c = \operatorname{ReLU}\Big(\sum_k w^c_k \odot A^k\Big),$$
#
# with nine answers to one question: *how much does channel $k$ matter for class $c$?* This
# lesson derives each answer, computes all of them in NumPy from the same two arrays (the
# activation $A$ and its gradient $G = \partial S_c / \partial A$) and checks them against
# `mv.vis.cam`, which `tests/vis/attribution/test_cam_family.py` checks against pytorch-grad-cam.

# %%
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

fashion = mv.models.load("fashion_cnn").double()
fashion.requires_grad_(False)
images, labels = mv.data.fashion_mnist("test")
n_show = sized(4, 2)
x = fashion.preprocess(images[:n_show]).astype(np.float64)
with mv.no_grad():
    predicted = fashion(mv.tensor(x)).numpy().argmax(axis=1)
layer = "features.8"  # the last ReLU, 64 maps of 14 x 14
print("predicted", predicted)

# %% [markdown]
# ## 1. Nine answers to one question
#
# Write $A^k_{ij}$ for map $k$ at position $(i, j)$, $G^k_{ij} = \partial S_c / \partial A^k_{ij}$,
# $Z$ the number of positions.
#
# * **Grad-CAM**: $w_k = \frac{1}{Z} \sum_{ij} G^k_{ij}$, the average slope. Lesson 05.
# * **Grad-CAM++**: a weighted average of the *positive* slopes,
#   $w_k = \sum_{ij} a^k_{ij} \operatorname{ReLU}(G^k_{ij})$ with
#   $a^k_{ij} = \frac{(G^k_{ij})^2}{2 (G^k_{ij})^2 + \sum_{ab} A^k_{ab} (G^k_{ij})^3}$. The
#   weights come from asking that $S_c$ be a sum of positive-gradient contributions at every
#   position and solving for the coefficients with the second and third derivatives of
#   $\exp(S_c)$; for a ReLU network the higher derivatives of the logit vanish, which leaves the
#   powers of $G$ above. It lets several instances of a class each count, where the average
#   would let one dominate.
# * **XGrad-CAM**: $w_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}} G^k_{ij}$, the slope
#   averaged where the map is active. Fu et al. derive it from two axioms: *sensitivity*
#   (removing a map changes the score by its CAM contribution) and *conservation*
#   ($\sum_{ij} L_{ij} \approx S_c$); with a first-order Taylor expansion this weighting is the
#   closed-form minimiser.
# * **HiRes-CAM**: no pooling at all, $L = \sum_k G^k \odot A^k$, position by position. For a
#   network that ends in global average pooling and a linear layer, the map then sums exactly to
#   the score minus the bias: it is *faithful* to the model, where Grad-CAM's averaging can move
#   evidence around.
# * **LayerCAM**: $L = \sum_k \operatorname{ReLU}(G^k) \odot A^k$, position by position and only the
#   positive slopes; it stays sharp at shallow layers, so maps from several depths can be fused.
# * **Score-CAM**: no gradient. Upsample map $k$, scale it to $[0, 1]$, multiply the image by it,
#   and use the increase of the class *probability* over a baseline image as the weight:
#   $w_k = \operatorname{softmax}(f(x \odot H^k))_c - \operatorname{softmax}(f(x_b))_c$. One
#   forward pass per channel. (pytorch-grad-cam instead takes a softmax over the channels of the
#   masked *logits*; `mv.vis.cam(..., score="logit_softmax")` reproduces that, the default
#   follows the paper.)
# * **Ablation-CAM**: switch map $k$ off and measure the drop, $w_k = (S_c - S_c^{(k=0)}) / S_c$.
#   One pass of the layers *above* the chosen one per channel.
# * **Eigen-CAM**: no target at all. Flatten the positions into rows of a $Z \times K$ matrix,
#   centre it and project it onto its first principal direction $v$:
#   $L = \sum_k v_k (A^k - \bar A^k)$. The dominant pattern of the layer, whatever the class.
#   **Eigen-Grad-CAM** does the same with $G \odot A$. A principal direction has no sign; we pick
#   the one whose map agrees with $\sum_k A^k$.

# %% [markdown]
# ## 2. From scratch in NumPy
#
# Everything but Score- and Ablation-CAM needs only $A$ and $G$, which `capture(..., retain_grad=True)`
# records.

# %%
with mv.nn.capture(fashion, layer, retain_grad=True) as acts:
    out = fashion(mv.tensor(x, requires_grad=True))
    out[np.arange(n_show), predicted].sum().backward()
A, G = acts[layer].numpy(), acts[layer].grad  # (N, K, h, w) each
S = A.sum(axis=(2, 3), keepdims=True)


def weighted(w):  # sum_k w_k A^k, channel weights (N, K) or position weights (N, K, h, w)
    return (w if w.ndim == 4 else w[:, :, None, None]) * A


ours = {
    "grad_cam": weighted(G.mean(axis=(2, 3))).sum(axis=1),
    "grad_cam_pp": weighted((np.maximum(G, 0) * np.where(G != 0, G**2 / (2 * G**2 + S * G**3 + 1e-6), 0))
                            .sum(axis=(2, 3))).sum(axis=1),
    "xgrad_cam": weighted((G * A / (S + 1e-7)).sum(axis=(2, 3))).sum(axis=1),
    "hires_cam": weighted(G).sum(axis=1),
    "layer_cam": weighted(np.maximum(G, 0)).sum(axis=1),
}


def eigen(a):
    maps = []
    for image in a:
        rows = image.reshape(len(image), -1).T
        rows = rows - rows.mean(axis=0)
        v = np.linalg.svd(rows, full_matrices=False)[2][0]
        proj = rows @ v
        maps.append((proj if proj @ image.sum(axis=0).ravel() >= 0 else -proj).reshape(image.shape[1:]))
    return np.stack(maps)


ours["eigen_cam"], ours["eigen_grad_cam"] = eigen(A), eigen(G * A)
for method, mine in ours.items():
    theirs = mv.vis.cam(fashion, x, predicted, layer, method, upsample=False, relu=False)
    np.testing.assert_allclose(theirs, mine, rtol=1e-9, atol=1e-12 * np.abs(mine).max())
print("NumPy == mv.vis.cam for", ", ".join(ours))

# %% [markdown]
# Score-CAM and Ablation-CAM run the network once per channel. `mv.vis.cam` streams those passes
# `batch_size` at a time, so memory stays bounded however many channels the layer has; for
# Ablation-CAM the layers below the chosen one run only once (the layer's output is replaced by
# a batch of copies, each with one channel zeroed). The check for Ablation-CAM by hand, for the
# first image and a few channels:

# %%
abl = mv.vis.cam(fashion, x[:1], predicted[:1], layer, "ablation_cam", upsample=False, relu=False, batch_size=16)
score = out.numpy()[0, predicted[0]]
drops = []
for k in range(3):
    def zero_k(o, k=k):
        d = o.data.copy()
        d[:, k] = 0
        return mv.tensor(d)
    with mv.no_grad(), mv.nn.edit_output(fashion, layer, zero_k):
        drops.append((score - fashion(mv.tensor(x[:1])).numpy()[0, predicted[0]]) / score)
w_full = np.linalg.lstsq(A[0].reshape(A.shape[1], -1).T, abl[0].ravel(), rcond=None)[0]
np.testing.assert_allclose(w_full[:3], drops, rtol=1e-6, atol=1e-9)
print("Ablation-CAM weights of channels 0-2 by hand:", np.round(drops, 5))

# %% [markdown]
# ## 3. HiRes-CAM is faithful, Grad-CAM is not
#
# After `features.8` comes a max-pool, so for `fashion_cnn` neither sums to the logit. But for the
# last ReLU of a network that ends in global average pooling and one linear layer,
# $S_c = \frac{1}{Z}\sum_{ij}\sum_k W_{ck} A^k_{ij} + b_c$ and $G^k_{ij} = W_{ck} / Z$ everywhere:
# HiRes-CAM's map sums to $S_c - b_c$ exactly. A small such network, random weights:

# %%
rng = np.random.default_rng(0)
gap_net = mv.nn.Sequential(mv.nn.Conv2d(1, 6, 3, padding=1), mv.nn.ReLU(), mv.nn.AdaptiveAvgPool2d(1),
                           mv.nn.Flatten(), mv.nn.Linear(6, 3)).double().eval()
hires = mv.vis.cam(gap_net, x, 1, "1", "hires_cam", upsample=False, relu=False)
with mv.no_grad():
    s = gap_net(mv.tensor(x)).numpy()[:, 1]
np.testing.assert_allclose(hires.sum(axis=(1, 2)), s - gap_net[4].bias.numpy()[1], rtol=1e-10)
print("HiRes-CAM sums to the logit minus the bias:", hires.sum(axis=(1, 2)))

# %% [markdown]
# ## 4. The picture
#
# **What to notice.** Plain Grad-CAM is the odd one out on this network: the layer is followed
# by a max-pool and two dense layers, not by global average pooling, so the gradient varies a lot
# across positions and its average over a map is a poor summary (for the boot it lands on the
# background below the sole, for the pullover on one cuff). The variants that keep the positive
# slopes or weight them by the activation (++, XGrad, HiRes, LayerCAM) agree with each other on
# the parts of the garment: the boot's heel, toe and top of the shaft, the pullover's cuffs and
# hem. Score-CAM and Ablation-CAM, which never look at a gradient, find the same places. The
# Eigen maps, which never look at the class, pick out a few strong parts; ask them for another
# class and they do not change (exercise 1).

# %%
methods = list(mv.vis.CAM_METHODS)
maps = {m: mv.vis.cam(fashion, x, predicted, layer, m, batch_size=32) for m in methods}
fig = mv.plot.show_cams(images[:n_show], maps, labels=[mv.data.FASHION_MNIST_CLASSES[k] for k in predicted],
                        title="fashion_cnn at features.8: one formula, nine channel weightings")
savefig(fig, "23_cam_family")

# %% [markdown]
# ## Summary
#
# * Every CAM is $\operatorname{ReLU}(\sum_k w_k \odot A^k)$; the variants differ in $w$: averaged
#   slopes (Grad-CAM), weighted positive slopes (++), activation-weighted slopes (XGrad),
#   slopes per position (HiRes, LayerCAM), measured effects of masking or removing a channel
#   (Score, Ablation), or the principal direction of the maps (Eigen).
# * The gradient variants cost one forward and a partial backward; Score- and Ablation-CAM one
#   forward per channel, streamed in batches.
# * Faithfulness is a property you can check: HiRes-CAM sums to the score on a GAP network.
#
# ## Exercises
#
# 1. Compute Eigen-CAM for two different targets and show the maps are identical. Which other
#    variant is also target-independent when the layer is followed by GAP and a linear layer?
# 2. Implement Grad-CAM++ with $\exp(S_c)$ kept (the paper's eq. 19) on a network with a smooth
#    activation (tanh) and compare with the ReLU simplification.
# 3. Time Score-CAM for batch sizes 1, 8 and 64 and explain the curve.
