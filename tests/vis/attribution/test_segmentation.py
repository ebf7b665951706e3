"""Saliency -> GrabCut segmentation on a synthetic image whose object is known, the seeding rule,
the model path, and bad input. Skipped, with the reason shown, without OpenCV."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

import minivis as mv
from minivis import nn

cv2 = pytest.importorskip("cv2", reason="saliency_segmentation needs opencv-python-headless (optional extra)")


def tiny_rgb_net() -> nn.Sequential:
    nn.init.seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(4 * 16 * 16, 3)).double().eval()


def disk_scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disk on a noisy blue background, and a spotty saliency map that is high on the disk."""
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - 30) ** 2 + (xx - 36) ** 2 < 14**2
    image = np.where(disk[..., None], [0.85, 0.3, 0.2], [0.2, 0.4, 0.8]) + 0.08 * rng.standard_normal((size, size, 3))
    saliency = np.where(disk, 0.3 + rng.random((size, size)), 0.5 * rng.random((size, size)) ** 2)
    return np.clip(image, 0, 1), saliency, disk


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_grabcut_recovers_the_object_from_spotty_saliency(rng) -> None:
    image, saliency, disk = disk_scene(rng)
    x = image.transpose(2, 0, 1)
    mask = mv.vis.saliency_segmentation(tiny_rgb_net(), x, 1, saliency_map=saliency)
    assert mask.dtype == bool and mask.shape == disk.shape
    assert iou(mask, disk) > 0.9
    seeds_only = saliency >= np.quantile(saliency, 0.95)
    assert iou(seeds_only, disk) < 0.4  # GrabCut did the work: the seeds alone cover a fraction of the disk
    # a batch, with the photo given explicitly as uint8
    batch = mv.vis.saliency_segmentation(tiny_rgb_net(), np.stack([x, x]), [1, 2], saliency_map=np.stack(
        [saliency, saliency]), image=np.round(np.stack([image, image]) * 255).astype(np.uint8))
    assert batch.shape == (2, 64, 64) and iou(batch[1], disk) > 0.9


def test_seeds_follow_simonyans_quantiles(rng) -> None:
    from minivis.vis.attribution.segmentation import seeds  # noqa: PLC0415

    saliency = rng.random((20, 30))
    labels = seeds(saliency, 0.95, 0.30, "test")
    assert (labels == cv2.GC_FGD).sum() == 30 and (labels == cv2.GC_BGD).sum() == 180  # 5% and 30% of 600
    assert (labels[saliency >= np.quantile(saliency, 0.95)] == cv2.GC_FGD).all()
    assert (labels[(labels != cv2.GC_FGD) & (labels != cv2.GC_BGD)] == cv2.GC_PR_BGD).all()


def test_model_saliency_path(rng) -> None:
    model = tiny_rgb_net()
    x = rng.random((3, 64, 64))
    want = mv.vis.saliency_segmentation(model, x, 2, saliency_map=mv.vis.saliency(model, x, 2))
    got = mv.vis.saliency_segmentation(model, x, 2)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"fg_quantile": 1.0}, ValueError, r"saliency_segmentation: fg_quantile must be in \(0, 1\)"),
    ({"bg_quantile": 0.97}, ValueError, r"bg_quantile \(0.97\) must be below fg_quantile \(0.95\)"),
    ({"iterations": 0}, ValueError, "iterations must be a positive int"),
    ({"iterations": 2**63}, ValueError, "saliency_segmentation: iterations must be <= 2147483647"),
    ({"saliency_map": np.zeros((8, 8))}, ValueError, r"saliency_map must be \(H, W\) or \(N, H, W\)"),
    ({"saliency_map": np.ones((64, 64))}, ValueError, "the saliency map is too flat"),
    ({"saliency_map": np.ones((64, 64), "timedelta64[s]")}, TypeError,
     r"saliency_segmentation: saliency_map must be a numeric array .* got dtype timedelta64\[s\]"),
    ({"image": np.zeros((32, 32, 3))}, ValueError, "image must be HxW"),
    ({"target": 3}, ValueError, "saliency_segmentation: target class 3 is out of range for 3 classes"),
])
def test_bad_input(kwargs, error, match, rng) -> None:
    args = {"target": 0, **kwargs}
    with pytest.raises(error, match=match):
        mv.vis.saliency_segmentation(tiny_rgb_net(), rng.random((3, 64, 64)), **args)


def test_missing_opencv_names_the_package(monkeypatch, rng) -> None:
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        mv.vis.saliency_segmentation(tiny_rgb_net(), rng.random((3, 64, 64)), 0)
