"""Is a hand-written port the same function as its reference?

``verify_port(reference, candidate)`` traces both models (``backends.tracing``),
pairs their parameterised layers in execution order, copies the reference's
weights into the candidate through the canonical layout, runs both on the same
inputs (random batches and adversarial ones: all-negative, constant, large) and
compares every aligned layer's output. The report names the first layer whose
output diverges, on which inputs, and (when ``compare.diagnosis`` is present)
the likely cause. ``transfer_weights`` does the same alignment to move trained
weights from one native model into another, and verifies the result.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..spec import Spec, init_weights, load
from ..spec.errors import NetparityError
from ..backends import get_layout
from ..backends.tracing import (FRAMEWORKS, KINDS, NotSupported, Trace, TracedLayer, declared_input_shape,
                                first_conv_channels, framework_of, set_canonical_weights, trace)
from .parity import relative_error

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
BATCH = 2
TRAINING_BATCH = 8  # train-mode BatchNorm over 2 values per channel amplifies rounding
# The training-mode comparison has its own tolerances. Train-mode BatchNorm normalises with the
# batch's own statistics, and over small maps (8 to 32 values per channel at batch 8) or channels
# whose values sit far from their mean it amplifies float32 rounding: measured up to 5.9e-4 on a
# layer's output and 4.5e-5 on running statistics over every framework pair of netparity-built
# tv_regnet_y_400mf, tv_mobilenet_v2, tv_shufflenet_v2_x1_0 and tv_resnext50_32x4d at 32 px (1e-4
# flagged all four; eight other zoo models stayed under 3.5e-5). What only
# training shows is far larger: a momentum in the other convention moves running means by O(1), a
# BatchNorm left in inference mode while training moves its output by O(0.1..1).
TRAINING_RTOL = 1e-2
TRAINING_STATS_RTOL = 1e-3


class PortError(NetparityError, ValueError):
    """verify_port cannot start: a side that is not a model, no input shape, a bad factory."""


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

@dataclass
class AlignedLayer:
    index: int
    reference_name: str
    candidate_name: str
    kind: str
    shape: list[int]
    max_abs: float | None = None
    max_rel: float | None = None
    ok: bool | None = None
    diverging_inputs: list[str] = field(default_factory=list)
    reference_type: str = ""
    candidate_type: str = ""
    notes: list[str] = field(default_factory=list)  # configuration differences, weights not copied


@dataclass
class TrainingCheck:
    """One training-mode forward of both models (and, for BatchNorm, the running statistics it leaves)."""

    output_max_abs: float
    output_max_rel: float
    ok: bool
    meaningful: bool  # False when dropout on either side makes outputs differ by design
    first_divergence: str | None = None  # "#i reference_name / candidate_name"
    layers: list[dict] = field(default_factory=list)  # index, max_rel, running_mean_rel, running_var_rel, ok
    note: str = ""


@dataclass
class PortReport:
    equivalent: bool
    reference_framework: str
    candidate_framework: str
    reference: str = ""
    candidate: str = ""
    input_shape: list[int] = field(default_factory=list)
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    seed: int = 0
    inputs: list[str] = field(default_factory=list)
    layers: list[AlignedLayer] = field(default_factory=list)
    output_max_abs: float | None = None
    output_max_rel: float | None = None
    output_diverging_inputs: list[str] = field(default_factory=list)
    alignment_error: str | None = None
    first_divergence: AlignedLayer | None = None
    diagnosis: str | None = None
    diagnosis_code: str | None = None
    training: TrainingCheck | None = None  # None when eval_only, or when eval mode already differs
    training_only: bool = False
    eval_only: bool = False
    weights_copied: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    def summary(self) -> str:
        return _summary(self)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------------------------------
# Resolving the two sides
# ---------------------------------------------------------------------------------------

def _is_spec_like(value) -> bool:
    return isinstance(value, (Spec, str, os.PathLike))


def _spec_with_input(spec: Spec, input_shape) -> Spec:
    if input_shape is None:
        return spec
    if isinstance(input_shape, int):
        return spec.with_input(size=input_shape)
    return Spec(spec.name, tuple(int(v) for v in input_shape), spec.blocks, spec.description)


def _build_spec(reference, framework: str, input_shape, seed: int):
    from ..backends import get_backend

    spec = _spec_with_input(load(str(reference) if isinstance(reference, os.PathLike) else reference), input_shape)
    backend = get_backend(framework)
    model = backend.build(spec)
    backend.set_weights(model, init_weights(spec, seed))
    return model, spec


def _describe(side) -> str:
    if isinstance(side, Spec):
        return f"spec {side.name}"
    if isinstance(side, (str, os.PathLike)):
        return f"spec {side}"
    return f"{type(side).__module__}.{type(side).__qualname__}"


def _input_shape(input_shape, natives, spec_shape):
    """(C, H, W) from the argument, a spec, or a Keras model's declared input."""
    if input_shape is not None and not isinstance(input_shape, int):
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise PortError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        return shape
    if spec_shape is not None:
        return tuple(spec_shape)
    for model, framework in natives:
        shape = declared_input_shape(model, framework)
        if shape is not None:
            if isinstance(input_shape, int):
                return (shape[0], input_shape, input_shape)
            return shape
    if isinstance(input_shape, int):
        for model, framework in natives:
            channels = first_conv_channels(model, framework)
            if channels:
                return (channels, input_shape, input_shape)
        raise PortError(f"input size {input_shape} given, but the number of input channels cannot be read "
                        "from the models; pass input_shape=(C, H, W)")
    raise PortError("input_shape=(C, H, W) is required: neither model states its input shape "
                    "(a spec or a Keras model would)")


def _resolve(reference, candidate, input_shape, framework, seed):
    """(reference model, reference framework, candidate model, candidate framework, shape, notes)."""
    notes = []
    if _is_spec_like(candidate) and _is_spec_like(reference):
        raise PortError("both sides are specs: verify_port checks a native model against a reference; "
                        "use netparity check to compare a spec across frameworks")
    if _is_spec_like(candidate):
        ref_framework = framework_of(reference)
        cand_framework = framework or ref_framework
        shape = _input_shape(input_shape, [(reference, ref_framework)], None)
        candidate, _ = _build_spec(candidate, cand_framework, shape, seed)
        notes.append(f"candidate built from the spec by netparity's {cand_framework} backend")
        return reference, ref_framework, candidate, cand_framework, shape, notes
    cand_framework = framework_of(candidate)
    if _is_spec_like(reference):
        ref_framework = framework or cand_framework
        if ref_framework not in FRAMEWORKS:
            raise PortError(f"unknown framework {ref_framework!r}; choose from {', '.join(FRAMEWORKS)}")
        if input_shape is None:  # the spec at the size the port was written for (a Keras model states it)
            input_shape = declared_input_shape(candidate, cand_framework)
        reference_model, spec = _build_spec(reference, ref_framework, input_shape, seed)
        notes.append(f"reference: spec {spec.name!r} built by netparity's {ref_framework} backend with "
                     f"init_weights(seed={seed})")
        shape = tuple(spec.input_shape)
        return reference_model, ref_framework, candidate, cand_framework, shape, notes
    ref_framework = framework_of(reference)
    shape = _input_shape(input_shape, [(reference, ref_framework), (candidate, cand_framework)], None)
    return reference, ref_framework, candidate, cand_framework, shape, notes


def make_inputs(shape, seed: int = 0, batch: int = BATCH) -> dict[str, np.ndarray]:
    """The evaluation inputs, NCHW float32: three random normal batches, then adversarial ones
    (all-negative, all-positive, a constant image per sample, values x10)."""
    rng = np.random.default_rng(seed)

    def normal():
        return rng.standard_normal((batch, *shape)).astype(np.float32)

    constant = np.empty((batch, *shape), np.float32)
    for i in range(batch):
        constant[i] = (0.5, 1.5)[i % 2]  # one constant image per sample
    # "positive" and "constant" are the non-negative probes: a difference that shows on negative
    # inputs only (zero-padded max pooling) is told apart from one that shows everywhere.
    return {"random 1": normal(), "random 2": normal(), "random 3": normal(),
            "negative": -np.abs(normal()) - 0.1, "positive": np.abs(normal()) + 0.1, "constant": constant,
            "large": 10.0 * normal()}


# ---------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------

def _signature(layer: TracedLayer):
    return layer.kind, tuple(layer.shape)


def _align(ref: list[TracedLayer], cand: list[TracedLayer]) -> list[tuple[str, int | None, int | None]]:
    """A minimum-cost alignment (match 0, gap 1, same kind with other shapes 1, other kind 3)."""
    n, m = len(ref), len(cand)
    sig_r = [_signature(layer) for layer in ref]
    sig_c = [_signature(layer) for layer in cand]

    def sub(i, j):
        if sig_r[i] == sig_c[j]:
            return 0
        return 1 if sig_r[i][0] == sig_c[j][0] else 3

    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + sub(i - 1, j - 1), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops, i, j = [], n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + sub(i - 1, j - 1):
            ops.append(("match" if sub(i - 1, j - 1) == 0 else "differ", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif j and cost[i, j] == cost[i, j - 1] + 1:
            ops.append(("extra", None, j - 1))
            j -= 1
        else:
            ops.append(("missing", i - 1, None))
            i -= 1
    return ops[::-1]


def _fmt_shape(shape) -> str:
    return "x".join(str(v) for v in shape) if shape else "()"


def _explain_shapes(r: TracedLayer, c: TracedLayer) -> str:
    rs, cs = tuple(r.shape), tuple(c.shape)
    if sorted(rs) == sorted(cs):
        if r.kind == "dense" and rs == cs[::-1]:
            return "the dense weight is transposed ((in, out) against (out, in))"
        return "the same sizes in another axis order: a transposed or permuted weight"
    parts = []
    rc, cc = r.config, c.config
    for key, label in (("out_channels", "output channels"), ("in_channels", "input channels"),
                       ("out_features", "output features"), ("in_features", "input features"),
                       ("channels", "channels"), ("kernel", "kernel"), ("groups", "groups")):
        if key in rc and key in cc and rc[key] != cc[key]:
            parts.append(f"{label} {rc[key]} vs {cc[key]}")
    if parts:
        return "different " + ", ".join(parts)
    return f"weight shape {_fmt_shape(rs)} vs {_fmt_shape(cs)}"


def _alignment(ref: Trace, cand: Trace) -> tuple[list[tuple[int, int]], str | None, tuple[int, int] | None]:
    """(aligned pairs, error or None, the (reference, candidate) indices of two layers of one kind
    with other shapes where the alignment stopped, or None). On an error the pairs are those before it."""
    unknown = [(layer.index, side, layer) for side, layers in (("reference", ref), ("candidate", cand))
               for layer in layers if layer.kind == "unknown"]
    limit = None
    error = mismatch = None
    if unknown:
        index, side, layer = min(unknown, key=lambda item: item[0])
        params = ", ".join(f"{k} {_fmt_shape(v)}" for k, v in layer.config.get("parameters", {}).items())
        error = (f"alignment stops at {side} layer #{index} {layer.name}: unknown layer type {layer.type_name} "
                 f"(it holds parameters{': ' + params if params else ''}; netparity aligns {', '.join(KINDS)} "
                 "layers only)")
        limit = index
    ops = _align(ref[:limit] if limit is not None else ref, cand[:limit] if limit is not None else cand)
    pairs = []
    for op, i, j in ops:
        if op == "match":
            pairs.append((i, j))
            continue
        if error is not None:
            break
        if op == "differ":
            r, c = ref[i], cand[j]
            if r.kind != c.kind:
                error = (f"layer kinds differ at #{i}: reference {r.name} ({r.type_name}) is {r.kind}, "
                         f"candidate #{j} {c.name} ({c.type_name}) is {c.kind}")
            else:
                mismatch = (i, j)
                error = (f"shapes differ at #{i}: reference {r.name} ({r.type_name}, {_fmt_shape(r.shape)}) "
                         f"vs candidate #{j} {c.name} ({c.type_name}, {_fmt_shape(c.shape)}): "
                         f"{_explain_shapes(r, c)}")
        elif op == "extra":
            c = cand[j]
            after = f" after reference #{pairs[-1][0]} {ref[pairs[-1][0]].name}" if pairs else " at the start"
            error = (f"extra layer: candidate #{j} {c.name} ({c.type_name}, {c.kind} {_fmt_shape(c.shape)}) "
                     f"has no counterpart in the reference{after} (reference {len(ref)} parameterised "
                     f"layers, candidate {len(cand)})")
        else:
            r = ref[i]
            error = (f"missing layer: reference #{i} {r.name} ({r.type_name}, {r.kind} {_fmt_shape(r.shape)}) "
                     f"has no counterpart in the candidate (reference {len(ref)} parameterised layers, "
                     f"candidate {len(cand)})")
        break
    if error is None and limit is None and len(pairs) != len(ref):  # pragma: no cover - defensive
        error = f"reference has {len(ref)} parameterised layers, candidate {len(cand)}"
    return pairs, error, mismatch


# ---------------------------------------------------------------------------------------
# Configuration notes and weights
# ---------------------------------------------------------------------------------------

def _config_notes(r: TracedLayer, c: TracedLayer) -> list[str]:
    notes = []
    rc, cc = r.config, c.config
    keys = {"conv2d": ("stride", "dilation", "groups", "bias"), "dense": ("bias",),
            "batchnorm": ("eps", "momentum", "scale", "center"), "layernorm": ("eps", "scale", "center")}.get(r.kind, ())
    for key in keys:
        if key in rc and key in cc and rc[key] != cc[key]:
            notes.append(f"{key} {rc[key]} vs {cc[key]}")
    if r.kind == "conv2d":
        rp, cp = rc.get("effective_padding"), cc.get("effective_padding")
        if rp != cp:
            notes.append(f"padding {rp} vs {cp}")
    return notes


_DEFAULTS = {"bias": 0.0, "weight": 1.0, "running_mean": 0.0, "running_var": 1.0}


def _copy(candidate, pairs, ref: Trace, cand: Trace, aligned: list[AlignedLayer]) -> None:
    for (i, j), row in zip(pairs, aligned):
        weights = ref[i].weights()
        present = cand[j].weight_shapes()
        for key, shape in present.items():
            if key not in weights and key in _DEFAULTS:
                weights[key] = np.full(shape, _DEFAULTS[key], np.float32)
                row.notes.append(f"the reference has no {key}: the candidate's set to {_DEFAULTS[key]:g}")
        row.notes.extend(f"the candidate has no {key}: the reference's not copied"
                         for key in weights if key not in present)
        set_canonical_weights(candidate, cand[j], weights)


def _snapshot(layers: list[TracedLayer]) -> dict[int, dict]:
    return {layer.index: layer.weights() for layer in layers if layer.kind == "batchnorm"}


def _restore(model, layers: list[TracedLayer], saved: dict[int, dict]) -> None:
    for layer in layers:
        if layer.index in saved:
            set_canonical_weights(model, layer, saved[layer.index])


# ---------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------

def _error(candidate_value, reference_value) -> tuple[float, float, float]:
    """(max abs, max rel, scale) of candidate against reference; inf when shapes differ or missing."""
    if candidate_value is None or reference_value is None:
        return float("inf"), float("inf"), 0.0
    a, b = np.asarray(candidate_value), np.asarray(reference_value)
    if a.shape != b.shape:
        return float("inf"), float("inf"), 0.0
    abs_, rel = relative_error(a, b)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        same = np.array_equal(a, b, equal_nan=True)
        return (0.0, 0.0, scale) if same else (float("inf"), float("inf"), scale)
    return abs_, rel, scale


def _within(abs_: float, scale: float, atol: float, rtol: float) -> bool:
    return abs_ <= atol + rtol * scale


def _compare(ref_traces, cand_traces, pairs, aligned, atol, rtol):
    """Fill per-layer errors over every input; returns (output abs, rel, diverging inputs)."""
    out_abs = out_rel = 0.0
    out_diverging = []
    for kind in ref_traces:
        ref, cand = ref_traces[kind], cand_traces[kind]
        for (i, j), row in zip(pairs, aligned):
            abs_, rel, scale = _error(cand[j].output, ref[i].output)
            row.max_abs = max(row.max_abs or 0.0, abs_)
            row.max_rel = max(row.max_rel or 0.0, rel)
            if not _within(abs_, scale, atol, rtol):
                row.diverging_inputs.append(kind)
                if ref[i].output is not None and cand[j].output is not None \
                        and ref[i].output.shape != cand[j].output.shape:
                    note = f"output shape {list(cand[j].output.shape)} vs the reference's {list(ref[i].output.shape)}"
                    if note not in row.notes:
                        row.notes.append(note)
        abs_, rel, scale = _error(cand.output, ref.output)
        out_abs, out_rel = max(out_abs, abs_), max(out_rel, rel)
        if not _within(abs_, scale, atol, rtol):
            out_diverging.append(kind)
    for row in aligned:
        row.ok = not row.diverging_inputs
    return out_abs, out_rel, out_diverging


def _running_stats_rel(layer_ref: TracedLayer, layer_cand: TracedLayer, before: dict, after_ref: dict,
                       after_cand: dict, batch_values: int) -> tuple[float, float]:
    """Relative errors of the running mean and variance after one train-mode forward, with
    non-PyTorch variances put into PyTorch's unbiased convention (n/(n-1) on the batch term)."""

    def unbiased(layer, after):
        var = after["running_var"].astype(np.float64)
        m = layer.config.get("momentum")
        if get_layout(layer.framework).RUNNING_VAR_UNBIASED or not m or batch_values < 2:
            return var
        batch_var = (var - (1 - m) * before["running_var"]) / m
        return var + m * batch_var / (batch_values - 1)

    if not {"running_mean", "running_var"} <= set(after_ref) & set(after_cand) & set(before):
        return 0.0, 0.0
    _, mean_rel = relative_error(after_cand["running_mean"], after_ref["running_mean"])
    _, var_rel = relative_error(unbiased(layer_cand, after_cand), unbiased(layer_ref, after_ref))
    return mean_rel, var_rel


def _training_check(reference, candidate, ref_fw, cand_fw, ref_eval, cand_eval, pairs, aligned, shape, seed,
                    atol, rtol):
    x = np.random.default_rng(seed + 1).standard_normal((TRAINING_BATCH, *shape)).astype(np.float32)
    saved_ref, saved_cand = _snapshot(ref_eval), _snapshot(cand_eval)
    try:
        ref = trace(reference, x, ref_fw, training=True)
        cand = trace(candidate, x, cand_fw, training=True)
        after_ref, after_cand = _snapshot(ref_eval), _snapshot(cand_eval)
    finally:
        _restore(reference, ref_eval, saved_ref)
        _restore(candidate, cand_eval, saved_cand)
    rtol, stats_rtol = max(rtol, TRAINING_RTOL), max(rtol, TRAINING_STATS_RTOL)
    # Dropout masks differ between frameworks: only layers that run before the first dropout compare.
    limit = min([position for _, position in ref.dropout] + [len(ref)])
    cand_limit = min([position for _, position in cand.dropout] + [len(cand)])
    rows, first = [], None
    for (i, j), row in zip(pairs, aligned):
        if i >= limit or j >= cand_limit:
            rows.append({"index": row.index, "ok": True, "skipped": "after a dropout"})
            continue
        abs_, rel, scale = _error(cand[j].output, ref[i].output)
        ok = _within(abs_, scale, atol, rtol)
        entry = {"index": row.index, "max_abs": abs_, "max_rel": rel, "ok": ok}
        if i in saved_ref and j in saved_cand:
            out = ref[i].output
            n = int(out.size // out.shape[1]) if out is not None and out.ndim >= 2 else TRAINING_BATCH
            mean_rel, var_rel = _running_stats_rel(ref[i], cand[j], saved_ref[i], after_ref[i], after_cand[j], n)
            entry.update(running_mean_rel=mean_rel, running_var_rel=var_rel)
            stats_ok = mean_rel <= stats_rtol and var_rel <= stats_rtol
            entry["running_stats_ok"] = stats_ok
            ok = ok and stats_ok
            entry["ok"] = ok
        rows.append(entry)
        if not ok and first is None:
            first = f"#{row.index} {row.reference_name} / {row.candidate_name}"
    out_abs, out_rel, scale = _error(cand.output, ref.output)
    dropout = [name for name, _ in ref.dropout + cand.dropout]
    ok = first is None and (bool(dropout) or _within(out_abs, scale, atol, rtol))
    compared = sum(1 for entry in rows if "skipped" not in entry)
    meaningful = not dropout or compared > 0
    note = ""
    if dropout:
        note = (f"dropout is active in training mode ({', '.join(dropout[:4])}): the frameworks draw different "
                f"masks, so only the {compared} aligned layer(s) before the first dropout were compared in "
                "training mode" + ("" if compared else "; disable dropout to check this"))
    check = TrainingCheck(out_abs, out_rel, ok, meaningful, first, rows, note)
    return check, ref, cand, x


# ---------------------------------------------------------------------------------------
# Diagnosis hook
# ---------------------------------------------------------------------------------------

def _views(layers: Trace, indices) -> list[dict]:
    """The aligned layers as plain dicts for compare.diagnosis: name, kind, config (padding as the
    effective zero padding, ((top, bottom), (left, right)) or 'same'; BatchNorm momentum already in
    PyTorch's convention), output, input (canonical layouts) and weights (canonical)."""
    views = []
    for index in indices:
        layer = layers[index]
        config = dict(layer.config)
        if "effective_padding" in config:
            config["native_padding"] = config.get("padding")
            config["padding"] = config["effective_padding"]
        views.append({"index": layer.index, "name": layer.name, "kind": layer.kind, "type": layer.type_name,
                      "framework": layer.framework, "config": config, "output": layer.output,
                      "input": layer.input, "weights": layer.weights(), "layout": layer.layout,
                      "flatten_source": layer.flatten_source})
    return views


def _diagnose(report: PortReport, evidence: dict) -> None:
    name = f"{__package__}.diagnosis"
    try:
        if importlib.util.find_spec(name) is None:
            return
        module = importlib.import_module(name)
    except Exception as error:  # the diagnosis module is optional; never lose the report for it
        report.notes.append(f"diagnosis unavailable: {type(error).__name__}: {error}")
        return
    diagnose = getattr(module, "diagnose", None)
    if diagnose is None:
        return
    try:
        positional = [p for p in inspect.signature(diagnose).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        result = diagnose(report, evidence) if len(positional) >= 2 else diagnose(evidence)
    except Exception as error:
        report.notes.append(f"diagnosis failed: {type(error).__name__}: {error}")
        return
    if result is None:
        return
    if isinstance(result, str):
        report.diagnosis = result
    else:
        code, message = result
        report.diagnosis_code, report.diagnosis = code, message


# ---------------------------------------------------------------------------------------
# The entry points
# ---------------------------------------------------------------------------------------

def verify_port(reference, candidate, input_shape=None, framework: str | None = None, atol: float = DEFAULT_ATOL,
                rtol: float = DEFAULT_RTOL, seed: int = 0, training_step: bool = True) -> PortReport:
    """Check that ``candidate`` (a native model) computes the same function as ``reference``.

    ``reference``: a native model (PyTorch, Gluon, functional/Sequential Keras) or a spec
    (zoo name, Spec, JSON path), built by netparity's backend for ``framework`` (default:
    the candidate's) with ``init_weights(spec, seed)``. ``input_shape``: (C, H, W), or a
    square size; needed unless a spec or a Keras model states it. The candidate's weights
    are overwritten with the reference's. A layer is within tolerance on an input when
    max|a - b| <= atol + rtol * max|b|. When eval mode agrees, one training-mode forward
    (batch 8) is compared too, with BatchNorm's running statistics after it (PyTorch's unbiased
    running variance put beside the others' biased one, so that known difference is no alarm;
    tolerances ``TRAINING_RTOL`` and ``TRAINING_STATS_RTOL``, or ``rtol`` when larger): a momentum
    in the wrong convention or a BatchNorm frozen in inference mode shows only there. ``training_step=False`` skips it
    (``netparity verify --eval-only``). Raises PortError (or NotSupported) only when a side is
    not a model or no input shape is known; everything else is in the report.
    """
    reference_model, ref_fw, candidate, cand_fw, shape, notes = _resolve(reference, candidate, input_shape,
                                                                         framework, seed)
    return _verify(reference_model, ref_fw, candidate, cand_fw, shape, atol, rtol, seed, training_step, notes,
                   _describe(reference), _describe(candidate))


def transfer_weights(source, target, input_shape=None, atol: float = DEFAULT_ATOL,
                     rtol: float = DEFAULT_RTOL, seed: int = 0, training_step: bool = True) -> PortReport:
    """Move ``source``'s weights into ``target`` (both native models, any frameworks), layer by
    layer through the canonical layout, then verify that the two compute the same function.
    ``report.weights_copied`` says whether the weights were moved (not when alignment fails)."""
    if _is_spec_like(source) or _is_spec_like(target):
        raise PortError("transfer_weights moves weights between native models; for a spec use verify_port")
    return verify_port(source, target, input_shape, atol=atol, rtol=rtol, seed=seed, training_step=training_step)


def _verify(reference, ref_fw, candidate, cand_fw, shape, atol, rtol, seed, training_step, notes,
            ref_name, cand_name) -> PortReport:
    for model, framework, side in ((reference, ref_fw, "reference"), (candidate, cand_fw, "candidate")):
        declared = declared_input_shape(model, framework)
        if declared is not None and tuple(declared) != tuple(shape):
            notes = [*notes, f"the {side} model declares input {declared}, checked at {tuple(shape)}"]
    inputs = make_inputs(shape, seed)
    first_kind = next(iter(inputs))
    report = PortReport(False, ref_fw, cand_fw, ref_name, cand_name, list(shape), atol, rtol, seed,
                        list(inputs), notes=list(notes), eval_only=not training_step)
    ref_trace = trace(reference, inputs[first_kind], ref_fw)
    cand_trace = trace(candidate, inputs[first_kind], cand_fw)
    for side, tr in (("reference", ref_trace), ("candidate", cand_trace)):
        if tr.untraced:
            report.notes.append(f"{side}: parameterised layers that never ran as layer calls (unused, or their "
                                f"weights used functionally): {', '.join(tr.untraced[:5])}")
    pairs, error, mismatch = _alignment(ref_trace, cand_trace)
    aligned = [AlignedLayer(k, ref_trace[i].name, cand_trace[j].name, ref_trace[i].kind, list(ref_trace[i].shape),
                            reference_type=ref_trace[i].type_name, candidate_type=cand_trace[j].type_name,
                            notes=_config_notes(ref_trace[i], cand_trace[j]))
               for k, (i, j) in enumerate(pairs)]
    report.layers = aligned
    evidence = {"reference_layers": _views(ref_trace, [i for i, _ in pairs]),
                "candidate_layers": _views(cand_trace, [j for _, j in pairs]), "first_divergence": None,
                "reference_output": ref_trace.output, "candidate_output": cand_trace.output,
                "inputs": inputs, "training_only": False, "pairs": pairs, "alignment_error": error,
                "input_kind": first_kind, "frameworks": {"reference": ref_fw, "candidate": cand_fw},
                "atol": atol, "rtol": rtol}
    if mismatch is not None:
        evidence["mismatch"] = {"reference": _views(ref_trace, [mismatch[0]])[0],
                                "candidate": _views(cand_trace, [mismatch[1]])[0]}
    if error is not None:
        report.alignment_error = error
        _diagnose(report, evidence)
        return report
    try:
        _copy(candidate, pairs, ref_trace, cand_trace, aligned)
    except ValueError as failure:
        report.alignment_error = f"weights do not fit: {failure}"
        return report
    report.weights_copied = True

    ref_traces = {kind: trace(reference, x, ref_fw) for kind, x in inputs.items()}
    cand_traces = {kind: trace(candidate, x, cand_fw) for kind, x in inputs.items()}
    report.output_max_abs, report.output_max_rel, report.output_diverging_inputs = _compare(
        ref_traces, cand_traces, pairs, aligned, atol, rtol)
    report.first_divergence = next((row for row in aligned if not row.ok), None)
    eval_ok = report.first_divergence is None and not report.output_diverging_inputs
    report.equivalent = eval_ok
    if report.first_divergence is not None:
        kind = report.first_divergence.diverging_inputs[0]
    elif report.output_diverging_inputs:
        kind = report.output_diverging_inputs[0]
    else:
        kind = first_kind
    nondeterministic = False
    if not eval_ok:
        again = trace(candidate, inputs[first_kind], cand_fw).output
        abs_, _, scale = _error(again, cand_traces[first_kind].output)
        nondeterministic = not _within(abs_, scale, atol, rtol)
        if nondeterministic:
            report.notes.append("the candidate's eval-mode output changes between two identical calls (a random op "
                                "such as dropout is active at inference)")
    evidence.update(reference_layers=_views(ref_traces[kind], [i for i, _ in pairs]),
                    candidate_layers=_views(cand_traces[kind], [j for _, j in pairs]), input_kind=kind,
                    nondeterministic=nondeterministic,
                    diverging_inputs={row.index: list(row.diverging_inputs) for row in aligned},
                    reference_output=ref_traces[kind].output, candidate_output=cand_traces[kind].output,
                    traces={k: {"reference": ref_traces[k], "candidate": cand_traces[k]} for k in inputs},
                    first_divergence=None if report.first_divergence is None else report.first_divergence.index,
                    aligned=aligned, output_diverging_inputs=report.output_diverging_inputs)
    if eval_ok and training_step:
        check, ref_train, cand_train, x = _training_check(reference, candidate, ref_fw, cand_fw, ref_trace,
                                                          cand_trace, pairs, aligned, shape, seed, atol, rtol)
        report.training = check
        if check.meaningful and not check.ok:
            report.equivalent = False
            report.training_only = True
            first = next((row["index"] for row in check.layers if not row["ok"]), None)
            evidence.update(reference_layers=_views(ref_train, [i for i, _ in pairs]),
                            candidate_layers=_views(cand_train, [j for _, j in pairs]), training_only=True,
                            reference_output=ref_train.output, candidate_output=cand_train.output,
                            first_divergence=first, input_kind="training", training=check,
                            inputs={**inputs, "training": x})
    if not report.equivalent:
        _diagnose(report, evidence)
    return report


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------

def _num(value) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "inf"
    return f"{value:.1e}"


def _summary(report: PortReport) -> str:
    lines = [f"verify_port: reference {report.reference} ({report.reference_framework}) -> candidate "
             f"{report.candidate} ({report.candidate_framework})",
             f"input {tuple(report.input_shape)}; inputs: {', '.join(report.inputs)}; "
             f"tolerance |a-b| <= {report.atol:g} + {report.rtol:g}*max|ref|"]
    if report.layers:
        widths = (max(9, *(len(r.reference_name) for r in report.layers)),
                  max(9, *(len(r.candidate_name) for r in report.layers)))
        lines.append("")
        lines.append(f"{'#':>3}  {'kind':<9}  {'reference':<{widths[0]}}  {'candidate':<{widths[1]}}  "
                     f"{'shape':<14}  {'max abs':>8}  {'max rel':>8}  status")
        for row in report.layers:
            status = "-" if row.ok is None else ("ok" if row.ok else "DIFFERS on " + ", ".join(row.diverging_inputs))
            lines.append(f"{row.index:>3}  {row.kind:<9}  {row.reference_name:<{widths[0]}}  "
                         f"{row.candidate_name:<{widths[1]}}  {_fmt_shape(row.shape):<14}  {_num(row.max_abs):>8}  "
                         f"{_num(row.max_rel):>8}  {status}")
            for note in row.notes:
                lines.append(f"{'':>5}note: {note}")
    lines.append("")
    if report.alignment_error:
        lines.append(f"NOT ALIGNED: {report.alignment_error}")
    else:
        lines.append(f"final output: max abs {_num(report.output_max_abs)}, max rel {_num(report.output_max_rel)}"
                     + (f" (differs on {', '.join(report.output_diverging_inputs)})"
                        if report.output_diverging_inputs else ""))
        first = report.first_divergence
        if first is not None:
            everywhere = set(first.diverging_inputs) == set(report.inputs)
            lines.append(f"first divergence: #{first.index} {first.reference_name} -> {first.candidate_name} "
                         f"({first.kind}), max rel {_num(first.max_rel)}, "
                         + ("on every input" if everywhere else f"only on {', '.join(first.diverging_inputs)}"))
        elif report.output_diverging_inputs:
            last = report.layers[-1] if report.layers else None
            lines.append("every aligned layer agrees but the final output differs: the difference is after the "
                         f"last parameterised layer{' (' + last.reference_name + ')' if last else ''}")
        if report.eval_only:
            lines.append("training mode: not checked (eval only)")
        if report.training is not None:
            check = report.training
            if not check.meaningful:
                lines.append(f"training mode: {check.note}")
            elif check.ok:
                lines.append(f"training mode: agrees (output max rel {_num(check.output_max_rel)}; "
                             "BatchNorm running statistics agree)" + (f"; {check.note}" if check.note else ""))
            else:
                lines.append(f"training mode: DIFFERS (output max rel {_num(check.output_max_rel)}), first at "
                             f"{check.first_divergence}" + (": the outputs agree in eval mode and differ only in "
                                                             "training mode" if report.training_only else ""))
                if check.note:
                    lines.append(f"{'':>5}{check.note}")
                for row in check.layers:
                    if not row["ok"] and "running_mean_rel" in row:
                        lines.append(f"{'':>5}#{row['index']}: output rel {_num(row['max_rel'])}, running mean rel "
                                     f"{_num(row['running_mean_rel'])}, running var rel {_num(row['running_var_rel'])}")
    if report.diagnosis:
        lines.append(f"diagnosis: {report.diagnosis}" + (f" [{report.diagnosis_code}]" if report.diagnosis_code else ""))
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append("EQUIVALENT" if report.equivalent else "NOT EQUIVALENT")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Command line (wired into netparity.cli by its owner)
# ---------------------------------------------------------------------------------------

def _preload_frameworks(source: str) -> None:
    """Import the frameworks a user file mentions through netparity's importers, so their
    traps (MXNet's np.bool, triton before TensorFlow) are closed before the file runs."""
    from ..backends.frameworks import FrameworkMissing, import_keras, import_mxnet, import_torch

    for word, importer in (("torch", import_torch), ("mxnet", import_mxnet), ("keras", import_keras),
                           ("tensorflow", import_keras)):
        if word in source:
            try:
                importer()
            except FrameworkMissing:
                pass


def load_factory(text: str):
    """``path/to/module.py:factory`` -> factory() (a native model). PortError otherwise."""
    path_text, _, function = text.rpartition(":")
    path = Path(path_text)
    if not function:
        raise PortError(f"{text!r}: give the factory function after the colon, e.g. my_port.py:build_model")
    if not path.is_file():
        raise PortError(f"{text!r}: no such file {str(path)!r}")
    source = path.read_text(errors="replace")
    _preload_frameworks(source)
    name = f"netparity_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PortError(f"{text!r}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise PortError(f"{text!r}: importing {path.name} failed: {type(error).__name__}: {error}") from error
    factory = getattr(module, function, None)
    if factory is None or not callable(factory):
        functions = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        raise PortError(f"{text!r}: {path.name} has no function {function!r}"
                        + (f" (it has: {', '.join(functions)})" if functions else ""))
    try:
        model = factory()
    except Exception as error:
        raise PortError(f"{text!r}: {function}() raised {type(error).__name__}: {error}") from error
    try:
        framework_of(model)
    except NotSupported as error:
        raise PortError(f"{text!r}: {function}() returned {type(model).__name__}, not a native model "
                        f"({error})") from None
    return model


def resolve_side(text: str):
    """A zoo name or spec JSON path stays a string (verify_port builds it); ``file.py:factory``
    becomes the model its factory returns."""
    path_text, colon, _ = text.rpartition(":")
    if colon and path_text.endswith(".py"):
        return load_factory(text)
    if text.endswith(".json"):
        if not Path(text).is_file():
            raise PortError(f"no such spec file {text!r}")
        return text
    from ..spec import zoo

    if text in zoo.names():
        return text
    if text.endswith(".py"):
        raise PortError(f"{text!r}: name the factory function too, e.g. {text}:build_model")
    raise PortError(f"{text!r} is not a zoo model ({', '.join(zoo.names())}), a spec .json file or "
                    "a module.py:factory")


def verify_command(reference: str, candidate: str, input_size: int | None = None, json_path=None,
                   framework: str | None = None, eval_only: bool = False, training_step: bool | None = None) -> int:
    """``netparity verify REFERENCE CANDIDATE``: prints the summary, writes JSON atomically
    when asked; returns 0 only when the port is equivalent (1 when not, 2 when it cannot run).
    The training-mode comparison runs unless ``eval_only``; ``training_step`` (the old opt-in,
    ``--training-step``) is accepted and changes nothing, since it is the default now."""
    from rich.console import Console
    from rich.markup import escape

    from ..spec.files import write_atomic

    console = Console()
    try:
        ref = resolve_side(reference)
        cand = resolve_side(candidate)
        report = verify_port(ref, cand, input_shape=input_size, framework=framework, training_step=not eval_only)
    except NetparityError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    report.reference, report.candidate = reference, candidate
    text = report.summary()
    body, _, verdict = text.rpartition("\n")
    console.print(body, markup=False, highlight=False)
    console.print(f"[bold {'green' if report.equivalent else 'red'}]{verdict}[/]")
    if json_path:
        write_atomic(json_path, report.to_json())
    return 0 if report.equivalent else 1
