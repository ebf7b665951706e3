"""PyTorch twins of the zoo's architectures, built from the same state dict: the independent
reference that tests and benchmarks compare minivis against (torch is never used by minivis)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as TF  # noqa: N812
from torch import nn

from minivis.models.efficientnet import LITE0_STAGES


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding (extra pixel at the bottom/right), any stride."""

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1],
                                 strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return TF.conv2d(TF.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class TorchMBConv(nn.Module):
    def __init__(self, in_ch, out_ch, expand, kernel, stride):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x):
        h = TF.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = TF.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class TorchEfficientNetLite(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(TorchMBConv(in_ch if r == 0 else out_ch, out_ch, expand, kernel, stride if r == 0 else 1))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = TF.relu6(self._bn0(self._conv_stem(x)))
        x = TF.relu6(self._bn1(self._conv_head(self._blocks(x))))
        return self._fc(x.mean(dim=(2, 3)))


class TorchFashionCNN(nn.Module):
    def __init__(self, widths=(32, 64), hidden=128, dropout=0.3):
        super().__init__()
        a, b = widths
        self.features = nn.Sequential(
            nn.Conv2d(1, a, 3, padding=1), nn.ReLU(), nn.Conv2d(a, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(b * 49, hidden), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class TorchCodeDecoder(nn.Module):
    """minivis.models.decoder.CodeDecoder written with torch.nn (same layers, names and recipe)."""

    def __init__(self, code_shape, image_size=28, channels=1, slope=0.2, vector_map=(32, 7, 7)):
        super().__init__()
        self.vector_map = vector_map
        self.register_buffer("code_scale", torch.ones(()))
        if len(code_shape) == 1:
            self.expand = nn.Sequential(nn.Linear(code_shape[0], math.prod(vector_map)), nn.LeakyReLU(slope))
            c, side = vector_map[0], vector_map[1]
        else:
            self.expand = None
            c, side = code_shape[0], code_shape[1]
        ups = int(round(math.log2(image_size // side)))
        if ups == 0:
            layers = [nn.Conv2d(c, 16, 3, padding=1), nn.LeakyReLU(slope), nn.Conv2d(16, channels, 3, padding=1)]
        else:
            width = 64
            layers = [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(slope)]
            for _ in range(ups):
                layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1), nn.LeakyReLU(slope)]
                width //= 2
            layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.decode = nn.Sequential(*layers)

    def forward(self, z):
        h = z * self.code_scale
        if self.expand is not None:
            h = self.expand(h).reshape(z.shape[0], *self.vector_map)
        return self.decode(h)


def torchvision_vgg(config: list, num_classes: int = 1000) -> nn.Module:
    """torchvision's VGG layout (features / avgpool / classifier), without torchvision."""
    layers, channels = [], 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
                                     nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model


def torchvision_alexnet(num_classes: int = 1000) -> nn.Module:
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    model.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    model.classifier = nn.Sequential(nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
                                     nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model


def twin_from_state(twin: nn.Module, state: dict[str, np.ndarray], dtype=torch.float32) -> nn.Module:
    """Load a minivis state dict (NumPy arrays) into a torch twin, eval mode."""
    twin = twin.to(dtype)  # first, so float64 weights are not rounded through float32 parameters
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return twin.eval()
