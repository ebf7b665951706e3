"""Grad-CAM and guided Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization").

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

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional.resize import interpolate
from minivis.nn.module import Module
from minivis.rules import backward_rule
from minivis.vis.attribution.gradients import batch_gradient
from minivis.vis.common import Target, as_batch, check_layer, frozen, is_objective, model_scores, unbatch


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


def _cam(model: Module, batch: Any, target: Target, layer: str, upsample: bool, relu: bool, method: str) -> Any:
    activation, grad = layer_gradient(model, batch, target, layer, method)
    if activation.ndim != 4:
        raise ValueError(f"{method}: layer {layer!r} outputs shape {tuple(activation.shape)}; Grad-CAM needs a "
                         "convolutional layer with (N, C, H, W) output")
    xp = backend.xp(activation)
    n, k, h, w = activation.shape
    weights = grad.mean(axis=(2, 3))  # alpha_k: (N, K)
    cam = xp.matmul(weights[:, None, :], activation.reshape(n, k, h * w)).reshape(n, h, w)  # sum_k alpha_k A^k
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
