"""lenet_bn in MXNet Gluon, written by `netparity emit` from its netparity spec.

Input (N, 1, 28, 28) float32 (NCHW), output (N, 10). Every block is a HybridBlock
(net.hybridize() works). Weights that netparity wrote (`netparity emit --weights`) load with:

    net = build_model()
    net.load_parameters(PATH)
"""

import numpy as np

if "bool" not in np.__dict__:
    np.bool = bool  # MXNet 1.9.1 uses np.bool, which NumPy 1.24 removed

import mxnet as mx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402


class LenetBN(nn.HybridBlock):
    """The network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2D(6, 5, in_channels=1)
        # Gluon's BatchNorm momentum weighs the running value: momentum=0.9 here is PyTorch's
        # momentum=0.1 (running = 0.9 * running + 0.1 * batch)
        self.bn1 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=6)
        self.sigmoid1 = nn.Activation("sigmoid")
        # count_include_pad as in PyTorch (padding cells count in the average)
        self.avgpool1 = nn.AvgPool2D(2, 2, 0, count_include_pad=True)
        self.conv2 = nn.Conv2D(16, 5, in_channels=6)
        self.bn2 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=16)
        self.sigmoid2 = nn.Activation("sigmoid")
        self.avgpool2 = nn.AvgPool2D(2, 2, 0, count_include_pad=True)
        self.flatten = nn.Flatten()
        # flatten=False: Gluon's Dense flattens its input by default; PyTorch's Linear does not
        self.fc1 = nn.Dense(120, flatten=False, in_units=256)
        self.bn3 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=120)
        self.sigmoid3 = nn.Activation("sigmoid")
        self.fc2 = nn.Dense(84, flatten=False, in_units=120)
        self.bn4 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=84)
        self.sigmoid4 = nn.Activation("sigmoid")
        self.fc3 = nn.Dense(10, flatten=False, in_units=84)

    def hybrid_forward(self, F, x):
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
    """LenetBN for (N, 1, 28, 28) float32 input, initialised (Xavier)."""
    net = LenetBN()
    net.initialize(mx.init.Xavier())
    return net
