"""Textures and styles by optimisation: Gram-matrix texture synthesis and neural style transfer.

Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks" (NeurIPS 2015), and
"Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016). With ``F_l(x)`` the feature
maps of layer ``l`` and ``G_l(x) = F_l F_l^T / M_l`` their Gram matrix (``mv.F.gram_matrix``):

    style loss    L_s(x) = sum_l w_l ||G_l(x) - A_l||_F^2 / ||A_l||_F^2,      A_l = G_l(style image)
    content loss  L_c(x) = ||F_c(x) - P||^2 / ||P||^2,                       P = F_c(content image)
    texture       x* = argmin_x L_s(x)                                        (from noise, any size)
    style transfer x* = argmin_x a L_c(x) + b L_s(x) + t TV(x) / (C H W)

Each term is divided by its target's squared norm, so 1 means "as far as the all-zero code" and
the weights mean the same for every layer and network. Gatys et al. divide layer ``l`` by
``4 N_l^2 M_l^2`` instead; the two differ by one constant per layer, which ``w_l`` absorbs.

Layers are named by their ``state_dict`` prefix; a model may carry defaults as ``style_layers``
and ``content_layer`` (VGG: relu1_1 ... relu5_1 and relu4_2, as Gatys et al.). Images are model
inputs (C, H, W), e.g. ``style_input(model, photo)``. The optimisation is ``optimize``'s loop:
L-BFGS (SciPy) by default, Adam with ``optimizer="adam"``, pixels or a Fourier spectrum
(``param="fft"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad, tensor
from minivis.functional.gram import gram_matrix
from minivis.nn.hooks import forward_to
from minivis.nn.module import Module
from minivis.validate import check_array_size, check_float, check_int, check_seed, check_str, check_tensor, int_pair
from minivis.vis.common import as_batch, check_layer, frozen
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis.objectives import Objective
from minivis.vis.synthesis.optimize import SynthesisResult, check_steps_lr, optimize
from minivis.vis.synthesis.parameterization import PARAMETERISATIONS, make_param

STYLE_OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")

# Rec. 601 luma and the YIQ chroma axes: luminance-only transfer keeps I and Q of the content.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


# ----------------------------------------------------------------------------- layers and images
def layer_weights(model: Module, layers: Any, method: str) -> dict[str, float]:
    """``layers`` (names, or ``{name: weight}``; None: the model's ``style_layers``) as ``{name: w_l}``.

    A list gives every layer the weight 1 / L. Weights must be >= 0 and not all zero.
    """
    if layers is None:
        layers = getattr(model, "style_layers", None)
        if layers is None:
            raise ValueError(f"{method}: {type(model).__name__} has no default style_layers; give layers=[...] "
                             f"(names from model.layer_names())")
    if isinstance(layers, str) or not isinstance(layers, Mapping | Sequence) or len(layers) == 0:
        raise TypeError(f"{method}: layers must be a non-empty list of layer names or a {{name: weight}} dict, "
                        f"got {layers!r}")
    if isinstance(layers, Mapping):
        weights = {name: check_float(w, method, f"the weight of layer {name!r}", low=0.0)
                   for name, w in layers.items()}
    else:
        weights = {name: 1.0 / len(layers) for name in layers}
    for name in weights:
        check_layer(model, name, method)
    if not any(weights.values()):
        raise ValueError(f"{method}: the layer weights are all zero: {weights}")
    return weights


def content_layer_of(model: Module, layer: str | None, method: str) -> str:
    layer = getattr(model, "content_layer", None) if layer is None else layer
    if layer is None:
        raise ValueError(f"{method}: {type(model).__name__} has no default content_layer; give content_layer=")
    check_layer(model, layer, method)
    return layer


def style_input(model: Module, image: Any, size: int | None = None) -> np.ndarray:
    """An HxW[xC] photo (uint8, or float in [0, 1]) -> the model input (C, H', W'), float32.

    ``size``: the shorter side after resizing (None keeps the photo's size); no crop, so the
    aspect ratio is kept (textures and styles need no fixed input size).
    """
    from minivis.data.transforms import resize_shorter_side, to_float  # noqa: PLC0415

    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.dtype.kind not in "uif" or array.size == 0:
        raise ValueError(f"style_input: image must be an HxW or HxWxC numeric image, got shape {array.shape} "
                         f"dtype {array.dtype}")
    img = to_float(array)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = getattr(model, "in_channels", img.shape[2])
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=2)
    if img.shape[2] != channels:
        raise ValueError(f"style_input: image has {img.shape[2]} channels, the model expects {channels}")
    if size is not None:
        img = resize_shorter_side(img, check_int(size, "style_input", "size", 2))
    return to_input(model, np.ascontiguousarray(img.transpose(2, 0, 1)))


def _mean_std(model: Module, channels: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.broadcast_to(np.asarray(getattr(model, "mean", (0.0,)), np.float64).reshape(-1), (channels,))
    std = np.broadcast_to(np.asarray(getattr(model, "std", (1.0,)), np.float64).reshape(-1), (channels,))
    return mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)


def to_input(model: Module, pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1], (C, H, W) or (N, C, H, W) -> model input ``(p - mean) / std`` (float32)."""
    mean, std = _mean_std(model, pixels.shape[-3])
    return ((pixels - mean) / std).astype(np.float32)


def to_pixels(model: Module, x: Any) -> np.ndarray:
    """Model input (C, H, W) or (N, C, H, W) -> pixels ``x std + mean`` (not clipped), float64, on the host."""
    data = backend.to_device(x.data if isinstance(x, Tensor) else x, "cpu").astype(np.float64)
    mean, std = _mean_std(model, data.shape[-3])
    return data * std + mean


# ----------------------------------------------------------------------------- the losses
def style_loss(features: Mapping[str, Tensor], targets: Mapping[str, Any], weights: Mapping[str, float]) -> Tensor:
    """``sum_l w_l ||G_l - A_l||_F^2 / ||A_l||_F^2`` per image.

    features: ``{layer: (N, C_l, H_l, W_l)}`` activations; targets: ``{layer: A_l}``, one Gram matrix
    (C_l, C_l) for every image or one per image (N, C_l, C_l), constants; weights: ``{layer: w_l}``
    (layers weighted 0 are skipped, at least one must not be). Returns (N,).
    """
    op = "style_loss"
    for name, value, holds in (("features", features, "Tensor (N, C, H, W)"),
                               ("targets", targets, "Gram matrix array (C, C) or (N, C, C)"),
                               ("weights", weights, "weight (float)")):
        if not isinstance(value, Mapping):
            raise TypeError(f"{op}: {name} must be a dict {{layer: {holds}}}, got {type(value).__name__}")
    total = None
    for layer, w in weights.items():
        w = check_float(w, op, f"weights[{layer!r}]")
        if not w:
            continue
        for name, table in (("features", features), ("targets", targets)):
            if layer not in table:
                raise ValueError(f"{op}: weights name layer {layer!r}, which {name} lacks (it has {list(table)})")
        f = check_tensor(features[layer], op, f"features[{layer!r}]", ndim=4)
        n, c = f.shape[:2]
        a = _constant(targets[layer], f, op, f"targets[{layer!r}]", (c, c), "(C, C) or (N, C, C)")
        a = a.reshape(-1, *a.shape[-2:])
        xp = backend.xp(a)
        norms = (a * a).sum(axis=(1, 2))
        if bool(xp.any(norms == 0)):
            raise ValueError(f"style_loss: the style's Gram matrix at layer {layer!r} is all zeros (the layer "
                             f"never fires on the style image); choose another layer")
        diff = gram_matrix(f) - a
        term = (diff * diff).sum(axis=(1, 2)) * (w / norms).astype(a.dtype)
        total = term if total is None else total + term
    if total is None:
        raise ValueError(f"{op}: weights must give at least one layer a nonzero weight, got {dict(weights)}")
    return total


def content_loss(feature: Tensor, target: Any) -> Tensor:
    """``||F - P||^2 / ||P||^2`` per image: feature (N, C, H, W); target P (C, H, W), or one per image
    (N, C, H, W), a constant. Returns (N,)."""
    feature = check_tensor(feature, "content_loss", "feature", ndim=4)
    target = _constant(target, feature, "content_loss", "target", feature.shape[1:], "(C, H, W) or (N, C, H, W)")
    target = target.reshape(-1, *target.shape[-3:])
    xp = backend.xp(target)
    norms = (target * target).sum(axis=(1, 2, 3))
    if bool(xp.any(norms == 0)):
        raise ValueError("content_loss: the content's code is all zeros at this layer; choose another layer")
    diff = feature - target
    return (diff * diff).sum(axis=(1, 2, 3)) * (1.0 / norms).astype(target.dtype)


def _constant(value: Any, feature: Tensor, op: str, name: str, shape: tuple[int, ...], layout: str) -> Any:
    """A loss target as a float array on ``feature``'s device: one ``shape`` for every image, or one per image
    (a leading axis of 1 or N); refused by ``name`` otherwise, before array arithmetic fails on it unnamed."""
    data = value.data if isinstance(value, Tensor) else value
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)):
        raise TypeError(f"{op}: {name} must be an array or Tensor {layout}, got {type(value).__name__}")
    if data.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a float array, got dtype {data.dtype}")
    n = feature.shape[0]
    if tuple(data.shape[-len(shape):]) != tuple(shape) or data.ndim not in (len(shape), len(shape) + 1) or (
            data.ndim > len(shape) and data.shape[0] not in (1, n)):
        raise ValueError(f"{op}: {name} must be {layout} with {tuple(shape)} as in its features, for a batch of "
                         f"{n}; got shape {tuple(data.shape)}")
    if backend.device_of(data) != feature.device:
        raise ValueError(f"{op}: {name} is on the {backend.device_of(data)}, its features on the {feature.device}")
    return data


def gram_targets(model: Module, image: Any, layers: Sequence[str], method: str = "gram_targets") -> dict[str, Any]:
    """``{layer: G_l(image)}`` (C_l, C_l) for one model input image (C, H, W)."""
    x, single = as_batch(image, model, method, "image")
    if not single:
        raise ValueError(f"{method}: give one style image (C, H, W), got a batch of shape {tuple(x.shape)}")
    if not isinstance(layers, list | tuple) or not all(isinstance(name, str) for name in layers):
        raise TypeError(f"{method}: layers must be a list of layer names (str), got {layers!r}")
    acts = _features(model, x, layers)
    _check_feature_maps(acts, method, "style layer")
    with no_grad():
        return {name: gram_matrix(acts[name]).data[0].copy() for name in layers}


def _check_feature_maps(acts: Mapping[str, Tensor], method: str, what: str) -> None:
    """Gram matrices and the content loss read (N, C, H, W) maps: refuse a Linear or Flatten layer by
    name here, not by an AxisError or gram_matrix's shape error deep in the loss."""
    for name, act in acts.items():
        if act.ndim != 4:
            raise ValueError(f"{method}: {what} {name!r} must give feature maps (N, C, H, W), got shape "
                             f"{act.shape}; choose a convolutional layer")


def _features(model: Module, x: Any, layers: Sequence[str]) -> dict[str, Tensor]:
    """The activations at ``layers`` for the batch ``x``; the forward pass stops after the deepest one."""
    grabbed: dict[str, Tensor] = {}

    def read(acts: dict[str, Tensor]) -> Tensor:
        grabbed.update(acts)
        return tensor(np.zeros(x.shape[0]))

    with frozen(model), no_grad():
        Objective(frozenset(layers), read, "features")(model, tensor(x))
    return grabbed


def style_objective(targets: Mapping[str, Any], weights: Mapping[str, float]) -> Objective:
    """The style loss as an ``Objective`` (runs the model only up to the deepest style layer)."""
    return Objective(frozenset(weights), lambda acts: style_loss(acts, targets, weights), "style_loss")


def content_objective(layer: str, target: Any) -> Objective:
    """The content loss at ``layer`` as an ``Objective``."""
    return Objective(frozenset({layer}), lambda acts: content_loss(acts[layer], target), f"content_loss({layer!r})")


def tv_penalty(x: Tensor) -> Tensor:
    """``TV^2(x) / (C H W)``: the mean squared difference between neighbouring pixels, per image."""
    return reg.tv(x, 2.0) * (1.0 / float(np.prod(x.shape[1:])))


# ----------------------------------------------------------------------------- the methods
def _check_common(steps: Any, lr: Any, optimizer: Any, param: Any, method: str) -> tuple[int, float]:
    steps, lr = check_steps_lr(steps, lr, method)
    if check_str(optimizer, method, "optimizer", STYLE_OPTIMIZERS) not in STYLE_OPTIMIZERS:
        raise ValueError(f"{method}: optimizer must be one of {STYLE_OPTIMIZERS}, got {optimizer!r}")
    if check_str(param, method, "param", PARAMETERISATIONS) not in PARAMETERISATIONS:
        raise ValueError(f"{method}: param must be one of {PARAMETERISATIONS}, got {param!r}")
    return steps, lr


def _noise(model: Module, shape: tuple[int, ...], dtype: Any, device: str, seed: int, method: str) -> Any:
    """Model input of grey pixels plus small uniform noise (0.5 +- 0.1), as Gatys et al. start."""
    rng = np.random.default_rng(check_seed(seed, method))
    pixels = 0.5 + rng.uniform(-0.1, 0.1, shape)
    return backend.to_device(to_input(model, pixels).astype(dtype), device)


def _run(model: Module, objective: Objective, x0: Any, steps: int, lr: float, optimizer: str, param: str,
         penalties: Sequence, seed: int, progress: bool, desc: str) -> SynthesisResult:
    channels = x0.shape[1]
    mean, std = _mean_std(model, channels)
    image_param = make_param(param, x0, mean.ravel(), std.ravel(), method=desc)
    result = optimize(model, objective, image_param, steps=steps, lr=lr, optimizer=optimizer, penalties=penalties,
                      maximize=False, seed=seed, progress=progress, desc=desc, single=True)
    if result.image is None:  # a model without deprocess: its mean and std (default 0 and 1) say how
        result.image = np.clip(to_pixels(model, result.x).transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)
    return result


def texture_synthesis(model: Module, sample: Any, size: int | tuple[int, int] | None = None, layers: Any = None,
                      steps: int = 200, optimizer: str = "lbfgs", lr: float = 0.05, param: str = "pixel",
                      tv_weight: float = 0.0, seed: int = 0, progress: bool = True) -> SynthesisResult:
    """A new image with the Gram matrices of ``sample`` at ``layers`` (Gatys et al. 2015).

    sample: the texture as a model input (C, H, W) (``style_input(model, photo)``).
    size: (H, W) of the output (an int for a square), independent of the sample's size; default the sample's.
    layers: names (equal weights) or ``{name: weight}``; default ``model.style_layers``.
    optimizer: "lbfgs" (``steps`` iterations) or "adam" (``steps`` steps of ``lr``). param: "pixel" or "fft".

    Returns a ``SynthesisResult`` for one image: ``.x`` (C, H, W), ``.image`` HxWxC in [0, 1],
    ``.history`` the style loss at each step, ``.info['style_loss']`` the final one.
    """
    method = "texture_synthesis"
    x, single = as_batch(sample, model, method, "sample")
    if not single:
        raise ValueError(f"{method}: give one sample (C, H, W), got a batch of shape {tuple(x.shape)}")
    weights = layer_weights(model, layers, method)
    steps, lr = _check_common(steps, lr, optimizer, param, method)
    h, w = _size(size, x.shape[2:], method)
    check_array_size((1, x.shape[1], h, w), x.dtype, method, "output")
    tv_weight = check_float(tv_weight, method, "tv_weight", low=0.0)
    targets = gram_targets(model, x[0], list(weights), method)
    objective = style_objective(targets, weights)
    x0 = _noise(model, (1, x.shape[1], h, w), x.dtype, backend.device_of(x), seed, method)
    result = _run(model, objective, x0, steps, lr, optimizer, param, [(tv_weight, tv_penalty)], seed, progress,
                  method)
    result.info.update(layers=weights, style_loss=float(result.history[-1]),
                       initial_style_loss=float(result.history[0]))
    return result


def _size(size: Any, default: tuple[int, int], method: str) -> tuple[int, int]:
    if size is None:
        return int(default[0]), int(default[1])
    return int_pair(size, method, "size", minimum=8)


def style_transfer(model: Module, content: Any, style: Any, content_layer: str | None = None,
                   style_layers: Any = None, content_weight: float = 1.0, style_weight: float = 10.0,
                   tv_weight: float = 1.0, init: str = "content", preserve_color: bool = False,
                   steps: int = 200, optimizer: str = "lbfgs", lr: float = 0.05, param: str = "pixel",
                   seed: int = 0, progress: bool = True) -> SynthesisResult:
    """The content of one image painted in the style of another (Gatys et al. 2016).

    content, style: model inputs (C, H, W) of any sizes (``style_input(model, photo, size)``).
    Minimises ``content_weight L_c + style_weight L_s + tv_weight TV / (C H W)`` (module docstring);
    the ratio of the two weights trades the photo's layout against the painting's texture.
    init: "content" (start from the photo: converges faster, keeps more of it) or "noise".
    preserve_color: luminance-only transfer (Gatys et al. 2017, "Controlling Perceptual Factors"):
    the style's luminance is matched to the content's mean and spread, only luminance is
    transferred (grey images), and the result's luminance is combined with the content's colours (YIQ).

    Returns a ``SynthesisResult`` (``.x``, ``.image``, ``.history`` = the weighted objective) with
    ``.info['content_loss']`` and ``.info['style_loss']`` of the result, unweighted.
    """
    method = "style_transfer"
    xc, single_c = as_batch(content, model, method, "content")
    xs, single_s = as_batch(style, model, method, "style")
    if not (single_c and single_s):
        raise ValueError(f"{method}: give one content and one style image (C, H, W), got shapes "
                         f"{tuple(xc.shape)} and {tuple(xs.shape)}")
    weights = layer_weights(model, style_layers, method)
    layer = content_layer_of(model, content_layer, method)
    steps, lr = _check_common(steps, lr, optimizer, param, method)
    content_weight = check_float(content_weight, method, "content_weight", low=0.0)
    style_weight = check_float(style_weight, method, "style_weight", low=0.0)
    tv_weight = check_float(tv_weight, method, "tv_weight", low=0.0)
    if check_str(init, method, "init", INITS) not in INITS:
        raise ValueError(f"{method}: init must be one of {INITS}, got {init!r}")
    if not isinstance(preserve_color, bool):
        raise TypeError(f"{method}: preserve_color must be True or False, got {preserve_color!r}")
    if preserve_color and xc.shape[1] != 3:
        raise ValueError(f"{method}: preserve_color needs RGB images, got {xc.shape[1]} channels")

    device, dtype = backend.device_of(xc), xc.dtype
    content_pixels = to_pixels(model, xc[0])
    if preserve_color:
        xc, xs = _luminance_inputs(model, content_pixels, to_pixels(model, xs[0]), dtype, device)
    targets = gram_targets(model, xs[0], list(weights), method)
    with frozen(model), no_grad():
        code = forward_to(model, tensor(xc), layer)
    _check_feature_maps({layer: code}, method, "content_layer")
    content_target = code.data.copy()
    c_obj, s_obj = content_objective(layer, content_target), style_objective(targets, weights)
    objective = c_obj * content_weight + s_obj * style_weight
    x0 = xc.copy() if init == "content" else _noise(model, tuple(xc.shape), dtype, device, seed, method)
    result = _run(model, objective, x0, steps, lr, optimizer, param, [(tv_weight, tv_penalty)], seed, progress,
                  method)
    with frozen(model), no_grad():
        final = tensor(result.x[None])
        result.info["content_loss"] = float(c_obj(model, final).item())
        result.info["style_loss"] = float(s_obj(model, final).item())
    result.info.update(content_layer=layer, style_layers=weights, content_weight=content_weight,
                       style_weight=style_weight, tv_weight=tv_weight, init=init, preserve_color=preserve_color)
    if preserve_color:
        pixels = _recolour(to_pixels(model, result.x), content_pixels)
        result.x = backend.to_device(to_input(model, pixels).astype(dtype), device)
        result.image = np.clip(pixels.transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)
    return result


def rgb_to_yiq(pixels: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB -> (3, H, W) YIQ (Y: luminance, I and Q: colour)."""
    return np.einsum("ij,jhw->ihw", RGB_TO_YIQ, pixels)


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """(3, H, W) YIQ -> (3, H, W) RGB (the exact inverse of ``rgb_to_yiq``)."""
    return np.einsum("ij,jhw->ihw", YIQ_TO_RGB, yiq)


def _luminance_inputs(model: Module, content: np.ndarray, style: np.ndarray, dtype: Any,
                      device: str) -> tuple[Any, Any]:
    """Grey model inputs: the content's luminance, and the style's matched to its mean and std."""
    yc, ys = rgb_to_yiq(content)[0], rgb_to_yiq(style)[0]
    ys = (ys - ys.mean()) * (yc.std() / max(ys.std(), 1e-8)) + yc.mean()
    put = lambda y: backend.to_device(to_input(model, np.repeat(y[None, None], 3, axis=1)).astype(dtype), device)  # noqa: E731
    return put(yc), put(ys)


def _recolour(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The result's luminance with the content's I and Q."""
    yiq = rgb_to_yiq(content)
    yiq[0] = rgb_to_yiq(result)[0]
    return yiq_to_rgb(yiq)
