"""lenet_bn in PyTorch, written by `netparity emit` from its netparity spec.

Input (N, 1, 28, 28) float32 (NCHW), output (N, 10). Weights that netparity
wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_state_dict(torch.load(PATH))
"""

import torch
from torch import nn


class LenetBN(nn.Module):
    """The network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.bn1 = nn.BatchNorm2d(6)
        self.sigmoid1 = nn.Sigmoid()
        self.avgpool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16)
        self.sigmoid2 = nn.Sigmoid()
        self.avgpool2 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(256, 120)
        self.bn3 = nn.BatchNorm1d(120)
        self.sigmoid3 = nn.Sigmoid()
        self.fc2 = nn.Linear(120, 84)
        self.bn4 = nn.BatchNorm1d(84)
        self.sigmoid4 = nn.Sigmoid()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.sigmoid1(x)
        x = self.avgpool1(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.sigmoid2(x)
        x = self.avgpool2(x)
        x = self.flatten(x)
        x = self.fc1(x)
        x = self.bn3(x)
        x = self.sigmoid3(x)
        x = self.fc2(x)
        x = self.bn4(x)
        x = self.sigmoid4(x)
        x = self.fc3(x)
        return x


def build_model():
    """LenetBN for (N, 1, 28, 28) float32 input, in eval mode."""
    return LenetBN().eval()
