"""Training curves as PNGs, the frameworks overlaid: the figures of the training report.

Figures are drawn with matplotlib's object API (``Figure``, no pyplot), so importing
this module changes no global backend and opens no window: it works headless and
inside a notebook alike. Every framework keeps one colour and one line style in
every figure; the styles differ as well as the colours because frameworks that
agree draw exactly on top of each other.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..spec.files import atomic_writer

# Okabe-Ito colours (distinguishable with colour-blindness); no plain green or red,
# which the report keeps for pass and fail.
FRAMEWORK_STYLES = {
    "torch": ("#D55E00", "-"),
    "mxnet": ("#0072B2", (0, (5, 2))),
    "keras": ("#8E5BB5", (0, (1.2, 1.4))),
}
SPARE_COLOURS = ["#E69F00", "#56B4E9", "#000000", "#CC79A7"]
PAIR_COLOUR = "#333333"
NOISE_COLOUR = "#888888"
DPI = 200  # pixels per inch in the PNG; the report shows one figure inch as 96 CSS pixels

EPOCH_METRICS = {"train_loss": "training loss", "train_acc": "training accuracy", "test_acc": "test accuracy"}
FIGURE_NAMES = (*EPOCH_METRICS, "step_loss", "step_loss_diff")


def style(framework: str) -> tuple[str, object]:
    """(colour, line style) of a framework; unknown ones get spare colours in a stable order."""
    if framework in FRAMEWORK_STYLES:
        return FRAMEWORK_STYLES[framework]
    return SPARE_COLOURS[sum(map(ord, framework)) % len(SPARE_COLOURS)], "-."


def step_losses(run: dict) -> np.ndarray:
    """The run's per-step losses as float64, a null (JSON has no NaN) as NaN."""
    return np.array([np.nan if v is None else v for v in run.get("step_loss") or []], dtype=np.float64)


def nan_step(run: dict) -> int | None:
    """The first step whose loss is not finite; for a NaN run that recorded none, the step after its last."""
    bad = np.flatnonzero(~np.isfinite(step_losses(run)))
    if bad.size:
        return int(bad[0])
    return len(run.get("step_loss") or []) if run.get("status") == "nan" else None


def run_note(run: dict) -> str:
    """'' for a finished run, else what happened to it, for legends and tables."""
    status = run.get("status", "done")
    if status == "done":
        return ""
    if status == "nan":
        return f"NaN at step {nan_step(run)}"
    return status


def framework_label(name: str, runs: list[dict]) -> str:
    """The legend entry: the name, and what went wrong in which run (seeds named when there are several)."""
    notes = [(run.get("seed"), run_note(run)) for run in runs]
    if len(runs) == 1:
        troubles = notes[0][1]
    else:
        troubles = "; ".join(f"seed {seed} {note}" for seed, note in notes if note)
    return f"{name} — {troubles}" if troubles else name


def _seed_note(frameworks: dict) -> str:
    seeds = max((len(runs) for runs in frameworks.values()), default=1)
    return f" — mean of {seeds} seeds, band min–max" if seeds > 1 else ""


def plot_run(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write the run's figures as ``out_dir/<name>.png``; returns name -> path.

    Names: ``train_loss``, ``train_acc``, ``test_acc`` (per epoch), ``step_loss`` and,
    with two frameworks or more, ``step_loss_diff`` (per pair, log scale, with the
    float32-noise threshold). Failed and NaN runs are drawn as far as they got.
    """
    out_dir = Path(out_dir)
    frameworks = {name: data.get("runs") or [] for name, data in (results.get("frameworks") or {}).items()}
    figures = {metric: _epoch_figure(frameworks, metric, title) for metric, title in EPOCH_METRICS.items()}
    per_epoch = steps_per_epoch(results)
    figures["step_loss"] = _step_loss_figure(frameworks, per_epoch)
    if len(frameworks) > 1:
        figures["step_loss_diff"] = _difference_figure(frameworks, results.get("divergence") or {}, per_epoch)
    paths = {}
    for name, figure in figures.items():
        paths[name] = out_dir / f"{name}.png"
        _save_atomic(figure, paths[name])
    return paths


def _save_atomic(figure: Figure, path: Path) -> None:
    with atomic_writer(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=DPI)


def _figure(width: float, height: float, rows: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(labelsize=9)
    return figure, list(axes)


def _band(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over rows of unequal length (NaN-padded); NaN where no row has a value."""
    width = max((row.size for row in rows), default=0)
    stacked = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        stacked[i, : row.size] = row
    with warnings.catch_warnings():  # all-NaN columns are expected past a failed run's end
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def _draw(ax, x, rows, colour, line, label, marker=None, linewidth=1.6) -> None:
    mean, low, high = _band(rows)
    if len(rows) > 1:
        ax.fill_between(x[: mean.size], low, high, color=colour, alpha=0.16, linewidth=0)
    ax.plot(x[: mean.size], mean, color=colour, linestyle=line, linewidth=linewidth, marker=marker,
            markersize=5, label=label)


def _absent(ax, name: str, label: str) -> None:
    """A legend entry for a framework that has nothing to draw, so its absence is said, not hidden."""
    colour, line = style(name)
    ax.plot([], [], color=colour, linestyle=line, linewidth=1.6, label=f"{label} (no data)")


def _legend(ax, **options) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8.5, frameon=False, **options)


def _legend_below(figure: Figure, ax) -> None:
    """Under the axes: in a small figure a legend inside would sit on the curves."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        columns = len(labels) if sum(map(len, labels)) < 36 else 1
        figure.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8.5, frameon=False)


def _mark_ends(ax, runs: list[dict], colour: str) -> None:
    """An X where a failed, NaN or interrupted run stopped, and a dotted line at a NaN step."""
    for run in runs:
        if run.get("status", "done") in ("done", "running"):
            continue
        losses = step_losses(run)
        finite = np.flatnonzero(np.isfinite(losses))
        if finite.size:
            ax.plot(finite[-1], losses[finite[-1]], marker="X", markersize=8, color=colour,
                    markeredgecolor="white", markeredgewidth=0.8, linestyle="none", zorder=5)
        if run.get("status") == "nan":
            ax.axvline(nan_step(run), color=colour, linewidth=1.0, linestyle=(0, (1, 2)))


def _epoch_figure(frameworks: dict, metric: str, title: str) -> Figure:
    figure, (ax,) = _figure(3.4, 3.2)
    last_epoch = 1
    for name, runs in frameworks.items():
        colour, line = style(name)
        label = framework_label(name, runs)
        by_run = [{e["epoch"]: e.get(metric) for e in run.get("epochs") or []} for run in runs]
        epochs = sorted({epoch for values in by_run for epoch in values})
        if not epochs:
            _absent(ax, name, label)
            continue
        last_epoch = max(last_epoch, epochs[-1])
        x = np.arange(1, epochs[-1] + 1)
        rows = [np.array([np.nan if values.get(e) is None else values[e] for e in x], dtype=np.float64)
                for values in by_run]
        # markers: a one-epoch curve is a single point, invisible as a line
        _draw(ax, x, rows, colour, line, label, marker="o")
    ax.set_title(title + _seed_note(frameworks).replace(" — ", "\n"), fontsize=11)
    ax.set_xlabel("epoch", fontsize=9.5)
    if last_epoch <= 12:
        ax.set_xticks(range(1, last_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.7, last_epoch + 0.3)
    if metric.endswith("_acc"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if _span(ax) > 0.05 else 1))
    _legend_below(figure, ax)
    return figure


def _span(ax) -> float:
    low, high = ax.get_ylim()
    return high - low


def steps_per_epoch(results: dict) -> int | None:
    """From a run that finished: its steps over its epochs, when that divides evenly."""
    for data in (results.get("frameworks") or {}).values():
        for run in data.get("runs") or []:
            steps, epochs = len(run.get("step_loss") or []), len(run.get("epochs") or [])
            if run.get("status") == "done" and epochs and steps and steps % epochs == 0:
                return steps // epochs
    return None


def _epoch_lines(ax, per_epoch: int | None, last_step: int) -> None:
    if per_epoch:
        for boundary in range(per_epoch, last_step, per_epoch):
            ax.axvline(boundary - 0.5, color="#bbbbbb", linewidth=0.8, linestyle=(0, (2, 3)), zorder=0)


def _step_loss_figure(frameworks: dict, per_epoch: int | None) -> Figure:
    figure, (ax,) = _figure(10.2, 3.6)
    last, low, high = 1, np.inf, 0.0
    for name, runs in frameworks.items():
        colour, line = style(name)
        label = framework_label(name, runs)
        rows = [step_losses(run) for run in runs]
        if not any(np.isfinite(row).any() for row in rows):
            _absent(ax, name, label)
            continue
        x = np.arange(max(row.size for row in rows))
        _draw(ax, x, rows, colour, line, label, linewidth=1.2)
        _mark_ends(ax, runs, colour)
        finite = np.concatenate([row[np.isfinite(row)] for row in rows])
        last, low, high = max(last, x.size), min(low, finite.min()), max(high, finite.max())
    # log scale only where the loss spans more than a decade: else it squeezes the part that matters
    if 0 < low and high / low > 10:
        ax.set_yscale("log")
    _epoch_lines(ax, per_epoch, last)
    ends = any(run.get("status", "done") not in ("done", "running") for runs in frameworks.values() for run in runs)
    notes = ["dotted: epoch boundaries"] * bool(per_epoch) + ["X: where a run stopped"] * ends
    ax.set_title(f"loss per step{_seed_note(frameworks)}" + (f"  ({'; '.join(notes)})" if notes else ""),
                 fontsize=11)
    ax.set_xlabel("step", fontsize=9.5)
    ax.set_ylabel("training loss", fontsize=9.5)
    ax.set_xlim(-0.5, last - 0.5)
    _legend(ax, loc="upper right")
    return figure


def _difference_figure(frameworks: dict, divergence: dict, per_epoch: int | None) -> Figure:
    pairs = list(itertools.combinations(frameworks, 2))
    figure, axes = _figure(10.2, 0.6 + 1.75 * len(pairs), rows=len(pairs))
    noise = divergence.get("noise_threshold")
    first_steps = {}  # {a, b} -> the first divergent step of each seed that diverged
    for pair in divergence.get("pairs") or []:
        if pair.get("first_divergent_step") is not None:
            first_steps.setdefault(frozenset((pair["a"], pair["b"])), []).append(pair["first_divergent_step"])
    last = 1
    for ax, (a, b) in zip(axes, pairs, strict=True):
        rows = []
        for run_a, run_b in _same_seed(frameworks[a], frameworks[b]):
            la, lb = step_losses(run_a), step_losses(run_b)
            n = min(la.size, lb.size)
            rows.append(np.abs(la[:n] - lb[:n]))
        rows = [row for row in rows if np.isfinite(row).any()]
        ax.set_yscale("log")
        ax.set_title(f"{a} vs {b}", fontsize=10, loc="left")
        if not rows:
            ax.text(0.5, 0.5, "no step both ran", transform=ax.transAxes, ha="center", va="center",
                    color="#666666", fontsize=9)
            continue
        floor = _floor(rows, noise)
        x = np.arange(max(row.size for row in rows))
        label = "|loss difference|"
        _draw(ax, x, [np.maximum(row, floor) for row in rows], PAIR_COLOUR, "-", label, linewidth=1.1)
        if frozenset((a, b)) in first_steps:
            step = min(first_steps[frozenset((a, b))])
            which = f" (earliest of {len(rows)} seeds)" if len(rows) > 1 else ""
            ax.axvline(step, color=PAIR_COLOUR, linewidth=0.9, linestyle=(0, (4, 2)))
            ax.annotate(f"beyond noise from step {step}{which}", (step, 1), xycoords=("data", "axes fraction"),
                        xytext=(4, -4), textcoords="offset points", va="top", fontsize=8.5, color=PAIR_COLOUR)
        last = max(last, x.size)
    for ax in axes:
        if noise:
            ax.axhline(noise, color=NOISE_COLOUR, linewidth=1.2, linestyle=(0, (6, 3)),
                       label=f"float32 noise threshold ({noise:.0e})")
        _epoch_lines(ax, per_epoch, last)
        ax.set_ylabel("|Δ loss|", fontsize=9.5)
    _legend(axes[0], loc="lower right")  # the same two entries in every panel: once is enough
    axes[0].set_xlim(-0.5, last - 0.5)
    axes[-1].set_xlabel("step", fontsize=9.5)
    figure.suptitle(f"per-step loss difference between frameworks, same seed{_seed_note(frameworks)}",
                    fontsize=11)
    return figure


def _same_seed(runs_a: list[dict], runs_b: list[dict]):
    by_seed = {run.get("seed"): run for run in runs_b}
    return [(run, by_seed[run.get("seed")]) for run in runs_a if run.get("seed") in by_seed]


def _floor(rows: list[np.ndarray], noise: float | None) -> float:
    """Where an exact zero is drawn on the log axis: well below anything else shown."""
    values = np.concatenate(rows)
    positive = values[np.isfinite(values) & (values > 0)]
    candidates = [positive.min() / 10] if positive.size else []
    if noise:
        candidates.append(noise / 100)
    return min(candidates, default=1e-12)
