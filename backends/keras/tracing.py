"""The port tracer's Keras 3 part (see ``backends/tracing.py``): functional and Sequential models
walked through their layer graph, NCHW inputs fed the way the model holds an image (its data
format, or a ``Permute`` right after its input), each flat feature order followed through
Flatten/Reshape/Permute so that dense rows and per-feature vectors come out in (C, H, W) order.
The kernel layouts and the momentum convention come from ``layout``. Keras is taken from
``sys.modules``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..tracing import (SCALE_NAMES, NotSupported, Trace, TracedLayer, check_shape, effective_padding,
                       flat_to_canonical, flat_to_native, float32_copy, scale_parameter, skipped_notes)
from . import layout


def is_native(model) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer)


def first_conv_channels(model) -> int | None:
    shape = declared_input_shape(model)
    return shape[0] if shape else None


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
    if type(layer).__name__ in SCALE_NAMES and scale_parameter({v.path: v for v in layer.weights}):
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


def _input_axes(model, data_format: str | None = None) -> tuple:
    """How a Keras model's input holds an NCHW image: native axis k holds canonical axis
    ``axes[k]``. The model's data format, unless the input goes straight into a Permute (through
    elementwise layers only): a PyTorch-style NCHW input that ``Permute((2, 3, 1))`` turns
    channels_last, the way ports from PyTorch often start, is fed NCHW. Refuses (NotSupported)
    a Permute that would make the input neither NCHW nor NHWC, or an input that reaches a Permute
    on one path and other layers on another."""
    keras = sys.modules["keras"]
    data_format = data_format or _data_format(model)
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


def _data_format(model, chw=None) -> str:
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


def declared_input_shape(model) -> tuple | None:
    """(C, H, W) from a Keras model's declared input, or None when it is not static."""
    graph = _keras_graph(model)
    if graph is None or not graph.inputs:
        return None
    shape = tuple(graph.inputs[0].shape[1:])
    if len(shape) != 3 or any(v is None for v in shape):
        return None
    canonical = [0, 0, 0]
    for size, axis in zip(shape, _input_axes(model)[1:]):
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
        return {"channels": channels, "eps": float(layer.epsilon), "momentum": layout.momentum_to_canonical(layer.momentum),
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
                if fused is not None and fused is not _linear_activation():
                    # Record the pre-activation output (what a PyTorch layer followed by a separate
                    # activation gives), then apply the activation to carry on.
                    op.activation = _linear_activation()
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


def _linear_activation():
    return sys.modules["keras"].activations.linear


def _is_subsample(op) -> bool:
    """netparity's Keras backend's Subsample2D (the backend is loaded whenever it built one), or the
    same layer as a file written by ``netparity emit`` defines it (that name, a strides pair)."""
    backend = sys.modules.get(f"{__package__}.core")
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


def trace(model, x, training: bool = False) -> Trace:
    """See ``backends.tracing.trace``: the functional graph run node by node, eagerly."""
    keras = sys.modules["keras"]
    if isinstance(model, keras.Sequential) and _keras_graph(model) is None:
        axes = _input_axes(model, keras.config.image_data_format())
        model.build((None, *(x.shape[a] for a in axes[1:])))
    graph = _keras_graph(model)
    if graph is None:
        raise NotSupported(f"{type(model).__name__} is a subclassed Keras model: netparity traces functional and "
                           "Sequential models only (their graph is known); build the port with the functional "
                           "API, e.g. keras.Model(inputs, outputs)")
    data_format = _data_format(model, x.shape[1:])
    channels_last = data_format == "channels_last"
    runner = _KerasRun(training, data_format)
    axes = _input_axes(model, data_format)
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


def _keras_depthwise(layer) -> bool:
    return isinstance(layer, sys.modules["keras"].layers.DepthwiseConv2D)


def _keras_variables(layer: TracedLayer) -> dict:
    if layer.kind == "unknown":
        return {v.name: v for v in layer.native.weights}
    if layer.kind == "channel_scale":
        return {"weight": layer.native.weights[0]}
    return {key: getattr(layer.native, name) for key, name in layout.NATIVE_NAMES[layer.kind].items()
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


def _depthwise_channels(layer: TracedLayer, native_shape) -> int | None:
    return int(native_shape[2]) if _keras_depthwise(layer.native) else None


def _keras_to_canonical(layer: TracedLayer, key: str, value: np.ndarray) -> np.ndarray:
    kind, perm = layer.kind, layer.flat_perm
    if kind == "conv2d" and key == "weight":
        return layout.conv_kernel_to_canonical(value, _depthwise_channels(layer, value.shape))
    if kind == "dense" and key == "weight":
        # rows into (C, H, W) order by the flat order trace found (any Flatten/Reshape/Permute path)
        return flat_to_canonical(layout.dense_kernel_to_canonical(value), perm)
    if kind == "prelu":
        return _alpha_to_canonical(value, layer.config.get("axes"), perm)
    if kind in ("batchnorm", "layernorm", "channel_scale"):
        return _flat(value, perm)
    return value


def _keras_from_canonical(layer: TracedLayer, key: str, value: np.ndarray, native_shape) -> np.ndarray:
    kind, perm = layer.kind, layer.flat_perm
    if kind == "conv2d" and key == "weight":
        return layout.conv_kernel_to_native(value, _depthwise_channels(layer, native_shape))
    if kind == "dense" and key == "weight":
        return layout.dense_kernel_to_native(flat_to_native(value, perm))
    if kind == "prelu":
        return _alpha_from_canonical(value, layer.config.get("axes"), perm, native_shape)
    if kind in ("batchnorm", "layernorm", "channel_scale"):
        return _flat(value, perm, to_canonical=False)
    return value


def read_weights(layer: TracedLayer) -> dict:
    return {key: float32_copy(np.ascontiguousarray(_keras_to_canonical(layer, key, _keras_value(v))))
            for key, v in _keras_variables(layer).items()}


def write_weights(layer: TracedLayer, weights: dict, flatten_source=None) -> list[str]:
    """``flatten_source`` (C, H, W): the layer's flat input is Keras' (H, W, C) flattening of it
    (default: what ``trace`` found)."""
    perm = layer.flat_perm if flatten_source is None else layout.flatten_permutation(flatten_source)
    present = _keras_variables(layer)
    for key, variable in present.items():
        if key not in weights:
            continue
        value = np.asarray(weights[key], dtype=np.float32)
        native_shape = tuple(int(v) for v in variable.shape)
        target = TracedLayer(layer.index, layer.name, layer.kind, layer.type_name, layer.framework, layer.config,
                             native=layer.native, flat_perm=perm)
        check_shape(layer, key, value, _keras_to_canonical(target, key, np.zeros(native_shape, np.float32)).shape)
        variable.assign(np.ascontiguousarray(_keras_from_canonical(target, key, value, native_shape)))
    return skipped_notes(layer, weights, present)
