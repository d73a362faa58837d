"""PyTorch backend: a spec becomes a plain ``nn.Module`` tree.

The canonical weight layout is PyTorch's own, so weights move without
transposes; ``num_batches_tracked`` is a counter, not a weight, and stays out.
"""

from __future__ import annotations

import numpy as np

from .common import (BackendError, BuildRecord, as_input, build_tree, check_device, check_weights,
                     parameter_rows, record_of, RECORD_ATTRIBUTE)
from .frameworks import import_torch

torch = import_torch()
nn = torch.nn

NAME = "torch"
FRAMEWORK = "PyTorch"


def version() -> str:
    return torch.__version__


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, the shortcut being identity when absent."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class ConcatBranches(nn.Module):
    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class DenseConcat(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _batchnorm(layer, row, children):
    norm = nn.BatchNorm2d if len(row.input_shape) == 3 else nn.BatchNorm1d
    return norm(row.input_shape[0], eps=layer.eps, momentum=layer.momentum)


LAYER_BUILDERS = {
    "conv2d": lambda layer, row, children: nn.Conv2d(
        row.input_shape[0], layer.out_channels, layer.kernel, layer.stride, layer.padding,
        groups=layer.groups, bias=layer.bias),
    "batchnorm": _batchnorm,
    "activation": lambda layer, row, children: ACTIVATIONS[layer.function](),
    "maxpool2d": lambda layer, row, children: nn.MaxPool2d(
        layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode),
    "avgpool2d": lambda layer, row, children: nn.AvgPool2d(
        layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
        count_include_pad=layer.count_include_pad),
    "adaptive_avgpool2d": lambda layer, row, children: nn.AdaptiveAvgPool2d(layer.output_size),
    "global_avgpool": lambda layer, row, children: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "flatten": lambda layer, row, children: nn.Flatten(),
    "dense": lambda layer, row, children: nn.Linear(row.input_shape[0], layer.out_features, bias=layer.bias),
    "dropout": lambda layer, row, children: nn.Dropout(layer.p),
    "sequence": lambda layer, row, children: nn.Sequential(*children.values()),
    "concat_branches": lambda layer, row, children: ConcatBranches(list(children.values())),
    "residual": lambda layer, row, children: Residual(children["body"], children.get("shortcut")),
    "dense_concat": lambda layer, row, children: DenseConcat(list(children.values())),
}


def torch_device(device: str):
    check_device(device, NAME)
    if device == "gpu":
        if not torch.cuda.is_available():
            raise BackendError("torch: device 'gpu' was asked for but CUDA is not available "
                               "(torch.cuda.is_available() is False)")
        return torch.device("cuda")
    return torch.device("cpu")


def build(spec, device: str = "cpu") -> nn.Module:
    target = torch_device(device)
    record = BuildRecord(spec, spec.infer(), device)
    model = nn.Sequential(*build_tree(spec, LAYER_BUILDERS, record)).to(target)
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # a plain attribute, not a submodule
    model.eval()
    return model


def _device_of(model) -> "torch.device":
    return torch_device(record_of(model, NAME).device)


def get_weights(model) -> dict[str, np.ndarray]:
    record = record_of(model, NAME)
    weights = {}
    for row, named in parameter_rows(record):
        module = record.layers[row.path]
        for name in named:
            weights[f"{row.path}.{name}"] = getattr(module, name).detach().cpu().numpy().copy()
    return weights


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    record = record_of(model, NAME)
    check_weights(weights, record, NAME)
    with torch.no_grad():
        for row, named in parameter_rows(record):
            module = record.layers[row.path]
            for name in named:
                getattr(module, name).copy_(torch.from_numpy(np.asarray(weights[f"{row.path}.{name}"])))


def _run(model, x, training: bool, capture: bool):
    record = record_of(model, NAME)
    batch = torch.from_numpy(as_input(x, record, NAME)).to(_device_of(model))
    outputs: dict[str, np.ndarray] = {}
    hooks = []
    if capture:
        for path, module in record.layers.items():
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, path=path: outputs.__setitem__(path, out.detach().cpu().numpy())))
    model.train(training)
    try:
        with torch.no_grad():
            result = model(batch).cpu().numpy()
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    return result, outputs


def forward(model, x, training: bool = False) -> np.ndarray:
    return _run(model, x, training, capture=False)[0]


def forward_layers(model, x, training: bool = False) -> dict[str, np.ndarray]:
    """The output of every layer and block, by spec path, in NCHW."""
    return _run(model, x, training, capture=True)[1]


def input_gradient(model, x, upstream, training: bool = False) -> np.ndarray:
    """d(sum(model(x) * upstream)) / dx."""
    record = record_of(model, NAME)
    device = _device_of(model)
    batch = torch.from_numpy(as_input(x, record, NAME)).to(device).requires_grad_(True)
    model.train(training)
    try:
        out = model(batch)
        (out * torch.from_numpy(np.asarray(upstream, np.float32)).to(device)).sum().backward()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    return batch.grad.cpu().numpy()


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """Per parameterised layer, as PyTorch counts it: (parameters, running-stat buffers)."""
    record = record_of(model, NAME)
    counts = {}
    for row, _ in parameter_rows(record):
        module = record.layers[row.path]
        buffers = sum(b.numel() for n, b in module.named_buffers() if n != "num_batches_tracked")
        counts[row.path] = (sum(p.numel() for p in module.parameters()), buffers)
    return counts
