"""Optimisers: SGD (momentum, Nesterov, weight decay), Adam, and a step learning-rate schedule."""

from minivis.optim.optimizers import SGD, Adam, Optimizer, StepLR

__all__ = ["SGD", "Adam", "Optimizer", "StepLR"]
