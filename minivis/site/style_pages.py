"""The style family on the site: two synthesis pages.

* ``fast_style_page``: the shipped feed-forward networks (Johnson et al. 2016), one pass each: the
  single-style ``fast_style_mosaic`` / ``fast_style_waves``, the multi-style ``fast_style_multi``
  (Dumoulin et al. 2017) in each of its styles, and an interpolation strip between two of them.
* ``texture_page``: textures and style by optimisation through a classifier's Gram matrices (Gatys
  et al. 2015, 2016), beside non-parametric sampling (Efros & Leung 1999) of a small sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import plot, vis
from minivis.site.core import BuildContext, Figure, Page, Section
from minivis.site.synthesis_spec import SynthesisSpec, save_figure

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TEXTURES = ("mosaic", "stripes")  # procedural samples (mv.data.STYLES): no optional package needed
STYLE = "waves"  # the style image of the Gatys transfer


def square_photo(ctx: BuildContext, name: str, size: int) -> np.ndarray:
    """The photo ``name``, shorter side resized to ``size`` and centre-cropped: (size, size, 3) floats in [0, 1]."""
    from minivis.data import center_crop, resize_shorter_side, to_float  # noqa: PLC0415

    return np.ascontiguousarray(center_crop(resize_shorter_side(to_float(ctx.photo(name)), size), size),
                                dtype=np.float32)


def _photo_line(name: str, size: int) -> str:
    return (f"photo = mv.data.center_crop(mv.data.resize_shorter_side(mv.data.to_float(mv.data.photo({name!r})), "
            f"{size}), {size})")


# --------------------------------------------------------------------------- feed-forward networks
def fast_style_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    from minivis.data import style_image  # noqa: PLC0415
    from minivis.models import load_fast_style, shipped_styles  # noqa: PLC0415

    name = spec.photo or ctx.photo_names[0]
    size = ctx.sized(48, 192, 320)
    photo = square_photo(ctx, name, size)
    base = {"photo": name, "size": size}
    singles = [s for s in spec.fast_styles if s in shipped_styles()]
    figures = []
    for style in singles:
        net = load_fast_style(style)
        out = ctx.cached(f"synth-fast-style-{style}-{name}", base,
                         lambda n=net: {"image": vis.stylize(n, photo, 0)}, net)["image"]
        src = save_figure(ctx, plot.style_grid(photo, style_image(style, size), {f"fast_style_{style}": out},
                                               size=2.6), "synth", f"fast-style-{style}-{name}")
        figures.append(Figure(src, f"one forward pass of the shipped single-style network fast_style_{style} "
                                   f"on {name} ({size}x{size})",
                              f"mv.vis.stylize(mv.models.load_fast_style({style!r}), photo)"))
    multi = load_fast_style(None)
    styles = list(multi.styles)

    def run_multi() -> dict[str, np.ndarray]:
        return {"styled": np.stack([vis.stylize(multi, photo, s) for s in styles]),
                "strip": np.stack(vis.interpolate_styles(multi, photo, styles[0], styles[1], alphas=ALPHAS))}

    res = ctx.cached(f"synth-fast-style-multi-{name}", {**base, "styles": styles, "alphas": ALPHAS}, run_multi,
                     multi)
    src = save_figure(ctx, plot.synthesis_grid([photo, *res["styled"]], ["content", *styles], size=2.4,
                                               suptitle="fast_style_multi: one network, one style per row of "
                                                        "its conditional instance norms"),
                      "synth", f"fast-style-multi-{name}")
    figures.append(Figure(src, f"the multi-style network fast_style_multi in each of its {len(styles)} styles "
                               f"({', '.join(styles)}): the styles differ only in the norms' (gamma, beta)",
                          f"mv.vis.stylize(mv.models.load_fast_style(), photo, style=s) for s in {tuple(styles)}"))
    src = save_figure(ctx, plot.interpolation_strip(list(res["strip"]), ALPHAS, names=(styles[0], styles[1]),
                                                    size=2.4), "synth", f"fast-style-strip-{name}")
    figures.append(Figure(src, f"between two trained styles: (gamma, beta) = (1 - alpha) {styles[0]} + alpha "
                               f"{styles[1]}, alpha = {', '.join(f'{a:g}' for a in ALPHAS)}; no further training",
                          f"mv.vis.interpolate_styles(mv.models.load_fast_style(), photo, {styles[0]!r}, "
                          f"{styles[1]!r}, alphas={ALPHAS})"))
    text = (f"{_photo_line(name, size)}. Each image is one forward pass of a small trained network (no "
            f"optimisation): train your own with `minivis train style --style NAME`, or run these on your own "
            f"image with `minivis style IMAGE --style {styles[0]}`.")
    return Page("synth-fast-style", "Feed-forward style transfer",
                [Section("Trained networks, one pass each", figures, layout="wide", text=text)],
                card=figures[-1].src, blurb="a style in one forward pass",
                intro="Johnson, Alahi & Fei-Fei 2016; Dumoulin, Shlens & Kudlur 2017 (conditional instance norm).")


# --------------------------------------------------------------------------- optimisation and sampling
def _gatys_layers(model: Any, spec: SynthesisSpec) -> tuple[list[str], str]:
    layers = list(spec.style_layers or getattr(model, "style_layers", None) or ())
    content = spec.content_layer or getattr(model, "content_layer", None)
    if not layers or content is None:
        raise ValueError(f"synthesis: {type(model).__name__} has no style_layers/content_layer; set them in "
                         f"SynthesisSpec(style_layers=..., content_layer=...)")
    return layers, content


def texture_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    from minivis.data import style_image  # noqa: PLC0415

    model = ctx.model(spec.model)
    layers, content_layer = _gatys_layers(model, spec)
    sample_size, out_size, steps = ctx.sized(32, 96, 128), ctx.sized(32, 64, 128), ctx.sized(3, 40, 150)
    patch, grown, window = ctx.sized(16, 32, 48), ctx.sized(20, 48, 96), ctx.sized(5, 11, 15)
    figures = []
    for texture in TEXTURES:
        sample = style_image(texture, sample_size)

        def run(sample: np.ndarray = sample) -> dict[str, np.ndarray]:
            result = vis.texture_synthesis(model, vis.style_input(model, sample), size=out_size, layers=layers,
                                           steps=steps, progress=False)
            small = sample[:patch, :patch]
            return {"gatys": result.image, "history": result.history, "small": small,
                    "efros": vis.efros_leung(small, grown, window=window, seed=0, progress=False)}

        res = ctx.cached(f"synth-texture-{texture}", {"sample": sample_size, "out": out_size, "steps": steps,
                                                       "layers": layers, "patch": patch, "grown": grown,
                                                       "window": window}, run, model)
        src = save_figure(ctx, plot.texture_figure(sample, {f"Gatys, {out_size} px": res["gatys"],
                                                            f"{patch} px sample": res["small"],
                                                            f"Efros-Leung, {grown} px": res["efros"]}, size=2.2),
                          "synth", f"texture-{texture}")
        figures.append(Figure(
            src, f"{texture}: Gram-matrix synthesis from noise through {spec.model} ({steps} L-BFGS steps, layers "
                 f"{', '.join(layers)}; style loss {res['history'][0]:.3g} -> {res['history'][-1]:.3g}), and "
                 f"non-parametric sampling of a {patch}x{patch} crop (window {window}, pixel by pixel)",
            f"mv.vis.texture_synthesis(m, mv.vis.style_input(m, mv.data.style_image({texture!r}, {sample_size})), "
            f"size={out_size}, layers={layers}, steps={steps}).image; mv.vis.efros_leung(sample[:{patch}, :{patch}], "
            f"{grown}, window={window})"))
    name = spec.photo or ctx.photo_names[0]
    size = ctx.sized(32, 96, 160)
    photo = square_photo(ctx, name, size)
    style = style_image(STYLE, 256)

    def transfer() -> dict[str, np.ndarray]:
        result = vis.style_transfer(model, vis.style_input(model, photo), vis.style_input(model, style, size),
                                    content_layer=content_layer, style_layers=layers, steps=steps, progress=False)
        return {"image": result.image, "content_loss": np.float64(result.info["content_loss"]),
                "style_loss": np.float64(result.info["style_loss"])}

    res = ctx.cached(f"synth-style-transfer-{name}", {"size": size, "steps": steps, "layers": layers,
                                                       "content_layer": content_layer, "style": STYLE},
                     transfer, model)
    src = save_figure(ctx, plot.style_grid(photo, style, {"style weight 10": res["image"]}, size=2.6),
                      "synth", f"style-transfer-{name}")
    figures.append(Figure(
        src, f"{name} ({size} px) in the style of {STYLE!r}: content at {content_layer}, style at {len(layers)} "
             f"layers, weights 1 : 10, TV 1, {steps} L-BFGS steps from the photo (content loss "
             f"{float(res['content_loss']):.3f}, style loss {float(res['style_loss']):.3f})",
        f"mv.vis.style_transfer(m, mv.vis.style_input(m, photo), mv.vis.style_input(m, mv.data.style_image("
        f"{STYLE!r}), {size}), content_layer={content_layer!r}, style_layers={layers}, steps={steps}).image"))
    return Page("synth-texture", "Textures and style by optimisation",
                [Section("Gram matrices and sampling", figures, layout="wide",
                         text=f"m = mv.models.load({spec.model!r}); {_photo_line(name, size)}. A texture is what "
                              f"the Gram matrices of a layer's channels keep: their correlations, not their "
                              f"positions. Efros-Leung copies pixels from the sample whose neighbourhood matches.")],
                card=figures[0].src, blurb="Gram matrices and non-parametric sampling",
                intro="Gatys, Ecker & Bethge 2015 (textures) and 2016 (style transfer); Efros & Leung 1999.")
