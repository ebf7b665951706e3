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
# # Lesson 04: the DeconvNet and guided backpropagation
#
# **The question.** Lesson 03 explained a class score by its gradient with respect to the
# pixels: correct, but noisy to look at. Two older and younger methods draw much cleaner
# pictures by sending the signal back through the network *differently*:
#
# * the **DeconvNet** of Zeiler & Fergus ("Visualizing and Understanding Convolutional
#   Networks", ECCV 2014) runs a mirror image of the network from the top down: unpooling with
#   the *switches* recorded by max-pooling, a ReLU on the signal going down, and a convolution
#   with the transposed filters;
# * **guided backpropagation** of Springenberg, Dosovitskiy, Brox & Riedmiller ("Striving for
#   Simplicity: The All Convolutional Net", ICLR workshop 2015) combines the two: it lets a
#   signal through a ReLU only where the forward input *and* the signal are positive.
#
# Lesson 01 proved on a two-block toy that the DeconvNet is backpropagation with the ReLU's
# backward rule changed. Here we build the DeconvNet literally, layer by layer, for the whole
# `fashion_cnn`, check that it equals `mv.vis.deconvnet` (the gradient under the `deconvnet`
# rule), do the same for guided backprop, and then look at the pictures on Fashion-MNIST and on
# a photo with EfficientNet-Lite0. The lesson ends with the catch: a picture that stays clean
# no matter what the top of the network does is not explaining the top of the network
# (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized
from scipy.stats import spearmanr

import minivis as mv

np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

try:
    fashion = mv.models.load("fashion_cnn").double()
    trained = True
except FileNotFoundError:  # the weights ship with the project once trained; until then, a fixed random init
    mv.nn.init.seed(0)
    fashion = mv.models.FashionCNN().double().eval()
    trained = False
print("fashion_cnn:", "trained weights" if trained else "NO trained weights found, using a random init "
      "(every check below holds either way; the pictures only mean something once trained)")
images, labels = mv.data.fashion_mnist("test")
n_show = sized(6, 4)
x = fashion.preprocess(images[:n_show]).astype(np.float64)  # (n, 1, 28, 28), float64 for exact checks
with mv.no_grad():
    predicted = fashion(mv.tensor(x)).numpy().argmax(axis=1)
print("labels   ", labels[:n_show], "\npredicted", predicted)

# %% [markdown]
# ## 1. One layer at a time, three ways back
#
# Write one block of the network as $a = \max(z, 0)$, $z = C x$ (a convolution, as the matrix
# $C$ of lesson 01), followed by a max-pool $p = P a$ ($P$ selects the winner of each window,
# recorded as the switches). Let $g_p$ be the signal arriving at the pool's output from above.
#
# **Backpropagation** (the gradient $\partial S / \partial x$) applies the chain rule through
# the three steps in reverse:
#
# $$
# g_a = P^\top g_p, \qquad g_z = g_a \odot \mathbb{1}[z > 0], \qquad g_x = C^\top g_z .
# $$
#
# **The DeconvNet** reconstructs the input from the top in three steps that undo the layers:
# *unpool* by putting every value back at its switch ($P^\top$, lesson 01 section 4), *rectify*
# so only positive signal travels down ($\max(\cdot, 0)$, because Zeiler & Fergus wanted the
# reconstruction of a positive activation to be made of positive evidence), and *deconvolve*
# with the same filters transposed ($C^\top$, lesson 01 sections 2-3):
#
# $$
# g_a = P^\top g_p, \qquad g_z = g_a \odot \mathbb{1}[g_a > 0], \qquad g_x = C^\top g_z .
# $$
#
# The two differ in one mask only: backprop masks by where the **forward input** $z$ was
# positive, the DeconvNet by where the **signal** $g_a$ is. **Guided backprop** uses both:
#
# $$
# g_z = g_a \odot \mathbb{1}[z > 0] \odot \mathbb{1}[g_a > 0].
# $$
#
# The fully connected layers at the top are the same story with $C$ an ordinary weight
# matrix: a linear layer $y = W h + b$ sends $W^\top g$ back, under every rule. So all three
# methods are *one* backward pass through the same network, and a switch on the ReLU picks the
# method: `mv.backward_rule("gradient" | "deconvnet" | "guided")`.

# %% [markdown]
# ## 2. The literal DeconvNet of `fashion_cnn`, in NumPy
#
# `fashion_cnn` is `conv-relu-conv-relu-pool` twice, then `linear-relu-(dropout)-linear`.
# We need from the forward pass: the switches of both pools and, for the gradient and guided
# rules, the input of every ReLU. `mv.nn.capture` records the layers' outputs; the
# `MaxPool2d` layers keep their switches. Everything else is plain NumPy:
#
# * `unpool`: zeros, then each value written at its switch (a flat index in its plane);
# * `conv_t`: the transposed convolution of a 3x3, stride-1, padding-1 convolution, which is
#   (lesson 01) a padding-1 correlation with the kernel rotated by 180 degrees and its input
#   and output channels swapped.

# %%
def unpool(g, switches, size):
    """g (N, C, h, w) put back at the switches into zeros of spatial size ``size``."""
    n, c = g.shape[:2]
    out = np.zeros((n, c, size[0] * size[1]))
    np.put_along_axis(out, switches.reshape(n, c, -1), g.reshape(n, c, -1), axis=2)
    return out.reshape(n, c, *size)


def conv_t(g, w):
    """C^T g for a 3x3 convolution with padding 1: correlate the padded g with w flipped and transposed."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(g, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), (2, 3))
    return np.einsum("nohwab,oiab->nihw", windows, w[:, :, ::-1, ::-1])


def relu_back(g, z, rule):
    """The three ReLU rules: z is the forward input of the ReLU, g the signal from above."""
    return {"gradient": g * (z > 0), "deconvnet": g * (g > 0), "guided": g * (z > 0) * (g > 0)}[rule]


def backward_by_hand(model, x, target, rule):
    """The signal sent from the logit `target` down to the pixels, block by block (NumPy only)."""
    relus = ["features.1", "features.3", "features.6", "features.8", "classifier.1"]
    convs = ["features.0", "features.2", "features.5", "features.7"]  # the ReLU inputs are their outputs
    with mv.no_grad(), mv.nn.capture(model, convs + ["classifier.0"]) as acts:
        model(mv.tensor(x))  # also leaves the switches in the MaxPool2d layers
    z = {relu: acts[pre].numpy() for relu, pre in zip(relus, convs + ["classifier.0"], strict=True)}
    w = {name: model.get_submodule(name).weight.numpy() for name in convs + ["classifier.0", "classifier.3"]}

    g = np.zeros((x.shape[0], 10))
    g[np.arange(x.shape[0]), target] = 1.0  # dS_target / d logits
    g = g @ w["classifier.3"]  # linear: W^T g
    g = relu_back(g, z["classifier.1"], rule)  # (dropout is the identity in eval mode)
    g = (g @ w["classifier.0"]).reshape(-1, 64, 7, 7)  # linear, then undo the flatten
    g = unpool(g, model.features[9].switches, z["features.8"].shape[2:])  # back to the pool's input size
    g = conv_t(relu_back(g, z["features.8"], rule), w["features.7"])
    g = conv_t(relu_back(g, z["features.6"], rule), w["features.5"])
    g = unpool(g, model.features[4].switches, z["features.3"].shape[2:])
    g = conv_t(relu_back(g, z["features.3"], rule), w["features.2"])
    return conv_t(relu_back(g, z["features.1"], rule), w["features.0"])


# %% [markdown]
# The check: each hand-built pass equals the gradient that minivis computes under the same
# rule, for every image and its predicted class, to float64 rounding. For the DeconvNet this is
# the statement "the DeconvNet *is* backprop with the `deconvnet` rule", now on a real network.

# %%
by_hand = {rule: backward_by_hand(fashion, x, predicted, rule) for rule in ("gradient", "deconvnet", "guided")}
through_minivis = {
    "gradient": mv.vis.input_gradient(fashion, x, predicted),
    "deconvnet": mv.vis.deconvnet(fashion, x, predicted),
    "guided": mv.vis.guided_backprop(fashion, x, predicted),
}
for rule in by_hand:
    scale = np.abs(through_minivis[rule]).max()
    np.testing.assert_allclose(by_hand[rule], through_minivis[rule], rtol=1e-9, atol=1e-12 * scale)
    print(f"{rule:9s}: hand-built NumPy pass == minivis (max |difference| "
          f"{np.abs(by_hand[rule] - through_minivis[rule]).max():.1e}, largest value {scale:.2e})")
assert not np.allclose(by_hand["deconvnet"], by_hand["gradient"])  # ... and they really are different maps

# %% [markdown]
# The same literal DeconvNet written with minivis's building blocks, `max_unpool2d`, `relu`
# and `conv_transpose2d` with the layers' own weights, exactly as in Zeiler & Fergus's figure
# (a mirror network on top of the real one):

# %%
def deconvnet_layers(model, x, target):
    f, c = model.features, model.classifier
    with mv.no_grad():
        model(mv.tensor(x))  # records the switches
        g = np.zeros((x.shape[0], 10))
        g[np.arange(x.shape[0]), target] = 1.0
        s = mv.F.relu(mv.tensor(g) @ c[3].weight) @ c[0].weight  # linear layers: W^T g
        s = s.reshape(-1, 64, 7, 7)
        s = mv.F.max_unpool2d(s, f[9].switches, 2, output_size=(14, 14))
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[7].weight, padding=1)
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[5].weight, padding=1)
        s = mv.F.max_unpool2d(s, f[4].switches, 2, output_size=(28, 28))
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[2].weight, padding=1)
        return mv.F.conv_transpose2d(mv.F.relu(s), f[0].weight, padding=1).numpy()


layered = deconvnet_layers(fashion, x, predicted)
np.testing.assert_allclose(layered, through_minivis["deconvnet"], rtol=1e-9,
                           atol=1e-12 * np.abs(layered).max())
print("unpool -> relu -> conv_transpose2d, layer by layer == mv.vis.deconvnet")

# %% [markdown]
# ## 3. The pictures on Fashion-MNIST
#
# One row per test image: the image, the gradient (signed, red positive and blue negative),
# the DeconvNet and guided backprop (drawn with 0 at mid-grey, as the papers do).
#
# **What to notice** (with trained weights). The gradient is speckled with both signs, in
# patches that spill over the background: every ReLU the forward pass left open passes signal
# of either sign, and they interleave. The DeconvNet and guided backprop are sharper and draw
# the garment's edges (the sole and heel of the boot, the legs of the trousers). On this small
# network those two look much alike: their masks differ only at units that the forward pass
# closed but that receive a positive signal, and here such units carry little of it. With
# random weights (no trained weights shipped) guided backprop draws the input image itself
# while the gradient is noise: section 5 explains why that should worry us.

# %%
columns = [("gradient", "signed"), ("deconvnet", "rgb"), ("guided", "rgb")]
fig, axes = plt.subplots(n_show, 4, figsize=(7.2, 1.9 * n_show), squeeze=False)
for i in range(n_show):
    axes[i, 0].imshow(images[i], cmap="gray")
    axes[i, 0].set_title(f"{mv.data.FASHION_MNIST_CLASSES[labels[i]]}", fontsize=8)
    for ax, (rule, kind) in zip(axes[i, 1:], columns, strict=True):
        shown = mv.plot.attribution_image(through_minivis[rule][i], kind)
        ax.imshow(shown, cmap="RdBu_r" if kind == "signed" else "gray",
                  vmin=-1 if kind == "signed" else 0, vmax=1)
        ax.set_title(rule if i == 0 else "", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("fashion_cnn" + ("" if trained else " (random init)") + ": three ways back from the predicted class",
             fontsize=10)
savefig(fig, "04_fashion_three_rules")

# %% [markdown]
# ## 4. A photo, through EfficientNet-Lite0
#
# EfficientNet-Lite0 has no max-pooling (it downsamples with strided convolutions), batch
# norm, residual connections and ReLU6 instead of ReLU. None of that needs new code: the
# switches-and-transposes picture becomes "backprop through every op", and the rule applies to
# every rectifier of the ReLU family (for ReLU6 the forward mask is $0 < z < 6$). The
# DeconvNet "literally" only exists for the simple conv-ReLU-pool networks of 2014; the rule
# generalises it.

# %%
effnet = mv.models.load("efficientnet_lite0")
size = sized(224, 112)
photo = mv.data.photo("chelsea")
xp = effnet.preprocess(photo)
if size != 224:
    xp = mv.F.interpolate(mv.tensor(xp), size=(size, size), mode="bilinear").numpy()
with mv.no_grad():
    cat = int(effnet(mv.tensor(xp)).numpy()[0].argmax())
print(f"EfficientNet-Lite0 at {size} px says: {effnet.labels[cat]} ({cat})")
photo_maps = {
    "gradient": mv.vis.input_gradient(effnet, xp[0], cat),
    "deconvnet": mv.vis.deconvnet(effnet, xp[0], cat),
    "guided backprop": mv.vis.guided_backprop(effnet, xp[0], cat),
}
fig = mv.plot.show_attributions(effnet.deprocess(xp[0]), photo_maps,
                                kinds={"gradient": "rgb", "deconvnet": "rgb", "guided backprop": "rgb"},
                                title=f"EfficientNet-Lite0, class '{effnet.labels[cat]}', {size} px")
savefig(fig, "04_photo_three_rules")

# %% [markdown]
# **What to notice.** Guided backprop outlines the eyes and the nose sharply, in the photo's
# colours, and little else: the most readable of the three. The gradient has the same hot spots
# buried in high-frequency speckle. The DeconvNet shows almost no cat at all but a regular grid
# and a colour cast: its mask never consults the forward pass, so nothing suppresses the uneven
# coverage of the strided convolutions (lesson 01's checkerboard) or the constant parts of the
# signal.

# %% [markdown]
# ## 5. The catch: a sanity check
#
# Adebayo et al. proposed a test that any explanation *of the model* must pass: randomise the
# model's weights, from the top layer down, and the explanation must change. Here we re-draw
# only the last layer, the one that turns features into class scores, and compare each map
# before and after with the Spearman rank correlation of $|{\rm map}|$ (1: the same ranking of
# pixels, 0: unrelated).

# %%
def redraw_logit_layer(model, seed):
    mv.nn.init.seed(seed)
    fresh = mv.models.FashionCNN().double().eval()
    state = model.state_dict()
    state.update({k: v for k, v in fresh.state_dict().items() if k.startswith("classifier.3.")})
    fresh.load_state_dict(state)
    return fresh


randomized = redraw_logit_layer(fashion, seed=123)
after = {"gradient": mv.vis.input_gradient(randomized, x, predicted),
         "deconvnet": mv.vis.deconvnet(randomized, x, predicted),
         "guided": mv.vis.guided_backprop(randomized, x, predicted)}
similarity = {rule: np.mean([spearmanr(np.abs(through_minivis[rule][i]).ravel(), np.abs(after[rule][i]).ravel())[0]
                             for i in range(n_show)]) for rule in after}
for rule, value in similarity.items():
    print(f"{rule:9s}: rank correlation before/after re-drawing the logit layer {value:+.3f}")
assert similarity["guided"] > 0.9, "guided backprop hardly changes"
assert similarity["guided"] > similarity["gradient"] + 0.25, "... and changes far less than the gradient"

# %% [markdown]
# **What to notice.** The gradient changes a lot: it is a derivative of the class score, and
# the class score now means something else. Guided backprop hardly changes: the rule zeroes
# every negative signal at every layer, so the map is shaped by the image and the lower layers,
# almost whatever the top asks for. That makes guided backprop a beautiful picture of *what
# the lower layers see*, and a poor answer to *why the network chose this class*: the clean
# look is partly the method, not the model. The DeconvNet does react: its mask follows the
# signal, which changes with the top layer. With the shipped weights guided backprop keeps a
# rank correlation above 0.9, against roughly 0.4 to 0.5 for the gradient and the DeconvNet
# (`tests/vis/attribution/test_sanity_checks.py` runs the same check over more images and seeds).

# %%
fig, axes = plt.subplots(2, 3, figsize=(6, 4.2))
for col, rule in enumerate(after):
    for row, (maps, when) in enumerate(((through_minivis, "trained top" if trained else "original top"),
                                        (after, "re-drawn top"))):
        axes[row, col].imshow(mv.plot.attribution_image(maps[rule][0], "abs"), cmap="inferno")
        axes[row, col].set_title(f"{rule}, {when}" + (f"\nrank corr {similarity[rule]:+.2f}" if row else ""),
                                 fontsize=8)
        axes[row, col].axis("off")
savefig(fig, "04_sanity_check")

# %% [markdown]
# ## 6. Summary
#
# - The DeconvNet (unpool with switches, rectify the signal, transposed convolution) is
#   backpropagation with the ReLU's backward mask taken from the *signal* instead of the
#   *forward input*; we built it by hand for `fashion_cnn` and it equals `mv.vis.deconvnet`.
# - Guided backprop keeps both masks; the gradient keeps the forward one. One switch,
#   `mv.backward_rule`, gives all three, and it carries over unchanged to networks without
#   max-pooling and with ReLU6 (EfficientNet).
# - Cleaner is not truer: guided backprop barely reacts when the class layer is re-drawn, so
#   it says more about the image and the early layers than about the decision.
#
# ## Exercises
#
# 1. **Zeiler & Fergus's feature projections.** Instead of a class, start the DeconvNet from
#    one feature map: run the forward pass inside `mv.nn.capture(fashion, "features.8")`, keep
#    the strongest map of `acts["features.8"]` (zero the others), and call `.backward(g)` on the
#    captured tensor under `mv.backward_rule("deconvnet")` with an input that requires grad.
#    Show the 9 strongest maps' projections for one image. Which ones look like parts?
# 2. **Where does the speckle come from?** Count, for one image, how many ReLU units pass a
#    signal under each rule at each layer (`relu_back(...) != 0` in `backward_by_hand`). Plot the
#    counts per layer. Which rule keeps the fewest, and at which depth does guided backprop
#    drop most of them?
# 3. **The full cascade.** Extend section 5: re-draw `classifier.3`, then also `classifier.0`,
#    `features.7`, ... down to `features.0`, and plot the rank correlation of each method after
#    each step (Adebayo et al.'s Figure 2). At which depth does guided backprop finally change?
