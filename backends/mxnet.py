"""MXNet Gluon backend: a spec becomes a hybridizable ``HybridSequential`` tree.

Gluon's conv and dense weights share PyTorch's layouts (OIHW, (out, in)), so
weights move without transposes; only BatchNorm's names differ (gamma, beta).
Where Gluon's defaults differ from PyTorch's (BN momentum, Dense flattening,
ceil-mode pooling, eval-mode gradients) the builders below close the gap;
see docs/framework-differences.md for the measurements behind each choice.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np

from ..spec.pooling import avg_pool_divisor, pool_padding
from .common import (BackendError, BuildRecord, as_input, build_tree, check_device, check_weights,
                     parameter_rows, record_of, RECORD_ATTRIBUTE)
from .frameworks import import_mxnet

mx = import_mxnet()
autograd = mx.autograd
nn = mx.gluon.nn
HybridBlock = mx.gluon.HybridBlock

NAME = "mxnet"
FRAMEWORK = "MXNet Gluon"

# Canonical (PyTorch) parameter names that Gluon spells differently.
NATIVE_NAMES = {"batchnorm": {"weight": "gamma", "bias": "beta"}}


def version() -> str:
    return mx.__version__


class Residual(HybridBlock):
    """``body(x) + shortcut(x)``, the shortcut being identity when absent."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def hybrid_forward(self, F, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class ConcatBranches(HybridBlock):
    def __init__(self, branches):
        super().__init__()
        self.branches = branches
        for i, branch in enumerate(branches):
            self.register_child(branch, f"branch{i}")

    def hybrid_forward(self, F, x):
        return F.concat(*[branch(x) for branch in self.branches], dim=1)


class DenseConcat(HybridBlock):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        for i, layer in enumerate(layers):
            self.register_child(layer, f"layer{i}")

    def hybrid_forward(self, F, x):
        for layer in self.layers:
            x = F.concat(x, layer(x), dim=1)
        return x


class MaxPool2D(nn.MaxPool2D):
    """nn.MaxPool2D with correct eval-mode gradients.

    oneDNN's inference-mode max pool keeps no argmax workspace, yet its backward
    reads one: gradients recorded under ``record(train_mode=False)`` come out as
    garbage (apache/mxnet#10994). Max pooling computes the same in both modes, so
    a recorded eval pass runs this op in train mode. Imperative only: a hybridized
    graph runs every op in the caller's mode (input_gradient runs imperatively).
    """

    def forward(self, x):
        if autograd.is_recording() and not autograd.is_training():
            with autograd.train_mode():
                return super().forward(x)
        return super().forward(x)


def _pad_width(row, layer) -> tuple[int, ...]:
    """F.pad's (N, C, H, W) before/after widths that give PyTorch's ceil-mode windows."""
    _, height, width = row.input_shape
    top, bottom = pool_padding(height, layer.kernel[0], layer.stride[0], layer.padding[0], True)
    left, right = pool_padding(width, layer.kernel[1], layer.stride[1], layer.padding[1], True)
    return (0, 0, 0, 0, top, bottom, left, right)


class CeilMaxPool(HybridBlock):
    """PyTorch's ceil-mode max pool.

    MXNet's ceil mode ('full' convention) keeps a last window that starts in the
    right padding, which PyTorch drops; explicit -inf padding and a 'valid' pool
    give exactly PyTorch's windows and values.
    """

    def __init__(self, kernel, stride, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = MaxPool2D(kernel, stride)

    def hybrid_forward(self, F, x):
        return self.pool(F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=-np.inf))


class CeilAvgPool(HybridBlock):
    """PyTorch's ceil-mode average pool: a 'valid' pool over zero padding, rescaled
    from the k*k divisor to PyTorch's per-window divisor (spec.pooling)."""

    def __init__(self, kernel, stride, pad_width, rescale: np.ndarray):
        super().__init__()
        self.pad_width = pad_width
        self.pool = nn.AvgPool2D(kernel, stride)
        # A Constant (grad_req 'null') so the map travels with hybridize and the device.
        self.rescale = self.params.get_constant("rescale", rescale[None, None].astype(np.float32))

    def hybrid_forward(self, F, x, rescale):
        return F.broadcast_mul(self.pool(F.pad(x, mode="constant", pad_width=self.pad_width,
                                                constant_value=0.0)), rescale)


def _maxpool(layer, row, children):
    if layer.ceil_mode:
        return CeilMaxPool(layer.kernel, layer.stride, _pad_width(row, layer))
    return MaxPool2D(layer.kernel, layer.stride, layer.padding)


def _avgpool(layer, row, children):
    if layer.ceil_mode:
        _, height, width = row.input_shape
        divisor = avg_pool_divisor(height, width, layer.kernel, layer.stride, layer.padding,
                                   True, layer.count_include_pad)
        rescale = layer.kernel[0] * layer.kernel[1] / divisor
        return CeilAvgPool(layer.kernel, layer.stride, _pad_width(row, layer), rescale)
    return nn.AvgPool2D(layer.kernel, layer.stride, layer.padding,
                        count_include_pad=layer.count_include_pad)


class AdaptiveAvgPool(HybridBlock):
    """PyTorch's adaptive average pool; MXNet's contrib op uses the same windows
    (floor start, ceil end), also when upsampling (1 -> 7) or on uneven sizes."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = tuple(output_size)

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self.output_size)


def _global_avgpool(layer, row, children):
    pool = nn.HybridSequential()
    pool.add(nn.GlobalAvgPool2D(), nn.Flatten())  # the spec's output is flat (N, C)
    return pool


def _sequence(layer, row, children):
    sequence = nn.HybridSequential()
    sequence.add(*children.values())
    return sequence


def _batchnorm(layer, row, children):
    # Gluon's momentum weighs the old running value; PyTorch's weighs the batch.
    return nn.BatchNorm(axis=1, momentum=1.0 - layer.momentum, epsilon=layer.eps,
                        in_channels=row.input_shape[0])


LAYER_BUILDERS = {
    "conv2d": lambda layer, row, children: nn.Conv2D(
        layer.out_channels, layer.kernel, layer.stride, layer.padding, groups=layer.groups,
        use_bias=layer.bias, in_channels=row.input_shape[0]),
    "batchnorm": _batchnorm,
    "activation": lambda layer, row, children: nn.Activation(layer.function),
    "maxpool2d": _maxpool,
    "avgpool2d": _avgpool,
    "adaptive_avgpool2d": lambda layer, row, children: AdaptiveAvgPool(layer.output_size),
    "global_avgpool": _global_avgpool,
    "flatten": lambda layer, row, children: nn.Flatten(),
    # flatten=False: act on the last axis like torch Linear, not flatten (N, ...) first.
    "dense": lambda layer, row, children: nn.Dense(
        layer.out_features, use_bias=layer.bias, flatten=False, in_units=row.input_shape[0]),
    "dropout": lambda layer, row, children: nn.Dropout(layer.p),
    "sequence": _sequence,
    "concat_branches": lambda layer, row, children: ConcatBranches(list(children.values())),
    "residual": lambda layer, row, children: Residual(children["body"], children.get("shortcut")),
    "dense_concat": lambda layer, row, children: DenseConcat(list(children.values())),
}


def mx_context(device: str):
    check_device(device, NAME)
    if device == "gpu":
        if mx.context.num_gpus() == 0:
            raise BackendError("mxnet: device 'gpu' was asked for but MXNet sees no GPU "
                               "(mx.context.num_gpus() is 0; is a CUDA build of mxnet installed?)")
        return mx.gpu(0)
    return mx.cpu()


def build(spec, device: str = "cpu"):
    context = mx_context(device)
    record = BuildRecord(spec, spec.infer(), device)
    model = nn.HybridSequential()
    model.add(*build_tree(spec, LAYER_BUILDERS, record))
    # Every layer knows its input size, so nothing is deferred: weights can be set at once.
    # Xavier is the canonical weights' distribution (Gluon's default is Uniform(0.07)).
    model.initialize(mx.init.Xavier(), ctx=context)
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # a plain attribute, not a child block
    return model


def _context_of(model):
    return mx_context(record_of(model, NAME).device)


def _native_parameters(record, row, named):
    """(canonical key, Gluon Parameter) for one layer's weights."""
    block = record.layers[row.path]
    rename = NATIVE_NAMES.get(row.kind, {})
    for name in named:
        yield f"{row.path}.{name}", getattr(block, rename.get(name, name))


def get_weights(model) -> dict[str, np.ndarray]:
    record = record_of(model, NAME)
    return {key: param.data().asnumpy()
            for row, named in parameter_rows(record)
            for key, param in _native_parameters(record, row, named)}


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    record = record_of(model, NAME)
    check_weights(weights, record, NAME)
    context = _context_of(model)
    for row, named in parameter_rows(record):
        for key, param in _native_parameters(record, row, named):
            param.set_data(mx.nd.array(np.asarray(weights[key]), ctx=context, dtype=np.float32))


@contextmanager
def _imperative(model):
    """Run model block by block, keeping any cached hybridized graphs for later.

    A hybridized block runs as one graph: its children's forward hooks do not fire
    and every op runs in the caller's train/eval mode (see MaxPool2D).
    """
    paused, stack = [], [model]
    while stack:
        block = stack.pop()
        if getattr(block, "_active", False):
            paused.append(block)
        stack.extend(block._children.values())
    for block in paused:
        block._active = False
    try:
        yield
    finally:
        for block in paused:
            block._active = True


def _mode(training: bool):
    # Gluon runs in inference mode outside record(), whatever the block.
    return autograd.record(train_mode=True) if training else nullcontext()


def _run(model, x, training: bool, capture: bool):
    record = record_of(model, NAME)
    batch = mx.nd.array(as_input(x, record, NAME), ctx=_context_of(model), dtype=np.float32)
    outputs: dict[str, np.ndarray] = {}
    hooks = []
    if capture:
        hooks = [block.register_forward_hook(
                     lambda _b, _i, out, path=path: outputs.__setitem__(path, out.asnumpy()))
                 for path, block in record.layers.items()]
    try:
        with _imperative(model) if capture else nullcontext(), _mode(training):
            result = model(batch).asnumpy()
    finally:
        for hook in hooks:
            hook.detach()
    return result, outputs


def forward(model, x, training: bool = False) -> np.ndarray:
    """training=True: dropout and batch-statistics BatchNorm. Unlike PyTorch, MXNet
    updates running statistics only in backward, so a forward leaves them as they are."""
    return _run(model, x, training, capture=False)[0]


def forward_layers(model, x, training: bool = False) -> dict[str, np.ndarray]:
    """The output of every layer and block, by spec path, in NCHW."""
    return _run(model, x, training, capture=True)[1]


def input_gradient(model, x, upstream, training: bool = False) -> np.ndarray:
    """d(sum(model(x) * upstream)) / dx."""
    record = record_of(model, NAME)
    context = _context_of(model)
    batch = mx.nd.array(as_input(x, record, NAME), ctx=context, dtype=np.float32)
    batch.attach_grad()
    weights = mx.nd.array(np.asarray(upstream, np.float32), ctx=context, dtype=np.float32)
    with _imperative(model), autograd.record(train_mode=training):
        loss = (model(batch) * weights).sum()
    # backward's own train_mode defaults to True, which differentiates BatchNorm as if
    # it had used batch statistics: wrong input gradients in eval mode.
    loss.backward(train_mode=training)
    return batch.grad.asnumpy()


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """Per parameterised layer, as Gluon holds it: (trainable, running statistics),
    told apart by grad_req ('null' for running statistics)."""
    record = record_of(model, NAME)
    counts = {}
    for row, _ in parameter_rows(record):
        params = record.layers[row.path].collect_params().values()
        trainable = sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")
        stats = sum(int(np.prod(p.shape)) for p in params if p.grad_req == "null")
        counts[row.path] = (trainable, stats)
    return counts
