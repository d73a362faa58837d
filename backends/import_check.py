"""The self-check of ``netparity import``: before anything is written, the imported spec, built
with the imported weights in PyTorch (else Keras, else the NumPy reference), must reproduce the
source's own output (the source framework running the source, when installed) on random and
adversarial inputs (``compare.port.make_inputs``), max relative error ``SELF_CHECK_RTOL``. Without
the source framework it says so and compares the build with the float64 NumPy reference instead.
A failure names the first layer whose output differs (``SelfCheck.first_layer``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..spec import Spec
from .frameworks import FrameworkMissing

if TYPE_CHECKING:  # importing.py imports this module
    from .importing import ImportedModel

SELF_CHECK_RTOL = 1e-5  # max |a - b| / max |b| of the final output, per input batch
SELF_CHECK_FRAMEWORKS = ("torch", "keras")  # the first installed one builds the spec


@dataclass
class SelfCheck:
    """The imported spec, built in ``built_in`` with the imported weights, against ``against``:
    the source run by its own framework (``source_ran``), or the NumPy reference when that
    framework is absent (``why_not``). ``errors``: the final output's max relative error per
    input batch. ``first_layer``: where a failure starts, when it can be traced."""

    built_in: str
    against: str
    source_ran: bool
    why_not: str
    rtol: float
    errors: dict[str, float] = field(default_factory=dict)
    first_layer: str | None = None
    detail: str = ""

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=float("inf"))

    @property
    def ok(self) -> bool:
        return bool(self.errors) and self.worst <= self.rtol


def build_imported(spec: Spec, weights: dict, frameworks) -> tuple[object, object, str]:
    from . import get_backend
    from ..spec import reference

    for name in frameworks:
        try:
            backend = get_backend(name)
        except FrameworkMissing:
            continue
        model = backend.build(spec)
        backend.set_weights(model, weights)
        return backend, model, f"the spec built by netparity's {name} backend ({backend.FRAMEWORK} {backend.version()})"
    model = reference.build(spec)
    reference.set_weights(model, weights)
    return reference, model, "the NumPy reference (float64; neither PyTorch nor Keras is installed)"


def _first_differing(inference, ours: dict, theirs: dict, rtol: float, by_name: bool):
    """(row, relative error) of the first row (execution order) whose output differs beyond
    ``rtol``, or None: ``theirs`` is keyed by spec path, or by source node name (= the spec
    layer's name) when ``by_name``."""
    from ..compare.parity import relative_error

    for row in inference.execution_order():
        key = row.layer.name if by_name else row.path
        if row.path not in ours or key not in theirs or np.shape(theirs[key]) != np.shape(ours[row.path]):
            continue
        _, rel = relative_error(ours[row.path], theirs[key])
        if rel > rtol:
            return row, rel
    return None


def _label(row) -> str:
    return f"{row.path} ({row.layer.name}, {row.layer.describe()})" if row.layer.name else row.path


def self_check(imported: "ImportedModel", rtol: float = SELF_CHECK_RTOL,
               frameworks=SELF_CHECK_FRAMEWORKS) -> SelfCheck:
    """Build the imported spec with its weights and compare it with the source (see the module
    docstring). Never raises for a numerical difference: the result says where it starts."""
    from ..compare.parity import relative_error
    from ..compare.port import make_inputs
    from ..spec import reference

    inference = imported.spec.infer()
    inputs = make_inputs(inference.input_shape)
    backend, model, built_in = build_imported(imported.spec, imported.weights, frameworks)
    runner = imported.runner
    if runner is not None:
        check = SelfCheck(built_in, f"{imported.source} run by {runner.framework}", True, "", rtol)
        source_out = runner.forward
    else:
        check = SelfCheck(built_in, "the float64 NumPy reference of the same spec and weights", False,
                          imported.runner_missing or f"{imported.source_framework} cannot run here", rtol)
        ref_model = reference.build(imported.spec)
        reference.set_weights(ref_model, imported.weights)

        def source_out(x):
            return reference.forward(ref_model, x)

    for label, x in inputs.items():
        ours, theirs = backend.forward(model, x), np.asarray(source_out(x))
        if ours.shape != theirs.shape:
            check.errors[label] = float("inf")
            check.detail = (f"output shape {ours.shape[1:]} per example where the source gives "
                            f"{theirs.shape[1:]}")
            break
        check.errors[label] = relative_error(ours, theirs)[1]
    if not check.ok and not check.detail:
        _locate(check, imported, inference, backend, model, inputs)
    return check


def _locate(check: SelfCheck, imported, inference, backend, model, inputs) -> None:
    """Name the first layer that differs on the worst input: against the source's node outputs
    when the source ran and states them, else (or when none matches) the build against the
    NumPy reference."""
    from ..spec import reference

    worst = max(check.errors, key=check.errors.get)
    x = inputs[worst]
    ours = backend.forward_layers(model, x)
    runner = imported.runner
    if runner is not None and getattr(runner, "layers", None) is not None:
        found = _first_differing(inference, ours, runner.layers(x), check.rtol, by_name=True)
        if found:
            row, rel = found
            check.first_layer = _label(row)
            check.detail = (f"on the {worst!r} input, layer {check.first_layer} differs from the source's node "
                            f"{row.layer.name!r} by {rel:.1e}")
            return
    ref_model = reference.build(imported.spec)
    reference.set_weights(ref_model, imported.weights)
    found = _first_differing(inference, ours, reference.forward_layers(ref_model, x), check.rtol, by_name=False)
    if found:
        row, rel = found
        check.first_layer = _label(row)
        check.detail = (f"on the {worst!r} input, {check.built_in} differs from the NumPy reference of the "
                        f"same spec from layer {check.first_layer} on ({rel:.1e}): a backend problem, not the import")
        return
    check.first_layer = _label(inference.top_level()[-1])
    check.detail = (f"on the {worst!r} input the final output differs by {check.errors[worst]:.1e}; no source "
                    "node output matches a spec layer before it, so the difference is placed at the output")
