"""The ``netparity`` command line (typer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from netparity.spec import Spec, SpecError, load, show_shape, zoo
from netparity.spec.files import write_atomic

app = typer.Typer(help="Write a CNN once, as data; build it in PyTorch, MXNet Gluon and Keras 3; "
                       "prove the three are the same function.",
                  no_args_is_help=True, add_completion=False)
console = Console()
MODEL_HELP = "A zoo name (see `netparity list`) or a spec JSON file."


def _fail(message: str, code: int = 2):
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _load(model: str, input_size: Optional[int] = None) -> Spec:
    try:
        spec = load(model)
        spec = spec.with_input(size=input_size) if input_size else spec
        spec.infer()
        return spec
    except SpecError as error:
        _fail(f"invalid spec {model!r}: {error}")
    except KeyError as error:
        _fail(error.args[0])


@app.command("list")
def list_models():
    """List the zoo: name, default input, parameters, summary."""
    table = Table("name", "input", "parameters", "summary", title="netparity zoo")
    for name in zoo.names():
        spec = zoo.get(name)
        table.add_row(name, show_shape(spec.input_shape), f"{spec.infer().parameters:,}", zoo.entry(name).summary)
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
                  title=f"{spec.name}: input {show_shape(inference.input_shape)}")
    for row in inference.rows:
        if all_layers or row.depth <= depth:
            indent = "  " * row.depth
            table.add_row(indent + row.path, row.layer.name, row.layer.describe(), show_shape(row.output_shape),
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
    console.print(f"wrote {path}")


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
          json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full result here.")):
    """Check shape, parameter and numerical parity of MODEL across frameworks (exit 0 only if all hold)."""
    from netparity.compare import check_parity
    from netparity.compare.summary import print_parity

    spec = _load(model, input_size)
    result = check_parity(spec, _parse_frameworks(frameworks), batch=batch, seed=seed, device=device, rtol=rtol)
    print_parity(result, console)
    if json_path:
        write_atomic(json_path, result.to_json() + "\n")
        console.print(f"result written to {json_path}")
    raise typer.Exit(0 if result.ok else 1)


def main():  # pragma: no cover - the console script calls app directly
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
