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
# # Lesson 13: adversarial and fooling images
#
# **Question.** Gradient ascent on the input made class models (lesson 10) and dreams (lesson 12).
# Pointed at a *photo*, the same gradient finds changes too small to see that flip the network's
# answer (Szegedy et al., "Intriguing properties of neural networks", 2014); started from noise,
# it finds meaningless images the network labels with ">99.6% confidence" (Nguyen, Yosinski &
# Clune, "Deep Neural Networks are Easily Fooled", CVPR 2015). Why is it so easy?
#
# ## The linear view (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", 2015)
#
# Near an input $x$ the loss is close to linear: $L(x + \delta) \approx L(x) + g^\top \delta$,
# $g = \nabla_x L(x)$. Allow every pixel to move by at most $\varepsilon$
# ($\|\delta\|_\infty \le \varepsilon$). The linear term is maximised coordinate by coordinate:
# $\delta_i = \varepsilon\,\mathrm{sign}(g_i)$, which raises the loss by
#
# $$g^\top \delta = \varepsilon \sum_i |g_i| = \varepsilon \|g\|_1 \approx \varepsilon\, D\, \overline{|g|}.$$
#
# Each pixel moves imperceptibly, but the effect grows with the dimension $D$
# ($224\cdot224\cdot3 \approx 150{,}000$): many tiny pushes all in the worst direction add up.
# That is the **fast gradient sign method**:
#
# $$x_{adv} = \mathrm{clip}\big(x + \varepsilon\,\mathrm{sign}(\nabla_x L(x, y))\big).$$
#
# **Targeted, iterated.** To reach a *chosen* class $t$, descend $L(x, t)$ instead, in several
# small signed steps, each followed by a projection back into the $\varepsilon$-ball around $x$
# and the valid pixel range (projected gradient descent). A **fooling image** is the same
# ascent with no photo and no ball: start from noise or black.
#
# $\varepsilon$ is in *pixel* units (the $[0, 1]$ image scale): one model-input unit is `std`
# pixels, so the input-space step is $\varepsilon / \mathrm{std}$.

# %%
import time

import numpy as np
from _common import savefig, sized

import minivis as mv

start = time.time()
rng = np.random.default_rng(0)

# %% [markdown]
# ## From scratch in NumPy: the linear model and the dimension
#
# For a linear score $s(x) = w^\top x$, the worst $\varepsilon$-change adds $\varepsilon\|w\|_1$.
# With weights of typical size the change grows linearly with $D$ while each pixel moves by
# only $\varepsilon$.

# %%
eps = 2 / 255
for D in (10, 1_000, 150_000):
    w = rng.standard_normal(D) / np.sqrt(D)        # scores of order 1 whatever D
    x = rng.uniform(0, 1, D)
    delta = eps * np.sign(w)                       # FGSM for the score
    gain = w @ (x + delta) - w @ x
    assert np.isclose(gain, eps * np.abs(w).sum())
    print(f"D = {D:>7}: score change {gain:.3f} (each pixel moved by {eps:.4f})")

# %% [markdown]
# ## From scratch: a projected targeted attack on a linear softmax classifier
#
# For logits $s = Wx + b$ and $p = \mathrm{softmax}(s)$, the cross-entropy of the target class
# $t$ is $L = -\log p_t$, and
#
# $$\frac{\partial L}{\partial s} = p - e_t, \qquad \frac{\partial L}{\partial x} = W^\top (p - e_t).$$
#
# The targeted attack descends $L$ with signed steps of size $\alpha$ and projects back after
# each one: into the box $[x_0 - \varepsilon, x_0 + \varepsilon]$ around the original and into
# the valid pixels $[0, 1]$ (for a model without a mean and std, input units are pixel units).
# It stops once $p_t$ reaches the confidence. Fifteen lines of NumPy, then the same attack
# through `mv.vis.targeted_attack` on the same classifier written as a minivis network: the
# iterates must agree exactly.

# %%
W_lin, b_lin = rng.standard_normal((3, 36)), rng.standard_normal(3) * 0.1
x_small = rng.uniform(0.2, 0.8, (1, 6, 6))  # one grey-scale 6x6 "image" in [0, 1]


def pgd_numpy(x0, t, epsilon, alpha, steps, confidence):
    x = x0.copy()
    for _ in range(steps):
        s = W_lin @ x.ravel() + b_lin
        p = np.exp(s - s.max())
        p /= p.sum()
        if p[t] >= confidence:
            break
        g = (W_lin.T @ (p - np.eye(3)[t])).reshape(x.shape)  # dL/dx = W^T (p - e_t)
        x = np.clip(np.clip(x - alpha * np.sign(g), x0 - epsilon, x0 + epsilon), 0.0, 1.0)
    return x, p[t]


start_class = int(np.argmax(W_lin @ x_small.ravel() + b_lin))
t_small = (start_class + 1) % 3
x_np, p_np = pgd_numpy(x_small, t_small, epsilon=0.2, alpha=0.01, steps=60, confidence=0.9)
linear = mv.nn.Sequential(mv.nn.Flatten(), mv.nn.Linear(36, 3)).double()
linear.load_state_dict({"1.weight": W_lin, "1.bias": b_lin})
ours_small = mv.vis.targeted_attack(linear, x_small, t_small, epsilon=0.2, step_size=0.01, steps=60,
                                    confidence=0.9, progress=False)
print(f"class {start_class} -> {t_small}: NumPy p = {p_np:.4f}, minivis p = {ours_small.target_prob:.4f} "
      f"after {ours_small.steps} steps, ||x_adv - x||_inf = {ours_small.linf:.3f}")
np.testing.assert_allclose(ours_small.x, x_np, rtol=0, atol=1e-12)
assert np.abs(x_np - x_small).max() <= 0.2 + 1e-12 and p_np >= 0.9 and ours_small.info["success"]

# %% [markdown]
# ## FGSM on EfficientNet-Lite0, by hand and with `mv.vis.fgsm`

# %%
model = mv.models.load("efficientnet_lite0")
size = sized(224, 48)
x = mv.F.interpolate(mv.tensor(model.preprocess(mv.data.photo("chelsea"))), size=(size, size),
                     mode="bilinear").numpy()[0]
std, mean = np.float32(model.std[0]), np.float32(model.mean[0])


def probs_of(x):
    with mv.no_grad():
        return mv.F.softmax(model(mv.tensor(x[None])), axis=-1).numpy()[0]


p0 = probs_of(x)
label = int(p0.argmax())
print(f"clean prediction: {model.labels[label]!r} ({p0[label]:.3f})")

# by hand: the gradient of the cross-entropy with respect to the input, then the signed step
model.requires_grad_(False)
xt = mv.tensor(x[None], requires_grad=True)
mv.F.cross_entropy(model(xt), np.array([label]), reduction="sum").backward()
model.requires_grad_(True)
x_hand = np.clip(x + eps / std * np.sign(xt.grad[0]), (0 - mean) / std, (1 - mean) / std)

fg = mv.vis.fgsm(model, x, label, epsilon=eps)
np.testing.assert_allclose(fg.x, x_hand, rtol=1e-6, atol=1e-6)
assert fg.linf <= eps + 1e-6
print(f"after FGSM (eps = 2/255): p({model.labels[label]!r}) = {fg.target_prob:.3f}, "
      f"prediction {model.labels[int(fg.prediction)]!r}")
assert fg.target_prob < p0[label]

# %% [markdown]
# ## Targeted attack: chelsea the cat becomes a goldfish
#
# Class 1 of ImageNet is *goldfish*. Projected signed steps of $2/255$ inside
# $\|x_{adv} - x\|_\infty \le 8/255$, until $p(\text{goldfish}) \ge 0.99$.

# %%
target = 1
attack = mv.vis.targeted_attack(model, x, target, epsilon=8 / 255, step_size=2 / 255, steps=sized(40, 20),
                                confidence=0.99, progress=False)
print(f"{attack.steps} steps: p({model.labels[target]!r}) = {attack.target_prob:.4f}, "
      f"||x_adv - x||_inf = {attack.linf * 255:.2f}/255")
assert attack.info["success"] and attack.target_prob >= 0.99
assert attack.linf <= 8 / 255 + 1e-6
assert np.abs(attack.image - model.deprocess(x[None])[0]).max() <= 8 / 255 + 1e-5
assert probs_of(attack.x)[target] >= 0.99

# %% [markdown]
# **What to notice.** The attacked photo looks like the original; the difference (magnified in
# the figure) is structured noise spread over the whole image, every pixel within 8 grey levels.

# %%
clean = model.deprocess(x[None])[0]
diff = 0.5 + (attack.image - clean) * (0.5 / (8 / 255))
fig = mv.plot.synthesis_grid([clean, fg.image, attack.image, np.clip(diff, 0, 1)],
                             titles=[f"clean: {model.labels[label]}", "FGSM 2/255",
                                     f"targeted: {model.labels[target]} {attack.target_prob:.3f}",
                                     "difference x (255/16)"])
savefig(fig, "13_adversarial")

# %% [markdown]
# ## A fooling image from noise
#
# No photo this time: start from grey plus noise and ascend $\log p(\text{goldfish})$ until the
# network is 99.6% sure.

# %%
fool_size = sized(224, 48)
fool = mv.vis.fooling_image(model, target, start="noise", confidence=0.996, max_steps=sized(200, 40),
                            step_size=2 / 255, size=fool_size, progress=False)
print(f"fooling image after {fool.steps} steps: p({model.labels[target]!r}) = {fool.target_prob:.4f}")
assert fool.info["success"] and fool.target_prob >= 0.996
assert probs_of(fool.x)[target] >= 0.996
fig = mv.plot.synthesis_grid([fool.image], titles=[f"{model.labels[target]} {fool.target_prob:.4f}"])
savefig(fig, "13_fooling_image")
fig = mv.plot.history_plot({"targeted attack": attack.history, "fooling image": fool.history},
                           ylabel="p(target)", title="probability of the target class per step")
savefig(fig, "13_history")
print(f"lesson 13 took {time.time() - start:.1f} s")

# %% [markdown]
# ## Summary
#
# - The loss is nearly linear in the input, so the worst $\varepsilon$-change gains
#   $\varepsilon\|g\|_1$, which grows with the number of pixels: FGSM takes that step.
# - Iterated and projected, the signed step drives a photo to any class with 99% confidence
#   while no pixel moves more than $8/255$.
# - Without a photo the same ascent grows unrecognisable images labelled with >99.6% confidence:
#   high confidence is not evidence of a natural image (compare the regularised class models of
#   lesson 10).
#
# ## Exercises
#
# 1. Plot the clean accuracy-style quantity $p(\text{label})$ after FGSM against $\varepsilon$.
# 2. Attack with $\varepsilon = 1/255$: how many steps does the goldfish need now?
# 3. Add lesson 10's blur or jitter to the fooling-image loop: does it still reach 99.6%?
# 4. In the linear classifier above, how does the number of steps the attack needs change with
#    the image size (6x6, 12x12, 24x24, with weights scaled by $1/\sqrt{D}$)? Relate it to the
#    $\varepsilon\|w\|_1$ argument of the first section.
