"""Training recipes: the classic hyperparameters of each zoo model.

From the Dive into Deep Learning training scripts (Fashion-MNIST, 10 epochs,
plain minibatch SGD) and, for the two small MNIST nets, the PyTorch tutorial
they come from (SGD lr 0.01, momentum 0.5, batch 64). Every value can be
overridden on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Recipe:
    lr: float
    batch_size: int
    resize: int = 28
    epochs: int = 10
    momentum: float = 0.0
    weight_decay: float = 0.0
    dataset: str = "fashion-mnist"
    overrides: dict = field(default_factory=dict)  # zoo options, e.g. VGG's width_ratio


_VGG = Recipe(lr=0.05, batch_size=128, resize=224, overrides={"width_ratio": 4})  # d2l trains VGG-11 at 1/4 width
_TORCHVISION = Recipe(lr=0.01, batch_size=128, resize=224, overrides={"in_channels": 1, "num_classes": 10})
_MNIST_TUTORIAL = Recipe(lr=0.01, batch_size=64, momentum=0.5, dataset="mnist")

RECIPES: dict[str, Recipe] = {
    "lenet": Recipe(lr=0.9, batch_size=256),
    "lenet_bn": Recipe(lr=1.0, batch_size=256),
    "alexnet": Recipe(lr=0.01, batch_size=128, resize=224),
    "vgg11": _VGG, "vgg13": _VGG, "vgg16": _VGG, "vgg19": _VGG,
    "nin": Recipe(lr=0.1, batch_size=128, resize=224),
    "googlenet": Recipe(lr=0.1, batch_size=128, resize=96),
    "resnet18": Recipe(lr=0.05, batch_size=256, resize=96),
    "resnet34": Recipe(lr=0.05, batch_size=256, resize=96),
    "densenet": Recipe(lr=0.1, batch_size=256, resize=96),
    "inception_mnist": _MNIST_TUTORIAL,
    "residual_mnist": _MNIST_TUTORIAL,
    "tv_alexnet": _TORCHVISION, "tv_vgg11": _TORCHVISION, "tv_vgg13": _TORCHVISION,
    "tv_resnet18": replace(_TORCHVISION, batch_size=256, lr=0.05),
    # The modern torchvision families: torchvision's reference scripts train them with SGD
    # momentum 0.9 (MobileNet, EfficientNet, RegNet, ShuffleNet, SqueezeNet) or AdamW (ConvNeXt);
    # netparity's training is SGD, so every one gets momentum 0.9 and a small weight decay.
    **{name: replace(_TORCHVISION, momentum=0.9, weight_decay=4e-5)
       for name in ("tv_mobilenet_v2", "tv_mobilenet_v3_small", "tv_efficientnet_b0", "tv_regnet_y_400mf",
                    "tv_convnext_tiny", "tv_squeezenet1_1", "tv_shufflenet_v2_x1_0", "tv_resnext50_32x4d",
                    "tv_densenet121")},
    # InsightFace trains MobileFaceNet with SGD momentum 0.9, weight decay 5e-4, lr 0.1 at 112 px; here
    # its embedding is the 10 class scores.
    "mobilefacenet": Recipe(lr=0.1, batch_size=128, resize=112, momentum=0.9, weight_decay=5e-4,
                            overrides={"in_channels": 1, "embedding_size": 10}),
}

DEFAULT = Recipe(lr=0.1, batch_size=128)
"""For spec files: a cautious default; pass --lr and --batch-size for a real run."""


def recipe_for(model: str) -> Recipe:
    return RECIPES.get(model, DEFAULT)
