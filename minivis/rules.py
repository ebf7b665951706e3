"""Backward rules: how ops send their signal back. The ReLU family's three rules, and the LRP rules.

Three classic visualisation methods differ *only* in this one rule. With ``g`` the gradient
arriving from above, ``x`` the rectifier's forward input and ``f'(x)`` its local derivative
(``x > 0`` for ReLU, ``0 < x < 6`` for ReLU6):

============  ==========================  =============================================
rule          sent back                   source
============  ==========================  =============================================
gradient      ``g * f'(x)``               the true gradient (Simonyan et al. 2014 saliency)
guided        ``g * f'(x) * (g > 0)``     guided backprop (Springenberg et al. 2015)
deconvnet     ``g * (g > 0)``             DeconvNet (Zeiler & Fergus 2014): rectify the signal
                                          going down, ignoring the forward input
============  ==========================  =============================================

Inequalities are strict: a tie at 0 sends nothing back. ``guided`` and ``deconvnet`` are not
gradients of anything, so they are used only inside ``with backward_rule(...)``.

The context manager sets the rule that is in force *when backward() runs*; ops read it
through ``current_rule()``. The three formulas, in ten lines of NumPy, are
``relu_backward_reference`` in ``minivis/functional/activation.py``, right below the ReLU ops
that read the rule; the fused kernels (``minivis/kernels/cpu_activation.py``, ``gpu_activation.py``)
compute the same thing in one pass and branch on the codes ``GRADIENT``, ``GUIDED``, ``DECONVNET``.

**LRP rules** (layer-wise relevance propagation, Bach et al. 2015; Montavon et al. 2019) go one
step further: the backward pass carries *relevance* R instead of a gradient, and the conv, linear,
pooling, batch-norm and sum ops send it back by the rule assigned to them, while the rectifiers
pass it through unchanged. ``LRPRule`` names a rule and its parameters (the arithmetic is
``minivis/functional/lrp.py``); an ``LRPRules`` map says which rule each op uses: by the identity of
a layer's weight tensor (so the first conv can differ from the others) and by op kind (pooling,
batch norm, sum, rectifiers). ``with backward_rule(LRPRules(...)):`` puts it in force, exactly as the
three ReLU rules; ``mv.vis.lrp`` builds the map from a composite. Inside it ``current_rule()`` is
``"lrp"`` and ``current_lrp()`` returns the map.

This module imports nothing from minivis, so the kernels may read those codes from it.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

RULES = ("gradient", "guided", "deconvnet")
GRADIENT, GUIDED, DECONVNET = 0, 1, 2
"""The rules as the integer codes the kernels branch on (Numba reads these module globals as constants)."""
RULE_CODES = {"gradient": GRADIENT, "guided": GUIDED, "deconvnet": DECONVNET}

_state = threading.local()


def current_rule() -> str:
    """The rule in force: ``"gradient"`` unless inside ``backward_rule(...)``; ``"lrp"`` under an LRP map."""
    return getattr(_state, "rule", "gradient")


def current_lrp() -> LRPRules | None:
    """The LRP rule map in force, or None outside ``backward_rule(LRPRules(...))``."""
    return getattr(_state, "lrp", None)


def check_rule(rule: str) -> str:
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"backward_rule: rule must be one of {RULES}, got {rule!r}")
    return rule


@contextmanager
def backward_rule(rule: str | LRPRules) -> Iterator[None]:
    """Use ``rule`` for every op that backpropagates inside this block.

    ``rule`` is one of the ReLU rules (``"gradient"``, ``"guided"``, ``"deconvnet"``), an
    ``LRPRules`` map (relevance instead of gradients) or ``"rescale"`` (DeepLIFT's rescale rule: the
    batch holds inputs then their references, and each rectifier sends back ``g * dy/dx``, the
    ratio of output to input *differences* between the two halves; record the forward pass inside
    the block too, since only then do the rectifiers keep their inputs). Example::

        with mv.backward_rule("guided"):
            logits[0, c].backward()   # x.grad is now the guided-backprop map
    """
    lrp = rule if isinstance(rule, LRPRules) else None
    if lrp is None and rule != "rescale" and (not isinstance(rule, str) or rule not in RULES):
        raise ValueError(f"backward_rule: rule must be one of {RULES}, got {rule!r} (or 'rescale' for DeepLIFT, "
                         "or an mv.LRPRules map)")
    name = "lrp" if lrp is not None else rule
    previous = current_rule(), current_lrp()
    _state.rule, _state.lrp = name, lrp
    try:
        yield
    finally:
        _state.rule, _state.lrp = previous


# ----------------------------------------------------------------------------- LRP rules
LRP_RULES: dict[str, tuple[str, ...]] = {
    # name: the parameters it takes (defaults as Zennit's)
    "zero": (),                              # LRP-0: R_i = sum_j x_i w_ij / z_j R_j
    "epsilon": ("epsilon",),                 # LRP-epsilon: z_j + epsilon * sign(z_j) in the denominator
    "gamma": ("gamma", "stabilizer"),        # LRP-gamma: w + gamma * w^+ favours positive contributions
    "zplus": ("stabilizer",),                # z^+: only positive contributions (alpha=1, beta=0)
    "alpha_beta": ("alpha", "beta", "stabilizer"),  # alpha * positive - beta * negative, alpha - beta = 1
    "zbox": ("low", "high", "stabilizer"),   # z^B: the input layer, pixels bounded by [low, high]
    "flat": ("stabilizer",),                 # every input of the window gets an equal share
    "wsquare": ("stabilizer",),              # shares in proportion to w^2
    "norm": ("stabilizer",),                 # parameter-free z-rule for pooling and sums
    "pass": (),                              # relevance passes through unchanged (rectifiers, batch norm)
    "gradient": (),                          # the ordinary backward (max-pool: winner takes all)
}
LRP_DEFAULTS: dict[str, Any] = {"epsilon": 1e-6, "gamma": 0.25, "alpha": 2.0, "beta": 1.0, "stabilizer": 1e-6,
                                "low": None, "high": None}
OP_KINDS = ("conv2d", "linear", "avg_pool2d", "max_pool2d", "batch_norm", "add", "relu")
# Which rules each kind of op can apply: the weighted ops take every weight rule; the others have no weights.
WEIGHT_RULES = ("zero", "epsilon", "gamma", "zplus", "alpha_beta", "zbox", "flat", "wsquare", "gradient")
RULES_FOR_KIND: dict[str, tuple[str, ...]] = {
    "conv2d": WEIGHT_RULES, "linear": WEIGHT_RULES,
    "avg_pool2d": ("norm", "zero", "epsilon", "gradient"),
    "max_pool2d": ("gradient", "norm"),
    "batch_norm": ("pass", "epsilon", "gradient"),
    "add": ("norm", "zero", "epsilon", "gradient"),
    "relu": ("pass", "gradient"),
}


class LRPRule:
    """One LRP rule with its parameters, e.g. ``LRPRule("gamma", gamma=0.25)``.

    epsilon: the epsilon rule's stabiliser (>= 0); gamma (>= 0); alpha, beta (>= 0, alpha - beta = 1,
    so that relevance is conserved); stabilizer: the small positive number the other rules add to
    their denominators (with the sign of the denominator, +1 at 0, as Zennit); low, high: z^B's
    pixel bounds (numbers, or arrays broadcastable to one image (C, H, W)).
    """

    __slots__ = ("name", "epsilon", "gamma", "alpha", "beta", "stabilizer", "low", "high")

    def __init__(self, name: str, **params: Any) -> None:
        if not isinstance(name, str) or name not in LRP_RULES:
            raise ValueError(f"LRPRule: rule must be one of {tuple(LRP_RULES)}, got {name!r}")
        unknown = set(params) - set(LRP_RULES[name])
        if unknown:
            raise TypeError(f"LRPRule: rule {name!r} takes {LRP_RULES[name] or 'no parameters'}, "
                            f"got {sorted(unknown)}")
        self.name = name
        for key, default in LRP_DEFAULTS.items():
            setattr(self, key, params.get(key, default))
        for key in ("epsilon", "gamma", "alpha", "beta", "stabilizer"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError(f"LRPRule: {key} must be a finite number, got {value!r}")
            if value < 0 or (key == "stabilizer" and value == 0):
                raise ValueError(f"LRPRule({name!r}): {key} must be {'> 0' if key == 'stabilizer' else '>= 0'}, "
                                 f"got {value}")
        if name == "alpha_beta" and not math.isclose(self.alpha - self.beta, 1.0, abs_tol=1e-12):
            raise ValueError(f"LRPRule('alpha_beta'): alpha - beta must be 1 (relevance is conserved), "
                             f"got alpha={self.alpha}, beta={self.beta}")
        if name == "zbox" and (self.low is None or self.high is None):
            raise ValueError("LRPRule('zbox'): low and high (the smallest and largest possible input values) "
                             "are required")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in LRP_RULES[self.name]
                          if k not in ("low", "high"))
        return f"LRPRule({self.name!r}{', ' if shown else ''}{shown})"


def as_lrp_rule(rule: str | LRPRule, who: str) -> LRPRule:
    """A rule name (default parameters) or an ``LRPRule`` as an ``LRPRule``."""
    if isinstance(rule, LRPRule):
        return rule
    if isinstance(rule, str):
        if rule not in LRP_RULES:
            raise ValueError(f"{who}: unknown LRP rule {rule!r}; rules: {', '.join(LRP_RULES)}")
        return LRPRule(rule)
    raise TypeError(f"{who}: a rule must be a rule name or an LRPRule, got {type(rule).__name__}")


class LRPRules:
    """The LRP rule of every op in a backward pass: by weight tensor (conv2d, linear, batch_norm layers)
    and by op kind (the parameter-free ops, and a default for weighted ops outside ``by_weight``).

    by_weight: {weight tensor: (layer name, rule)}; by_kind: {op kind: rule}, kinds in ``OP_KINDS``.
    A weighted op whose weight is not in ``by_weight`` uses ``by_kind[kind]``; with neither, its
    backward raises a ValueError naming it (a layer without a rule is a mistake, not a gradient).
    """

    def __init__(self, by_weight: Mapping[Any, tuple[str, str | LRPRule]] | None = None,
                 by_kind: Mapping[str, str | LRPRule] | None = None) -> None:
        self._by_weight: dict[int, tuple[Any, str, LRPRule]] = {}
        for weight, (name, rule) in (by_weight or {}).items():
            self._by_weight[id(weight)] = (weight, name, as_lrp_rule(rule, f"LRPRules: layer {name!r}"))
        self.by_kind: dict[str, LRPRule] = {"relu": LRPRule("pass"), "max_pool2d": LRPRule("gradient"),
                                           "avg_pool2d": LRPRule("norm"), "add": LRPRule("norm"),
                                           "batch_norm": LRPRule("pass")}
        for kind, rule in (by_kind or {}).items():
            if kind not in OP_KINDS:
                raise ValueError(f"LRPRules: op kind must be one of {OP_KINDS}, got {kind!r}")
            self.by_kind[kind] = as_lrp_rule(rule, f"LRPRules: op kind {kind!r}")
        for kind, rule in self.by_kind.items():
            _check_kind(kind, rule, kind)
        for _, name, rule in self._by_weight.values():
            if rule.name not in WEIGHT_RULES and rule.name not in ("pass", "epsilon"):
                raise ValueError(f"LRPRules: layer {name!r} has rule {rule.name!r}, which applies to no weighted op")

    def rule_for(self, kind: str, weight: Any = None) -> LRPRule:
        """The rule of an op of ``kind`` (its weight tensor, if it has one)."""
        entry = self._by_weight.get(id(weight)) if weight is not None else None
        if entry is not None and entry[0] is weight:
            _check_kind(kind, entry[2], f"layer {entry[1]!r}")
            return entry[2]
        rule = self.by_kind.get(kind)
        if rule is None:
            shape = f" with weight shape {tuple(weight.shape)}" if weight is not None else ""
            raise ValueError(f"lrp: a {kind} op{shape} has no rule: give its layer one (by name, or a rule for "
                             f"every {kind} in the composite)")
        return rule

    def layers(self) -> dict[str, LRPRule]:
        """{layer name: rule} of the layers given by weight, in the order given."""
        return {name: rule for _, name, rule in self._by_weight.values()}


def _check_kind(kind: str, rule: LRPRule, where: str) -> None:
    if rule.name not in RULES_FOR_KIND[kind]:
        raise ValueError(f"lrp: {where} is a {kind} op, whose rules are {RULES_FOR_KIND[kind]}; got {rule.name!r}")
