"""An MXNet checkpoint as MXNet itself sees it: what ``netparity import`` checks an import against.

- ``checkpoint_counts``: how many values the checkpoint's parameters hold, from the symbol JSON and
  the ``.params`` arrays alone (no MXNet), for the import summary.
- ``checkpoint_runner`` / ``block_runner``: the source's own output, computed by MXNet (imported
  only here, only when called): the symbol bound with the file's arrays, or the Gluon block called.
  Their ``layers`` give every node's output by node name, to find the first layer that differs.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .params import CheckpointError, read_params, split_prefixes

def _attrs(node: dict) -> dict[str, str]:
    from .symbol import node_attributes  # symbol imports importing, which imports this module
    return node_attributes(node)


def checkpoint_counts(symbol: dict, params: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``trainable`` (argument arrays the symbol uses, less fixed gammas), ``fixed_gamma`` (the
    values of BatchNorm gammas under ``fix_gamma``, which the file holds and MXNet ignores) and
    ``running_stats`` (auxiliary states the symbol uses)."""
    from .symbol import FIX_GAMMA_DEFAULT

    args, auxs = split_prefixes(params)
    nodes = symbol.get("nodes", [])
    variables = {node["name"] for node in nodes if node.get("op") == "null"}
    fixed = set()
    for node in nodes:
        if node.get("op") == "BatchNorm" and _attrs(node).get(
                "fix_gamma", str(FIX_GAMMA_DEFAULT)).strip().lower() in ("true", "1"):
            inputs = node.get("inputs", [])
            if len(inputs) > 1:
                fixed.add(nodes[inputs[1][0]]["name"])
    used_args = {k: v for k, v in args.items() if k in variables}
    return {"trainable": sum(v.size for k, v in used_args.items() if k not in fixed),
            "fixed_gamma": sum(v.size for k, v in used_args.items() if k in fixed),
            "running_stats": sum(v.size for k, v in auxs.items() if k in variables)}


def _consumers(nodes: list[dict]) -> dict[int, list[int]]:
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for source, *_ in node.get("inputs", []):
            consumers.setdefault(source, []).append(index)
    return consumers


# Operators that keep their input's channels, through which input_channels looks for the first
# Convolution or BatchNorm (besides the scalar arithmetic of preprocessing, _minus_scalar and friends).
_SAME_CHANNELS = {"Activation", "LeakyReLU", "Dropout", "clip", "identity", "_copy", "Pooling", "Cast"}


def input_channels(symbol: dict, params: Mapping[str, np.ndarray], input_name: str) -> int | None:
    """The input's channel count, read from the first Convolution (weight (O, C/groups, kh, kw)) or
    BatchNorm (gamma (C,)) that the input reaches through operators that keep the channels; None
    if none does."""
    args, _ = split_prefixes(params)
    nodes = symbol["nodes"]
    consumers = _consumers(nodes)
    start = next((i for i, node in enumerate(nodes) if node["name"] == input_name), None)
    queue, seen = [start] if start is not None else [], set()
    while queue:
        index = queue.pop(0)
        for consumer in consumers.get(index, []):
            node = nodes[consumer]
            inputs = node.get("inputs", [])
            if consumer in seen or not inputs or inputs[0][0] != index:
                continue
            seen.add(consumer)
            slot = nodes[inputs[1][0]]["name"] if len(inputs) > 1 else None
            if node["op"] == "Convolution":
                ok = slot in args and args[slot].ndim == 4
                return int(args[slot].shape[1]) * int(_attrs(node).get("num_group", 1)) if ok else None
            if node["op"] == "BatchNorm":
                return int(args[slot].shape[0]) if slot in args else None
            if node["op"] in _SAME_CHANNELS or "scalar" in node["op"]:
                queue.append(consumer)
    return None


class SourceRunner:
    """Runs the source model in MXNet: ``forward(x)`` -> the output the spec reproduces;
    ``layers(x)`` -> ``{node name: output}`` for every node; ``framework`` names MXNet's version."""

    def __init__(self, framework: str, forward: Callable[[np.ndarray], np.ndarray],
                 layers: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None):
        self.framework = framework
        self.forward = forward
        self.layers = layers


def _symbol_block(mx, outputs, input_name: str, values: dict, where: str):
    """A Gluon SymbolBlock of ``outputs`` (one symbol or a group) with the checkpoint's arrays.
    Not ``simple_bind``: binding a group of internal outputs that contains a BatchNorm fails in
    MXNet 1.9.1 ("arg_names.size() == in_args_map.size() (9 vs. 7)": its running statistics are
    counted as arguments; measured), where a SymbolBlock runs it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot decide type for the following arguments": the input's
        block = mx.gluon.SymbolBlock(outputs, mx.sym.var(input_name))
    params = block.collect_params()
    missing = [name for name in params.keys() if name not in values and not name.endswith("_label")]
    if missing:
        raise CheckpointError(where, f"MXNet needs {missing[0]!r}, which the .params file lacks")
    labels = {name: mx.nd.zeros(params[name].shape or (1,)) for name in params.keys() if name not in values}
    params.load_dict({**{k: v for k, v in values.items() if k in params.keys()}, **labels}, ctx=mx.cpu())
    return block


def _mxnet():
    from ...frameworks import import_mxnet

    return import_mxnet()  # FrameworkMissing when MXNet is absent or broken


def _output_symbol(symbol, output: str | None, where: str):
    if output is None:
        return symbol[0] if len(symbol.list_outputs()) > 1 else symbol
    internals = symbol.get_internals()
    names = internals.list_outputs()
    for candidate in (output, f"{output}_output"):
        if candidate in names:
            return internals[candidate]
    raise CheckpointError(where, f"the symbol has no output {output!r}; its node outputs: "
                                 + ", ".join(n for n in names if n.endswith("_output")))


def _node_outputs(mx, symbol):
    """Every operator node's first output, keyed by node name (``conv0_output`` -> ``conv0``)."""
    internals = symbol.get_internals()
    names = [n for n in internals.list_outputs() if n.endswith("_output")]
    return [n[: -len("_output")] for n in names], mx.sym.Group([internals[n] for n in names])


def checkpoint_runner(symbol: dict | str | Path, params: Mapping[str, np.ndarray], input_name: str,
                      output: str | None = None, where: str = "checkpoint") -> SourceRunner:
    """The checkpoint in MXNet: ``symbol`` (parsed JSON or a path) with ``params`` (the ``.params``
    arrays, ``arg:``/``aux:`` names or bare, run in float32 like the imported spec); ``output`` picks
    an internal output (``fc1`` or ``fc1_output``), by default the symbol's first. Raises
    FrameworkMissing without MXNet."""
    mx = _mxnet()
    text = Path(symbol).read_text() if isinstance(symbol, (str, Path)) else json.dumps(symbol)
    head = _output_symbol(mx.sym.load_json(text), output, where)
    from .symbol import FIX_GAMMA_DEFAULT

    args, auxs = split_prefixes(params)
    values = {k: mx.nd.array(v, dtype=np.float32) for k, v in {**args, **auxs}.items()}
    model = _symbol_block(mx, head, input_name, values, where)
    every: list = []

    def forward(x):
        return model(mx.nd.array(x)).asnumpy()

    def layers(x):
        if not every:  # built on demand: only a failed check asks
            names, group = _node_outputs(mx, head)
            every.extend([names, _symbol_block(mx, group, input_name, values, where)])
        names, block = every
        return {name: out.asnumpy() for name, out in zip(names, block(mx.nd.array(x)))}

    return SourceRunner(f"MXNet {mx.__version__}", forward, layers)


def block_runner(block) -> SourceRunner:
    """A Gluon block in MXNet: its own forward (inference mode); ``layers`` exports it and binds the
    exported symbol (only when asked, to find a difference)."""
    mx = _mxnet()

    def forward(x):
        out = block(mx.nd.array(x))
        return (out[0] if isinstance(out, (list, tuple)) else out).asnumpy()

    cache = {}

    def layers(x):
        if "runner" not in cache:
            with tempfile.TemporaryDirectory() as folder:
                prefix = str(Path(folder) / "block")
                block.hybridize()
                block(mx.nd.array(x))  # export needs one hybridized forward
                block.export(prefix)
                symbol = json.loads(Path(f"{prefix}-symbol.json").read_text())
                params = read_params(f"{prefix}-0000.params")
            inputs = [n["name"] for n in symbol["nodes"] if n["op"] == "null" and f"arg:{n['name']}" not in params
                      and f"aux:{n['name']}" not in params]
            cache["runner"] = checkpoint_runner(symbol, params, inputs[0])
        return cache["runner"].layers(x)

    return SourceRunner(f"MXNet {mx.__version__}", forward, layers)
