"""minivis: learn, study and benchmark how convolutional networks are visualised and explained.

    import minivis as mv
    x = mv.tensor(images, requires_grad=True)
    logits = model(x); logits[0, c].backward()
    with mv.backward_rule("guided"): ...       # or an LRP rule map: mv.vis.lrp(model, x, c, composite=...)
    with mv.conv_algorithm("reference"): ...   # or "im2col", "winograd"; "auto" is the default
    with mv.lean_graph(): ...                  # a graph for the gradient/ReLU rules only: less memory
"""

from minivis import backend, data, functional, io, models, nn, optim, plot, vis
from minivis import functional as F  # noqa: N812 (PyTorch's conventional alias)
from minivis.autograd import Tensor, enable_grad, is_grad_enabled, lean_graph, no_grad, tensor
from minivis.functional.conv import conv_algorithm
from minivis.rules import LRPRule, LRPRules, backward_rule, current_lrp, current_rule

__version__ = "0.1.0"

__all__ = [
    "F", "LRPRule", "LRPRules", "Tensor", "backend", "backward_rule", "conv_algorithm", "current_lrp",
    "current_rule", "data", "enable_grad", "functional", "io", "is_grad_enabled", "lean_graph", "models", "nn",
    "no_grad",
    "optim", "plot", "tensor", "vis",
]
