"""``netparity convert``: import a model, emit it in another framework with its weights, and prove
the pair computes the source's function.

``convert(source, to, out_dir, ...)`` runs ``backends.importing.import_source`` and its self-check,
then writes ``DIR/model.py`` (``emit``), the framework's own weight file, ``DIR/spec.json``, the
inputs and the source's outputs on them (``DIR/check.npz``), and runs the verification in a fresh
process (``python -m netparity.backends.emit.convert DIR``): the emitted file is imported, the
weights loaded with the framework's own loader, its outputs compared with the source's (relative
1e-5), and ``verify_port`` run against the spec built by netparity's backend for that framework
with the imported weights (eval mode and a training-mode forward). Where the source framework is
absent (an MXNet checkpoint without MXNet), the outputs it is compared with come from the imported
spec built by the backend (PyTorch, else Keras), and ``parity.json`` and ``README.md`` say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ...spec import Spec
from ...spec.files import write_atomic
from . import check_canonical, get_emitter
from .source import load_module

RTOL = 1e-5
WEIGHTS_STEM = "model"


def _source_outputs(imported, inputs: dict) -> tuple[dict, str]:
    """The source's own outputs on ``inputs`` (its framework running it), or, without that
    framework, the imported spec's built by the first installed backend; and what they came from."""
    if imported.runner is not None:
        return ({label: np.asarray(imported.runner.forward(x), dtype=np.float32) for label, x in inputs.items()},
                f"{imported.source} run by {imported.runner.framework}")
    from ..import_check import build_imported

    backend, model, built_in = build_imported(imported.spec, imported.weights, ("torch", "keras"))
    return ({label: np.asarray(backend.forward(model, x), dtype=np.float32) for label, x in inputs.items()},
            f"{built_in} ({imported.runner_missing or 'the source framework is absent'})")


def convert(source: str, to: str, out_dir, *, params=None, input_size=None, output=None, name=None,
            progress=print) -> dict:
    """Import, self-check, emit, write, verify in a fresh process. Returns the parity record (also
    ``DIR/parity.json``); ``record["ok"]`` False names where the emitted model differs."""
    from ...compare.port import make_inputs
    from ..importing import import_source, self_check, summary_lines

    emitter = get_emitter(to)
    imported = import_source(source, params=params, input_size=input_size, output=output, name=name)
    check = self_check(imported)
    for line in summary_lines(imported, check):
        progress(line)
    out = Path(out_dir)
    if not check.ok:
        return {"ok": False, "stage": "import", "detail": f"the import self-check failed at "
                                                          f"{check.first_layer or 'the output'}: nothing written"}
    out.mkdir(parents=True, exist_ok=True)
    spec = imported.spec
    source_text = emitter.emit_source(spec)
    write_atomic(out / "model.py", source_text)
    weights_name = WEIGHTS_STEM + emitter.WEIGHTS_SUFFIX
    emitter.write_weights(spec, check_canonical(spec, imported.weights), out / weights_name, source_text)
    spec.save(out / "spec.json")
    inputs = make_inputs(spec.input_shape)
    expected, against = _source_outputs(imported, inputs)
    np.savez(out / "check.npz", **{f"input/{k}": v for k, v in inputs.items()},
             **{f"output/{k}": v for k, v in expected.items()})
    progress(f"wrote {out / 'model.py'}, {out / weights_name} and {out / 'spec.json'}; verifying in a fresh process")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-m", __name__, str(out), to], capture_output=True, text=True, env=env)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"ok": False, "error": f"the verification process failed (exit {done.returncode}): "
                                        f"{done.stderr.strip()[-1500:]}"}
    record = {"ok": bool(result.get("ok")), "source": imported.source, "source_framework": imported.source_framework,
              "framework": to, "model": "model.py", "weights": weights_name, "spec": "spec.json",
              "compared_with": against, "source_ran": imported.runner is not None, "rtol": RTOL,
              "import_self_check": {"built_in": check.built_in, "against": check.against, "worst": check.worst},
              **result, "notes": imported.notes}
    write_atomic(out / "parity.json", json.dumps(record, indent=1, default=float) + "\n")
    write_atomic(out / "README.md", readme(record, spec, emitter))
    return record


def readme(record: dict, spec: Spec, emitter) -> str:
    c, h, w = spec.input_shape
    sizes = {"N": "N", "C": c, "H": h, "W": w}
    layout = f"({', '.join(str(sizes[axis]) for axis in emitter.INPUT_LAYOUT)}) {emitter.INPUT_LAYOUT}"
    verdict = "verified" if record["ok"] else "NOT verified"
    lines = [f"# {spec.name} in {emitter.FRAMEWORK}", "",
             f"Converted by `netparity convert` from `{record['source']}` ({record['source_framework']}). "
             f"`model.py` imports only {emitter.FRAMEWORK}; `{record['weights']}` is in its own format.", "",
             "```python", *emitter.load_snippet(record["weights"]), "```", "",
             f"Input: {layout} float32.", "",
             f"## What was checked ({verdict})", "",
             f"In a fresh process, `model.py` built the model, {emitter.FRAMEWORK}'s own loader read "
             f"`{record['weights']}`, and its outputs were compared with {record['compared_with']} on "
             f"{len(record.get('errors', {}))} input batches (random, negative, positive, constant, large): "
             f"max relative error {record.get('worst', float('nan')):.1e}, limit {record['rtol']:g}.",
             "", f"`netparity verify` (verify_port) against the spec built by netparity's {emitter.NAME} backend "
                 f"with the imported weights: {record.get('verify_port', 'not run')}."]
    if not record["source_ran"]:
        lines += ["", f"The source itself could not run here: the outputs compared with are {record['compared_with']}."]
    if record.get("error") or record.get("detail"):
        lines += ["", f"Problem: {record.get('error') or record.get('detail')}"]
    if record["notes"]:
        lines += ["", "## Notes from the import", ""] + [f"- {note}" for note in record["notes"]]
    return "\n".join(lines) + "\n"


def _forward(framework: str, spec: Spec, model, x: np.ndarray) -> np.ndarray:
    from ..tracing import trace

    return np.asarray(trace(model, x, framework).output, dtype=np.float32)


def verify_directory(out_dir, framework: str) -> dict:
    """The fresh-process check of a converted folder (see the module docstring)."""
    from .. import get_backend
    from ...compare.parity import relative_error
    from ...compare.port import verify_port

    from ..frameworks import import_framework

    import_framework(framework)  # with its traps closed (MXNet's np.bool, Keras' backend choice)
    out = Path(out_dir)
    emitter = get_emitter(framework)
    spec = Spec.load(out / "spec.json")
    model = load_module((out / "model.py").read_text(), "model").build_model()
    emitter.load_weights(model, out / f"{WEIGHTS_STEM}{emitter.WEIGHTS_SUFFIX}")
    stored = np.load(out / "check.npz")
    labels = [key.split("/", 1)[1] for key in stored.files if key.startswith("input/")]
    errors = {}
    for label in labels:
        got = _forward(framework, spec, model, stored[f"input/{label}"])
        errors[label] = float(relative_error(got, stored[f"output/{label}"])[1])
    backend = get_backend(framework)
    reference = backend.build(spec)
    backend.set_weights(reference, emitter.read_weights(spec, model))
    report = verify_port(reference, model, input_shape=spec.input_shape)
    result = {"errors": errors, "worst": max(errors.values()), "verify_port": "equivalent" if report.equivalent
              else "NOT EQUIVALENT"}
    result["ok"] = result["worst"] <= RTOL and report.equivalent
    if not report.equivalent:
        result["detail"] = report.summary()[-2000:]
    elif result["worst"] > RTOL:
        worst = max(errors, key=errors.get)
        result["detail"] = (f"the emitted model's output differs from the source's by {errors[worst]:.1e} (limit "
                            f"{RTOL:g}) on the {worst!r} batch")
    return result


if __name__ == "__main__":
    print(json.dumps(verify_directory(sys.argv[1], sys.argv[2]), default=float))
