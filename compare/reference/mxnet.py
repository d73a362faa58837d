"""LeNet with BatchNorm and ResNet-18 in MXNet Gluon, as "Dive into Deep Learning" writes them.

``nn.HybridSequential`` for the plain stacks, a ``HybridBlock`` with ``hybrid_forward`` for the
residual unit. Gluon's BatchNorm defaults (momentum 0.9, epsilon 1e-5) are PyTorch's. The
factories initialise the parameters and run one forward (Gluon infers the input sizes of its
layers then); they do not hybridize: call ``net.hybridize()`` for the compiled-graph variant.
"""

from __future__ import annotations

import numpy as np

from ...backends.frameworks import import_mxnet
from . import IN_CHANNELS, LENET_SIZE, NUM_CLASSES

mx = import_mxnet()
autograd, gluon, init = mx.autograd, mx.gluon, mx.init
nn = gluon.nn


def initialize(net, input_size: int):
    """Xavier-initialise ``net`` and run it once on a zero batch (deferred shapes)."""
    net.initialize(init.Xavier())
    net(mx.nd.zeros((1, IN_CHANNELS, input_size, input_size)))
    return net


# -- LeNet with BatchNorm ---------------------------------------------------------------------

def lenet_bn():
    """LeNet-5 with a BatchNorm after every conv and hidden dense layer, for 1 x 28 x 28.
    (``Dense`` flattens its 4D input itself, in (C, H, W) order.)"""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Dense(120), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.Dense(84), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.Dense(NUM_CLASSES))
    return initialize(net, LENET_SIZE)


# -- ResNet-18 ------------------------------------------------------------------------------

class Residual(gluon.HybridBlock):
    """d2l's residual unit: relu(bn2(conv2(relu(bn1(conv1(x))))) + [conv3](x))."""

    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def hybrid_forward(self, F, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(num_channels, num_residuals, first_block=False):
    blk = nn.HybridSequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(Residual(num_channels, use_1x1conv=True, strides=2))
        else:
            blk.add(Residual(num_channels))
    return blk


def resnet18(input_size: int):
    """d2l's ResNet-18 for 1 input channel and 10 classes, initialised at ``input_size``."""
    b1 = nn.HybridSequential()
    b1.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3), nn.BatchNorm(),
           nn.Activation('relu'), nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net = nn.HybridSequential()
    net.add(b1,
            resnet_block(64, 2, first_block=True),
            resnet_block(128, 2),
            resnet_block(256, 2),
            resnet_block(512, 2),
            nn.GlobalAvgPool2D(), nn.Dense(NUM_CLASSES))
    return initialize(net, input_size)


# -- Running them ---------------------------------------------------------------------------

def native_batch(x: np.ndarray):
    return mx.nd.array(x, dtype=np.float32)


def make_train_step(net, lr: float, momentum: float, weight_decay: float):
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': lr, 'momentum': momentum, 'wd': weight_decay})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def train_step(X, y: np.ndarray) -> float:
        y = mx.nd.array(y)
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(X.shape[0])  # the gradient of the summed loss, divided by the batch size
        return float(l.mean().asscalar())

    return train_step


def make_infer(net):
    def infer(X) -> np.ndarray:
        return net(X).asnumpy()  # outside autograd.record(): BatchNorm uses its running statistics

    return infer
