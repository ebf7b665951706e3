"""What every visualisation method needs: one way to read the input, the target and the layer.

* ``as_batch(x, model, method, arg)``: an image ``(C, H, W)`` or batch ``(N, C, H, W)`` (array or Tensor) ->
  a float batch array on the model's device and whether the caller gave a single image (the
  result is then squeezed back, so methods "follow" their input).
* ``target_scores(logits, target)``: the scalar per image that a method explains: a class
  index (int, or one per image) into the logits, or a callable ``f(output) -> (N,)``.
* ``model_scores(model, x, target)``: the same, but ``target`` may also be an objective of the
  synthesis family (``minivis.vis.synthesis.objectives``): a unit, a channel, a direction or a
  class at any layer. Every attribution method resolves its target here, so each one explains an
  intermediate neuron as readily as a logit.
* ``check_layer(model, layer)``: the layer module for a dotted name, with a clear error.
* ``frozen(model)`` / ``inference(model)``: the model state a method runs in (eval mode, frozen
  weights or no graph), restored afterwards even on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.functional.conv import reuse_weight_transforms
from minivis.nn.module import Module
from minivis.validate import host

# A class index, one per image, a callable f(logits) -> (N,), or an Objective (itself a callable,
# run as objective(model, x): see ``model_scores``).
Target = int | np.integer | list | tuple | np.ndarray | Callable[[Tensor], Tensor]


@contextmanager
def frozen(model: Module) -> Iterator[Module]:
    """Eval mode and ``requires_grad=False`` on every weight; modes, flags and ``.grad`` restored after.

    Freezing matters twice: no gradient is accumulated on the weights, and the backward pass does
    not compute any (only the graph from the input, or from a layer, to the score is recorded).
    The weights cannot change inside, so convolutions reuse their weight transforms; and the
    large arrays of each batch reuse the memory of the previous batch's (``backend.reuse_buffers``).
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        with reuse_weight_transforms(), backend.reuse_buffers():
            yield model
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)
        for p, flag, grad in flags:
            p.requires_grad, p.grad = flag, grad


@contextmanager
def inference(model: Module) -> Iterator[None]:
    """Eval mode (dropout off, batch-norm running statistics) and no graph; the modes are restored after.

    Inside, as in ``frozen``, convolutions reuse their weight transforms and batches their memory.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad(), reuse_weight_transforms(), backend.reuse_buffers():
            yield
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)


def model_device_dtype(model: Module) -> tuple[str, np.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return "cpu", np.dtype(np.float32)
    return param.device, param.dtype


def as_batch(x: Any, model: Module, method: str, arg: str = "x") -> tuple[Any, bool]:
    """``x`` as an (N, C, H, W) array in the model's dtype and device, and whether it was one image.

    Errors name ``method`` (the public call) and ``arg``, the call's own name for the image
    argument (``image``, ``images``, ``sample``, ...)."""
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    data = x.data if isinstance(x, Tensor) else x
    if not (isinstance(data, np.ndarray) or backend.is_gpu_array(data)):
        raise TypeError(f"{method}: {arg} must be an array or Tensor of shape (C, H, W) or (N, C, H, W), "
                        f"got {type(x).__name__}")
    if data.ndim not in (3, 4):
        raise ValueError(f"{method}: {arg} must be (C, H, W) or (N, C, H, W), got shape {tuple(data.shape)}")
    if data.dtype.kind not in "fiu":
        raise TypeError(f"{method}: {arg} must be numeric, got dtype {data.dtype}")
    if 0 in data.shape:
        raise ValueError(f"{method}: {arg} must be non-empty, got shape {tuple(data.shape)}")
    single = data.ndim == 3
    device, dtype = model_device_dtype(model)
    batch = backend.to_device(data[None] if single else data, device).astype(dtype, copy=True)
    expected = getattr(model, "in_channels", None)
    if expected is not None and batch.shape[1] != expected:
        raise ValueError(f"{method}: {arg} has {batch.shape[1]} channels, the model expects {expected}")
    if not bool(backend.xp(batch).isfinite(batch).all()):
        raise ValueError(f"{method}: {arg} contains NaN or infinite values")
    return batch, single


def target_scores(output: Tensor, target: Target, method: str) -> Tensor:
    """The (N,) scores to explain: ``output[n, target[n]]`` or ``target(output)``."""
    if callable(target):
        scores = target(output)
        if not isinstance(scores, Tensor) or scores.shape != (output.shape[0],):
            raise ValueError(f"{method}: a callable target must return a Tensor of shape ({output.shape[0]},), "
                             f"got {getattr(scores, 'shape', type(scores).__name__)}")
        return scores
    n, classes = output.shape[0], output.shape[-1]
    index = np.asarray(target)
    if index.dtype.kind not in "iu" or index.ndim > 1:
        raise TypeError(f"{method}: target must be a class index, one index per image, or a callable; got {target!r}")
    index = np.broadcast_to(index, (n,)) if index.ndim == 0 else index
    if index.shape != (n,):
        raise ValueError(f"{method}: target has {index.shape[0]} indices for a batch of {n} images")
    if index.min() < 0 or index.max() >= classes:
        raise ValueError(f"{method}: target class {int(index.max() if index.max() >= classes else index.min())} "
                         f"is out of range for {classes} classes (0..{classes - 1})")
    return output[np.arange(n), index]


def is_objective(target: Any) -> bool:
    """True for an Objective of ``minivis.vis.synthesis.objectives`` (a score read at any layer)."""
    # Imported here, not at the top: the synthesis package imports this module, so a top-level
    # import would be circular. By the time a method runs, both are loaded.
    from minivis.vis.synthesis.objectives import Objective  # noqa: PLC0415

    return isinstance(target, Objective)


def model_scores(model: Module, x: Tensor, target: Target, method: str) -> Tensor:
    """Run ``model`` on ``x`` (N, C, H, W) and return the (N,) scores of ``target``.

    A class index (or one per image) or a callable ``f(logits)`` reads the logits
    (``target_scores``); an Objective (``unit``, ``channel``, ``direction``, ``class_logit``, ``layer_l2``
    and their sums) reads its own layers and stops the forward pass after the deepest of them,
    so explaining an early unit costs only the layers below it.
    """
    if not is_objective(target):
        return target_scores(model(x), target, method)
    try:
        return target(model, x)
    except (ValueError, TypeError) as err:  # unknown layer, channel out of range...: name the method
        raise type(err)(f"{method}: target {target.name}: {err}") from None


def check_layer(model: Module, layer: str, method: str) -> Module:
    if not isinstance(model, Module):
        raise TypeError(f"{method}: model must be a minivis nn.Module, got {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"{method}: layer must be a dotted layer name (str), got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except ValueError as err:
        raise ValueError(f"{method}: {err}") from None


def unbatch(result: Any, single: bool) -> Any:
    return result[0] if single else result


def check_data_matrix(X: Any, op: str) -> np.ndarray:
    """A data matrix (N samples, D features) for PCA and t-SNE, as float32/float64 on the host
    (a CuPy array is copied to the host: the t-SNE kernels are CPU-only).

    Accepts arrays and minivis Tensors; integers and float16 become float64; NaN/inf are refused.
    """
    X = np.asarray(host(X))  # CuPy: moved on purpose
    if X.dtype.kind not in "fiu":
        raise TypeError(f"{op}: X must be a numeric array (N, D), got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{op}: X must be 2-D (N samples, D features), got shape {X.shape}")
    if X.dtype.kind != "f" or X.dtype.itemsize < 4:
        X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{op}: X contains NaN or infinite values")
    return X
