"""Decoder inversion on the site: the shipped up-convolutional decoders of ``fashion_cnn`` (Dosovitskiy &
Brox 2016) beside inversion by optimisation (Mahendran & Vedaldi 2015), layer by layer, on the same
test images. The decoders were trained on the shipped ``fashion_cnn`` weights, so the page always
uses those (``mv.models.load("fashion_cnn")``), whatever model the rest of the build was given.
"""

from __future__ import annotations

import numpy as np

from minivis import plot, vis
from minivis.site.core import BuildContext, Figure, Page, Section
from minivis.site.synthesis_spec import SynthesisSpec, save_figure
from minivis.vis.synthesis.decoder_inversion import InversionComparison


def decoder_page(ctx: BuildContext, spec: SynthesisSpec) -> Page:
    from minivis.models import available_decoders, load, load_decoder  # noqa: PLC0415

    layers = available_decoders()
    if not layers:
        raise FileNotFoundError("no fashion_cnn decoder weights ship with this install; train one with "
                                "`minivis train decoder --layer features.4`")
    model = load(spec.decoder_model)
    decoders = {layer: load_decoder(layer) for layer in layers}
    n, steps = ctx.sized(3, 6, 10), ctx.sized(3, 50, 200)
    images = np.asarray(ctx.fashion_set()[0][:n])
    x = model.preprocess(images)

    def run() -> dict[str, np.ndarray]:
        c = vis.compare_inversions(model, decoders, x, steps=steps, progress=False)
        out = {"seconds": np.array([c.seconds["decoder"], c.seconds["optimisation"]])}
        for i, layer in enumerate(c.layers):
            out.update({f"dec_x{i}": c.decoder_x[layer], f"opt_x{i}": c.optimisation_x[layer],
                        f"dec_err{i}": c.decoder[layer], f"opt_err{i}": c.optimisation[layer],
                        f"dec_feat{i}": c.decoder_feature[layer], f"opt_feat{i}": c.optimisation_feature[layer]})
        return out

    weights = {layer: str(d.state_dict()[next(iter(d.state_dict()))].shape) for layer, d in decoders.items()}
    res = ctx.cached("synth-decoder-inversion", {"n": n, "steps": steps, "layers": layers, "decoders": weights},
                     run, model)
    per_layer = {key: {layer: res[f"{key}{i}"] for i, layer in enumerate(layers)}
                 for key in ("dec_err", "opt_err", "dec_feat", "opt_feat", "dec_x", "opt_x")}
    c = InversionComparison(list(layers), x, *per_layer.values())
    src = save_figure(ctx, plot.inversion_comparison_figure(c, model, count=min(n, 6),
                                                            title="decoder (one pass) and optimisation, per layer"),
                      "synth", "decoder-inversion")
    table = [["layer", "image error: decoder", "image error: optimisation", "feature error: decoder",
              "feature error: optimisation"]] + [
        [r["layer"], f"{r['decoder_image_error']:.3f}", f"{r['optimisation_image_error']:.3f}",
         f"{r['decoder_feature_error']:.3f}", f"{r['optimisation_feature_error']:.3f}"] for r in c.rows()]
    dec_s, opt_s = (float(v) for v in res["seconds"])
    fig = Figure(src, f"the first {n} Fashion-MNIST test images reconstructed from their code at each layer: by the "
                      f"shipped decoder of that layer (one forward pass; {dec_s:.2f} s for all layers) and by L-BFGS "
                      f"({steps} steps, alpha-norm and TV priors; {opt_s:.1f} s); errors are means over the images",
                 f"mv.vis.compare_inversions(m, {{l: mv.models.load_decoder(l) for l in "
                 f"mv.models.available_decoders()}}, x, steps={steps})")
    text = ("m = mv.models.load('fashion_cnn'); x = m.preprocess(images). The decoder returns the average of the "
            "images that share a code: sharp where the code pins the image down, blurred where it does not. The "
            "optimisation matches the code instead (a lower feature error), with a prior chosen by hand.")
    return Page("synth-decoder-inversion", "Decoder inversion", [Section("Layer by layer", [fig], layout="wide",
                                                                         text=text, table=table)],
                card=src, blurb="a trained network inverts the code",
                intro="Dosovitskiy & Brox 2016; Mahendran & Vedaldi 2015.")
