"""Transformation robustness: random, differentiable changes of the image before the network sees it.

Gradient ascent finds images that excite a unit only at one exact position and scale: a few
pixels of high-frequency pattern. Asking the objective to hold up under small random shifts,
rescalings and rotations (Yosinski et al. 2015's jitter; Mordvintsev et al. 2015, "Inceptionism";
Olah et al. 2017, "Feature Visualization") removes that loophole. Because each transform is
differentiable, the gradient flows back through it to the untransformed image:

    J(x) = E_T[ objective(model(T(x))) ],   one random T per step.

Each transform is a small class with ``__call__(x, rng) -> Tensor`` (x: (N, C, H, W); ``rng`` a
NumPy Generator, so a seeded run is reproducible), built from the deterministic ops below:

* ``pad`` is ``mv.F.pad``; ``crop`` is ``mv.F.getitem`` with slices; ``roll`` is two crops and an
  ``mv.F.concat``; ``scale`` is bilinear ``mv.F.interpolate``;
* ``rotate`` is a bilinear warp: each output pixel reads four input pixels, so the warp is a
  sparse (HW, HW) matrix ``S`` applied to every channel plane; its backward is ``S^T``.

``standard_transforms()`` is Lucid's default chain: pad 12, jitter 8, scale 0.9..1.1, rotate
-10..10 degrees, jitter 4.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse

from minivis import backend
from minivis.autograd import Tensor
from minivis.functional import concat, interpolate
from minivis.functional import pad as pad_op
from minivis.validate import check_float, check_int, check_str, check_tensor

Transform = Callable[[Tensor, np.random.Generator], Tensor]


# ----------------------------------------------------------------------------- deterministic ops
def crop(x: Tensor, top: int, left: int, height: int, width: int) -> Tensor:
    """x[:, :, top:top+height, left:left+width] (x: (N, C, H, W)); the backward pads with zeros."""
    x = check_tensor(x, "crop", "x", ndim=4)
    h, w = x.shape[2:]
    if not (0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= h and left + width <= w):
        raise ValueError(f"crop: window (top={top}, left={left}, height={height}, width={width}) "
                         f"does not fit in a {h}x{w} image")
    return x[:, :, top:top + height, left:left + width]


def roll(x: Tensor, dy: int, dx: int) -> Tensor:
    """Shift x (N, C, H, W) by ``dy`` rows and ``dx`` columns, wrapping around (``np.roll``)."""
    x = check_tensor(x, "roll", "x", ndim=4)
    for axis, shift in ((2, int(dy)), (3, int(dx))):
        shift %= x.shape[axis]
        if shift:
            head = (slice(None),) * axis + (slice(-shift, None),)
            tail = (slice(None),) * axis + (slice(None, -shift),)
            x = concat([x[head], x[tail]], axis=axis)
    return x


def scale(x: Tensor, factor: float) -> Tensor:
    """Resize x (N, C, H, W) by ``factor`` (bilinear, output size rounded to whole pixels)."""
    x = check_tensor(x, "scale", "x", ndim=4)
    factor = check_float(factor, "scale", "factor")
    if factor <= 0:
        raise ValueError(f"scale: factor must be > 0, got {factor}")
    h, w = x.shape[2:]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    return x if size == (h, w) else interpolate(x, size=size, mode="bilinear", align_corners=False)


@functools.lru_cache(maxsize=64)
def rotation_matrix(h: int, w: int, degrees: float) -> scipy.sparse.csr_matrix:
    """The sparse (HW, HW) bilinear warp that rotates an HxW plane by ``degrees`` about its centre.

    Positive angles turn the content counter-clockwise as displayed (rows down, columns right).
    Output pixel (i, j) samples the input at ``c + R^-1 ((i, j) - c)``; samples outside the
    image read 0 (the mean image in model-input space).
    """
    theta = math.radians(degrees)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    i, j = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sx = cx + (j - cx) * math.cos(theta) - (i - cy) * math.sin(theta)
    sy = cy + (j - cx) * math.sin(theta) + (i - cy) * math.cos(theta)
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0, sy - y0
    rows, cols, vals = [], [], []
    out_index = (i * w + j).astype(np.int64).ravel()
    for oy, ox, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = (y0 + oy).astype(np.int64).ravel(), (x0 + ox).astype(np.int64).ravel()
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w) & (weight.ravel() > 0)
        rows.append(out_index[inside])
        cols.append((yy * w + xx)[inside])
        vals.append(weight.ravel()[inside])
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=(h * w, h * w))


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotate x (N, C, H, W) by ``degrees`` about the centre (bilinear, zeros outside): y = S x, dx = S^T g."""
    x = check_tensor(x, "rotate", "x", ndim=4)
    degrees = check_float(degrees, "rotate", "degrees")  # finite: check_float refuses NaN and infinities
    if degrees % 360 == 0:
        return x
    n, c, h, w = x.shape
    matrix = rotation_matrix(h, w, degrees).astype(x.dtype)
    if backend.is_gpu_array(x.data):
        import cupyx.scipy.sparse  # noqa: PLC0415 (GPU only)

        matrix = cupyx.scipy.sparse.csr_matrix(matrix)
    planes = x.data.reshape(n * c, h * w)
    out = (matrix @ planes.T).T.reshape(x.shape)
    xp = backend.xp(x.data)

    def backward(g):
        return (xp.ascontiguousarray((matrix.T @ g.reshape(n * c, h * w).T).T).reshape(x.shape).astype(x.dtype),)

    return Tensor.from_op(xp.ascontiguousarray(out).astype(x.dtype, copy=False), (x,), backward, "rotate")


# ----------------------------------------------------------------------------- random transforms
class Pad:
    """Pad every side by ``width`` pixels (``mode``: reflect, constant with ``value``, replicate)."""

    def __init__(self, width: int, mode: str = "reflect", value: float = 0.0) -> None:
        self.width, self.mode, self.value = check_int(width, "Pad", "width", 0), mode, value
        modes = ("reflect", "constant", "replicate")
        if check_str(mode, "Pad", "mode", modes) not in modes:
            raise ValueError(f"Pad: mode must be 'reflect', 'constant' or 'replicate', got {mode!r}")

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        p = self.width
        return x if p == 0 else pad_op(x, (p, p, p, p), mode=self.mode, value=self.value)

    def __repr__(self) -> str:
        return f"Pad({self.width}, {self.mode!r})"


class Jitter:
    """Lucid's jitter: a random (H - d) x (W - d) crop, i.e. a shift by 0..d pixels that shrinks the image."""

    def __init__(self, d: int) -> None:
        self.d = check_int(d, "Jitter", "d", 0)

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        if self.d == 0:
            return x
        h, w = x.shape[2:]
        if self.d >= min(h, w):
            raise ValueError(f"Jitter: d={self.d} leaves nothing of a {h}x{w} image")
        top, left = (int(v) for v in rng.integers(0, self.d + 1, size=2))
        return crop(x, top, left, h - self.d, w - self.d)

    def __repr__(self) -> str:
        return f"Jitter({self.d})"


class RandomRoll:
    """Yosinski et al.'s (and DeepDream's) jitter: a cyclic shift by -d..d pixels in each direction."""

    def __init__(self, d: int) -> None:
        self.d = check_int(d, "RandomRoll", "d", 0)

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        if self.d == 0:
            return x
        h, w = x.shape[2:]
        if self.d >= max(h, w):  # a longer roll only wraps around (and past an int64 NumPy cannot draw it)
            raise ValueError(f"RandomRoll: d={self.d} must be less than the size of a {h}x{w} image")
        dy, dx = (int(v) for v in rng.integers(-self.d, self.d + 1, size=2))
        return roll(x, dy, dx)

    def __repr__(self) -> str:
        return f"RandomRoll({self.d})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``scales``."""

    def __init__(self, scales: Sequence[float]) -> None:
        self.scales = [check_float(s, "RandomScale", "scales") for s in scales]
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"RandomScale: scales must be a non-empty list of positive factors, got {scales!r}")

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        return scale(x, self.scales[int(rng.integers(len(self.scales)))])

    def __repr__(self) -> str:
        return f"RandomScale({self.scales})"


class RandomRotate:
    """Rotate by an angle (degrees) drawn uniformly from ``angles``."""

    def __init__(self, angles: Sequence[float]) -> None:
        self.angles = [check_float(a, "RandomRotate", "angles") for a in angles]
        if not self.angles:
            raise ValueError("RandomRotate: angles must be a non-empty list of degrees")

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        return rotate(x, self.angles[int(rng.integers(len(self.angles)))])

    def __repr__(self) -> str:
        return f"RandomRotate({len(self.angles)} angles, {min(self.angles):g}..{max(self.angles):g})"


class ResizeTo:
    """Resize back to a fixed (H, W) (bilinear): for models that only take one input size."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (check_int(size[0], "ResizeTo", "height", 1), check_int(size[1], "ResizeTo", "width", 1))

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        if tuple(x.shape[2:]) == self.size:
            return x
        return interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def __repr__(self) -> str:
        return f"ResizeTo({self.size})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable (x, rng) -> Tensor, got {t!r}")

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def standard_transforms(scale_frac: float = 1.0) -> Compose:
    """Lucid's ``transform.standard_transforms``: pad 12, jitter 8, scale 0.9..1.1, rotate -10..10, jitter 4.

    ``scale_frac`` shrinks the pixel amounts for small images (e.g. 0.25 at 56 px).
    """
    k = lambda n: max(1, round(n * scale_frac))  # noqa: E731
    return Compose([Pad(k(12), mode="constant"), Jitter(k(8)),
                    RandomScale([1 + (i - 5) / 50 for i in range(11)]),
                    RandomRotate(list(range(-10, 11))), Jitter(k(4))])
