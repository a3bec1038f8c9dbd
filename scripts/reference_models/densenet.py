"""DenseNet: torchvision's DenseNet; the CIFAR stem replaces conv0 by a 3x3 stride-1 convolution
and drops pool0."""
import torch.nn as nn
from torchvision.models.densenet import DenseNet


def build(c, io):
    m = DenseNet(
        growth_rate=c["growth_rate"], block_config=tuple(c["blocks"]),
        num_init_features=c["init_features"], bn_size=c["bn_size"], drop_rate=c["dropout"],
        num_classes=io["num_classes"],
    )
    if c["stem"] == "cifar":
        m.features.conv0 = nn.Conv2d(io["in_channels"], c["init_features"], 3, 1, 1, bias=False)
        m.features.pool0 = nn.Identity()
    else:
        m.features.conv0 = nn.Conv2d(io["in_channels"], c["init_features"], 7, 2, 3, bias=False)
    return m
