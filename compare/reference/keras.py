"""LeNet with BatchNorm and ResNet-18 in Keras 3, as "Dive into Deep Learning" writes them.

The functional API, channels_last (NHWC). Three things follow PyTorch where Keras' defaults
differ, so that the models are the zoo specs' function:

- a padded conv is ``ZeroPadding2D`` then a ``'valid'`` conv: ``padding='same'`` pads a stride-2
  conv on the bottom/right only, PyTorch pads both sides;
- a padded max pool is ``NegInfPadding2D`` (-inf padding, as PyTorch's) then a ``'valid'`` pool;
- ``BatchNormalization(epsilon=1e-5, momentum=0.9)``: PyTorch's (Keras' defaults: 1e-3, 0.99).

LeNet's ``Flatten`` runs over (H, W, C), so its first dense layer sees the features in another
order than in PyTorch; the same function, with that layer's weight rows permuted.
"""

from __future__ import annotations

import numpy as np

from ...backends.frameworks import import_keras
from . import BN_EPSILON, BN_MOMENTUM, IN_CHANNELS, LENET_SIZE, NUM_CLASSES

keras = import_keras()
layers = keras.layers


class NegInfPadding2D(layers.Layer):
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


def conv(x, filters, kernel_size, strides=1, padding=0, activation=None):
    """A PyTorch-style padded conv: explicit zero padding, then a 'valid' conv."""
    if padding:
        x = layers.ZeroPadding2D(padding)(x)
    return layers.Conv2D(filters, kernel_size, strides=strides, padding='valid', activation=activation)(x)


def max_pool(x, pool_size=3, strides=2, padding=1):
    """A PyTorch-style padded max pool: -inf padding, then a 'valid' pool."""
    if padding:
        x = NegInfPadding2D(padding)(x)
    return layers.MaxPooling2D(pool_size, strides=strides, padding='valid')(x)


def batch_norm(x):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM)(x)


# -- LeNet with BatchNorm ---------------------------------------------------------------------

def lenet_bn():
    """LeNet-5 with a BatchNorm after every conv and hidden dense layer, for 28 x 28 x 1."""
    inputs = keras.Input((LENET_SIZE, LENET_SIZE, IN_CHANNELS))
    x = layers.Conv2D(6, kernel_size=5)(inputs)
    x = layers.Activation('sigmoid')(batch_norm(x))
    x = layers.AveragePooling2D(pool_size=2, strides=2)(x)
    x = layers.Conv2D(16, kernel_size=5)(x)
    x = layers.Activation('sigmoid')(batch_norm(x))
    x = layers.AveragePooling2D(pool_size=2, strides=2)(x)
    x = layers.Flatten()(x)
    x = layers.Activation('sigmoid')(batch_norm(layers.Dense(120)(x)))
    x = layers.Activation('sigmoid')(batch_norm(layers.Dense(84)(x)))
    outputs = layers.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name="lenet_bn")


# -- ResNet-18 ------------------------------------------------------------------------------

def residual(x, num_channels, use_1x1conv=False, strides=1):
    """d2l's residual unit: relu(bn2(conv2(relu(bn1(conv1(x))))) + [conv3](x))."""
    y = layers.ReLU()(batch_norm(conv(x, num_channels, 3, strides=strides, padding=1)))
    y = batch_norm(conv(y, num_channels, 3, padding=1))
    if use_1x1conv:
        x = conv(x, num_channels, 1, strides=strides)
    return layers.ReLU()(layers.Add()([y, x]))


def resnet_block(x, num_channels, num_residuals, first_block=False):
    for i in range(num_residuals):
        if i == 0 and not first_block:
            x = residual(x, num_channels, use_1x1conv=True, strides=2)
        else:
            x = residual(x, num_channels)
    return x


def resnet18(input_size: int):
    """d2l's ResNet-18 for ``input_size`` x ``input_size`` x 1 images and 10 classes."""
    inputs = keras.Input((input_size, input_size, IN_CHANNELS))
    # b1
    x = layers.ReLU()(batch_norm(conv(inputs, 64, 7, strides=2, padding=3)))
    x = max_pool(x, 3, strides=2, padding=1)
    # b2 .. b5
    x = resnet_block(x, 64, 2, first_block=True)
    x = resnet_block(x, 128, 2)
    x = resnet_block(x, 256, 2)
    x = resnet_block(x, 512, 2)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name="resnet18")


# -- Running them ---------------------------------------------------------------------------

def native_batch(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1))  # NCHW -> NHWC


def make_train_step(model, lr: float, momentum: float, weight_decay: float):
    # jit_compile=False: train_on_batch then runs a tf.function without XLA, like the benchmark's
    # plain Keras row (XLA is a fast mode of its own there). Keras' weight_decay is decoupled
    # (p -= lr * wd * p beside the momentum), the idiomatic Keras form; PyTorch and Gluon add
    # wd * p to the gradient instead.
    optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, weight_decay=weight_decay or None)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)

    def train_step(X: np.ndarray, y: np.ndarray) -> float:
        return float(model.train_on_batch(X, y))

    return train_step


def make_infer(model):
    # predict_on_batch: Keras' compiled predict function (a tf.function; jit_compile=False from
    # compile() in make_train_step), what a Keras user runs for inference.
    def infer(X: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(X))

    return infer
