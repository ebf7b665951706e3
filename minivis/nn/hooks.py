"""Reading and steering a network from the outside, by layer name.

* ``capture(model, layers)``: record the output of named layers during a forward pass. The
  captured tensors are part of the graph, so ``acts[name].backward(g)`` starts the backward
  pass at that layer with a gradient of your choice (DeepDream, DeconvNet), and
  ``retain_grad=True`` keeps dL/d(activation) after a backward from the logits (Grad-CAM).
* ``forward_to(model, x, layer)``: run the network only up to a layer (the layer-range forward
  that makes feature inversion and DeepDream one-liners) by stopping right after it.
* ``edit_output(model, layer, fn)``: replace a layer's output by ``fn(output)`` (ablation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from minivis.autograd import Tensor
from minivis.nn.module import Module


def _names(layers: str | Sequence[str], op: str) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(layers) if isinstance(layers, Sequence) else []
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{op}: layers must be a layer name or a list of names, got {layers!r}")
    return names


def _submodule(model: Module, layer: str, op: str) -> Module:
    """``model.get_submodule(layer)``, its errors (and a model that is not a Module) named after ``op``."""
    if not isinstance(model, Module):
        raise TypeError(f"{op}: model must be a minivis nn.Module, got {type(model).__name__}")
    try:
        return model.get_submodule(layer)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{op}: {err}") from None


@contextmanager
def capture(model: Module, layers: str | Sequence[str], retain_grad: bool = False) -> Iterator[dict[str, Tensor]]:
    """``with capture(model, ["features.3"]) as acts: model(x)`` fills ``acts["features.3"]``."""
    acts: dict[str, Tensor] = {}
    with ExitStack() as stack:
        for name in _names(layers, "capture"):
            def record(module, inputs, output, name=name):
                if retain_grad and isinstance(output, Tensor) and output.requires_grad:
                    output.retain_grad()
                acts[name] = output
            stack.enter_context(_submodule(model, name, "capture").register_forward_hook(record))
        yield acts


class StopForward(Exception):
    """Raised by a forward hook to end the forward pass early, carrying the layer's ``output``:
    the layers after it need not run (``forward_to``, and vis code that reads one layer)."""

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output


def forward_to(model: Module, x: Any, layer: str) -> Tensor:
    """The output of ``layer`` for input ``x``; the layers after it are not run."""
    target = _submodule(model, layer, "forward_to")
    if layer == "":
        return model(x)

    def stop(module, inputs, output):
        raise StopForward(output)

    with target.register_forward_hook(stop):
        try:
            model(x)
        except StopForward as done:
            return done.output
    raise RuntimeError(f"forward_to: layer {layer!r} was never reached in the forward pass")


@contextmanager
def edit_output(model: Module, layer: str, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, ``layer``'s output is replaced by ``fn(output)``."""
    with _submodule(model, layer, "edit_output").register_forward_hook(lambda m, i, out: fn(out)):
        yield
