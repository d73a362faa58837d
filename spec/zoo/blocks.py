"""Small building blocks of the classic CNNs, as spec fragments."""

from __future__ import annotations

from ..layers import (Activation, AvgPool2d, BatchNorm, ConcatBranches, Conv2d, Dense, DenseConcat,
                      Dropout, Layer, MaxPool2d, Residual, Sequence)


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


def dense_block(num_convs: int, growth_rate: int, name: str = "") -> DenseConcat:
    return DenseConcat(layers=tuple(
        Sequence(layers=(BatchNorm(), Activation("relu"), Conv2d(growth_rate, 3, padding=1)))
        for _ in range(num_convs)), name=name)


def transition(channels: int, name: str = "") -> Sequence:
    return Sequence(layers=(BatchNorm(), Activation("relu"), Conv2d(channels, 1), AvgPool2d(2, 2)), name=name)
