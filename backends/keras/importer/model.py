"""The whole import of one Keras model: input, graph walk, folding, weights, notes, runner."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ....spec.layers import Flatten, show_shape
from ...frameworks import import_keras
from .graph import Importer, KerasImportError, check_graph_model, graph_of
from .values import FLAT, HWC_FLAT, NCHW, NHWC, Value, index_of


def _layers_in_order(keras, model):
    """Every layer of the model, nested models' layers in place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers_in_order(keras, layer)
        else:
            yield layer


def _input_layout(keras, model) -> str:
    """NHWC or NCHW: the data_format of the first layer that has one (Keras' own layers all do),
    else keras.config.image_data_format()."""
    for layer in _layers_in_order(keras, model):
        data_format = getattr(layer, "data_format", None)
        if data_format in ("channels_last", "channels_first"):
            return NCHW if data_format == "channels_first" else NHWC
    return NCHW if keras.config.image_data_format() == "channels_first" else NHWC


def _spec_input(model, keras_shape, layout: str, input_shape) -> tuple[int, int, int]:
    """The spec's (C, H, W) from the Keras input's per-example shape and ``input_shape``."""
    where = model.name
    if len(keras_shape) == 1:
        if input_shape is not None and tuple(np.atleast_1d(input_shape)) not in ((keras_shape[0],),
                                                                               (keras_shape[0], 1, 1)):
            raise KerasImportError("", "", f"{where!r} takes flat inputs of {keras_shape[0]} features; "
                                           f"input_shape {input_shape!r} does not fit")
        if keras_shape[0] is None:
            raise KerasImportError("", "", f"{where!r} takes flat inputs of unknown size")
        return (int(keras_shape[0]), 1, 1)
    if len(keras_shape) != 3:
        raise KerasImportError("", "", f"{where!r} takes {len(keras_shape)}-D examples {keras_shape}; the spec's "
                                       "input is an image (C, H, W) or flat features")
    c, h, w = (keras_shape[2], keras_shape[0], keras_shape[1]) if layout == NHWC else keras_shape
    if input_shape is None:
        wanted = (c, h, w)
    elif isinstance(input_shape, (int, np.integer)):
        wanted = (c, int(input_shape), int(input_shape))
    else:
        wanted = tuple(int(v) for v in input_shape)
        if len(wanted) != 3:
            raise KerasImportError("", "", f"input_shape must be N or (C, H, W), got {input_shape!r}")
    for given, fixed, what in zip(wanted, (c, h, w), ("channels", "height", "width")):
        if given is None:
            raise KerasImportError("", "", f"{where!r} does not fix its input {what}; give input_shape (N or "
                                           "(C, H, W))")
        if fixed is not None and given != fixed:
            raise KerasImportError("", "", f"{where!r} takes inputs of {what} {fixed}, not {given} (its input is "
                                           f"{show_shape(tuple('?' if v is None else v for v in keras_shape))})")
    return wanted


def source_counts(keras, model) -> dict[str, int]:
    """Keras' own parameter counts: trainable variables, BatchNorm moving statistics, and any
    other non-trainable variables (preprocessing constants, frozen weights) by what they are."""
    counts = Counter(trainable=sum(int(np.prod(v.shape)) for v in model.trainable_weights), running_stats=0)
    for v in model.non_trainable_weights:
        size = int(np.prod(v.shape))
        name = v.name
        if name in ("moving_mean", "moving_variance"):
            counts["running_stats"] += size
        elif name in ("mean", "variance", "count"):
            counts["Normalization constants (in the spec's normalize)"] += size
        elif "seed" in name:
            continue  # a dropout layer's random state, not a weight
        else:
            counts["frozen (trainable=False) weights"] += size
    return dict(counts)


class KerasRunner:
    """The source Keras model on the spec's NCHW batches: ``forward(x)`` gives its output in the
    spec's layout; ``layers(x)`` every imported layer's output by spec layer name (the Keras
    layer's, or the node made for it)."""

    def __init__(self, keras, graph, input_layout: str, output: Value, layer_values):
        self.keras = keras
        self.graph = graph
        self.input_layout = input_layout
        self.output = output
        self.layer_values = layer_values  # [(spec node name, Keras tensor, Value)]
        self.framework = f"Keras {keras.__version__} ({keras.backend.backend()})"
        self._probe = None

    def _keras_input(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self.input_layout == NHWC:
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if self.input_layout == FLAT:
            return np.ascontiguousarray(x.reshape(x.shape[0], -1))
        return x

    def forward(self, x):
        out = self.graph(self._keras_input(x), training=False)
        return to_canonical(np.asarray(self.keras.ops.convert_to_numpy(out)), self.output)

    def layers(self, x):
        if self._probe is None:
            self._probe = self.keras.Model(self.graph.inputs[0], [t for _, t, _ in self.layer_values])
        outs = self._probe(self._keras_input(x), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {name: to_canonical(np.asarray(self.keras.ops.convert_to_numpy(out)), value)
                for (name, _, value), out in zip(self.layer_values, outs)}


def to_canonical(array: np.ndarray, value: Value) -> np.ndarray:
    """A Keras batch of ``value``'s tensor in the spec's layout (NCHW, (C, H, W)-flat)."""
    batch = array.shape[0]
    if value.layout in (NCHW, FLAT):
        return array.reshape(batch, *value.shape)
    if value.layout == NHWC:
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    out = np.empty((batch, int(np.prod(value.shape))), dtype=array.dtype)
    out[:, index_of(value).reshape(-1)] = array.reshape(batch, -1)
    return out.reshape(batch, *value.shape)


def _notes(imp: Importer, input_layout: str, output: Value) -> list[str]:
    notes = []
    if input_layout == NHWC:
        notes.append("the Keras model takes channels_last (NHWC) images; the spec takes the same images as NCHW")
    elif input_layout == FLAT:
        notes.append("the Keras model takes flat features; the spec takes them as (F, 1, 1) and flattens them")
    if output.layout == HWC_FLAT:
        notes.append("the Keras output is a flattening in (H, W, C) order; the spec's output holds the same "
                     "values in PyTorch's (C, H, W) order")
    words = {"zero padding folded": "ZeroPadding2D layer(s) became the padding of the convolution or average "
                                    "pool they feed",
             "global pool reshaped": "global pool + Reshape((1, 1, C)) pair(s) (squeeze-and-excitation) became "
                                     "global pools with keepdims",
             "hard sigmoid fused": "relu6(x + 3) * (1/6) op chain(s) became the spec's hardsigmoid"}
    notes += [f"{count} {words[what]}" for what, count in imp.counters.items() if count]
    if any(e.layer is not None and e.layer.kind == "batchnorm" for e in imp.nodes.values()):
        notes.append("BatchNormalization momentum m is the spec's (PyTorch's) 1 - m")
    return notes


def _layer_values(imp: Importer, spec_shapes: dict[str, tuple]) -> list:
    """(node, Keras tensor, Value) for the last top-level tensor of each final node whose value it
    holds (a later fusion may have changed a node: its last tensor is the fused result)."""
    last = {}
    for tensor, value in imp.top_values:
        last[value.node] = (tensor, value)
    return [(node, tensor, value) for node, (tensor, value) in last.items()
            if node in spec_shapes and spec_shapes[node] == value.shape]


def import_keras_model(model, input_shape=None, name: str | None = None):
    from ...importing import ImportedModel
    from .layers import CONVERTERS

    keras = import_keras()
    if not isinstance(model, keras.Model):
        raise KerasImportError("", "", f"expected a keras.Model, got {type(model).__module__}.{type(model).__name__}")
    check_graph_model(keras, model, model.name)
    graph = graph_of(keras, model)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise KerasImportError("", "", f"{model.name!r} has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                                       "outputs; a spec has one of each")
    tensor = graph.inputs[0]
    keras_shape = tuple(tensor.shape[1:])
    layout = _input_layout(keras, model) if len(keras_shape) == 3 else FLAT
    shape = _spec_input(model, keras_shape, layout, input_shape)
    input_name = tensor._keras_history.operation.name
    imp = Importer(keras, CONVERTERS)
    if layout == FLAT:
        imp.current = (f"{input_name}/flatten", "")
        start = imp.leaf(f"{input_name}/flatten", Flatten(), Value(input_name, shape, NCHW, input_name), layout=FLAT)
    else:
        start = Value(input_name, shape, layout, input_name)
    (output,) = imp.functional(graph, [start], "", top=True)
    imp.current = (output.producer, "")
    output = imp.standard(output)
    folded = imp.fold(input_name, output)
    spec = folded.spec(name or model.name, shape, f"imported from the Keras model {model.name!r}")
    inference = spec.infer()
    weights = _canonical_weights(imp, folded.paths, inference)
    spec_shapes = {row.layer.name: row.output_shape for row in inference.rows if row.layer.name}
    runner = KerasRunner(keras, graph, layout, output, _layer_values(imp, spec_shapes))
    return ImportedModel(spec=spec, weights=weights, source=f"Keras model {model.name!r}",
                         source_framework=runner.framework, notes=_notes(imp, layout, output),
                         source_input=input_name, source_output=output.producer or None,
                         source_counts=source_counts(keras, model), runner=runner)


def _canonical_weights(imp: Importer, paths: dict[str, str], inference) -> dict[str, np.ndarray]:
    """The nodes' weights on their spec keys, in canonical order (Inference.weight_layout)."""
    found = {f"{paths[node]}.{key}": value for node, own in imp.weights.items() for key, value in own.items()}
    layout = inference.weight_layout()
    for key, shape in layout.items():
        value = found.get(key)
        if value is None or tuple(value.shape) != tuple(shape):
            got = "nothing" if value is None else f"shape {tuple(value.shape)}"
            raise KerasImportError("", "", f"internal error: weight {key} {tuple(shape)} got {got}")
    extra = sorted(set(found) - set(layout))
    if extra:
        raise KerasImportError("", "", f"internal error: weights without a spec place: {', '.join(extra[:3])}")
    return {key: np.ascontiguousarray(found[key], dtype=np.float32) for key in layout}


__all__ = ["import_keras_model", "KerasRunner", "to_canonical", "source_counts"]
