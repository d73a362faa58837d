"""Errors that name the fx node, its operation and, when known, the line of the model's code."""

from __future__ import annotations

from ....spec.errors import NetparityError


class TorchImportError(NetparityError, ValueError):
    """A PyTorch model that cannot be imported exactly: the message names the fx node (name, op
    and target, the module it sits in, the source line) and what is supported instead."""


class NodeError(Exception):
    """Raised while mapping: ``node`` cannot be mapped, for ``reason``. ``import_model`` turns it
    into a TorchImportError once it has found the node's source line."""

    def __init__(self, node, reason: str):
        super().__init__(reason)
        self.node = node
        self.reason = reason


def target_name(target) -> str:
    """``torch.nn.functional.relu``, ``operator.add``, ``torch.cat``: how a user would write it."""
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", None) or repr(target)
    qualname = getattr(target, "__qualname__", "") or name
    module = getattr(target, "__module__", None) or ""
    if qualname.startswith("_VariableFunctionsClass.") or module in ("torch.functional", "torch._C._VariableFunctions"):
        return f"torch.{name}"
    if module == "torch._C._nn" or module.startswith("torch.nn.functional"):
        return f"torch.nn.functional.{name}"
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module == "builtins":
        return name
    if "<locals>" in qualname:  # torch's boolean_dispatch wrappers (F.max_pool2d)
        qualname = name
    return f"{module}.{qualname}" if module else qualname


def operation(node, graph_module=None) -> str:
    """The node's op and target: ``call_module layer1.0.conv1 (Conv2d)``, ``call_method view``."""
    if node.op == "call_module":
        kind = ""
        if graph_module is not None:
            try:
                kind = f" ({type(graph_module.get_submodule(node.target)).__name__})"
            except AttributeError:
                pass
        return f"call_module {node.target}{kind}"
    if node.op == "call_method":
        return f"call_method Tensor.{node.target}"
    if node.op == "call_function":
        return f"call_function {target_name(node.target)}"
    return f"{node.op} {node.target}"


def module_path(node) -> str:
    """The qualified name of the innermost module whose forward made ``node`` ("" at the top)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _ = list(stack.values())[-1]
    return str(path)


def source_line(node) -> str:
    """``file:line in function: code`` of the model's code that made the node (the innermost frame
    outside PyTorch), if the trace recorded stack traces."""
    import os

    import torch
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    lines = (node.stack_trace or "").strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if not line.startswith('File "'):
            continue
        filename, _, rest = line[len('File "'):].partition('"')
        if filename.startswith(torch_dir):
            continue
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        number = next((p[len("line "):] for p in parts if p.startswith("line ")), "?")
        function = next((p[len("in "):] for p in parts if p.startswith("in ")), "")
        code = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].strip().startswith('File "') else ""
        return f"{filename}:{number}" + (f" in {function}" if function else "") + (f": {code}" if code else "")
    return ""


def describe_node(node, graph_module=None) -> str:
    """``fx node 'relu_3' (call_function torch.relu) in module 'layer1.0' at model.py:12 in forward: ...``"""
    text = f"fx node {node.name!r} ({operation(node, graph_module)})"
    path = module_path(node)
    if path and node.op != "call_module":
        text += f" in module {path!r}"
    line = source_line(node)
    if line:
        text += f" at {line}"
    return text
