"""Module and Parameter: the PyTorch-style container that owns weights and sub-layers.

A Module registers its ``Parameter`` attributes, sub-``Module`` attributes and buffers (arrays
such as batch-norm running statistics) in insertion order, so ``state_dict()`` produces
PyTorch's dotted key names (``"features.0.weight"``) and ``load_state_dict`` accepts files
written by PyTorch. Layers are addressed by their dotted prefix (``model.get_submodule("features.3")``).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor
from minivis.validate import check_callable

Observer = Callable[[Any, Callable[..., Any], tuple, dict], Any]
_OBSERVER: ContextVar[Observer | None] = ContextVar("minivis_forward_observer", default=None)


@contextmanager
def observe_forward(observer: Observer) -> Iterator[None]:
    """Within the block, every module's forward runs as ``observer(key, forward, args, kwargs)``.

    ``key`` is the module, or ``(act, pool)`` for a rectifier and max-pool that run fused; the
    observer must return what ``forward(*args, **kwargs)`` would. ``ForwardReplay`` uses this seam
    to record a pass and hand back unchanged calls; forward pre-hooks still run before it (``args``
    are what they left) and forward hooks after it.
    """
    check_callable(observer, "observe_forward", "observer")
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def call_forward(key: Any, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``forward(*args, **kwargs)``, through the observer of ``observe_forward`` when there is one."""
    observer = _OBSERVER.get()
    return forward(*args, **kwargs) if observer is None else observer(key, forward, args, kwargs)


class Parameter(Tensor):
    """A tensor that is a learnable weight of a Module (``requires_grad=True`` by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class HookHandle:
    """Returned by ``register_forward_hook`` and ``register_forward_pre_hook``; ``remove()`` unregisters
    the hook (also on leaving a ``with`` block)."""

    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class Module:
    """Base class of every layer and model. Subclasses define ``forward``."""

    _next_hook_id = 0

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (and copying) leaves the forward hooks and pre-hooks behind: a hook belongs to the
        call in this process that registered it. A Dask worker may send its copy of a model to another
        worker while a pass has hooks on it; the copy must not arrive with them (they would fire there)."""
        state = dict(self.__dict__)
        state["_forward_hooks"] = OrderedDict()
        state["_forward_pre_hooks"] = OrderedDict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_forward_pre_hooks", OrderedDict())  # pickled before pre-hooks existed

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: Any) -> None:
        """A non-learnable array that belongs in the state dict (e.g. running statistics)."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def _set_buffer(self, name: str, array: Any) -> None:
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        for prefix, module in self.named_modules():
            for name, buf in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), buf

    def get_submodule(self, name: str) -> Module:
        """The layer at dotted path ``name`` (``""`` is the model itself)."""
        if not isinstance(name, str):
            raise TypeError(f"layer: expected a dotted layer name (str), got {type(name).__name__}")
        if name == "":
            return self
        module: Module = self
        for part in name.split("."):
            if part not in module._modules:
                raise ValueError(f"layer: {name!r} is not a layer of {type(self).__name__}; "
                                 f"known layers: {', '.join(self.layer_names()[:40])}")
            module = module._modules[part]
        return module

    def layer_names(self) -> list[str]:
        """Every addressable layer name (the dotted state_dict prefixes)."""
        return [name for name, _ in self.named_modules() if name]

    # ------------------------------------------------------------------ modes, devices
    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str) -> Module:
        """Move every parameter and buffer to ``device`` ("cpu" or "gpu") in place."""
        backend.check_device(device)
        for module in self.modules():
            for param in module._parameters.values():
                param.data = backend.to_device(param.data, device)  # same object: optimisers keep working
                param.grad = None if param.grad is None else backend.to_device(param.grad, device)
            for name, buf in module._buffers.items():
                module._set_buffer(name, backend.to_device(buf, device))
        return self

    def astype(self, dtype: Any) -> Module:
        """Cast every floating parameter and buffer to ``dtype`` in place (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype.type not in backend.FLOAT_DTYPES:
            raise TypeError(f"astype: dtype must be float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                param.data = param.data.astype(dtype)
                param.grad = None
            for name, buf in module._buffers.items():
                if buf.dtype.kind == "f":
                    module._set_buffer(name, buf.astype(dtype))
        return self

    def double(self) -> Module:
        """Float64 weights, as ``torch.nn.Module.double()`` (gradient checks use this)."""
        return self.astype(np.float64)

    def float(self) -> Module:
        return self.astype(np.float32)

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def requires_grad_(self, flag: bool = True) -> Module:
        """Freeze (False) or unfreeze the weights: visualisation methods optimise the image only."""
        for param in self.parameters():
            param.requires_grad = bool(flag)
        return self

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers as NumPy arrays under PyTorch's dotted key names."""
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for prefix, module in self.named_modules():  # PyTorch's order: each module's params, then buffers
            dot = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                state[dot + name] = np.array(backend.to_device(param.data, "cpu"), copy=True)
            for name, buf in module._buffers.items():
                state[dot + name] = np.array(backend.to_device(buf, "cpu"), copy=True)
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy ``state`` into the parameters and buffers, all or nothing.

        Every key, shape and dtype is checked, and every array converted to its destination's
        dtype, before anything is written: on any error the model is unchanged. Object, string,
        complex and record arrays are refused; so are batch-norm running statistics that are not
        finite or a negative running variance (they would turn every output into NaN). NaN or
        infinite parameters load with a warning (a diverged checkpoint is still worth inspecting).
        ``strict=False`` ignores missing and unexpected keys (shapes are always checked).
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state).__name__}")
        own = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = {**{k: v.shape for k, v in own.items()}, **{k: np.shape(v) for k, v in buffers.items()}}
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
        arrays, non_finite = {}, []
        for key, value in state.items():
            if key not in expected:
                continue
            target = own[key].dtype if key in own else np.asarray(backend.to_device(buffers[key], "cpu")).dtype
            array, problem = _converted(value, tuple(expected[key]), np.dtype(target))
            if problem is None and array.dtype.kind == "f" and not np.isfinite(array).all():
                if key.rpartition(".")[2] in ("running_mean", "running_var"):
                    problem = "batch-norm statistics must be finite, got NaN or infinite values"
                else:
                    non_finite.append(key)
            if problem is None and key.rpartition(".")[2] == "running_var" and (array < 0).any():
                problem = f"a running variance must be >= 0, got a minimum of {array.min():.3g}"
            if problem is not None:
                problems.append(f"{key}: {problem}")
            arrays[key] = array
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        if non_finite:
            warnings.warn(f"load_state_dict into {type(self).__name__}: parameters with NaN or infinite values: "
                          f"{non_finite[:20]}", RuntimeWarning, stacklevel=2)
        modules = dict(self.named_modules())
        for key, array in arrays.items():  # nothing below can fail on a CPU model: every check is done
            owner_name, _, attr = key.rpartition(".")
            if key in own:
                own[key].data = backend.to_device(array, own[key].device)
            else:
                modules[owner_name]._set_buffer(attr, backend.to_device(array, backend.device_of(buffers[key])))

    # ------------------------------------------------------------------ forward and hooks
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                replaced = hook(self, args)
                if replaced is not None:
                    args = replaced if isinstance(replaced, tuple) else (replaced,)
        out = call_forward(self, self.forward, args, kwargs)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, args, out)
            if replaced is not None:
                out = replaced
        return out

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> HookHandle:
        """Call ``hook(module, args)`` before every forward, as PyTorch does.

        ``args`` are the positional arguments (keyword arguments pass untouched); a non-None return
        replaces them: a tuple as it is, any other value as the single argument. Pre-hooks run in
        registration order, each on what the previous one left, and forward hooks see the result.
        """
        check_callable(hook, "Module.register_forward_pre_hook", "hook", "(module, args) -> None or new args")
        return self._add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> HookHandle:
        """Call ``hook(module, args, output)`` after every forward; a non-None return replaces the output."""
        check_callable(hook, "Module.register_forward_hook", "hook", "(module, args, output) -> None or a new output")
        return self._add_hook(self._forward_hooks, hook)

    @staticmethod
    def _add_hook(hooks: OrderedDict[int, Callable], hook: Callable) -> HookHandle:
        Module._next_hook_id += 1
        hooks[Module._next_hook_id] = hook
        return HookHandle(hooks, Module._next_hook_id)

    def _hooked(self) -> bool:
        """Whether a forward hook or pre-hook is registered here: a fused pair then runs as two modules."""
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


def _converted(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, str | None]:
    """``value`` as a CPU array of ``shape`` in ``dtype`` (a private copy), or None and why not."""
    try:
        array = np.asarray(backend.to_device(value.data if isinstance(value, Tensor) else value, "cpu"))
    except (TypeError, ValueError) as err:
        return None, f"expected an array, got {type(value).__name__} ({err})"
    if array.dtype.kind not in "biuf":
        return None, f"expected a numeric array, got dtype {array.dtype}"
    if tuple(array.shape) != shape:
        return None, f"expected shape {shape}, got {tuple(array.shape)}"
    if dtype.kind in "iu" and array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            return None, f"expected whole numbers for a {dtype} buffer, got non-integer values"
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype)  # always a copy: the caller's array is never shared
    if dtype.kind == "f" and array.dtype.kind == "f" and np.isfinite(array).all() and not np.isfinite(converted).all():
        return None, f"values overflow {dtype} (largest magnitude {np.abs(array).max():.3g})"
    if dtype.kind in "iu" and (converted != array).any():
        return None, f"values do not fit {dtype}"
    return converted, None
