"""Tiny stand-ins for the zoo, so a whole site builds in seconds: a fashion_cnn with 4 and 8 channels, a
3-channel 32-pixel classifier in place of EfficientNet-Lite0, random photos and a small labelled set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import minivis as mv
from minivis.models.base import ImageClassifier
from minivis.site.embeddings import EmbeddingSpec, embedding_stage
from minivis.site.microscope import MicroscopeSpec, microscope_stage
from minivis.site.photos import photo_stage
from minivis.site.synthesis import SynthesisSpec, synthesis_stage


class TinyRGB(ImageClassifier):
    """A 3-channel classifier of 32x32 inputs with ImageNet-style normalisation and 5 classes."""

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    input_size, resize_size, in_channels = (32, 32), 36, 3
    labels = ["tabby", "goldfish", "espresso", "rocket", "daisy"]

    def __init__(self) -> None:
        super().__init__()
        self.stem = mv.nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = mv.nn.Sequential(mv.nn.ReLU(), mv.nn.Conv2d(4, 6, 3, stride=2, padding=1), mv.nn.ReLU(),
                                       mv.nn.Conv2d(6, 6, 3, padding=1), mv.nn.ReLU())
        self.pool = mv.nn.AdaptiveAvgPool2d(1)
        self.flatten = mv.nn.Flatten()
        self.fc = mv.nn.Linear(6, 5)

    def forward(self, x):
        self.check_input(x)
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


def seeded(model: ImageClassifier, seed: int) -> ImageClassifier:
    """``model`` with He-scaled weights drawn from ``seed`` (the same fixture, and cache key, every time)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        shape = np.shape(value)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1
        state[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    model.load_state_dict(state)
    return model.eval()


def tiny_models() -> dict[str, ImageClassifier]:
    fashion = mv.models.build("fashion_cnn", widths=(4, 8), hidden=16)
    return {"fashion_cnn": seeded(fashion, 0), "efficientnet_lite0": seeded(TinyRGB(), 1)}


def tiny_photos() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"alpha": rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
            "beta": rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)}


def tiny_fashion(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def tiny_stages() -> list:
    fv = {"steps": 3, "lr": 0.1, "size": None, "jitter": 1}
    fashion = MicroscopeSpec("fashion_cnn", ("features.0", "features.5"), channels=2, dataset="fashion",
                             fv={m: fv for m in ("fast", "default", "full")}, first_layer="features.0")
    rgb = MicroscopeSpec("efficientnet_lite0", ("stem", "blocks.3"), channels=2, dataset="photos",
                         fv={m: {**fv, "size": 32} for m in ("fast", "default", "full")}, first_layer="stem",
                         crops_per_photo={"fast": 2, "default": 2, "full": 2})
    synth = SynthesisSpec(classes=(0, 1), dream_layers=("blocks.1",), inversion_layers=("blocks.1", ""),
                          attack_target=1, sizes={"fast": 32, "default": 32, "full": 32},
                          style_layers=("stem", "blocks.1"), content_layer="blocks.3")
    return [photo_stage("efficientnet_lite0", cam_layer="blocks.3"), microscope_stage(fashion),
            microscope_stage(rgb), embedding_stage(EmbeddingSpec(points=(40, 40, 40), grid=(7, 7, 7))),
            synthesis_stage(synth)]


def build_tiny_site(out: Path, **kwargs) -> Path:
    """The whole site from the fixtures, in fast mode (a few seconds)."""
    return mv.site.build_site(out, mode="fast", stages=tiny_stages(), models=tiny_models(),
                              photo_arrays=tiny_photos(), fashion=tiny_fashion(), progress=False, **kwargs)
