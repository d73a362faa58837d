"""MXNet's symbol JSON (``prefix-symbol.json``) and its params, as a netparity spec with
canonical weights, without MXNet.

``import_symbol`` reads the graph (``nodes``, ``arg_nodes``, ``heads``; a node's attributes
under ``attrs``, ``attr`` or ``param``, every value a string such as ``"(3, 3)"`` or ``"True"``),
maps every operator to spec layers with MXNet 1.9.1's semantics, folds the graph into the spec's
blocks (backends/graph_folding.py), and puts each parameter on its canonical key. An operator
outside ``SUPPORTED_OPS``, or an attribute that would make the spec compute something else, is
an error naming the node; nothing is approximated. Layers MXNet has no single operator for
(PReLU as where(x > 0, x, x * alpha), channel shuffle, silu, hardswish, a pool over explicit
padding, ...) are matched as groups of nodes first (``PATTERNS``), so that every spec built by
netparity's MXNet backend imports back as itself (tests/test_mxnet_symbol.py, round trip).

MXNet's defaults where an attribute is absent are those of the symbol API (read in MXNet 1.9.1's
operator sources, src/operator/nn/*.cc and -inl.h, DMLC_DECLARE_FIELD; the docstrings of
``mx.sym.<Op>`` list the same):

- BatchNorm: eps 1e-3 (a float 1e-3f), momentum 0.9, **fix_gamma True** (gamma is taken as 1
  whatever the params hold), use_global_stats False, axis 1. Gluon's BatchNorm writes all of them
  (eps 1e-5, fix_gamma = not scale).
- Pooling: pool_type max, pooling_convention valid, **stride 1** (not the kernel, as in PyTorch
  and Gluon's MaxPool2D), pad 0, count_include_pad True, global_pool False.
- Convolution: stride 1, dilate 1, pad 0, num_group 1, no_bias False, layout NCHW.
- FullyConnected: **flatten True** (the input is flattened to (N, C*H*W) first), no_bias False.
- LeakyReLU: act_type leaky, slope 0.25. Dropout: p 0.5, mode training. Concat: dim 1.
- LayerNorm: axis -1, eps 1e-5. hard_sigmoid: alpha 0.2, beta 0.5. softmax: axis -1.
  Pad: constant_value 0. _contrib_AdaptiveAvgPooling2D: output_size empty, meaning 1x1.

The parameter layouts are PyTorch's (Convolution (out, in/groups, kh, kw), FullyConnected
(out, in)); BatchNorm's moving_mean / moving_var are the running_mean / running_var.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from ....spec.errors import NetparityError, SpecError
from ....spec.layers import (ACTIVATIONS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, ChannelScale,
                            ChannelShuffle, ChannelSlice, Conv2d, Crop2d, Dense, DropPath, Dropout, Flatten,
                            GlobalAvgPool, GlobalMaxPool, Layer, LayerNorm, MaxPool2d, Normalize, Pad2d, PReLU,
                            Shape, show_shape)
from ....spec.pooling import avg_pool_divisor, pool_output_size
from .. import layout
from ...graph_folding import GraphError, GraphNode, fold_graph
from ...importing import ImportedModel

SOURCE_FRAMEWORK = "mxnet"


class SymbolError(NetparityError, ValueError):
    """A symbol graph (or its params) that cannot be imported exactly. ``node`` and ``op`` name
    the MXNet node when the problem is about one."""

    def __init__(self, reason: str, node: str = "", op: str = ""):
        self.node, self.op, self.reason = node, op, reason
        where = f"node {node!r}" + (f" ({op})" if op else "") + ": " if node else ""
        super().__init__(where + reason)


# ---------------------------------------------------------------------------------------
# Reading the JSON
# ---------------------------------------------------------------------------------------

def node_attributes(raw: dict) -> dict[str, str]:
    """A symbol node's attributes as strings, from every key MXNet has kept them under."""
    attrs: dict[str, str] = {}
    for key in ("param", "attr", "attrs"):  # MXNet < 0.9, 0.9 - 1.0, >= 1.0
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise SymbolError(f"{key} must be an object", raw["name"], raw["op"])
        attrs.update({str(k): str(v) for k, v in value.items()})
    return attrs


# The symbol API's BatchNorm default (src/operator/nn/batch_norm-inl.h): gamma is taken as 1.
FIX_GAMMA_DEFAULT = True


@dataclass
class _Node:
    index: int
    name: str
    op: str  # "null" for variables (data, weights, auxiliary states)
    attrs: dict[str, str]
    inputs: list[tuple[int, int]]  # (node index, output index)
    # Set where several MXNet nodes state one spec layer (see PATTERNS): the converter to use
    # instead of the op's, what the match found, and the names of the nodes folded in.
    pattern: str = ""
    facts: dict = field(default_factory=dict)
    parts: tuple[str, ...] = ()


def _load_json(symbol) -> tuple[dict, str]:
    """The symbol as a dict, and a word on where it came from."""
    if hasattr(symbol, "tojson"):  # an mx.sym.Symbol
        return json.loads(symbol.tojson()), "an MXNet Symbol"
    if isinstance(symbol, dict):
        return symbol, "a symbol dict"
    if isinstance(symbol, Path) or (isinstance(symbol, str) and not symbol.lstrip().startswith("{")):
        path = Path(symbol)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SymbolError(f"cannot read the symbol file {str(path)!r}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise SymbolError(f"{str(path)!r} is not a UTF-8 text file; a symbol file is JSON") from None
        source = str(path)
    elif isinstance(symbol, str):
        text, source = symbol, "symbol JSON text"
    else:
        raise SymbolError(f"expected a symbol JSON path, JSON text, a dict or an mx.sym.Symbol, "
                          f"got {type(symbol).__name__}")
    try:
        return json.loads(text), source
    except json.JSONDecodeError as error:
        raise SymbolError(f"{source}: not valid JSON ({error})") from None


def _parse_nodes(data, source: str) -> tuple[list[_Node], list[tuple[int, int]]]:
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or "heads" not in data:
        raise SymbolError(f"{source}: not an MXNet symbol (a JSON object with 'nodes' and 'heads')")
    nodes: list[_Node] = []
    for index, raw in enumerate(data["nodes"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) or not isinstance(raw.get("name"), str):
            raise SymbolError(f"{source}: nodes[{index}] is not a node (an object with 'op' and 'name')")
        attrs = node_attributes(raw)
        inputs = [_entry(entry, len(nodes), raw["name"], raw["op"], source) for entry in raw.get("inputs", [])]
        nodes.append(_Node(index, raw["name"], raw["op"], attrs, inputs))
    heads = [_entry(entry, len(nodes), "", "", source) for entry in data["heads"]]
    if not heads:
        raise SymbolError(f"{source}: the symbol has no outputs ('heads' is empty)")
    return nodes, heads


def _entry(entry, limit: int, name: str, op: str, source: str) -> tuple[int, int]:
    """One ``[node, output, version]`` reference; MXNet writes nodes after their inputs."""
    if (not isinstance(entry, list) or len(entry) not in (2, 3)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry)):
        raise SymbolError(f"{source}: bad input reference {entry!r}", name, op)
    if not 0 <= entry[0] < limit:
        raise SymbolError(f"{source}: input reference {entry!r} does not point to an earlier node", name, op)
    return entry[0], entry[1]


# -- attribute values ----------------------------------------------------------------------

def _integer(text: str, node: _Node, key: str) -> int:
    """An integer as MXNet writes one (``3``; ``3L`` from Python 2 days)."""
    try:
        return int(text.strip().rstrip("Ll"))
    except ValueError:
        raise SymbolError(f"attribute {key}={node.attrs[key]!r} must hold integers", node.name, node.op) from None


def _tuple(node: _Node, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
    """A shape attribute: ``"(3, 3)"``, ``"[3, 3]"``, ``"(3,)"`` or ``"3"``; empty means ``default``.
    (Parsed by hand: ast.literal_eval compiles each value, seconds on a DenseNet's thousands.)"""
    if key not in node.attrs:
        return default
    body = node.attrs[key].strip()
    if body[:1] in "([" and body[-1:] in ")]":
        body = body[1:-1]
    parts = [part for part in body.split(",") if part.strip()]
    return tuple(_integer(part, node, key) for part in parts) or default


def _pair(node: _Node, key: str, default: int) -> tuple[int, int]:
    """A 2-D attribute; MXNet's empty default means ``default`` on each axis."""
    value = _tuple(node, key)
    if not value:
        return default, default
    if len(value) != 2:
        raise SymbolError(f"{key}={node.attrs[key]} is not 2-D: netparity imports 2-D operators on NCHW images only",
                          node.name, node.op)
    return value


def _padding(top: int, bottom: int, left: int, right: int):
    """The spec's padding (or cropping) value: a (height, width) pair where it is symmetric."""
    return (top, left) if (top, left) == (bottom, right) else (top, bottom, left, right)


def _optional_ints(node: _Node, key: str) -> tuple[int | None, ...]:
    """A tuple attribute whose entries may be None, as ``slice`` writes begin and end."""
    body = node.attrs.get(key, "()").strip()
    if body[:1] in "([" and body[-1:] in ")]":
        body = body[1:-1]
    return tuple(None if part.strip() == "None" else _integer(part, node, key)
                 for part in body.split(",") if part.strip())


def _int(node: _Node, key: str, default: int | None = None) -> int:
    if key not in node.attrs:
        if default is None:
            raise SymbolError(f"the required attribute {key!r} is missing", node.name, node.op)
        return default
    return _integer(node.attrs[key], node, key)


def _float(node: _Node, key: str, default: float | None = None) -> float:
    if key not in node.attrs:
        if default is None:
            raise SymbolError(f"the required attribute {key!r} is missing", node.name, node.op)
        return default
    try:
        return float(node.attrs[key])
    except ValueError:
        raise SymbolError(f"attribute {key}={node.attrs[key]!r} must be a number", node.name, node.op) from None


def _decimal(node: _Node, key: str, default: str) -> Decimal:
    text = node.attrs.get(key, default)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise SymbolError(f"attribute {key}={text!r} must be a number", node.name, node.op) from None


def _bool(node: _Node, key: str, default: bool) -> bool:
    if key not in node.attrs:
        return default
    text = node.attrs[key].strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise SymbolError(f"attribute {key}={node.attrs[key]!r} must be true or false", node.name, node.op)


def _choice(node: _Node, key: str, default: str | None) -> str | None:
    value = node.attrs.get(key, default)
    return None if value in (None, "None") else value


def _shape_attribute(node: _Node) -> tuple[int, ...] | None:
    """The per-example shape in a variable's ``__shape__`` (batch dropped, whatever it is), None
    when absent or not fully known (MXNet writes unknown sizes as 0)."""
    if "__shape__" not in node.attrs:
        return None
    shape = _tuple(node, "__shape__")
    return tuple(shape[1:]) if len(shape) >= 2 and all(s > 0 for s in shape[1:]) else None


# ---------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------

@dataclass
class _Converted:
    """What one MXNet node becomes: a chain of spec layers (most nodes: one), or a merge."""

    layers: list[tuple[str, Layer]] = field(default_factory=list)  # (graph node name, layer)
    merge: str | None = None
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # canonical name -> array (last layer)
    notes: list[str] = field(default_factory=list)


class _Context:
    """What a converter sees: the node, its data input's per-example shape, its parameters."""

    def __init__(self, importer: "_Importer", node: _Node, shape: Shape):
        self.importer, self.node, self.shape = importer, node, shape

    def error(self, reason: str) -> SymbolError:
        return SymbolError(reason, self.node.name, self.node.op)

    def param(self, slot: int, role: str, *expected: Shape) -> np.ndarray:
        """The parameter array at input ``slot`` (``role`` names it in errors), checked to have
        one of the ``expected`` shapes."""
        node = self.node
        if slot >= len(node.inputs):
            raise self.error(f"has no input for its {role} (input {slot}); the symbol is incomplete")
        variable = self.importer.nodes[node.inputs[slot][0]]
        if variable.op != "null":
            raise self.error(f"its {role} is computed by node {variable.name!r} ({variable.op}); netparity imports "
                             "parameters stored in the params file only")
        array = self.importer.param_value(variable.name, self)
        if tuple(array.shape) not in [tuple(shape) for shape in expected]:
            raise self.error(f"its {role} {variable.name!r} has shape {tuple(array.shape)} in the params, "
                             f"the graph needs {' or '.join(str(tuple(shape)) for shape in expected)}")
        return array

    def one(self, layer: Layer, **weights: np.ndarray) -> _Converted:
        return _Converted([(self.node.name, layer)], weights=dict(weights))


def _image(ctx: _Context) -> Shape:
    if len(ctx.shape) != 3:
        raise ctx.error(f"expects an NCHW image input, got per-example shape {show_shape(ctx.shape)}")
    return ctx.shape


def _nchw_only(ctx: _Context) -> None:
    layout = _choice(ctx.node, "layout", None)
    if layout not in (None, "NCHW"):
        raise ctx.error(f"layout {layout} is not imported: netparity reads NCHW graphs")


def convolution(ctx: _Context) -> _Converted:
    node = ctx.node
    _nchw_only(ctx)
    channels = _image(ctx)[0]
    if "kernel" not in node.attrs:
        raise ctx.error("the required attribute 'kernel' is missing")
    kernel = _pair(node, "kernel", 0)
    filters, groups = _int(node, "num_filter"), _int(node, "num_group", 1)
    has_bias = not _bool(node, "no_bias", False)
    # A zero Pad folded in (PATTERNS) adds to the convolution's own symmetric pad.
    pad = _pair(node, "pad", 0)
    top, bottom, left, right = node.facts.get("zero_padding", (0, 0, 0, 0))
    layer = Conv2d(filters, kernel, stride=_pair(node, "stride", 1),
                   padding=_padding(pad[0] + top, pad[0] + bottom, pad[1] + left, pad[1] + right),
                   bias=has_bias, groups=groups, dilation=_pair(node, "dilate", 1))
    if groups <= 0 or channels % groups:
        raise ctx.error(f"num_group {groups} does not divide the {channels} input channels")
    weights = {"weight": ctx.param(1, "weight", (filters, channels // groups, *kernel))}
    if has_bias:
        weights["bias"] = ctx.param(2, "bias", (filters,))
    return ctx.one(layer, **weights)


def fully_connected(ctx: _Context) -> _Converted:
    node = ctx.node
    hidden = _int(node, "num_hidden")
    has_bias = not _bool(node, "no_bias", False)
    converted = _Converted()
    shape = ctx.shape
    if len(shape) != 1:
        if not _bool(node, "flatten", True):
            raise ctx.error(f"flatten=False on a {show_shape(shape)} input applies the layer to the last axis "
                            "only; netparity's dense takes flat inputs")
        # MXNet's FullyConnected flattens (N, C, H, W) to (N, C*H*W) itself, in NCHW order.
        converted.layers.append((ctx.importer.fresh_name(f"{node.name}_flatten"), Flatten()))
        converted.notes.append(f"{node.name!r}: FullyConnected flattens its {show_shape(shape)} input first "
                               "(flatten=True); the spec has an explicit flatten before the dense")
        shape = (math.prod(shape),)
    converted.layers.append((node.name, Dense(hidden, bias=has_bias)))
    converted.weights["weight"] = ctx.param(1, "weight", (hidden, shape[0]))
    if has_bias:
        converted.weights["bias"] = ctx.param(2, "bias", (hidden,))
    return converted


def batch_norm(ctx: _Context) -> _Converted:
    node = ctx.node
    channels = ctx.shape[0]
    if _int(node, "axis", 1) != 1:
        raise ctx.error(f"axis {node.attrs['axis']} is not imported: netparity normalises the channels (axis 1)")
    eps = _float(node, "eps", 1e-3)
    momentum = _decimal(node, "momentum", "0.9")
    fix_gamma = _bool(node, "fix_gamma", FIX_GAMMA_DEFAULT)
    layer = BatchNorm(eps=eps, momentum=layout.momentum_to_canonical(momentum), scale=not fix_gamma)
    gamma = ctx.param(1, "gamma", (channels,))
    converted = ctx.one(layer, bias=ctx.param(2, "beta", (channels,)),
                        running_mean=ctx.param(3, "moving_mean", (channels,)),
                        running_var=ctx.param(4, "moving_var", (channels,)))
    if fix_gamma:
        stored = ("the stored gamma is 1" if np.all(gamma == 1)
                  else f"the stored gamma, in [{gamma.min():.4g}, {gamma.max():.4g}], is not 1")
        default = " (the default)" if "fix_gamma" not in node.attrs else ""
        converted.notes.append(f"{node.name!r}: BatchNorm fix_gamma=True{default}: MXNet multiplies by 1 whatever "
                               f"the params hold ({stored}); the spec's batchnorm has scale=False and the stored "
                               "gamma is not imported")
    else:
        converted.weights = {"weight": gamma, **converted.weights}
    if _bool(node, "use_global_stats", False):
        converted.notes.append(f"{node.name!r}: BatchNorm use_global_stats=True: MXNet trains it with the running "
                               "statistics; the spec's batchnorm uses batch statistics in training (eval is the same)")
    return converted


ACTIVATION_TYPES = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softplus"}


def activation(ctx: _Context) -> _Converted:
    act = ctx.node.attrs.get("act_type")
    if act is None:
        raise ctx.error("the required attribute 'act_type' is missing")
    function = ACTIVATION_TYPES.get(act)
    if function is None:
        raise ctx.error(f"act_type {act!r} is not imported (netparity maps {', '.join(ACTIVATION_TYPES)})")
    if function not in ACTIVATIONS:
        raise ctx.error(f"act_type {act!r} is log(1 + exp(x)) (softplus), which this netparity's spec has no "
                        "activation for yet")
    return ctx.one(Activation(function))


def leaky_relu(ctx: _Context) -> _Converted:
    node = ctx.node
    act = node.attrs.get("act_type", "leaky")
    slope = _float(node, "slope", 0.25)
    if act == "leaky":
        return ctx.one(Activation("leaky_relu", negative_slope=slope))
    if act == "elu":
        return ctx.one(Activation("elu", alpha=slope))
    if act == "gelu":
        return ctx.one(Activation("gelu"))  # MXNet's is the exact erf form (mshadow_op::gelu)
    if act == "prelu":
        channels = ctx.shape[0]
        # MXNet lines gamma up with the channel axis, or broadcasts a single slope (Gluon's PReLU() default).
        gamma = ctx.param(1, "gamma", (channels,), (1, channels), (1,))
        converted = ctx.one(PReLU(), weight=np.broadcast_to(gamma.reshape(-1), (channels,)).copy())
        if gamma.size == 1 and channels != 1:
            converted.notes.append(f"{node.name!r}: PReLU with one slope shared by all {channels} channels; the "
                                   "spec's prelu holds it once per channel (the same function; in training "
                                   "each channel's slope then moves on its own)")
        return converted
    raise ctx.error(f"act_type {act!r} is not imported (netparity maps leaky, prelu, elu and gelu)")


def pooling(ctx: _Context) -> _Converted:
    node = ctx.node
    _nchw_only(ctx)
    height, width = _image(ctx)[1:]
    pool_type = node.attrs.get("pool_type", "max")
    if pool_type not in ("max", "avg"):
        raise ctx.error(f"pool_type {pool_type!r} is not imported (netparity maps max and avg)")
    if "explicit_padding" in node.facts:
        kernel, stride = _pair(node, "kernel", 0), _pair(node, "stride", 1)
        area = kernel[0] * kernel[1]
        return ctx.one(_explicit_pool(ctx, pool_type, kernel, stride, node.facts["explicit_padding"],
                                      lambda divisor: bool(np.all(divisor == area))))
    if _bool(node, "global_pool", False):
        # MXNet's global pool keeps (N, C, 1, 1) and ignores kernel, stride, pad and convention.
        return ctx.one((GlobalMaxPool if pool_type == "max" else GlobalAvgPool)(keepdims=True))
    if "kernel" not in node.attrs:
        raise ctx.error("the required attribute 'kernel' is missing (and global_pool is false)")
    kernel, stride, pad = _pair(node, "kernel", 0), _pair(node, "stride", 1), _pair(node, "pad", 0)
    convention = node.attrs.get("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise ctx.error(f"pooling_convention {convention!r} is not imported (netparity maps valid and full)")
    ceil_mode = convention == "full"
    if ceil_mode:
        for axis, size in ((0, height), (1, width)):
            span = size + 2 * pad[axis] - kernel[axis]
            theirs = 1 - (-span // stride[axis]) if span >= 0 else None  # MXNet: 1 + ceil(span / stride)
            ours = pool_output_size(size, kernel[axis], stride[axis], pad[axis], True) if span >= 0 else None
            if theirs != ours:
                raise ctx.error(
                    f"pooling_convention 'full' on {size} px ({'height' if axis == 0 else 'width'}) with kernel "
                    f"{kernel[axis]}, stride {stride[axis]}, pad {pad[axis]} keeps a last window that starts in "
                    f"the padding: MXNet gives {theirs} outputs where PyTorch's ceil mode (and the spec's) gives "
                    f"{ours}; that window has no exact equivalent (docs/framework-differences.md 3b)")
    if pool_type == "max":
        return ctx.one(MaxPool2d(kernel, stride, pad, ceil_mode))
    count_include_pad = _choice(node, "count_include_pad", None)
    include = True if count_include_pad is None else _bool(node, "count_include_pad", True)
    return ctx.one(AvgPool2d(kernel, stride, pad, ceil_mode, count_include_pad=include))


def flatten(ctx: _Context) -> _Converted:
    return ctx.one(Flatten())


def dropout(ctx: _Context) -> _Converted:
    node = ctx.node
    mode = node.attrs.get("mode", "training")
    if mode != "training":
        raise ctx.error(f"mode {mode!r} drops at inference too; netparity imports dropout that is the identity "
                        "in eval mode (mode 'training')")
    p = _float(node, "p", 0.5)
    axes = tuple(sorted(a % (len(ctx.shape) + 1) for a in _tuple(node, "axes")))
    if axes == tuple(range(1, len(ctx.shape) + 1)):
        # One draw per example shared by all its elements: stochastic depth (Gluon's
        # Dropout(p, axes=(1, 2, 3)), as netparity's MXNet backend writes drop_path).
        return ctx.one(DropPath(p))
    converted = ctx.one(Dropout(p))
    if axes:
        converted.notes.append(f"{node.name!r}: Dropout axes={node.attrs['axes']} shares its mask along those axes "
                               "in training; the spec's dropout draws every element (eval is the identity in both)")
    return converted


def clip(ctx: _Context) -> _Converted:
    low, high = _float(ctx.node, "a_min"), _float(ctx.node, "a_max")
    if (low, high) != (0.0, 6.0):
        raise ctx.error(f"clip to [{low:g}, {high:g}] is not imported; netparity maps clip to [0, 6] (relu6)")
    return ctx.one(Activation("relu6"))


# -- more operators: those Gluon writes for netparity's MXNet backend besides the classic layers --

def adaptive_avg_pooling(ctx: _Context) -> _Converted:
    """MXNet's contrib op averages the windows [floor(i*H/out), ceil((i+1)*H/out)), PyTorch's
    (measured in backends/mxnet/core.py, AdaptiveAvgPool); an empty output_size means 1x1."""
    _image(ctx)
    size = _tuple(ctx.node, "output_size", (1,))
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2:
        raise ctx.error(f"output_size={ctx.node.attrs['output_size']} is not 2-D")
    return ctx.one(AdaptiveAvgPool2d(size))


UNARY_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


def unary_activation(ctx: _Context) -> _Converted:
    return ctx.one(Activation(UNARY_ACTIVATIONS[ctx.node.op]))


# PyTorch's hardsigmoid relu6(x + 3) / 6 is MXNet's max(0, min(1, alpha * x + beta)) with alpha
# 1/6 and beta 0.5. The op holds both as float32 (its documented default alpha is 0.200000003),
# so alpha is compared there: Gluon writes 1/6 as '0.16666666666666666'.
PYTORCH_HARD_SIGMOID = (np.float32(1.0 / 6.0), np.float32(0.5))


def _is_pytorch_hard_sigmoid(node: _Node) -> bool:
    return (np.float32(_float(node, "alpha", 0.2)), np.float32(_float(node, "beta", 0.5))) == PYTORCH_HARD_SIGMOID


def hard_sigmoid(ctx: _Context) -> _Converted:
    node = ctx.node
    if not _is_pytorch_hard_sigmoid(node):
        raise ctx.error(f"hard_sigmoid with alpha {_float(node, 'alpha', 0.2):g}, beta {_float(node, 'beta', 0.5):g} "
                        "is not imported: the spec's hardsigmoid is PyTorch's relu6(x + 3) / 6, alpha 1/6 and beta "
                        "0.5 (MXNet's default alpha 0.2 is Keras 2's)")
    return ctx.one(Activation("hardsigmoid"))


def softmax(ctx: _Context) -> _Converted:
    node = ctx.node
    rank = len(ctx.shape) + 1
    axis = _int(node, "axis", -1)
    if not -rank <= axis < rank or axis % rank != 1:
        raise ctx.error(f"softmax along axis {axis} of a {rank}-D batch is not imported: the spec's softmax is over "
                        "the channels (axis 1)")
    temperature = _choice(node, "temperature", None)
    if temperature is not None and _float(node, "temperature") != 1.0:
        raise ctx.error(f"softmax temperature {temperature} is not imported (the spec's softmax has none)")
    if _bool(node, "use_length", False) or _choice(node, "dtype", None) not in (None, "float32"):
        raise ctx.error("softmax with use_length or another output dtype is not imported")
    return ctx.one(Activation("softmax"))


def layer_norm(ctx: _Context) -> _Converted:
    """LayerNorm over axis 1: (x - mean) / sqrt(var + eps) * gamma + beta over the channels of
    each position, biased variance, as the spec's layernorm (ConvNeXt's LayerNorm2d)."""
    node = ctx.node
    rank = len(ctx.shape) + 1
    axis = _int(node, "axis", -1)
    if not -rank <= axis < rank or axis % rank != 1:
        raise ctx.error(f"axis {axis} of a {rank}-D batch is not imported: the spec's layernorm normalises the "
                        "channels (axis 1) of each position")
    channels = ctx.shape[0]
    return ctx.one(LayerNorm(eps=_float(node, "eps", 1e-5)), weight=ctx.param(1, "gamma", (channels,)),
                   bias=ctx.param(2, "beta", (channels,)))


def _spatial_pad(node: _Node) -> tuple[tuple[int, int, int, int], float] | str:
    """((top, bottom, left, right), value) of a Pad node padding H and W of an NCHW batch with a
    constant, else the reason it is not one."""
    mode = node.attrs.get("mode")
    if mode != "constant":
        return f"mode {mode!r} is not imported: netparity pads with a constant"
    widths = _tuple(node, "pad_width")
    if len(widths) != 8 or any(widths[:4]) or min(widths) < 0:
        return f"pad_width={node.attrs.get('pad_width')} pads more than H and W of an NCHW batch"
    return widths[4:], _float(node, "constant_value", 0.0)


def pad(ctx: _Context) -> _Converted:
    found = _spatial_pad(ctx.node)
    if isinstance(found, str):
        raise ctx.error(found)
    pads, value = found
    _image(ctx)
    if value != 0:
        raise ctx.error(f"padding with {value:g} is not imported: the spec pads with zeros (pad2d), or with -inf "
                        "right before a max Pooling ('valid', no pad of its own) that takes it as its padding")
    return ctx.one(Pad2d(_padding(*pads)))


def _index_range(ctx: _Context, axis: int, begin, end, size: int) -> tuple[int, int]:
    """begin:end along an axis of ``size`` (None and negative as in Python), refused unless
    it keeps at least one element inside the axis."""
    start = 0 if begin is None else begin + size if begin < 0 else begin
    stop = size if end is None else end + size if end < 0 else end
    if not 0 <= start < stop <= size:
        raise ctx.error(f"the range {begin}:{end} of axis {axis} (size {size}) is not imported: it must keep at least "
                        "one element inside the axis")
    return start, stop


def slice_axis(ctx: _Context) -> _Converted:
    node = ctx.node
    rank = len(ctx.shape) + 1
    axis = _int(node, "axis")
    if not -rank <= axis < rank or axis % rank != 1:
        raise ctx.error(f"slice_axis along axis {axis} is not imported: netparity slices channels (axis 1)")
    end = None if _choice(node, "end", None) is None else _int(node, "end")
    return ctx.one(ChannelSlice(*_index_range(ctx, 1, _int(node, "begin"), end, ctx.shape[0])))


def slice_(ctx: _Context) -> _Converted:
    """``slice`` keeping a range of channels (channel_slice) or of rows and columns (crop2d), step 1."""
    node = ctx.node
    begin, end = _optional_ints(node, "begin"), _optional_ints(node, "end")
    step = _optional_ints(node, "step") if "step" in node.attrs else ()
    rank = len(ctx.shape) + 1
    if len(begin) != len(end) or not 0 < len(begin) <= rank or any(s not in (None, 1) for s in step):
        raise ctx.error(f"slice begin={node.attrs.get('begin')} end={node.attrs.get('end')} step="
                        f"{node.attrs.get('step', '()')} is not imported: netparity slices with step 1")
    if begin[0] not in (None, 0) or end[0] is not None:
        raise ctx.error("a slice of the batch axis is not imported")
    kept = {axis: _index_range(ctx, axis, begin[axis], end[axis], ctx.shape[axis - 1])
            for axis in range(1, len(begin))}
    cut = {axis: span for axis, span in kept.items() if span != (0, ctx.shape[axis - 1])}
    if not cut:
        return _Converted()  # the whole input: nothing to state
    if set(cut) == {1}:
        return ctx.one(ChannelSlice(*cut[1]))
    if set(cut) <= {2, 3} and rank == 4:
        (top, stop_h), (left, stop_w) = kept.get(2, (0, ctx.shape[1])), kept.get(3, (0, ctx.shape[2]))
        return ctx.one(Crop2d(_padding(top, ctx.shape[1] - stop_h, left, ctx.shape[2] - stop_w)))
    raise ctx.error(f"a slice of axes {sorted(cut)} at once is not imported: netparity slices channels "
                    "(channel_slice) or rows and columns (crop2d)")


SCALAR_OPS = ("_plus_scalar", "_minus_scalar", "_mul_scalar", "_div_scalar")


def _compose(node: _Node, mean: float, std: float) -> tuple[float, float]:
    """(x - mean) / std followed by ``node``'s scalar operation, as (x - mean') / std'."""
    scalar = _float(node, "scalar")
    op = node.op
    if op == "_plus_scalar":
        return mean - scalar * std, std
    if op == "_minus_scalar":
        return mean + scalar * std, std
    if scalar <= 0:
        raise SymbolError(f"{'multiplying' if op == '_mul_scalar' else 'dividing'} by {scalar:g} is not imported: "
                          "netparity maps scalar arithmetic to normalize, whose std is positive", node.name, op)
    return (mean, std / scalar) if op == "_mul_scalar" else (mean, std * scalar)


MERGE_OPS = {
    "elemwise_add": "add", "_Plus": "add", "_plus": "add", "_add": "add", "broadcast_add": "add",
    "broadcast_plus": "add", "add_n": "add", "ElementWiseSum": "add",
    "broadcast_mul": "mul", "elemwise_mul": "mul", "_mul": "mul", "_Mul": "mul",
    "Concat": "concat", "concat": "concat",
}
PASS_THROUGH_OPS = ("identity", "_copy")
# Loss layers that only training needs: at inference SoftmaxOutput is a softmax, the regression
# outputs the identity (Logistic a sigmoid); the import keeps their input.
TRAINING_HEADS = ("SoftmaxOutput", "Softmax", "LinearRegressionOutput", "LogisticRegressionOutput",
                  "MAERegressionOutput", "SVMOutput", "MakeLoss", "make_loss")

# ---------------------------------------------------------------------------------------
# Patterns: one spec layer written as several MXNet operators
# ---------------------------------------------------------------------------------------
# Gluon blocks that compute a layer MXNet has no single operator for (netparity's MXNet backend,
# backends/mxnet/core.py, writes each of these; so do hand-written ones). Each match is folded
# into its last node before anything is converted; every other node of a match must feed only
# the match. A node outside a match is converted on its own, or refused.

MUL_OPS = ("elemwise_mul", "broadcast_mul", "_mul", "_Mul")
RESHAPE_OPS = ("Reshape", "reshape")
SWAP_OPS = ("SwapAxis", "swapaxes")


def _gate_function(gate: _Node) -> str | None:
    """The activation x * gate(x) is, for a gate node."""
    if gate.op == "sigmoid" or (gate.op == "Activation" and gate.attrs.get("act_type") == "sigmoid"):
        return "silu"
    if gate.op == "hard_sigmoid" and _is_pytorch_hard_sigmoid(gate):
        return "hardswish"
    return None


def _match_gated_activation(imp: "_Importer", node: _Node, users) -> _Node | None:
    """x * sigmoid(x) is silu and x * hard_sigmoid(x) (PyTorch's constants) is hardswish: the
    spec's definitions of both."""
    if len(node.inputs) != 2:
        return None
    for gate_slot in (1, 0):
        gate_entry, x_entry = node.inputs[gate_slot], node.inputs[1 - gate_slot]
        gate = imp.nodes[gate_entry[0]]
        function = _gate_function(gate)
        if (function is not None and gate_entry[1] == 0 and len(gate.inputs) == 1
                and imp.same_value(gate.inputs[0], x_entry) and users[gate.index] == [node.index]):
            return replace(node, inputs=[x_entry], pattern="gated_activation", facts={"function": function},
                           parts=(gate.name, node.name))
    return None


def _per_channel_weight(imp: "_Importer", entry, users, consumer: int):
    """(Reshape node, variable entry) when ``entry`` is a Reshape of a stored parameter that
    feeds only ``consumer``: a (C,) weight made to broadcast over axis 1."""
    reshape = imp.nodes[entry[0]]
    if reshape.op not in RESHAPE_OPS or entry[1] or len(reshape.inputs) != 1 or users[reshape.index] != [consumer]:
        return None
    variable = imp.nodes[reshape.inputs[0][0]]
    if variable.op != "null" or variable.name not in imp.params:
        return None
    return reshape, reshape.inputs[0]


def _match_channel_scale(imp: "_Importer", node: _Node, users) -> _Node | None:
    """x * reshape(weight): a learned multiplier per channel (backend ChannelScale)."""
    if len(node.inputs) != 2:
        return None
    for weight_slot in (1, 0):
        found = _per_channel_weight(imp, node.inputs[weight_slot], users, node.index)
        if found is not None:
            reshape, variable = found
            return replace(node, inputs=[node.inputs[1 - weight_slot], variable], pattern="channel_scale",
                           facts={"reshape": reshape}, parts=(reshape.name, node.name))
    return None


def _match_prelu(imp: "_Importer", node: _Node, users) -> _Node | None:
    """where(x > 0, x, x * reshape(alpha)): PReLU with one slope per channel, as the backend's
    PReLU block writes it (max(0, x) + alpha * min(0, x) is the same at every x, 0 included).
    The product comes before the where, so it has already been folded as a channel scale."""
    if len(node.inputs) != 3:
        return None
    condition_entry, x_entry, negative_entry = node.inputs
    condition, negative = imp.nodes[condition_entry[0]], imp.nodes[negative_entry[0]]
    if (condition.op != "_greater_scalar" or len(condition.inputs) != 1 or condition_entry[1]
            or not imp.same_value(condition.inputs[0], x_entry) or _float(condition, "scalar") != 0.0
            or users[condition.index] != [node.index]):
        return None
    if (negative.pattern != "channel_scale" or negative_entry[1] or users[negative.index] != [node.index]
            or not imp.same_value(negative.inputs[0], x_entry)):
        return None
    return replace(node, inputs=[x_entry, negative.inputs[1]], pattern="prelu", facts=dict(negative.facts),
                   parts=(condition.name, *negative.parts, node.name))


def _match_channel_shuffle(imp: "_Importer", node: _Node, users) -> _Node | None:
    """Reshape (split the channels in two axes), SwapAxis (or transpose) of those two, Reshape
    (merge them): the converter checks the shapes make it ShuffleNet's channel shuffle."""
    if len(node.inputs) != 1 or node.inputs[0][1]:
        return None
    middle = imp.nodes[node.inputs[0][0]]
    if middle.op not in (*SWAP_OPS, "transpose") or len(middle.inputs) != 1 or users[middle.index] != [node.index]:
        return None
    first = imp.nodes[middle.inputs[0][0]]
    if (first.op not in RESHAPE_OPS or middle.inputs[0][1] or len(first.inputs) != 1
            or users[first.index] != [middle.index]):
        return None
    return replace(node, inputs=[first.inputs[0]], pattern="channel_shuffle",
                   facts={"split": first, "swap": middle, "merge": node}, parts=(first.name, middle.name, node.name))


def _pad_feeding(imp: "_Importer", entry, users, consumer: int):
    """(Pad node, pads, value) when ``entry`` is a constant Pad of H and W feeding only ``consumer``."""
    node = imp.nodes[entry[0]]
    if node.op != "Pad" or entry[1] or len(node.inputs) != 1 or users[node.index] != [consumer]:
        return None
    found = _spatial_pad(node)
    return None if isinstance(found, str) else (node, *found)


def _match_padded_convolution(imp: "_Importer", node: _Node, users) -> _Node | None:
    """Zero Pad, then a Convolution: the convolution's padding, which may differ per side (the
    backend's PaddedConv2D: Gluon's Conv2D pads symmetrically only)."""
    found = _pad_feeding(imp, node.inputs[0], users, node.index) if node.inputs else None
    if found is None or found[2] != 0:
        return None
    pad_node, pads, _ = found
    return replace(node, inputs=[pad_node.inputs[0], *node.inputs[1:]], facts={"zero_padding": pads},
                   parts=(pad_node.name, node.name))


def _plain_valid_pool(node: _Node) -> bool:
    """A Pooling without padding or global pooling, 'valid' convention: its windows are all
    inside its input."""
    return (node.op == "Pooling" and not _bool(node, "global_pool", False) and "kernel" in node.attrs
            and node.attrs.get("pooling_convention", "valid") == "valid" and _pair(node, "pad", 0) == (0, 0))


def _match_padded_pooling(imp: "_Importer", node: _Node, users) -> _Node | None:
    """-inf Pad then a 'valid' max Pooling, or zero Pad then a 'valid' average Pooling: a pool
    whose padding is that Pad's (the backend's CeilMaxPool and CeilAvgPool; the converter
    finds the PyTorch-style pool with those windows)."""
    if not node.inputs or not _plain_valid_pool(node):
        return None
    found = _pad_feeding(imp, node.inputs[0], users, node.index)
    if found is None:
        return None
    pad_node, pads, value = found
    if (node.attrs.get("pool_type", "max"), value) not in (("max", float("-inf")), ("avg", 0.0)):
        return None
    return replace(node, inputs=[pad_node.inputs[0]], facts={"explicit_padding": pads},
                   parts=(pad_node.name, node.name))


def _match_rescaled_avg_pool(imp: "_Importer", node: _Node, users) -> _Node | None:
    """A 'valid' average Pooling (its Pad folded in or not) times a stored (1, 1, H_out, W_out)
    constant: PyTorch's per-window divisors where they differ from the kernel area (the
    backend's CeilAvgPool)."""
    if len(node.inputs) != 2:
        return None
    for pool_slot in (0, 1):
        pool_entry, scale_entry = node.inputs[pool_slot], node.inputs[1 - pool_slot]
        pool, scale = imp.nodes[pool_entry[0]], imp.nodes[scale_entry[0]]
        if (_plain_valid_pool(pool) and pool.attrs.get("pool_type", "max") == "avg" and not pool_entry[1]
                and users[pool.index] == [node.index] and scale.op == "null" and scale.name in imp.params):
            return replace(node, inputs=[pool.inputs[0], scale_entry], pattern="rescaled_avg_pool",
                           facts={"pool": pool, "explicit_padding": pool.facts.get("explicit_padding", (0, 0, 0, 0))},
                           parts=(*(pool.parts or (pool.name,)), node.name))
    return None


def _match_normalize(imp: "_Importer", node: _Node, users) -> _Node | None:
    """broadcast_div(broadcast_sub(x, mean), std) with stored constants: the backend's Normalize."""
    if len(node.inputs) != 2:
        return None
    difference = imp.nodes[node.inputs[0][0]]
    if (difference.op != "broadcast_sub" or len(difference.inputs) != 2 or node.inputs[0][1]
            or users[difference.index] != [node.index]):
        return None
    stored = [imp.nodes[entry[0]] for entry in (difference.inputs[1], node.inputs[1])]
    if any(n.op != "null" or n.name not in imp.params for n in stored):
        return None
    return replace(node, inputs=[difference.inputs[0], difference.inputs[1], node.inputs[1]], pattern="normalize",
                   parts=(difference.name, node.name))


PATTERNS = {
    **{op: (_match_gated_activation, _match_channel_scale, _match_rescaled_avg_pool) for op in MUL_OPS},
    "where": (_match_prelu,),
    **{op: (_match_channel_shuffle,) for op in RESHAPE_OPS},
    "Convolution": (_match_padded_convolution,),
    "Pooling": (_match_padded_pooling,),
    "broadcast_div": (_match_normalize,),
}
# Operators imported only inside a pattern, and which.
PATTERN_ONLY_OPS = {
    **{op: "a channel shuffle (Reshape, SwapAxis, Reshape) or a (C,) weight reshaped to multiply the channels "
           "(channel scale, PReLU as where(x > 0, x, x * alpha))" for op in RESHAPE_OPS},
    **{op: "a channel shuffle (Reshape, SwapAxis, Reshape)" for op in (*SWAP_OPS, "transpose")},
    "where": "PReLU as where(x > 0, x, x * reshape(alpha))",
    "_greater_scalar": "PReLU as where(x > 0, x, x * reshape(alpha))",
    "broadcast_sub": "normalize as broadcast_div(broadcast_sub(x, mean), std) with stored mean and std",
    "broadcast_div": "normalize as broadcast_div(broadcast_sub(x, mean), std) with stored mean and std",
}


def _pattern_label(node: _Node) -> str:
    if node.pattern == "gated_activation":
        gate = "sigmoid" if node.facts["function"] == "silu" else "hard_sigmoid"
        return f"x * {gate}(x) as {node.facts['function']}"
    return {"channel_scale": "x * reshape(weight) as channel_scale", "prelu": "where(x > 0, x, x * alpha) as prelu",
            "channel_shuffle": "Reshape, SwapAxis, Reshape as channel_shuffle",
            "rescaled_avg_pool": "average Pooling times its divisor correction as one pool",
            "normalize": "(x - mean) / std as normalize"}.get(node.pattern) or (
        "Pad and Convolution as one convolution" if node.op == "Convolution" else "Pad and Pooling as one pool")


# -- what the patterns become -------------------------------------------------------------

def _reshaped(ctx: _Context, reshape: _Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape MXNet's Reshape gives ``shape`` (its codes: 0 copies a dimension, -1 infers one,
    -2 copies the rest, -3 merges two, -4 splits one in the two values after it)."""
    def refuse(why: str) -> SymbolError:
        return ctx.error(f"Reshape {reshape.name!r} (shape={reshape.attrs.get('shape')}) of a {shape} array: {why}")

    if _bool(reshape, "reverse", False):
        raise refuse("reverse=True is not imported")
    if "shape" not in reshape.attrs:
        raise refuse("it has no shape attribute")
    codes, out, i, k, infer = _tuple(reshape, "shape"), [], 0, 0, None
    while k < len(codes):
        code = codes[k]
        if code in (0, -3, -4) and i + (2 if code == -3 else 1) > len(shape):
            raise refuse(f"code {code} at position {k} runs past the input's dimensions")
        if code == 0:
            out.append(shape[i])
        elif code == -1:
            if infer is not None:
                raise refuse("more than one -1")
            infer = len(out)
            out.append(1)
        elif code == -2:
            out.extend(shape[i:])
            i = len(shape)
        elif code == -3:
            out.append(shape[i] * shape[i + 1])
            i += 1
        elif code == -4:
            if k + 2 >= len(codes):
                raise refuse("-4 needs two values after it")
            a, b = codes[k + 1], codes[k + 2]
            a, b = (shape[i] // b if a == -1 and b > 0 else a), (shape[i] // a if b == -1 and a > 0 else b)
            if a <= 0 or b <= 0 or a * b != shape[i]:
                raise refuse(f"-4 cannot split {shape[i]} into ({codes[k + 1]}, {codes[k + 2]})")
            out.extend((a, b))
            k += 2
        elif code > 0:
            out.append(code)
        else:
            raise refuse(f"code {code} is not one MXNet knows")
        i += 1 if code != -2 else 0
        k += 1
    total, known = math.prod(shape), math.prod(out)
    if infer is not None:
        if total % known:
            raise refuse(f"-1 cannot be inferred ({total} elements)")
        out[infer] = total // known
    if math.prod(out) != total:
        raise refuse(f"gives {tuple(out)}, another number of elements")
    return tuple(out)


def _per_channel_check(ctx: _Context, role: str) -> np.ndarray:
    """The (C,) parameter at input 1, after checking that its Reshape lines it up with axis 1."""
    channels = ctx.shape[0]
    weight = ctx.param(1, role, (channels,))
    wanted = (1, channels) + (1,) * (len(ctx.shape) - 1)
    got = _reshaped(ctx, ctx.node.facts["reshape"], (channels,))
    if got != wanted:
        raise ctx.error(f"the {role} is reshaped to {got}, which does not multiply the channels of a "
                        f"{show_shape(ctx.shape)} input (that takes {wanted})")
    return weight


def gated_activation(ctx: _Context) -> _Converted:
    return ctx.one(Activation(ctx.node.facts["function"]))


def channel_scale(ctx: _Context) -> _Converted:
    return ctx.one(ChannelScale(), weight=_per_channel_check(ctx, "weight"))


def prelu_where(ctx: _Context) -> _Converted:
    return ctx.one(PReLU(), weight=_per_channel_check(ctx, "alpha"))


def channel_shuffle(ctx: _Context) -> _Converted:
    """Split C into (g, C/g), swap those two axes, merge them: ChannelShuffle(g). Checked at two
    batch sizes, so that a Reshape that moves the batch axis is not taken for one."""
    facts, shape = ctx.node.facts, _image(ctx)
    swap = facts["swap"]
    if swap.op == "transpose":
        swapped_axes = _tuple(swap, "axes") == (0, 2, 1, 3, 4)
    else:
        swapped_axes = sorted(_int(swap, key, 0) % 5 for key in ("dim1", "dim2")) == [1, 2]
    groups = None
    for batch in (2, 3):
        split = _reshaped(ctx, facts["split"], (batch, *shape))
        if swapped_axes and len(split) == 5 and split[0] == batch and split[3:] == shape[1:]:
            merged = _reshaped(ctx, facts["merge"], (batch, split[2], split[1], *split[3:]))
            if merged == (batch, *shape):
                groups = split[1]
                continue
        groups = None
        break
    if groups is None:
        raise ctx.error(f"{', '.join(map(repr, ctx.node.parts))} is not a channel shuffle: netparity imports "
                        "Reshape to (N, g, C/g, H, W), a swap of axes 1 and 2, Reshape back to (N, C, H, W)")
    return ctx.one(ChannelShuffle(groups))


def _explicit_pool(ctx: _Context, pool_type: str, kernel, stride, pads, divisor_ok) -> Layer:
    """The spec pool with the windows of a 'valid' pool over the input padded by ``pads`` (top,
    bottom, left, right; -inf for max, zeros for average): the same output size and window
    starts (padding = the pads before, at most half the kernel as in PyTorch), the pads after
    reached by ceil mode where they are more; ``divisor_ok`` accepts PyTorch's per-window
    divisor of an average pool. Floor mode is tried first, and count_include_pad True, so a
    ceil mode or count_include_pad that changes nothing is not stated (as the Keras importer
    does)."""
    _, height, width = _image(ctx)
    if min(kernel) <= 0 or min(stride) <= 0:
        raise ctx.error(f"kernel {kernel} and stride {stride} must be positive")
    before, after = (pads[0], pads[2]), (pads[1], pads[3])
    outs = [(size + lo + hi - k) // s + 1 for size, lo, hi, k, s in zip((height, width), before, after, kernel, stride)]
    for ceil_mode in (False, True):
        if any(lo > k // 2 or size + lo + hi < k or pool_output_size(size, k, s, lo, ceil_mode) != out
               for size, lo, hi, k, s, out in zip((height, width), before, after, kernel, stride, outs)):
            continue
        if pool_type == "max":
            return MaxPool2d(kernel, stride, before, ceil_mode)
        for include in (True, False):
            if divisor_ok(avg_pool_divisor(height, width, kernel, stride, before, ceil_mode, include)):
                return AvgPool2d(kernel, stride, before, ceil_mode, count_include_pad=include)
    raise ctx.error(f"a 'valid' {pool_type} pool {show_shape(kernel)} /{show_shape(stride)} over the padding {pads} "
                    f"of a {height}x{width} map: no PyTorch-style pool has these windows"
                    f"{' and divisors' if pool_type == 'avg' else ''} (its padding before is at most half the "
                    "window, and padding after comes only from ceil mode)")


def rescaled_avg_pool(ctx: _Context) -> _Converted:
    pool, pads = ctx.node.facts["pool"], ctx.node.facts["explicit_padding"]
    kernel, stride = _pair(pool, "kernel", 0), _pair(pool, "stride", 1)
    _, height, width = _image(ctx)
    out = ((height + pads[0] + pads[1] - kernel[0]) // stride[0] + 1,
           (width + pads[2] + pads[3] - kernel[1]) // stride[1] + 1)
    rescale = ctx.param(1, "divisor correction", (1, 1, *out))[0, 0]
    area = kernel[0] * kernel[1]

    def same_rescale(divisor) -> bool:  # the backend's float32(k*k / divisor), bit for bit
        return divisor.shape == rescale.shape and np.array_equal(np.float32(area / divisor), rescale)

    return ctx.one(_explicit_pool(ctx, "avg", kernel, stride, pads, same_rescale))


def normalize(ctx: _Context) -> _Converted:
    """(x - mean) / std with stored (1, C, 1, 1) constants; one value where all channels share it.
    Each float32 constant becomes the shortest decimal that rounds to it (0.4, not
    0.4000000059604645): the spec's value that every backend turns back into this constant."""
    channels = ctx.shape[0]
    per_channel = (1, channels) + (1,) * (len(ctx.shape) - 1)
    mean, std = (ctx.param(slot, role, per_channel).reshape(-1) for slot, role in ((1, "mean"), (2, "std")))
    if np.any(std <= 0):
        raise ctx.error("a std that is not positive is not imported (the spec's normalize divides by a positive std)")

    def values(array):
        shortest = tuple(float(str(np.float32(v))) for v in array)  # str: numpy's shortest round-trip repr
        assert all(np.float32(v) == a for v, a in zip(shortest, array))
        return shortest[:1] if np.all(array == array[0]) else shortest

    return ctx.one(Normalize(mean=values(mean), std=values(std)))


PATTERN_CONVERTERS = {
    "gated_activation": gated_activation,
    "channel_scale": channel_scale,
    "prelu": prelu_where,
    "channel_shuffle": channel_shuffle,
    "rescaled_avg_pool": rescaled_avg_pool,
    "normalize": normalize,
}
PATTERN_PARAMETER_SLOTS = {"channel_scale": (1,), "prelu": (1,), "rescaled_avg_pool": (1,), "normalize": (1, 2)}


CONVERTERS = {
    "Convolution": convolution,
    "FullyConnected": fully_connected,
    "BatchNorm": batch_norm,
    "Activation": activation,
    "LeakyReLU": leaky_relu,
    "Pooling": pooling,
    "Flatten": flatten,
    "flatten": flatten,
    "Dropout": dropout,
    "clip": clip,
    "_contrib_AdaptiveAvgPooling2D": adaptive_avg_pooling,
    **{op: unary_activation for op in UNARY_ACTIVATIONS},
    "hard_sigmoid": hard_sigmoid,
    "softmax": softmax,
    "LayerNorm": layer_norm,
    "Pad": pad,
    "slice_axis": slice_axis,
    "slice": slice_,
}
SUPPORTED_OPS = tuple(sorted({*CONVERTERS, *SCALAR_OPS, *MERGE_OPS, *PASS_THROUGH_OPS, *TRAINING_HEADS}, key=str.lower))
# Which of a node's inputs are parameters (the rest is data), by operator.
PARAMETER_SLOTS = {"Convolution": (1, 2), "FullyConnected": (1, 2), "BatchNorm": (1, 2, 3, 4), "LayerNorm": (1, 2)}


# ---------------------------------------------------------------------------------------
# The importer
# ---------------------------------------------------------------------------------------

class _Importer:
    """One import: parse the JSON, pick the output (stripping training heads), keep the nodes it
    depends on, check their operators, find the one data input and its shape; ``run`` converts
    the nodes in file order (MXNet writes inputs first), folds them and places the weights."""

    def __init__(self, symbol, params, input_shape, output, name, source):
        data, self.source = _load_json(symbol)
        self.source = source or self.source
        self.nodes, heads = _parse_nodes(data, self.source)
        self.by_name = {n.name: n for n in self.nodes}
        self.notes: list[str] = []
        self.params = self._read_params(params)
        self.used_params: set[str] = set()
        head = self._output(heads, output)
        self.output = self._strip_training_heads(head)
        self.kept = self._ancestors(self.output)
        self._fold_patterns()
        self._check_ops()
        self.input = self._data_input()
        self.input_shape = self._input_shape(input_shape)
        self.name = name or (Path(self.source).name.removesuffix(".json").removesuffix("-symbol")
                             if self.source.endswith(".json") else "mxnet_model")
        self.graph_names = {n.name for n in self.nodes}

    # -- params --------------------------------------------------------------------------
    def _read_params(self, params) -> dict[str, np.ndarray]:
        if isinstance(params, (str, Path)):
            from .params import read_params
            params = read_params(params)
        if not hasattr(params, "items"):
            raise SymbolError("params must be a mapping of names to arrays or a .params path, "
                              f"got {type(params).__name__}")
        bare: dict[str, np.ndarray] = {}
        for key, value in params.items():
            prefix, colon, rest = str(key).partition(":")
            name = rest if colon and prefix in ("arg", "aux") else str(key)
            if name in bare:
                raise SymbolError(f"the params hold {name!r} twice (with and without an arg:/aux: prefix)")
            array = np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value)
            if not np.issubdtype(array.dtype, np.floating):
                raise SymbolError(f"param {key!r} has dtype {array.dtype}; netparity imports floating-point weights")
            bare[name] = array
        return bare

    def param_value(self, variable: str, ctx: _Context) -> np.ndarray:
        if variable not in self.params:
            raise ctx.error(f"its parameter {variable!r} is not in the params")
        self.used_params.add(variable)
        array = self.params[variable]
        return array.astype(np.float32) if array.dtype != np.float32 else array

    # -- the part of the graph to import --------------------------------------------------
    def _output(self, heads, output) -> int:
        if output is None:
            if len(heads) != 1:
                names = ", ".join(repr(self.output_name(*h)) for h in heads)
                raise SymbolError(f"the symbol has {len(heads)} outputs ({names}); choose one with output= "
                                  "(--output NAME)")
            index, slot = heads[0]
            if self.nodes[index].op == "null":
                raise SymbolError(f"the symbol's output is the variable {self.nodes[index].name!r} itself, not an "
                                  "operator's output: there is nothing to import")
            if slot != 0:
                raise SymbolError(f"the symbol's output is output {slot} of node {self.nodes[index].name!r}; "
                                  "netparity imports a node's first output only")
            return index
        wanted = str(output)
        for candidate in (wanted, wanted.removesuffix("_output"), wanted.removesuffix("_output0")):
            node = self.by_name.get(candidate)
            if node is not None and node.op != "null":
                return node.index
        if wanted in self.by_name:
            raise SymbolError(f"output {wanted!r} is a variable (an input or a parameter), not an operator's output")
        import difflib
        known = [f"{n.name}_output" for n in self.nodes if n.op != "null"]
        close = difflib.get_close_matches(wanted, known, n=3)
        raise SymbolError(f"the symbol has no output named {wanted!r}" +
                          (f"; did you mean {', '.join(close)}?" if close else
                           f"; its outputs are named like {known[-1]!r}" if known else ""))

    def output_name(self, index: int, slot: int) -> str:
        node = self.nodes[index]
        return node.name if node.op == "null" else f"{node.name}_output" + (str(slot) if slot else "")

    def _strip_training_heads(self, index: int) -> int:
        stripped = []
        while self.nodes[index].op in TRAINING_HEADS:
            head = self.nodes[index]
            if not head.inputs:
                raise SymbolError("a training head without an input", head.name, head.op)
            stripped.append(f"{head.name!r} ({head.op})")
            index = head.inputs[0][0]
        if stripped:
            self.notes.append(f"training head {', '.join(stripped)} stripped: the spec's output is "
                              f"{self.output_name(index, 0)!r}, its input")
        return index

    def _ancestors(self, index: int) -> set[int]:
        kept, todo = set(), [index]
        while todo:
            i = todo.pop()
            if i not in kept:
                kept.add(i)
                todo.extend(j for j, _ in self.nodes[i].inputs)
        return kept

    def _users(self) -> dict[int, list[int]]:
        """Each kept node's consumers, once per input that reads it."""
        users: dict[int, list[int]] = {i: [] for i in self.kept}
        for i in sorted(self.kept):
            for j, _ in self.nodes[i].inputs:
                users[j].append(i)
        return users

    def same_value(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        """Whether two input references read the same value, looking through identity and _copy."""
        def source(entry):
            while self.nodes[entry[0]].op in PASS_THROUGH_OPS and self.nodes[entry[0]].inputs:
                entry = self.nodes[entry[0]].inputs[0]
            return tuple(entry[:2])
        return source(a) == source(b)

    def _fold_patterns(self) -> None:
        """Each PATTERNS match becomes one node in place of its last; the nodes it folds in then
        drop out of ``kept`` (each fed only the match)."""
        users = self._users()
        for i in sorted(self.kept):
            node = self.nodes[i]
            for match in PATTERNS.get(node.op, ()):
                fused = match(self, node, users)
                if fused is not None:
                    self.nodes[i] = self.by_name[fused.name] = fused
                    self.kept = self._ancestors(self.output)
                    users = self._users()
                    break
        folded = Counter(_pattern_label(self.nodes[i]) for i in sorted(self.kept) if self.nodes[i].parts)
        if folded:
            self.notes.append("several MXNet nodes imported as one spec layer: " +
                              ", ".join(f"{label} ({count})" for label, count in folded.items()))

    def _check_ops(self) -> None:
        """Every operator up to the output is one netparity imports (before anything reads their
        inputs: an unknown operator's weights would look like data)."""
        supported = {*CONVERTERS, *SCALAR_OPS, *MERGE_OPS, *PASS_THROUGH_OPS}
        for i in sorted(self.kept):
            node = self.nodes[i]
            if node.op != "null" and node.op not in supported and not node.pattern:
                head = " (a training head: only the graph's output may be one)" if node.op in TRAINING_HEADS else ""
                inside = (f" on its own (only inside {PATTERN_ONLY_OPS[node.op]})"
                          if node.op in PATTERN_ONLY_OPS else "")
                raise SymbolError(f"operator {node.op!r} is not supported{head}{inside}; netparity imports "
                                  f"{', '.join(SUPPORTED_OPS)}; and, as parts of one spec layer (PATTERNS), "
                                  f"{', '.join(sorted(PATTERN_ONLY_OPS, key=str.lower))}", node.name, node.op)

    def _data_input(self) -> str:
        data_variables = []
        for i in sorted(self.kept):
            node = self.nodes[i]
            if node.op == "null":
                continue
            parameter_slots = self._parameter_slots(node)
            for slot, (j, _) in enumerate(node.inputs):
                variable = self.nodes[j]
                if slot not in parameter_slots and variable.op == "null" and variable.name not in data_variables:
                    data_variables.append(variable.name)
        for name in data_variables:
            if name in self.params:
                raise SymbolError(f"variable {name!r} is stored in the params but used as data (an operator's "
                                  "input, not its weight); netparity imports graphs with one data input")
        if len(data_variables) != 1:
            raise SymbolError(f"the graph up to {self.nodes[self.output].name!r} has {len(data_variables)} data inputs "
                              f"({', '.join(map(repr, data_variables)) or 'none'}); netparity imports graphs with one")
        return data_variables[0]

    def _parameter_slots(self, node: _Node) -> tuple[int, ...]:
        if node.pattern:
            return PATTERN_PARAMETER_SLOTS.get(node.pattern, ())
        if node.op == "LeakyReLU" and node.attrs.get("act_type", "leaky") == "prelu":
            return (1,)
        return PARAMETER_SLOTS.get(node.op, ())

    def _input_shape(self, input_shape) -> Shape:
        if input_shape is not None:
            shape = tuple(input_shape)
            if len(shape) != 3 or any(not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
                raise SymbolError(f"input_shape must be three positive integers (C, H, W), got {input_shape!r}")
            return tuple(int(s) for s in shape)
        shape = _shape_attribute(self.by_name[self.input])
        if shape is None:
            raise SymbolError(f"the symbol does not record the shape of its input {self.input!r}; give it "
                              "(input_shape=(C, H, W), --input-size N)")
        if len(shape) != 3:
            raise SymbolError(f"input {self.input!r} has shape {show_shape(shape)} per example; netparity imports "
                              "(C, H, W) images")
        return shape

    def fresh_name(self, wanted: str) -> str:
        name, k = wanted, 1
        while name in self.graph_names:
            name, k = f"{wanted}{k}", k + 1
        self.graph_names.add(name)
        return name

    # -- conversion ---------------------------------------------------------------------
    def run(self):
        self.consumers = self._count_consumers()
        produced: dict[int, str] = {}  # MXNet node -> graph node name holding its value
        shapes: dict[str, Shape] = {self.input: self.input_shape}
        graph: dict[str, GraphNode] = {}
        weights_of: dict[str, dict[str, np.ndarray]] = {}
        self.normalizers: dict[str, tuple] = {}  # graph node -> (mean, std, MXNet nodes, input, note)
        sources: dict[str, str] = {}  # graph node -> the MXNet node it came from
        for i in sorted(self.kept):
            node = self.nodes[i]
            if node.op == "null":
                if node.name == self.input:
                    produced[i] = self.input
                continue
            data_slots = [s for s in range(len(node.inputs)) if s not in self._parameter_slots(node)]
            inputs = []
            for slot in data_slots:
                j, output_index = node.inputs[slot]
                if output_index != 0:
                    raise SymbolError(f"uses output {output_index} of node {self.nodes[j].name!r}; netparity "
                                      "imports a node's first output only", node.name, node.op)
                inputs.append(produced[j])
            if not inputs:
                raise SymbolError("has no data input", node.name, node.op)
            if node.op in PASS_THROUGH_OPS:
                produced[i] = inputs[0]
                continue
            if node.op in MERGE_OPS and not node.pattern:
                merge = MERGE_OPS[node.op]
                if merge == "concat":
                    self._check_concat_axis(node, shapes[inputs[0]])
                shapes[node.name] = _merge_shape(merge, [shapes[n] for n in inputs], node)
                graph[node.name] = GraphNode(node.name, tuple(inputs), merge=merge)
                sources[node.name] = node.name
                produced[i] = node.name
                continue
            if node.op in SCALAR_OPS:
                converted, inputs = self._scalar(node, inputs[0], graph)
            else:
                convert = PATTERN_CONVERTERS[node.pattern] if node.pattern else CONVERTERS[node.op]
                converted = convert(_Context(self, node, shapes[inputs[0]]))
            self.notes.extend(converted.notes)
            previous = inputs[0]
            for graph_name, layer in converted.layers:
                try:
                    layer.check(graph_name)
                    shapes[graph_name] = layer.output_shape(shapes[previous], graph_name)
                except SpecError as error:
                    raise SymbolError(error.reason, node.name, node.op) from None
                graph[graph_name] = GraphNode(graph_name, (previous,), layer=layer)
                sources[graph_name] = node.name
                previous = graph_name
            if converted.weights:
                weights_of[previous] = converted.weights
            produced[i] = previous
        output = produced[self.output]
        if output == self.input:
            raise SymbolError(f"the graph up to {self.nodes[self.output].name!r} computes nothing from its input")
        self._check_unused_params()
        try:
            folded = fold_graph(graph.values(), self.input, output)
        except GraphError as error:
            raise SymbolError(error.reason, sources.get(error.node, error.node)) from None
        spec = folded.spec(self.name, self.input_shape, f"imported from MXNet symbol ({self.source})")
        try:
            layout = spec.infer().weight_layout()
        except SpecError as error:
            raise SymbolError(error.reason, _node_at(error.path, folded.paths, sources)) from None
        weights = {f"{folded.paths[graph_name]}.{key}": array
                   for graph_name, named in weights_of.items() for key, array in named.items()}
        assert set(weights) == set(layout), (sorted(set(weights) ^ set(layout)))[:4]
        return spec, {key: weights[key] for key in layout}, folded

    def _check_concat_axis(self, node: _Node, shape: Shape) -> None:
        dim = _int(node, "dim", 1)
        if dim < 0:
            dim += len(shape) + 1
        if dim != 1:
            raise SymbolError(f"Concat along dim {node.attrs.get('dim')} is not imported: netparity concatenates "
                              "channels (dim 1)", node.name, node.op)

    def _count_consumers(self) -> dict[int, int]:
        """How many operators use each node's value, looking through identity and _copy."""
        def resolve(j: int) -> int:
            while self.nodes[j].op in PASS_THROUGH_OPS and self.nodes[j].inputs:
                j = self.nodes[j].inputs[0][0]
            return j

        counts = {i: 0 for i in self.kept}
        for i in self.kept:
            if self.nodes[i].op not in PASS_THROUGH_OPS:
                for j, _ in self.nodes[i].inputs:
                    counts[resolve(j)] += 1
        return counts

    def _scalar(self, node: _Node, source: str, graph: dict[str, GraphNode]) -> tuple[_Converted, list[str]]:
        """x + s, x - s, x * s or x / s as a ``normalize`` (x - mean) / std. A chain of them (input
        preprocessing such as (x - 127.5) * 0.0078125) becomes one normalize, named after its last
        node, when each feeds only the next."""
        mean, std, chain = 0.0, 1.0, []
        earlier = self.normalizers.get(source)
        if earlier is not None and self.consumers[self.by_name[source].index] == 1:
            mean, std, chain, source, note = earlier
            del graph[chain[-1]]
            if note in self.notes:
                self.notes.remove(note)  # the longer chain's note replaces it
        mean, std = _compose(node, mean, std)
        chain = chain + [node.name]
        converted = _Converted([(node.name, Normalize(mean=(mean,), std=(std,)))])
        note = ""
        if len(chain) > 1:
            note = (f"{' then '.join(map(repr, chain))}: scalar arithmetic, imported as one normalize "
                    f"(x - {mean:g}) / {std:g}")
            converted.notes.append(note)
        self.normalizers[node.name] = (mean, std, chain, source, note)
        return converted, [source]

    def _check_unused_params(self) -> None:
        variables = {n.name for n in self.nodes if n.op == "null"}
        unexpected = [name for name in self.params if name not in variables]
        if unexpected:
            raise SymbolError(f"the params hold {len(unexpected)} array(s) that are not arguments of the symbol "
                              f"({', '.join(map(repr, unexpected[:5]))}{', ...' if len(unexpected) > 5 else ''}); "
                              "are the symbol and params files from the same model?")
        beyond = [name for name in self.params if name not in self.used_params]
        if beyond:
            self.notes.append(f"{len(beyond)} param(s) belong to the graph beyond the output and are not imported "
                              f"({', '.join(map(repr, beyond[:4]))}{', ...' if len(beyond) > 4 else ''})")


def _merge_shape(merge: str, shapes: list[Shape], node: _Node) -> Shape:
    """The merged per-example shape by the spec's rules (concat on channels or features; add
    and mul of equal shapes, or a (C, 1, 1) gate over a (C, H, W) map)."""
    if merge == "concat":
        if all(len(s) == 1 for s in shapes):
            return (sum(s[0] for s in shapes),)
        if all(len(s) == 3 and s[1:] == shapes[0][1:] for s in shapes):
            return (sum(s[0] for s in shapes), *shapes[0][1:])
        raise SymbolError(f"concatenates {', '.join(show_shape(s) for s in shapes)}: netparity concatenates "
                          "channels of equal-size maps, or flat features", node.name, node.op)
    full = max(shapes, key=math.prod)
    for shape in shapes:
        if shape != full and not (len(full) == 3 and shape == (full[0], 1, 1)):
            raise SymbolError(f"{merge} of {', '.join(show_shape(s) for s in shapes)}: netparity merges equal shapes, "
                              f"or broadcasts a ({full[0]}, 1, 1) gate over a {show_shape(full)} map",
                              node.name, node.op)
    return full


def _node_at(path: str, paths: dict[str, str], sources: dict[str, str]) -> str:
    """The MXNet node of the deepest spec path that contains ``path``."""
    best = ""
    for graph_name, candidate in paths.items():
        if (path == candidate or path.startswith(candidate + ".")) and len(candidate) > len(paths.get(best, "")):
            best = graph_name
    return sources.get(best, best)


def import_symbol(symbol, params, input_shape=None, output=None, name=None, *, source=None):
    """A spec and canonical weights from an MXNet symbol and its params, with MXNet's semantics.

    ``symbol``: the ``-symbol.json`` path, its JSON text or dict, or an ``mx.sym.Symbol``.
    ``params``: ``{name: array}`` (names with or without ``arg:`` / ``aux:``; NumPy arrays or
    NDArrays) or a ``.params`` path (read without MXNet). ``input_shape``: (C, H, W); None takes
    it from the data variable's ``__shape__``. ``output``: an internal output to cut the graph at
    (``fc1_output`` or ``fc1``); a training head at the output (SoftmaxOutput and friends) is
    stripped with a note. ``name``: the spec's name (default: the file's prefix).

    Returns an ``ImportedModel`` (spec, weights, source, source_framework, notes). Raises
    ``SymbolError`` naming the node for anything it cannot import exactly. ``source`` replaces
    the words that say where the symbol came from (the file path by default).
    """
    importer = _Importer(symbol, params, input_shape, output, name, source)
    spec, weights, _ = importer.run()
    return ImportedModel(spec=spec, weights=weights, source=importer.source, source_framework=SOURCE_FRAMEWORK,
                         notes=list(importer.notes), source_input=importer.input,
                         source_output=importer.output_name(importer.output, 0))


__all__ = ["SymbolError", "import_symbol", "SUPPORTED_OPS", "TRAINING_HEADS"]
