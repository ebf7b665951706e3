"""Reuse the unchanged beginning of a forward pass: the randomisation test's shortcut.

Adebayo et al.'s cascading test re-initialises a network from the logits downwards and explains
it again after every step. The layers *below* the re-initialised ones still compute what they
computed the first time: same input, same weights. ``ForwardReplay`` records a model's first
forward pass, op by op at its leaf modules, and in later passes hands back each recorded output,
with a new graph node around the recorded backward closure, for as long as nothing has changed:

* the same leaf module (or fused pair, such as a ReLU and its max-pool) is called, in the same
  order, with the same parameter and buffer objects, in eval mode, and it is not one of the
  modules the caller says it changed;
* neither it nor a module around it (its block, the model) has a forward pre-hook. Pre-hooks run
  before the seam (``observe_forward``), so the input checked below is the one they left, but a
  pre-hook may also rewrite its input in place (PyTorch allows it), and the check cannot tell a
  rewritten array from the recorded one when it is the same object. So a module under a pre-hook
  always runs, and a record ends at it. (A hook that rewrites in place a tensor that a replayed
  call handed back, the record's own array, changes the record: no hook should, during replay.)
* its input holds the same values (the very array the recorded pass gave it, or equal values);
* the recorded call was one op applied to the module's input (conv, linear, ReLU, pooling, ...),
  or the identity (eval dropout), so its backward closure can take the new input as its parent.

The first call that fails a condition, and every call after it in that pass, runs as usual.
Hooks fire on replayed calls too: pre-hooks before the seam, forward hooks after it.
Attributes a forward sets on its module (a max-pool's ``switches``) are set again on replay. The
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
from minivis.autograd import Node, Tensor, graph_input  # how a node refers to an op input: the engine's rule
from minivis.nn.module import Module, observe_forward

_NO_GRAD = Tensor(np.zeros(0))  # stands in for an op input that needs no gradient
_MISSING = object()


@dataclass
class _Call:
    """One recorded leaf-module call that can be replayed."""

    modules: tuple[Module, ...]  # the module, or the fused pair
    state: tuple[Any, ...]  # their parameter and buffer objects, and the parameters' arrays
    effects: tuple[dict[str, Any], ...]  # per module, the attributes its forward set
    input: Any  # the input array
    needs_grad: bool  # whether the input required gradients
    output: Any  # the recorded output array (None where the module returned its input)
    op: str  # the op's name
    backward: Any  # the op's backward closure (None where the output needs no gradient)
    others: tuple[Any, ...]  # the op's other inputs, as its node held them (leaf tensors or None)


def _modules(key: Any) -> tuple[Module, ...]:
    return key if isinstance(key, tuple) else (key,)


def _state(modules: tuple[Module, ...]) -> tuple[Any, ...]:
    params = tuple(p for m in modules for p in m._parameters.values())
    return params + tuple(p.data for p in params) + tuple(b for m in modules for b in m._buffers.values())


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(u is v for u, v in zip(a, b, strict=True))


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

    @contextmanager
    def record(self) -> Iterator[None]:
        """Record the replayable calls of the first pass run within the block (replacing any record)."""
        self.calls, seen, recording, hooked = [], set(), [True], [0]

        def observer(key, forward, args, kwargs):
            modules = _modules(key)
            if any(m._modules for m in modules):  # containers: their leaves are recorded
                return _container(modules, hooked, forward, args, kwargs)
            before = [dict(m.__dict__) for m in modules] if recording[0] else []
            out = forward(*args, **kwargs)
            if recording[0]:
                ident = tuple(id(m) for m in modules)
                call = (None if ident in seen or _pre_hooked(modules, hooked)
                        else _replayable(modules, before, args, kwargs, out))
                seen.add(ident)
                if call is None:  # the method's next pass, or a call that cannot be replayed: the record ends
                    recording[0] = False
                else:
                    self.calls.append(call)
            return out

        with observe_forward(observer):
            yield

    @contextmanager
    def replay(self, changed: Iterable[Module] = ()) -> Iterator[None]:
        """Within the block, hand back the recorded calls up to the first one that changed.

        changed: modules whose weights the caller replaced or edited since the recording; a pass
        stops replaying at their first call even if their parameter objects are the same.
        """
        if isinstance(changed, Module) or not isinstance(changed, Iterable):
            raise TypeError(f"ForwardReplay.replay: changed must be an iterable of modules, "
                            f"got {type(changed).__name__}")
        changed = list(changed)
        wrong = [type(m).__name__ for m in changed if not isinstance(m, Module)]
        if wrong:
            raise TypeError(f"ForwardReplay.replay: changed must hold minivis Modules, got {wrong}")
        changed_ids = {id(m) for m in changed}
        pass_ = {"next": 0, "live": True, "seen": set()}
        hooked = [0]

        def observer(key, forward, args, kwargs):
            modules = _modules(key)
            if any(m._modules for m in modules):
                return _container(modules, hooked, forward, args, kwargs)
            ident = tuple(id(m) for m in modules)
            if ident in pass_["seen"]:  # a new pass begins
                pass_.update(next=0, live=True, seen=set())
            pass_["seen"].add(ident)
            i = pass_["next"]
            pass_["next"] += 1
            if (pass_["live"] and i < len(self.calls) and not changed_ids.intersection(ident)
                    and not _pre_hooked(modules, hooked)):
                out = _replay(self.calls[i], modules, args, kwargs)
                if out is not None:
                    self.replayed += 1
                    return out
            pass_["live"] = False
            return forward(*args, **kwargs)

        with observe_forward(observer):
            yield


def _container(modules: tuple[Module, ...], hooked: list[int], forward: Any, args: tuple, kwargs: dict) -> Any:
    """Run a container's forward; ``hooked[0]`` counts the enclosing containers with a pre-hook meanwhile."""
    pre = any(m._forward_pre_hooks for m in modules)
    hooked[0] += pre
    try:
        return forward(*args, **kwargs)
    finally:
        hooked[0] -= pre


def _pre_hooked(modules: tuple[Module, ...], hooked: list[int]) -> bool:
    """Whether a pre-hook ran on this leaf call's input: its own, or one of a container around it."""
    return hooked[0] > 0 or any(m._forward_pre_hooks for m in modules)


def _replayable(modules: tuple[Module, ...], before: list[dict], args: tuple, kwargs: dict, out: Any) -> _Call | None:
    """The record of a call, or None where replaying it could differ from running it."""
    if (any(m.training for m in modules) or kwargs or len(args) != 1 or not isinstance(args[0], Tensor)
            or not isinstance(out, Tensor)):
        return None
    x = args[0]
    effects = tuple({k: v for k, v in m.__dict__.items() if b.get(k, _MISSING) is not v}
                    for m, b in zip(modules, before, strict=True))
    call = _Call(modules, _state(modules), effects, x.data, x.requires_grad, None, "", None, ())
    if out is x:  # the identity (eval dropout)
        return call
    call.output, call.op, node = out.data, out._op, out._node
    if node is None:
        return None if x.requires_grad else call
    if not node.inputs or node.inputs[0] is not graph_input(x) or any(isinstance(i, Node) for i in node.inputs[1:]):
        return None  # several ops, or an op that also reads another computed tensor
    # The node's own closure, kept here: the graph frees it after its backward pass. It reads only
    # the gradient and the arrays it saved, so it serves every replayed pass.
    call.backward, call.others = node.backward, node.inputs[1:]
    return call


def _same_values(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(backend.xp(a).array_equal(a, b))


def _replay(call: _Call, modules: tuple[Module, ...], args: tuple, kwargs: dict) -> Tensor | None:
    """The recorded output for this call, in the new graph; None where the call is not the recorded one."""
    if (not _same(call.modules, modules) or any(m.training for m in modules) or kwargs or len(args) != 1
            or not isinstance(args[0], Tensor) or not _same(_state(modules), call.state)):
        return None
    x = args[0]
    if x.requires_grad != call.needs_grad or not _same_values(x.data, call.input):
        return None
    for module, effects in zip(modules, call.effects, strict=True):
        for name, value in effects.items():
            object.__setattr__(module, name, value)
    if call.output is None:
        return x
    if call.backward is None:
        return Tensor.from_op(call.output, (), lambda g: (), call.op)
    parents = (x,) + tuple(_NO_GRAD if t is None else t for t in call.others)
    return Tensor.from_op(call.output, parents, call.backward, call.op)
