"""Adversarial and fooling images: small or meaningless inputs that the network is sure about.

* ``fgsm``: the fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and
  Harnessing Adversarial Examples", ICLR 2015). Near x the loss is about linear,
  ``L(x + d) ~ L(x) + g . d`` with ``g = dL/dx``; the L-infinity ball ``|d_i| <= eps`` is
  maximised at ``d = eps sign(g)``, which raises the loss by ``eps ||g||_1``: in D dimensions a
  change invisible per pixel adds up to ``eps * D * mean|g|``. So ``x_adv = clip(x + eps sign(g))``.
* ``targeted_attack``: projected gradient descent (Kurakin et al. 2017; Madry et al. 2018) on
  the cross-entropy of the *target* class: ``x <- proj(x - alpha sign(dCE/dx))``, where ``proj``
  clips into the L-infinity ball of radius eps around the original and into the valid pixel
  range, until ``p(target) >= confidence``.
* ``fooling_image``: no original at all (Nguyen, Yosinski & Clune, "Deep Neural Networks are
  Easily Fooled: High Confidence Predictions for Unrecognizable Images", CVPR 2015): ascend
  ``log softmax(model(x))[target]`` from noise or a black image, with pixels kept valid, until
  the network is ``confidence`` sure (the lecture's ">99.6% confidences"), with the targeted
  attack's signed steps and no ball around a photo.

``epsilon`` and ``step_size`` are in *pixel* units (the [0, 1] image scale): one input unit is
``std`` pixels, so the input-space radius is ``epsilon / std`` per channel. Valid inputs are
``[(0 - mean)/std, (1 - mean)/std]`` per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional import cross_entropy, softmax
from minivis.nn.module import Module
from minivis.validate import check_bool, check_float, check_seed, check_str
from minivis.vis.common import as_batch, frozen
from minivis.vis.synthesis import regularizers as reg
from minivis.vis.synthesis.class_model import _class_count, initial_image
from minivis.vis.synthesis.optimize import check_steps_lr


@dataclass
class AdversarialResult:
    """What an attack returns (arrays follow the input: (C, H, W) for one image, else (N, C, H, W)).

    x: the adversarial model input. image: ``model.deprocess(x)`` (HxWxC in [0, 1]) or None.
    probs: softmax of the model on ``x``, (K,) or (N, K). prediction: the argmax class(es).
    target_prob: probability of the attacked class (the target, or the true label for FGSM).
    linf: ``max |x_adv - x|`` in pixel units per image (for fooling images: None).
    history: the attacked class's probability at each step (steps,) or (steps, N).
    steps: steps taken (per image for the iterative attacks).
    """

    x: Any
    image: np.ndarray | None
    probs: np.ndarray
    prediction: Any
    target_prob: Any
    linf: Any
    history: np.ndarray
    steps: Any
    info: dict[str, Any] = field(default_factory=dict)


def _pixel_scale(model: Module, xp: Any, dtype: Any) -> tuple[Any, Any, Any]:
    """(std (1, C, 1, 1), low, high): input units per pixel unit and the valid input range."""
    mean, std = getattr(model, "mean", (0.0,)), getattr(model, "std", (1.0,))
    low, high = reg.valid_range(mean, std, dtype)
    s = np.asarray(std, np.float64).reshape(1, -1, 1, 1).astype(dtype)
    return xp.asarray(s), xp.asarray(low), xp.asarray(high)


def _check_epsilon(epsilon: Any, method: str, name: str = "epsilon") -> float:
    value = check_float(epsilon, method, name)
    if not 0 <= value <= 1:
        raise ValueError(f"{method}: {name} must be in [0, 1] (pixel units, the [0, 1] image scale), got {value}")
    return value


def _labels(model: Module, target: Any, n: int, method: str, name: str) -> np.ndarray:
    """(N,) class indices for int / per-image targets, range-checked against the model's classes."""
    index = np.asarray(target)
    if index.dtype.kind not in "iu" or index.ndim > 1 or isinstance(target, bool):
        raise TypeError(f"{method}: {name} must be a class index or one index per image, got {target!r}")
    index = np.broadcast_to(index, (n,)).astype(np.int64) if index.ndim == 0 else index.astype(np.int64)
    if index.shape != (n,):
        raise ValueError(f"{method}: {name} has {index.shape[0]} indices for a batch of {n} images")
    classes = _class_count(model)
    if classes is not None and (index.min() < 0 or index.max() >= classes):
        bad = int(index.max() if index.max() >= classes else index.min())
        raise ValueError(f"{method}: {name} class {bad} is out of range for {classes} classes (0..{classes - 1})")
    return index


def _loss_grad(model: Module, x: Any, labels: np.ndarray) -> tuple[Any, Any]:
    """(dCE/dx summed over the batch, softmax probabilities): CE per image, so each image's gradient is its own."""
    xt = Tensor(x, requires_grad=True)
    logits = model(xt)
    cross_entropy(logits, labels, reduction="sum").backward()
    with no_grad():
        probs = softmax(Tensor(logits.data), axis=-1).data
    return xt.grad, probs


def _probs(model: Module, x: Any) -> Any:
    with no_grad():
        return softmax(model(Tensor(x)), axis=-1).data


def _result(model: Module, x_adv: Any, x0: Any | None, labels: np.ndarray, history: list, steps: Any,
            single: bool, std: Any, info: dict | None = None) -> AdversarialResult:
    probs = backend.to_device(_probs(model, x_adv), "cpu").astype(np.float64)
    n = probs.shape[0]
    target_prob = probs[np.arange(n), labels]
    linf = None
    if x0 is not None:
        linf = backend.to_device((backend.xp(x_adv).abs(x_adv - x0) * std).reshape(n, -1).max(axis=1), "cpu")
        linf = np.asarray(linf, np.float64)
    deprocess = getattr(model, "deprocess", None)
    image = deprocess(x_adv) if callable(deprocess) else None
    hist = np.stack(history) if history else np.zeros((0, n))
    steps = np.asarray(steps)
    pick = (lambda a: a[0]) if single else (lambda a: a)  # noqa: E731
    return AdversarialResult(
        x=pick(x_adv), image=None if image is None else pick(image), probs=pick(probs),
        prediction=pick(probs.argmax(axis=1)), target_prob=pick(target_prob),
        linf=None if linf is None else pick(linf), history=hist[:, 0] if single else hist,
        steps=pick(steps) if steps.ndim else int(steps), info=info or {})


def fgsm(model: Module, x: Any, label: Any, epsilon: float) -> AdversarialResult:
    """One FGSM step away from ``label``: ``x_adv = clip(x + (epsilon / std) sign(dCE(x, label)/dx))``.

    x: a model input (C, H, W) or (N, C, H, W). label: the true class (int, or one per image).
    epsilon: the L-infinity budget in pixel units (e.g. 2/255). Returns an ``AdversarialResult``;
    ``.x`` is the adversarial input, ``.target_prob`` the probability left on ``label``.
    """
    method = "fgsm"
    epsilon = _check_epsilon(epsilon, method)
    x0, single = as_batch(x, model, method)
    labels = _labels(model, label, x0.shape[0], method, "label")
    xp = backend.xp(x0)
    std, low, high = _pixel_scale(model, xp, x0.dtype)
    with frozen(model):
        grad, probs = _loss_grad(model, x0, labels)
        x_adv = reg.clip_to_range(x0 + (epsilon / std).astype(x0.dtype) * xp.sign(grad), low, high).astype(x0.dtype)
        history = [backend.to_device(probs, "cpu")[np.arange(len(labels)), labels]]
        return _result(model, x_adv, x0, labels, history, 1, single, std)


def targeted_attack(model: Module, x: Any, target: Any, epsilon: float, steps: int = 100,
                    step_size: float | None = None, confidence: float = 0.99,
                    progress: bool = True) -> AdversarialResult:
    """Projected gradient descent of CE(x, target) inside ``||x_adv - x||_inf <= epsilon`` (pixel units).

    Each step ``x <- clip(clip(x - (step_size/std) sign(dCE/dx), x0 - eps/std, x0 + eps/std), low, high)``;
    an image stops moving once ``p(target) >= confidence``. ``step_size`` defaults to ``epsilon / 4``.
    Returns an ``AdversarialResult`` (``.target_prob``, ``.linf``, ``.steps`` per image); whether every
    image reached the confidence is ``.info["success"]``.
    """
    method = "targeted_attack"
    progress = check_bool(progress, method, "progress")
    epsilon = _check_epsilon(epsilon, method)
    steps, _ = check_steps_lr(steps, 1.0, method)
    step_size = epsilon / 4 if step_size is None else _check_epsilon(step_size, method, "step_size")
    confidence = check_float(confidence, method, "confidence", low=0.0, high=1.0)
    x0, single = as_batch(x, model, method)
    n = x0.shape[0]
    labels = _labels(model, target, n, method, "target")
    xp = backend.xp(x0)
    std, low, high = _pixel_scale(model, xp, x0.dtype)
    lo, hi = xp.maximum(x0 - epsilon / std, low), xp.minimum(x0 + epsilon / std, high)  # the feasible box
    alpha = (step_size / std).astype(x0.dtype)
    x_adv = x0.copy()
    used = np.zeros(n, dtype=np.int64)
    history: list[np.ndarray] = []
    with frozen(model):
        bar = tqdm(range(steps + 1), desc=method, disable=not progress, leave=False)
        for _ in bar:
            grad, probs = _loss_grad(model, x_adv, labels)
            p = np.asarray(backend.to_device(probs, "cpu"), np.float64)[np.arange(n), labels]
            history.append(p)
            active = p < confidence
            bar.set_postfix(p_target=f"{p.min():.4f}")
            if not active.any() or len(history) > steps:
                break
            used += active
            move = xp.asarray(active.reshape(-1, 1, 1, 1).astype(x0.dtype))
            x_adv = xp.clip(x_adv - move * alpha * xp.sign(grad), lo, hi).astype(x0.dtype)
        bar.close()
        success = bool((history[-1] >= confidence).all())
        return _result(model, x_adv, x0, labels, history, used, single, std, {"success": success})


def fooling_image(model: Module, target: Any, start: str = "noise", confidence: float = 0.996,
                  max_steps: int = 100, step_size: float = 2 / 255, size: Any = None, noise_std: float = 0.5,
                  seed: int = 0, progress: bool = True) -> AdversarialResult:
    """An image the network labels ``target`` with probability >= ``confidence``, grown from nothing.

    Steepest ascent of ``log softmax(model(x))[target]`` in the L-infinity sense, i.e. the targeted
    attack's signed step ``x <- clip(x - (step_size/std) sign(dCE/dx), low, high)`` with no ball
    around a photo (``epsilon = 1``: any valid image is allowed), until the confidence is reached or
    ``max_steps`` are spent. start: "noise" (the mean colour plus Gaussian noise of ``noise_std``
    input units) or "zero" (a black image). target: a class index (one image) or a list (one each).
    size: (H, W) or an int, default the model's ``input_size``. Returns an ``AdversarialResult``
    (``.linf`` is the distance from the start, ``.info["success"]`` whether it made it).
    """
    method = "fooling_image"
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    if check_str(start, method, "start", ("noise", "zero")) not in ("noise", "zero"):
        raise ValueError(f"{method}: start must be 'noise' or 'zero', got {start!r}")
    confidence = check_float(confidence, method, "confidence", low=0.0, high=1.0)
    max_steps, _ = check_steps_lr(max_steps, 1.0, method)
    step_size = _check_epsilon(step_size, method, "step_size")
    single = np.ndim(target) == 0
    if not single and len(target) == 0:
        raise ValueError(f"{method}: target must be a class index or a non-empty list of them, got {target!r}")
    labels = _labels(model, target, 1 if single else len(target), method, "target")
    if size is None:
        size = getattr(model, "input_size", None)
        if size is None:
            raise ValueError(f"{method}: give size=(H, W); the model has no input_size")
    h, w = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    channels = int(getattr(model, "in_channels", 3))
    noise_std = check_float(noise_std, method, "noise_std", low=0.0)
    rng = np.random.default_rng(check_seed(seed, method))
    x = initial_image(model, (len(labels), channels, int(h), int(w)), start, rng, noise_std=noise_std,
                      method=method)
    _, low, high = _pixel_scale(model, backend.xp(x), x.dtype)
    x = reg.clip_to_range(x, low, high)
    result = targeted_attack(model, x, labels, epsilon=1.0, steps=max_steps, step_size=step_size,
                             confidence=confidence, progress=progress)
    if single:
        for name in ("x", "image", "probs", "prediction", "target_prob", "linf", "history", "steps"):
            value = getattr(result, name)
            setattr(result, name, None if value is None else (value[:, 0] if name == "history" else value[0]))
    result.info["start"] = start
    return result
