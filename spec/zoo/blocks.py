"""Small building blocks of the classic CNNs, as spec fragments."""

from __future__ import annotations

from ..layers import (Activation, AvgPool2d, BatchNorm, Branches, ChannelScale, ChannelShuffle, ChannelSlice,
                      ConcatBranches, Conv2d, Dense, DenseConcat, DropPath, Dropout, GlobalAvgPool, Identity, Layer,
                      LayerNorm, MaxPool2d, PReLU, Residual, Sequence)


def conv_relu(channels: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True) -> list[Layer]:
    return [Conv2d(channels, kernel, stride, padding, bias=bias), Activation("relu")]


def vgg_block(num_convs: int, channels: int, name: str = "") -> Sequence:
    layers: list[Layer] = []
    for _ in range(num_convs):
        layers += conv_relu(channels, 3, padding=1)
    return Sequence(layers=(*layers, MaxPool2d(2, 2)), name=name)


def dense_head(widths: tuple[int, ...], num_classes: int, dropout: float = 0.5) -> list[Layer]:
    """The VGG/AlexNet classifier: (dense, relu, dropout) per width, then the logits."""
    head: list[Layer] = [Sequence(layers=(Dense(w), Activation("relu"), Dropout(dropout)), name=f"fc{i + 1}")
                         for i, w in enumerate(widths)]
    return head + [Dense(num_classes, name="logits")]


def nin_block(channels: int, kernel: int, stride: int, padding: int, name: str = "") -> Sequence:
    return Sequence(layers=(*conv_relu(channels, kernel, stride, padding),
                            *conv_relu(channels, 1), *conv_relu(channels, 1)), name=name)


def inception(c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, name: str = "") -> ConcatBranches:
    """d2l's Inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool->1x1, each conv ReLU'd."""
    return ConcatBranches(branches=(
        Sequence(layers=tuple(conv_relu(c1, 1))),
        Sequence(layers=(*conv_relu(c2[0], 1), *conv_relu(c2[1], 3, padding=1))),
        Sequence(layers=(*conv_relu(c3[0], 1), *conv_relu(c3[1], 5, padding=2))),
        Sequence(layers=(MaxPool2d(3, 1, 1), *conv_relu(c4, 1))),
    ), name=name)


def inception_a(name: str = "") -> ConcatBranches:
    """The InceptionA block of the classic MNIST tutorial net (88 output channels)."""
    return ConcatBranches(branches=(
        Sequence(layers=(Conv2d(16, 1),)),
        Sequence(layers=(Conv2d(16, 1), Conv2d(24, 5, padding=2))),
        Sequence(layers=(Conv2d(16, 1), Conv2d(24, 3, padding=1), Conv2d(24, 3, padding=1))),
        Sequence(layers=(AvgPool2d(3, 1, 1), Conv2d(24, 1))),
    ), name=name)


def basic_residual(channels: int, stride: int = 1, project: bool = False, bias: bool = True,
                   project_norm: bool = False, norm: bool = True) -> list[Layer]:
    """ResNet's two-3x3 unit followed by the ReLU after the add.

    d2l keeps conv biases and projects with a bare 1x1 conv; torchvision drops the
    biases and projects with conv + BatchNorm (``bias=False, project_norm=True``).
    """
    def maybe_norm() -> tuple[Layer, ...]:
        return (BatchNorm(),) if norm else ()

    body = Sequence(layers=(Conv2d(channels, 3, stride, 1, bias=bias), *maybe_norm(), Activation("relu"),
                            Conv2d(channels, 3, 1, 1, bias=bias), *maybe_norm()))
    shortcut = None
    if project:
        shortcut = Sequence(layers=(Conv2d(channels, 1, stride, bias=bias),
                                    *((BatchNorm(),) if project_norm else ())))
    return [Residual(body=body, shortcut=shortcut), Activation("relu")]


def resnet_stem(bias: bool = True) -> Sequence:
    return Sequence(layers=(Conv2d(64, 7, 2, 3, bias=bias), BatchNorm(), Activation("relu"),
                            MaxPool2d(3, 2, 1)), name="stem")


def dense_block(num_convs: int, growth_rate: int, name: str = "", bottleneck: int = 0,
                bias: bool = True) -> DenseConcat:
    """DenseNet's block. ``bottleneck`` > 0 puts DenseNet-BC's BN-ReLU-1x1 conv of that many
    channels before each 3x3 (torchvision: bn_size * growth_rate, bias-free convs)."""
    def unit() -> Sequence:
        narrow = (BatchNorm(), Activation("relu"), Conv2d(bottleneck, 1, bias=bias)) if bottleneck else ()
        return Sequence(layers=(*narrow, BatchNorm(), Activation("relu"), Conv2d(growth_rate, 3, padding=1, bias=bias)))
    return DenseConcat(layers=tuple(unit() for _ in range(num_convs)), name=name)


def transition(channels: int, name: str = "", bias: bool = True) -> Sequence:
    return Sequence(layers=(BatchNorm(), Activation("relu"), Conv2d(channels, 1, bias=bias), AvgPool2d(2, 2)),
                    name=name)


# ---------------------------------------------------------------------------------------
# The blocks of the modern families (torchvision's definitions, one builder each)
# ---------------------------------------------------------------------------------------

def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible`` (from TensorFlow's MobileNet): round a channel count
    to a multiple of ``divisor``, never more than 10% down."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def activation(function: str | None) -> tuple[Layer, ...]:
    """An activation by name; ``"prelu"`` is the learned per-channel slope, None is linear."""
    if function is None:
        return ()
    return (PReLU(),) if function == "prelu" else (Activation(function),)


def conv_bn_act(channels: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu",
                eps: float = 1e-5, momentum: float = 0.1, name: str = "") -> Sequence:
    """torchvision's Conv2dNormActivation: a bias-free conv padded by (kernel - 1) // 2, BatchNorm,
    then the activation (none for a linear projection)."""
    return Sequence(layers=(Conv2d(channels, kernel, stride, (kernel - 1) // 2, bias=False, groups=groups),
                            BatchNorm(eps=eps, momentum=momentum), *activation(act)), name=name)


def squeeze_excitation(channels: int, squeeze: int, act: str = "relu", gate: str = "sigmoid") -> Branches:
    """torchvision's SqueezeExcitation: x * gate(fc2(act(fc1(avgpool(x))))), fc1 and fc2 1x1 convs
    with biases; the (C, 1, 1) gate broadcasts over the input."""
    return Branches(branches=(
        Identity(),
        Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(squeeze, 1), Activation(act), Conv2d(channels, 1),
                         Activation(gate)))), merge="mul", name="se")


def residual_if(body: Sequence, same_shape: bool) -> Layer:
    """``body(x) + x`` where input and output shapes agree, else ``body`` alone (the inverted
    residuals of MobileNet, EfficientNet and MobileFaceNet)."""
    return Residual(body=body) if same_shape else body


def inverted_residual(in_channels: int, out_channels: int, stride: int, expanded: int, kernel: int = 3,
                      act: str = "relu6", se: Layer | None = None, eps: float = 1e-5, momentum: float = 0.1,
                      drop_path: Layer | None = None) -> Layer:
    """MobileNetV2's bottleneck as torchvision builds it, and its descendants: 1x1 expansion
    (left out when ``expanded == in_channels``), depthwise ``kernel``, optional
    squeeze-and-excitation, linear 1x1 projection; a residual add when the shapes agree, with
    ``drop_path`` (EfficientNet's stochastic depth) on the body just before the add."""
    norm = dict(eps=eps, momentum=momentum)
    layers: list[Layer] = []
    if expanded != in_channels:
        layers.append(conv_bn_act(expanded, 1, act=act, **norm))
    layers.append(conv_bn_act(expanded, kernel, stride, groups=expanded, act=act, **norm))
    if se is not None:
        layers.append(se)
    layers.append(conv_bn_act(out_channels, 1, act=None, **norm))
    same_shape = stride == 1 and in_channels == out_channels
    if same_shape and drop_path is not None:
        layers.append(drop_path)
    return residual_if(Sequence(layers=tuple(layers)), same_shape)


def bottleneck_residual(width: int, out_channels: int, stride: int = 1, groups: int = 1,
                        project: bool = False) -> list[Layer]:
    """torchvision's ResNet Bottleneck (v1.5: the stride on the 3x3, grouped for ResNeXt), then
    the ReLU after the add; ``project`` adds the conv + BatchNorm shortcut, registered after the
    body as in torchvision."""
    body = Sequence(layers=(Conv2d(width, 1, bias=False), BatchNorm(), Activation("relu"),
                            Conv2d(width, 3, stride, 1, bias=False, groups=groups), BatchNorm(), Activation("relu"),
                            Conv2d(out_channels, 1, bias=False), BatchNorm()))
    shortcut = Sequence(layers=(Conv2d(out_channels, 1, stride, bias=False), BatchNorm())) if project else None
    return [Residual(body=body, shortcut=shortcut), Activation("relu")]


def regnet_block(in_channels: int, out_channels: int, stride: int, group_width: int, se_ratio: float) -> Sequence:
    """torchvision's RegNet ResBottleneckBlock (bottleneck multiplier 1): 1x1, grouped 3x3 with
    squeeze-and-excitation, linear 1x1; summed with the input or its projection, then ReLU.
    torchvision registers the projection before the transform, so it is the first branch."""
    groups = out_channels // group_width
    transform = Sequence(layers=(
        conv_bn_act(out_channels, 1), conv_bn_act(out_channels, 3, stride, groups=groups),
        squeeze_excitation(out_channels, int(round(se_ratio * in_channels))),
        conv_bn_act(out_channels, 1, act=None)), name="f")
    if in_channels != out_channels or stride != 1:
        merged: Layer = Branches(branches=(conv_bn_act(out_channels, 1, stride, act=None, name="proj"), transform),
                                 merge="add")
    else:
        merged = Residual(body=transform)
    return Sequence(layers=(merged, Activation("relu")))


def convnext_block(channels: int, drop_path: float, eps: float = 1e-6) -> Residual:
    """torchvision's CNBlock: depthwise 7x7, LayerNorm over channels, the two Linear layers on
    permuted pixels as 1x1 convs with GELU between, layer scale, stochastic depth, + input.
    torchvision registers the layer scale before the block, hence ``parameter_order``."""
    body = Sequence(layers=(Conv2d(channels, 7, padding=3, groups=channels), LayerNorm(eps=eps),
                            Conv2d(4 * channels, 1), Activation("gelu"), Conv2d(channels, 1), ChannelScale(),
                            DropPath(drop_path)),
                    parameter_order=(5, 0, 1, 2, 3, 4, 6))
    return Residual(body=body)


def fire(squeeze: int, expand1x1: int, expand3x3: int) -> Sequence:
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands side by side."""
    return Sequence(layers=(*conv_relu(squeeze, 1), Branches(branches=(
        Sequence(layers=tuple(conv_relu(expand1x1, 1))),
        Sequence(layers=tuple(conv_relu(expand3x3, 3, padding=1)))), merge="concat")), name="fire")


def shuffle_unit(in_channels: int, out_channels: int, stride: int) -> Sequence:
    """torchvision's ShuffleNetV2 InvertedResidual: at stride 1 the first half of the channels
    passes through and the second half is transformed; at stride 2 both branches transform the
    whole input. The halves are concatenated, then shuffled in two groups."""
    half = out_channels // 2

    def depthwise(channels: int) -> tuple[Layer, ...]:
        return (Conv2d(channels, 3, stride, 1, bias=False, groups=channels), BatchNorm())

    def pointwise(channels: int) -> tuple[Layer, ...]:
        return (Conv2d(channels, 1, bias=False), BatchNorm(), Activation("relu"))

    transform = (*pointwise(half), *depthwise(half), *pointwise(half))
    if stride == 1:
        branches: tuple[Layer, ...] = (ChannelSlice(0, in_channels // 2),
                                       Sequence(layers=(ChannelSlice(in_channels // 2, in_channels), *transform)))
    else:
        branches = (Sequence(layers=(*depthwise(in_channels), *pointwise(half))), Sequence(layers=transform))
    return Sequence(layers=(Branches(branches=branches, merge="concat"), ChannelShuffle(2)))
