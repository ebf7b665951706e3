"""``CodeDecoder``: an up-convolutional network that maps a layer's code back to the image.

Dosovitskiy & Brox, "Inverting Visual Representations with Convolutional Networks" (CVPR 2016):
instead of searching for an image whose code matches (Mahendran & Vedaldi), *learn* the inverse.
A decoder ``D`` is trained on (code, image) pairs of a dataset to minimise

    E(D) = (1/N) sum_i ||D(Phi(x_i)) - x_i||^2

so ``D(Phi(x))`` is the *expected* image given its code (the L2 loss makes it the conditional
mean): what the code pins down is sharp, what it leaves open is averaged, hence blurred.

The architecture follows the paper's recipe in miniature: leaky ReLUs (slope 0.2), and stride-2
up-convolutions (``ConvTranspose2d`` with kernel 4, padding 1: exact doubling) from the code's
resolution to the image's; a vector code (a fully connected layer) first goes through a Linear
layer to a small 7x7 map::

    (D,)          -> Linear(D, 32*7*7), leaky -> 32x7x7 -> [as a 7x7 code below]
    C x 7 x 7     -> conv3 C->64, leaky -> up 64->32 (14x14), leaky -> up 32->16 (28x28), leaky -> conv3 16->1
    C x 14 x 14   -> conv3 C->64, leaky -> up 64->32 (28x28), leaky -> conv3 32->1
    C x 28 x 28   -> conv3 C->16, leaky -> conv3 16->1

The code is multiplied by ``code_scale`` (a buffer: 1 / the code's standard deviation over the
training images) so every layer's decoder sees inputs of the same size. The output is in the
model's input units (normalised pixels), like the images it was trained on.

Decoders for ``fashion_cnn``'s layers ship in ``models/weights/fashion_cnn_decoder_<layer>.npz``
(``mv.models.load_decoder(layer)``); train one with ``minivis train decoder --layer L``.
"""

from __future__ import annotations

import numpy as np

from minivis import functional as F
from minivis.autograd import Tensor
from minivis.nn import Conv2d, ConvTranspose2d, LeakyReLU, Linear, Sequential
from minivis.nn.module import Module
from minivis.validate import check_positive_int

SLOPE = 0.2          # Dosovitskiy & Brox's leaky ReLU
VECTOR_MAP = (32, 7, 7)  # the map a vector code is first expanded to


def _up(c_in: int, c_out: int) -> ConvTranspose2d:
    """Exact 2x up-convolution: (H - 1) * 2 - 2 * 1 + 4 = 2H."""
    return ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)


class CodeDecoder(Module):
    """Decoder from a code of shape ``code_shape`` ((C, h, w) or (D,)) to a ``channels`` x ``image_size`` image.

    image_size: the image side (28 for ``fashion_cnn``); the code's side must be image_size / 2^k.
    layer, model_name: which code it inverts (kept for the user; not used in the forward pass).
    """

    def __init__(self, code_shape: tuple[int, ...], image_size: int = 28, channels: int = 1,
                 layer: str = "", model_name: str = "fashion_cnn") -> None:
        super().__init__()
        code_shape = tuple(int(s) for s in code_shape)
        if len(code_shape) not in (1, 3) or min(code_shape) < 1:
            raise ValueError(f"CodeDecoder: code_shape must be (C, h, w) or (D,) with positive sizes, "
                             f"got {code_shape}")
        check_positive_int(image_size, "CodeDecoder", "image_size")
        check_positive_int(channels, "CodeDecoder", "channels")
        self.code_shape, self.image_size, self.channels = code_shape, image_size, channels
        self.layer, self.model_name = layer, model_name
        self.register_buffer("code_scale", np.ones((), np.float32))
        if len(code_shape) == 1:
            self.expand = Sequential(Linear(code_shape[0], int(np.prod(VECTOR_MAP))), LeakyReLU(SLOPE))
            c, side = VECTOR_MAP[0], VECTOR_MAP[1]
        else:
            self.expand = None
            c, side, width = code_shape[0], code_shape[1], code_shape[2]
            if side != width:
                raise ValueError(f"CodeDecoder: the code must be square, got {side}x{width}")
        ups = 0
        while side << ups < image_size:
            ups += 1
        if side << ups != image_size:
            raise ValueError(f"CodeDecoder: the code's side {side} must be image_size {image_size} / 2^k")
        if ups == 0:
            # at full resolution the code is nearly the image already: a small decoder will do
            layers = [Conv2d(c, 16, 3, padding=1), LeakyReLU(SLOPE), Conv2d(16, channels, 3, padding=1)]
        else:
            width = 64
            layers = [Conv2d(c, width, 3, padding=1), LeakyReLU(SLOPE)]
            for _ in range(ups):
                layers += [_up(width, width // 2), LeakyReLU(SLOPE)]
                width //= 2
            layers.append(Conv2d(width, channels, 3, padding=1))
        self.decode = Sequential(*layers)

    def forward(self, code: Tensor) -> Tensor:
        """code: (N, *code_shape) -> image (N, channels, image_size, image_size) in model-input units."""
        if not isinstance(code, Tensor):
            raise TypeError(f"CodeDecoder: code must be a Tensor, got {type(code).__name__}")
        if tuple(code.shape[1:]) != self.code_shape:
            raise ValueError(f"CodeDecoder({self.layer!r}): code must be (N, {', '.join(map(str, self.code_shape))}), "
                             f"got shape {tuple(code.shape)}")
        h = code * self.code_scale.astype(code.dtype)
        if self.expand is not None:
            h = F.reshape(self.expand(h), (code.shape[0], *VECTOR_MAP))
        return self.decode(h)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, code_shape={self.code_shape}, image_size={self.image_size}"
