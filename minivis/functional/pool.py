"""Pooling: max-pool with switches, max-unpool, average, adaptive-average and global-average pools.

Shapes: x: (N, C, H, W) -> (N, C, Ho, Wo). Window geometry follows PyTorch exactly: output size
``Ho = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1`` (``ceil`` with ``ceil_mode``, dropping a last
window that would start in the right padding), padding at most half the kernel.

Max-pool's *switches* are the flat index ``h * W + w`` of each window's maximum in its input plane
(PyTorch's ``return_indices``); ties go to the first maximum in row-major window order. The
backward of max-pool routes each upstream gradient to its switch, and that is exactly unpooling
with switches: one scatter-add kernel (``cpu_pool.unpool``) serves both max_pool2d's backward and
max_unpool2d's forward. Its adjoint, a gather at the switches, is max_unpool2d's backward.

The kernels live in ``minivis.kernels.cpu_pool``; ``backend.kernels`` is the one seam where
the device decides which kernel module runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, is_lean, lean_error
from minivis.functional import lrp
from minivis.kernels import cpu_pool
from minivis.rules import RULE_CODES, current_lrp, current_rule
from minivis.validate import check_array_size, check_bool, check_tensor, int_pair

Pair = int | tuple[int, int]


# ----------------------------------------------------------------------------- helpers
def _planes(a: Any) -> Any:
    """(N, C, H, W) -> (N*C, H, W): the kernels work plane by plane."""
    return a.reshape(-1, *a.shape[-2:])


def _pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape`` for one spatial axis."""
    extent = d * (k - 1) + 1
    out = (size + 2 * p - extent + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside input or left pad
        out -= 1
    return out


def _window(op: str, x: Tensor, kernel_size: Pair, stride: Pair | None, padding: Pair, dilation: Pair,
            ceil_mode: bool) -> tuple[tuple[int, int], ...]:
    """Validated ``(kernel, stride, padding, dilation, (Ho, Wo))``, each an (h, w) pair."""
    kernel = int_pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else int_pair(stride, op, "stride")
    padding = int_pair(padding, op, "padding", minimum=0)
    dilation = int_pair(dilation, op, "dilation")
    ceil_mode = check_bool(ceil_mode, op, "ceil_mode")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        half = (kernel[0] // 2, kernel[1] // 2)
        raise ValueError(f"{op}: padding must be at most half the kernel size, (kernel_size // 2) = "
                         f"{half}, got padding={padding} for kernel_size={kernel}")
    in_hw = x.shape[-2:]
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    padded = tuple(n + 2 * p for n, p in zip(in_hw, padding, strict=True))
    if any(e > n for e, n in zip(extent, padded, strict=True)):
        raise ValueError(f"{op}: kernel_size {kernel} (extent {extent} with dilation {dilation}) is larger "
                         f"than the padded input {padded} (input {tuple(in_hw)}, padding {padding})")
    # a stride past the padded input leaves one window per axis; capped so the kernels' int64 offsets
    # (index * stride) cannot wrap around into out-of-bounds reads
    stride = (min(stride[0], padded[0]), min(stride[1], padded[1]))
    out_hw = tuple(_pool_output_size(*args, ceil_mode)
                   for args in zip(in_hw, kernel, stride, padding, dilation, strict=True))
    return kernel, stride, padding, dilation, out_hw


# ----------------------------------------------------------------------------- max-pool / unpool
def max_pool2d(x: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               dilation: Pair = 1, ceil_mode: bool = False,
               return_switches: bool = False) -> Tensor | tuple[Tensor, Any]:
    """y[n, c, i, j] = max over the window's taps x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw].

    x: (N, C, H, W) -> y: (N, C, Ho, Wo), and with ``return_switches`` also switches: an int64
    array (N, C, Ho, Wo) on x's device holding the flat index ``h * W + w`` of each maximum (first
    maximum on ties; padding counts as -inf). ``stride`` defaults to ``kernel_size``.

    Backward: dL/dx = unpool(g, switches), the upstream gradient scatter-added to the switches;
    where windows overlap (e.g. kernel 3, stride 2) a pixel that wins several windows sums them.
    The array handed back can never make the backward pass index outside the input: on the CPU it is
    a read-only view of the graph's own switches (NumPy refuses writes; no second copy, which for
    VGG16 would be 12 MB per image), on the GPU a copy (CuPy arrays have no read-only flag).
    """
    op = "max_pool2d"
    x = check_tensor(x, op, ndim=4)
    kernel, stride, padding, dilation, out_hw = _window(op, x, kernel_size, stride, padding, dilation,
                                                        ceil_mode)
    return_switches = check_bool(return_switches, op, "return_switches")
    kernels = backend.kernels("pool", x.data, op)
    n, c, h, w = x.shape
    out, switches = kernels.max_pool2d(_planes(x.data), kernel, stride, padding, dilation, out_hw)
    out, switches = out.reshape(n, c, *out_hw), switches.reshape(n, c, *out_hw)
    # Saved: the switches; the input and output too for the LRP norm rule, except in a lean graph.
    saved = None if is_lean() else (x.data, out)
    x_shape = x.shape

    def backward(g):
        rules = current_lrp()
        if rules is not None and rules.rule_for("max_pool2d").name == "norm":
            # relevance shared by the z-rule: the window's winner holds all of z, so it gets all of R
            # (exactly winner-takes-all, the gradient, up to the stabiliser)
            if saved is None:
                raise lean_error(op, "the LRP norm rule")
            rule = rules.rule_for("max_pool2d")
            return (lrp.affine_relevance(rule, g, saved[0], None, None, lambda: saved[1], None,
                                         lambda s, _: kernels.unpool(_planes(s), _planes(switches),
                                                                     (h, w)).reshape(x_shape)),)
        return (kernels.unpool(_planes(g), _planes(switches), (h, w)).reshape(x_shape),)

    y = Tensor.from_op(out, (x,), backward, op)
    if not return_switches:
        return y
    if kernels is cpu_pool:  # (the GPU kernels get a copy: CuPy arrays have no read-only flag)
        switches.flags.writeable = False  # the graph's own array; the caller gets a read-only view of it
        return y, switches.view()
    return y, switches.copy()


def relu_max_pool2d(x: Tensor, return_switches: bool = False) -> Tensor | tuple[Tensor, Any]:
    """``max_pool2d(relu(x), 2)``, a rectifier and the 2x2 max-pool after it as one op.

    The same values, switches and gradients as the two ops, bit for bit, under the three ReLU rules:
    each window's taps are rectified as they are read (``cpu_pool.relu_max_pool2x2``), so the
    rectified map is never stored, and the backward applies the rule at the switches only, while
    unpooling (``cpu_pool.relu_unpool``). That is exact because the windows do not overlap: each
    input pixel receives at most one gradient value, and the rule at a switch reads the rectified
    value there, which is the pooled output. (On the GPU the two ops' kernels run.) ``mv.nn`` runs it
    for a ``ReLU`` followed by a ``MaxPool2d(2)`` in a ``Sequential`` where only those rules can
    follow (``nn.relu_max_pool``).

    Saved: the switches and the pooled output (a quarter of the map). What it does not keep, the
    rectifier's input and output, DeepLIFT's rescale rule and the LRP norm rule for max-pool need.
    """
    op = "relu_max_pool2d"
    x = check_tensor(x, op, ndim=4)
    return_switches = check_bool(return_switches, op, "return_switches")
    n, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"{op}: the input must be at least 2x2 for a 2x2 pool, got {h}x{w}")
    pool = backend.kernels("pool", x.data, op)
    out_hw = (h // 2, w // 2)
    rectified = None
    if pool is cpu_pool:
        out, switches = cpu_pool.relu_max_pool2x2(_planes(x.data))
    else:  # the GPU: the two ops' kernels, the rectified map kept between them
        rectified = backend.xp(x.data).clip(x.data, 0, np.inf)
        out, switches = pool.max_pool2d(_planes(rectified), (2, 2), (2, 2), (0, 0), (1, 1), out_hw)
    out, switches = out.reshape(n, c, *out_hw), switches.reshape(n, c, *out_hw)
    y = relu_max_pool2d_node(x, out, switches, rectified)
    if not return_switches:
        return y
    if pool is cpu_pool:  # as max_pool2d: a read-only view of the graph's own switches
        switches.flags.writeable = False
        return y, switches.view()
    return y, switches.copy()


def relu_max_pool2d_node(x: Tensor, out: Any, switches: Any, rectified: Any = None) -> Tensor:
    """``relu_max_pool2d``'s output ``out`` and ``switches`` (N, C, H//2, W//2), computed by the caller, as a
    tensor with its backward pass, which reads x's shape only (and ``rectified``, the rectified map,
    where the kernels that made ``out`` kept it: the GPU's)."""
    op = "relu_max_pool2d"
    pool = backend.kernels("pool", out, op)
    x_shape, (h, w) = x.shape, x.shape[2:]

    def backward(g):
        rules = current_lrp()
        if current_rule() == "rescale":
            raise RuntimeError(f"{op}: the rescale rule needs the rectifier's input, which the fused op does not "
                               f"keep; run ReLU and MaxPool2d apart (mv.nn.fusion(False))")
        if rules is not None and rules.rule_for("max_pool2d").name == "norm":
            raise RuntimeError(f"{op}: the LRP norm rule needs the pool's input, which the fused op does not keep; "
                               f"run ReLU and MaxPool2d apart (mv.nn.fusion(False))")
        if rules is not None and rules.rule_for("relu").name == "pass":  # LRP: relevance passes the rectifier
            return (pool.unpool(_planes(g), _planes(switches), (h, w)).reshape(x_shape),)
        code = RULE_CODES[current_rule() if rules is None else "gradient"]
        if rectified is None:  # the rule at each switch reads the rectified value there: the pooled output
            return (cpu_pool.relu_unpool(_planes(g), _planes(out), _planes(switches), (h, w), code).reshape(x_shape),)
        unpooled = pool.unpool(_planes(g), _planes(switches), (h, w)).reshape(x_shape)
        return (backend.kernels("activation", g, op).relu_rule_backward(unpooled, rectified, 0.0, np.inf, 0.0, code),)

    return Tensor.from_op(out, (x,), backward, op)


def _check_switches(op: str, switches: Any, x: Tensor) -> Any:
    is_array = isinstance(switches, np.ndarray) or backend.is_gpu_array(switches)
    if isinstance(switches, Tensor) or not is_array:
        raise TypeError(f"{op}: switches must be the int64 array returned by "
                        f"max_pool2d(..., return_switches=True), got {type(switches).__name__}")
    if switches.dtype != np.int64:
        raise TypeError(f"{op}: switches must have dtype int64, got {switches.dtype}")
    if tuple(switches.shape) != x.shape:
        raise ValueError(f"{op}: switches must have the input's shape (N, C, H, W) = {x.shape}, "
                         f"got {tuple(switches.shape)}")
    if backend.device_of(switches) != x.device:
        raise ValueError(f"{op}: switches must be on the input's device ({x.device}), "
                         f"got {backend.device_of(switches)}")
    return switches


def _unpool_output_size(op: str, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                        padding: tuple[int, int], output_size: Any) -> tuple[int, int]:
    """PyTorch's rule: default ``(H - 1)*s - 2*p + k``; an explicit size must lie strictly within
    ``default ± stride`` (it resolves the rounding that max-pool's floor lost)."""
    default = tuple((n - 1) * s - 2 * p + k
                    for n, k, s, p in zip(in_hw, kernel, stride, padding, strict=True))
    if output_size is None:
        if min(default) < 1:
            raise ValueError(f"{op}: the default output size (H - 1)*stride - 2*padding + kernel_size "
                             f"= {default} is empty; pass output_size")
        return default
    if not isinstance(output_size, tuple | list):
        raise TypeError(f"{op}: output_size must be (H, W) or a full (N, C, H, W) shape, got {output_size!r}")
    size = tuple(output_size)
    if len(size) == 4:
        size = size[2:]
    if len(size) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size):
        raise ValueError(f"{op}: output_size must be (H, W) or a full (N, C, H, W) shape, "
                         f"got {output_size!r}")
    for axis in range(2):
        low, high = default[axis] - stride[axis], default[axis] + stride[axis]
        if not low < size[axis] < high:
            raise ValueError(f"{op}: output_size {tuple(int(v) for v in size)} must lie strictly between "
                             f"{low} and {high} along axis {axis} (default size {default}, stride {stride})")
    return int(size[0]), int(size[1])


def max_unpool2d(x: Tensor, switches: Any, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
                 output_size: Any = None) -> Tensor:
    """Place each value at its switch in a zero plane: out[n, c].flat[switches[n, c, i, j]] += x[n, c, i, j].

    x, switches: (N, C, H, W) (switches int64, from ``max_pool2d(..., return_switches=True)``) ->
    out: (N, C, Hout, Wout), by default ``Hout = (H - 1)*stride - 2*padding + kernel_size``;
    ``output_size`` may be (Hout, Wout) or a full 4-D shape (e.g. the pooled input's ``x.shape``),
    strictly within ``default ± stride`` as in PyTorch. To invert a dilated max-pool, pass the
    window's extent ``dilation*(kernel_size - 1) + 1`` as ``kernel_size`` (or an ``output_size``).

    Duplicate switches (possible only when the pooling windows overlapped) are *summed*, which makes
    this the exact adjoint of max-pool's gather; PyTorch assigns one of them instead. The two agree
    whenever the windows do not overlap. Backward: dL/dx = g gathered at the switches;
    the switches themselves are not differentiable.
    """
    op = "max_unpool2d"
    x = check_tensor(x, op, ndim=4)
    kernel = int_pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else int_pair(stride, op, "stride")
    padding = int_pair(padding, op, "padding", minimum=0)
    switches = _check_switches(op, switches, x).copy()  # private: the bounds checked here hold in backward too
    out_hw = _unpool_output_size(op, x.shape[-2:], kernel, stride, padding, output_size)
    check_array_size(x.shape[:2] + out_hw, x.dtype, op)
    kernels = backend.kernels("pool", x.data, op)
    if switches.size and (int(switches.min()) < 0 or int(switches.max()) >= out_hw[0] * out_hw[1]):
        raise ValueError(f"{op}: switches must lie in [0, {out_hw[0] * out_hw[1]}) for output size {out_hw}, "
                         f"got values in [{int(switches.min())}, {int(switches.max())}]")
    n, c = x.shape[:2]
    out = kernels.unpool(_planes(x.data), _planes(switches), out_hw).reshape(n, c, *out_hw)

    def backward(g):
        return (kernels.gather(_planes(g), _planes(switches)).reshape(x.shape),)

    return Tensor.from_op(out, (x,), backward, op)


# ----------------------------------------------------------------------------- average pools
def _avg_bins(size: int, k: int, s: int, p: int, n_out: int,
              count_include_pad: bool) -> tuple[np.ndarray, ...]:
    """Start, end and divisor of avg_pool2d's windows along one axis, as PyTorch computes them:
    the divisor counts the padding a window covers (but not what lies past it) unless
    ``count_include_pad=False``, when it counts the input pixels only."""
    start = np.arange(n_out, dtype=np.int64) * s - p
    end = np.minimum(start + k, size + p)
    divisor = end - start
    start, end = np.maximum(start, 0), np.minimum(end, size)
    return start, end, (divisor if count_include_pad else end - start)


def avg_pool2d(x: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """y[n, c, i, j] = sum of x over window (i, j) / divisor, zero padding.

    x: (N, C, H, W) -> (N, C, Ho, Wo), Ho as for max_pool2d. The divisor is the window's area
    clipped to the padded input (``count_include_pad=True``, PyTorch's default) or the number
    of input pixels in it. Backward: each pixel receives g / divisor from every window holding it.
    """
    op = "avg_pool2d"
    x = check_tensor(x, op, ndim=4)
    kernel, stride, padding, _, out_hw = _window(op, x, kernel_size, stride, padding, 1, ceil_mode)
    include = check_bool(count_include_pad, op, "count_include_pad")
    rows, cols = (_avg_bins(*args, include) for args in zip(x.shape[-2:], kernel, stride, padding, out_hw,
                                                            strict=True))
    return _box_mean(op, x, rows, cols)


def _adaptive_bins(size: int, n_out: int) -> tuple[np.ndarray, ...]:
    """PyTorch's adaptive bins: [floor(i*H/Ho), ceil((i+1)*H/Ho)), each averaged over its own length."""
    i = np.arange(n_out, dtype=np.int64)
    start = (i * size) // n_out
    end = -((-(i + 1) * size) // n_out)  # ceil division in integers
    return start, end, end - start


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    """Average over Ho x Wo bins that tile the input: bin i spans rows
    [floor(i*H/Ho), ceil((i+1)*H/Ho)) (bins overlap when Ho does not divide H), columns likewise.

    x: (N, C, H, W) -> (N, C, Ho, Wo); ``output_size`` is an int or (Ho, Wo), None keeping that
    input size. Backward: each pixel receives g / bin area from every bin holding it.
    """
    op = "adaptive_avg_pool2d"
    x = check_tensor(x, op, ndim=4)
    in_hw = x.shape[-2:]
    if 0 in in_hw:
        raise ValueError(f"{op}: input must have at least one row and one column to average, got shape {x.shape}")
    if isinstance(output_size, tuple | list) and len(output_size) == 2:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, in_hw, strict=True))
    out_hw = int_pair(output_size, op, "output_size")
    check_array_size(x.shape[:2] + out_hw, x.dtype, op)
    rows, cols = (_adaptive_bins(n, o) for n, o in zip(in_hw, out_hw, strict=True))
    return _box_mean(op, x, rows, cols)


def _average_backward(x: Tensor, out: Any, adjoint: Any) -> Any:
    """The backward of an average pool: its adjoint, or under an LRP rule the relevance it redistributes."""

    def backward(g):
        rules = current_lrp()
        if rules is not None:  # relevance: the rule in force for average pools (Zennit: Norm)
            rule = rules.rule_for("avg_pool2d")
            if rule.name != "gradient":
                return (lrp.affine_relevance(rule, g, x.data, None, None, lambda: out, None, adjoint),)
        return (adjoint(g),)

    return backward


def _box_mean(op: str, x: Tensor, rows: tuple[np.ndarray, ...], cols: tuple[np.ndarray, ...]) -> Tensor:
    """The shared forward/backward of the two average pools (see ``cpu_pool.box_mean``)."""
    kernels = backend.kernels("pool", x.data, op)
    n, c, h, w = x.shape
    out = kernels.box_mean(_planes(x.data), rows, cols).reshape(n, c, len(rows[0]), len(cols[0]))

    def adjoint(s: Any, _: Any = None) -> Any:
        return kernels.box_mean_backward(_planes(s), rows, cols, (h, w)).reshape(x.shape)

    return Tensor.from_op(out, (x,), _average_backward(x, out, adjoint), op)


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over H and W: x: (N, C, H, W) -> (N, C, 1, 1); backward: dL/dx = g / (H*W) everywhere.

    Plain array code (no kernel), so it runs on either device.
    """
    op = "global_avg_pool2d"
    x = check_tensor(x, op, ndim=4)
    xp = backend.xp(x.data)
    area = x.shape[2] * x.shape[3]
    if area == 0:
        raise ValueError(f"{op}: input must have at least one pixel, got shape {x.shape}")
    out = x.data.mean(axis=(2, 3), keepdims=True)

    def adjoint(s: Any, _: Any = None) -> Any:
        return xp.ascontiguousarray(xp.broadcast_to(s / area, x.shape))

    return Tensor.from_op(out, (x,), _average_backward(x, out, adjoint), op)
