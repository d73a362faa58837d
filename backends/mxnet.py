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

from . import training
from ..spec.pooling import avg_pool_divisor, pool_padding
from .common import (BackendError, BuildRecord, as_input, build_tree, check_device, check_run_options,
                     check_weights, parameter_rows, record_of, RECORD_ATTRIBUTE)
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


class MaskedDropout(HybridBlock):
    """Dropout whose mask comes from outside (``lockstep_dropout=True``).

    In training mode (under ``record(train_mode=True)``) the input is multiplied
    by ``self.mask`` (0 or 1/(1-p), set by ``train_step``); otherwise it is the
    identity, like nn.Dropout. Imperative only: a hybridized graph cannot read a
    mask that changes every step, so train_step runs such models block by block.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate
        self.mask = None

    def forward(self, x):
        if not isinstance(x, mx.nd.NDArray):
            raise BackendError("mxnet: a lockstep_dropout model cannot be hybridized (its dropout masks "
                               "change every step); train it unhybridized")
        if not autograd.is_training():
            return x
        if self.mask is None:
            raise BackendError("mxnet: a lockstep_dropout model ran in training mode without a dropout mask; "
                               "train it with train_step(..., dropout_masks=...)")
        return x * self.mask

    def hybrid_forward(self, F, x):  # never reached: forward above handles every call
        raise BackendError("mxnet: MaskedDropout runs imperatively only")


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


EXECUTIONS = {"plain": "imperative Gluon (not hybridized)",
              "hybrid": "hybridize(static_alloc=True, static_shape=True): one cached graph"}
PRECISIONS = {"float32": "float32 throughout (netparity does not drive MXNet's AMP: mxnet.contrib.amp "
                         "rewrites the global operator table, which would change every other model in "
                         "the process)"}


def build(spec, device: str = "cpu", lockstep_dropout: bool = False, execution: str = "plain",
          precision: str = "float32"):
    """A ``HybridSequential``, initialised; hybridized when ``execution="hybrid"``.
    ``lockstep_dropout=True``: every dropout layer multiplies by a mask given to
    ``train_step`` instead of drawing its own (imperative only)."""
    context = mx_context(device)
    check_run_options(execution, precision, EXECUTIONS, PRECISIONS, NAME)
    if execution == "hybrid" and lockstep_dropout:
        raise BackendError("mxnet: lockstep_dropout=True cannot be hybridized (its dropout masks change "
                           "every step and a cached graph cannot read them); use execution='plain'")
    record = BuildRecord(spec, spec.infer(), device)
    builders = LAYER_BUILDERS
    if lockstep_dropout:
        builders = {**LAYER_BUILDERS, "dropout": lambda layer, row, children: MaskedDropout(layer.p)}
    record.extra.update(lockstep_dropout=bool(lockstep_dropout), execution=execution, precision=precision)
    model = nn.HybridSequential()
    model.add(*build_tree(spec, builders, record))
    # Every layer knows its input size, so nothing is deferred: weights can be set at once.
    # Xavier is the canonical weights' distribution (Gluon's default is Uniform(0.07)).
    model.initialize(mx.init.Xavier(), ctx=context)
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # a plain attribute, not a child block
    if execution == "hybrid":
        model.hybridize(static_alloc=True, static_shape=True)
    return model


def to_ndarray(value, context):
    """A float32 NDArray of ``value`` on ``context``, for the per-step inputs. Through DLPack
    from a private copy: ``mx.nd.array`` costs about 100 us per call on a small batch (0.1 ms
    of a 0.9 ms lenet_bn inference step), the copy and ``from_numpy`` about 15 us; zero_copy
    needs an array nobody else writes to, hence the copy."""
    private = np.array(value, dtype=np.float32, order="C", copy=True)
    array = mx.nd.from_numpy(private, zero_copy=True)
    return array if context == mx.cpu() else array.as_in_context(context)


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
def imperative(model):
    """Run model block by block, keeping any cached hybridized graphs for later.

    A hybridized block runs as one graph: its children's forward hooks do not fire
    and every op runs in the caller's train/eval mode (see MaxPool2D).
    """
    paused, stack = [], [model]
    while stack:
        block = stack.pop()
        if getattr(block, "_active", False):
            paused.append(block)
        # MXNet 1.x holds children directly; later versions hold weak references to them
        stack.extend(child() if callable(child) and not hasattr(child, "_children") else child
                     for child in block._children.values())
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
    batch = to_ndarray(as_input(x, record, NAME), _context_of(model))
    outputs: dict[str, np.ndarray] = {}
    hooks = []
    if capture:
        hooks = [block.register_forward_hook(
                     lambda _b, _i, out, path=path: outputs.__setitem__(path, out.asnumpy()))
                 for path, block in record.layers.items()]
    try:
        with imperative(model) if capture else nullcontext(), _mode(training):
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
    with imperative(model), autograd.record(train_mode=training):
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


# ---------------------------------------------------------------------------------------
# Training: Gluon's Trainer made to follow PyTorch's SGD (docs/framework-differences.md 6, 6b, 7)
# ---------------------------------------------------------------------------------------

# MXNet's sgd_mom_update keeps state = momentum*state - lr*(g/B + wd*p) and does p += state,
# so state = -lr * (PyTorch's buf) while lr stays constant.
STATE_FORM = "neg_lr_buf"


class SGDOptimizer(training.SGDOptimizer):
    """A Gluon ``Trainer('sgd')`` (``native``) over the trainable weights in canonical order."""

    backend = NAME

    @property
    def lr(self) -> float:
        return float(self.native.learning_rate)

    def states(self) -> dict:
        """Trainer index -> momentum NDArray (created lazily by the first step)."""
        return self.native._updaters[0].states


def _trainable(record) -> list[tuple[str, "mx.gluon.Parameter"]]:
    """(canonical key, Parameter) of every trainable weight, in canonical order."""
    pairs = []
    for row, _ in parameter_rows(record):
        pairs.extend(_native_parameters(record, row, row.layer.parameter_shapes(row.input_shape)))
    return pairs


def make_optimizer(model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> SGDOptimizer:
    """PyTorch's SGD: buf = momentum*buf + (g + wd*p) (first buf = g + wd*p); p -= lr*buf.

    A ``gluon.Trainer('sgd', {learning_rate, momentum, wd})`` with no kvstore; train_step
    sums per-sample losses and calls ``step(batch_size)`` so the gradient is the batch mean.
    Weight decay is coupled and reaches every parameter: every wd_mult and lr_mult must be 1.
    """
    record = record_of(model, NAME)
    lr, momentum, weight_decay = training.check_sgd(lr, momentum, weight_decay, NAME, BackendError)
    pairs = _trainable(record)
    trainable = [p for p in model.collect_params().values() if p.grad_req != "null"]
    if {id(p) for _, p in pairs} != {id(p) for p in trainable}:
        raise BackendError("mxnet: the model's trainable parameters are not the spec's trainable weights")
    odd = [key for key, p in pairs if p.wd_mult != 1.0 or p.lr_mult != 1.0]
    if odd:
        raise BackendError(f"mxnet: parameters with wd_mult or lr_mult other than 1 would not follow "
                           f"PyTorch's SGD: {', '.join(odd[:3])}")
    native = mx.gluon.Trainer([p for _, p in pairs], "sgd",
                              {"learning_rate": lr, "momentum": momentum, "wd": weight_decay},
                              kvstore=None)
    return SGDOptimizer(model, native, [k for k, _ in pairs], momentum, weight_decay)


def set_learning_rate(optimizer: SGDOptimizer, lr: float) -> None:
    """Change lr with PyTorch's meaning. MXNet keeps lr inside its momentum state, so the
    state is rescaled by lr_new / lr_old (row 6b); without that the old lr would linger."""
    lr, _, _ = training.check_sgd(lr, optimizer.momentum, optimizer.weight_decay, NAME, BackendError)
    old = optimizer.lr
    if lr != old:
        for state in optimizer.states().values():
            if state is not None:
                state[:] = mx.nd.array(training.rescale_state(state.asnumpy(), lr / old),
                                       ctx=state.context, dtype=state.dtype)
    optimizer.native.set_learning_rate(lr)


# Made once: constructing a Gluon block costs ~12 us per step (0.3% of a lenet_bn step on 2 cores).
_CRITERION = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=True)


def train_step(model, optimizer: SGDOptimizer, x, y, dropout_masks=None) -> float:
    """One SGD step on a minibatch in training mode (batch-statistics BatchNorm, dropout on);
    returns the mean softmax cross-entropy over the batch before the update (NaN/inf as is).

    Per-sample ``SoftmaxCrossEntropyLoss`` (sparse labels), backward, ``step(batch_size)``.
    Running statistics move once, in backward (row 1d). ``dropout_masks``: {dropout path:
    float32 (B, *output shape)}, required exactly when built with ``lockstep_dropout=True``."""
    record, batch, labels, masks = training.prepare_step(model, optimizer, x, y, dropout_masks, NAME)
    size = batch.shape[0]
    context = _context_of(model)
    for path, mask in masks.items():
        record.layers[path].mask = to_ndarray(mask, context)
    data = to_ndarray(batch, context)
    target = to_ndarray(labels, context)
    criterion = _CRITERION  # per-sample, from logits
    try:
        lockstepped = record.extra.get("lockstep_dropout", False)  # mask blocks run imperatively
        with imperative(model) if lockstepped else nullcontext(), autograd.record(train_mode=True):
            loss = criterion(model(data), target)
        loss.backward()
        optimizer.native.step(size)
        value = float(loss.mean().asscalar())
    finally:
        for path in masks:
            record.layers[path].mask = None
    optimizer.steps += 1
    return value


def peak_device_memory_mb(device: str = "gpu") -> float | None:
    """GPU memory in use on the first GPU, in MiB (total minus free, from
    ``mx.context.gpu_memory_info``: MXNet keeps no peak counter, and its pooled allocator
    holds what it once used, so after a run this is close to the peak); None for the CPU."""
    context = mx_context(device)
    if context.device_type != "gpu":
        return None
    free, total = mx.context.gpu_memory_info(context.device_id)
    return (total - free) / 2 ** 20


def seed_everything(seed: int) -> str:
    """Seed MXNet's RNGs (every device). Call it before build. Returns what stays
    non-deterministic ("" if nothing is known)."""
    mx.random.seed(int(seed))
    return ("mxnet: bitwise repeatable only at a fixed OMP_NUM_THREADS; its RNG state cannot be saved, "
            "so native dropout after load_checkpoint draws other masks than an uninterrupted run")


def save_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Weights (canonical), momentum state (MXNet's -lr*buf, canonical layout) and lr in one
    .npz written atomically. MXNet's RNG state cannot be read, so it is not saved."""
    record = record_of(model, NAME)
    training.check_optimizer(model, optimizer, NAME)
    arrays = {f"weights/{k}": v for k, v in get_weights(model).items()}
    states = optimizer.states()
    for index, key in enumerate(optimizer.keys):
        if states.get(index) is not None:
            arrays[f"state/{key}"] = states[index].asnumpy()
    meta = {"framework": NAME, "spec": record.spec.name, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay, "steps": optimizer.steps, "state_form": STATE_FORM,
            "lockstep_dropout": record.extra.get("lockstep_dropout", False)}
    training.write_checkpoint(path, meta, arrays)


def load_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Restore a checkpoint so training continues exactly as if uninterrupted (bitwise, for
    one written by this backend, except native dropout masks; other frameworks' momentum
    states are converted)."""
    meta, arrays = training.restore_weights(model, optimizer, path, NAME, BackendError, set_weights)
    saved = training.section(arrays, "state")
    context = _context_of(model)
    updater = optimizer.native._updaters[0]
    updater.states.clear()
    updater.states_synced.clear()
    for index, key in enumerate(optimizer.keys):
        if key in saved:
            value = training.convert_state(saved[key], meta["state_form"], STATE_FORM, float(meta["lr"]))
            updater.states[index] = mx.nd.array(value, ctx=context, dtype=np.float32)
            updater.states_synced[index] = True
    optimizer.native.set_learning_rate(float(meta["lr"]))
    optimizer.steps = int(meta["steps"])
