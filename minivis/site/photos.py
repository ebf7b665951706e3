"""Photos: every image-centric (attribution) method on each offline photo, one page per photo.

The methods are rows of ``PHOTO_METHODS``: a name, how to compute the map, the figure that shows it
and the one-line call. A method that lands later is one more row. Gradients (saliency ... integrated
gradients), the CAM family (Grad-CAM, guided Grad-CAM and the variants side by side), the
decompositions (gradient x input, LRP, DeepLIFT: signed, drawn sign-honest in ``bwr``, 0 white)
and occlusion. Each photo is one ``Part``, so a parallel build runs photos side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from minivis import plot, vis
from minivis.autograd import no_grad, tensor
from minivis.site.core import BuildContext, Figure, Page, Part, Section, Stage, stage_of_parts
from minivis.site.images import save_image


@dataclass
class PhotoMethod:
    """One attribution method on one photo.

    compute(model, x, target, settings) -> the map for the one image; draw(image, result, title) -> a
    matplotlib Figure; call: the reproducing line, formatted with the settings plus ``target``/``layer``;
    params(ctx) -> the settings that change the result (the cache key and the caption).
    """

    key: str
    name: str
    group: str
    params: Callable[[BuildContext, str], dict[str, Any]]
    compute: Callable[[Any, np.ndarray, int, dict[str, Any]], np.ndarray]
    draw: Callable[[np.ndarray, np.ndarray, dict[str, Any], str], Any]
    call: str


def _attribution_figure(name: str) -> Callable:
    return lambda image, result, p, title: plot.show_attributions(image, {name: result}, title=title)


def _cam_figure(image: np.ndarray, result: np.ndarray, p: dict[str, Any], title: str) -> Any:
    return plot.show_grad_cam(image, result, title=title)


def _guided_cam_figure(image: np.ndarray, result: np.ndarray, p: dict[str, Any], title: str) -> Any:
    return plot.show_attributions(image, {"guided Grad-CAM": result}, kinds={"guided Grad-CAM": "rgb"}, title=title)


def _occlusion_figure(image: np.ndarray, grid: np.ndarray, p: dict[str, Any], title: str) -> Any:
    heat = vis.occlusion_map(grid, image.shape[:2], p["patch"], p["stride"])
    return plot.occlusion_figure(image, grid, heat, title=title)


def _relevance_figure(name: str) -> Callable:
    """A signed map summed over channels in the diverging ``bwr`` map, 0 white, one symmetric scale."""
    return lambda image, result, p, title: plot.show_relevance([image], {name: result[None]}, title=title)


def _cams_figure(image: np.ndarray, result: np.ndarray, p: dict[str, Any], title: str) -> Any:
    return plot.show_cams([image], {m: result[i][None] for i, m in enumerate(p["methods"])}, title=title)


def _no_settings(ctx: BuildContext, layer: str) -> dict[str, Any]:
    return {}


# The CAM variants the page shows side by side. The gradient ones cost one backward pass each;
# Ablation-CAM one pass of the layers above the CAM layer per channel (Lite0's last block: ~14 s a
# photo, default and --full); Score-CAM a whole forward pass per channel (~2 min a photo: --full only).
CHEAP_CAMS = ("grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam", "eigen_cam")


def _cam_settings(ctx: BuildContext, layer: str) -> dict[str, Any]:
    return {"layer": layer, "methods": CHEAP_CAMS + ctx.sized((), ("ablation_cam",), ("ablation_cam", "score_cam"))}


def _cam_variants(m: Any, x: np.ndarray, t: int, p: dict[str, Any]) -> np.ndarray:
    return np.stack([np.asarray(vis.cam(m, x, t, p["layer"], method=method, progress=False)[0])
                     for method in p["methods"]])


PHOTO_METHODS: list[PhotoMethod] = [
    PhotoMethod("saliency", "saliency", "gradients", _no_settings,
                lambda m, x, t, p: vis.saliency(m, x, t)[0], _attribution_figure("saliency"),
                "mv.vis.saliency(model, x, {target})"),
    PhotoMethod("smoothgrad", "SmoothGrad", "gradients",
                lambda ctx, layer: {"n": ctx.sized(4, 16, 50), "noise": 0.15},
                lambda m, x, t, p: vis.smoothgrad(m, x, t, n=p["n"], noise=p["noise"])[0],
                _attribution_figure("SmoothGrad"), "mv.vis.smoothgrad(model, x, {target}, n={n}, noise={noise})"),
    PhotoMethod("guided_backprop", "guided backprop", "gradients", _no_settings,
                lambda m, x, t, p: vis.guided_backprop(m, x, t)[0], _attribution_figure("guided backprop"),
                "mv.vis.guided_backprop(model, x, {target})"),
    PhotoMethod("deconvnet", "DeconvNet", "gradients", _no_settings,
                lambda m, x, t, p: vis.deconvnet(m, x, t)[0], _attribution_figure("DeconvNet"),
                "mv.vis.deconvnet(model, x, {target})"),
    PhotoMethod("integrated_gradients", "integrated gradients", "gradients",
                lambda ctx, layer: {"steps": ctx.sized(4, 16, 50)},
                lambda m, x, t, p: vis.integrated_gradients(m, x, t, steps=p["steps"])[0],
                _attribution_figure("integrated gradients"),
                "mv.vis.integrated_gradients(model, x, {target}, steps={steps})"),
    PhotoMethod("grad_cam", "Grad-CAM", "class activation maps", lambda ctx, layer: {"layer": layer},
                lambda m, x, t, p: vis.grad_cam(m, x, t, layer=p["layer"])[0], _cam_figure,
                "mv.vis.grad_cam(model, x, {target}, layer={layer!r})"),
    PhotoMethod("guided_grad_cam", "guided Grad-CAM", "class activation maps", lambda ctx, layer: {"layer": layer},
                lambda m, x, t, p: vis.guided_grad_cam(m, x, t, layer=p["layer"])[0], _guided_cam_figure,
                "mv.vis.guided_grad_cam(model, x, {target}, layer={layer!r})"),
    PhotoMethod("cam_variants", "CAM variants", "class activation maps", _cam_settings, _cam_variants,
                _cams_figure, "mv.vis.cam(model, x, {target}, {layer!r}, method=m) for m in {methods}"),
    PhotoMethod("gradient_x_input", "gradient x input", "decompositions", _no_settings,
                lambda m, x, t, p: vis.gradient_x_input(m, x, t)[0], _relevance_figure("gradient x input"),
                "mv.vis.gradient_x_input(model, x, {target})"),
    PhotoMethod("lrp", "LRP", "decompositions", lambda ctx, layer: {"composite": "epsilon_gamma_box"},
                lambda m, x, t, p: vis.lrp(m, x, t, composite=p["composite"])[0], _relevance_figure("LRP"),
                "mv.vis.lrp(model, x, {target}, composite={composite!r})"),
    PhotoMethod("deeplift", "DeepLIFT", "decompositions", _no_settings,
                lambda m, x, t, p: vis.deeplift(m, x, t)[0], _relevance_figure("DeepLIFT (rescale)"),
                "mv.vis.deeplift(model, x, {target})"),
    PhotoMethod("occlusion", "occlusion", "occlusion",
                lambda ctx, layer: {"patch": ctx.sized(16, 32, 32), "stride": ctx.sized(16, 24, 8)},
                lambda m, x, t, p: vis.occlusion(m, x, t, patch=p["patch"], stride=p["stride"],
                                                 mode="incremental")[0],
                _occlusion_figure,
                "mv.vis.occlusion(model, x, {target}, patch={patch}, stride={stride}, mode='incremental')"),
]


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"


def photo_stage(model_name: str = "efficientnet_lite0", cam_layer: str = "_blocks.15",
                methods: list[PhotoMethod] | None = None) -> Stage:
    """The Photos section: ``methods`` (default ``PHOTO_METHODS``) on every photo of the build, target = top-1."""

    def photo_part(name: str) -> Part:
        def build(ctx: BuildContext) -> list[Page]:
            try:
                ctx.photo(name)
            except ImportError as err:  # a photo whose package is not installed: the others still show
                ctx.notes.append(f"photo {name!r} skipped: {err}")
                return []
            return [_photo_page(ctx, ctx.model(model_name), model_name, name, cam_layer, methods or PHOTO_METHODS)]

        return Part(f"photo-{name}", build, cost=55.0)

    def parts(ctx: BuildContext) -> list[Part]:
        return [photo_part(name) for name in ctx.photo_names]

    return stage_of_parts(f"photos-{model_name}", "Photos", f"Photos through {model_name}", parts,
                          "Which pixels made the network say what it said? Every attribution method on each "
                          "built-in photo, the target being the top-1 class.")


def _photo_page(ctx: BuildContext, model: Any, model_name: str, name: str, cam_layer: str,
                methods: list[PhotoMethod]) -> Page:
    raw = ctx.photo(name)
    photo_hash = hashlib.sha1(np.ascontiguousarray(raw).tobytes()).hexdigest()[:12]
    x = model.preprocess(raw)
    base = {"photo": name, "photo_hash": photo_hash}

    def predict() -> dict[str, np.ndarray]:
        with no_grad():
            logits = np.asarray(model(tensor(x)).numpy()[0], np.float64)
        return {"logits": logits}

    logits = ctx.cached(f"photo-{model_name}-{name}-logits", base, predict, model)["logits"]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    target = int(logits.argmax())
    label = model.labels[target]
    image = model.deprocess(x)[0]
    thumb_path, thumb = ctx.image_path("photos", name, "input")
    save_image(image, thumb_path, min_size=0)
    top5 = np.argsort(probs)[::-1][:5]
    table = [["class", "index", "probability"]] + [[model.labels[k], str(k), f"{probs[k]:.3f}"] for k in top5]
    sections = [Section("Prediction", [Figure(thumb, f"{name}, preprocessed for {model_name} "
                                              f"({x.shape[2]}x{x.shape[3]})",
                                              f"x = model.preprocess(mv.data.photo({name!r}))")],
                        text=f"Top-1: {label} (class {target}, p = {probs[target]:.3f}). Every map below "
                             f"explains the logit of this class.", table=table)]
    groups: dict[str, Section] = {}
    for method in tqdm(methods, desc=f"photo {name}", unit="method", leave=False, disable=not ctx.progress):
        params = method.params(ctx, cam_layer)
        result = ctx.cached(f"photo-{model_name}-{name}-{method.key}", {**base, **params, "target": target},
                            lambda m=method, p=params: {"map": m.compute(model, x, target, p)}, model)["map"]
        fig = method.draw(image, result, params, f"{name}: {method.name}, target {label}")
        path, src = ctx.image_path("photos", name, method.key)
        plot.save(fig, path)
        call = method.call.format(target=target, **params)
        section = groups.setdefault(method.group, Section(method.group.capitalize(), layout="wide"))
        section.figures.append(Figure(src, f"{method.name} ({_describe(params)}), target {target} ({label})",
                                      call, title=method.name))
    sections.extend(groups.values())
    return Page(f"photo-{name}", f"{name}: {label}", sections,
                intro=f"{model_name} on the photo {name!r}; x = model.preprocess(mv.data.photo({name!r})).",
                card=thumb, blurb=f"{label} ({probs[target]:.0%})")
