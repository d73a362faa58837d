"""Which real models ``netparity import`` imports, and whether every framework then reproduces them.

    python -m netparity.compare.import_coverage --out docs/importing.md     (make import-coverage)

For every torchvision classification model (``torchvision.models.list_models(module=
torchvision.models)``, built with ``weights=None``) and the keras.applications CNNs of issue 11
(``weights=None``): give the model random non-trivial BatchNorm statistics, biases and layer scales,
import it at a reduced input size, build the imported spec in each installed framework with the
imported weights and compare its eval-mode output with the source model's own (max|a-b| / max|b|,
limit 1e-4). A model that does not import gets the importer's own message: the operation it cannot
state and where. Also times the import of torchvision's resnet50 at 224 px (the issue's target: under
5 s on 2 cores). Writes a Markdown page, like ONNX's TestCoverage.md. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..backends import BACKEND_NAMES, available
from ..spec.files import write_atomic

TOLERANCE = 1e-4
# the reduced sizes of tests/test_import_torch.py: the last feature maps are 1x1 or 2x2
TORCHVISION_SIZES = {"alexnet": 63, "squeezenet1_0": 49, "squeezenet1_1": 49, "googlenet": 35, "inception_v3": 75,
                     "mobilenet_v3_small": 33, "mobilenet_v3_large": 33, "shufflenet_v2_x0_5": 37,
                     "shufflenet_v2_x1_0": 37, "shufflenet_v2_x1_5": 37, "shufflenet_v2_x2_0": 37, "resnet18": 33}
KERAS_APPLICATIONS = ("VGG16", "ResNet50", "ResNet50V2", "MobileNet", "MobileNetV2", "MobileNetV3Small", "DenseNet121",
                      "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny", "Xception", "InceptionV3", "NASNetMobile")
# keras.applications' own minimum sizes (it refuses smaller ones); 32 for the rest
KERAS_SIZES = {"Xception": 71, "InceptionV3": 75, "NASNetMobile": 224}


@dataclass
class Row:
    model: str
    source: str  # "torchvision" or "keras.applications"
    size: int
    imported: bool = False
    reason: str = ""
    layers: int = 0
    parameters: int = 0
    seconds: float = 0.0  # import time
    parity: dict = field(default_factory=dict)  # framework -> cell text
    notes: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)  # framework -> max|a-b| / max|b| against the source


# -- giving the source model weights that show a misplaced one ---------------------------------------------

def randomize_statistics(model, size: int) -> None:
    """A torch model's BatchNorm statistics measured on a random batch, then scaled and shifted at
    random; BN's affine terms, every bias and ConvNeXt's layer scale (1e-6 at init, which would hide
    its block) drawn at random too, so that a misplaced weight shows in the output."""
    import torch

    generator = torch.Generator().manual_seed(0)

    def uniform(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.endswith("layer_scale"):
                uniform(parameter, 0.5, 1.5)
            elif key.endswith("bias"):
                uniform(parameter, -0.1, 0.1)
        for norm in norms:
            if norm.weight is not None:
                uniform(norm.weight, 0.5, 1.5)
            norm.reset_running_stats()
            norm.momentum = None  # the statistics of this one batch
        model.train()
        model(torch.randn((4, 3, size, size), generator=generator))
        model.eval()
        for norm in norms:
            norm.momentum = 0.1
            norm.running_var.mul_(torch.rand(norm.running_var.shape, generator=generator) * 0.5 + 0.75).add_(0.05)
            norm.running_mean.add_((torch.rand(norm.running_mean.shape, generator=generator) - 0.5)
                                   * 0.2 * norm.running_var.sqrt())


def randomize_keras(model) -> None:
    """A Keras model's BatchNormalization statistics and affine terms, biases and layer scales
    drawn at random (Keras initialises them to 0 and 1, which would hide a misplaced one)."""
    rng = np.random.default_rng(0)
    layers = list(model.layers)
    while layers:  # nested models' layers too (ConvNeXt's stem and downsampling Sequentials)
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        for variable in layer.weights if not hasattr(layer, "layers") else []:
            name = variable.path.rsplit("/", 1)[-1]
            shape = tuple(variable.shape)
            if name in ("gamma", "moving_variance"):
                variable.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
            elif name in ("beta", "bias", "moving_mean"):
                variable.assign(rng.uniform(-0.1, 0.1, shape).astype(np.float32))
            elif "gamma" in name or "scale" in name:  # ConvNeXt's layer scale
                variable.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))


# -- one model ---------------------------------------------------------------------------------------------

def _first_line(error: BaseException) -> str:
    """The importer's message without its list of everything supported (the page says that once)."""
    text = " ".join(str(error).split())
    for cut in ("; the importer maps these modules:", "; it maps functions", "; supported:", ". Supported layers:"):
        text = text.split(cut)[0]
    return f"{type(error).__name__}: {text}"


def _parity(row: Row, imported, x: np.ndarray, expected: np.ndarray, frameworks, max_parameters: int,
            float64_output=None) -> None:
    """Each framework's output against the source's. Where one differs beyond the tolerance and
    ``float64_output`` can run the source in float64, the source's own float32 rounding is measured
    too: a difference within twice that is rounding (deep residual nets with non-trivial statistics
    grow activations, and float32 errors with them), shown as such and not counted as a match."""
    from ..backends import get_backend

    if row.parameters > max_parameters:
        row.parity = {f: "not run" for f in frameworks}
        row.notes.append(f"parity not run: {row.parameters / 1e6:.0f} M parameters is over this run's "
                         f"{max_parameters / 1e6:.0f} M limit (the family's smaller members are checked)")
        return
    for framework in frameworks:
        try:
            backend = get_backend(framework)
            model = backend.build(imported.spec)
            backend.set_weights(model, imported.weights)
            out = backend.forward(model, x)
            error = float(np.abs(out - expected).max() / np.abs(expected).max())
            row.parity[framework] = (f"ok ({error:.0e})" if error <= TOLERANCE else f"DIFFERS ({error:.1e})")
            row.errors[framework] = error
            del model
        except Exception as failure:  # a build failure is a finding for the table, not a crash
            row.parity[framework] = f"error: {_first_line(failure)}"
        gc.collect()
    if float64_output is not None and any(e > TOLERANCE for e in row.errors.values()):
        exact = float64_output()
        own = float(np.abs(expected - exact).max() / np.abs(exact).max())
        row.notes.append(f"the source's own float32 output differs from its float64 output by {own:.1e}")
        for framework, error in row.errors.items():
            if error > TOLERANCE and error <= 2 * own:
                row.parity[framework] = f"rounding ({error:.1e})"


def torchvision_row(name: str, frameworks, max_parameters: int) -> Row:
    import torch
    import torchvision

    from ..backends.torch.importer import import_model
    from ..backends.torch.importer.sources import AUXILIARY

    models = torchvision.models
    try:
        minimum = models.get_model_weights(name).DEFAULT.meta.get("min_size") or (1, 1)
    except (ValueError, AttributeError, KeyError):
        minimum = (1, 1)
    torch.manual_seed(0)
    model = models.get_model(name, weights=None, **AUXILIARY.get(name, {}))
    # a vision transformer built without weights takes its own image_size (the weights' minimum is for theirs)
    size = TORCHVISION_SIZES.get(name, getattr(model, "image_size", None) or max(32, *minimum))
    row = Row(name, "torchvision", size)
    x = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    start = time.perf_counter()
    try:
        imported = import_model(model, (3, size, size), name=name, source=f"torchvision:{name}")
    except Exception as error:
        row.reason = _first_line(error)
        return row
    row.seconds = time.perf_counter() - start
    _imported(row, imported)
    try:
        randomize_statistics(model, size)
        imported = import_model(model, (3, size, size), name=name, source=f"torchvision:{name}")
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
    except Exception as error:
        row.reason = f"the source model did not run at {size} px: {_first_line(error)}"
        return row
    def float64_output():
        import copy

        with torch.no_grad():
            return copy.deepcopy(model).double()(torch.from_numpy(x).double()).numpy()

    _parity(row, imported, x, expected, frameworks, max_parameters, float64_output)
    return row


def keras_row(name: str, frameworks, max_parameters: int) -> Row:
    from ..backends.frameworks import import_keras
    from ..backends.keras.importer.model import import_keras_model

    keras = import_keras()
    size = KERAS_SIZES.get(name, 32)
    row = Row(name, "keras.applications", size)
    keras.utils.set_random_seed(0)
    try:
        model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    except Exception as error:
        row.reason = f"keras.applications.{name} did not build at {size} px: {_first_line(error)}"
        return row
    randomize_keras(model)
    start = time.perf_counter()
    try:
        imported = import_keras_model(model, None, name)
    except Exception as error:
        row.reason = _first_line(error)
        return row
    row.seconds = time.perf_counter() - start
    _imported(row, imported)
    x = np.random.default_rng(1).standard_normal((2, *imported.spec.input_shape)).astype(np.float32)
    expected = np.asarray(imported.runner.forward(x))
    _parity(row, imported, x, expected, frameworks, max_parameters)
    return row


def _imported(row: Row, imported) -> None:
    inference = imported.spec.infer()
    row.imported = True
    row.layers = len(inference.leaves())
    row.parameters = inference.parameters
    row.notes = list(imported.notes)


# -- the import-time benchmark ---------------------------------------------------------------------------------

RESNET50_TIMING = """
import json, sys, time, torchvision
from netparity.backends.torch.importer import import_model
model = torchvision.models.resnet50(weights=None)
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    import_model(model, (3, 224, 224))
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


KERAS_RESNET50_TIMING = """
import json, sys, time
from netparity.backends.frameworks import import_keras
keras = import_keras()
from netparity.backends.keras.importer import import_model
model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    import_model(model)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def time_resnet50(repeats: int, script: str = RESNET50_TIMING) -> list[float]:
    """Seconds for ``import_model(torchvision resnet50, (3, 224, 224))``, the model already built,
    ``repeats`` times in a fresh process: the first includes torch.fx's first-use costs."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", script, str(repeats)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the page ----------------------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    """Table-safe text; installed packages' paths shortened to the package (``torchvision/...``)."""
    import re

    return re.sub(r"\S*[/\\]site-packages[/\\]", "", text).replace("|", "\\|")


def torch_support() -> list[str]:
    """What the PyTorch importer maps, read from its own tables (so the page cannot drift)."""
    import importlib

    from ..backends.frameworks import is_installed
    from ..backends.torch.importer.diagnostics import target_name
    from ..backends.torch.importer.functions import FUNCTION_REFUSALS, METHODS, function_table
    from ..backends.torch.importer.modules import REFUSALS, module_mappers

    # the optional classes (torchvision's, netparity's torch backend's) are mapped once they are loaded
    for module in ("torchvision.ops.stochastic_depth", "torchvision.ops.misc", "netparity.backends.torch.core"):
        if is_installed(module.split(".")[0]):
            importlib.import_module(module)

    mappers = module_mappers()
    modules = sorted({cls.__name__ for cls, mapper in mappers.items() if mapper not in REFUSALS})
    refused = sorted({cls.__name__ for cls, mapper in mappers.items() if mapper in REFUSALS})
    functions = sorted({target_name(f) for f, (_, handler) in function_table().items()
                        if handler not in FUNCTION_REFUSALS})
    return [
        "## What the PyTorch importer maps",
        "",
        "`netparity import torchvision:NAME` or `FILE.py:FACTORY` (an `nn.Module`) traces the model with torch.fx in "
        "eval mode and maps every node; anything else is refused with the fx node, its source line and this list. "
        "Containers and the model's own modules are traced through.",
        "",
        f"- Modules: {', '.join(f'`{m}`' for m in modules)}.",
        f"- Refused with the reason (the same function in eval mode, another one in training: channel dropout, "
        f"frozen batch norm): {', '.join(f'`{m}`' for m in refused)}.",
        f"- Functions: {', '.join(f'`{f}`' for f in functions)}.",
        f"- Tensor methods: {', '.join(f'`{m}`' for m in sorted(METHODS))}.",
        "- Patterns: `permute(0, 2, 3, 1)` -> LayerNorm / Linear / activations -> `permute(0, 3, 1, 2)` (layer norm "
        "over channels; a Linear there is a 1x1 convolution); `view(N, g, C/g, H, W)` -> `transpose(1, 2)` -> "
        "`view(N, C, H, W)` (channel shuffle); `chunk` / `split` / `x[:, a:b]` on the channels (channel slices); `x[:, :, a:b, c:d]` and negative padding "
        "(`F.pad`, `nn.ZeroPad2d`) on the spatial axes (crops); a "
        "learned (C, 1, 1) parameter times a tensor (layer scale); `pool(x).view(b, c)` -> Linear ... -> "
        "`.view(b, c, 1, 1)` -> `x * y.expand_as(x)` (squeeze-and-excitation with Linear layers, restated as 1x1 "
        "convolutions); DenseNet's repeated concatenation of all earlier outputs (regrouped, exactly).",
    ]


def render(rows: list[Row], frameworks, resnet50: list[float], load: str, duration: float,
           keras_resnet50: list[float] = ()) -> str:
    imported = [r for r in rows if r.imported]
    all_ok = [r for r in imported if all(r.parity.get(f, "").startswith("ok") for f in frameworks)]
    rounding = [r for r in imported if r not in all_ok and all(r.parity.get(f, "").startswith(("ok", "rounding"))
                                                               for f in frameworks)]
    lines = [
        "# Importing models: coverage",
        "",
        "Generated by `make import-coverage` (`python -m netparity.compare.import_coverage`); do not edit by hand.",
        "",
        f"Every torchvision classification model (built with `weights=None`) and the keras.applications CNNs of "
        f"issue 11 (`weights=None`), with random non-trivial BatchNorm statistics, biases and layer scales, imported "
        f"at a reduced input size; the imported spec is built in each framework with the imported weights and its "
        f"eval-mode output compared with the source model's own (max\\|a-b\\| / max\\|b\\| <= {TOLERANCE:g}). "
        f"A model that does not import shows the importer's message: the node and the operation that the spec "
        f"cannot state exactly.",
        "",
        f"{len(imported)} of {len(rows)} models import; {len(all_ok)} of them reproduce the source in every framework "
        f"({', '.join(frameworks)}) within {TOLERANCE:g}"
        + (f"; {len(rounding)} more within twice the source's own float32 rounding (\"rounding\": the source run in "
           f"float32 differs from itself in float64 by about as much, so no float32 port can do better)"
           if rounding else "") + ".",
        "",
        "| model | source | input | imported | layers | parameters | import s | "
        + " | ".join(frameworks) + " | why not / notes |",
        "|---|---|---|---|---:|---:|---:|" + "---|" * len(frameworks) + "---|",
    ]
    for r in rows:
        parity = [_cell(r.parity.get(f, "—")) for f in frameworks]
        why = r.reason if not r.imported else "; ".join(n for n in r.notes if "identity in eval" not in n)
        lines.append(f"| {r.model} | {r.source} | {r.size} | {'yes' if r.imported else 'no'} | "
                     f"{r.layers or ''} | {f'{r.parameters:,}' if r.imported else ''} | "
                     f"{f'{r.seconds:.2f}' if r.imported else ''} | " + " | ".join(parity) + f" | {_cell(why)} |")
    lines += ["", *torch_support(), "",
        "## Import time",
        "",
        f"torchvision `resnet50` at 224 px, `import_model` with the model already built: "
        + ", ".join(f"{t:.2f} s" for t in resnet50)
        + (f" (a fresh process: the first call pays torch.fx's first-use costs; median "
           f"{statistics.median(resnet50):.2f} s). "
           if resnet50 else ". ")
        + "The issue's target is under 5 s on 2 cores. Tracing is torch.fx's; shapes come from fx's ShapeProp on "
          "PyTorch's meta device (no arithmetic), so the time does not grow with the input size.",
        "",
    ]
    if keras_resnet50:
        lines += [
            "keras.applications `ResNet50` at 224 px, `import_model` with the model already built: "
            + ", ".join(f"{t:.2f} s" for t in keras_resnet50)
            + f" (median {statistics.median(keras_resnet50):.2f} s; the issue's target is under 10 s on 2 cores). "
              "The Keras graph is read, not run; most of the time is copying the 25.6 M weights into PyTorch's "
              "layouts.",
            "",
        ]
    lines += [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{load} when the run started; the whole run took {duration / 60:.1f} min. Date: {date.today().isoformat()}.",
        "",
    ]
    return "\n".join(lines)


def _load_rows(path: Path) -> dict:
    """Rows of an earlier (interrupted) run, keyed by (source, model), and its run facts."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    saved = {(r["source"], r["model"]): Row(**r) for r in data.get("rows", [])}
    saved.update({k: v for k, v in data.items() if k != "rows"})
    return saved


def _save_rows(path: Path, saved: dict) -> None:
    rows = [dataclasses.asdict(r) for r in saved.values() if isinstance(r, Row)]
    facts = {k: v for k, v in saved.items() if isinstance(k, str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"rows": rows, **facts}, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/importing.md"))
    parser.add_argument("--models", nargs="*", help="only these (torchvision names or keras.applications names)")
    parser.add_argument("--sources", default="torchvision,keras.applications")
    parser.add_argument("--frameworks", default=",".join(BACKEND_NAMES))
    parser.add_argument("--repeats", type=int, default=3, help="resnet50 import timings (0: none)")
    parser.add_argument("--max-parity-params", type=float, default=150e6,
                        help="models with more parameters are imported but not built (memory and time)")
    parser.add_argument("--rows", type=Path, default=Path("runs/import-coverage.json"),
                        help="every finished row is saved here as it completes; rows already there are kept")
    parser.add_argument("--render-only", action="store_true", help="write the page from --rows, running nothing")
    args = parser.parse_args(argv)
    from ..backends.frameworks import load_triton_first

    load_triton_first()  # before anything loads TensorFlow
    frameworks = [f for f in args.frameworks.split(",") if f in available()]
    sources = args.sources.split(",")
    started = time.perf_counter()
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    work = []
    if "torchvision" in sources:
        import torchvision
        work += [("torchvision", n) for n in torchvision.models.list_models(module=torchvision.models)]
    if "keras.applications" in sources and "keras" in available():
        work += [("keras.applications", n) for n in KERAS_APPLICATIONS]
    if args.models:
        work = [(s, n) for s, n in work if n in args.models]
    saved = _load_rows(args.rows)
    rows = []
    for source, name in work:
        if (source, name) in saved or args.render_only:
            if (source, name) in saved:
                rows.append(saved[(source, name)])
            continue
        print(f"{source}:{name} ...", file=sys.stderr, flush=True)
        try:
            build = torchvision_row if source == "torchvision" else keras_row
            row = build(name, frameworks, int(args.max_parity_params))
        except Exception as error:  # the table says so; the run goes on
            traceback.print_exc()
            row = Row(name, source, 0, reason=f"the coverage script failed: {_first_line(error)}")
        print(f"  imported={row.imported} {row.parity} {row.reason[:160]}", file=sys.stderr, flush=True)
        rows.append(row)
        saved[(source, name)] = row
        _save_rows(args.rows, saved)
        gc.collect()
    if args.render_only:
        resnet50, keras_resnet50 = saved.get("resnet50", []), saved.get("keras_resnet50", [])
        load, duration = saved.get("load", load), saved.get("duration", 0.0)
    else:
        # --repeats 0 keeps the timings of the run the rows come from
        resnet50 = (time_resnet50(args.repeats) if "torchvision" in sources and args.repeats > 0
                    else saved.get("resnet50", []))
        keras_resnet50 = (time_resnet50(args.repeats, KERAS_RESNET50_TIMING)
                          if "keras.applications" in sources and "keras" in available() and args.repeats > 0
                          else saved.get("keras_resnet50", []))
        duration = time.perf_counter() - started + saved.get("duration", 0.0)
        saved.update(resnet50=resnet50, keras_resnet50=keras_resnet50, load=load, duration=duration)
        _save_rows(args.rows, saved)
    write_atomic(args.out, render(rows, frameworks, resnet50, load, duration, keras_resnet50))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
