"""Backward rules for the ReLU family: how gradients pass back through a rectifier.

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

This module imports nothing from minivis, so the kernels may read those codes from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

RULES = ("gradient", "guided", "deconvnet")
GRADIENT, GUIDED, DECONVNET = 0, 1, 2
"""The rules as the integer codes the kernels branch on (Numba reads these module globals as constants)."""
RULE_CODES = {"gradient": GRADIENT, "guided": GUIDED, "deconvnet": DECONVNET}

_state = threading.local()


def current_rule() -> str:
    """The rule in force: ``"gradient"`` unless inside ``backward_rule(...)``."""
    return getattr(_state, "rule", "gradient")


def check_rule(rule: str) -> str:
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"backward_rule: rule must be one of {RULES}, got {rule!r}")
    return rule


@contextmanager
def backward_rule(rule: str) -> Iterator[None]:
    """Use ``rule`` for every ReLU-family op that backpropagates inside this block.

    Example::

        with mv.backward_rule("guided"):
            logits[0, c].backward()   # x.grad is now the guided-backprop map
    """
    check_rule(rule)
    previous = current_rule()
    _state.rule = rule
    try:
        yield
    finally:
        _state.rule = previous
