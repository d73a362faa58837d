"""Import a PyTorch ``nn.Module`` as a netparity spec with canonical weights (issue 11).

``import_model(module, input_shape)`` traces the module with torch.fx in eval mode (``tracing``),
runs fx's ShapeProp on one (1, C, H, W) example so every node knows its shape, maps every node to
spec layers or merges (``mapping``, ``modules``, ``functions``, ``layers``), folds that graph into
the spec's blocks (``graph_folding``, shared with the other importers) and puts the weights on
their canonical keys. Layers are named after the source: a module call by its qualified name
(``layer1.0.conv1``), a function call by the module it sits in and the operation
(``layer1.0.add``). The canonical weight order follows the source's own (its ``state_dict``, or
netparity's canonical order for a model a netparity backend built): where the two differ inside a
sequence, ``Sequence.parameter_order`` records it (torchvision's ConvNeXt registers its layer scale
before the convolution it follows).

Anything that cannot be stated exactly is a ``TorchImportError`` naming the fx node (name, op and
target, module, source line) with what is supported; a model fx cannot trace gets fx's reason, the
line, and a hint. Nothing is approximated and nothing skipped.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ....spec.layers import Block, Flatten, GlobalAvgPool, GlobalMaxPool, Sequence
from ....spec.model import Spec
from .diagnostics import NodeError, TorchImportError, describe_node

SOURCE_FRAMEWORK = "torch"


def import_model(model, input_shape=None, name: str | None = None, source: str | None = None):
    """``model`` (a ``torch.nn.Module``) as an ``ImportedModel`` (spec, canonical weights, notes,
    a runner for the self-check) for per-example input ``input_shape`` (C, H, W). The model is
    traced in eval mode and left in the mode it was in."""
    from ...frameworks import import_torch
    from ...graph_folding import GraphError, fold_graph
    from ...importing import ImportedModel
    from .mapping import Mapper
    from .modules import module_mappers
    from .tracing import propagate_shapes, trace

    torch = import_torch()
    if not isinstance(model, torch.nn.Module):
        raise TorchImportError(f"expected a torch.nn.Module, got {type(model).__module__}.{type(model).__name__}")
    input_shape = _check_input_shape(input_shape)
    was_training = model.training
    model.eval()
    try:
        mappers = module_mappers()
        graph_module = trace(model, frozenset(mappers))
        concrete = propagate_shapes(graph_module, _example(model, input_shape, torch))
        mapper = Mapper(graph_module, input_shape, concrete, parameter_ranks(model), mappers)
        try:
            mapper.run()
        except NodeError as error:
            raise TorchImportError(_explain(error, model, mappers)) from None
        fuse_global_pools(mapper)
        mapper.tidy_names()
        try:
            folded = fold_graph(mapper.nodes, mapper.input_name, mapper.output_name)
        except GraphError as error:  # names the layer (the source model's name) where folding stops
            raise TorchImportError(f"the traced graph of {type(model).__name__} cannot be written as the spec's "
                                   f"blocks: {error}") from None
        blocks, paths = order_parameters(folded.blocks, folded.paths, mapper.ranks)
        spec = Spec(name or type(model).__name__, input_shape, blocks,
                    f"imported from PyTorch {type(model).__module__}.{type(model).__qualname__}")
        weights = _canonical_weights(spec, paths, mapper.weights)
    finally:
        model.train(was_training)
    imported = ImportedModel(spec, weights, source or type(model).__name__, SOURCE_FRAMEWORK,
                             notes=_notes(model, mapper, spec), source_counts=source_counts(model))
    from .runner import TorchRunner
    imported.runner = TorchRunner(model, graph_module, mapper)
    return imported


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or any(v <= 0 for v in shape) or shape != tuple(input_shape):
        raise TorchImportError(f"input_shape must be three positive integers (C, H, W), got {input_shape!r}: a "
                               "PyTorch model does not state its input size")
    return shape


def _example(module, input_shape, torch):
    """One example in the dtype and on the device of the module's first parameter."""
    first = next(iter(module.parameters()), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    return torch.randn((1, *input_shape), generator=generator, dtype=dtype).to(device)


def _explain(error: NodeError, module, mappers) -> str:
    """The message for a node that cannot be mapped, with the line of the model's code: traced
    again with stack traces (a cost paid only on this path)."""
    from .tracing import trace

    node = error.node
    try:
        again = trace(module, frozenset(mappers), record_stack_traces=True)
        node = next((n for n in again.graph.nodes if n.name == error.node.name), node)
        graph_module = again
    except TorchImportError:
        graph_module = None
    return f"cannot import {describe_node(node, graph_module)}: {error.reason}"


# -- the source's weight order ------------------------------------------------------------------------------

def parameter_ranks(module) -> dict[str, int]:
    """Each parameter's and buffer's position in the source's own weight order: the state_dict's,
    or, for a model a netparity backend built, the canonical order of the spec it was built from."""
    from ...common import RECORD_ATTRIBUTE, split_key

    state = module.state_dict(keep_vars=True)
    record = getattr(module, RECORD_ATTRIBUTE, None)
    if record is None:
        return {key: i for i, key in enumerate(state)}
    canonical = {}
    for i, key in enumerate(record.inference.weight_layout()):
        path, name = split_key(key)
        canonical[id(getattr(record.layers[path], name))] = i
    return {key: canonical[id(tensor)] for key, tensor in state.items() if id(tensor) in canonical}


def order_parameters(blocks, paths: dict[str, str], ranks: dict[str, int]):
    """Give each sequence whose layers' weights come in another order in the source a
    ``parameter_order`` (top-level blocks in that case go into one sequence); returns the blocks
    and the node -> path map (changed only by such a wrap)."""
    rank_at = {paths[node]: rank for node, rank in ranks.items()}

    def rebuild(layer, path):
        if not isinstance(layer, Block):
            return layer, rank_at.get(path)
        children = [rebuild(child, f"{path}.{rel}") for rel, child in layer.children()]
        rank = min((r for _, r in children if r is not None), default=None)
        if isinstance(layer, Sequence):
            order = _order([r for _, r in children])
            layer = dataclasses.replace(layer, layers=tuple(c for c, _ in children),
                                        parameter_order=order if order != tuple(range(len(order))) else ())
        else:
            layer = dataclasses.replace(layer, branches=tuple(c for c, _ in children))
        return layer, rank

    top = [rebuild(block, f"blocks[{i}]") for i, block in enumerate(blocks)]
    order = _order([r for _, r in top])
    if order == tuple(range(len(order))):
        return tuple(b for b, _ in top), paths
    wrapped = Sequence(layers=tuple(b for b, _ in top), parameter_order=order)
    moved = {}
    for node, path in paths.items():
        index, _, rest = path[len("blocks["):].partition("]")
        moved[node] = f"blocks[0].layers[{index}]{rest}"
    return (wrapped,), moved


def _order(ranks: list) -> tuple[int, ...]:
    """Indices sorted by rank; a layer without weights sorts with the next layer that has some (or
    last), so weightless layers stay where they are relative to the weighted ones after them."""
    keys, following = [], float("inf")
    for rank in reversed(ranks):
        if rank is not None:
            following = rank
        keys.append(following)
    keys.reverse()
    return tuple(sorted(range(len(ranks)), key=lambda i: (keys[i], i)))


def _canonical_weights(spec: Spec, paths: dict[str, str], by_node: dict) -> dict[str, np.ndarray]:
    found = {f"{paths[node]}.{key}": array for node, arrays in by_node.items() for key, array in arrays.items()}
    layout = spec.infer().weight_layout()
    missing = [k for k in layout if k not in found]
    extra = [k for k in found if k not in layout]
    if missing or extra:  # the mapping checked every layer's weights, so this is a bug
        raise TorchImportError(f"internal: imported weights do not match the spec (missing {missing[:3]}, "
                               f"extra {extra[:3]})")
    return {key: found[key] for key in layout}


# -- clean-ups before folding -----------------------------------------------------------------------------

def fuse_global_pools(mapper) -> None:
    """A global pool that keeps (C, 1, 1) followed only by a flatten is the spec's global pool to
    (C,): ``AdaptiveAvgPool2d(1)`` + ``torch.flatten(x, 1)`` become one layer (the pool's name)."""
    from ...graph_folding import GraphNode

    consumers: dict[str, list] = {}
    for node in mapper.nodes:
        for source in node.inputs:
            consumers.setdefault(source, []).append(node)
    by_name = {node.name: node for node in mapper.nodes}
    replaced: dict[str, str] = {}
    for node in list(mapper.nodes):
        if not isinstance(node.layer, Flatten):
            continue
        pool = by_name.get(node.inputs[0])
        if pool is None or not isinstance(pool.layer, (GlobalAvgPool, GlobalMaxPool)) or not pool.layer.keepdims:
            continue
        if len(consumers.get(pool.name, [])) != 1 or pool.name == mapper.output_name:
            continue
        fused = GraphNode(pool.name, pool.inputs, layer=dataclasses.replace(pool.layer, keepdims=False))
        by_name[pool.name] = fused
        replaced[node.name] = pool.name
        mapper.producer[pool.name] = mapper.producer.pop(node.name)
        mapper.layouts[pool.name] = mapper.layouts.pop(node.name)
        mapper.shapes[pool.name] = mapper.shapes.pop(node.name)
        del by_name[node.name], mapper.weights[node.name]
    if not replaced:
        return
    mapper.nodes = [GraphNode(n.name, tuple(replaced.get(i, i) for i in n.inputs), n.layer, n.merge)
                    for n in by_name.values()]
    mapper.output_name = replaced.get(mapper.output_name, mapper.output_name)


# -- what the user reads -----------------------------------------------------------------------------------

def source_counts(module) -> dict[str, int]:
    trainable = sum(p.numel() for p in module.parameters())
    stats = sum(b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var")))
    return {"trainable": int(trainable), "running_stats": int(stats)}


def _notes(module, mapper, spec: Spec) -> list[str]:
    notes = []
    unused = [key for key, p in module.named_parameters() if key not in mapper.used_parameters]
    if unused:
        count = sum(dict(module.named_parameters())[k].numel() for k in unused)
        notes.append(f"{len(unused)} parameter tensor(s) ({count:,} values) take no part in the eval-mode output "
                     f"and are not in the spec (first: {', '.join(unused[:3])})")
    dtypes = {str(p.dtype).replace("torch.", "") for p in module.parameters()}
    if dtypes - {"float32"}:
        notes.append(f"the model's parameters are {', '.join(sorted(dtypes))}; the canonical weights are float32")
    kinds = {row.kind for row in spec.infer().leaves()}
    if kinds & {"dropout", "drop_path"}:
        notes.append("dropout and stochastic depth are the identity in eval mode; the spec keeps them with their "
                     "probabilities for training")
    return notes


__all__ = ["import_model", "TorchImportError", "parameter_ranks"]
