"""Code inversion by a trained decoder, side by side with inversion by optimisation.

Dosovitskiy & Brox, "Inverting Visual Representations with Convolutional Networks" (CVPR 2016):
a decoder ``D`` trained to minimise ``E ||D(Phi(x)) - x||^2`` over a dataset returns, in one
forward pass, the *conditional mean* of the images that share a code,

    D*(phi) = E[x | Phi(x) = phi],

whereas Mahendran & Vedaldi's optimisation (``invert``) returns *one* image whose code matches,
chosen by a hand-made prior (alpha-norm, total variation). The decoder learns its prior from the
data: what the code pins down comes back sharp, what it leaves open is averaged over the training
images (blur, not noise). Its reconstruction need not have the same code: the optimisation
matches the code but not necessarily the image.

Both are scored like ``invert``: the image error ``||x* - x_0|| / ||x_0||`` (model-input units)
and the feature error ``||Phi(x*) - Phi_0||^2 / ||Phi_0||^2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import tensor
from minivis.nn.hooks import forward_to
from minivis.nn.module import Module
from minivis.validate import check_positive_int
from minivis.vis.common import as_batch, check_layer, inference
from minivis.vis.synthesis.inversion import invert


@dataclass
class DecoderInversion:
    """What ``invert_with_decoder`` returns; shaped like its input (one image or a batch).

    x: the reconstruction ``D(Phi(x_0))`` (model input). image: ``model.deprocess(x)`` (or None).
    image_error: ``||x - x_0|| / ||x_0||`` per image. feature_error: ``||Phi(x) - Phi_0||^2 / ||Phi_0||^2``.
    """

    layer: str
    x: Any
    image: np.ndarray | None
    image_error: Any
    feature_error: Any


def _decoder_layer(decoder: Module, layer: str | None, method: str) -> str:
    if not isinstance(decoder, Module):
        raise TypeError(f"{method}: decoder must be a minivis nn.Module (e.g. mv.models.load_decoder(layer)), "
                        f"got {type(decoder).__name__}")
    if layer is None:
        layer = getattr(decoder, "layer", None)
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"{method}: the decoder does not say which layer it inverts; pass layer=")
    return layer


def _relative_errors(model: Module, layer: str, x0: Any, recon: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image error, feature error) per image, float64 on the host."""
    n = x0.shape[0]
    host = lambda a: np.asarray(backend.to_device(a, "cpu"), np.float64).reshape(n, -1)  # noqa: E731
    ref, out = host(x0), host(recon)
    image_error = np.linalg.norm(out - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    with inference(model):
        code0 = host(forward_to(model, tensor(x0), layer).data)
        code = host(forward_to(model, tensor(recon), layer).data)
    feature_error = ((code - code0) ** 2).sum(axis=1) / np.maximum((code0 ** 2).sum(axis=1), 1e-300)
    return image_error, feature_error


def invert_with_decoder(model: Module, decoder: Module, image: Any, layer: str | None = None,
                        batch_size: int = 256) -> DecoderInversion:
    """Reconstruct ``image`` from its code at ``layer`` in one pass of a trained ``decoder``.

    model: the classifier whose code is inverted (e.g. ``mv.models.load("fashion_cnn")``).
    decoder: a Module mapping codes (N, *code_shape) to model inputs (``mv.models.load_decoder``).
    image: model inputs (C, H, W) or (N, C, H, W). layer: default ``decoder.layer``.
    """
    method = "invert_with_decoder"
    layer = _decoder_layer(decoder, layer, method)
    check_layer(model, layer, method)
    batch_size = check_positive_int(batch_size, method, "batch_size")
    x0, single = as_batch(image, model, method, "image")
    parts = []
    with inference(model), inference(decoder):
        for start in range(0, x0.shape[0], batch_size):
            code = forward_to(model, tensor(x0[start:start + batch_size]), layer)
            out = decoder(code)
            if tuple(out.shape) != tuple(code.shape[:1]) + tuple(x0.shape[1:]):
                raise ValueError(f"{method}: the decoder returned shape {tuple(out.shape)} for a code of shape "
                                 f"{tuple(code.shape)}; expected model inputs {(code.shape[0], *x0.shape[1:])}")
            parts.append(out.data)
    recon = backend.xp(x0).concatenate(parts)
    image_error, feature_error = _relative_errors(model, layer, x0, recon)
    deprocess = getattr(model, "deprocess", None)
    pictures = deprocess(recon) if callable(deprocess) else None
    if single:
        return DecoderInversion(layer, recon[0], None if pictures is None else pictures[0], float(image_error[0]),
                                float(feature_error[0]))
    return DecoderInversion(layer, recon, pictures, image_error, feature_error)


@dataclass
class InversionComparison:
    """Decoder versus optimisation, layer by layer, on the same images.

    layers: layer names. decoder / optimisation: ``{layer: (N,) image errors}``; ``*_feature``: the
    feature errors. decoder_x / optimisation_x: ``{layer: (N, C, H, W) reconstructions}``. images:
    the originals (N, C, H, W). seconds: ``{"decoder": s, "optimisation": s}`` wall time of each method.
    """

    layers: list[str]
    images: np.ndarray
    decoder: dict[str, np.ndarray]
    optimisation: dict[str, np.ndarray]
    decoder_feature: dict[str, np.ndarray]
    optimisation_feature: dict[str, np.ndarray]
    decoder_x: dict[str, np.ndarray]
    optimisation_x: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return [{"layer": layer,
                 "decoder_image_error": float(self.decoder[layer].mean()),
                 "optimisation_image_error": float(self.optimisation[layer].mean()),
                 "decoder_feature_error": float(self.decoder_feature[layer].mean()),
                 "optimisation_feature_error": float(self.optimisation_feature[layer].mean())}
                for layer in self.layers]

    def markdown(self) -> str:
        lines = ["| layer | image error: decoder | image error: optimisation | feature error: decoder | "
                 "feature error: optimisation |", "|:---|---:|---:|---:|---:|"]
        lines += [f"| `{r['layer']}` | {r['decoder_image_error']:.3f} | {r['optimisation_image_error']:.3f} | "
                  f"{r['decoder_feature_error']:.3f} | {r['optimisation_feature_error']:.3f} |" for r in self.rows()]
        return "\n".join(lines)

    __str__ = markdown


def compare_inversions(model: Module, decoders: Mapping[str, Module] | Sequence[Module], images: Any,
                       steps: int = 200, progress: bool = True, **invert_kwargs: Any) -> InversionComparison:
    """Invert ``images`` from each decoder's layer twice: by its decoder and by ``invert`` (Mahendran & Vedaldi).

    decoders: ``{layer: decoder}`` or a list of decoders that carry ``.layer``.
    images: model inputs (N, C, H, W) or one (C, H, W). steps, invert_kwargs: passed to ``invert`` (L-BFGS by default).
    """
    import time  # noqa: PLC0415

    method = "compare_inversions"
    if isinstance(decoders, Mapping):
        pairs = list(decoders.items())
    elif isinstance(decoders, Sequence) and not isinstance(decoders, str):
        pairs = [(_decoder_layer(d, None, method), d) for d in decoders]
    else:
        raise TypeError(f"{method}: decoders must be {{layer: decoder}} or a list of decoders, got "
                        f"{type(decoders).__name__}")
    if not pairs:
        raise ValueError(f"{method}: give at least one decoder")
    x0, _ = as_batch(images, model, method, "images")  # one image is a batch of one here
    result = InversionComparison([], np.asarray(backend.to_device(x0, "cpu")), {}, {}, {}, {}, {}, {},
                                 {"decoder": 0.0, "optimisation": 0.0})
    for layer, decoder in pairs:
        check_layer(model, layer, method)
        start = time.perf_counter()
        dec = invert_with_decoder(model, decoder, x0, layer)
        result.seconds["decoder"] += time.perf_counter() - start
        start = time.perf_counter()
        opt = invert(model, x0, layer, steps=steps, progress=progress, **invert_kwargs)
        result.seconds["optimisation"] += time.perf_counter() - start
        result.layers.append(layer)
        result.decoder[layer], result.decoder_feature[layer] = dec.image_error, dec.feature_error
        result.optimisation[layer] = np.asarray(opt.info["image_error"], np.float64)
        result.optimisation_feature[layer] = np.asarray(opt.info["feature_error"], np.float64)
        result.decoder_x[layer] = np.asarray(backend.to_device(dec.x, "cpu"))
        result.optimisation_x[layer] = np.asarray(backend.to_device(opt.x, "cpu"))
    return result
