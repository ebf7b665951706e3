"""Every differentiable op, forward and backward side by side (``mv.F``, like ``torch.nn.functional``).

Modules: ``math`` (elementwise, reductions, shape, matmul), ``activation`` (the ReLU family and
its backward rules, sigmoid, tanh), ``conv`` (conv2d, conv_transpose2d), ``pool`` (max-pool with
switches, unpool, average and adaptive pools), ``linear``, ``dropout``, ``norm`` (batch, instance,
local response), ``loss`` (softmax, log_softmax, cross_entropy, mse_loss), ``resize``
(interpolate, pad).
"""

from minivis.functional.activation import leaky_relu, relu, relu6, sigmoid, tanh
from minivis.functional.math import (
    abs,
    add,
    clip,
    concat,
    div,
    exp,
    flatten,
    getitem,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    pow,
    reshape,
    sqrt,
    sub,
    sum,
    transpose,
)

# (helpers: add one import line per module below, keeping the list sorted by module)
