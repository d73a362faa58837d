"""The classic CNNs as specs: Dive into Deep Learning's set, two small MNIST
nets, and torchvision's definitions (whose weights line up one to one)."""

from __future__ import annotations

from ..layers import (Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv2d, Dense, DropPath, Dropout, Flatten,
                      GlobalAvgPool, Layer, LayerNorm, MaxPool2d, Sequence)
from ..model import Spec
from .blocks import (basic_residual, bottleneck_residual, conv_bn_act, conv_relu, convnext_block, dense_block,
                     dense_head, fire, inception, inception_a, inverted_residual, make_divisible, nin_block,
                     regnet_block, resnet_stem, shuffle_unit, squeeze_excitation, transition, vgg_block)

VGG_ARCHS = {
    "vgg11": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    "vgg13": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}
RESNET_STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


def lenet(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (Conv2d(6, 5, padding=2), Activation("sigmoid"), AvgPool2d(2, 2),
              Conv2d(16, 5), Activation("sigmoid"), AvgPool2d(2, 2), Flatten(),
              Dense(120), Activation("sigmoid"), Dense(84), Activation("sigmoid"), Dense(num_classes))
    return Spec("lenet", (in_channels, 28, 28), blocks, "LeNet-5 (d2l)")


def lenet_bn(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (Conv2d(6, 5), BatchNorm(), Activation("sigmoid"), AvgPool2d(2, 2),
              Conv2d(16, 5), BatchNorm(), Activation("sigmoid"), AvgPool2d(2, 2), Flatten(),
              Dense(120), BatchNorm(), Activation("sigmoid"), Dense(84), BatchNorm(), Activation("sigmoid"),
              Dense(num_classes))
    return Spec("lenet_bn", (in_channels, 28, 28), blocks, "LeNet with BatchNorm (d2l)")


def alexnet(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (*conv_relu(96, 11, 4, 1), MaxPool2d(3, 2),
              *conv_relu(256, 5, padding=2), MaxPool2d(3, 2),
              *conv_relu(384, 3, padding=1), *conv_relu(384, 3, padding=1), *conv_relu(256, 3, padding=1),
              MaxPool2d(3, 2), Flatten(), *dense_head((4096, 4096), num_classes))
    return Spec("alexnet", (in_channels, 224, 224), blocks, "AlexNet (d2l)")


def vgg(conv_arch, in_channels: int = 1, num_classes: int = 10, width_ratio: int = 1,
        name: str = "vgg") -> Spec:
    """VGG from a block list of (number of convs, channels); ``width_ratio`` divides the
    channels, as d2l does to train VGG-11 on Fashion-MNIST (ratio 4)."""
    if not isinstance(width_ratio, int) or width_ratio < 1:
        raise ValueError(f"width_ratio must be a positive integer, got {width_ratio!r}")
    blocks = [vgg_block(n, c // width_ratio, name=f"block{i + 1}") for i, (n, c) in enumerate(conv_arch)]
    blocks += [Flatten(), *dense_head((4096, 4096), num_classes)]
    return Spec(name, (in_channels, 224, 224), tuple(blocks),
                f"VGG (d2l) {conv_arch}" + (f", width / {width_ratio}" if width_ratio > 1 else ""))


def nin(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (nin_block(96, 11, 4, 0, "nin1"), MaxPool2d(3, 2),
              nin_block(256, 5, 1, 2, "nin2"), MaxPool2d(3, 2),
              nin_block(384, 3, 1, 1, "nin3"), MaxPool2d(3, 2), Dropout(0.5),
              nin_block(num_classes, 3, 1, 1, "nin4"), GlobalAvgPool())
    return Spec("nin", (in_channels, 224, 224), blocks, "Network in Network (d2l)")


def googlenet(in_channels: int = 1, num_classes: int = 10) -> Spec:
    pool = MaxPool2d(3, 2, 1)
    blocks = (
        Sequence(layers=(*conv_relu(64, 7, 2, 3), pool), name="b1"),
        Sequence(layers=(*conv_relu(64, 1), *conv_relu(192, 3, padding=1), pool), name="b2"),
        Sequence(layers=(inception(64, (96, 128), (16, 32), 32), inception(128, (128, 192), (32, 96), 64),
                         pool), name="b3"),
        Sequence(layers=(inception(192, (96, 208), (16, 48), 64), inception(160, (112, 224), (24, 64), 64),
                         inception(128, (128, 256), (24, 64), 64), inception(112, (144, 288), (32, 64), 64),
                         inception(256, (160, 320), (32, 128), 128), pool), name="b4"),
        Sequence(layers=(inception(256, (160, 320), (32, 128), 128), inception(384, (192, 384), (48, 128), 128),
                         GlobalAvgPool()), name="b5"),
        Dense(num_classes, name="logits"),
    )
    return Spec("googlenet", (in_channels, 96, 96), blocks, "GoogLeNet (d2l)")


def resnet(stages=(2, 2, 2, 2), in_channels: int = 1, num_classes: int = 10, torchvision_style: bool = False,
           name: str = "resnet") -> Spec:
    """ResNet from units per stage over channels 64, 128, 256, 512.

    d2l style keeps conv biases and projects with a bare 1x1 conv; torchvision style
    has bias-free convs and a conv + BatchNorm projection.
    """
    style = dict(bias=False, project_norm=True) if torchvision_style else dict(bias=True, project_norm=False)
    blocks: list[Layer] = [resnet_stem(bias=style["bias"])]
    for stage, (units, channels) in enumerate(zip(stages, (64, 128, 256, 512))):
        layers: list[Layer] = []
        for unit in range(units):
            downsample = stage > 0 and unit == 0
            layers += basic_residual(channels, stride=2 if downsample else 1, project=downsample, **style)
        blocks.append(Sequence(layers=tuple(layers), name=f"stage{stage + 1}"))
    blocks += [GlobalAvgPool(), Dense(num_classes, name="logits")]
    return Spec(name, (in_channels, 96 if not torchvision_style else 224, 96 if not torchvision_style else 224),
                tuple(blocks), ("ResNet (torchvision)" if torchvision_style else "ResNet (d2l)") + f" {stages}")


def densenet(growth_rate: int = 32, convs_per_block=(4, 4, 4, 4), in_channels: int = 1,
             num_classes: int = 10) -> Spec:
    blocks: list[Layer] = [resnet_stem()]
    channels = 64
    for i, num_convs in enumerate(convs_per_block):
        blocks.append(dense_block(num_convs, growth_rate, name=f"dense{i + 1}"))
        channels += num_convs * growth_rate
        if i != len(convs_per_block) - 1:
            channels //= 2
            blocks.append(transition(channels, name=f"transition{i + 1}"))
    blocks += [Sequence(layers=(BatchNorm(), Activation("relu"), GlobalAvgPool()), name="head"),
               Dense(num_classes, name="logits")]
    return Spec("densenet", (in_channels, 96, 96), tuple(blocks), f"DenseNet (d2l), growth {growth_rate}")


def inception_mnist(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (Conv2d(10, 5), MaxPool2d(2), Activation("relu"), inception_a("inception1"),
              Conv2d(20, 5), MaxPool2d(2), Activation("relu"), inception_a("inception2"),
              Flatten(), Dense(num_classes))
    return Spec("inception_mnist", (in_channels, 28, 28), blocks, "small Inception net for MNIST")


def residual_mnist(in_channels: int = 1, num_classes: int = 10) -> Spec:
    blocks = (Conv2d(16, 5), MaxPool2d(2), Activation("relu"),
              Sequence(layers=tuple(basic_residual(16, norm=False)), name="residual1"),
              Conv2d(32, 5), MaxPool2d(2), Activation("relu"),
              Sequence(layers=tuple(basic_residual(32, norm=False)), name="residual2"),
              Flatten(), Dense(num_classes))
    return Spec("residual_mnist", (in_channels, 28, 28), blocks, "small residual net for MNIST")


def tv_alexnet(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    blocks = (Sequence(layers=(*conv_relu(64, 11, 4, 2), MaxPool2d(3, 2), *conv_relu(192, 5, padding=2),
                               MaxPool2d(3, 2), *conv_relu(384, 3, padding=1), *conv_relu(256, 3, padding=1),
                               *conv_relu(256, 3, padding=1), MaxPool2d(3, 2)), name="features"),
              AdaptiveAvgPool2d(6, name="avgpool"), Flatten(),
              Sequence(layers=(Dropout(0.5), Dense(4096), Activation("relu"), Dropout(0.5), Dense(4096),
                               Activation("relu"), Dense(num_classes)), name="classifier"))
    return Spec("tv_alexnet", (in_channels, 224, 224), blocks, "AlexNet (torchvision)")


def tv_vgg(conv_arch, in_channels: int = 3, num_classes: int = 1000, name: str = "tv_vgg") -> Spec:
    features = [vgg_block(n, c, name=f"block{i + 1}") for i, (n, c) in enumerate(conv_arch)]
    blocks = (*features, AdaptiveAvgPool2d(7, name="avgpool"), Flatten(), *dense_head((4096, 4096), num_classes))
    return Spec(name, (in_channels, 224, 224), blocks, f"VGG (torchvision) {conv_arch}")


# ---------------------------------------------------------------------------------------
# torchvision's modern families (torchvision 0.29, eval mode; weights line up one to one
# with their state_dicts, BatchNorm's num_batches_tracked aside)
# ---------------------------------------------------------------------------------------

# (expansion t, channels c, units n, first stride s): torchvision's inverted_residual_setting
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))
# (input, kernel, expanded, output, squeeze-excite, activation, stride): mobilenet_v3_small's bneck_conf
MOBILENET_V3_SMALL_SETTING = (
    (16, 3, 16, 16, True, "relu", 2), (16, 3, 72, 24, False, "relu", 2), (24, 3, 88, 24, False, "relu", 1),
    (24, 5, 96, 40, True, "hardswish", 2), (40, 5, 240, 40, True, "hardswish", 1),
    (40, 5, 240, 40, True, "hardswish", 1), (40, 5, 120, 48, True, "hardswish", 1),
    (48, 5, 144, 48, True, "hardswish", 1), (48, 5, 288, 96, True, "hardswish", 2),
    (96, 5, 576, 96, True, "hardswish", 1), (96, 5, 576, 96, True, "hardswish", 1))
# (expansion, kernel, first stride, input, output, units): efficientnet_b0's MBConvConfig rows
EFFICIENTNET_B0_SETTING = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                           (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
# (width, units) per stage, stride 2, group width 8, SE ratio 0.25: what torchvision's
# BlockParams.from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8) gives
REGNET_Y_400MF_STAGES = ((48, 1), (104, 3), (208, 6), (440, 6))
# (channels, next stage's channels or None, units): convnext_tiny's CNBlockConfig rows
CONVNEXT_TINY_SETTING = ((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3))
# (squeeze, expand 1x1, expand 3x3) per Fire module, "M" for a ceil-mode 3x3/2 max pool
SQUEEZENET1_1_FEATURES = ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
                          (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))
SHUFFLENET_V2_X1_0 = dict(repeats=(4, 8, 4), channels=(24, 116, 232, 464, 1024))
RESNEXT50_32X4D = dict(units=(3, 4, 6, 3), groups=32, width_per_group=4)
DENSENET121 = dict(growth_rate=32, units=(6, 12, 24, 16), init_features=64, bn_size=4)
# MobileFaceNet's Table 1 after the two stem convs: (output, expanded, units, first stride); the
# first unit of each row is InsightFace's stride-2 "DResidual", the rest its residual units
MOBILEFACENET_SETTING = ((64, 128, 5, 2), (128, 256, 1, 2), (128, 256, 6, 1), (128, 512, 1, 2), (128, 256, 2, 1))


def tv_mobilenet_v2(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    features: list[Layer] = [conv_bn_act(32, 3, 2, act="relu6")]
    channels = 32
    for t, c, n, s in MOBILENET_V2_SETTING:
        for i in range(n):
            features.append(inverted_residual(channels, c, s if i == 0 else 1, int(round(channels * t))))
            channels = c
    features.append(conv_bn_act(1280, 1, act="relu6"))
    blocks = (Sequence(layers=tuple(features), name="features"), GlobalAvgPool(name="avgpool"),
              Sequence(layers=(Dropout(0.2), Dense(num_classes)), name="classifier"))
    return Spec("tv_mobilenet_v2", (in_channels, 224, 224), blocks, "MobileNetV2 (torchvision)")


def tv_mobilenet_v3_small(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    norm = dict(eps=0.001, momentum=0.01)  # torchvision's MobileNetV3 BatchNorm
    features: list[Layer] = [conv_bn_act(16, 3, 2, act="hardswish", **norm)]
    for c_in, kernel, expanded, c_out, use_se, act, stride in MOBILENET_V3_SMALL_SETTING:
        se = squeeze_excitation(expanded, make_divisible(expanded // 4, 8), "relu", "hardsigmoid") if use_se else None
        features.append(inverted_residual(c_in, c_out, stride, expanded, kernel, act, se, **norm))
    features.append(conv_bn_act(6 * MOBILENET_V3_SMALL_SETTING[-1][3], 1, act="hardswish", **norm))
    blocks = (Sequence(layers=tuple(features), name="features"), GlobalAvgPool(name="avgpool"),
              Sequence(layers=(Dense(1024), Activation("hardswish"), Dropout(0.2), Dense(num_classes)),
                       name="classifier"))
    return Spec("tv_mobilenet_v3_small", (in_channels, 224, 224), blocks, "MobileNetV3-Small (torchvision)")


def tv_efficientnet_b0(in_channels: int = 3, num_classes: int = 1000, stochastic_depth_prob: float = 0.2) -> Spec:
    """EfficientNet-B0 with torchvision's stochastic depth: block k of 16 drops its residual
    branch with probability stochastic_depth_prob * k / 16 in training."""
    features: list[Layer] = [conv_bn_act(32, 3, 2, act="silu")]
    total = sum(row[-1] for row in EFFICIENTNET_B0_SETTING)
    block_id = 0
    for expand, kernel, stride, c_in, c_out, units in EFFICIENTNET_B0_SETTING:
        stage: list[Layer] = []
        for i in range(units):
            first_in = c_in if i == 0 else c_out
            expanded = make_divisible(first_in * expand, 8)
            se = squeeze_excitation(expanded, max(1, first_in // 4), "silu", "sigmoid")
            p = stochastic_depth_prob * float(block_id) / total
            stage.append(inverted_residual(first_in, c_out, stride if i == 0 else 1, expanded, kernel, "silu", se,
                                           drop_path=DropPath(p)))
            block_id += 1
        features.append(Sequence(layers=tuple(stage)))
    features.append(conv_bn_act(4 * EFFICIENTNET_B0_SETTING[-1][4], 1, act="silu"))
    blocks = (Sequence(layers=tuple(features), name="features"), GlobalAvgPool(name="avgpool"),
              Sequence(layers=(Dropout(0.2), Dense(num_classes)), name="classifier"))
    return Spec("tv_efficientnet_b0", (in_channels, 224, 224), blocks, "EfficientNet-B0 (torchvision)")


def tv_regnet_y_400mf(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    channels = 32
    stages: list[Layer] = []
    for i, (width, units) in enumerate(REGNET_Y_400MF_STAGES):
        stage = []
        for unit in range(units):
            stage.append(regnet_block(channels, width, 2 if unit == 0 else 1, group_width=8, se_ratio=0.25))
            channels = width
        stages.append(Sequence(layers=tuple(stage), name=f"block{i + 1}"))
    blocks = (conv_bn_act(32, 3, 2, name="stem"), Sequence(layers=tuple(stages), name="trunk_output"),
              GlobalAvgPool(name="avgpool"), Dense(num_classes, name="fc"))
    return Spec("tv_regnet_y_400mf", (in_channels, 224, 224), blocks, "RegNetY-400MF (torchvision)")


def tv_convnext_tiny(in_channels: int = 3, num_classes: int = 1000, stochastic_depth_prob: float = 0.1) -> Spec:
    """ConvNeXt-T with torchvision's stochastic depth: block k of 18 drops its residual branch
    with probability stochastic_depth_prob * k / 17 in training."""
    eps = 1e-6
    first = CONVNEXT_TINY_SETTING[0][0]
    features: list[Layer] = [Sequence(layers=(Conv2d(first, 4, 4), LayerNorm(eps=eps)), name="stem")]
    total = sum(row[2] for row in CONVNEXT_TINY_SETTING)
    block_id = 0
    for channels, next_channels, units in CONVNEXT_TINY_SETTING:
        stage = []
        for _ in range(units):
            stage.append(convnext_block(channels, stochastic_depth_prob * block_id / (total - 1.0), eps))
            block_id += 1
        features.append(Sequence(layers=tuple(stage)))
        if next_channels is not None:
            features.append(Sequence(layers=(LayerNorm(eps=eps), Conv2d(next_channels, 2, 2)), name="downsample"))
    blocks = (Sequence(layers=tuple(features), name="features"), GlobalAvgPool(keepdims=True, name="avgpool"),
              Sequence(layers=(LayerNorm(eps=eps), Flatten(), Dense(num_classes)), name="classifier"))
    return Spec("tv_convnext_tiny", (in_channels, 224, 224), blocks, "ConvNeXt-T (torchvision)")


def tv_squeezenet1_1(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    features: list[Layer] = [*conv_relu(64, 3, 2)]
    for item in SQUEEZENET1_1_FEATURES:
        features.append(MaxPool2d(3, 2, ceil_mode=True) if item == "M" else fire(*item))
    blocks = (Sequence(layers=tuple(features), name="features"),
              Sequence(layers=(Dropout(0.5), *conv_relu(num_classes, 1), GlobalAvgPool()), name="classifier"))
    return Spec("tv_squeezenet1_1", (in_channels, 224, 224), blocks, "SqueezeNet 1.1 (torchvision)")


def tv_shufflenet_v2_x1_0(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    channels = SHUFFLENET_V2_X1_0["channels"]
    blocks: list[Layer] = [Sequence(layers=(Conv2d(channels[0], 3, 2, 1, bias=False), BatchNorm(), Activation("relu")),
                                    name="conv1"), MaxPool2d(3, 2, 1, name="maxpool")]
    current = channels[0]
    for i, (repeats, out) in enumerate(zip(SHUFFLENET_V2_X1_0["repeats"], channels[1:])):
        units = [shuffle_unit(current, out, 2)] + [shuffle_unit(out, out, 1) for _ in range(repeats - 1)]
        blocks.append(Sequence(layers=tuple(units), name=f"stage{i + 2}"))
        current = out
    blocks += [Sequence(layers=(Conv2d(channels[-1], 1, bias=False), BatchNorm(), Activation("relu")), name="conv5"),
               GlobalAvgPool(), Dense(num_classes, name="fc")]
    return Spec("tv_shufflenet_v2_x1_0", (in_channels, 224, 224), tuple(blocks), "ShuffleNetV2 x1.0 (torchvision)")


def tv_resnext50_32x4d(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    groups, per_group = RESNEXT50_32X4D["groups"], RESNEXT50_32X4D["width_per_group"]
    blocks: list[Layer] = [resnet_stem(bias=False)]
    channels = 64
    for stage, (units, planes) in enumerate(zip(RESNEXT50_32X4D["units"], (64, 128, 256, 512))):
        width, out = int(planes * (per_group / 64.0)) * groups, planes * 4
        layers: list[Layer] = []
        for unit in range(units):
            stride = 2 if stage > 0 and unit == 0 else 1
            project = stride != 1 or channels != out  # torchvision's downsample condition
            layers += bottleneck_residual(width, out, stride, groups, project=project)
            channels = out
        blocks.append(Sequence(layers=tuple(layers), name=f"layer{stage + 1}"))
    blocks += [GlobalAvgPool(name="avgpool"), Dense(num_classes, name="fc")]
    return Spec("tv_resnext50_32x4d", (in_channels, 224, 224), tuple(blocks), "ResNeXt-50 32x4d (torchvision)")


def tv_densenet121(in_channels: int = 3, num_classes: int = 1000) -> Spec:
    growth, bottleneck = DENSENET121["growth_rate"], DENSENET121["bn_size"] * DENSENET121["growth_rate"]
    channels = DENSENET121["init_features"]
    features: list[Layer] = [Conv2d(channels, 7, 2, 3, bias=False), BatchNorm(), Activation("relu"),
                             MaxPool2d(3, 2, 1)]
    units = DENSENET121["units"]
    for i, n in enumerate(units):
        features.append(dense_block(n, growth, name=f"denseblock{i + 1}", bottleneck=bottleneck, bias=False))
        channels += n * growth
        if i != len(units) - 1:
            channels //= 2
            features.append(transition(channels, name=f"transition{i + 1}", bias=False))
    features.append(BatchNorm(name="norm5"))
    blocks = (Sequence(layers=tuple(features), name="features"), Activation("relu"), GlobalAvgPool(),
              Dense(num_classes, name="classifier"))
    return Spec("tv_densenet121", (in_channels, 224, 224), blocks, "DenseNet-121 (torchvision)")


def mobilefacenet(in_channels: int = 3, embedding_size: int = 128) -> Spec:
    """MobileFaceNet (Chen et al. 2018, "MobileFaceNets: Efficient CNNs for Accurate Real-Time
    Face Verification on Mobile Devices", Table 1) as InsightFace trains it
    (deepinsight/insightface, recognition/symbol/fmobilefacenet.py, blocks (1, 4, 6, 2), and
    symbol_utils.get_fc1 with fc_type "GDC"; its arcface_oneflow port is line for line the same).

    conv 3x3/2 64 and depthwise conv 3x3 64 (conv + BN + PReLU), the bottleneck rows of
    Table 1 (1x1 expansion + BN + PReLU, depthwise 3x3 + BN + PReLU, linear 1x1 + BN; expansion 2,
    4 in the stride-2 units to 128 channels and 28 -> 14 -> 7 px; a residual add at stride 1),
    conv 1x1 512 + BN + PReLU, the linear global depthwise conv 7x7 + BN ("GDC"), flatten, a
    dense layer to the embedding (with a bias: MXNet's FullyConnected) and a BatchNorm without a
    learned scale (MXNet's fix_gamma=True, eps 2e-5). The other BatchNorms keep MXNet's default
    eps 1e-3; InsightFace's momentum 0.9 is PyTorch's 0.1. InsightFace feeds (x - 127.5) / 128:
    this spec takes the normalised 112x112 face.
    """
    norm = dict(eps=1e-3)
    blocks: list[Layer] = [conv_bn_act(64, 3, 2, act="prelu", name="conv_1", **norm),
                           conv_bn_act(64, 3, 1, groups=64, act="prelu", name="conv_2_dw", **norm)]
    channels = 64
    for out, expanded, units, stride in MOBILEFACENET_SETTING:
        for i in range(units):
            blocks.append(inverted_residual(channels, out, stride if i == 0 else 1, expanded, act="prelu", **norm))
            channels = out
    blocks += [conv_bn_act(512, 1, act="prelu", name="conv_6sep", **norm),
               Sequence(layers=(Conv2d(512, 7, groups=512, bias=False), BatchNorm(**norm)), name="conv_6dw7_7"),
               Flatten(), Dense(embedding_size, name="pre_fc1"), BatchNorm(eps=2e-5, scale=False, name="fc1")]
    return Spec("mobilefacenet", (in_channels, 112, 112), tuple(blocks),
                "MobileFaceNet face embedding (InsightFace, GDC head)")
