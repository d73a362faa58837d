"""PyTorch backend: a spec becomes a plain ``nn.Module`` tree.

The canonical weight layout is PyTorch's own, so weights move without
transposes; ``num_batches_tracked`` is a counter, not a weight, and stays out.
PyTorch's SGD is also the reference the other backends' training follows.
The spec's kinds follow PyTorch's definitions, so PyTorch's own modules build
them wherever one exists (nn.Conv2d with dilation and groups, nn.PReLU, nn.GELU,
nn.ChannelShuffle, ...); the small modules below cover the rest: per-side conv
padding, LayerNorm over channels, layer scale, fixed normalisation, channel
slices, stochastic depth and merged branches.
"""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext

import numpy as np

from ...spec.layers import LAYER_KINDS
from .. import training
from ..common import (BackendError, BuildRecord, as_input, build_tree, check_device, check_run_options,
                     check_weights, parameter_rows, record_of, RECORD_ATTRIBUTE)
from ..frameworks import import_torch

torch = import_torch()
nn = torch.nn
F = torch.nn.functional

NAME = "torch"
FRAMEWORK = "PyTorch"


def version() -> str:
    return torch.__version__


def runtime_details() -> dict:
    """What a benchmark row records besides version() (Keras: which backend runs it)."""
    return {}


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


# How a ``branches`` block joins its branch outputs; add and mul broadcast a (N, C, 1, 1)
# gate over (N, C, H, W), as squeeze-and-excitation needs.
MERGES = {"concat": lambda outs: torch.cat(outs, dim=1),
          "add": lambda outs: functools.reduce(torch.add, outs),
          "mul": lambda outs: functools.reduce(torch.mul, outs)}


class Branches(nn.Module):
    """Every branch on the same input, outputs merged by ``merge`` (concat, add or mul)."""

    def __init__(self, branches: list[nn.Module], merge: str):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x):
        return MERGES[self.merge]([branch(x) for branch in self.branches])

    def extra_repr(self) -> str:
        return f"merge={self.merge}"


class DenseConcat(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class PaddedConv2d(nn.Conv2d):
    """nn.Conv2d after explicit zero padding that may differ per side: PyTorch's own
    ``padding`` is symmetric, while TensorFlow's 'same' at stride 2 pads one more after.
    A subclass, not ZeroPad2d + Conv2d, so that ``weight`` and ``bias`` stay on the module
    recorded for the spec path."""

    def __init__(self, pads: tuple[int, int, int, int], *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)  # F.pad's order: the last dimension first

    def forward(self, x):
        return super().forward(F.pad(x, self.pads))

    def extra_repr(self) -> str:
        left, right, top, bottom = self.pads
        return super().extra_repr() + f", pads=(top={top}, bottom={bottom}, left={left}, right={right})"


class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of each pixel of an NCHW input (torchvision's ConvNeXt
    LayerNorm2d): channels moved last, normalised, moved back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _per_channel(vector: "torch.Tensor", dims: int) -> "torch.Tensor":
    """A (C,) vector shaped to broadcast over dim 1 of a batch with ``dims`` dimensions."""
    return vector.view(-1, *([1] * (dims - 2)))


class ChannelScale(nn.Module):
    """x * weight[c], a learned multiplier per channel (ConvNeXt's layer scale; torchvision
    keeps it as (C, 1, 1), the canonical weight is (C,))."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * _per_channel(self.weight, x.dim())


class Normalize(nn.Module):
    """Fixed (x - mean[c]) / std[c]. The constants are non-persistent buffers: they follow the
    module to its device, yet are neither weights nor state_dict entries nor running stats."""

    def __init__(self, mean, std, dims: int):
        super().__init__()
        self.register_buffer("mean", _per_channel(torch.tensor(mean, dtype=torch.float32), dims + 1),
                             persistent=False)
        self.register_buffer("std", _per_channel(torch.tensor(std, dtype=torch.float32), dims + 1),
                             persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class ChannelSlice(nn.Module):
    """Channels ``start:stop`` (dim 1), ShuffleNetV2's split."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"channels {self.start}:{self.stop}"


class Crop2d(nn.Module):
    """Rows ``top:bottom_stop`` and columns ``left:right_stop`` of every map (Keras' Cropping2D):
    the stops come from the input size known when the spec is built."""

    def __init__(self, top: int, bottom_stop: int, left: int, right_stop: int):
        super().__init__()
        self.top, self.bottom_stop, self.left, self.right_stop = top, bottom_stop, left, right_stop

    def forward(self, x):
        return x[:, :, self.top:self.bottom_stop, self.left:self.right_stop]

    def extra_repr(self) -> str:
        return f"rows {self.top}:{self.bottom_stop}, columns {self.left}:{self.right_stop}"


class DropPath(nn.Module):
    """Stochastic depth per example: in training each example is zeroed with probability p,
    the rest scaled by 1 / (1 - p); the identity in eval mode. It computes what torchvision's
    StochasticDepth(p, "row") does, without importing torchvision (2.5 to 5 s here) for it."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        draws = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * draws.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaskedDropout(nn.Module):
    """Dropout or drop_path whose mask comes from outside (``lockstep_dropout=True``).

    In training mode the input is multiplied by ``self.mask`` (0 or 1/(1-p) per element
    for dropout, per example for drop_path; set by ``train_step``); in eval mode it is the
    identity, like nn.Dropout and torchvision's StochasticDepth."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.mask = None  # a plain attribute: not a buffer, so not in state_dict

    def forward(self, x):
        if not self.training:
            return x
        if self.mask is None:
            raise BackendError("torch: a lockstep_dropout model ran in training mode without a dropout mask; "
                               "train it with train_step(..., dropout_masks=...)")
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}, mask from outside"


# The spec's activations are PyTorch's definitions, so PyTorch's own modules compute them.
ACTIVATIONS = {
    "relu": lambda layer: nn.ReLU(),
    "sigmoid": lambda layer: nn.Sigmoid(),
    "tanh": lambda layer: nn.Tanh(),
    "leaky_relu": lambda layer: nn.LeakyReLU(layer.negative_slope),
    "relu6": lambda layer: nn.ReLU6(),
    "elu": lambda layer: nn.ELU(layer.alpha),
    "silu": lambda layer: nn.SiLU(),
    "hardswish": lambda layer: nn.Hardswish(),
    "hardsigmoid": lambda layer: nn.Hardsigmoid(),
    "gelu": lambda layer: nn.GELU(approximate=layer.approximate),
    "softplus": lambda layer: nn.Softplus(),  # beta 1; linear beyond x = 20, 2e-9 from log(1 + e^x)
    "softmax": lambda layer: nn.Softmax(dim=1),  # channels of each pixel, or the features
}


def _conv2d(layer, row, children):
    top, bottom, left, right = layer.pads
    args = (row.input_shape[0], layer.out_channels, layer.kernel, layer.stride)
    options = dict(dilation=layer.dilation, groups=layer.groups, bias=layer.bias)
    if top == bottom and left == right:
        return nn.Conv2d(*args, padding=(top, left), **options)
    return PaddedConv2d(layer.pads, *args, **options)


def _pad2d(layer, row, children):
    top, bottom, left, right = layer.pads
    return nn.ZeroPad2d((left, right, top, bottom))


def _crop2d(layer, row, children):
    top, bottom, left, right = layer.crops
    _, height, width = row.input_shape
    return Crop2d(top, height - bottom, left, width - right)


def _batchnorm(layer, row, children):
    """PyTorch's BatchNorm; a gamma or beta the spec fixes (scale / center False) is no
    parameter at all: F.batch_norm takes a missing gamma as 1 and a missing beta as 0."""
    norm = nn.BatchNorm2d if len(row.input_shape) == 3 else nn.BatchNorm1d
    channels = row.input_shape[0]
    if layer.scale:
        return norm(channels, eps=layer.eps, momentum=layer.momentum, bias=layer.center)
    module = norm(channels, eps=layer.eps, momentum=layer.momentum, affine=False)
    if layer.center:
        # PyTorch has no flag for beta without gamma; with affine=False nothing resets this.
        module.bias = nn.Parameter(torch.zeros(channels))
    return module


def _layernorm(layer, row, children):
    norm = LayerNorm2d if len(row.input_shape) == 3 else nn.LayerNorm
    return norm(row.input_shape[0], eps=layer.eps)


def _global_pool(pool):
    def builder(layer, row, children):
        return pool(1) if layer.keepdims else nn.Sequential(pool(1), nn.Flatten())
    return builder


LAYER_BUILDERS = {
    "conv2d": _conv2d,
    "pad2d": _pad2d,
    "crop2d": _crop2d,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "activation": lambda layer, row, children: ACTIVATIONS[layer.function](layer),
    "prelu": lambda layer, row, children: nn.PReLU(row.input_shape[0]),
    "channel_scale": lambda layer, row, children: ChannelScale(row.input_shape[0]),
    "normalize": lambda layer, row, children: Normalize(layer.mean, layer.std, len(row.input_shape)),
    "maxpool2d": lambda layer, row, children: nn.MaxPool2d(
        layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode),
    "avgpool2d": lambda layer, row, children: nn.AvgPool2d(
        layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
        count_include_pad=layer.count_include_pad),
    "adaptive_avgpool2d": lambda layer, row, children: nn.AdaptiveAvgPool2d(layer.output_size),
    "global_avgpool": _global_pool(nn.AdaptiveAvgPool2d),
    "global_maxpool": _global_pool(nn.AdaptiveMaxPool2d),
    "flatten": lambda layer, row, children: nn.Flatten(),
    "dense": lambda layer, row, children: nn.Linear(row.input_shape[0], layer.out_features, bias=layer.bias),
    "dropout": lambda layer, row, children: nn.Dropout(layer.p),
    "drop_path": lambda layer, row, children: DropPath(layer.p),
    "identity": lambda layer, row, children: nn.Identity(),
    "channel_shuffle": lambda layer, row, children: nn.ChannelShuffle(layer.groups),
    "channel_slice": lambda layer, row, children: ChannelSlice(layer.start, layer.stop),
    "sequence": lambda layer, row, children: nn.Sequential(*children.values()),
    "branches": lambda layer, row, children: Branches(list(children.values()), layer.merge),
    "concat_branches": lambda layer, row, children: ConcatBranches(list(children.values())),
    "residual": lambda layer, row, children: Residual(children["body"], children.get("shortcut")),
    "dense_concat": lambda layer, row, children: DenseConcat(list(children.values())),
}

# With lockstep_dropout=True every kind that is random in training takes its mask from train_step.
MASKED_BUILDERS = {kind: (lambda layer, row, children: MaskedDropout(layer.p))
                   for kind, cls in LAYER_KINDS.items() if cls.random_in_training}


def torch_device(device: str):
    check_device(device, NAME)
    if device == "gpu":
        if not torch.cuda.is_available():
            raise BackendError("torch: device 'gpu' was asked for but CUDA is not available "
                               "(torch.cuda.is_available() is False)")
        return torch.device("cuda")
    return torch.device("cpu")


EXECUTIONS = {"plain": "eager nn.Module",
              "channels_last": "weights and batches in torch.channels_last memory format",
              "compile": "torch.compile of the module for forward and train_step, compiled on first use"}
PRECISIONS = {"float32": "float32 throughout",
              "bfloat16": "torch.autocast(bfloat16) around forward; float32 weights and SGD",
              "float16": "torch.autocast(float16) with a GradScaler; float32 weights and SGD"}


def build(spec, device: str = "cpu", lockstep_dropout: bool = False, execution: str = "plain",
          precision: str = "float32") -> nn.Module:
    """An ``nn.Sequential`` in eval mode (later calls leave it in the mode they ran in, see
    ``set_mode``). ``lockstep_dropout=True``: every dropout and drop_path layer
    multiplies by a mask given to ``train_step`` instead of drawing its own. ``execution``
    and ``precision`` (see EXECUTIONS, PRECISIONS) change how ``forward`` and ``train_step``
    run, not the function; ``forward_layers`` and ``input_gradient`` always run the eager
    float32 module, so parity checks see the network itself."""
    target = torch_device(device)
    check_run_options(execution, precision, EXECUTIONS, PRECISIONS, NAME)
    record = BuildRecord(spec, spec.infer(), device)
    builders = {**LAYER_BUILDERS, **MASKED_BUILDERS} if lockstep_dropout else LAYER_BUILDERS
    record.extra.update(lockstep_dropout=bool(lockstep_dropout), execution=execution, precision=precision)
    model = nn.Sequential(*build_tree(spec, builders, record)).to(target)
    if execution == "channels_last":
        model.to(memory_format=torch.channels_last)
    # torch.compile is lazy: nothing is compiled until the first forward or train_step.
    record.extra["runner"] = torch.compile(model) if execution == "compile" else model
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # a plain attribute, not a submodule
    model.eval()
    return model


def set_mode(model, training: bool) -> None:
    """Train or eval mode, switched only when it changes. Every call of this backend sets the
    mode it needs and leaves it so: ``model.train()`` walks every module, and doing it twice per
    step (train, then back to eval) cost 10% of a LeNet training step on 2 cores, which made
    the spec-built network slower than the same network written by hand."""
    if model.training != training:
        model.train(training)


def _batch_tensor(record, batch: np.ndarray, device):
    tensor = torch.from_numpy(batch).to(device)
    if record.extra.get("execution") == "channels_last" and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _autocast(record, device):
    """The autocast context of the model's precision (nothing for float32)."""
    precision = record.extra.get("precision", "float32")
    if precision == "float32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


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
    device = _device_of(model)
    outputs: dict[str, np.ndarray] = {}
    hooks = []
    if capture:
        batch = torch.from_numpy(as_input(x, record, NAME)).to(device)
        for path, module in record.layers.items():
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, path=path: outputs.__setitem__(
                    path, out.detach().float().cpu().contiguous().numpy())))
        run, precision = model, nullcontext()
    else:
        batch = _batch_tensor(record, as_input(x, record, NAME), device)
        run, precision = record.extra.get("runner", model), _autocast(record, device)
    set_mode(model, training)
    try:
        with torch.no_grad(), precision:
            result = run(batch).float().cpu().numpy()
    finally:
        for hook in hooks:
            hook.remove()
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
    set_mode(model, training)
    try:
        out = model(batch)
        (out * torch.from_numpy(np.asarray(upstream, np.float32)).to(device)).sum().backward()
    finally:
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


# ---------------------------------------------------------------------------------------
# Training: PyTorch's own SGD and cross-entropy, the reference for the other backends
# ---------------------------------------------------------------------------------------

STATE_FORM = "buf"  # torch.optim.SGD keeps buf; p -= lr * buf


class SGDOptimizer(training.SGDOptimizer):
    """``torch.optim.SGD`` (``native``) over the model's parameters in canonical order;
    ``scaler``: the GradScaler of a float16 model (None otherwise)."""

    backend = NAME
    scaler = None

    @property
    def lr(self) -> float:
        return float(self.native.param_groups[0]["lr"])


def _trainable(record) -> list[tuple[str, "torch.nn.Parameter"]]:
    """(canonical key, parameter) of every trainable weight, in canonical order."""
    pairs = []
    for row, _ in parameter_rows(record):
        module = record.layers[row.path]
        for name in row.layer.parameter_shapes(row.input_shape):
            pairs.append((f"{row.path}.{name}", getattr(module, name)))
    return pairs


def make_optimizer(model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> SGDOptimizer:
    """PyTorch's SGD: buf = momentum*buf + (g + wd*p) (first buf = g + wd*p); p -= lr*buf.
    Weight decay is coupled and applies to every parameter (biases and BatchNorm too)."""
    record = record_of(model, NAME)
    lr, momentum, weight_decay = training.check_sgd(lr, momentum, weight_decay, NAME, BackendError)
    pairs = _trainable(record)
    if {id(p) for _, p in pairs} != {id(p) for p in model.parameters()}:
        raise BackendError("torch: the model's parameters are not the spec's trainable weights")
    native = torch.optim.SGD([p for _, p in pairs], lr=lr, momentum=momentum, weight_decay=weight_decay,
                             dampening=0.0, nesterov=False)
    optimizer = SGDOptimizer(model, native, [k for k, _ in pairs], momentum, weight_decay)
    if record.extra.get("precision") == "float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        optimizer.scaler = torch.amp.GradScaler(_device_of(model).type)
    return optimizer


def set_learning_rate(optimizer: SGDOptimizer, lr: float) -> None:
    """Change lr with PyTorch's meaning: the momentum buffer is kept as it is."""
    lr, _, _ = training.check_sgd(lr, optimizer.momentum, optimizer.weight_decay, NAME, BackendError)
    for group in optimizer.native.param_groups:
        group["lr"] = lr


def train_step(model, optimizer: SGDOptimizer, x, y, dropout_masks=None) -> float:
    """One SGD step on a minibatch in training mode (batch-statistics BatchNorm, dropout on);
    returns the mean softmax cross-entropy over the batch before the update (NaN/inf as is).

    ``dropout_masks``: {dropout or drop_path path: float32 (B, *output shape)}, required exactly when the
    model was built with ``lockstep_dropout=True``."""
    record, batch, labels, masks = training.prepare_step(model, optimizer, x, y, dropout_masks, NAME)
    device = _device_of(model)
    for path, mask in masks.items():
        record.layers[path].mask = torch.from_numpy(mask).to(device)
    run = record.extra.get("runner", model)
    set_mode(model, True)
    try:
        with _autocast(record, device):
            logits = run(_batch_tensor(record, batch, device))
        # the loss in float32 (autocast would compute it so too): logits may be bf16/fp16
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(labels).to(device))
        optimizer.native.zero_grad(set_to_none=True)
        if optimizer.scaler is None:
            loss.backward()
            optimizer.native.step()
        else:
            optimizer.scaler.scale(loss).backward()
            optimizer.scaler.step(optimizer.native)
            optimizer.scaler.update()
    finally:
        for path in masks:
            record.layers[path].mask = None
    optimizer.steps += 1
    return loss.item()


def peak_device_memory_mb(device: str = "gpu") -> float | None:
    """The most GPU memory PyTorch's allocator has held since the process started (or the
    last ``torch.cuda.reset_peak_memory_stats``), in MiB; None for the CPU. Per process, not
    per model: it counts hand-written models too."""
    if torch_device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2 ** 20


def seed_everything(seed: int) -> str:
    """Seed PyTorch's RNGs and ask for deterministic algorithms (warn_only). Call it before
    build. Returns what stays non-deterministic ("" if nothing is known)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism; read at CUDA init
    torch.manual_seed(int(seed))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return ("torch: bitwise repeatable only at a fixed thread count (OMP_NUM_THREADS / torch threads "
            "change the bits); ops without a deterministic kernel only warn")


def _rng_states(device) -> dict[str, np.ndarray]:
    states = {"torch_cpu": torch.get_rng_state().numpy().copy()}
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state(device).numpy().copy()
    return states


def save_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Weights (canonical), momentum buffers (canonical layout), lr and PyTorch's RNG state,
    in one .npz written atomically."""
    record = record_of(model, NAME)
    training.check_optimizer(model, optimizer, NAME)
    arrays = {f"weights/{k}": v for k, v in get_weights(model).items()}
    params = optimizer.native.param_groups[0]["params"]
    for key, param in zip(optimizer.keys, params):
        buf = optimizer.native.state.get(param, {}).get("momentum_buffer")
        if buf is not None:
            arrays[f"state/{key}"] = buf.detach().cpu().numpy().copy()
    arrays.update({f"rng/{k}": v for k, v in _rng_states(_device_of(model)).items()})
    meta = {"framework": NAME, "spec": record.spec.name, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay, "steps": optimizer.steps, "state_form": STATE_FORM,
            "lockstep_dropout": record.extra.get("lockstep_dropout", False)}
    training.write_checkpoint(path, meta, arrays)


def load_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Restore a checkpoint so training continues exactly as if uninterrupted (bitwise, for
    one written by this backend; one from MXNet or Keras converts its momentum state)."""
    meta, arrays = training.restore_weights(model, optimizer, path, NAME, BackendError, set_weights)
    states = training.section(arrays, "state")
    device = _device_of(model)
    params = optimizer.native.param_groups[0]["params"]
    optimizer.native.state.clear()
    for key, param in zip(optimizer.keys, params):
        if key in states:
            value = training.convert_state(states[key], meta["state_form"], STATE_FORM, float(meta["lr"]))
            optimizer.native.state[param]["momentum_buffer"] = torch.from_numpy(value.copy()).to(device)
    set_learning_rate(optimizer, float(meta["lr"]))
    optimizer.steps = int(meta["steps"])
    if meta["framework"] == NAME:
        rng = training.section(arrays, "rng")
        if "torch_cpu" in rng:
            torch.set_rng_state(torch.from_numpy(rng["torch_cpu"]))
        if "torch_cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(rng["torch_cuda"]), device)
