"""Class models in a decoder's latent space: a miniature DGN-AM.

Nguyen, Dosovitskiy, Yosinski, Brox & Clune, "Synthesizing the preferred inputs for neurons in
neural networks via deep generator networks" (NeurIPS 2016) replace the hand-made image prior of
class-model visualisation by a learned one: optimise a *code* ``z`` and let a generator ``G``
draw the image,

    z* = argmax_z  S_c(G(z))      subject to  low <= z <= high,      image = G(z*).

The chain rule sends the class score's gradient through the classifier to the image and on
through the generator to the code: ``dS_c/dz = (dG/dz)^T dS_c/dx``. Every image reached is one
``G`` can draw, so it looks like the data ``G`` was trained on; the box keeps ``z`` where real
codes live (DGN-AM clips its fc6 code to the range seen on real images; a code after a ReLU is
never negative).

Here ``G`` is the up-convolutional decoder of one of ``fashion_cnn``'s layers
(``mv.models.load_decoder``), trained by minivis to invert that layer (Dosovitskiy & Brox 2016),
with the L2 loss only, so its images are smooth averages rather than the sharp images of
DGN-AM's adversarially trained generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.nn.module import Module
from minivis.validate import check_seed, check_str, host
from minivis.vis.common import frozen, model_device_dtype
from minivis.vis.synthesis.class_model import class_objective
from minivis.vis.synthesis.optimize import SynthesisResult, check_steps_lr, optimize
from minivis.vis.synthesis.parameterization import GeneratorImage

LATENT_INITS = ("zero", "noise")


def _bound(value: Any, name: str, shape: tuple[int, ...], method: str) -> Any:
    if value is None:
        return None
    array = np.asarray(host(value))
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{method}: code_range's {name} must be None, a number or an array, got {value!r:.60}")
    try:
        np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{method}: code_range's {name} (shape {array.shape}) does not broadcast to the code "
                         f"shape {shape}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{method}: code_range's {name} must be finite")
    return array


def latent_class_model(model: Module, decoder: Module, target: Any, steps: int = 200, lr: float = 0.05,
                       code_range: tuple[Any, Any] | None = None, init: Any = "zero", noise_std: float = 1.0,
                       optimizer: str = "adam", seed: int = 0, progress: bool = True) -> SynthesisResult:
    """The decoder image ``decoder(z)`` whose class score ``model`` rates highest, optimised over ``z``.

    model: the classifier (its ``deprocess`` makes the pictures). decoder: a Module from codes
    (N, *code_shape) to model inputs, with ``code_shape`` (``mv.models.load_decoder(layer)``).
    target: a class index, a list of indices (one image each) or an ``Objective``.
    code_range: (low, high), each None, a number or an array broadcastable to the code; ``z`` is
        clipped into it after every step (projected gradient ascent).
    init: "zero", "noise" (Gaussian with std ``noise_std`` in units of the code's own spread,
        ``1 / decoder.code_scale`` when the decoder has one) or an array of codes (N, *code_shape).
    steps, lr, optimizer: the ascent loop (``minivis.vis.synthesis.optimize``; not "lbfgs").

    Returns a ``SynthesisResult`` (``.image``, ``.x`` = ``decoder(z*)``, ``.history`` the class
    score per step) with ``info["code"]``, the final code(s).
    """
    method = "latent_class_model"
    if not isinstance(model, Module) or not isinstance(decoder, Module):
        raise TypeError(f"{method}: model and decoder must be minivis nn.Modules, got "
                        f"{type(model).__name__} and {type(decoder).__name__}")
    steps, lr = check_steps_lr(steps, lr, method)
    objective, n, single = class_objective(model, target, method)
    code_shape = getattr(decoder, "code_shape", None)
    device, dtype = model_device_dtype(decoder)
    rng = np.random.default_rng(check_seed(seed, method))
    if isinstance(init, str):
        if init not in LATENT_INITS:
            raise ValueError(f"{method}: init must be one of {LATENT_INITS} or an array of codes, got {init!r}")
        if code_shape is None:
            raise ValueError(f"{method}: the decoder has no code_shape; give init as an array of codes (N, ...)")
        shape = (n, *code_shape)
        z0 = np.zeros(shape)
        if init == "noise":
            spread = 1.0 / float(np.asarray(backend.to_device(getattr(decoder, "code_scale", 1.0), "cpu")))
            z0 = rng.standard_normal(shape) * float(noise_std) * spread
    else:
        data = init.data if isinstance(init, Tensor) else init
        if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)) or data.dtype.kind not in "fiu":
            raise TypeError(f"{method}: init must be one of {LATENT_INITS} or an array of codes, got "
                            f"{type(init).__name__}")
        z0 = np.asarray(backend.to_device(data, "cpu"), np.float64)
        if code_shape is not None and tuple(z0.shape[1:]) != tuple(code_shape) or z0.shape[0] != n:
            raise ValueError(f"{method}: init codes must have shape {(n, *(code_shape or ('...',)))} (one per "
                             f"target), got {z0.shape}")
        if not np.isfinite(z0).all():
            raise ValueError(f"{method}: init codes contain NaN or infinite values")
        shape = z0.shape
    low, high = (None, None) if code_range is None else code_range
    low, high = _bound(low, "low", shape, method), _bound(high, "high", shape, method)
    if check_str(optimizer, method, "optimizer", ("adam", "sgd", "normalized", "sign")) == "lbfgs":
        raise ValueError(f"{method}: optimizer must be a gradient-step optimizer ('adam', 'sgd', 'normalized', "
                         f"'sign'), not 'lbfgs' (it cannot keep the code in its box)")
    put = lambda a: None if a is None else backend.to_device(np.asarray(a, dtype), device)  # noqa: E731
    with frozen(decoder):
        param = GeneratorImage(decoder, put(z0), put(low), put(high))
        result = optimize(model, objective, param, steps=steps, lr=lr, optimizer=optimizer, seed=seed,
                          progress=progress, desc=method, single=single)
        code = param.code.data.copy()
    result.info["code"] = code[0] if single else code
    return result
