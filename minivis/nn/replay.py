"""Reuse the unchanged beginning of a forward pass: the randomisation test's shortcut.

Adebayo et al.'s cascading test re-initialises a network from the logits downwards and explains
it again after every step. The layers *below* the re-initialised ones still compute what they
computed the first time: same input, same weights. ``ForwardReplay`` records a model's first
forward pass, op by op at its leaf modules, and in later passes hands back each recorded output,
with a new graph node around the recorded backward closure, for as long as nothing has changed:

* the same leaf module is called, in the same order, with the same parameter and buffer objects,
  in eval mode, and it is not one of the modules the caller says it changed;
* its input holds the same values (the very array the recorded pass gave it, or equal values);
* the recorded call was one op applied to the module's input (conv, linear, ReLU, pooling, ...),
  or the identity (eval dropout), so its backward closure can take the new input as its parent.

The first call that fails a condition, and every call after it in that pass, runs as usual. The
results are the same bit for bit as without replay, under every backward rule: the closures are
the recorded op's own, and read the rule when ``backward()`` runs. The assumption is the usual
module contract: a leaf module's output depends only on its input, its parameters and buffers.

Cost: the recorded outputs and the arrays their closures saved stay alive, one pass's graph;
recording stops when a module is called a second time (the method's next pass).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Node, Tensor
from minivis.nn.module import Module

_NO_GRAD = Tensor(np.zeros(0))  # stands in for an op input that needs no gradient


@dataclass
class _Call:
    """One recorded leaf-module call that can be replayed."""

    module: Module
    state: tuple[Any, ...]  # the module's parameter and buffer objects, and their arrays
    input: Any  # the input array
    needs_grad: bool  # whether the input required gradients
    output: Any  # the recorded output array (None where the module returned its input)
    op: str  # the op's name
    backward: Any  # the op's backward closure (None where the output needs no gradient)
    others: tuple[Any, ...]  # the op's other inputs, as its node held them (leaf tensors or None)


def _state(module: Module) -> tuple[Any, ...]:
    params = tuple(module._parameters.values())
    return params + tuple(p.data for p in params if p is not None) + tuple(module._buffers.values())


def _same_state(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(u is v for u, v in zip(a, b, strict=True))


def _graph_input(t: Tensor) -> Any:
    return (t if t._node is None else t._node) if t.requires_grad else None


class ForwardReplay:
    """Record one forward pass of ``model``; replay its unchanged beginning in later passes.

    ``with replay.record(): method(model, x)`` records; ``with replay.replay(changed): method(model, x)``
    reuses every call before the first one that changed (see the module docstring).
    ``replayed`` counts the calls handed back so far.
    """

    def __init__(self, model: Module) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"ForwardReplay: model must be a minivis Module, got {type(model).__name__}")
        self.model = model
        self.calls: list[_Call] = []
        self.replayed = 0

    def _leaves(self) -> list[Module]:
        return [m for m in self.model.modules() if not m._modules]

    @contextmanager
    def _patched(self, make: Any) -> Iterator[None]:
        """Each leaf module's ``forward`` replaced by ``make(module, forward)`` within the block."""
        leaves = self._leaves()
        try:
            for m in leaves:
                object.__setattr__(m, "forward", make(m, m.forward))
            yield
        finally:
            for m in leaves:
                m.__dict__.pop("forward", None)

    @contextmanager
    def record(self) -> Iterator[None]:
        """Record the replayable calls of the first pass run within the block (replacing any record)."""
        self.calls, seen, open_ = [], set(), [True]

        def make(module, forward):
            def recording(*args, **kwargs):
                out = forward(*args, **kwargs)
                if not open_[0]:
                    return out
                if id(module) in seen:  # the method's next pass: one pass is recorded
                    open_[0] = False
                    return out
                seen.add(id(module))
                call = _replayable(module, args, kwargs, out)
                if call is None:  # the replayable beginning ends here
                    open_[0] = False
                else:
                    self.calls.append(call)
                return out
            return recording

        with self._patched(make):
            yield

    @contextmanager
    def replay(self, changed: Iterable[Module] = ()) -> Iterator[None]:
        """Within the block, hand back the recorded calls up to the first one that changed.

        changed: modules whose weights the caller replaced or edited since the recording; a pass
        stops replaying at their first call even if their parameter objects are the same.
        """
        changed_ids = {id(m) for m in changed}
        pass_ = {"next": 0, "live": True, "seen": set()}

        def make(module, forward):
            def replaying(*args, **kwargs):
                if id(module) in pass_["seen"]:  # a new pass begins
                    pass_.update(next=0, live=True, seen=set())
                pass_["seen"].add(id(module))
                i = pass_["next"]
                pass_["next"] += 1
                if pass_["live"] and i < len(self.calls) and id(module) not in changed_ids:
                    out = _replay(self.calls[i], module, args, kwargs)
                    if out is not None:
                        self.replayed += 1
                        return out
                pass_["live"] = False
                return forward(*args, **kwargs)
            return replaying

        with self._patched(make):
            yield


def _replayable(module: Module, args: tuple, kwargs: dict, out: Any) -> _Call | None:
    """The record of a call, or None where replaying it could differ from running it."""
    if module.training or kwargs or len(args) != 1 or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
        return None
    x = args[0]
    if out is x:
        return _Call(module, _state(module), x.data, x.requires_grad, None, "", None, ())
    node = out._node
    if node is None:
        return None if x.requires_grad else _Call(module, _state(module), x.data, False, out.data, out._op, None, ())
    if not node.inputs or node.inputs[0] is not _graph_input(x) or any(isinstance(i, Node) for i in node.inputs[1:]):
        return None  # several ops, or an op that also reads another computed tensor
    # The node's own closure, kept here: the graph frees it after its backward pass. It reads only
    # the gradient and the arrays it saved, so it serves every replayed pass.
    return _Call(module, _state(module), x.data, x.requires_grad, out.data, out._op, node.backward, node.inputs[1:])


def _same_values(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(backend.xp(a).array_equal(a, b))


def _replay(call: _Call, module: Module, args: tuple, kwargs: dict) -> Tensor | None:
    """The recorded output for this call, in the new graph; None where the call is not the recorded one."""
    if (call.module is not module or module.training or kwargs or len(args) != 1 or not isinstance(args[0], Tensor)
            or not _same_state(_state(module), call.state)):
        return None
    x = args[0]
    if x.requires_grad != call.needs_grad or not _same_values(x.data, call.input):
        return None
    if call.output is None:
        return x
    if call.backward is None:
        return Tensor.from_op(call.output, (), lambda g: (), call.op)
    parents = (x,) + tuple(_NO_GRAD if t is None else t for t in call.others)
    return Tensor.from_op(call.output, parents, call.backward, call.op)
