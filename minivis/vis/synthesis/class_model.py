"""Class-model visualisation: the image a network finds most typical of a class.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps" (ICLR workshop 2014), with the weights fixed, solve

    I* = argmax_I  S_c(I) - lambda ||I||_2^2

by gradient ascent from the zero image, where S_c is the class *logit* (the softmax would also
reward pushing the other classes down). The gradient-ascent step is

    I <- I + eta (dS_c/dI - 2 lambda I).

Yosinski, Clune, Nguyen, Fuchs & Lipson, "Understanding Neural Networks Through Deep
Visualization" (ICML workshop 2015) add four more priors, each switchable here: Gaussian blur
every k steps (``blur_every``, ``blur_sigma``), zeroing pixels with a small norm
(``clip_norm_pct``) or a small contribution (``clip_contrib_pct``), and random jitter
(``jitter``). Beyond them (Olah et al., "Feature Visualization", Distill 2017): a decorrelated,
1/f-scaled Fourier parameterisation (``param="fft"``) and transformation robustness
(``transforms="standard"`` or any ``minivis.vis.synthesis.transforms`` transform).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_float, check_seed, check_str
from minivis.vis.common import model_device_dtype, target_scores
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis import transforms as tr
from minivis.vis.synthesis.objectives import LOGITS, Objective, as_objective
from minivis.vis.synthesis.optimize import SynthesisResult, check_steps_lr, optimize
from minivis.vis.synthesis.parameterization import PARAMETERISATIONS, FFTImage, make_param

INITS = ("zero", "mean", "noise")


def _class_count(model: Module) -> int | None:
    counter = getattr(model, "num_outputs", None)
    try:
        return int(counter()) if callable(counter) else None
    except (IndexError, AttributeError):  # a model without a final Linear layer
        return None


def class_objective(model: Module, target: Any, method: str = "class_model") -> tuple[Objective, int, bool]:
    """(objective, batch size, single) for a class index, a list of indices (one image each) or an Objective."""
    if isinstance(target, Objective):
        return target, 1, True
    classes = _class_count(model)
    if isinstance(target, int | np.integer) and not isinstance(target, bool):
        if classes is not None and not 0 <= target < classes:
            raise ValueError(f"{method}: target class {int(target)} is out of range for {classes} classes "
                             f"(0..{classes - 1})")
        return as_objective(int(target)), 1, True
    if isinstance(target, list | tuple | np.ndarray) and len(target) > 0:
        index = np.asarray(target)
        if index.dtype.kind not in "iu" or index.ndim != 1:
            raise TypeError(f"{method}: target must be a class index, a list of indices or an Objective, "
                            f"got {target!r}")
        if classes is not None and (index.min() < 0 or index.max() >= classes):
            bad = int(index.max() if index.max() >= classes else index.min())
            raise ValueError(f"{method}: target class {bad} is out of range for {classes} classes (0..{classes - 1})")
        read = lambda acts: target_scores(acts[LOGITS], index, method)  # noqa: E731
        return Objective(frozenset({LOGITS}), read, f"class_logits({index.tolist()})"), len(index), False
    raise TypeError(f"{method}: target must be a class index, a list of indices or an Objective, got {target!r}")


def initial_image(model: Module, shape: tuple[int, int, int, int], init: Any, rng: np.random.Generator,
                  noise_std: float = 0.1, method: str = "class_model") -> Any:
    """The starting model input (N, C, H, W).

    "mean": all zeros, i.e. the training set's mean colour; Simonyan et al.'s "zero image" (their
    inputs had the mean subtracted). "zero": a black image, pixels 0, i.e. ``-mean / std``.
    "noise": the mean colour plus Gaussian noise of std ``noise_std`` (in model-input units).
    An array (C, H, W) or (N, C, H, W) of model inputs: start there (one image is used for every
    target), e.g. the mean image of a cluster of training images (Nguyen et al.'s multifaceted
    visualisation).
    """
    device, dtype = model_device_dtype(model)
    if not isinstance(init, str):
        data = init.data if isinstance(init, Tensor) else init
        if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)) or data.dtype.kind not in "fiu":
            raise TypeError(f"{method}: init must be one of {INITS} or a numeric array of model inputs, "
                            f"got {type(init).__name__}")
        start = data[None] if data.ndim == 3 else data
        if start.ndim != 4 or start.shape[1:] != shape[1:] or start.shape[0] not in (1, shape[0]):
            raise ValueError(f"{method}: an init image must be (C, H, W) = {shape[1:]} or (N, C, H, W) with N = "
                             f"{shape[0]} (one per target), got shape {tuple(data.shape)}")
        start = backend.to_device(start, device).astype(dtype)
        if not bool(backend.xp(start).isfinite(start).all()):
            raise ValueError(f"{method}: the init image contains NaN or infinite values")
        return backend.xp(start).ascontiguousarray(backend.xp(start).broadcast_to(start, shape))
    if check_str(init, method, "init", INITS) not in INITS:
        raise ValueError(f"{method}: init must be one of {INITS} or an array of model inputs, got {init!r}")
    x = np.zeros(shape, dtype=dtype)
    if init == "zero":
        low, _ = reg.valid_range(getattr(model, "mean", (0.0,)), getattr(model, "std", (1.0,)), dtype)
        x = x + low
    elif init == "noise":
        x = (rng.standard_normal(shape) * noise_std).astype(dtype)
    return backend.to_device(np.ascontiguousarray(x, dtype=dtype), device)


def _size(model: Module, size: Any, method: str) -> tuple[int, int]:
    if size is None:
        size = getattr(model, "input_size", None)
        if size is None:
            raise ValueError(f"{method}: give size=(H, W); the model has no input_size")
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{method}: size must be an int or (H, W), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{method}: size must be positive, got {size!r}")
    return int(pair[0]), int(pair[1])


def yosinski_hooks(blur_every: int, blur_sigma: float, clip_norm_pct: float, clip_contrib_pct: float,
                   method: str = "class_model") -> list[Callable]:
    """The array-level regularisers of Yosinski et al. as optimisation hooks (step, x, dJ/dx) -> x."""
    if not isinstance(blur_every, int | np.integer) or isinstance(blur_every, bool) or blur_every < 0:
        raise ValueError(f"{method}: blur_every must be an int >= 0 (0: no blur), got {blur_every!r}")
    blur_sigma = check_float(blur_sigma, method, "blur_sigma", low=0.0)
    clip_norm_pct = check_float(clip_norm_pct, method, "clip_norm_pct", low=0.0, high=100.0)
    clip_contrib_pct = check_float(clip_contrib_pct, method, "clip_contrib_pct", low=0.0, high=100.0)
    hooks = []
    if blur_every and blur_sigma > 0:
        hooks.append(lambda step, x, g: reg.gaussian_blur(x, blur_sigma) if (step + 1) % blur_every == 0 else None)
    if clip_norm_pct > 0:
        hooks.append(lambda step, x, g: reg.clip_small_norm(x, clip_norm_pct))
    if clip_contrib_pct > 0:
        hooks.append(lambda step, x, g: reg.clip_small_contribution(x, g, clip_contrib_pct))
    return hooks


def robust_transforms(jitter: int, transforms: Any, size: tuple[int, int], method: str) -> Callable | None:
    """Yosinski's jitter (a random roll) followed by ``transforms`` ("standard", a list, a callable or None).

    When ``transforms`` are given, the chain ends by resizing back to ``size``, so models that take
    one input size only (``fashion_cnn``) work too. ``jitter`` must be less than the image's larger
    side: a longer roll only wraps around (and past an int64 NumPy cannot draw it).
    """
    if not isinstance(jitter, int | np.integer) or isinstance(jitter, bool):
        raise TypeError(f"{method}: jitter must be an int >= 0 (pixels), got {jitter!r}")
    if not 0 <= jitter < max(size):
        raise ValueError(f"{method}: jitter must be an int >= 0 (pixels) and less than the {size[0]}x{size[1]} "
                         f"image's size (at most {max(size) - 1}; a longer roll only wraps around), got {jitter}")
    chain = [tr.RandomRoll(int(jitter))] if jitter else []
    if isinstance(transforms, str):
        if transforms != "standard":
            raise ValueError(f"{method}: transforms must be 'standard', a list of transforms, a callable or None, "
                             f"got {transforms!r}")
        chain.append(tr.standard_transforms(scale_frac=min(1.0, max(size) / 224)))
    elif isinstance(transforms, Sequence):
        chain.extend(transforms)
    elif callable(transforms):
        chain.append(transforms)
    elif transforms is not None:
        raise TypeError(f"{method}: transforms must be 'standard', a list of transforms, a callable or None, "
                        f"got {transforms!r}")
    if transforms is not None:
        chain.append(tr.ResizeTo(size))
    return tr.Compose(chain) if chain else None


def class_model(model: Module, target: Any, steps: int = 200, lr: float = 0.05, l2: float = 1e-4,
                blur_every: int = 0, blur_sigma: float = 0.5, clip_norm_pct: float = 0.0,
                clip_contrib_pct: float = 0.0, jitter: int = 0, param: str = "pixel", transforms: Any = None,
                optimizer: str = "adam", init: Any = "mean", size: Any = None, seed: int = 0,
                progress: bool = True) -> SynthesisResult:
    """The image that maximises class ``target``'s logit, regularised.

    model: a classifier (its ``deprocess`` turns the result into a viewable image).
    target: a class index (one image), a list of indices (one image per class, optimised
        together) or an ``Objective`` (``minivis.vis.synthesis.objectives``, e.g. a channel of a layer).
    steps, lr, optimizer: the gradient-ascent loop (``minivis.vis.synthesis.optimize``); ``optimizer="sgd"``
        is the textbook update ``I += lr * (dS_c/dI - 2 l2 I)``.
    l2: lambda in ``- lambda ||I||^2`` (Simonyan et al.; Yosinski et al.'s L2 decay).
    blur_every, blur_sigma: Gaussian blur of std ``blur_sigma`` pixels every ``blur_every`` steps (0: off).
    clip_norm_pct, clip_contrib_pct: zero the pixels below this percentile of colour norm /
        of contribution ``|sum_c x dJ/dx|`` after every step (0: off).
    jitter: a random roll by up to this many pixels before each forward pass (0: off; less than
        the image's size).
    param: "pixel" (optimise the model input) or "fft" (Lucid's decorrelated Fourier image).
    transforms: None, "standard" (Lucid's pad/jitter/scale/rotate chain) or your own transforms.
    init: "mean" (zero model input: the mean colour, Simonyan's start), "zero" (black), "noise", or
        an array of model inputs (C, H, W) or (N, C, H, W), one per target, to start from.
    size: (H, W) or an int; default the model's ``input_size``.

    Returns a ``SynthesisResult``: ``.image`` (HxWxC in [0, 1] for one target, NxHxWxC for a list),
    ``.x`` (the model input), ``.history`` (the class logit at each step), ``.total`` (logit - l2 term).
    """
    method = "class_model"
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    steps, lr = check_steps_lr(steps, lr, method)
    l2 = check_float(l2, method, "l2", low=0.0)
    if check_str(param, method, "param", PARAMETERISATIONS) not in PARAMETERISATIONS:
        raise ValueError(f"{method}: param must be one of {PARAMETERISATIONS}, got {param!r}")
    objective, n, single = class_objective(model, target, method)
    h, w = _size(model, size, method)
    channels = int(getattr(model, "in_channels", 3))
    hooks = yosinski_hooks(blur_every, blur_sigma, clip_norm_pct, clip_contrib_pct, method)
    chain = robust_transforms(jitter, transforms, (h, w), method)
    rng = np.random.default_rng(check_seed(seed, method))
    x0 = initial_image(model, (n, channels, h, w), init, rng, method=method)
    image_param = make_param(param, x0, getattr(model, "mean", 0.0), getattr(model, "std", 1.0), method)
    if param == "fft" and isinstance(init, str) and init == "noise":
        assert isinstance(image_param, FFTImage)
        image_param.randomize(rng)
    penalties = [(l2, reg.l2)] if l2 > 0 else []
    return optimize(model, objective, image_param, steps=steps, lr=lr, optimizer=optimizer, transforms=chain,
                    penalties=penalties, hooks=hooks, seed=seed, progress=progress, desc=method, single=single)
