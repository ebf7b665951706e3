"""The shared loop behind every "image by optimisation" method (class models, inversion, DeepDream, ...).

With the network's weights fixed, each step does

    x       = param.image()                      the parameterisation -> model input (N, C, H, W)
    x_T     = T(x)                               random transforms (transformation robustness)
    J       = objective(model, x_T) - sum_k w_k R_k(x)      one value per image
    params <- params + step(dJ/dparams)          gradient *ascent* (descent of -J when minimising)
    params <- param.project()                     back into the feasible set, if any (a generator's code box)
    x      <- hook(step, x, dJ/dx)                array-level operations (blur, clipping), if any

``optimizer`` picks the step: ``"sgd"`` is the textbook update ``p += lr * g``; ``"adam"`` scales
each coordinate by its gradient history; ``"normalized"`` is DeepDream's ``p += lr * g / mean|g|``
(per image), which makes ``lr`` the mean change per step whatever the gradient's size; ``"sign"``
is ``p += lr * sign(g)``, every pixel moving by exactly ``lr`` (FGSM and its iterative versions); ``"lbfgs"``
hands the whole run to SciPy's L-BFGS-B through ``minivis.optim.lbfgs`` (deterministic
objectives only: no transforms or hooks).

Every image in the batch is optimised independently (the total is a sum over images), the model
runs in eval mode with frozen weights (both restored afterwards, even on error), the random
transforms draw from ``np.random.default_rng(seed)``, and a tqdm bar shows progress.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from minivis import backend
from minivis.autograd import Tensor, lean_graph, no_grad
from minivis.nn.module import Module
from minivis.optim.lbfgs import minimize_lbfgs
from minivis.optim.optimizers import SGD, Adam
from minivis.validate import check_bool, check_count, check_float, check_seed, check_str
from minivis.vis.common import frozen
from minivis.vis.synthesis.parameterization import ImageParam

OPTIMIZERS = ("adam", "sgd", "normalized", "sign", "lbfgs")

Penalty = Callable[[Tensor], Tensor]          # (N, C, H, W) -> (N,)
Hook = Callable[[int, Any, Any], Any]         # (step, image array, dJ/dimage array) -> new image array or None


@dataclass
class SynthesisResult:
    """What an optimisation returns.

    x: the final model input, (C, H, W) for one image or (N, C, H, W).
    image: ``model.deprocess(x)``: HxWxC (or NxHxWxC) floats in [0, 1]; None if the model has no deprocess.
    history: the objective (without penalties) at each step, (steps,) for one image or (steps, N),
        measured before that step's update (for L-BFGS: at each iteration's accepted point).
    total: the regularised value that was optimised (objective minus, or plus when minimising, the
        weighted penalties) at each step, shaped like ``history``.
    info: anything else the method reports (e.g. the L-BFGS message, final errors).
    """

    x: Any
    image: np.ndarray | None
    history: np.ndarray
    total: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def check_steps_lr(steps: Any, lr: Any, method: str) -> tuple[int, float]:
    steps = check_count(steps, method, "steps")
    lr = check_float(lr, method, "lr")
    if not lr > 0 or not np.isfinite(lr):
        raise ValueError(f"{method}: lr must be > 0, got {lr}")
    return steps, lr


def _normalized_step(params: Sequence[Tensor], lr: float) -> None:
    """p -= lr * g / mean|g|, the mean taken per image (axis 0 is the batch)."""
    for p in params:
        if p.grad is None:
            continue
        xp = backend.xp(p.grad)
        axes = tuple(range(1, p.grad.ndim))
        scale = xp.abs(p.grad).mean(axis=axes, keepdims=True) + 1e-12
        p.data = (p.data - lr * p.grad / scale).astype(p.dtype, copy=False)


def _sign_step(params: Sequence[Tensor], lr: float) -> None:
    """p -= lr * sign(g): the L-infinity steepest-descent step (Goodfellow et al.'s FGSM)."""
    for p in params:
        if p.grad is not None:
            p.data = (p.data - lr * backend.xp(p.grad).sign(p.grad)).astype(p.dtype, copy=False)


def optimize(model: Module, objective: Callable[[Module, Tensor], Tensor], param: ImageParam, steps: int,
             lr: float, optimizer: str = "adam", transforms: Callable | None = None,
             penalties: Sequence[tuple[float, Penalty]] = (), hooks: Sequence[Hook] = (),
             maximize: bool = True, seed: int = 0, progress: bool = True, desc: str = "optimize",
             single: bool = False) -> SynthesisResult:
    """Run the loop described in the module docstring; returns a ``SynthesisResult``.

    model: frozen and in eval mode during the run, each step's graph recorded lean (``mv.lean_graph()``:
    plain gradients only, so an objective must not backpropagate under an LRP or rescale rule).
    objective: ``(model, x) -> (N,)`` Tensor (an
    ``Objective`` from ``minivis.vis.synthesis.objectives`` or any such callable). param: the image's
    parameterisation (``minivis.vis.synthesis.parameterization``). penalties: ``(weight, R)`` pairs with
    ``R(x) -> (N,)``. hooks: run after each step, in order. maximize: ascend J (default) or
    descend it. single: squeeze the batch axis out of the result (one image in, one out).
    """
    if not isinstance(model, Module):
        raise TypeError(f"{desc}: model must be a minivis nn.Module, got {type(model).__name__}")
    if check_str(optimizer, desc, "optimizer", OPTIMIZERS) not in OPTIMIZERS:
        raise ValueError(f"{desc}: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    steps, lr = check_steps_lr(steps, lr, desc)
    progress = check_bool(progress, desc, "progress")
    if not isinstance(param, ImageParam):
        raise TypeError(f"{desc}: param must be an ImageParam (minivis.vis.synthesis.parameterization), "
                        f"got {param!r:.60}")
    for weight, penalty in penalties:
        check_float(weight, desc, "penalty weight", low=0.0)
        if not callable(penalty):
            raise TypeError(f"{desc}: each penalty must be callable (x) -> (N,) Tensor, got {penalty!r}")
    if optimizer == "lbfgs" and (transforms is not None or hooks):
        raise ValueError(f"{desc}: optimizer='lbfgs' needs a deterministic objective: no transforms or hooks")
    if optimizer == "lbfgs" and type(param).project is not ImageParam.project:
        raise ValueError(f"{desc}: optimizer='lbfgs' cannot keep a constrained parameterisation "
                         f"({type(param).__name__}) in its box; use 'adam' or 'sgd'")
    rng = np.random.default_rng(check_seed(seed, desc))
    sign = 1.0 if maximize else -1.0
    history: list[np.ndarray] = []
    totals: list[np.ndarray] = []
    last: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}

    def evaluate() -> tuple[Tensor, Tensor]:
        """(loss to descend, the image tensor); keeps the objective and the total in ``last``."""
        x = param.image()
        if not x.is_leaf:
            x.retain_grad()  # hooks want dJ/dx even when x is computed from a spectrum
        seen = transforms(x, rng) if transforms is not None else x
        value = objective(model, seen)
        if value.ndim != 1 or value.shape[0] != x.shape[0]:
            raise ValueError(f"{desc}: the objective must return one value per image, shape ({x.shape[0]},), "
                             f"got {value.shape}")
        total = value * sign
        for weight, penalty in penalties:
            if weight:
                total = total - penalty(x) * float(weight)
        last["value"] = backend.to_device(value.data, "cpu").astype(np.float64)
        last["total"] = sign * backend.to_device(total.data, "cpu").astype(np.float64)
        return -total.sum(), x

    def record() -> None:
        if not np.isfinite(last["total"]).all():  # stop at the first step that diverged, saying what to change
            raise ValueError(f"{desc}: the optimisation diverged at step {len(history) + 1} of {steps} (the objective "
                             f"became {last['total']}); lower lr (now {lr}) or the penalty weights")
        history.append(last["value"])
        totals.append(last["total"])

    # Every step needs the plain gradient only, so its graph is lean: the frozen layers keep just what
    # that needs (no convolution inputs; a byte per rectified value), as the saliency methods do.
    with frozen(model), lean_graph():
        if optimizer == "lbfgs":
            bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)

            def closure() -> Tensor:
                return evaluate()[0]

            def callback(_v: np.ndarray) -> None:
                record()  # L-BFGS-B's accepted point is the last one it evaluated
                bar.update(1)
                bar.set_postfix(objective=f"{history[-1].mean():.4g}")

            try:
                result = minimize_lbfgs(param.params, closure, maxiter=steps, callback=callback)
            finally:
                bar.close()
            info.update(message=str(result.message), nit=int(result.nit), nfev=int(result.nfev))
            if not history:  # converged before the first iteration
                evaluate()
                record()
        else:
            if optimizer == "adam":
                opt = Adam(param.params, lr=lr)
            elif optimizer == "sgd":
                opt = SGD(param.params, lr=lr)
            for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
                for p in param.params:
                    p.grad = None
                loss, x = evaluate()
                record()
                loss.backward()
                if optimizer == "normalized":
                    _normalized_step(param.params, lr)
                elif optimizer == "sign":
                    _sign_step(param.params, lr)
                else:
                    opt.step()
                param.project()  # a constrained parameterisation steps back into its feasible set
                if hooks:
                    image = param.numpy()
                    ascent = -x.grad if x.grad is not None else backend.xp(image).zeros_like(image)
                    changed = False
                    for hook in hooks:
                        new = hook(step, image, ascent)
                        if new is not None:
                            image, changed = new, True
                    if changed:
                        param.set_image(image)
        with no_grad():
            x_final = param.image().data.copy()
        if not bool(backend.xp(x_final).isfinite(x_final).all()):  # the last step's update overflowed
            raise ValueError(f"{desc}: the optimisation diverged at step {steps} of {steps} (the image is no "
                             f"longer finite); lower lr (now {lr})")
    hist = np.stack(history)
    tot = np.stack(totals)
    image = None
    deprocess = getattr(model, "deprocess", None)
    if callable(deprocess):
        image = deprocess(x_final)
    if single:
        x_final, hist, tot = x_final[0], hist[:, 0], tot[:, 0]
        image = None if image is None else image[0]
    return SynthesisResult(x=x_final, image=image, history=hist, total=tot, info=info)
