"""Networks for textures and style transfer.

* ``TransformNet``: Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
  Super-Resolution" (ECCV 2016): an image-to-image network (two strided convolutions down,
  residual blocks, two upsampling steps back), trained once per style so that stylising a photo
  is one forward pass. Its normalisation layers are *conditional* instance norm (Dumoulin, Shlens
  & Kudlur, "A Learned Representation for Artistic Style", ICLR 2017): one (gamma, beta) row per
  style, so the same convolutions render ``num_styles`` styles; with one style it is Johnson's
  network with Ulyanov et al.'s instance norm. Upsampling is either a transposed convolution
  (Johnson's; prone to checkerboard artefacts where the stride-2 kernel footprints overlap
  unevenly, Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016) or
  nearest-neighbour resizing followed by a convolution ("resize", the fix they propose).
* ``RandomMultiScale``: Ustyuzhaninov, Brendel, Gatys & Bethge, "What does it take to generate
  natural textures?" (ICLR 2017): one layer of *random* filters at several sizes, with ReLU.
  No training at all; as a texture model it shows how much of Gatys et al.'s result comes from
  the architecture (many scales, a nonlinearity, Gram matrices) and how much from learned features.

Images in and out of ``TransformNet`` are pixels in [0, 1], (N, 3, H, W) with H, W multiples of 4.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor
from minivis.models.base import ImageClassifier
from minivis.models.torchvision_nets import IMAGENET_MEAN, IMAGENET_STD
from minivis.nn import Conv2d, ConvTranspose2d, ReLU, Sequential
from minivis.nn.module import Module, Parameter
from minivis.validate import check_positive_int, check_str

UPSAMPLING = ("resize", "transpose")


class ConditionalInstanceNorm2d(Module):
    """Instance norm with one (gamma, beta) row per style: ``weight``, ``bias`` are (num_styles, C).

    ``forward(x, style)``: style is an int or one int per image (``F.conditional_instance_norm``), or
    a mixture: a float vector (num_styles,) or (N, num_styles), whose rows blend the tables,
    ``gamma = m @ weight`` and ``beta = m @ bias`` (Dumoulin et al.'s style interpolation).
    """

    def __init__(self, num_features: int, num_styles: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "ConditionalInstanceNorm2d", "num_features")
        self.num_styles = check_positive_int(num_styles, "ConditionalInstanceNorm2d", "num_styles")
        self.eps = eps
        self.weight = Parameter(np.ones((num_styles, num_features), np.float32))
        self.bias = Parameter(np.zeros((num_styles, num_features), np.float32))

    def forward(self, x: Tensor, style: Any = 0) -> Tensor:
        mix = style_mixture(style, self.num_styles, x.shape[0])
        if mix is None:
            return F.conditional_instance_norm(x, style, self.weight, self.bias, self.eps)
        mix = mix.astype(x.dtype)
        n, c = x.shape[:2]
        gamma = F.reshape(F.matmul(mix, self.weight), (n, c, 1, 1))
        beta = F.reshape(F.matmul(mix, self.bias), (n, c, 1, 1))
        return F.instance_norm(x, eps=self.eps) * gamma + beta

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_styles={self.num_styles}"


def style_mixture(style: Any, num_styles: int, batch: int) -> np.ndarray | None:
    """None for integer styles (indices); for float weights, an (N, num_styles) mixture matrix.

    Weights must be finite and >= 0 and sum to 1 for each image (a convex blend of styles).
    """
    array = np.asarray(style)
    if array.dtype.kind in "iub" or isinstance(style, int | np.integer):
        return None
    if array.dtype.kind != "f" or array.ndim not in (1, 2) or array.shape[-1] != num_styles:
        raise ValueError(f"ConditionalInstanceNorm2d: style must be an int index, ints (N,), or mixture weights "
                         f"({num_styles},) or (N, {num_styles}); got {array.dtype} shape {array.shape}")
    mix = np.broadcast_to(array.reshape(-1, num_styles), (batch, num_styles)) if array.ndim == 1 else array
    if mix.shape[0] != batch:
        raise ValueError(f"ConditionalInstanceNorm2d: {mix.shape[0]} mixtures for a batch of {batch}")
    if not np.isfinite(mix).all() or (mix < 0).any() or not np.allclose(mix.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(f"ConditionalInstanceNorm2d: mixture weights must be >= 0 and sum to 1, got {array}")
    return np.ascontiguousarray(mix)


def reflect_pad(x: Tensor, p: int) -> Tensor:
    """Mirror ``p`` pixels on every side: no dark frame from zero padding (Ulyanov et al., Johnson et al.)."""
    return F.pad(x, (p, p, p, p), mode="reflect") if p else x


class ConvNormReLU(Module):
    """Reflection padding k // 2 -> Conv2d -> conditional instance norm -> ReLU (``relu=False``: no ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, num_styles: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel, stride=stride)
        self.norm = ConditionalInstanceNorm2d(cout, num_styles)
        self.relu = relu

    def forward(self, x: Tensor, style: Any = 0) -> Tensor:
        y = self.norm(self.conv(reflect_pad(x, self.conv.kernel_size[0] // 2)), style)
        return F.relu(y) if self.relu else y


class ResidualBlock(Module):
    """x + (conv-norm-ReLU-conv-norm)(x), the shape kept (He et al. 2016, as Johnson et al. use it)."""

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.a = ConvNormReLU(channels, channels, 3, num_styles=num_styles)
        self.b = ConvNormReLU(channels, channels, 3, num_styles=num_styles, relu=False)

    def forward(self, x: Tensor, style: Any = 0) -> Tensor:
        return x + self.b(self.a(x, style), style)


class Upsample(Module):
    """Double the resolution: "transpose" (ConvTranspose2d 3x3, stride 2) or "resize" (nearest x2, conv 3x3)."""

    def __init__(self, cin: int, cout: int, mode: str = "resize", num_styles: int = 1) -> None:
        super().__init__()
        if check_str(mode, "TransformNet", "upsample", UPSAMPLING) not in UPSAMPLING:
            raise ValueError(f"TransformNet: upsample must be one of {UPSAMPLING}, got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.conv = ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = Conv2d(cin, cout, 3)
        self.norm = ConditionalInstanceNorm2d(cout, num_styles)

    def forward(self, x: Tensor, style: Any = 0) -> Tensor:
        if self.mode == "resize":
            x = reflect_pad(F.interpolate(x, scale_factor=2, mode="nearest"), 1)
        return F.relu(self.norm(self.conv(x), style))


class TransformNet(Module):
    """Johnson et al.'s image transformation network with conditional instance norm (module docstring).

    channels: c, the width of the first layer (then 2c, 4c); blocks: residual blocks at 1/4
    resolution; num_styles: rows of every (gamma, beta) table; upsample: "resize" or "transpose".
    residual: output ``x + f(x)`` with the last layer starting at zero, so training starts from the
    identity (a departure from Johnson et al.: with a few hundred steps on two cores, the plain
    network spends them all learning to reproduce the photo at all); False: Johnson's ``f(x)``.
    bounded (with residual): output ``sigmoid(logit(x) + f(x))`` instead, the residual taken in logit
    space so that the output stays inside [0, 1] (Johnson et al. bound theirs with a scaled tanh):
    an unbounded output lets training reach low style losses with pixels far outside [0, 1], which
    clipping for display then throws away (seen as saturated rainbow blobs).
    ``forward(x, style=0)``: x (N, 3, H, W) pixels -> (N, 3, H, W) pixels (unclipped unless bounded); H and W are
    multiples of 4 and at least 8 (the reflection padding must fit inside each feature map).
    """

    def __init__(self, channels: int = 16, blocks: int = 3, num_styles: int = 1, upsample: str = "resize",
                 residual: bool = True, bounded: bool = False) -> None:
        super().__init__()
        if bounded and not residual:
            raise ValueError("TransformNet: bounded=True needs residual=True (the residual is taken in logit space)")
        c = check_positive_int(channels, "TransformNet", "channels")
        check_positive_int(blocks, "TransformNet", "blocks")
        self.num_styles = check_positive_int(num_styles, "TransformNet", "num_styles")
        self.channels, self.blocks, self.upsample = c, blocks, upsample
        self.styles: list[str] = [str(i) for i in range(num_styles)]  # names, set by the loader
        self.down1 = ConvNormReLU(3, c, 9, num_styles=num_styles)
        self.down2 = ConvNormReLU(c, 2 * c, 3, stride=2, num_styles=num_styles)
        self.down3 = ConvNormReLU(2 * c, 4 * c, 3, stride=2, num_styles=num_styles)
        for i in range(blocks):
            setattr(self, f"res{i}", ResidualBlock(4 * c, num_styles))
        self.up1 = Upsample(4 * c, 2 * c, upsample, num_styles)
        self.up2 = Upsample(2 * c, c, upsample, num_styles)
        self.out = Conv2d(c, 3, 9)
        self.residual, self.bounded = bool(residual), bool(bounded)
        if self.residual:
            self.out.weight.data = np.zeros_like(self.out.weight.data)

    def forward(self, x: Tensor, style: Any = 0) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 4 or x.shape[3] % 4 or min(x.shape[2:]) < 8:
            raise ValueError(f"TransformNet: input must be (N, 3, H, W) pixels with H and W multiples of 4 and "
                             f"at least 8, got shape {x.shape}")
        h = self.down3(self.down2(self.down1(x, style), style), style)
        for i in range(self.blocks):
            h = getattr(self, f"res{i}")(h, style)
        y = self.out(reflect_pad(self.up2(self.up1(h, style), style), 4))
        if self.bounded:
            p = F.clip(x, LOGIT_EPS, 1.0 - LOGIT_EPS)
            return F.sigmoid(F.log(p) - F.log(1.0 - p) + y)
        return x + y if self.residual else y


LOGIT_EPS = 1e-3  # pixels are clipped to [eps, 1 - eps] before the logit: 0 and 1 have none


class RandomMultiScale(ImageClassifier):
    """One layer of random filters of several sizes with ReLU (Ustyuzhaninov et al. 2017); no training.

    sizes: the filter sizes (odd), one ``scales.i`` branch each; channels: filters per size; seed: the
    random filters (Gaussian, std 1 / sqrt(fan-in), zero bias). Texture layers: ``scales.i.1``.
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD
    in_channels = 3
    content_layer = None

    def __init__(self, sizes: tuple[int, ...] = (3, 5, 7, 11, 15), channels: int = 64, seed: int = 0) -> None:
        super().__init__()
        if not sizes or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(f"RandomMultiScale: sizes must be odd positive ints, got {sizes!r}")
        check_positive_int(channels, "RandomMultiScale", "channels")
        rng = np.random.default_rng(seed)
        branches = []
        for k in sizes:
            conv = Conv2d(3, channels, k, padding=k // 2)
            conv.weight.data = (rng.standard_normal((channels, 3, k, k)) / np.sqrt(3 * k * k)).astype(np.float32)
            conv.bias.data = np.zeros(channels, np.float32)
            branches.append(Sequential(conv, ReLU()))
        self.scales = Sequential(*branches)
        self.style_layers = tuple(f"scales.{i}.1" for i in range(len(sizes)))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return F.concat([branch(x) for branch in self.scales], axis=1)
