"""What every model in the zoo carries besides its layers: how to turn photos into its input
(``preprocess``), how to turn an input back into a viewable image (``deprocess``), its class
names (``labels``) and its expected input size."""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module


class ImageClassifier(Module):
    """A Module whose input is images normalised as ``(pixel / 255 - mean) / std`` per channel.

    Subclasses set ``mean``, ``std`` (per channel, for pixels in [0, 1]), ``input_size``
    (H, W), ``in_channels``, ``labels`` and ``resize_size`` (shorter side before the centre
    crop; equal to ``input_size`` for small datasets).
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    input_size: tuple[int, int] = (224, 224)
    resize_size: int = 256
    in_channels: int = 3
    labels: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, images: Any) -> np.ndarray:
        """HxW[xC] uint8 (0..255) or float ([0, 1]) image, or a batch / list of them -> NCHW float32.

        Photos are centre-cropped to a square and resized to ``input_size`` (resize the shorter
        side to ``resize_size``, crop ``input_size`` from the centre); images already at
        ``input_size`` are only normalised.
        """
        from minivis.data.transforms import center_crop, resize_shorter_side, to_float  # noqa: PLC0415

        batch = _as_image_list(images, type(self).__name__)
        out = []
        for i, img in enumerate(batch):
            if img.ndim == 2:
                img = img[:, :, None]
            channels = img.shape[2]
            if channels == 1 and self.in_channels == 3:
                img = np.repeat(img, 3, axis=2)
            elif channels != self.in_channels:
                if channels == 3 and self.in_channels == 1:
                    img = img.astype(np.float32).mean(axis=2, keepdims=True).astype(img.dtype)
                else:
                    raise ValueError(f"{type(self).__name__}.preprocess: image {i} has {channels} channels, "
                                     f"expected {self.in_channels} (or 1/3 to convert)")
            img = to_float(img)
            if img.shape[:2] != tuple(self.input_size):
                img = center_crop(resize_shorter_side(img, self.resize_size), self.input_size)
            out.append(img)
        x = np.stack(out).transpose(0, 3, 1, 2)
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def deprocess(self, x: Any) -> np.ndarray:
        """Model input (C, H, W) or (N, C, H, W) -> HxWxC (or NxHxWxC) float image clipped to [0, 1]."""
        data = backend.to_device(x.data if isinstance(x, Tensor) else np.asarray(x), "cpu")
        if data.ndim not in (3, 4) or data.shape[-3] != self.in_channels:
            raise ValueError(f"{type(self).__name__}.deprocess: expected (C, H, W) or (N, C, H, W) with "
                             f"C={self.in_channels}, got shape {data.shape}")
        shape = (-1, 1, 1) if data.ndim == 3 else (1, -1, 1, 1)
        img = data * np.asarray(self.std).reshape(shape) + np.asarray(self.mean).reshape(shape)
        img = np.moveaxis(img, -3, -1)
        return np.clip(img, 0.0, 1.0).astype(np.float32)

    def num_outputs(self) -> int:
        """Number of outputs of the last Linear layer (the number of classes)."""
        from minivis.nn.linear import Linear  # noqa: PLC0415

        return [m for m in self.modules() if isinstance(m, Linear)][-1].out_features

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for an input this model cannot take."""
        if not isinstance(getattr(x, "shape", None), tuple):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor or an array (N, {self.in_channels}, H, W), "
                            f"got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: input must be (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")


def _as_image_list(images: Any, who: str) -> list[np.ndarray]:
    if isinstance(images, list | tuple):
        batch = [np.asarray(img) for img in images]
    else:
        arr = np.asarray(images)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] <= 4):  # HxW or HxWxC (C <= 4)
            batch = [arr]
        elif arr.ndim in (3, 4):
            batch = list(arr)
        else:
            raise ValueError(f"{who}.preprocess: expected an HxW[xC] image or a batch of them, got shape {arr.shape}")
    for i, img in enumerate(batch):
        if img.ndim not in (2, 3) or img.dtype.kind not in "uif" or img.size == 0:
            raise ValueError(f"{who}.preprocess: image {i} must be HxW or HxWxC numeric, "
                             f"got shape {img.shape} dtype {img.dtype}")
        if img.ndim == 3 and img.shape[2] == 4:
            batch[i] = img[:, :, :3]  # drop alpha
    return batch
