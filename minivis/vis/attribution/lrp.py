"""Layer-wise relevance propagation (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation"; Montavon et al. 2019, "Layer-Wise
Relevance Propagation: An Overview").

LRP explains a score f_c(x) by sending it back through the network layer by layer, each layer
sharing the relevance of its outputs among its inputs, so that (for the conserving rules)

    sum_i R_i(input) = ... = sum_j R_j(layer) = ... = f_c(x).

In minivis LRP is a *backward rule*, like guided backprop: ``with backward_rule(LRPRules(...))``
makes every conv, linear, pooling, batch-norm and sum op send back relevance by its rule (the
arithmetic: ``minivis/functional/lrp.py``) and every rectifier pass it on. ``lrp`` seeds the
backward pass with the target logit itself, so the input relevance sums to it.

A *composite* assigns the rules by layer type and position (as Zennit's composites, whose names
and defaults these follow; "first" is the first conv2d/linear layer in ``named_modules`` order):

===============================  ===============  ===============  ============
composite                        first layer      other convs      linear
===============================  ===============  ===============  ============
zero (also pools and sums)       LRP-0            LRP-0            LRP-0
epsilon                          epsilon          epsilon          epsilon
epsilon_plus                     z+               z+               epsilon
epsilon_gamma_box                z^B (conv)       gamma            epsilon
epsilon_alpha2_beta1             alpha2-beta1     alpha2-beta1     epsilon
epsilon_plus_flat                flat (any)       z+               epsilon
epsilon_alpha2_beta1_flat        flat (any)       alpha2-beta1     epsilon
===============================  ===============  ===============  ============

Every composite uses the norm rule for average pools and sums (residual connections), winner-takes-
all for max-pools and passes relevance through rectifiers and (uncanonised) batch norm. ``rules``
overrides any layer by name; ``lrp_composite(name, ...)`` builds one with other parameters. Batch
norm is first folded into the convolution before it (``canonized``): the network computes the same
function, but the rules then see one affine layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from minivis import backend
from minivis.autograd import Tensor, no_grad
from minivis.nn import BatchNorm2d, Conv2d, Linear, Parameter
from minivis.nn.module import Module
from minivis.nn.norm import BatchNorm1d
from minivis.rules import LRPRule, LRPRules, as_lrp_rule, backward_rule
from minivis.validate import check_bool, check_float
from minivis.vis.common import Target, as_batch, frozen, target_scores, unbatch

COMPOSITES = ("zero", "epsilon", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus_flat",
              "epsilon_alpha2_beta1_flat")


class Composite:
    """Rules by layer type and position: ``first`` for the first layer of ``first_kinds``, ``conv`` for
    the other conv2d layers, ``linear`` for the other linear layers, ``kinds`` for the parameter-free
    ops ({"avg_pool2d": ..., "max_pool2d": ..., "add": ..., "batch_norm": ..., "relu": ...})."""

    def __init__(self, conv: str | LRPRule, linear: str | LRPRule, first: str | LRPRule | None = None,
                 first_kinds: tuple[type, ...] = (Conv2d,), kinds: Mapping[str, str | LRPRule] | None = None,
                 name: str = "custom") -> None:
        self.conv = as_lrp_rule(conv, "Composite: conv")
        self.linear = as_lrp_rule(linear, "Composite: linear")
        self.first = None if first is None else as_lrp_rule(first, "Composite: first")
        self.first_kinds, self.kinds, self.name = first_kinds, dict(kinds or {}), name

    def assign(self, model: Module) -> dict[str, LRPRule]:
        """{layer name: rule} for every Conv2d and Linear layer of ``model``, in ``named_modules`` order."""
        out: dict[str, LRPRule] = {}
        first_seen = False
        for name, module in model.named_modules():
            if not isinstance(module, Conv2d | Linear):
                continue
            if self.first is not None and not first_seen and isinstance(module, self.first_kinds):
                out[name], first_seen = self.first, True
            else:
                out[name] = self.conv if isinstance(module, Conv2d) else self.linear
        return out

    def __repr__(self) -> str:
        return f"Composite({self.name!r}: first={self.first}, conv={self.conv}, linear={self.linear})"


def lrp_composite(name: str, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6, low: Any = None,
              high: Any = None) -> Composite:
    """One of ``COMPOSITES`` with its parameters (Zennit's defaults). ``low``/``high``: z^B's input bounds,
    needed by ``epsilon_gamma_box`` (numbers or arrays broadcastable to one image (C, H, W))."""
    if not isinstance(name, str) or name not in COMPOSITES:
        raise ValueError(f"lrp: composite must be one of {COMPOSITES} or a Composite, got {name!r}")
    eps = LRPRule("epsilon", epsilon=epsilon)
    plus = LRPRule("zplus", stabilizer=stabilizer)
    ab = LRPRule("alpha_beta", alpha=2.0, beta=1.0, stabilizer=stabilizer)
    flat = LRPRule("flat", stabilizer=stabilizer)
    kinds = {"avg_pool2d": LRPRule("norm", stabilizer=stabilizer), "add": LRPRule("norm", stabilizer=stabilizer)}
    both = (Conv2d, Linear)
    if name == "zero":  # LRP-0 everywhere, pools and sums included: gradient x input on a bias-free ReLU net
        return Composite("zero", "zero", kinds={"avg_pool2d": "zero", "add": "zero"}, name=name)
    if name == "epsilon":
        return Composite(eps, eps, kinds=kinds, name=name)
    if name == "epsilon_plus":
        return Composite(plus, eps, kinds=kinds, name=name)
    if name == "epsilon_alpha2_beta1":
        return Composite(ab, eps, kinds=kinds, name=name)
    if name == "epsilon_plus_flat":
        return Composite(plus, eps, flat, both, kinds=kinds, name=name)
    if name == "epsilon_alpha2_beta1_flat":
        return Composite(ab, eps, flat, both, kinds=kinds, name=name)
    if low is None or high is None:
        raise ValueError("lrp: composite 'epsilon_gamma_box' needs low and high, the smallest and largest possible "
                         "input values (a model with mean/std gets them from its preprocessing)")
    box = LRPRule("zbox", low=low, high=high, stabilizer=stabilizer)
    return Composite(LRPRule("gamma", gamma=gamma, stabilizer=stabilizer), eps, box, (Conv2d,), kinds=kinds,
                     name=name)


def input_bounds(model: Module, batch: Any) -> tuple[Any, Any]:
    """The model input of pixel 0 and pixel 1, per channel, (C, 1, 1) arrays: (0 - mean) / std, (1 - mean) / std."""
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if mean is None or std is None:
        return None, None
    xp = backend.xp(batch)
    channels = batch.shape[1]
    mean = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
    std = np.broadcast_to(np.asarray(std, np.float64), (channels,))
    low, high = (-mean / std).reshape(-1, 1, 1), ((1 - mean) / std).reshape(-1, 1, 1)
    return xp.asarray(low, dtype=batch.dtype), xp.asarray(high, dtype=batch.dtype)


# --------------------------------------------------------------------------- canonisation
def batch_norm_pairs(model: Module, batch: Any) -> list[tuple[str, Module, str, Module]]:
    """(layer name, layer, bn name, bn) for each batch norm whose input is the direct output of a
    Conv2d or Linear layer, found by tracing one forward pass of ``batch`` (no graph)."""
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, BatchNorm2d | BatchNorm1d)]
    if not norms:
        return []
    made_by: dict[int, tuple[str, Module]] = {}
    pairs: list[tuple[str, Module, str, Module]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, Conv2d | Linear):
            def record(mod, inputs, output, name=name):
                made_by[id(output)] = (name, mod)
            handles.append(module.register_forward_hook(record))
        elif isinstance(module, BatchNorm2d | BatchNorm1d):
            def pair(mod, inputs, output, name=name):
                source = made_by.get(id(inputs[0]))
                if source is not None:
                    pairs.append((source[0], source[1], name, mod))
            handles.append(module.register_forward_hook(pair))
    try:
        with no_grad():
            model(Tensor(batch[:1]))
    finally:
        for handle in handles:
            handle.remove()
    return pairs


@contextmanager
def canonized(model: Module, batch: Any) -> Iterator[list[str]]:
    """Fold every batch norm into the conv/linear layer that feeds it, for the duration of the block:

        BN(conv(x)) = s * (W x + b - mu) + beta,   s = gamma / sqrt(var + eps)
                    = (s W) x + (s (b - mu) + beta)

    so the layer gets weight ``s W`` and bias ``s (b - mu) + beta`` and the batch norm becomes the
    identity (mean 0, variance 1, eps 0, gamma 1, beta 0: exactly ``x``). The output is unchanged up
    to rounding; everything is restored afterwards. Yields the names of the folded batch norms.
    """
    saved: list[tuple[Module, dict[str, Any]]] = []
    folded: list[str] = []
    try:
        for _, layer, bn_name, bn in batch_norm_pairs(model, batch):
            if bn.training:
                raise ValueError(f"lrp: batch norm {bn_name!r} is in training mode; canonisation needs eval mode")
            saved.append((layer, {"weight": layer.weight, "bias": layer.bias}))
            saved.append((bn, {"weight": bn.weight, "bias": bn.bias, "eps": bn.eps,
                               "running_mean": bn.running_mean, "running_var": bn.running_var}))
            xp = backend.xp(layer.weight.data)
            w = layer.weight.data
            scale = (1.0 / xp.sqrt(xp.asarray(bn.running_var, dtype=np.float64) + bn.eps))
            if bn.weight is not None:
                scale = scale * bn.weight.data
            bias = layer.bias.data if layer.bias is not None else xp.zeros(w.shape[0], w.dtype)
            new_bias = scale * (bias - bn.running_mean) + (bn.bias.data if bn.bias is not None else 0)
            layer.weight = Parameter((w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype), False)
            layer.bias = Parameter(new_bias.astype(w.dtype), False)
            channels = bn.num_features
            bn.register_buffer("running_mean", xp.zeros(channels, w.dtype))
            bn.register_buffer("running_var", xp.ones(channels, w.dtype))
            bn.eps = 0.0
            if bn.weight is not None:
                bn.weight = Parameter(xp.ones(channels, w.dtype), False)
                bn.bias = Parameter(xp.zeros(channels, w.dtype), False)
            folded.append(bn_name)
        yield folded
    finally:
        for module, attrs in reversed(saved):
            for key, value in attrs.items():
                if key.startswith("running_"):
                    module.register_buffer(key, value)
                else:
                    setattr(module, key, value)


# --------------------------------------------------------------------------- the method
def _layer_rules(model: Module, comp: Composite, rules: Mapping[str, Any] | None) -> dict[str, LRPRule]:
    assigned = comp.assign(model)
    for name, rule in (rules or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"lrp: rules must map layer names to rules, got key {name!r}")
        module = model.get_submodule(name) if name in dict(model.named_modules()) else None
        if not isinstance(module, Conv2d | Linear):
            raise ValueError(f"lrp: rules names {name!r}, which is not a Conv2d or Linear layer of the model")
        assigned[name] = as_lrp_rule(rule, f"lrp: layer {name!r}")
    return assigned


def lrp(model: Module, x: Any, target: Target, composite: str | Composite = "epsilon_gamma_box",
        rules: Mapping[str, str | LRPRule] | None = None, canonize: bool = True, epsilon: float = 1e-6,
        gamma: float = 0.25, low: Any = None, high: Any = None) -> Any:
    """The LRP relevance of every input value for the target logit, shaped like x.

    x: (C, H, W) or (N, C, H, W). composite: a name from ``COMPOSITES`` or a ``Composite``; rules:
    {layer name: rule name or ``LRPRule``} overriding it. epsilon, gamma: the epsilon and gamma
    rules' parameters; low, high: z^B's bounds (default: pixel 0 and 1 through the model's
    preprocessing). canonize: fold batch norms into their convolutions first (``canonized``).
    The backward pass starts from the logit itself, so for conserving rules on a bias-free
    network ``relevance.sum() == logit``; biases and epsilon absorb some of it.
    """
    method = "lrp"
    batch, single = as_batch(x, model, method)
    canonize = check_bool(canonize, method, "canonize")
    gamma = check_float(gamma, method, "gamma", low=0.0)
    epsilon = check_float(epsilon, method, "epsilon", low=0.0)
    if isinstance(composite, str):
        if low is None or high is None:
            low_default, high_default = input_bounds(model, batch)
            low = low_default if low is None else low
            high = high_default if high is None else high
        comp = lrp_composite(composite, epsilon=epsilon, gamma=gamma, low=low, high=high)
    elif isinstance(composite, Composite):
        comp = composite
    else:
        raise TypeError(f"{method}: composite must be a composite name or a Composite, got {type(composite).__name__}")
    with frozen(model), (canonized(model, batch) if canonize else nullcontext()):
        assigned = _layer_rules(model, comp, rules)
        by_weight = {model.get_submodule(name).weight: (name, rule) for name, rule in assigned.items()}
        rule_map = LRPRules(by_weight, comp.kinds)
        xt = Tensor(batch, requires_grad=True)
        scores = target_scores(model(xt), target, method)
        if not scores.requires_grad:
            raise ValueError(f"{method}: the target score does not depend on the input")
        with backward_rule(rule_map):
            scores.backward(scores.data)  # relevance at the top = the logit being explained
        relevance = xt.grad if xt.grad is not None else backend.xp(batch).zeros_like(batch)
    return unbatch(relevance, single)
