"""The microscope: per model, per layer, per channel, what the unit responds to (after OpenAI Microscope).

For each layer of a ``MicroscopeSpec``: a layer page with an overview grid of its channels (each links
to the channel's page) and the dead-filter chart; for each channel: the filter (first layer), a
feature visualisation (``class_model`` on a channel objective, Fourier parameterisation), the top-9
dataset patches (``top_activations`` + ``crop_patches``) with their DeconvNet projections
(``project_top_activations``, Zeiler & Fergus 2014) and its dead-filter statistics. More per-channel
panels are rows of ``CHANNEL_PANELS``. Each model is one ``Part`` of a (parallel) build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from minivis import plot, vis
from minivis.site.core import BuildContext, Figure, Page, Part, Section, Stage, stage_of_parts
from minivis.site.images import mosaic, save_image, signed_image


@dataclass
class MicroscopeSpec:
    """What to show for one model.

    layers / full_layers: the layers in default and ``--full`` mode (conv-like outputs (N, C, H, W)).
    channels: channels per layer in default mode (evenly spaced; fast mode takes 2, full mode all).
    dataset: ``"fashion"`` (the Fashion-MNIST test set, or ``ctx.fashion``) or ``"photos"`` (random
    crops of the offline photos at the model's input size).
    fv: feature-visualisation settings per mode: {"fast"|"default"|"full": dict(steps, lr, size, jitter)}.
    first_layer / filter_layer: the layer whose channel pages show the filters, and the conv they come
    from (the same layer for conv -> ReLU models; the convolution before batch norm and ReLU6 otherwise).

    Pick layers whose outputs are rectified (a ReLU, or a conv right before one) so that "off" in the
    dead-filter statistics means what it says.
    """

    model: str
    layers: tuple[str, ...]
    full_layers: tuple[str, ...] | None = None
    channels: int = 8
    dataset: str = "fashion"
    fv: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_size: dict[str, int] = field(default_factory=lambda: {"fast": 200, "default": 10000, "full": 10000})
    crops_per_photo: dict[str, int] = field(default_factory=lambda: {"fast": 2, "default": 8, "full": 32})
    first_layer: str | None = None
    filter_layer: str | None = None  # the conv whose weights first_layer's page shows (default: first_layer)
    project_in: tuple[str, ...] = ("fast", "default", "full")  # modes with DeconvNet projections of the top-9
    batch_size: int = 64  # images per forward pass when mining (memory: a batch of the layer's activations)
    cost: float = 30.0  # rough seconds in default mode (a parallel build starts the costliest part first)


FASHION = MicroscopeSpec(
    "fashion_cnn", ("features.0", "features.2", "features.5", "features.7"), channels=8, dataset="fashion",
    fv={"fast": {"steps": 8, "lr": 0.5, "size": None, "jitter": 2},
        "default": {"steps": 96, "lr": 0.5, "size": None, "jitter": 2},
        "full": {"steps": 192, "lr": 0.5, "size": None, "jitter": 2}},
    first_layer="features.0", cost=35.0)

LITE0 = MicroscopeSpec(  # the ReLU6 after each block's depthwise conv: the block's widest rectified layer
    "efficientnet_lite0", ("_act_stem", "_blocks.4._act1", "_blocks.10._act1"),
    full_layers=("_act_stem", *(f"_blocks.{i}._act1" for i in range(16))), channels=4, dataset="photos",
    fv={"fast": {"steps": 4, "lr": 0.05, "size": 64, "jitter": 4},
        "default": {"steps": 32, "lr": 0.05, "size": 96, "jitter": 4},
        "full": {"steps": 96, "lr": 0.05, "size": 160, "jitter": 8}},
    first_layer="_act_stem", filter_layer="_conv_stem",
    project_in=("full",),  # a deconvnet pass per patch down from a deep block: ~60 s for the 3 default layers
    batch_size=16, cost=50.0)  # fewer 224 px crops at once: two workers' peaks stay well under 2 GB


@dataclass
class LayerData:
    """What the channel panels read: the layer's results, computed once per layer (and cached)."""

    spec: MicroscopeSpec
    model: Any
    layer: str
    channels: np.ndarray
    data_name: str
    top: dict[str, np.ndarray]
    dead: dict[str, np.ndarray]
    fv: dict[str, np.ndarray]
    fv_params: dict[str, Any]
    filters: np.ndarray | None
    first: bool


ChannelPanel = Callable[[BuildContext, LayerData, int, int], Section | None]


def pick_channels(count: int, wanted: int | None) -> np.ndarray:
    """``wanted`` channel indices spread evenly over ``0..count-1`` (all of them for None)."""
    if wanted is None or wanted >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, wanted).round().astype(np.int64))


def microscope_stage(spec: MicroscopeSpec) -> Stage:
    """The Microscope section of one model."""

    def parts(ctx: BuildContext) -> list[Part]:
        return [Part(f"microscope-{spec.model}", lambda c: _build_model(c, spec), cost=spec.cost)]

    return stage_of_parts(f"microscope-{spec.model}", "Microscope", f"{spec.model}", parts,
                          "Per layer and channel: the filter, a feature visualisation, the top-9 dataset patches "
                          "and their projections to pixels, and how often the channel is off.")


def _dataset(ctx: BuildContext, spec: MicroscopeSpec, model: Any) -> tuple[np.ndarray, str, dict[str, Any]]:
    """(images, description, cache key) of the dataset the channels are mined on."""
    if spec.dataset == "fashion":
        images = np.asarray(ctx.fashion_set()[0])
        n = min(len(images), spec.dataset_size[ctx.mode])
        return images[:n], f"the first {n} Fashion-MNIST test images", {"data": "fashion", "n": n,
                                                                          "shape": images.shape[1:]}
    if spec.dataset == "photos":
        from minivis.data import PHOTOS, random_crops  # noqa: PLC0415

        per = spec.crops_per_photo[ctx.mode]
        names = list(ctx.photo_names) if ctx.mode == "fast" else list(PHOTOS)
        h, w = model.input_size
        crops, used = [], []
        for i, name in enumerate(names):
            try:
                img = ctx.photo(name)
            except ImportError:  # its package is not installed (the photo stage notes it): mine the others
                continue
            side = min(*img.shape[:2], max(h, w))  # a photo smaller than the input: preprocess resizes
            crops.append(model.preprocess(random_crops(img, side, per, seed=i)))
            used.append(name)
        if not crops:
            raise ImportError(f"microscope {spec.model}: none of the photos {', '.join(names)} could be loaded")
        return (np.concatenate(crops), f"{per} random {h}x{w} crops of each of {len(used)} photos "
                                       f"({', '.join(used)})", {"data": "photos", "names": used, "per": per})
    raise ValueError(f"microscope: unknown dataset {spec.dataset!r}")


def _build_model(ctx: BuildContext, spec: MicroscopeSpec) -> list[Page]:
    model = ctx.model(spec.model)
    layers = spec.full_layers if (ctx.mode == "full" and spec.full_layers) else spec.layers
    images, data_name, data_key = _dataset(ctx, spec, model)
    wanted = ctx.sized(2, spec.channels, None)
    pages: list[Page] = []
    layer_cards = []
    bar = tqdm(layers, desc=f"microscope {spec.model}", unit="layer", disable=not ctx.progress)
    for layer in bar:
        data = _layer_data(ctx, spec, model, layer, images, data_name, data_key, wanted)
        layer_pages, card = _layer_pages(ctx, data)
        pages.extend(layer_pages)
        layer_cards.append(card)
    first = layer_cards[0].src if layer_cards else None
    pages.insert(0, Page(f"mic-{spec.model}", f"Microscope: {spec.model}",
                         [Section("Layers", layer_cards, layout="grid",
                                  text=f"Channels are mined on {data_name}. Click a layer for its channels.")],
                         intro=f"m = mv.models.load({spec.model!r})", card=first,
                         blurb=f"{len(layers)} layers"))
    return pages


def _layer_data(ctx: BuildContext, spec: MicroscopeSpec, model: Any, layer: str, images: np.ndarray,
                data_name: str, data_key: dict[str, Any], wanted: int | None) -> LayerData:
    k = min(9, len(images))
    project = ctx.mode in spec.project_in

    def mine() -> dict[str, np.ndarray]:
        top = vis.top_activations(model, images, [layer], k=k, batch_size=spec.batch_size, crop=False)[layer]
        channels = pick_channels(top.patch_index.shape[0], wanted)
        crops = vis.crop_patches(model, images, top, channels=channels)  # (C, k, C_in, h, w), NaN outside
        shown = model.deprocess(crops.reshape(-1, *crops.shape[2:]))
        found = {"channels": channels, "patch_index": top.patch_index, "patch_value": top.patch_value,
                 "patches": shown.reshape(*crops.shape[:2], *shown.shape[1:])}
        if project:  # the same top-k, each activation sent down to the pixels (the mining is reused)
            proj = vis.project_top_activations(model, images, layer, channels=channels, k=k, rules="deconvnet",
                                               top=top, batch_size=spec.batch_size)
            found["projections"] = proj.projections["deconvnet"]
        return found

    top = ctx.cached(f"mic-{spec.model}-{layer}-top", {**data_key, "k": k, "wanted": wanted, "project": project},
                     mine, model)
    channels = top["channels"]

    def dead() -> dict[str, np.ndarray]:
        report = vis.dead_filters(model, images, layer, batch_size=spec.batch_size)
        return {"dead_fraction": report.dead_fraction, "mean": report.mean, "max": report.max}

    dead_stats = ctx.cached(f"mic-{spec.model}-{layer}-dead", data_key, dead, model)
    fv_params = dict(spec.fv[ctx.mode])
    fv = ctx.cached(f"mic-{spec.model}-{layer}-fv", {**fv_params, "channels": channels.tolist()},
                    lambda: {"images": _feature_vis(ctx, model, layer, channels, fv_params)}, model)
    first = layer == spec.first_layer
    filters = vis.first_layer_filters(model, spec.filter_layer or layer) if first else None
    return LayerData(spec, model, layer, channels, data_name, top, dead_stats, fv, fv_params, filters, first)


def _feature_vis(ctx: BuildContext, model: Any, layer: str, channels: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    images = []
    for c in tqdm(channels, desc=f"  feature vis {layer}", unit="ch", leave=False, disable=not ctx.progress):
        result = vis.class_model(model, vis.objectives.channel(layer, int(c)), steps=p["steps"], lr=p["lr"],
                                 l2=0.0, param="fft", jitter=p["jitter"], size=p["size"], seed=0, progress=False)
        images.append(result.image)
    return np.stack(images)


def _fv_call(d: LayerData, c: int) -> str:
    p = d.fv_params
    size = "" if p["size"] is None else f", size={p['size']}"
    return (f"mv.vis.class_model(m, mv.vis.objectives.channel({d.layer!r}, {c}), steps={p['steps']}, "
            f"lr={p['lr']}, l2=0, param='fft', jitter={p['jitter']}{size}).image")


def filter_panel(ctx: BuildContext, d: LayerData, i: int, c: int) -> Section | None:
    if d.filters is None:
        return None
    path, src = ctx.image_path("mic", d.spec.model, d.layer, f"filter{c}")
    conv = d.spec.filter_layer or d.layer
    save_image(d.filters[c], path, min_size=96)
    return Section("Filter", [Figure(src, f"weights of filter {c} of {conv}, {d.filters.shape[1]}x"
                                          f"{d.filters.shape[2]}, scaled symmetrically (grey = 0)",
                                     f"mv.vis.first_layer_filters(m, {conv!r})[{c}]")])


def feature_vis_panel(ctx: BuildContext, d: LayerData, i: int, c: int) -> Section | None:
    path, src = ctx.image_path("mic", d.spec.model, d.layer, f"fv{c}")
    save_image(d.fv["images"][i], path, min_size=160)
    p = d.fv_params
    return Section("Feature visualisation", [Figure(
        src, f"the image that maximises the mean of channel {c} (Fourier parameterisation, {p['steps']} Adam "
             f"steps of lr {p['lr']}, jitter {p['jitter']} px)", _fv_call(d, c))])


def top_patches_panel(ctx: BuildContext, d: LayerData, i: int, c: int) -> Section | None:
    patches = d.top["patches"][i]
    path, src = ctx.image_path("mic", d.spec.model, d.layer, f"top{c}")
    save_image(mosaic(list(patches), ncols=3), path, min_size=240)
    values = d.top["patch_value"][c]
    index = d.top["patch_index"][c]
    table = [["rank", "dataset image", "activation"]] + [[str(r + 1), str(int(n)), f"{v:.3f}"]
                                                         for r, (n, v) in enumerate(zip(index, values, strict=True))]
    return Section("Top-9 dataset patches", [Figure(
        src, f"the receptive fields of the {len(values)} strongest activations of channel {c} over {d.data_name} "
             f"(white: outside the image)",
        f"mv.vis.crop_patches(m, images, mv.vis.top_activations(m, images, {d.layer!r}, k=9, crop=False)"
        f"[{d.layer!r}], channels=[{c}])")], table=table)


def projection_panel(ctx: BuildContext, d: LayerData, i: int, c: int) -> Section | None:
    if "projections" not in d.top:
        return None
    crops = d.top["projections"][i]  # (k, C_in, h, w), NaN outside the image
    shown = [signed_image(crop) for crop in crops]
    path, src = ctx.image_path("mic", d.spec.model, d.layer, f"proj{c}")
    save_image(mosaic(shown, ncols=3), path, min_size=240)
    return Section("DeconvNet projections", [Figure(
        src, f"each of the top-{len(crops)} activations of channel {c} alone, sent down to the pixels through the "
             f"DeconvNet (unpool with the switches, rectify, transposed filters), cropped to its receptive field: "
             f"0 is mid-grey, each crop scaled by its own 99th percentile of |value| (Zeiler & Fergus 2014)",
        f"mv.vis.project_top_activations(m, images, {d.layer!r}, channels=[{c}], k=9, rules='deconvnet')"
        f".projections['deconvnet']")],
        text="Same order as the patches above: what in each patch the channel responded to.")


def dead_panel(ctx: BuildContext, d: LayerData, i: int, c: int) -> Section | None:
    s = d.dead
    table = [["statistic", "value"], ["inputs whose map is all <= 0", f"{s['dead_fraction'][c]:.1%}"],
             ["mean activation", f"{s['mean'][c]:.4f}"], ["largest activation", f"{s['max'][c]:.4f}"]]
    verdict = "dead: off on every input" if s["dead_fraction"][c] >= 1 else "alive"
    return Section("Dead-filter statistics", text=f"Channel {c} is {verdict} over {d.data_name} "
                   f"(mv.vis.dead_filters(m, images, {d.layer!r})).", table=table)


CHANNEL_PANELS: list[ChannelPanel] = [filter_panel, feature_vis_panel, top_patches_panel, projection_panel,
                                      dead_panel]


def _layer_pages(ctx: BuildContext, d: LayerData) -> tuple[list[Page], Figure]:
    model_page = f"mic-{d.spec.model}"
    layer_page = f"mic-{d.spec.model}-{d.layer}"
    pages, cells = [], []
    for i, c in enumerate(d.channels):
        c = int(c)
        sections = [s for panel in CHANNEL_PANELS if (s := panel(ctx, d, i, c)) is not None]
        name = f"{layer_page}-c{c}"
        pages.append(Page(name, f"{d.spec.model} {d.layer} channel {c}", sections, parent=layer_page))
        fv_src = ctx.image_path("mic", d.spec.model, d.layer, f"fv{c}")[1]
        off = d.dead["dead_fraction"][c]
        cells.append(Figure(fv_src, "dead: off on every input" if off >= 1 else f"off on {off:.0%} of inputs",
                            _fv_call(d, c), href=f"{name}.html", title=f"channel {c}"))
    channels = len(d.dead["dead_fraction"])
    sections = [Section("Channels", cells, layout="grid",
                        text=f"{len(d.channels)} of {channels} channels (feature visualisations); click one for "
                             f"its page.")]
    if d.filters is not None:
        path, src = ctx.image_path("mic", d.spec.model, d.layer, "filters")
        f, conv = d.filters, d.spec.filter_layer or d.layer
        plot.save(plot.filter_grid(f, title=f"{conv}: all {len(f)} filters"), path)
        sections.append(Section("Filters", [Figure(src, f"all {len(f)} first-layer filters, symmetric scaling",
                                                   f"mv.plot.filter_grid(mv.vis.first_layer_filters(m, "
                                                   f"{conv!r}))")]))
    report = vis.DeadFilterReport(d.layer, d.dead["dead_fraction"], d.dead["mean"], d.dead["max"], 0, 0.0)
    path, src = ctx.image_path("mic", d.spec.model, d.layer, "dead")
    dead = report.dead()
    plot.save(plot.dead_filter_report(report, title=f"{d.layer}: {len(dead)} dead of {channels} channels"), path)
    sections.append(Section("Dead filters", [Figure(
        src, f"per channel: the fraction of inputs whose map is all <= 0, and the mean activation, over "
             f"{d.data_name}", f"mv.plot.dead_filter_report(mv.vis.dead_filters(m, images, {d.layer!r}))")],
        text=f"Dead channels (off on every input): {', '.join(map(str, dead)) or 'none'}."))
    first_fv = cells[0].src if cells else src
    pages.insert(0, Page(layer_page, f"{d.spec.model} {d.layer}", sections, parent=model_page))
    card = Figure(first_fv, f"{d.layer}: {channels} channels, {len(dead)} dead", f"mv.vis.activations(m, x, "
                  f"{d.layer!r})", href=f"{layer_page}.html", title=d.layer)
    return pages, card
