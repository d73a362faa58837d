"""ResNet-18 and GoogLeNet written by hand, the way "Dive into Deep Learning" writes them.

ResNet-18 lives in the package, ``netparity.compare.reference`` (the benchmark's hand-written
reference, one home for it); this module wraps it as the test factories expect and keeps
GoogLeNet, written here in the same style. One idiomatic native definition per framework,
independent of netparity's spec and backends:

- PyTorch: ``nn.Module`` classes ``Residual`` / ``Inception`` (functional ReLUs in ``forward``),
  stages ``b1`` .. ``b5`` as ``nn.Sequential``;
- MXNet Gluon: ``HybridBlock`` classes with ``hybrid_forward(F, x)``, ``nn.HybridSequential``
  stages, the Inception convs with a fused ``activation='relu'`` (as the book's Gluon code has it);
  each factory initialises the net and runs one forward (deferred shapes), then hybridizes;
- Keras 3: the functional API, channels_last, every padded conv as ``ZeroPadding2D`` + a
  ``'valid'`` conv, every padded max pool as ``NegInfPadding2D`` (a tiny layer over
  ``keras.ops.pad(..., constant_values=-inf)``) + a ``'valid'`` pool, BatchNormalization with
  PyTorch's epsilon (1e-5) and momentum 0.9 (= PyTorch's 0.1), the Inception convs with a fused
  ``activation='relu'`` (as the book's TensorFlow code has it).

The models are d2l's: ResNet with conv biases and a bare 1x1 projection conv, GoogLeNet with a
ReLU after every conv of the Inception branches and max pool 3/1 pad 1 in the fourth branch;
both for 1 input channel and 10 classes. The parameterised layers run in the zoo spec's order
(``netparity.spec.zoo.blocks``): in a residual unit conv1, bn1, conv2, bn2, then the projection;
in an Inception block the branches p1, p2, p3, p4 (Keras: the ``Concatenate``/``Add`` inputs
in that order), so that ``verify_port`` aligns them one to one.

Factories take no arguments (Keras: ``input_size``, default 32) and return freshly initialised
models in eval-ready state; ``verify_port`` overwrites a candidate's weights with the reference's.
"""

from __future__ import annotations

# The reference modules import their framework through netparity.backends.frameworks, which
# closes the frameworks' import-order traps (triton before TensorFlow, MXNet's np.bool).
from netparity.compare.reference import IN_CHANNELS, NUM_CLASSES
from netparity.compare.reference import keras as keras_reference
from netparity.compare.reference import mxnet as mxnet_reference
from netparity.compare.reference import torch as torch_reference

torch, mx, keras = torch_reference.torch, mxnet_reference.mx, keras_reference.keras

# GoogLeNet's Inception configurations (c1, (c2 reduce, c2), (c3 reduce, c3), c4), per stage.
B3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
B4 = ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
      (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128))
B5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))


def _inception_out(c1, c2, c3, c4) -> int:
    return c1 + c2[1] + c3[1] + c4


# =========================================================================================
# PyTorch
# =========================================================================================

tnn = torch.nn
F = torch.nn.functional

Residual = torch_reference.Residual
torch_resnet_block = torch_reference.resnet_block


class ResidualOutOfPlace(Residual):
    """The same unit with ``Y = Y + X`` instead of ``Y += X`` (same function).

    The in-place add writes into bn2's output tensor after bn2 has returned; a tracer that kept
    that output as a NumPy view of the live tensor (no copy) would record bn2 + shortcut as
    bn2's output. This variant is the control that shows the port itself is right
    (tests/test_port_handwritten.py)."""

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def torch_resnet18() -> tnn.Module:
    return torch_reference.resnet18(32).eval()


def torch_resnet18_out_of_place() -> tnn.Module:
    """``torch_resnet18`` with ``ResidualOutOfPlace`` units (the same parameters, another forward)."""
    net = torch_resnet18()
    for unit in net.modules():
        if type(unit) is Residual:
            unit.__class__ = ResidualOutOfPlace
    return net


class Inception(tnn.Module):
    """d2l's Inception block: four parallel paths concatenated on the channel axis."""

    def __init__(self, in_channels, c1, c2, c3, c4, **kwargs):
        super().__init__(**kwargs)
        # Path 1: a single 1 x 1 conv
        self.p1_1 = tnn.Conv2d(in_channels, c1, kernel_size=1)
        # Path 2: 1 x 1 conv followed by a 3 x 3 conv
        self.p2_1 = tnn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = tnn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        # Path 3: 1 x 1 conv followed by a 5 x 5 conv
        self.p3_1 = tnn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = tnn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        # Path 4: 3 x 3 max pool followed by a 1 x 1 conv
        self.p4_1 = tnn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = tnn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


def _torch_inceptions(in_channels, configs):
    blocks = []
    for config in configs:
        blocks.append(Inception(in_channels, *config))
        in_channels = _inception_out(*config)
    return blocks


def torch_googlenet() -> tnn.Module:
    b1 = tnn.Sequential(tnn.Conv2d(IN_CHANNELS, 64, kernel_size=7, stride=2, padding=3),
                        tnn.ReLU(), tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = tnn.Sequential(tnn.Conv2d(64, 64, kernel_size=1), tnn.ReLU(),
                        tnn.Conv2d(64, 192, kernel_size=3, padding=1), tnn.ReLU(),
                        tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = tnn.Sequential(*_torch_inceptions(192, B3),
                        tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = tnn.Sequential(*_torch_inceptions(480, B4),
                        tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = tnn.Sequential(*_torch_inceptions(832, B5),
                        tnn.AdaptiveAvgPool2d((1, 1)), tnn.Flatten())
    net = tnn.Sequential(b1, b2, b3, b4, b5, tnn.Linear(1024, NUM_CLASSES))
    return net.eval()


# =========================================================================================
# MXNet Gluon
# =========================================================================================

gnn = mx.gluon.nn

GluonResidual = mxnet_reference.Residual
mxnet_resnet_block = mxnet_reference.resnet_block


def _mxnet_ready(net, size: int = 32):
    """Initialise (shapes are deferred until the first forward), run it once, hybridize."""
    mxnet_reference.initialize(net, size)
    net.hybridize()
    return net


def mxnet_resnet18():
    net = mxnet_reference.resnet18(32)
    net.hybridize()
    return net


class GluonInception(mx.gluon.HybridBlock):
    """d2l's Inception block in Gluon: every conv with a fused ReLU."""

    def __init__(self, c1, c2, c3, c4, **kwargs):
        super().__init__(**kwargs)
        # Path 1 is a single 1 x 1 convolutional layer
        self.p1_1 = gnn.Conv2D(c1, kernel_size=1, activation='relu')
        # Path 2 is a 1 x 1 convolutional layer followed by a 3 x 3 convolutional layer
        self.p2_1 = gnn.Conv2D(c2[0], kernel_size=1, activation='relu')
        self.p2_2 = gnn.Conv2D(c2[1], kernel_size=3, padding=1, activation='relu')
        # Path 3 is a 1 x 1 convolutional layer followed by a 5 x 5 convolutional layer
        self.p3_1 = gnn.Conv2D(c3[0], kernel_size=1, activation='relu')
        self.p3_2 = gnn.Conv2D(c3[1], kernel_size=5, padding=2, activation='relu')
        # Path 4 is a 3 x 3 maximum pooling layer followed by a 1 x 1 convolutional layer
        self.p4_1 = gnn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = gnn.Conv2D(c4, kernel_size=1, activation='relu')

    def hybrid_forward(self, F, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        # Concatenate the outputs on the channel dimension
        return F.concat(p1, p2, p3, p4, dim=1)


def mxnet_googlenet():
    b1 = gnn.HybridSequential()
    b1.add(gnn.Conv2D(64, kernel_size=7, strides=2, padding=3, activation='relu'),
           gnn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b2 = gnn.HybridSequential()
    b2.add(gnn.Conv2D(64, kernel_size=1, activation='relu'),
           gnn.Conv2D(192, kernel_size=3, padding=1, activation='relu'),
           gnn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b3 = gnn.HybridSequential()
    b3.add(*(GluonInception(*config) for config in B3), gnn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b4 = gnn.HybridSequential()
    b4.add(*(GluonInception(*config) for config in B4), gnn.MaxPool2D(pool_size=3, strides=2, padding=1))
    b5 = gnn.HybridSequential()
    b5.add(*(GluonInception(*config) for config in B5), gnn.GlobalAvgPool2D())
    net = gnn.HybridSequential()
    net.add(b1, b2, b3, b4, b5, gnn.Dense(NUM_CLASSES))
    return _mxnet_ready(net)


# =========================================================================================
# Keras 3 (functional, channels_last)
# =========================================================================================

kl = keras.layers

NegInfPadding2D = keras_reference.NegInfPadding2D
_conv = keras_reference.conv
_max_pool = keras_reference.max_pool
keras_residual = keras_reference.residual
keras_resnet_block = keras_reference.resnet_block


def keras_resnet18(input_size: int = 32):
    return keras_reference.resnet18(input_size)


def keras_inception(x, c1, c2, c3, c4):
    p1 = _conv(x, c1, 1, activation='relu')
    p2 = _conv(_conv(x, c2[0], 1, activation='relu'), c2[1], 3, padding=1, activation='relu')
    p3 = _conv(_conv(x, c3[0], 1, activation='relu'), c3[1], 5, padding=2, activation='relu')
    p4 = _conv(_max_pool(x, 3, 1, 1), c4, 1, activation='relu')
    return kl.Concatenate()([p1, p2, p3, p4])


def keras_googlenet(input_size: int = 32):
    inputs = keras.Input((input_size, input_size, IN_CHANNELS))
    # b1
    x = _conv(inputs, 64, 7, strides=2, padding=3, activation='relu')
    x = _max_pool(x, 3, 2, 1)
    # b2
    x = _conv(x, 64, 1, activation='relu')
    x = _conv(x, 192, 3, padding=1, activation='relu')
    x = _max_pool(x, 3, 2, 1)
    # b3, b4
    for configs in (B3, B4):
        for config in configs:
            x = keras_inception(x, *config)
        x = _max_pool(x, 3, 2, 1)
    # b5
    for config in B5:
        x = keras_inception(x, *config)
    x = kl.GlobalAveragePooling2D()(x)
    outputs = kl.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name="googlenet")


FACTORIES = {
    ("resnet18", "torch"): torch_resnet18, ("resnet18", "mxnet"): mxnet_resnet18,
    ("resnet18", "keras"): keras_resnet18,
    ("googlenet", "torch"): torch_googlenet, ("googlenet", "mxnet"): mxnet_googlenet,
    ("googlenet", "keras"): keras_googlenet,
}
