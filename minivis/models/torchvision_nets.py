"""AlexNet (Krizhevsky et al. 2012) and VGG-16/19 (Simonyan & Zisserman 2015) with torchvision's
layer names (``features.0.weight``, ``classifier.6.bias``), so a torchvision ``.pth`` file loads
with ``mv.models.load("vgg16", weights=path)``. No weights ship with minivis (they are hundreds of
MB and need a download); the architectures alone serve benchmarks and user-supplied weights."""

from __future__ import annotations

from minivis.autograd import Tensor
from minivis.models.base import ImageClassifier
from minivis.nn import AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from minivis.validate import check_str

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Gatys et al.'s layers (relu1_1 ... relu5_1 for style, relu4_2 for content), as features.<index>.
VGG_STYLE_LAYERS = {
    "vgg16": (("features.1", "features.6", "features.11", "features.18", "features.25"), "features.20"),
    "vgg19": (("features.1", "features.6", "features.11", "features.20", "features.29"), "features.22"),
}

VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class _TorchvisionClassifier(ImageClassifier):
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    input_size = (224, 224)
    resize_size = 256
    in_channels = 3

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class AlexNet(_TorchvisionClassifier):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = Sequential(
            Conv2d(3, 64, 11, stride=4, padding=2), ReLU(), MaxPool2d(3, 2),
            Conv2d(64, 192, 5, padding=2), ReLU(), MaxPool2d(3, 2),
            Conv2d(192, 384, 3, padding=1), ReLU(),
            Conv2d(384, 256, 3, padding=1), ReLU(),
            Conv2d(256, 256, 3, padding=1), ReLU(), MaxPool2d(3, 2),
        )
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.flatten = Flatten()
        self.classifier = Sequential(
            Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU(),
            Dropout(dropout), Linear(4096, 4096), ReLU(),
            Linear(4096, num_classes),
        )


class VGG(_TorchvisionClassifier):
    def __init__(self, config: str = "vgg16", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if check_str(config, "VGG", "config", tuple(sorted(VGG_CONFIGS))) not in VGG_CONFIGS:
            raise ValueError(f"VGG: config must be one of {sorted(VGG_CONFIGS)}, got {config!r}")
        layers, channels = [], 3
        for item in VGG_CONFIGS[config]:
            if item == "M":
                layers.append(MaxPool2d(2, 2))
            else:
                layers += [Conv2d(channels, item, 3, padding=1), ReLU()]
                channels = item
        self.features = Sequential(*layers)
        self.style_layers, self.content_layer = VGG_STYLE_LAYERS.get(config, (None, None))
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        self.flatten = Flatten()
        self.classifier = Sequential(
            Linear(512 * 7 * 7, 4096), ReLU(), Dropout(dropout),
            Linear(4096, 4096), ReLU(), Dropout(dropout),
            Linear(4096, num_classes),
        )
