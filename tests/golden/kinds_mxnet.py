"""kinds in MXNet Gluon, written by `netparity emit` from its netparity spec.

Input (N, 3, 12, 12) float32 (NCHW), output (N, 10). Every block is a HybridBlock
(net.hybridize() works). Weights that netparity wrote (`netparity emit --weights`) load with:

    net = build_model()
    net.load_parameters(PATH)
"""

import numpy as np

if "bool" not in np.__dict__:
    np.bool = bool  # MXNet 1.9.1 uses np.bool, which NumPy 1.24 removed

import mxnet as mx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402


def hardsigmoid(F, x):
    """PyTorch's relu6(x + 3) / 6; MXNet's hard_sigmoid defaults to Keras 2's 0.2 x + 0.5."""
    return F.hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5)


def sequential(*blocks):
    """A HybridSequential holding ``blocks`` (Gluon's takes no constructor arguments)."""
    container = nn.HybridSequential()
    container.add(*blocks)
    return container


def gelu_tanh(F, x):
    """GELU's tanh approximation (MXNet 1.9's LeakyReLU op has the exact one only)."""
    return 0.5 * x * (1.0 + F.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


class ChannelScale(nn.HybridBlock):
    """x * weight[c], a learned multiplier per channel (ConvNeXt's layer scale)."""

    def __init__(self, channels, dims):
        super().__init__()
        self.shape = (1, -1) + (1,) * (dims - 2)
        self.weight = self.params.get("weight", shape=(channels,), init=mx.init.One())

    def hybrid_forward(self, F, x, weight):
        return F.broadcast_mul(x, F.reshape(weight, shape=self.shape))


class ChannelSlice(nn.HybridBlock):
    """Channels begin:end (axis 1), ShuffleNetV2's split."""

    def __init__(self, begin, end):
        super().__init__()
        self.begin, self.end = begin, end

    def hybrid_forward(self, F, x):
        return F.slice_axis(x, axis=1, begin=self.begin, end=self.end)


class LeakyReLU(nn.HybridBlock):
    """x > 0 ? x : slope * x for any slope (nn.LeakyReLU asserts slope >= 0)."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="leaky", slope=self.slope)


class TrainModeUnderRecord:
    """Max pools run in train mode under autograd.record(train_mode=False): oneDNN's inference
    max pool keeps no argmax, yet its backward reads one, so eval-mode gradients come out wrong
    (apache/mxnet#10994). Max pooling computes the same in both modes."""

    def forward(self, x):
        if mx.autograd.is_recording() and not mx.autograd.is_training():
            with mx.autograd.train_mode():
                return super().forward(x)
        return super().forward(x)


class GlobalMaxPool2D(TrainModeUnderRecord, nn.GlobalMaxPool2D):
    """nn.GlobalMaxPool2D (keeps (N, C, 1, 1)) with correct eval-mode gradients."""


class PReLU(nn.PReLU):
    """PyTorch's PReLU(C): one slope per channel (``alpha``, 0.25 at start), computed as
    where(x > 0, x, alpha[c] * x). Not the LeakyReLU 'prelu' op: in a hybridized graph after a
    conv its backward is wrong (alpha's gradient off by 74-79%)."""

    def __init__(self, channels, dims):
        super().__init__(in_channels=channels)
        self.shape = (1, -1) + (1,) * (dims - 2)

    def hybrid_forward(self, F, x, alpha):
        return F.where(x > 0, x, F.broadcast_mul(x, F.reshape(alpha, shape=self.shape)))


class Normalize(nn.HybridBlock):
    """Fixed (x - mean[c]) / std[c]: Gluon constants, not weights."""

    def __init__(self, mean, std, channels, dims):
        super().__init__()
        shape = (1, channels) + (1,) * (dims - 2)
        mean = np.broadcast_to(np.float32(mean), (channels,)).reshape(shape)
        std = np.broadcast_to(np.float32(std), (channels,)).reshape(shape)
        self.mean = self.params.get_constant("mean", mean)
        self.std = self.params.get_constant("std", std)

    def hybrid_forward(self, F, x, mean, std):
        return F.broadcast_div(F.broadcast_sub(x, mean), std)


class Pad2D(nn.HybridBlock):
    """Zero padding (top, bottom, left, right) of an NCHW map."""

    def __init__(self, padding):
        super().__init__()
        top, bottom, left, right = padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)

    def hybrid_forward(self, F, x):
        return F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0)


class Crop2D(nn.HybridBlock):
    """Drops (top, bottom, left, right) rows and columns at the edges of an NCHW map (Keras'
    Cropping2D) with F.slice; negative ends count from the end, so no input size is needed."""

    def __init__(self, crop):
        super().__init__()
        top, bottom, left, right = crop
        self.begin = (None, None, top, left)
        self.end = (None, None, -bottom or None, -right or None)

    def hybrid_forward(self, F, x):
        return F.slice(x, begin=self.begin, end=self.end)


class PaddedConv2D(nn.HybridBlock):
    """A Conv2D after zero padding that may differ per side, (top, bottom, left, right): Gluon's
    padding is symmetric, TensorFlow's 'same' at stride 2 pads one more after."""

    def __init__(self, padding, conv):
        super().__init__()
        top, bottom, left, right = padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)
        self.conv = conv

    def hybrid_forward(self, F, x):
        return self.conv(F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0))


def hardswish(F, x):
    """PyTorch's x * relu6(x + 3) / 6 (MXNet's hard_sigmoid with PyTorch's slope)."""
    return x * F.hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5)


class ChannelShuffle(nn.HybridBlock):
    """torchvision's channel_shuffle with reshape's special codes (valid when hybridized):
    split C into (groups, C / groups), swap the two, merge them back."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def hybrid_forward(self, F, x):
        split = F.reshape(x, shape=(0, -4, self.groups, -1, -2))
        return F.reshape(F.swapaxes(split, dim1=1, dim2=2), shape=(0, -3, -2))


class MaxPool2D(TrainModeUnderRecord, nn.MaxPool2D):
    """nn.MaxPool2D with correct eval-mode gradients."""


class CeilMaxPool(nn.HybridBlock):
    """PyTorch's ceil-mode max pool: -inf padding (F.pad's widths) and a 'valid' pool."""

    def __init__(self, pool_size, strides, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = MaxPool2D(pool_size, strides)

    def hybrid_forward(self, F, x):
        padded = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=-np.inf)
        return self.pool(padded)


class AdaptiveAvgPool(nn.HybridBlock):
    """PyTorch's adaptive average pool (MXNet's contrib op uses the same windows)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self.output_size)


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


class CeilAvgPool(nn.HybridBlock):
    """PyTorch's ceil-mode average pool: a 'valid' pool over zero padding, rescaled from the
    k*k divisor to PyTorch's per-window divisor (a constant, not a weight)."""

    def __init__(self, kernel, stride, padding, count_include_pad, height, width, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = nn.AvgPool2D(kernel, stride)
        rows = pool_divisor(height, kernel[0], stride[0], padding[0], True, count_include_pad)
        cols = pool_divisor(width, kernel[1], stride[1], padding[1], True, count_include_pad)
        rescale = kernel[0] * kernel[1] / np.outer(rows, cols)
        self.rescale = self.params.get_constant("rescale", rescale[None, None].astype(np.float32))

    def hybrid_forward(self, F, x, rescale):
        padded = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0)
        return F.broadcast_mul(self.pool(padded), rescale)


def silu(F, x):
    return x * F.sigmoid(x)


def relu6(F, x):
    return F.clip(x, 0.0, 6.0)


def channel_softmax(F, x):
    return F.softmax(x, axis=1)  # the channels of each pixel, or the features


class DenseConcat(nn.HybridBlock):
    """DenseNet's dense block: each unit sees everything before it, x = concat(x, unit(x))."""

    def __init__(self, *units):
        super().__init__()
        self.units = list(units)
        for i, unit in enumerate(units):
            self.register_child(unit, str(i))

    def hybrid_forward(self, F, x):
        for unit in self.units:
            # F.identity: MXNet 1.9.1 dies (SIGFPE) on the input gradient of a bare concat
            # that a grouped or depthwise conv reads
            x = F.identity(F.concat(x, unit(x), dim=1))
        return x


class SE(nn.HybridBlock):
    """Branches on one input, multiplied. Spec path blocks[9]."""

    def __init__(self):
        super().__init__()
        self.branch2 = sequential(
            nn.GlobalAvgPool2D(),
            nn.Conv2D(4, 1, in_channels=8),
            nn.Activation("relu"),
            nn.Conv2D(8, 1, in_channels=4),
            nn.HybridLambda(hardsigmoid),
        )

    def hybrid_forward(self, F, x):
        # broadcast_add / broadcast_mul, not + / *: inside a hybridized graph those refuse a
        # (N, C, 1, 1) gate against (N, C, H, W)
        return F.broadcast_mul(x, self.branch2(x))


class ResidualBlock(nn.HybridBlock):
    """A residual block: body(x) + x. Spec path blocks[10]."""

    def __init__(self):
        super().__init__()
        # LayerNorm over axis 1: the channels of each pixel (ConvNeXt), or the features
        self.norm = nn.LayerNorm(axis=1, epsilon=1e-05, in_channels=8)
        self.conv = nn.Conv2D(8, 1, in_channels=8)
        self.gelu = nn.HybridLambda(gelu_tanh)
        self.layer_scale = ChannelScale(8, 4)
        # stochastic depth: Dropout with axes (1, 2, 3) keeps or drops each example whole
        self.drop_path = nn.Dropout(0.5, axes=(1, 2, 3))

    def hybrid_forward(self, F, x):
        out = self.norm(x)
        out = self.conv(out)
        out = self.gelu(out)
        out = self.layer_scale(out)
        out = self.drop_path(out)
        # broadcast_add, not +: + is elemwise_add, whose backward reuses its output's gradient node;
        # where a tensor collects 8 or more gradients, MXNet 1.9.1 then builds a cycle and
        # hybridizing fails ('control dep not found in graph')
        return F.broadcast_add(out, x)


class ConcatBlock(nn.HybridBlock):
    """Branches on one input, concatenated on channels. Spec path blocks[11]."""

    def __init__(self):
        super().__init__()
        self.branch2 = sequential(
            ChannelSlice(4, 8),
            nn.Conv2D(4, 3, padding=2, dilation=2, groups=2, in_channels=4),
            nn.ELU(0.5),
            LeakyReLU(-0.1),
        )

    def hybrid_forward(self, F, x):
        # F.identity after F.concat: without it MXNet 1.9.1 dies (SIGFPE) computing the input
        # gradient of a concatenation that a grouped or depthwise conv reads
        return F.identity(F.concat(F.slice_axis(x, axis=1, begin=0, end=4), self.branch2(x), dim=1))


class SumBlock(nn.HybridBlock):
    """Branches on one input, summed. Spec path blocks[13]."""

    def __init__(self):
        super().__init__()
        self.branch1 = GlobalMaxPool2D()

    def hybrid_forward(self, F, x):
        return F.broadcast_add(self.branch1(x), x)


class ConvBNReLU(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[14] and 1 more."""

    def __init__(self, kernel_size, padding):
        super().__init__()
        self.conv = nn.Conv2D(8, kernel_size, padding=padding, use_bias=False, in_channels=8)
        # Gluon's BatchNorm momentum weighs the running value: momentum=0.9 here is PyTorch's
        # momentum=0.1 (running = 0.9 * running + 0.1 * batch)
        self.bn = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=8)
        self.relu = nn.Activation("relu")

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        x = self.bn(x)
        x = self.relu(x)
        return x


class ResidualBlock2(nn.HybridBlock):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[16] and 1 more."""

    def __init__(self, out_channels, strides, project):
        super().__init__()
        self.conv1 = nn.Conv2D(
            out_channels, 3, strides=strides, padding=1, use_bias=False, in_channels=8
        )
        self.bn1 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels)
        self.relu = nn.Activation("relu")
        self.conv2 = nn.Conv2D(out_channels, 3, padding=1, use_bias=False, in_channels=out_channels)
        self.bn2 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels)
        self.shortcut = None
        if project:
            self.shortcut = sequential(
                nn.Conv2D(out_channels, 1, strides=strides, use_bias=False, in_channels=8),
                nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=out_channels),
            )

    def hybrid_forward(self, F, x):
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.broadcast_add(out, shortcut)


class SumBlock2(nn.HybridBlock):
    """Branches on one input, summed. Spec path blocks[18]."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Conv2D(12, 1, in_channels=12)

    def hybrid_forward(self, F, x):
        return self.branch1(x)


class DenseLayer(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[32].layers[0] and 1 more."""

    def __init__(self, in_channels):
        super().__init__()
        self.bn = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=in_channels)
        self.relu = nn.Activation("relu")
        self.conv = nn.Conv2D(4, 3, padding=1, in_channels=in_channels)

    def hybrid_forward(self, F, x):
        x = self.bn(x)
        x = self.relu(x)
        x = self.conv(x)
        return x


class ConcatBlock2(nn.HybridBlock):
    """Branches on one input, concatenated on channels. Spec path blocks[33]."""

    def __init__(self):
        super().__init__()
        self.branch1 = sequential(nn.Conv2D(4, 1, in_channels=16))
        # count_include_pad as in PyTorch (padding cells count in the average)
        self.branch2 = sequential(
            nn.AvgPool2D(3, 1, 1, count_include_pad=True), nn.Conv2D(4, 1, in_channels=16)
        )

    def hybrid_forward(self, F, x):
        return F.identity(F.concat(self.branch1(x), self.branch2(x), dim=1))


class ResidualBlock3(nn.HybridBlock):
    """A residual block: body(x) + x. Spec path blocks[35].branches[1].layers[1]."""

    def __init__(self):
        super().__init__()
        # flatten=False: Gluon's Dense flattens its input by default; PyTorch's Linear does not
        self.fc = nn.Dense(32, flatten=False, in_units=32)

    def hybrid_forward(self, F, x):
        out = self.fc(x)
        return F.broadcast_add(out, x)


class Branch(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[35].branches[1]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.block = ResidualBlock3()

    def hybrid_forward(self, F, x):
        x = self.flatten(x)
        x = self.block(x)
        return x


class SumBlock3(nn.HybridBlock):
    """Branches on one input, summed. Spec path blocks[35].branches[2].layers[5]."""

    def __init__(self):
        super().__init__()
        self.branch2 = PReLU(32, 2)

    def hybrid_forward(self, F, x):
        return F.broadcast_add(x, self.branch2(x))


class Branch2(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[35].branches[2]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.norm = nn.LayerNorm(axis=1, epsilon=1e-05, in_channels=32)
        self.layer_scale = ChannelScale(32, 2)
        self.normalize = Normalize(
            (
                -0.5,
                -0.4859,
                -0.4718,
                -0.4577,
                -0.4437,
                -0.4296,
                -0.4155,
                -0.4014,
                -0.3873,
                -0.3732,
                -0.3592,
                -0.3451,
                -0.331,
                -0.3169,
                -0.3028,
                -0.2887,
                -0.2746,
                -0.2606,
                -0.2465,
                -0.2324,
                -0.2183,
                -0.2042,
                -0.1901,
                -0.1761,
                -0.162,
                -0.1479,
                -0.1338,
                -0.1197,
                -0.1056,
                -0.0915,
                -0.0775,
                -0.0634,
            ),
            (
                1.0,
                1.0141,
                1.0282,
                1.0423,
                1.0563,
                1.0704,
                1.0845,
                1.0986,
                1.1127,
                1.1268,
                1.1408,
                1.1549,
                1.169,
                1.1831,
                1.1972,
                1.2113,
                1.2254,
                1.2394,
                1.2535,
                1.2676,
                1.2817,
                1.2958,
                1.3099,
                1.3239,
                1.338,
                1.3521,
                1.3662,
                1.3803,
                1.3944,
                1.4085,
                1.4225,
                1.4366,
            ),
            32,
            2,
        )
        self.bn = nn.BatchNorm(momentum=0.9, epsilon=1e-05, in_channels=32)
        self.block = SumBlock3()

    def hybrid_forward(self, F, x):
        x = self.flatten(x)
        x = self.norm(x)
        x = self.layer_scale(x)
        x = self.normalize(x)
        x = self.bn(x)
        x = self.block(x)
        return x


class ProductBlock(nn.HybridBlock):
    """Branches on one input, multiplied. Spec path blocks[35].branches[3].layers[1]."""

    def __init__(self):
        super().__init__()
        self.branch2 = sequential(
            nn.Dense(32, flatten=False, in_units=32), nn.Activation("sigmoid")
        )

    def hybrid_forward(self, F, x):
        return F.broadcast_mul(x, self.branch2(x))


class Branch3(nn.HybridBlock):
    """Layers in sequence. Spec path blocks[35].branches[3]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.block = ProductBlock()

    def hybrid_forward(self, F, x):
        x = self.flatten(x)
        x = self.block(x)
        return x


class Flat(nn.HybridBlock):
    """Branches on one input, concatenated on channels. Spec path blocks[35]."""

    def __init__(self):
        super().__init__()
        self.branch1 = sequential(nn.Flatten(), ChannelSlice(5, 20))
        self.branch2 = Branch()
        self.branch3 = Branch2()
        self.branch4 = Branch3()
        self.branch5 = sequential(
            nn.Flatten(), nn.Dense(6, use_bias=False, flatten=False, in_units=32)
        )

    def hybrid_forward(self, F, x):
        return F.identity(
            F.concat(
                self.branch1(x),
                self.branch2(x),
                self.branch3(x),
                self.branch4(x),
                self.branch5(x),
                dim=1,
            )
        )


class Kinds(nn.HybridBlock):
    """The network."""

    def __init__(self):
        super().__init__()
        self.preprocess = Normalize((0.5, 0.4, 0.3), (0.25,), 3, 4)
        self.pad = Pad2D((0, 1, 0, 1))
        self.crop = Crop2D((1, 0, 1, 0))
        self.conv1 = PaddedConv2D((1, 0, 1, 0), nn.Conv2D(8, 3, strides=2, in_channels=3))
        self.bn1 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, scale=False, in_channels=8)
        self.prelu = PReLU(8, 4)
        self.conv2 = nn.Conv2D(8, 3, padding=2, dilation=2, groups=8, use_bias=False, in_channels=8)
        self.bn2 = nn.BatchNorm(momentum=0.9, epsilon=1e-05, center=False, in_channels=8)
        self.hardswish = nn.HybridLambda(hardswish)
        self.se = SE()
        self.block1 = ResidualBlock()
        self.block2 = ConcatBlock()
        self.shuffle = ChannelShuffle(2)
        self.block3 = SumBlock()
        self.block4 = ConvBNReLU(kernel_size=1, padding=0)
        self.block5 = ConvBNReLU(kernel_size=3, padding=1)
        self.block6 = ResidualBlock2(8, strides=1, project=False)
        self.block7 = ResidualBlock2(12, strides=2, project=True)
        self.block8 = SumBlock2()
        # PyTorch's ceil mode drops a last window that would start in the right padding, MXNet's
        # keeps it: explicit -inf padding and a 'valid' pool give PyTorch's windows
        self.maxpool1 = CeilMaxPool(3, 2, (0, 0, 0, 0, 1, 1, 1, 1))
        self.avgpool1 = nn.AvgPool2D(3, 1, 1, count_include_pad=False)
        self.avgpool2 = AdaptiveAvgPool((7, 7))
        self.maxpool2 = CeilMaxPool(2, 2, (0, 0, 0, 0, 0, 1, 0, 1))
        # ceil-mode average pool: explicit zero padding, a 'valid' pool, then each window rescaled
        # to PyTorch's divisor (border windows count fewer cells)
        self.avgpool3 = CeilAvgPool((3, 3), (2, 2), (1, 1), True, 4, 4, (0, 0, 0, 0, 1, 2, 1, 2))
        self.conv3 = nn.Conv2D(8, 3, strides=2, padding=2, dilation=2, groups=2, in_channels=12)
        self.silu = nn.HybridLambda(silu)
        self.relu6 = nn.HybridLambda(relu6)
        # softrelu is MXNet's name for softplus, log(1 + exp(x))
        self.softplus = nn.Activation("softrelu")
        self.tanh = nn.Activation("tanh")
        self.leaky_relu = LeakyReLU(0.2)
        self.gelu = nn.GELU()
        self.softmax = nn.HybridLambda(channel_softmax)
        self.dense_block = DenseConcat(DenseLayer(8), DenseLayer(12))
        self.block9 = ConcatBlock2()
        self.dropout = nn.Dropout(0.5)
        self.flat = Flat()
        self.bn3 = nn.BatchNorm(momentum=0.99, epsilon=0.001, in_channels=117)
        self.logits = nn.Dense(10, flatten=False, in_units=117)

    def hybrid_forward(self, F, x):
        x = self.preprocess(x)
        x = self.pad(x)
        x = self.crop(x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.prelu(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.hardswish(x)
        x = self.se(x)
        x = self.block1(x)
        x = self.block2(x)
        x = self.shuffle(x)
        x = self.block3(x)
        x = self.block4(x)
        x = self.block5(x)
        x = self.block6(x)
        x = self.block7(x)
        x = self.block8(x)
        x = self.maxpool1(x)
        x = self.avgpool1(x)
        x = self.avgpool2(x)
        x = self.maxpool2(x)
        x = self.avgpool3(x)
        x = self.conv3(x)
        x = self.silu(x)
        x = self.relu6(x)
        x = self.softplus(x)
        x = self.tanh(x)
        x = self.leaky_relu(x)
        x = self.gelu(x)
        x = self.softmax(x)
        x = self.dense_block(x)
        x = self.block9(x)
        x = self.dropout(x)
        x = self.flat(x)
        x = self.bn3(x)
        x = self.logits(x)
        return x


def build_model():
    """Kinds for (N, 3, 12, 12) float32 input, initialised (Xavier)."""
    net = Kinds()
    net.initialize(mx.init.Xavier())
    return net
