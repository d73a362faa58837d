"""tv_resnet18 in MXNet Gluon, written by `netparity emit` from its netparity spec.

Input (N, 3, 224, 224) float32 (NCHW), output (N, 1000). Every block is a HybridBlock
(net.hybridize() works). Weights that netparity wrote (`netparity emit --weights`) load with:

    net = build_model()
    net.load_parameters(PATH)
"""

import numpy as np

if "bool" not in np.__dict__:
    np.bool = bool  # MXNet 1.9.1 uses np.bool, which NumPy 1.24 removed

import mxnet as mx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402


class TrainModeUnderRecord:
    """Max pools run in train mode under autograd.record(train_mode=False): oneDNN's inference
    max pool keeps no argmax, yet its backward reads one, so eval-mode gradients come out wrong
    (apache/mxnet#10994). Max pooling computes the same in both modes."""

    def forward(self, x):
        if mx.autograd.is_recording() and not mx.autograd.is_training():
            with mx.autograd.train_mode():
                return super().forward(x)
        return super().forward(x)


class MaxPool2D(TrainModeUnderRecord, nn.MaxPool2D):
    """nn.MaxPool2D with correct eval-mode gradients."""


def sequential(*blocks):
    """A HybridSequential holding ``blocks`` (Gluon's takes no constructor arguments)."""
    container = nn.HybridSequential()
    container.add(*blocks)
    return container


class Stem(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[0]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(64, 7, strides=2, padding=3, use_bias=False, in_channels=3)
        # Gluon's BatchNorm momentum weighs the running value: momentum=0.9 here is PyTorch's
        # momentum=0.1 (running = 0.9 * running + 0.1 * batch)
        self.bn = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=64)
        self.relu = nn.Activation("relu")
        self.maxpool = MaxPool2D(3, 2, 1)

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        x = self.bn(x)
        x = self.relu(x)
        x = self.maxpool(x)
        return x


class ResidualBlock(nn.HybridBlock):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[1].layers[0] and 7 more."""

    def __init__(self, in_channels, out_channels, strides, project):
        super().__init__()
        self.conv1 = nn.Conv2D(
            out_channels, 3, strides=strides, padding=1, use_bias=False, in_channels=in_channels
        )
        self.bn1 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels)
        self.relu = nn.Activation("relu")
        self.conv2 = nn.Conv2D(out_channels, 3, padding=1, use_bias=False, in_channels=out_channels)
        self.bn2 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels)
        self.shortcut = None
        if project:
            self.shortcut = sequential(
                nn.Conv2D(
                    out_channels, 1, strides=strides, use_bias=False, in_channels=in_channels
                ),
                nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels),
            )

    def hybrid_forward(self, F, x):
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        # broadcast_add, not +: + is elemwise_add, whose backward reuses its output's gradient node;
        # where a tensor collects 8 or more gradients, MXNet 1.9.1 then builds a cycle and
        # hybridizing fails ('control dep not found in graph')
        return F.broadcast_add(out, shortcut)


class Stage(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[1] and 3 more."""

    def __init__(self, in_channels, out_channels, strides, project):
        super().__init__()
        self.block1 = ResidualBlock(in_channels, out_channels, strides=strides, project=project)
        self.relu1 = nn.Activation("relu")
        self.block2 = ResidualBlock(out_channels, out_channels, strides=1, project=False)
        self.relu2 = nn.Activation("relu")

    def hybrid_forward(self, F, x):
        x = self.block1(x)
        x = self.relu1(x)
        x = self.block2(x)
        x = self.relu2(x)
        return x


class TvResnet18(nn.HybridBlock):
    """The network."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.stage1 = Stage(64, 64, strides=1, project=False)
        self.stage2 = Stage(64, 128, strides=2, project=True)
        self.stage3 = Stage(128, 256, strides=2, project=True)
        self.stage4 = Stage(256, 512, strides=2, project=True)
        self.avgpool = nn.GlobalAvgPool2D()
        # flatten=False: Gluon's Dense flattens its input by default; PyTorch's Linear does not
        self.logits = nn.Dense(1000, flatten=False, in_units=512)

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = F.flatten(self.avgpool(x))
        x = self.logits(x)
        return x


def build_model():
    """TvResnet18 for (N, 3, 224, 224) float32 input, initialised (Xavier)."""
    net = TvResnet18()
    net.initialize(mx.init.Xavier())
    return net
