"""The benchmark report: FOLDER/bench.json -> bench.html, bench.md and the chart bench.png.

Rendered like the training report (compare/report.py): one list of blocks becomes a
self-contained HTML page (the chart as a data URI, inline CSS, no script) and the
same content in Markdown with the PNG beside it. ``zoo_summary`` turns several
bench.json files into one Markdown table for docs/performance.md.

Numbers: images/s is the batch size over the median step time (all timed steps of all
repeats); the spread is the range of the per-repeat medians, the measure of how much a
number moves between repeats. A fast mode or the hand-written network is faster than
the plain variant in a way that counts only when the difference is larger than that
spread.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from ..spec.files import write_atomic
from . import plots
from .bench import FORMAT as BENCH_FORMAT
from .bench import BenchError  # raised here for a bad bench.json
from .report import (Block, Mark, Table, _fmt, _plain, _table_md, _when, read_format, render_markdown_page,
                     render_page)

HANDWRITTEN = "handwritten"
# The network compiled from the spec should run at least this fraction of the speed of
# the same network written by hand.
HANDWRITTEN_TOLERANCE = 0.97
FAIL_COLOUR = "#c4221b"  # the report's --fail
FIGURE_NAME = "images per second of each variant"
MODE_NAMES = {"train": "training (train)", "infer": "inference (infer)"}


# --- reading --------------------------------------------------------------------------------------------------


def load_bench(path: Path | str) -> dict:
    """A bench.json (or a folder holding one), checked enough that a report can be made.

    Raises BenchError naming the file when it is missing, not JSON, or not a
    ``netparity.bench/1`` result."""
    path = Path(path)
    if path.is_dir():
        path = path / "bench.json"
    bench = read_format(path, BENCH_FORMAT, BenchError,
                        f"netparity bench writes it; is {path.parent} a bench folder?")
    if not isinstance(bench.get("settings"), dict):
        raise BenchError(f"{path}: 'settings' is missing or not an object")
    if not isinstance(bench.get("results"), list):
        raise BenchError(f"{path}: 'results' is missing or not a list")
    for index, entry in enumerate(bench["results"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("variant", "mode", "status")):
            raise BenchError(f"{path}: results[{index}] has no variant, mode and status")
    return bench


# --- the numbers ----------------------------------------------------------------------------------------------


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _measured(entry: dict) -> bool:
    return entry.get("status") in ("ok", "partial") and _number(entry.get("images_per_s"))


def _framework(entry: dict) -> str:
    return entry.get("framework") or entry["variant"].split("[", 1)[0]


def _fast_mode(entry: dict) -> str:
    if entry.get("fast_mode"):
        return entry["fast_mode"]
    variant = entry["variant"]
    return variant[variant.index("[") + 1:].rstrip("]") if "[" in variant else "plain"


def _precision(entry: dict) -> str:
    return entry.get("precision") or "float32"


def _mixed_precision(results: list[dict]) -> bool:
    return any(_precision(e) != "float32" for e in results)


def _label(entry: dict) -> str:
    """The variant, with its precision when that is not float32."""
    return f"{entry['variant']} ({_precision(entry)})" if _precision(entry) != "float32" else entry["variant"]


def _repeat_range(entry: dict) -> tuple[float, float] | None:
    """(min, max) of the per-repeat median step ms."""
    medians = [m for m in entry.get("repeat_medians_ms") or [] if _number(m)]
    return (min(medians), max(medians)) if medians else None


def _relative_spread(entry: dict) -> float | None:
    """The range of the repeat medians over the median step time: how much the number moves between repeats."""
    span, median = _repeat_range(entry), entry.get("step_ms_median")
    if span is None or not _number(median) or median <= 0:
        return None
    return (span[1] - span[0]) / median


def _images_range(entry: dict, batch_size) -> tuple[float, float] | None:
    """The repeat medians as images/s (slowest repeat, fastest repeat)."""
    span = _repeat_range(entry)
    if span is None or not _number(batch_size) or span[0] <= 0:
        return None
    return batch_size / (span[1] / 1000.0), batch_size / (span[0] / 1000.0)


def _within_noise(a: dict, b: dict, ratio: float) -> bool | None:
    """Is the speed ratio of two entries within the larger of their spreads between repeats?"""
    spreads = [s for s in (_relative_spread(a), _relative_spread(b)) if s is not None]
    return abs(ratio - 1.0) <= max(spreads) if spreads else None


def _error_line(entry: dict, limit: int = 160) -> str:
    """The last line of the first failure's error: what went wrong, not the traceback's start."""
    failures = [f for f in entry.get("failures") or [] if isinstance(f, dict)]
    if not failures:
        return "no error recorded"
    lines = [line.strip() for line in str(failures[0].get("error", "")).splitlines() if line.strip()]
    line = lines[-1] if lines else f"exit status {failures[0].get('returncode')}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _ordered(bench: dict) -> list[dict]:
    """Results by mode (the settings' order), then framework (first appearance), keeping each framework's order."""
    results = bench["results"]
    modes = list((bench.get("settings") or {}).get("modes") or [])
    for entry in results:
        if entry["mode"] not in modes:
            modes.append(entry["mode"])
    frameworks: list[str] = []
    for entry in results:
        if _framework(entry) not in frameworks:
            frameworks.append(_framework(entry))
    return sorted(results, key=lambda e: (modes.index(e["mode"]), frameworks.index(_framework(e))))


def _modes(bench: dict) -> list[str]:
    return list(dict.fromkeys(e["mode"] for e in _ordered(bench)))


def _ms(value) -> str:
    if not _number(value):
        return "—"
    return format(value, ".3f" if value < 1 else ".2f" if value < 100 else ".1f")


def _images(value) -> str:
    if not _number(value):
        return "—"
    return format(value, ",.0f" if value >= 100 else ".1f")


def _ratio(value) -> str:
    return _fmt(value, ".2f") + "×" if _number(value) else "—"


def _percent(fraction, spec: str = ".1f") -> str:
    return _fmt(fraction * 100, spec) + "%" if _number(fraction) else "—"


def _spread_cell(entry: dict) -> str:
    span, spread = _repeat_range(entry), _relative_spread(entry)
    if span is None:
        return "—"
    text = f"{_ms(span[0])}–{_ms(span[1])}"
    return f"{text} ({_percent(spread)})" if spread is not None else text


# --- the handwritten comparison -------------------------------------------------------------------------------


def _tolerance() -> str:
    """HANDWRITTEN_TOLERANCE as the slowdown it allows: '3%'."""
    return f"{round(100 - 100 * HANDWRITTEN_TOLERANCE, 6):g}%"


def handwritten_pairs(bench: dict) -> list[dict]:
    """Per framework, mode and precision with an ``X[handwritten]`` row: the plain ``X`` row against it.

    Each pair: framework, mode, precision, spec (the plain entry or None), handwritten (the
    entry), ratio (images/s of spec / images/s of handwritten, None when either did not
    run), ok (ratio >= HANDWRITTEN_TOLERANCE, None without a ratio) and within_noise."""
    pairs = []
    results = _ordered(bench)
    for hand in results:
        if _fast_mode(hand) != HANDWRITTEN:
            continue
        framework, mode, precision = _framework(hand), hand["mode"], _precision(hand)
        spec = next((e for e in results if _framework(e) == framework and _fast_mode(e) == "plain"
                     and e["mode"] == mode and _precision(e) == precision), None)
        ratio = ok = noise = None
        if spec is not None and _measured(spec) and _measured(hand) and hand["images_per_s"] > 0:
            ratio = spec["images_per_s"] / hand["images_per_s"]
            ok = ratio >= HANDWRITTEN_TOLERANCE
            noise = _within_noise(spec, hand, ratio)
        pairs.append({"framework": framework, "mode": mode, "precision": precision, "spec": spec,
                      "handwritten": hand, "ratio": ratio, "ok": ok, "within_noise": noise})
    return pairs


def emitted_pairs(bench: dict) -> list[dict]:
    """Per framework, mode and precision with an ``X[emitted]`` row: it against ``X[built]`` (the
    backend-built model under the same step functions: like for like), else against the plain ``X``
    row (whose step is the backend's own train_step/forward). Each pair: framework, mode, precision,
    emitted, built (the entry it is compared with, or None), ratio (images/s of emitted / images/s of
    built), ok (ratio >= HANDWRITTEN_TOLERANCE) and within_noise."""
    pairs = []
    results = _ordered(bench)
    for emitted in results:
        if _fast_mode(emitted) != "emitted":
            continue
        framework, mode, precision = _framework(emitted), emitted["mode"], _precision(emitted)
        same = [e for e in results if _framework(e) == framework and e["mode"] == mode and _precision(e) == precision]
        built = next((e for e in same if _fast_mode(e) == "built"), None) or \
            next((e for e in same if _fast_mode(e) == "plain"), None)
        ratio = ok = noise = None
        if built is not None and _measured(built) and _measured(emitted) and built["images_per_s"] > 0:
            ratio = emitted["images_per_s"] / built["images_per_s"]
            ok = ratio >= HANDWRITTEN_TOLERANCE
            noise = _within_noise(emitted, built, ratio)
        pairs.append({"framework": framework, "mode": mode, "precision": precision, "emitted": emitted,
                      "built": built, "ratio": ratio, "ok": ok, "within_noise": noise})
    return pairs


# --- the chart ------------------------------------------------------------------------------------------------


def plot_bench(bench: dict, path: Path) -> Path:
    """Write ``bench_figure`` as a PNG, atomically, to ``path``."""
    path = Path(path)
    plots._save_atomic(bench_figure(bench), path)
    return path


def bench_figure(bench: dict) -> Figure:
    """Horizontal bars of images/s per variant, one panel per mode, coloured by framework (hatched:
    hand-written), with whiskers from the slowest to the fastest repeat median; a failed variant
    has no bar and is named as failed on the axis, in red."""
    results = _ordered(bench)
    modes = _modes(bench) or ["train"]
    batch = (bench.get("settings") or {}).get("batch_size")
    per_mode = {mode: [e for e in results if e["mode"] == mode] for mode in modes}
    height = sum(0.9 + 0.3 * max(len(rows), 1) for rows in per_mode.values()) + 0.5
    figure = Figure(figsize=(7.6, height), layout="constrained")
    axes = figure.subplots(len(modes), 1, squeeze=False,
                           gridspec_kw={"height_ratios": [max(len(r), 1) + 2 for r in per_mode.values()]})[:, 0]
    hatched = False
    for ax, mode in zip(axes, modes, strict=True):
        rows = per_mode[mode]
        ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(labelsize=9)
        ends = []
        for y, entry in enumerate(rows):
            if not _measured(entry):
                continue
            colour = plots.style(_framework(entry))[0]
            value = entry["images_per_s"]
            hand = _fast_mode(entry) == HANDWRITTEN
            hatched |= hand
            ax.barh(y, value, height=0.66, color=colour, alpha=0.55 if hand else 0.9, edgecolor=colour,
                    hatch="////" if hand else None, linewidth=0.8)
            span = _images_range(entry, batch)
            end = value
            if span is not None:
                low, high = min(span[0], value), max(span[1], value)
                ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="#222222", linewidth=1.0,
                            capsize=3, capthick=1.0)
                end = high
            ends.append((y, end, value))
        right = max((end for _, end, _ in ends), default=1.0) * 1.22
        for y, end, value in ends:
            ax.text(end + right * 0.012, y, _images(value), va="center", ha="left", fontsize=8, color="#333333")
        labels = []
        for y, entry in enumerate(rows):
            label = _label(entry)
            if entry["status"] == "failed" or not _measured(entry):
                label += "  ✗ failed"
                ax.text(right * 0.01, y, "failed: " + _error_line(entry, 60), va="center", ha="left", fontsize=7.5,
                        color=FAIL_COLOUR)
            elif entry["status"] == "partial":
                label += " (partial)"
            labels.append(label)
        ax.set_yticks(range(len(rows)), labels)
        for tick, entry in zip(ax.get_yticklabels(), rows, strict=True):
            if entry["status"] == "failed" or not _measured(entry):
                tick.set_color(FAIL_COLOUR)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first variant on top, as in the table
        ax.set_xlim(0, right)
        ax.set_title(f"{mode}: images/s (higher is better)", fontsize=10.5, loc="left")
        if not rows:
            ax.text(0.5, 0.5, "nothing measured", transform=ax.transAxes, ha="center", va="center",
                    color="#666666", fontsize=9)
    axes[-1].set_xlabel("images per second; whiskers: slowest to fastest repeat median", fontsize=9)
    frameworks = list(dict.fromkeys(_framework(e) for e in results))
    handles = [_patch(plots.style(f)[0], f) for f in frameworks]
    if hatched:
        handles.append(_patch("#999999", "hand-written", hatch="////"))
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    settings = bench.get("settings") or {}
    figure.suptitle(f"{bench.get('model', '?')}: {_shape(settings.get('input_shape'))}, batch "
                    f"{settings.get('batch_size', '?')}, {settings.get('device', '?')}", fontsize=11)
    return figure


def _patch(colour: str, label: str, hatch: str | None = None):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor=colour, alpha=0.55 if hatch else 0.9, hatch=hatch, label=label)


def _count(value, word: str) -> str:
    return f"{value} {word}{'' if value == 1 else 's'}" if isinstance(value, int) else f"? {word}s"


def _shape(shape) -> str:
    return "×".join(map(str, shape)) if isinstance(shape, list) and shape else "?"


# --- the sections ---------------------------------------------------------------------------------------------


def build_blocks(bench: dict, figure: Path | None) -> list[Block]:
    blocks = [Block("paragraph", _context_line(bench), note="small")]
    blocks += _glance_section(bench)
    blocks += _results_section(bench)
    if figure is not None:
        blocks += [Block("heading", "Chart", anchor="chart"), Block("figures", [(FIGURE_NAME, figure)])]
    blocks += _handwritten_section(bench)
    blocks += _failures_section(bench)
    blocks += _method_section(bench)
    blocks += _settings_section(bench)
    return blocks


def _title(bench: dict) -> str:
    return f"{bench.get('model', '?')}: speed of each framework"


def _subtitle(bench: dict) -> str:
    s = bench.get("settings") or {}
    warmup = f" (+{s['warmup']} warmup)" if isinstance(s.get("warmup"), int) else ""
    parts = [f"input {_shape(s.get('input_shape'))}", f"batch {s.get('batch_size', '?')}", str(s.get("device", "?")),
             f"{s.get('steps', '?')} steps{warmup} × {s.get('repeats', '?')} repeats", _when(bench.get("date"))]
    return " — ".join(parts)


def _machine_text(machine: dict) -> str:
    parts = [str(machine.get("processor") or "?")]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("OMP_NUM_THREADS"):
        parts.append(f"OMP_NUM_THREADS={machine['OMP_NUM_THREADS']}")
    gpu = machine.get("gpu")
    if isinstance(gpu, dict) and gpu.get("name"):
        parts.append(f"GPU {gpu['name']}" + (f" (driver {gpu['driver']})" if gpu.get("driver") else ""))
    elif isinstance(gpu, str):
        parts.append(f"GPU {gpu}")
    return ", ".join(parts)


def _ceiling_text(bench: dict) -> str:
    ceiling = bench.get("ceiling")
    if isinstance(ceiling, dict) and _number(ceiling.get("gflops")):
        return f"{ceiling['gflops']:.1f} GFLOP/s ({ceiling.get('what', '?')})"
    return "none measured"


def _versions(bench: dict) -> list[tuple[str, str, list[str]]]:
    """(package, version, the variants that ran it): a framework's version from its results, since one
    framework can run on several (keras on TensorFlow and on torch); the rest from bench.json's versions."""
    rows, seen = [], set()
    for name, version in (bench.get("versions") or {}).items():
        entries = [e for e in bench["results"] if _framework(e) == name and e.get("version")]
        if not entries:
            rows.append((name, str(version), []))
            continue
        for value in dict.fromkeys(str(e["version"]) for e in entries):
            variants = list(dict.fromkeys(e["variant"] for e in entries if str(e["version"]) == value))
            rows.append((name, value, variants))
        seen.add(name)
    for entry in bench["results"]:  # a framework missing from "versions"
        name = _framework(entry)
        if name not in seen and entry.get("version") and not any(r[0] == name for r in rows):
            versions = list(dict.fromkeys(str(e["version"]) for e in bench["results"]
                                          if _framework(e) == name and e.get("version")))
            rows += [(name, v, [e["variant"] for e in bench["results"]
                                if _framework(e) == name and str(e.get("version")) == v]) for v in versions]
    return rows


def _context_line(bench: dict) -> list:
    shown = ", ".join(f"{name} {version}" for name, version, _ in _versions(bench) if name != "netparity")
    return [f"Versions: {shown or '—'}. Machine: {_machine_text(bench.get('machine') or {})}. "
            f"Ceiling: {_ceiling_text(bench)}."]


def _glance_section(bench: dict) -> list[Block]:
    results = _ordered(bench)
    parts: list = []
    for mode in _modes(bench):
        ranked = sorted((e for e in results if e["mode"] == mode and _measured(e)),
                        key=lambda e: e["images_per_s"], reverse=True)
        if not ranked:
            parts.append(Mark(f"{mode}: nothing ran.", False))
            parts.append(" ")
            continue
        best = ranked[0]
        text = f"Fastest in {mode}: {_label(best)}, {_images(best['images_per_s'])} images/s"
        if len(ranked) > 1:
            runner_up = ranked[1]
            ratio = best["images_per_s"] / runner_up["images_per_s"] if runner_up["images_per_s"] > 0 else None
            noise = ": within the spread between repeats" if ratio and _within_noise(best, runner_up, ratio) else ""
            text += f", {_ratio(ratio)} the next, {_label(runner_up)}{noise}"
        parts.append(text + ". ")
    gains, any_noise = [], False
    for mode in _modes(bench):
        each = []
        for entry in results:
            if entry["mode"] != mode or _fast_mode(entry) in ("plain", HANDWRITTEN):
                continue
            plain = next((e for e in results if e["mode"] == mode and _framework(e) == _framework(entry)
                          and _fast_mode(e) == "plain" and _precision(e) == _precision(entry)), None)
            if plain is None or not (_measured(plain) and _measured(entry)) or plain["images_per_s"] <= 0:
                continue
            gain = entry["images_per_s"] / plain["images_per_s"]
            noise = _within_noise(entry, plain, gain)
            any_noise |= bool(noise)
            each.append(f"{_label(entry)} {'≈' if noise else ''}{_ratio(gain)}")
        if each:
            gains.append(f"{mode} {', '.join(each)}")
    if gains:
        parts.append("Fast modes against their framework's plain variant (images/s ratio): " + "; ".join(gains) + ". ")
        if any_noise:
            parts.append("≈: within the spread between repeats, not a measured difference. ")
    compared = [p for p in handwritten_pairs(bench) if p["ratio"] is not None]
    if compared:
        each = [f"{p['framework']} {p['mode']}" + (f" {p['precision']}" if p["precision"] != "float32" else "")
                + f" {_ratio(p['ratio'])}"
                + ("" if p["ok"] else f" (✗ more than {_tolerance()} slower)")
                for p in compared]
        parts.append(f"Spec-built against hand-written (images/s ratio): {', '.join(each)}. ")
    emitted = [p for p in emitted_pairs(bench) if p["ratio"] is not None]
    if emitted:
        each = [f"{p['emitted']['variant']} / {p['built']['variant']} {p['mode']} {_ratio(p['ratio'])}"
                + ("" if p["ok"] else f" (✗ more than {_tolerance()} slower)")
                + (" (within the spread between repeats)" if p["within_noise"] else "")
                for p in emitted]
        parts.append(f"Emitted code against the backend-built model (images/s ratio): {', '.join(each)}. ")
    failed = [f"{e['variant']} {e['mode']}" for e in results if not _measured(e)]
    partial = [f"{e['variant']} {e['mode']}" for e in results if e["status"] == "partial"]
    if failed:
        parts.append(Mark(f"Failed: {', '.join(failed)}.", False))
        parts.append(" ")
    if partial:
        parts.append(f"Some repeats failed: {', '.join(partial)}. ")
    if parts and isinstance(parts[-1], str):
        parts[-1] = parts[-1].rstrip()
    return [Block("heading", "At a glance", anchor="glance"), Block("paragraph", parts)]


def _status_cell(entry: dict):
    """Short, so that the table stays narrow: the error line follows the table."""
    status = entry["status"]
    if status == "failed" or not _measured(entry):
        return Mark("failed", False)
    if status == "partial":
        failures = len(entry.get("failures") or [])
        total = f" of {failures + entry['repeats_ok']}" if isinstance(entry.get("repeats_ok"), int) else ""
        return Mark(f"partial: {failures}{total} failed", False)
    if entry.get("finite") is False:
        return Mark("not finite", False)
    return Mark("ok", True)


def _trouble_line(entry: dict) -> list:
    """What went wrong with a failed or partial variant, in one line: the last line of its error."""
    who = f"{_label(entry)} {entry['mode']}"
    if entry["status"] == "failed" or not _measured(entry):
        return [Mark(f"{who} failed", False), f": {_error_line(entry)}"]
    if entry["status"] == "partial":
        return [Mark(f"{who}, some repeats failed", False), f" (the numbers are from the others): {_error_line(entry)}"]
    return [Mark(f"{who}: a loss or output was not finite", False), " (the time may not be that of a real step)."]


def _results_section(bench: dict) -> list[Block]:
    """One table per mode, its heading naming the model (one model per bench.json, so no model column: the
    table has to fit the page); every variant in it, a failed one with its error line below."""
    results = _ordered(bench)
    device_memory = any(_number(e.get("device_memory_peak_mb")) for e in results)
    mixed = _mixed_precision(results)
    ceiling = any(_number(e.get("ceiling_fraction")) for e in results)  # none on an accelerator: no empty column
    headers = ["variant", *(["precision"] if mixed else []), "images/s", "ms median", "ms p90",
               "repeats ms (spread)", "GFLOP/s", *(["% ceiling"] if ceiling else []), "RSS MB",
               *(["device MB"] if device_memory else []), "status"]
    first, last = headers.index("images/s"), headers.index("status")
    note = ("images/s: batch size over the median step time (all timed steps of all repeats); ms: milliseconds per "
            "step, median and 90th percentile. Repeats: the fastest and slowest median of one repeat, and their "
            "range as a share of the median: a difference smaller than that is not a measured one. "
            + ("% ceiling: GFLOP/s over the machine's matmul ceiling. " if ceiling else "")
            + "RSS: the peak resident memory of the process"
            + ("; device MB: the peak memory allocated on the accelerator." if device_memory else "."))
    blocks = [Block("heading", "Results", anchor="results"), Block("paragraph", [note], note="small")]
    for mode in _modes(bench):
        rows = []
        for entry in (e for e in results if e["mode"] == mode):
            measured = _measured(entry)
            numbers = [_images(entry.get("images_per_s")), _ms(entry.get("step_ms_median")),
                       _ms(entry.get("step_ms_p90")), _spread_cell(entry), _fmt(entry.get("gflops"), ".2f"),
                       *([_percent(entry.get("ceiling_fraction"))] if ceiling else []),
                       _fmt(entry.get("peak_rss_mb"), ",.0f"),
                       *([_fmt(entry.get("device_memory_peak_mb"), ",.0f")] if device_memory else [])]
            rows.append([entry["variant"], *([_precision(entry)] if mixed else []),
                         *(numbers if measured else ["—"] * len(numbers)), _status_cell(entry)])
        blocks += [Block("heading", f"{bench.get('model', '?')}, {MODE_NAMES.get(mode, mode)}", level=3),
                   Block("table", Table(headers, rows, numeric=tuple(range(first, last))))]
        blocks += [Block("paragraph", _trouble_line(e)) for e in results
                   if e["mode"] == mode and (e["status"] != "ok" or not _measured(e) or e.get("finite") is False)]
    return blocks


def _handwritten_section(bench: dict) -> list[Block]:
    pairs = handwritten_pairs(bench)
    if not pairs:
        return []
    mixed = _mixed_precision(bench["results"])
    blocks = [Block("heading", "Compiled from the spec vs hand-written", anchor="handwritten"),
              Block("paragraph", [
                  "The same network written by hand, idiomatically, in each framework, benchmarked the same way. "
                  "Ratio: images/s of the network netparity builds from the spec (the plain variant) over images/s "
                  "of the hand-written one: 1 is as fast, below 1 the spec-built one is slower. Within "
                  f"{_tolerance()}: a ratio of at least {HANDWRITTEN_TOLERANCE:g}. ms: median step time. Spread: the "
                  "fastest and slowest repeat median; beyond noise: the difference is larger than the larger of the "
                  "two spreads."], note="small")]
    headers = ["framework", "mode", *(["precision"] if mixed else []), "ratio", "spec ms", "hand-written ms",
               "spec spread", "hand-written spread", f"within {_tolerance()}", "beyond noise"]
    rows, slow = [], []
    for p in pairs:
        spec, hand = p["spec"], p["handwritten"]
        if p["ratio"] is None:
            missing = ("plain variant not measured" if spec is None else
                       f"{spec['variant']} failed" if not _measured(spec) else f"{hand['variant']} failed")
            verdict, noise = Mark(missing, False), "—"
        else:
            verdict = Mark("yes" if p["ok"] else f"no: {100 * (1 - p['ratio']):.1f}% slower", bool(p["ok"]))
            noise = {True: "no", False: "yes", None: "—"}[p["within_noise"]]
            if not p["ok"]:
                slow.append(f"{p['framework']} {p['mode']}" + (f" {p['precision']}" if mixed else "")
                            + (" (within the spread: measure again with more steps or repeats)"
                               if p["within_noise"] else ""))
        rows.append([p["framework"], p["mode"], *([p["precision"]] if mixed else []),
                     _fmt(p["ratio"], ".3f") + "×" if p["ratio"] is not None else "—",
                     _ms(spec.get("step_ms_median")) if spec is not None and _measured(spec) else "—",
                     _ms(hand.get("step_ms_median")) if _measured(hand) else "—",
                     _spread_cell(spec) if spec is not None and _measured(spec) else "—",
                     _spread_cell(hand) if _measured(hand) else "—", verdict, noise])
    blocks.append(Block("table", Table(headers, rows, numeric=tuple(range(2 + mixed, 7 + mixed)))))
    compared = [p for p in pairs if p["ratio"] is not None]
    if slow:
        blocks.append(Block("paragraph", [Mark(f"Slower than hand-written by more than {_tolerance()}", False),
                                          f": {'; '.join(slow)}."]))
    elif compared:
        blocks.append(Block("paragraph", [Mark(f"Every spec-built network compared runs within {_tolerance()} of "
                                               "its hand-written twin.", True)]))
    return blocks


def _failures_section(bench: dict) -> list[Block]:
    troubled = [e for e in _ordered(bench) if e["status"] != "ok" or not _measured(e)]
    if not troubled:
        return []
    blocks = [Block("heading", "Failures", anchor="failures")]
    for entry in troubled:
        failures = [f for f in entry.get("failures") or [] if isinstance(f, dict)]
        what = ("failed in every repeat" if not _measured(entry) else
                f"failed in {_count(len(failures), 'repeat')}, the numbers are from the others")
        blocks.append(Block("paragraph", [Mark(f"{entry['variant']} {entry['mode']}", False), f": {what}."]))
        for failure in failures:
            status = failure.get("returncode")
            head = f"repeat {failure.get('repeat', '?')}" + (f", exit status {status}" if status is not None else "")
            blocks.append(Block("code", f"{head}\n{failure.get('error', '')}"))
    return blocks


def _method_section(bench: dict) -> list[Block]:
    flops = bench.get("flops") or {}
    settings = bench.get("settings") or {}
    blocks = [Block("heading", "How it is measured", anchor="method")]
    blocks.append(Block("paragraph", [
        f"Every measurement runs in its own process, one at a time; the variants are interleaved over "
        f"{_count(settings.get('repeats'), 'repeat')} (A B C A B C …) so that a change of the machine's load hits all "
        f"alike. Each repeat runs {_count(settings.get('warmup'), 'warmup step')} (compilation, tracing, "
        f"allocation), then times {_count(settings.get('steps'), 'step')} of batch {settings.get('batch_size', '?')}."
    ]))
    blocks.append(Block("paragraph", [
        f"FLOPs: {flops.get('convention', 'convention not recorded')}. Per image: "
        f"{_plain(flops.get('macs_per_image'))} MACs, {_plain(flops.get('forward_flops_per_image'))} FLOPs forward "
        f"(inference), {_plain(flops.get('train_flops_per_image'))} FLOPs per training step. GFLOP/s is that count "
        "times images/s; it shows how much of the machine a variant uses, not how much work it really does."]))
    ceiling = bench.get("ceiling")
    if isinstance(ceiling, dict) and _number(ceiling.get("gflops")):
        text = (f"Ceiling: {ceiling['gflops']:.1f} GFLOP/s, {ceiling.get('what', '?')}: a practical peak of this "
                "machine for dense float32 arithmetic; % of ceiling is GFLOP/s over it. Small convolutions reach "
                "a small fraction of it.")
    else:
        text = (f"No ceiling was measured (device {settings.get('device', '?')}; the matmul ceiling is measured for "
                "CPU runs), so there is no % of ceiling.")
    blocks.append(Block("paragraph", [text]))
    return blocks


def _settings_section(bench: dict) -> list[Block]:
    settings = dict(bench.get("settings") or {})
    blocks = [Block("heading", "Settings and versions", anchor="settings")]
    pairs = [(key.replace("_", " "), _plain(value)) for key, value in settings.items()]
    pairs.append(("date", _when(bench.get("date"))))
    pairs.append(("spec", _plain(bench.get("spec_name"))))
    load = [o["load_before"][0] for o in bench.get("order") or []
            if isinstance(o, dict) and isinstance(o.get("load_before"), list) and o["load_before"]
            and _number(o["load_before"][0])]
    if load:
        pairs.append(("load average (1 min)", f"{min(load):.2f}–{max(load):.2f}"))
    blocks += [Block("heading", "Settings", level=3), Block("pairs", pairs, note="settings")]
    machine = []
    for key, value in (bench.get("machine") or {}).items():
        if isinstance(value, dict):
            machine += [(f"{key} {k}".replace("_", " "), _plain(v)) for k, v in value.items()]
        else:
            machine.append((key.replace("_", " ") if key != "OMP_NUM_THREADS" else key, _plain(value)))
    blocks += [Block("heading", "Machine", level=3), Block("pairs", machine, note="machine")]
    versions = [[name, version, ", ".join(dict.fromkeys(variants))] for name, version, variants in _versions(bench)]
    blocks += [Block("heading", "Versions", level=3),
               Block("table", Table(["package", "version", "variants"], versions))]
    return blocks


# --- the entry points -----------------------------------------------------------------------------------------


def render_bench_html(bench: dict, blocks: list[Block]) -> str:
    return render_page(_title(bench), _subtitle(bench), blocks, kicker="netparity benchmark",
                       footer=f"Made by netparity from bench.json ({bench.get('format')}).")


def render_bench_markdown(bench: dict, blocks: list[Block]) -> str:
    return render_markdown_page(_title(bench), _subtitle(bench), blocks)


def write_bench_report(folder: Path | str) -> tuple[Path, Path]:
    """Read FOLDER/bench.json; write FOLDER/bench.png, FOLDER/bench.html and FOLDER/bench.md, each atomically.

    Returns (html path, markdown path). Raises BenchError, naming the file, when bench.json
    is missing or is not a netparity benchmark; then nothing is written."""
    folder = Path(folder)
    bench = load_bench(folder / "bench.json")
    figure = plot_bench(bench, folder / "bench.png")
    blocks = build_blocks(bench, figure)
    page, markdown = render_bench_html(bench, blocks), render_bench_markdown(bench, blocks)
    html_path, md_path = folder / "bench.html", folder / "bench.md"
    write_atomic(html_path, page)
    write_atomic(md_path, markdown)
    return html_path, md_path


def zoo_summary(reports: list[dict]) -> str:
    """A Markdown table over several bench.json contents (docs/performance.md): one row per model and
    mode, one column per variant (images/s), with the input shape and batch of each model.

    Columns: each variant label once, grouped by framework in order of first appearance (a
    precision other than float32 makes its own column, ``torch (bfloat16)``). A cell says
    "failed" for a variant that failed there and "—" where it was not measured. A device
    column is added when the reports were measured on different devices."""
    entries = [e for bench in reports for e in bench.get("results") or []]
    frameworks = list(dict.fromkeys(_framework(e) for e in entries))
    labels = sorted(dict.fromkeys(_label(e) for e in entries),
                    key=lambda label: frameworks.index(next(_framework(e) for e in entries if _label(e) == label)))
    several_devices = len({str((b.get("settings") or {}).get("device", "?")) for b in reports}) > 1
    headers = ["model", "input", "batch", *(["device"] if several_devices else []), "mode", *labels]
    rows = []
    for bench in reports:
        settings = bench.get("settings") or {}
        for mode in _modes(bench):
            cells = []
            for label in labels:
                texts = []
                for entry in (e for e in bench["results"] if _label(e) == label and e["mode"] == mode):
                    if not _measured(entry):
                        texts.append("failed")
                    else:
                        texts.append(_images(entry["images_per_s"]) + (" (partial)" if entry["status"] == "partial"
                                                                       else ""))
                cells.append(", ".join(texts) or "—")
            rows.append([str(bench.get("model", "?")), _shape(settings.get("input_shape")),
                         str(settings.get("batch_size", "?")),
                         *([str(settings.get("device", "?"))] if several_devices else []), mode, *cells])
    first = len(headers) - len(labels)
    table = _table_md(Table(headers, rows, numeric=(2, *range(first, len(headers)))))
    return ("Images per second (batch size over the median step time; higher is better). failed: the variant "
            "failed in every repeat; —: not measured.\n\n" + table + "\n")


__all__ = ["BenchError", "load_bench", "write_bench_report", "zoo_summary", "plot_bench", "bench_figure",
           "handwritten_pairs", "emitted_pairs", "build_blocks"]


if __name__ == "__main__":
    import sys

    for written in write_bench_report(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written)
