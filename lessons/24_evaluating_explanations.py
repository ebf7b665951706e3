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
# # Lesson 24: Evaluating explanations
#
# **The question.** Lessons 03 to 22 built a dozen ways to draw "which pixels mattered". They
# disagree. Which one is right? There is no ground truth for what a network "really" looked at,
# so evaluation asks narrower questions that *can* be answered:
#
# * **Faithfulness**: if the map says these pixels matter, does removing them change the output?
#   Deletion and insertion (Petsiuk, Das & Saenko, "RISE", BMVC 2018); infidelity (Yeh, Hsieh,
#   Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity of Explanations", NeurIPS
#   2019).
# * **Robustness**: does the map stay put when the input barely moves? Max-sensitivity (Yeh et al.).
# * **Localisation**: does the map point at the object? The pointing game (Zhang et al. 2016).
# * **Dependence on the model**: does the map change when the model is destroyed? The sanity
#   checks of Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (NeurIPS 2018).
#
# Each of them can be fooled, and knowing how is half of using them.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

fashion = mv.models.load("fashion_cnn").double()
images, labels = mv.data.fashion_mnist("test")
n = sized(8, 3)
x = fashion.preprocess(images[:n]).astype(np.float64)
with mv.no_grad():
    predicted = fashion(mv.tensor(x)).numpy().argmax(axis=1)

# %% [markdown]
# ## 1. Deletion and insertion
#
# Order the pixels by the map, most relevant first. **Deletion** replaces them, $k$ at a time,
# by a baseline (black) and records the class probability $p_k$; **insertion** starts from a
# blurred image and puts them back. Plot $p$ against the fraction of pixels changed,
# $t_k = k/K$, and take the area under the curve by the trapezoid rule:
#
# $$\mathrm{AUC} = \sum_{k=1}^{K} \tfrac12 (p_{k-1} + p_k)(t_k - t_{k-1}).$$
#
# A faithful map makes the deletion curve fall fast (low AUC) and the insertion curve rise fast
# (high AUC). A random ordering is the reference point.
#
# **From scratch**, for one image and one map: a dozen lines.

# %%
def deletion_numpy(model, image, target, attribution, per_step, fill):
    order = np.argsort(-attribution.ravel(), kind="stable")
    steps = int(np.ceil(order.size / per_step))
    probs = []
    for k in range(steps + 1):
        img = image.copy().reshape(image.shape[0], -1)
        img[:, order[:k * per_step]] = fill
        with mv.no_grad():
            z = model(mv.tensor(img.reshape(1, *image.shape))).numpy()[0]
        probs.append(np.exp(z[target] - z.max()) / np.exp(z - z.max()).sum())
    t = np.minimum(np.arange(steps + 1) * per_step, order.size) / order.size
    return np.array(probs), ((np.array(probs)[1:] + np.array(probs)[:-1]) / 2 * np.diff(t)).sum()


per_step = sized(14, 56)
black = -fashion.mean[0] / fashion.std[0]
saliency = mv.vis.saliency(fashion, x, predicted)
probs, auc = deletion_numpy(fashion, x[0], predicted[0], saliency[0], per_step, black)
ours = mv.vis.deletion(fashion, x[:1], predicted[:1], saliency[:1], pixels_per_step=per_step)
np.testing.assert_allclose(ours.scores[0], probs, rtol=1e-10)
np.testing.assert_allclose(ours.auc[0], auc, rtol=1e-10)
print(f"deletion AUC of saliency on image 0: {auc:.4f} (NumPy == mv.vis.deletion)")

# %% [markdown]
# Now five maps over a batch. `tests/vis/attribution/test_metrics.py` checks the curve against
# Quantus's PixelFlipping; Quantus drops the first point (the intact image) and integrates with unit
# steps, so its "AUC" is a different number from the paper's.

# %%
rng = np.random.default_rng(0)
maps = {
    "random": rng.standard_normal((n, 28, 28)),
    "saliency": saliency,
    "gradient x input": mv.vis.gradient_x_input(fashion, x, predicted),
    "LRP eps-gamma-box": mv.vis.lrp(fashion, x, predicted, composite="epsilon_gamma_box"),
    "Grad-CAM": mv.vis.grad_cam(fashion, x, predicted, "features.8"),
}
curves = {}
for name, a in maps.items():
    curves[f"{name}"] = mv.vis.deletion(fashion, x, predicted, a, pixels_per_step=per_step)
    curves[f"{name} "] = mv.vis.insertion(fashion, x, predicted, a, pixels_per_step=per_step)
print(f"{'map':<20} deletion AUC (lower better)  insertion AUC (higher better)")
for name in maps:
    print(f"{name:<20} {curves[name].auc.mean():.3f}                       {curves[name + ' '].auc.mean():.3f}")
assert curves["random"].auc.mean() > min(curves[k].auc.mean() for k in maps if k != "random")

# %% [markdown]
# **What deletion cannot tell you.** A half-deleted Fashion-MNIST image, with black holes punched
# into the garment, is nothing the network saw in training. The probability can collapse because
# the input is *out of distribution*, not because the deleted pixels carried the evidence; a map
# that lists scattered high-contrast pixels first is rewarded for making the image strange fast.
# Insertion has the mirror problem: it starts from a blur, and maps that restore edges first win.
# ROAD (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022) replaces the removed pixels by a noisy
# linear interpolation of their neighbours so the *shape* of the mask leaks less; it in turn favours
# smooth maps (section 1b). Read these numbers as comparisons between maps under one protocol,
# never as absolute faithfulness.

# %%
fig = mv.plot.curve_figure({**{k: v for k, v in curves.items() if not k.endswith(" ")},
                            **{k.strip(): v for k, v in curves.items() if k.endswith(" ")}})
savefig(fig, "24_deletion_insertion")

# %% [markdown]
# ## 1b. ROAD: remove, then debias
#
# Rong et al. showed the leak is real: a classifier shown *only the mask* of the removed pixels
# guesses the class far above chance, so a deletion curve partly measures the mask's shape.
# ROAD (RemOve And Debias) removes a fraction $p$ of the pixels and fills each removed pixel $i$
# with the weighted mean of its 8 neighbours, direct ones weighted $\tfrac16$, diagonal ones
# $\tfrac1{12}$ (weights of neighbours outside the image drop out), plus a little noise:
#
# $$x_i = \frac{\sum_{j \in N(i)} w_{ij} x_j}{\sum_{j \in N(i)} w_{ij}} + \sigma \varepsilon_i,
# \qquad \varepsilon_i \sim \mathcal N(0, 1),\ \sigma = 0.01 .$$
#
# A removed pixel's neighbours may be removed too, so the means are coupled: without the noise
# they solve one sparse linear system, $(\sum_j w_{ij}) x_i - \sum_{j \text{ removed}} w_{ij} x_j
# = \sum_{j \text{ kept}} w_{ij} x_j$, which `mv.vis.noisy_linear_imputation` hands to SciPy's
# sparse LU. **From scratch**, the same fixed point by repeated averaging (Jacobi iteration):

# %%
from scipy import ndimage  # noqa: E402


def impute_numpy(image, removed, iterations=2000):
    kernel = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
    weight = ndimage.correlate(np.ones(removed.shape), kernel, mode="constant")
    out = np.where(removed, image.mean(axis=(1, 2), keepdims=True), image)
    for _ in range(iterations):  # each removed pixel <- the weighted mean of its neighbours
        mean = np.stack([ndimage.correlate(c, kernel, mode="constant") for c in out]) / weight
        out = np.where(removed, mean, image)
    return out


half = mv.vis.removal_mask(saliency[0], 0.5, "morf")  # the 50% most salient pixels of image 0
np.testing.assert_allclose(impute_numpy(x[0], half), mv.vis.noisy_linear_imputation(x[0], half, noise=0.0),
                           atol=1e-9)
print("Jacobi iteration == the sparse solve")

# %% [markdown]
# MoRF (most relevant first) should drop the probability fast, LeRF (least relevant first) should
# keep it: the paper reports both at $p = 10\%, \dots, 90\%$, and pytorch-grad-cam summarises them
# as $(\overline{\text{LeRF}} - \overline{\text{MoRF}})/2$ (higher is better).
# `tests/vis/attribution/test_road.py` checks the imputation and the scores against
# pytorch-grad-cam, and tests where it departs from the paper: it keeps pixels below a percentile
# (ties can remove everything), and adds its noise in normalised rather than pixel units.

# %%
fractions = (0.1, 0.3, 0.5, 0.7, 0.9) if not FAST else (0.2, 0.5, 0.8)
roads = {name: mv.vis.road(fashion, x, predicted, a, fractions=fractions) for name, a in maps.items()}
print(f"{'map':<20} MoRF mean (lower better)  LeRF mean (higher better)  combined")
for name, r in roads.items():
    print(f"{name:<20} {r.morf.mean():.3f}                     {r.lerf.mean():.3f}                      "
          f"{r.combined.mean():+.3f}")
assert roads["random"].combined.mean() < max(r.combined.mean() for k, r in roads.items() if k != "random")

panels = [("image", x[0, 0]), ("deletion: 50% black", np.where(half, black, x[0, 0])),
          ("ROAD: 50% imputed", mv.vis.noisy_linear_imputation(x[0], half)[0])]
fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
for ax, (title, img) in zip(axes, panels, strict=True):
    ax.imshow(img, cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
savefig(fig, "24_road_imputation")

# %% [markdown]
# **What to notice.** The black holes of deletion trace the saliency map's shape; the imputed image
# has no holes, only smooth patches, so far less of the mask survives. That is ROAD's bias: the
# patches look like blur, and the model still sees something it never saw in training, only a
# different something. A map whose removal a blur can hide (smooth, blob-like) is favoured. Compare
# the ranking of the five maps with the deletion table: where they disagree, one of the two
# protocols is measuring its own artefact. (Grad-CAM from `features.8` is coarse, and the zeros
# of its ReLU are ties, removed in row-major order: at 28 px it ranks pixels poorly under both.)

# %% [markdown]
# ## 2. Infidelity and sensitivity
#
# Infidelity asks whether the map predicts what a perturbation does to the output:
# $\mathrm{INFD} = \mathbb{E}_I\big[(I^\top \phi - (f(x) - f(x - I)))^2\big]$. For a *linear* model
# $f(x) - f(x - I) = w^\top I$, so the plain gradient $\phi = w$ has infidelity 0 for every
# perturbation (checked below), and gradient x input $x \odot w$ does not: infidelity measures an
# attribution *per unit of perturbation*, and the perturbation distribution decides which map wins.
# Max-sensitivity asks how far the map moves under a tiny input change,
# $\max_{\|\delta\|_\infty \le r} \|\phi(x + \delta) - \phi(x)\| / \|\phi(x)\|$; a constant map
# scores a perfect 0, which is why it is only read beside a faithfulness measure.

# %%
linear = mv.nn.Sequential(mv.nn.Flatten(), mv.nn.Linear(784, 10)).double().eval()
grad = mv.vis.input_gradient(linear, x, predicted)
assert np.allclose(mv.vis.infidelity(linear, x, predicted, grad, n_samples=4), 0, atol=1e-20)
assert (mv.vis.infidelity(linear, x, predicted, x * grad, n_samples=4) > 0).all()
for name in ("saliency", "gradient x input", "LRP eps-gamma-box"):
    a = maps[name] if maps[name].ndim == 4 else maps[name][:, None]
    print(f"{name:<20} infidelity {mv.vis.infidelity(fashion, x, predicted, a, n_samples=sized(8, 3)).mean():.3e}")
sens = mv.vis.max_sensitivity(lambda b: mv.vis.saliency(fashion, b, predicted), x, n_samples=sized(5, 2))
print("max-sensitivity of saliency:", sens)

# %% [markdown]
# ## 3. The pointing game
#
# Fashion-MNIST has a mask for free: the garment's pixels (here, brighter than 10% grey). A map
# scores a hit when its maximum lies on the garment.

# %%
masks = images[:n] > 25
for name, a in maps.items():
    print(f"{name:<20} pointing game hits {mv.vis.pointing_game(np.abs(a), masks).mean():.2f}")

# %% [markdown]
# ## 4. Sanity checks
#
# Adebayo et al. randomise the weights from the top layer downwards and ask how similar each
# method's map stays to the original: Spearman rank correlation of |map|, SSIM, and the
# correlation of HOG features. A method whose map survives the destruction of the model explains
# the image, not the model. Their finding, which we reproduce on `fashion_cnn`: the gradient
# changes immediately, guided backprop barely does.

# %%
sanity = {m: mv.vis.model_randomisation(fashion, x, predicted, m)
          for m in ("input_gradient", "guided_backprop", "gradient_x_input")}
for m, res in sanity.items():
    print(m)
    print(res.table())
assert sanity["guided_backprop"].scores["spearman_abs"][0].mean() > \
    sanity["input_gradient"].scores["spearman_abs"][0].mean()
fig = mv.plot.sanity_figure(list(sanity.values()))
savefig(fig, "24_sanity_cascade")
plt.close("all")

# %% [markdown]
# **What to notice** (fast mode, 3 images). The gradient's rank correlation drops to about 0.4 as
# soon as the logit layer is redrawn and near 0.1 once the convolutions go; guided backprop stays
# at 0.95 after the logit layer, about 0.8 with the whole classifier random, and still about 0.4
# when *every* layer is random: with random weights it still draws the garment's outline, as
# Adebayo et al. saw (its positive-only rule reconstructs image edges whatever the weights).
#
# `tests/vis/attribution/test_sanity_quantus.py` runs this cascade against Quantus's `MPRT` on
# the very same random weights and gets the same Spearman scores, layer by layer. It also pins
# down where Quantus parts from the paper: it reseeds its generator with one seed before *every*
# layer, so all layers are drawn from the same stream of numbers (ours get a stream each); its
# "average correlation" counts the untouched model's similarity of 1 as one of the layers; and
# its SSIM normalises maps over the whole batch, so one image's score depends on its neighbours.
#
# **A shortcut the cascade allows.** When the top $k$ layers are random, every layer below them
# still sees the same input with the same weights, so its output, and what its backward pass
# needs, are those of the first pass. `model_randomisation` records that first pass
# (`mv.nn.ForwardReplay`) and hands the unchanged layers back instead of recomputing them; only
# the forward pass shrinks (the gradient must still travel down through every layer). Check that
# the maps are the same to the last bit, and count the layer calls that were reused:

# %%
replay = mv.nn.ForwardReplay(fashion)
with replay.record():
    first = mv.vis.input_gradient(fashion, x, predicted)
saved_weight = fashion.classifier[3].weight
fashion.classifier[3].weight = mv.nn.Parameter(saved_weight.data[::-1].copy())  # the logit layer, changed
try:
    fresh = mv.vis.input_gradient(fashion, x, predicted)
    with replay.replay([fashion.classifier[3]]):
        reused = mv.vis.input_gradient(fashion, x, predicted)
finally:
    fashion.classifier[3].weight = saved_weight
assert np.array_equal(fresh, reused) and not np.allclose(fresh, first)
print(f"layer calls reused: {replay.replayed} of {len(replay.calls)} recorded")

# %% [markdown]
# Every layer but the changed one came from the record (its rows reversed: each class now reads
# another class's weights), and the maps still changed as they should: the reuse hid nothing. On
# `fashion_cnn` with 32 images this took the six-step cascade from about 155 to 128 ms
# (`benchmarks/README.md`).
#
# ## 5. Data randomisation
#
# The second sanity check changes the *data* instead of the weights. Train the same network on
# the training labels shuffled once (`minivis train fashion_cnn --permute-labels`): there is no
# relation left between image and label, so the only way to fit them is to memorise each image.
# Ours reached 96% accuracy on its 3,000 shuffled training labels and 9% on the test set (chance
# is 10%): it learned nothing about garments. An explanation of *what the model learned* should
# therefore look different for the two networks. Compare the maps of the same images, for the
# class the true model predicts.

# %%
random_labels = mv.models.load("fashion_cnn", weights="permuted_labels").double()
data_checks = {m: mv.vis.data_randomisation(fashion, random_labels, x, predicted, m)
               for m in ("saliency", "guided_backprop", "gradient_x_input")}
for m, res in data_checks.items():
    print(f"{m:<18}", "  ".join(f"{k} {v.mean():+.2f}" for k, v in res.scores.items()))
assert data_checks["guided_backprop"].scores["spearman_abs"].mean() > \
    data_checks["saliency"].scores["spearman_abs"].mean()
fig = mv.plot.sanity_figure(list(data_checks.values()))
savefig(fig, "24_sanity_data")
plt.close("all")

# %% [markdown]
# **What to notice** (full mode, 8 images). The gradient of the random-label network shares
# almost nothing with the true one: rank correlation of |map| about 0.1, SSIM about 0. Guided
# backprop keeps far more, about 0.5 and an SSIM of 0.3: it still outlines the garment. That is
# the paper's finding, in a weaker form than in the cascade above, where guided backprop stayed
# near 0.95 after the top layer was redrawn. The reason is what changed: here *every* layer was
# trained differently, the convolutions included, and guided backprop's picture is mostly made by
# the lower filters (what the top layers do barely reaches it). Gradient x input sits in between
# (about 0.2): multiplying by the image puts the garment back into any map.
#
# ## Summary
#
# * Deletion/insertion measure whether the map's ranking moves the output, under a protocol with
#   known biases (out-of-distribution holes, blur); compare maps under one protocol only.
# * ROAD imputes the removed pixels from their neighbours so the mask's shape leaks less; it
#   prefers maps whose removal looks like blur.
# * Infidelity and max-sensitivity are two sides: a map can be robust by ignoring the input.
# * The sanity checks test whether a map depends on the model (weight randomisation) and on what
#   it learned (a twin trained on shuffled labels); guided backprop fails the first and only
#   half passes the second.
#
# ## Exercises
#
# 1. Replace the black baseline of deletion by the blurred image. Which map's AUC moves most?
#    Does ROAD order the five maps as deletion does?
# 2. Run the cascade for Grad-CAM (`layer="features.8"`) and for LRP. Which passes?
# 3. Build a map that scores a better deletion AUC than saliency without looking at the model
#    (hint: high-contrast pixels first). What does that say about the metric?
