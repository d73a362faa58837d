"""The checks a test calls: ``assert_same_function`` (a port against its reference) and the
``parity`` fixture's spec check, judged with the project's tolerance profile.

Both run netparity's own comparisons (``compare.port.verify_port``, ``compare.parity.check_parity``)
and add three things a test suite needs: a failure message that says where and why (the report's
summary, not a bare AssertionError), the profile's per-layer overrides and expected differences,
and a record of every check for the plugin's JSON report. Frameworks are imported by those
comparisons, when a check runs, never when this module is imported.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from .profile import Expected, LayerOverride, Profile, Tolerance

# Names a per-layer override can use for a difference that is not at a parameterised layer.
OUTPUT = "output"
INPUT_GRADIENT = "input_gradient"


class NotSameFunction(AssertionError):
    """The candidate is not the same function as the reference; ``report`` is the PortReport."""

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report


class ParityFailure(AssertionError):
    """A spec is not the same function in every framework; ``result`` is the ParityResult."""

    def __init__(self, message: str, result):
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------------------
# The running test: the plugin pushes one Context per test; outside pytest a default one.
# ---------------------------------------------------------------------------------------

@dataclass
class Context:
    profile: Profile = field(default_factory=Profile)
    nodeid: str = ""
    device: str = "cpu"
    records: list = field(default_factory=list)


_ACTIVE: list[Context] = []


def current() -> Context:
    return _ACTIVE[-1] if _ACTIVE else Context()


@contextmanager
def active(context: Context):
    _ACTIVE.append(context)
    try:
        yield context
    finally:
        _ACTIVE.remove(context)


def _plain(obj) -> dict:
    """A report as plain JSON types (NumPy scalars, inf), ready for the wire and the file."""
    return json.loads(obj.to_json())


# ---------------------------------------------------------------------------------------
# Expected differences
# ---------------------------------------------------------------------------------------

def _settle(context: Context, record: dict, failures: list[set], models, frameworks, message: str,
            error_type, payload):
    """Raise for a failed check unless the profile expects it (then xfail); fail a strict expected
    difference that no longer shows."""
    __tracebackhide__ = True  # pytest shows the test's line and the message, not this helper
    entries = [e for e in context.profile.expected if e.matches_check(context.nodeid, models, frameworks)]

    def covers(entry: Expected, involved: set) -> bool:
        return entry.frameworks is None or bool(set(entry.frameworks) & involved)

    used = [e for e in entries if any(covers(e, involved) for involved in failures)]
    record["expected"] = [e.to_dict() for e in used]
    context.records.append(record)
    if failures:
        if all(any(covers(e, involved) for e in entries) for involved in failures):
            record["outcome"] = "expected difference"
            pytest.xfail("; ".join(f"{e.reason} ({e.where})" for e in used))
        record["outcome"] = "failed"
        raise error_type(message, payload)
    stale = [e for e in entries if e.strict]
    if stale:
        record["outcome"] = "expected difference gone"
        raise error_type(f"{record['check']} of {', '.join(models[:1])} now agrees, but "
                         + "; ".join(f"{e.where} expects a difference ({e.reason})" for e in stale)
                         + ": remove the entry from [tool.netparity] (or set strict = false)", payload)
    record["outcome"] = "passed"


# ---------------------------------------------------------------------------------------
# A port against its reference
# ---------------------------------------------------------------------------------------

def _side_names(side) -> list[str]:
    """Names a profile's ``model`` pattern can match: a spec's name, a zoo name or file, a model's class."""
    from netparity.spec import Spec

    if isinstance(side, Spec):
        return [side.name]
    if isinstance(side, str):
        return [side]
    return [type(side).__name__, f"{type(side).__module__}.{type(side).__qualname__}"]


def _port_failure(report) -> tuple[list[str], int] | None:
    """(layer names, aligned index) where a port first fails, or None when no tolerance can help."""
    if report.alignment_error or not report.weights_copied:
        return None
    if report.first_divergence is not None:
        row = report.first_divergence
        return [row.reference_name, row.candidate_name], row.index
    if report.output_diverging_inputs:
        return [OUTPUT], len(report.layers)
    check = report.training
    if check is not None and check.meaningful and not check.ok:
        entry = next((e for e in check.layers if not e["ok"]), None)
        if entry is None:
            return [OUTPUT], len(report.layers)
        row = report.layers[entry["index"]]
        return [row.reference_name, row.candidate_name], row.index
    return None


def _training_rows_within(report, before: int, base: Tolerance) -> str | None:
    """After an override from aligned layer ``before`` on, the training-mode rows ahead of it must
    still hold the base tolerance (the override does not reach back). A message when one does not."""
    check = report.training
    if check is None:
        return None
    for entry in check.layers:
        if entry["index"] >= before or "skipped" in entry:
            continue
        within = entry["max_abs"] <= base.atol or entry["max_rel"] <= base.rtol
        stats = max(base.rtol, 1e-5)
        within = within and entry.get("running_mean_rel", 0.0) <= stats and entry.get("running_var_rel", 0.0) <= stats
        if not within:
            row = report.layers[entry["index"]]
            return (f"training mode: #{row.index} {row.reference_name} / {row.candidate_name}, ahead of the "
                    f"overridden layer, differs beyond rtol {base.rtol:g} (output rel {entry['max_rel']:.1e})")
    return None


def port_headline(report) -> str:
    """One line: where the port first differs."""
    if report.alignment_error:
        return f"the models do not align: {report.alignment_error}"
    row = report.first_divergence
    if row is not None:
        everywhere = set(row.diverging_inputs) == set(report.inputs)
        return (f"first differing layer: #{row.index} {row.reference_name} -> {row.candidate_name} ({row.kind}), "
                f"max rel {row.max_rel:.1e}, " + ("on every input" if everywhere else
                                                  f"on {', '.join(row.diverging_inputs)} inputs"))
    if report.output_diverging_inputs:
        return ("every aligned layer agrees, but the final output differs (after the last parameterised layer) "
                f"on {', '.join(report.output_diverging_inputs)} inputs")
    check = report.training
    if check is not None and not check.ok:
        return (f"eval mode agrees; training mode differs, first at {check.first_divergence or 'the output'} "
                f"(output max rel {check.output_max_rel:.1e})")
    return "the port is not equivalent"


def assert_same_function(reference, candidate, input_shape=None, rtol: float | None = None,
                         atol: float | None = None, training_step: bool = True, framework: str | None = None,
                         seed: int = 0, name: str | None = None):
    """Fail the test unless ``candidate`` computes the same function as ``reference``.

    ``reference``: a native PyTorch, Gluon or Keras model, a zoo name, a Spec or a spec JSON path;
    ``candidate``: a native model (its weights are overwritten with the reference's). Wraps
    ``netparity.compare.port.verify_port``; ``training_step`` also compares one training-mode step
    (BatchNorm batch statistics and running averages). ``rtol``/``atol`` default to the float32
    tolerance of [tool.netparity]; its per-layer overrides and expected differences apply, matched
    against ``name`` and the two sides (zoo/spec name, model class). On failure the message is the
    report's summary: the first differing layer and the likely cause. Returns the PortReport.
    """
    __tracebackhide__ = True
    from netparity.compare.port import verify_port

    context = current()
    profile = context.profile
    default = profile.tolerance("float32")
    base = Tolerance(default.rtol if rtol is None else float(rtol), default.atol if atol is None else float(atol))
    models = ([name] if name else []) + _side_names(reference) + _side_names(candidate)

    def run(tolerance: Tolerance):
        return verify_port(reference, candidate, input_shape=input_shape, framework=framework,
                           atol=tolerance.atol, rtol=tolerance.rtol, seed=seed, training_step=training_step)

    tolerance, used, start = base, [], None
    report = run(tolerance)
    while not report.equivalent:
        failure = _port_failure(report)
        override = profile.override_for(models, failure[0], tolerance) if failure else None
        if override is None:
            break
        start = failure[1] if start is None else start
        tolerance = Tolerance(max(tolerance.rtol, override.rtol), max(tolerance.atol, override.atol or 0.0))
        used.append(override)
        report = run(tolerance)
    reach_back = _training_rows_within(report, start, base) if used and report.equivalent else None

    equivalent = report.equivalent and reach_back is None
    record = {"check": "port", "name": name, "reference": report.reference, "candidate": report.candidate,
              "frameworks": [report.reference_framework, report.candidate_framework], "equivalent": equivalent,
              "tolerance": {"rtol": base.rtol, "atol": base.atol},
              "overrides": [o.to_dict() for o in used], "where": None if equivalent else port_headline(report),
              "diagnosis": report.diagnosis, "diagnosis_code": report.diagnosis_code, "report": _plain(report)}
    message = ""
    if not equivalent:
        headline = reach_back or port_headline(report)
        cause = f"\ndiagnosis: {report.diagnosis}" if report.diagnosis else ""
        overrides = "".join(f"\noverride applied: {o.where} layer {o.layer!r} rtol {o.rtol:g} ({o.reason})"
                            for o in used)
        message = (f"{report.candidate} is not the same function as {report.reference}: {headline}{cause}"
                   f"{overrides}\n\n{report.summary()}")
    frameworks = {report.reference_framework, report.candidate_framework}
    _settle(context, record, [] if equivalent else [frameworks], models, frameworks, message, NotSameFunction, report)
    return report


# ---------------------------------------------------------------------------------------
# A spec in several frameworks
# ---------------------------------------------------------------------------------------

def _pair_failure_name(pair, rtol: float) -> str:
    if pair.first_divergence:
        return pair.first_divergence
    return OUTPUT if pair.output_max_rel > rtol else INPUT_GRADIENT


def _describe_pair(pair, rtol: float) -> str:
    where = (f"first divergence at {pair.first_divergence} (rel {pair.first_divergence_rel:.1e} > rtol {rtol:g})"
             if pair.first_divergence else "every layer agrees")
    text = (f"{pair.a} vs {pair.b}: {where}; output rel {pair.output_max_rel:.1e}, input-gradient rel "
            f"{pair.gradient_max_rel:.1e}")
    return text + (f" ({pair.note})" if pair.note else "")


def run_parity(spec, frameworks, input_shape=None, rtol: float | None = None, batch: int = 2, seed: int = 0,
               device: str | None = None, name: str | None = None):
    """``check_parity`` of ``spec`` over ``frameworks``, judged with the profile; returns the
    ParityResult, raises ParityFailure (or xfails for an expected difference, or skips when a framework
    it needs is not installed)."""
    __tracebackhide__ = True
    from netparity.compare.parity import check_parity

    context = current()
    profile = context.profile
    device = device or context.device
    base = profile.tolerance("float32").rtol if rtol is None else float(rtol)

    def run(names, tolerance: float):
        return check_parity(spec, tuple(names), input_shape=input_shape, batch=batch, seed=seed, device=device,
                            rtol=tolerance)

    result = run(frameworks, base)
    models = ([name] if name else []) + ([spec] if isinstance(spec, str) else []) + [result.model]
    if not result.pairs and result.skipped and not result.errors:  # the frameworks it needs are missing
        pytest.skip(f"parity of {result.model}: nothing to compare; "
                    + "; ".join(f"{k}: {v}" for k, v in result.skipped.items()))

    pairs, failures, lines = [], [], []
    for pair in result.pairs:
        tolerance, used, final = base, [], pair
        while not final.ok:
            override = profile.override_for(models, [_pair_failure_name(final, tolerance)],
                                            Tolerance(tolerance, 0.0))
            if override is None or override.rtol <= tolerance:
                break
            tolerance = override.rtol
            used.append(override)
            # only this pair again; check_parity adds its NumPy reference by itself
            rerun = run([n for n in (pair.a, pair.b) if n in frameworks], tolerance)
            again = next((p for p in rerun.pairs if {p.a, p.b} == {pair.a, pair.b}), None)
            if again is None:
                break
            final = again
        pairs.append({"a": pair.a, "b": pair.b, "ok": final.ok, "rtol": tolerance,
                      "first_divergence": final.first_divergence, "first_divergence_rel": final.first_divergence_rel,
                      "output_max_rel": final.output_max_rel, "gradient_max_rel": final.gradient_max_rel,
                      "overrides": [o.to_dict() for o in used], "note": final.note})
        if not final.ok:
            failures.append({pair.a, pair.b})
            lines.append(_describe_pair(final, tolerance)
                         + "".join(f"; override {o.where} ({o.layer!r}, rtol {o.rtol:g}) applied" for o in used))
    for framework, error in result.errors.items():
        failures.append({framework})
        lines.append(f"{framework} failed: {error}")
    for mismatch in result.shape_mismatches[:5]:
        failures.append({mismatch.framework})
        lines.append(f"{mismatch.framework}: output shape of {mismatch.path} is {mismatch.got}, the spec says "
                     f"{mismatch.expected}")
    for mismatch in result.count_mismatches[:5]:
        failures.append({mismatch.framework})
        lines.append(f"{mismatch.framework}: parameters of {mismatch.path} are {mismatch.got} [trainable, running "
                     f"stats], the spec says {mismatch.expected}")
    if not result.pairs and not result.errors:
        failures.append(set(result.frameworks))
        lines.append(f"numerical parity not checked: only {', '.join(result.frameworks) or 'no framework'} ran, "
                     "and a comparison needs two")

    ok = not failures
    record = {"check": "parity", "name": name, "model": result.model, "frameworks": list(frameworks),
              "ran": result.frameworks, "device": device, "ok": ok, "tolerance": {"rtol": base},
              "pairs": pairs, "result": _plain(result)}
    shape = "x".join(map(str, result.input_shape))
    message = f"{result.model} (input {shape}) is not the same function in {', '.join(result.frameworks)}:\n  " \
              + "\n  ".join(lines)
    _settle(context, record, failures, models, set(result.frameworks), message, ParityFailure, result)
    return result


class ParityCheck:
    """The ``parity`` fixture: ``parity(spec_or_zoo_name, input_shape=None, rtol=None, ...)``.

    In a test that takes ``framework``, it checks that one framework (against the NumPy reference
    where check_parity offers one); otherwise every framework selected by --netparity-frameworks.
    """

    def __init__(self, frameworks, device: str):
        self.frameworks = tuple(frameworks)
        self.device = device

    def __call__(self, spec, input_shape=None, rtol: float | None = None, frameworks=None, batch: int = 2,
                 seed: int = 0, name: str | None = None):
        __tracebackhide__ = True
        return run_parity(spec, tuple(frameworks) if frameworks else self.frameworks, input_shape=input_shape,
                          rtol=rtol, batch=batch, seed=seed, device=self.device, name=name)

    def __repr__(self) -> str:
        return f"<netparity parity check over {', '.join(self.frameworks)} on {self.device}>"


__all__ = ["assert_same_function", "run_parity", "ParityCheck", "NotSameFunction", "ParityFailure",
           "LayerOverride", "Context", "current", "active"]
