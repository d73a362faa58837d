"""Terminal summaries of comparison results (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .parity import ParityResult


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[bold red]FAIL[/]"


def print_parity(result: ParityResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{result.model}[/]  input {'x'.join(map(str, result.input_shape))}, batch "
                  f"{result.batch}, seed {result.seed}, device {result.device}, rtol {result.rtol:g}")
    runs = Table("framework", "version", "trainable", "running stats", "seconds", title="frameworks")
    for run in result.runs:
        runs.add_row(run.framework, run.version, f"{run.trainable:,}", f"{run.running_stats:,}", f"{run.seconds:.2f}")
    runs.add_row("spec", "", f"{result.spec_parameters:,}", f"{result.spec_running_stats:,}", "")
    console.print(runs)
    for name, why in result.skipped.items():
        console.print(f"[yellow]skipped {name}:[/] {why}", highlight=False)
    for name, why in result.errors.items():
        console.print(f"[bold red]{name} failed:[/] {why}", highlight=False)

    console.print(f"shape parity:     {_mark(result.shape_parity)}")
    for m in result.shape_mismatches[:10]:
        console.print(f"  {m.framework} {m.path}: expected {m.expected}, got {m.got}")
    console.print(f"parameter parity: {_mark(result.parameter_parity)}")
    for m in result.count_mismatches[:10]:
        console.print(f"  {m.framework} {m.path}: expected [trainable, running] {m.expected}, got {m.got}")

    if result.pairs:
        pairs = Table("pair", "output max abs", "output rel", "input-grad rel", "worst layer (rel)",
                      "first divergence", "", title="numerical parity")
        for p in result.pairs:
            pairs.add_row(f"{p.a} vs {p.b}", f"{p.output_max_abs:.2e}", f"{p.output_max_rel:.2e}",
                          f"{p.gradient_max_rel:.2e}", f"{p.worst_layer} ({p.worst_layer_rel:.1e})",
                          f"{p.first_divergence} ({p.first_divergence_rel:.1e})" if p.first_divergence else "-",
                          _mark(p.ok))
        console.print(pairs)
        for p in result.pairs:
            if p.note:
                console.print(f"  {p.a} vs {p.b}: {p.note}", highlight=False)
    elif len(result.runs) < 2:
        console.print("[yellow]numerical parity: fewer than two frameworks ran; nothing to compare[/]")
    console.print(f"[bold]parity: {_mark(result.ok)}")
