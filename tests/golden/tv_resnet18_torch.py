"""tv_resnet18 in PyTorch, written by `netparity emit` from its netparity spec.

Input (N, 3, 224, 224) float32 (NCHW), output (N, 1000). Weights that netparity
wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_state_dict(torch.load(PATH))
"""

import torch
from torch import nn


class Stem(nn.Module):
    """Layers in sequence. Spec path blocks[0]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        x = self.relu(x)
        x = self.maxpool(x)
        return x


class ResidualBlock(nn.Module):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[1].layers[0] and 7 more."""

    def __init__(self, in_channels, out_channels, stride, project):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if project:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return out + shortcut


class Stage(nn.Module):
    """Layers in sequence. Spec path blocks[1] and 3 more."""

    def __init__(self, in_channels, out_channels, stride, project):
        super().__init__()
        self.block1 = ResidualBlock(in_channels, out_channels, stride=stride, project=project)
        self.relu1 = nn.ReLU()
        self.block2 = ResidualBlock(out_channels, out_channels, stride=1, project=False)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        x = self.block1(x)
        x = self.relu1(x)
        x = self.block2(x)
        x = self.relu2(x)
        return x


class TvResnet18(nn.Module):
    """The network."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.stage1 = Stage(64, 64, stride=1, project=False)
        self.stage2 = Stage(64, 128, stride=2, project=True)
        self.stage3 = Stage(128, 256, stride=2, project=True)
        self.stage4 = Stage(256, 512, stride=2, project=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(512, 1000)

    def forward(self, x):
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = torch.flatten(self.avgpool(x), 1)
        x = self.logits(x)
        return x


def build_model():
    """TvResnet18 for (N, 3, 224, 224) float32 input, in eval mode."""
    return TvResnet18().eval()
