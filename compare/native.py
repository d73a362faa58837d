"""A framework-neutral view of a hand-written native model.

``trace`` runs one forward pass of a PyTorch ``nn.Module``, a Gluon ``Block``
or a functional/Sequential Keras ``Model`` and lists its parameterised layers
(``KINDS``: conv 2d with groups and dilation, depthwise included; dense;
batchnorm, with or without learned scale/center; prelu; layernorm over the
channels of each pixel or over flat features; channel_scale, ConvNeXt's layer
scale as a layer of its own) in execution order, each with its
configuration as the framework states it, its output in PyTorch's layout (NCHW;
flat features in (C, H, W) order) and its weights in the canonical layout
(PyTorch's: conv OIHW = (out, in/groups, kh, kw), dense (out, in), BatchNorm
weight/bias/running_mean/running_var, PReLU weight (C,) as ``nn.PReLU(C)`` or (1,)
for one shared slope, LayerNorm weight/bias (C,), channel_scale weight (C,)). A missing learned scale or
center (Keras ``scale=False``, Gluon ``scale=False`` / MXNet ``fix_gamma``) is a
missing weight: gamma is 1 and beta 0. ``set_canonical_weights`` writes canonical
weights back into a native layer.

A layer that holds parameters but is none of these kinds is listed with kind
``"unknown"``, so that an alignment can say where it stops.

No framework is imported here just to test a type: ``framework_of`` looks only
at frameworks already in ``sys.modules``. The execution orders:

- PyTorch and Gluon: the order in which the layers' forward calls begin
  (forward pre-hooks), so a container holding its own parameters comes before
  its children. Gluon models run imperatively (hybridization paused).
- Keras: a depth-first walk back from the outputs, each node's inputs in call
  order (so for ``Concatenate([a, b])`` all of branch ``a`` comes before ``b``,
  as in the code of a PyTorch/Gluon ``forward``). Nested functional/Sequential
  models are walked into; each call of a shared layer is its own entry.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec.errors import NetparityError

KINDS = ("conv2d", "dense", "batchnorm", "prelu", "layernorm", "channel_scale")
# ConvNeXt's layer scale, a learned multiplier per channel, is a layer of its own under these names
# (netparity's backends, keras.applications.convnext, timm); torchvision keeps it as a bare parameter
# of its block, which is no layer call to align.
SCALE_NAMES = ("ChannelScale", "LayerScale", "LayerScale2d")
FRAMEWORKS = ("torch", "mxnet", "keras")


class NotSupported(NetparityError, TypeError):
    """A model this module cannot trace (a subclassed Keras model, an unknown object)."""


# ---------------------------------------------------------------------------------------
# Which framework
# ---------------------------------------------------------------------------------------

def framework_of(model) -> str:
    """"torch", "mxnet" or "keras", by isinstance against frameworks already imported."""
    # Keras first: on its torch backend a Keras layer is also a torch nn.Module.
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    mxnet = sys.modules.get("mxnet")
    if mxnet is not None and isinstance(model, mxnet.gluon.Block):
        return "mxnet"
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise NotSupported(f"not a native model: {kind} is not a PyTorch nn.Module, an MXNet Gluon Block or a "
                       "Keras Model (of the frameworks imported in this process)")


# ---------------------------------------------------------------------------------------
# Flat feature orders (Keras channels_last flattening)
# ---------------------------------------------------------------------------------------

def hwc_permutation(chw) -> np.ndarray:
    """``perm[j]`` = the (C, H, W)-flat index of the j-th feature of an (H, W, C) flattening."""
    c, h, w = (int(v) for v in chw)
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def flat_to_canonical(value: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    """Features along the last axis from the native flat order into (C, H, W) order."""
    if perm is None:
        return value
    out = np.empty_like(value)
    out[..., perm] = value
    return out


def flat_to_native(value: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    if perm is None:
        return value
    return value[..., perm]


# ---------------------------------------------------------------------------------------
# The traced layer
# ---------------------------------------------------------------------------------------

@dataclass
class TracedLayer:
    """One call of a parameterised layer.

    ``config`` as the framework states it (padding 'same' stays 'same'; BatchNorm
    momentum is converted to PyTorch's convention). ``output`` is in PyTorch's
    layout: ``layout`` says what was converted ("NCHW", "NHWC->NCHW", "flat",
    "flat HWC->CHW"). ``flatten_source`` is the (C, H, W) shape of a Keras
    Flatten feeding this layer (possibly through elementwise layers). For a layer
    with a fused activation (Keras ``activation=``, Gluon ``activation=``) ``output``
    is the pre-activation value, as a PyTorch layer followed by a separate
    activation gives it; ``config["activation"]`` names the activation.
    """

    index: int
    name: str
    kind: str  # one of KINDS, or unknown
    type_name: str
    framework: str
    config: dict
    output: np.ndarray | None = field(default=None, repr=False)
    layout: str = "NCHW"
    input: np.ndarray | None = field(default=None, repr=False)  # what the layer received, same layout rules
    flatten_source: tuple | None = None
    call: int = 1  # the n-th call of a shared layer
    native: Any = field(default=None, repr=False, compare=False)
    flat_perm: np.ndarray | None = field(default=None, repr=False, compare=False)

    def weights(self) -> dict[str, np.ndarray]:
        """The layer's weights now, canonical layout, float32 copies."""
        return _READERS[self.framework](self)

    def weight_shapes(self) -> dict[str, tuple]:
        return {k: tuple(v.shape) for k, v in self.weights().items()}

    @property
    def shape(self) -> tuple:
        """The main parameter's canonical shape (conv OIHW, dense (out, in), BN, LayerNorm and PReLU
        (C,)); a norm without learned parameters has its channels'."""
        shapes = self.weight_shapes()
        for key in ("weight", "running_mean", "bias"):
            if key in shapes:
                return shapes[key]
        if not shapes and self.config.get("channels"):
            return (int(self.config["channels"]),)
        return tuple(next(iter(shapes.values()), ()))

    def describe(self) -> str:
        return f"#{self.index} {self.name} ({self.type_name})"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "kind": self.kind, "type": self.type_name,
                "framework": self.framework, "config": _jsonable(self.config), "layout": self.layout,
                "flatten_source": None if self.flatten_source is None else list(self.flatten_source),
                "call": self.call, "shape": list(self.shape) if self.kind != "unknown" else None}


class Trace(list):
    """The traced layers (a list) plus what else one forward pass showed."""

    def __init__(self, layers=(), framework: str = "", output=None, data_format: str = "channels_first",
                 dropout: list | None = None, untraced: list | None = None):
        super().__init__(layers)
        self.framework = framework
        self.output = output  # the model's (first) output, canonical layout
        self.data_format = data_format
        # (name, position) of every dropout call with p > 0, position = the number of
        # parameterised layer calls begun before it
        self.dropout = dropout or []
        self.untraced = untraced or []  # parameterised layers that never ran as a layer call


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _torch_momentum(m):
    """Keras/MXNet momentum weighs the old running value: PyTorch's is 1 - m."""
    return None if m is None else round(1.0 - float(m), 10)


def effective_padding(padding, kernel, stride, before=None, dilation=None):
    """Conv padding as ((top, bottom), (left, right)) zeros, ``before`` being a separate
    ZeroPadding2D's; 'same' stays 'same' unless it is symmetric (stride 1 and an odd dilated
    kernel span (k - 1) * dilation + 1)."""
    extra = tuple(tuple(int(v) for v in p) for p in before) if before else ((0, 0), (0, 0))
    if isinstance(padding, str):
        if padding == "valid":
            return extra
        dilation = tuple(int(d) for d in dilation) if dilation is not None else (1,) * len(kernel)
        span = [(int(k) - 1) * d + 1 for k, d in zip(kernel, dilation)]
        if padding == "same" and all(int(s) == 1 for s in stride) and all(k % 2 for k in span):
            return tuple((k // 2 + e[0], k // 2 + e[1]) for k, e in zip(span, extra))
        return padding
    ph, pw = (int(v) for v in padding)
    return ((ph + extra[0][0], ph + extra[0][1]), (pw + extra[1][0], pw + extra[1][1]))


def _record_names(model) -> dict:
    """id(native layer) -> spec path, for a model netparity built (its build record)."""
    record = getattr(model, "_netparity_record", None)
    names = {}
    for path, native in (getattr(record, "layers", None) or {}).items():
        if not isinstance(native, (list, tuple)):
            names.setdefault(id(native), path)
    return names


def _f32(value) -> np.ndarray:
    return np.array(value, dtype=np.float32, copy=True)


def _scale_parameter(params: dict):
    """The one per-channel parameter of a layer named like a layer scale, or None: shape (C,)
    or (C, 1, 1)."""
    if len(params) != 1:
        return None
    name, param = next(iter(params.items()))
    shape = tuple(int(v) for v in param.shape)
    return (name, param) if len(shape) in (1, 3) and all(v == 1 for v in shape[1:]) else None


def _scale_channels_last(channels: int, value) -> bool:
    """A layer scale applied to the last axis of a 4D value (timm's LayerScale inside an NHWC block)."""
    return value is not None and value.ndim == 4 and value.shape[1] != channels and value.shape[-1] == channels


def _nhwc_to_nchw(value):
    if value is None or np.ndim(value) != 4:
        return value
    return np.ascontiguousarray(value.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------

def trace(model, x_nchw, framework: str | None = None, training: bool = False) -> Trace:
    """The parameterised layers of ``model`` in execution order, from one forward pass on
    ``x_nchw`` (NCHW numpy; transposed to NHWC for a channels_last Keras model).

    ``training=True`` runs in training mode (PyTorch ``.train()``, Gluon
    ``record(train_mode=True)`` plus a backward so that BatchNorm's running
    statistics move as in the other frameworks, Keras ``training=True``); the
    model is left in the mode it was in.
    """
    framework = framework or framework_of(model)
    x = np.asarray(x_nchw, dtype=np.float32)
    if framework == "torch":
        return _trace_torch(model, x, training)
    if framework == "mxnet":
        return _trace_mxnet(model, x, training)
    if framework == "keras":
        return _trace_keras(model, x, training)
    raise NotSupported(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")


def set_canonical_weights(model, traced_layer: TracedLayer, weights: dict, flatten_source=None) -> list[str]:
    """Write canonical weights into the native layer of ``traced_layer`` (inverse
    conversions). Keys the layer lacks are skipped; returns notes on what was skipped.
    ``flatten_source`` (C, H, W): the Keras dense/BN input is an (H, W, C) flattening of
    that shape (default: what trace found)."""
    perm = traced_layer.flat_perm
    if flatten_source is not None:
        perm = hwc_permutation(flatten_source)
    return _WRITERS[traced_layer.framework](traced_layer, weights, perm)


def _check_shape(layer: TracedLayer, key: str, value: np.ndarray, expected: tuple) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{layer.describe()}: weight {key!r} of shape {tuple(value.shape)} does not fit "
                         f"its canonical shape {tuple(expected)}")


def _skipped(layer: TracedLayer, weights: dict, present: dict) -> list[str]:
    return [f"{layer.name}: {key} not copied (the layer has none)" for key in weights if key not in present]


# -- PyTorch ------------------------------------------------------------------------------

def _torch_kind(module) -> str | None:
    nn = sys.modules["torch"].nn
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
        return "batchnorm"
    if isinstance(module, nn.PReLU):
        return "prelu"
    if _torch_is_layernorm(module):
        return "layernorm"
    if type(module).__name__ in SCALE_NAMES and _scale_parameter(_torch_parameters(module)):
        return "channel_scale"
    return None


def _torch_parameters(module) -> dict:
    return {n: p for n, p in module._parameters.items() if p is not None}


def _torch_is_layernorm(module) -> bool:
    """nn.LayerNorm over one axis (a LayerNorm2d subclass included), or a LayerNorm module of its
    own with weight and bias of shape (C,) and an eps (the ConvNeXt repository's)."""
    nn = sys.modules["torch"].nn
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1
    weight = getattr(module, "weight", None)
    return ("LayerNorm" in type(module).__name__ and isinstance(weight, nn.Parameter) and weight.ndim == 1
            and isinstance(getattr(module, "eps", None), float))


def _torch_channels_last(module, kind: str, value) -> bool:
    """Whether this layer's 4D values hold channels last (NHWC): nn.Linear and a plain nn.LayerNorm
    act on the last axis (ConvNeXt permutes to NHWC around them); a LayerNorm2d of its own
    normalises the channels of NCHW unless it says data_format='channels_last'."""
    nn = sys.modules["torch"].nn
    if value is None or value.ndim != 4:
        return False
    if kind == "dense":
        return True
    if kind == "layernorm":
        if type(module).forward is nn.LayerNorm.forward:
            return True
        return getattr(module, "data_format", "channels_first") == "channels_last"
    if kind == "channel_scale":
        _, param = _scale_parameter(_torch_parameters(module))
        return param.dim() == 1 and _scale_channels_last(param.numel(), value)
    return False


def _torch_own_parameters(module) -> bool:
    return any(p is not None for p in module._parameters.values())


def _torch_config(module, kind: str) -> dict:
    if kind == "conv2d":
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel": tuple(module.kernel_size), "stride": tuple(module.stride),
                "padding": module.padding if isinstance(module.padding, str) else tuple(module.padding),
                "dilation": tuple(module.dilation), "groups": module.groups, "bias": module.bias is not None,
                "padding_mode": module.padding_mode,
                "effective_padding": effective_padding(module.padding, module.kernel_size, module.stride)}
    if kind == "dense":
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    if kind == "batchnorm":
        return {"channels": module.num_features, "eps": float(module.eps),
                "momentum": None if module.momentum is None else float(module.momentum),
                "affine": module.affine, "scale": module.weight is not None, "center": module.bias is not None,
                "track_running_stats": module.track_running_stats}
    if kind == "prelu":
        return {"channels": int(module.num_parameters)}
    if kind == "channel_scale":
        return {"channels": int(_scale_parameter(_torch_parameters(module))[1].numel())}
    if kind == "layernorm":
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        shape = getattr(module, "normalized_shape", None)
        return {"channels": int(shape[0]) if shape else int(weight.shape[0]), "eps": float(module.eps),
                "scale": weight is not None, "center": bias is not None}
    return {"parameters": {n: tuple(p.shape) for n, p in module._parameters.items() if p is not None}}


def _trace_torch(model, x, training: bool) -> Trace:
    torch = sys.modules["torch"]
    names = _record_names(model)
    for name, module in model.named_modules():
        names.setdefault(id(module), name or type(module).__name__)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    started: list = []  # (module, call) in the order forwards begin
    outputs: dict = {}
    received: dict = {}
    calls: dict = {}
    ran: set = set()

    dropout = []

    def pre(module, _inputs):
        ran.add(id(module))
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            dropout.append((names.get(id(module), type(module).__name__), len(started)))
        if _torch_kind(module) or _torch_own_parameters(module):
            calls[id(module)] = calls.get(id(module), 0) + 1
            entry = (module, calls[id(module)])
            started.append(entry)
            module._netparity_entry = len(started) - 1

    def post(module, inputs, out):
        position = getattr(module, "_netparity_entry", None)
        if position is not None and started[position][0] is module:
            value = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(value, torch.Tensor):
                # a copy: the model may change the tensor in place after the hook (d2l's `Y += X`,
                # ReLU(inplace=True)), and a NumPy view would follow it
                outputs[position] = value.detach().float().cpu().numpy().copy()
            if inputs and isinstance(inputs[0], torch.Tensor):
                received[position] = inputs[0].detach().float().cpu().numpy().copy()

    handles = []
    modes = {m: m.training for m in model.modules()}
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    model.train(training)
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(x).to(device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
            if hasattr(module, "_netparity_entry"):
                del module._netparity_entry
    out = out[0] if isinstance(out, (tuple, list)) else out
    layers = []
    for position, (module, call) in enumerate(started):
        kind = _torch_kind(module) or "unknown"
        name = names.get(id(module), type(module).__name__)
        output, layer_input = outputs.get(position), received.get(position)
        layout = "flat" if output is not None and output.ndim == 2 else "NCHW"
        if _torch_channels_last(module, kind, output):
            output, layout = _nhwc_to_nchw(output), "NHWC->NCHW"
            layer_input = _nhwc_to_nchw(layer_input)
        layers.append(TracedLayer(len(layers), name if call == 1 else f"{name}#{call}", kind,
                                  type(module).__name__, "torch", _torch_config(module, kind), output,
                                  layout, layer_input, call=call, native=module))
    untraced = [names[id(m)] for m in model.modules()
                if id(m) not in ran and (_torch_kind(m) or _torch_own_parameters(m))]
    return Trace(layers, "torch", out.detach().float().cpu().numpy(), "channels_first", dropout, untraced)


_TORCH_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _torch_tensors(layer: TracedLayer) -> dict:
    module = layer.native
    keys = _TORCH_BN_KEYS if layer.kind == "batchnorm" else ("weight", "bias")
    if layer.kind == "unknown":
        return _torch_parameters(module)
    if layer.kind == "channel_scale":
        return {"weight": _scale_parameter(_torch_parameters(module))[1]}
    return {k: getattr(module, k) for k in keys if getattr(module, k, None) is not None}


def _canonical_shape(layer: TracedLayer, native_shape) -> tuple:
    """A layer scale kept as (C, 1, 1) is (C,) in the canonical layout."""
    native_shape = tuple(int(v) for v in native_shape)
    return (int(np.prod(native_shape)),) if layer.kind == "channel_scale" else native_shape


def _read_torch(layer: TracedLayer) -> dict:
    return {k: _f32(t.detach().float().cpu().numpy()).reshape(_canonical_shape(layer, t.shape))
            for k, t in _torch_tensors(layer).items()}


def _write_torch(layer: TracedLayer, weights: dict, perm) -> list[str]:
    torch = sys.modules["torch"]
    present = _torch_tensors(layer)
    with torch.no_grad():
        for key, tensor in present.items():
            if key not in weights:
                continue
            value = np.asarray(weights[key], dtype=np.float32)
            _check_shape(layer, key, value, _canonical_shape(layer, tensor.shape))
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value).reshape(tensor.shape)).to(tensor.dtype))
    return _skipped(layer, weights, present)


# -- MXNet Gluon --------------------------------------------------------------------------

def _children(block):
    for name, child in block._children.items():
        yield name, (child() if callable(child) and not hasattr(child, "_children") else child)


def _mxnet_kind(block) -> str | None:
    nn = sys.modules["mxnet"].gluon.nn
    if isinstance(block, nn.Conv2D) and block._kwargs.get("layout", "NCHW") == "NCHW":
        return "conv2d"
    if isinstance(block, nn.Dense):
        return "dense"
    if isinstance(block, nn.BatchNorm):
        return "batchnorm"
    if isinstance(block, nn.PReLU):
        return "prelu"
    if isinstance(block, nn.LayerNorm):
        return "layernorm"
    if type(block).__name__ in SCALE_NAMES and _scale_parameter(dict(getattr(block, "_reg_params", {}))):
        return "channel_scale"
    return None


def _mxnet_channels_last(block, kind: str, value) -> bool:
    """Whether this block's 4D values hold channels last: a Dense(flatten=False) or a LayerNorm over
    the last axis acts on a tensor the model permuted to NHWC."""
    if value is None or value.ndim != 4:
        return False
    if kind == "dense":
        return not block._flatten
    if kind == "layernorm":
        return block._kwargs["axis"] in (-1, 3)
    if kind == "channel_scale":
        _, param = _scale_parameter(dict(block._reg_params))
        return len(param.shape) == 1 and _scale_channels_last(int(param.shape[0]), value)
    return False


def _mxnet_own_parameters(block) -> bool:
    constant = sys.modules["mxnet"].gluon.Constant
    return any(not isinstance(p, constant) for p in getattr(block, "_reg_params", {}).values())


def _act_name(act) -> str | None:
    if act is None:
        return None
    return getattr(act, "_act_type", None) or type(act).__name__


def _mxnet_config(block, kind: str) -> dict:
    kw = getattr(block, "_kwargs", {})
    if kind == "conv2d":
        weight = block.weight.shape
        return {"in_channels": int(weight[1]) * kw["num_group"], "out_channels": kw["num_filter"],
                "kernel": tuple(kw["kernel"]), "stride": tuple(kw["stride"]), "padding": tuple(kw["pad"]),
                "dilation": tuple(kw["dilate"]), "groups": kw["num_group"], "bias": not kw["no_bias"],
                "activation": _act_name(block.act),
                "effective_padding": effective_padding(kw["pad"], kw["kernel"], kw["stride"])}
    if kind == "dense":
        return {"in_features": int(block.weight.shape[1]), "out_features": int(block._units),
                "bias": block.bias is not None, "flatten": bool(block._flatten), "activation": _act_name(block.act)}
    if kind == "batchnorm":
        return {"channels": int(block.running_mean.shape[0]), "eps": float(kw["eps"]),
                "momentum": _torch_momentum(kw["momentum"]), "axis": kw["axis"],
                "fix_gamma": bool(kw["fix_gamma"]), "use_global_stats": bool(kw["use_global_stats"]),
                "scale": not kw["fix_gamma"], "center": bool(block.beta._differentiable)}
    if kind == "prelu":
        return {"channels": int(block.alpha.shape[0])}
    if kind == "channel_scale":
        return {"channels": int(np.prod(_scale_parameter(dict(block._reg_params))[1].shape))}
    if kind == "layernorm":
        return {"channels": int(block.gamma.shape[0]), "eps": float(kw["eps"]), "axis": kw["axis"],
                "scale": bool(kw["scale"]), "center": bool(kw["center"])}
    return {"parameters": {n: tuple(p.shape) for n, p in block._reg_params.items()}}


def _mxnet_context(model):
    mx = sys.modules["mxnet"]
    for param in model.collect_params().values():
        try:
            return param.list_ctx()[0]
        except Exception:  # deferred initialisation: no context yet
            continue
    return mx.cpu()


def _trace_mxnet(model, x, training: bool) -> Trace:
    mx = sys.modules["mxnet"]
    names, stack = {id(model): model.name, **_record_names(model)}, [("", model)]
    blocks = []
    while stack:
        prefix, block = stack.pop(0)
        blocks.append(block)
        for name, child in _children(block):
            path = f"{prefix}.{name}" if prefix else name
            names.setdefault(id(child), path)
            stack.append((path, child))
    started, outputs, calls, ran, received, preact = [], {}, {}, set(), {}, {}
    # A Conv2D/Dense with a fused activation runs it as a child block: its input is the layer's
    # pre-activation output, which is what a PyTorch layer followed by a separate activation gives.
    act_parent = {id(b.act): b for b in blocks if _mxnet_kind(b) in ("conv2d", "dense") and b.act is not None}

    dropout = []

    def pre(block, inputs):
        if isinstance(block, mx.gluon.nn.Dropout) and float(block._rate) > 0:
            dropout.append((names.get(id(block), block.name), len(started)))
        parent = act_parent.get(id(block))
        if parent is not None and getattr(parent, "_netparity_entry", None) is not None and inputs:
            preact[parent._netparity_entry] = inputs[0]
        ran.add(id(block))
        if _mxnet_kind(block) or _mxnet_own_parameters(block):
            calls[id(block)] = calls.get(id(block), 0) + 1
            started.append((block, calls[id(block)]))
            block._netparity_entry = len(started) - 1

    def post(block, inputs, out):
        position = getattr(block, "_netparity_entry", None)
        if position is not None and started[position][0] is block:
            value = out[0] if isinstance(out, (tuple, list)) else out
            value = preact.get(position, value)
            if isinstance(value, mx.nd.NDArray):
                outputs[position] = value.asnumpy().astype(np.float32)
            if inputs and isinstance(inputs[0], mx.nd.NDArray):
                received[position] = inputs[0].asnumpy().astype(np.float32)

    handles = [h for block in blocks for h in (block.register_forward_pre_hook(pre),
                                                block.register_forward_hook(post))]
    batch = mx.nd.array(x, ctx=_mxnet_context(model), dtype=np.float32)
    try:
        from ..backends.mxnet.core import imperative  # the model is Gluon: mxnet is loaded already

        with imperative(model):
            if training:
                # Gluon moves BatchNorm running statistics only in backward: run one, like a step.
                with mx.autograd.record(train_mode=True):
                    out = model(batch)
                    head = out[0] if isinstance(out, (tuple, list)) else out
                try:
                    head.backward()
                except Exception:  # no parameter needs a gradient: statistics stay put
                    pass
            else:
                out = model(batch)
    finally:
        for handle in handles:
            handle.detach()
        for block in blocks:
            if hasattr(block, "_netparity_entry"):
                del block._netparity_entry
    out = out[0] if isinstance(out, (tuple, list)) else out
    layers = []
    for position, (block, call) in enumerate(started):
        kind = _mxnet_kind(block) or "unknown"
        name = names.get(id(block), block.name)
        output, layer_input = outputs.get(position), received.get(position)
        layout = "flat" if output is not None and output.ndim == 2 else "NCHW"
        if _mxnet_channels_last(block, kind, output):
            output, layout = _nhwc_to_nchw(output), "NHWC->NCHW"
            layer_input = _nhwc_to_nchw(layer_input)
        layers.append(TracedLayer(len(layers), name if call == 1 else f"{name}#{call}", kind,
                                  type(block).__name__, "mxnet", _mxnet_config(block, kind), output,
                                  layout, layer_input, call=call, native=block))
    untraced = [names[id(b)] for b in blocks
                if id(b) not in ran and (_mxnet_kind(b) or _mxnet_own_parameters(b))]
    return Trace(layers, "mxnet", out.asnumpy().astype(np.float32), "channels_first", dropout, untraced)


_MXNET_NAMES = {"batchnorm": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                              "running_var": "running_var"},
                "conv2d": {"weight": "weight", "bias": "bias"}, "dense": {"weight": "weight", "bias": "bias"},
                "prelu": {"weight": "alpha"}, "layernorm": {"weight": "gamma", "bias": "beta"}}


def _mxnet_params(layer: TracedLayer) -> dict:
    block = layer.native
    if layer.kind == "unknown":
        return dict(block._reg_params)
    if layer.kind == "channel_scale":
        return {"weight": _scale_parameter(dict(block._reg_params))[1]}
    params = {}
    for key, native in _MXNET_NAMES[layer.kind].items():
        param = getattr(block, native, None)
        if param is None:
            continue
        if layer.kind in ("batchnorm", "layernorm") and key in ("weight", "bias") and not _mxnet_learned(layer, key):
            continue  # scale=False / center=False: gamma 1 and beta 0 are not weights of the function
        params[key] = param
    return params


def _mxnet_learned(layer: TracedLayer, key: str) -> bool:
    """Whether a norm's gamma (weight) or beta (bias) is learned: BatchNorm(scale=False) runs with
    fix_gamma (gamma taken as 1 whatever it holds); center=False leaves beta at 0, untrained."""
    return bool(layer.config.get("scale" if key == "weight" else "center", True))


def _read_mxnet(layer: TracedLayer) -> dict:
    return {k: _f32(p.data().asnumpy()).reshape(_canonical_shape(layer, p.shape))
            for k, p in _mxnet_params(layer).items()}


def _write_mxnet(layer: TracedLayer, weights: dict, perm) -> list[str]:
    mx = sys.modules["mxnet"]
    present = _mxnet_params(layer)
    for key, param in present.items():
        if key not in weights:
            continue
        value = np.asarray(weights[key], dtype=np.float32)
        _check_shape(layer, key, value, _canonical_shape(layer, param.shape))
        param.set_data(mx.nd.array(value.reshape(param.shape), ctx=param.list_ctx()[0], dtype=param.dtype))
    return _skipped(layer, weights, present)


# -- Keras --------------------------------------------------------------------------------

def _keras_functional_class():
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a future Keras moved it
        return None
    return Functional


def _keras_graph(model):
    """The functional graph behind a functional or Sequential model, or None."""
    keras = sys.modules["keras"]
    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None and not model.built:
            return None
        return getattr(model, "_functional", None)
    functional = _keras_functional_class()
    if functional is not None and isinstance(model, functional):
        return model
    return None


def _keras_kind(layer) -> str | None:
    layers = sys.modules["keras"].layers
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
        return "conv2d"
    if isinstance(layer, layers.Dense):
        return "dense"
    if isinstance(layer, layers.BatchNormalization):
        return "batchnorm"
    if isinstance(layer, layers.PReLU):
        return "prelu"
    if isinstance(layer, layers.LayerNormalization) and not getattr(layer, "rms_scaling", False):
        return "layernorm"
    if type(layer).__name__ in SCALE_NAMES and _scale_parameter({v.path: v for v in layer.weights}):
        return "channel_scale"
    return None


def _keras_channel_axis(value, axes) -> int | None:
    """The axis of a native value that holds channels (features of a flat value)."""
    ndim = np.ndim(value)
    if ndim == 2:
        return 1
    if ndim == 4:
        return list(axes).index(1)
    return None


def _keras_normalises_channels(layer, value, axes) -> bool:
    """A LayerNormalization over exactly the channel axis (ConvNeXt's LayerNorm over the channels of
    each pixel, or over a flat input's features); other axes are no kind netparity aligns."""
    channel = _keras_channel_axis(value, axes)
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return channel is not None and [int(a) % np.ndim(value) for a in axis] == [channel]


def _keras_nodes(graph):
    """A functional graph's nodes in depth-first post-order from the outputs (iterative): each node
    after the nodes that feed it, the inputs of a node in call order."""
    inputs = {id(t) for t in graph.inputs}
    done, ordered = set(), []
    for out in graph.outputs:
        stack = [(out, False)]
        while stack:
            tensor, expanded = stack.pop()
            op, node_index, _ = tensor._keras_history
            if op is None or id(tensor) in inputs:
                continue
            node = op._inbound_nodes[node_index]
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                ordered.append(node)
                continue
            stack.append((tensor, True))
            for parent in reversed(list(node.input_tensors)):
                stack.append((parent, False))
    return ordered


NCHW_AXES = (0, 1, 2, 3)
NHWC_AXES = (0, 2, 3, 1)  # native axis k of an NHWC tensor holds canonical (NCHW) axis NHWC_AXES[k]


def _layout_neutral(op) -> bool:
    """A layer that keeps its input's axes as they are (elementwise, or a scalar rescaling)."""
    keras = sys.modules["keras"]
    if isinstance(op, keras.layers.Rescaling):
        return np.ndim(op.scale) == 0 and np.ndim(op.offset) == 0
    return isinstance(op, _elementwise_layers())


def _input_permutes(graph) -> set:
    """What a graph's first input meets first on each path through layout-neutral layers: the
    ``dims`` of a 4D Permute, or None for any other layer (nested models are walked into)."""
    keras = sys.modules["keras"]
    reached = {id(graph.inputs[0])}
    met = set()
    for node in _keras_nodes(graph):
        positions = [k for k, t in enumerate(node.input_tensors) if id(t) in reached]
        if not positions:
            continue
        op = node.operation
        inner = _keras_graph(op)
        if isinstance(op, keras.layers.Permute) and len(op.dims) == 3:
            met.add(tuple(int(d) for d in op.dims))
        elif inner is not None and inner is not graph and positions == [0] and inner.inputs:
            met |= _input_permutes(inner)
        elif _layout_neutral(op):
            reached.update(id(t) for t in node.outputs)
        else:
            met.add(None)
    return met


def keras_input_axes(model, data_format: str | None = None) -> tuple:
    """How a Keras model's input holds an NCHW image: native axis k holds canonical axis
    ``axes[k]``. The model's data format, unless the input goes straight into a Permute (through
    elementwise layers only): a PyTorch-style NCHW input that ``Permute((2, 3, 1))`` turns
    channels_last, the way ports from PyTorch often start, is fed NCHW. Refuses (NotSupported)
    a Permute that would make the input neither NCHW nor NHWC, or an input that reaches a Permute
    on one path and other layers on another."""
    keras = sys.modules["keras"]
    data_format = data_format or keras_data_format(model)
    default = NHWC_AXES if data_format == "channels_last" else NCHW_AXES
    graph = _keras_graph(model)
    if graph is None:  # an unbuilt Sequential: its first layer
        first = model.layers[0] if getattr(model, "layers", None) else None
        met = {tuple(int(d) for d in first.dims)} if isinstance(first, keras.layers.Permute) \
            and len(first.dims) == 3 else set()
    elif not graph.inputs or len(graph.inputs[0].shape) != 4:
        return default
    else:
        met = _input_permutes(graph)
    permutes = sorted(m for m in met if m is not None)
    if not permutes:
        return default
    if len(met) > 1:
        raise NotSupported(f"Keras model {model.name!r}: its input goes through Permute{permutes[0]} on one path "
                           "and into other layers on another, so netparity cannot tell whether it is NCHW or NHWC; "
                           "permute it once, right after the Input")
    axes = [0, 0, 0, 0]
    for k, d in enumerate(permutes[0]):
        axes[d] = default[k + 1]  # after the Permute the tensor is in the model's data format
    axes = tuple(axes)
    if axes not in (NCHW_AXES, NHWC_AXES):
        raise NotSupported(f"Keras model {model.name!r}: its input goes through Permute{permutes[0]} into "
                           f"{data_format} layers, so it would hold an image with its axes as {_axes_name(axes)}; "
                           "netparity feeds NCHW or NHWC inputs only (Permute((2, 3, 1)) takes NCHW to NHWC)")
    return axes


def _axes_name(axes) -> str:
    return "".join("NCHW"[a] for a in axes)


def _keras_conv_format(model) -> str | None:
    keras = sys.modules["keras"]
    for layer in _keras_all_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                              keras.layers.ZeroPadding2D)):
            return layer.data_format
    return None


def _keras_all_layers(model):
    stack = [model]
    while stack:
        layer = stack.pop(0)
        yield layer
        if _keras_graph(layer) is not None:
            stack.extend(layer.layers)


def keras_data_format(model, chw=None) -> str:
    """channels_last or channels_first: from the conv/pool layers, else the input shape, else
    Keras' configured image_data_format."""
    keras = sys.modules["keras"]
    found = _keras_conv_format(model)
    if found:
        return found
    graph = _keras_graph(model)
    if graph is not None and chw is not None:
        shape = tuple(graph.inputs[0].shape[1:])
        if len(shape) == 3:
            c, h, w = chw
            if shape == (h, w, c) and shape != (c, h, w):
                return "channels_last"
            if shape == (c, h, w) and shape != (h, w, c):
                return "channels_first"
    return keras.config.image_data_format()


def keras_input_shape(model) -> tuple | None:
    """(C, H, W) from a Keras model's declared input, or None when it is not static."""
    graph = _keras_graph(model)
    if graph is None or not graph.inputs:
        return None
    shape = tuple(graph.inputs[0].shape[1:])
    if len(shape) != 3 or any(v is None for v in shape):
        return None
    canonical = [0, 0, 0]
    for size, axis in zip(shape, keras_input_axes(model)[1:]):
        canonical[axis - 1] = int(size)
    return tuple(canonical)


def _keras_config(layer, kind: str, padding_before, axes=None, value=None) -> dict:
    if kind == "conv2d":
        kernel_shape = tuple(int(v) for v in layer.kernel.shape)
        if _keras_depthwise(layer):  # kernel (kh, kw, C, multiplier)
            channels, multiplier = kernel_shape[2], kernel_shape[3]
            config = {"in_channels": channels, "out_channels": channels * multiplier, "depthwise": True,
                      "depth_multiplier": multiplier, "groups": channels}
        else:
            config = {"in_channels": kernel_shape[2] * int(layer.groups), "out_channels": int(layer.filters),
                      "groups": int(layer.groups)}
        config.update({"kernel": tuple(layer.kernel_size), "stride": tuple(layer.strides), "padding": layer.padding,
                       "dilation": tuple(layer.dilation_rate), "bias": layer.use_bias,
                       "data_format": layer.data_format, "activation": getattr(layer.activation, "__name__", None)})
        if padding_before is not None:
            config["zero_padding_before"] = padding_before  # a separate ZeroPadding2D layer feeds it
        config["effective_padding"] = effective_padding(layer.padding, layer.kernel_size, layer.strides,
                                                        padding_before, layer.dilation_rate)
        return config
    if kind == "prelu":
        alpha = tuple(int(v) for v in layer.alpha.shape)
        config = {"shared_axes": layer.shared_axes, "alpha_shape": alpha}
        if len(alpha) == 3:
            config["axes"] = tuple(axes)
        canonical = _alpha_to_canonical(np.zeros(alpha, np.float32), config.get("axes"), None)
        config["channels"] = int(canonical.shape[0])  # 1 for one shared slope
        config["per_element"] = canonical.ndim > 1  # Keras' default: a slope per element (C, H, W)
        return config
    if kind == "layernorm":
        channel = _keras_channel_axis(value, axes)
        return {"channels": int(np.shape(value)[channel]), "eps": float(layer.epsilon), "axis": layer.axis,
                "scale": bool(layer.scale), "center": bool(layer.center)}
    if kind == "channel_scale":
        return {"channels": int(np.prod(layer.weights[0].shape))}
    if kind == "dense":
        return {"in_features": int(layer.kernel.shape[0]), "out_features": int(layer.units),
                "bias": layer.use_bias, "activation": getattr(layer.activation, "__name__", None)}
    if kind == "batchnorm":
        channels = int(layer.moving_mean.shape[0])
        return {"channels": channels, "eps": float(layer.epsilon), "momentum": _torch_momentum(layer.momentum),
                "axis": layer.axis, "center": layer.center, "scale": layer.scale,
                "trainable": bool(layer.trainable)}  # trainable=False runs it in inference mode when training
    return {"parameters": {v.path if hasattr(v, "path") else v.name: tuple(v.shape) for v in layer.weights}}


@dataclass
class _KerasEntry:
    """One recorded call of a parameterised Keras layer, native values."""

    op: Any
    name: str
    call: int
    kind: str
    value: Any  # its output (pre-activation for a fused activation)
    perm: np.ndarray | None  # the flat feature order of its input
    chw: tuple | None  # the (C, H, W) that flat order came from
    padding_before: tuple | None  # a ZeroPadding2D feeding a conv
    out_perm: Any  # the layout of its output
    first_in: Any  # its (first) input
    axes: tuple  # the layout of its input, canonical axis per native axis
    stride: tuple | None = None  # a stride-1 conv followed by the Keras backend's Subsample2D


class _KerasRun:
    """Runs a functional graph node by node, eagerly, recording parameterised calls."""

    def __init__(self, training: bool, data_format: str):
        self.training = training
        self.channels_last = data_format == "channels_last"
        self.default_axes = (0, 2, 3, 1) if self.channels_last else (0, 1, 2, 3)
        self.entries: list[_KerasEntry] = []
        self.conv_outputs = {}  # id(output value of a conv) -> its entry
        self.calls = {}
        self.dropout = []
        self.preactivation = {}
        self.perm_chw = {}

    def run(self, graph, values, layouts, prefix: str):
        """Feed ``values`` (flat list for graph.inputs); returns output values and their flat perms."""
        keras = sys.modules["keras"]
        tensors = {id(t): v for t, v in zip(graph.inputs, values)}
        perms = {id(t): p for t, p in zip(graph.inputs, layouts)}
        for node in _keras_nodes(graph):
            op = node.operation
            if node.is_input or op is None:
                continue
            args, kwargs = node.arguments.fill_in(tensors)
            in_perms = [perms.get(id(t)) for t in node.input_tensors]
            inner = _keras_graph(op) if op is not graph else None
            name = f"{prefix}{op.name}"
            if inner is not None:
                flat = [tensors[id(t)] for t in node.input_tensors]
                outs, out_perms = self.run(inner, flat, in_perms, f"{name}/")
            else:
                if "training" in getattr(op, "_call_context_args", ()) or getattr(op, "_call_has_training_arg",
                                                                                  False):
                    kwargs["training"] = self.training
                fused = getattr(op, "activation", None) if _keras_kind(op) in ("conv2d", "dense") else None
                if fused is not None and fused is not keras_linear():
                    # Record the pre-activation output (what a PyTorch layer followed by a separate
                    # activation gives), then apply the activation to carry on.
                    op.activation = keras_linear()
                    try:
                        pre = op(*args, **kwargs)
                    finally:
                        op.activation = fused
                    result = fused(pre)
                    outs = [result]
                    self.preactivation[id(result)] = pre
                else:
                    result = op(*args, **kwargs)
                    outs = list(result) if isinstance(result, (list, tuple)) else [result]
                in_values = [tensors.get(id(t)) for t in node.input_tensors]
                out_perms = [self.propagate(op, in_values, in_perms, outs)] * len(outs)
                first_in = tensors.get(id(node.input_tensors[0])) if node.input_tensors else None
                if node.input_tensors and _keras_kind(op) == "conv2d":
                    # a conv fed by ZeroPadding2D: record the unpadded input (the padding is in the config)
                    parent_op, parent_index, _ = node.input_tensors[0]._keras_history
                    if isinstance(parent_op, keras.layers.ZeroPadding2D):
                        parent_in = parent_op._inbound_nodes[parent_index].input_tensors
                        first_in = tensors.get(id(parent_in[0]), first_in) if parent_in else first_in
                self.record(op, node, name, outs, in_perms, out_perms[0] if out_perms else None, first_in)
                if in_values and id(in_values[0]) in self.conv_outputs and _is_subsample(op):
                    self.fold_subsample(self.conv_outputs[id(in_values[0])], op, outs[0])
            for t, v, p in zip(node.outputs, outs, out_perms):
                tensors[id(t)] = v
                perms[id(t)] = p
        return [tensors[id(t)] for t in graph.outputs], [perms.get(id(t)) for t in graph.outputs]

    def propagate(self, op, ins, in_perms, outs):
        """The flat feature order of this op's output (None: canonical or not flat)."""
        keras = sys.modules["keras"]
        if not ins or len(outs) != 1 or any(v is None for v in ins):
            return None
        in_shape = tuple(ins[0].shape)
        out_shape = tuple(outs[0].shape)
        flattening = isinstance(op, keras.layers.Flatten) or (isinstance(op, keras.layers.Reshape)
                                                               and len(out_shape) == 2)
        if flattening and len(in_shape) == 4:
            axes = self.axes(in_perms[0])  # native axis k holds canonical (NCHW) axis axes[k]
            canonical = [0] * 4
            for k, size in enumerate(in_shape):
                canonical[axes[k]] = int(size)
            chw = tuple(canonical[1:])
            index = np.arange(int(np.prod(chw))).reshape(1, *chw)  # canonical NCHW positions
            native = index.transpose(axes)
            if isinstance(op, keras.layers.Flatten) and op.data_format == "channels_first":
                native = np.moveaxis(native, 1, -1)  # Keras' Flatten moves channels last first
            perm = native.reshape(-1)
            if np.array_equal(perm, np.arange(perm.size)):
                return None
            self.perm_chw[id(perm)] = (perm, chw)  # the array stays alive here, so its id is not reused
            return perm
        if isinstance(op, keras.layers.Permute) and len(in_shape) == 4:
            axes = self.axes(in_perms[0])
            out = (axes[0], *(axes[d] for d in op.dims))
            return None if out == self.default_axes else out
        if isinstance(op, (keras.layers.Dense, keras.layers.Reshape, keras.layers.Permute,
                           keras.layers.Concatenate)):
            return None
        if any(isinstance(p, tuple) for p in in_perms) and not _layout_neutral(op):
            return None  # a 4D layer (conv, pool...) gives the model's own data format
        known = [p for p in in_perms if p is not None]
        if known and all(p is not None and np.array_equal(p, known[0]) for p in in_perms) \
                and all(tuple(t.shape) == out_shape for t in ins):
            return known[0]  # elementwise: the feature order passes through
        return None

    def axes(self, layout):
        """A 4D tensor's axes in canonical terms: its recorded layout or the model's data format."""
        return layout if isinstance(layout, tuple) else self.default_axes

    def record(self, op, node, name, outs, in_perms, out_perm, first_in=None):
        keras = sys.modules["keras"]
        if isinstance(op, (keras.layers.Dropout, keras.layers.SpatialDropout2D)) and float(op.rate) > 0:
            self.dropout.append((name, len(self.entries)))
        kind = _keras_kind(op)
        axes = self.axes(in_perms[0] if in_perms else None)  # the layout of the layer's input
        if kind == "layernorm" and not _keras_normalises_channels(op, first_in, axes):
            kind = None
        if kind is None and not (getattr(op, "weights", None) or []):
            return
        self.calls[id(op)] = self.calls.get(id(op), 0) + 1
        call = self.calls[id(op)]
        perm = in_perms[0] if in_perms and kind in ("dense", "batchnorm", "prelu", "layernorm", "channel_scale") else None
        perm = perm if isinstance(perm, np.ndarray) else None
        chw = self.perm_chw[id(perm)][1] if perm is not None and id(perm) in self.perm_chw else None
        padding_before = None
        if kind == "conv2d" and node.input_tensors:
            parent = node.input_tensors[0]._keras_history[0]
            if isinstance(parent, keras.layers.ZeroPadding2D):
                padding_before = tuple(tuple(int(v) for v in p) for p in parent.padding)
        entry = _KerasEntry(op, name if call == 1 else f"{name}#{call}", call, kind or "unknown",
                            self.preactivation.get(id(outs[0]), outs[0]), perm, chw, padding_before, out_perm,
                            first_in, axes)
        self.entries.append(entry)
        if kind == "conv2d":
            self.conv_outputs[id(outs[0])] = entry

    def fold_subsample(self, entry: _KerasEntry, op, out) -> None:
        """Keras refuses a strided dilated Conv2D, so netparity's Keras backend runs it at stride 1
        and keeps every stride-th pixel (its Subsample2D): record the conv as the strided one."""
        sh, sw = (int(v) for v in op.strides)
        axis_h, axis_w = (list(self.axes(entry.out_perm)).index(a) for a in (2, 3))
        index = [slice(None)] * 4
        index[axis_h], index[axis_w] = slice(None, None, sh), slice(None, None, sw)
        entry.value = entry.value[tuple(index)]
        entry.stride = (sh, sw)
        self.conv_outputs[id(out)] = entry


def keras_linear():
    return sys.modules["keras"].activations.linear


def _is_subsample(op) -> bool:
    """netparity's Keras backend's Subsample2D (the backend is loaded whenever it built one), or the
    same layer as a file written by ``netparity emit`` defines it (that name, a strides pair)."""
    backend = sys.modules.get(f"{__package__.rpartition('.')[0]}.backends.keras.core")
    subsample = getattr(backend, "Subsample2D", None)
    if subsample is not None and isinstance(op, subsample):
        return True
    return type(op).__name__ == "Subsample2D" and len(getattr(op, "strides", ())) == 2


def _keras_value(value) -> np.ndarray:
    ops = sys.modules["keras"].ops
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float32)


def _elementwise_layers():
    layers = sys.modules["keras"].layers
    return (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU, layers.Dropout, layers.SpatialDropout2D,
            layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum,
            layers.Identity, layers.GaussianNoise)


def _to_canonical(value: np.ndarray, channels_last: bool, perm) -> tuple[np.ndarray, str]:
    if value.ndim == 4 and isinstance(perm, tuple):
        return np.ascontiguousarray(value.transpose(np.argsort(perm))), f"axes {perm}->NCHW"
    if value.ndim == 4:
        if channels_last:
            return np.ascontiguousarray(value.transpose(0, 3, 1, 2)), "NHWC->NCHW"
        return value, "NCHW"
    if value.ndim == 2 and isinstance(perm, np.ndarray):
        return flat_to_canonical(value, perm), "flat HWC->CHW"
    return value, "flat" if value.ndim == 2 else f"{value.ndim}D"


def _trace_keras(model, x, training: bool) -> Trace:
    keras = sys.modules["keras"]
    if isinstance(model, keras.Sequential) and _keras_graph(model) is None:
        axes = keras_input_axes(model, keras.config.image_data_format())
        model.build((None, *(x.shape[a] for a in axes[1:])))
    graph = _keras_graph(model)
    if graph is None:
        raise NotSupported(f"{type(model).__name__} is a subclassed Keras model: netparity traces functional and "
                           "Sequential models only (their graph is known); build the port with the functional "
                           "API, e.g. keras.Model(inputs, outputs)")
    data_format = keras_data_format(model, x.shape[1:])
    channels_last = data_format == "channels_last"
    runner = _KerasRun(training, data_format)
    axes = keras_input_axes(model, data_format)
    batch = np.ascontiguousarray(x.transpose(axes))
    layout = None if axes == runner.default_axes else axes  # an NCHW input the model permutes itself
    outs, perms = runner.run(graph, [keras.ops.convert_to_tensor(batch)], [layout], "")
    layers = []
    for e in runner.entries:
        output, layout = _to_canonical(_keras_value(e.value), channels_last, e.out_perm)
        native_in = None if e.first_in is None else _keras_value(e.first_in)
        received = None if native_in is None else _to_canonical(native_in, channels_last, e.perm)[0]
        config = _keras_config(e.op, e.kind, e.padding_before, e.axes, native_in)
        if e.stride is not None:
            config.update(stride=e.stride, subsampled=True)
        layers.append(TracedLayer(len(layers), e.name, e.kind, type(e.op).__name__, "keras", config, output, layout,
                                  received, e.chw, e.call, e.op, e.perm))
    final, _ = _to_canonical(_keras_value(outs[0]), channels_last, perms[0])
    ran = {id(e.op) for e in runner.entries}
    untraced = [layer.name for layer in _keras_all_layers(model)
                if layer is not model and _keras_graph(layer) is None and id(layer) not in ran
                and (_keras_kind(layer) or layer.weights)]
    return Trace(layers, "keras", final, data_format, runner.dropout, untraced)


_KERAS_NAMES = {"conv2d": {"weight": "kernel", "bias": "bias"}, "dense": {"weight": "kernel", "bias": "bias"},
                "batchnorm": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                              "running_var": "moving_variance"},
                "prelu": {"weight": "alpha"}, "layernorm": {"weight": "gamma", "bias": "beta"}}


def _keras_depthwise(layer) -> bool:
    return isinstance(layer, sys.modules["keras"].layers.DepthwiseConv2D)


def _keras_variables(layer: TracedLayer) -> dict:
    if layer.kind == "unknown":
        return {v.name: v for v in layer.native.weights}
    if layer.kind == "channel_scale":
        return {"weight": layer.native.weights[0]}
    return {key: getattr(layer.native, name) for key, name in _KERAS_NAMES[layer.kind].items()
            if getattr(layer.native, name, None) is not None}


def _flat(value: np.ndarray, perm, to_canonical: bool = True) -> np.ndarray:
    """A per-feature vector of a flat input in the other feature order (when it has one entry per
    feature: a shared PReLU slope has one in all)."""
    if perm is None or value.shape[-1] != perm.size:
        return value
    return flat_to_canonical(value, perm) if to_canonical else flat_to_native(value, perm)


def _alpha_order(axes) -> list[int]:
    """For a Keras PReLU alpha of shape (s1, s2, s3): which of its axes holds canonical C, H, W."""
    held = [int(a) - 1 for a in axes[1:]]  # native axis k + 1 holds canonical axis held[k] + 1
    return [held.index(j) for j in range(3)]


def _alpha_to_canonical(alpha: np.ndarray, axes, perm) -> np.ndarray:
    """Keras PReLU alpha -> (C,) for one slope per channel (shared_axes over H and W), (1,) for one
    shared slope, (C, H, W) for Keras' default of one slope per element."""
    if alpha.ndim == 3:
        full = alpha.transpose(_alpha_order(axes))
        return full.reshape(full.shape[0]) if full.shape[1:] == (1, 1) else full
    return _flat(alpha, perm)


def _alpha_from_canonical(value: np.ndarray, axes, perm, native_shape) -> np.ndarray:
    if len(native_shape) == 3:
        order = _alpha_order(axes)
        return value.reshape([native_shape[k] for k in order]).transpose(np.argsort(order))
    return _flat(value, perm, to_canonical=False)


def _keras_to_canonical(layer: TracedLayer, key: str, value: np.ndarray) -> np.ndarray:
    kind, perm = layer.kind, layer.flat_perm
    if kind == "conv2d" and key == "weight":
        if _keras_depthwise(layer.native):  # (kh, kw, C, mult) -> (C * mult, 1, kh, kw), channel c * mult + m
            kh, kw, channels, multiplier = value.shape
            return value.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if kind == "dense" and key == "weight":
        return flat_to_canonical(value.T, perm)  # (in, out) -> (out, in), rows into (C, H, W) order
    if kind == "prelu":
        return _alpha_to_canonical(value, layer.config.get("axes"), perm)
    if kind in ("batchnorm", "layernorm", "channel_scale"):
        return _flat(value, perm)
    return value


def _keras_from_canonical(layer: TracedLayer, key: str, value: np.ndarray, native_shape) -> np.ndarray:
    kind, perm = layer.kind, layer.flat_perm
    if kind == "conv2d" and key == "weight":
        if _keras_depthwise(layer.native):
            kh, kw, channels, multiplier = native_shape
            return value[:, 0].transpose(1, 2, 0).reshape(kh, kw, channels, multiplier)
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if kind == "dense" and key == "weight":
        return flat_to_native(value, perm).T
    if kind == "prelu":
        return _alpha_from_canonical(value, layer.config.get("axes"), perm, native_shape)
    if kind in ("batchnorm", "layernorm", "channel_scale"):
        return _flat(value, perm, to_canonical=False)
    return value


def _read_keras(layer: TracedLayer) -> dict:
    return {key: _f32(np.ascontiguousarray(_keras_to_canonical(layer, key, _keras_value(v))))
            for key, v in _keras_variables(layer).items()}


def _write_keras(layer: TracedLayer, weights: dict, perm) -> list[str]:
    present = _keras_variables(layer)
    for key, variable in present.items():
        if key not in weights:
            continue
        value = np.asarray(weights[key], dtype=np.float32)
        native_shape = tuple(int(v) for v in variable.shape)
        target = TracedLayer(layer.index, layer.name, layer.kind, layer.type_name, layer.framework, layer.config,
                             native=layer.native, flat_perm=perm)
        _check_shape(layer, key, value, _keras_to_canonical(target, key, np.zeros(native_shape, np.float32)).shape)
        variable.assign(np.ascontiguousarray(_keras_from_canonical(target, key, value, native_shape)))
    return _skipped(layer, weights, present)


_READERS = {"torch": _read_torch, "mxnet": _read_mxnet, "keras": _read_keras}
_WRITERS = {"torch": _write_torch, "mxnet": _write_mxnet, "keras": _write_keras}
