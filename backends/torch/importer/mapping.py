"""Map a traced, shape-propagated fx graph to a DAG of spec layers (``graph_folding.GraphNode``s).

``Mapper.run`` walks the fx nodes in order and keeps, for each, the value it stands for
(``values``): a ``Tensor`` (which graph node computes it, its spec shape, its layout), a size, a
parameter. Module calls go to ``modules.module_mappers()`` (by exact class), function and method
calls to ``functions.function_table()`` / ``functions.METHODS``; each mapper either emits spec
layers through ``leaf`` / ``merge``, returns a value that needs no layer (a permute, a view of a
shuffle in progress), or refuses with ``fail`` naming the node. After every node the shape (or
size) the mapping says is compared with what fx's ShapeProp measured, so a wrong reading stops at
the node where it starts instead of producing a wrong spec.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ....spec.errors import SpecError
from ...graph_folding import GraphNode
from .diagnostics import NodeError, module_path, target_name
from .values import BATCH, EXPANDED, STANDARD, Param, Pieces, Tensor

class Mapper:
    def __init__(self, graph_module, input_shape, concrete: dict, parameter_rank: dict, module_mappers: dict):
        self.gm = graph_module
        self.input_shape = tuple(input_shape)
        self.concrete = concrete  # fx node -> non-tensor value measured by ShapeProp
        self.parameter_rank = parameter_rank  # qualified name -> position in the source's weight order
        self.nodes: list[GraphNode] = []
        self.weights: dict[str, dict[str, np.ndarray]] = {}  # graph node -> {canonical name: array}
        self.ranks: dict[str, int] = {}  # graph node -> the smallest rank of its weights
        self.producer: dict[str, object] = {}  # graph node -> the fx node whose output it is
        self.shapes: dict[str, tuple] = {}  # graph node -> its output's per-example spec shape
        self.concats: dict[tuple, Tensor] = {}  # the inputs of each concat merge -> its output
        self.layouts: dict[str, str] = {}  # graph node -> the layout the fx node holds it in
        self.functional: dict[str, str] = {}  # graph node from a function call -> the module it is in
        self.module_mappers = module_mappers  # exact module class -> mapper (modules.module_mappers())
        self.env: dict = {}
        self.names: set[str] = set()
        self.used_parameters: dict[str, str] = {}  # qualified name -> the fx node that used it
        self.node = None  # the fx node being mapped
        self.input_name = ""
        self.output_name = ""

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> None:
        from .functions import map_call
        from .modules import map_module

        graph = self.gm.graph
        order = {node: i for i, node in enumerate(graph.nodes)}
        check_inplace(graph, self.gm, order)
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        for node in graph.nodes:
            self.node = node
            if node.op == "placeholder":
                value = self._placeholder(node, placeholders)
            elif node.op == "get_attr":
                value = self._get_attr(node)
            elif node.op == "call_module":
                value = map_module(self, node, self.gm.get_submodule(node.target))
            elif node.op in ("call_function", "call_method"):
                value = map_call(self, node)
            elif node.op == "output":
                self._output(node)
                continue
            else:
                self.fail(f"unknown fx op {node.op!r}")
            self._check_shape(node, value)
            self.env[node] = value

    def _placeholder(self, node, placeholders):
        if node is placeholders[0]:
            self.input_name = self.unique(node.name)
            self.shapes[self.input_name] = self.input_shape
            return Tensor(self.input_name, self.input_shape)
        if node.args:  # forward(self, x, flag=False): a default value, used as is
            return node.args[0]
        self.fail(f"the model's forward takes a second input {node.target!r}; the spec has one input (the image batch)")

    def _get_attr(self, node):
        value = self.gm
        for part in str(node.target).split("."):
            value = getattr(value, part)
        import torch
        if not isinstance(value, torch.Tensor):
            return value
        trainable = isinstance(value, torch.nn.Parameter)
        return Param(str(node.target), value, trainable)

    def module_input(self, node) -> Tensor:
        """The one tensor a mapped module is called on."""
        if len(node.args) != 1 or node.kwargs:
            self.fail(f"a module called with {len(node.args)} positional and {len(node.kwargs)} keyword arguments; "
                      "the importer maps modules called on one tensor")
        x = self.value(node.args[0])
        if not isinstance(x, Tensor):
            self.fail(f"the module is called on {_kind(x)}, not on a tensor computed from the model's input")
        return x

    def _output(self, node):
        result = self.value(node.args[0])
        if not isinstance(result, Tensor):
            self.fail(f"the model returns {_kind(result)}; import needs a model that returns one tensor "
                      "(wrap it to return the one output you want)")
        if result.layout != STANDARD:
            self.fail(f"the model returns its output in {result.layout} layout; the spec's output is (N, C, H, W) "
                      "or (N, F): permute it back")
        if result.node == self.input_name:
            self.fail("the model returns its input unchanged: there is nothing to import")
        self.output_name = result.node

    def value(self, arg):
        """The value an fx argument stands for (nested lists and tuples mapped through)."""
        from torch.fx import Node
        if isinstance(arg, Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self.value(v) for k, v in arg.items()}
        if isinstance(arg, slice):  # x[:, :c] with c = x.size(1) // 2
            return slice(self.value(arg.start), self.value(arg.stop), self.value(arg.step))
        return arg

    # -- emitting layers -------------------------------------------------------------------
    def fail(self, reason: str):
        raise NodeError(self.node, reason)

    def unique(self, name: str) -> str:
        name = name or self.node.name
        if name not in self.names:
            self.names.add(name)
            return name
        count = 2
        while f"{name}#{count}" in self.names:
            count += 1
        self.names.add(f"{name}#{count}")
        return f"{name}#{count}"

    def default_name(self, operation: str = "") -> str:
        """The module's qualified name for a module call; ``<module>.<operation>`` for a function
        or method call inside a module (the node's name at the top level)."""
        node = self.node
        if node.op == "call_module":
            return str(node.target)
        operation = operation or (node.target if isinstance(node.target, str) else
                                  target_name(node.target).rsplit(".", 1)[-1])
        path = module_path(node)
        return f"{path}.{operation}" if path else operation

    def leaf(self, layer, x: Tensor, weights: dict | None = None, name: str = "", layout: str | None = None,
             groups: int = 0) -> Tensor:
        """Emit ``layer`` on ``x``. ``weights``: {canonical name: (tensor, qualified name)}, checked
        against the layer's parameter and running-stat shapes on this input."""
        name = self.unique(name or self.default_name())
        try:
            layer.check(name)
            shape = layer.output_shape(x.shape, name)
        except SpecError as error:
            self.fail(f"as a spec {layer.kind}: {error.reason}")
        expected = dict(layer.parameter_shapes(x.shape))
        expected.update(layer.running_stat_shapes(x.shape))
        weights = weights or {}
        if set(expected) != set(weights):
            self.fail(f"internal: {layer.kind} expects weights {sorted(expected)}, the mapping gave {sorted(weights)}")
        arrays = {}
        for key, (tensor, qualname) in weights.items():
            array = tensor.detach().cpu().numpy()
            if array.size != int(np.prod(expected[key])):
                self.fail(f"{qualname} has shape {tuple(array.shape)}; a spec {layer.kind} on {x.shape} expects "
                          f"{expected[key]}")
            arrays[key] = np.ascontiguousarray(array.reshape(expected[key]), dtype=np.float32)
            self._use_parameter(qualname)
        self.nodes.append(GraphNode(name, (x.node,), layer=layer))
        self.shapes[name] = shape
        self.weights[name] = arrays
        ranks = [self.parameter_rank[q] for _, q in weights.values() if q in self.parameter_rank]
        if ranks:
            self.ranks[name] = min(ranks)
        self.producer[name] = self.node
        self.layouts[name] = layout or x.layout
        if self.node.op != "call_module" and module_path(self.node):
            self.functional[name] = module_path(self.node)
        return Tensor(name, shape, layout or x.layout, groups)

    def merge(self, kind: str, inputs: list[Tensor], name: str = "") -> Tensor:
        if kind in ("add", "mul"):  # y.expand_as(x): the spec broadcasts a (C, 1, 1) gate itself
            inputs = [Tensor(x.node, x.shape) if x.layout == EXPANDED else x for x in inputs]
        original = tuple(x.node for x in inputs)
        if kind == "concat":
            inputs = self._reuse_concat(inputs)
            if len(inputs) == 1:
                return inputs[0]
        layouts = {x.layout for x in inputs}
        if len(layouts) != 1:
            self.fail(f"{kind} of tensors in different layouts ({', '.join(sorted(layouts))}); the spec merges "
                      "tensors of one layout")
        shape = merge_shape(kind, [x.shape for x in inputs])
        if shape is None:
            self.fail(f"{kind} of per-example shapes {', '.join(map(str, (x.shape for x in inputs)))}: the spec "
                      + ("concatenates on the channels (features) of equal spatial sizes" if kind == "concat" else
                         "adds and multiplies equal shapes, or a (C, 1, 1) gate over (C, H, W)"))
        name = self.unique(name or module_path(self.node) or self.node.name)
        self.nodes.append(GraphNode(name, tuple(x.node for x in inputs), merge=kind))
        self.shapes[name] = shape
        if kind == "concat":
            self.concats[original] = Tensor(name, shape, inputs[0].layout)
        self.weights[name] = {}
        self.producer[name] = self.node
        self.layouts[name] = inputs[0].layout
        return Tensor(name, shape, inputs[0].layout)

    def unflatten(self, x: Tensor) -> Tensor:
        """Flat (F,) features viewed back to (F, 1, 1), as squeeze-and-excitation blocks written with
        Linear layers do (``pool(x).view(b, c)`` -> Linear, ReLU, Linear, sigmoid -> ``.view(b, c, 1,
        1)``): the layers since the flatten are restated on (F, 1, 1) pixels, exactly: a Linear is a
        1x1 convolution there, and the flatten (or the pool's dropping of H and W) goes."""
        from ....spec.layers import Conv2d, Dense, Flatten, GlobalAvgPool, GlobalMaxPool

        by_name = {node.name: i for i, node in enumerate(self.nodes)}
        consumers: dict[str, int] = {}
        for node in self.nodes:
            for source in node.inputs:
                consumers[source] = consumers.get(source, 0) + 1
        chain, name = [], x.node
        kept = ("dense", "activation", "batchnorm", "dropout", "prelu", "layernorm")
        while True:
            index = by_name.get(name)
            node = None if index is None else self.nodes[index]
            if node is None or node.is_merge or consumers.get(name, 0) != (1 if chain else 0) or \
                    len(self.producer[name].users) != 1:
                self.fail(f"a view of flat features ({x.shape[0]},) to ({x.shape[0]}, 1, 1); the importer restates "
                          "the layers since a flatten of (C, 1, 1) on (C, 1, 1) pixels (squeeze-and-excitation "
                          f"with Linear layers), but {name!r} is not such a chain of {', '.join(kept)} layers "
                          "with one user each")
            layer = node.layer
            if isinstance(layer, Flatten) and self.shapes[node.inputs[0]][1:] == (1, 1):
                chain.append((index, "remove"))
                break
            if isinstance(layer, (GlobalAvgPool, GlobalMaxPool)) and not layer.keepdims:
                chain.append((index, dataclasses.replace(layer, keepdims=True)))
                break
            if layer.kind not in kept or len(self.shapes[name]) != 1:
                self.fail(f"a view of flat features back to ({x.shape[0]}, 1, 1) after {layer.kind} {name!r}; the "
                          "importer restates only " + ", ".join(kept) + " layers on (C, 1, 1) pixels")
            if isinstance(layer, Dense):
                weight = self.weights[name]["weight"]
                self.weights[name]["weight"] = weight.reshape(*weight.shape, 1, 1)
                layer = dataclasses.replace(Conv2d(layer.out_features, 1, bias=layer.bias), name=layer.name)
            chain.append((index, layer))
            name = node.inputs[0]
        removed = {}
        for index, change in chain:
            node = self.nodes[index]
            if change == "remove":
                removed[node.name] = node.inputs[0]
            else:
                self.nodes[index] = GraphNode(node.name, node.inputs, layer=change)
                shape = self.shapes[node.name]
                self.shapes[node.name] = shape + (1, 1) if len(shape) == 1 else shape
        if removed:
            self.nodes = [GraphNode(n.name, tuple(removed.get(i, i) for i in n.inputs), n.layer, n.merge)
                          for n in self.nodes if n.name not in removed]
            for gone in removed:
                for table in (self.weights, self.producer, self.layouts, self.shapes, self.functional):
                    table.pop(gone, None)
        last = removed.get(x.node, x.node)
        return Tensor(last, (x.shape[0], 1, 1))

    def _reuse_concat(self, inputs: list[Tensor]) -> list[Tensor]:
        """cat(a, b, c) after cat(a, b) is cat(cat(a, b), c): DenseNet concatenates every earlier
        output again in each layer, which only this (exact) regrouping makes series-parallel."""
        key = tuple(x.node for x in inputs)
        for length in range(len(key), 1, -1):
            earlier = self.concats.get(key[:length])
            if earlier is not None:
                return [earlier, *inputs[length:]]
        return inputs

    def _use_parameter(self, qualname: str) -> None:
        if qualname in self.used_parameters:
            self.fail(f"{qualname} is used again (first by fx node {self.used_parameters[qualname]!r}): the spec "
                      "has no tied weights, so a layer called twice (or a shared parameter) cannot be imported")
        self.used_parameters[qualname] = self.node.name

    def tidy_names(self) -> None:
        """A function call that is the only layer of its module takes the module's name:
        torchvision's LayerNorm2d at ``features.0.1`` is the layer ``features.0.1``, not
        ``features.0.1.layer_norm``."""
        from ... graph_folding import GraphNode

        names = [node.name for node in self.nodes]
        renamed = {}
        for name, path in self.functional.items():
            inside = [n for n in names if n == path or n.startswith((path + ".", path + "#"))]
            if inside == [name] and path not in self.names:
                renamed[name] = path
                self.names.add(path)
        if not renamed:
            return
        self.nodes = [GraphNode(renamed.get(n.name, n.name), tuple(renamed.get(i, i) for i in n.inputs), n.layer,
                                n.merge) for n in self.nodes]
        for table in (self.weights, self.ranks, self.producer, self.layouts):
            for old, new in renamed.items():
                if old in table:
                    table[new] = table.pop(old)
        self.output_name = renamed.get(self.output_name, self.output_name)

    # -- checks ------------------------------------------------------------------------------
    def _check_shape(self, node, value) -> None:
        if isinstance(value, Tensor):
            meta = node.meta.get("tensor_meta")
            measured = tuple(getattr(meta, "shape", ()) or ())
            expected = (1, *value.source_shape())
            if measured != expected:
                self.fail(f"internal: the mapping says per-example shape {expected[1:]} ({value.layout}), "
                          f"the model computed {measured[1:] if measured else 'no tensor'}")
        elif node in self.concrete and _is_size(value):
            example = _on_example(value)  # ShapeProp ran one example: the batch size was 1
            if example != self.concrete[node]:
                self.fail(f"internal: the mapping reads the size {example}, the model computed {self.concrete[node]}")


def _is_size(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_size(v) for v in value)
    return value is BATCH or (isinstance(value, int) and not isinstance(value, bool))


def _on_example(value):
    if isinstance(value, (tuple, list)):
        return tuple(_on_example(v) for v in value)
    return 1 if value is BATCH else value


def merge_shape(kind: str, shapes: list[tuple]) -> tuple | None:
    """The spec's merge rule (``Branches``): concat on channels (or features); add and mul of
    equal shapes or a (C, 1, 1) gate over (C, H, W). None where the spec cannot merge them."""
    if kind == "concat":
        if all(len(s) == 1 for s in shapes):
            return (sum(s[0] for s in shapes),)
        if all(len(s) == 3 for s in shapes) and len({s[1:] for s in shapes}) == 1:
            return (sum(s[0] for s in shapes), *shapes[0][1:])
        return None
    full = max(shapes, key=lambda s: int(np.prod(s)))
    for s in shapes:
        if s != full and not (len(full) == 3 and s == (full[0], 1, 1)):
            return None
    return full


def _kind(value) -> str:
    if isinstance(value, Tensor):
        return "a tensor"
    if isinstance(value, Param):
        return f"the model's own tensor {value.qualname}"
    if isinstance(value, Pieces):
        return f"the pieces of a {value.op}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(str, value))}"
    return f"{type(value).__name__} {value!r}"


# -- in-place operations ----------------------------------------------------------------------

ALIASING_METHODS = {"view", "reshape", "permute", "transpose", "contiguous", "flatten", "chunk", "split", "squeeze",
                    "unsqueeze", "expand", "view_as", "reshape_as", "detach", "t", "narrow", "unflatten",
                    "__getitem__"}


def _inplace(node, gm) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        if name.endswith("_") and not name.endswith("__"):
            return True
        if name.startswith("i") and getattr(node.target, "__module__", "") in ("_operator", "operator"):
            return name in ("iadd", "imul", "isub", "itruediv")
        if node.kwargs.get("inplace") is True:
            return True
        import inspect
        try:
            parameters = list(inspect.signature(node.target).parameters)
        except (TypeError, ValueError):
            return False
        if "inplace" in parameters and len(node.args) > parameters.index("inplace"):
            return node.args[parameters.index("inplace")] is True
    return False


def _aliases(node, gm) -> bool:
    """Whether ``node``'s output may share memory with its first input."""
    import operator
    if node.op == "call_method":
        return node.target in ALIASING_METHODS
    if node.op == "call_function":
        if node.target is operator.getitem:
            return True
        name = getattr(node.target, "__name__", "")
        return name in ALIASING_METHODS
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        # Identity and eval-mode dropout return their input tensor itself
        return type(module).__name__ in ("Identity", "Dropout", "StochasticDepth", "DropPath", "Flatten")
    return False


def check_inplace(graph, gm, order: dict) -> None:
    """Refuse an in-place operation whose input (or a view of it) is read after it: the mapping
    treats every node's output as a value of its own, which is then not what the model computes."""
    from torch.fx import Node

    root: dict = {}
    for node in graph.nodes:
        first = node.args[0] if node.args else None
        if isinstance(first, Node) and (_aliases(node, gm) or _inplace(node, gm)):
            root[node] = root.get(first, first)
        else:
            root[node] = node
    members: dict = {}
    for node, base in root.items():
        members.setdefault(base, []).append(node)
    for node in graph.nodes:
        if not node.args or not _inplace(node, gm):
            continue
        # the values made before the operation that share its memory: none may be read after it
        for member in members[root[node]]:
            if order[member] >= order[node]:
                continue
            late = [user for user in member.users if user is not node and order[user] > order[node]]
            if late:
                raise NodeError(node, f"an in-place operation on {member.name!r}, which fx node {late[0].name!r} "
                                      "reads afterwards: the import treats every result as a new value, so it would "
                                      "not compute what the model computes. Make the operation out-of-place "
                                      "(inplace=False)")
