"""MobileNetV2: torchvision's, with the stage depths, strides, stem stride and final width set from
the config."""
import torch.nn as nn
from torchvision.models.mobilenetv2 import MobileNetV2, _make_divisible
from torchvision.ops.misc import Conv2dNormActivation

STAGES = [(1, 16), (6, 24), (6, 32), (6, 64), (6, 96), (6, 160), (6, 320)]


def build(c, io):
    setting = [[t, ch, n, s] for (t, ch), n, s in zip(STAGES, c["depths"], c["strides"])]
    m = MobileNetV2(num_classes=io["num_classes"], width_mult=c["width_mult"],
                    inverted_residual_setting=setting, dropout=c["dropout"])
    first = _make_divisible(32 * c["width_mult"], 8)
    m.features[0] = Conv2dNormActivation(io["in_channels"], first, stride=c["stem_stride"],
                                         norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    last = _make_divisible(c["last_channel"] * max(1.0, c["width_mult"]), 8)
    cin = m.features[-1][0].in_channels
    m.features[-1] = Conv2dNormActivation(cin, last, kernel_size=1, norm_layer=nn.BatchNorm2d,
                                          activation_layer=nn.ReLU6)
    m.classifier[1] = nn.Linear(last, io["num_classes"])
    return m
