"""MXNet's symbol JSON (``prefix-symbol.json``) and its params, as a netparity spec with
canonical weights, without MXNet.

``import_symbol`` reads the graph (``nodes``, ``arg_nodes``, ``heads``; a node's attributes
under ``attrs``, ``attr`` or ``param``, every value a string such as ``"(3, 3)"`` or ``"True"``),
maps every operator to spec layers with MXNet 1.9.1's semantics, folds the graph into the spec's
blocks (backends/graph_folding.py), and puts each parameter on its canonical key. An operator
outside ``SUPPORTED_OPS``, or an attribute that would make the spec compute something else, is
an error naming the node; nothing is approximated.

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

The parameter layouts are PyTorch's (Convolution (out, in/groups, kh, kw), FullyConnected
(out, in)); BatchNorm's moving_mean / moving_var are the running_mean / running_var.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from ....spec.errors import NetparityError, SpecError
from ....spec.layers import (ACTIVATIONS, Activation, AvgPool2d, BatchNorm, Conv2d, Dense, Dropout, Flatten,
                            GlobalAvgPool, GlobalMaxPool, Layer, MaxPool2d, Normalize, PReLU, Shape, show_shape)
from ....spec.pooling import pool_output_size
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
    layer = Conv2d(filters, kernel, stride=_pair(node, "stride", 1), padding=_pair(node, "pad", 0),
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
    converted = ctx.one(Dropout(_float(node, "p", 0.5)))
    if _tuple(node, "axes"):
        converted.notes.append(f"{node.name!r}: Dropout axes={node.attrs['axes']} shares its mask along those axes "
                               "in training; the spec's dropout draws every element (eval is the identity in both)")
    return converted


def clip(ctx: _Context) -> _Converted:
    low, high = _float(ctx.node, "a_min"), _float(ctx.node, "a_max")
    if (low, high) != (0.0, 6.0):
        raise ctx.error(f"clip to [{low:g}, {high:g}] is not imported; netparity maps clip to [0, 6] (relu6)")
    return ctx.one(Activation("relu6"))


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
}
SUPPORTED_OPS = tuple(sorted({*CONVERTERS, *SCALAR_OPS, *MERGE_OPS, *PASS_THROUGH_OPS, *TRAINING_HEADS}, key=str.lower))
# Which of a node's inputs are parameters (the rest is data), by operator.
PARAMETER_SLOTS = {"Convolution": (1, 2), "FullyConnected": (1, 2), "BatchNorm": (1, 2, 3, 4)}


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

    def _check_ops(self) -> None:
        """Every operator up to the output is one netparity imports (before anything reads their
        inputs: an unknown operator's weights would look like data)."""
        supported = {*CONVERTERS, *SCALAR_OPS, *MERGE_OPS, *PASS_THROUGH_OPS}
        for i in sorted(self.kept):
            node = self.nodes[i]
            if node.op != "null" and node.op not in supported:
                head = " (a training head: only the graph's output may be one)" if node.op in TRAINING_HEADS else ""
                raise SymbolError(f"operator {node.op!r} is not supported{head}; netparity imports "
                                  f"{', '.join(SUPPORTED_OPS)}", node.name, node.op)

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
            if node.op in MERGE_OPS:
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
                converted = CONVERTERS[node.op](_Context(self, node, shapes[inputs[0]]))
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
