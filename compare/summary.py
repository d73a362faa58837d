"""Terminal summaries of comparison results (rich tables).

Everything that comes from a spec, a framework or an error message is escaped: rich would
read ``[mxnet]`` in an install hint, or a layer named ``[b]``, as markup and drop it."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .parity import ParityResult


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[bold red]FAIL[/]"


def _not_compared(result: ParityResult) -> str:
    """Why there is no pair to compare."""
    if not result.frameworks:  # the NumPy reference alone is not a comparison either
        return "no framework ran"
    return f"only {escape(result.frameworks[0])} ran; nothing to compare it with"


def _verdict(result: ParityResult) -> str:
    """ok only when at least one pair was compared: a check that compared nothing says so."""
    if not result.pairs and result.shape_parity and result.parameter_parity:
        return "[bold yellow]not checked[/] (no numerical comparison)"
    return _mark(result.ok)


def print_parity(result: ParityResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{escape(result.model)}[/]  input {'x'.join(map(str, result.input_shape))}, batch "
                  f"{result.batch}, seed {result.seed}, device {escape(result.device)}, rtol {result.rtol:g}")
    runs = Table("framework", "version", "trainable", "running stats", "seconds", title="frameworks")
    for run in result.runs:
        runs.add_row(escape(run.framework), escape(run.version), f"{run.trainable:,}", f"{run.running_stats:,}",
                     f"{run.seconds:.2f}")
    runs.add_row("spec", "", f"{result.spec_parameters:,}", f"{result.spec_running_stats:,}", "")
    console.print(runs)
    for name, why in result.skipped.items():
        console.print(f"[yellow]skipped {escape(name)}:[/] {escape(why)}", highlight=False, soft_wrap=True)
    for name, why in result.errors.items():
        console.print(f"[bold red]{escape(name)} failed:[/] {escape(why)}", highlight=False, soft_wrap=True)

    console.print(f"shape parity:     {_mark(result.shape_parity)}")
    for m in result.shape_mismatches[:10]:
        console.print(escape(f"  {m.framework} {m.path}: expected {m.expected}, got {m.got}"))
    console.print(f"parameter parity: {_mark(result.parameter_parity)}")
    for m in result.count_mismatches[:10]:
        console.print(escape(f"  {m.framework} {m.path}: expected [trainable, running] {m.expected}, got {m.got}"))

    if result.pairs:
        pairs = Table("pair", "output abs", "output rel", "grad rel", "worst layer (rel)", "diverges from",
                      "", title="numerical parity (output: max |a-b|, max |a-b| / max |b|; grad: the input gradient)")
        for p in result.pairs:
            pairs.add_row(escape(f"{p.a} vs {p.b}"), f"{p.output_max_abs:.2e}", f"{p.output_max_rel:.2e}",
                          f"{p.gradient_max_rel:.2e}", escape(f"{p.worst_layer} ({p.worst_layer_rel:.1e})"),
                          escape(f"{p.first_divergence} ({p.first_divergence_rel:.1e})") if p.first_divergence
                          else "-", _mark(p.ok))
        for index in (0, 4, 5):  # long spec paths fold onto the next line instead of being cut off
            pairs.columns[index].overflow = "fold"
        console.print(pairs)
        for p in result.pairs:
            if p.note:
                console.print(escape(f"  {p.a} vs {p.b}: {p.note}"), highlight=False)
    else:
        console.print(f"numerical parity: [yellow]not checked[/] ({_not_compared(result)})")
    console.print(f"[bold]parity: {_verdict(result)}")
