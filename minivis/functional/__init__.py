"""Every differentiable op, forward and backward side by side (``mv.F``, like ``torch.nn.functional``).

Modules: ``math`` (elementwise, reductions, shape, matmul), ``activation`` (the ReLU family and its
backward rules, written out in ``relu_backward_reference``; sigmoid, tanh), ``conv`` (conv2d,
conv_transpose2d, and ``conv_algorithm``, the switch between their algorithms), ``pool`` (max-pool
with switches, unpool, average and adaptive pools), ``linear``, ``dropout``, ``norm`` (batch,
instance, local response; eval batch norm and the ReLU after it as one op, and for inference with
the convolution before them too), ``fused`` (a convolution, its ReLU and the 2x2 max-pool after
it as one op for inference), ``gram`` (Gram matrices of feature maps), ``loss`` (softmax,
log_softmax, cross_entropy, mse_loss), ``resize`` (interpolate, pad).
"""

from minivis.functional.activation import leaky_relu, relu, relu6, relu_backward_reference, sigmoid, tanh
from minivis.functional.conv import conv2d, conv_algorithm, conv_transpose2d
from minivis.functional.dropout import dropout
from minivis.functional.fused import conv2d_relu, conv2d_relu_max_pool2d
from minivis.functional.gram import gram_matrix
from minivis.functional.linear import linear
from minivis.functional.loss import cross_entropy, log_softmax, mse_loss, softmax
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
from minivis.functional.norm import (
    batch_norm,
    batch_norm_relu,
    conditional_instance_norm,
    conv2d_bn,
    conv2d_bn_relu,
    instance_norm,
    local_response_norm,
)
from minivis.functional.pool import (
    adaptive_avg_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    max_pool2d,
    max_unpool2d,
    relu_max_pool2d,
)
from minivis.functional.resize import interpolate, pad
