"""What every backend shares: the build record, weight checks, input checks.

A backend builds a native network from a spec and records, for every layer
and block path, the native object that computes it. Weights then move by
path in the canonical layout, and layer outputs are captured by path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..spec import Inference, Spec
from ..spec.errors import NetparityError
from ..spec.layers import Layer, Row

DEVICES = ("cpu", "gpu")


class BackendError(NetparityError, RuntimeError):
    """A backend cannot do what was asked (no GPU, wrong input, bad weights)."""


@dataclass
class BuildRecord:
    """Attached to every native model netparity builds."""

    spec: Spec
    inference: Inference
    device: str
    layers: dict[str, Any] = field(default_factory=dict)  # path -> native layer(s)
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific notes (e.g. Keras layouts)

    @property
    def rows(self) -> dict[str, Row]:
        return {r.path: r for r in self.inference.rows}


RECORD_ATTRIBUTE = "_netparity_record"


def record_of(model, backend: str) -> BuildRecord:
    record = getattr(model, RECORD_ATTRIBUTE, None)
    if record is None:
        raise BackendError(f"{backend}: this model was not built by netparity (no build record); "
                           "use netparity.compare.verify_port for hand-written models")
    return record


def check_device(device: str, backend: str) -> str:
    if device not in DEVICES:
        raise BackendError(f"{backend}: unknown device {device!r}; use 'cpu' or 'gpu'")
    return device


PRECISIONS = ("float32", "bfloat16", "float16")


def check_run_options(execution: str, precision: str, executions: dict[str, str], precisions: dict[str, str],
                      backend: str) -> tuple[str, str]:
    """``execution`` and ``precision`` checked against what ``backend`` offers
    (``executions`` / ``precisions``: name -> one line on what it does); an unknown or
    unsupported one is refused with the choices this backend has."""
    if execution not in executions:
        raise BackendError(f"{backend}: unknown execution {execution!r}; this backend has "
                           + ", ".join(f"{name!r} ({what})" for name, what in executions.items()))
    if precision not in PRECISIONS:
        raise BackendError(f"{backend}: unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision not in precisions:
        raise BackendError(f"{backend}: precision {precision!r} is not supported by this backend; it has "
                           + ", ".join(f"{name!r} ({what})" for name, what in precisions.items()))
    return execution, precision


def child_path(path: str, relative: str) -> str:
    return f"{path}.{relative}"


def build_tree(spec: Spec, builders: dict[str, Callable], record: BuildRecord) -> list:
    """Build nested native modules bottom-up (PyTorch, Gluon).

    ``builders[kind](layer, row, children)`` returns the native module for one
    layer; ``children`` maps each child's relative path to its built module.
    Returns the top-level modules in order.
    """
    rows = record.rows

    def build(path: str, layer: Layer):
        children = {rel: build(child_path(path, rel), child) for rel, child in layer.children()}
        native = builders[layer.kind](layer, rows[path], children)
        record.layers[path] = native
        return native

    return [build(f"blocks[{i}]", block) for i, block in enumerate(spec.blocks)]


def as_input(x, record: BuildRecord, backend: str) -> np.ndarray:
    """Check a batch against the spec's input shape; returns float32 NCHW."""
    x = np.asarray(x, dtype=np.float32)
    expected = record.inference.input_shape
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected):
        raise BackendError(f"{backend}: input of shape {tuple(x.shape)} does not fit the spec "
                           f"{record.spec.name!r}, which takes (N, {', '.join(map(str, expected))})")
    return x


def parameter_rows(record: BuildRecord):
    """(row, {name: shape}) for every layer that holds weights, in canonical order."""
    for row in record.inference.weight_leaves():
        named = dict(row.layer.parameter_shapes(row.input_shape))
        named.update(row.layer.running_stat_shapes(row.input_shape))
        if named:
            yield row, named


def check_weights(weights: dict[str, np.ndarray], record: BuildRecord, backend: str) -> None:
    """Every canonical key present with its shape, and nothing else."""
    layout = record.inference.weight_layout()
    missing = [k for k in layout if k not in weights]
    unexpected = [k for k in weights if k not in layout]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (first: {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (first: {unexpected[0]})")
        raise BackendError(f"{backend}: weights do not match spec {record.spec.name!r}: " + "; ".join(parts))
    for key, shape in layout.items():
        got = tuple(np.shape(weights[key]))
        if got != tuple(shape):
            raise BackendError(f"{backend}: weight {key} has shape {got}, the spec needs {tuple(shape)}")


def split_key(key: str) -> tuple[str, str]:
    path, _, name = key.rpartition(".")
    return path, name
