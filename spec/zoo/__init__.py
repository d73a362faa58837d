"""The model zoo: ``names()`` lists it, ``get(name, **overrides)`` builds a Spec.

Like torchvision's ``get_model``: each entry is a small builder over a config
(VGG's block lists, ResNet's units per stage).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import NetparityError
from ..model import Spec
from . import models
from .models import RESNET_STAGES, VGG_ARCHS


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., Spec]
    summary: str

    def options(self) -> list[str]:
        return list(inspect.signature(self.build).parameters)


_ZOO: dict[str, Entry] = {}


class UnknownModel(NetparityError, KeyError):
    """A name that is not in the zoo (a KeyError too, for callers that look names up)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0])


def register(name: str, build: Callable[..., Spec], summary: str) -> None:
    if name in _ZOO:
        raise ValueError(f"zoo entry {name!r} is already registered")
    _ZOO[name] = Entry(name, build, summary)


def _named(builder, name, defaults=None, **fixed):
    """``builder`` with some arguments fixed (``conv_arch``) and some defaults changed."""
    defaults = defaults or {}

    def build(**overrides) -> Spec:
        spec = builder(**fixed, **{**defaults, **overrides})
        return Spec(name, spec.input_shape, spec.blocks, spec.description)

    parameters = inspect.signature(builder).parameters.values()
    build.__signature__ = inspect.Signature([
        p.replace(default=defaults.get(p.name, p.default)) for p in parameters
        if p.name not in fixed and p.name != "name"])
    return build


register("lenet", models.lenet, "LeNet-5, sigmoid and average pooling (d2l)")
register("lenet_bn", models.lenet_bn, "LeNet with BatchNorm (d2l)")
register("alexnet", models.alexnet, "AlexNet for 1x224x224 (d2l)")
for _name, _arch in VGG_ARCHS.items():
    register(_name, _named(models.vgg, _name, conv_arch=_arch), f"{_name.upper()} from block list {_arch} (d2l)")
register("nin", models.nin, "Network in Network (d2l)")
register("googlenet", models.googlenet, "GoogLeNet with 9 Inception blocks (d2l)")
for _name, _stages in RESNET_STAGES.items():
    register(_name, _named(models.resnet, _name, stages=_stages, torchvision_style=False),
             f"{_name} with units {_stages}, conv biases (d2l)")
register("densenet", models.densenet, "DenseNet, growth 32, 4 blocks of 4 convs (d2l)")
register("inception_mnist", models.inception_mnist, "small Inception net for MNIST")
register("residual_mnist", models.residual_mnist, "small residual net for MNIST")
register("tv_alexnet", models.tv_alexnet, "torchvision.models.alexnet")
for _name in ("vgg11", "vgg13"):
    register(f"tv_{_name}", _named(models.tv_vgg, f"tv_{_name}", conv_arch=VGG_ARCHS[_name]),
             f"torchvision.models.{_name}")
register("tv_resnet18", _named(models.resnet, "tv_resnet18", defaults=dict(in_channels=3, num_classes=1000),
                                stages=RESNET_STAGES["resnet18"], torchvision_style=True),
         "torchvision.models.resnet18")
for _name, _summary in (("mobilenet_v2", "MobileNetV2"), ("mobilenet_v3_small", "MobileNetV3-Small"),
                        ("efficientnet_b0", "EfficientNet-B0"), ("regnet_y_400mf", "RegNetY-400MF"),
                        ("convnext_tiny", "ConvNeXt-T"), ("squeezenet1_1", "SqueezeNet 1.1"),
                        ("shufflenet_v2_x1_0", "ShuffleNetV2 x1.0"), ("resnext50_32x4d", "ResNeXt-50 32x4d"),
                        ("densenet121", "DenseNet-121")):
    register(f"tv_{_name}", getattr(models, f"tv_{_name}"), f"{_summary}: torchvision.models.{_name}")
register("mobilefacenet", models.mobilefacenet, "MobileFaceNet face embedding, 112x112 (InsightFace)")


def names() -> list[str]:
    return list(_ZOO)


def entry(name: str) -> Entry:
    try:
        return _ZOO[name]
    except KeyError:
        raise UnknownModel(f"unknown zoo model {name!r}; known: {', '.join(_ZOO)}") from None


def get(name: str, input_size: int | None = None, **overrides) -> Spec:
    """Build a zoo spec. ``overrides`` are the builder's options (``in_channels``,
    ``num_classes``, ``width_ratio`` for VGG, ...); ``input_size`` changes H and W."""
    item = entry(name)
    allowed = item.options()
    unknown = [k for k in overrides if k not in allowed]
    if unknown:
        raise TypeError(f"zoo model {name!r} takes no option(s) {', '.join(unknown)}; "
                        f"its options: {', '.join(allowed)}")
    spec = item.build(**overrides)
    return spec.with_input(size=input_size) if input_size else spec
