"""kinds in Keras 3, written by `netparity emit` from its netparity spec.

The functional API, channels last: input (N, H, W, C) = (N, 12, 12, 3) float32, the spec's NCHW
input transposed by x.transpose(0, 2, 3, 1); output (N, 10). The weight file is in
Keras' own layout (conv kernels (kh, kw, in, out), dense kernels (in, out)); weights that
netparity wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_weights(PATH)  # a .weights.h5 file

Saved whole (model.save("m.keras")), it loads with keras.models.load_model in a process
that has imported this file: its layer classes register themselves with Keras on import.
"""

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="netparity_emitted")
class GELU(layers.Layer):
    """GELU with its approximation explicit: Keras' activations.gelu defaults to the exact
    one, ops.gelu to the tanh one."""

    def __init__(self, approximate, **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        return ops.gelu(x, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="netparity_emitted")
class ChannelScale(layers.Layer):
    """x * gamma, a learned multiplier per channel (the last axis): ConvNeXt's layer scale."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)


@keras.saving.register_keras_serializable(package="netparity_emitted")
class ChannelSlice(layers.Layer):
    """Channels (the last axis) start:stop, ShuffleNetV2's split."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x):
        return x[..., self.start : self.stop]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="netparity_emitted")
class SignedLeakyReLU(layers.Layer):
    """PyTorch's leaky_relu for a negative slope (Keras' LeakyReLU refuses one)."""

    def __init__(self, negative_slope, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def call(self, x):
        return ops.relu(x) - ops.cast(self.negative_slope, x.dtype) * ops.relu(-x)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


def chw_order(x, chw, name):
    """Flat features in Flatten's (H, W, C) order, reordered to PyTorch's (C, H, W) order."""
    c, h, w = chw
    x = layers.Reshape((h, w, c), name=f"{name}_hwc")(x)
    x = layers.Permute((3, 1, 2), name=f"{name}_chw")(x)
    return layers.Flatten(name=f"{name}_flat")(x)


@keras.saving.register_keras_serializable(package="netparity_emitted")
class FixedNormalize(layers.Layer):
    """(x - mean) / std over the last axis: constants, not weights (one value, or one each)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def call(self, x):
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        return (x - mean) / ops.convert_to_tensor(self.std, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist(), "std": self.std.tolist()}


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


def pool_divisor(size, kernel, stride, padding, ceil_mode, count_include_pad):
    """What PyTorch divides each window's sum by, along one axis of an average pool."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch drops a last window that would start in the right padding
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


@keras.saving.register_keras_serializable(package="netparity_emitted")
class DivisorScale(layers.Layer):
    """A 'valid' average pool's output (divided by the window area) rescaled to PyTorch's
    per-window divisor; a constant, not a weight."""

    def __init__(self, size, kernel, stride, padding, ceil_mode, count_include_pad, **kwargs):
        super().__init__(**kwargs)
        self.geometry = dict(
            size=size,
            kernel=kernel,
            stride=stride,
            padding=padding,
            ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
        )
        geometry = [(size[i], kernel[i], stride[i], padding[i]) for i in range(2)]
        rows, cols = (pool_divisor(*g, ceil_mode, count_include_pad) for g in geometry)
        scale = kernel[0] * kernel[1] / np.outer(rows, cols)
        self.scale = scale.astype(np.float32)[None, :, :, None]

    def call(self, x):
        return x * ops.convert_to_tensor(self.scale, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), **self.geometry}


def pool_matrix(size, out):
    """(out, size) averaging matrix of PyTorch's adaptive average pool: window i covers
    [floor(i * size / out), ceil((i + 1) * size / out))."""
    matrix = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, lo:hi] = 1.0 / (hi - lo)
    return matrix


@keras.saving.register_keras_serializable(package="netparity_emitted")
class AdaptiveAvgPool2D(layers.Layer):
    """PyTorch's adaptive average pool on NHWC, as the fixed linear map it is (Keras has none)."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = output_size

    def build(self, input_shape):
        self.rows = pool_matrix(input_shape[1], self.output_size[0])
        self.cols = pool_matrix(input_shape[2], self.output_size[1])

    def call(self, x):
        x = ops.einsum("ih,nhwc->niwc", ops.convert_to_tensor(self.rows, dtype=x.dtype), x)
        return ops.einsum("jw,niwc->nijc", ops.convert_to_tensor(self.cols, dtype=x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="netparity_emitted")
class Subsample2D(layers.Layer):
    """Every stride-th row and column of an NHWC tensor, from the first."""

    def __init__(self, strides, **kwargs):
        super().__init__(**kwargs)
        self.strides = (strides, strides) if isinstance(strides, int) else tuple(strides)

    def call(self, x):
        return x[:, :: self.strides[0], :: self.strides[1], :]

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


def se(inputs, name):
    """Branches on one input, multiplied. Spec path blocks[9]."""
    branch2 = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_branch2_0")(inputs)
    branch2 = layers.Conv2D(4, 1, name=f"{name}_branch2_1")(branch2)
    branch2 = layers.Activation("relu", name=f"{name}_branch2_2")(branch2)
    branch2 = layers.Conv2D(8, 1, name=f"{name}_branch2_3")(branch2)
    # Keras 3's hard_sigmoid is PyTorch's relu6(x + 3) / 6 (Keras 2's was 0.2 x + 0.5)
    branch2 = layers.Activation("hard_sigmoid", name=f"{name}_branch2_4")(branch2)
    return layers.Multiply(name=name)([inputs, branch2])


def residual_block(inputs, name):
    """A residual block: body(x) + x. Spec path blocks[10]."""
    # LayerNormalization over the last axis, the channels of each pixel; Keras' default epsilon is
    # 1e-3, PyTorch's 1e-5
    x = layers.LayerNormalization(epsilon=1e-05, name=f"{name}_norm")(inputs)
    x = layers.Conv2D(8, 1, name=f"{name}_conv")(x)
    x = GELU(approximate=True, name=f"{name}_gelu")(x)
    x = ChannelScale(name=f"{name}_layer_scale")(x)
    # stochastic depth: Dropout with noise_shape (None, 1, 1, 1) keeps or drops each example whole
    x = layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(x)
    return layers.Add(name=name)([x, inputs])


def concat_block(inputs, name):
    """Branches on one input, concatenated on channels. Spec path blocks[11]."""
    branch1 = ChannelSlice(0, 4, name=f"{name}_branch1")(inputs)
    branch2 = ChannelSlice(4, 8, name=f"{name}_branch2_0")(inputs)
    # explicit zero padding, then a 'valid' conv: Keras' padding='same' pads a stride-2 window
    # (0, 1) on even inputs where PyTorch pads (1, 1)
    branch2 = layers.ZeroPadding2D(2, name=f"{name}_branch2_1_pad")(branch2)
    branch2 = layers.Conv2D(4, 3, dilation_rate=2, groups=2, name=f"{name}_branch2_1")(branch2)
    branch2 = layers.ELU(alpha=0.5, name=f"{name}_branch2_2")(branch2)
    branch2 = SignedLeakyReLU(-0.1, name=f"{name}_branch2_3")(branch2)
    return layers.Concatenate(name=name)([branch1, branch2])


def sum_block(inputs, name):
    """Branches on one input, summed. Spec path blocks[13]."""
    branch1 = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_branch1")(inputs)
    return layers.Add(name=name)([branch1, inputs])


def conv_bn_relu(x, padding, kernel_size, name):
    """Layers in sequence. Spec path blocks[14] and 1 more."""
    if padding:
        x = layers.ZeroPadding2D(padding, name=f"{name}_conv_pad")(x)
    x = layers.Conv2D(8, kernel_size, use_bias=False, name=f"{name}_conv")(x)
    # Keras' BatchNormalization defaults to epsilon 1e-3 and momentum 0.99, and its momentum weighs
    # the running value: momentum=0.9 here is PyTorch's momentum=0.1
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def residual_block2(inputs, out_channels, strides, project, name):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[16] and 1 more."""
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


def sum_block2(inputs, name):
    """Branches on one input, summed. Spec path blocks[18]."""
    branch1 = layers.Conv2D(12, 1, name=f"{name}_branch1")(inputs)
    return layers.Identity(name=name)(branch1)


def dense_layer(x, name):
    """Layers in sequence. Spec path blocks[32].layers[0] and 1 more."""
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.ZeroPadding2D(1, name=f"{name}_conv_pad")(x)
    x = layers.Conv2D(4, 3, name=f"{name}_conv")(x)
    return x


def concat_block2(inputs, name):
    """Branches on one input, concatenated on channels. Spec path blocks[33]."""
    branch1 = layers.Conv2D(4, 1, name=f"{name}_branch1_0")(inputs)
    # zero padding, then a 'valid' pool: the padding counts in the average, as PyTorch's
    # count_include_pad=True ('same' would leave it out)
    branch2 = layers.ZeroPadding2D(1, name=f"{name}_branch2_0_pad")(inputs)
    branch2 = layers.AveragePooling2D(3, strides=1, name=f"{name}_branch2_0")(branch2)
    branch2 = layers.Conv2D(4, 1, name=f"{name}_branch2_1")(branch2)
    return layers.Concatenate(name=name)([branch1, branch2])


def residual_block3(inputs, name):
    """A residual block: body(x) + x. Spec path blocks[35].branches[1].layers[1]."""
    x = layers.Dense(32, name=f"{name}_fc")(inputs)
    # flat features in Flatten's (H, W, C) order are reordered to PyTorch's (C, H, W) first
    shortcut = chw_order(inputs, (8, 2, 2), name=f"{name}_shortcut")
    return layers.Add(name=name)([x, shortcut])


def branch_block(x, name):
    """Layers in sequence. Spec path blocks[35].branches[1]."""
    # Flatten of NHWC orders the features (H, W, C), PyTorch's (C, H, W): the weight file holds the
    # next dense kernel's rows in (H, W, C) order
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = residual_block3(x, name=f"{name}_block")
    return x


def sum_block3(inputs, name):
    """Branches on one input, summed. Spec path blocks[35].branches[2].layers[5]."""
    # one slope per channel, shared over H and W (Keras' PReLU learns one per element by default),
    # 0.25 at start as PyTorch's
    branch2 = layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), name=f"{name}_branch2"
    )(inputs)
    return layers.Add(name=name)([inputs, branch2])


def branch_block2(x, name):
    """Layers in sequence. Spec path blocks[35].branches[2]."""
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.LayerNormalization(epsilon=1e-05, name=f"{name}_norm")(x)
    x = ChannelScale(name=f"{name}_layer_scale")(x)
    # mean and std in the (H, W, C) order of the flattened features
    x = FixedNormalize(
        (
            -0.5,
            -0.4437,
            -0.3873,
            -0.331,
            -0.2746,
            -0.2183,
            -0.162,
            -0.1056,
            -0.4859,
            -0.4296,
            -0.3732,
            -0.3169,
            -0.2606,
            -0.2042,
            -0.1479,
            -0.0915,
            -0.4718,
            -0.4155,
            -0.3592,
            -0.3028,
            -0.2465,
            -0.1901,
            -0.1338,
            -0.0775,
            -0.4577,
            -0.4014,
            -0.3451,
            -0.2887,
            -0.2324,
            -0.1761,
            -0.1197,
            -0.0634,
        ),
        (
            1.0,
            1.0563,
            1.1127,
            1.169,
            1.2254,
            1.2817,
            1.338,
            1.3944,
            1.0141,
            1.0704,
            1.1268,
            1.1831,
            1.2394,
            1.2958,
            1.3521,
            1.4085,
            1.0282,
            1.0845,
            1.1408,
            1.1972,
            1.2535,
            1.3099,
            1.3662,
            1.4225,
            1.0423,
            1.0986,
            1.1549,
            1.2113,
            1.2676,
            1.3239,
            1.3803,
            1.4366,
        ),
        name=f"{name}_normalize",
    )(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, name=f"{name}_bn")(x)
    x = sum_block3(x, name=f"{name}_block")
    return x


def product_block(inputs, name):
    """Branches on one input, multiplied. Spec path blocks[35].branches[3].layers[1]."""
    branch1 = chw_order(inputs, (8, 2, 2), name=f"{name}_branch1")
    branch2 = layers.Dense(32, name=f"{name}_branch2_0")(inputs)
    branch2 = layers.Activation("sigmoid", name=f"{name}_branch2_1")(branch2)
    return layers.Multiply(name=name)([branch1, branch2])


def branch_block3(x, name):
    """Layers in sequence. Spec path blocks[35].branches[3]."""
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = product_block(x, name=f"{name}_block")
    return x


def flat(inputs, name):
    """Branches on one input, concatenated on channels. Spec path blocks[35]."""
    branch1 = layers.Flatten(name=f"{name}_branch1_0")(inputs)
    branch1 = chw_order(branch1, (8, 2, 2), name=f"{name}_branch1_1_input")
    branch1 = ChannelSlice(5, 20, name=f"{name}_branch1_1")(branch1)
    branch2 = branch_block(inputs, name=f"{name}_branch2")
    branch3 = branch_block2(inputs, name=f"{name}_branch3")
    branch3 = chw_order(branch3, (8, 2, 2), name=f"{name}_branch3")
    branch4 = branch_block3(inputs, name=f"{name}_branch4")
    branch5 = layers.Flatten(name=f"{name}_branch5_0")(inputs)
    branch5 = layers.Dense(6, use_bias=False, name=f"{name}_branch5_1")(branch5)
    return layers.Concatenate(name=name)([branch1, branch2, branch3, branch4, branch5])


def build_model():
    """The network for (N, 12, 12, 3) float32 input: NHWC, channels last."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("this model is written channels_last; set image_data_format")
    x = inputs = keras.Input(shape=(12, 12, 3), name="input")
    x = FixedNormalize((0.5, 0.4, 0.3), (0.25,), name="preprocess")(x)
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    x = layers.Cropping2D(((1, 0), (1, 0)), name="crop")(x)
    x = layers.ZeroPadding2D(((1, 0), (1, 0)), name="conv1_pad")(x)
    x = layers.Conv2D(8, 3, strides=2, name="conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, scale=False, name="bn1")(x)
    x = layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name="prelu"
    )(x)
    x = layers.ZeroPadding2D(2, name="conv2_pad")(x)
    # groups == input channels: DepthwiseConv2D, as Keras' own MobileNets (a grouped Conv2D runs
    # through XLA on the CPU, far slower)
    x = layers.DepthwiseConv2D(3, dilation_rate=2, use_bias=False, name="conv2")(x)
    x = layers.BatchNormalization(epsilon=1e-05, momentum=0.9, center=False, name="bn2")(x)
    # Keras' hard_silu is PyTorch's hardswish, x * relu6(x + 3) / 6
    x = layers.Activation("hard_silu", name="hardswish")(x)
    x = se(x, name="se")
    x = residual_block(x, name="block1")
    x = concat_block(x, name="block2")
    # channel shuffle on the last axis: (H, W, groups, C / groups), the two swapped, merged back
    x = layers.Reshape((6, 6, 2, 4), name="shuffle_groups")(x)
    x = layers.Permute((1, 2, 4, 3), name="shuffle_swap")(x)
    x = layers.Reshape((6, 6, 8), name="shuffle")(x)
    x = sum_block(x, name="block3")
    x = conv_bn_relu(x, padding=0, kernel_size=1, name="block4")
    x = conv_bn_relu(x, padding=1, kernel_size=3, name="block5")
    x = residual_block2(x, 8, strides=1, project=False, name="block6")
    x = residual_block2(x, 12, strides=2, project=True, name="block7")
    x = sum_block2(x, name="block8")
    # -inf padding, then a 'valid' pool: PyTorch's padding never wins a window, where zero padding
    # would over negative inputs
    # Keras has no ceil mode: extra padding at the bottom and right gives PyTorch's ceil-mode
    # windows
    x = ConstantPad2D(1, -float("inf"), name="maxpool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool1")(x)
    x = layers.ZeroPadding2D(1, name="avgpool1_pad")(x)
    x = layers.AveragePooling2D(3, strides=1, name="avgpool1")(x)
    # each window's average rescaled to PyTorch's divisor (ceil mode or count_include_pad=False
    # count fewer cells in border windows)
    x = DivisorScale((2, 2), (3, 3), (1, 1), (1, 1), False, False, name="avgpool1_divisor")(x)
    x = AdaptiveAvgPool2D((7, 7), name="avgpool2")(x)
    x = ConstantPad2D(((0, 1), (0, 1)), -float("inf"), name="maxpool2_pad")(x)
    x = layers.MaxPooling2D(2, name="maxpool2")(x)
    x = layers.ZeroPadding2D(((1, 2), (1, 2)), name="avgpool3_pad")(x)
    x = layers.AveragePooling2D(3, strides=2, name="avgpool3")(x)
    x = DivisorScale((4, 4), (3, 3), (2, 2), (1, 1), True, True, name="avgpool3_divisor")(x)
    x = layers.ZeroPadding2D(2, name="conv3_pad")(x)
    x = layers.Conv2D(8, 3, dilation_rate=2, groups=2, name="conv3")(x)
    # Conv2D refuses a stride together with dilation: stride 1, then every stride-th output
    # (the same numbers)
    x = Subsample2D(2, name="conv3_stride")(x)
    x = layers.Activation("silu", name="silu")(x)
    x = layers.ReLU(max_value=6.0, name="relu6")(x)
    x = layers.Activation("softplus", name="softplus")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    # Keras' LeakyReLU defaults to slope 0.3, PyTorch's to 0.01
    x = layers.LeakyReLU(negative_slope=0.2, name="leaky_relu")(x)
    x = GELU(approximate=False, name="gelu")(x)
    # softmax over the last axis: the channels of each pixel (PyTorch's dim 1), or the features
    x = layers.Softmax(axis=-1, name="softmax")(x)
    unit = dense_layer(x, name="dense_block_0")
    x = layers.Concatenate(name="dense_block_concat0")([x, unit])
    unit = dense_layer(x, name="dense_block_1")
    x = layers.Concatenate(name="dense_block_concat1")([x, unit])
    x = concat_block2(x, name="block9")
    x = layers.Dropout(0.5, name="dropout")(x)
    x = flat(x, name="flat")
    x = layers.BatchNormalization(epsilon=0.001, momentum=0.99, name="bn3")(x)
    x = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, x, name="kinds")
