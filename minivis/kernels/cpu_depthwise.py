"""Direct depthwise convolution kernels (CPU): forward, input gradient and weight gradient.

A depthwise convolution has one input channel per group, so im2col + GEMM would be N*C tiny
GEMMs; these kernels slide each filter over its own plane instead. Notation as in ``cpu_conv``.

Depthwise: groups == C_in, each input channel ci feeds output channels ci*M .. ci*M + M-1
(M = C_out / C_in, the channel multiplier); the weight is (C_out, 1, kh, kw). Each thread
copies the plane it reads into a small zero-padded buffer first, so no inner loop checks bounds.

Stride 1 (most depthwise layers) uses a "wide grid". With the padded plane xp of width
Wp = Wo + dw*(kw-1) flattened, output pixel (oh, ow) reads
    xp[oh + i*dh, ow + j*dw] = xp_flat[p + i*dh*Wp + j*dw]    with p = oh*Wp + ow,
so the whole plane is one 1-D correlation over p with a fixed offset per tap. Computing it for
the Wp - Wo extra columns too (a few percent of waste, dropped afterwards) makes every inner loop
one long contiguous loop that LLVM vectorizes; adding three taps per pass over the accumulator
cuts its loads and stores threefold.

The forward pass at stride s > 1 first splits the padded plane into its s*s *polyphase*
components P_ab[r, c] = xp[r*s + a, c*s + b]. Tap (i, j) with i*dh = qi*s + a, j*dw = qj*s + b
reads xp[oh*s + i*dh, ow*s + j*dw] = P_ab[oh + qi, ow + qj]: a stride-1 read of one component,
so the wide grid applies to each component in turn, with contiguous inner loops instead of strided
ones (measurements: benchmarks/README.md, "Convolution planning").

Every kernel runs in parallel over (n, c) planes (or images, channels last) and has a serial twin
that ``cpu_threads.launch`` runs on inputs too small to pay for waking the threads. The plain-NumPy
references the tests compare them with are ``cpu_conv.naive_conv2d`` and its two gradients.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads, cpu_workspace
from minivis.kernels.cpu_activation import _clip_one
from minivis.kernels.cpu_layout import _fill_zero, _geometry, _valid_range, from_channels_last, to_channels_last


@numba.njit(cache=True)
def _fill_padded(src, top, left, sh, sw, buf):
    """``buf[r, c] = src[r*sh - top, c*sw - left]``, zero wherever that falls outside ``src``: ``src``
    moved down by ``top`` and right by ``left`` (negative = cropped), and with a stride, one
    polyphase component of that padded plane."""
    height, width = src.shape
    rows, cols = buf.shape
    c0, c1 = _valid_range(cols, sw, -left, width)
    for r in range(rows):
        sr = r * sh - top
        dst = buf[r]
        if sr < 0 or sr >= height:
            for t in range(cols):
                dst[t] = 0
            continue
        for t in range(c0):
            dst[t] = 0
        _copy_row(src[sr], dst, c0, c1, left, sw)
        for t in range(c1, cols):
            dst[t] = 0


@numba.njit(inline="always")
def _copy_row(row, dst, c0, c1, left, sw):
    """dst[c] = row[c*sw - left] for c in [c0, c1)."""
    if sw == 1:  # a contiguous copy, which LLVM vectorizes (the strided one below it does not)
        seg, part = row[c0 - left:c1 - left], dst[c0:c1]
        for t in range(c1 - c0):
            part[t] = seg[t]
    else:
        for t in range(c0, c1):
            dst[t] = row[t * sw - left]


@numba.njit(cache=True)
def _copy_interior(src, top, left, sh, sw, buf):
    """The cells of ``_fill_padded`` that come from ``src``, and only those: into a buffer zeroed once,
    every plane of one geometry lands in the same cells, so the zero border never needs rewriting.
    (The per-row zero runs cost more than the copy on small planes: 4x on 14x14, measured in
    benchmarks/README.md, "Convolution planning".)"""
    height, width = src.shape
    rows, cols = buf.shape
    c0, c1 = _valid_range(cols, sw, -left, width)
    r0, r1 = _valid_range(rows, sh, -top, height)
    for r in range(r0, r1):
        _copy_row(src[r * sh - top], buf[r], c0, c1, left, sw)


@numba.njit(cache=True)
def _copy_interior_phases(src, top, left, sh, sw, xp):
    """``_copy_interior`` for all ``sh*sw`` polyphase components at once: ``xp[a*sw + b]`` receives
    component (a, b) of ``src`` moved down by ``top`` and right by ``left``. At column stride 2 each
    row of ``src`` is read once and dealt out to its two components (one strided read per
    component took 1.5-2x longer on Lite0's stride-2 layers: benchmarks/README.md, "Convolution
    planning"); other strides copy component by component."""
    if sw != 2:
        for phase in range(sh * sw):
            _copy_interior(src, top - phase // sw, left - phase % sw, sh, sw, xp[phase])
        return
    height, width = src.shape
    rows, cols = xp.shape[1], xp.shape[2]
    for sr in range(height):
        a, r = (sr + top) % sh, (sr + top) // sh
        if r < 0 or r >= rows:
            continue
        row = src[sr]
        for b in range(2):
            t0 = (b - left) % 2  # the first column of src in component column phase b
            c0 = (t0 + left) // 2
            dst = xp[a * 2 + b, r]
            for k in range(max(0, min((width - t0 + 1) // 2, cols - c0))):
                dst[c0 + k] = row[t0 + 2 * k]


@numba.njit(cache=True)
def _padded_plane(src, top, left, rows, cols):
    """A new (rows, cols) plane filled by ``_fill_padded`` at stride 1."""
    buf = np.empty((rows, cols), dtype=src.dtype)
    _fill_padded(src, top, left, 1, 1, buf)
    return buf


@numba.njit(cache=True)
def _phase_taps(kh, kw, dh, dw, row_len, sh, sw, a, b):
    """Flat offsets ``qi*row_len + qj`` and flat indices ``i*kw + j`` of the kernel taps that read
    polyphase component (a, b) (``i*dh = qi*sh + a``, ``j*dw = qj*sw + b``; at stride 1, all taps),
    padded with zero-offset taps of index -1 to a multiple of three (the passes below take three
    taps at a time)."""
    count = 0
    for i in range(kh):
        for j in range(kw):
            count += (i * dh) % sh == a and (j * dw) % sw == b
    offsets = np.zeros((count + 2) // 3 * 3, dtype=np.int64)
    taps = np.full(offsets.size, -1, dtype=np.int64)
    t = 0
    for i in range(kh):
        for j in range(kw):
            if (i * dh) % sh == a and (j * dw) % sw == b:
                offsets[t] = (i * dh) // sh * row_len + (j * dw) // sw
                taps[t] = i * kw + j
                t += 1
    return offsets, taps


@numba.njit(inline="always")
def _tap_weights(wk, taps, weights):
    """weights[t] = wk[i, j] for tap ``taps[t] = i*kw + j``, 0 for a padding tap (-1)."""
    kw = wk.shape[1]
    for t in range(taps.size):
        weights[t] = wk[taps[t] // kw, taps[t] % kw] if taps[t] >= 0 else 0


@numba.njit(inline="always")
def _write_row(src, row, bias, scale, shift, low, high, mode):
    """row[j] = src[j], finished by ``mode`` as the output is written (no further pass over it):

    0: as is; 1: ``+ bias``; 2: ``clip(v * scale + shift, low, high)``, an eval batch norm and the
    rectifier after it (``F.conv2d_bn_relu``); 3: both, the bias first. Each step rounds as the separate
    op would (``+ 0.0`` is never added: it would turn -0.0 into +0.0). One loop per mode, so each
    vectorises.
    """
    if mode == 0:
        for j in range(row.shape[0]):
            row[j] = src[j]
    elif mode == 1:
        for j in range(row.shape[0]):
            row[j] = src[j] + bias
    elif mode == 2:
        for j in range(row.shape[0]):
            row[j] = _clip_one(src[j] * scale + shift, low, high)
    else:
        for j in range(row.shape[0]):
            row[j] = _clip_one((src[j] + bias) * scale + shift, low, high)


@numba.njit(inline="always")
def _copy_out(acc, wp, dst, bias=0.0, scale=1.0, shift=0.0, low=0.0, high=0.0, mode=0):
    """dst[i, j] = acc[i*wp + j], finished by ``mode`` (``_write_row``): a wide-grid result without
    its extra columns."""
    for i in range(dst.shape[0]):
        _write_row(acc[i * wp:], dst[i], bias, scale, shift, low, high, mode)


@numba.njit(cache=True)
def _wide_correlate_add(xp, offsets, weights, acc):
    """acc[p] += sum_t weights[t] * xp[p + offsets[t]] over the flat wide grid (``offsets.size``: a
    multiple of three). Nine taps per pass while they last (a whole 3x3 kernel: one pass over acc;
    a 5x5 kernel padded to 27 taps: three), then three: each pass reads and writes all of acc,
    which outgrows the L1 cache from about 56x56 (nine per pass ran 1.1-1.6x faster than three on
    Lite0's planes: benchmarks/README.md, "Convolution planning")."""
    n = acc.size
    t = 0
    while t + 9 <= offsets.size:
        w0, w1, w2, w3, w4 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3], weights[t + 4]
        w5, w6, w7, w8 = weights[t + 5], weights[t + 6], weights[t + 7], weights[t + 8]
        x0, x1, x2, x3 = xp[offsets[t]:], xp[offsets[t + 1]:], xp[offsets[t + 2]:], xp[offsets[t + 3]:]
        x4, x5, x6 = xp[offsets[t + 4]:], xp[offsets[t + 5]:], xp[offsets[t + 6]:]
        x7, x8 = xp[offsets[t + 7]:], xp[offsets[t + 8]:]
        for p in range(n):
            acc[p] += (((w0 * x0[p] + w1 * x1[p] + w2 * x2[p]) + (w3 * x3[p] + w4 * x4[p] + w5 * x5[p]))
                       + (w6 * x6[p] + w7 * x7[p] + w8 * x8[p]))
        t += 9
    for u in range(t, offsets.size, 3):
        w0, w1, w2 = weights[u], weights[u + 1], weights[u + 2]
        x0, x1, x2 = xp[offsets[u]:], xp[offsets[u + 1]:], xp[offsets[u + 2]:]
        for p in range(n):
            acc[p] += w0 * x0[p] + w1 * x1[p] + w2 * x2[p]


@numba.njit(cache=True)
def _wide_correlate_add_taps(xp, offsets, weights, count, acc):
    """``_wide_correlate_add`` over the first ``count`` taps only: three per pass, then a pass of the
    one or two left over (a polyphase component of a 3x3 stride-2 kernel has 4, 2, 2 or 1 taps, and
    padding each to three would add two thirds more work)."""
    n = acc.size
    full = count - count % 3
    if full:
        _wide_correlate_add(xp, offsets[:full], weights[:full], acc)
    if count - full == 2:
        w0, w1 = weights[full], weights[full + 1]
        x0, x1 = xp[offsets[full]:], xp[offsets[full + 1]:]
        for p in range(n):
            acc[p] += w0 * x0[p] + w1 * x1[p]
    elif count - full == 1:
        w0, x0 = weights[full], xp[offsets[full]:]
        for p in range(n):
            acc[p] += w0 * x0[p]


# fastmath "reassoc" lets LLVM vectorize the dot-product reductions (it may reorder the sums).
@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _wide_tap_dots(gw, xp, offsets, out):
    """out[t] = sum_p gw[p] * xp[p + offsets[t]]: one dot product per tap, three taps per pass."""
    for t in range(0, offsets.size, 3):
        x0, x1, x2 = xp[offsets[t]:], xp[offsets[t + 1]:], xp[offsets[t + 2]:]
        s0 = s1 = s2 = gw.dtype.type(0)  # accumulate in the input dtype (float32 stays float32)
        for p in range(gw.size):
            s0 += gw[p] * x0[p]
            s1 += gw[p] * x1[p]
            s2 += gw[p] * x2[p]
        out[t], out[t + 1], out[t + 2] = s0, s1, s2


@numba.njit(cache=True)
def _depthwise_forward_planes(x, w, sh, sw, top, left, dh, dw, out, p0, p1, post, low, high, mode):
    """out[n, co, oh, ow] = sum_ij w[co, 0, i, j] * x_pad[n, co // M, oh*sh + i*dh, ow*sw + j*dw]
    for the planes ``p = n*C_out + co`` in [p0, p1), each finished by ``mode`` as it is written
    (``_write_row``; post: (3, C_out), the rows bias, scale, shift).

    One wide-grid correlation per polyphase component (one component at stride 1). The tap
    layout depends on the geometry only, so it is worked out once, and the planes share one set
    of buffers (per-plane allocations cost more than a 7x7 plane's arithmetic).
    """
    c_out, ho, wo = out.shape[1], out.shape[2], out.shape[3]
    mult = c_out // x.shape[1]
    kh, kw = w.shape[2], w.shape[3]
    wp = wo + dw * (kw - 1) // sw  # the wide grid: room for the largest column offset qj
    rows = ho + dh * (kh - 1) // sh + 1  # one spare row: the last wide row's extra columns read past
    n_taps = (kh * kw + 2) // 3 * 3
    offsets = np.zeros((sh * sw, n_taps), np.int64)
    taps = np.full((sh * sw, n_taps), -1, np.int64)
    counts = np.zeros(sh * sw, np.int64)
    for phase in range(sh * sw):
        o, t = _phase_taps(kh, kw, dh, dw, wp, sh, sw, phase // sw, phase % sw)
        counts[phase] = o.size
        offsets[phase, :o.size] = o
        taps[phase, :o.size] = t
    xp = np.zeros((sh * sw, rows, wp), dtype=x.dtype)  # one padded buffer per component, zeroed once
    acc = np.empty(ho * wp, dtype=out.dtype)
    weights = np.empty(n_taps, dtype=out.dtype)
    for p in range(p0, p1):
        n, co = p // c_out, p % c_out
        acc[:] = 0
        _copy_interior_phases(x[n, co // mult], top, left, sh, sw, xp)
        for phase in range(sh * sw):
            m = counts[phase]
            if m == 0:
                continue
            _tap_weights(w[co, 0], taps[phase, :m], weights[:m])
            _wide_correlate_add(xp[phase].reshape(-1), offsets[phase, :m], weights[:m], acc)
        _copy_out(acc, wp, out[n, co], post[0, co], post[1, co], post[2, co], low, high, mode)


@numba.njit(cache=True)
def _depthwise_backward_input_planes(g, w, sh, sw, top, left, dh, dw, dx, p0, p1):
    """dx[n, ci] for the input planes ``p = n*C_in + ci`` in [p0, p1) at stride 1 (``sh``, ``sw``: 1;
    strided layers go to ``_depthwise_backward_input_polyphase``), from their M output planes.

    dx[ih, iw] = sum_ij w[i, j] g[ih + top - i*dh, iw + left - j*dw]: a stride-1 correlation of
    g (shifted and zero-padded) with the kernel flipped in both axes, so the wide grid applies.
    The tap layout depends on the geometry only, and the planes share one zero-bordered buffer.
    """
    c_in, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    mult = g.shape[1] // c_in
    kh, kw = w.shape[2], w.shape[3]
    wp = width + dw * (kw - 1)
    offsets, taps = _phase_taps(kh, kw, dh, dw, wp, 1, 1, 0, 0)
    gp = np.zeros((height + dh * (kh - 1) + 1, wp), dtype=g.dtype)  # one spare row for the overrun
    acc = np.empty(height * wp, dtype=dx.dtype)
    weights = np.empty(offsets.size, dtype=dx.dtype)
    for p in range(p0, p1):
        n, ci = p // c_in, p % c_in
        acc[:] = 0
        for m in range(mult):
            co = ci * mult + m
            _tap_weights(w[co, 0, ::-1, ::-1], taps, weights)
            _copy_interior(g[n, co], dh * (kh - 1) - top, dw * (kw - 1) - left, 1, 1, gp)
            _wide_correlate_add(gp.reshape(-1), offsets, weights, acc)
        _copy_out(acc, wp, dx[n, ci])


# The input gradient at stride s > 1, polyphase. Input pixel (ih, iw) sits at padded position
# (r, c) = (ih + top, iw + left) = (R*s + a, C*s + b): it belongs to the polyphase component (a, b) of
# the padded plane, at (R, C) in it. Output pixel (oh, ow) reads it through tap (i, j) exactly when
# i*dh = qi*s + a with R = oh + qi (and likewise j, b, C, qj), so
#     dx_ab[R, C] = sum over the taps of phase (a, b) of w[i, j] * g[R - qi, C - qj]:
# each component of the input gradient is a stride-1 (full) correlation of g with that phase's
# sub-kernel. With g zero-padded by (Qi, Qj) = the largest (qi, qj) at the top and left, tap (qi, qj)
# reads gp[R + Qi - qi, C + Qj - qj]: fixed offsets on one wide grid, as in the forward pass, so every
# inner loop is contiguous and vectorizes, where scattering each output row back onto the input
# with stride s did not (measured: benchmarks/README.md, "Convolution planning"). One padded copy
# of g serves all s*s phases; the phases then interleave into dx, each pixel written once.
@numba.njit(cache=True)
def _depthwise_backward_input_polyphase(g, w, sh, sw, top, left, dh, dw, dx, p0, p1):
    """dx[n, ci] for the input planes ``p = n*C_in + ci`` in [p0, p1), one polyphase component at a time;
    one set of buffers for them all (the tap layout depends on the geometry only)."""
    c_in, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    mult = g.shape[1] // c_in
    kh, kw = w.shape[2], w.shape[3]
    q_rows, q_cols = dh * (kh - 1) // sh, dw * (kw - 1) // sw  # the largest (qi, qj)
    n_rows, n_cols = (height + top + sh - 1) // sh, (width + left + sw - 1) // sw  # (R, C) per component
    wp = n_cols + q_cols  # the wide grid's row length
    phases, n_taps = sh * sw, (kh * kw + 2) // 3 * 3
    offsets = np.zeros((phases, n_taps), np.int64)
    taps = np.full((phases, n_taps), -1, np.int64)
    counts = np.zeros(phases, np.int64)
    for phase in range(phases):
        o, t = _phase_taps(kh, kw, dh, dw, wp, sh, sw, phase // sw, phase % sw)  # o = qi*wp + qj
        counts[phase] = np.sum(t >= 0)  # the real taps (o, t come padded to a multiple of three)
        offsets[phase, :o.size] = q_rows * wp + q_cols - o  # (Qi - qi)*wp + (Qj - qj)
        taps[phase, :o.size] = t
    gp = np.zeros((n_rows + q_rows + 1, wp), dtype=g.dtype)  # one spare row for the wide rows' overrun
    gflat = gp.reshape(-1)
    acc = np.empty((phases, n_rows * wp), dtype=dx.dtype)
    weights = np.empty(n_taps, dtype=dx.dtype)
    for p in range(p0, p1):
        n, ci = p // c_in, p % c_in
        _fill_zero(acc)
        for m in range(mult):
            co = ci * mult + m
            _copy_interior(g[n, co], q_rows, q_cols, 1, 1, gp)  # the same cells for every plane
            for phase in range(phases):
                count = counts[phase]
                if count == 0:  # e.g. a 1x1 stride-2 kernel: three phases get no gradient (acc stays 0)
                    continue
                _tap_weights(w[co, 0], taps[phase, :count], weights[:count])
                _wide_correlate_add_taps(gflat, offsets[phase], weights, count, acc[phase])
        dst = dx[n, ci]
        for phase in range(phases):  # interleave: dx[R*sh + a - top, C*sw + b - left] = dx_ab[R, C]
            a, b = phase // sw, phase % sw
            r0, r1 = _valid_range(n_rows, sh, a - top, height)
            c0, c1 = _valid_range(n_cols, sw, b - left, width)
            for r in range(r0, r1):
                row, src = dst[r * sh + a - top, c0 * sw + b - left:], acc[phase, r * wp + c0:]
                for t in range(c1 - c0):
                    row[t * sw] = src[t]


@numba.njit(inline="always")
def _depthwise_backward_input_range(g, w, sh, sw, top, left, dh, dw, dx, p0, p1):
    """The input planes [p0, p1): one wide-grid correlation per plane at stride 1, polyphase otherwise."""
    if sh == 1 and sw == 1:
        _depthwise_backward_input_planes(g, w, sh, sw, top, left, dh, dw, dx, p0, p1)
    else:
        _depthwise_backward_input_polyphase(g, w, sh, sw, top, left, dh, dw, dx, p0, p1)


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _depthwise_backward_weight_plane(g, x, sh, sw, top, left, dh, dw, out):
    """out[i, j] = sum_{oh, ow} g[oh, ow] * x_pad[oh*sh + i*dh, ow*sw + j*dw] for one plane."""
    ho, wo = g.shape
    kh, kw = out.shape
    if sh == 1 and sw == 1:
        wp = wo + dw * (kw - 1)
        xp = _padded_plane(x, top, left, ho + dh * (kh - 1) + 1, wp).reshape(-1)
        gw = _padded_plane(g, 0, 0, ho, wp).reshape(-1)  # zero in the extra columns: they add nothing
        offsets, _ = _phase_taps(kh, kw, dh, dw, wp, 1, 1, 0, 0)
        sums = np.empty(offsets.size, dtype=out.dtype)
        _wide_tap_dots(gw, xp, offsets, sums)
        for t in range(kh * kw):
            out[t // kw, t % kw] = sums[t]
        return
    xp = _padded_plane(x, top, left, (ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + dw * (kw - 1) + 1)
    for i in range(kh):  # strided: one dot product per tap, row by row
        for j in range(kw):
            acc = g.dtype.type(0)
            for oh in range(ho):
                grow, row = g[oh], xp[oh * sh + i * dh, j * dw:]
                for ow in range(wo):
                    acc += grow[ow] * row[ow * sw]
            out[i, j] = acc


@numba.njit(parallel=True, cache=True)
def _depthwise_forward(x, w, sh, sw, top, left, dh, dw, out, chunks, post, low, high, mode):
    planes = out.shape[0] * out.shape[1]
    for k in numba.prange(chunks):  # a run of planes per task: one set of buffers each
        _depthwise_forward_planes(x, w, sh, sw, top, left, dh, dw, out, planes * k // chunks,
                                  planes * (k + 1) // chunks, post, low, high, mode)


@numba.njit(cache=True)
def _depthwise_forward_serial(x, w, sh, sw, top, left, dh, dw, out, chunks, post, low, high, mode):  # chunks: unused
    _depthwise_forward_planes(x, w, sh, sw, top, left, dh, dw, out, 0, out.shape[0] * out.shape[1], post, low, high,
                              mode)


@numba.njit(parallel=True, cache=True)
def _depthwise_backward_input(g, w, sh, sw, top, left, dh, dw, dx, chunks):
    planes = dx.shape[0] * dx.shape[1]
    for k in numba.prange(chunks):  # a run of planes per task: one set of buffers each
        _depthwise_backward_input_range(g, w, sh, sw, top, left, dh, dw, dx, planes * k // chunks,
                                        planes * (k + 1) // chunks)


@numba.njit(cache=True)
def _depthwise_backward_input_serial(g, w, sh, sw, top, left, dh, dw, dx, chunks):  # chunks: unused
    _depthwise_backward_input_range(g, w, sh, sw, top, left, dh, dw, dx, 0, dx.shape[0] * dx.shape[1])


@numba.njit(inline="always")
def _backward_weight_of_plane(g, x, sh, sw, top, left, dh, dw, partial, plane):
    c_out = g.shape[1]
    n, co = plane // c_out, plane % c_out
    _depthwise_backward_weight_plane(g[n, co], x[n, co // (c_out // x.shape[1])], sh, sw, top, left, dh, dw,
                                     partial[n, co])


@numba.njit(parallel=True, cache=True)
def _depthwise_backward_weight(g, x, sh, sw, top, left, dh, dw, partial):
    for plane in numba.prange(g.shape[0] * g.shape[1]):
        _backward_weight_of_plane(g, x, sh, sw, top, left, dh, dw, partial, plane)


@numba.njit(cache=True)
def _depthwise_backward_weight_serial(g, x, sh, sw, top, left, dh, dw, partial):
    for plane in range(g.shape[0] * g.shape[1]):
        _backward_weight_of_plane(g, x, sh, sw, top, left, dh, dw, partial, plane)


# ----------------------------------------------------------------------------- depthwise, channels last
# On small planes the per-plane work above (a padded copy in, the wide-grid passes, a copy out,
# the tap weights) wraps a few hundred multiply-adds: loop overhead dominates, and EfficientNet-Lite0's
# 7 px layers ran 5x slower than oneDNN's. oneDNN computes depthwise layers with the channels
# innermost; so do these kernels, for output planes of at most ``CHANNELS_LAST_MAX_PIXELS`` (and
# one output channel per input channel): each image is transposed to (H, W, C), and every output pixel is
# a sum over its taps of whole channel rows, ``out[oh, ow, :] += w[i, j, :] * x[ih, iw, :]``,
# a loop over C that vectorizes fully, with the padding handled by skipping the taps that fall
# outside the image (no padded copy). The input gradient scatters the same way:
# ``dx[ih, iw, :] += w[i, j, :] * g[oh, ow, :]``. (measured: benchmarks/README.md, "Convolution planning")
CHANNELS_LAST_MAX_PIXELS = 14 * 14  # Lite0's 7 px layers: 2.5-3.5x faster, its 14 px ones 1.1-2x (the
# forward; the input gradient 0.95-2x); on 28 px 1.2-1.5x slower (the transposes in and out cost more
# than the channel loops save)


@numba.njit(inline="always")
def _channels_last_taps(w):
    """(kh, kw, C) copy of a depthwise weight (C, 1, kh, kw): one contiguous row of C per tap."""
    c, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    wt = np.empty((kh, kw, c), dtype=w.dtype)
    for i in range(kh):
        for j in range(kw):
            for k in range(c):
                wt[i, j, k] = w[k, 0, i, j]
    return wt


@numba.njit(inline="always")
def _depthwise_cl_image(src, wt, sh, sw, top, left, dh, dw, dst, src_t, dst_t, backward, post, low, high, mode):
    """One image, channels innermost; src_t, dst_t: (pixels, C) scratch for src and dst; the forward
    finishes each output pixel by ``mode`` (``_write_row``) while the scratch is in cache.

    Forward (src = x (C, H, W), dst = out (C, Ho, Wo)): each output pixel gathers its taps,
    ``out[oh, ow, :] += w[i, j, :] * x[ih, iw, :]``. Input gradient (src = g, dst = dx): each output
    pixel scatters back onto the input pixels its taps read, ``dx[ih, iw, :] += w[i, j, :] * g[oh, ow, :]``.
    """
    c = src.shape[0]
    out_hw, in_hw = (src.shape[1:], dst.shape[1:]) if backward else (dst.shape[1:], src.shape[1:])
    ho, wo, height, width = out_hw[0], out_hw[1], in_hw[0], in_hw[1]
    kh, kw = wt.shape[0], wt.shape[1]
    src_pixels, dst_pixels = src.shape[1] * src.shape[2], dst.shape[1] * dst.shape[2]
    # each plane as one row: the copies' loops run along all its pixels
    to_channels_last(src.reshape(c, 1, src_pixels), 0, 0, 0, 1, 0, src_pixels, src_t.reshape(1, src_pixels, c))
    dst_t[:] = 0
    for oh in range(ho):
        for ow in range(wo):
            o = oh * wo + ow
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:  # a tap in the padding: skipped, nothing copied
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    q = ih * width + iw
                    if backward:
                        for k in range(c):
                            dst_t[q, k] += wt[i, j, k] * src_t[o, k]
                    else:
                        for k in range(c):
                            dst_t[o, k] += wt[i, j, k] * src_t[q, k]
    if mode == 1:
        for o in range(dst_pixels):
            for k in range(c):
                dst_t[o, k] += post[0, k]
    elif mode >= 2:  # as ``_write_row``, with the channels innermost
        for o in range(dst_pixels):
            for k in range(c):
                v = dst_t[o, k] + post[0, k] if mode == 3 else dst_t[o, k]
                dst_t[o, k] = _clip_one(v * post[1, k] + post[2, k], low, high)
    from_channels_last(dst_t.reshape(1, dst_pixels, c), 0, 1, dst_pixels, dst.reshape(c, 1, dst_pixels))


@numba.njit(parallel=True, cache=True)
def _depthwise_cl(src, w, sh, sw, top, left, dh, dw, dst, backward, post, low, high, mode):
    wt = _channels_last_taps(w)
    c, src_pixels, dst_pixels = src.shape[1], src.shape[2] * src.shape[3], dst.shape[2] * dst.shape[3]
    for n in numba.prange(src.shape[0]):  # an image per task, each with its own scratch
        _depthwise_cl_image(src[n], wt, sh, sw, top, left, dh, dw, dst[n], np.empty((src_pixels, c), src.dtype),
                            np.empty((dst_pixels, c), src.dtype), backward, post, low, high, mode)


@numba.njit(cache=True)
def _depthwise_cl_serial(src, w, sh, sw, top, left, dh, dw, dst, backward, post, low, high, mode):
    wt = _channels_last_taps(w)
    c, src_pixels, dst_pixels = src.shape[1], src.shape[2] * src.shape[3], dst.shape[2] * dst.shape[3]
    src_t, dst_t = np.empty((src_pixels, c), src.dtype), np.empty((dst_pixels, c), src.dtype)
    for n in range(src.shape[0]):
        _depthwise_cl_image(src[n], wt, sh, sw, top, left, dh, dw, dst[n], src_t, dst_t, backward, post, low, high,
                            mode)


def _channels_last(c_in: int, w_shape: tuple[int, ...], out_hw: tuple[int, ...]) -> bool:
    """The planning rule between the two depthwise layouts: channels last for small output planes
    (one output channel per input channel)."""
    return w_shape[0] == c_in and out_hw[0] * out_hw[1] <= CHANNELS_LAST_MAX_PIXELS


def finish_args(channels: int, dtype: np.dtype, bias: np.ndarray | None,
                bn_relu: tuple | None) -> tuple[np.ndarray, object, object, int]:
    """The kernels' finishing arguments (``_write_row``): (post, low, high, mode), post (3, C) = bias, scale, shift.

    bn_relu: (scale, shift, low, high) or None: an eval batch norm, ``v * scale + shift`` per
    channel, and the rectifier after it, ``clip(., low, high)`` (``F.conv2d_bn_relu``).
    """
    post = np.zeros((3, channels), dtype)
    if bias is not None:
        post[0] = bias.reshape(-1)
    low = high = dtype.type(0)
    if bn_relu is not None:
        post[1], post[2] = bn_relu[0].reshape(-1), bn_relu[1].reshape(-1)
        low, high = dtype.type(bn_relu[2]), dtype.type(bn_relu[3])
    return post, low, high, (bias is not None) + 2 * (bn_relu is not None)


def depthwise_forward(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pad4: tuple[int, int, int, int],
                      dilation: tuple[int, int], out_hw: tuple[int, int], bias: np.ndarray | None = None,
                      bn_relu: tuple | None = None) -> np.ndarray:
    """out[n, co, oh, ow] = sum_ij w[co, 0, i, j] * x_pad[n, co // M, ih, iw] (+ bias[co]).

    x: (N, C_in, H, W), w: (C_out, 1, kh, kw) with C_out = M * C_in -> out: (N, C_out, Ho, Wo).
    bias: (C_out,) or None; bn_relu: (scale, shift, low, high) or None, then
    ``clip(out * scale + shift, low, high)`` per channel (``finish_args``). Both are applied as each
    plane is written out, with the rounding of the separate ops and without another pass over memory.
    """
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    out = cpu_workspace.empty((x.shape[0], w.shape[0]) + tuple(out_hw), x.dtype)
    finish = finish_args(w.shape[0], x.dtype, bias, bn_relu)
    if _channels_last(x.shape[1], w.shape, out_hw):
        cpu_threads.launch(_depthwise_cl, _depthwise_cl_serial,
                           out.size * w.shape[2] * w.shape[3] // 2 if out.shape[0] > 1 else 0, x, w,
                           *_geometry(stride, pad4, dilation), out, False, *finish)
        return out
    chunks = min(out.shape[0] * out.shape[1], 4 * numba.get_num_threads())
    cpu_threads.launch(_depthwise_forward, _depthwise_forward_serial, out.size * w.shape[2] * w.shape[3] // 2, x, w,
                       *_geometry(stride, pad4, dilation), out, chunks, *finish)
    return out


def depthwise_backward_input(g: np.ndarray, w: np.ndarray, x_shape: tuple[int, int, int, int],
                             stride: tuple[int, int], pad4: tuple[int, int, int, int],
                             dilation: tuple[int, int]) -> np.ndarray:
    """dx[n, ci, ih, iw] = sum over co in ci's group, taps and output pixels that read (ih, iw) of w * g.

    g: (N, C_out, Ho, Wo), w: (C_out, 1, kh, kw) -> dx: ``x_shape`` = (N, C_in, H, W).
    """
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w, dtype=g.dtype)
    dx = cpu_workspace.empty(x_shape, g.dtype)
    if _channels_last(x_shape[1], w.shape, g.shape[2:]):
        cpu_threads.launch(_depthwise_cl, _depthwise_cl_serial,
                           g.size * w.shape[2] * w.shape[3] // 2 if g.shape[0] > 1 else 0, g, w,
                           *_geometry(stride, pad4, dilation), dx, True, *finish_args(g.shape[1], g.dtype, None, None))
        return dx
    work = g.size * w.shape[2] * w.shape[3] // 2
    chunks = min(dx.shape[0] * dx.shape[1], 4 * numba.get_num_threads())
    # stride 1: a wide-grid correlation per plane; else polyphase: one per component of dx
    cpu_threads.launch(_depthwise_backward_input, _depthwise_backward_input_serial, work, g, w,
                       *_geometry(stride, pad4, dilation), dx, chunks)
    return dx


def depthwise_backward_weight(g: np.ndarray, x: np.ndarray, w_shape: tuple[int, int, int, int],
                              stride: tuple[int, int], pad4: tuple[int, int, int, int],
                              dilation: tuple[int, int]) -> np.ndarray:
    """dw[co, 0, i, j] = sum_{n, oh, ow} g[n, co, oh, ow] * x_pad[n, co // M, ih, iw].

    g: (N, C_out, Ho, Wo), x: (N, C_in, H, W) -> dw: ``w_shape`` = (C_out, 1, kh, kw). Each
    (n, co) plane is summed by one thread into its own slot; the N slots are added at the end.
    """
    g, x = np.ascontiguousarray(g), np.ascontiguousarray(x, dtype=g.dtype)
    partial = np.empty((g.shape[0], g.shape[1], w_shape[2], w_shape[3]), dtype=g.dtype)
    cpu_threads.launch(_depthwise_backward_weight, _depthwise_backward_weight_serial,
                       g.size * w_shape[2] * w_shape[3] // 2, g, x, *_geometry(stride, pad4, dilation), partial)
    return partial.sum(axis=0).reshape(w_shape)
