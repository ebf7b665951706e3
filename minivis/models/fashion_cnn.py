"""``fashion_cnn``: a small VGG-style network trained by minivis on Fashion-MNIST.

Two blocks of two 3x3 convolutions (32 then 64 channels) each followed by a 2x2 max-pool (so a
DeconvNet has switches to unpool), then a 128-unit hidden layer and 10 logits::

    1x28x28 -> [conv3-32, relu, conv3-32, relu, pool2] -> 32x14x14
            -> [conv3-64, relu, conv3-64, relu, pool2] -> 64x7x7 -> fc128, relu, dropout -> fc10

Train it with ``minivis train fashion_cnn`` (see ``minivis.train``).
"""

from __future__ import annotations

from minivis.autograd import Tensor
from minivis.data.datasets import FASHION_MNIST_CLASSES
from minivis.models.base import ImageClassifier
from minivis.nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential

FASHION_MEAN = 0.2860  # pixel statistics of the Fashion-MNIST training set, on [0, 1]
FASHION_STD = 0.3530


class FashionCNN(ImageClassifier):
    mean, std = (FASHION_MEAN,), (FASHION_STD,)
    input_size = (28, 28)
    resize_size = 28
    in_channels = 1
    labels = list(FASHION_MNIST_CLASSES)

    def __init__(self, widths: tuple[int, int] = (32, 64), hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        a, b = widths
        self.features = Sequential(
            Conv2d(1, a, 3, padding=1), ReLU(), Conv2d(a, a, 3, padding=1), ReLU(), MaxPool2d(2),
            Conv2d(a, b, 3, padding=1), ReLU(), Conv2d(b, b, 3, padding=1), ReLU(), MaxPool2d(2),
        )
        self.flatten = Flatten()
        self.classifier = Sequential(Linear(b * 7 * 7, hidden), ReLU(), Dropout(dropout), Linear(hidden, 10))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if x.shape[2:] != (28, 28):
            raise ValueError(f"FashionCNN: input must be 28x28, got {x.shape[2]}x{x.shape[3]}")
        return self.classifier(self.flatten(self.features(x)))
