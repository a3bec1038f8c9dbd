"""VGG-BN: torchvision's VGG feature layout; the `mlp` head is torchvision's classifier, the
`linear` head the CIFAR variant's single layer on globally pooled features."""
import torch.nn as nn
from torchvision.models.vgg import VGG, make_layers


def build(c, io):
    cfg = []
    for n, w in zip(c["layers"], c["widths"]):
        cfg += [w] * n + ["M"]
    features = make_layers(cfg, batch_norm=True)
    features[0] = nn.Conv2d(io["in_channels"], c["widths"][0], 3, padding=1)
    m = VGG(features, num_classes=io["num_classes"], dropout=c["dropout"])
    cin = c["widths"][-1]
    if c["head"] == "linear":
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier = nn.Linear(cin, io["num_classes"])
    else:
        m.classifier[0] = nn.Linear(cin * 49, c["hidden"])
        m.classifier[3] = nn.Linear(c["hidden"], c["hidden"])
        m.classifier[6] = nn.Linear(c["hidden"], io["num_classes"])
    return m
