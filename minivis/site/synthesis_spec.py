"""What the synthesis pages share: the models, photo, classes and layers they use (``SynthesisSpec``), a
photo as a small model input, and saving a figure under ``img/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minivis import plot
from minivis.site.core import BuildContext


@dataclass
class SynthesisSpec:
    """The models, photo, classes and layers the synthesis pages use."""

    small_model: str = "fashion_cnn"
    model: str = "efficientnet_lite0"
    photo: str | None = None  # None: the first photo of the build
    classes: tuple[int, ...] = (130, 947)  # flamingo, mushroom
    dream_layers: tuple[str, ...] = ("_blocks.2", "_blocks.6")
    inversion_layers: tuple[str, ...] = ("_act_stem", "_blocks.7", "")
    attack_target: int = 1  # goldfish
    sizes: dict[str, int] = field(default_factory=lambda: {"fast": 48, "default": 112, "full": 224})
    style_layers: tuple[str, ...] | None = None  # Gatys pages: None = the model's own style_layers
    content_layer: str | None = None  # None = the model's content_layer
    fast_styles: tuple[str, ...] = ("mosaic", "waves")  # the shipped single-style networks shown
    decoder_model: str = "fashion_cnn"  # the decoders ship for these weights: always the shipped model


def small_input(model: Any, image: np.ndarray, size: int) -> np.ndarray:
    """A photo centre-cropped and resized to ``size`` px, normalised like ``model.preprocess``: (C, size, size).

    (``preprocess`` always resizes to the model's own input size; optimisation is cheaper smaller.)
    """
    from minivis.data import center_crop, resize_shorter_side, to_float  # noqa: PLC0415

    img = center_crop(resize_shorter_side(to_float(image), size), size)
    mean = np.asarray(model.mean, np.float32)
    std = np.asarray(model.std, np.float32)
    return np.ascontiguousarray(((img - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def save_figure(ctx: BuildContext, fig: Any, *parts: str) -> str:
    path, src = ctx.image_path(*parts)
    plot.save(fig, path)
    return src
