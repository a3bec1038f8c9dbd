"""ResNet-18/50: torchvision's ResNet (timm's has the same names); the CIFAR stem swaps conv1 for a
3x3 stride-1 convolution and drops the max-pool (kuangliu/pytorch-cifar)."""
import torch.nn as nn
import torchvision.models.resnet as tv


def build(c, io):
    block = tv.BasicBlock if c["block"] == "basic" else tv.Bottleneck
    layers = list(c["layers"])
    widths = list(c["widths"])
    m = tv.ResNet(block, [1, 1, 1, 1], num_classes=io["num_classes"])
    # Rebuild with arbitrary stage count and widths through torchvision's own _make_layer.
    m.inplanes = widths[0]
    m.conv1 = nn.Conv2d(io["in_channels"], widths[0], 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(widths[0])
    for i in range(1, 5):
        delattr(m, f"layer{i}")
    for i, (n, w) in enumerate(zip(layers, widths)):
        setattr(m, f"layer{i + 1}", m._make_layer(block, w, n, stride=1 if i == 0 else 2))
    m.fc = nn.Linear(widths[-1] * block.expansion, io["num_classes"])
    if c["stem"] == "cifar":
        m.conv1 = nn.Conv2d(io["in_channels"], widths[0], 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    if len(layers) <= 4:
        # torchvision's own forward, which torch.jit.script accepts: stages a preset does not
        # have pass their input through (no parameters, so the state dict is unchanged).
        for i in range(len(layers), 4):
            setattr(m, f"layer{i + 1}", nn.Identity())
        return m
    stages = [getattr(m, f"layer{i + 1}") for i in range(len(layers))]

    def forward(x):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for s in stages:
            x = s(x)
        return m.fc(m.avgpool(x).flatten(1))

    m.forward = forward
    return m
