"""torch.fx symbolic tracing of a model in eval mode, and shape propagation on one example.

The tracer keeps as leaves (one ``call_module`` node each) the modules whose class the importer
maps (``modules.MODULE_MAPPERS``, exact classes) and every other module of ``torch.nn`` itself, so
that an unsupported PyTorch layer (``nn.LSTM``, ``nn.Upsample``) is reported as the module it is;
containers and the user's own modules are traced through, so their ``forward`` becomes the
functional and tensor calls the importer maps one by one.

Tracing records no stack traces (that costs a traceback per node); when the importer must name a
node's source line it traces again with them (``source_line``).
"""

from __future__ import annotations

import contextlib
import io
import os
import traceback

from .diagnostics import TorchImportError, describe_node

torch = None  # set by _torch(): importing netparity imports no framework


def _torch():
    global torch
    if torch is None:
        from ...frameworks import import_torch
        torch = import_torch()
    return torch


HINT = ("torch.fx traces the model's forward with symbolic tensors, so Python control flow that depends on tensor "
        "values (if/while on a tensor, len() or iteration over a tensor, converting one to a Python number) cannot be "
        "traced. Make the branch static (decide it from attributes set in __init__, or from self.training), move the "
        "dynamic part out of forward, or import the static part of the model (e.g. model.features)")


def make_tracer(leaf_types: frozenset, record_stack_traces: bool = False):
    fx = _torch().fx
    nn = torch.nn
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

    class ImportTracer(fx.Tracer):
        """Leaves: the mapped classes (exactly), and torch.nn's own layers (to refuse them by name)."""

        def is_leaf_module(self, module, qualified_name):
            kind = type(module)
            if kind in leaf_types:
                return True
            if isinstance(module, containers):
                return False
            return kind.__module__.startswith(("torch.nn.", "torch.ao.nn."))

    tracer = ImportTracer()
    tracer.record_stack_traces = record_stack_traces
    return tracer


def _user_frame(error: BaseException) -> str:
    """``file:line in function: code`` of the deepest frame outside torch, where the trace failed."""
    torch_dir = os.path.dirname(_torch().__file__)
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith(torch_dir) and not f.filename.endswith(os.sep + "tracing.py")]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"{frame.filename}:{frame.lineno} in {frame.name}{code}"


def trace(module, leaf_types: frozenset, record_stack_traces: bool = False):
    """The fx GraphModule of ``module`` (already in eval mode). A model fx cannot trace raises a
    TorchImportError with fx's reason, where it happened in the model's code, and a hint."""
    fx = _torch().fx
    tracer = make_tracer(leaf_types, record_stack_traces)
    try:
        graph = tracer.trace(module)
    except Exception as error:  # fx raises TraceError, RuntimeError, TypeError... all mean "cannot trace"
        where = _user_frame(error)
        raise TorchImportError(
            f"torch.fx cannot trace {type(module).__name__}: {type(error).__name__}: {error}"
            + (f" (at {where})" if where else "") + f". {HINT}") from None
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def propagate_shapes(graph_module, example) -> dict:
    """Run ``graph_module`` on ``example`` with fx's ShapeProp (every tensor node gets
    ``meta['tensor_meta']``); returns {node: its concrete value} for the nodes that are not
    tensors (sizes, tuples). It runs on PyTorch's meta device (shapes only, no arithmetic: a
    tenth of a real forward on a busy CPU) where the model allows, else on ``example`` itself."""
    try:
        meta_module = _on_meta_device(graph_module)
        return _propagate(meta_module, example.to("meta"), graph_module)
    except Exception:  # an op without a meta kernel, an attribute deepcopy cannot copy: run it for real
        pass
    return _propagate(graph_module, example, graph_module)


def _on_meta_device(graph_module):
    """A copy of ``graph_module`` whose parameters and buffers are meta tensors (no data copied)."""
    import copy

    memo = {}
    for tensor in [*graph_module.parameters(), *graph_module.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = torch.nn.Parameter(empty, tensor.requires_grad) if isinstance(
            tensor, torch.nn.Parameter) else empty
    return copy.deepcopy(graph_module, memo)


def _propagate(run_module, example, graph_module) -> dict:
    """ShapeProp on ``run_module``; the shapes and values are recorded on ``graph_module``'s nodes
    (the same graph, or the one it was copied from)."""
    from torch.fx.passes.shape_prop import ShapeProp

    originals = dict(zip(run_module.graph.nodes, graph_module.graph.nodes))
    values: dict = {}

    class Recording(ShapeProp):
        def run_node(self, n):
            result = super().run_node(n)
            original = originals[n]
            if original is not n:
                original.meta["tensor_meta"] = n.meta.get("tensor_meta")
            if not isinstance(result, torch.Tensor):
                values[original] = result
            return result

    # ShapeProp prints the traceback of a failing node before raising; the error below says it
    with contextlib.redirect_stderr(io.StringIO()), torch.no_grad():
        try:
            Recording(run_module).propagate(example)
        except RuntimeError as error:
            cause = error.__cause__ or error
            failed = _failed_node(run_module, error)
            shape = tuple(example.shape)
            raise TorchImportError(
                f"the model does not run on an input of shape {shape}"
                + (f": {describe_node(originals[failed], graph_module)}" if failed is not None else "")
                + f": {type(cause).__name__}: {cause}") from None
    return values


def _failed_node(graph_module, error):
    text = str(error)
    if not text.startswith("ShapeProp error for: node="):
        return None
    for node in graph_module.graph.nodes:
        if text.startswith(f"ShapeProp error for: node={node.format_node()}"):
            return node
    return None
