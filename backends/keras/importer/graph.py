"""Walking a Keras 3 functional (or Sequential) model's layer graph into spec graph nodes.

``Importer`` visits the graph's call nodes in Keras' own order (``_nodes_by_depth``, deepest
first, as ``Function._run_through_graph`` runs them) without running anything: every Keras
tensor becomes a ``Value`` (values.py), every layer call a converter's spec node(s)
(layers.py). Nested functional and Sequential models are walked into, their layers named
``outer/inner`` as Keras 3 names their variables. A node that only exists to feed one consumer
(a ZeroPadding2D before a 'valid' convolution, a global pool before the Reshape of a
squeeze-and-excitation gate) is folded into that consumer when it is its only one; the nodes
left are folded into the spec's blocks by ``graph_folding``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ....spec.errors import NetparityError, SpecError
from ....spec.layers import Layer, Row, Shape, show_shape
from ...graph_folding import GraphNode, fold_graph
from .values import (HWC_FLAT, INDEXED, NCHW, NHWC, Value, channel_permutation, shuffle_groups,
                     standard_layout)


class KerasImportError(NetparityError, ValueError):
    """A Keras model, or one of its layers, that cannot be imported exactly. ``layer`` is the
    Keras layer's name (``outer/inner`` inside a nested model) and ``cls`` its class; both empty
    when the problem is the model as a whole."""

    def __init__(self, layer: str, cls: str, reason: str):
        self.layer, self.cls, self.reason = layer, cls, reason
        where = f"Keras layer {layer!r} ({cls})" if layer else "Keras model"
        super().__init__(f"{where}: {reason}")


@dataclass
class GraphEntry:
    """One spec graph node while the import runs: ``layer`` on ``inputs[0]``, or ``merge`` of
    ``inputs``; ``shape`` its output shape. ``pending`` marks a node that only a particular
    consumer may take (a -inf padding, which only a max pool can absorb): (what, payload).
    ``origin`` remembers how it was made, for the fusions that look back (an ``x + 3`` op)."""

    name: str
    inputs: list[Value]
    shape: Shape
    layer: Layer | None = None
    merge: str | None = None
    pending: tuple | None = None
    origin: dict = field(default_factory=dict)


class Importer:
    """The state of one import: graph nodes, their canonical weights, notes.

    Converters (layers.py) call ``image``/``standard`` to get their input in a layout they
    understand, ``leaf``/``merge`` to add nodes, ``fusable``/``remove`` to absorb a producer, and
    ``refuse`` to stop with an error naming the Keras layer being converted."""

    def __init__(self, keras, converters):
        self.keras = keras
        self.converters = converters
        self.nodes: dict[str, GraphEntry] = {}
        self.weights: dict[str, dict[str, np.ndarray]] = {}
        self.value_count: Counter[str] = Counter()
        self.notes: list[str] = []
        self.counters: Counter[str] = Counter()  # fusions done, for the notes
        self.current = ("", "")  # (name, class) of the Keras layer being converted
        self.calls: Counter[int] = Counter()  # calls of each Keras layer so far
        self.top_values: list[tuple[object, Value]] = []  # (Keras tensor, Value) of the top-level graph

    # -- errors --------------------------------------------------------------------------
    def refuse(self, reason: str):
        name, cls = self.current
        raise KerasImportError(name, cls, reason)

    # -- nodes ---------------------------------------------------------------------------
    def unique(self, name: str) -> str:
        if name not in self.nodes:
            return name
        i = 1
        while f"{name}_{i}" in self.nodes:
            i += 1
        return f"{name}_{i}"

    def _checked_shape(self, layer: Layer, shape: Shape, name: str) -> Shape:
        try:
            layer.check(name)
            return tuple(layer.output_shape(tuple(shape), name))
        except SpecError as error:
            self.refuse(f"as a spec {layer.kind} ({layer.describe()}) on a {show_shape(shape)} input: {error.reason}")

    def leaf(self, name: str, layer: Layer, x: Value, layout: str | None = None, weights=None,
             chw=None, origin=None) -> Value:
        """A node applying ``layer`` to ``x``; its output keeps ``x``'s layout unless told."""
        name = self.unique(name)
        shape = self._checked_shape(layer, x.shape, name)
        self.nodes[name] = GraphEntry(name, [x], shape, layer=layer, origin=origin or {})
        if weights:
            self.weights[name] = weights
        layout = layout or x.layout
        if layout == HWC_FLAT:
            chw = chw or x.chw
        return Value(name, shape, layout, self.current[0], chw=chw if layout == HWC_FLAT else None)

    def pending(self, name: str, x: Value, what: str, payload) -> Value:
        """A node no spec layer computes alone; only a consumer that absorbs it may use it."""
        name = self.unique(name)
        self.nodes[name] = GraphEntry(name, [x], x.shape, pending=(what, payload))
        return replace(x, node=name, producer=self.current[0])

    def merge(self, name: str, kind: str, values: list[Value], shape: Shape, layout: str) -> Value:
        name = self.unique(name)
        self.nodes[name] = GraphEntry(name, list(values), shape, merge=kind)
        return Value(name, shape, layout, self.current[0], chw=values[0].chw if layout == HWC_FLAT else None)

    def entry(self, value: Value) -> GraphEntry | None:
        return self.nodes.get(value.node)

    def fusable(self, value: Value, kind: str | None = None, pending: str | None = None) -> GraphEntry | None:
        """The node holding ``value`` when the current layer is its only consumer and it is a
        ``kind`` leaf (or a ``pending`` node of that sort)."""
        entry = self.nodes.get(value.node)
        if entry is None or value.uses != 1 or self.value_count[entry.name] != 1:
            return None
        if kind is not None and (entry.layer is None or entry.layer.kind != kind):
            return None
        if pending is not None and (entry.pending is None or entry.pending[0] != pending):
            return None
        if kind is None and pending is None:
            return None
        return entry

    def remove(self, entry: GraphEntry) -> None:
        del self.nodes[entry.name]
        self.weights.pop(entry.name, None)

    # -- layouts -------------------------------------------------------------------------
    def settle(self, value: Value) -> Value:
        """An INDEXED value as a standard layout when it is one, or a channel shuffle of one (then a
        channel_shuffle node named after the layer that made it, here, once for all consumers);
        else unchanged."""
        if value.layout != INDEXED:
            return value
        layout = standard_layout(value)
        if layout is not None:
            return replace(value, layout=layout, index=None)
        found = channel_permutation(value)
        groups = shuffle_groups(found[1]) if found is not None else None
        if groups is None:
            return value
        from ....spec.layers import ChannelShuffle

        base = replace(value, layout=found[0], index=None)
        return self.leaf(value.producer, ChannelShuffle(groups=groups), base, layout=found[0])

    def standard(self, value: Value) -> Value:
        """``value`` in a standard layout (see ``settle``), or a refusal naming the layer."""
        value = self.settle(value)
        if value.layout != INDEXED:
            return value
        shape = show_shape(value.keras_shape())
        self.refuse(f"its input (a {shape} Keras tensor made by {value.producer!r}) is a reordering of the spec "
                    f"value {show_shape(value.shape)} that no spec layer computes (the spec has no general reshape "
                    "or transpose; a Reshape/Permute is imported when it undoes a flattening, flattens, or is a "
                    "channel shuffle)")

    def image(self, value: Value, data_format: str | None = None) -> Value:
        """``value`` as an NHWC or NCHW image, in the layout ``data_format`` says (when given)."""
        value = self.standard(value)
        if not value.is_image:
            self.refuse(f"it needs an image input, but its input holds flat features {show_shape(value.shape)}")
        if data_format is not None:
            wanted = NCHW if data_format == "channels_first" else NHWC
            if value.layout != wanted:
                self.refuse(f"its data_format is {data_format!r} but its input tensor is "
                            f"{'channels_last' if value.layout == NHWC else 'channels_first'}")
        return value

    # -- weights -------------------------------------------------------------------------
    def keras_values(self, layer) -> dict[str, np.ndarray]:
        """The layer's variables by their short name, as float32 NumPy arrays."""
        ops = self.keras.ops
        return {v.name: np.asarray(ops.convert_to_numpy(v.value), dtype=np.float32) for v in layer.weights}

    @staticmethod
    def row(name: str, layer: Layer, input_shape: Shape) -> Row:
        """A shape-inference row for the layout functions of backends/keras/core.py."""
        return Row(name, layer, tuple(input_shape), (), 0, 0, 0)

    # -- walking -------------------------------------------------------------------------
    def call(self, operation, args, kwargs, prefix: str) -> list[Value]:
        """Convert one call of ``operation`` (a layer, a nested model or a keras op)."""
        name = prefix + operation.name
        self.current = (name, type(operation).__name__)
        self.calls[id(operation)] += 1
        if self.calls[id(operation)] > 1:
            if getattr(operation, "weights", None):
                self.refuse("it is called more than once, sharing its weights; the spec has no weight sharing")
            name = f"{name}#{self.calls[id(operation)]}"  # a weightless layer used twice: two spec layers
            self.current = (name, type(operation).__name__)
        training = kwargs.get("training")
        if training is not None and not (training is False):
            self.refuse("it is called with training=True, so it runs in training mode even at inference")
        extra = [k for k, v in kwargs.items() if k != "training" and v is not None]
        if extra:
            self.refuse(f"it is called with {', '.join(extra)} (a mask or another argument), which the spec has "
                        "no place for")
        if is_nested_model(self.keras, operation):
            return self.nested(operation, args, prefix)
        converter = self.converters.get(type(operation))
        if converter is None:
            self.refuse(unsupported_message(self.keras, operation, self.converters))
        if isinstance(operation, self.keras.layers.Layer) and len(args) != 1:
            self.refuse(f"it is called with {len(args)} positional arguments; imported: one input (a tensor, or a "
                        "list of tensors for a merge)")
        out = converter(self, operation, *args)
        self.current = (name, type(operation).__name__)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def nested(self, model, args, prefix: str) -> list[Value]:
        (x,) = args if len(args) == 1 else (None,)
        if not isinstance(x, Value):
            self.refuse("a nested model is imported when it takes one input tensor")
        check_graph_model(self.keras, model, prefix + model.name)
        return self.functional(graph_of(self.keras, model), [x], f"{prefix}{model.name}/")

    def functional(self, model, inputs: list[Value], prefix: str, top: bool = False) -> list[Value]:
        nodes_by_depth = model._nodes_by_depth  # Keras' own execution order (keras/src/ops/function.py)
        consumers: Counter[int] = Counter()
        for nodes in nodes_by_depth.values():
            for node in nodes:
                if not node.is_input:
                    for tensor in node.input_tensors:
                        consumers[id(tensor)] += 1
        for tensor in model.outputs:
            consumers[id(tensor)] += 1
        tensors: dict[int, Value] = {}
        for tensor, value in zip(model.inputs, inputs):
            # the outer tensor's other consumers still count
            tensors[id(tensor)] = replace(value, uses=value.uses - 1 + consumers[id(tensor)])
        for depth in sorted(nodes_by_depth, reverse=True):
            for node in nodes_by_depth[depth]:
                if node.is_input:
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                outs = self.call(node.operation, args, kwargs, prefix)
                if len(outs) != len(node.outputs):
                    self.refuse(f"it has {len(node.outputs)} outputs; the spec's layers have one")
                nested = is_nested_model(self.keras, node.operation)
                for tensor, value in zip(node.outputs, outs):
                    value = replace(value, uses=consumers[id(tensor)])
                    tensors[id(tensor)] = value
                    if not nested:  # a nested model's outputs were counted inside it
                        self.value_count[value.node] += 1
                    if top:
                        self.top_values.append((tensor, value))
        return [tensors[id(t)] for t in model.outputs]

    # -- the result ----------------------------------------------------------------------
    def graph_nodes(self) -> list[GraphNode]:
        nodes = []
        for entry in self.nodes.values():
            if entry.pending is not None:
                what, _ = entry.pending
                self.current = (entry.name, "")
                raise KerasImportError(entry.name, "", f"{what}: no spec layer computes it alone (it is imported "
                                                       "only together with the layer it feeds)")
            inputs = tuple(v.node for v in entry.inputs)
            nodes.append(GraphNode(entry.name, inputs, layer=entry.layer) if entry.layer is not None
                         else GraphNode(entry.name, inputs, merge=entry.merge))
        return nodes

    def fold(self, input_name: str, output: Value):
        return fold_graph(self.graph_nodes(), input_name, output.node)


def graph_of(keras, model):
    """The functional graph that runs: a built Sequential calls its ``_functional`` (keras 3.15
    ``Sequential.call``), a functional model is its own."""
    return model._functional if isinstance(model, keras.Sequential) else model


def is_nested_model(keras, operation) -> bool:
    return isinstance(operation, keras.Model)


def _functional_class(keras):
    from keras.src.models.functional import Functional  # the class of every functional keras.Model

    return Functional


def check_graph_model(keras, model, where: str) -> None:
    """A functional or Sequential model whose call is Keras' own; a clear refusal otherwise."""
    functional = _functional_class(keras)
    hint = ("only functional and Sequential models have a layer graph to import; rebuild the model with the "
            "functional API (keras.Input -> layers -> keras.Model(inputs, outputs)) or keras.Sequential (or "
            "call the subclass's layers on a keras.Input to make one)")
    if isinstance(model, keras.Sequential):
        if type(model).call is not keras.Sequential.call:
            raise KerasImportError(where, type(model).__name__, f"a Sequential subclass that overrides call(); {hint}")
        if not model.built or not getattr(model, "_functional", None):
            raise KerasImportError(where, type(model).__name__,
                                   "the Sequential model is not built, so it has no weights yet: start it with "
                                   "keras.Input(shape=...) or call it once")
        return
    if not isinstance(model, functional):
        raise KerasImportError(where, type(model).__name__, f"a subclassed keras.Model has no layer graph; {hint}")
    if type(model).call is not functional.call:
        raise KerasImportError(where, type(model).__name__, "a functional model whose class overrides call(): the "
                                                            f"graph may not be what runs; {hint}")


def unsupported_message(keras, operation, converters) -> str:
    layers = sorted({cls.__name__ for cls in converters if issubclass(cls, keras.layers.Layer)})
    ops = sorted({cls.__name__ for cls in converters if not issubclass(cls, keras.layers.Layer)})
    kind = "layer" if isinstance(operation, keras.layers.Layer) else "operation"
    hint = ""
    if type(operation).__name__ == "Lambda":
        hint = " (a Lambda runs arbitrary Python, which has no graph to read; write it with supported layers)"
    return (f"no spec mapping for this {kind}{hint}. Supported layers: {', '.join(layers)}, nested functional "
            f"and Sequential models; keras ops on a tensor and a scalar or two tensors: {', '.join(ops)}")


__all__ = ["Importer", "KerasImportError", "GraphEntry", "check_graph_model"]
