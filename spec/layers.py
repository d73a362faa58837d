"""The layer kinds of netparity: one dataclass per kind, with its shape rule.

Every kind is defined once here, the way ONNX defines an operator once:
its fields, their checks, its output shape and its parameter shapes.
``LAYER_KINDS`` is the table every backend must cover.

Shapes are per example, channels first: ``(C, H, W)`` for images and
``(F,)`` for flat features. Parameter names and shapes are PyTorch's
(conv ``weight`` is ``(out, in/groups, kh, kw)``, dense ``weight`` is
``(out, in)``), the canonical layout that weights travel in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from .errors import SpecError
from .pooling import pool_output_size

Shape = tuple[int, ...]
Pair = tuple[int, int]

ACTIVATIONS = ("relu", "sigmoid", "tanh")


def pair(value) -> Pair:
    """Accept ``3`` or ``(3, 3)`` (or a JSON list) and return a 2-tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def show_pair(value: Pair) -> str:
    return f"{value[0]}x{value[1]}"


def show_shape(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


@dataclass(frozen=True)
class Row:
    """What shape inference says about one layer or block."""

    path: str
    layer: "Layer"
    input_shape: Shape
    output_shape: Shape
    parameters: int  # trainable, this layer and everything inside it
    running_stats: int  # BatchNorm running mean/variance, kept apart from parameters
    depth: int

    @property
    def kind(self) -> str:
        return self.layer.kind


@dataclass(frozen=True)
class Layer:
    """Base of every kind. ``name`` is an optional label for people and reports."""

    kind: ClassVar[str] = ""
    name: str = field(default="", kw_only=True)

    # -- the rules each kind defines -------------------------------------------------
    def check(self, path: str) -> None:
        """Checks that need no input shape (positive sizes, known options)."""

    def output_shape(self, shape: Shape, path: str) -> Shape:
        raise NotImplementedError

    def parameter_shapes(self, shape: Shape) -> dict[str, Shape]:
        """Trainable parameters in PyTorch's names, order and layout."""
        return {}

    def running_stat_shapes(self, shape: Shape) -> dict[str, Shape]:
        return {}

    # -- walking ----------------------------------------------------------------------
    def children(self) -> list[tuple[str, "Layer"]]:
        return []

    def trace(self, shape: Shape, path: str, rows: list[Row], depth: int = 0) -> Shape:
        """Check this layer on ``shape``, append its row(s), return its output shape."""
        self.check(path)
        out = self.output_shape(shape, path)
        params = sum(_size(s) for s in self.parameter_shapes(shape).values())
        stats = sum(_size(s) for s in self.running_stat_shapes(shape).values())
        rows.append(Row(path, self, shape, out, params, stats, depth))
        return out

    def describe(self) -> str:
        """A one-line summary such as ``conv2d 64@3x3 s1 p1``."""
        return self.kind


def _size(shape: Shape) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


def _positive(path: str, what: str, *values: int) -> None:
    for value in values:
        if not isinstance(value, int) or value <= 0:
            raise SpecError(path, f"{what} must be a positive integer, got {value!r}")


def _non_negative(path: str, what: str, *values: int) -> None:
    for value in values:
        if not isinstance(value, int) or value < 0:
            raise SpecError(path, f"{what} must be a non-negative integer, got {value!r}")


def _image_input(kind: str, shape: Shape, path: str) -> None:
    if len(shape) != 3:
        raise SpecError(path, f"{kind} expects a (C, H, W) input, got {show_shape(shape)}"
                        + (" (add no flatten before it)" if len(shape) == 1 else ""))


def _window_fits(kind: str, shape: Shape, kernel: Pair, padding: Pair, path: str) -> None:
    padded = (shape[1] + 2 * padding[0], shape[2] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise SpecError(path, f"{kind} kernel {show_pair(kernel)} is larger than the padded "
                              f"input {show_pair(padded)}")


# ---------------------------------------------------------------------------------------
# Leaf layers
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv2d(Layer):
    kind: ClassVar[str] = "conv2d"
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)  # symmetric, as PyTorch's and MXNet's integer padding
    bias: bool = True
    groups: int = 1

    def __post_init__(self):
        for name in ("kernel", "stride", "padding"):
            object.__setattr__(self, name, pair(getattr(self, name)))

    def check(self, path):
        _positive(path, "conv2d out_channels", self.out_channels)
        _positive(path, "conv2d kernel", *self.kernel)
        _positive(path, "conv2d stride", *self.stride)
        _non_negative(path, "conv2d padding", *self.padding)
        _positive(path, "conv2d groups", self.groups)
        if self.out_channels % self.groups:
            raise SpecError(path, f"conv2d out_channels {self.out_channels} is not divisible "
                                  f"by groups {self.groups}")

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        if shape[0] % self.groups:
            raise SpecError(path, f"conv2d input channels {shape[0]} are not divisible by "
                                  f"groups {self.groups}")
        _window_fits(self.kind, shape, self.kernel, self.padding, path)
        h, w = ((shape[i + 1] + 2 * self.padding[i] - self.kernel[i]) // self.stride[i] + 1
                for i in range(2))
        return (self.out_channels, h, w)

    def parameter_shapes(self, shape):
        weight = (self.out_channels, shape[0] // self.groups, *self.kernel)
        return {"weight": weight, "bias": (self.out_channels,)} if self.bias else {"weight": weight}

    def describe(self):
        text = f"conv2d {self.out_channels}@{show_pair(self.kernel)}"
        if self.stride != (1, 1):
            text += f" /{show_pair(self.stride)}"
        if self.padding != (0, 0):
            text += f" pad {show_pair(self.padding)}"
        if self.groups != 1:
            text += f" groups {self.groups}"
        return text + ("" if self.bias else " no bias")


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over channels (images) or features (flat inputs).

    ``momentum`` is PyTorch's: running = (1 - momentum) * running + momentum * batch.
    MXNet and Keras spell the same thing ``1 - momentum``.
    """

    kind: ClassVar[str] = "batchnorm"
    eps: float = 1e-5
    momentum: float = 0.1

    def check(self, path):
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise SpecError(path, f"batchnorm eps must be positive, got {self.eps!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum <= 1):
            raise SpecError(path, f"batchnorm momentum must be in [0, 1], got {self.momentum!r}")

    def output_shape(self, shape, path):
        if len(shape) not in (1, 3):
            raise SpecError(path, f"batchnorm expects (C,) or (C, H, W), got {show_shape(shape)}")
        return shape

    def parameter_shapes(self, shape):
        return {"weight": (shape[0],), "bias": (shape[0],)}

    def running_stat_shapes(self, shape):
        return {"running_mean": (shape[0],), "running_var": (shape[0],)}

    def describe(self):
        return f"batchnorm eps {self.eps:g} momentum {self.momentum:g}"


@dataclass(frozen=True)
class Activation(Layer):
    kind: ClassVar[str] = "activation"
    function: str = "relu"

    def check(self, path):
        if self.function not in ACTIVATIONS:
            raise SpecError(path, f"unknown activation {self.function!r}; "
                                  f"known: {', '.join(ACTIVATIONS)}")

    def output_shape(self, shape, path):
        return shape

    def describe(self):
        return self.function


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: Pair
    stride: Pair | None = None  # None: the kernel size, as in every framework
    padding: Pair = (0, 0)
    ceil_mode: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kernel", pair(self.kernel))
        object.__setattr__(self, "stride", pair(self.kernel if self.stride is None else self.stride))
        object.__setattr__(self, "padding", pair(self.padding))

    def check(self, path):
        _positive(path, f"{self.kind} kernel", *self.kernel)
        _positive(path, f"{self.kind} stride", *self.stride)
        _non_negative(path, f"{self.kind} padding", *self.padding)
        for k, p in zip(self.kernel, self.padding):
            # PyTorch refuses this too: a window could then lie entirely in padding.
            if p > k // 2:
                raise SpecError(path, f"{self.kind} padding {show_pair(self.padding)} exceeds half "
                                      f"the kernel {show_pair(self.kernel)}")

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        _window_fits(self.kind, shape, self.kernel, self.padding, path)
        h, w = (pool_output_size(shape[i + 1], self.kernel[i], self.stride[i], self.padding[i],
                                 self.ceil_mode) for i in range(2))
        return (shape[0], h, w)

    def describe(self):
        text = f"{self.kind} {show_pair(self.kernel)} /{show_pair(self.stride)}"
        if self.padding != (0, 0):
            text += f" pad {show_pair(self.padding)}"
        return text + (" ceil" if self.ceil_mode else "")


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    kind: ClassVar[str] = "maxpool2d"


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    kind: ClassVar[str] = "avgpool2d"
    count_include_pad: bool = True  # PyTorch's and MXNet's default


@dataclass(frozen=True)
class AdaptiveAvgPool2d(Layer):
    """PyTorch's adaptive average pool (torchvision's AlexNet and VGG heads)."""

    kind: ClassVar[str] = "adaptive_avgpool2d"
    output_size: Pair

    def __post_init__(self):
        object.__setattr__(self, "output_size", pair(self.output_size))

    def check(self, path):
        _positive(path, "adaptive_avgpool2d output_size", *self.output_size)

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        return (shape[0], *self.output_size)

    def describe(self):
        return f"adaptive_avgpool2d to {show_pair(self.output_size)}"


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Average over H and W; the output is flat (C,), as Keras gives it."""

    kind: ClassVar[str] = "global_avgpool"

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        return (shape[0],)


@dataclass(frozen=True)
class Flatten(Layer):
    """(C, H, W) to (C*H*W,) in channels-first order; flat inputs pass through."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, shape, path):
        return (_size(shape),)


@dataclass(frozen=True)
class Dense(Layer):
    kind: ClassVar[str] = "dense"
    out_features: int
    bias: bool = True

    def check(self, path):
        _positive(path, "dense out_features", self.out_features)

    def output_shape(self, shape, path):
        if len(shape) != 1:
            raise SpecError(path, f"dense expects a flat (F,) input, got {show_shape(shape)}: "
                                  "put a flatten or global_avgpool before it")
        return (self.out_features,)

    def parameter_shapes(self, shape):
        weight = (self.out_features, shape[0])
        return {"weight": weight, "bias": (self.out_features,)} if self.bias else {"weight": weight}

    def describe(self):
        return f"dense {self.out_features}" + ("" if self.bias else " no bias")


@dataclass(frozen=True)
class Dropout(Layer):
    kind: ClassVar[str] = "dropout"
    p: float = 0.5

    def check(self, path):
        if not (isinstance(self.p, (int, float)) and 0 <= self.p < 1):
            raise SpecError(path, f"dropout p must be in [0, 1), got {self.p!r}")

    def output_shape(self, shape, path):
        return shape

    def describe(self):
        return f"dropout {self.p:g}"


# ---------------------------------------------------------------------------------------
# Blocks: layers made of layers
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block(Layer):
    def trace(self, shape, path, rows, depth=0):
        self.check(path)
        index = len(rows)
        rows.append(None)  # placeholder: the block's row comes before its children's
        out = self.trace_children(shape, path, rows, depth + 1)
        inside = rows[index + 1:]
        leaves = [r for r in inside if not isinstance(r.layer, Block)]
        rows[index] = Row(path, self, shape, out, sum(r.parameters for r in leaves),
                          sum(r.running_stats for r in leaves), depth)
        return out

    def trace_children(self, shape, path, rows, depth) -> Shape:
        raise NotImplementedError

    def output_shape(self, shape, path):
        return self.trace(shape, path, [])


def _child(path: str, relative: str) -> str:
    return f"{path}.{relative}" if path else relative


def _as_layers(path: str, what: str, items) -> tuple:
    items = tuple(items)
    for i, item in enumerate(items):
        if not isinstance(item, Layer):
            raise SpecError(f"{path}[{i}]" if path else what,
                            f"{what} must hold layers, got {type(item).__name__}")
    return items


@dataclass(frozen=True)
class Sequence(Block):
    kind: ClassVar[str] = "sequence"
    layers: tuple[Layer, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", _as_layers("", "sequence", self.layers))

    def children(self):
        return [(f"layers[{i}]", layer) for i, layer in enumerate(self.layers)]

    def trace_children(self, shape, path, rows, depth):
        for relative, layer in self.children():
            shape = layer.trace(shape, _child(path, relative), rows, depth)
        return shape

    def describe(self):
        return f"sequence of {len(self.layers)}"


def _sequence(item) -> Sequence:
    return item if isinstance(item, Sequence) else Sequence(layers=(item,))


@dataclass(frozen=True)
class ConcatBranches(Block):
    """Parallel branches on one input, concatenated on channels (Inception)."""

    kind: ClassVar[str] = "concat_branches"
    branches: tuple[Sequence, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "branches",
                           tuple(_sequence(b) for b in _as_layers("", "branches", self.branches)))

    def check(self, path):
        if not self.branches:
            raise SpecError(path, "concat_branches needs at least one branch")

    def children(self):
        return [(f"branches[{i}]", branch) for i, branch in enumerate(self.branches)]

    def trace_children(self, shape, path, rows, depth):
        outs = [branch.trace(shape, _child(path, rel), rows, depth) for rel, branch in self.children()]
        for (rel, _), out in zip(self.children(), outs):
            if len(out) != 3:
                raise SpecError(_child(path, rel), f"concat_branches needs (C, H, W) branch outputs, "
                                                   f"got {show_shape(out)}")
            if out[1:] != outs[0][1:]:
                sizes = ", ".join(show_pair(o[1:]) for o in outs)
                raise SpecError(path, f"concat branches have different spatial sizes: {sizes}")
        return (sum(o[0] for o in outs), *outs[0][1:])

    def describe(self):
        return f"concat of {len(self.branches)} branches"


@dataclass(frozen=True)
class Residual(Block):
    """``body(x) + shortcut(x)``; no shortcut means identity (ResNet)."""

    kind: ClassVar[str] = "residual"
    body: Sequence = field(default_factory=Sequence)
    shortcut: Sequence | None = None

    def __post_init__(self):
        object.__setattr__(self, "body", _sequence(self.body))
        if self.shortcut is not None:
            object.__setattr__(self, "shortcut", _sequence(self.shortcut))

    def children(self):
        kids = [("body", self.body)]
        if self.shortcut is not None:
            kids.append(("shortcut", self.shortcut))
        return kids

    def trace_children(self, shape, path, rows, depth):
        out = self.body.trace(shape, _child(path, "body"), rows, depth)
        skip = shape if self.shortcut is None else self.shortcut.trace(
            shape, _child(path, "shortcut"), rows, depth)
        if out != skip:
            if self.shortcut is None and len(out) == len(skip) and out[0] != skip[0]:
                raise SpecError(path, f"residual add of {skip[0]} and {out[0]} channels without a "
                                      "projection: give the residual a shortcut")
            raise SpecError(path, f"residual add of shapes {show_shape(skip)} (shortcut) and "
                                  f"{show_shape(out)} (body)")
        return out

    def describe(self):
        return "residual" + (" with projection" if self.shortcut is not None else "")


@dataclass(frozen=True)
class DenseConcat(Block):
    """DenseNet: each layer sees everything before it; x = concat(x, layer(x))."""

    kind: ClassVar[str] = "dense_concat"
    layers: tuple[Sequence, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers",
                           tuple(_sequence(b) for b in _as_layers("", "dense_concat", self.layers)))

    def children(self):
        return [(f"layers[{i}]", layer) for i, layer in enumerate(self.layers)]

    def trace_children(self, shape, path, rows, depth):
        for relative, layer in self.children():
            out = layer.trace(shape, _child(path, relative), rows, depth)
            if len(out) != 3 or len(shape) != 3 or out[1:] != shape[1:]:
                raise SpecError(_child(path, relative),
                                f"dense_concat layer output {show_shape(out)} cannot be concatenated "
                                f"with its input {show_shape(shape)}")
            shape = (shape[0] + out[0], *shape[1:])
        return shape

    def describe(self):
        return f"dense concat of {len(self.layers)}"


LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Conv2d, BatchNorm, Activation, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
                GlobalAvgPool, Flatten, Dense, Dropout,
                Sequence, ConcatBranches, Residual, DenseConcat)
}
"""Every layer kind netparity knows. Each backend maps every entry."""

BLOCK_KINDS = frozenset(k for k, cls in LAYER_KINDS.items() if issubclass(cls, Block))


def layer_fields(layer: Layer) -> dict:
    """The layer's own fields (not the kind), for JSON and reports."""
    return {f.name: getattr(layer, f.name) for f in fields(layer)}

