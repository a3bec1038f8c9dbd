"""PreAct ResNet as in locuslab/robust_overfitting (Rice et al. 2020), transcribed; the ImageNet
stem adds the 7x7/2 convolution and max-pool."""
import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class PreActResNet(nn.Module):
    def __init__(self, c, io):
        super().__init__()
        w = c["widths"]
        if c["stem"] == "cifar":
            self.conv1 = nn.Conv2d(io["in_channels"], w[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(io["in_channels"], w[0], 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        cin = w[0]
        for s, (n, width) in enumerate(zip(c["layers"], w)):
            blocks = []
            for b in range(n):
                blocks.append(PreActBlock(cin, width, 2 if s > 0 and b == 0 else 1))
                cin = width
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.stages = len(w)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, io["num_classes"])

    def forward(self, x):
        out = self.pool(self.conv1(x))
        for s in range(self.stages):
            out = getattr(self, f"layer{s + 1}")(out)
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build(c, io):
    return PreActResNet(c, io)
