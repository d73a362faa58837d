"""The training report: RUN_DIR/results.json -> report.html and report.md.

report.html is one self-contained page (figures as data URIs, inline CSS, no
script, nothing fetched), so it can be mailed or attached to an issue as is;
report.md is the same content for a repository, with the PNGs beside it. Both are
rendered from one list of blocks (headings, paragraphs, tables, figures), so they
cannot say different things.

Accuracies are fractions (0.85), shown as percent; differences of accuracy are
shown in percentage points.
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..spec.errors import NetparityError
from ..spec.files import write_atomic
from . import plots

RESULTS_FORMAT = "netparity.run/1"
# After the step losses diverge, each framework's run is in effect another draw of the
# training noise, so one seed cannot separate a framework difference from that noise.
# Up to this many points of final test accuracy is counted as agreement: about the
# seed-to-seed range of the d2l Fashion-MNIST models after a few epochs. More seeds
# replace this guess with the measured spread.
ACCURACY_TOLERANCE_POINTS = 1.0


class ResultsError(NetparityError, ValueError):
    """results.json is missing or is not a netparity run."""


# --- blocks: what the report says, before it is HTML or Markdown --------------------------------------------


@dataclass
class Mark:
    """Text that means pass or fail: green or red on the page, bold in Markdown."""

    text: str
    ok: bool


@dataclass
class Table:
    headers: list[str]
    rows: list[list]  # cells: str or Mark
    numeric: tuple[int, ...] = ()  # right-aligned columns
    wide: tuple[int, ...] = ()  # prose columns allowed to wrap widely


@dataclass
class Verdict:
    status: str  # pass | fail | open
    title: str
    sentence: str
    facts: list[str] = field(default_factory=list)


@dataclass
class Glance:
    """One framework at a glance: the figure colours tie it to the curves."""

    framework: str
    colour: str
    headline: str  # final test accuracy, or what went wrong
    detail: str
    ok: bool | None  # None: neither pass nor fail (still running, say)


@dataclass
class Block:
    kind: str  # heading | paragraph | table | pairs | figures | code | verdict | glance
    content: object
    level: int = 2
    anchor: str = ""
    note: str = ""  # a paragraph's style ("small"); a pairs block's column heading


# --- reading --------------------------------------------------------------------------------------------------


def read_format(path: Path, expected_format: str, error: type[NetparityError], missing_hint: str) -> dict:
    """The JSON object in ``path`` whose "format" is ``expected_format``; otherwise ``error``
    naming the file and what is wrong (``missing_hint``: said when the file is absent)."""
    if not path.is_file():
        raise error(f"{path}: no such file ({missing_hint})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path}: not valid JSON ({problem})") from problem
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != expected_format:
        raise error(f"{path}: format is {data.get('format')!r}, expected {expected_format!r}")
    return data


def load_results(run_dir: Path) -> dict:
    """RUN_DIR/results.json, checked enough that a report can be made; ResultsError names the file."""
    path = Path(run_dir) / "results.json"
    results = read_format(path, RESULTS_FORMAT, ResultsError,
                          f"a training run writes it; is {Path(run_dir)} a run directory?")
    if not isinstance(results.get("frameworks"), dict):
        raise ResultsError(f"{path}: 'frameworks' is missing or not an object")
    for name, data in results["frameworks"].items():
        if not isinstance(data, dict) or not isinstance(data.get("runs", []), list):
            raise ResultsError(f"{path}: frameworks.{name} has no list of runs")
    return results


def _runs(results: dict) -> dict[str, list[dict]]:
    return {name: data.get("runs") or [] for name, data in results["frameworks"].items()}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _last_epoch(run: dict) -> dict:
    return (run.get("epochs") or [{}])[-1]


def _final_test_acc(run: dict) -> float | None:
    value = _last_epoch(run).get("test_acc") if run.get("status") == "done" else None
    return value if _finite(value) else None


def _mean_final_test_acc(runs: list[dict]) -> float | None:
    finals = [acc for acc in map(_final_test_acc, runs) if acc is not None]
    return statistics.fmean(finals) if finals else None


def _compared_steps(results: dict, a: str, b: str, seed) -> int:
    """How many steps both frameworks have a finite loss for, with this seed."""
    runs = _runs(results)
    pick = [next((r for r in runs.get(name, []) if r.get("seed") == seed), None) for name in (a, b)]
    if None in pick:
        return 0
    lengths = []
    for run in pick:
        stop = plots.nan_step(run)
        lengths.append(len(run.get("step_loss") or []) if stop is None else stop)
    return min(lengths)


def _problems(results: dict) -> list[tuple[str, dict]]:
    return [(name, run) for name, runs in _runs(results).items() for run in runs if run.get("status") != "done"]


def _what_happened(name: str, run: dict, several_seeds: bool) -> str:
    who = f"{name} (seed {run.get('seed')})" if several_seeds else name
    status = run.get("status")
    if status == "nan":
        return f"{who} hit NaN at step {plots.nan_step(run)}"
    if status == "failed":
        return f"{who} failed ({_error_line(run.get('error'))})" if run.get("error") else f"{who} failed"
    return f"{who} is still running" if status == "running" else f"{who} was {status}"


def _error_line(error, limit: int = 140) -> str:
    """The line of an error that says what went wrong: a traceback's last line, not its first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _status_word(run: dict) -> str:
    return {"running": "still running", "interrupted": "interrupted"}.get(run.get("status"), str(run.get("status")))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- formatting -----------------------------------------------------------------------------------------------


def _fmt(value, spec: str, missing: str = "—") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing
    if math.isnan(value):
        return "NaN"
    return format(value, spec)


def _pct(value) -> str:
    return _fmt(value * 100 if _finite(value) else value, ".2f") + ("%" if _finite(value) else "")


def _points(value, signed: bool = False) -> str:
    return _fmt(value * 100 if _finite(value) else value, "+.2f" if signed else ".2f")


def _duration(seconds) -> str:
    if not _finite(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {rest} s"


def _plain(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "×".join(map(str, value)) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- the verdict ----------------------------------------------------------------------------------------------


def verdict(results: dict) -> Verdict:
    """Do the frameworks agree? Computed from the final accuracies and the divergence section."""
    runs = _runs(results)
    divergence = results.get("divergence") or {}
    several_seeds = max((len(r) for r in runs.values()), default=0) > 1
    finals = {name: acc for name, acc in ((n, _mean_final_test_acc(r)) for n, r in runs.items()) if acc is not None}
    facts, accuracy, steps = [], _accuracy_fact(finals, several_seeds), _step_fact(results, divergence, several_seeds)
    parity = results.get("parity")
    parity_failed = isinstance(parity, dict) and parity.get("ok") is False
    if parity_failed:
        facts.append("The parity check before training failed: the networks are not the same function "
                     "(see the parity section).")

    if not runs:
        return Verdict("fail", "Nothing ran", "results.json lists no framework.", facts)
    if len(runs) == 1:
        (name,) = runs
        sentence = f"Only {name} ran, so there is nothing to compare it with" + (
            f"; its final test accuracy is {_pct(finals[name])}." if name in finals else ".")
        status = "fail" if _problems(results) else "open"
        return Verdict(status, f"Only {name} ran", sentence, facts)

    problems = _problems(results)
    if problems:
        what = "; ".join(_what_happened(name, run, several_seeds) for name, run in problems)
        sentence = f"Not every run finished: {what}."
        if steps:
            sentence += f" Comparing the steps that ran: {steps}."
        done = [name for name, r in runs.items() if r and all(run.get("status") == "done" for run in r)]
        if len(done) == 1 and done[0] in finals:
            sentence += f" Only {done[0]} finished: final test accuracy {_pct(finals[done[0]])}."
        elif done:
            sentence += f" Of those that finished: {accuracy}."
        broken = any(run.get("status") in ("failed", "nan") for _, run in problems)
        return Verdict("fail" if broken or parity_failed else "open", "Not a complete comparison", sentence, facts)

    sentence = "; ".join(part for part in (accuracy, steps) if part)
    sentence = f"{sentence[0].upper()}{sentence[1:]}." if sentence else ""
    pairs = divergence.get("pairs") or []
    firsts = [p["first_divergent_step"] for p in pairs if p.get("first_divergent_step") is not None]
    spread = 100 * (max(finals.values()) - min(finals.values())) if len(finals) > 1 else 0.0
    differ = divergence.get("frameworks_differ_more_than_seeds")
    if parity_failed:
        return Verdict("fail", "The networks differ", sentence, facts)
    if firsts and min(firsts) == 0:
        facts.append("The losses differ beyond float32 noise at the very first step, before any update: "
                     "the forward passes differ (see the parity section and known differences).")
        return Verdict("fail", "The frameworks differ from the first step", sentence, facts)
    if several_seeds and differ is True:
        facts.append(f"The frameworks differ more than one framework differs from itself across seeds"
                     f"{_seed_numbers(divergence)}.")
        return Verdict("fail", "The frameworks differ more than seeds do", sentence, facts)
    if several_seeds and differ is False:
        facts.append("The frameworks differ no more than one framework differs from itself across seeds"
                     f"{_seed_numbers(divergence)}.")
        return Verdict("pass", "The frameworks agree", sentence, facts)
    if pairs and not firsts:
        return Verdict("pass", "The frameworks agree", sentence, facts)
    if spread <= ACCURACY_TOLERANCE_POINTS:
        if not several_seeds:
            facts.append(f"One seed: accuracy differences up to {ACCURACY_TOLERANCE_POINTS:g} point are counted as "
                         "agreement (typical seed-to-seed spread); run several seeds to measure it.")
        return Verdict("pass", "The frameworks agree", sentence, facts)
    facts.append("With one seed it is unknown whether that is more than seed-to-seed noise: run several seeds.")
    return Verdict("open", f"The frameworks differ by {spread:.2f} points of test accuracy", sentence, facts)


def _accuracy_fact(finals: dict[str, float], several_seeds: bool) -> str:
    each = ", ".join(f"{name} {_pct(acc)}" for name, acc in finals.items())
    what = "mean final test accuracy over seeds" if several_seeds else "final test accuracy"
    if len(finals) > 1:
        spread = 100 * (max(finals.values()) - min(finals.values()))
        return f"{what} within {spread:.2f} points ({each})"
    return f"{what} {each}" if finals else ""


def _step_fact(results: dict, divergence: dict, several_seeds: bool) -> str:
    pairs = [p for p in divergence.get("pairs") or [] if isinstance(p, dict)]
    if not pairs:
        return ""
    noise = divergence.get("noise_threshold")
    within = f"within float32 noise ({noise:.0e})" if _finite(noise) else "within float32 noise"
    diverging = [p for p in pairs if p.get("first_divergent_step") is not None]
    if not diverging:
        compared = [n for n in (_compared_steps(results, p["a"], p["b"], p.get("seed")) for p in pairs) if n]
        return f"step losses identical {within} at every step" + (f" ({min(compared)} compared)" if compared else "")
    first = min(diverging, key=lambda p: p["first_divergent_step"])
    step = first["first_divergent_step"]
    if step == 0:
        return f"step losses differ beyond float32 noise from the first step ({first['a']} vs {first['b']})"
    largest = max((p.get("max_step_loss_diff") for p in pairs if _finite(p.get("max_step_loss_diff"))), default=None)
    tail = f"; largest difference {largest:.2g}" if largest is not None else ""
    which = f"{first['a']} vs {first['b']}" + (f", seed {first.get('seed')}," if several_seeds else "")
    return f"step losses identical {within} for the first {step} steps, then diverge ({which} first{tail})"


# --- the sections ---------------------------------------------------------------------------------------------


def build_blocks(results: dict, figures: dict[str, Path]) -> list[Block]:
    runs = _runs(results)
    several_seeds = max((len(r) for r in runs.values()), default=0) > 1
    blocks = [Block("verdict", verdict(results)), Block("glance", _glance(results))]
    blocks += _model_section(results)
    blocks += _curves_section(figures)
    blocks += _frameworks_section(results, several_seeds)
    blocks += _divergence_section(results, several_seeds)
    blocks += _known_differences_section(results)
    blocks += _failures_section(results, several_seeds)
    blocks += _settings_section(results)
    return blocks


def _glance(results: dict) -> list[Glance]:
    cards = []
    for name, runs in _runs(results).items():
        colour = plots.style(name)[0]
        acc = _mean_final_test_acc(runs)
        troubles = [run for run in runs if run.get("status") != "done"]
        if troubles:
            run = troubles[0]
            headline = f"NaN at step {plots.nan_step(run)}" if run.get("status") == "nan" else run.get("status", "?")
            ok = False if run.get("status") in ("failed", "nan") else None
            detail = f"{len(troubles)} of {len(runs)} seeds" if len(runs) > 1 else (
                f"last test accuracy {_pct(_last_epoch(run).get('test_acc'))}" if run.get("epochs") else "no epoch")
        else:
            headline, ok = _pct(acc), True
            losses = [_last_epoch(r).get("train_loss") for r in runs]
            loss = _fmt(statistics.fmean(losses), ".4f") if all(map(_finite, losses)) else "—"
            detail = f"test accuracy · train loss {loss}"
        cards.append(Glance(name, colour, headline, detail, ok))
    return cards


def _model_section(results: dict) -> list[Block]:
    settings = results.get("settings") or {}
    parity = results.get("parity")
    blocks = [Block("heading", "Model and parity check", anchor="model")]
    shape = settings.get("input_shape")
    blocks.append(Block("paragraph", [
        f"{results.get('model', '?')}: {_plain(settings.get('parameters'))} trainable parameters, input "
        f"{_plain(shape)}, trained on {DATASETS.get(settings.get('dataset'), settings.get('dataset', '?'))} "
        f"({_plain(settings.get('train_examples'))} training and "
        f"{_plain(settings.get('test_examples'))} test images)."]))
    if not isinstance(parity, dict):
        blocks.append(Block("paragraph", ["No parity check was recorded with this run."]))
        return blocks
    blocks.append(Block("paragraph", [
        "Before training, the same weights and inputs went through every framework (batch "
        f"{parity.get('batch')}, seed {parity.get('seed')}, {parity.get('device')}, tolerance max|a−b| / max|b| ≤ "
        f"{_fmt(parity.get('rtol'), '.0e')} per layer): ",
        Mark("shapes agree" if parity.get("shape_parity") else "shapes differ", bool(parity.get("shape_parity"))),
        ", ",
        Mark("parameter counts agree" if parity.get("parameter_parity") else "parameter counts differ",
             bool(parity.get("parameter_parity"))),
        ", ",
        Mark("numbers agree" if parity.get("numerical_parity") else "numbers differ",
             bool(parity.get("numerical_parity"))),
        "."]))
    spec_counts = (parity.get("spec_parameters"), parity.get("spec_running_stats"))
    rows = []
    for run in parity.get("runs") or []:
        same = (run.get("trainable"), run.get("running_stats")) == spec_counts
        rows.append([run.get("framework"), run.get("version", ""), _plain(run.get("trainable")),
                     _plain(run.get("running_stats")), _fmt(run.get("seconds"), ".2f"),
                     Mark("= spec" if same else "≠ spec", same)])
    rows.append(["spec", "", _plain(spec_counts[0]), _plain(spec_counts[1]), "", ""])
    blocks.append(Block("table", Table(["framework", "version", "trainable", "running stats", "seconds", "counts"],
                                       rows, numeric=(2, 3, 4))))
    if parity.get("pairs"):
        rows = []
        for p in parity["pairs"]:
            first = (f"{p['first_divergence']} ({_fmt(p.get('first_divergence_rel'), '.1e')})"
                     if p.get("first_divergence") else "none")
            rows.append([f"{p.get('a')} vs {p.get('b')}", _fmt(p.get("output_max_abs"), ".1e"),
                         _fmt(p.get("output_max_rel"), ".1e"), _fmt(p.get("gradient_max_rel"), ".1e"),
                         f"{p.get('worst_layer') or '—'} ({_fmt(p.get('worst_layer_rel'), '.1e')})", first,
                         p.get("gradient_verdict", ""), Mark("pass" if p.get("ok") else "FAIL", bool(p.get("ok")))])
        blocks.append(Block("table", Table(["pair", "output max abs", "output rel", "input-grad rel",
                                            "worst layer (rel)", "first divergence", "gradients", "result"],
                                           rows, numeric=(1, 2, 3))))
        for p in parity["pairs"]:
            if p.get("note"):
                blocks.append(Block("paragraph", [f"{p.get('a')} vs {p.get('b')}: {p['note']}"], note="small"))
    for name, why in (parity.get("skipped") or {}).items():
        blocks.append(Block("paragraph", [f"{name} skipped: {why}"], note="small"))
    for name, why in (parity.get("errors") or {}).items():
        blocks.append(Block("paragraph", [Mark(f"{name} failed the parity check", False), f": {why}"]))
    for kind, label in (("shape_mismatches", "shape"), ("count_mismatches", "count [trainable, running]")):
        for m in (parity.get(kind) or [])[:10]:
            blocks.append(Block("paragraph", [Mark(f"{m.get('framework')} {m.get('path')}", False),
                                              f": {label} expected {m.get('expected')}, got {m.get('got')}"]))
    return blocks


FIGURE_TEXT = {
    "train_loss": "training loss per epoch",
    "train_acc": "training accuracy per epoch",
    "test_acc": "test accuracy per epoch",
    "step_loss": "training loss at every step",
    "step_loss_diff": "absolute per-step loss difference of each pair",
}


def _curves_section(figures: dict[str, Path]) -> list[Block]:
    blocks = [Block("heading", "Training curves", anchor="curves")]
    per_epoch = [(name, figures[name]) for name in plots.EPOCH_METRICS if name in figures]
    if per_epoch:
        blocks.append(Block("figures", per_epoch))
    if "step_loss" in figures and "step_loss_diff" in figures:
        blocks.append(Block("paragraph", ["Same weights, same batches, same hyperparameters: where the frameworks "
                                          "agree their lines lie on top of each other (the line styles differ so "
                                          "that each stays visible)."], note="small"))
    if "step_loss" in figures:
        blocks.append(Block("figures", [("step_loss", figures["step_loss"])]))
    if "step_loss_diff" in figures:
        blocks.append(Block("paragraph", ["Absolute loss difference per step, log scale. Below the dashed line the "
                                          "frameworks are identical up to float32 rounding; rounding differences "
                                          "grow with every update until the runs become independent draws."],
                            note="small"))
        blocks.append(Block("figures", [("step_loss_diff", figures["step_loss_diff"])]))
    return blocks


def _frameworks_section(results: dict, several_seeds: bool) -> list[Block]:
    planned = (results.get("settings") or {}).get("epochs")
    rows = []
    for name, data in results["frameworks"].items():
        for index, run in enumerate(data.get("runs") or []):
            last, completed = _last_epoch(run), len(run.get("epochs") or [])
            # the median, because the first epoch carries the warm-up (graph tracing, allocator)
            speeds = [e["images_per_second"] for e in run.get("epochs") or [] if _finite(e.get("images_per_second"))]
            # with several seeds a framework's name and version head its group of rows only
            seed = str(run.get("seed"))
            who = [name, seed, data.get("version", "")] if index == 0 else ["", seed, ""]
            rows.append([*(who if several_seeds else [name, data.get("version", "")]),
                         f"{completed}/{planned}" if planned else str(completed),
                         _fmt(last.get("train_loss"), ".4f"), _pct(last.get("train_acc")), _pct(last.get("test_acc")),
                         _fmt(statistics.median(speeds), ",.0f") if speeds else "—", _duration(run.get("seconds")),
                         _status_mark(run)])
    headers = ["framework", *(["seed"] if several_seeds else []), "version", "epochs", "train loss", "train acc",
               "test acc", "images/s", "wall time", "status"]
    numeric = tuple(i for i, h in enumerate(headers) if h not in ("framework", "version", "status"))
    return [Block("heading", "Per framework", anchor="frameworks"),
            Block("paragraph", ["Losses and accuracies of the last completed epoch; images/s is the median over "
                                "epochs (the first carries the warm-up)."], note="small"),
            Block("table", Table(headers, rows, numeric=numeric))]


def _status_mark(run: dict):
    status = run.get("status", "?")
    if status == "done":
        return Mark("done", True)
    if status == "nan":
        return Mark(f"NaN at step {plots.nan_step(run)}", False)
    return Mark(status, False) if status == "failed" else status  # running, interrupted: neither pass nor fail


def _divergence_section(results: dict, several_seeds: bool) -> list[Block]:
    divergence = results.get("divergence") or {}
    noise = divergence.get("noise_threshold")
    blocks = [Block("heading", "Divergence", anchor="divergence")]
    pairs = [p for p in divergence.get("pairs") or [] if isinstance(p, dict)]
    if not pairs:
        blocks.append(Block("paragraph", ["No pair of frameworks to compare."]))
    else:
        blocks.append(Block("paragraph", [
            f"Per-step training loss of each pair, same seed. Float32 noise threshold: {_fmt(noise, '.0e')}. "
            "The accuracy difference is a − b, in percentage points."], note="small"))
        rows, previous = [], None
        for p in pairs:
            first = p.get("first_divergent_step")
            compared = _compared_steps(results, p.get("a"), p.get("b"), p.get("seed"))
            pair = f"{p.get('a')} vs {p.get('b')}"
            shown = "" if several_seeds and rows and previous == pair else pair
            previous = pair
            rows.append([shown, *([str(p.get("seed"))] if several_seeds else []),
                         _fmt(p.get("max_step_loss_diff"), ".2e"), _fmt(p.get("mean_step_loss_diff"), ".2e"),
                         str(first) if first is not None else f"none in {compared}" if compared else "none",
                         _points(p.get("final_test_acc_diff"), signed=True)])
        headers = ["pair", *(["seed"] if several_seeds else []), "max |Δ loss|", "mean |Δ loss|",
                   "first step beyond noise", "final test acc Δ (points)"]
        blocks.append(Block("table", Table(headers, rows, numeric=tuple(range(1, len(headers))))))
    spread = divergence.get("seed_spread") or {}
    if spread:
        blocks.append(Block("heading", "Seed to seed", level=3))
        rows = [[name, _pct(s.get("final_test_acc_mean")), _pct(s.get("final_test_acc_min")),
                 _pct(s.get("final_test_acc_max")),
                 _points(s["final_test_acc_max"] - s["final_test_acc_min"])
                 if _finite(s.get("final_test_acc_max")) and _finite(s.get("final_test_acc_min")) else "—",
                 _fmt(s.get("step_loss_spread"), ".2e")] for name, s in spread.items()]
        blocks.append(Block("table", Table(["framework", "final test acc mean", "min", "max", "range (points)",
                                            "step-loss spread"], rows, numeric=(1, 2, 3, 4, 5))))
    blocks.append(Block("paragraph", _seeds_sentence(divergence, spread)))
    return blocks


def _seed_numbers(divergence: dict) -> str:
    """' (largest difference between frameworks ...; largest range across seeds ...)', or ''."""
    pairs = [p for p in divergence.get("pairs") or [] if isinstance(p, dict)]
    across = [abs(p["final_test_acc_diff"]) for p in pairs if _finite(p.get("final_test_acc_diff"))]
    within = [s["final_test_acc_max"] - s["final_test_acc_min"] for s in (divergence.get("seed_spread") or {}).values()
              if _finite(s.get("final_test_acc_max")) and _finite(s.get("final_test_acc_min"))]
    if not (across and within):
        return ""
    return (f" (largest difference between frameworks {_points(max(across))} points of final test accuracy; "
            f"largest range of one framework across seeds {_points(max(within))} points)")


def _seeds_sentence(divergence: dict, spread: dict) -> list:
    differ = divergence.get("frameworks_differ_more_than_seeds")
    numbers = _seed_numbers(divergence)
    if differ is True:
        return [Mark("The frameworks differ more than one framework differs from itself", False), numbers + "."]
    if differ is False:
        return [Mark("The frameworks differ no more than one framework differs from itself", True), numbers + "."]
    if spread:
        return ["Whether the frameworks differ more than seeds do could not be decided" + numbers + "."]
    return ["One seed: there is no seed-to-seed spread to compare the framework differences with."]


def _known_differences_section(results: dict) -> list[Block]:
    known = [k for k in results.get("known_differences") or [] if isinstance(k, dict)]
    blocks = [Block("heading", "Known differences", anchor="known")]
    if not known:
        return [*blocks, Block("paragraph", ["None recorded."])]
    rows = [[k.get("name", ""), k.get("detail", ""), k.get("measured", "")] for k in known]
    return [*blocks, Block("table", Table(["difference", "detail", "measured effect"], rows, wide=(1,)))]


def _failures_section(results: dict, several_seeds: bool) -> list[Block]:
    problems = _problems(results)
    unfinished = any(run.get("status") not in ("failed", "nan") for _, run in problems)
    blocks = [Block("heading", "Failures and unfinished runs" if unfinished else "Failures", anchor="failures")]
    if not problems:
        return [*blocks, Block("paragraph", [Mark("None: every run finished.", True)])]
    per_epoch = plots.steps_per_epoch(results)
    for name, run in problems:
        steps = len(run.get("step_loss") or [])
        if run.get("status") == "nan":
            step = plots.nan_step(run)
            where = f"the loss became NaN at step {step}" + (f" (epoch {step // per_epoch + 1})" if per_epoch else "")
        elif run.get("status") == "not started":
            where = "not started"
        elif not steps:
            where = f"{_status_word(run)} before its first step"
        else:
            epochs = len(run.get("epochs") or [])
            where = (f"{_status_word(run)} after {_plural(steps, 'step')}"
                     + (f", in epoch {steps // per_epoch + 1}" if per_epoch else "")
                     + f"; {_plural(epochs, 'epoch')} complete")
        who = f"{name}, seed {run.get('seed')}" if several_seeds else name
        broken = run.get("status") in ("failed", "nan")
        blocks.append(Block("paragraph", [Mark(who, False) if broken else who, f": {where}."]))
        if run.get("error"):
            blocks.append(Block("code", str(run["error"])))
    return blocks


def _settings_section(results: dict) -> list[Block]:
    blocks = [Block("heading", "Settings and versions", anchor="settings")]
    if results.get("command"):
        blocks.append(Block("code", results["command"]))
    for title, values in (("Settings", results.get("settings") or {}), ("Machine", results.get("machine") or {})):
        pairs = [(key.replace("_", " "), _plain(value)) for key, value in values.items()]
        if title == "Machine":
            pairs.append(("created", _when(results.get("created"))))
        blocks += [Block("heading", title, level=3), Block("pairs", pairs, note=title.lower())]
    rows = [[name, data.get("version", ""), data.get("determinism", "")]
            for name, data in results["frameworks"].items()]
    blocks += [Block("heading", "Versions", level=3),
               Block("table", Table(["framework", "version", "determinism"], rows, wide=(2,)))]
    return blocks


def _when(created) -> str:
    return str(created or "—").replace("T", " ").replace("+00:00", " UTC")


# --- HTML -----------------------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1c1d21; --muted: #646873; --rule: #e4e5ea; --soft: #f5f6f8; --pass: #18794e; --fail: #c4221b; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 40px 48px 72px; background: #fff; min-height: 100vh; }
header .kicker { margin: 0; color: var(--muted); font-size: 13px; letter-spacing: .06em; text-transform: uppercase; }
h1 { font-size: 30px; line-height: 1.2; margin: 4px 0 6px; letter-spacing: -.01em; }
header .meta { margin: 0; color: var(--muted); }
nav { margin: 18px 0 0; font-size: 14px; }
nav a { color: var(--muted); text-decoration: none; margin-right: 18px; border-bottom: 1px solid var(--rule); }
h2 { font-size: 21px; margin: 48px 0 12px; padding-top: 20px; border-top: 1px solid var(--rule); }
h3 { font-size: 16px; margin: 28px 0 8px; }
p { margin: 8px 0 12px; max-width: 78ch; }
p.small { color: var(--muted); font-size: 14px; }
.verdict { margin: 28px 0 0; padding: 20px 24px; border-left: 6px solid var(--muted); background: var(--soft); }
.verdict.is-pass { border-color: var(--pass); } .verdict.is-fail { border-color: var(--fail); }
.verdict .label { margin: 0; font-size: 13px; font-weight: 700; letter-spacing: .06em; text-transform: uppercase;
  color: var(--muted); }
.verdict.is-pass .label { color: var(--pass); } .verdict.is-fail .label { color: var(--fail); }
.verdict h2 { margin: 2px 0 8px; padding: 0; border: 0; font-size: 24px; }
.verdict .sentence { font-size: 16.5px; max-width: none; margin: 0; }
.verdict ul { margin: 10px 0 0; padding-left: 20px; color: var(--muted); font-size: 14.5px; }
.glance { display: flex; flex-wrap: wrap; gap: 14px; margin: 16px 0 0; }
.card { flex: 1 1 180px; max-width: 360px; padding: 12px 16px; border: 1px solid var(--rule); border-top: 4px solid;
  border-radius: 4px; }
.card .name { font-weight: 600; } .card .big { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 14px; }
th, td { padding: 6px 14px 6px 0; text-align: left; vertical-align: top; border-bottom: 1px solid var(--rule); }
th { font-size: 12.5px; font-weight: 600; color: var(--muted); border-bottom: 1.5px solid #c9cbd2;
  white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; padding-left: 14px; }
td.wide { min-width: 320px; }
tr:last-child td { border-bottom: 0; }
dl.pairs { display: grid; grid-template-columns: repeat(3, max-content minmax(0, 1fr)); margin: 10px 0 18px;
  font-size: 14px; }
dl.pairs dt, dl.pairs dd { margin: 0; padding: 5px 0; border-bottom: 1px solid var(--rule); }
dl.pairs dt { color: var(--muted); padding-right: 12px; } dl.pairs dd { padding-right: 28px; overflow-wrap: anywhere; }
.pass { color: var(--pass); font-weight: 600; } .fail { color: var(--fail); font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 12px; margin: 12px 0 20px; }
figure { margin: 0; } figure img { display: block; max-width: 100%; height: auto; }
pre { background: var(--soft); border: 1px solid var(--rule); border-radius: 4px; padding: 10px 14px;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
  word-break: break-word; }
footer { margin-top: 56px; color: var(--muted); font-size: 13px; }
@media print { body { background: #fff; } main { padding: 0; } h2 { break-after: avoid; }
  figure { break-inside: avoid; } }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _inline_html(parts) -> str:
    out = []
    for part in parts:
        if isinstance(part, Mark):
            out.append(f'<span class="{"pass" if part.ok else "fail"}">{_e(part.text)}</span>')
        else:
            out.append(_e(part))
    return "".join(out)


def _cell_html(cell, numeric: bool, wide: bool) -> str:
    classes = " ".join(c for c, on in (("num", numeric), ("wide", wide)) if on)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{_inline_html([cell])}</td>"


def _table_html(table: Table) -> str:
    head = "".join(f'<th{" class=num" if i in table.numeric else ""}>{_e(h)}</th>' for i, h in enumerate(table.headers))
    body = "".join("<tr>" + "".join(_cell_html(cell, i in table.numeric, i in table.wide) for i, cell in enumerate(row))
                   + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png_width(data: bytes) -> int:
    return int.from_bytes(data[16:20], "big")  # IHDR: the first chunk of every PNG


def _figure_html(name: str, path: Path) -> str:
    data = Path(path).read_bytes()
    # One figure inch as 96 CSS pixels: the fonts show at their point sizes at 100% zoom,
    # and the 200-dpi PNG stays sharp on high-density screens.
    width = round(_png_width(data) * 96 / plots.DPI)
    source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{source}" width="{width}" alt="{_e(FIGURE_TEXT.get(name, name))}" '
            f'data-file="{_e(Path(path).name)}"></figure>')


def _verdict_html(v: Verdict) -> str:
    label = {"pass": "✓ Verdict", "fail": "✗ Verdict", "open": "Verdict"}[v.status]
    facts = "".join(f"<li>{_e(f)}</li>" for f in v.facts)
    return (f'<section class="verdict is-{v.status}"><p class="label">{label}</p><h2>{_e(v.title)}</h2>'
            f'<p class="sentence">{_e(v.sentence)}</p>{f"<ul>{facts}</ul>" if facts else ""}</section>')


def _glance_html(cards: list[Glance]) -> str:
    out = []
    for c in cards:
        big = c.headline if c.ok is None else f'<span class="{"" if c.ok else "fail"}">{_e(c.headline)}</span>'
        out.append(f'<div class="card" style="border-top-color:{c.colour}"><div class="name">{_e(c.framework)}</div>'
                   f'<div class="big">{big}</div><div class="detail">{_e(c.detail)}</div></div>')
    return f'<div class="glance">{"".join(out)}</div>'


def render_html(results: dict, blocks: list[Block]) -> str:
    return render_page(_title(results), _subtitle(results), blocks, kicker="netparity training comparison",
                       footer=f"Made by netparity from results.json ({results.get('format')}).")


def render_page(title: str, subtitle: str, blocks: list[Block], kicker: str, footer: str) -> str:
    """One self-contained HTML page from blocks: any report's renderer (the training report, the benchmark's)."""
    body = []
    for block in blocks:
        if block.kind == "heading":
            anchor = f' id="{block.anchor}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_e(block.content)}</h{block.level}>")
        elif block.kind == "paragraph":
            css = f' class="{block.note}"' if block.note else ""
            body.append(f"<p{css}>{_inline_html(block.content)}</p>")
        elif block.kind == "table":
            body.append(_table_html(block.content))
        elif block.kind == "figures":
            body.append('<div class="figures">' + "".join(_figure_html(n, p) for n, p in block.content) + "</div>")
        elif block.kind == "code":
            body.append(f"<pre>{_e(block.content)}</pre>")
        elif block.kind == "pairs":
            body.append('<dl class="pairs">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in block.content)
                        + "</dl>")
        elif block.kind == "verdict":
            body.append(_verdict_html(block.content))
        elif block.kind == "glance":
            body.append(_glance_html(block.content))
    sections = [b for b in blocks if b.kind == "heading" and b.anchor]
    nav = "".join(f'<a href="#{b.anchor}">{_e(b.content)}</a>' for b in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body><main>"
            f'<header><p class="kicker">{_e(kicker)}</p><h1>{_e(title)}</h1>'
            f'<p class="meta">{_e(subtitle)}</p><nav>{nav}</nav></header>'
            + "\n".join(body)
            + f"<footer>{_e(footer)}</footer>"
            "</main></body></html>\n")


DATASETS = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "synthetic": "synthetic data"}


def _title(results: dict) -> str:
    dataset = (results.get("settings") or {}).get("dataset")
    model = results.get("model", "model")
    return f"{model} on {DATASETS.get(dataset, dataset)}" if dataset else model


def _subtitle(results: dict) -> str:
    settings = results.get("settings") or {}
    seeds = settings.get("seeds") or max((len(r) for r in _runs(results).values()), default=1)
    parts = [" · ".join(results["frameworks"]) or "no framework",
             _plural(settings["epochs"], "epoch") if isinstance(settings.get("epochs"), int) else "",
             _plural(seeds, "seed"),
             f"batch {settings.get('batch_size', '?')}", settings.get("device", ""),
             _when(results.get("created"))]
    return " — ".join(p for p in parts if p)


# --- Markdown -------------------------------------------------------------------------------------------------


def _md_inline(parts) -> str:
    out = []
    for part in parts:
        if isinstance(part, Mark):
            out.append(f"**{'✓' if part.ok else '✗'} {_md_escape(part.text)}**")
        else:
            out.append(_md_escape(str(part)))
    return "".join(out)


def _md_escape(text: str) -> str:
    # no "_": CommonMark never reads an underscore inside a word (lenet_bn) as emphasis
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("<", "&lt;")


def _md_cell(cell) -> str:
    return _md_inline([cell]).replace("|", "\\|").replace("\n", " ")


def _table_md(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if i in table.numeric else "---" for i in range(len(table.headers))) + "|"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(results: dict, blocks: list[Block]) -> str:
    return render_markdown_page(_title(results), _subtitle(results), blocks)


def render_markdown_page(title: str, subtitle: str, blocks: list[Block]) -> str:
    """The Markdown twin of ``render_page``: the same blocks, the PNGs referenced by file name."""
    out = [f"# {_md_escape(title)}", "", f"*{_md_escape(subtitle)}*"]
    for block in blocks:
        out.append("")
        if block.kind == "heading":
            out.append(f"{'#' * block.level} {_md_escape(block.content)}")
        elif block.kind == "paragraph":
            out.append(_md_inline(block.content))
        elif block.kind == "table":
            out.append(_table_md(block.content))
        elif block.kind == "figures":
            out.append("\n".join(f"![{FIGURE_TEXT.get(n, n)}]({Path(p).name})" for n, p in block.content))
        elif block.kind == "pairs":
            out.append(_table_md(Table([block.note, "value"], [list(pair) for pair in block.content])))
        elif block.kind == "code":
            fence = "~~~~" if "```" in block.content else "```"
            out.append(f"{fence}\n{block.content}\n{fence}")
        elif block.kind == "verdict":
            v = block.content
            mark = {"pass": "✓ ", "fail": "✗ ", "open": ""}[v.status]
            out.append(f"## Verdict: {mark}{_md_escape(v.title)}\n\n{_md_escape(v.sentence)}")
            out.extend(f"- {_md_escape(f)}" for f in v.facts)
        elif block.kind == "glance":
            out.append(" · ".join(f"**{c.framework}** {c.headline}" for c in block.content))
    return "\n".join(out) + "\n"


# --- the entry point ------------------------------------------------------------------------------------------


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Read RUN_DIR/results.json; write the figures, RUN_DIR/report.html and RUN_DIR/report.md.

    Returns (html path, markdown path). Raises ResultsError, naming the file, when
    results.json is missing or is not a netparity run.
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    figures = plots.plot_run(results, run_dir)
    blocks = build_blocks(results, figures)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    write_atomic(html_path, render_html(results, blocks))
    write_atomic(md_path, render_markdown(results, blocks))
    return html_path, md_path


if __name__ == "__main__":
    import sys

    for written in write_report(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written)
