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
# # Lesson 10: class model visualisation
#
# **The question.** Saliency maps (lesson 03) explain one decision about one photo. Can we ask
# the network about a class *in general*: what does the "flamingo" unit want to see, with no
# photo at all? Fix the weights and optimise the *image* instead: find the input that makes the
# class score as large as possible.
#
# Simonyan, Vedaldi & Zisserman ("Deep Inside Convolutional Networks: Visualising Image
# Classification Models and Saliency Maps", ICLR workshop 2014) posed it as
#
# $$
# I^\star \;=\; \arg\max_I \; S_c(I) \;-\; \lambda \lVert I \rVert_2^2 ,
# $$
#
# with $S_c$ the class score *before* the softmax, solved by gradient ascent from the zero
# image. Their pictures were recognisable but noisy. Yosinski, Clune, Nguyen, Fuchs & Lipson
# ("Understanding Neural Networks Through Deep Visualization", ICML workshop 2015) showed that
# a few cheap priors make them far more natural: blur, pixel clipping, jitter. Olah, Mordvintsev
# & Schubert ("Feature Visualization", Distill 2017) went further by changing *what is
# optimised*: a decorrelated Fourier parameterisation and robustness to random transformations.
#
# Plan: (1) derive the update; (2) code it in NumPy for a linear classifier, where the answer
# is known in closed form, and check minivis against it; (3) the same dozen lines for a CNN,
# checked against `mv.vis.class_model`; (4) on EfficientNet-Lite0, add the regularisers one at a
# time and look; (5) class models of a Fashion-MNIST network.

# %%
import time

import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The update
#
# Write $J(I) = S_c(I) - \lambda \lVert I \rVert^2$. Its gradient is
# $\nabla_I J = \nabla_I S_c(I) - 2 \lambda I$, where $\nabla_I S_c$ is exactly the saliency
# gradient of lesson 03 (one backward pass from the class logit). Gradient *ascent* with step
# size $\eta$:
#
# $$
# I_{t+1} \;=\; I_t + \eta \big(\nabla_I S_c(I_t) - 2 \lambda I_t\big)
# \;=\; (1 - 2\eta\lambda)\, I_t + \eta\, \nabla_I S_c(I_t).
# $$
#
# The second form is Yosinski et al.'s "L2 decay": shrink the image by a factor
# $1 - \theta$ every step, $\theta = 2 \eta \lambda$, then add the gradient.
#
# **Why the logit and not the probability?** With $P_c = e^{S_c} / \sum_k e^{S_k}$,
#
# $$
# \nabla_I \log P_c \;=\; \nabla_I S_c - \sum_k P_k \nabla_I S_k ,
# $$
#
# so the probability can also be raised by pushing the *other* classes down, an image of
# "not-a-dog" rather than of a flamingo. The logit only rewards evidence for class $c$.
#
# **A case with an answer.** For a linear classifier, $S_c(I) = w_c^\top I + b_c$, the gradient
# $w_c$ does not depend on $I$, the objective is concave, and setting $\nabla J = 0$ gives
#
# $$
# I^\star = \frac{w_c}{2 \lambda}, \qquad I_t - I^\star = (1 - 2\eta\lambda)^t (I_0 - I^\star):
# $$
#
# the class model of a linear classifier *is* its weight template, and the iteration contracts
# towards it by $1 - 2\eta\lambda$ per step.

# %% [markdown]
# ## 2. From scratch: a linear classifier on Fashion-MNIST
#
# Train softmax regression (ten templates $w_c \in \mathbb{R}^{784}$) for a few hundred
# full-batch gradient steps, then run the update above in NumPy.

# %%
images, labels = mv.data.fashion_mnist("train")
classes = list(mv.data.FASHION_MNIST_CLASSES)
n_train = sized(10000, 2000)
X = (images[:n_train].reshape(n_train, -1) / 255.0 - 0.2860) / 0.3530  # fashion_cnn's normalisation
Y = np.eye(10)[labels[:n_train]]
W, b = np.zeros((10, 784)), np.zeros(10)
for _ in range(sized(300, 100)):  # softmax regression, full batch
    logits = X @ W.T + b
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    W -= 0.5 * (P - Y).T @ X / n_train
    b -= 0.5 * (P - Y).mean(axis=0)
print(f"softmax regression, training accuracy {np.mean((X @ W.T + b).argmax(1) == labels[:n_train]):.3f}")

# %%
def class_model_numpy(grad_fn, c, shape, steps, lr, lam):
    """Gradient ascent on S_c(I) - lam ||I||^2 from the zero image; grad_fn(I, c) = dS_c/dI."""
    I = np.zeros(shape)
    for _ in range(steps):
        I = I + lr * (grad_fn(I, c) - 2 * lam * I)
    return I


lam, lr, steps = 0.05, 0.5, 200
linear_grad = lambda I, c: W[c]  # noqa: E731 (dS_c/dI of a linear model: its template)
I_np = np.stack([class_model_numpy(linear_grad, c, 784, steps, lr, lam) for c in range(10)])
rho = 1 - 2 * lr * lam  # the contraction per step
np.testing.assert_allclose(I_np, (1 - rho ** steps) * W / (2 * lam), rtol=1e-10, atol=1e-12)  # I_0 = 0
np.testing.assert_allclose(I_np, W / (2 * lam), rtol=1e-4, atol=1e-9)  # i.e. all but converged
print(f"contraction per step 1 - 2*lr*lam = {rho:.2f}: after {steps} steps the distance to w_c / 2 lambda "
      f"is {rho ** steps:.1e} of where it started")

# %% [markdown]
# The same through minivis: the linear model as an `mv.nn` network, and `mv.vis.class_model`
# with `optimizer="sgd"` (the plain update; the default is Adam, see below). One call makes all
# ten class models at once when the target is a list.

# %%
linear = mv.nn.Sequential(mv.nn.Flatten(), mv.nn.Linear(784, 10)).double()
linear.load_state_dict({"1.weight": W, "1.bias": b})
linear.in_channels = 1
result = mv.vis.class_model(linear, list(range(10)), steps=steps, lr=lr, l2=lam, optimizer="sgd",
                            size=28, progress=False)
np.testing.assert_allclose(result.x.reshape(10, 784), I_np, rtol=1e-9, atol=1e-12)
print("minivis == NumPy, both at w_c / (2 lambda)")

fig = mv.plot.image_grid([mv.plot.normalize(t.reshape(28, 28), symmetric=True) for t in I_np], titles=classes,
                         ncols=10, cmap="RdBu_r", size=1.3,
                         suptitle="class models of softmax regression = its templates w_c / 2 lambda")
savefig(fig, "10_linear_class_models")

# %% [markdown]
# **What to notice.** Red is where the class wants bright pixels, blue where it wants dark
# ones: trouser legs with a gap, the outline of a sandal, the sleeves of a pullover. A linear
# model has exactly one template per class, and gradient ascent just reads it out.

# %% [markdown]
# ## 3. A CNN: the same dozen lines, the gradient now changes with the image
#
# For a network, $\nabla_I S_c(I)$ depends on $I$ (which ReLUs are open, which pool input
# wins), so there is no closed form, only the iteration. The NumPy loop above works unchanged
# once `grad_fn` is one backward pass. We need a trained Fashion-MNIST network: the shipped
# `fashion_cnn` weights if present, else a short training run here.

# %%
def trained_fashion_cnn(steps: int, batch: int = 64) -> tuple[mv.models.ImageClassifier, bool]:
    """(model, True) with the shipped weights, else (a briefly trained model, False)."""
    try:
        return mv.models.load("fashion_cnn"), True
    except FileNotFoundError:
        print(f"fashion_cnn weights not found: training for {steps} steps here")
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN()
    x_train = model.preprocess(images[: steps * batch, :, :, None])
    y_train = np.array(labels[: steps * batch])
    opt = mv.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    for xb, yb in mv.data.batches(x_train, y_train, batch_size=batch, shuffle=True, seed=0):
        loss = mv.F.cross_entropy(model(mv.tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), False


start = time.perf_counter()
fashion, shipped = trained_fashion_cnn(sized(600, 40))
test_x, test_y = mv.data.fashion_mnist("test")
with mv.no_grad():
    accuracy = np.mean(fashion(mv.tensor(fashion.preprocess(test_x[:1000, :, :, None]))).numpy().argmax(1)
                       == test_y[:1000])
print(f"fashion_cnn test accuracy {accuracy:.3f} ({time.perf_counter() - start:.1f} s)")


def network_grad(model):
    def grad_fn(I, c):
        x = mv.tensor(I, requires_grad=True)
        model(x)[:, c].backward(np.ones(1))
        return x.grad
    return grad_fn


fashion64 = mv.models.FashionCNN()  # a float64 copy, for an exact comparison
fashion64.load_state_dict(fashion.state_dict())
fashion64.double().eval()
ours = class_model_numpy(network_grad(fashion64), 1, (1, 1, 28, 28), steps=10, lr=0.1, lam=0.01)
theirs = mv.vis.class_model(fashion64, 1, steps=10, lr=0.1, l2=0.01, optimizer="sgd", progress=False)
np.testing.assert_allclose(theirs.x, ours[0], rtol=1e-10, atol=1e-12)
print("NumPy loop with the network's gradient == mv.vis.class_model(optimizer='sgd')")

# %% [markdown]
# Plain SGD needs its step size tuned to the size of the gradient, which differs from network
# to network and changes as the image grows. `class_model` uses Adam by default: each pixel's
# step is scaled by a running estimate of its gradient's size, so `lr` is roughly "how far a
# pixel moves per step" in model-input units. Ten classes, one batch:

# %%
fashion_models = mv.vis.class_model(fashion, list(range(10)), steps=sized(200, 40), lr=0.1, l2=0.0, jitter=2,
                                    blur_every=4, blur_sigma=0.5, progress=False)
with mv.no_grad():
    scores = fashion(mv.tensor(fashion_models.x)).numpy()
rise = fashion_models.history[-1] - fashion_models.history[0]
ranks = (scores > scores[np.arange(10), np.arange(10)][:, None]).sum(axis=1) + 1
print(f"target logit rose by {rise.min():.1f} to {rise.max():.1f}; rank of the target class per image: {ranks}")
assert np.all(rise > (10.0 if shipped else 1.0)), "every target logit ends far above where it started"
if shipped:  # a briefly trained stand-in is not always this decisive
    assert np.all(ranks == 1), "with the trained weights every class model is classified as its class"
fig = mv.plot.synthesis_grid(fashion_models.image, [f"{c}\nlogit {scores[i, i]:.0f}" for i, c in enumerate(classes)],
                             ncols=10, size=1.4, suptitle="class models of fashion_cnn (Adam, jitter and blur)")
savefig(fig, "10_fashion_class_models")

# %% [markdown]
# **What to notice.** The target logits end far above where they started (and, with the trained
# weights, every image is classified as its own class). After the full 200 steps a few
# pictures hint at their garment: the coat's symmetric body with a bright line down the middle,
# the dress's long folds, a bright band along the bottom for the sneaker and the bag. Most are
# strokes, edge fragments and textures placed where each class's evidence lives (in fast mode,
# after 40 steps, nearly all are still texture). The network needs far less than a whole
# garment to be certain, and it is certain about images no camera would produce. Many pixels
# end outside the valid range and show as pure black or white: nothing here keeps them in
# range (the alpha-norm prior of lesson 11 is one way to keep them there). On a 28-pixel image
# a blur of half a pixel is strong; rerun with `blur_every=0` to see what it removes.

# %% [markdown]
# ## 4. EfficientNet-Lite0, one regulariser at a time
#
# Now an ImageNet network and the class "flamingo". Each run below adds one prior to the one
# before (all use Adam, from the mean image):
#
# - **plain**: nothing, just $\max_I S_c(I)$; the baseline.
# - **+ L2**: $-\lambda \lVert I \rVert^2$ (Simonyan; Yosinski's decay) keeps a few pixels from
#   growing without bound.
# - **+ blur**: a Gaussian blur every 4 steps; gradient ascent keeps adding high frequencies, the
#   blur removes them.
# - **+ jitter**: a random roll by a few pixels before each forward pass; the image must work at
#   many positions, not on one exact pixel grid.
# - **+ clipping**: zero the 10% of pixels with the smallest norm and the 10% with the smallest
#   contribution $\lvert \sum_c x \, \partial J / \partial x \rvert$; only the parts that matter stay,
#   the rest returns to the mean colour.
# - **FFT**: optimise a $1/f$-scaled spectrum in a decorrelated colour space, pixels through a
#   sigmoid; every frequency moves at about the same rate, colours move like natural colours.
# - **FFT + robust**: and random pad, jitter, scale and rotate at each step; the feature must
#   survive small transformations.

# %%
effnet = mv.models.load("efficientnet_lite0")
target = 130
size, steps = sized(128, 64), sized(120, 24)
runs = {
    "plain": dict(l2=0.0),
    "+ L2": dict(l2=1e-3),
    "+ blur": dict(l2=1e-3, blur_every=4, blur_sigma=0.5),
    "+ jitter": dict(l2=1e-3, blur_every=4, blur_sigma=0.5, jitter=sized(8, 4)),
    "+ clipping": dict(l2=1e-3, blur_every=4, blur_sigma=0.5, jitter=sized(8, 4), clip_norm_pct=10,
                       clip_contrib_pct=10),
    "FFT": dict(param="fft", l2=0.0),
    "FFT + robust": dict(param="fft", l2=0.0, transforms="standard"),
}
results = {}
for name, kwargs in runs.items():
    start = time.perf_counter()
    results[name] = mv.vis.class_model(effnet, target, steps=steps, size=size, seed=0, progress=False, **kwargs)
    print(f"{name:>13}: {time.perf_counter() - start:5.1f} s, logit {results[name].history[0]:6.2f} -> "
          f"{results[name].history[-1]:6.2f}")


# %% [markdown]
# Two numbers per image: where the network ranks flamingo on the final image (1 = top), and how
# much of the image's energy sits in the upper half of the spatial frequencies (noise lives
# there, photos have little).

# %%
def high_frequency_share(image: np.ndarray) -> float:
    """Share of the (mean-free) image's energy at spatial frequencies above 1/4 cycle per pixel."""
    grey = image.mean(axis=-1) - image.mean()
    power = np.abs(np.fft.fft2(grey)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij"))
    return float(power[f > 0.25].sum() / power.sum())


rows = []
for name, r in results.items():
    with mv.no_grad():
        logits = effnet(mv.tensor(r.x[None])).numpy()[0]
    rank = int((logits > logits[target]).sum()) + 1
    rows.append((name, rank, logits[target], high_frequency_share(r.image)))
    print(f"{name:>13}: flamingo rank {rank}, logit {logits[target]:6.2f}, "
          f"high-frequency share {rows[-1][3]:.3f}")

share = {name: s for name, _, _, s in rows}
rank = {name: r for name, r, _, _ in rows}
assert all(r.history[-1] > r.history[0] + 10 for r in results.values()), "every run raises the flamingo logit"
assert rank["+ L2"] == 1 and rank["FFT"] == 1, "unconstrained enough, the target becomes the top class"
assert share["+ blur"] < 0.5 * share["+ L2"], "blurring removes high-frequency energy"
assert share["FFT"] < share["plain"], "the 1/f spectrum parameterisation favours low frequencies"

fig = mv.plot.synthesis_grid(list(results.values()),
                             [f"{n}\nrank {rank}, hf {s:.2f}" for n, rank, _, s in rows], ncols=4, size=2.6,
                             suptitle=f"EfficientNet-Lite0, class model of '{effnet.labels[target]}' ({size} px)")
savefig(fig, "10_regularisers_one_by_one")

fig = mv.plot.history_plot({n: r for n, r in results.items()}, ylabel="flamingo logit (before the step)",
                           title="the objective during optimisation")
savefig(fig, "10_objective_curves")

# %% [markdown]
# **What to notice.**
#
# - *plain* and *+ L2* look like coloured static, yet the network ranks flamingo at or near the
#   top: it is most excited by a dense, high-frequency texture that no photo contains (over
#   half of their energy sits in the upper frequencies). With Adam, the L2 term does more than
#   cap pixel values: for pixels whose class gradient is tiny, Adam rescales the decay term to
#   a full-size step back towards the mean colour, so L2 acts like a soft pixel clipping here.
# - *+ blur* removes most of the high-frequency energy (the assert above) at little cost in logit,
#   and shapes appear: pink blobs, long thin curves. *+ jitter* asks for features that work at
#   every shift; the logit it reaches on the unshifted image is lower, and the parts become more
#   distinct. *+ clipping* returns the least useful pixels to the mean colour.
# - The *FFT* runs start from the same image but move along different directions: large smooth
#   structures and natural colours appear first, and the logit climbs fastest of all. With
#   transformation robustness the score on the untransformed image is lower than without, but the
#   image is the most photo-like of the row.
# - The curves show the price of each prior: every constraint lowers the score it reaches, and
#   that is the point: among all images the network scores highly, we ask for the ones that
#   also look like images. (The full-size run, without `MINIVIS_FAST`, makes all of this much
#   clearer at 128 pixels and 120 steps.)

# %% [markdown]
# ## 5. Summary
#
# - A class model is $\arg\max_I S_c(I) - \lambda\lVert I\rVert^2$, found by gradient ascent on the
#   image: $I \leftarrow (1 - 2\eta\lambda) I + \eta \nabla_I S_c(I)$. Use the logit, not the
#   probability, so that only evidence *for* the class is rewarded.
# - For a linear classifier the answer is the weight template $w_c / 2\lambda$; for a CNN it is a
#   fixed point of the iteration, with the saliency gradient as the driving force.
# - Unregularised, the network's favourite image is high-frequency noise. Natural-image priors
#   (blur, jitter, clipping; a decorrelated Fourier parameterisation; robustness to
#   transformations) lower the score slightly and make the image interpretable.
# - `mv.vis.class_model(model, c, ...)` switches each prior on separately; it accepts a list of
#   classes (one image each) or any objective from `minivis.vis.synthesis.objectives`.
#
# ## Exercises
#
# 1. **The softmax trap.** Replace the logit by the log-probability: pass
#    `objective = mv.vis.objectives.Objective(frozenset({""}), lambda a: mv.F.log_softmax(a[""])[:, c], "logp")`
#    as the target. Compare the images and the logits of *all* classes at the end: which classes
#    went down, and why does the picture change?
# 2. **Step size and decay.** For the linear classifier, plot $\lVert I_t - w_c / 2\lambda \rVert$ against $t$
#    for $\eta \in \{0.5, 5, 10, 11\}$ with $\lambda = 0.05$. Predict from $1 - 2\eta\lambda$ when the
#    iteration oscillates and when it diverges, then check.
# 3. **Units instead of classes.** Use `mv.vis.objectives.channel("_blocks.5", k)` as the target
#    for a few channels $k$, with `param="fft", transforms="standard"`. Which channels respond
#    to colour, which to texture, which to oriented edges? Compare with lesson 06's activations.
