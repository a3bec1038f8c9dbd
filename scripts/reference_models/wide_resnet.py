"""WideResNet as in the adversarial-training code (Madry et al.; TRADES `wideresnet.py`, as used by
RobustBench), transcribed, without TRADES' unused `sub_block1`."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, drop):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equal else x)))
        if self.drop > 0:
            out = F.dropout(out, p=self.drop, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equal else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride, drop):
        super().__init__()
        self.layer = nn.Sequential(
            *[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, drop) for i in range(n)]
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, c, io):
        super().__init__()
        n = (c["depth"] - 4) // 6
        ch = [16, 16 * c["widen"], 32 * c["widen"], 64 * c["widen"]]
        if c["stem"] == "cifar":
            self.conv1 = nn.Conv2d(io["in_channels"], 16, 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(io["in_channels"], 16, 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, c["dropout"])
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, c["dropout"])
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, c["dropout"])
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], io["num_classes"])

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.pool(self.conv1(x)))))
        out = self.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build(c, io):
    return WideResNet(c, io)
