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
# # Lesson 01: convolution and its transpose
#
# **The question.** A convolutional network maps an image to feature maps. To explain
# what a feature map responded to, we want to go the *other* way: start from one activation
# and ask which pixels fed it, and with what weight. Zeiler & Fergus ("Visualizing and
# Understanding Convolutional Networks", ECCV 2014) did this with a *DeconvNet*: a copy of the
# network run backwards, made of three pieces that undo one layer each:
#
# | forward layer | DeconvNet piece |
# | --- | --- |
# | max-pooling | *unpooling* that puts each value back where the maximum came from (the "switches") |
# | ReLU | a ReLU again, so only positive signal goes down |
# | convolution with filter $w$ | convolution with the *transposed* filter |
#
# Why the transpose, and not an inverse? This lesson answers that with a little linear
# algebra: a convolution is a matrix $C$ acting on the flattened image; sending a signal
# back through the same weights is multiplying by $C^\top$; and $C^\top$ is itself a
# convolution (the "transposed convolution" of Dumoulin & Visin, "A guide to convolution
# arithmetic for deep learning", 2016). The punchline, which the later lessons build on: the
# DeconvNet is ordinary backpropagation with one rule changed, the one for the ReLU.
#
# Plan: (1) write a convolution as $y = Cx$ and look at $C$; (2) derive why the gradient is
# $C^\top g$ and why $C^\top$ is a convolution with a flipped kernel; (3) code both from scratch
# in NumPy, then through minivis, and assert they agree; (4) do the same for max-pooling and
# unpooling; (5) compare the three ReLU backward rules and check a two-layer DeconvNet against
# backprop under the `"deconvnet"` rule.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import FAST, savefig, sized

import minivis as mv

rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True, linewidth=120)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. A convolution is a matrix
#
# Every deep-learning library computes *cross-correlation* and calls it convolution: the kernel
# slides over the image without being flipped. For a single-channel $H \times W$ image $x$,
# a $k \times k$ kernel $w$, stride $s$ and zero padding $p$,
#
# $$
# y_{ij} \;=\; \sum_{a=0}^{k-1} \sum_{b=0}^{k-1} w_{ab}\; x_{\,s i + a - p,\; s j + b - p},
# \qquad 0 \le i < H', \quad H' = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1,
# $$
#
# where $x$ is taken to be $0$ outside the image (that is all padding means). Every $y_{ij}$
# is a weighted sum of pixels, so $y$ depends *linearly* on $x$. Flatten both row by row
# ($x \in \mathbb{R}^{HW}$, $y \in \mathbb{R}^{H'W'}$) and the convolution becomes a
# matrix-vector product $y = C x$ with
#
# $$
# C_{(i,j),(m,n)} \;=\;
# \begin{cases}
# w_{\,m - s i + p,\; n - s j + p} & \text{if both indices lie in } \{0, \dots, k-1\},\\
# 0 & \text{otherwise.}
# \end{cases}
# $$
#
# Read it two ways. A **row** of $C$ is one output pixel: the kernel laid out over the
# flattened image at that pixel's window. A **column** of $C$ is one input pixel: which
# outputs it feeds, and with which weight. Keep the second reading in mind; it is the whole
# story of the transpose.
#
# Building $C$ takes one loop over the $k^2$ kernel taps: tap $(a, b)$ connects every output
# pixel $(i, j)$ to the input pixel $(si + a - p,\, sj + b - p)$, unless that falls in the padding.

# %%
def conv_output_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def conv_matrix(w: np.ndarray, H: int, W: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """The (H'W', HW) matrix C with C @ x.ravel() == cross-correlation of x (H, W) with w (k, k)."""
    k = w.shape[0]
    Ho, Wo = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    C = np.zeros((Ho * Wo, H * W))
    i, j = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")  # every output pixel at once
    for a in range(k):
        for b in range(k):
            m, n = stride * i + a - padding, stride * j + b - padding  # the pixel under tap (a, b)
            inside = (m >= 0) & (m < H) & (n >= 0) & (n < W)  # taps over the padding add nothing
            C[(i * Wo + j)[inside], (m * W + n)[inside]] = w[a, b]
    return C


def conv2d_np(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of x (H, W) with w (k, k), straight from the formula: every window times w."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, padding), w.shape)  # (., ., k, k)
    return np.einsum("ijab,ab->ij", windows[::stride, ::stride], w)


# %% [markdown]
# A $4 \times 4$ image and a $3 \times 3$ kernel: with stride 1 the output is $2 \times 2$,
# so $C$ is $4 \times 16$. With stride 2 and padding 1 the output is again $2 \times 2$,
# but the windows now start two pixels apart and hang over the border.

# %%
H = W = 4
x = rng.standard_normal((H, W))
w = rng.standard_normal((3, 3))
settings = {"stride 1": dict(stride=1, padding=0), "stride 2, padding 1": dict(stride=2, padding=1)}
C = {name: conv_matrix(w, H, W, **s) for name, s in settings.items()}

for name, s in settings.items():
    y = conv2d_np(x, w, **s)
    print(f"{name}: x {x.shape} -> y {y.shape}, C {C[name].shape}")
    np.testing.assert_allclose(C[name] @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)
print("C @ x equals the convolution for both settings")

# %% [markdown]
# The picture uses the kernel $w = \begin{pmatrix}1&2&3\\4&5&6\\7&8&9\end{pmatrix}$ so you can
# see where each tap lands.
#
# **What to notice.** Each row holds the same nine numbers, in three runs of three (one run
# per kernel row), separated by gaps of $W - k$ zeros: the 2-D window flattened. From one
# output pixel to its right-hand neighbour the pattern moves $s$ columns; from one output row
# to the next it moves $s \cdot W$ columns. With padding, the taps that would land on the
# border are simply missing. $C$ is
# mostly zeros: a convolution is a *sparse, weight-shared* linear map.

# %%
w_demo = np.arange(1.0, 10.0).reshape(3, 3)


def show_matrix(ax, M, title, every=None, zeros=False):
    """Draw a small non-negative matrix with its non-zero entries (and, if ``zeros``, its zeros) written in.

    ``every``: draw a thin line every that many columns (e.g. W, to mark the image rows)."""
    top = max(M.max(), 1e-9)
    ax.imshow(M, cmap="Blues", vmin=0, vmax=top)
    for r, c in np.ndindex(M.shape):
        if M[r, c] or zeros:
            ax.text(c, r, f"{M[r, c]:g}", ha="center", va="center", fontsize=7,
                    color="white" if M[r, c] > 0.6 * top else ("black" if M[r, c] else "silver"))
    for c in range(every, M.shape[1], every) if every else ():
        ax.axvline(c - 0.5, color="gray", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


fig, axes = plt.subplots(2, 1, figsize=(9, 3.6))
for ax, (name, s) in zip(axes, settings.items(), strict=True):
    M = conv_matrix(w_demo, H, W, **s)
    show_matrix(ax, M, f"C, {name}: 4 rows = output pixels, 16 columns = input pixels "
                       f"(lines mark the image rows)", every=W)
savefig(fig, "01_conv_matrix")

# %% [markdown]
# ## 2. Why the transpose?
#
# **Step 1: the gradient.** Let $L$ be any scalar computed from $y$ (a loss, or one chosen
# activation), and write $g = \partial L / \partial y$ for the signal arriving from above.
# Input pixel $q$ reaches $L$ only through the outputs it feeds, so by the chain rule
#
# $$
# \frac{\partial L}{\partial x_q} \;=\; \sum_r \frac{\partial L}{\partial y_r}\,
# \frac{\partial y_r}{\partial x_q} \;=\; \sum_r g_r\, C_{rq}
# \qquad\Longrightarrow\qquad \frac{\partial L}{\partial x} = C^\top g .
# $$
#
# This is the answer to "which inputs influenced this output, and how much": the very same
# weights, read down the **columns** of $C$. It is not an inverse; $C$ here is $4 \times 16$ and
# has no inverse. It is the map that sends every output's share back to the pixels that
# produced it, in proportion to the weight that joined them.
#
# **Step 2: the adjoint identity.** A one-line consequence that we can test without ever
# building $C$: for every $x$ and every $g$,
#
# $$
# \langle C x,\, g \rangle \;=\; \langle x,\, C^\top g \rangle .
# $$
#
# Any linear map that satisfies this for all $x, g$ *is* the transpose of the convolution.
#
# **Step 3: $C^\top$ is a convolution too.** Write out one entry of $C^\top g$:
#
# $$
# (C^\top g)_{mn} \;=\; \sum_{i,j} g_{ij}\; w_{\,m - s i + p,\; n - s j + p}.
# $$
#
# Read as a *scatter*, this says: every $g_{ij}$ stamps a copy of the kernel, scaled by
# $g_{ij}$, onto the input grid at the spot where window $(i, j)$ sat, and overlapping stamps
# add up. That is the "put the contribution back with the same weights" picture.
#
# Read as a *gather* (fix the pixel $(m, n)$ and ask which $g$'s reach it), take one axis and
# stride 1, padding 0 first. Substituting $a = m - i$,
#
# $$
# (C^\top g)_m = \sum_{a} w_a\, g_{m - a}
# = \sum_{a'} \tilde w_{a'}\; g_{\,m - (k-1) + a'}, \qquad \tilde w_{a'} = w_{k-1-a'} .
# $$
#
# The index of $g$ now runs *backwards* against the kernel: it is a cross-correlation of $g$
# with the **flipped** kernel $\tilde w$ (rotated by 180 degrees in 2-D), after padding $g$
# with $k - 1$ zeros on each side so that the pixels near the border, which fewer windows
# touched, also get their values. That flip is the "transposed filter" of the DeconvNet.
#
# For stride $s$, spread $g$ out first: let $\hat g$ hold $g_i$ at position $s i$ and zeros
# in between ($s - 1$ zeros between neighbours). Then
# $\sum_i g_i\, w_{m + p - s i} = \sum_t \hat g_t\, w_{m + p - t}$, which is the stride-1 case
# applied to $\hat g$. The forward padding $p$ only shifts the index by $p$: the windows already
# reached $p$ pixels past the border, so $p$ of the $k - 1$ zeros of padding are no longer
# needed on each side. Putting the pieces together:
#
# > **Transposed convolution** = insert $s-1$ zeros between the entries of $g$, pad with
# > $k-1-p$ zeros on each side, and cross-correlate at stride 1 with the kernel rotated by
# > 180 degrees.
#
# Its output has $s(H'-1) + k - 2p$ rows. That is $H$ only when the forward floor division
# dropped nothing: several input sizes give the same $H'$ (with $s = 2$, both 3 and 4 pixels
# give $H' = 2$ below), so $g$ alone cannot tell which one to go back to. The
# `output_padding` argument says how many rows to add at the bottom/right, here
# $(H + 2p - k) \bmod s$; in the zero-inserted picture it is extra zero padding on that side.
#
# In our stride-2 example, $H = 4$, $p = 1$, $k = 3$: $H + 2p - k = 3$ is odd, so
# `output_padding=1` is needed to get back to $4 \times 4$.

# %%
def conv_transpose2d_scatter(g, w, stride=1, padding=0, output_padding=0):
    """C^T g by stamping: every g[i, j] adds g[i, j] * w where window (i, j) sat, then the padding is cut."""
    k = w.shape[0]
    Ho, Wo = g.shape
    full = np.zeros((stride * (Ho - 1) + k + output_padding, stride * (Wo - 1) + k + output_padding))
    for i in range(Ho):  # a teaching loop over the few output pixels; minivis uses a GEMM
        for j in range(Wo):
            full[stride * i:stride * i + k, stride * j:stride * j + k] += g[i, j] * w
    return full[padding:full.shape[0] - padding, padding:full.shape[1] - padding]


def conv_transpose2d_np(g, w, stride=1, padding=0, output_padding=0):
    """C^T g as a convolution: zero-insert g, pad it by k-1-p (+ output_padding), correlate with w flipped."""
    k = w.shape[0]
    spread = np.zeros((stride * (g.shape[0] - 1) + 1, stride * (g.shape[1] - 1) + 1))
    spread[::stride, ::stride] = g  # s-1 zeros between neighbours
    q = k - 1 - padding  # assumes padding <= k - 1, as in every network we use
    spread = np.pad(spread, ((q, q + output_padding), (q, q + output_padding)))
    return conv2d_np(spread, w[::-1, ::-1])  # the kernel rotated by 180 degrees, stride 1


out_pad = {"stride 1": 0, "stride 2, padding 1": 1}
for name, s in settings.items():
    g = rng.standard_normal((2, 2))
    via_matrix = (C[name].T @ g.ravel()).reshape(H, W)
    via_scatter = conv_transpose2d_scatter(g, w, **s, output_padding=out_pad[name])
    via_conv = conv_transpose2d_np(g, w, **s, output_padding=out_pad[name])
    np.testing.assert_allclose(via_scatter, via_matrix, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(via_conv, via_matrix, rtol=1e-12, atol=1e-12)
    # the adjoint identity <Cx, g> = <x, C^T g>
    np.testing.assert_allclose(np.vdot(conv2d_np(x, w, **s), g), np.vdot(x, via_conv), rtol=1e-12)
print("C^T g == scatter with the same weights == convolution of the spread-out g with the flipped kernel")

# %% [markdown]
# Two pictures of this. Left and middle: $C^\top$ for both settings. Each row is now one input
# pixel, and lists the outputs it fed. Right: take a $5 \times 5$ image, whose centre pixel is
# covered by all nine $3 \times 3$ windows, and reshape the centre pixel's row of $C^\top$ to
# the $3 \times 3$ output grid.
#
# **What to notice.** The centre pixel sees the kernel upside down and back to front: the
# output to its top-left used it through tap $w_{22} = 9$, the one to its bottom-right through
# $w_{00} = 1$. That rotated kernel is exactly the filter the DeconvNet convolves with. In the
# stride-2 matrix the rows are uneven: most input pixels feed one output, those where windows
# overlap feed two or four. With a stride, the kernel's taps cover the input grid unevenly,
# which is where the checkerboard artefacts of transposed convolutions come from.

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 4.2), gridspec_kw=dict(width_ratios=[1, 1, 1.4, 1.4]))
for ax, (name, s) in zip(axes[:2], settings.items(), strict=True):
    show_matrix(ax, conv_matrix(w_demo, H, W, **s).T, f"C^T, {name}\n16 inputs x 4 outputs")
show_matrix(axes[2], w_demo, "the kernel w")
centre_row = conv_matrix(w_demo, 5, 5).T[2 * 5 + 2]  # input pixel (2, 2) of a 5x5 image
show_matrix(axes[3], centre_row.reshape(3, 3), "what the centre pixel of a 5x5\ninput sees: w rotated 180°")
savefig(fig, "01_conv_transpose")

# %% [markdown]
# And the transposed convolution in its "convolution" form for the stride-2 case: spread
# $g$ out with zeros, pad it by $k - 1 - p = 1$ (plus one row and column of `output_padding`),
# and slide the rotated kernel over it at stride 1.

# %%
g_demo = np.array([[1.0, 2.0], [3.0, 4.0]])
spread = np.zeros((3, 3))
spread[::2, ::2] = g_demo
spread = np.pad(spread, ((1, 2), (1, 2)))
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
show_matrix(axes[0], g_demo, "g (2x2)")
show_matrix(axes[1], spread, "zeros inserted, padded\n(6x6)", zeros=True)
show_matrix(axes[2], w_demo[::-1, ::-1], "kernel rotated 180°")
result = conv_transpose2d_np(g_demo, w_demo, stride=2, padding=1, output_padding=1)
show_matrix(axes[3], result, "result = C^T g (4x4)")
savefig(fig, "01_transposed_conv_as_conv")

# %% [markdown]
# ## 3. The same through minivis
#
# minivis works on batches of multi-channel images: `x` is $(N, C_\text{in}, H, W)$ and the
# convolution weight is $(C_\text{out}, C_\text{in}, k, k)$. With several channels $C$ becomes a
# block matrix, block $(o, c)$ being the single-channel matrix of filter $w_{oc}$; its transpose
# has block $C_{oc}^\top$ at position $(c, o)$. So the transposed convolution sums over the
# $C_\text{out}$ channels and produces $C_\text{in}$, and it can use **the same weight array**:
# `conv_transpose2d` reads its weight as $(C_\text{in}, C_\text{out}, k, k)$ of *its own*
# input and output, which is the conv's $(C_\text{out}, C_\text{in}, k, k)$ again (PyTorch
# uses the same layout).
#
# Three checks on the single-channel example: the forward equals $Cx$, `conv_transpose2d`
# equals $C^\top g$, and the gradient of `conv2d` (what `backward` puts in `x.grad`) equals
# $C^\top g$ as well.

# %%
for name, s in settings.items():
    xt = mv.tensor(x[None, None], requires_grad=True)  # (N=1, C=1, 4, 4), float64 like x
    wt = mv.tensor(w[None, None])  # (C_out=1, C_in=1, 3, 3)
    y = mv.F.conv2d(xt, wt, **s)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    CTg = (C[name].T @ g.ravel()).reshape(H, W)
    yt = mv.F.conv_transpose2d(mv.tensor(g), wt, **s, output_padding=out_pad[name])
    np.testing.assert_allclose(y.numpy().ravel(), C[name] @ x.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(yt.numpy()[0, 0], CTg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xt.grad[0, 0], CTg, rtol=1e-12, atol=1e-12)
print("minivis: conv2d == C x, conv_transpose2d == C^T g, and conv2d's backward == C^T g")

# %% [markdown]
# Now without building $C$: the adjoint identity on a batch of multi-channel images, for
# several strides, paddings and dilations. `output_padding` is chosen so that the transposed
# convolution lands exactly on the input's size (dilation $d$ makes the kernel span
# $d(k-1) + 1$ pixels; everything above holds with that span in place of $k$).

# %%
def output_padding_for(size, k, stride, padding, dilation):
    """Rows the transposed convolution must add to land exactly on ``size`` again."""
    span = dilation * (k - 1) + 1
    out = (size + 2 * padding - span) // stride + 1
    return size - ((out - 1) * stride - 2 * padding + span)


N, C_in, C_out, Hb, Wb = 2, 3, 4, sized(11, 9), sized(9, 7)
xb = rng.standard_normal((N, C_in, Hb, Wb))
wb = rng.standard_normal((C_out, C_in, 3, 3))
for stride, padding, dilation in [(1, 0, 1), (1, 1, 1), (2, 1, 1), (2, 2, 2), (3, 1, 1)]:
    op = tuple(output_padding_for(n, 3, stride, padding, dilation) for n in (Hb, Wb))
    xt = mv.tensor(xb, requires_grad=True)
    y = mv.F.conv2d(xt, mv.tensor(wb), stride=stride, padding=padding, dilation=dilation)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    back = mv.F.conv_transpose2d(mv.tensor(g), mv.tensor(wb), stride=stride, padding=padding,
                                 output_padding=op, dilation=dilation).numpy()
    assert back.shape == xb.shape
    np.testing.assert_allclose(np.vdot(y.numpy(), g), np.vdot(xb, back), rtol=1e-12)  # <Cx, g> = <x, C^T g>
    np.testing.assert_allclose(xt.grad, back, rtol=1e-10, atol=1e-12)  # the gradient is C^T g
    print(f"stride {stride} padding {padding} dilation {dilation} output_padding {op}: "
          f"{xb.shape} -> {y.shape} -> {back.shape}; <Cx, g> = <x, C^T g> = {np.vdot(xb, back):+.6f}")

# %% [markdown]
# ## 4. Max-pooling, switches and unpooling
#
# A $2 \times 2$ max-pool keeps the largest value of each window. Which value won depends on
# $x$, but once the winners are known the pooling is linear again: it *selects*. Record the
# winner of window $(i, j)$ as its flat index $\sigma_{ij}$ in the input plane (these are the
# **switches**, PyTorch's `return_indices`); then $y_{ij} = x_{\sigma_{ij}}$, that is $y = P x$
# with $P$ a 0/1 matrix holding a single 1 per row, in column $\sigma_{ij}$.
#
# By step 1 above the gradient is $P^\top g$: each $g_{ij}$ goes back to the pixel that won
# window $(i, j)$, and every other pixel gets 0. Zeiler & Fergus's **unpooling** does exactly
# this: it places each value at its switch and fills the rest with zeros. So unpooling with
# switches is, once again, a transpose; and the backward of max-pooling *is* unpooling the
# gradient. (Windows here do not overlap, so each pixel can win at most one window.)

# %%
def max_pool2d_np(x):
    """2x2 max-pool of x (H, W), H and W even: the maxima and their flat indices in x (the switches)."""
    Hh, Wh = x.shape[0] // 2, x.shape[1] // 2
    windows = x.reshape(Hh, 2, Wh, 2).transpose(0, 2, 1, 3).reshape(Hh, Wh, 4)  # row-major in each window
    win = windows.argmax(axis=-1)  # the first maximum wins a tie
    i, j = np.meshgrid(np.arange(Hh), np.arange(Wh), indexing="ij")
    switches = (2 * i + win // 2) * x.shape[1] + (2 * j + win % 2)
    return windows.max(axis=-1), switches


def max_unpool2d_np(y, switches, shape):
    """Each y[i, j] written at its switch, zeros elsewhere."""
    out = np.zeros(shape)
    out.flat[switches.ravel()] = y.ravel()
    return out


xq = rng.permutation(16).reshape(4, 4) + 1.0  # 1..16, all distinct: no ties to worry about
yp, sw_np = max_pool2d_np(xq)
P = np.zeros((yp.size, xq.size))
P[np.arange(yp.size), sw_np.ravel()] = 1.0
np.testing.assert_array_equal(P @ xq.ravel(), yp.ravel())  # pooling = selection by P
g = rng.standard_normal(yp.shape)
np.testing.assert_array_equal(max_unpool2d_np(g, sw_np, xq.shape).ravel(), P.T @ g.ravel())  # unpooling = P^T
print("x =\n", xq, "\npooled =\n", yp, "\nswitches =\n", sw_np)

# %% [markdown]
# Through minivis: `max_pool2d(..., return_switches=True)` returns the switches alongside the
# pooled map, `max_unpool2d` puts values back at them, and the gradient of the pool is the
# unpooled gradient.

# %%
xt = mv.tensor(xq[None, None], requires_grad=True)  # (1, 1, 4, 4)
y, sw = mv.F.max_pool2d(xt, 2, return_switches=True)
np.testing.assert_array_equal(y.numpy()[0, 0], yp)
np.testing.assert_array_equal(sw[0, 0], sw_np)  # switches: an int array (N, C, H', W')
unpooled = mv.F.max_unpool2d(y, sw, 2, output_size=xt.shape[-2:])
np.testing.assert_array_equal(unpooled.numpy()[0, 0], max_unpool2d_np(yp, sw_np, xq.shape))

gt = g[None, None]
y.backward(gt)
unpooled_grad = mv.F.max_unpool2d(mv.tensor(gt), sw, 2, output_size=xt.shape[-2:]).numpy()
np.testing.assert_array_equal(xt.grad, unpooled_grad)
print("max_pool2d's backward == max_unpool2d of the gradient with the switches")

# %% [markdown]
# **What to notice.** Each window sends its value back to exactly one pixel, the one that
# won; three out of four pixels get nothing. Unpooling does not invert pooling (the losers'
# values are gone for good), but it keeps *where* the evidence was, which is what makes
# DeconvNet reconstructions sharp instead of blocky.

# %%
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
show_matrix(axes[0], xq, "x (4x4): winners boxed")
for r, c in zip(*np.unravel_index(sw_np.ravel(), xq.shape), strict=True):
    axes[0].add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
axes[0].axhline(1.5, color="k", lw=1)  # the window borders
axes[0].axvline(1.5, color="k", lw=1)
show_matrix(axes[1], yp, "max-pooled (2x2)")
show_matrix(axes[2], sw_np.astype(float), "switches: flat index\nof each winner in x")
show_matrix(axes[3], max_unpool2d_np(yp, sw_np, xq.shape), "unpooled with the switches")
savefig(fig, "01_switches_unpool")

# %% [markdown]
# ## 5. Three ways back through a ReLU
#
# The ReLU $r = \max(x, 0)$ has local derivative $\mathbb{1}[x > 0]$, so its gradient lets the
# signal through wherever the *forward input* was positive. Three methods differ only here
# (with $g$ the signal from above):
#
# | rule | sent back | used by |
# | --- | --- | --- |
# | `gradient` | $g \cdot \mathbb{1}[x > 0]$ | the true gradient; saliency maps (Simonyan et al. 2014) |
# | `guided` | $g \cdot \mathbb{1}[x>0] \cdot \mathbb{1}[g>0]$ | guided backprop (Springenberg et al. 2015) |
# | `deconvnet` | $g \cdot \mathbb{1}[g > 0]$ | the DeconvNet: a ReLU applied to the signal going down |
#
# The DeconvNet's mask ignores the forward input entirely; guided backprop keeps both masks.
# Only the first is a derivative of anything, so minivis exposes the other two as a switch,
# `with mv.backward_rule(...)`, that is read when `backward()` runs. In the engine the three
# formulas sit side by side in `relu_backward_reference` (`minivis/functional/activation.py`,
# next to `relu`'s backward, which reads the rule); the fused kernels that actually run compute
# the same thing in one pass and are tested equal to it.

# %%
n = sized(8, 6)
xr = rng.standard_normal((1, 1, n, n))
gr = rng.standard_normal(xr.shape)
formulas = {
    "gradient": gr * (xr > 0),
    "guided": gr * (xr > 0) * (gr > 0),
    "deconvnet": gr * (gr > 0),
}
rule_grads = {}
for rule, expected in formulas.items():
    xt = mv.tensor(xr, requires_grad=True)
    with mv.backward_rule(rule):
        mv.F.relu(xt).backward(gr)
    np.testing.assert_array_equal(xt.grad, expected)
    np.testing.assert_array_equal(mv.F.relu_backward_reference(gr, xr, rule), expected)
    rule_grads[rule] = xt.grad
print("each rule matches its formula on the same x and g")

# %% [markdown]
# **What to notice.** The `gradient` mask is the pattern of positive *inputs*, the `deconvnet`
# mask the pattern of positive *incoming signals*, and `guided` is their intersection: the
# sparsest of the three, which is why guided-backprop images look the cleanest.

# %%
fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
panels = [("x > 0 (forward input)", xr > 0), ("g > 0 (signal from above)", gr > 0)]
panels += [(f"{rule}: passes", rule_grads[rule] != 0) for rule in formulas]
for ax, (title, mask) in zip(axes, panels, strict=True):
    ax.imshow(mask[0, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("white = the signal passes; the three rules on the same x and g", fontsize=10)
savefig(fig, "01_relu_rules")

# %% [markdown]
# ## 6. The DeconvNet is backprop with the deconvnet rule
#
# Now the whole argument in one net: two blocks of convolution, ReLU, $2 \times 2$ max-pool.
# Following Zeiler & Fergus, pick the strongest feature map at the top, keep it and zero every
# other map, and send that down the DeconvNet: for each block, from the top,
#
# $$
# \text{unpool with the switches} \;\to\; \text{ReLU} \;\to\; \text{conv\_transpose2d with the same weights.}
# $$
#
# Backprop through the same block does unpooling (section 4), then the ReLU rule (section 5),
# then $C^\top$ (sections 2 and 3). The first and the last steps are literally the same, and
# the middle one is the same under the `deconvnet` rule. So we expect the literal DeconvNet to
# equal `x.grad` under `backward_rule("deconvnet")`, and to differ from the true gradient.
# (In the top block the selected signal is already non-negative, so its ReLU changes nothing;
# in the block below, the signal has been through $W_2^\top$ and has both signs, and the rules
# part ways.)

# %%
S = sized(16, 8)
x_img = rng.standard_normal((1, 3, S, S))
w1 = mv.tensor(rng.standard_normal((4, 3, 3, 3)) / 3)
w2 = mv.tensor(rng.standard_normal((6, 4, 3, 3)) / 6)


def forward(xt):
    """conv-relu-pool twice; returns the top maps and what the DeconvNet needs (switches, sizes)."""
    r1 = mv.F.relu(mv.F.conv2d(xt, w1, padding=1))
    p1, s1 = mv.F.max_pool2d(r1, 2, return_switches=True)
    r2 = mv.F.relu(mv.F.conv2d(p1, w2, padding=1))
    p2, s2 = mv.F.max_pool2d(r2, 2, return_switches=True)
    return p2, [(s1, r1.shape[-2:], w1), (s2, r2.shape[-2:], w2)]


with mv.no_grad():
    top, _ = forward(mv.tensor(x_img))
strongest = int(top.numpy().max(axis=(0, 2, 3)).argmax())
g_top = np.zeros(top.shape)
g_top[:, strongest] = top.numpy()[:, strongest]  # keep one feature map, zero the others

# the literal DeconvNet, block by block from the top
with mv.no_grad():
    _, blocks = forward(mv.tensor(x_img))
    signal = mv.tensor(g_top)
    for switches, size, weight in reversed(blocks):
        signal = mv.F.max_unpool2d(signal, switches, 2, output_size=size)
        signal = mv.F.relu(signal)
        signal = mv.F.conv_transpose2d(signal, weight, padding=1)
deconvnet_image = signal.numpy()

# backprop under each rule
maps = {}
for rule in ("gradient", "guided", "deconvnet"):
    xt = mv.tensor(x_img, requires_grad=True)
    top, _ = forward(xt)
    with mv.backward_rule(rule):
        top.backward(g_top)
    maps[rule] = xt.grad

np.testing.assert_allclose(maps["deconvnet"], deconvnet_image, rtol=1e-10, atol=1e-12)
assert not np.allclose(maps["gradient"], deconvnet_image), "the rules should differ below the top block"
print(f"feature map {strongest}: literal DeconvNet == backprop under the deconvnet rule; "
      f"relative difference to the true gradient: "
      f"{np.linalg.norm(maps['gradient'] - deconvnet_image) / np.linalg.norm(deconvnet_image):.2f}")

# %% [markdown]
# **What to notice.** In the top block all three rules agree (the signal there is non-negative
# and sits only on units whose forward input was positive), so every difference between the
# three images comes from the masks at the first ReLU. With random weights the images mean
# nothing yet; lesson 04 runs the same comparison on a trained network.

# %%
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
for ax, (rule, m) in zip(axes, maps.items(), strict=True):
    img = m[0].sum(axis=0)  # sum over the colour channels
    lim = np.abs(img).max() or 1.0
    ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"backprop, {rule} rule", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
savefig(fig, "01_deconvnet_vs_rules")

# %% [markdown]
# ## 7. Fewer multiplications: Winograd's minimal filtering
#
# Everything so far treats a convolution as a matrix product, and the fast way to do one is a
# GEMM: copy every window into a column (`im2col`) and multiply by the weight matrix. That costs
# one multiply-add per weight per output pixel, 9 per pixel and channel pair for a 3x3 kernel.
# Lavin & Gray ("Fast Algorithms for Convolutional Neural Networks", CVPR 2016) showed that
# neighbouring outputs can share work. In 1-D, two outputs of a 3-tap correlation,
# $y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2$ and $y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2$, take 6
# multiplications directly, but only 4 this way (Winograd's $F(2, 3)$):
#
# $$
# m_1 = (d_0 - d_2) g_0,\quad m_2 = (d_1 + d_2)\frac{g_0 + g_1 + g_2}{2},\quad
# m_3 = (d_2 - d_1)\frac{g_0 - g_1 + g_2}{2},\quad m_4 = (d_1 - d_3) g_2,
# $$
# $$
# y_0 = m_1 + m_2 + m_3, \qquad y_1 = m_2 - m_3 - m_4 .
# $$
#
# The filter sums are computed once per filter, so per output pair only the four products are
# paid for. In matrix form $y = A^\top[(G g) \odot (B^\top d)]$; nesting it along rows and
# columns gives the 2-D $F(2 \times 2, 3 \times 3)$, which computes a $2 \times 2$ output block
# from a $4 \times 4$ input block with 16 multiplications instead of 36:
# $Y = A^\top [(G g G^\top) \odot (B^\top d B)] A$.

# %%
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)

d1, g1 = rng.standard_normal(4), rng.standard_normal(3)
direct_1d = np.array([d1[0:3] @ g1, d1[1:4] @ g1])
np.testing.assert_allclose(A_T @ ((G @ g1) * (B_T @ d1)), direct_1d, rtol=1e-12)

# 2-D over channels: one 4x4 block per 2x2 output block, the elementwise product summed over the
# 32 input channels (that sum is what becomes 16 GEMMs), against minivis's conv2d on the same layer
# (a layer this size runs through the engine's own Winograd kernels)
imgs, ks = rng.standard_normal((32, 24, 24)), rng.standard_normal((32, 32, 3, 3))
U = np.einsum("ai,ocij,bj->ocab", G, ks, G)  # G g G^T for every (output, input) channel pair
padded = np.pad(imgs, ((0, 0), (1, 1), (1, 1)))  # padding 1: output 24x24, 12x12 blocks
winograd = np.zeros((32, 24, 24))
for ty in range(12):
    for tx in range(12):
        V = B_T @ padded[:, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] @ B_T.T  # (32, 4, 4)
        M = np.einsum("ocab,cab->oab", U, V)  # 16 multiplications per channel pair, summed over channels
        winograd[:, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = A_T @ M @ A_T.T
engine = mv.F.conv2d(imgs[None], ks, padding=1).numpy()[0]
np.testing.assert_allclose(winograd, engine, rtol=1e-10, atol=1e-10)
print("Winograd F(2x2, 3x3), 16 multiplications per 2x2 block, equals the engine's conv2d")

# %% [markdown]
# Over many channels the elementwise product becomes a sum over input channels, so for each of
# the 16 positions of the transformed block it is a matrix product
# $(C_\text{out} \times C_\text{in}) \cdot (C_\text{in} \times \text{blocks})$: 16 GEMMs doing
# $16/36$ of im2col's multiply-adds, with cheap add-only transforms around them. That is how
# minivis runs every stride-1 3x3 convolution on the CPU (all of VGG16;
# `minivis/kernels/cpu_winograd.py`), and it is why its VGG16 saliency is faster than PyTorch's
# even though both run their GEMMs at this machine's peak. The input gradient is the
# transposed convolution of section 2: at stride 1 it is a correlation with the kernel rotated
# by 180 degrees, itself a 3x3 convolution, so it goes through Winograd too. The price is
# rounding: the transforms add and subtract values of different sizes, so float32 results
# differ from the direct sum by a few units in the last place more than im2col's do.
#
# The weight gradient needs no new algebra either. $Y = A^\top [U \odot V] A$ is linear in
# $U = G g G^\top$, so the chain rule runs the same steps backwards: each $2 \times 2$ block of
# the output gradient goes through the adjoint of the output transform,
# $\partial L / \partial M = A\, \partial Y\, A^\top$; the products with $V$ are summed over
# blocks (16 GEMMs again, now with the blocks as the inner dimension); and the adjoint of the
# filter transform gives $\partial L / \partial g = G^\top (\partial L / \partial U)\, G$.

# %%
dY = rng.standard_normal((32, 24, 24))  # an upstream gradient for the layer above
dU = np.zeros((32, 32, 4, 4))
for ty in range(12):
    for tx in range(12):
        V = B_T @ padded[:, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] @ B_T.T  # (C_in, 4, 4), as forward
        dM = A_T.T @ dY[:, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] @ A_T  # (C_out, 4, 4): A dY A^T
        dU += np.einsum("oab,cab->ocab", dM, V)  # summed over blocks
dW = np.einsum("ai,ocab,bj->ocij", G, dU, G)  # G^T dU G
x_t, w_t = mv.tensor(imgs[None], requires_grad=True), mv.tensor(ks, requires_grad=True)
mv.F.conv2d(x_t, w_t, padding=1).backward(dY[None])
np.testing.assert_allclose(dW, w_t.grad, rtol=1e-10, atol=1e-10)
print("the weight gradient through the transforms' adjoints equals the engine's")

# %% [markdown]
# Why not larger blocks? The same construction gives $F(4, 3)$: four outputs from six inputs
# with 6 multiplications instead of 12, and in 2-D $F(4 \times 4, 3 \times 3)$ with 36 instead
# of 144, 4x fewer than im2col rather than 2.25x. Its transforms interpolate at the points
# $0, \pm 1, \pm 2$, so their entries grow (4, 5, 8, 1/24), and so does float32 rounding. A
# 1-D check, then the error of 10,000 blocks against float64:

# %%
B4_T = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
A4_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)
d6, g3 = rng.standard_normal(6), rng.standard_normal(3)
np.testing.assert_allclose(A4_T @ ((G4 @ g3) * (B4_T @ d6)), [d6[i:i + 3] @ g3 for i in range(4)], rtol=1e-12)


def block_error(b_t, g_m, a_t, n_in, blocks=10_000):
    """Largest float32 error of the 1-D algorithm over many random blocks, relative to the largest output."""
    d, g = rng.standard_normal((blocks, n_in)), rng.standard_normal((blocks, 3))
    exact = np.stack([(d[:, i:i + 3] * g).sum(axis=1) for i in range(n_in - 2)], axis=1)
    f32 = [m.astype(np.float32) for m in (b_t, g_m, a_t, d, g)]
    fast = ((f32[3] @ f32[0].T) * (f32[4] @ f32[1].T)) @ f32[2].T
    return np.abs(fast - exact).max() / np.abs(exact).max()


err2, err4 = block_error(B_T, G, A_T, 4), block_error(B4_T, G4, A4_T, 6)
print(f"float32 error: F(2, 3) {err2:.1e}, F(4, 3) {err4:.1e} of the largest output")
assert err4 > 2 * err2  # the bigger transforms round worse

# %% [markdown]
# In two dimensions the errors compound: in float32, $F(4 \times 4, 3 \times 3)$ comes out about
# 15x less accurate than $F(2 \times 2, 3 \times 3)$ on a 64-channel layer (5-6e-6 of the
# output's scale against 3-4e-7; `tests/kernels/test_cpu_winograd4.py` measures both against
# float64). Its blocks are also
# coarse: a map is rounded up to a multiple of 4 pixels, so a 6 px map costs 144 products per
# channel pair either way, and a 14 px map gives each image only 16 blocks, too few rows for a
# GEMM to run near its peak. So the engine's convolutions stay with $2 \times 2$ blocks.
#
# One caller takes the larger blocks: incremental occlusion (lesson 03). Its regions are small
# maps of 128-512 channels, already rounded with their batch, and inside
# `shared_winograd_gemms` the blocks of all the batch's regions share one GEMM per component,
# so the GEMMs get their rows back. There `conv_plan.winograd4_pays` takes $F(4 \times 4, 3
# \times 3)$ where its blocks fill the map well (a 14 x 16 region: 576 products per channel pair
# against 896), with transforms written as explicit vector code
# (`minivis/kernels/cpu_winograd4.py`). One such layer both ways:

# %%
from minivis.kernels import conv_plan  # noqa: E402

regions = rng.standard_normal((8, 128, 16, 18)).astype(np.float32)  # 8 regions, 14 x 16 outputs each
k128 = (rng.standard_normal((128, 128, 3, 3)) / 30).astype(np.float32)
exact = mv.F.conv2d(regions.astype(np.float64), k128.astype(np.float64)).numpy()
two = mv.F.conv2d(regions, k128).numpy()  # the engine's default: 2x2 blocks
with mv.functional.conv.shared_winograd_gemms():  # as incremental occlusion runs its regions
    four = mv.F.conv2d(regions, k128).numpy()
    four64 = mv.F.conv2d(regions.astype(np.float64), k128.astype(np.float64)).numpy()
np.testing.assert_allclose(four64, exact, rtol=1e-10, atol=1e-10)  # the same convolution
e2, e4 = (np.abs(y - exact).max() / np.abs(exact).max() for y in (two, four))
print(f"14 x 16 maps, 128 channels, float32 error: 2x2 blocks {e2:.1e}, 4x4 blocks {e4:.1e}")
assert conv_plan.winograd4_pays(14, 16, 128, 128) and e4 > 2 * e2

# %% [markdown]
# ### One op, three algorithms
#
# Reading the engine: `minivis/functional/conv.py` is the op on one page, forward and both
# backward halves, with the plain reference path of section 3 written out (`W @ im2col(x)`
# forward, `col2im(W^T @ g)` and `g @ cols^T` backward). How the engine runs the same products
# faster lives apart, in `minivis/kernels/conv_plan.py`, with the rule that picks among three
# ways of computing the same sum
# $y[n, o, i, j] = \sum_{c, a, b} w[o, c, a, b]\, x[n, c, i + a, j + b]$:
#
# - **im2col + GEMM**: copy every window into a column of a matrix (section 3), then one matrix
#   product with the $C_\text{out} \times C_\text{in} k^2$ weight matrix. The copy costs memory
#   traffic ($k^2$ times the input), the product runs in BLAS at the machine's peak. The engine
#   does it in cache-sized tiles, so the copy is read back from cache, not from memory. At a
#   column stride $s > 1$ each tap's row would gather every $s$-th pixel, a loop the compiler
#   does not vectorise; so the engine first splits each image row into its $s$ column *phases*
#   (pixels $p, p + s, p + 2s, \dots$), once, after which every tap's row is a plain contiguous copy
#   out of one phase (`_im2col_plane_strided` in `minivis/kernels/cpu_conv.py`; AlexNet's 11x11,
#   stride-4 first layer copies 2.5x faster that way).
# - **direct**: slide the window over the input in place, no copy
#   (`minivis/kernels/cpu_direct.py`, `mv.conv_algorithm("direct")`). Each image is laid out once
#   as flat padded planes, one per stride phase, on which output pixel $q$ of tap $t$ reads
#   element $\text{offs}[t] + q$: every tap is the same shift for all pixels. A *register block*
#   of 8 output channels by 48 consecutive pixels keeps its 24 vectors of partial sums in CPU
#   registers for the whole sum over the taps; each tap costs 3 vector loads of the input, 8
#   broadcast weights and 24 fused multiply-adds.
# - **Winograd $F(2 \times 2, 3 \times 3)$** (section 7): 2.25x fewer multiplications, as 16 GEMMs
#   between an input transform of the whole batch and an output transform of the whole result.
#   Or *fused* (`minivis/kernels/cpu_winograd_fused.py`, `mv.conv_algorithm("winograd_fused")`):
#   one block of 48 output tiles at a time, one tile per vector lane, its transforms and its 16
#   products done while the block is in cache, the products on the direct kernel's register block.
#
# `mv.conv_algorithm(name)` overrides the rule inside a block, so we can run one layer all three
# ways and check that they agree with the reference, and with each other.

# %%
layer_x = rng.standard_normal((sized(8, 2), 64, sized(56, 14), sized(56, 14))).astype(np.float32)
layer_w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)


def timed(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


results, seconds = {}, {}
ALGORITHMS = ("im2col", "direct", "winograd", "winograd_fused")
for algorithm in ("reference", *ALGORITHMS):
    with mv.conv_algorithm(algorithm):
        results[algorithm], seconds[algorithm] = timed(lambda: mv.F.conv2d(layer_x, layer_w, padding=1).numpy())
for a in ALGORITHMS:
    for b in ("reference", *ALGORITHMS):
        np.testing.assert_allclose(results[a], results[b], rtol=1e-4, atol=1e-4)
print(f"one 3x3 layer, x {layer_x.shape}, w {layer_w.shape}, float32: im2col, direct and both Winograds agree "
      "(with each other and the reference)")

# %% [markdown]
# ### A small roofline
#
# Are these algorithms limited by arithmetic or by memory? The roofline model (Williams,
# Waterman & Patterson, 2009) answers with one number per kernel, its *arithmetic intensity*
# $I$ = floating-point operations per byte moved to or from memory. A machine with peak rate
# $P$ (FLOP/s) and memory bandwidth $B$ (bytes/s) runs a kernel at most at $\min(P, I \cdot B)$:
# below the *ridge point* $I = P / B$ memory sets the pace, above it arithmetic does.
#
# For a convolution the work is $2 N C_\text{out} H_o W_o C_\text{in} k^2$ FLOPs and the least
# traffic is reading $x$ and $w$ once and writing $y$ once. For a 3x3 layer with 64 channels the
# intensity is in the hundreds of FLOPs per byte, far above any machine's ridge point (a few to a
# few tens of FLOPs per byte): in principle every algorithm here is compute-bound. im2col lowers
# the intensity of its copy (each input value is written $k^2 = 9$ times into the cols matrix),
# but the GEMM that follows re-reads that matrix from cache, and the GEMM itself is compute-bound.
# Measure both sides of the model on this machine: the peak of a large float32 matrix product
# (the roof) and the stream of a large copy (the slope).

# %%
n_gemm = sized(1024, 512)
a_mat = rng.standard_normal((n_gemm, n_gemm)).astype(np.float32)
_, t_gemm = timed(lambda: a_mat @ a_mat, repeats=5)
peak = 2 * n_gemm**3 / t_gemm
big = np.ones(sized(1 << 24, 1 << 20), dtype=np.float32)
_, t_copy = timed(lambda: big.copy())
bandwidth = 2 * big.nbytes / t_copy  # read once, write once

n_img, c_in, h, w_ = layer_x.shape
flops = 2 * n_img * 64 * h * w_ * c_in * 9  # the direct algorithm's count, for every row below
bytes_moved = layer_x.nbytes + layer_w.nbytes + results["reference"].nbytes
print(f"SGEMM peak ~{peak / 1e9:.0f} GFLOP/s, copy bandwidth ~{bandwidth / 1e9:.1f} GB/s: "
      f"ridge point {peak / bandwidth:.0f} FLOP/byte")
print(f"this layer: {flops / 1e9:.2f} GFLOP over {bytes_moved / 1e6:.1f} MB: intensity {flops / bytes_moved:.0f} "
      f"FLOP/byte (compute-bound)")
print(f"{'algorithm':<10} {'ms':>8} {'GFLOP/s':>8} {'% of peak':>10}")
for algorithm in ALGORITHMS:
    rate = flops / seconds[algorithm]
    print(f"{algorithm:<10} {1e3 * seconds[algorithm]:8.2f} {rate / 1e9:8.1f} {100 * rate / peak:9.0f}%")
if FAST:
    print("(fast mode: these sizes are too small, and a busy machine too noisy, for the rates to mean much)")

# %% [markdown]
# The roofline says all three could run near the peak; the printout says which ones do. The GEMM
# gets there because BLAS is hand-written with SIMD instructions: one instruction multiplies and
# adds 8 (AVX2) or 16 (AVX-512) float32 lanes at once, and a register-blocked micro-kernel keeps
# every lane busy. A compiled loop does not get there by itself. minivis's first direct kernel
# was the obvious Numba loop, `acc[q] += w * x[q + offset]` over a row of pixels, and it ran at
# 5-16 GFLOP/s on one thread of the benchmark machine, against ~100 for one BLAS thread. Its
# arithmetic intensity was fine and LLVM did vectorise the loop, but into what: 8 lanes (LLVM
# prefers 256-bit vectors even where the hardware has 512), a separate multiply and add per tap
# (fusing them into one FMA changes the rounding, which Numba does not do unless told it may),
# and a load and a store of each accumulator at every tap, since to the compiler `acc` is memory
# that the input might alias. A kernel's ceiling is not the machine's peak but the peak of the
# instructions it actually issues.
#
# The kernel the engine runs now says what it wants. `minivis/kernels/cpu_simd.py` gives Numba a
# vector type: one value that is a whole 512-bit register (16 float32), with intrinsics that load,
# broadcast, fuse a multiply-add (`llvm.fma`) and store it. A loop that carries 24 such values
# carries them in registers, as BLAS's micro-kernels do, and the inner loop of `_blocks` compiles
# to exactly its arithmetic: per tap, 3 loads, 8 broadcasts, 24 FMAs. It runs at 130-200 GFLOP/s
# on one thread, 65-70% of the ~285 GFLOP/s this machine's FMA units can issue, and it writes no
# cols matrix. So `conv_plan.is_direct_forward` now takes it for the forward pass of every
# ungrouped layer with up to 128 input channels whose padded image fits a core's L2 cache (the
# first layers, 32-128-channel layers), and the input gradient of stride-1 layers with 8 to 64
# channels is the same kernel run on g with the rotated kernel (`conv_plan.is_direct_input`).
# Above 128 channels BLAS's deeper blocking reuses more, and on a 224-pixel, 64-channel image
# every block of 8 output channels would reread 13 MB: there im2col and Winograd stay (the
# measurements are in `benchmarks/README.md`, "Convolution planning"). With at most four output
# channels (a style network's RGB output, a decoder's last layer) the GEMM has four rows or
# fewer, so it is bound by memory; the direct kernels take both passes there
# (`conv_plan.is_direct`). Winograd, on the other
# hand, can show *more* than 100% here: it does 2.25x fewer multiplications than the FLOP count
# we divide by.
#
# The two Winograd rows show what the roofline leaves out. Winograd as 16 GEMMs writes the whole
# transformed input (16 values per 2x2 tile and channel, 4x the input) and the whole product
# before transforming it back: three passes over memory, each cheap in arithmetic and none
# compute-bound, and on 32-64-channel layers they took longer than the products. The fused kernel
# never writes them out. It lays the input out as the four stride-2 *phases* of the padded image,
# so that for 16 consecutive tiles each of the 16 values of their $4 \times 4$ input blocks is
# one vector load; it transforms one block of 48 tiles, runs the 16 products on the same register
# block as the direct kernel (24 vectors of partial sums: 8 output channels x 48 tiles), and
# transforms the results back while they are still in L1. Every lane is one tile and runs its
# own fixed sequence of operations, so a tile's result does not depend on which image or thread
# shares its block. `conv_plan.is_winograd_fused` takes it for the forward pass and input gradient
# of stride-1 3x3 layers with 32 to 128 channels. Every block of 48 tiles reads all of the
# layer's transformed filters ($16 C_\text{in} C_\text{out}$ values: 1 MB at 128 channels, 16 MB at
# 512), so with many channels the GEMMs, which reuse each filter over many more tiles, stay.
#
# Small maps waste lanes on that grid: the blocks of the last tile column read one grid column
# further, so a 14-pixel map's 7 x 7 tiles take an 8 x 8 grid and a quarter of the products are
# thrown away. With a batch of 16 images or more the kernel can turn the layout around: one vector
# then holds the *same tile of 16 images* (16 float32 lanes of AVX-512; `_planes_images` lays each
# group out as one padded plane of image vectors), the tiles follow each other without gaps and no
# lane is wasted (both layouts are timed at the end of section 7). Each lane still runs the same
# operations, so the bits are those of the tile layout. On large maps the extra row and column cost
# little and one tile row of 16 images no longer fits in L2, so the planner keeps tiles there.
# Turning the layout around is a transpose: the rows of 16 images become vectors of 16 images' pixels,
# and back at the end. Moved one value at a time it cost as much as the input transform; the kernel
# moves 16 x 16 blocks with `cpu_simd.vtranspose` instead, 16 vector loads, four rounds of two-input
# shuffles (rows r and r + h swap their off-diagonal h x h blocks, h = 8, 4, 2, 1) and 16 stores.
#
# See the difference on one image of the layer above: the obvious loop, compiled by Numba, against
# the engine's register-blocked kernel on the same flat planes (`cpu_direct._phases` lays them
# out; `_blocks` is the kernel, which `_finished_blocks` runs for every block of 8 channels, copying
# each block's valid columns out). Both compute the same sums, in the same order of taps.

# %%
import numba  # noqa: E402

from minivis.kernels import cpu_direct  # noqa: E402


@numba.njit
def obvious_direct(src, offs, w, length, out):
    """out[co, q] = sum_t w[co, t] * src[offs[t] + q]: one output channel, one tap at a time."""
    for co in range(w.shape[0]):
        acc = out[co]
        acc[:] = 0
        for t in range(offs.shape[0]):
            wt, o = w[co, t], offs[t]
            for q in range(length):
                acc[q] += wt * src[o + q]


one = layer_x[:1]
plan = cpu_direct._Plan(one.shape, layer_w, (1, 1), (1, 1, 1, 1), (1, 1), one.shape[2:])
src = np.empty(plan.src_size, np.float32)
cpu_direct._phases(one[0], *plan.geometry, plan.hq, plan.wq, src)
grid = plan.blocks * 48  # the grid pixels the blocks cover
slow = np.empty((64, grid), np.float32)
fast = np.empty((1, 64, *one.shape[2:]), np.float32)
w_flat = np.ascontiguousarray(layer_w.reshape(64, -1))
bias = np.zeros(1, np.float32)
obvious_direct(src, plan.offs, w_flat, grid, slow)  # compile both first
no_finish = cpu_direct.finish_arrays(None, np.float32)  # (the ops after the conv it can apply: none here)


def register_blocked():  # every channel block: its sums in registers, then its valid columns copied out
    cpu_direct._finished_blocks(src, plan.offs, plan.wp, 0, plan.n_cb, plan.blocks, plan.wq, bias, False,
                                *no_finish, np.empty(plan.buf_size, np.float32), fast[0])


register_blocked()
_, t_slow = timed(lambda: obvious_direct(src, plan.offs, w_flat, grid, slow), repeats=5)
_, t_fast = timed(register_blocked, repeats=5)
h1, w1 = one.shape[2:]
slow_pixels = slow[:, :h1 * plan.wq].reshape(64, h1, plan.wq)[:, :, :w1]  # drop the grid's padding columns
np.testing.assert_allclose(slow_pixels, fast[0], rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(fast, results["reference"][:1], rtol=1e-4, atol=1e-4)
one_flops = 2 * 64 * h1 * w1 * 64 * 9
print(f"one image, one thread: obvious loop {one_flops / t_slow / 1e9:.1f} GFLOP/s, "
      f"register block {one_flops / t_fast / 1e9:.1f} GFLOP/s (SGEMM peak above: {peak / 1e9:.0f}, all threads)")

# %% [markdown]
# Which one wins depends on the layer and the machine: the tiles pay on large images, whose
# whole cols matrix would not fit in cache, and Winograd on layers with many channels and large
# maps. The reference also lets BLAS use its own threads, so its rounding may depend on the batch
# an image came in; the engine's plans never let it.

# %% [markdown]
# ### What comes after the convolution: a tile is a pool window
#
# A VGG-style block is conv, ReLU, 2x2 max-pool. Run as three ops, the convolution writes its whole
# output, the ReLU reads it and writes it again, the pool reads it a third time and keeps a quarter.
# For inference (no graph to record) nothing needs those maps, and the fused Winograd kernel has
# every output of a $2 \times 2$ tile in hand at once: its four values $Y[0,0], Y[0,1], Y[1,0],
# Y[1,1]$ land in four phase planes, one per position. That tile *is* a pool window, so
# `F.conv2d_relu_max_pool2d` clips each output vector as the output transform produces it
# (`cpu_simd.vclip`: a compare and a select per lane, no branch) and takes each window's maximum
# straight from the four planes: only the pooled map, a quarter of the output, and its switches are
# ever written. Since $\max$ commutes with the rectifier and the window is read in the pool's own
# order (first maximum wins, NaN included), the values and switches are those of the three ops,
# bit for bit. `mv.nn.Sequential` does this by itself for its Conv2d, ReLU, MaxPool2d runs wherever
# nothing could tell: no hook, no recorded graph except training's lean one (whose backward needs
# only the pooled output and the switches).

# %%
with mv.no_grad():
    separate = mv.F.max_pool2d(mv.F.relu(mv.F.conv2d(layer_x, layer_w, padding=1)), 2)
    fused_block = mv.F.conv2d_relu_max_pool2d(layer_x, layer_w, padding=1)
np.testing.assert_array_equal(fused_block.numpy(), separate.numpy())
with mv.no_grad():
    _, t_apart = timed(lambda: mv.F.max_pool2d(mv.F.relu(mv.F.conv2d(layer_x, layer_w, padding=1)), 2), repeats=5)
    _, t_fused = timed(lambda: mv.F.conv2d_relu_max_pool2d(layer_x, layer_w, padding=1), repeats=5)
how = mv.F.conv.forward_algorithm(mv.backend.kernels("conv", layer_x, "lesson"), layer_x, layer_w, (1, 1),
                                  (1, 1, 1, 1), (1, 1), 1)  # the fused epilogues need "winograd_fused" (AVX-512)
print(f"conv + ReLU + pool, bit for bit the same: {t_apart * 1e3:.1f} ms as three ops, {t_fused * 1e3:.1f} ms "
      f"as one (the convolution's algorithm here: {how})")

# %% [markdown]
# The direct kernel finishes its outputs too. A first layer (one input channel, as `fashion_cnn`'s)
# runs on it, and its rectifier used to be a second pass over the whole output: for 64 images of
# 28 px and 32 channels, 6.4 MB written, read and written again, by one thread, after both threads
# had written it. Now `F.conv2d_relu` hands the clip to the kernel, which applies it to each output
# value as it copies the row out of its block of sums: the row is in L1, and the thread that
# computed it clips it. One detail decides whether this pays: the clip (`cpu_activation._clip_one`)
# is written as two selects one after the other, `v = low if v < low else v` then
# `high if v > high else v`, which the compiler turns into vector instructions. Written as one
# nested conditional, it left the row loop scalar with a branch per value, three times slower on
# values of random sign than the separate pass it was meant to replace. The values are the same
# either way, NaN included (it fails both tests).

# %%
first_x = np.random.default_rng(3).standard_normal((sized(64, 8), 1, 28, 28)).astype(np.float32)
first_w = np.random.default_rng(4).standard_normal((32, 1, 3, 3)).astype(np.float32)
first_x[0, 0, 5, 5] = np.nan  # the NaN must come through both ways
with mv.no_grad():
    apart, t_apart = timed(lambda: mv.F.relu(mv.F.conv2d(first_x, first_w, padding=1)).numpy(), repeats=5)
    together, t_together = timed(lambda: mv.F.conv2d_relu(first_x, first_w, padding=1).numpy(), repeats=5)
np.testing.assert_array_equal(apart.view(np.uint32), together.view(np.uint32))
assert np.isnan(together).any()
how = mv.F.conv.forward_algorithm(mv.backend.kernels("conv", first_x, "lesson"), first_x, first_w, (1, 1),
                                  (1, 1, 1, 1), (1, 1), 1)
print(f"first layer ({how}), conv then ReLU {t_apart * 1e3:.2f} ms, conv with its ReLU {t_together * 1e3:.2f} ms, "
      "the same bits")

# %% [markdown]
# The layout question from the paragraph on lanes, checked: a batch of 32 maps of 14 pixels on tile
# lanes (16 tiles of one image per vector, on a grid with a spare row and column) and on image
# lanes (one tile of 16 images per vector) gives the same bits, since every lane runs the same
# operations either way; only the number of lanes lit differs.

# %%
from minivis.kernels import cpu_winograd_fused  # noqa: E402

maps = np.random.default_rng(1).standard_normal((32, 32, 14, 14)).astype(np.float32)
maps_w = (np.random.default_rng(2).standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
by_layout, default_rule = {}, cpu_winograd_fused.IMAGE_LANES_AT
try:
    for layout, rule in (("tile lanes", 0.0), ("image lanes", 1.0)):
        cpu_winograd_fused.IMAGE_LANES_AT = rule
        with mv.no_grad(), mv.conv_algorithm("winograd_fused"):
            by_layout[layout] = timed(lambda: mv.F.conv2d(maps, maps_w, padding=1).numpy(), repeats=5)
finally:
    cpu_winograd_fused.IMAGE_LANES_AT = default_rule
np.testing.assert_array_equal(by_layout["tile lanes"][0], by_layout["image lanes"][0])
print("32 maps of 14 px, 32 -> 32 channels, the same bits: "
      + ", ".join(f"{layout} {seconds * 1e3:.2f} ms" for layout, (_, seconds) in by_layout.items()))

# %% [markdown]
# The turn-around itself, on one row of 16 images: `cpu_simd.vtranspose` reads 16 rows (one per
# image, `si` apart) of up to 16 pixels and writes up to 16 vectors (one per pixel, `dj` apart) of
# 16 images, the same values as NumPy's transpose of that block. `rows` and `cols` cut the block at
# a map's edge or a group's last image: the loads and stores are masked, so nothing past them is
# read or written.

# %%
from minivis.kernels import cpu_simd  # noqa: E402


@numba.njit
def turn_around(src, i, si, rows, cols, dst, j, dj):
    cpu_simd.vtranspose(src, i, si, rows, cols, dst, j, dj)


lanes = cpu_simd.lanes_of(np.float32)
row_of_images = maps[:lanes, 0, 3]  # (16 images, 14 pixels): row 3 of channel 0
turned = np.full((14, lanes), -1.0, np.float32)  # one vector of 16 images per pixel
for c in range(0, 14, lanes):  # a block of at most 16 pixels at a time (14 here: one)
    turn_around(maps.reshape(-1), 3 * 14 + c, maps[0].size, lanes, min(lanes, 14 - c), turned.reshape(-1), c * lanes,
                lanes)
np.testing.assert_array_equal(turned, row_of_images.T)
print(f"a row of {lanes} images turned into 14 vectors of {lanes} images: the same values as NumPy's .T")

# %% [markdown]
# ## 8. Summary
#
# - A convolution is a sparse, weight-shared matrix $C$ acting on the flattened image; a row is
#   one window, a column is one pixel's list of outputs.
# - The gradient with respect to the input is $C^\top g$. No inverse is involved: the signal
#   goes back along the same weights it came forward on.
# - $C^\top$ is itself a convolution: insert $s - 1$ zeros between the entries, pad by
#   $k - 1 - p$, and correlate with the kernel rotated by 180 degrees (`conv_transpose2d`,
#   same weight array). `output_padding` recovers the rows the forward floor division dropped.
# - Max-pooling selects, $y = Px$; unpooling with switches is $P^\top$, and it is the backward
#   of max-pooling.
# - The DeconvNet of Zeiler & Fergus is backprop with the ReLU rule $g \cdot \mathbb{1}[g>0]$;
#   guided backprop uses $g \cdot \mathbb{1}[x>0] \cdot \mathbb{1}[g>0]$; saliency uses the
#   true gradient $g \cdot \mathbb{1}[x>0]$.
# - Winograd's $F(2 \times 2, 3 \times 3)$ computes a 3x3 convolution with 2.25x fewer
#   multiplications: transform 4x4 input blocks and the filters, multiply elementwise (16 GEMMs
#   over channels), transform back. $F(4 \times 4, 3 \times 3)$ saves 4x but rounds ~15x worse in
#   float32 and tiles small maps coarsely: only incremental occlusion's shared products use it.
# - The op and its reference path are `minivis/functional/conv.py`; the faster plans and the rule
#   that picks them are `minivis/kernels/conv_plan.py`; `mv.conv_algorithm(...)` switches between them.
# - The roofline: a kernel runs at most at $\min(P, I \cdot B)$. A convolution's intensity $I$ puts
#   it under the compute roof, so what decides is the peak of the instructions a kernel issues:
#   a compiled loop of separate multiplies and adds on 8 lanes, storing its accumulators at every
#   step, reaches a quarter of it; a register block of fused multiply-adds on whole vectors
#   (BLAS's micro-kernels, and the engine's direct kernel through `cpu_simd`) most of it.
# - For inference, what follows a convolution can run inside it: the ReLU as each output is
#   written, and a 2x2 max-pool straight from a Winograd tile, which is a pool window.
#
# ## Exercises
#
# 1. **Rank and the pseudo-inverse.** For the $4 \times 4$ input and stride 1, compute the rank
#    of $C$ and compare $C^\top C x$ and $C^{+} C x$ (`np.linalg.pinv`) with $x$. Which pixels
#    can a "deconvolution" recover at all, and why is $C^\top$ still the right map for
#    explanations?
# 2. **Checkerboards.** Send a constant $g$ (all ones, $8 \times 8$) through
#    `conv_transpose2d` with a constant $3 \times 3$ kernel at stride 1, 2 and 3, and plot the
#    results. Explain the pattern with the columns of $C$ (how many windows cover each pixel).
#    Which kernel size removes it at stride 2?
# 3. **Overlapping pools.** Redo section 4 with $3 \times 3$ windows at stride 2 (AlexNet's
#    pooling, `mv.F.max_pool2d(x, 3, stride=2, return_switches=True)`) on a $7 \times 7$ input.
#    Now one pixel can win two windows: what must the backward do with the two gradients?
#    Write an unpooling that *writes* each value at its switch (`out.flat[sw] = y`, as PyTorch's
#    `max_unpool2d` does) and one that *adds* (`np.add.at`), and find out which one equals
#    `x.grad` and which one `mv.F.max_unpool2d` computes.
# 4. **Winograd's price.** Repeat the 2-D check of section 7 in float32 on a 64x64 image with
#    64 input channels (sum the elementwise products over channels before transforming back)
#    and compare the error against a float64 direct convolution with that of the float32
#    direct sum. Then flip the kernel: show that $G J = P G$ ($J$ reverses the 3 taps, $P$ swaps
#    rows 0 and 3), so the transform of the rotated kernel (the input gradient's) is a
#    permutation of $U$: no second filter transform is needed.
# 5. **Registers, not memory.** Give `obvious_direct` a block: four output channels per pass
#    over the taps, each loaded input value used four times. Time it, then read its machine code
#    (`obvious_direct.inspect_asm()`): are the accumulators still loaded and stored at every tap?
#    Count the loads per fused multiply-add in `cpu_direct._blocks` (3 + 8 per 24) and explain
#    why 8 channels by 3 vectors, and not 24 channels by 1 vector, is the block it uses.
# 6. **Tiles as lanes.** Lay a $1 \times 1 \times 10 \times 10$ image out with
#    `cpu_winograd_fused._planes` (padding 1, a grid of 6 x 6 tiles) and check that for tile
#    $q = t_y W_q + t_x$ the value $d[a, b]$ of its $4 \times 4$ input block sits at
#    $q + (a // 2) W_q + b // 2$ of phase plane $(a \bmod 2, b \bmod 2)$. Which lanes of a block are
#    thrown away, and what fraction of the work is that on a 14-pixel map (7 x 7 tiles on an
#    8 x 8 grid)? Time `mv.conv_algorithm("winograd_fused")` against `"direct"` on 14- and
#    56-pixel maps with 64 channels and explain the difference. Then lay 16 images out with
#    `_planes_images` and find the same block there; run 64 14-pixel maps with
#    `cpu_winograd_fused.IMAGE_LANES_AT` at 0 (tiles) and at 1 (images): compare the times and check
#    that the outputs are the same bits.
# 7. **Where the pool goes.** Show that `max(relu(a), relu(b)) == relu(max(a, b))` for any floats,
#    NaN included (the pool's rule: the first NaN wins), but that the *switch* (which tap won) can
#    differ when all four taps are negative. Which switch does `F.conv2d_relu_max_pool2d` report
#    for a window of four negatives, and why does it have to be that one for the backward pass of
#    a lean graph to equal the separate ops'?
