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
    return importlib.import_module(f"{__name__}.{framework}")


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


__all__ = ["EMITTERS", "EmitError", "get_emitter", "emit_source", "write_weights", "default_weights_path",
           "check_canonical"]
