"""``netparity import``: a model from another framework's files becomes a spec and canonical weights,
checked against the source before anything is written.

SOURCE forms (``SOURCE_FORMS``; an unknown form is an ImportSourceError listing them):

- ``PREFIX-symbol.json`` with ``params=PREFIX-0000.params``: an MXNet checkpoint (Module API
  ``save_checkpoint``, Gluon ``HybridBlock.export``), read without MXNet
  (``mxnet.importer.symbol.import_symbol``);
- ``FILE.py:FACTORY``: the model a factory function returns; an MXNet Gluon ``HybridBlock`` goes
  through ``mxnet.importer.gluon.import_block`` (needs MXNet), a Keras model through
  ``keras.importer`` (needs Keras), a PyTorch ``nn.Module`` through ``torch.importer`` (needs PyTorch);
- ``keras.applications:NAME`` (built with weights=None) and ``FILE.keras``: ``keras.importer``;
- ``torchvision:NAME`` (``torchvision.models.get_model(NAME, weights=None)``): ``torch.importer``.

Extension points: ``FACTORY_IMPORTERS`` maps the framework of a factory's model ("mxnet", "torch",
"keras", as ``backends.tracing.framework_of`` names it) to an importer ``(model, input_size, output,
source) -> ImportedModel``, and ``PREFIXED_SOURCES`` maps a source prefix (``torchvision:``,
``keras.applications:``) to ``(rest, input_size, output, name) -> ImportedModel``. Each importer
fills ``ImportedModel`` (with a ``runner`` when its framework can run the source); this module runs
the self-check and writes the files.

The self-check lives in ``import_check.py`` (``self_check``, ``SelfCheck``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..spec import Spec
from ..spec.errors import NetparityError
from ..spec.files import atomic_writer
from .frameworks import FrameworkMissing
from .import_check import SelfCheck, self_check

SOURCE_FORMS = (
    ("PREFIX-symbol.json --params PREFIX-0000.params",
     "an MXNet checkpoint (Module API save_checkpoint, Gluon HybridBlock.export), read without MXNet"),
    ("FILE.py:FACTORY", "a Python file whose function FACTORY returns an MXNet Gluon HybridBlock (needs MXNet), "
                        "a functional or Sequential keras.Model (needs Keras) or a PyTorch nn.Module (needs PyTorch)"),
    ("torchvision:NAME", "torchvision.models.get_model(NAME, weights=None): random weights, nothing downloaded"),
    ("keras.applications:NAME", "keras.applications.NAME(weights=None): random weights, nothing downloaded"),
    ("FILE.keras", "a Keras 3 model saved with model.save (functional or Sequential)"),
)


class ImportSourceError(NetparityError, ValueError):
    """A SOURCE that cannot be imported as given: an unknown form, a missing file, a params file
    that cannot be found, an option that does not apply."""


class WeightsFileError(NetparityError, ValueError):
    """A canonical weights ``.npz`` that does not fit its spec: unreadable, a key missing or extra,
    a shape that differs."""


@dataclass
class ImportedModel:
    """An imported model: the spec, its canonical weights (PyTorch's names and layouts, keys
    ``Inference.weight_layout()``), what it came from, and the notes a user must read (semantics
    that were mapped, outputs that were dropped).

    Optional, filled by an importer when it can:
    ``source_input`` / ``source_output``: the source's input and the output the spec reproduces
    (MXNet: the data variable and an internal output such as ``fc1_output``; None: the source's
    only input, its first output). ``source_counts``: the source's own parameter counts, printed
    beside the spec's (keys ``trainable`` and ``running_stats``, plus any the importer explains).
    ``runner``: how to run the source itself (``forward(x)``, optionally ``layers(x)`` by source
    node name, ``framework``); None with ``runner_missing`` saying why (its framework is absent).
    Spec layers keep their source node's name, which is how a difference is traced to a layer."""

    spec: Spec
    weights: dict[str, np.ndarray]
    source: str
    source_framework: str
    notes: list[str] = field(default_factory=list)
    source_input: str | None = None
    source_output: str | None = None
    source_counts: dict[str, int] | None = None
    runner: object | None = field(default=None, repr=False)
    runner_missing: str = ""


# -- sources ---------------------------------------------------------------------------------------

def _forms() -> str:
    return "; ".join(f"{form} ({meaning})" for form, meaning in SOURCE_FORMS)


def _unknown(source: str, why: str) -> ImportSourceError:
    return ImportSourceError(f"cannot import {source!r}: {why}. SOURCE is one of: {_forms()}")


def _read_symbol(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ImportSourceError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ImportSourceError(f"{path}: not a UTF-8 text file, so not an MXNet symbol JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportSourceError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or "nodes" not in data or "heads" not in data:
        if isinstance(data, dict) and "blocks" in data and "input_shape" in data:
            raise ImportSourceError(f"{path} is a netparity spec already; use it with check, show or verify")
        raise ImportSourceError(f"{path}: not an MXNet symbol file (a JSON object with 'nodes' and 'heads')")
    return data


def _params_path(symbol_path: Path, params: str | Path | None) -> Path:
    """``--params`` as given, else the one ``PREFIX-NNNN.params`` beside ``PREFIX-symbol.json``."""
    if params is not None:
        path = Path(params)
        if not path.is_file():
            raise ImportSourceError(f"--params {str(params)!r}: no such file")
        return path
    name = symbol_path.name
    prefix = name[: -len("-symbol.json")] if name.endswith("-symbol.json") else symbol_path.stem
    found = sorted(symbol_path.parent.glob(f"{prefix}-[0-9][0-9][0-9][0-9].params"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ImportSourceError(f"{symbol_path}: no {prefix}-NNNN.params beside it; give the weights with "
                                "--params FILE")
    raise ImportSourceError(f"{symbol_path}: several epochs beside it ({', '.join(p.name for p in found)}); "
                            "choose one with --params FILE")


def _free_variables(symbol: dict, params: dict) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The symbol's variables that the params file does not hold (labels aside), split into inputs
    (first operand of every node using them) and missing parameters ``(variable, node, op)`` (a later
    operand of some node: a weight the file should hold)."""
    from .mxnet.importer.params import split_prefixes

    args, auxs = split_prefixes(params)
    nodes = symbol["nodes"]
    inputs, missing = [], []
    for index, node in enumerate(nodes):
        name = node["name"]
        if node.get("op") != "null" or name in args or name in auxs or name.endswith("_label"):
            continue
        users = [(user, slot) for user in nodes for slot, (source, *_) in enumerate(user.get("inputs", []))
                 if source == index]
        later = next(((user, slot) for user, slot in users if slot > 0), None)
        if later:
            missing.append((name, later[0]["name"], later[0]["op"]))
        else:
            inputs.append(name)
    return inputs, missing


def _import_mxnet_checkpoint(source: str, params, input_shape, output, name) -> ImportedModel:
    from .mxnet.importer import read_params
    from .mxnet.importer.source import checkpoint_counts, checkpoint_runner, input_channels
    from .mxnet.importer.symbol import import_symbol

    symbol_path = Path(source)
    if not symbol_path.is_file():
        raise ImportSourceError(f"{source!r}: no such file")
    symbol = _read_symbol(symbol_path)
    params_path = _params_path(symbol_path, params)
    arrays = read_params(params_path)
    inputs, missing = _free_variables(symbol, arrays)
    if missing:
        variable, node, op = missing[0]
        raise ImportSourceError(f"{symbol_path}: {params_path} lacks {variable!r}, which node {node!r} ({op}) uses"
                                + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    input_name = inputs[0] if len(inputs) == 1 else None  # else the symbol importer explains

    def run_importer(shape):
        try:
            return import_symbol(str(symbol_path), arrays, input_shape=shape, output=output, name=name)
        except NetparityError as error:
            if str(symbol_path) in str(error):
                raise
            raise ImportSourceError(f"{symbol_path}: {error}") from error  # which file, for the one-line error

    if isinstance(input_shape, int):  # N: the channels from the first convolution, else the symbol's own shape
        channels = input_channels(symbol, arrays, input_name) if input_name else None
        if channels is None:
            channels = run_importer(None).spec.input_shape[0]  # or the importer's error: what is missing, where
        input_shape = (channels, input_shape, input_shape)
    imported = run_importer(input_shape)
    imported.source = f"{symbol_path} + {params_path}"
    imported.source_input = imported.source_input or input_name
    imported.source_output = imported.source_output or output  # None: the symbol's first output
    if imported.source_counts is None:
        imported.source_counts = checkpoint_counts(symbol, arrays)
    try:
        imported.runner = checkpoint_runner(symbol, arrays, imported.source_input, imported.source_output,
                                            where=str(symbol_path))
    except FrameworkMissing as missing:
        imported.runner_missing = str(missing)
    return imported


def _first_conv_channels(model, framework: str) -> int | None:
    from .tracing import first_conv_channels

    return first_conv_channels(model, framework)


def _import_gluon_block(block, input_size, output, source: str) -> ImportedModel:
    from .mxnet.importer.gluon import import_block
    from .mxnet.importer.source import block_runner

    if output is not None:
        raise ImportSourceError(f"{source!r}: --output picks an internal output of a symbol file; a Gluon block's "
                                "output is what it returns (export it and import the symbol to choose another)")
    input_shape = input_size
    if isinstance(input_size, int):
        channels = _first_conv_channels(block, "mxnet")
        if not channels:
            raise ImportSourceError(f"{source!r}: the block's input channels cannot be read from its first "
                                    "convolution; give the input shape as C,H,W")
        input_shape = (channels, input_size, input_size)
    if input_shape is None:
        raise ImportSourceError(f"{source!r}: a Gluon block does not state its input size; give --input-size")
    imported = import_block(block, tuple(input_shape))
    imported.source = source
    imported.runner = block_runner(block)
    return imported


def _import_keras_model(model, input_size, output, source: str) -> ImportedModel:
    from .keras.importer import import_factory_model

    return import_factory_model(model, input_size, output, source)


def _import_keras_application(app_name: str, input_size, output, name) -> ImportedModel:
    from .keras.importer import import_application

    return import_application(app_name, input_size, output, name)


def _import_torch_module(model, input_size, output, source: str) -> ImportedModel:
    from .torch.importer.sources import import_factory_model

    return import_factory_model(model, input_size, output, source)


def _import_torchvision(model_name: str, input_size, output, name) -> ImportedModel:
    from .torch.importer.sources import import_torchvision

    return import_torchvision(model_name, input_size, output, name)


# framework of a factory's model -> importer(model, input_size, output, source)
FACTORY_IMPORTERS: dict[str, Callable] = {"mxnet": _import_gluon_block, "keras": _import_keras_model,
                                          "torch": _import_torch_module}
# source prefix ("torchvision:") -> importer(rest, input_size, output, name)
PREFIXED_SOURCES: dict[str, Callable] = {"keras.applications:": _import_keras_application,
                                         "torchvision:": _import_torchvision}


def _import_factory(source: str, input_size, output, name) -> ImportedModel:
    from .tracing import framework_of
    from ..compare.port import load_factory

    model = load_factory(source)  # PortError (a NetparityError) for a bad file or factory
    framework = framework_of(model)
    importer = FACTORY_IMPORTERS.get(framework)
    if importer is None:
        raise _unknown(source, f"its factory returns a {framework} model ({type(model).__name__}), which cannot be "
                               "imported yet")
    imported = importer(model, input_size, output, source)
    if name:
        imported.spec = Spec(name, imported.spec.input_shape, imported.spec.blocks, imported.spec.description)
    return imported


def _input_shape(input_size) -> tuple[int, int, int] | int | None:
    if input_size is None or isinstance(input_size, int):
        return input_size
    shape = tuple(int(v) for v in input_size)
    if len(shape) != 3:
        raise ImportSourceError(f"input size must be N or (C, H, W), got {input_size!r}")
    return shape


def import_source(source: str, *, params=None, input_size=None, output: str | None = None,
                  name: str | None = None) -> ImportedModel:
    """Import SOURCE (see the module docstring) into an ImportedModel, not yet checked or written.
    ``input_size``: a square size N or (C, H, W); ``output``: the source's internal output to keep
    (a symbol's node, ``fc1`` or ``fc1_output``); ``name``: the spec's name. Bad input raises a
    NetparityError naming what and where."""
    source = str(source)
    input_size = _input_shape(input_size)
    for prefix, importer in PREFIXED_SOURCES.items():
        if source.startswith(prefix):
            return importer(source[len(prefix):], input_size, output, name)
    path_text, colon, function = source.rpartition(":")
    if colon and path_text.endswith(".py"):
        if params is not None:
            raise ImportSourceError(f"--params applies to a symbol file, not to {source!r}")
        return _import_factory(source, input_size, output, name)
    if source.endswith(".py"):
        raise _unknown(source, f"name the factory function too, e.g. {source}:build_model")
    if source.endswith(".json"):
        return _import_mxnet_checkpoint(source, params, input_size, output, name)
    if source.endswith(".params"):
        raise _unknown(source, "a .params file holds weights only; give the -symbol.json with --params")
    if source.endswith(".keras"):
        if params is not None:
            raise ImportSourceError(f"--params applies to a symbol file, not to {source!r}")
        from .keras.importer import import_keras_file

        return import_keras_file(source, input_size, output, name)
    raise _unknown(source, "not a form netparity knows")


# -- the summary ---------------------------------------------------------------------------------

def _count_line(imported: ImportedModel, inference) -> str:
    line = (f"parameters: {inference.parameters:,} trainable + {inference.running_stats:,} running statistics")
    counts = imported.source_counts
    if counts is None:
        return line + "; the source's own count is not known"
    trainable, running = counts.get("trainable"), counts.get("running_stats")
    same = (trainable, running) == (inference.parameters, inference.running_stats)
    line += (f"; source: {trainable:,} trainable + {running:,} running statistics "
             f"({'equal' if same else 'DIFFERENT'})")
    others = {k: v for k, v in counts.items() if k not in ("trainable", "running_stats") and v}
    if others.get("fixed_gamma"):
        line += (f"; the file also holds {others.pop('fixed_gamma'):,} values of BatchNorm gammas that fix_gamma "
                 "fixes at 1 (MXNet ignores them, so the spec does)")
    line += "".join(f"; {key.replace('_', ' ')}: {value:,}" for key, value in others.items())
    return line


def summary_lines(imported: ImportedModel, check: SelfCheck | None = None) -> list[str]:
    """What ``netparity import`` prints: the model, its layers and parameters against the source's
    count, the notes, the self-check."""
    from collections import Counter

    from ..spec.layers import show_shape

    inference = imported.spec.infer()
    kinds = Counter(row.layer.kind for row in inference.leaves())
    lines = [f"imported {imported.source} ({imported.source_framework}) as spec {imported.spec.name!r}: input "
             f"{show_shape(inference.input_shape)}, output {show_shape(inference.output_shape)}"
             + (f" (the source's output {imported.source_output!r})" if imported.source_output else ""),
             f"layers: {len(inference.leaves())} ("
             + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common()) + ")",
             _count_line(imported, inference)]
    lines += [f"note: {note}" for note in imported.notes]
    if check is None:
        return lines
    inputs = ", ".join(check.errors)
    if not check.source_ran:
        lines.append(f"self-check: the source's own output could not be checked here: {check.why_not}")
    verdict = "ok" if check.ok else "FAILED"
    lines.append(f"self-check: {check.built_in} against {check.against}: max relative error {check.worst:.1e} "
                 f"(limit {check.rtol:g}) on {len(check.errors)} input batches ({inputs}): {verdict}")
    if check.detail:
        lines.append(f"self-check: {check.detail}")
    return lines


# -- files -------------------------------------------------------------------------------------------

def write_imported(imported: ImportedModel, spec_path, weights_path) -> None:
    """The spec JSON and the weights ``.npz`` (canonical keys), each written atomically."""
    with atomic_writer(weights_path, "wb") as stream:
        np.savez(stream, **imported.weights)
    imported.spec.save(spec_path)


def read_weights_file(path, spec: Spec) -> dict[str, np.ndarray]:
    """Canonical float32 weights for ``spec`` from an ``.npz`` (``netparity import --weights``).
    WeightsFileError naming the file and the first key that does not fit."""
    path = Path(path)
    layout = spec.infer().weight_layout()
    try:
        stored = np.load(path, allow_pickle=False)
        if isinstance(stored, np.ndarray):
            raise WeightsFileError(f"{path}: a single .npy array, not an .npz of named weights")
        with stored:
            arrays = {key: stored[key] for key in stored.files}
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read: {error.strerror or error}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise WeightsFileError(f"{path}: not a NumPy .npz file ({error})") from None
    missing = [key for key in layout if key not in arrays]
    if missing:
        raise WeightsFileError(f"{path}: no weight {missing[0]!r} (shape {tuple(layout[missing[0]])}) for spec "
                               f"{spec.name!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    extra = [key for key in arrays if key not in layout]
    if extra:
        raise WeightsFileError(f"{path}: weight {extra[0]!r} is not in spec {spec.name!r}"
                               + (f" ({len(extra) - 1} more)" if len(extra) > 1 else ""))
    for key, shape in layout.items():
        if arrays[key].shape != tuple(shape):
            raise WeightsFileError(f"{path}: weight {key!r} has shape {arrays[key].shape}, the spec expects "
                                   f"{tuple(shape)}")
    return {key: np.asarray(arrays[key], np.float32) for key in layout}


def default_weights_path(spec_path) -> Path:
    """``model.json`` -> ``model.npz`` beside it."""
    spec_path = Path(spec_path)
    return spec_path.with_suffix(".npz") if spec_path.suffix == ".json" else Path(f"{spec_path}.npz")


__all__ = ["ImportedModel", "ImportSourceError", "WeightsFileError", "SelfCheck", "SOURCE_FORMS", "import_source",
           "self_check", "summary_lines", "write_imported", "read_weights_file", "default_weights_path", "FACTORY_IMPORTERS",
           "PREFIXED_SOURCES"]
