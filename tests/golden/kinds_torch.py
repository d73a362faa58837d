"""kinds in PyTorch, written by `netparity emit` from its netparity spec.

Input (N, 3, 12, 12) float32 (NCHW), output (N, 10). Weights that netparity
wrote (`netparity emit --weights`) load with:

    model = build_model()
    model.load_state_dict(torch.load(PATH))
"""

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of each pixel of an NCHW input (torchvision's ConvNeXt)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelScale(nn.Module):
    """x * weight[c], a learned multiplier per channel (ConvNeXt's layer scale, kept as (C,))."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.weight.view(-1, *([1] * (x.dim() - 2)))


class DropPath(nn.Dropout):
    """Stochastic depth (torchvision's StochasticDepth(p, "row")): in training each example is
    zeroed whole with probability p and the rest scaled by 1 / (1 - p); the identity in eval
    mode. A Dropout, so that tools treat it as one."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        draws = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * draws.bernoulli_(keep).div_(keep)


class ChannelSlice(nn.Module):
    """Channels start:stop (dim 1), ShuffleNetV2's split."""

    def __init__(self, start, stop):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start : self.stop]


class Normalize(nn.Module):
    """Fixed (x - mean[c]) / std[c]: constants, not weights (non-persistent buffers)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)

    def forward(self, x):
        shape = (-1,) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


class PaddedConv2d(nn.Conv2d):
    """nn.Conv2d after zero padding that may differ per side, (top, bottom, left, right):
    PyTorch's own padding is symmetric, TensorFlow's 'same' at stride 2 pads one more after."""

    def __init__(self, padding, *args, **kwargs):
        super().__init__(*args, **kwargs)
        top, bottom, left, right = padding
        self.pads = (left, right, top, bottom)  # F.pad's order: the last dimension first

    def forward(self, x):
        return super().forward(nn.functional.pad(x, self.pads))


def batchnorm_without_scale(norm, channels, **kwargs):
    """BatchNorm with a learned shift (beta) but gamma fixed at 1 (MXNet's fix_gamma): PyTorch
    has no flag for it, and F.batch_norm takes a missing weight as 1."""
    module = norm(channels, affine=False, **kwargs)
    module.bias = nn.Parameter(torch.zeros(channels))
    return module


class DenseConcat(nn.ModuleList):
    """DenseNet's dense block: each layer sees everything before it, x = cat(x, layer(x))."""

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class SE(nn.Module):
    """Branches on one input, multiplied. Spec path blocks[9]."""

    def __init__(self):
        super().__init__()
        self.branch2 = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(8, 4, 1),
            nn.ReLU(),
            nn.Conv2d(4, 8, 1),
            nn.Hardsigmoid(),
        )

    def forward(self, x):
        return x * self.branch2(x)


class ResidualBlock(nn.Module):
    """A residual block: body(x) + x. Spec path blocks[10]."""

    def __init__(self):
        super().__init__()
        self.norm = LayerNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 1)
        self.gelu = nn.GELU(approximate="tanh")
        self.layer_scale = ChannelScale(8)
        self.drop_path = DropPath(0.5)

    def forward(self, x):
        out = self.norm(x)
        out = self.conv(out)
        out = self.gelu(out)
        out = self.layer_scale(out)
        out = self.drop_path(out)
        return out + x


class ConcatBlock(nn.Module):
    """Branches on one input, concatenated on channels. Spec path blocks[11]."""

    def __init__(self):
        super().__init__()
        self.branch2 = nn.Sequential(
            ChannelSlice(4, 8),
            nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2),
            nn.ELU(alpha=0.5),
            nn.LeakyReLU(negative_slope=-0.1),
        )

    def forward(self, x):
        return torch.cat([x[:, 0:4], self.branch2(x)], dim=1)


class SumBlock(nn.Module):
    """Branches on one input, summed. Spec path blocks[13]."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        return self.branch1(x) + x


class ConvBNReLU(nn.Module):
    """Layers in sequence. Spec path blocks[14] and 1 more."""

    def __init__(self, kernel_size, padding):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        x = self.relu(x)
        return x


class ResidualBlock2(nn.Module):
    """A residual block: body(x) + shortcut(x), with a shortcut only when project. Spec path
    blocks[16] and 1 more."""

    def __init__(self, out_channels, stride, project):
        super().__init__()
        self.conv1 = nn.Conv2d(8, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if project:
            self.shortcut = nn.Sequential(
                nn.Conv2d(8, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return out + shortcut


class SumBlock2(nn.Module):
    """Branches on one input, summed. Spec path blocks[18]."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Conv2d(12, 12, 1)

    def forward(self, x):
        return self.branch1(x)


class DenseLayer(nn.Module):
    """Layers in sequence. Spec path blocks[32].layers[0] and 1 more."""

    def __init__(self, in_channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)

    def forward(self, x):
        x = self.bn(x)
        x = self.relu(x)
        x = self.conv(x)
        return x


class ConcatBlock2(nn.Module):
    """Branches on one input, concatenated on channels. Spec path blocks[33]."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(16, 4, 1))
        self.branch2 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(16, 4, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x)], dim=1)


class ResidualBlock3(nn.Module):
    """A residual block: body(x) + x. Spec path blocks[35].branches[1].layers[1]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 32)

    def forward(self, x):
        out = self.fc(x)
        return out + x


class Branch(nn.Module):
    """Layers in sequence. Spec path blocks[35].branches[1]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.block = ResidualBlock3()

    def forward(self, x):
        x = self.flatten(x)
        x = self.block(x)
        return x


class SumBlock3(nn.Module):
    """Branches on one input, summed. Spec path blocks[35].branches[2].layers[5]."""

    def __init__(self):
        super().__init__()
        self.branch2 = nn.PReLU(32)

    def forward(self, x):
        return x + self.branch2(x)


class Branch2(nn.Module):
    """Layers in sequence. Spec path blocks[35].branches[2]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.norm = nn.LayerNorm(32)
        self.layer_scale = ChannelScale(32)
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
        )
        self.bn = nn.BatchNorm1d(32)
        self.block = SumBlock3()

    def forward(self, x):
        x = self.flatten(x)
        x = self.norm(x)
        x = self.layer_scale(x)
        x = self.normalize(x)
        x = self.bn(x)
        x = self.block(x)
        return x


class ProductBlock(nn.Module):
    """Branches on one input, multiplied. Spec path blocks[35].branches[3].layers[1]."""

    def __init__(self):
        super().__init__()
        self.branch2 = nn.Sequential(nn.Linear(32, 32), nn.Sigmoid())

    def forward(self, x):
        return x * self.branch2(x)


class Branch3(nn.Module):
    """Layers in sequence. Spec path blocks[35].branches[3]."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.block = ProductBlock()

    def forward(self, x):
        x = self.flatten(x)
        x = self.block(x)
        return x


class Flat(nn.Module):
    """Branches on one input, concatenated on channels. Spec path blocks[35]."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Flatten(), ChannelSlice(5, 20))
        self.branch2 = Branch()
        self.branch3 = Branch2()
        self.branch4 = Branch3()
        self.branch5 = nn.Sequential(nn.Flatten(), nn.Linear(32, 6, bias=False))

    def forward(self, x):
        return torch.cat(
            [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x), self.branch5(x)],
            dim=1,
        )


class Kinds(nn.Module):
    """The network."""

    def __init__(self):
        super().__init__()
        self.preprocess = Normalize((0.5, 0.4, 0.3), (0.25,))
        # nn.ZeroPad2d takes (left, right, top, bottom)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.conv1 = PaddedConv2d((1, 0, 1, 0), 3, 8, 3, stride=2)
        self.bn1 = batchnorm_without_scale(nn.BatchNorm2d, 8)
        self.prelu = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8, bias=False)
        self.hardswish = nn.Hardswish()
        self.se = SE()
        self.block1 = ResidualBlock()
        self.block2 = ConcatBlock()
        self.shuffle = nn.ChannelShuffle(2)
        self.block3 = SumBlock()
        self.block4 = ConvBNReLU(kernel_size=1, padding=0)
        self.block5 = ConvBNReLU(kernel_size=3, padding=1)
        self.block6 = ResidualBlock2(8, stride=1, project=False)
        self.block7 = ResidualBlock2(12, stride=2, project=True)
        self.block8 = SumBlock2()
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avgpool1 = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.avgpool2 = nn.AdaptiveAvgPool2d(7)
        self.maxpool2 = nn.MaxPool2d(2, ceil_mode=True)
        self.avgpool3 = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.conv3 = nn.Conv2d(12, 8, 3, stride=2, padding=2, dilation=2, groups=2)
        self.silu = nn.SiLU()
        self.relu6 = nn.ReLU6()
        self.softplus = nn.Softplus()
        self.tanh = nn.Tanh()
        self.leaky_relu = nn.LeakyReLU(negative_slope=0.2)
        self.gelu = nn.GELU()
        # softmax over dim 1: the channels of each pixel, or the features
        self.softmax = nn.Softmax(dim=1)
        self.dense_block = DenseConcat([DenseLayer(8), DenseLayer(12)])
        self.block9 = ConcatBlock2()
        self.dropout = nn.Dropout(0.5)
        self.flat = Flat()
        self.bn3 = nn.BatchNorm1d(117, eps=0.001, momentum=0.01)
        self.logits = nn.Linear(117, 10)

    def forward(self, x):
        x = self.preprocess(x)
        x = self.pad(x)
        x = x[:, :, 1:, 1:]
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
    """Kinds for (N, 3, 12, 12) float32 input, in eval mode."""
    return Kinds().eval()
