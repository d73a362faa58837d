"""The ``netparity`` command line (typer).

Bad input is a ``NetparityError`` (SpecError, BackendError, DataError, BenchError, ...): every
command prints it as one line ``error: <message>`` and exits with code 2. Any other exception is
a bug and keeps its traceback. Text from users and from errors goes through rich escaped, since
rich reads ``[mxnet]`` in ``pip install 'netparity[mxnet]'`` as markup and drops it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from netparity.spec import NetparityError, Spec, SpecError, load, show_shape, zoo
from netparity.spec.files import write_atomic

console = Console()
errors = Console(stderr=True)
MODEL_HELP = "A zoo name (see `netparity list`) or a spec JSON file."


def _error_line(message: str) -> None:
    # soft_wrap: one line at any terminal width (rich wraps at 80 columns when not on a terminal)
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Commands(TyperGroup):
    """Runs every command; a NetparityError becomes one line and exit code 2, nothing else is caught."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NetparityError as error:
            _error_line(str(error))
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False,
                  help="Write a CNN once, as data; build it in PyTorch, MXNet Gluon and Keras 3; "
                       "prove the three are the same function.")


def _fail(message: str, code: int = 2):
    _error_line(message)
    raise typer.Exit(code)


def _known_model(model: str) -> None:
    """An unknown zoo name is bad input; zoo.entry says so with a KeyError (a lookup miss), caught
    here around that lookup alone so that a KeyError from a bug elsewhere keeps its traceback."""
    if not str(model).endswith(".json"):
        try:
            zoo.entry(model)
        except KeyError as error:
            _fail(error.args[0])


def _load(model: str, input_size: Optional[int] = None) -> Spec:
    _known_model(model)
    try:
        spec = load(model)
        spec = spec.with_input(size=input_size) if input_size else spec
        spec.infer()
        return spec
    except SpecError as error:  # a file's own problem (not UTF-8, not JSON) names the file already
        _fail(f"invalid spec {model!r}: {error.reason if error.path == str(model) else error}")


@app.command("list")
def list_models():
    """List the zoo: name, default input, parameters, summary."""
    table = Table("name", "input", "parameters", "summary", title="netparity zoo")
    for name in zoo.names():
        spec = zoo.get(name)
        table.add_row(escape(name), show_shape(spec.input_shape), f"{spec.infer().parameters:,}",
                      escape(zoo.entry(name).summary))
    console.print(table)


@app.command()
def show(model: str = typer.Argument(..., help=MODEL_HELP),
         input_size: Optional[int] = typer.Option(None, help="Square input size (default: the model's)."),
         depth: int = typer.Option(0, help="How deep to expand blocks (0: top-level blocks only)."),
         all_layers: bool = typer.Option(False, "--all", help="Show every layer."),
         as_json: bool = typer.Option(False, "--json", help="Print the spec as JSON instead.")):
    """Per-block table: name, kind, output shape and parameters, from the spec alone."""
    spec = _load(model, input_size)
    if as_json:
        print(spec.to_json())
        return
    inference = spec.infer()
    table = Table("path", "name", "kind", "output", "parameters",
                  title=f"{escape(spec.name)}: input {show_shape(inference.input_shape)}")
    for row in inference.rows:
        if all_layers or row.depth <= depth:
            indent = "  " * row.depth
            table.add_row(escape(indent + row.path), escape(row.layer.name), escape(row.layer.describe()),
                          show_shape(row.output_shape),
                          f"{row.parameters:,}" if row.parameters else "")
    console.print(table)
    console.print(f"trainable parameters: {inference.parameters:,}   "
                  f"BatchNorm running statistics: {inference.running_stats:,}")


@app.command()
def export(model: str = typer.Argument(..., help=MODEL_HELP),
           path: Path = typer.Argument(..., help="Where to write the spec JSON."),
           input_size: Optional[int] = typer.Option(None, help="Square input size (default: the model's).")):
    """Write a spec to a JSON file (edit it, then use the file wherever a MODEL goes)."""
    spec = _load(model, input_size)
    spec.save(path)
    console.print(f"wrote {escape(str(path))}", highlight=False)


def _check_device(device: str) -> None:
    if device not in ("cpu", "gpu"):
        _fail(f"--device must be cpu or gpu, got {device!r}")


def _parse_frameworks(text: str) -> tuple[str, ...]:
    from netparity.backends import BACKEND_NAMES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown or not names:
        _fail(f"unknown framework(s) {', '.join(unknown) or text!r}; choose from {', '.join(BACKEND_NAMES)}")
    return names


@app.command()
def check(model: str = typer.Argument(..., help=MODEL_HELP),
          frameworks: str = typer.Option("torch,mxnet,keras", help="Comma-separated frameworks."),
          input_size: Optional[int] = typer.Option(None, help="Square input size (default: the model's)."),
          batch: int = typer.Option(2, min=1, help="Batch size of the random inputs."),
          seed: int = typer.Option(0, help="Seed of the canonical weights and inputs."),
          device: str = typer.Option("cpu", help="cpu or gpu."),
          rtol: float = typer.Option(1e-4, help="Relative tolerance: max|a-b| / max|b| per layer."),
          json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full result here."),
          weights: Optional[Path] = typer.Option(None, "--weights", help="Canonical weights (.npz, as `netparity "
                                                 "import` writes) instead of random ones from --seed.")):
    """Check shape, parameter and numerical parity of MODEL across frameworks (exit 0 only if all hold)."""
    from netparity.compare import check_parity
    from netparity.compare.summary import print_parity

    _check_device(device)
    spec = _load(model, input_size)
    given = None
    if weights is not None:
        from netparity.backends.importing import read_weights_file

        given = read_weights_file(weights, spec)  # WeightsFileError naming the key that does not fit
    result = check_parity(spec, _parse_frameworks(frameworks), batch=batch, seed=seed, device=device, rtol=rtol,
                          weights=given)
    print_parity(result, console)
    if json_path:
        write_atomic(json_path, result.to_json() + "\n")
        console.print(f"result written to {escape(str(json_path))}", highlight=False)
    raise typer.Exit(0 if result.ok else 1)


# -- training -------------------------------------------------------------------------

def _train_settings(model, frameworks, epochs, batch_size, lr, momentum, weight_decay, resize, train_limit,
                    test_limit, seed, seeds, device, lockstep, data_dir, dataset, resume, progress):
    from netparity.compare.training import TrainSettings

    _known_model(model)
    _check_device(device)
    return TrainSettings.for_model(
        model, frameworks=_parse_frameworks(frameworks), epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, weight_decay=weight_decay, resize=resize, train_limit=train_limit,
        test_limit=test_limit, seed=seed, seeds=seeds, device=device, lockstep=lockstep,
        data_dir=str(data_dir) if data_dir else None, dataset=dataset, resume=resume, progress=progress)


def _run_dir(out: Optional[Path], model: str, resume: bool) -> Path:
    run_dir = out or Path("runs") / Path(model).stem
    if (run_dir / "run.json").exists() and not resume:
        _fail(f"{run_dir} already holds a run; continue it with --resume, or choose another --out")
    if resume and not (run_dir / "run.json").exists():
        _fail(f"--resume: {run_dir} holds no run (no run.json)")
    return run_dir


def _train_and_report(settings, run_dir: Path, parity: Optional[dict]):
    from netparity.compare.report import write_report
    from netparity.compare.training import command_line, train

    results = train(settings, run_dir, parity=parity, command=command_line())  # bad data: DataError
    for name, framework in results["frameworks"].items():
        for run in framework["runs"]:
            final = run["epochs"][-1] if run["epochs"] else {}
            line = f"{name} seed {run['seed']}: {run['status']}"
            if final:
                line += f", test acc {final['test_acc']:.4f} after {final['epoch']} epoch(s)"
            if run.get("error"):
                line += f" ({run['error']})"
            console.print(line, markup=False, highlight=False)
    html, markdown = write_report(run_dir)
    console.print(f"report: {html}\nsummary: {markdown}", markup=False, highlight=False)
    failed = any(run["status"] != "done" for fw in results["frameworks"].values() for run in fw["runs"])
    return 1 if failed else 0


FRAMEWORKS_OPTION = typer.Option("torch,mxnet,keras", help="Comma-separated frameworks.")


def _parity_before_training(settings):
    """The parity check of the spec at the training input size, printed; its result for the report."""
    from netparity.compare import check_parity
    from netparity.compare.summary import print_parity
    from netparity.compare.training import build_spec

    try:
        spec = build_spec(settings)
    except SpecError as error:
        _fail(f"invalid spec {settings.model!r}: {error}")
    parity = check_parity(spec, settings.frameworks, device=settings.device)
    print_parity(parity, console)
    return parity


@app.command()
def train(model: str = typer.Argument(..., help=MODEL_HELP),
          frameworks: str = FRAMEWORKS_OPTION,
          epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (recipe default: 10)."),
          batch_size: Optional[int] = typer.Option(None, min=1, help="Minibatch size (recipe default)."),
          lr: Optional[float] = typer.Option(None, help="Learning rate (recipe default)."),
          momentum: Optional[float] = typer.Option(None, help="SGD momentum, PyTorch's meaning."),
          weight_decay: Optional[float] = typer.Option(None, help="L2 weight decay added to the gradient."),
          resize: Optional[int] = typer.Option(None, help="Image size fed to the net (recipe: 28, 96 or 224)."),
          train_limit: Optional[int] = typer.Option(None, min=1, help="Train on a deterministic subset."),
          test_limit: Optional[int] = typer.Option(None, min=1, help="Test on a deterministic subset."),
          seed: int = typer.Option(0, help="First seed (weights, shuffling, dropout masks)."),
          seeds: int = typer.Option(1, min=1, help="Number of seeds, for seed-to-seed spread."),
          device: str = typer.Option("cpu", help="cpu or gpu."),
          lockstep: bool = typer.Option(False, help="Feed the same NumPy dropout masks to every framework."),
          dataset: Optional[str] = typer.Option(None, help="fashion-mnist, mnist or synthetic (recipe default)."),
          data_dir: Optional[Path] = typer.Option(None, help="Folder with the four IDX files."),
          out: Optional[Path] = typer.Option(None, help="Run folder (default runs/MODEL)."),
          resume: bool = typer.Option(False, help="Continue the run in --out from its last finished epoch."),
          parity: bool = typer.Option(True, help="Check parity first and put it in the report."),
          progress: bool = typer.Option(True, help="Show progress bars.")):
    """Train MODEL with the same weights, data and hyperparameters in each framework; write the run folder."""
    settings = _train_settings(model, frameworks, epochs, batch_size, lr, momentum, weight_decay, resize,
                               train_limit, test_limit, seed, seeds, device, lockstep, data_dir, dataset, resume,
                               progress)
    run_dir = _run_dir(out, model, resume)
    result = _parity_before_training(settings) if parity and not resume else None
    raise typer.Exit(_train_and_report(settings, run_dir, parity=result.to_dict() if result else None))


@app.command()
def compare(model: str = typer.Argument("lenet_bn", help=MODEL_HELP),
            frameworks: str = FRAMEWORKS_OPTION,
            # One epoch of the full set: with d2l's lr 1.0 lenet_bn needs a few hundred steps before its
            # BatchNorm running statistics settle (2 epochs of 10,000 images left eval accuracy at 38-65%).
            epochs: int = typer.Option(1, min=1, help="Epochs of the short training run."),
            train_limit: Optional[int] = typer.Option(None, min=1, help="Training subset (default: all)."),
            test_limit: Optional[int] = typer.Option(None, min=1, help="Test subset (default: all)."),
            batch_size: Optional[int] = typer.Option(None, min=1, help="Minibatch size (recipe default)."),
            lr: Optional[float] = typer.Option(None, help="Learning rate (recipe default)."),
            resize: Optional[int] = typer.Option(None, help="Image size (recipe default)."),
            seed: int = typer.Option(0, help="First seed."),
            seeds: int = typer.Option(3, min=1, help="Seeds: the report compares the frameworks' gaps with "
                                                     "each framework's seed-to-seed spread."),
            device: str = typer.Option("cpu", help="cpu or gpu."),
            lockstep: bool = typer.Option(False, help="Same dropout masks in every framework."),
            dataset: Optional[str] = typer.Option(None, help="fashion-mnist, mnist or synthetic."),
            data_dir: Optional[Path] = typer.Option(None, help="Folder with the four IDX files."),
            out: Optional[Path] = typer.Option(None, help="Run folder (default runs/MODEL)."),
            resume: bool = typer.Option(False, help="Continue the run in --out."),
            progress: bool = typer.Option(True, help="Show progress bars.")):
    """The main job: parity check, a short training run in every framework, and the report."""
    settings = _train_settings(model, frameworks, epochs, batch_size, lr, None, None, resize, train_limit,
                               test_limit, seed, seeds, device, lockstep, data_dir, dataset, resume, progress)
    run_dir = _run_dir(out, model, resume)
    parity = _parity_before_training(settings)
    code = _train_and_report(settings, run_dir, parity=parity.to_dict())
    raise typer.Exit(code or (0 if parity.ok else 1))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run folder written by train or compare.")):
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/report.md from RUN_DIR/results.json."""
    from netparity.compare.report import write_report

    try:
        html, markdown = write_report(run_dir)  # a missing or broken results.json: ResultsError
    except OSError as error:  # the folder cannot be written
        _fail(f"report of {run_dir}: {error}")
    console.print(f"report: {html}\nsummary: {markdown}", markup=False, highlight=False)


@app.command()
def verify(reference: str = typer.Argument(..., help="Zoo name, spec JSON, or module.py:factory returning a "
                                                     "native model (PyTorch, Gluon or Keras)."),
           candidate: str = typer.Argument(..., help="module.py:factory returning your native port (or a zoo "
                                                     "name / spec JSON)."),
           input_size: Optional[int] = typer.Option(None, help="Square input size (default: the spec's or "
                                                               "the Keras model's)."),
           framework: Optional[str] = typer.Option(None, help="Framework to build a spec reference in "
                                                             "(default: the candidate's)."),
           eval_only: bool = typer.Option(False, "--eval-only", help="Skip the training-mode comparison (one "
                                                                     "training-mode forward and BatchNorm's running "
                                                                     "statistics after it)."),
           training_step: bool = typer.Option(False, "--training-step", hidden=True,
                                              help="Accepted for old scripts; the training-mode comparison is the "
                                                   "default now."),
           json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full report here.")):
    """Check a hand-written port: align its layers with the reference, copy the weights, compare every
    layer on random and adversarial inputs and in training mode, and diagnose the first difference (exit 0
    only if equivalent)."""
    from netparity.compare.port import verify_command

    raise typer.Exit(verify_command(reference, candidate, input_size=input_size, json_path=json_path,
                                    framework=framework, eval_only=eval_only))


@app.command("import")
def import_command(
        source: str = typer.Argument(..., help="torchvision:NAME, keras.applications:NAME, FILE.keras, "
                                               "FILE.py:FACTORY (returning a PyTorch nn.Module, a Keras model or a "
                                               "Gluon HybridBlock) or PREFIX-symbol.json (an MXNet checkpoint; "
                                               "weights from --params)."),
        out: Path = typer.Option(..., "-o", "--out", help="Where to write the spec JSON."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Where to write the canonical weights "
                                                                       "(.npz; default: beside the spec, .npz)."),
        params: Optional[Path] = typer.Option(None, "--params", help="The checkpoint's weights, PREFIX-0000.params "
                                                                     "(default: the one beside the symbol file)."),
        input_size: Optional[str] = typer.Option(None, help="Square input size N, or C,H,W (default: the "
                                                            "source's own, where it states one)."),
        output: Optional[str] = typer.Option(None, help="The source's internal output to keep, e.g. fc1_output "
                                                        "(the embedding of a face model)."),
        name: Optional[str] = typer.Option(None, help="The spec's name (default: from the source).")):
    """Import a model from another framework into a spec and canonical weights. Before writing, the
    spec built in PyTorch (else Keras) with those weights must reproduce the source's own output (max
    relative error 1e-5 on random and adversarial inputs); exit 1, naming the first differing layer, if
    not. Without the source framework, says so and checks the build against the NumPy reference."""
    from netparity.backends.importing import (default_weights_path, import_source, self_check, summary_lines,
                                              write_imported)

    imported = import_source(source, params=params, input_size=_import_size(input_size), output=output, name=name)
    check = self_check(imported)
    for line in summary_lines(imported, check):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not check.ok:
        _fail(f"import self-check failed at {check.first_layer or 'the output'}: nothing written", code=1)
    weights_path = weights or default_weights_path(out)
    write_imported(imported, out, weights_path)
    console.print(f"wrote {out} and {weights_path}", markup=False, highlight=False, soft_wrap=True)


def _import_size(text: Optional[str]):
    """``--input-size`` of import: N or C,H,W."""
    if text is None:
        return None
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    if len(parts) in (1, 3) and all(part.isdigit() and int(part) > 0 for part in parts):
        return int(parts[0]) if len(parts) == 1 else tuple(int(part) for part in parts)
    _fail(f"--input-size must be a positive integer N or C,H,W, got {text!r}")


@app.command()
def emit(model: str = typer.Argument(..., help=MODEL_HELP),
         framework: str = typer.Option(..., "--framework", help="torch, mxnet or keras."),
         out: Optional[Path] = typer.Option(None, "-o", "--out", help="Where to write the source (default: print it)."),
         weights: Optional[Path] = typer.Option(None, "--weights", help="Canonical weights (.npz, as `netparity "
                                                "import` writes) to write in the framework's own format too."),
         canonical_weights: Optional[int] = typer.Option(None, "--canonical-weights", help="Or netparity's canonical "
                                                         "weights drawn from this seed."),
         weights_out: Optional[Path] = typer.Option(None, "--weights-out", help="Where to write them (default: beside "
                                                    "the source: model.pt, model.params, model.weights.h5)."),
         input_size: Optional[int] = typer.Option(None, help="Square input size (default: the model's).")):
    """Write MODEL as readable standalone source in one framework (classes or functions per repeated block,
    importing only that framework), and with --weights or --canonical-weights its weights in that framework's
    own file format."""
    from netparity.backends.emit import EMITTERS, emit_files

    if framework not in EMITTERS:
        _fail(f"--framework must be one of {', '.join(EMITTERS)}, got {framework!r}")
    if weights is not None and canonical_weights is not None:
        _fail("give --weights or --canonical-weights, not both")
    spec = _load(model, input_size)
    given = None
    if weights is not None:
        from netparity.backends.importing import read_weights_file

        given = read_weights_file(weights, spec)  # WeightsFileError naming the key that does not fit
    elif canonical_weights is not None:
        from netparity.spec import init_weights

        given = init_weights(spec, canonical_weights)
    elif weights_out is not None:
        _fail("--weights-out needs --weights or --canonical-weights")
    source, said = emit_files(spec, framework, out, given, weights_out)
    if out is None:
        print(source, end="")
    for line in said:
        (console if out is not None else errors).print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def convert(source: str = typer.Argument(..., help="What `netparity import` takes: torchvision:NAME, "
                                                   "keras.applications:NAME, FILE.py:FACTORY, FILE.keras, or an "
                                                   "MXNet PREFIX-symbol.json."),
            to: str = typer.Option(..., "--to", help="torch, mxnet or keras."),
            out: Path = typer.Option(..., "--out", help="Folder for model.py, the weights, spec.json, parity.json, "
                                                        "README.md."),
            params: Optional[Path] = typer.Option(None, "--params", help="An MXNet checkpoint's PREFIX-0000.params."),
            input_size: Optional[str] = typer.Option(None, help="Square input size N, or C,H,W."),
            output: Optional[str] = typer.Option(None, help="The source's internal output to keep."),
            name: Optional[str] = typer.Option(None, help="The spec's name (default: from the source).")):
    """Import SOURCE, write it as standalone source in another framework with its weights in that framework's
    format, and verify the pair in a fresh process against the source's outputs and with verify_port (exit 1,
    saying where, if they differ)."""
    from netparity.backends.emit import EMITTERS
    from netparity.backends.emit.convert import convert as run_convert

    if to not in EMITTERS:
        _fail(f"--to must be one of {', '.join(EMITTERS)}, got {to!r}")
    record = run_convert(source, to, out, params=params, input_size=_import_size(input_size), output=output,
                         name=name, progress=lambda line: console.print(line, markup=False, highlight=False,
                                                                        soft_wrap=True))
    if not record["ok"]:
        _fail(f"convert: {record.get('detail') or record.get('error') or 'the emitted model differs'}", code=1)
    console.print(f"verified: outputs within {record['rtol']:g} of {record['compared_with']} (max "
                  f"{record['worst']:.1e}); verify_port: {record['verify_port']}; wrote {out}/README.md and "
                  f"{out}/parity.json", markup=False, highlight=False, soft_wrap=True)


@app.command()
def bench(models: Optional[list[str]] = typer.Argument(
              None, help="Zoo names or spec JSON files, each optionally with its own square input size "
                         "(alexnet:64); 'zoo' for every zoo model at its default size."),
          frameworks: str = typer.Option("torch,mxnet,keras", help="Comma-separated frameworks or variants "
                                                                   "(e.g. mxnet[hybrid], torch[bf16])."),
          mode: str = typer.Option("both", help="train, infer or both."),
          batch_size: int = typer.Option(32, min=1, help="Batch size of the fixed in-memory batch."),
          input_size: Optional[int] = typer.Option(None, help="Square input size for models given without one "
                                                             "(default: each model's own)."),
          steps: int = typer.Option(20, min=1, help="Timed steps per measurement."),
          warmup: int = typer.Option(5, min=0, help="Untimed steps first."),
          repeats: int = typer.Option(3, min=1, help="Measurements per variant, interleaved A B C A B C."),
          device: str = typer.Option("cpu", help="cpu or gpu."),
          fast_modes: bool = typer.Option(True, help="Also each framework's fast modes (torch channels_last "
                                                     "and compile, mxnet hybridized, keras XLA and on torch/jax), "
                                                     "mixed precision on the GPU, and the hand-written reference "
                                                     "models where there is one (lenet_bn, resnet18)."),
          measure_ceiling: bool = typer.Option(False, "--ceiling", help="Measure the device's matmul ceiling "
                                               "again now (it is cached after the first measurement); "
                                               "with no MODEL, only that."),
          out: Path = typer.Option(Path("runs/bench"), help="Folder for bench.json and the report (one "
                                                             "sub-folder per model when there are several).")):
    """Time training and inference steps of MODEL in each framework, each in its own process, one at a
    time; report images/s, step ms (median, p90), GFLOP/s against the device's matmul ceiling, peak memory,
    as a table, bench.json and a report (bench.html, bench.md, bench.png)."""
    from netparity.compare.bench import bench_command, bench_models, ceiling_entry

    _check_device(device)
    if measure_ceiling:
        try:
            entry = ceiling_entry(device=device, refresh=True)
        except RuntimeError as error:
            _fail(str(error), code=1)
        bf16 = f", bfloat16 {entry['bf16_gflops']:.1f}" if entry.get("bf16_gflops") else ""
        console.print(f"{device} ceiling: float32 {entry['gflops']:.1f} GFLOP/s{bf16} "
                      f"(load average before: {entry['load_before'][0]:.2f}; cached)", markup=False)
    if not models:
        if not measure_ceiling:
            _fail("give a MODEL to benchmark (see `netparity list`), or --ceiling")
        return
    names = tuple(n.strip() for n in frameworks.split(",") if n.strip())
    jobs = parse_bench_models(models, input_size)
    for model, _ in jobs:
        _known_model(model)
    # bad options: BenchError; a bad spec file: SpecError
    if len(jobs) == 1:
        (model, size), = jobs
        bench_command(model, names, mode, batch_size, size, steps, warmup, repeats, device, out, console,
                      fast=fast_modes)
    else:
        bench_models(jobs, names, mode, batch_size, steps, warmup, repeats, device, out, console, fast=fast_modes)


def parse_bench_models(models: list[str], input_size: Optional[int]) -> list[tuple[str, Optional[int]]]:
    """``["lenet_bn", "alexnet:64"]`` -> ``[("lenet_bn", input_size), ("alexnet", 64)]``;
    ``zoo`` stands for every zoo model. A size that is not a positive integer: BenchError."""
    from netparity.compare.bench import BenchError

    jobs = []
    for item in models:
        if item == "zoo":
            jobs += [(name, input_size) for name in zoo.names()]
            continue
        name, _, size = item.rpartition(":") if ":" in item and not item.endswith(".json") else (item, "", "")
        if size and not (size.isdigit() and int(size) > 0):
            raise BenchError(f"{item!r}: the size after ':' must be a positive integer")
        jobs.append((name, int(size) if size else input_size))
    return jobs


def main() -> None:
    """The console script and ``python -m netparity.cli``."""
    app(prog_name="netparity")


if __name__ == "__main__":
    main()
