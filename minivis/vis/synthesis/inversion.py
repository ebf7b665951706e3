"""Feature inversion: which images does a layer think are the same as this one?

Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them" (CVPR 2015):
given the code ``Phi_0 = Phi(x_0)`` of an image at some layer, find

    x* = argmin_x  ||Phi(x) - Phi_0||^2 / ||Phi_0||^2  +  lambda_alpha N_alpha(x)  +  lambda_TV N_TV(x)

    N_alpha(x) = ||x||_alpha^alpha / (H W B^alpha)          (keeps pixels in range; alpha = 6)
    N_TV(x)    = TV^beta(x) / (H W V^beta),  V = B / 6.5    (prefers piecewise-smooth images; beta = 2)

where B is the largest pixel magnitude of a valid model input and the normalisations make the
weights comparable across image sizes and models (the paper's section 3). The data term is
normalised by ||Phi_0||^2 so that 1 means "as far as the zero code".

What survives in x* is what the layer keeps: early layers give back the photo almost exactly,
deeper ones keep the parts and their arrangement only roughly, and the logits keep little
beyond "something like this class". ``inversion_table`` measures that along the network.

The default optimiser is L-BFGS through ``minivis.optim.lbfgs`` (SciPy drives the image);
``optimizer="adam"`` uses the shared gradient loop instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import no_grad, tensor
from minivis.nn.hooks import forward_to
from minivis.nn.module import Module
from minivis.validate import check_float, check_seed, check_str
from minivis.vis.common import as_batch, check_layer, frozen
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis.objectives import LOGITS, Objective
from minivis.vis.synthesis.optimize import SynthesisResult, check_steps_lr, optimize
from minivis.vis.synthesis.parameterization import PixelImage

INVERSION_OPTIMIZERS = ("lbfgs", "adam", "sgd")


def pixel_bound(model: Module) -> float:
    """B: the largest |model input| of a valid image, from the model's ``mean`` and ``std``."""
    low, high = reg.valid_range(getattr(model, "mean", (0.0,)), getattr(model, "std", (1.0,)), np.float64)
    return float(max(np.abs(low).max(), np.abs(high).max()))


def reconstruction_objective(layer: str, target: Any) -> Objective:
    """``||Phi(x) - Phi_0||^2 / ||Phi_0||^2`` per image at ``layer`` ("" for the model output)."""
    xp = backend.xp(target)
    norms = (target * target).reshape(target.shape[0], -1).sum(axis=1)
    if bool(xp.any(norms == 0)):
        raise ValueError(f"invert: the code of layer {layer!r} is all zeros for some image; there is nothing "
                         f"to invert (try an earlier layer)")
    inverse_norms = 1.0 / norms

    def read(acts):
        diff = acts[layer] - target
        return (diff * diff).sum(axis=tuple(range(1, diff.ndim))) * inverse_norms

    return Objective(frozenset({layer}), read, f"reconstruction({layer!r})")


def invert(model: Module, image: Any, layer: str, steps: int = 200, alpha: float = 6.0,
           alpha_weight: float = 1e-5, tv_beta: float = 2.0, tv_weight: float = 1e-2,
           optimizer: str = "lbfgs", lr: float = 0.05, init: str = "noise", seed: int = 0,
           progress: bool = True) -> SynthesisResult:
    """Reconstruct ``image`` from its code at ``layer`` (Mahendran & Vedaldi 2015).

    image: the model input, (C, H, W) or (N, C, H, W) (e.g. ``model.preprocess(photo)``).
    layer: a dotted layer name (``model.layer_names()``), or "" for the model's output.
    alpha, alpha_weight: the alpha-norm prior and its weight lambda_alpha (normalised as above).
    tv_beta, tv_weight: the TV^beta prior and its weight lambda_TV (normalised as above).
    optimizer: "lbfgs" (``steps`` L-BFGS iterations), "adam" or "sgd" (``steps`` steps of size ``lr``).
    init: "noise" (small Gaussian noise, the paper's start) or "mean" (zero input: the mean image).

    Returns a ``SynthesisResult`` shaped like the input: ``.x`` the reconstruction, ``.image``
    its deprocessed picture, ``.history`` the normalised feature error at each step, and in
    ``.info``: ``feature_error`` (final normalised data term) and ``image_error``
    (``||x* - x_0|| / ||x_0||`` in model-input space) per image.
    """
    method = "invert"
    x0, single = as_batch(image, model, method, "image")
    if not isinstance(layer, str):  # before the comparison below, which an array would answer elementwise
        raise TypeError(f"{method}: layer must be a dotted layer name (str) or \"\" for the output, got "
                        f"{type(layer).__name__}")
    if layer != LOGITS:
        check_layer(model, layer, method)
    steps, lr = check_steps_lr(steps, lr, method)
    if check_str(optimizer, method, "optimizer", INVERSION_OPTIMIZERS) not in INVERSION_OPTIMIZERS:
        raise ValueError(f"{method}: optimizer must be one of {INVERSION_OPTIMIZERS}, got {optimizer!r}")
    alpha = check_float(alpha, method, "alpha", low=1.0)
    tv_beta = check_float(tv_beta, method, "tv_beta", low=1.0)
    alpha_weight = check_float(alpha_weight, method, "alpha_weight", low=0.0)
    tv_weight = check_float(tv_weight, method, "tv_weight", low=0.0)
    if check_str(init, method, "init", ("noise", "mean")) not in ("noise", "mean"):
        raise ValueError(f"{method}: init must be 'noise' or 'mean', got {init!r}")

    with frozen(model), no_grad():
        target = forward_to(model, tensor(x0), layer).data.copy()
    objective = reconstruction_objective(layer, target)

    n, _, h, w = x0.shape
    bound = pixel_bound(model)
    v = bound / 6.5
    alpha_scale = 1.0 / (h * w * bound ** alpha)
    tv_scale = 1.0 / (h * w * v ** tv_beta)
    penalties = [(alpha_weight * alpha_scale, lambda x: reg.alpha_norm(x, alpha)),
                 (tv_weight * tv_scale, lambda x: reg.tv(x, tv_beta))]

    rng = np.random.default_rng(check_seed(seed, method))
    start = np.zeros(x0.shape) if init == "mean" else rng.standard_normal(x0.shape) * 0.1 * bound
    start = backend.to_device(start.astype(x0.dtype), backend.device_of(x0))
    result = optimize(model, objective, PixelImage(start), steps=steps, lr=lr, optimizer=optimizer,
                      penalties=penalties, maximize=False, seed=seed, progress=progress, desc=method)
    with frozen(model), no_grad():
        feature_error = objective(model, tensor(result.x)).numpy().astype(np.float64)
    diff = backend.to_device(result.x - x0, "cpu").reshape(n, -1)
    ref = backend.to_device(x0, "cpu").reshape(n, -1)
    image_error = np.linalg.norm(diff, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    result.info.update(layer=layer, feature_error=feature_error, image_error=image_error.astype(np.float64))
    if single:
        result.x = result.x[0]
        result.image = None if result.image is None else result.image[0]
        result.history, result.total = result.history[:, 0], result.total[:, 0]
        result.info["feature_error"] = float(feature_error[0])
        result.info["image_error"] = float(image_error[0])
    return result


@dataclass
class InversionTable:
    """Reconstructions of one image from several layers, and how far each one is from the original.

    layers: the layer names, in the order given. feature_error: the final normalised data term
    ``||Phi(x*) - Phi_0||^2 / ||Phi_0||^2`` per layer. image_error: ``||x* - x_0|| / ||x_0||``
    per layer. results: the ``SynthesisResult`` of each inversion. original: the input image.
    The figure is ``mv.plot.inversion_figure(table)`` (vis does not import plot).
    """

    layers: list[str]
    feature_error: np.ndarray
    image_error: np.ndarray
    results: list[SynthesisResult]
    original: Any
    original_image: np.ndarray | None

    def rows(self) -> list[dict[str, Any]]:
        return [{"layer": name or "(output)", "feature_error": float(f), "image_error": float(e)}
                for name, f, e in zip(self.layers, self.feature_error, self.image_error, strict=True)]

    def markdown(self) -> str:
        lines = ["| layer | feature error | image error |", "|:---|---:|---:|"]
        lines += [f"| `{r['layer']}` | {r['feature_error']:.4f} | {r['image_error']:.3f} |" for r in self.rows()]
        return "\n".join(lines)

    __str__ = markdown


def inversion_table(model: Module, image: Any, layers: Sequence[str], **kwargs: Any) -> InversionTable:
    """``invert`` one image (C, H, W) from each of ``layers``; ``kwargs`` go to ``invert``."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise TypeError(f"inversion_table: layers must be a non-empty list of layer names, got {layers!r}")
    x0, single = as_batch(image, model, "inversion_table", "image")
    if not single:
        raise ValueError(f"inversion_table: give one image (C, H, W), got a batch of shape {x0.shape}")
    for layer in layers:
        if layer != LOGITS:
            check_layer(model, layer, "inversion_table")
    results = [invert(model, x0[0], layer, **kwargs) for layer in layers]
    deprocess = getattr(model, "deprocess", None)
    return InversionTable(
        layers=list(layers),
        feature_error=np.array([r.info["feature_error"] for r in results]),
        image_error=np.array([r.info["image_error"] for r in results]),
        results=results,
        original=backend.to_device(x0[0], "cpu"),
        original_image=deprocess(x0[0]) if callable(deprocess) else None,
    )
