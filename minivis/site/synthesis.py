"""Synthesis: images made by optimisation. Class models (with and without the regularisers), DeepDream,
feature inversion layer by layer, adversarial examples before and after; then (their own modules)
feed-forward style networks, textures and style transfer by optimisation, and decoder inversion.
One page per family, each a function in ``SYNTHESIS_PAGES`` and a ``Part`` of a (parallel) build."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from minivis import plot, vis
from minivis.autograd import no_grad, tensor
from minivis.site.core import BuildContext, Figure, Page, Part, Section, Stage, stage_of_parts
from minivis.site.decoder_page import decoder_page
from minivis.site.style_pages import fast_style_page, texture_page
from minivis.site.synthesis_spec import SynthesisSpec, save_figure, small_input

# --------------------------------------------------------------------------- class models
CLASS_MODEL_RUNS = {  # name -> class_model settings (the lesson 10 ladder, condensed)
    "plain": {"l2": 0.0},
    "L2 + blur + jitter + clipping": {"l2": 1e-3, "blur_every": 4, "blur_sigma": 0.5, "jitter": 4,
                                      "clip_norm_pct": 10.0, "clip_contrib_pct": 10.0},
    "FFT + robust transforms": {"l2": 0.0, "param": "fft", "transforms": "standard"},
}


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def class_model_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    sections = []
    small = ctx.model(spec.small_model)
    classes = list(range(len(small.labels)))
    steps = ctx.sized(8, 200, 300)
    runs = {"plain": {"lr": 0.1, "l2": 0.0}, "jitter + blur": {"lr": 0.1, "l2": 0.0, "jitter": 2,
                                                               "blur_every": 4, "blur_sigma": 0.5}}
    figures = []
    for name, kwargs in runs.items():
        res = ctx.cached(f"synth-classmodel-{spec.small_model}-{name}", {**kwargs, "steps": steps},
                         lambda kw=kwargs: _class_models(small, classes, steps, kw), small)
        titles = [small.labels[c] for c in classes]
        src = save_figure(ctx, plot.synthesis_grid(list(res["images"]), titles, ncols=min(10, len(classes)), size=1.3,
                                             suptitle=f"{spec.small_model} class models: {name}"),
                    "synth", f"classmodels-{spec.small_model}-{name}")
        figures.append(Figure(src, f"{name}: Adam, {steps} steps, {_kwargs_text(kwargs)}; target logit "
                                   f"{res['history'][0].mean():.1f} -> {res['history'][-1].mean():.1f} (mean)",
                              f"mv.vis.class_model(m, list(range({len(classes)})), steps={steps}, "
                              f"{_kwargs_text(kwargs)}).image"))
    sections.append(Section(f"{spec.small_model}: every class", figures, layout="wide"))

    big = ctx.model(spec.model)
    size, steps = ctx.sized(32, 112, 224), ctx.sized(4, 40, 150)
    classes = [c for c in spec.classes if c < len(big.labels)]
    figures, histories = [], {}
    for name, kwargs in tqdm(CLASS_MODEL_RUNS.items(), desc="class models", unit="run", leave=False,
                             disable=not ctx.progress):
        res = ctx.cached(f"synth-classmodel-{spec.model}-{name}", {**kwargs, "steps": steps, "size": size,
                                                                   "classes": classes},
                         lambda kw=kwargs: _class_models(big, classes, steps, {"lr": 0.05, "size": size, **kw}), big)
        histories[name] = res["history"]
        src = save_figure(ctx, plot.synthesis_grid(list(res["images"]), [big.labels[c] for c in classes], size=2.2,
                                             suptitle=f"{spec.model}: {name}"), "synth", f"classmodels-{name}")
        figures.append(Figure(src, f"{name}: Adam lr 0.05, {steps} steps at {size} px, {_kwargs_text(kwargs)}",
                              f"mv.vis.class_model(m, {classes}, steps={steps}, size={size}, "
                              f"{_kwargs_text(kwargs)}).image"))
    src = save_figure(ctx, plot.history_plot(histories, ylabel="class logit (mean over classes)",
                                       title="the objective during the ascent"), "synth", "classmodels-history")
    figures.append(Figure(src, "the class logit at each step (mean over the classes), one curve per run",
                          "mv.plot.history_plot({name: result.history})"))
    sections.append(Section(f"{spec.model}: the regularisers", figures, layout="wide",
                            text="Without priors the ascent finds high-frequency patterns; each prior pulls "
                                 "the image towards something a camera could have taken."))
    return Page("synth-class-models", "Class models", sections, card=figures[0].src,
                blurb="the image a class likes best", intro="Simonyan et al. 2014; Yosinski et al. 2015; "
                "Olah et al. 2017 (Fourier parameterisation).")


def _class_models(model: Any, classes: list[int], steps: int, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    result = vis.class_model(model, classes, steps=steps, seed=0, progress=False, **kwargs)
    return {"images": result.image, "history": result.history}


# --------------------------------------------------------------------------- DeepDream
def deepdream_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    model = ctx.model(spec.model)
    name = spec.photo or ctx.photo_names[0]
    size = ctx.sized(48, 160, 320)
    steps, octaves = ctx.sized(2, 8, 10), ctx.sized(1, 3, 4)
    x = small_input(model, ctx.photo(name), size)
    images, titles, captions, calls = [model.deprocess(x)], ["original"], [], []
    kwargs = {"steps": steps, "lr": 0.02, "octaves": octaves, "jitter": ctx.sized(4, 16, 32)}
    for layer in spec.dream_layers:
        res = ctx.cached(f"synth-dream-{name}-{layer}", {**kwargs, "size": size},
                         lambda layer=layer: _dream(model, x, layer, kwargs), model)
        images.append(res["image"])
        titles.append(layer)
        captions.append(f"{layer}: 1/2||a||^2 {res['history'][0]:.1f} -> {res['history'][-1]:.1f}")
        calls.append(f"mv.vis.deepdream(m, x, {layer!r}, {_kwargs_text(kwargs)}).image")
    src = save_figure(ctx, plot.synthesis_grid(images, titles, size=3.0, suptitle=f"DeepDream on {name}"),
                "synth", f"deepdream-{name}")
    figure = Figure(src, f"DeepDream ({_kwargs_text(kwargs)}) on a {size} px input; " + "; ".join(captions),
                    " / ".join(calls))
    return Page("synth-deepdream", "DeepDream", [Section(f"{name}, layer by layer", [figure], layout="wide",
                                                         text="Gradient ascent on 1/2||a||^2 of a layer, octave "
                                                              "by octave: the network paints more of what it "
                                                              "already sees.")],
                card=src, blurb="more of what the network sees", intro="Mordvintsev et al. 2015.")


def _dream(model: Any, x: np.ndarray, layer: str, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    result = vis.deepdream(model, x, layer, seed=0, progress=False, **kwargs)
    return {"image": result.image, "history": result.history}


# --------------------------------------------------------------------------- inversion
def inversion_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    model = ctx.model(spec.model)
    name = spec.photo or ctx.photo_names[0]
    size, steps = spec.sizes[ctx.mode], ctx.sized(3, 25, 150)
    x = small_input(model, ctx.photo(name), size)
    layers = list(spec.inversion_layers)

    def run() -> dict[str, np.ndarray]:
        table = vis.inversion_table(model, x, layers, steps=steps, progress=False)
        return {"images": np.stack([r.image for r in table.results]), "feature_error": table.feature_error,
                "image_error": table.image_error}

    res = ctx.cached(f"synth-inversion-{name}", {"layers": layers, "steps": steps, "size": size}, run, model)
    images = [model.deprocess(x), *res["images"]]
    titles = ["original"] + [f"{layer or '(logits)'}\nimage err {e:.2f}" for layer, e in
                             zip(layers, res["image_error"], strict=True)]
    src = save_figure(ctx, plot.synthesis_grid(images, titles, size=2.4, suptitle=f"inverting {name} from each layer"),
                "synth", f"inversion-{name}")
    table = [["layer", "feature error", "image error"]] + [
        [layer or "(logits)", f"{f:.4f}", f"{e:.3f}"]
        for layer, f, e in zip(layers, res["feature_error"], res["image_error"], strict=True)]
    fig = Figure(src, f"reconstructions of {name} ({size} px) from its code at each layer: L-BFGS, {steps} "
                      f"iterations, alpha-norm and TV priors (the defaults)",
                 f"mv.vis.inversion_table(m, x, {layers}, steps={steps})")
    return Page("synth-inversion", "Feature inversion", [Section("Layer by layer", [fig], layout="wide",
                                                                 table=table)],
                card=src, blurb="what a layer's code keeps", intro="Mahendran & Vedaldi 2015.")


# --------------------------------------------------------------------------- adversarial
def adversarial_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    model = ctx.model(spec.model)
    name = spec.photo or ctx.photo_names[0]
    x = model.preprocess(ctx.photo(name))[0]
    target = spec.attack_target if spec.attack_target < len(model.labels) else 0
    steps = ctx.sized(3, 20, 40)

    def run() -> dict[str, np.ndarray]:
        with no_grad():
            label = int(model(tensor(x[None])).numpy()[0].argmax())
        fg = vis.fgsm(model, x, label, epsilon=2 / 255)
        attack = vis.targeted_attack(model, x, target, epsilon=8 / 255, step_size=2 / 255, steps=steps,
                                     progress=False)
        return {"label": np.int64(label), "fgsm": fg.image, "fgsm_pred": np.int64(fg.prediction),
                "fgsm_prob": np.float64(fg.target_prob), "attack": attack.image,
                "attack_prob": np.float64(attack.target_prob), "attack_pred": np.int64(attack.prediction),
                "history": attack.history}

    res = ctx.cached(f"synth-adversarial-{name}", {"target": target, "steps": steps}, run, model)
    labels = model.labels
    clean = model.deprocess(x)
    diff = np.clip(0.5 + (res["attack"] - clean) * (0.5 / (8 / 255)), 0, 1)
    label = int(res["label"])
    titles = [f"clean: {labels[label]}", f"FGSM 2/255: {labels[int(res['fgsm_pred'])]}",
              f"targeted 8/255: {labels[int(res['attack_pred'])]}", "difference x 16"]
    src = save_figure(ctx, plot.synthesis_grid([clean, res["fgsm"], res["attack"], diff], titles, size=2.6,
                                         suptitle=f"{name} before and after"), "synth", f"adversarial-{name}")
    figs = [Figure(src, f"FGSM with epsilon 2/255 leaves p({labels[label]}) = {float(res['fgsm_prob']):.3f}; "
                        f"a targeted attack ({steps} steps of 2/255 within 8/255) reaches p({labels[target]}) = "
                        f"{float(res['attack_prob']):.3f}",
                   f"mv.vis.fgsm(m, x, {label}, epsilon=2/255); mv.vis.targeted_attack(m, x, {target}, "
                   f"epsilon=8/255, step_size=2/255, steps={steps})")]
    src = save_figure(ctx, plot.history_plot({"targeted attack": res["history"]}, ylabel=f"p({labels[target]})",
                                       title="the target's probability per step"), "synth", "adversarial-history")
    figs.append(Figure(src, "probability of the target class during the targeted attack",
                       "mv.plot.history_plot({'targeted attack': attack.history})"))
    return Page("synth-adversarial", "Adversarial examples", [Section("Before and after", figs, layout="wide")],
                card=figs[0].src, blurb="invisible changes, another class",
                intro="Goodfellow et al. 2015 (FGSM); Madry et al. 2018 (projected gradient).")


SynthesisPage = Callable[[BuildContext, SynthesisSpec], Page]
SYNTHESIS_PAGES: list[SynthesisPage] = [class_model_page, deepdream_page, inversion_page, adversarial_page,
                                        fast_style_page, texture_page, decoder_page]
# Rough seconds of each page in default mode: a parallel build starts the costliest first.
PAGE_COSTS = {"class_model_page": 60.0, "deepdream_page": 15.0, "inversion_page": 20.0, "adversarial_page": 12.0,
              "fast_style_page": 8.0, "texture_page": 30.0, "decoder_page": 6.0}


def synthesis_stage(spec: SynthesisSpec | None = None, pages: list[SynthesisPage] | None = None) -> Stage:
    """The Synthesis section: one page (and one ``Part``) per function of ``pages`` (default ``SYNTHESIS_PAGES``)."""
    spec = spec or SynthesisSpec()

    def part(make: SynthesisPage) -> Part:
        return Part(make.__name__.removesuffix("_page"), lambda ctx: [make(ctx, spec)],
                    cost=PAGE_COSTS.get(make.__name__, 10.0))

    def parts(ctx: BuildContext) -> list[Part]:
        return [part(make) for make in (pages or SYNTHESIS_PAGES)]

    return stage_of_parts("synthesis", "Synthesis", "Images by optimisation", parts,
                          "Images made by optimisation or by a trained network: what a class or a layer wants to "
                          "see, what a code keeps, how little it takes to change the answer, and textures and "
                          "styles.")
