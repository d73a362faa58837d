"""tv_resnet18 in Keras 3, written by `netparity emit` from its netparity spec.

The functional API, channels last: input (N, H, W, C) = (N, 224, 224, 3) float32, the spec's NCHW
input transposed by x.transpose(0, 2, 3, 1); output (N, 1000). The weight file is in
Keras' own layout (conv kernels (kh, kw, in, out), dense kernels (in, out)); weights that
netparity wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_weights(PATH)  # a .weights.h5 file

Saved whole (model.save("m.keras")), it loads with keras.models.load_model in a process
that has imported this file: its layer classes register themselves with Keras on import.
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="netparity_emitted")
class ConstantPad2D(layers.Layer):
    """Pads H and W of an NHWC tensor with a constant (ZeroPadding2D's padding argument)."""

    def __init__(self, padding, value, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding
        if isinstance(padding, int):
            padding = (padding, padding)
        if isinstance(padding[0], int):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.pads = [[0, 0], list(padding[0]), list(padding[1]), [0, 0]]
        self.value = value

    def call(self, x):
        return ops.pad(x, self.pads, mode="constant", constant_values=self.value)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


def stem(x, name):
    """Layers in sequence. Spec path blocks[0]."""
    # explicit zero padding, then a 'valid' conv: Keras' padding='same' pads a stride-2 window
    # (0, 1) on even inputs where PyTorch pads (1, 1)
    x = layers.ZeroPadding2D(3, name=f"{name}_conv_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name=f"{name}_conv")(x)
    # Keras' BatchNormalization defaults to epsilon 1e-3 and momentum 0.99, and its momentum weighs
    # the running value: momentum=0.9 here is PyTorch's momentum=0.1
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    # -inf padding, then a 'valid' pool: PyTorch's padding never wins a window, where zero padding
    # would over negative inputs
    x = ConstantPad2D(1, -float("inf"), name=f"{name}_maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_maxpool")(x)
    return x


def residual_block(inputs, out_channels, strides, project, name):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[1].layers[0] and 7 more."""
    x = layers.ZeroPadding2D(1, name=f"{name}_conv1_pad")(inputs)
    x = layers.Conv2D(out_channels, 3, strides=strides, use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn1")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.ZeroPadding2D(1, name=f"{name}_conv2_pad")(x)
    x = layers.Conv2D(out_channels, 3, use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn2")(x)
    shortcut = inputs
    if project:
        shortcut = layers.Conv2D(
            out_channels, 1, strides=strides, use_bias=False, name=f"{name}_shortcut_0"
        )(shortcut)
        shortcut = layers.BatchNormalization(
            epsilon=1e-05, momentum=0.9, name=f"{name}_shortcut_1"
        )(shortcut)
    return layers.Add(name=name)([x, shortcut])


def stage(x, out_channels, strides, project, name):
    """Layers in sequence. Spec path blocks[1] and 3 more."""
    x = residual_block(x, out_channels, strides=strides, project=project, name=f"{name}_block1")
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    x = residual_block(x, out_channels, strides=1, project=False, name=f"{name}_block2")
    x = layers.Activation("relu", name=f"{name}_relu2")(x)
    return x


def build_model():
    """The network for (N, 224, 224, 3) float32 input: NHWC, channels last."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("this model is written channels_last; set image_data_format")
    x = inputs = keras.Input(shape=(224, 224, 3), name="input")
    x = stem(x, name="stem")
    x = stage(x, 64, strides=1, project=False, name="stage1")
    x = stage(x, 128, strides=2, project=True, name="stage2")
    x = stage(x, 256, strides=2, project=True, name="stage3")
    x = stage(x, 512, strides=2, project=True, name="stage4")
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = layers.Dense(1000, name="logits")(x)
    return keras.Model(inputs, x, name="tv_resnet18")
