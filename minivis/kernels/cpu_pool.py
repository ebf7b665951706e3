"""Pooling kernels on plain arrays: max-pool with switches, the unpool scatter-add, its gather
adjoint, and a box-mean kernel shared by average and adaptive average pooling.

Every kernel works on *planes*: the caller reshapes ``(N, C, H, W)`` to ``(P, H, W)`` with
``P = N * C`` (a free view of a C-contiguous array), and the kernels run ``numba.prange`` over
``p``. One plane belongs to one thread, so the scatter kernels (unpool, box-mean backward) can
accumulate with plain ``+=`` and no races. Each fast kernel has a plain-NumPy ``naive_*`` twin
right below it that the tests compare it with.
"""

from __future__ import annotations

import numba
import numpy as np

from minivis.kernels import cpu_threads, cpu_workspace
from minivis.kernels.cpu_activation import _rule_one


# ----------------------------------------------------------------------------- max-pool
@numba.njit(parallel=True, cache=True)
def _max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches):
    n_planes, height, width = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for p in numba.prange(n_planes):
        for i in range(out_h):
            h0 = i * sh - ph
            h1 = min(h0 + (kh - 1) * dh + 1, height)
            while h0 < 0:  # skip the taps that fall in the top padding (-inf never wins)
                h0 += dh
            for j in range(out_w):
                w0 = j * sw - pw
                w1 = min(w0 + (kw - 1) * dw + 1, width)
                while w0 < 0:
                    w0 += dw
                best = x[p, h0, w0]
                best_index = h0 * width + w0
                for h in range(h0, h1, dh):  # row-major window order; strict > keeps the first max
                    for w in range(w0, w1, dw):
                        v = x[p, h, w]
                        if v > best or (v != v and best == best):  # the first NaN wins, as in PyTorch
                            best = v
                            best_index = h * width + w
                out[p, i, j] = best
                switches[p, i, j] = best_index


@numba.njit(inline="always")
def _tap(v, zero, rectify):
    """A tap as read: with ``rectify``, cpu_activation's clip to [0, inf] (-0.0 and NaN pass as they are)."""
    return zero if rectify and v < zero else v


@numba.njit(inline="always")
def _window_max(v00, v01, v10, v11, top_left, width):
    """The first maximum of a 2x2 window's taps in row-major order (``_first_wins``, below: larger, or the
    first NaN) and its flat index; the top-left tap's index is ``top_left`` and a row ``width`` long (both
    unsigned: mixed with signed ints Numba would compute the index in floats). Branch-free selects; also
    the fused Winograd kernel's pool (``cpu_winograd_fused._crop_pool``)."""
    one = np.uint64(1)
    best, at = v00, top_left
    take = _first_wins(v01, best)
    best, at = (v01, top_left + one) if take else (best, at)
    take = _first_wins(v10, best)
    best, at = (v10, top_left + width) if take else (best, at)
    take = _first_wins(v11, best)
    best, at = (v11, top_left + width + one) if take else (best, at)
    return best, at


@numba.njit(parallel=True, cache=True)
def _max_pool2x2(x, out, switches, rectify):
    """``_max_pool2d`` for kernel 2, stride 2, no padding or dilation (every VGG-style pool); with
    ``rectify``, of ``relu(x)``: each tap rectified as it is read, so the same values and switches
    as the two ops without the rectified map in memory (``relu_max_pool2x2``).

    The generic loop's window bounds, padding skips and runtime steps cost more than the four
    comparisons; here each output pixel is four loads and three branch-free selects (measured:
    benchmarks/README.md, "Design measurements", cpu_pool). Indices are unsigned and no row is
    sliced, for the reasons given above ``_first_wins``: 1.6-2x faster on 14-32 px planes.
    """
    u = np.uint64
    zero = x.dtype.type(0)
    n_planes, width = x.shape[0], u(x.shape[2])
    out_h, out_w = u(out.shape[1]), u(out.shape[2])
    for p in numba.prange(n_planes):
        for i in range(out_h):
            top, bottom = u(2) * i, u(2) * i + u(1)
            for j in range(out_w):
                left, right = u(2) * j, u(2) * j + u(1)
                out[p, i, j], switches[p, i, j] = _window_max(
                    _tap(x[p, top, left], zero, rectify), _tap(x[p, top, right], zero, rectify),
                    _tap(x[p, bottom, left], zero, rectify), _tap(x[p, bottom, right], zero, rectify),
                    top * width + left, width)


def relu_max_pool2x2(x: np.ndarray, kept: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``max_pool2d(relu(x))`` for kernel 2, stride 2, no padding: x (P, H, W) -> out, switches (P, H//2, W//2).
    ``kept``: out outlives the pass (a graph keeps it), so it comes from the allocator, not
    ``cpu_workspace``'s pool, whose larger block it would pin.

    Max commutes with the rectifier, but the switches do not (a window of negatives has its first
    pixel as the rectified map's maximum): so each tap is rectified before it is compared.
    """
    x = np.ascontiguousarray(x)
    out_hw = (x.shape[1] // 2, x.shape[2] // 2)
    out = (np.empty if kept else cpu_workspace.empty)((x.shape[0], *out_hw), x.dtype)
    switches = np.empty((x.shape[0], *out_hw), dtype=np.int64)
    _max_pool2x2(x, out, switches, True)
    return out, switches


def naive_relu_max_pool2x2(x):
    """Plain-NumPy twin of ``relu_max_pool2x2``: ``np.clip`` then ``naive_max_pool2d``."""
    out_hw = (x.shape[1] // 2, x.shape[2] // 2)
    return naive_max_pool2d(np.clip(x, 0, np.inf).astype(x.dtype), (2, 2), (2, 2), (0, 0), (1, 1), out_hw)


# Windows larger than their stride overlap (3x3 stride 2: AlexNet, ResNet stems), and the generic loop
# above reads every input pixel up to kh*kw/(sh*sw) times with its bounds logic in the innermost
# loop. A max over a rectangle is separable: first the max of every input row over each window's
# columns (``_row_maxima``), then the max of those row maxima over each window's rows
# (``_column_maxima``). The first maximum in row-major window order is the first row whose row
# maximum is the window's maximum, at that row's first maximum column: so strict ``>`` (first wins)
# in both passes, with the NaN rule in both, gives exactly the switches of the window walk. Each
# input row's maxima are taken once and shared by the windows that overlap on it.
#
# What makes it fast (measured: benchmarks/README.md, "Design measurements", cpu_pool): the inner
# loops run over output columns with branch-free selects and no slicing (a view costs Numba two
# atomic reference-count updates, which on 32x32 planes cost more than the arithmetic), and index
# with *unsigned* integers: Numba wraps negative indices around, and an index LLVM cannot prove
# non-negative keeps it from vectorizing the loop; an unsigned one cannot be negative.
@numba.njit(inline="always")
def _first_wins(v, best):
    """Does ``v`` replace ``best`` in a row-major walk: larger, or the first NaN (numpy's argmax rule;
    PyTorch's CPU kernel agrees while a window holds one NaN, and takes the last one of several)."""
    return (v > best) | ((v != v) & (best == best))


@numba.njit(inline="always")
def _clipped_row_max(x, p, h, kw, sw, pw, dw, j, best, col):
    """``_row_maxima`` for one window j that sticks out of the row: its in-bounds taps only."""
    width = x.shape[2]
    first = True
    for b in range(kw):
        w = j * sw - pw + b * dw
        if w < 0 or w >= width:
            continue
        v = x[p, h, w]
        if first or _first_wins(v, best[h, j]):
            best[h, j] = v
            col[h, j] = h * width + w
            first = False


@numba.njit(inline="always")
def _max3(xf, w, d1, d2):
    """(value, flat index) of the first maximum of the three taps ``xf[w]``, ``xf[w + d1]``, ``xf[w + d2]``."""
    bv, c = xf[w], w
    v = xf[w + d1]
    take = _first_wins(v, bv)
    bv, c = (v, w + d1) if take else (bv, c)
    v = xf[w + d2]
    take = _first_wins(v, bv)
    return (v, w + d2) if take else (bv, c)


@numba.njit(inline="always")
def _row_maxima(x, p, h, kw, sw, pw, dw, j0, j1, best, col):
    """best[h, j], col[h, j] = max of row ``x[p, h]`` over window j's columns, and the flat index
    ``h*W + w`` of its first maximum, for every window j. Window j reads the columns
    ``j*sw - pw + b*dw`` (b < kw) that lie inside the row; the windows in [j0, j1) lie wholly inside it."""
    u = np.uint64
    for j in range(j0):  # left border: clipped windows
        _clipped_row_max(x, p, h, kw, sw, pw, dw, j, best, col)
    n, uj0 = u(j1 - j0), u(j0)
    first = u(h * x.shape[2] + max(j0 * sw - pw, 0))  # flat index of window j0's first column
    xf = x[p].reshape(-1)
    if kw == 3 and sw == 2:  # the common overlapping pool: three taps in registers, one pass
        d1, d2 = u(dw), u(2 * dw)
        for t in range(n):
            best[h, uj0 + t], col[h, uj0 + t] = _max3(xf, u(2) * t + first, d1, d2)
    else:  # taps outermost, windows innermost
        usw = u(sw)
        for t in range(n):
            best[h, uj0 + t] = xf[usw * t + first]
            col[h, uj0 + t] = usw * t + first
        for b in range(1, kw):
            tap = first + u(b * dw)
            for t in range(n):
                v, bv = xf[usw * t + tap], best[h, uj0 + t]
                take = _first_wins(v, bv)
                best[h, uj0 + t] = v if take else bv
                col[h, uj0 + t] = usw * t + tap if take else col[h, uj0 + t]
    for j in range(j1, best.shape[1]):  # right border (and ceil_mode's partial window)
        _clipped_row_max(x, p, h, kw, sw, pw, dw, j, best, col)


@numba.njit(inline="always")
def _row_maxima_flat(x, p, pw, dw, q0, q1, best, col):
    """``_row_maxima`` for a three-tap stride-2 pool with ``W == 2 * Wo``, all rows in one loop.

    Window j of row h then reads the flat plane at ``2*(h*Wo + j) - pw + b*dw``: with ``q = h*Wo + j``
    the whole plane is one loop over q, long enough to vectorize where a row of a 32x32 plane (15
    windows) is shorter than one vector loop. Windows that cross a row end come out wrong and the
    caller recomputes them (``_clipped_row_max``); q in [q0, q1) keeps every read inside the plane.
    """
    u = np.uint64
    xf, bf, cf = x[p].reshape(-1), best.reshape(-1), col.reshape(-1)
    first, d1, d2, uq0 = u(2 * q0 - pw), u(dw), u(2 * dw), u(q0)
    for t in range(u(q1 - q0)):
        bf[uq0 + t], cf[uq0 + t] = _max3(xf, u(2) * t + first, d1, d2)


@numba.njit(inline="always")
def _column_maxima(best, col, i, kh, sh, ph, dh, width, out, switches, p):
    """out[p, i, j] = max of the row maxima over window row i's rows, switches[p, i, j] its flat index."""
    height, out_w = best.shape
    h0 = i * sh - ph
    if kh == 3 and h0 >= 0 and h0 + 2 * dh < height:  # three whole rows: one pass
        h1, h2 = h0 + dh, h0 + 2 * dh
        for j in range(out_w):
            bv, s = best[h0, j], np.int64(col[h0, j])
            v = best[h1, j]
            take = _first_wins(v, bv)
            bv, s = (v, np.int64(col[h1, j])) if take else (bv, s)
            v = best[h2, j]
            take = _first_wins(v, bv)
            bv, s = (v, np.int64(col[h2, j])) if take else (bv, s)
            out[p, i, j] = bv
            switches[p, i, j] = s
        return
    first = True
    for a in range(kh):
        h = h0 + a * dh
        if h < 0 or h >= height:
            continue
        for j in range(out_w):
            v, bv = best[h, j], out[p, i, j]
            take = first or _first_wins(v, bv)
            out[p, i, j] = v if take else bv
            switches[p, i, j] = np.int64(col[h, j]) if take else switches[p, i, j]
        first = False


@numba.njit(cache=True)
def _max_pool2d_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches, p0, p1):
    """``_max_pool2d`` for the planes [p0, p1), separably; one set of row buffers for them all."""
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    # interior windows: 0 <= j*sw - pw and j*sw - pw + (kw - 1)*dw < width
    j0 = min((pw + sw - 1) // sw, out_w)
    last = width - 1 - (kw - 1) * dw + pw
    j1 = max(min(last // sw + 1 if last >= 0 else 0, out_w), j0)
    best = np.empty((height, out_w), dtype=x.dtype)
    col = np.empty((height, out_w), dtype=np.int32)  # column indices: int32 vectorizes beside float32
    used = np.zeros(height, dtype=np.bool_)  # the input rows some window reads
    for i in range(out_h):
        for a in range(kh):
            h = i * sh - ph + a * dh
            if 0 <= h < height:
                used[h] = True
    flat = kw == 3 and sw == 2 and width == 2 * out_w  # even widths of the common overlapping pool
    q0 = (pw + 1) // 2  # the flat windows whose taps all lie inside the plane
    q1 = min((height * width - 1 + pw - 2 * dw) // 2 + 1, height * out_w)
    for p in range(p0, p1):
        if flat and q1 > q0:
            _row_maxima_flat(x, p, pw, dw, q0, q1, best, col)
            for h in range(height):  # the windows at the row ends: clipped, not crossing into the next row
                if used[h]:
                    for j in range(j0):
                        _clipped_row_max(x, p, h, kw, sw, pw, dw, j, best, col)
                    for j in range(j1, out_w):
                        _clipped_row_max(x, p, h, kw, sw, pw, dw, j, best, col)
        else:
            for h in range(height):
                if used[h]:
                    _row_maxima(x, p, h, kw, sw, pw, dw, j0, j1, best, col)
        for i in range(out_h):
            _column_maxima(best, col, i, kh, sh, ph, dh, width, out, switches, p)


# ``launch`` counts work in elements of a memory-bound pass; the separable pool spends several
# times as long on each input pixel, so it hands over its pixels times this weight, which puts the
# switch to threads where the measured crossover is (benchmarks/README.md, "Design measurements", cpu_pool).
SEPARABLE_COST = 8


@numba.njit(parallel=True, cache=True)
def _max_pool2d_separable(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches, chunks):
    planes = x.shape[0]
    for k in numba.prange(chunks):  # a run of planes per task: one set of row buffers each
        _max_pool2d_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches, planes * k // chunks,
                           planes * (k + 1) // chunks)


@numba.njit(cache=True)
def _max_pool2d_separable_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches, chunks):  # chunks: unused
    _max_pool2d_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches, 0, x.shape[0])


def max_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int], out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Max over each (dilated) window, and the flat index ``h * W + w`` of the first maximum.

    x: (P, H, W) -> out: (P, Ho, Wo) of x's dtype, switches: (P, Ho, Wo) int64, where
    ``out[p, i, j] = max_{a, b} x[p, i*sh - ph + a*dh, j*sw - pw + b*dw]`` over in-bounds taps
    (padding counts as -inf). The caller guarantees every window holds at least one input pixel.
    """
    x = np.ascontiguousarray(x)
    out = cpu_workspace.empty((x.shape[0], *out_hw), x.dtype)
    switches = np.empty((x.shape[0], *out_hw), dtype=np.int64)
    if (kernel == stride == (2, 2) and padding == (0, 0) and dilation == (1, 1)
            and 2 * out_hw[0] <= x.shape[1] and 2 * out_hw[1] <= x.shape[2]):  # ceil_mode may add a partial window
        _max_pool2x2(x, out, switches, False)
    elif out.size:
        chunks = min(x.shape[0], 4 * numba.get_num_threads())
        cpu_threads.launch(_max_pool2d_separable, _max_pool2d_separable_serial, x.size * SEPARABLE_COST, x,
                           *kernel, *stride, *padding, *dilation, out, switches, chunks)
    return out, switches


def naive_max_pool2d(x, kernel, stride, padding, dilation, out_hw):
    """Plain-NumPy twin of ``max_pool2d``: pad with -inf, take every tap, ``argmax`` (first max)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (out_h, out_w) = kernel, stride, padding, dilation, out_hw
    n_planes, height, width = x.shape
    big_h = max(height + 2 * ph, (out_h - 1) * sh + (kh - 1) * dh + 1)  # ceil_mode may reach past the pad
    big_w = max(width + 2 * pw, (out_w - 1) * sw + (kw - 1) * dw + 1)
    padded = np.full((n_planes, big_h, big_w), -np.inf, dtype=x.dtype)
    padded[:, ph:ph + height, pw:pw + width] = x
    flat = np.full((big_h, big_w), -1, dtype=np.int64)
    flat[ph:ph + height, pw:pw + width] = np.arange(height * width).reshape(height, width)
    rows = np.arange(out_h)[:, None] * sh + np.arange(kh)[None, :] * dh  # (Ho, kh) padded rows
    cols = np.arange(out_w)[:, None] * sw + np.arange(kw)[None, :] * dw  # (Wo, kw)
    taps = padded[:, rows[:, None, :, None], cols[None, :, None, :]].reshape(n_planes, out_h, out_w, -1)
    tap_index = flat[rows[:, None, :, None], cols[None, :, None, :]].reshape(out_h, out_w, -1)
    first_max = np.argmax(taps, axis=-1)  # argmax returns the first maximum (NaN counts as max)
    # A window of all -inf inputs: its "first maximum" must be its first input pixel, not a pad.
    tap_index = np.broadcast_to(tap_index, taps.shape)
    lands_on_pad = np.take_along_axis(tap_index, first_max[..., None], axis=-1)[..., 0] < 0
    first_max = np.where(lands_on_pad, np.argmax(tap_index >= 0, axis=-1), first_max)
    out = np.take_along_axis(taps, first_max[..., None], axis=-1)[..., 0]
    switches = np.take_along_axis(tap_index, first_max[..., None], axis=-1)[..., 0]
    return out, switches


# ----------------------------------------------------------------------------- unpool / gather
@numba.njit(parallel=True, cache=True)
def _unpool(values, switches, out):
    n_planes, n_values = values.shape
    for p in numba.prange(n_planes):  # one plane per thread: duplicate switches add without races
        for t in range(out.shape[1]):  # zeroed here, while the plane is in this core's cache
            out[p, t] = 0
        for k in range(n_values):
            s = switches[p, k]
            if 0 <= s < out.shape[1]:  # always, for switches from max_pool2d; a tampered array cannot write outside
                out[p, s] += values[p, k]


def _flat_planes(a: np.ndarray, dtype: object = None) -> np.ndarray:
    """(P, H, W) -> contiguous (P, H*W) (``reshape(P, -1)`` fails when P = 0: -1 is then undefined)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(a.shape[0], a.shape[1] * a.shape[2])


def unpool(values: np.ndarray, switches: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Scatter-add each value to its switch: ``out[p, s] = sum_{k: switches[p, k] = s} values[p, k]``.

    values, switches: (P, Ho, Wo) -> out: (P, H, W) with ``(H, W) = out_hw``. This is max-pool's
    backward (``values`` = the upstream gradient) and max_unpool2d's forward. The callers check
    ``0 <= switches < H * W``; the kernel skips any index outside that range all the same, so no
    edited switches array can make it write outside the plane.
    """
    n_planes = values.shape[0]
    out = cpu_workspace.empty((n_planes, out_hw[0] * out_hw[1]), values.dtype)
    _unpool(_flat_planes(values), _flat_planes(switches, np.int64), out)
    return out.reshape(n_planes, *out_hw)


@numba.njit(parallel=True, cache=True)
def _relu_unpool(g, pooled, switches, rule_code, out):
    n_planes, n_values = g.shape
    inf = np.inf
    for p in numba.prange(n_planes):
        for t in range(out.shape[1]):
            out[p, t] = 0
        for k in range(n_values):
            s = switches[p, k]
            if 0 <= s < out.shape[1]:  # as _unpool: no switches array can make it write outside the plane
                out[p, s] = _rule_one(out[p, s] + g[p, k], pooled[p, k], 0.0, inf, out.dtype.type(0), rule_code)


def relu_unpool(g: np.ndarray, pooled: np.ndarray, switches: np.ndarray, out_hw: tuple[int, int],
                rule_code: int) -> np.ndarray:
    """The backward of ``relu_max_pool2x2``: ``relu_rule_backward(unpool(g), relu(x))`` in one pass.

    g, pooled, switches: (P, Ho, Wo) -> (P, H, W). Windows that do not overlap send each pixel at most
    one value, so the rule at a switch reads the rectified value there, the pooled output, and every
    other pixel gets ``rule(0) = 0``. The sum ``0 + g`` before the rule is unpool's own (it turns a
    gradient of -0.0 into +0.0), so the result is the two ops' bit for bit.
    """
    n_planes = g.shape[0]
    out = cpu_workspace.empty((n_planes, out_hw[0] * out_hw[1]), g.dtype)
    _relu_unpool(_flat_planes(g), _flat_planes(pooled), _flat_planes(switches, np.int64), rule_code, out)
    return out.reshape(n_planes, *out_hw)


def naive_unpool(values, switches, out_hw):
    """Plain-NumPy twin of ``unpool`` (``np.add.at`` accumulates repeated indices)."""
    n_planes = values.shape[0]
    out = np.zeros((n_planes, out_hw[0] * out_hw[1]), dtype=values.dtype)
    planes = np.arange(n_planes)[:, None]
    np.add.at(out, (planes, _flat_planes(switches)), _flat_planes(values))
    return out.reshape(n_planes, *out_hw)


@numba.njit(parallel=True, cache=True)
def _gather(source, switches, out):
    n_planes, n_values = out.shape
    for p in numba.prange(n_planes):
        for k in range(n_values):
            s = switches[p, k]
            out[p, k] = source[p, s] if 0 <= s < source.shape[1] else 0  # (see _unpool)


def gather(source: np.ndarray, switches: np.ndarray) -> np.ndarray:
    """``out[p, i, j] = source[p].flat[switches[p, i, j]]``: the adjoint of ``unpool``.

    source: (P, H, W), switches: (P, Ho, Wo) -> out: (P, Ho, Wo) (max_unpool2d's backward).
    """
    n_planes = source.shape[0]
    out = np.empty(switches.shape, dtype=source.dtype)
    _gather(_flat_planes(source), _flat_planes(switches, np.int64), out.reshape(n_planes, out.shape[1] * out.shape[2]))
    return out


def naive_gather(source, switches):
    """Plain-NumPy twin of ``gather``."""
    flat = np.take_along_axis(_flat_planes(source), _flat_planes(switches), axis=1)
    return flat.reshape(switches.shape)


# ----------------------------------------------------------------------------- box mean (avg pools)
@numba.njit(inline="always")
def _box_mean_plane(x, row_start, row_end, col_start, col_end, row_div, col_div, out, p):
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            total = 0.0  # accumulate in float64 whatever the dtype
            for h in range(row_start[i], row_end[i]):
                for w in range(col_start[j], col_end[j]):
                    total += x[p, h, w]
            out[p, i, j] = total / (row_div[i] * col_div[j])


@numba.njit(parallel=True, cache=True)
def _box_mean(x, row_start, row_end, col_start, col_end, row_div, col_div, out):
    for p in numba.prange(x.shape[0]):
        _box_mean_plane(x, row_start, row_end, col_start, col_end, row_div, col_div, out, p)


@numba.njit(cache=True)
def _box_mean_serial(x, row_start, row_end, col_start, col_end, row_div, col_div, out):
    for p in range(x.shape[0]):
        _box_mean_plane(x, row_start, row_end, col_start, col_end, row_div, col_div, out, p)


def box_mean(x: np.ndarray, rows: tuple[np.ndarray, np.ndarray, np.ndarray],
             cols: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean over rectangular bins with a separable divisor.

    x: (P, H, W); ``rows = (start, end, divisor)``, each (Ho,) int64, and ``cols`` likewise (Wo,):
    ``out[p, i, j] = sum x[p, rs[i]:re[i], cs[j]:ce[j]] / (rdiv[i] * cdiv[j])`` -> (P, Ho, Wo).
    avg_pool2d and adaptive_avg_pool2d differ only in how they choose the bins and divisors.
    """
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], len(rows[0]), len(cols[0])), dtype=x.dtype)
    # (on few elements the calling thread alone: Lite0's global average pool, 62k values, took
    # 0.10 ms on all threads and 0.03 ms on one)
    cpu_threads.launch(_box_mean, _box_mean_serial, x.size, x, *rows[:2], *cols[:2], rows[2], cols[2], out)
    return out


def naive_box_mean(x, rows, cols):
    """Plain-NumPy twin of ``box_mean`` (one slice per output pixel)."""
    out = np.empty((x.shape[0], len(rows[0]), len(cols[0])), dtype=x.dtype)
    for i, (r0, r1, rd) in enumerate(zip(*rows, strict=True)):
        for j, (c0, c1, cd) in enumerate(zip(*cols, strict=True)):
            out[:, i, j] = x[:, r0:r1, c0:c1].sum(axis=(1, 2)) / (rd * cd)
    return out


@numba.njit(inline="always")
def _box_mean_backward_plane(g, row_start, row_end, col_start, col_end, row_div, col_div, out, p):
    for i in range(g.shape[1]):
        for j in range(g.shape[2]):
            share = g[p, i, j] / (row_div[i] * col_div[j])
            for h in range(row_start[i], row_end[i]):
                for w in range(col_start[j], col_end[j]):
                    out[p, h, w] += share


@numba.njit(parallel=True, cache=True)
def _box_mean_backward(g, row_start, row_end, col_start, col_end, row_div, col_div, out):
    for p in numba.prange(g.shape[0]):  # one plane per thread: overlapping bins add without races
        _box_mean_backward_plane(g, row_start, row_end, col_start, col_end, row_div, col_div, out, p)


@numba.njit(cache=True)
def _box_mean_backward_serial(g, row_start, row_end, col_start, col_end, row_div, col_div, out):
    for p in range(g.shape[0]):
        _box_mean_backward_plane(g, row_start, row_end, col_start, col_end, row_div, col_div, out, p)


def box_mean_backward(g: np.ndarray, rows: tuple[np.ndarray, np.ndarray, np.ndarray],
                      cols: tuple[np.ndarray, np.ndarray, np.ndarray], in_hw: tuple[int, int]) -> np.ndarray:
    """Adjoint of ``box_mean``: every input pixel receives ``g / divisor`` from each bin that holds it.

    g: (P, Ho, Wo) -> (P, H, W) with ``(H, W) = in_hw``.
    """
    out = np.zeros((g.shape[0], *in_hw), dtype=g.dtype)
    cpu_threads.launch(_box_mean_backward, _box_mean_backward_serial, out.size, np.ascontiguousarray(g), *rows[:2],
                       *cols[:2], rows[2], cols[2], out)
    return out


def naive_box_mean_backward(g, rows, cols, in_hw):
    """Plain-NumPy twin of ``box_mean_backward``."""
    out = np.zeros((g.shape[0], *in_hw), dtype=g.dtype)
    for i, (r0, r1, rd) in enumerate(zip(*rows, strict=True)):
        for j, (c0, c1, cd) in enumerate(zip(*cols, strict=True)):
            out[:, r0:r1, c0:c1] += (g[:, i, j] / (rd * cd))[:, None, None]
    return out
