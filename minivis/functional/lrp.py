"""The LRP rules' arithmetic: what a layer sends back when relevance, not a gradient, flows down.

A layer ``z_j = sum_i x_i w_ij + b_j`` (a conv2d, a linear layer, an average pool with fixed
weights) receives the relevance ``R_j`` of its outputs and shares it among its inputs in
proportion to their contributions ``z_ij = x_i w_ij`` (Bach et al. 2015; Montavon et al. 2019,
"Layer-Wise Relevance Propagation: An Overview"):

    R_i = sum_j  z_ij / z_j  R_j  =  x_i * (W^T (R / z))_i

Every rule is that formula with other contributions in the numerator and denominator, and each
is computed the same way: one forward of the layer (with modified inputs or weights) for the
denominator ``z``, one *adjoint* (the layer's input-gradient, ``W^T s``) for ``s = R / z``, one
elementwise product. ``forward(x, w, b)`` and ``adjoint(s, w)`` are the op's own array functions,
so conv2d, linear and the pools share this page.

=================  ============================================================================
rule               R_i =
=================  ============================================================================
zero (LRP-0)       x_i (W^T (R / z))_i, with 0/0 read as 0
epsilon            the same with z_j + eps * sign(z_j) (absorbs weak or contradictory relevance)
gamma              (x^+ (W + g W^+) + x^- (W + g W^-)) for z_j > 0 (and the mirror for z_j < 0),
                   each over its own sum: positive evidence counts (1 + gamma) times
zplus              alpha_beta with alpha = 1, beta = 0
alpha_beta         alpha * (positive share) - beta * (negative share), alpha - beta = 1
zbox               (x w - l w^+ - h w^-) / sum_i (x w - l w^+ - h w^-): pixels bounded by [l, h]
flat               1 / (number of inputs in the window), relevance spread evenly
wsquare            w_ij^2 / sum_i w_ij^2 (the input's value plays no part)
=================  ============================================================================

Where the input can be negative (the first layer), zplus, alpha_beta and gamma split it into
x^+ and x^- (Zennit's generalisation; the same as the papers for x >= 0). The biases belong to
the denominators as in Zennit: the full bias in z, its positive part in z^+ terms of x^+, none in
the x^- terms; flat and wsquare use no bias (the papers' rules; Zennit's WSquare keeps b^2 unless
told ``zero_params='bias'``). ``stabilize`` adds ``s * sign(z)`` (+s at 0), as Zennit does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minivis import backend
from minivis.rules import LRPRule

Forward = Callable[[Any, Any, Any], Any]   # (x, w, b) -> z
Adjoint = Callable[[Any, Any], Any]        # (s, w) -> W^T s, shaped like x


def stabilize(z: Any, eps: float) -> Any:
    """z + eps * sign(z), with sign(0) = +1: never 0 for eps > 0, and |z| only grows."""
    xp = backend.xp(z)
    return z + eps * (xp.sign(z) + (z == 0))


def safe_divide(r: Any, z: Any) -> Any:
    """r / z with 0 where z == 0 (LRP-0: an output that received nothing sends nothing)."""
    xp = backend.xp(z)
    nonzero = z != 0
    return xp.where(nonzero, r / xp.where(nonzero, z, 1), 0)


def _pos(a: Any) -> Any:
    return None if a is None else backend.xp(a).maximum(a, 0)


def _neg(a: Any) -> Any:
    return None if a is None else backend.xp(a).minimum(a, 0)


def affine_relevance(rule: LRPRule, relevance: Any, x: Any, w: Any, b: Any, z: Any, forward: Forward,
                     adjoint: Adjoint) -> Any:
    """The relevance of a layer's input x, given that of its output, by ``rule``.

    relevance: (N, C_out, ...) the output's relevance; z: a function returning the layer's forward
    output, called only by the rules that read it (conv and linear recompute it: the graph does
    not keep layer outputs, see ``minivis/autograd.py``);
    x: its input; w, b: its weight and bias (``b`` may be None; ``w`` is None for the pools);
    ``forward(x, w, b)`` computes the layer (``b=None``: no bias), ``adjoint(s, w)`` its
    input-gradient. Returns an array shaped like x.
    """
    name, xp = rule.name, backend.xp(x)
    if name in ("zero", "epsilon", "norm", "gamma"):  # the rules that read the output
        z = z()
    if name in ("zero", "epsilon", "norm"):
        eps = rule.epsilon if name == "epsilon" else rule.stabilizer
        s = safe_divide(relevance, z) if name == "zero" else relevance / stabilize(z, eps)
        return x * adjoint(s, w)
    if name in ("flat", "wsquare"):
        w_mod = xp.ones_like(w) if name == "flat" else w * w
        z_mod = forward(xp.ones_like(x), w_mod, None)
        return adjoint(relevance / stabilize(z_mod, rule.stabilizer), w_mod)
    if name == "zbox":
        low = xp.broadcast_to(xp.asarray(rule.low, dtype=x.dtype), x.shape)
        high = xp.broadcast_to(xp.asarray(rule.high, dtype=x.dtype), x.shape)
        w_pos, w_neg = _pos(w), _neg(w)
        z_box = forward(x, w, None) - forward(low, w_pos, None) - forward(high, w_neg, None)
        s = relevance / stabilize(z_box, rule.stabilizer)
        return x * adjoint(s, w) - low * adjoint(s, w_pos) - high * adjoint(s, w_neg)
    if name in ("zplus", "alpha_beta"):
        alpha, beta = (1.0, 0.0) if name == "zplus" else (rule.alpha, rule.beta)
        result = alpha * _signed_share(relevance, x, _pos(w), _neg(w), _pos(b), forward, adjoint, rule.stabilizer)
        if beta:
            result = result - beta * _signed_share(relevance, x, _neg(w), _pos(w), _neg(b), forward, adjoint,
                                                   rule.stabilizer)
        return result
    if name == "gamma":
        g = rule.gamma
        w_up, w_down = w + g * _pos(w), w + g * _neg(w)     # favour positive / negative weights
        b_up = None if b is None else b + g * _pos(b)
        b_down = None if b is None else b + g * _neg(b)
        up = _signed_share(relevance * (z > 0), x, w_up, w_down, b_up, forward, adjoint, rule.stabilizer)
        down = _signed_share(relevance * (z < 0), x, w_down, w_up, b_down, forward, adjoint, rule.stabilizer)
        return up + down
    raise ValueError(f"lrp: rule {name!r} does not apply to a weighted layer")


def _signed_share(relevance: Any, x: Any, w_for_pos: Any, w_for_neg: Any, b: Any, forward: Forward,
                  adjoint: Adjoint, stabilizer: float) -> Any:
    """R shared by the contributions x^+ w_for_pos + x^- w_for_neg (+ b), each over their sum:

        z = x^+ w_for_pos + b + x^- w_for_neg,   R_i = x^+_i (W_for_pos^T s)_i + x^-_i (W_for_neg^T s)_i,  s = R / z

    Inputs that are never negative (every layer after a rectifier) skip the x^- half: half the work.
    """
    xp = backend.xp(x)
    x_pos = xp.maximum(x, 0)
    has_negative = bool((x < 0).any())
    z = forward(x_pos, w_for_pos, b)
    if has_negative:
        x_neg = xp.minimum(x, 0)
        z = z + forward(x_neg, w_for_neg, None)
    s = relevance / stabilize(z, stabilizer)
    result = x_pos * adjoint(s, w_for_pos)
    if has_negative:
        result = result + x_neg * adjoint(s, w_for_neg)
    return result


def elementwise_relevance(rule: LRPRule, relevance: Any, x: Any, z: Any, gradient: Callable[[Any], Any]) -> Any:
    """An op with one output per input (batch norm in eval, a rectifier): ``pass`` hands R on unchanged,
    ``epsilon`` shares it as x * (dz/dx) * R / (z + eps sign z) (the z-rule of ``y = a x + c``),
    ``gradient`` is the ordinary backward ``gradient(R)``. ``z``: a function returning the op's output
    (only ``epsilon`` calls it)."""
    if rule.name == "pass":
        return relevance
    if rule.name == "epsilon":
        return x * gradient(relevance / stabilize(z(), rule.epsilon))
    return gradient(relevance)


def sum_relevance(rule: LRPRule, relevance: Any, a: Any, b: Any, z: Any) -> tuple[Any, Any]:
    """z = a + b (a residual connection): each term gets R in proportion to its share of z
    (Zennit's Norm rule on its Sum layer; ``epsilon`` with the rule's epsilon; ``zero``: 0/0 as 0)."""
    if rule.name == "zero":
        s = safe_divide(relevance, z)
    else:
        s = relevance / stabilize(z, rule.epsilon if rule.name == "epsilon" else rule.stabilizer)
    return a * s, b * s
