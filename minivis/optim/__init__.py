"""Optimisers: SGD (momentum, Nesterov, weight decay), Adam, a step learning-rate schedule, and an
adapter that lets SciPy's L-BFGS-B drive tensors (an image being optimised)."""

from minivis.optim.lbfgs import ScipyAdapter, minimize_lbfgs
from minivis.optim.optimizers import SGD, Adam, Optimizer, StepLR

__all__ = ["SGD", "Adam", "Optimizer", "ScipyAdapter", "StepLR", "minimize_lbfgs"]
