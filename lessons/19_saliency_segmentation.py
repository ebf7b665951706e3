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
# # Lesson 19: segmentation from a saliency map
#
# **The question.** A classifier is trained with one label per image and never told where the
# object is. Does it know anyway? Simonyan, Vedaldi & Zisserman ("Deep Inside Convolutional
# Networks: Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014,
# section 3.2) answered by turning the saliency map of lesson 03 into a segmentation: the
# lecture notes' "saliency maps can also be used for semantic segmentation ... by using a
# GrabCut segmentation algorithm. However the performance is much worse than general
# supervised segmentation." The map is too spotty to be a mask itself, so it only *seeds* a
# colour-based segmentation, GrabCut (Rother, Kolmogorov & Blake, "GrabCut: interactive
# foreground extraction using iterated graph cuts", SIGGRAPH 2004).
#
# Plan: (1) the seeds and GrabCut's energy; (2) the seeding rule and a GrabCut without its
# smoothness term from scratch, against `mv.vis.saliency_segmentation`; (3) masks for photos
# with EfficientNet-Lite0; (4) a measurement on Fashion-MNIST, where the method fails, and why.

# %%
import cv2
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.vis.attribution.segmentation import seeds

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. From a saliency map to a mask
#
# **Seeds.** With $M_{ij} = \max_c \lvert \partial S_c / \partial x_{cij} \rvert$ the saliency map,
# Simonyan et al. take the pixels above the 95% quantile of $M$ as *surely foreground* and the
# pixels below the 30% quantile as *surely background*; the rest is left open (GrabCut's
# "probably background"). Only the extremes of the map are trusted.
#
# **GrabCut.** Each pixel $n$ has a colour $z_n$ and a label $\alpha_n \in \{0, 1\}$ (background,
# foreground). Each side has a colour model, a Gaussian mixture $\theta_\alpha$ with a few
# components. GrabCut minimises
#
# $$
# E(\alpha, \theta) = \underbrace{\sum_n -\log p(z_n \mid \theta_{\alpha_n})}_{U:\ \text{colour fit}}
# \;+\; \underbrace{\gamma \sum_{(m, n)\ \text{neighbours}} [\alpha_m \ne \alpha_n]\,
# e^{-\beta \lVert z_m - z_n \rVert^2}}_{V:\ \text{smoothness}} ,
# $$
#
# with the seeds' labels fixed. $U$ wants each pixel on the side whose colours it resembles; $V$
# charges for every pair of neighbours cut apart, a lot where their colours are alike and little
# across a strong edge ($\beta = 1 / (2\,\overline{\lVert z_m - z_n \rVert^2})$). It alternates,
# like EM: fit the mixtures to the current labels, then find the labels that minimise $E$ for
# those mixtures, exactly, by a minimum cut of a graph with one node per pixel (a binary energy
# with such pairwise terms is *submodular*, which is what makes the cut exact).
#
# **Without $V$** the label step falls apart into one decision per pixel: foreground where
# $p(z_n \mid \theta_1) > p(z_n \mid \theta_0)$. That we can write in a dozen lines, and it shows
# what the smoothness term adds.

# %% [markdown]
# ## 2. From scratch
#
# The seeds, with NumPy's quantiles, must equal the ones `mv.vis.saliency_segmentation` hands
# to `cv2.grabCut`. Then the colour-only segmentation: one Gaussian per side (instead of five),
# refitted a few times.

# %%
effnet = mv.models.load("efficientnet_lite0")
size = sized(224, 128)
effnet.input_size, effnet.resize_size = (size, size), round(size * 256 / 224)
x = effnet.preprocess(mv.data.photo("coffee"))
with mv.no_grad():
    target = int(effnet(mv.tensor(x)).numpy().argmax())
saliency = mv.vis.saliency(effnet, x, target)[0]
photo = effnet.deprocess(x)[0]


def seeds_numpy(m: np.ndarray, fg: float = 0.95, bg: float = 0.30) -> np.ndarray:
    """cv2's labels: 1 sure foreground, 0 sure background, 2 probably background."""
    out = np.full(m.shape, 2, np.uint8)
    out[m >= np.quantile(m, fg)] = 1
    out[m <= np.quantile(m, bg)] = 0
    return out


def colour_only(image: np.ndarray, labels: np.ndarray, rounds: int = 5) -> np.ndarray:
    """GrabCut's energy without V: per pixel, the side whose Gaussian colour model fits better."""
    z = image.reshape(-1, 3).astype(np.float64)
    sure_fg, sure_bg = labels == 1, labels == 0
    fg = sure_fg.copy()
    for _ in range(rounds):
        loglik = []
        for side in (fg, ~fg):
            mu, cov = z[side.ravel()].mean(axis=0), np.cov(z[side.ravel()].T) + 1e-6 * np.eye(3)
            d = z - mu
            loglik.append(-0.5 * np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d) - 0.5 * np.linalg.slogdet(cov)[1])
        fg = ((loglik[0] > loglik[1]).reshape(labels.shape) | sure_fg) & ~sure_bg
    return fg


labels = seeds_numpy(np.asarray(saliency, np.float64))
np.testing.assert_array_equal(labels, seeds(np.asarray(saliency, np.float64), 0.95, 0.30, "lesson"))
assert (cv2.GC_BGD, cv2.GC_FGD, cv2.GC_PR_BGD) == (0, 1, 2)
print("seeds: NumPy == the ones minivis gives GrabCut")

mask = mv.vis.saliency_segmentation(effnet, x, target, saliency_map=saliency)[0]
lite = colour_only(photo, labels)


def boundary(m: np.ndarray) -> int:
    """Neighbour pairs with different labels: what V charges for."""
    return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())


agree = np.mean(mask == lite)
print(f"GrabCut and the colour-only version agree on {agree:.1%} of the pixels; boundary length "
      f"{boundary(mask)} (GrabCut) versus {boundary(lite)} (no smoothness term)")
assert agree > 0.55, "the colour models do much of the work"
assert boundary(mask) < 0.6 * boundary(lite), "the smoothness term shortens the boundary"
assert mask[labels == 1].all() and not mask[labels == 0].any(), "the seeds keep their labels"

# %% [markdown]
# The colour models alone already find most of the object; what GrabCut's smoothness term adds
# is coherence. The colour-only mask is speckled wherever foreground and background colours
# overlap, and its boundary is several times longer: every isolated pixel costs $V$ nothing
# there, while the graph cut pays for each cut pair and prefers one clean outline along the
# strong edges.

# %% [markdown]
# ## 3. Masks for photos
#
# The predicted class of each photo, its saliency map, the seeds (white: sure foreground; black:
# sure background; grey: open) and GrabCut's mask over the photo, next to the colour-only mask.

# %%
names = sized(["chelsea", "coffee", "flower", "rocket"], ["coffee", "flower"])
rows = []
for name in names:
    x = effnet.preprocess(mv.data.photo(name))
    with mv.no_grad():
        target = int(effnet(mv.tensor(x)).numpy().argmax())
    saliency = np.asarray(mv.vis.saliency(effnet, x, target)[0], np.float64)
    mask = mv.vis.saliency_segmentation(effnet, x, target, saliency_map=saliency)[0]
    photo = effnet.deprocess(x)[0]
    labels = seeds_numpy(saliency)
    rows.append((name, effnet.labels[target], photo, saliency, labels, mask, colour_only(photo, labels)))
    print(f"{name:10s} {effnet.labels[target]:16s} mask covers {mask.mean():.0%} of the image")

fig, axes = plt.subplots(len(rows), 5, figsize=(11, 2.3 * len(rows)))
for r, (name, label, photo, saliency, labels, mask, lite) in enumerate(rows):
    seed_picture = np.choose(labels, [0.0, 1.0, 0.5])
    panels = [(photo, f"{name}: {label}"), (saliency, "saliency"), (seed_picture, "seeds (95% / 30%)"),
              (photo * (0.25 + 0.75 * mask[..., None]), "GrabCut mask"),
              (photo * (0.25 + 0.75 * lite[..., None]), "colour only (no V)")]
    for ax, (image, title) in zip(axes[r], panels, strict=True):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
fig.suptitle("segmentation seeded by saliency (EfficientNet-Lite0)")
fig.tight_layout()
savefig(fig, "19_saliency_grabcut_photos")

# %% [markdown]
# **What to notice.** The masks are fragments: the crema and the rim of the cup, the cat's nose
# and a few patches of fur, the centre of the flower, pieces of the rocket, but also patches of
# saucer, leaves and sky. Two things go wrong. The plain gradient of EfficientNet-Lite0 is
# speckled, so its top 5% is scattered over the whole image rather than concentrated on the
# object, and GrabCut grows each scattered seed into a region of its colour. And these photos
# are close-ups: the object fills most of the frame, so the bottom 30% of the map (the "sure
# background") falls on the object too. GrabCut follows colour, not meaning: it cannot undo
# seeds on the wrong side. Simonyan et al. worked with ILSVRC photos where the object is a
# smaller part of the scene, and still reported the result as far below supervised
# segmentation. Exercise 1 tries smoother maps.

# %% [markdown]
# ## 4. A measurement, and a failure
#
# On Fashion-MNIST the true mask is easy to get: the garment is every pixel brighter than the
# black background. So we can score the method, by the intersection over union
# $\lvert A \cap B \rvert / \lvert A \cup B \rvert$ with that mask, against a baseline that knows
# nothing: the central disk with the same area as the average garment.

# %%
fashion = mv.models.load("fashion_cnn")
images, classes = mv.data.fashion_mnist("test")
n = sized(500, 60)
xf = fashion.preprocess(images[:n, ..., None])
truth = images[:n] > 25
saliency_f = mv.vis.saliency(fashion, xf, classes[:n].astype(int))
masks = mv.vis.saliency_segmentation(fashion, xf, classes[:n].astype(int), saliency_map=saliency_f)
yy, xx = np.mgrid[:28, :28]
disk = (yy - 13.5) ** 2 + (xx - 13.5) ** 2 < truth.mean() * 28 * 28 / np.pi


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum(axis=(1, 2)) / np.maximum((a | b).sum(axis=(1, 2)), 1)


on, off = saliency_f[truth].mean(), saliency_f[~truth].mean()
print(f"IoU with the garment: saliency + GrabCut {iou(masks, truth).mean():.2f}, "
      f"central disk {iou(np.broadcast_to(disk, truth.shape), truth).mean():.2f}")
print(f"mean saliency on the garment {on:.3f}, on the background {off:.3f}")
assert iou(masks, truth).mean() < iou(np.broadcast_to(disk, truth.shape), truth).mean()

fig, axes = plt.subplots(3, 8, figsize=(10, 4))
for i in range(8):
    for r, (image, title) in enumerate([(images[i], "image"), (saliency_f[i], "saliency"), (masks[i], "mask")]):
        axes[r, i].imshow(image, cmap="gray")
        axes[r, i].axis("off")
        if i == 0:
            axes[r, i].set_title(title, fontsize=8, loc="left")
fig.suptitle("Fashion-MNIST: the saliency is spread over garment and background alike")
fig.tight_layout()
savefig(fig, "19_fashion_failure")

# %% [markdown]
# **What to notice.** On Fashion-MNIST the method does *worse* than a disk that ignores the
# image. The numbers say why: on average the saliency is as large on the black background as on
# the garment. A pixel's saliency measures how much the score would move if that pixel changed,
# and for a network that has learned garments as bright shapes on black, brightening a
# background pixel (making the silhouette wider, or adding a stray blob) moves the score as much
# as changing the garment does. The top 5% of the map is therefore scattered over both, the seeds
# mark pieces of background as "surely foreground", and GrabCut, with only grey levels to model,
# keeps small blobs around them. Saliency answers "which pixels would change the score", not
# "where is the object". That is the notes' "much worse than supervised segmentation", with its
# cause measured.

# %% [markdown]
# ## 5. Summary
#
# - Saliency seeds: the top 5% of the map is surely the object, the bottom 30% surely not.
# - GrabCut fits a colour model to each side and cuts the pixel graph to minimise colour misfit
#   plus a charge for every cut between similar neighbours; the cut is exact (submodular
#   energy), and the model and the cut alternate.
# - Without the smoothness term the mask is a speckled per-pixel colour vote; with it, one
#   outline along the edges.
# - It works when the pixels that matter are the object's; it fails when they are the contrast
#   around it, as on Fashion-MNIST's silhouettes.
# - `mv.vis.saliency_segmentation(model, x, target, fg_quantile=0.95, bg_quantile=0.30)`.
#
# ## Exercises
#
# 1. **Better seeds.** Seed GrabCut with SmoothGrad (`mv.vis.smoothgrad`) or with a Grad-CAM
#    map (`mv.vis.grad_cam(..., upsample=True)`) instead of the saliency map (pass
#    `saliency_map=`). Which gives the best masks on the photos, and the best IoU on
#    Fashion-MNIST? Why does Grad-CAM's coarseness help here?
# 2. **The quantiles.** Sweep `fg_quantile` in {0.8, 0.9, 0.95, 0.99} and `bg_quantile` in
#    {0.1, 0.3, 0.5} on Fashion-MNIST and plot the IoU. Which way should each move, given what
#    section 4 found about the background?
# 3. **The smoothness weight.** Implement the pairwise term yourself for the colour-only
#    version with a few sweeps of iterated conditional modes (relabel each pixel to minimise
#    its $U + V$ given its neighbours). How close do you get to GrabCut's mask, and why can ICM
#    stop in a worse minimum than the graph cut?
