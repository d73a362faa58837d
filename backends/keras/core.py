"""Keras 3 backend: a spec becomes a functional ``keras.Model``, channels_last.

Keras differs from PyTorch in layout and in several layer semantics (see
docs/framework-differences.md); this module closes each gap explicitly:

- Tensors are NHWC inside the model, because TensorFlow on CPU runs NCHW
  convolutions and pooling only through oneDNN. The public functions take and
  return NCHW, and flat tensors in PyTorch's (C, H, W) flatten order.
- ``Flatten`` of an NHWC tensor orders features (H, W, C). The build record
  notes which flat tensors are such flattenings. Elementwise and per-feature
  layers keep that order (ORDER_KEEPING_KINDS): the weights of dense,
  batchnorm, layernorm, prelu and channel_scale layers reading them, and the
  constants of normalize, are permuted on the way in and out. Layers that pick
  features by PyTorch's index (channel_slice) and merges of flat tensors in
  different orders (branches, residual, concat) reorder to (C, H, W) first.
  Captured outputs are put back into (C, H, W) order.
- Padding is always explicit with a 'valid' op: Keras' 'same' pads stride-2
  windows asymmetrically, zero padding leaks into max pools over negative
  inputs, Keras has no ceil mode and no count_include_pad. The pooling
  geometry comes from ``spec.pooling`` so every backend uses the same numbers.
- Where a Keras layer or op of the same name computes something else than the
  spec's (PyTorch's) definition, or refuses an argument PyTorch takes, the
  builder says so where it chooses (gelu's defaults, negative leaky slopes,
  Conv2D's refusal of stride with dilation, Normalization's sqrt(variance)).

Custom layers use ``keras.ops`` only, so the model runs on the tensorflow,
jax and torch Keras backends.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from typing import Any, Callable

import numpy as np

from .. import training
from ...spec.layers import Layer, Row
from ...spec.pooling import adaptive_pool_matrix, avg_pool_divisor, pool_padding
from ..common import (BackendError, BuildRecord, RECORD_ATTRIBUTE, as_input, check_device, check_run_options,
                     check_weights, child_path, parameter_rows, record_of)
from ..frameworks import import_keras
from . import layout

keras = import_keras()
ops = keras.ops

NAME = "keras"
FRAMEWORK = "Keras 3"

DATA_FORMAT = "channels_last"
DTYPE = "float32"  # explicit, so a global mixed-precision policy cannot change the function
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _backend() -> str:
    return keras.backend.backend()


def _backend_version() -> str:
    name = _backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(name)
    if module is None:
        return name
    return f"{name} {importlib.import_module(module).__version__}"


def version() -> str:
    return f"{keras.__version__} ({_backend_version()})"


def runtime_details() -> dict:
    """What a benchmark row records besides version() (Keras: which backend runs it)."""
    return {"keras_backend": _backend()}


def layer_name(path: str, suffix: str = "") -> str:
    """A Keras-safe layer name from a spec path: ``blocks[3].layers[1]`` -> ``blocks_3_layers_1``."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_")
    return f"{name}_{suffix}" if suffix else name


# ---------------------------------------------------------------------------------------
# Custom layers (keras.ops only: they must run on every Keras backend)
# ---------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="netparity")
class ConstantPad2D(keras.layers.Layer):
    """Pads H and W of an NHWC tensor with a constant.

    With ``-inf`` a 'valid' max pool sees PyTorch's implicit padding, which
    never wins a window; ``ZeroPadding2D`` would win it over negative inputs.
    """

    def __init__(self, padding, value: float, **kwargs):
        super().__init__(**kwargs)
        (top, bottom), (left, right) = padding
        self.pads = (int(top), int(bottom), int(left), int(right))
        self.value = float(value)

    def call(self, x):
        top, bottom, left, right = self.pads
        return ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="constant",
                       constant_values=self.value)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        top, bottom, left, right = self.pads
        return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        top, bottom, left, right = self.pads
        return {**super().get_config(), "padding": ((top, bottom), (left, right)), "value": self.value}


@keras.saving.register_keras_serializable(package="netparity")
class ConstantScale(keras.layers.Layer):
    """Multiplies each output position of an average pool by a fixed factor.

    Keras' 'valid' average pool divides every window by the kernel area;
    PyTorch divides border windows by a smaller count when ceil mode clips
    them or count_include_pad is False. The factor area / divisor turns the
    one into the other. It is a constant, not a weight, so that parameter
    counts stay PyTorch's.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, dtype=np.float32)[None, :, :, None]  # (1, H, W, 1)

    def call(self, x):
        return x * ops.convert_to_tensor(self.scale, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale[0, :, :, 0].tolist()}


@keras.saving.register_keras_serializable(package="netparity")
class AdaptiveAvgPool2D(keras.layers.Layer):
    """PyTorch's adaptive average pool on NHWC, as the fixed linear map it is.

    Keras has no adaptive pool; its windows (which overlap when the sizes do
    not divide) are rows of ``spec.pooling.adaptive_pool_matrix``, applied to
    H and then W.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.rows = self.cols = None

    def build(self, input_shape):
        _, h, w, _ = input_shape
        if h is None or w is None:
            raise BackendError("keras: adaptive_avgpool2d needs a static input height and width")
        self.rows = adaptive_pool_matrix(int(h), self.output_size[0]).astype(np.float32)
        self.cols = adaptive_pool_matrix(int(w), self.output_size[1]).astype(np.float32)

    def call(self, x):
        rows = ops.convert_to_tensor(self.rows, dtype=x.dtype)
        cols = ops.convert_to_tensor(self.cols, dtype=x.dtype)
        x = ops.einsum("ih,nhwc->niwc", rows, x)
        return ops.einsum("jw,niwc->nijc", cols, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


class MaskSlot:
    """Where ``train_step`` puts one dropout layer's mask while it runs. A plain object, so
    Keras' attribute tracking leaves it alone; it holds a tensor only during a step (or
    while a tf.function traces one, when the tensor is the traced argument)."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None


@keras.saving.register_keras_serializable(package="netparity")
class MaskedDropout(keras.layers.Layer):
    """Dropout whose mask comes from outside (``lockstep_dropout=True``).

    With ``training=True`` the input is multiplied by the mask in ``self.slot``
    (NHWC, or the input's flat feature order; 0 or 1/(1-p)); otherwise it is the
    identity, like keras Dropout. The mask is an argument of the traced train
    step, not a variable, so batch sizes may change between steps.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.slot = MaskSlot()

    def call(self, x, training=None):
        if not training:
            return x
        if self.slot.value is None:
            raise BackendError("keras: a lockstep_dropout model ran in training mode without a dropout mask; "
                               "train it with train_step(..., dropout_masks=...)")
        return x * ops.cast(self.slot.value, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="netparity")
class Subsample2D(keras.layers.Layer):
    """Every ``strides``-th row and column of an NHWC tensor, from the first.

    ``Conv2D`` refuses strides > 1 together with dilation_rate > 1 (keras 3.15.1
    ``BaseConv.__init__`` raises ValueError; read in keras/src/layers/convolutional/
    base_conv.py). A strided convolution's output is the stride-1 output at every
    stride-th position, so a stride-1 dilated Conv2D followed by this slice is the same
    function exactly (at stride**2 times the arithmetic). Keras' own TensorFlow backend
    computes a strided dilated ``DepthwiseConv2D`` the same way
    (``_depthwise_conv_stride_dilation_decomposition`` in keras/src/backend/tensorflow/nn.py).
    """

    def __init__(self, strides, **kwargs):
        super().__init__(**kwargs)
        self.strides = (int(strides[0]), int(strides[1]))

    def call(self, x):
        sh, sw = self.strides
        return x[:, ::sh, ::sw, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        sh, sw = self.strides
        return (n, None if h is None else -(-h // sh), None if w is None else -(-w // sw), c)

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


@keras.saving.register_keras_serializable(package="netparity")
class SignedLeakyReLU(keras.layers.Layer):
    """PyTorch's leaky_relu for a negative slope: max(0, x) + slope * min(0, x).

    ``keras.layers.LeakyReLU`` (and ``ReLU(negative_slope=...)``) raise ValueError for a
    negative slope (keras 3.15.1 layers/activations/leaky_relu.py); PyTorch accepts any.
    relu(x) - slope * relu(-x) is the definition term by term, on every Keras backend.
    """

    def __init__(self, negative_slope: float, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def call(self, x):
        return ops.relu(x) - ops.cast(self.negative_slope, x.dtype) * ops.relu(-x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@keras.saving.register_keras_serializable(package="netparity")
class GELU(keras.layers.Layer):
    """GELU with the approximation chosen explicitly.

    The defaults disagree inside Keras 3.15.1: ``keras.activations.gelu`` (what
    ``Activation("gelu")`` calls) has ``approximate=False`` (exact, erf), but
    ``keras.ops.gelu`` has ``approximate=True`` (tanh). Measured at x = 1:
    Activation("gelu") 0.8413447 (exact 0.8413447), ops.gelu 0.8411920 (tanh formula
    0.8411920). This layer passes the spec's flag, so neither default matters.
    """

    def __init__(self, approximate: bool, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, x):
        return ops.gelu(x, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="netparity")
class ChannelScale(keras.layers.Layer):
    """x * gamma with a learned multiplier per channel (the last axis): ConvNeXt's layer
    scale. Keras has no such public layer (keras.applications' ConvNeXt defines its own
    ``LayerScale``, with the same weight name ``gamma``); this is that layer, ones at start."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones", trainable=True)

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="netparity")
class FixedNormalize(keras.layers.Layer):
    """(x - mean) / std over the last axis with constants (not variables).

    Not ``keras.layers.Normalization(mean, variance)``: it divides by
    max(sqrt(variance), 1e-7) (keras 3.15.1 layers/preprocessing/normalization.py), so
    std would travel as its square and come back through a float32 sqrt. ``mean`` and
    ``std`` are per feature in the input's own order (length 1: all features).
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def call(self, x):
        return (x - ops.convert_to_tensor(self.mean, dtype=x.dtype)) / ops.convert_to_tensor(self.std, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist(), "std": self.std.tolist()}


@keras.saving.register_keras_serializable(package="netparity")
class ChannelSlice(keras.layers.Layer):
    """Channels (the last axis) ``start`` to ``stop``: ShuffleNetV2's split. Keras has no
    slicing layer; ``Lambda`` would not run unchanged on every backend nor serialise."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------

Chw = tuple[int, int, int]


# Kinds whose flat output is in the same feature order as their flat input: elementwise
# (activation - softmax included, whose sum over all features ignores their order -,
# dropout, drop_path, identity), per-feature with weights or constants permuted into the
# input's order (batchnorm, layernorm, prelu, channel_scale, normalize), and flatten of an
# already flat input.
ORDER_KEEPING_KINDS = frozenset({"activation", "dropout", "drop_path", "identity", "flatten", "batchnorm",
                                 "layernorm", "prelu", "channel_scale", "normalize"})


class BuildContext:
    """What a builder needs besides its layer: names, the record, child building.

    Tracks which flat tensors hold an (H, W, C)-ordered flattening and of
    which (C, H, W) shape, keyed by tensor identity (the tensors stay alive in
    the record, so identities are not reused).
    """

    def __init__(self, record: BuildRecord, dtype: str = DTYPE):
        self.record = record
        self.dtype = dtype  # every layer's dtype policy: float32, or mixed_bfloat16
        self.rows = record.rows
        self._hwc_flat: dict[int, Chw] = {}
        self._alive: list = []
        record.extra.update(tensors={}, helpers={}, hwc_flat={}, input_hwc_flat={},
                            data_format=DATA_FORMAT)

    # -- layouts ----------------------------------------------------------------------
    def hwc_flat(self, tensor) -> Chw | None:
        return self._hwc_flat.get(id(tensor))

    def set_hwc_flat(self, tensor, chw: Chw | None) -> None:
        if chw is not None:
            self._hwc_flat[id(tensor)] = tuple(chw)
            self._alive.append(tensor)

    # -- layers -----------------------------------------------------------------------
    def main(self, path: str, native):
        """The Keras layer that computes (and holds the weights of) ``path``."""
        self.record.layers[path] = native
        return native

    def helper(self, path: str, suffix: str, native_type, *args, **kwargs):
        """A helper layer (padding, rescaling) named after ``path``."""
        native = native_type(*args, name=layer_name(path, suffix), dtype=self.dtype, **kwargs)
        self.record.extra["helpers"].setdefault(path, []).append(native)
        return native

    # -- walking ----------------------------------------------------------------------
    def build(self, path: str, layer: Layer, x):
        row = self.rows[path]
        input_layout = self.hwc_flat(x)
        if input_layout is not None:
            self.record.extra["input_hwc_flat"][path] = input_layout
        out = LAYER_BUILDERS[layer.kind](layer, row, x, path, self)
        # Elementwise and per-feature layers keep their input's feature order (the
        # per-feature ones hold their weights and constants in that order too).
        if (self.hwc_flat(out) is None and len(row.input_shape) == 1 and len(row.output_shape) == 1
                and layer.kind in ORDER_KEEPING_KINDS):
            self.set_hwc_flat(out, input_layout)
        self.record.extra["tensors"][path] = out
        if self.hwc_flat(out) is not None:
            self.record.extra["hwc_flat"][path] = self.hwc_flat(out)
        return out

    def child(self, path: str, relative: str, layer: Layer, x):
        return self.build(child_path(path, relative), layer, x)

    def to_chw_flat(self, path: str, suffix: str, x):
        """Reorder an (H, W, C)-flattened tensor into PyTorch's (C, H, W) order."""
        c, h, w = self.hwc_flat(x)
        x = self.helper(path, f"{suffix}_hwc", keras.layers.Reshape, (h, w, c))(x)
        x = self.helper(path, f"{suffix}_chw", keras.layers.Permute, (3, 1, 2))(x)
        return self.helper(path, f"{suffix}_flat", keras.layers.Flatten, data_format=DATA_FORMAT)(x)


Builder = Callable[[Layer, Row, Any, str, BuildContext], Any]


def _identity(path, ctx, x):
    return ctx.main(path, keras.layers.Identity(name=layer_name(path), dtype=ctx.dtype))(x)


def _is_depthwise(layer, in_channels: int) -> bool:
    """groups == in_channels (> 1): built as ``keras.layers.DepthwiseConv2D``."""
    return layer.groups == in_channels and layer.groups > 1


def _conv2d(layer, row, x, path, ctx):
    """Conv2D, or DepthwiseConv2D when groups == in_channels, always 'valid' after an
    explicit ZeroPadding2D.

    Padding: ZeroPadding2D(((top, bottom), (left, right))) + 'valid' is PyTorch's padding
    for symmetric and explicit 4-sided pads alike ('same' pads stride-2 windows
    (lo, hi) = (t//2, t - t//2): docs/framework-differences.md row 2).

    Depthwise: ``DepthwiseConv2D`` (kernel (kh, kw, C, multiplier), output channel
    c * multiplier + m, as PyTorch's groups == C convolution orders them) rather than
    ``Conv2D(groups=C)``: it is the layer Keras' own MobileNet/EfficientNet use (so an
    imported Keras model has it), and on the TensorFlow backend Keras 3.15.1 runs every
    grouped Conv2D through an XLA-compiled function ("grouped convolutions are broken on
    CPU without XLA", keras/src/backend/tensorflow/nn.py ``conv``): measured on this
    2-core CPU, 3x3 over 32 channels at 56x56, batch 8, as a tf.function: DepthwiseConv2D
    1.5 ms, Conv2D(groups=32) 25.5 ms, outputs equal to 9e-8. Other group counts have
    only ``Conv2D(groups=...)`` (kernel (kh, kw, C/groups, out), PyTorch's grouping).

    Dilation with stride > 1: Conv2D refuses the pair (ValueError in keras 3.15.1
    BaseConv.__init__), so it runs at stride 1 and ``Subsample2D`` keeps every
    stride-th output: the same numbers exactly. DepthwiseConv2D accepts the pair
    (TensorFlow: Keras decomposes it the same way itself; jax and torch natively).
    """
    top, bottom, left, right = layer.pads
    if top or bottom or left or right:
        x = ctx.helper(path, "pad", keras.layers.ZeroPadding2D, ((top, bottom), (left, right)),
                       data_format=DATA_FORMAT)(x)
    common = dict(padding="valid", use_bias=layer.bias, dilation_rate=layer.dilation, data_format=DATA_FORMAT,
                  name=layer_name(path), dtype=ctx.dtype)
    if _is_depthwise(layer, row.input_shape[0]):
        conv = keras.layers.DepthwiseConv2D(layer.kernel, strides=layer.stride,
                                            depth_multiplier=layer.out_channels // layer.groups, **common)
        return ctx.main(path, conv)(x)
    subsample = max(layer.stride) > 1 and max(layer.dilation) > 1
    conv = keras.layers.Conv2D(layer.out_channels, layer.kernel, strides=(1, 1) if subsample else layer.stride,
                               groups=layer.groups, **common)
    out = ctx.main(path, conv)(x)
    if subsample:
        out = ctx.helper(path, "stride", Subsample2D, layer.stride)(out)
    return out


def _pad2d(layer, row, x, path, ctx):
    top, bottom, left, right = layer.pads
    pad = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), data_format=DATA_FORMAT,
                                     name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, pad)(x)


def _crop2d(layer, row, x, path, ctx):
    top, bottom, left, right = layer.crops
    crop = keras.layers.Cropping2D(((top, bottom), (left, right)), data_format=DATA_FORMAT,
                                   name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, crop)(x)


def _batchnorm(layer, row, x, path, ctx):
    # scale=False / center=False: Keras then creates no gamma / beta variable at all
    # (keras 3.15.1 BatchNormalization.build), which is the spec's "not a weight".
    norm = keras.layers.BatchNormalization(axis=-1, epsilon=layer.eps, momentum=layout.momentum_to_native(layer.momentum),
                                           scale=layer.scale, center=layer.center,
                                           name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, norm)(x)


def _layernorm(layer, row, x, path, ctx):
    # Over the last axis: the channels of each NHWC pixel (ConvNeXt's LayerNorm2d), or all
    # features of a flat input (their order does not change mean or variance). Keras'
    # default epsilon is 1e-3, PyTorch's 1e-5: always passed. Keras normalises with the
    # biased variance (ops.moments; F.layer_norm on the torch backend), as PyTorch does.
    norm = keras.layers.LayerNormalization(axis=-1, epsilon=layer.eps, name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, norm)(x)


# Activations whose Keras layer computes PyTorch's function (verified in keras 3.15.1's
# source and measured on linspace(-5, 5) against the formulas):
# - "hard_sigmoid" is relu6(x + 3) / 6 on every backend (tensorflow: relu6(x+3)/6,
#   jax: jax.nn.hard_sigmoid = relu6(x+3)/6, torch: F.hardsigmoid); max diff 0 against
#   relu6(x+3)/6, 0.083 against Keras 2's 0.2x + 0.5. keras.ops.hard_sigmoid's docstring
#   still says 0.2x + 0.5 (cut at +-2.5); the code does not.
# - "hard_silu" (Keras' name for hard swish) is x * hard_sigmoid(x) (torch: F.hardswish);
#   max diff 2.4e-7 against x * relu6(x+3) / 6 (rounding order).
# - "silu" is x * sigmoid(x); ReLU(max_value=6) calls relu6; ELU(alpha) is
#   alpha * (exp(x) - 1) below 0 for any alpha; Softmax(axis=-1) is over the channels of
#   each NHWC pixel (PyTorch's dim 1) or over the features.
# - LeakyReLU's default slope is 0.3 (the layer) / 0.2 (keras.activations), PyTorch's 0.01:
#   the spec's slope is always passed; negative slopes are refused by Keras (SignedLeakyReLU).
NATIVE_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
                      "hardsigmoid": "hard_sigmoid", "hardswish": "hard_silu", "softplus": "softplus"}


def _activation(layer, row, x, path, ctx):
    function = layer.function
    named = dict(name=layer_name(path), dtype=ctx.dtype)
    if function in NATIVE_ACTIVATIONS:
        native = keras.layers.Activation(NATIVE_ACTIVATIONS[function], **named)
    elif function == "relu6":
        native = keras.layers.ReLU(max_value=6.0, **named)
    elif function == "leaky_relu":
        slope = float(layer.negative_slope)
        native = keras.layers.LeakyReLU(negative_slope=slope, **named) if slope >= 0 \
            else SignedLeakyReLU(slope, **named)
    elif function == "elu":
        native = keras.layers.ELU(alpha=float(layer.alpha), **named)
    elif function == "gelu":
        native = GELU(approximate=layer.approximate == "tanh", **named)
    elif function == "softmax":
        native = keras.layers.Softmax(axis=-1, **named)
    else:
        raise BackendError(f"keras: activation {function!r} at {path} has no Keras builder")
    return ctx.main(path, native)(x)


def _prelu(layer, row, x, path, ctx):
    # keras.layers.PReLU computes relu(x) - alpha * relu(-x) = max(0, x) + alpha * min(0, x)
    # (keras 3.15.1 layers/activations/prelu.py), PyTorch's nn.PReLU. Its alpha has the
    # input's shape except on shared_axes: (1, 1, C) on NHWC images with shared_axes=[1, 2],
    # (F,) on flat inputs. Keras starts alpha at 0, PyTorch at 0.25: 0.25 here.
    shared = [1, 2] if len(row.input_shape) == 3 else None
    prelu = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=shared,
                               name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, prelu)(x)


def _channel_scale(layer, row, x, path, ctx):
    return ctx.main(path, ChannelScale(name=layer_name(path), dtype=ctx.dtype))(x)


def _normalize(layer, row, x, path, ctx):
    mean, std = (np.asarray(v, dtype=np.float64) for v in (layer.mean, layer.std))
    chw = ctx.hwc_flat(x)  # a flat input in (H, W, C) order takes its constants in that order
    mean, std = (v if v.size == 1 else layout.features_to_native(v, chw) for v in (mean, std))
    return ctx.main(path, FixedNormalize(mean, std, name=layer_name(path), dtype=ctx.dtype))(x)


def _pool_pads(layer, row) -> tuple[tuple[int, int], tuple[int, int]]:
    _, h, w = row.input_shape
    return tuple(pool_padding(size, layer.kernel[i], layer.stride[i], layer.padding[i], layer.ceil_mode)
                 for i, size in enumerate((h, w)))


def _maxpool2d(layer, row, x, path, ctx):
    pads = _pool_pads(layer, row)
    if any(any(p) for p in pads):
        x = ctx.helper(path, "pad", ConstantPad2D, pads, float("-inf"))(x)
    pool = keras.layers.MaxPooling2D(layer.kernel, strides=layer.stride, padding="valid",
                                     data_format=DATA_FORMAT, name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, pool)(x)


def _avgpool2d(layer, row, x, path, ctx):
    pads = _pool_pads(layer, row)
    if any(any(p) for p in pads):
        x = ctx.helper(path, "pad", keras.layers.ZeroPadding2D, pads, data_format=DATA_FORMAT)(x)
    pool = keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride, padding="valid",
                                         data_format=DATA_FORMAT, name=layer_name(path), dtype=ctx.dtype)
    out = ctx.main(path, pool)(x)
    _, h, w = row.input_shape
    divisor = avg_pool_divisor(h, w, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                               layer.count_include_pad)
    area = layer.kernel[0] * layer.kernel[1]
    if np.any(divisor != area):
        out = ctx.helper(path, "divisor", ConstantScale, area / divisor)(out)
    return out


def _adaptive_avgpool2d(layer, row, x, path, ctx):
    return ctx.main(path, AdaptiveAvgPool2D(layer.output_size, name=layer_name(path), dtype=ctx.dtype))(x)


def _global_pool(native_type):
    def build(layer, row, x, path, ctx):
        # keepdims=True gives (N, 1, 1, C), the NHWC form of PyTorch's (N, C, 1, 1).
        pool = native_type(data_format=DATA_FORMAT, keepdims=layer.keepdims, name=layer_name(path),
                           dtype=ctx.dtype)
        return ctx.main(path, pool)(x)
    return build


def _flatten(layer, row, x, path, ctx):
    out = ctx.main(path, keras.layers.Flatten(data_format=DATA_FORMAT, name=layer_name(path), dtype=ctx.dtype))(x)
    if len(row.input_shape) == 3:
        ctx.set_hwc_flat(out, row.input_shape)
    return out


def _dense(layer, row, x, path, ctx):
    dense = keras.layers.Dense(layer.out_features, use_bias=layer.bias, name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, dense)(x)


def _dropout(layer, row, x, path, ctx):
    if ctx.record.extra.get("lockstep_dropout"):
        return ctx.main(path, MaskedDropout(layer.p, name=layer_name(path), dtype=ctx.dtype))(x)
    return ctx.main(path, keras.layers.Dropout(layer.p, name=layer_name(path), dtype=ctx.dtype))(x)


def _drop_path(layer, row, x, path, ctx):
    """Stochastic depth: ``Dropout(p, noise_shape=(None, 1, 1, 1))`` draws one keep/drop per
    example and scales kept ones by 1/(1-p), as keras.applications' EfficientNet builds its
    drop-connect; identity unless training. With lockstep masks, MaskedDropout (the mask
    is one value per example broadcast over it, so it travels like a dropout mask)."""
    if ctx.record.extra.get("lockstep_dropout"):
        return ctx.main(path, MaskedDropout(layer.p, name=layer_name(path), dtype=ctx.dtype))(x)
    noise_shape = (None,) + (1,) * len(row.input_shape)
    return ctx.main(path, keras.layers.Dropout(layer.p, noise_shape=noise_shape, name=layer_name(path),
                                               dtype=ctx.dtype))(x)


def _identity_layer(layer, row, x, path, ctx):
    return _identity(path, ctx, x)


def _channel_shuffle(layer, row, x, path, ctx):
    # torchvision: view (B, g, C/g, H, W), swap the two channel axes, flatten back. On the
    # NHWC last axis: Reshape to (H, W, g, C/g), Permute to (H, W, C/g, g), Reshape back, as
    # Keras ShuffleNet ports write it.
    c, h, w = row.input_shape
    g = layer.groups
    x = ctx.helper(path, "groups", keras.layers.Reshape, (h, w, g, c // g))(x)
    x = ctx.helper(path, "swap", keras.layers.Permute, (1, 2, 4, 3))(x)
    return ctx.main(path, keras.layers.Reshape((h, w, c), name=layer_name(path), dtype=ctx.dtype))(x)


def _channel_slice(layer, row, x, path, ctx):
    if ctx.hwc_flat(x) is not None:
        # Features start:stop of PyTorch's (C, H, W) order are not contiguous in (H, W, C)
        # order: reorder first; the slice is then in PyTorch's order.
        x = ctx.to_chw_flat(path, "input", x)
    return ctx.main(path, ChannelSlice(layer.start, layer.stop, name=layer_name(path), dtype=ctx.dtype))(x)


def _sequence(layer, row, x, path, ctx):
    children = layer.children()
    if not children:
        return _identity(path, ctx, x)
    for relative, child in children:
        x = ctx.child(path, relative, child, x)
    ctx.main(path, [ctx.record.layers[child_path(path, relative)] for relative, _ in children])
    return x


def _same_order(path, ctx, tensors, labels):
    """Flat operands in one feature order: unchanged when they all share one, else each
    (H, W, C)-ordered one reordered to PyTorch's (C, H, W). Returns (tensors, their layout)."""
    layouts = [ctx.hwc_flat(t) for t in tensors]
    if all(layout == layouts[0] for layout in layouts):
        return tensors, layouts[0]
    return [t if layout is None else ctx.to_chw_flat(path, label, t)
            for t, layout, label in zip(tensors, layouts, labels)], None


# Keras merge layers for the spec's merges. Add and Multiply broadcast a (N, 1, 1, C) gate
# over (N, H, W, C): Merge._compute_elemwise_op_output_shape follows NumPy's rule and call
# is ops.add / ops.multiply (keras 3.15.1 layers/merging/base_merge.py); measured exact
# (difference 0) against x * g and x + g on tensorflow, and checked on jax and torch by
# tests/test_backend_keras_kinds.py.
MERGE_LAYERS = {"add": keras.layers.Add, "mul": keras.layers.Multiply}


def _branches(layer, row, x, path, ctx):
    kids = layer.children()
    outs = [ctx.child(path, relative, child, x) for relative, child in kids]
    labels = [layer_name(relative) for relative, _ in kids]
    if layer.merge == "concat":
        # Concatenated (H, W, C)-ordered flat parts would not form one (H, W, C) order.
        layouts = [ctx.hwc_flat(o) for o in outs]
        outs = [o if layout is None else ctx.to_chw_flat(path, label, o)
                for o, layout, label in zip(outs, layouts, labels)]
        layout = None
    else:
        outs, layout = _same_order(path, ctx, outs, labels)
    if len(outs) == 1:  # Keras merge layers want two inputs or more; one branch is itself
        out = _identity(path, ctx, outs[0])
    elif layer.merge == "concat":
        out = ctx.main(path, keras.layers.Concatenate(axis=-1, name=layer_name(path), dtype=ctx.dtype))(outs)
    else:
        out = ctx.main(path, MERGE_LAYERS[layer.merge](name=layer_name(path), dtype=ctx.dtype))(outs)
    ctx.set_hwc_flat(out, layout)
    return out


def _concat_branches(layer, row, x, path, ctx):
    outs = [ctx.child(path, relative, child, x) for relative, child in layer.children()]
    concat = keras.layers.Concatenate(axis=-1, name=layer_name(path), dtype=ctx.dtype)
    return ctx.main(path, concat)(outs)


def _residual(layer, row, x, path, ctx):
    body = ctx.child(path, "body", layer.body, x)
    skip = x if layer.shortcut is None else ctx.child(path, "shortcut", layer.shortcut, x)
    (body, skip), layout = _same_order(path, ctx, [body, skip], ["body", "shortcut"])
    out = ctx.main(path, keras.layers.Add(name=layer_name(path), dtype=ctx.dtype))([body, skip])
    ctx.set_hwc_flat(out, layout)
    return out


def _dense_concat(layer, row, x, path, ctx):
    concats = []
    for i, (relative, child) in enumerate(layer.children()):
        out = ctx.child(path, relative, child, x)
        concats.append(keras.layers.Concatenate(axis=-1, name=layer_name(path, f"concat{i}"), dtype=ctx.dtype))
        x = concats[-1]([x, out])
    if not concats:
        return _identity(path, ctx, x)
    ctx.main(path, concats)
    return x


LAYER_BUILDERS: dict[str, Builder] = {
    "conv2d": _conv2d,
    "pad2d": _pad2d,
    "crop2d": _crop2d,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "activation": _activation,
    "prelu": _prelu,
    "channel_scale": _channel_scale,
    "normalize": _normalize,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "adaptive_avgpool2d": _adaptive_avgpool2d,
    "global_avgpool": _global_pool(keras.layers.GlobalAveragePooling2D),
    "global_maxpool": _global_pool(keras.layers.GlobalMaxPooling2D),
    "flatten": _flatten,
    "dense": _dense,
    "dropout": _dropout,
    "drop_path": _drop_path,
    "identity": _identity_layer,
    "channel_shuffle": _channel_shuffle,
    "channel_slice": _channel_slice,
    "sequence": _sequence,
    "branches": _branches,
    "concat_branches": _concat_branches,
    "residual": _residual,
    "dense_concat": _dense_concat,
}
"""``builder(layer, row, x, path, ctx) -> output tensor``: ``x`` is the layer's NHWC (or
flat) input tensor and ``ctx.child(path, relative, child, x)`` builds a child layer."""


# ---------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------

def _gpu_visible() -> tuple[bool, str]:
    name = _backend()
    if name == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU")), "tf.config.list_physical_devices('GPU') is empty"
    if name == "jax":
        import jax
        try:
            return bool(jax.devices("gpu")), "jax.devices('gpu') is empty"
        except RuntimeError as error:
            return False, f"jax.devices('gpu') failed: {error}"
    if name == "torch":
        import torch
        return torch.cuda.is_available(), "torch.cuda.is_available() is False"
    return False, f"netparity does not know how to find a GPU on the {name!r} Keras backend"


def keras_device(device: str) -> str:
    """The ``keras.device`` name for a netparity device; raises BackendError when absent."""
    check_device(device, NAME)
    if device == "gpu":
        visible, why = _gpu_visible()
        if not visible:
            raise BackendError(f"keras: device 'gpu' was asked for but the {_backend()} Keras backend "
                               f"sees no GPU ({why})")
        return "gpu:0"
    # Not "cpu:0": on the torch Keras backend a variable created under "cpu:0" is copied
    # off its torch Parameter ("cpu:0" != "cpu" to torch), and int variables such as
    # Dropout's seed then fail to build ("Only Tensors of floating point ... gradients").
    return "cpu"


def _scope(record: BuildRecord):
    return keras.device(keras_device(record.device))


EXECUTIONS = {"plain": "train_step and forward as tf.functions without XLA (tensorflow); train_step "
                       "jax.jit-compiled (jax); eager (torch)",
              "xla": "train_step and forward as tf.function(jit_compile=True) (tensorflow Keras backend only; "
                     "on jax everything is XLA already)"}
PRECISIONS = {"float32": "float32 throughout",
              "bfloat16": "the mixed_bfloat16 dtype policy: float32 weights, bfloat16 computation, "
                          "float32 loss"}


@contextlib.contextmanager
def graph_recursion(layers: int):
    """Keras walks a functional graph recursively (keras/src/ops/function.py ``_build_map_helper``,
    a few frames per node), so Python's default limit of 1000 frames stops a model of a few hundred
    layers in depth (torchvision's efficientnet_v2_l has 1091). Raise the limit for the walk, with
    room for the frames per node, and put it back after."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 8 * layers + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def build(spec, device: str = "cpu", lockstep_dropout: bool = False, execution: str = "plain",
          precision: str = "float32") -> "keras.Model":
    """A functional, channels_last ``keras.Model`` taking (N, H, W, C) float32.
    ``lockstep_dropout=True``: every dropout layer multiplies by a mask given to
    ``train_step`` instead of drawing its own. ``execution`` / ``precision``: see
    EXECUTIONS and PRECISIONS (``forward_layers`` and ``input_gradient`` stay eager)."""
    target = keras_device(device)
    check_run_options(execution, precision, EXECUTIONS, PRECISIONS, NAME)
    if execution == "xla" and _backend() != "tensorflow":
        raise BackendError(f"keras: execution 'xla' is for the tensorflow Keras backend, not {_backend()!r} "
                           "(jax compiles with XLA anyway; torch has no XLA)")
    record = BuildRecord(spec, spec.infer(), device)
    ctx = BuildContext(record, DTYPE_POLICIES[precision])
    record.extra.update(lockstep_dropout=bool(lockstep_dropout), execution=execution, precision=precision)
    c, h, w = record.inference.input_shape
    with keras.device(target):
        x = inputs = keras.Input(shape=(h, w, c), dtype=DTYPE, name="input")
        for i, block in enumerate(spec.blocks):
            x = ctx.build(f"blocks[{i}]", block, x)
        with graph_recursion(len(record.inference.rows)):
            model = keras.Model(inputs, x, name=layer_name(spec.name) or "netparity")
    last = f"blocks[{len(spec.blocks) - 1}]"
    record.extra["output_hwc_flat"] = record.extra["hwc_flat"].get(last)
    # A plain object: Keras' attribute tracking passes it through untouched (no layers or
    # variables are found in it), so it adds nothing to model.weights or the config.
    setattr(model, RECORD_ATTRIBUTE, record)
    return model


# ---------------------------------------------------------------------------------------
# Layouts between PyTorch's (canonical) and Keras'
# ---------------------------------------------------------------------------------------

def _to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _to_canonical(out: np.ndarray, hwc_flat: Chw | None) -> np.ndarray:
    """A Keras output in PyTorch's layout: NHWC -> NCHW, (H, W, C) flat -> (C, H, W) flat."""
    if out.ndim == 4:
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    if out.ndim == 2 and hwc_flat is not None:
        c, h, w = hwc_flat
        return np.ascontiguousarray(out.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(out.shape[0], -1))
    return out


def _to_keras(value: np.ndarray, hwc_flat: Chw | None) -> np.ndarray:
    """The inverse of ``_to_canonical`` (for upstream gradients)."""
    if value.ndim == 4:
        return _to_nhwc(value)
    if value.ndim == 2 and hwc_flat is not None:
        c, h, w = hwc_flat
        return np.ascontiguousarray(value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1))
    return value


# Kinds with one value per channel/feature in each weight: on a flat input in (H, W, C)
# order those values are permuted into that order.
PER_FEATURE_KINDS = frozenset({"batchnorm", "layernorm", "prelu", "channel_scale"})


def _depthwise_channels(row: Row) -> int | None:
    return row.input_shape[0] if _is_depthwise(row.layer, row.input_shape[0]) else None


def _weight_to_keras(row: Row, name: str, value: np.ndarray, chw: Chw | None) -> np.ndarray:
    """One canonical (PyTorch) weight of ``row`` in the layout of its Keras variable (layout.py)."""
    kind = row.kind
    if kind == "conv2d" and name == "weight":
        return layout.conv_kernel_to_native(value, _depthwise_channels(row))
    if kind == "dense" and name == "weight":
        return layout.dense_kernel_to_native(value, chw)
    if kind == "prelu" and len(row.input_shape) == 3:
        return value.reshape(1, 1, -1)  # PReLU(shared_axes=[1, 2]) keeps alpha as (1, 1, C)
    if kind in PER_FEATURE_KINDS:  # per-feature vectors follow the input's feature order
        return layout.features_to_native(value, chw)
    return value


def _weight_to_canonical(row: Row, name: str, value: np.ndarray, chw: Chw | None) -> np.ndarray:
    """The inverse of ``_weight_to_keras``."""
    kind = row.kind
    if kind == "conv2d" and name == "weight":
        return layout.conv_kernel_to_canonical(value, _depthwise_channels(row))
    if kind == "dense" and name == "weight":
        return layout.dense_kernel_to_canonical(value, chw)
    if kind == "prelu" and len(row.input_shape) == 3:
        return value.reshape(-1)
    if kind in PER_FEATURE_KINDS:
        return layout.features_to_canonical(value, chw)
    return value


KERAS_NAMES = layout.NATIVE_NAMES


def _variables(record: BuildRecord, row: Row, names) -> dict[str, Any]:
    native = record.layers[row.path]
    by_name = {v.name: v for v in native.weights}
    mapping = KERAS_NAMES[row.kind]
    try:
        return {name: by_name[mapping[name]] for name in names}
    except KeyError as error:
        raise BackendError(f"keras: layer {native.name} ({row.path}) has no variable {error.args[0]!r}; "
                           f"it has {', '.join(by_name)}") from None


def get_weights(model) -> dict[str, np.ndarray]:
    record = record_of(model, NAME)
    layouts = record.extra["input_hwc_flat"]
    weights = {}
    for row, named in parameter_rows(record):
        for name, variable in _variables(record, row, named).items():
            value = np.array(ops.convert_to_numpy(variable.value), dtype=np.float32)
            weights[f"{row.path}.{name}"] = np.ascontiguousarray(
                _weight_to_canonical(row, name, value, layouts.get(row.path)))
    return weights


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    record = record_of(model, NAME)
    check_weights(weights, record, NAME)
    layouts = record.extra["input_hwc_flat"]
    with _scope(record):
        for row, named in parameter_rows(record):
            for name, variable in _variables(record, row, named).items():
                value = np.asarray(weights[f"{row.path}.{name}"], dtype=np.float32)
                variable.assign(np.ascontiguousarray(
                    _weight_to_keras(row, name, value, layouts.get(row.path))))


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------

def _numpy(tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(tensor))


def _compiled_call(model, record, training: bool):
    """``model(x, training=...)`` as a tf.function, made once per mode: with XLA for
    execution "xla", plain graph TensorFlow otherwise (what ``model.predict`` runs; an eager
    call pays Python and op dispatch for every layer: ResNet-18 at 64 px, batch 16, took
    74 ms eagerly against 19 ms in PyTorch)."""
    import tensorflow as tf

    calls = record.extra.setdefault("compiled_calls", {})
    if training not in calls:
        calls[training] = tf.function(lambda batch: model(batch, training=training), reduce_retracing=True,
                                      jit_compile=record.extra.get("execution") == "xla")
    return calls[training]


def _check_masks_in_training(record: BuildRecord, training: bool) -> None:
    """A lockstep model's MaskedDropout layers have no mask outside train_step: say so here,
    before TensorFlow wraps the layer's error into a StagingError traceback."""
    if training and _masked_layers(record):
        raise BackendError("keras: a lockstep_dropout model ran in training mode without a dropout mask "
                           f"(for {', '.join(_masked_layers(record))}); train it with "
                           "train_step(..., dropout_masks=...)")


def forward(model, x, training: bool = False) -> np.ndarray:
    """NCHW in; the output in PyTorch's layout (float32 whatever the precision)."""
    record = record_of(model, NAME)
    _check_masks_in_training(record, training)
    batch = _to_nhwc(as_input(x, record, NAME))
    run = _compiled_call(model, record, training) if _backend() == "tensorflow" \
        else lambda tensor: model(tensor, training=training)
    with _scope(record):
        out = run(ops.convert_to_tensor(batch))
        if record.extra.get("precision", "float32") != "float32":
            out = ops.cast(out, "float32")  # only then: in eager mode every op is paid per call
    return _to_canonical(_numpy(out), record.extra["output_hwc_flat"])


def _layer_model(model, record: BuildRecord):
    """A model over the same layers whose outputs are every path's tensor (built once)."""
    cached = record.extra.get("layer_model")
    if cached is None:
        tensors, paths = [], {}
        for path, tensor in record.extra["tensors"].items():
            index = next((i for i, t in enumerate(tensors) if t is tensor), None)
            if index is None:  # a sequence shares its last child's tensor
                index = len(tensors)
                tensors.append(tensor)
            paths[path] = index
        with _scope(record):
            probe = keras.Model(model.inputs, tensors, name=f"{model.name}_layers")
        cached = record.extra["layer_model"] = (probe, paths)
    return cached


def forward_layers(model, x, training: bool = False) -> dict[str, np.ndarray]:
    """The output of every layer and block, by spec path, in PyTorch's layout."""
    record = record_of(model, NAME)
    _check_masks_in_training(record, training)
    probe, paths = _layer_model(model, record)
    batch = _to_nhwc(as_input(x, record, NAME))
    with _scope(record):
        outs = probe(ops.convert_to_tensor(batch), training=training)
    outs = [_numpy(ops.cast(o, "float32")) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    layouts = record.extra["hwc_flat"]
    return {path: _to_canonical(outs[i], layouts.get(path)) for path, i in paths.items()}


def input_gradient(model, x, upstream, training: bool = False) -> np.ndarray:
    """d(sum(model(x) * upstream)) / dx, NCHW; ``upstream`` is in the output's canonical layout."""
    record = record_of(model, NAME)
    _check_masks_in_training(record, training)
    batch = _to_nhwc(as_input(x, record, NAME))
    upstream = np.asarray(upstream, dtype=np.float32)
    expected = (batch.shape[0], *record.inference.output_shape)
    if upstream.shape != expected:
        raise BackendError(f"keras: upstream gradient of shape {upstream.shape} does not match the "
                           f"output shape {expected}")
    upstream = _to_keras(upstream, record.extra["output_hwc_flat"])
    name = _backend()
    with _scope(record):
        if name == "tensorflow":
            grad = _gradient_tensorflow(model, batch, upstream, training)
        elif name == "jax":
            grad = _gradient_jax(model, batch, upstream, training)
        elif name == "torch":
            grad = _gradient_torch(model, batch, upstream, training)
        else:
            raise BackendError(f"keras: input_gradient is not implemented for the {name!r} Keras backend")
    return np.ascontiguousarray(_numpy(grad).transpose(0, 3, 1, 2))


def _gradient_tensorflow(model, batch, upstream, training):
    import tensorflow as tf
    x = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x, training=training) * tf.convert_to_tensor(upstream))
    return tape.gradient(loss, x)


def _gradient_jax(model, batch, upstream, training):
    import jax
    import jax.numpy as jnp
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    up = jnp.asarray(upstream)

    def loss(x):
        out, updated = model.stateless_call(trainable, non_trainable, x, training=training)
        return jnp.sum(out * up), updated

    grad, updated = jax.grad(loss, has_aux=True)(jnp.asarray(batch))
    # A train-mode forward moves BatchNorm statistics in PyTorch; do the same here.
    for variable, value in zip(model.non_trainable_variables, updated):
        variable.assign(value)
    return grad


def _gradient_torch(model, batch, upstream, training):
    import torch
    x = ops.convert_to_tensor(batch).detach().requires_grad_(True)
    loss = (model(x, training=training) * ops.convert_to_tensor(upstream)).sum()
    (grad,) = torch.autograd.grad(loss, x)  # leaves the weights' .grad untouched
    return grad.detach()


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """Per parameterised layer, as Keras counts it: (trainable, non-trainable) variable sizes."""
    record = record_of(model, NAME)
    counts = {}
    for row, _ in parameter_rows(record):
        native = record.layers[row.path]
        counts[row.path] = (sum(int(np.prod(v.shape)) for v in native.trainable_weights),
                            sum(int(np.prod(v.shape)) for v in native.non_trainable_weights))
    return counts


# ---------------------------------------------------------------------------------------
# Training: keras.optimizers.SGD made to follow PyTorch's SGD (docs/framework-differences.md 6, 6b, 7)
# ---------------------------------------------------------------------------------------

# Keras' SGD keeps m = momentum*m - lr*g and does p += m: m = -lr * (PyTorch's buf).
STATE_FORM = "neg_lr_buf"


class SGDOptimizer(training.SGDOptimizer):
    """A ``keras.optimizers.SGD`` (``native``, no weight_decay of its own) over the trainable
    variables in canonical order; ``train_step`` adds ``weight_decay * p`` to the gradients."""

    backend = NAME

    def __init__(self, model, native, keys, variables, momentum, weight_decay, lr):
        super().__init__(model, native, keys, momentum, weight_decay)
        self.variables = variables  # variables[i] and native.momentums[i] belong to keys[i]
        self.lr = lr  # the Python float; native.learning_rate holds it as float32
        self.compiled = None  # the traced train step (tensorflow), made on the first step


def _trainable(record):
    """(canonical key, row, name, variable) of every trainable weight, in canonical order."""
    out = []
    for row, _ in parameter_rows(record):
        names = list(row.layer.parameter_shapes(row.input_shape))
        for name, variable in _variables(record, row, names).items():
            out.append((f"{row.path}.{name}", row, name, variable))
    return out


def make_optimizer(model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> SGDOptimizer:
    """PyTorch's SGD: buf = momentum*buf + (g + wd*p) (first buf = g + wd*p); p -= lr*buf.

    ``keras.optimizers.SGD(lr, momentum)`` without its weight_decay (which is decoupled:
    p -= lr*wd*p outside the momentum); train_step adds wd*p to every gradient instead,
    weights, biases and BatchNorm gamma/beta alike."""
    record = record_of(model, NAME)
    lr, momentum, weight_decay = training.check_sgd(lr, momentum, weight_decay, NAME, BackendError)
    entries = _trainable(record)
    variables = [v for *_, v in entries]
    if {id(v) for v in variables} != {id(v) for v in model.trainable_variables}:
        raise BackendError("keras: the model's trainable variables are not the spec's trainable weights")
    with _scope(record):
        native = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=False)
        native.build(variables)  # momentums[i] belongs to variables[i]
    return SGDOptimizer(model, native, [k for k, *_ in entries], variables, momentum, weight_decay, lr)


def set_learning_rate(optimizer: SGDOptimizer, lr: float) -> None:
    """Change lr with PyTorch's meaning. Keras keeps lr inside its momentum (m = -lr*buf),
    so the momentums are rescaled by lr_new / lr_old (row 6b)."""
    lr, _, _ = training.check_sgd(lr, optimizer.momentum, optimizer.weight_decay, NAME, BackendError)
    old = optimizer.lr
    record = record_of(optimizer.model, NAME)
    with _scope(record):
        if lr != old:
            for m in optimizer.native.momentums:
                m.assign(training.rescale_state(_numpy(m.value), lr / old))
        optimizer.native.learning_rate = lr
    optimizer.lr = lr


def _output_order(record) -> np.ndarray | None:
    """Indices that put (H, W, C)-flattened logits into PyTorch's (C, H, W) order."""
    chw = record.extra["output_hwc_flat"]
    if chw is None:
        return None
    c, h, w = chw
    return np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).reshape(-1).astype(np.int32)


def _mean_cross_entropy(logits, labels, order):
    logits = ops.cast(logits, "float32")  # a bfloat16 model's loss is still taken in float32
    if order is not None:
        logits = ops.take(logits, order, axis=1)
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _masked_layers(record) -> dict[str, MaskedDropout]:
    return {path: layer for path, layer in record.layers.items() if isinstance(layer, MaskedDropout)}


def _set_masks(layers, masks) -> None:
    for path, layer in layers.items():
        layer.slot.value = masks.get(path)


def _with_decay(grads, variables, weight_decay):
    if not weight_decay:
        return list(grads)
    return [g + weight_decay * v.value for g, v in zip(grads, variables)]


def _tensorflow_step(model, optimizer, record):
    import tensorflow as tf

    layers = _masked_layers(record)
    order = _output_order(record)
    variables, native, weight_decay = optimizer.variables, optimizer.native, optimizer.weight_decay

    # Explicit: Keras' 'auto' would pick XLA when a GPU is visible; plain is plain TensorFlow.
    @tf.function(jit_compile=record.extra.get("execution") == "xla", reduce_retracing=True)
    def step(x, y, masks):
        _set_masks(layers, masks)  # while tracing: the masks are this trace's arguments
        try:
            with tf.GradientTape() as tape:
                loss = _mean_cross_entropy(model(x, training=True), y, order)
        finally:
            _set_masks(layers, {})
        grads = tape.gradient(loss, variables)
        native.apply(_with_decay(grads, variables, weight_decay), variables)
        return loss

    return step


def _jax_step(model, optimizer, record):
    """The JAX train step: Keras 3's stateless pattern (``stateless_call`` for the loss and
    the new BatchNorm statistics, ``jax.value_and_grad``, the optimizer's
    ``stateless_apply``) under one ``jax.jit``; train_step writes the results back."""
    import jax

    layers = _masked_layers(record)
    order = _output_order(record)
    native, weight_decay = optimizer.native, optimizer.weight_decay
    # stateless_call takes the model's own variable order; the optimizer was built in canonical order
    canonical = {id(v): i for i, v in enumerate(optimizer.variables)}
    model_order = [canonical[id(v)] for v in model.trainable_variables]

    def loss(trainable, non_trainable, x, y, masks):
        _set_masks(layers, masks)  # while tracing: the masks are this trace's arguments
        try:
            logits, non_trainable = model.stateless_call([trainable[i] for i in model_order], non_trainable, x,
                                                         training=True)
        finally:
            _set_masks(layers, {})
        return _mean_cross_entropy(logits, y, order), non_trainable

    @jax.jit
    def step(trainable, non_trainable, optimizer_state, x, y, masks):
        (value, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable, non_trainable, x, y,
                                                                                masks)
        if weight_decay:
            grads = [g + weight_decay * v for g, v in zip(grads, trainable)]
        trainable, optimizer_state = native.stateless_apply(optimizer_state, grads, trainable)
        return value, trainable, non_trainable, optimizer_state

    def run(x, y, masks):
        value, trainable, non_trainable, state = step(
            [v.value for v in optimizer.variables], [v.value for v in model.non_trainable_variables],
            [v.value for v in native.variables], x, y, masks)
        for variable, new in zip(optimizer.variables, trainable):
            variable.assign(new)
        for variable, new in zip(model.non_trainable_variables, non_trainable):
            variable.assign(new)
        for variable, new in zip(native.variables, state):
            variable.assign(new)
        return value

    return run


def _torch_step(model, optimizer, record, x, y, masks):
    import torch

    layers = _masked_layers(record)
    _set_masks(layers, {path: ops.convert_to_tensor(m) for path, m in masks.items()})
    try:
        loss = _mean_cross_entropy(model(ops.convert_to_tensor(x), training=True), ops.convert_to_tensor(y),
                                   _output_order(record))
    finally:
        _set_masks(layers, {})
    grads = torch.autograd.grad(loss, [v.value for v in optimizer.variables])
    with torch.no_grad():
        grads = [g + optimizer.weight_decay * v.value for g, v in zip(grads, optimizer.variables)] \
            if optimizer.weight_decay else list(grads)
        optimizer.native.apply(grads, optimizer.variables)
    return loss.detach()


def train_step(model, optimizer: SGDOptimizer, x, y, dropout_masks=None) -> float:
    """One SGD step on a minibatch in training mode (batch-statistics BatchNorm, dropout on);
    returns the mean softmax cross-entropy (from_logits=True) over the batch before the
    update (NaN/inf as is). On the tensorflow Keras backend the step is a tf.function
    (plain TensorFlow, no XLA), traced on the first call.

    ``dropout_masks``: {dropout path: float32 (B, *output shape)} in PyTorch's layout,
    required exactly when built with ``lockstep_dropout=True``; they are moved to NHWC,
    and flat masks after an (H, W, C) flatten are permuted like the features."""
    record, batch, labels, masks = training.prepare_step(model, optimizer, x, y, dropout_masks, NAME)
    layouts = record.extra["hwc_flat"]
    masks = {path: _to_keras(mask, layouts.get(path)) for path, mask in masks.items()}
    batch = _to_nhwc(batch)
    name = _backend()
    with _scope(record):
        if name == "tensorflow":
            if optimizer.compiled is None:
                optimizer.compiled = _tensorflow_step(model, optimizer, record)
            loss = optimizer.compiled(ops.convert_to_tensor(batch), ops.convert_to_tensor(labels),
                                      {p: ops.convert_to_tensor(m) for p, m in masks.items()})
        elif name == "jax":
            if optimizer.compiled is None:
                optimizer.compiled = _jax_step(model, optimizer, record)
            loss = optimizer.compiled(ops.convert_to_tensor(batch), ops.convert_to_tensor(labels),
                                      {p: ops.convert_to_tensor(m) for p, m in masks.items()})
        elif name == "torch":
            loss = _torch_step(model, optimizer, record, batch, labels, masks)
        else:
            raise BackendError(f"keras: train_step is implemented for the tensorflow, jax and torch Keras "
                               f"backends, not {name!r} (set KERAS_BACKEND)")
    optimizer.steps += 1
    return float(_numpy(loss))


def peak_device_memory_mb(device: str = "gpu") -> float | None:
    """The most GPU memory the Keras backend's allocator has held in this process, in MiB
    (TensorFlow's ``get_memory_info('GPU:0')['peak']``, JAX's ``peak_bytes_in_use``,
    PyTorch's ``max_memory_allocated``); None for the CPU."""
    if keras_device(device) == "cpu":
        return None
    name = _backend()
    if name == "tensorflow":
        import tensorflow as tf
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    if name == "jax":
        import jax
        stats = jax.devices("gpu")[0].memory_stats() or {}
        return stats["peak_bytes_in_use"] / 2 ** 20 if "peak_bytes_in_use" in stats else None
    if name == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return None


def seed_everything(seed: int) -> str:
    """Seed Python, NumPy and the Keras backend (keras.utils.set_random_seed) and, on
    tensorflow, turn on op determinism. Call it before build: Dropout layers take their
    seeds when they are built. Returns what stays non-deterministic ("" if nothing is known)."""
    keras.utils.set_random_seed(int(seed))
    name = _backend()
    if name == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
        return ("keras: op determinism on (it changes float bits by ~1e-7 against it off); "
                "bitwise only on the same thread settings")
    if name == "torch":
        import torch
        torch.use_deterministic_algorithms(True, warn_only=True)
        return "keras (torch backend): bitwise only at a fixed thread count"
    return f"keras: no determinism switch known for the {name!r} backend beyond the seed"


def _dropout_seed_states(record) -> dict[str, Any]:
    """The seed-generator state variable of every native Dropout layer, by path."""
    return {path: layer.seed_generator.state for path, layer in record.layers.items()
            if isinstance(layer, keras.layers.Dropout)}


def save_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Weights (canonical), momentums (Keras' -lr*buf, canonical layout), lr and the
    Dropout layers' seed states, in one .npz written atomically."""
    record = record_of(model, NAME)
    training.check_optimizer(model, optimizer, NAME)
    arrays = {f"weights/{k}": v for k, v in get_weights(model).items()}
    layouts = record.extra["input_hwc_flat"]
    entries = _trainable(record)
    for (key, row, name, _), m in zip(entries, optimizer.native.momentums):
        value = np.array(_numpy(m.value), dtype=np.float32)
        arrays[f"state/{key}"] = np.ascontiguousarray(
            _weight_to_canonical(row, name, value, layouts.get(row.path)))
    for layer_path, state in _dropout_seed_states(record).items():
        arrays[f"rng/{layer_path}"] = _numpy(state.value)
    meta = {"framework": NAME, "spec": record.spec.name, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay, "steps": optimizer.steps, "state_form": STATE_FORM,
            "lockstep_dropout": record.extra.get("lockstep_dropout", False), "keras_backend": _backend()}
    training.write_checkpoint(path, meta, arrays)


def load_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Restore a checkpoint so training continues exactly as if uninterrupted (bitwise, for
    one written by this backend; other frameworks' momentum states are converted)."""
    record = record_of(model, NAME)
    meta, arrays = training.restore_weights(model, optimizer, path, NAME, BackendError, set_weights)
    saved = training.section(arrays, "state")
    layouts = record.extra["input_hwc_flat"]
    lr = float(meta["lr"])
    with _scope(record):
        for (key, row, name, _), m in zip(_trainable(record), optimizer.native.momentums):
            value = saved.get(key)
            value = np.zeros(m.shape, np.float32) if value is None else np.ascontiguousarray(_weight_to_keras(
                row, name, training.convert_state(value, meta["state_form"], STATE_FORM, lr),
                layouts.get(row.path)))
            m.assign(value)
        optimizer.native.learning_rate = lr
        optimizer.native.iterations.assign(int(meta["steps"]))
        if meta["framework"] == NAME:
            rng = training.section(arrays, "rng")
            for layer_path, state in _dropout_seed_states(record).items():
                if layer_path in rng:
                    state.assign(rng[layer_path])
    optimizer.lr = lr
    optimizer.steps = int(meta["steps"])
