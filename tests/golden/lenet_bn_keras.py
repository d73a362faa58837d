"""lenet_bn in Keras 3, written by `netparity emit` from its netparity spec.

The functional API, channels last: input (N, H, W, C) = (N, 28, 28, 1) float32, the spec's NCHW
input transposed by x.transpose(0, 2, 3, 1); output (N, 10). The weight file is in
Keras' own layout (conv kernels (kh, kw, in, out), dense kernels (in, out)); weights that
netparity wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_weights(PATH)  # a .weights.h5 file
"""

import keras
from keras import layers, ops


def build_model():
    """The network for (N, 28, 28, 1) float32 input: NHWC, channels last."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("this model is written channels_last; set image_data_format")
    x = inputs = keras.Input(shape=(28, 28, 1), name="input")
    x = layers.Conv2D(6, 5, name="conv1")(x)
    # Keras' BatchNormalization defaults to epsilon 1e-3 and momentum 0.99, and its momentum weighs
    # the running value: momentum=0.9 here is PyTorch's momentum=0.1
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name="bn1")(x)
    x = layers.Activation("sigmoid", name="sigmoid1")(x)
    x = layers.AveragePooling2D(2, name="avgpool1")(x)
    x = layers.Conv2D(16, 5, name="conv2")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name="bn2")(x)
    x = layers.Activation("sigmoid", name="sigmoid2")(x)
    x = layers.AveragePooling2D(2, name="avgpool2")(x)
    # Flatten of NHWC orders the features (H, W, C), PyTorch's (C, H, W): the weight file holds the
    # next dense kernel's rows in (H, W, C) order
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, name="fc1")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name="bn3")(x)
    x = layers.Activation("sigmoid", name="sigmoid3")(x)
    x = layers.Dense(84, name="fc2")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name="bn4")(x)
    x = layers.Activation("sigmoid", name="sigmoid4")(x)
    x = layers.Dense(10, name="fc3")(x)
    return keras.Model(inputs, x, name="lenet_bn")
