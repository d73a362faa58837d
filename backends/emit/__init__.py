"""netparity.backends.emit: a spec as readable, standalone source in each framework, with its
weights in that framework's own file format (``netparity emit``).

Each module (``torch``, ``mxnet``, ``keras``) offers the same functions::

    NAME, FRAMEWORK, WEIGHTS_SUFFIX
    emit_source(spec) -> str             # one Python file defining build_model(); no framework needed
    native_keys(spec) -> {canonical weight key: where the emitted model keeps it}
    load_module(source) -> module        # the emitted file run in this process
    write_weights(spec, weights, path, source=None)   # the framework's own writer (framework needed)

The emitted file imports only its framework (and NumPy where it must) and builds exactly what
that framework's netparity backend builds. ``plan`` (shared) decides the classes: one per
block structure, instantiated with that instance's sizes. Importing this package imports no
framework.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from ...spec import Spec
from .source import EmitError

EMITTERS = ("torch", "mxnet", "keras")


def get_emitter(framework: str) -> ModuleType:
    if framework not in EMITTERS:
        raise EmitError(f"unknown framework {framework!r}; choose from {', '.join(EMITTERS)}")
    return importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{framework}.emitter")


def emit_source(spec: Spec, framework: str) -> str:
    return get_emitter(framework).emit_source(spec)


def default_weights_path(source_path: Path, framework: str) -> Path:
    """``model.py`` -> ``model.pt`` / ``model.params`` / ``model.weights.h5``."""
    suffix = get_emitter(framework).WEIGHTS_SUFFIX
    return Path(source_path).with_name(Path(source_path).stem + suffix)


def check_canonical(spec: Spec, weights: dict) -> dict[str, np.ndarray]:
    """Every canonical key of ``spec`` present with its shape and nothing else, as float32."""
    layout = spec.infer().weight_layout()
    missing = [k for k in layout if k not in weights]
    unexpected = [k for k in weights if k not in layout]
    if missing or unexpected:
        parts = ([f"missing {len(missing)} (first: {missing[0]})"] if missing else []) + (
            [f"unexpected {len(unexpected)} (first: {unexpected[0]})"] if unexpected else [])
        raise EmitError(f"weights do not match spec {spec.name!r}: " + "; ".join(parts))
    for key, shape in layout.items():
        if tuple(np.shape(weights[key])) != tuple(shape):
            raise EmitError(f"weight {key} has shape {tuple(np.shape(weights[key]))}, the spec needs {tuple(shape)}")
    return {key: np.asarray(weights[key], dtype=np.float32) for key in layout}


def write_weights(spec: Spec, weights: dict, path, framework: str, source: str | None = None) -> None:
    """Canonical ``weights`` into the framework's own weight file at ``path``, written by the
    framework from the emitted model (``source``, else emitted now)."""
    get_emitter(framework).write_weights(spec, check_canonical(spec, weights), path, source)


def emit_files(spec: Spec, framework: str, out: Path | None, weights: dict | None = None,
               weights_out: Path | None = None) -> tuple[str, list[str]]:
    """``netparity emit``: the source (written to ``out``, else returned for printing) and, with
    canonical ``weights``, the framework's own weight file (``weights_out``, default beside
    ``out``, else ``<spec name><suffix>``). Returns (source, lines saying what was written)."""
    from ...spec.files import write_atomic

    emitter = get_emitter(framework)
    source = emitter.emit_source(spec)
    said = []
    if out is not None:
        write_atomic(Path(out), source)
        said.append(f"wrote {out}: {spec.name} in {emitter.FRAMEWORK}, {len(source.splitlines())} lines, "
                    "imports only its framework; build_model() builds it")
    if weights is not None:
        target = Path(weights_out) if weights_out is not None else (
            default_weights_path(out, framework) if out is not None else Path(spec.name + emitter.WEIGHTS_SUFFIX))
        if not target.name.endswith(emitter.WEIGHTS_SUFFIX):
            raise EmitError(f"{target}: {emitter.FRAMEWORK} weights are written as *{emitter.WEIGHTS_SUFFIX}")
        canonical = check_canonical(spec, weights)
        emitter.write_weights(spec, canonical, target, source)
        count = sum(int(np.prod(v.shape)) for v in canonical.values())
        said.append(f"wrote {target}: {len(canonical)} arrays ({count:,} values) in {emitter.FRAMEWORK}'s own "
                    f"format; load with {emitter.LOAD_HINT}")
    return source, said


__all__ = ["emit_files", "EMITTERS", "EmitError", "get_emitter", "emit_source", "write_weights", "default_weights_path",
           "check_canonical"]
