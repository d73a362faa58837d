"""One converter per Keras layer class: its config and variables become spec node(s).

``CONVERTERS`` maps a class (matched exactly: a subclass may override ``call``) to
``convert(importer, layer, *call_args) -> Value``. The layout facts (kernel transposes, the
(H, W, C) flatten order, per-feature vectors) come from backends/keras/layout.py, the one place they
are written (through core's ``_weight_to_canonical`` for a spec row's weights).

Facts read in keras 3.15's installed source (keras/src/...) that the mappings rely on:

- Padding 'same' (conv and pooling) is TensorFlow's: out = ceil(in / stride), total padding
  t = max((out - 1) * stride + extent - in, 0), (before, after) = (t // 2, t - t // 2). Max pooling
  'same' never lets padding win (it is -inf-like); average pooling 'same' divides by the number of
  real elements (count_include_pad False).
- ``keras.activations``: gelu defaults to approximate=False (exact, erf), leaky_relu to slope 0.2
  (the LeakyReLU layer to 0.3); hard_sigmoid is relu6(x + 3) / 6 and hard_silu (hard_swish)
  x * hard_sigmoid(x) on the tensorflow, jax and torch backends (backend/*/nn.py): PyTorch's
  hardsigmoid and hardswish. ``ReLU(max_value=6)`` calls relu6.
- BatchNormalization's momentum is the weight of the old running value: PyTorch's is 1 - it.
- Normalization computes (x - mean) / max(sqrt(variance), keras.config.epsilon()) in float32
  (layers/preprocessing/normalization.py), so std is that float32 value.
- Rescaling computes x * scale + offset = (x - mean) / std with std = 1 / scale,
  mean = -offset / scale (layers/preprocessing/rescaling.py).
- LayerNormalization normalises with the biased variance and rsqrt(var + epsilon)
  (ops/nn.py ``_layer_normalization``), as PyTorch's LayerNorm.
- ConvNeXt's ``LayerScale`` is x * gamma and its ``StochasticDepth`` drops a whole example with
  probability p and scales the rest by 1 / (1 - p) (applications/convnext.py): channel_scale and
  drop_path.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ....spec.layers import (Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, ChannelScale, ChannelSlice, Conv2d,
                            Crop2d, Dense, DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, Identity,
                            LayerNorm, MaxPool2d, Normalize, Pad2d, PReLU, show_shape)
from ....spec.pooling import avg_pool_divisor, pool_output_size
from .. import core as keras_backend
from .. import layout
from .graph import Importer
from .values import FLAT, HWC_FLAT, NCHW, NHWC, Value, index_of, indexed

keras = keras_backend.keras
_weight_to_canonical = keras_backend._weight_to_canonical
KERAS_NAMES = layout.NATIVE_NAMES


# -- small helpers ----------------------------------------------------------------------------

def _name(imp: Importer) -> str:
    return imp.current[0]


def same_pads(size: int, extent: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _padding(pads):
    """A symmetric pair when it is one (what a spec author writes), else (top, bottom, left, right)."""
    top, bottom, left, right = (int(p) for p in pads)
    return (top, left) if (top, left) == (bottom, right) else (top, bottom, left, right)


def _axis(imp: Importer, axis, x: Value) -> int:
    """A Keras axis (batch included, negative allowed) as the per-example axis of ``x``'s tensor."""
    rank = len(x.keras_shape()) + 1
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            imp.refuse(f"it works over axes {list(axis)}; the spec's layers work over the channel axis alone")
        axis = axis[0]
    position = int(axis) + rank if int(axis) < 0 else int(axis)
    if not 1 <= position < rank:
        imp.refuse(f"axis {axis} is not an axis of its {rank}-D input")
    return position - 1


def _channel_axis(imp: Importer, axis, x: Value, what: str) -> None:
    if _axis(imp, axis, x) != x.channel_axis():
        imp.refuse(f"{what} over axis {axis} of a {_layout_words(x)} tensor, which is not its channel axis "
                   f"(the spec's {what} is over the channels)")


def _layout_words(x: Value) -> str:
    return {NHWC: "channels_last image", NCHW: "channels_first image", FLAT: "flat",
            HWC_FLAT: "flat (H, W, C)-ordered"}.get(x.layout, "reordered")


def _last_axis_is_channels(imp: Importer, x: Value, what: str) -> None:
    if x.layout not in (NHWC, FLAT, HWC_FLAT):
        imp.refuse(f"{what} over the last axis of a {_layout_words(x)} tensor, which is not its channel axis")


def _canonical(imp: Importer, layer, x: Value, name: str, value: np.ndarray) -> np.ndarray:
    """A Keras variable in the canonical layout (backends/keras/core.py's ``_weight_to_canonical``)."""
    row = imp.row(_name(imp), layer, x.shape)
    return np.ascontiguousarray(_weight_to_canonical(row, name, value, x.chw if x.layout == HWC_FLAT else None),
                                dtype=np.float32)


def _named_weights(imp: Importer, keras_layer, layer, x: Value) -> dict[str, np.ndarray]:
    """Every weight of spec ``layer`` from the Keras variable KERAS_NAMES names for it."""
    values = imp.keras_values(keras_layer)
    mapping = KERAS_NAMES[layer.kind]
    names = [*layer.parameter_shapes(x.shape), *layer.running_stat_shapes(x.shape)]
    missing = [mapping[n] for n in names if mapping[n] not in values]
    if missing:
        imp.refuse(f"it has no variable {missing[0]!r} (it has {', '.join(values) or 'none'})")
    return {n: _canonical(imp, layer, x, n, values[mapping[n]]) for n in names}


def _per_channel(imp: Importer, values: np.ndarray, x: Value, what: str) -> np.ndarray:
    """A constant vector over the Keras tensor's channel axis in the spec's channel order."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    channels = x.shape[0]
    if values.size not in (1, channels):
        imp.refuse(f"{what} has {values.size} values for {channels} channels/features")
    if values.size > 1 and x.layout == HWC_FLAT:
        values = layout.features_to_canonical(values, x.chw)
    return values


# -- activations ------------------------------------------------------------------------------

def _activation_table():
    a = keras.activations
    return {a.relu: Activation("relu"), a.relu6: Activation("relu6"), a.sigmoid: Activation("sigmoid"),
            a.tanh: Activation("tanh"), a.silu: Activation("silu"), a.hard_sigmoid: Activation("hardsigmoid"),
            a.hard_silu: Activation("hardswish"), a.elu: Activation("elu"), a.softmax: Activation("softmax"),
            a.gelu: Activation("gelu", approximate="none"),  # keras.activations.gelu: approximate=False
            a.leaky_relu: Activation("leaky_relu", negative_slope=0.2),  # its default slope
            a.linear: None}


ACTIVATIONS = _activation_table()
ACTIVATION_NAMES = ("relu, relu6, sigmoid, tanh, silu/swish, hard_sigmoid, hard_silu/hard_swish, elu, softmax, "
                    "gelu, leaky_relu, linear")


def spec_activation(imp: Importer, function, x: Value):
    """The spec activation of a ``keras.activations`` function (None for linear)."""
    try:
        layer = ACTIVATIONS[function]
    except (KeyError, TypeError):
        label = getattr(function, "__name__", repr(function))
        imp.refuse(f"activation {label!r} has no exact spec mapping; supported: {ACTIVATION_NAMES}")
    if layer is not None and layer.function == "softmax":
        _last_axis_is_channels(imp, x, "softmax")
    return layer


def _then_activation(imp: Importer, function, out: Value) -> Value:
    """A layer's own ``activation=`` argument, as a node after the layer's."""
    layer = spec_activation(imp, function, out)
    if layer is None:
        return out
    return imp.leaf(f"{_name(imp)}/{layer.function}", layer, out)


def _activation(imp, layer, x):
    x = imp.standard(x)
    spec = spec_activation(imp, layer.activation, x)
    return imp.leaf(_name(imp), spec if spec is not None else Identity(), x)


def _relu(imp, layer, x):
    x = imp.standard(x)
    slope, top, threshold = float(layer.negative_slope), layer.max_value, float(layer.threshold)
    if threshold == 0 and slope == 0 and top is None:
        spec = Activation("relu")
    elif threshold == 0 and slope == 0 and float(top) == 6.0:
        spec = Activation("relu6")
    elif threshold == 0 and top is None:
        spec = Activation("leaky_relu", negative_slope=slope)
    else:
        imp.refuse(f"ReLU(max_value={top}, negative_slope={slope}, threshold={threshold}) has no exact spec "
                   "mapping; imported: max_value None or 6 with threshold 0 and slope 0, or a slope alone")
    return imp.leaf(_name(imp), spec, x)


def _leaky_relu(imp, layer, x):
    return imp.leaf(_name(imp), Activation("leaky_relu", negative_slope=float(layer.negative_slope)), imp.standard(x))


def _elu(imp, layer, x):
    return imp.leaf(_name(imp), Activation("elu", alpha=float(layer.alpha)), imp.standard(x))


def _softmax(imp, layer, x):
    x = imp.standard(x)
    _channel_axis(imp, layer.axis, x, "softmax")
    return imp.leaf(_name(imp), Activation("softmax"), x)


def _prelu(imp, layer, x):
    x = imp.standard(x)
    alpha = imp.keras_values(layer)["alpha"]
    channels = x.shape[0]
    per_channel = {NHWC: (1, 1, channels), NCHW: (channels, 1, 1), FLAT: (channels,), HWC_FLAT: (channels,)}
    if alpha.shape != per_channel.get(x.layout):
        imp.refuse(f"its alpha has shape {alpha.shape} (shared_axes {layer.shared_axes}); the spec's prelu has one "
                   "slope per channel: share it over H and W (shared_axes=[1, 2] channels_last, [2, 3] "
                   "channels_first), or over nothing on flat features")
    spec = PReLU()
    return imp.leaf(_name(imp), spec, x, weights={"weight": _canonical(imp, spec, x, "weight", alpha)})


# -- convolutions -----------------------------------------------------------------------------

def _padded_input(imp: Importer, x: Value, padding: str, extent, stride):
    """(the conv's input, its (top, bottom, left, right) padding): 'same' made explicit, and a
    ZeroPadding2D that feeds only this layer folded in."""
    if padding == "same":
        _, h, w = x.shape
        pads = same_pads(h, extent[0], stride[0]) + same_pads(w, extent[1], stride[1])
    elif padding == "valid":
        pads = (0, 0, 0, 0)
    else:
        imp.refuse(f"padding {padding!r}; imported: 'valid' and 'same'")
    entry = imp.fusable(x, "pad2d")
    if entry is not None:
        imp.remove(entry)
        imp.counters["zero padding folded"] += 1
        pads = tuple(a + b for a, b in zip(pads, entry.layer.pads))
        x = entry.inputs[0]
    return x, pads


def _check_bias_axis(imp: Importer, layer, out: Value) -> None:
    """Keras 3.15's TensorFlow ``ops.add`` (backend/tensorflow/numpy.py ``add``) turns ``x + b`` with
    b of shape (1, C, 1, 1) into ``tf.nn.bias_add`` and picks NHWC whenever x's last axis also has
    size C: a channels_first convolution whose output width equals its channel count gets its bias
    added along W (measured: Conv2D(4, 3, strides=2, channels_first) on 9x8, error 0.88 for biases
    in [-1, 1]). That model does not compute a convolution plus bias; refuse it rather than import
    the function it was meant to be."""
    if (layer.use_bias and out.layout == NCHW and out.shape[0] > 1 and out.shape[2] == out.shape[0]
            and keras.backend.backend() == "tensorflow"):
        imp.refuse(f"channels_first with a bias and an output width equal to its {out.shape[0]} channels: Keras "
                   "3.15's TensorFlow backend then adds the bias along the width (keras.ops.add reads the "
                   "(1, C, 1, 1) bias as channels_last), so the layer does not compute convolution + bias")


def _extent(kernel, dilation):
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))


def _conv2d(imp, layer, x):
    x = imp.image(x, layer.data_format)
    kernel, stride, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    source, pads = _padded_input(imp, x, layer.padding, _extent(kernel, dilation), stride)
    spec = Conv2d(int(layer.filters), kernel, stride, _padding(pads), bool(layer.use_bias), int(layer.groups),
                  dilation)
    values = imp.keras_values(layer)
    weights = {"weight": _canonical(imp, spec, source, "weight", values["kernel"])}
    if layer.use_bias:
        weights["bias"] = values["bias"]
    out = imp.leaf(_name(imp), spec, source, weights=weights)
    _check_bias_axis(imp, layer, out)
    return _then_activation(imp, layer.activation, out)


def _depthwise_conv2d(imp, layer, x):
    x = imp.image(x, layer.data_format)
    kernel, stride, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    source, pads = _padded_input(imp, x, layer.padding, _extent(kernel, dilation), stride)
    channels = source.shape[0]
    spec = Conv2d(channels * int(layer.depth_multiplier), kernel, stride, _padding(pads), bool(layer.use_bias),
                  channels, dilation)
    values = imp.keras_values(layer)
    weights = {"weight": _canonical(imp, spec, source, "weight", values["kernel"])}
    if layer.use_bias:
        weights["bias"] = values["bias"]
    out = imp.leaf(_name(imp), spec, source, weights=weights)
    _check_bias_axis(imp, layer, out)
    return _then_activation(imp, layer.activation, out)


def _separable_conv2d(imp, layer, x):
    """A depthwise convolution (stride, padding, dilation; no bias) then a 1x1 pointwise one (the
    bias), as keras computes it: two spec layers, ``NAME/depthwise`` and ``NAME/pointwise``."""
    x = imp.image(x, layer.data_format)
    kernel, stride, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    source, pads = _padded_input(imp, x, layer.padding, _extent(kernel, dilation), stride)
    channels = source.shape[0]
    name = _name(imp)
    values = imp.keras_values(layer)
    depthwise = Conv2d(channels * int(layer.depth_multiplier), kernel, stride, _padding(pads), False, channels,
                       dilation)
    middle = imp.leaf(f"{name}/depthwise", depthwise, source,
                      weights={"weight": _canonical(imp, depthwise, source, "weight", values["depthwise_kernel"])})
    pointwise = Conv2d(int(layer.filters), 1, bias=bool(layer.use_bias))
    weights = {"weight": _canonical(imp, pointwise, middle, "weight", values["pointwise_kernel"])}
    if layer.use_bias:
        weights["bias"] = values["bias"]
    out = imp.leaf(f"{name}/pointwise", pointwise, middle, weights=weights)
    _check_bias_axis(imp, layer, out)
    return _then_activation(imp, layer.activation, out)


def _zero_padding2d(imp, layer, x):
    x = imp.image(x, layer.data_format)
    (top, bottom), (left, right) = layer.padding
    return imp.leaf(_name(imp), Pad2d(_padding((top, bottom, left, right))), x)


def _cropping2d(imp, layer, x):
    """Cropping2D on either data_format: the spec's (C, H, W) shape names H and W alike."""
    x = imp.image(x, layer.data_format)
    (top, bottom), (left, right) = layer.cropping
    return imp.leaf(_name(imp), Crop2d(_padding((top, bottom, left, right))), x)


# -- normalisation ----------------------------------------------------------------------------

def _batchnorm(imp, layer, x):
    x = imp.standard(x)
    _channel_axis(imp, layer.axis, x, "batch normalisation")
    if getattr(layer, "renorm", False):
        imp.refuse("batch renormalisation (renorm=True) has no spec mapping")
    spec = BatchNorm(eps=float(layer.epsilon), momentum=layout.momentum_to_canonical(layer.momentum), scale=bool(layer.scale),
                     center=bool(layer.center))
    return imp.leaf(_name(imp), spec, x, weights=_named_weights(imp, layer, spec, x))


def _layernorm(imp, layer, x):
    x = imp.standard(x)
    _channel_axis(imp, layer.axis, x, "layer normalisation")
    if not (layer.scale and layer.center) or getattr(layer, "rms_scaling", False):
        imp.refuse("the spec's layernorm has a learned scale and offset: imported with scale=True, center=True, "
                   "rms_scaling=False")
    spec = LayerNorm(eps=float(layer.epsilon))
    return imp.leaf(_name(imp), spec, x, weights=_named_weights(imp, layer, spec, x))


def _normalize_node(imp, x: Value, mean, std, what: str) -> Value:
    mean, std = _per_channel(imp, mean, x, what), _per_channel(imp, std, x, what)
    if mean.size != std.size:
        mean, std = np.broadcast_arrays(mean, std)
    if not np.all(np.isfinite(std)) or np.any(std <= 0) or not np.all(np.isfinite(mean)):
        imp.refuse(f"{what} gives a standard deviation {std.tolist()} (the spec's normalize needs positive finite "
                   "ones: a positive scale)")
    return imp.leaf(_name(imp), Normalize(tuple(mean.tolist()), tuple(std.tolist())), x)


def _rescaling(imp, layer, x):
    """x * scale + offset = (x - mean) / std with std = 1 / scale and mean = -offset / scale, from
    the float32 values Keras multiplies by."""
    x = imp.standard(x)
    scale = np.asarray(layer.scale, dtype=np.float32).astype(np.float64)
    offset = np.asarray(layer.offset, dtype=np.float32).astype(np.float64)
    if (scale.size > 1 or offset.size > 1) and x.layout == NCHW:
        # keras 3.15 reshapes a per-channel scale to (C, 1, 1) only while the global image_data_format is
        # channels_first, and never the offset, which then broadcasts over W (layers/preprocessing/rescaling.py)
        imp.refuse("per-channel scale or offset on a channels_first tensor: Keras broadcasts them over "
                   "different axes depending on the global image_data_format, so there is no one function to map")
    if scale.ndim > 1 or offset.ndim > 1:
        imp.refuse(f"scale {scale.shape} / offset {offset.shape}: imported with scalars or one value per channel")
    if np.any(scale == 0):
        imp.refuse("a scale of 0 (a constant output) has no spec mapping")
    return _normalize_node(imp, x, -offset / scale, 1.0 / scale, "Rescaling")


def _normalization(imp, layer, x):
    x = imp.standard(x)
    if layer.invert:
        imp.refuse("invert=True (de-normalisation) has no spec mapping")
    kept = tuple(getattr(layer, "_keep_axis", ()))
    rank = len(x.keras_shape()) + 1
    if kept and kept != (x.channel_axis() + 1,):
        imp.refuse(f"it normalises per position along axes {list(kept)} of a {rank}-D {_layout_words(x)} tensor; "
                   "the spec's normalize is per channel (axis = the channel axis) or over everything (axis=None)")
    if layer.mean is None:
        imp.refuse("it is not built (no mean and variance yet)")
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype=np.float32).reshape(-1)
    variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype=np.float32).reshape(-1)
    # (x - mean) / max(sqrt(variance), epsilon), all in float32 (the divisor exactly as Keras has it)
    std = np.maximum(np.sqrt(variance), np.float32(keras.config.epsilon()))
    return _normalize_node(imp, x, mean.astype(np.float64), std.astype(np.float64), "Normalization")


# -- pooling ----------------------------------------------------------------------------------

def _pool_options(shape, kernel, stride, pads, pool_type, divisor_ok=None, include_pad_first=True):
    """The spec pool (``pool_type``) whose windows are those of a Keras 'valid' pool over the
    input padded by ``pads`` (top, bottom, left, right), or None: same output size, same window
    starts (padding = the pads before), the pads after reached by ceil mode. ``divisor_ok``
    (average pools) accepts PyTorch's divisor per output position; where both count_include_pad
    values give it, ``include_pad_first`` says which the spec states (what the Keras layer means)."""
    _, h, w = shape
    before, after = (pads[0], pads[2]), (pads[1], pads[3])
    outs = [(size + lo + hi - k) // s + 1 for size, lo, hi, k, s in zip((h, w), before, after, kernel, stride)]
    for ceil_mode in (False, True):
        if any(lo > k // 2 or pool_output_size(size, k, s, lo, ceil_mode) != out
               for size, lo, k, s, out in zip((h, w), before, kernel, stride, outs)):
            continue
        if pool_type is MaxPool2d:
            return MaxPool2d(kernel, stride, before, ceil_mode)
        for count_include_pad in ((True, False) if include_pad_first else (False, True)):
            divisor = avg_pool_divisor(h, w, kernel, stride, before, ceil_mode, count_include_pad)
            if divisor_ok(divisor):
                return AvgPool2d(kernel, stride, before, ceil_mode, count_include_pad)
    return None


def _real_counts(size: int, kernel: int, stride: int, before: int) -> np.ndarray:
    """How many input elements each 'same' window covers along one axis (what Keras divides by)."""
    start = np.arange(-(-size // stride)) * stride - before
    return (np.minimum(start + kernel, size) - np.maximum(start, 0)).astype(np.float64)


def _pool_args(layer):
    return tuple(layer.pool_size), tuple(layer.strides)


def _maxpool(imp, layer, x):
    x = imp.image(x, layer.data_format)
    kernel, stride = _pool_args(layer)
    source, pads, entry = x, (0, 0, 0, 0), None
    if layer.padding == "same":
        _, h, w = x.shape
        pads = same_pads(h, kernel[0], stride[0]) + same_pads(w, kernel[1], stride[1])
    else:
        entry = imp.fusable(x, pending="-inf padding")
        if entry is not None:
            source, pads = entry.inputs[0], entry.pending[1]
    spec = _pool_options(source.shape, kernel, stride, pads, MaxPool2d)
    if spec is None:
        imp.refuse(f"max pooling {show_shape(kernel)} /{show_shape(stride)} padded {pads} on "
                   f"{show_shape(source.shape)}: no PyTorch-style pool has these windows (its padding before is at "
                   "most half the window, and padding after comes only from ceil mode)")
    if entry is not None:
        imp.remove(entry)
    return imp.leaf(_name(imp), spec, source)


def _avgpool(imp, layer, x):
    """'same' excludes the padding from the divisor; 'valid' after a ZeroPadding2D that feeds only
    this pool counts it (then the padding is folded in when a spec pool has those windows)."""
    x = imp.image(x, layer.data_format)
    kernel, stride = _pool_args(layer)
    area = kernel[0] * kernel[1]
    if layer.padding == "same":
        _, h, w = x.shape
        pads = same_pads(h, kernel[0], stride[0]) + same_pads(w, kernel[1], stride[1])
        real = np.outer(_real_counts(h, kernel[0], stride[0], pads[0]), _real_counts(w, kernel[1], stride[1], pads[2]))

        def excludes_padding(divisor):
            return divisor.shape == real.shape and np.array_equal(divisor, real)

        spec = _pool_options(x.shape, kernel, stride, pads, AvgPool2d, excludes_padding, include_pad_first=False)
        if spec is None:
            imp.refuse(f"average pooling 'same' {show_shape(kernel)} /{show_shape(stride)} on {show_shape(x.shape)}: "
                       "no PyTorch-style pool has these windows and divisors (its padding before is at most half the "
                       "window, and padding after comes only from ceil mode)")
        return imp.leaf(_name(imp), spec, x)
    source, pads = x, (0, 0, 0, 0)
    entry = imp.fusable(x, "pad2d")
    if entry is not None:
        candidate = _pool_options(entry.inputs[0].shape, kernel, stride, entry.layer.pads, AvgPool2d,
                                  lambda d: bool(np.all(d == area)))
        if candidate is not None:
            imp.remove(entry)
            imp.counters["zero padding folded"] += 1
            out = imp.leaf(_name(imp), candidate, entry.inputs[0])
            imp.nodes[out.node].origin["avgpool"] = (entry.inputs[0], entry.layer.pads, None)
            return out
        source, pads = entry.inputs[0], entry.layer.pads
    out = imp.leaf(_name(imp), AvgPool2d(kernel, stride), x)
    imp.nodes[out.node].origin["avgpool"] = (source, pads, entry.name if entry is not None else None)
    return out


def _global_pool(kind):
    def convert(imp, layer, x):
        x = imp.image(x, layer.data_format)
        spec = kind(keepdims=bool(layer.keepdims))
        return imp.leaf(_name(imp), spec, x, layout=x.layout if layer.keepdims else FLAT)
    return convert


# -- shapes -----------------------------------------------------------------------------------

def _flatten(imp, layer, x):
    index = index_of(x)
    if layer.data_format == "channels_first" and index.ndim > 1:
        index = np.moveaxis(index, 0, -1)  # Keras moves channels last before flattening
    return _to_flat(imp, x, index.reshape(-1))


def _to_flat(imp, x: Value, index: np.ndarray) -> Value:
    """A flat Keras tensor with ``index``: a spec flatten when the value is an image, else the same
    value re-ordered (no spec layer)."""
    if x.is_image:
        out = imp.leaf(_name(imp), Flatten(), x, layout=FLAT)
        return indexed(replace(out, chw=x.shape), index, out.producer, 1)
    return indexed(x, index, _name(imp), 1)


def _reshape(imp, layer, x):
    try:
        index = index_of(x).reshape(tuple(layer.target_shape))
    except ValueError:
        imp.refuse(f"target shape {layer.target_shape} does not fit its {show_shape(x.keras_shape())} input")
    if index.ndim == 1:
        return _to_flat(imp, x, index)
    if not x.is_image:
        channels = x.shape[0]
        entry = imp.fusable(x, "global_avgpool") or imp.fusable(x, "global_maxpool")
        layout = {(1, 1, channels): NHWC, (channels, 1, 1): NCHW}.get(index.shape)
        if entry is not None and x.layout == FLAT and layout is not None and not entry.layer.keepdims:
            # squeeze-and-excitation: the pool's (C,) reshaped to (1, 1, C) is the pool with keepdims
            entry.layer = replace(entry.layer, keepdims=True)
            entry.shape = (channels, 1, 1)
            imp.counters["global pool reshaped"] += 1
            return Value(entry.name, entry.shape, layout, _name(imp))
        imp.refuse(f"it turns flat features {show_shape(x.shape)} into a {show_shape(index.shape)} tensor; the spec "
                   "has no reshape (imported: a global pool's output reshaped to (1, 1, C), which becomes the pool "
                   "with keepdims)")
    return imp.settle(indexed(x, index, _name(imp), 1))


def _permute(imp, layer, x):
    axes = [int(d) - 1 for d in layer.dims]
    return imp.settle(indexed(x, np.transpose(index_of(x), axes), _name(imp), 1))


# -- merges -----------------------------------------------------------------------------------

def merge_values(imp: Importer, kind: str, values: list[Value], axis=None) -> Value:
    values = [imp.standard(v) for v in values]
    layouts = sorted({v.layout for v in values})
    if len(layouts) > 1 or len({v.chw for v in values}) > 1:
        imp.refuse(f"its inputs are laid out differently ({', '.join(_layout_words(v) for v in values)})")
    shapes = [v.shape for v in values]
    first = values[0]
    if kind == "concat":
        if _axis(imp, axis, first) != first.channel_axis():
            imp.refuse(f"it concatenates along axis {axis}, not the channels of its {_layout_words(first)} inputs")
        if first.layout == HWC_FLAT:
            imp.refuse("it concatenates (H, W, C)-ordered flat features, which are not one (H, W, C) order")
        if any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
            imp.refuse(f"it concatenates shapes {', '.join(map(show_shape, shapes))} (spec shapes)")
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
    else:
        shape = max(shapes, key=lambda s: int(np.prod(s)))
        for s in shapes:
            if s != shape and not (len(shape) == 3 and s == (shape[0], 1, 1)):
                imp.refuse(f"{kind} of shapes {', '.join(map(show_shape, shapes))}: the spec broadcasts only a "
                           "(C, 1, 1) gate over a (C, H, W) image")
    return imp.merge(_name(imp), kind, values, shape, first.layout)


def _merge(kind):
    def convert(imp, layer, inputs):
        return merge_values(imp, kind, list(inputs), getattr(layer, "axis", None))
    return convert


# -- elementwise and the rest -------------------------------------------------------------------

def _dropout(imp, layer, x):
    x = imp.standard(x)
    rate = float(layer.rate)
    noise = layer.noise_shape
    if noise is None:
        return imp.leaf(_name(imp), Dropout(p=rate), x)
    noise = tuple(noise)
    if noise == (None,) + (1,) * len(x.keras_shape()):
        return imp.leaf(_name(imp), DropPath(p=rate), x)  # one draw per example: stochastic depth
    imp.refuse(f"noise_shape {noise}: imported: None (dropout) or (None, 1, ..., 1) (drop_path)")


def _identity(imp, layer, x):
    return imp.leaf(_name(imp), Identity(), imp.standard(x))


def _dense(imp, layer, x):
    """On flat features a dense layer (rows permuted for (H, W, C)-flattened input); on a
    channels_last image, where Dense acts on the channels of each pixel, a 1x1 convolution."""
    x = imp.standard(x)
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        imp.refuse("a LoRA-enabled or quantized Dense has no spec mapping")
    values = imp.keras_values(layer)
    kernel = values["kernel"]
    if x.layout == NCHW:
        imp.refuse("Dense acts on the last axis, which is W of a channels_first image")
    if x.layout == NHWC:
        spec = Conv2d(int(layer.units), 1, bias=bool(layer.use_bias))
        weights = {"weight": _canonical(imp, spec, x, "weight", kernel.reshape(1, 1, *kernel.shape))}
        layout = NHWC
    else:
        spec = Dense(int(layer.units), bias=bool(layer.use_bias))
        weights = {"weight": _canonical(imp, spec, x, "weight", kernel)}
        layout = FLAT
    if layer.use_bias:
        weights["bias"] = values["bias"]
    return _then_activation(imp, layer.activation, imp.leaf(_name(imp), spec, x, layout=layout, weights=weights))


def _binary_op(kind):
    """keras ops on a tensor (``x + 3``, ``x * (1 / 6)``, ``x + y``): two tensors merge (add, mul);
    a tensor and a positive scalar is a fixed normalize. ``relu6(x + 3) * (1 / 6)`` (MobileNetV3's
    hard sigmoid) becomes the spec's hardsigmoid."""
    def convert(imp, op, a, b):
        tensors = [v for v in (a, b) if isinstance(v, Value)]
        if len(tensors) == 2:
            if kind in ("add", "mul"):
                return merge_values(imp, kind, tensors)
            imp.refuse(f"{kind} of two tensors has no spec merge")
        constant = b if isinstance(a, Value) else a
        if not isinstance(a, Value) and kind in ("sub", "div"):
            imp.refuse(f"a constant {kind} a tensor has no spec mapping")
        if np.ndim(constant) != 0:
            imp.refuse(f"a {np.shape(constant)} constant operand: imported with Python scalars")
        c = float(np.float32(constant))
        x = imp.standard(tensors[0])
        if kind in ("mul", "div"):
            if c <= 0:
                imp.refuse(f"{kind} by {c}: the spec's normalize divides by a positive std")
            std = c if kind == "div" else 1.0 / c
            if np.float32(1.0 / std) == np.float32(1.0 / 6.0):
                fused = _hard_sigmoid(imp, x)
                if fused is not None:
                    return fused
            return _normalize_node(imp, x, 0.0, std, f"{kind} by {c}")
        out = _normalize_node(imp, x, -c if kind == "add" else c, 1.0, f"{kind} {c}")
        imp.nodes[out.node].origin["add"] = c if kind == "add" else -c
        return out
    return convert


def _hard_sigmoid(imp, x: Value) -> Value | None:
    """relu6(y + 3) / 6 when ``x`` is such a relu6 and both nodes feed only this op."""
    relu = imp.fusable(x, "activation")
    if relu is None or relu.layer.function != "relu6":
        return None
    added = imp.fusable(relu.inputs[0], "normalize")
    if added is None or added.origin.get("add") != 3.0:
        return None
    imp.remove(relu)
    imp.remove(added)
    imp.counters["hard sigmoid fused"] += 1
    return imp.leaf(_name(imp), Activation("hardsigmoid"), added.inputs[0])


def _op_activation(make):
    """A keras op on a tensor (``keras.ops.gelu(x, approximate=True)`` in a functional graph): the
    spec activation ``make(op)`` gives, with the op's own arguments."""
    def convert(imp, op, x, *rest):
        if rest:
            imp.refuse(f"it is called with {len(rest)} more positional argument(s); imported: the tensor alone")
        x = imp.standard(x)
        spec = make(op)
        if spec.function == "softmax":
            _channel_axis(imp, op.axis, x, "softmax")
        return imp.leaf(_name(imp), spec, x)
    return convert


# -- netparity's own Keras layers (a spec built by the keras backend imports back) ----------------

def _constant_pad(imp, layer, x):
    x = imp.image(x, "channels_last")
    if layer.value == 0:
        return imp.leaf(_name(imp), Pad2d(_padding(layer.pads)), x)
    if layer.value == float("-inf"):
        return imp.pending(_name(imp), x, "-inf padding", tuple(layer.pads))
    imp.refuse(f"padding with {layer.value}: the spec pads with zeros (pad2d) or -inf inside a max pool")


def _constant_scale(imp, layer, x):
    """The divisor correction after a 'valid' average pool: that pool becomes the spec pool
    (ceil mode, count_include_pad) with these windows and divisors."""
    entry = imp.fusable(x, "avgpool2d")
    if entry is None or "avgpool" not in entry.origin:
        imp.refuse("a ConstantScale is imported only right after the AveragePooling2D whose divisor it corrects")
    source, pads, pad_name = entry.origin["avgpool"]
    pool = entry.layer
    scale = np.asarray(layer.scale, dtype=np.float32)[0, :, :, 0]
    area = pool.kernel[0] * pool.kernel[1]

    def same_scale(divisor):
        return divisor.shape == scale.shape and np.array_equal(np.float32(area / divisor), scale)

    spec = _pool_options(source.shape, pool.kernel, pool.stride, pads, AvgPool2d, same_scale)
    pad_entry = imp.nodes.get(pad_name) if pad_name else None
    if spec is None or (pad_name and (pad_entry is None or imp.fusable(entry.inputs[0], "pad2d") is None)):
        imp.refuse("no PyTorch-style average pool has these windows and divisors")
    if pad_entry is not None:
        imp.remove(pad_entry)
        imp.counters["zero padding folded"] += 1
    entry.layer, entry.inputs = spec, [source]
    entry.shape = imp._checked_shape(spec, source.shape, entry.name)
    return Value(entry.name, entry.shape, x.layout, _name(imp))


def _subsample(imp, layer, x):
    """Every stride-th output of a stride-1 convolution feeding only it: the strided convolution."""
    entry = imp.fusable(x, "conv2d")
    if entry is None or entry.layer.stride != (1, 1) or x.layout != NHWC:
        imp.refuse("a Subsample2D is imported only right after the stride-1 convolution it strides")
    conv = replace(entry.layer, stride=tuple(layer.strides))
    entry.layer = conv
    entry.shape = imp._checked_shape(conv, entry.inputs[0].shape, entry.name)
    return Value(entry.name, entry.shape, NHWC, _name(imp))


def _signed_leaky_relu(imp, layer, x):
    return imp.leaf(_name(imp), Activation("leaky_relu", negative_slope=float(layer.negative_slope)),
                    imp.standard(x))


def _gelu(imp, layer, x):
    return imp.leaf(_name(imp), Activation("gelu", approximate="tanh" if layer.approximate else "none"),
                    imp.standard(x))


def _channel_scale(imp, layer, x):
    x = imp.standard(x)
    _last_axis_is_channels(imp, x, "a channel scale")
    spec = ChannelScale()
    return imp.leaf(_name(imp), spec, x, weights=_named_weights(imp, layer, spec, x))


def _layer_scale(imp, layer, x):
    """keras.applications ConvNeXt's LayerScale: x * gamma (its variable is unnamed, so by attribute)."""
    x = imp.standard(x)
    _last_axis_is_channels(imp, x, "a layer scale")
    gamma = np.asarray(keras.ops.convert_to_numpy(layer.gamma), dtype=np.float32)
    spec = ChannelScale()
    return imp.leaf(_name(imp), spec, x, weights={"weight": _canonical(imp, spec, x, "weight", gamma)})


def _fixed_normalize(imp, layer, x):
    x = imp.standard(x)
    _last_axis_is_channels(imp, x, "normalisation")
    return _normalize_node(imp, x, np.asarray(layer.mean, np.float64), np.asarray(layer.std, np.float64),
                           "FixedNormalize")


def _channel_slice(imp, layer, x):
    x = imp.standard(x)
    if x.layout not in (NHWC, FLAT):
        imp.refuse(f"a channel slice of a {_layout_words(x)} tensor")
    return imp.leaf(_name(imp), ChannelSlice(start=int(layer.start), stop=int(layer.stop)), x)


def _adaptive_avgpool(imp, layer, x):
    return imp.leaf(_name(imp), AdaptiveAvgPool2d(tuple(layer.output_size)), imp.image(x, "channels_last"))


def _masked_dropout(imp, layer, x):
    return imp.leaf(_name(imp), Dropout(p=float(layer.rate)), imp.standard(x))


def _stochastic_depth(imp, layer, x):
    return imp.leaf(_name(imp), DropPath(p=float(layer.drop_path_rate)), imp.standard(x))


def _converters() -> dict:
    L = keras.layers
    from keras.src.applications import convnext
    from keras.src.ops import nn as keras_nn  # the op classes of keras.ops.relu(x) etc. in a functional graph
    from keras.src.ops import numpy as keras_numpy  # the op classes of ``x + 3`` etc. in a functional graph

    table = {
        L.InputLayer: None,  # handled by the walker
        L.Conv2D: _conv2d, L.DepthwiseConv2D: _depthwise_conv2d, L.SeparableConv2D: _separable_conv2d,
        L.BatchNormalization: _batchnorm, L.LayerNormalization: _layernorm,
        L.Activation: _activation, L.ReLU: _relu, L.LeakyReLU: _leaky_relu, L.PReLU: _prelu, L.ELU: _elu,
        L.Softmax: _softmax,
        L.ZeroPadding2D: _zero_padding2d, L.Cropping2D: _cropping2d,
        L.MaxPooling2D: _maxpool, L.AveragePooling2D: _avgpool,
        L.GlobalAveragePooling2D: _global_pool(GlobalAvgPool), L.GlobalMaxPooling2D: _global_pool(GlobalMaxPool),
        L.Add: _merge("add"), L.Multiply: _merge("mul"), L.Concatenate: _merge("concat"),
        L.Reshape: _reshape, L.Flatten: _flatten, L.Permute: _permute,
        L.Dense: _dense, L.Dropout: _dropout, L.Identity: _identity,
        L.Rescaling: _rescaling, L.Normalization: _normalization,
        keras_numpy.Add: _binary_op("add"), keras_numpy.Subtract: _binary_op("sub"),
        keras_numpy.Multiply: _binary_op("mul"), keras_numpy.TrueDivide: _binary_op("div"),
        keras_numpy.Divide: _binary_op("div"),
        keras_nn.Relu: _op_activation(lambda op: Activation("relu")),
        keras_nn.Relu6: _op_activation(lambda op: Activation("relu6")),
        keras_nn.Sigmoid: _op_activation(lambda op: Activation("sigmoid")),
        keras_numpy.Tanh: _op_activation(lambda op: Activation("tanh")),
        keras_nn.Silu: _op_activation(lambda op: Activation("silu")),
        keras_nn.HardSigmoid: _op_activation(lambda op: Activation("hardsigmoid")),
        keras_nn.HardSilu: _op_activation(lambda op: Activation("hardswish")),
        keras_nn.Gelu: _op_activation(lambda op: Activation("gelu", approximate="tanh" if op.approximate else "none")),
        keras_nn.Elu: _op_activation(lambda op: Activation("elu", alpha=float(op.alpha))),
        keras_nn.LeakyRelu: _op_activation(lambda op: Activation("leaky_relu",
                                                                 negative_slope=float(op.negative_slope))),
        keras_nn.Softmax: _op_activation(lambda op: Activation("softmax")),
        convnext.LayerScale: _layer_scale, convnext.StochasticDepth: _stochastic_depth,
        keras_backend.ConstantPad2D: _constant_pad, keras_backend.ConstantScale: _constant_scale,
        keras_backend.Subsample2D: _subsample, keras_backend.SignedLeakyReLU: _signed_leaky_relu,
        keras_backend.GELU: _gelu, keras_backend.ChannelScale: _channel_scale,
        keras_backend.FixedNormalize: _fixed_normalize, keras_backend.ChannelSlice: _channel_slice,
        keras_backend.AdaptiveAvgPool2D: _adaptive_avgpool, keras_backend.MaskedDropout: _masked_dropout,
    }
    return {cls: convert for cls, convert in table.items() if convert is not None}


CONVERTERS = _converters()

__all__ = ["CONVERTERS", "ACTIVATIONS", "same_pads", "spec_activation"]
