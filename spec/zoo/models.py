"""The classic CNNs as specs: Dive into Deep Learning's set, two small MNIST
nets, and torchvision's definitions (whose weights line up one to one)."""

from __future__ import annotations

from ..layers import (Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv2d, Dense, Dropout, Flatten,
                      GlobalAvgPool, Layer, MaxPool2d, Sequence)
from ..model import Spec
from .blocks import (basic_residual, conv_relu, dense_block, dense_head, inception, inception_a, nin_block,
                     resnet_stem, transition, vgg_block)

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
