"""The gallery: every image-centric method on the default model and the offline photos.

``minivis gallery --out gallery`` runs EfficientNet-Lite0 (pretrained, shipped by a PyPI package)
on the built-in photos, takes each photo's top-1 class as the target, and writes one PNG per
photo with saliency, SmoothGrad, guided backprop, DeconvNet, integrated gradients, Grad-CAM and
guided Grad-CAM, and one with the occlusion map (exact incremental mode), plus an index of the
predictions (``gallery.md``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minivis import plot, vis
from minivis.autograd import no_grad, tensor
from minivis.data import photo
from minivis.models import load

DEFAULT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "china", "flower")
CAM_LAYER = "_blocks.15"  # the last MBConv block: 7x7 maps, the deepest with spatial layout


def run_gallery(out: str | Path, photos: Sequence[str] = DEFAULT_PHOTOS, fast: bool = False,
                model_name: str = "efficientnet_lite0") -> Path:
    """Write the gallery figures for ``photos`` to ``out``; returns the index file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load(model_name)
    lines = [f"# minivis gallery: {model_name}", "", "| photo | top-1 | probability | figures |",
             "| --- | --- | --- | --- |"]
    samples, stride = (8, 32) if fast else (25, 16)
    for name in tqdm(photos, desc="gallery", unit="photo"):
        start = time.perf_counter()
        x = model.preprocess(photo(name))
        with no_grad():
            logits = model(tensor(x)).numpy()[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        target = int(logits.argmax())
        label = model.labels[target]
        image = model.deprocess(x)[0]
        results = {
            "saliency": vis.saliency(model, x, target)[0],
            "SmoothGrad": vis.smoothgrad(model, x, target, n=samples)[0],
            "guided backprop": vis.guided_backprop(model, x, target)[0],
            "DeconvNet": vis.deconvnet(model, x, target)[0],
            "integrated gradients": vis.integrated_gradients(model, x, target, steps=samples)[0],
        }
        fig = plot.show_attributions(image, results, title=f"{name}: {label} ({probs[target]:.0%})")
        plot.save(fig, out / f"{name}_attributions.png")
        cam = vis.grad_cam(model, x, target, layer=CAM_LAYER)[0]
        guided_cam = vis.guided_grad_cam(model, x, target, layer=CAM_LAYER)[0]
        plot.save(plot.show_grad_cam(image, cam, guided_cam, title=f"{name}: Grad-CAM at {CAM_LAYER}"),
                  out / f"{name}_grad_cam.png")
        grid = vis.occlusion(model, x, target, patch=32, stride=stride, mode="incremental")[0]
        heat = vis.occlusion_map(grid, image.shape[:2], 32, stride)
        plot.save(plot.occlusion_figure(image, grid, heat, clean=float(probs[target]),
                                        title=f"{name}: occlusion, patch 32, stride {stride}"),
                  out / f"{name}_occlusion.png")
        figures = ", ".join(f"[{kind}]({name}_{kind}.png)" for kind in ("attributions", "grad_cam", "occlusion"))
        lines.append(f"| {name} | {label} | {probs[target]:.3f} | {figures} |")
        tqdm.write(f"{name}: {label} ({probs[target]:.1%}), {time.perf_counter() - start:.0f} s")
    index = out / "gallery.md"
    index.write_text("\n".join(lines) + "\n")
    return index
