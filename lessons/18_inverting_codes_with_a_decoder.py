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
# # Lesson 18: inverting codes with a decoder, and class models with a learned prior
#
# **The question.** Lesson 11 asked what a layer's code still knows about the image, and
# answered by *search*: find an image whose code matches, guided by a hand-made prior (small
# pixels, smooth images). The lecture notes mention a second way: "directly train a network to
# map features to image". Dosovitskiy & Brox ("Inverting Visual Representations with
# Convolutional Networks", CVPR 2016) do exactly that: with the classifier fixed, they train an
# *up-convolutional decoder* $D$ on a dataset of (code, image) pairs,
#
# $$
# D^\star = \arg\min_D \; \frac1N \sum_i \lVert D(\Phi(x_i)) - x_i \rVert^2 ,
# $$
#
# and then invert any new code in one forward pass. The prior is no longer written by hand: it
# is learned from the training images.
#
# A decoder is also a *generator*: feed it a code and it draws an image of the kind it was
# trained on. Nguyen et al. ("Synthesizing the preferred inputs for neurons in neural networks
# via deep generator networks", NeurIPS 2016, "DGN-AM") use that to make class models look
# natural: optimise the code, not the pixels. The notes' "optimize latent space (produces even
# better images)". And the notes' other remark, "multi-modality", is Nguyen, Yosinski & Clune's
# multifaceted visualisation ("Multifaceted Feature Visualization", 2016): a class has several
# looks, and one class model per cluster of training images shows them.
#
# Plan: (1) why the L2-trained decoder returns the *average* image with a given code;
# (2) the linear case from scratch: the regression decoder versus the pseudo-inverse of lesson
# 11; (3) up-convolutional decoders for `fashion_cnn`'s layers, trained by minivis, compared
# layer by layer with the optimisation of lesson 11; (4) class models in pixel space, in the
# decoder's code space, and one per facet.

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv
from minivis.nn.hooks import forward_to

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. What an L2-trained decoder returns
#
# Fix a code value $\varphi$ and look at the images that have it, $\{x : \Phi(x) = \varphi\}$,
# weighted by how often they occur in the data. Write $m(\varphi) = \mathbb E[x \mid \Phi(x) =
# \varphi]$ for their mean. For any output $d$ the decoder could give for this code,
#
# $$
# \mathbb E\big[\lVert d - x \rVert^2 \mid \varphi\big]
# = \lVert d - m(\varphi) \rVert^2 + \mathbb E\big[\lVert x - m(\varphi) \rVert^2 \mid \varphi\big],
# $$
#
# because the cross term $2 (d - m)^\top \mathbb E[m - x \mid \varphi]$ vanishes. The second term
# does not depend on $d$, so the best output is $d = m(\varphi)$: **a decoder trained with the L2
# loss (and flexible enough) returns the conditional mean**. Two consequences to look for below:
#
# - where the code pins the image down (all images with code $\varphi$ look alike), the mean is
#   sharp, and the decoder gives the image back;
# - where the code leaves a choice (a max-pool forgets *where* in its window the maximum was; a
#   logit vector forgets almost everything but the class), the decoder averages the choices:
#   blur, never the high-frequency noise an unconstrained search can leave behind.
#
# An optimisation-based inversion returns *one* image with the right code, chosen by its prior;
# the decoder returns the *average* image with that code, chosen by the data. The decoder's
# reconstruction therefore need not have exactly the code it came from (the average of many
# images with code $\varphi$ may have another code); we will measure that too.

# %% [markdown]
# ## 2. The linear case, from scratch
#
# Take lesson 11's "layer": $\Phi(x) = W x$, a random $196 \times 784$ matrix. Lesson 11 inverted
# it with the pseudo-inverse (the minimum-norm image with that code) and with a TV prior. The
# best *affine* decoder $D(\varphi) = A \varphi + b$ for the L2 loss over a training set is a
# least-squares regression of the pixels on the codes, in closed form: with the codes in the
# rows of $\Phi$ (a column of ones appended), $[A\; b]^\top = (\Phi^\top \Phi)^{-1} \Phi^\top X$.
# It is the Wiener filter: it uses the covariance of *natural* images to fill in the 588
# null-space directions that the code does not fix.

# %%
images, labels = mv.data.fashion_mnist("train")
test_images, test_labels = mv.data.fashion_mnist("test")
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
n_train = sized(20000, 4000)
X = (images[:n_train].reshape(n_train, -1) / 255.0 - FASHION_MEAN) / FASHION_STD      # (N, 784) model units
X_test = (test_images[:500].reshape(500, -1) / 255.0 - FASHION_MEAN) / FASHION_STD
W = rng.standard_normal((196, 784)) / np.sqrt(784)
codes = X @ W.T                                                                        # (N, 196)

design = np.hstack([codes, np.ones((n_train, 1))])
Ab = np.linalg.lstsq(design, X, rcond=None)[0]                                         # (197, 784): [A^T; b]
regression = np.hstack([X_test @ W.T, np.ones((500, 1))]) @ Ab
pinv = (X_test @ W.T) @ np.linalg.pinv(W).T
relative = lambda r: np.mean(np.linalg.norm(r - X_test, axis=1) / np.linalg.norm(X_test, axis=1))  # noqa: E731
print(f"held-out image error: pseudo-inverse {relative(pinv):.3f}, regression decoder {relative(regression):.3f}")
assert relative(regression) < 0.7 * relative(pinv), "the data's covariance fills the null space"

# %% [markdown]
# The same decoder through minivis: an `mv.nn.Linear(196, 784)` with the closed-form weights.
# At the least-squares solution the gradient of the mean squared error, computed by minivis's
# autograd, must vanish (the normal equations $\Phi^\top(\Phi [A\,b]^\top - X) = 0$), while at a
# perturbed solution it must not. Then a few hundred Adam steps from zero, the way the conv
# decoders below are trained, approach the closed form.

# %%
decoder = mv.nn.Linear(196, 784).double()
decoder.load_state_dict({"weight": Ab[:196].T, "bias": Ab[196]})
loss = mv.F.mse_loss(decoder(mv.tensor(codes)), X)
loss.backward()
at_optimum = np.abs(decoder.weight.grad).max()
decoder.zero_grad()
decoder.load_state_dict({"weight": Ab[:196].T + 1e-3 * rng.standard_normal((784, 196)), "bias": Ab[196]})
mv.F.mse_loss(decoder(mv.tensor(codes)), X).backward()
print(f"max |dL/dA|: {at_optimum:.1e} at the closed form, {np.abs(decoder.weight.grad).max():.1e} off it")
assert at_optimum < 1e-3 * np.abs(decoder.weight.grad).max()

mv.nn.init.seed(0)
learned = mv.nn.Linear(196, 784).double()
optimizer = mv.optim.Adam(learned.parameters(), lr=3e-3)
for _ in range(sized(300, 60)):
    batch = rng.integers(0, n_train, 256)
    optimizer.zero_grad()
    mv.F.mse_loss(learned(mv.tensor(codes[batch])), X[batch]).backward()
    optimizer.step()
with mv.no_grad():
    trained = learned(mv.tensor(X_test @ W.T)).numpy()
print(f"Adam-trained linear decoder: held-out image error {relative(trained):.3f}")
assert relative(trained) < relative(pinv), "even a briefly trained decoder beats the pseudo-inverse"

show = [X_test[0], pinv[0], regression[0], trained[0]]
fig = mv.plot.image_grid([np.clip(s.reshape(28, 28) * FASHION_STD + FASHION_MEAN, 0, 1) for s in show], size=2.2,
                         titles=["original", f"pseudo-inverse\nerr {relative(pinv):.2f}",
                                 f"regression decoder\nerr {relative(regression):.2f}",
                                 f"Adam, {sized(300, 60)} steps\nerr {relative(trained):.2f}"],
                         suptitle="decoding 196 random projections of a 784-pixel image")
savefig(fig, "18_linear_decoder")

# %% [markdown]
# **What to notice.** The pseudo-inverse knows only $W$, so the null-space part of every image
# comes back as zero, and the picture is speckled. The regression decoder has seen what
# garments look like: it puts back the part of the image that is *predictable* from the code,
# and its error is much lower. That is the whole idea of a learned inverse, in one line of
# linear algebra. The networks below do the same with a non-linear code and a non-linear
# decoder.

# %% [markdown]
# ## 3. Up-convolutional decoders for `fashion_cnn`
#
# `mv.models.load_decoder(layer)` loads a decoder trained by minivis for five of `fashion_cnn`'s
# layers: the first ReLU (`features.1`, 32x28x28), the two max-pools (`features.4`, 32x14x14;
# `features.9`, 64x7x7), the hidden fully connected ReLU (`classifier.1`, 128 numbers) and the
# logits (`classifier.3`, 10 numbers). Each follows Dosovitskiy & Brox's recipe in miniature:
# a 3x3 convolution, then stride-2 *up-convolutions* until the image size (a transposed
# convolution with kernel 4, stride 2, padding 1 maps $H$ to $(H - 1) \cdot 2 - 2 + 4 = 2H$;
# lesson 01 shows it is the adjoint of a strided convolution), leaky ReLUs (slope 0.2) in
# between; a vector code first goes through a linear layer to a 32x7x7 map. Each was trained
# with Adam on the mean squared pixel error over Fashion-MNIST's training images, the
# classifier fixed, by
#
#     minivis train decoder --layer features.9 --into-package
#
# (`--out` for your own folder, `--epochs`, `--train-images`). The training logs ship with the
# weights:

# %%
model = mv.models.load("fashion_cnn")
layers = list(mv.models.DECODER_LAYERS)
decoders = {layer: mv.models.load_decoder(layer) for layer in layers}
print(decoders["features.9"])
for layer in layers:
    log = json.loads((mv.models.WEIGHTS_DIR / f"fashion_cnn_decoder_{layer}_train_log.json").read_text())
    params = sum(p.numpy().size for p in decoders[layer].parameters())
    print(f"{layer:13s} code {str(tuple(log['code_shape'])):14s} {params:7d} weights, {log['epochs']} epoch(s) "
          f"on {log['train_images']} images in {log['total_seconds'] / 60:.1f} min: test image error "
          f"{log['test_image_error']:.3f}")

# %% [markdown]
# Now the comparison the lesson is about. `mv.vis.compare_inversions` reconstructs the same test
# images from each layer twice: by the decoder (`mv.vis.invert_with_decoder`: one forward pass)
# and by lesson 11's optimisation (`mv.vis.invert`: L-BFGS on the feature error with the
# $\alpha$-norm and TV priors). Both are scored by the image error
# $\lVert x^\star - x_0 \rVert / \lVert x_0 \rVert$ and the feature error
# $\lVert \Phi(x^\star) - \Phi_0 \rVert^2 / \lVert \Phi_0 \rVert^2$.

# %%
x_test = model.preprocess(test_images[:sized(16, 4), ..., None])
start = time.perf_counter()
comparison = mv.vis.compare_inversions(model, decoders, x_test, steps=sized(200, 25), progress=False)
print(f"{len(x_test)} images, {len(layers)} layers in {time.perf_counter() - start:.1f} s "
      f"(decoders {comparison.seconds['decoder']:.2f} s, optimisation {comparison.seconds['optimisation']:.1f} s)\n")
print(comparison)
rows = {r["layer"]: r for r in comparison.rows()}
for layer in ("features.4", "features.9", "classifier.1", "classifier.3"):
    assert rows[layer]["decoder_image_error"] < rows[layer]["optimisation_image_error"], layer
decoder_errors = [rows[layer]["decoder_image_error"] for layer in layers]
assert decoder_errors[0] < decoder_errors[2] < decoder_errors[4], "deeper codes keep less of the image"
figure = mv.plot.inversion_comparison_figure(comparison, model, count=4,
                                            title="decoder (one pass) versus optimisation (lesson 11)")
savefig(figure, "18_decoder_versus_optimisation")

# %% [markdown]
# **What to notice.** (Numbers from the full run: 16 test images, 200 L-BFGS iterations.)
#
# - From the first ReLU both methods give the image back almost exactly (image errors near
#   0.06): 32 filters of a 28x28 image, before any pooling, lose little. The decoder is a little
#   closer, in one forward pass.
# - From the pools onwards the decoder wins, and by more the deeper the layer: about 0.14
#   against 0.18 after the first pool, 0.25 against 0.44 after the second. From the second pool
#   on, the optimisation finds an image with the *better code match* (its feature error is the
#   lower one, by a factor of five or more), but among the many images with that code it picks
#   one by a generic prior, and the textures it invents are not the garment's. The decoder's
#   answer matches the code worse and the image better: it is the average garment with that code.
# - From the hidden layer (128 numbers) and the logits (10 numbers), the optimisation is barely
#   better than the mean image (errors 0.94 and 0.98), while the decoder still draws a
#   recognisable garment of the right kind, in roughly the right shape: the code says *which*
#   class and a little about *which variant*, and the decoder knows what such garments look like.
# - The decoder's pictures are blurred exactly where the code is ambiguous, as section 1
#   predicts: the logo on the sweater, thin stripes and the exact outline go first.
# - Cost: the optimisation runs hundreds of forward and backward passes per image; the decoder
#   one forward pass, after a training run of minutes per layer.

# %% [markdown]
# ## 4. Class models with a learned prior
#
# ### 4a. In pixel space (lesson 10)
#
# Gradient ascent on a logit, with jitter and blur as the prior, from the mean image.

# %%
classes = model.labels
steps = sized(200, 30)
pixel = mv.vis.class_model(model, list(range(10)), steps=steps, lr=0.1, l2=0.0, jitter=2, blur_every=4,
                           blur_sigma=0.5, progress=False)

# %% [markdown]
# ### 4b. In the decoder's code space (a miniature DGN-AM)
#
# Now let the decoder of the hidden layer draw: $x = D(z)$ with $z \in \mathbb R^{128}$, and
# maximise $S_c(D(z))$ over $z$. The chain rule runs through both networks,
# $\partial S_c / \partial z = (\partial D / \partial z)^\top \partial S_c / \partial x$, and
# `mv.vis.latent_class_model` does it with the same loop as every other optimisation here
# (`GeneratorImage` is the parameterisation $z \mapsto D(z)$). As in DGN-AM, $z$ is kept in the
# box where real codes live after every step: between 0 (it is the output of a ReLU) and the
# largest value each unit takes on the training images.
#
# First a check, from scratch: the gradient with respect to $z$ against central differences in
# float64.

# %%
hidden = decoders["classifier.1"]
with mv.no_grad():
    train_codes = forward_to(model, mv.tensor(model.preprocess(images[:sized(5000, 1000), ..., None])),
                             "classifier.1").numpy()
high = train_codes.max(axis=0)                                                    # (128,)

model64, hidden64 = mv.models.FashionCNN(), mv.models.build_decoder("classifier.1")
model64.load_state_dict(model.state_dict())
hidden64.load_state_dict(hidden.state_dict())
model64.double().eval()
hidden64.double().eval()
z = train_codes[:1].astype(np.float64)
param = mv.vis.parameterization.GeneratorImage(hidden64, z)
mv.vis.objectives.class_logit(7)(model64, param.image()).backward(np.ones(1))
v = rng.standard_normal(z.shape)


def logit7(code):
    with mv.no_grad():
        return model64(hidden64(mv.tensor(code))).numpy()[0, 7]


numeric = (logit7(z + 1e-6 * v) - logit7(z - 1e-6 * v)) / 2e-6
np.testing.assert_allclose(np.vdot(param.code.grad, v), numeric, rtol=1e-6)
print("dS_c/dz through classifier and decoder == central differences")

latent = mv.vis.latent_class_model(model, hidden, list(range(10)), steps=steps, lr=0.1, code_range=(0.0, high),
                                   progress=False)
assert latent.info["code"].min() >= 0 and (latent.info["code"] <= high + 1e-6).all()

# %%
with mv.no_grad():
    pixel_scores = model(mv.tensor(pixel.x)).numpy()
    latent_scores = model(mv.tensor(latent.x)).numpy()
print("target logit, pixel space :", np.round(np.diag(pixel_scores), 1))
print("target logit, code space  :", np.round(np.diag(latent_scores), 1))
assert (latent_scores.argmax(axis=1) == np.arange(10)).all(), "every latent class model is classified as its class"
assert (latent.history[-1] > latent.history[0]).all()

fig, axes = plt.subplots(2, 10, figsize=(14, 3.4))
for c in range(10):
    for row, (result, scores) in enumerate([(pixel, pixel_scores), (latent, latent_scores)]):
        axes[row, c].imshow(result.image[c, :, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, c].set_title(f"{classes[c]}\n{scores[c, c]:.0f}", fontsize=7)
        axes[row, c].axis("off")
axes[0, 0].text(-0.15, 0.5, "pixels", transform=axes[0, 0].transAxes, ha="right", va="center")
axes[1, 0].text(-0.15, 0.5, "decoder code", transform=axes[1, 0].transAxes, ha="right", va="center")
fig.suptitle("class models of fashion_cnn: pixel space (jitter, blur) versus the hidden layer's code space")
fig.tight_layout()
savefig(fig, "18_pixel_versus_latent_class_models")

# %% [markdown]
# **What to notice.** The pixel-space class models reach far higher logits (50 to 130 in the
# full run) with strokes and fragments no garment has: the pixel prior only asks for
# smoothness. The code-space class models reach lower logits (10 to 26), but most are plausible
# garments of their class, because the decoder can only draw what looks like its training
# images: a T-shirt with sleeves, a pair of trousers, a pullover, a dress, a sneaker, an ankle
# boot. Not all: the coat becomes a bright blob, a code pushed to the edge of its box where the
# decoder saw few training codes. That trade, a lower score for an image from the data's world,
# is DGN-AM's. (Our decoder is trained with the L2 loss only, so its images are averages, soft
# and a little blurred; DGN-AM's generator adds an adversarial and a feature loss to be sharp.)

# %% [markdown]
# ### 4c. One class model per facet (multifaceted visualisation)
#
# A class is several things: a bag with a handle or a strap, seen from the front or from the
# side. Gradient ascent from the mean image finds one compromise. Nguyen, Yosinski & Clune
# cluster the codes of the class's training images (here k-means on the hidden layer's
# 128-number code, `scipy.cluster.vq.kmeans2`), average the images nearest each centre, and
# start one class model from each average.
#
# From scratch first: a k-means assignment step in NumPy, checked against the clusters
# `mv.vis.cluster_facets` returns (each image belongs to the nearest centre, up to the last
# update of the centres, which k-means makes after assigning).

# %%
k = 4
facet_class = 8  # bag
members = model.preprocess(images[labels == facet_class][:sized(1200, 300), ..., None])
facets = mv.vis.cluster_facets(model, members, "classifier.1", k=k, n_mean=15, seed=0)
with mv.no_grad():
    member_codes = forward_to(model, mv.tensor(members), "classifier.1").numpy().astype(np.float64)
distances = ((member_codes[:, None, :] - facets.centroids[None]) ** 2).sum(axis=2)
agreement = np.mean(distances.argmin(axis=1) == facets.labels)
means = np.stack([member_codes[facets.labels == c].mean(axis=0) for c in range(k)])
np.testing.assert_allclose(facets.centroids, means, rtol=1e-4, atol=1e-4)
print(f"cluster sizes {facets.sizes}; {agreement:.1%} of images are nearest their own centre")
assert agreement > 0.9

multi = mv.vis.multifaceted_class_model(model, members, facet_class, "classifier.1", k=k, n_mean=15,
                                        steps=30, lr=0.05, l2=0.0, jitter=1, blur_every=4,
                                        blur_sigma=0.5, progress=False)
flat = multi.facets.starts.reshape(k, -1)
assert min(np.linalg.norm(flat[i] - flat[j]) for i in range(k) for j in range(i)) > 0.5, "distinct starts"
assert (multi.result.history[-1] > multi.result.history[0]).all()

fig, axes = plt.subplots(2, k, figsize=(1.8 * k, 4))
for c in range(k):
    axes[0, c].imshow(model.deprocess(multi.facets.starts[c])[:, :, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, c].set_title(f"facet {c}: {multi.facets.sizes[c]} images\nmean of the 15 nearest", fontsize=7)
    axes[1, c].imshow(multi.result.image[c, :, :, 0], cmap="gray", vmin=0, vmax=1)
    axes[1, c].set_title(f"class model\nlogit {multi.result.history[0, c]:.0f} -> {multi.result.history[-1, c]:.0f}",
                         fontsize=7)
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle(f"multifaceted class models of '{classes[facet_class]}'")
fig.tight_layout()
savefig(fig, "18_multifaceted_class_models")

# %% [markdown]
# **What to notice.** The facets are different kinds of bag (their sizes say how common each
# kind is): flat clutches without a handle, and bags with one, found without labels, from the
# network's own code. Thirty steps of ascent raise each logit several-fold, yet each class model
# stays close to its start and strengthens what the network counts as "bag" in it (edges, the
# handle), so the four results differ the way the facets do. Run much longer (a few hundred
# steps, as in section 4a) and they drift to the same handle-and-blob pattern: the optimisation
# forgets its start, and the facets with it. Nguyen et al. keep the results apart the same way,
# by a start per facet and a limited, regularised ascent.

# %% [markdown]
# ## 5. Summary
#
# - A decoder trained with the squared error returns the *conditional mean* of the images that
#   share a code: sharp where the code decides, blurred where it leaves a choice.
# - In the linear case that is least-squares regression, and it beats the pseudo-inverse because
#   it knows the data's covariance. For `fashion_cnn` the up-convolutional decoders beat the
#   optimisation-based inversion of lesson 11 from the pools onwards, by more the deeper the
#   layer, while matching the code less exactly: a learned prior against a hand-made one.
# - A decoder is a generator: optimising its code instead of the pixels gives class models that
#   look like data (DGN-AM); clustering the codes of a class and starting from each cluster's
#   mean image shows the class's several facets (multifaceted visualisation).
# - `mv.models.load_decoder(layer)`, `minivis train decoder --layer L`,
#   `mv.vis.invert_with_decoder`, `mv.vis.compare_inversions`, `mv.vis.latent_class_model`,
#   `mv.vis.cluster_facets`, `mv.vis.multifaceted_class_model`.
#
# ## Exercises
#
# 1. **Which details survive?** Reconstruct test images from `features.4` and from
#    `features.9` with their decoders and subtract the originals. Where are the errors (edges,
#    textures, flat regions)? Relate what you see to the 2x2 max-pool between the two layers.
# 2. **A decoder for the random network.** Train a decoder for `features.9` of an *untrained*
#    `fashion_cnn` (`mv.models.build("fashion_cnn")`; adapt `minivis.train_decoder`). Is its test
#    error higher or lower than the trained network's? What does that say about what training
#    throws away?
# 3. **The box matters.** Run `mv.vis.latent_class_model` without `code_range`, and with the
#    box at 3x the largest training value. How do the logits and the pictures change, and why
#    does the decoder draw less plausible images for codes it never saw?
