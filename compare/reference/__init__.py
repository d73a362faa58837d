"""Hand-written reference networks: ``lenet_bn`` and ``resnet18`` written the way "Dive into
Deep Learning" writes them, once per framework, with no netparity spec or backend involved.

The benchmark times them next to the networks netparity builds from the zoo specs, to show that
a spec-built network is as fast as the one a person would write. They compute the same function
as the zoo specs (``tests/test_reference.py`` checks each with ``verify_port``).

One module per framework, each with the same names:

- ``lenet_bn()`` and ``resnet18(input_size)``: the models (PyTorch ``nn.Module``; Gluon
  ``HybridBlock``, initialised and not hybridized; Keras 3 functional, channels_last);
- ``native_batch(x_nchw)``: a float32 NCHW NumPy batch as the model takes it (a torch tensor, an
  ``mx.nd.array``, an NHWC NumPy array for Keras), converted once, outside any timing;
- ``make_train_step(model, lr, momentum, weight_decay)`` -> ``train_step(x, y) -> float``: one
  SGD step with the framework's own optimizer and cross-entropy loss (``y``: int64 NumPy labels);
- ``make_infer(model)`` -> ``infer(x) -> np.ndarray``: an eval-mode forward, as NumPy.

``build_reference(framework, model_name)`` puts these together. Importing this package imports
no framework; ``build_reference`` imports the one it needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...spec import zoo

MODELS = ("lenet_bn", "resnet18")
FRAMEWORKS = ("torch", "mxnet", "keras")

# What the models share in every framework (the zoo specs' defaults): one input channel
# (Fashion-MNIST), ten classes, LeNet on 28 x 28 images.
IN_CHANNELS = 1
NUM_CLASSES = 10
LENET_SIZE = 28
# PyTorch's BatchNorm: eps 1e-5, running = 0.9 * running + 0.1 * batch. Gluon and Keras name
# the weight of the old value "momentum" (0.9); PyTorch names the other one (0.1).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


@dataclass
class Reference:
    """A hand-written model and the three calls the benchmark times it with."""

    framework: str
    model_name: str
    input_size: int
    model: Any
    native_batch: Callable[[np.ndarray], Any]  # float32 NCHW NumPy -> what ``model`` takes
    train_step: Callable[[Any, np.ndarray], float]  # (native batch, int64 labels) -> loss
    infer: Callable[[Any], np.ndarray]  # native batch -> eval-mode logits (N, NUM_CLASSES)


def has_reference(model_name: str) -> bool:
    """Whether ``model_name`` (a zoo name) has a hand-written reference."""
    return model_name in MODELS


def build_reference(framework: str, model_name: str, input_size: int | None = None,
                    weights: dict[str, np.ndarray] | None = None, *, lr: float = 0.01, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> Reference:
    """The hand-written ``model_name`` in ``framework``, with an SGD train step and an infer call.

    ``input_size``: H = W of the input (default: the zoo spec's; ``lenet_bn`` takes 28 only, its
    first dense layer is sized for it). ``weights``: canonical weights of the zoo spec at that
    size (``init_weights(zoo.get(model_name, input_size=...))``), written into the model layer by
    layer; without them the model keeps its framework's own initialisation.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    if model_name not in MODELS:
        raise ValueError(f"no hand-written reference for model {model_name!r}; known: {', '.join(MODELS)}")
    if model_name == "lenet_bn" and input_size not in (None, LENET_SIZE):
        raise ValueError(f"input_size {input_size!r}: the hand-written lenet_bn takes {LENET_SIZE} x {LENET_SIZE} "
                         f"images only (its first dense layer has 16 * 4 * 4 inputs)")
    spec = zoo.get(model_name, input_size=input_size)
    size = spec.input_shape[1]
    if weights is not None:
        _check_weights(spec, weights)

    module = importlib.import_module(f"{__name__}.{framework}")
    model = module.lenet_bn() if model_name == "lenet_bn" else module.resnet18(size)
    if weights is not None:
        load_canonical_weights(model, framework, spec, weights)
    return Reference(framework, model_name, size, model, module.native_batch,
                     module.make_train_step(model, lr, momentum, weight_decay), module.make_infer(model))


def _check_weights(spec, weights: dict) -> None:
    layout = spec.infer().weight_layout()
    missing = [key for key in layout if key not in weights]
    unexpected = [key for key in weights if key not in layout]
    wrong = [f"{key} {tuple(np.shape(weights[key]))} (needs {tuple(shape)})" for key, shape in layout.items()
             if key in weights and tuple(np.shape(weights[key])) != tuple(shape)]
    problems = ([f"missing {len(missing)} (first: {missing[0]})"] if missing else []) \
        + ([f"unexpected {len(unexpected)} (first: {unexpected[0]})"] if unexpected else []) \
        + ([f"wrong shape: {wrong[0]}"] if wrong else [])
    if problems:
        raise ValueError(f"weights do not fit spec {spec.name!r} at input {tuple(spec.input_shape)}: "
                         + "; ".join(problems))


def load_canonical_weights(model, framework: str, spec, weights: dict[str, np.ndarray]) -> None:
    """Write ``spec``'s canonical weights into the hand-written ``model``.

    The model's parameterised layers, traced in execution order (``backends.tracing.trace``),
    are the spec's one to one; ``set_canonical_weights`` converts each layer's weights into the
    framework's layout (Keras: HWIO kernels, a dense layer after an (H, W, C) Flatten).
    """
    from ...backends.tracing import set_canonical_weights, trace

    rows = [row for row in spec.infer().leaves()
            if row.layer.parameter_shapes(row.input_shape) or row.layer.running_stat_shapes(row.input_shape)]
    layers = trace(model, np.zeros((1, *spec.input_shape), np.float32), framework)
    if len(layers) != len(rows):
        raise ValueError(f"the hand-written {spec.name} has {len(layers)} parameterised layers, "
                         f"the spec {len(rows)}")
    for row, layer in zip(rows, layers):
        own = {**row.layer.parameter_shapes(row.input_shape), **row.layer.running_stat_shapes(row.input_shape)}
        if layer.kind != row.kind or layer.weight_shapes() != {k: tuple(v) for k, v in own.items()}:
            raise ValueError(f"{layer.describe()} ({layer.kind} {layer.weight_shapes()}) does not match spec "
                             f"layer {row.path} ({row.kind} {own})")
        set_canonical_weights(model, layer, {name: weights[f"{row.path}.{name}"] for name in own})


__all__ = ["FRAMEWORKS", "MODELS", "Reference", "build_reference", "has_reference", "load_canonical_weights"]
