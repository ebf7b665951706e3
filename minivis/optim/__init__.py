"""Optimisers: SGD (momentum, Nesterov, weight decay), Adam, step and cosine learning-rate schedules, and an
adapter that lets SciPy's L-BFGS-B drive tensors (an image being optimised)."""

from minivis.optim.lbfgs import ScipyAdapter, minimize_lbfgs
from minivis.optim.optimizers import SGD, Adam, CosineLR, Optimizer, StepLR

__all__ = ["SGD", "Adam", "CosineLR", "Optimizer", "ScipyAdapter", "StepLR", "minimize_lbfgs"]
