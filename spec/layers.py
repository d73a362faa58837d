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

Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

# Every elementwise function the ``activation`` kind knows, with PyTorch's definitions
# (spec/reference.py computes them; each backend builds exactly these, see the notes there).
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "relu6", "elu", "silu", "hardswish", "hardsigmoid",
               "gelu", "softplus", "softmax")
GELU_APPROXIMATIONS = ("none", "tanh")
MERGES = ("concat", "add", "mul")


def is_int(value) -> bool:
    """A JSON/Python integer: ``True`` and ``"2"`` are not integers here."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _strict_int(value) -> int:
    if not is_int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def pair(value) -> Pair:
    """Accept ``3`` or ``(3, 3)`` (or a JSON list) and return a 2-tuple of integers."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected an integer or a pair of integers, got {value!r}")
        return _strict_int(value[0]), _strict_int(value[1])
    return _strict_int(value), _strict_int(value)


def padding_value(value) -> Pair | Pads:
    """Symmetric padding (``1`` or ``(ph, pw)``) as a pair, or explicit ``(top, bottom, left, right)``
    as a 4-tuple: TensorFlow's 'same' at stride 2 pads one more after than before."""
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return tuple(_strict_int(v) for v in value)
    return pair(value)


def four_sides(padding: Pair | Pads) -> Pads:
    """(top, bottom, left, right) of a symmetric pair or an explicit 4-tuple."""
    if len(padding) == 4:
        return tuple(padding)
    return (padding[0], padding[0], padding[1], padding[1])


def show_padding(padding: Pair | Pads) -> str:
    return show_pair(padding) if len(padding) == 2 else "(" + ", ".join(map(str, padding)) + ")"


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

    def initial_value(self, name: str, shape: Shape, rng, nontrivial: bool):
        """Canonical initial value of one parameter or running statistic (spec/weights.py).

        The default: Xavier-uniform ``weight`` (PyTorch's fans), and biases drawn in
        [-0.2, 0.2] for parity checks (zero for training, ``nontrivial=False``): a zero bias
        would hide a missing one."""
        import numpy as np
        if name == "weight":
            receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-bound, bound, shape)
        return rng.uniform(-0.2, 0.2, shape) if nontrivial else np.zeros(shape)

    # Kinds whose training-mode output is random (dropout, drop_path): lockstep training
    # hands every framework the same masks, drawn by ``draw_mask``.
    random_in_training: ClassVar[bool] = False

    def draw_mask(self, rng, batch: int, output_shape: Shape):
        raise NotImplementedError

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
        if not is_int(value) or value <= 0:
            raise SpecError(path, f"{what} must be a positive integer, got {value!r}")


def _non_negative(path: str, what: str, *values: int) -> None:
    for value in values:
        if not is_int(value) or value < 0:
            raise SpecError(path, f"{what} must be a non-negative integer, got {value!r}")


def _flag(path: str, what: str, value) -> None:
    if not isinstance(value, bool):
        raise SpecError(path, f"{what} must be true or false, got {value!r}")


def _probability(path: str, what: str, value) -> None:
    if not (is_number(value) and 0 <= value < 1):
        raise SpecError(path, f"{what} must be in [0, 1), got {value!r}")


def _positive_number(path: str, what: str, value) -> None:
    if not (is_number(value) and value > 0):
        raise SpecError(path, f"{what} must be positive, got {value!r}")


def _channels_input(kind: str, shape: Shape, path: str) -> None:
    if len(shape) not in (1, 3):
        raise SpecError(path, f"{kind} expects (C,) or (C, H, W), got {show_shape(shape)}")


def _per_channel_vector(values, what: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{what} must be a non-empty list of numbers, got {values!r}")
    for v in values:
        if not is_number(v):
            raise ValueError(f"{what} must hold numbers, got {v!r}")
    return tuple(float(v) for v in values)


def _image_input(kind: str, shape: Shape, path: str) -> None:
    if len(shape) != 3:
        raise SpecError(path, f"{kind} expects a (C, H, W) input, got {show_shape(shape)}"
                        + (" (add no flatten before it)" if len(shape) == 1 else ""))


def _window_fits(kind: str, shape: Shape, kernel: Pair, pads: Pads, path: str) -> None:
    padded = (shape[1] + pads[0] + pads[1], shape[2] + pads[2] + pads[3])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise SpecError(path, f"{kind} kernel {show_pair(kernel)} is larger than the padded "
                              f"input {show_pair(padded)}")


# ---------------------------------------------------------------------------------------
# Leaf layers
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in every framework).

    ``padding`` is symmetric (``1``, ``(ph, pw)``: PyTorch's and MXNet's integer padding) or
    explicit ``(top, bottom, left, right)``. ``groups == in_channels`` is a depthwise
    convolution; ``dilation`` spreads the kernel taps apart.
    """

    kind: ClassVar[str] = "conv2d"
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair | Pads = (0, 0)
    bias: bool = True
    groups: int = 1
    dilation: Pair = (1, 1)

    def __post_init__(self):
        for name in ("kernel", "stride", "dilation"):
            object.__setattr__(self, name, pair(getattr(self, name)))
        object.__setattr__(self, "padding", padding_value(self.padding))

    @property
    def pads(self) -> Pads:
        return four_sides(self.padding)

    @property
    def extent(self) -> Pair:
        """The dilated kernel's size: what one window covers."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    def check(self, path):
        _positive(path, "conv2d out_channels", self.out_channels)
        _positive(path, "conv2d kernel", *self.kernel)
        _positive(path, "conv2d stride", *self.stride)
        _positive(path, "conv2d dilation", *self.dilation)
        _non_negative(path, "conv2d padding", *self.padding)
        _positive(path, "conv2d groups", self.groups)
        _flag(path, "conv2d bias", self.bias)
        if self.out_channels % self.groups:
            raise SpecError(path, f"conv2d out_channels {self.out_channels} is not divisible "
                                  f"by groups {self.groups}")

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        if shape[0] % self.groups:
            raise SpecError(path, f"conv2d input channels {shape[0]} are not divisible by "
                                  f"groups {self.groups}")
        pads = self.pads
        _window_fits(self.kind, shape, self.extent, pads, path)
        h = (shape[1] + pads[0] + pads[1] - self.extent[0]) // self.stride[0] + 1
        w = (shape[2] + pads[2] + pads[3] - self.extent[1]) // self.stride[1] + 1
        return (self.out_channels, h, w)

    def parameter_shapes(self, shape):
        weight = (self.out_channels, shape[0] // self.groups, *self.kernel)
        return {"weight": weight, "bias": (self.out_channels,)} if self.bias else {"weight": weight}

    def describe(self):
        text = f"conv2d {self.out_channels}@{show_pair(self.kernel)}"
        if self.stride != (1, 1):
            text += f" /{show_pair(self.stride)}"
        if any(self.padding):
            text += f" pad {show_padding(self.padding)}"
        if self.dilation != (1, 1):
            text += f" dilation {show_pair(self.dilation)}"
        if self.groups != 1:
            text += f" groups {self.groups}"
        return text + ("" if self.bias else " no bias")


@dataclass(frozen=True)
class Pad2d(Layer):
    """Explicit zero padding of H and W: ``(top, bottom, left, right)``, or symmetric."""

    kind: ClassVar[str] = "pad2d"
    padding: Pair | Pads = (0, 0)

    def __post_init__(self):
        object.__setattr__(self, "padding", padding_value(self.padding))

    @property
    def pads(self) -> Pads:
        return four_sides(self.padding)

    def check(self, path):
        _non_negative(path, "pad2d padding", *self.padding)

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        top, bottom, left, right = self.pads
        return (shape[0], shape[1] + top + bottom, shape[2] + left + right)

    def describe(self):
        return f"pad2d {show_padding(self.padding)}"


@dataclass(frozen=True)
class Crop2d(Layer):
    """Cropping of H and W: ``(top, bottom, left, right)`` rows and columns removed, or a
    symmetric pair ``(vertical, horizontal)`` (Keras' Cropping2D, NASNet's reductions)."""

    kind: ClassVar[str] = "crop2d"
    crop: Pair | Pads = (0, 0)

    def __post_init__(self):
        object.__setattr__(self, "crop", padding_value(self.crop))

    @property
    def crops(self) -> Pads:
        return four_sides(self.crop)

    def check(self, path):
        _non_negative(path, "crop2d crop", *self.crop)

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        top, bottom, left, right = self.crops
        h, w = shape[1] - top - bottom, shape[2] - left - right
        if h < 1 or w < 1:
            raise SpecError(path, f"crop2d {show_padding(self.crop)} leaves {h}x{w} of the "
                                  f"{show_pair(shape[1:])} input (at least 1x1 must remain)")
        return (shape[0], h, w)

    def describe(self):
        return f"crop2d {show_padding(self.crop)}"


def _norm_initial_value(name: str, shape: Shape, rng, nontrivial: bool):
    """Norm layers' gamma (``weight``) and variance around 1, beta and mean around 0."""
    import numpy as np
    if not nontrivial:
        return np.ones(shape) if name in ("weight", "running_var") else np.zeros(shape)
    if name in ("weight", "running_var"):
        return rng.uniform(0.5, 1.5, shape)
    return rng.uniform(-0.2, 0.2, shape)


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over channels (images) or features (flat inputs).

    ``momentum`` is PyTorch's: running = (1 - momentum) * running + momentum * batch.
    MXNet and Keras spell the same thing ``1 - momentum``. ``scale=False`` fixes gamma at 1
    and ``center=False`` beta at 0: neither is then a weight (Keras' scale/center, MXNet's
    fix_gamma).
    """

    kind: ClassVar[str] = "batchnorm"
    eps: float = 1e-5
    momentum: float = 0.1
    scale: bool = True
    center: bool = True

    def check(self, path):
        _positive_number(path, "batchnorm eps", self.eps)
        if not (is_number(self.momentum) and 0 <= self.momentum <= 1):
            raise SpecError(path, f"batchnorm momentum must be in [0, 1], got {self.momentum!r}")
        _flag(path, "batchnorm scale", self.scale)
        _flag(path, "batchnorm center", self.center)

    def output_shape(self, shape, path):
        _channels_input(self.kind, shape, path)
        return shape

    def parameter_shapes(self, shape):
        names = [n for n, on in (("weight", self.scale), ("bias", self.center)) if on]
        return {name: (shape[0],) for name in names}

    def running_stat_shapes(self, shape):
        return {"running_mean": (shape[0],), "running_var": (shape[0],)}

    def initial_value(self, name, shape, rng, nontrivial):
        return _norm_initial_value(name, shape, rng, nontrivial)

    def describe(self):
        text = f"batchnorm eps {self.eps:g} momentum {self.momentum:g}"
        fixed = [what for what, on in (("scale", self.scale), ("center", self.center)) if not on]
        return text + (f" no {' no '.join(fixed)}" if fixed else "")


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the channels of each pixel of a (C, H, W) input (ConvNeXt's
    LayerNorm2d) or over the features of a flat (F,) input, with a learned per-channel
    ``weight`` and ``bias``; the variance is the biased one, as in every framework."""

    kind: ClassVar[str] = "layernorm"
    eps: float = 1e-5

    def check(self, path):
        _positive_number(path, "layernorm eps", self.eps)

    def output_shape(self, shape, path):
        _channels_input(self.kind, shape, path)
        return shape

    def parameter_shapes(self, shape):
        return {"weight": (shape[0],), "bias": (shape[0],)}

    def initial_value(self, name, shape, rng, nontrivial):
        return _norm_initial_value(name, shape, rng, nontrivial)

    def describe(self):
        return f"layernorm eps {self.eps:g}"


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise function (PyTorch's definitions), or ``softmax`` over the channels of
    each pixel / the features. ``negative_slope`` is for leaky_relu, ``alpha`` for elu and
    ``approximate`` ("none" or "tanh") for gelu; they must keep their defaults otherwise."""

    kind: ClassVar[str] = "activation"
    function: str = "relu"
    negative_slope: float = 0.01
    alpha: float = 1.0
    approximate: str = "none"

    def check(self, path):
        if self.function not in ACTIVATIONS:
            raise SpecError(path, f"unknown activation {self.function!r}; "
                                  f"known: {', '.join(ACTIVATIONS)}")
        for name, owner, default in (("negative_slope", "leaky_relu", 0.01), ("alpha", "elu", 1.0),
                                     ("approximate", "gelu", "none")):
            value = getattr(self, name)
            if self.function != owner and value != default:
                raise SpecError(path, f"activation field {name} is for {owner}, not {self.function}")
        if not is_number(self.negative_slope):
            raise SpecError(path, f"leaky_relu negative_slope must be a number, got {self.negative_slope!r}")
        if not is_number(self.alpha):
            raise SpecError(path, f"elu alpha must be a number, got {self.alpha!r}")
        if self.approximate not in GELU_APPROXIMATIONS:
            raise SpecError(path, f"gelu approximate must be one of {', '.join(GELU_APPROXIMATIONS)}, "
                                  f"got {self.approximate!r}")

    def output_shape(self, shape, path):
        if self.function == "softmax":
            _channels_input("softmax", shape, path)
        return shape

    def describe(self):
        if self.function == "leaky_relu":
            return f"leaky_relu {self.negative_slope:g}"
        if self.function == "elu" and self.alpha != 1.0:
            return f"elu {self.alpha:g}"
        if self.function == "gelu" and self.approximate != "none":
            return f"gelu ({self.approximate})"
        return self.function


@dataclass(frozen=True)
class _PerChannelWeight(Layer):
    """A layer with one learned value per channel (or feature): ``weight`` of shape (C,), drawn
    in ``initial_range`` for parity checks and set to ``training_start`` for training."""

    initial_range: ClassVar[tuple[float, float]] = (0.5, 1.5)
    training_start: ClassVar[float] = 1.0

    def output_shape(self, shape, path):
        _channels_input(self.kind, shape, path)
        return shape

    def parameter_shapes(self, shape):
        return {"weight": (shape[0],)}

    def initial_value(self, name, shape, rng, nontrivial):
        import numpy as np
        return rng.uniform(*self.initial_range, shape) if nontrivial else np.full(shape, self.training_start)


@dataclass(frozen=True)
class PReLU(_PerChannelWeight):
    """max(0, x) + weight * min(0, x) with a learned slope per channel (PyTorch's nn.PReLU(C))."""

    kind: ClassVar[str] = "prelu"
    # PyTorch's and MXNet's default slope is 0.25; parity checks want distinct ones.
    initial_range: ClassVar[tuple[float, float]] = (0.05, 0.45)
    training_start: ClassVar[float] = 0.25


@dataclass(frozen=True)
class ChannelScale(_PerChannelWeight):
    """x * weight with a learned multiplier per channel (ConvNeXt's layer scale)."""

    kind: ClassVar[str] = "channel_scale"


@dataclass(frozen=True)
class Normalize(Layer):
    """Fixed per-channel ``(x - mean) / std``, written in the spec (not weights): the input
    preprocessing that Keras applications and MXNet graphs carry inside the model. ``mean``
    and ``std`` hold one value per channel, or one value for all."""

    kind: ClassVar[str] = "normalize"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        object.__setattr__(self, "mean", _per_channel_vector(self.mean, "normalize mean"))
        object.__setattr__(self, "std", _per_channel_vector(self.std, "normalize std"))

    def check(self, path):
        if any(v <= 0 for v in self.std):
            raise SpecError(path, f"normalize std must be positive, got {list(self.std)}")

    def output_shape(self, shape, path):
        _channels_input(self.kind, shape, path)
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, shape[0]):
                raise SpecError(path, f"normalize {what} has {len(values)} values for {shape[0]} channels "
                                      "(give one per channel, or one for all)")
        return shape

    def describe(self):
        return "normalize"


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
        _flag(path, f"{self.kind} ceil_mode", self.ceil_mode)
        for k, p in zip(self.kernel, self.padding):
            # PyTorch refuses this too: a window could then lie entirely in padding.
            if p > k // 2:
                raise SpecError(path, f"{self.kind} padding {show_pair(self.padding)} exceeds half "
                                      f"the kernel {show_pair(self.kernel)}")

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        _window_fits(self.kind, shape, self.kernel, four_sides(self.padding), path)
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

    def check(self, path):
        super().check(path)
        _flag(path, "avgpool2d count_include_pad", self.count_include_pad)


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
class _GlobalPool(Layer):
    """Over all of H and W: flat (C,) as Keras gives it, or (C, 1, 1) with ``keepdims`` (what a
    squeeze-and-excitation gate multiplies by)."""

    keepdims: bool = False

    def check(self, path):
        _flag(path, f"{self.kind} keepdims", self.keepdims)

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        return (shape[0], 1, 1) if self.keepdims else (shape[0],)

    def describe(self):
        return self.kind + (" keepdims" if self.keepdims else "")


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    kind: ClassVar[str] = "global_avgpool"


@dataclass(frozen=True)
class GlobalMaxPool(_GlobalPool):
    kind: ClassVar[str] = "global_maxpool"


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
        _flag(path, "dense bias", self.bias)

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
    """Inverted dropout: in training, each element is zeroed with probability ``p`` and the
    rest scaled by 1 / (1 - p); the identity in eval mode."""

    kind: ClassVar[str] = "dropout"
    p: float = 0.5
    random_in_training: ClassVar[bool] = True

    def check(self, path):
        _probability(path, "dropout p", self.p)

    def output_shape(self, shape, path):
        return shape

    def draw_mask(self, rng, batch, output_shape):
        import numpy as np
        keep = 1.0 - float(self.p)
        drawn = rng.random((int(batch), *output_shape)) < keep
        return drawn.astype(np.float32) * np.float32(1.0 / keep)

    def describe(self):
        return f"dropout {self.p:g}"


@dataclass(frozen=True)
class DropPath(Layer):
    """Stochastic depth (torchvision's StochasticDepth, mode "row"): in training each example's
    whole input is zeroed with probability ``p`` and otherwise scaled by 1 / (1 - p); the
    identity in eval mode."""

    kind: ClassVar[str] = "drop_path"
    p: float = 0.0
    random_in_training: ClassVar[bool] = True

    def check(self, path):
        _probability(path, "drop_path p", self.p)

    def output_shape(self, shape, path):
        return shape

    def draw_mask(self, rng, batch, output_shape):
        """One draw per example, broadcast over the example: the mask has the output's shape
        so that it travels like a dropout mask."""
        import numpy as np
        keep = 1.0 - float(self.p)
        drawn = (rng.random(int(batch)) < keep).astype(np.float32) * np.float32(1.0 / keep)
        return np.broadcast_to(drawn.reshape(-1, *([1] * len(output_shape))),
                               (int(batch), *output_shape)).astype(np.float32)

    def describe(self):
        return f"drop_path {self.p:g}"


@dataclass(frozen=True)
class Identity(Layer):
    """The input as it is: a branch that passes its input on (a skip connection)."""

    kind: ClassVar[str] = "identity"

    def output_shape(self, shape, path):
        return shape


@dataclass(frozen=True)
class ChannelShuffle(Layer):
    """ShuffleNet's shuffle: channels viewed as (groups, C / groups), transposed, flattened
    back, so output channel ``j * groups + g`` is input channel ``g * (C / groups) + j``."""

    kind: ClassVar[str] = "channel_shuffle"
    groups: int = 2

    def check(self, path):
        _positive(path, "channel_shuffle groups", self.groups)

    def output_shape(self, shape, path):
        _image_input(self.kind, shape, path)
        if shape[0] % self.groups:
            raise SpecError(path, f"channel_shuffle of {shape[0]} channels into {self.groups} groups: "
                                  "channels must be divisible by groups")
        return shape

    def describe(self):
        return f"channel_shuffle {self.groups}"


@dataclass(frozen=True)
class ChannelSlice(Layer):
    """Channels ``start`` to ``stop`` (exclusive) of the input (ShuffleNetV2's split)."""

    kind: ClassVar[str] = "channel_slice"
    start: int = 0
    stop: int = 1

    def check(self, path):
        _non_negative(path, "channel_slice start", self.start)
        _positive(path, "channel_slice stop", self.stop)
        if self.stop <= self.start:
            raise SpecError(path, f"channel_slice stop {self.stop} must be greater than start {self.start}")

    def output_shape(self, shape, path):
        _channels_input(self.kind, shape, path)
        if self.stop > shape[0]:
            raise SpecError(path, f"channel_slice stop {self.stop} is beyond the {shape[0]} input channels")
        return (self.stop - self.start, *shape[1:])

    def describe(self):
        return f"channels {self.start}:{self.stop}"


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
    """Layers one after another. ``parameter_order`` (optional) lists the layers' indices in
    the order their weights appear in the canonical layout, when that is not execution
    order: PyTorch orders a state_dict by registration, and torchvision's ConvNeXt block
    registers its layer scale before the convolution it follows. Weights then move by order
    between torchvision and netparity."""

    kind: ClassVar[str] = "sequence"
    layers: tuple[Layer, ...] = ()
    parameter_order: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", _as_layers("", "sequence", self.layers))
        object.__setattr__(self, "parameter_order", tuple(self.parameter_order))

    def check(self, path):
        order = self.parameter_order
        if order and (any(not is_int(i) for i in order) or sorted(order) != list(range(len(self.layers)))):
            raise SpecError(path, f"sequence parameter_order {list(order)} is not an ordering of its "
                                  f"{len(self.layers)} layers' indices")

    def weight_children(self):
        children = self.children()
        return [children[i] for i in self.parameter_order] if self.parameter_order else children

    def children(self):
        return [(f"layers[{i}]", layer) for i, layer in enumerate(self.layers)]

    def trace_children(self, shape, path, rows, depth):
        for relative, layer in self.children():
            shape = layer.trace(shape, _child(path, relative), rows, depth)
        return shape

    def describe(self):
        return f"sequence of {len(self.layers)}"


def _merge_shapes(merge: str, outs: list[Shape], labels: list[str], path: str) -> Shape:
    """The output shape of merging branch outputs by concat, add or mul."""
    if merge == "concat":
        if all(len(o) == 1 for o in outs):
            return (sum(o[0] for o in outs),)
        for label, out in zip(labels, outs):
            if len(out) != 3:
                raise SpecError(_child(path, label), f"concat needs all (C, H, W) or all flat branch outputs, "
                                                     f"got {', '.join(show_shape(o) for o in outs)}")
        if any(o[1:] != outs[0][1:] for o in outs):
            sizes = ", ".join(show_pair(o[1:]) for o in outs)
            raise SpecError(path, f"concat branches have different spatial sizes: {sizes}")
        return (sum(o[0] for o in outs), *outs[0][1:])
    full = max(outs, key=_size)
    for label, out in zip(labels, outs):
        gate = len(full) == 3 and out == (full[0], 1, 1)
        if out != full and not gate:
            raise SpecError(path, f"{merge} of shapes {', '.join(show_shape(o) for o in outs)}: each branch "
                                  f"must give {show_shape(full)}, or ({full[0]}, 1, 1) to broadcast over it "
                                  f"({label} gives {show_shape(out)})")
    return full


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
class Branches(Block):
    """Parallel branches on one input, merged by ``concat`` (on channels, or features),
    ``add`` or ``mul``. For add and mul a (C, 1, 1) output broadcasts over a (C, H, W) one:
    squeeze-and-excitation is ``mul`` of an ``identity`` branch and a gate branch. A branch
    is any layer: a sequence, a single layer, or ``identity``."""

    kind: ClassVar[str] = "branches"
    branches: tuple[Layer, ...] = ()
    merge: str = "concat"

    def __post_init__(self):
        object.__setattr__(self, "branches", _as_layers("", "branches", self.branches))

    def check(self, path):
        if self.merge not in MERGES:
            raise SpecError(path, f"branches merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if not self.branches:
            raise SpecError(path, "branches needs at least one branch")

    def children(self):
        return [(f"branches[{i}]", branch) for i, branch in enumerate(self.branches)]

    def trace_children(self, shape, path, rows, depth):
        kids = self.children()
        outs = [branch.trace(shape, _child(path, rel), rows, depth) for rel, branch in kids]
        return _merge_shapes(self.merge, outs, [rel for rel, _ in kids], path)

    def describe(self):
        return f"{self.merge} of {len(self.branches)} branches"


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
    for cls in (Conv2d, Pad2d, Crop2d, BatchNorm, LayerNorm, Activation, PReLU, ChannelScale, Normalize,
                MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool, GlobalMaxPool, Flatten, Dense,
                Dropout, DropPath, Identity, ChannelShuffle, ChannelSlice,
                Sequence, Branches, ConcatBranches, Residual, DenseConcat)
}
"""Every layer kind netparity knows. Each backend maps every entry."""

BLOCK_KINDS = frozenset(k for k, cls in LAYER_KINDS.items() if issubclass(cls, Block))


def layer_fields(layer: Layer) -> dict:
    """The layer's own fields (not the kind), for JSON and reports."""
    return {f.name: getattr(layer, f.name) for f in fields(layer)}

