"""ResNet-18 and GoogLeNet written by hand, the way "Dive into Deep Learning" writes them.

One idiomatic native definition per framework, independent of netparity's spec and backends:

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

from netparity.backends.frameworks import import_keras, import_mxnet, import_torch

# Import order matters (see backends.frameworks): torch, then mxnet, then keras.
torch = import_torch()
mx = import_mxnet()
keras = import_keras()

NUM_CLASSES = 10
IN_CHANNELS = 1

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


class Residual(tnn.Module):
    """d2l's residual unit: relu(bn2(conv2(relu(bn1(conv1(x))))) + [conv3](x))."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = tnn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = tnn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = tnn.BatchNorm2d(num_channels)
        self.bn2 = tnn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X  # in place, as the book writes it
        return F.relu(Y)


class ResidualOutOfPlace(Residual):
    """The same unit with ``Y = Y + X`` instead of ``Y += X`` (same function).

    The in-place add writes into bn2's output tensor after bn2 has returned; verify_port's
    PyTorch tracer keeps that output as a NumPy view of the live tensor (no copy), so the
    recorded bn2 output becomes bn2 + shortcut. This variant is the control that shows the
    port itself is right (tests/test_port_handwritten.py)."""

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def torch_resnet_block(input_channels, num_channels, num_residuals, first_block=False, residual=Residual):
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(residual(num_channels, num_channels))
    return blk


def torch_resnet18(residual=Residual) -> tnn.Module:
    b1 = tnn.Sequential(tnn.Conv2d(IN_CHANNELS, 64, kernel_size=7, stride=2, padding=3),
                        tnn.BatchNorm2d(64), tnn.ReLU(),
                        tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = tnn.Sequential(*torch_resnet_block(64, 64, 2, first_block=True, residual=residual))
    b3 = tnn.Sequential(*torch_resnet_block(64, 128, 2, residual=residual))
    b4 = tnn.Sequential(*torch_resnet_block(128, 256, 2, residual=residual))
    b5 = tnn.Sequential(*torch_resnet_block(256, 512, 2, residual=residual))
    net = tnn.Sequential(b1, b2, b3, b4, b5,
                         tnn.AdaptiveAvgPool2d((1, 1)),
                         tnn.Flatten(), tnn.Linear(512, NUM_CLASSES))
    return net.eval()


def torch_resnet18_out_of_place() -> tnn.Module:
    """``torch_resnet18`` with ``ResidualOutOfPlace`` units."""
    return torch_resnet18(residual=ResidualOutOfPlace)


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


class GluonResidual(mx.gluon.HybridBlock):
    """d2l's residual unit in Gluon (``Residual`` in the book's MXNet edition)."""

    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = gnn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = gnn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = gnn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = gnn.BatchNorm()
        self.bn2 = gnn.BatchNorm()

    def hybrid_forward(self, F, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def mxnet_resnet_block(num_channels, num_residuals, first_block=False):
    blk = gnn.HybridSequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(GluonResidual(num_channels, use_1x1conv=True, strides=2))
        else:
            blk.add(GluonResidual(num_channels))
    return blk


def _mxnet_ready(net, size: int = 32):
    """Initialise (shapes are deferred until the first forward), run it once, hybridize."""
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, IN_CHANNELS, size, size)))
    net.hybridize()
    return net


def mxnet_resnet18():
    b1 = gnn.HybridSequential()
    b1.add(gnn.Conv2D(64, kernel_size=7, strides=2, padding=3), gnn.BatchNorm(),
           gnn.Activation('relu'), gnn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net = gnn.HybridSequential()
    net.add(b1,
            mxnet_resnet_block(64, 2, first_block=True),
            mxnet_resnet_block(128, 2),
            mxnet_resnet_block(256, 2),
            mxnet_resnet_block(512, 2),
            gnn.GlobalAvgPool2D(), gnn.Dense(NUM_CLASSES))
    return _mxnet_ready(net)


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


class NegInfPadding2D(kl.Layer):
    """Pads H and W with -inf (channels_last): what PyTorch's padded max pooling pads with."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        grow = 2 * self.padding
        return (n, None if h is None else h + grow, None if w is None else w + grow, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _conv(x, filters, kernel_size, strides=1, padding=0, activation=None):
    """A PyTorch-style padded conv: explicit zero padding, then a 'valid' conv."""
    if padding:
        x = kl.ZeroPadding2D(padding)(x)
    return kl.Conv2D(filters, kernel_size, strides=strides, padding='valid', activation=activation)(x)


def _max_pool(x, pool_size=3, strides=2, padding=1):
    """A PyTorch-style padded max pool: -inf padding, then a 'valid' pool."""
    if padding:
        x = NegInfPadding2D(padding)(x)
    return kl.MaxPooling2D(pool_size, strides=strides, padding='valid')(x)


def _batch_norm(x):
    return kl.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)


def keras_residual(x, num_channels, use_1x1conv=False, strides=1):
    y = _conv(x, num_channels, 3, strides=strides, padding=1)
    y = kl.ReLU()(_batch_norm(y))
    y = _batch_norm(_conv(y, num_channels, 3, padding=1))
    if use_1x1conv:
        x = kl.Conv2D(num_channels, 1, strides=strides, padding='valid')(x)
    return kl.ReLU()(kl.Add()([y, x]))


def keras_resnet_block(x, num_channels, num_residuals, first_block=False):
    for i in range(num_residuals):
        if i == 0 and not first_block:
            x = keras_residual(x, num_channels, use_1x1conv=True, strides=2)
        else:
            x = keras_residual(x, num_channels)
    return x


def keras_resnet18(input_size: int = 32):
    inputs = keras.Input((input_size, input_size, IN_CHANNELS))
    # b1
    x = _conv(inputs, 64, 7, strides=2, padding=3)
    x = kl.ReLU()(_batch_norm(x))
    x = _max_pool(x, 3, 2, 1)
    # b2 .. b5
    x = keras_resnet_block(x, 64, 2, first_block=True)
    x = keras_resnet_block(x, 128, 2)
    x = keras_resnet_block(x, 256, 2)
    x = keras_resnet_block(x, 512, 2)
    x = kl.GlobalAveragePooling2D()(x)
    outputs = kl.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name="resnet18")


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
