"""The CAM family: one formula, different channel weights. Grad-CAM and guided Grad-CAM (Selvaraju
et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"),
and its variants (``cam(model, x, target, layer, method=...)``):

==================  =============================================================  ==========================
method              weight of channel k (A: activation, G = dS/dA, per image)      paper
==================  =============================================================  ==========================
grad_cam            mean_ij G_kij                                                  Selvaraju et al. 2017
grad_cam_pp         sum_ij relu(G) a_kij, a = G^2 / (2 G^2 + sum_ij A * G^3)       Chattopadhay et al. 2018
xgrad_cam           sum_ij G_kij A_kij / sum_ij A_kij                              Fu et al. 2020
hires_cam           G_kij itself, per position (no pooling)                        Draelos & Carin 2020
layer_cam           relu(G_kij), per position                                      Jiang et al. 2021
score_cam           softmax(f(x * mask_k))_c - softmax(f(baseline))_c              Wang et al. 2020
ablation_cam        (S - S with channel k zeroed) / S                              Desai & Ramaswamy 2020
eigen_cam           first principal direction of the centred A (no target)         Muhammad & Yeasin 2020
eigen_grad_cam      the same for G * A                                             (pytorch-grad-cam)
==================  =============================================================  ==========================

and then, for all of them, L = ReLU(sum_k w_k * A^k) (``(A - mean)`` for the Eigen ones), upsampled
bilinearly to the input. Score-CAM and Ablation-CAM need one forward pass per channel; they are
streamed ``batch_size`` passes at a time, so memory does not grow with the channel count.

For a convolutional layer with feature maps A^k (k = 1..K, each h x w) and a target score S_c:

    alpha_k = (1 / hw) sum_ij dS_c / dA^k_ij          (how much channel k matters: a global-average-pooled gradient)
    L_c     = ReLU( sum_k alpha_k A^k )               (h x w: where the channels that matter fire)

then bilinearly upsampled to the input size. The ReLU keeps the evidence *for* the class.
Guided Grad-CAM multiplies the upsampled map into guided backprop, which is sharp but not
class-discriminative, to get a map that is both.

The gradient is taken at the layer only: a forward hook replaces the layer's output by a
fresh leaf tensor, so the backward pass stops there instead of running down to the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional.loss import softmax
from minivis.functional.resize import interpolate
from minivis.nn.hooks import capture, edit_output
from minivis.nn.module import Module
from minivis.rules import backward_rule
from minivis.validate import check_float, check_positive_int, check_progress, check_str
from minivis.vis.attribution.gradients import batch_gradient
from minivis.vis.common import (
    Target,
    as_batch,
    check_layer,
    frozen,
    inference,
    is_objective,
    model_scores,
    target_scores,
    unbatch,
)

CAM_METHODS = ("grad_cam", "grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam", "score_cam", "ablation_cam",
               "eigen_cam", "eigen_grad_cam")


def layer_gradient(model: Module, batch: Any, target: Target, layer: str, method: str) -> tuple[Any, Any]:
    """The activation A of ``layer`` and dS/dA (both shaped like A) for a prepared batch (N, C, H, W).

    Call inside ``frozen(model)`` (frozen weights): nothing below the layer records a graph.
    """
    module = check_layer(model, layer, method)
    seen: list[Tensor] = []

    def cut(mod: Module, inputs: tuple, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(f"{method}: layer {layer!r} returns {type(output).__name__}, expected a Tensor")
        leaf = Tensor(output.data, requires_grad=True)  # the backward pass ends here
        seen.append(leaf)
        return leaf

    with module.register_forward_hook(cut):
        scores = model_scores(model, Tensor(batch), target, method)  # an objective may stop the pass early
    if not seen and is_objective(target):
        raise ValueError(f"{method}: the target is read before layer {layer!r} runs (an objective at an earlier "
                         f"layer): it does not depend on {layer!r}")
    if len(seen) != 1:
        raise ValueError(f"{method}: layer {layer!r} ran {len(seen)} times in one forward pass; "
                         "pick a layer that runs exactly once")
    activation = seen[0]
    if not scores.requires_grad:
        raise ValueError(f"{method}: the target score does not depend on layer {layer!r}")
    xp = backend.xp(batch)
    with backward_rule("gradient"):
        scores.backward(xp.ones(scores.shape, dtype=scores.dtype))
    grad = activation.grad if activation.grad is not None else xp.zeros_like(activation.data)
    return activation.data, grad


def channel_weights(method: str, activation: Any, grad: Any) -> Any:
    """The weights of the gradient-based variants: (N, K) per channel, or (N, K, h, w) per position.

    activation, grad: (N, K, h, w), A and dS/dA at the layer.
    """
    xp = backend.xp(activation)
    if method == "grad_cam":
        return grad.mean(axis=(2, 3))
    if method == "grad_cam_pp":
        # Chattopadhay et al. eq. 19 with exp(S) replaced by S (the higher derivatives of a ReLU
        # network's logit vanish), and 1e-6 in the denominator as pytorch-grad-cam
        g2 = grad * grad
        a = g2 / (2 * g2 + activation.sum(axis=(2, 3), keepdims=True) * g2 * grad + 1e-6)
        a = xp.where(grad != 0, a, 0)
        return (xp.maximum(grad, 0) * a).sum(axis=(2, 3))
    if method == "xgrad_cam":
        return (grad * activation / (activation.sum(axis=(2, 3), keepdims=True) + 1e-7)).sum(axis=(2, 3))
    if method == "hires_cam":
        return grad
    if method == "layer_cam":
        return xp.maximum(grad, 0)
    raise ValueError(f"channel_weights: not a gradient-based CAM method: {method!r}")


def principal_projection(a: Any) -> Any:
    """(N, K, h, w) -> (N, h, w): each image's map projected on the first principal direction of its
    positions (the rows of the centred (h*w, K) matrix), the Eigen-CAM map. The sign of a principal
    direction is arbitrary; we choose the one whose map correlates positively with sum_k A^k (the
    paper leaves it open; pytorch-grad-cam keeps whatever the SVD returns)."""
    xp = backend.xp(a)
    n, k, h, w = a.shape
    out = []
    for image in a:
        rows = image.reshape(k, h * w).T
        rows = rows - rows.mean(axis=0)
        _, _, vt = xp.linalg.svd(rows, full_matrices=False)
        projection = rows @ vt[0]
        if float((projection * image.sum(axis=0).reshape(-1)).sum()) < 0:
            projection = -projection
        out.append(projection.reshape(h, w))
    return xp.stack(out)


def _forward_layer(model: Module, batch: Any, layer: str, method: str) -> tuple[Any, Any]:
    """The layer's activation and the model's output for a batch (no graph)."""
    with inference(model), capture(model, layer) as acts:
        output = model(Tensor(batch))
    return acts[layer].data, output


def _score_weights(model: Module, batch: Any, target: Target, activation: Any, batch_size: int, score: str,
                   baseline: float, progress: bool | None, method: str) -> Any:
    """Score-CAM weights (N, K): each channel's upsampled, min-max scaled map masks the image."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    xp = backend.xp(batch)
    n, k = activation.shape[:2]
    weights = xp.zeros((n, k), dtype=batch.dtype)
    show = (n * k >= 256) if progress is None else progress
    with inference(model), tqdm(total=n * k, desc=method, unit="mask", disable=not show, leave=False) as bar:
        base = None
        if score == "probability":
            base_out = model(Tensor(xp.full_like(batch, baseline)))
            base = softmax(base_out).data
        for i in range(n):
            index = _target_index(target, i, n, method)
            for k0 in range(0, k, batch_size):
                maps = activation[i:i + 1, k0:k0 + batch_size].transpose(1, 0, 2, 3)  # (b, 1, h, w)
                up = interpolate(Tensor(maps), size=tuple(batch.shape[2:]), mode="bilinear",
                                 align_corners=True).data
                low = up.min(axis=(2, 3), keepdims=True)
                high = up.max(axis=(2, 3), keepdims=True)
                mask = (up - low) / (high - low + 1e-8)
                out = model(Tensor(batch[i:i + 1] * mask))
                if score == "probability":
                    weights[i, k0:k0 + batch_size] = softmax(out).data[:, index] - base[i, index]
                else:
                    weights[i, k0:k0 + batch_size] = out.data[:, index]
                bar.update(mask.shape[0])
    if score == "logit_softmax":  # pytorch-grad-cam: a softmax over the channels of the masked logits
        weights = xp.exp(weights - weights.max(axis=1, keepdims=True))
        weights = weights / weights.sum(axis=1, keepdims=True)
    return weights


def _ablation_weights(model: Module, batch: Any, target: Target, layer: str, activation: Any, output: Any,
                      batch_size: int, progress: bool | None, method: str) -> Any:
    """Ablation-CAM weights (N, K): (S - S_k) / S with S_k the score when channel k is zeroed.

    Only the layers above ``layer`` run once per channel: the layer's output for one image is
    replaced by ``batch_size`` copies, each with one channel zeroed, so the layers below run once.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    xp = backend.xp(batch)
    n, k = activation.shape[:2]
    scores = target_scores(output, target, method).data
    weights = xp.zeros((n, k), dtype=batch.dtype)
    show = (n * k >= 256) if progress is None else progress
    with inference(model), tqdm(total=n * k, desc=method, unit="channel", disable=not show, leave=False) as bar:
        for i in range(n):
            index = _target_index(target, i, n, method)
            for k0 in range(0, k, batch_size):
                b = min(batch_size, k - k0)

                def ablate(out: Tensor, i: int = i, k0: int = k0, b: int = b) -> Tensor:
                    copies = xp.repeat(activation[i:i + 1], b, axis=0)
                    copies[xp.arange(b), xp.arange(k0, k0 + b)] = 0
                    return Tensor(copies)

                with edit_output(model, layer, ablate):
                    ablated = model(Tensor(batch[i:i + 1])).data[:, index]
                weights[i, k0:k0 + b] = (scores[i] - ablated) / scores[i]
                bar.update(b)
    return weights


def _target_index(target: Target, i: int, n: int, method: str) -> int:
    if callable(target):
        raise TypeError(f"{method}: target must be a class index (or one per image) for this method, "
                        "not a callable")
    index = np.asarray(target)
    return int(index if index.ndim == 0 else index[i])


def _cam(model: Module, batch: Any, target: Target, layer: str, upsample: bool, relu: bool, method: str,
         variant: str = "grad_cam", batch_size: int = 32, score: str = "probability", baseline: float = 0.0,
         progress: bool | None = None) -> Any:
    """L = ReLU(sum_k w_k A^k) for the variant's weights (the module docstring's table), (N, h, w) or upsampled."""
    if variant in ("score_cam", "ablation_cam", "eigen_cam"):
        if is_objective(target):  # these re-score whole forward passes by the logits
            raise ValueError(f"{method}: target must be a class index or a callable on the logits for {variant}; "
                             "an objective at a layer works with the gradient-based variants")
        activation, output = _forward_layer(model, batch, layer, method)
        grad = None
        target_scores(output, target, method)  # checks the target even where the map does not use it
    else:
        activation, grad = layer_gradient(model, batch, target, layer, method)
    if activation.ndim != 4:
        raise ValueError(f"{method}: layer {layer!r} outputs shape {tuple(activation.shape)}; Grad-CAM needs a "
                         "convolutional layer with (N, C, H, W) output")
    xp = backend.xp(activation)
    n, k, h, w = activation.shape
    if variant in ("eigen_cam", "eigen_grad_cam"):
        cam = principal_projection(activation if variant == "eigen_cam" else grad * activation)
    else:
        if variant == "score_cam":
            weights = _score_weights(model, batch, target, activation, batch_size, score, baseline, progress, method)
        elif variant == "ablation_cam":
            weights = _ablation_weights(model, batch, target, layer, activation, output, batch_size, progress,
                                        method)
        else:
            weights = channel_weights(variant, activation, grad)
        if weights.ndim == 4:  # per position (HiRes-CAM, LayerCAM)
            cam = (weights * activation).sum(axis=1)
        else:  # sum_k alpha_k A^k
            cam = xp.matmul(weights[:, None, :], activation.reshape(n, k, h * w)).reshape(n, h, w)
    if relu:
        cam = xp.maximum(cam, 0)
    if upsample and (h, w) != tuple(batch.shape[2:]):
        with no_grad():
            cam = interpolate(Tensor(cam[:, None]), size=tuple(batch.shape[2:]), mode="bilinear",
                              align_corners=False).data[:, 0]
    return cam


def grad_cam(model: Module, x: Any, target: Target, layer: str, upsample: bool = True, relu: bool = True) -> Any:
    """Grad-CAM heat map of ``target`` at convolutional ``layer`` (a dotted name, e.g. "features.7").

    target: a class index (one per image), a callable ``f(logits)``, or an objective at a layer
    after ``layer`` (``objectives.unit("features.8", c, y, x)``: where in ``layer`` the evidence for
    that unit lies).

    x: (C, H, W) -> (H, W), or (N, C, H, W) -> (N, H, W); with ``upsample=False`` the map stays
    at the layer's resolution (h, w). Upsampling is bilinear with half-pixel centres
    (``align_corners=False``). ``relu=False`` keeps the negative evidence too.
    """
    batch, single = as_batch(x, model, "grad_cam")
    check_layer(model, layer, "grad_cam")
    with frozen(model):
        return unbatch(_cam(model, batch, target, layer, upsample, relu, "grad_cam"), single)


def guided_grad_cam(model: Module, x: Any, target: Target, layer: str) -> Any:
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map, shaped like x."""
    batch, single = as_batch(x, model, "guided_grad_cam")
    check_layer(model, layer, "guided_grad_cam")
    with frozen(model):
        cam = _cam(model, batch, target, layer, True, True, "guided_grad_cam")
        guided = batch_gradient(model, batch, target, "guided", "guided_grad_cam")
    return unbatch(guided * cam[:, None], single)


SCORES = ("probability", "logit_softmax")


def cam(model: Module, x: Any, target: Target, layer: str, method: str = "grad_cam", upsample: bool = True,
        relu: bool = True, batch_size: int = 32, score: str = "probability", baseline: float = 0.0,
        progress: bool | None = None) -> Any:
    """A CAM-family map of ``target`` at convolutional ``layer``: ``method`` is one of ``CAM_METHODS``.

    x: (C, H, W) -> (H, W), or (N, C, H, W) -> (N, H, W) (``upsample=False``: the layer's (h, w)).
    batch_size: forward passes per batch for score_cam and ablation_cam (their memory bound).
    score (score_cam only): "probability", the paper's increase in the class probability over the
    ``baseline`` image (a constant model input), or "logit_softmax", pytorch-grad-cam's softmax over
    the channels of the masked logits. progress: a tqdm bar (None: for long runs).
    """
    if not isinstance(method, str) or method not in CAM_METHODS:
        raise ValueError(f"cam: method must be one of {CAM_METHODS}, got {method!r}")
    if check_str(score, "cam", "score", SCORES) not in SCORES:
        raise ValueError(f"cam: score must be one of {SCORES}, got {score!r}")
    batch_size = check_positive_int(batch_size, method, "batch_size")
    baseline = check_float(baseline, method, "baseline")
    check_progress(progress, method)
    batch, single = as_batch(x, model, method)
    check_layer(model, layer, method)
    with frozen(model):
        return unbatch(_cam(model, batch, target, layer, upsample, relu, method, method, batch_size, score,
                            baseline, progress), single)


def grad_cam_pp(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """Grad-CAM++ (Chattopadhay et al. 2018): ``cam(..., method="grad_cam_pp")``."""
    return cam(model, x, target, layer, "grad_cam_pp", **kwargs)


def xgrad_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """XGrad-CAM (Fu et al. 2020): ``cam(..., method="xgrad_cam")``."""
    return cam(model, x, target, layer, "xgrad_cam", **kwargs)


def hires_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """HiRes-CAM (Draelos & Carin 2020): ``cam(..., method="hires_cam")``."""
    return cam(model, x, target, layer, "hires_cam", **kwargs)


def layer_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """LayerCAM (Jiang et al. 2021): ``cam(..., method="layer_cam")``."""
    return cam(model, x, target, layer, "layer_cam", **kwargs)


def score_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """Score-CAM (Wang et al. 2020): ``cam(..., method="score_cam")``."""
    return cam(model, x, target, layer, "score_cam", **kwargs)


def ablation_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``cam(..., method="ablation_cam")``."""
    return cam(model, x, target, layer, "ablation_cam", **kwargs)


def eigen_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """Eigen-CAM (Muhammad & Yeasin 2020): ``cam(..., method="eigen_cam")``; the target is not used."""
    return cam(model, x, target, layer, "eigen_cam", **kwargs)


def eigen_grad_cam(model: Module, x: Any, target: Target, layer: str, **kwargs: Any) -> Any:
    """Eigen-Grad-CAM: ``cam(..., method="eigen_grad_cam")``."""
    return cam(model, x, target, layer, "eigen_grad_cam", **kwargs)
