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
# # Lesson 22: Layer-wise relevance propagation
#
# **The question.** A classifier gave class $c$ the score $f_c(x)$. How much of that score does
# each pixel account for? Saliency (lesson 03) answers a different question, how fast the score
# would change if a pixel moved; gradient x input multiplies that rate by the pixel's value and
# is closer, but on a deep network the gradient is noisy, shattered across neighbouring pixels.
# Layer-wise relevance propagation (Bach, Binder, Montavon, Klauschen, Müller & Samek, "On
# Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
# Propagation", PLoS ONE 2015) distributes the score itself, layer by layer, from the output back
# to the pixels, so that nothing is created or lost on the way:
#
# $$\sum_i R_i^{(\text{input})} = \dots = \sum_j R_j^{(l)} = \dots = f_c(x).$$
#
# Montavon, Lapuschkin, Binder, Samek & Müller ("Explaining nonlinear classification decisions
# with deep Taylor decomposition", Pattern Recognition 2017) showed where the propagation rules
# come from, and Montavon, Binder, Lapuschkin, Samek & Müller ("Layer-Wise Relevance Propagation:
# An Overview", 2019) which rule to use where. In minivis LRP is a *backward rule*, like guided
# backprop in lesson 04: the same `backward()` carries relevance instead of gradients, and each
# conv, linear, pooling and batch-norm op reads the rule assigned to it.

# %%
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

np.set_printoptions(precision=4, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

fashion = mv.models.load("fashion_cnn").double()
images, labels = mv.data.fashion_mnist("test")
n_show = sized(6, 3)
x = fashion.preprocess(images[:n_show]).astype(np.float64)  # (n, 1, 28, 28), float64 for exact checks
with mv.no_grad():
    logits = fashion(mv.tensor(x)).numpy()
predicted = logits.argmax(axis=1)
print("labels   ", labels[:n_show], "\npredicted", predicted)

# %% [markdown]
# ## 1. One layer, and the rule that conserves
#
# Take one layer, $z_j = \sum_i x_i w_{ij} + b_j$, followed by a rectifier $a_j = \max(0, z_j)$.
# Suppose the layer above has told us the relevance $R_j$ of each output. The input $i$
# contributed $z_{ij} = x_i w_{ij}$ to $z_j$, so share $R_j$ in proportion to the contributions:
#
# $$R_{i \leftarrow j} = \frac{z_{ij}}{z_j} R_j, \qquad R_i = \sum_j \frac{x_i w_{ij}}{z_j} R_j
#   = x_i \Big( W^\top \frac{R}{z} \Big)_i .$$
#
# This is **LRP-0**. Summing over $i$ gives $\sum_i R_i = \sum_j R_j (z_j - b_j) / z_j$: exactly
# conserved when there is no bias, and the bias keeps its share otherwise. The rectifier passes
# relevance straight through (an output that is 0 sends nothing: its $R_j$ was already
# $a_j \cdot (\ldots) = 0$ from the layer above).
#
# The right-hand form is the whole implementation: one forward of the layer for $z$, one
# division, one *transposed* layer (the input-gradient the engine already has for backprop), one
# product with the input. On a ReLU network without biases LRP-0 is exactly gradient x input:
# $R/z$ at each layer is the gradient rescaled by the ratio of relevance to activation, and those
# ratios telescope. We check that below.
#
# **Why not stop there?** On a deep network $z_j$ can be tiny, and $R_j / z_j$ explodes: the same
# noise as the gradient. The rules fix the denominator.
#
# * **epsilon**: $z_j + \epsilon\,\mathrm{sign}(z_j)$. A weak or contradictory output ($|z_j|$
#   small compared with $\epsilon$) keeps its relevance instead of passing it down amplified;
#   only salient explanation factors survive. Conservation then holds only approximately.
# * **gamma**: favour positive contributions, $w_{ij} \to w_{ij} + \gamma w_{ij}^+$:
#   $R_i = \sum_j x_i (w_{ij} + \gamma w^+_{ij}) / \sum_{i'} x_{i'} (w_{i'j} + \gamma w^+_{i'j}) R_j$.
#   As $\gamma \to \infty$ this is the **z+** rule (positive contributions only); it gives stable,
#   smoother maps in the lower convolutional layers. For an output with $z_j < 0$ the mirror image
#   applies ($w + \gamma w^-$), which is how Zennit generalises the rule and how minivis follows it.
# * **alpha-beta**: positive and negative contributions separately, $\alpha$ times the positive
#   share minus $\beta$ times the negative one, with $\alpha - \beta = 1$ to conserve.
# * **z^B** for the pixel layer, whose inputs are bounded, $l_i \le x_i \le h_i$:
#   $R_i = \sum_j (x_i w_{ij} - l_i w^+_{ij} - h_i w^-_{ij}) / \sum_{i'} (\ldots) R_j$.
# * **flat** and **w^2**: share by $1$ or by $w_{ij}^2$, not by the input at all.
#
# **Where the rules come from (deep Taylor).** Expand the neuron's relevance, seen as a function
# of its inputs, to first order at a *root point* $\tilde x$ where it vanishes:
# $R_j(x) \approx \sum_i (x_i - \tilde x_i)\, \partial R_j / \partial x_i$. With $R_j$ proportional
# to $a_j$ on the region where the neuron is on, the gradient is $\propto w_{ij}$, so each rule is
# a choice of root point along a search direction $v$: $\tilde x = x - t v$ with $t$ solving
# $z_j(\tilde x) = 0$. The direction $v = x$ (shrink towards 0) gives LRP-0; the direction
# $v_i = x_i 1[w_{ij} > 0]$ (remove only the positive contributions, which keeps the root inside
# the positive orthant of ReLU activations) gives z+; the direction that stays inside the box
# $[l, h]$ gives z^B. The rule is a first-order Taylor decomposition at a well-chosen reference.
#
# The composites of Montavon et al. 2019 pick the rule by position: z^B at the pixels, gamma (or
# z+, or alpha2-beta1) in the convolutions, epsilon in the dense layers, LRP-0 near the output.

# %% [markdown]
# ## 2. From scratch in NumPy
#
# A dense ReLU network is enough to see every step. Here are LRP-epsilon and LRP-gamma for a
# list of `(W, b)` layers (ReLU between them), in a dozen lines.

# %%
def lrp_dense(layers, x, target, rule="epsilon", eps=1e-6, gamma=0.25):
    acts = [x]
    for k, (W, b) in enumerate(layers):
        z = acts[-1] @ W.T + b
        acts.append(np.maximum(z, 0) if k < len(layers) - 1 else z)
    R = np.zeros_like(acts[-1])
    R[np.arange(len(x)), target] = acts[-1][np.arange(len(x)), target]  # start from the logit

    def stab(z, e):
        return z + e * np.where(z >= 0, 1.0, -1.0)  # sign(0) = +1

    for (W, b), a in zip(reversed(layers), reversed(acts[:-1]), strict=True):
        if rule == "epsilon":
            R = a * ((R / stab(a @ W.T + b, eps)) @ W)    # x_i * (W^T s)_i
            continue
        z = a @ W.T + b                                    # gamma (a >= 0 here): positive outputs favour
        up, down = W + gamma * np.maximum(W, 0), W + gamma * np.minimum(W, 0)   # positive weights, and
        b_up, b_down = b + gamma * np.maximum(b, 0), b + gamma * np.minimum(b, 0)  # negative ones the mirror
        R = a * ((R * (z > 0) / stab(a @ up.T + b_up, 1e-6)) @ up
                 + (R * (z < 0) / stab(a @ down.T + b_down, 1e-6)) @ down)
    return R


# %% [markdown]
# The same network as a minivis model, and the check: identical numbers from the engine's
# backward pass under the rule. (`mv.vis.lrp` starts from the logit, as we did, so the total is
# comparable with $f_c(x)$.) Then the LRP-0 = gradient x input identity on the bias-free version.

# %%
rng = np.random.default_rng(0)
mlp = mv.nn.Sequential(mv.nn.Linear(20, 16), mv.nn.ReLU(), mv.nn.Linear(16, 12), mv.nn.ReLU(),
                       mv.nn.Linear(12, 4)).double().eval()
dense = [(m.weight.numpy(), m.bias.numpy()) for m in mlp if isinstance(m, mv.nn.Linear)]
v = np.abs(rng.standard_normal((5, 20)))  # nonnegative inputs, as after a rectifier
c = np.array([0, 1, 2, 3, 0])
ours_eps = lrp_dense(dense, v, c, "epsilon")
ours_gamma = lrp_dense(dense, v, c, "gamma")
print("NumPy LRP-epsilon total per row:", ours_eps.sum(axis=1))

# %% [markdown]
# `mv.vis.lrp` takes image batches, so for the dense network we put the same rule map in force
# ourselves (`mv.LRPRules`: the rule of each layer, by its weight) and call `backward()` on the
# logits, exactly as `mv.vis.lrp` does inside.

# %%
def engine_lrp(model, inputs, target, rule):
    rules = mv.LRPRules({m.weight: (name, rule) for name, m in model.named_modules()
                         if isinstance(m, mv.nn.Linear)})
    xt = mv.tensor(inputs, requires_grad=True)
    score = model(xt)[np.arange(len(inputs)), target]
    with mv.backward_rule(rules):
        score.backward(score.data)  # relevance at the top = the logit
    return xt.grad


np.testing.assert_allclose(engine_lrp(mlp, v, c, mv.LRPRule("epsilon")), ours_eps, rtol=1e-10, atol=1e-14)
np.testing.assert_allclose(engine_lrp(mlp, v, c, mv.LRPRule("gamma", gamma=0.25)), ours_gamma, rtol=1e-10,
                           atol=1e-14)
print("NumPy == engine for epsilon and gamma")

# LRP-0 on the bias-free ReLU network is gradient x input, and conserves exactly.
for m in mlp:
    if isinstance(m, mv.nn.Linear):
        m.bias = None
xt = mv.tensor(v, requires_grad=True)
out = mlp(xt)
out[np.arange(5), c].sum().backward()
lrp0 = engine_lrp(mlp, v, c, mv.LRPRule("zero"))
np.testing.assert_allclose(lrp0, v * xt.grad, rtol=1e-10, atol=1e-14)
np.testing.assert_allclose(lrp0.sum(axis=1), out.numpy()[np.arange(5), c], rtol=1e-10)
print("LRP-0 == gradient x input, and sums to the logit:", lrp0.sum(axis=1))

# %% [markdown]
# ## 3. The engine: rules in force during `backward()`
#
# Nothing above used a hook. `mv.backward_rule(rules)` sets the rule map that is in force *when
# `backward()` runs*; the linear op's backward (`minivis/functional/linear.py`) asks it for its
# layer's rule and calls `minivis/functional/lrp.py`, where every rule is the three steps of
# section 1 with a different forward and denominator. Conv2d, the pools, batch norm and the
# residual sum do the same; the rectifiers pass relevance through.
#
# On `fashion_cnn` the composites assign the rules by position. The input relevance sums to the
# logit up to what the biases and epsilon absorb; the table shows how much each composite keeps.
# (`tests/vis/attribution/test_lrp.py` checks every rule and composite against Zennit on
# identical weights to 1e-10, and conservation on bias-free networks.)

# %%
composites = ["zero", "epsilon", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1"]
maps = {name: mv.vis.lrp(fashion, x, predicted, composite=name) for name in composites}
xt = mv.tensor(x, requires_grad=True)
fashion.requires_grad_(False)
fashion(xt)[np.arange(n_show), predicted].sum().backward()
grad_x_input = x * xt.grad
explained = logits[np.arange(n_show), predicted]
print(f"{'composite':<22} relevance sum / logit, per image")
for name, r in maps.items():
    print(f"{name:<22} {r.sum(axis=(1, 2, 3)) / explained}")
assert all(np.isfinite(r).all() for r in maps.values())
# The bias-free parts conserve: at the last layer alone LRP-0 keeps logit - bias.
head = fashion.classifier[3]
keep = (explained - head.bias.numpy()[predicted]) / explained
print("share of the logit not held by the last bias:", keep)

# %% [markdown]
# ## 4. The picture
#
# **What to notice.** Gradient x input, LRP-0 and epsilon are nearly the same map (epsilon = 1e-6
# is far below these activations): speckled, red and blue pixels side by side, over the garment and
# over the background alike (a black pixel is not 0 after normalisation but about -0.8, so it
# carries relevance too). The composites with z+ or gamma in the convolutions give coherent
# regions on the parts that distinguish the class: the boot's sole and heel, the pullover's cuffs
# and hem, the trousers' legs and waistband. Alpha2-beta1 sits in between, with some blue where
# the negative contributions win. The colour map is diverging and centred at 0, one scale for
# both signs, so a blue pixel is evidence against the class, never just "less red".

# %%
fig = mv.plot.show_relevance(
    images[:n_show], {"gradient x input": grad_x_input, **{name: maps[name] for name in composites}},
    labels=[mv.data.FASHION_MNIST_CLASSES[k] for k in predicted],
    title="fashion_cnn: LRP composites for the predicted class (red: for, blue: against)")
savefig(fig, "22_lrp_composites")

# %% [markdown]
# ## 5. Batch norm: canonisation
#
# A batch norm in evaluation mode is a per-channel affine map, $y = s(z - \mu) + \beta$ with
# $s = \gamma / \sqrt{\sigma^2 + \epsilon}$. Applied to the output of a convolution it can be
# folded into it: weight $s W$, bias $s(b - \mu) + \beta$. The network computes the same function,
# but the rules now see one affine layer instead of two, and the gamma or z+ rule is applied to
# the weights that actually act on the input. `mv.vis.lrp(..., canonize=True)` (the default) does
# this for every batch norm fed directly by a conv or linear layer and restores the model after.
#
# A detail where minivis departs from Zennit: after folding, minivis sets the batch norm to the
# exact identity (eps 0); Zennit leaves eps in place, so its canonised network computes
# $x/\sqrt{1 + \epsilon}$ at each batch norm and its output moves by about $\epsilon / 2$. The
# test suite checks both facts.

# %%
bn_net = mv.nn.Sequential(mv.nn.Conv2d(1, 4, 3, padding=1), mv.nn.BatchNorm2d(4), mv.nn.ReLU(),
                          mv.nn.Flatten(), mv.nn.Linear(4 * 28 * 28, 3)).double().eval()
bn = bn_net[1]
bn.register_buffer("running_mean", rng.uniform(-0.5, 0.5, 4))
bn.register_buffer("running_var", rng.uniform(0.5, 2.0, 4))
with mv.no_grad():
    before = bn_net(mv.tensor(x)).numpy()
with mv.vis.canonized(bn_net, x) as folded:
    with mv.no_grad():
        after = bn_net(mv.tensor(x)).numpy()
print("folded:", folded, " largest output change:", np.abs(after - before).max())
np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-13)

# %% [markdown]
# ## Summary
#
# * LRP shares the explained logit among the inputs layer by layer: $R_i = x_i (W^\top R/z)_i$
#   for LRP-0, the same three steps with another denominator for every other rule.
# * It is a backward pass with different rules: in minivis `mv.backward_rule(mv.LRPRules(...))`,
#   read by conv, linear, pooling, batch-norm and sum ops; `mv.vis.lrp` wraps it with composites.
# * LRP-0 on a bias-free ReLU network *is* gradient x input; epsilon and gamma exist to tame the
#   noise that comes with it, and the deep Taylor view explains them as choices of root point.
# * Conservation is a property of the rules without biases; the bias and epsilon terms absorb
#   relevance, and it is worth measuring how much (section 3).
#
# ## Exercises
#
# 1. Run `mv.vis.lrp` with `composite="epsilon"` for epsilon in 1e-6, 0.01, 0.1, 1 on one image.
#    Plot the relevance sum against epsilon. At what epsilon does the map stop looking like
#    gradient x input?
# 2. Build the gamma rule for a layer by hand (section 2) and show that as gamma grows it
#    approaches z+. How large must gamma be for the two maps to agree to 1%?
# 3. Replace the z^B rule at the first layer of `epsilon_gamma_box` by `flat`
#    (`rules={"features.0": "flat"}`). What happens to the fine detail, and why?
