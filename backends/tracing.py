"""A framework-neutral view of a hand-written native model (what ``verify`` aligns).

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

This module is the neutral part; each backend's ``tracing`` module
(``backends/<framework>/tracing.py``, the same functions in each) knows its framework's layers.
No framework is imported here just to test a type: ``framework_of`` asks each backend's
``is_native``, which looks only at frameworks already in ``sys.modules``. The execution orders:

- PyTorch and Gluon: the order in which the layers' forward calls begin
  (forward pre-hooks), so a container holding its own parameters comes before
  its children. Gluon models run imperatively (hybridization paused).
- Keras: a depth-first walk back from the outputs, each node's inputs in call
  order (so for ``Concatenate([a, b])`` all of branch ``a`` comes before ``b``,
  as in the code of a PyTorch/Gluon ``forward``). Nested functional/Sequential
  models are walked into; each call of a shared layer is its own entry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..spec.errors import NetparityError

KINDS = ("conv2d", "dense", "batchnorm", "prelu", "layernorm", "channel_scale")
# ConvNeXt's layer scale, a learned multiplier per channel, is a layer of its own under these names
# (netparity's backends, keras.applications.convnext, timm); torchvision keeps it as a bare parameter
# of its block, which is no layer call to align.
SCALE_NAMES = ("ChannelScale", "LayerScale", "LayerScale2d")
FRAMEWORKS = ("torch", "mxnet", "keras")
# Keras first: on its torch backend a Keras layer is also a torch nn.Module.
_RECOGNITION_ORDER = ("keras", "torch", "mxnet")


class NotSupported(NetparityError, TypeError):
    """A model this module cannot trace (a subclassed Keras model, an unknown object)."""



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
        return tracing_module(self.framework).read_weights(self)

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


def record_names(model) -> dict:
    """id(native layer) -> spec path, for a model netparity built (its build record)."""
    record = getattr(model, "_netparity_record", None)
    names = {}
    for path, native in (getattr(record, "layers", None) or {}).items():
        if not isinstance(native, (list, tuple)):
            names.setdefault(id(native), path)
    return names


def float32_copy(value) -> np.ndarray:
    return np.array(value, dtype=np.float32, copy=True)


def scale_parameter(params: dict):
    """The one per-channel parameter of a layer named like a layer scale, or None: shape (C,)
    or (C, 1, 1)."""
    if len(params) != 1:
        return None
    name, param = next(iter(params.items()))
    shape = tuple(int(v) for v in param.shape)
    return (name, param) if len(shape) in (1, 3) and all(v == 1 for v in shape[1:]) else None


def scale_channels_last(channels: int, value) -> bool:
    """A layer scale applied to the last axis of a 4D value (timm's LayerScale inside an NHWC block)."""
    return value is not None and value.ndim == 4 and value.shape[1] != channels and value.shape[-1] == channels


def nhwc_to_nchw(value):
    if value is None or np.ndim(value) != 4:
        return value
    return np.ascontiguousarray(value.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------

def tracing_module(framework: str) -> ModuleType:
    """``backends/<framework>/tracing.py`` (importing it imports no framework)."""
    if framework not in FRAMEWORKS:
        raise NotSupported(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    return importlib.import_module(f"{__package__}.{framework}.tracing")


def framework_of(model) -> str:
    """"torch", "mxnet" or "keras", by isinstance against frameworks already imported."""
    for framework in _RECOGNITION_ORDER:
        if tracing_module(framework).is_native(model):
            return framework
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise NotSupported(f"not a native model: {kind} is not a PyTorch nn.Module, an MXNet Gluon Block or a "
                       "Keras Model (of the frameworks imported in this process)")


def trace(model, x_nchw, framework: str | None = None, training: bool = False) -> Trace:
    """The parameterised layers of ``model`` in execution order, from one forward pass on
    ``x_nchw`` (NCHW numpy; transposed to NHWC for a channels_last Keras model).

    ``training=True`` runs in training mode (PyTorch ``.train()``, Gluon
    ``record(train_mode=True)`` plus a backward so that BatchNorm's running
    statistics move as in the other frameworks, Keras ``training=True``); the
    model is left in the mode it was in.
    """
    framework = framework or framework_of(model)
    return tracing_module(framework).trace(model, np.asarray(x_nchw, dtype=np.float32), training)


def set_canonical_weights(model, traced_layer: TracedLayer, weights: dict, flatten_source=None) -> list[str]:
    """Write canonical weights into the native layer of ``traced_layer`` (inverse
    conversions). Keys the layer lacks are skipped; returns notes on what was skipped.
    ``flatten_source`` (C, H, W): the Keras dense/BN input is an (H, W, C) flattening of
    that shape (default: what trace found)."""
    return tracing_module(traced_layer.framework).write_weights(traced_layer, weights, flatten_source)


def declared_input_shape(model, framework: str | None = None) -> tuple | None:
    """(C, H, W) from a native model's declared input (a Keras model states one), else None."""
    return tracing_module(framework or framework_of(model)).declared_input_shape(model)


def first_conv_channels(model, framework: str | None = None) -> int | None:
    """Input channels of the model's first conv layer, read statically, or None."""
    try:
        return tracing_module(framework or framework_of(model)).first_conv_channels(model)
    except NotSupported:
        raise
    except Exception:  # an odd model: the caller asks for the shape instead
        return None


# ---------------------------------------------------------------------------------------
# Helpers for the framework tracers
# ---------------------------------------------------------------------------------------

def check_shape(layer: TracedLayer, key: str, value: np.ndarray, expected: tuple) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{layer.describe()}: weight {key!r} of shape {tuple(value.shape)} does not fit "
                         f"its canonical shape {tuple(expected)}")


def skipped_notes(layer: TracedLayer, weights: dict, present: dict) -> list[str]:
    return [f"{layer.name}: {key} not copied (the layer has none)" for key in weights if key not in present]




def canonical_shape(layer: TracedLayer, native_shape) -> tuple:
    """A layer scale kept as (C, 1, 1) is (C,) in the canonical layout."""
    native_shape = tuple(int(v) for v in native_shape)
    return (int(np.prod(native_shape)),) if layer.kind == "channel_scale" else native_shape


def flat_to_canonical(value: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    """Features along the last axis from the native flat order into (C, H, W) order
    (``perm[j]`` = the canonical index of native feature j)."""
    if perm is None:
        return value
    out = np.empty_like(value)
    out[..., perm] = value
    return out


def flat_to_native(value: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    if perm is None:
        return value
    return value[..., perm]
